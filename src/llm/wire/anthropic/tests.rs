//! Unit tests of the translation both ways.

use super::*;

fn model(max: Option<u64>) -> Model {
    Model {
        id: "claude-x".into(),
        capabilities: vec![],
        ctx_limit: None,
        max_output_tokens: max,
        price_per_mtok: None,
    }
}

#[test]
fn system_messages_move_to_the_top_and_parts_become_blocks() {
    let body = json!({"model": "cap:plan", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": [{"type": "text", "text": "be kind"}]},
        {"role": "user", "content": [{"type": "text", "text": "hi"},
            {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]},
        {"role": "assistant", "content": "hello"}],
        "temperature": 0.5, "top_p": null, "stop": "END", "max_tokens": 99});
    let r = translate_request(&body, &model(Some(500)), false).unwrap();
    assert_eq!(r["system"], "be brief\n\nbe kind");
    assert_eq!(r["model"], "claude-x");
    assert_eq!(r["max_tokens"], 99);
    assert_eq!(r["temperature"], 0.5);
    assert!(r.get("top_p").is_none() && r.get("stream").is_none());
    assert_eq!(r["stop_sequences"], json!(["END"]));
    assert_eq!(r["messages"].as_array().unwrap().len(), 2);
    assert_eq!(
        r["messages"][0]["content"][0],
        json!({"type": "text", "text": "hi"})
    );
    assert_eq!(r["messages"][0]["content"][1]["type"], "image");
    assert_eq!(
        r["messages"][1],
        json!({"role": "assistant", "content": "hello"})
    );
}

/// Regression: `image_url` parts went to Anthropic raw, and it refused every request
/// with an image.
#[test]
fn image_parts_become_image_blocks_with_their_cache_marks() {
    let image = |url: &str| json!({"type": "image_url", "image_url": {"url": url}});
    let mut marked = image("data:image/PNG;base64,iVBORw0K");
    marked["image_url"]["detail"] = "high".into();
    marked["cache_control"] = json!({"type": "ephemeral"});
    let body = json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        marked,
        image("https://example.test/cat.jpg"),
        {"type": "image_url", "image_url": "HTTP://example.test/dog.webp"},
        image("data:image/webp;charset=utf-8;base64,UklGR")]}]});
    let r = translate_request(&body, &model(None), false).unwrap();
    assert_eq!(
        r["messages"][0]["content"],
        json!([
            {"type": "text", "text": "what is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                "data": "iVBORw0K"}, "cache_control": {"type": "ephemeral"}},
            {"type": "image", "source": {"type": "url",
                "url": "https://example.test/cat.jpg"}},
            {"type": "image", "source": {"type": "url",
                "url": "HTTP://example.test/dog.webp"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/webp",
                "data": "UklGR"}}])
    );
    assert!(!r.to_string().contains("detail"), "{r}");
}

#[test]
fn images_anthropic_cannot_take_are_refused_naming_the_message_and_part() {
    let ask = |part: Value| {
        json!({"messages": [{"role": "system", "content": "s"},
            {"role": "user", "content": "hi"},
            {"role": "user", "content": [{"type": "text", "text": "see"}, part]}]})
    };
    let image = |url: &str| json!({"type": "image_url", "image_url": {"url": url}});
    for (part, needle) in [
        (
            image("ftp://example.test/a.png"),
            "not \"ftp://example.test/a.png\"",
        ),
        (image("/tmp/a.png"), "base64 `data:` URL or an http(s) URL"),
        (image("data:image/png,%89PNG"), "is not base64"),
        (image("data:image/png;base64"), "no `,`"),
        (
            image("data:image/bmp;base64,Qk0"),
            "\"image/bmp\" is not taken by the Messages API (only image/jpeg, image/png, \
             image/gif, image/webp)",
        ),
        (image("data:;base64,Qk0"), "image type \"\""),
        (
            json!({"type": "image_url", "image_url": {"detail": "low"}}),
            "url` is missing",
        ),
    ] {
        let e = translate_request(&ask(part), &model(None), false).unwrap_err();
        assert!(e.starts_with("messages[2]: content[1]: "), "{e}");
        assert!(e.contains(needle), "{e} (wanted {needle})");
    }
}

