//! Tool calls and their histories through both protocols, and what Anthropic's answers
//! count (cache writes, reasoning, empty turns, huge usage numbers).

use super::*;

/// A caller's request with tools, a forced choice, no parallel calls, a JSON answer asked
/// for, and a history of one assistant turn of two tool calls and their two results.
fn tool_request() -> Value {
    json!({"model": "cap:code", "messages": [
        {"role": "system", "content": "use the tools"},
        {"role": "user", "content": "weather in Oslo and Bergen?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}},
            {"id": "call_2", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\": \"Bergen\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "4 C, rain"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "7 C"}]},
        {"role": "user", "content": "and tomorrow?"}],
        "tools": [{"type": "function", "function": {"name": "weather",
            "description": "Weather in a city", "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": false,
        "response_format": {"type": "json_schema", "json_schema": {"name": "forecast",
            "schema": {"type": "object"}}}})
}

#[tokio::test]
async fn tools_and_tool_history_reach_anthropic_in_its_own_terms() {
    let f = fake::start(opts());
    let p = provider(&f, Protocol::Anthropic, 2.0, 1.0);
    plain(&p, &tool_request()).await.unwrap();
    let (_, sent) = f.last_request().unwrap();
    assert_eq!(
        sent["tools"],
        json!([{"name": "weather", "description": "Weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"]}}])
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "tool", "name": "weather", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "user", "content": "weather in Oslo and Bergen?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_1", "name": "weather",
                    "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "call_2", "name": "weather",
                    "input": {"city": "Bergen"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "4 C, rain"},
                {"type": "tool_result", "tool_use_id": "call_2",
                    "content": [{"type": "text", "text": "7 C"}]},
                {"type": "text", "text": "and tomorrow?"}]}])
    );
    let system = sent["system"].as_str().unwrap();
    assert!(
        system.starts_with("use the tools\n\nReply with one JSON object"),
        "{system}"
    );
    assert!(
        system.ends_with("schema forecast:\n{\"type\":\"object\"}"),
        "{system}"
    );
    for key in ["parallel_tool_calls", "response_format", "tool_calls"] {
        assert!(!sent.to_string().contains(key), "{key} sent raw: {sent}");
    }

    // What cannot be translated is named, and never sent: no status, since no provider
    // answered (the gateway tries a provider of another protocol, else answers 400).
    let mut bad = tool_request();
    bad["messages"][2]["tool_calls"][0]["function"]["arguments"] = json!("{\"city\":");
    let before = f.requests();
    let e = plain(&p, &bad).await.unwrap_err();
    let CallError::Untranslatable(ref message) = e else {
        panic!("{e:?}")
    };
    assert!(
        message.contains("messages[2]: tool_calls[0]: `function.arguments` is not JSON"),
        "{message}"
    );
    assert_eq!(e.status(), "untranslatable");
    assert_eq!(f.requests(), before, "nothing went upstream");
}

/// The tool calls of a plain reply's message.
fn plain_tool_calls(r: &Reply) -> Value {
    r.body["choices"][0]["message"]["tool_calls"].clone()
}

/// The tool calls a stream's chunks add up to, as a plain reply would list them; checks
/// that every piece names a call that was started.
fn streamed_tool_calls(frames: &[String]) -> Value {
    let mut calls: Vec<Value> = Vec::new();
    for f in frames.iter().filter(|f| *f != "[DONE]") {
        let v: Value = serde_json::from_str(f).unwrap();
        for d in v["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let n = d["index"].as_u64().unwrap() as usize;
            if d.get("id").is_some() {
                assert_eq!(n, calls.len(), "calls start in order: {f}");
                assert_eq!(d["function"]["arguments"], "");
                calls.push(json!({"id": d["id"], "type": d["type"],
                    "function": {"name": d["function"]["name"], "arguments": ""}}));
            } else {
                let piece = d["function"]["arguments"].as_str().unwrap();
                let args = &mut calls[n]["function"]["arguments"];
                *args = format!("{}{piece}", args.as_str().unwrap()).into();
            }
        }
    }
    Value::Array(calls)
}