#[test]
fn max_tokens_comes_from_the_caller_then_the_model_then_4096() {
    let m = json!({"messages": [], "max_completion_tokens": 7, "max_tokens": 9});
    assert_eq!(
        translate_request(&m, &model(Some(500)), true).unwrap()["max_tokens"],
        7
    );
    let m = json!({"messages": []});
    assert_eq!(
        translate_request(&m, &model(Some(500)), true).unwrap()["max_tokens"],
        500
    );
    let r = translate_request(&m, &model(None), true).unwrap();
    assert_eq!(
        (r["max_tokens"].clone(), r["stream"].clone()),
        (json!(4096), json!(true))
    );
    assert!(r.get("system").is_none());
}

#[test]
fn finish_reasons_and_cached_usage_translate() {
    for (stop, want) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
    ] {
        let raw = json!({"id": "msg_1", "type": "message", "content": [
            {"type": "text", "text": "a"}, {"type": "text", "text": "b"},
            {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}}],
            "stop_reason": stop, "usage": {"input_tokens": 10, "output_tokens": 4,
            "cache_read_input_tokens": 30, "cache_creation_input_tokens": 5}});
        let p = reply(raw.to_string().as_bytes(), "claude-x").unwrap();
        assert_eq!(p.body["choices"][0]["finish_reason"], want);
        assert_eq!(p.text, "ab");
        assert_eq!(p.body["choices"][0]["message"]["content"], "ab");
        let call = &p.body["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["arguments"], "{\"x\":1}");
        let u = p.usage.unwrap();
        assert_eq!((u.input, u.output, u.cached), (45, 4, 30));
        assert_eq!(p.body["usage"]["prompt_tokens"], 45);
        assert_eq!(p.body["usage"]["total_tokens"], 49);
        assert_eq!(
            p.body["usage"]["prompt_tokens_details"]["cached_tokens"],
            30
        );
        assert_eq!(p.body["model"], "claude-x");
        assert_eq!(p.body["object"], "chat.completion");
    }
    assert!(reply(b"{\"type\":\"message\"}", "m").is_err());
}

#[test]
fn tool_choice_and_parallel_calls_translate() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let named = json!({"type": "function", "function": {"name": "f"}});
    for (choice, parallel, want) in [
        (json!("auto"), json!(null), json!({"type": "auto"})),
        (json!("none"), json!(false), json!({"type": "none"})),
        (json!("required"), json!(true), json!({"type": "any"})),
        (
            named,
            json!(false),
            json!({"type": "tool", "name": "f",
            "disable_parallel_tool_use": true}),
        ),
        (
            json!(null),
            json!(false),
            json!({"type": "auto",
            "disable_parallel_tool_use": true}),
        ),
    ] {
        let body = json!({"messages": [], "tools": tools, "tool_choice": choice,
            "parallel_tool_calls": parallel});
        let r = translate_request(&body, &model(None), false).unwrap();
        assert_eq!(r["tool_choice"], want, "{choice} {parallel}");
        assert_eq!(
            r["tools"],
            json!([{"name": "f", "input_schema": {"type": "object", "properties": {}}}])
        );
    }
    let r = translate_request(
        &json!({"messages": [], "tool_choice": "auto"}),
        &model(None),
        false,
    )
    .unwrap();
    assert!(r.get("tools").is_none() && r.get("tool_choice").is_none());
}

#[test]
fn what_has_no_messages_api_form_is_refused_naming_the_field() {
    let call = |args: Value| {
        json!({"messages": [{"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": args}}]}]})
    };
    for (body, needle) in [
        (
            json!({"messages": [], "functions": [{"name": "f"}]}),
            "`functions`",
        ),
        (
            json!({"messages": [{"role": "function", "name": "f", "content": "1"}]}),
            "messages[0]: `role: function`",
        ),
        (
            json!({"messages": [], "tools": [{"type": "custom", "custom": {"name": "g"}}]}),
            "tools[0]",
        ),
        (
            call(json!("{not json")),
            "messages[0]: tool_calls[0]: `function.arguments` is not JSON",
        ),
        (call(json!("[1]")), "must be a JSON object"),
        (
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            "tool_call_id",
        ),
        (
            json!({"messages": [], "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "sometimes"}),
            "`tool_choice`",
        ),
        (
            json!({"messages": [], "response_format": {"type": "yaml"}}),
            "`response_format`",
        ),
        (
            json!({"messages": [], "response_format": {"type": "json_schema",
            "json_schema": {"name": "x"}}}),
            "schema` is missing",
        ),
    ] {
        let e = translate_request(&body, &model(None), false).unwrap_err();
        assert!(e.contains(needle), "{e} (wanted {needle})");
    }
    // Empty arguments are a call without any: `{}`.
    let r = translate_request(&call(json!("")), &model(None), false).unwrap();
    assert_eq!(r["messages"][0]["content"][0]["input"], json!({}));
}

#[test]
fn response_format_becomes_a_system_instruction_and_cache_marks_are_kept() {
    let body = json!({"messages": [
        {"role": "system", "content": [{"type": "text", "text": "long rules",
            "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "hi"}],
        "response_format": {"type": "json_object"}});
    let r = translate_request(&body, &model(None), false).unwrap();
    assert_eq!(
        r["system"][0],
        json!({"type": "text", "text": "long rules",
        "cache_control": {"type": "ephemeral"}})
    );
    assert!(r["system"][1]["text"]
        .as_str()
        .unwrap()
        .starts_with("Reply with one JSON object"));
    let body = json!({"messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "text"}});
    let r = translate_request(&body, &model(None), false).unwrap();
    assert!(r.get("system").is_none());
}

#[test]
fn streamed_tool_calls_are_indexed_by_their_ordinal_not_their_block() {
    let mut s = StreamState::new("m", false);
    let mut t = Tally::default();
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_1"}}),
        json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "Let me look."}}),
        json!({"type": "content_block_start", "index": 1, "content_block":
            {"type": "tool_use", "id": "toolu_a", "name": "f", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""}}),
        json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "{\"x\":"}}),
        json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        json!({"type": "content_block_start", "index": 2, "content_block":
            {"type": "tool_use", "id": "toolu_b", "name": "g", "input": {}}}),
        json!({"type": "content_block_delta", "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}}),
        json!({"type": "message_stop"}),
    ];
    for v in events {
        let ev = Event {
            event: v["type"].as_str().unwrap().into(),
            data: v.to_string(),
        };
        s.on_event(&ev, &mut t).unwrap();
    }
    let chunks: Vec<Value> = t
        .frames
        .iter()
        .map(|f| std::str::from_utf8(f).unwrap())
        .filter(|f| !f.contains("[DONE]"))
        .map(|f| serde_json::from_str(f.trim_start_matches("data: ").trim()).unwrap())
        .collect();
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_eq!(
        deltas[0],
        &json!({"role": "assistant", "content": "Let me look."})
    );
    assert_eq!(
        deltas[1]["tool_calls"],
        json!([{"index": 0, "id": "toolu_a",
        "type": "function", "function": {"name": "f", "arguments": ""}}])
    );
    assert_eq!(
        deltas[2]["tool_calls"],
        json!([{"index": 0,
        "function": {"arguments": "{\"x\":"}}]),
        "the empty piece is skipped"
    );
    assert_eq!(deltas[3]["tool_calls"][0]["function"]["arguments"], "1}");
    assert_eq!(deltas[4]["tool_calls"][0]["index"], 1);
    assert_eq!(deltas[4]["tool_calls"][0]["id"], "toolu_b");
    assert_eq!(
        deltas[5]["tool_calls"],
        json!([{"index": 1,
        "function": {"arguments": "{}"}}])
    );
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks.len(), 7);
    assert_eq!(t.other_output_bytes, "{\"x\":1}{}".len());
}

#[test]
fn error_events_name_their_status() {
    let mut s = StreamState::new("m", false);
    let ev = Event {
        event: "error".into(),
        data: r#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#.into(),
    };
    let e = s.on_event(&ev, &mut Tally::default()).unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (Some(529), "busy"));
}