#[tokio::test]
async fn tool_calls_come_back_in_openai_shape_plain_and_streamed_for_both_protocols() {
    let call = |id: &str, city: &str| fake::FakeToolCall {
        id: id.into(),
        name: "weather".into(),
        arguments: json!({"city": city, "days": [1, 2], "note": "a \"quoted\" word"}),
    };
    let f = fake::start(FakeOptions {
        tool_calls: vec![call("toolu_1", "Oslo"), call("toolu_2", "Bergen")],
        ..opts()
    });
    let want = json!([
        {"id": "toolu_1", "type": "function", "function": {"name": "weather",
            "arguments": "{\"city\":\"Oslo\",\"days\":[1,2],\"note\":\"a \\\"quoted\\\" word\"}"}},
        {"id": "toolu_2", "type": "function", "function": {"name": "weather",
            "arguments": "{\"city\":\"Bergen\",\"days\":[1,2],\"note\":\"a \\\"quoted\\\" word\"}"}}]);
    for proto in BOTH {
        let p = provider(&f, proto, 2.0, 1.0);
        let r = plain(&p, &tool_request()).await.unwrap();
        assert_eq!(plain_tool_calls(&r), want, "{proto:?}");
        assert_eq!(
            r.body["choices"][0]["finish_reason"], "tool_calls",
            "{proto:?}"
        );
        assert_eq!(r.body["choices"][0]["message"]["content"], TEXT);

        let mut s = open(&p, &tool_request()).await.unwrap();
        let (frames, err) = drain(&mut s).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(streamed_tool_calls(&frames), want, "{proto:?}");
        assert_eq!(content_of(&frames), TEXT);
        let finish: Value = serde_json::from_str(&frames[frames.len() - 2]).unwrap();
        assert_eq!(
            finish["choices"][0]["finish_reason"], "tool_calls",
            "{proto:?}"
        );
        assert_eq!(s.usage().output, 5);
    }

    // Only tool calls: OpenAI's `content: null`, and the first chunk is a tool call's.
    let f = fake::start(FakeOptions {
        text: String::new(),
        tool_calls: vec![call("toolu_1", "Oslo")],
        ..opts()
    });
    for proto in BOTH {
        let p = provider(&f, proto, 2.0, 1.0);
        let r = plain(&p, &tool_request()).await.unwrap();
        assert!(
            r.body["choices"][0]["message"]["content"].is_null(),
            "{proto:?}"
        );
        assert_eq!(plain_tool_calls(&r)[0], want[0]);
        let mut s = open(&p, &tool_request()).await.unwrap();
        let (frames, _) = drain(&mut s).await;
        let first: Value = serde_json::from_str(&frames[0]).unwrap();
        let delta = &first["choices"][0]["delta"];
        assert_eq!(delta["role"], "assistant", "{proto:?}");
        assert_eq!(delta["tool_calls"][0]["id"], "toolu_1", "{proto:?}");
        assert_eq!(streamed_tool_calls(&frames)[0], want[0]);
    }
}

#[tokio::test]
async fn anthropic_cache_writes_are_counted_apart_plain_and_streamed_alike() {
    let f = fake::start(FakeOptions {
        cache_write_tokens: 6,
        cache_write_1h_tokens: 2,
        ..opts()
    });
    let want = Usage {
        input: 12,
        output: 5,
        cached: 4,
        cache_write: 6,
        cache_write_1h: 2,
        reasoning: 0,
        source: UsageSource::Provider,
    };
    let p = provider(&f, Protocol::Anthropic, 2.0, 1.0);
    let r = plain(&p, &request(false)).await.unwrap();
    assert_eq!(r.usage, want);
    assert_eq!(
        r.body["usage"]["prompt_tokens"], 12,
        "writes are input to OpenAI too"
    );
    let mut s = open(&p, &request(true)).await.unwrap();
    assert!(drain(&mut s).await.1.is_none());
    assert_eq!(s.usage(), want);
    // OpenAI reports no writes: they stay plain input.
    let p = provider(&f, Protocol::Openai, 2.0, 1.0);
    let u = plain(&p, &request(false)).await.unwrap().usage;
    assert_eq!((u.input, u.cached, u.cache_write), (12, 4, 0));
}

#[tokio::test]
async fn anthropic_reasoning_is_estimated_from_the_thinking_text() {
    let thinking = "the user wants a greeting, so keep it short and friendly";
    let f = fake::start(FakeOptions {
        thinking: thinking.into(),
        output_tokens: 40,
        ..opts()
    });
    let p = provider(&f, Protocol::Anthropic, 2.0, 1.0);
    let want = Usage {
        input: 12,
        output: 40,
        cached: 4,
        reasoning: estimate_tokens(thinking.len()),
        ..Usage::default()
    };
    assert_eq!(want.reasoning, 14);
    let r = plain(&p, &request(false)).await.unwrap();
    assert_eq!(r.usage, want);
    assert_eq!(r.text, TEXT, "thinking is not passed on as text");
    let mut s = open(&p, &request(false)).await.unwrap();
    let (frames, err) = drain(&mut s).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(content_of(&frames), TEXT);
    assert_eq!(s.usage(), want, "streamed as plain");

    // An estimate above the output is cut to it; without any usage, the thinking is
    // estimated output too.
    let long = "think ".repeat(100);
    let f = fake::start(FakeOptions {
        thinking: long.clone(),
        output_tokens: 10,
        ..opts()
    });
    let p = provider(&f, Protocol::Anthropic, 2.0, 1.0);
    assert_eq!(
        plain(&p, &request(false)).await.unwrap().usage.reasoning,
        10
    );
    let mut s = open(&p, &request(false)).await.unwrap();
    drain(&mut s).await;
    assert_eq!(s.usage().reasoning, 10);
    f.set_mode(Mode::NoUsage);
    let output = estimate_tokens(TEXT.len() + long.len());
    let want = Usage {
        input: estimate_input(&request(false)),
        output,
        reasoning: estimate_tokens(long.len()),
        source: UsageSource::Estimated,
        ..Usage::default()
    };
    assert_eq!(plain(&p, &request(false)).await.unwrap().usage, want);
    let mut s = open(&p, &request(false)).await.unwrap();
    drain(&mut s).await;
    assert_eq!(s.usage(), want);
}

/// Regression: an empty turn (an assistant's `""` or `null` without tool calls, a user's
/// `""`, empty or blank text parts) went to Anthropic as `{"content": ""}` or `null`, and
/// an empty system string as an empty text block, all of which it refuses with a 400.
#[tokio::test]
async fn empty_turns_and_system_text_are_not_sent_to_anthropic() {
    let f = fake::start(FakeOptions::default());
    let p = provider(&f, Protocol::Anthropic, 5.0, 5.0);
    let body = json!({"model": "m", "messages": [
        {"role": "system", "content": ""},
        {"role": "system", "content": [{"type": "text", "text": "",
            "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": null},
        {"role": "assistant", "content": null, "tool_calls": []},
        {"role": "user", "content": ""},
        {"role": "user", "content": [{"type": "text", "text": ""}]},
        {"role": "assistant", "content": " \n"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": []},
        {"role": "user", "content": "bye"}]});
    plain(&p, &body).await.unwrap();
    let (_, sent) = f.last_request().unwrap();
    assert!(sent.get("system").is_none(), "{sent}");
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                {"type": "text", "text": "again"}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "bye"}]),
        "empty turns skipped, the roles still alternating"
    );
    // A system prompt with text keeps it, without the empty parts beside it.
    let body = json!({"model": "m", "messages": [
        {"role": "system", "content": [{"type": "text", "text": ""},
            {"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}]},
        {"role": "system", "content": "  "},
        {"role": "user", "content": "hi"}]});
    plain(&p, &body).await.unwrap();
    let (_, sent) = f.last_request().unwrap();
    assert_eq!(
        sent["system"],
        json!([{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}])
    );
}

/// Regression: the input total of an Anthropic answer (`input_tokens` plus the cache
/// counts) and its `total_tokens` were plain sums of the upstream's numbers, so an
/// upstream's nonsense panicked pas (debug) or wrapped around (release).
#[test]
fn usage_counts_near_u64_max_saturate_instead_of_overflowing() {
    let max = u64::MAX;
    let an = json!({"id": "msg_1", "type": "message", "content": [{"type": "text",
        "text": "a"}], "stop_reason": "end_turn", "usage": {"input_tokens": max - 1,
        "output_tokens": max, "cache_read_input_tokens": max,
        "cache_creation_input_tokens": 7, "cache_creation":
        {"ephemeral_1h_input_tokens": max}}});
    let p = anthropic::reply(an.to_string().as_bytes(), "m").unwrap();
    let u = p.usage.unwrap();
    assert_eq!((u.input, u.output, u.cached), (max, max, max));
    assert_eq!(p.body["usage"]["prompt_tokens"], max);
    assert_eq!(p.body["usage"]["total_tokens"], max);
    let oa = json!({"choices": [{"message": {"role": "assistant", "content": "a"}}],
        "usage": {"prompt_tokens": max, "completion_tokens": max, "total_tokens": max,
        "prompt_tokens_details": {"cached_tokens": max},
        "completion_tokens_details": {"reasoning_tokens": max}}});
    let u = openai::reply(oa.to_string().as_bytes(), "m")
        .unwrap()
        .usage
        .unwrap();
    assert_eq!(
        (u.input, u.output, u.cached, u.reasoning),
        (max, max, max, max)
    );
    // Streamed: the counts of message_start and message_delta, merged.
    let mut s = anthropic::StreamState::new("m", true);
    let mut t = Tally::default();
    for v in [
        json!({"type": "message_start", "message": {"id": "msg_1", "usage": {
            "input_tokens": max, "cache_read_input_tokens": max,
            "cache_creation_input_tokens": max, "output_tokens": 1}}}),
        json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "a"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
            "usage": {"input_tokens": max, "output_tokens": max}}),
        json!({"type": "message_stop"}),
    ] {
        let ev = sse::Event {
            event: v["type"].as_str().unwrap().into(),
            data: v.to_string(),
        };
        s.on_event(&ev, &mut t).unwrap();
    }
    assert_eq!((t.input, t.output, t.cached), (Some(max), Some(max), max));
    let usage_chunk = std::str::from_utf8(&t.frames[t.frames.len() - 2]).unwrap();
    assert!(
        usage_chunk.contains(&format!("\"total_tokens\":{max}")),
        "{usage_chunk}"
    );
    // And its cost is a number, not a panic.
    let price = crate::llm::config::Price {
        input: "3".parse().unwrap(),
        output: "15".parse().unwrap(),
        cached_input: None,
        cache_write: None,
        cache_write_1h: None,
    };
    assert!(crate::llm::cost::cost(Some(&price), &u).is_some());
}
