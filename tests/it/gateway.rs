//! The LLM gateway end to end: the real daemon, real HTTP to fake upstreams started here
//! (both protocols, plain and streaming, with injected failures), receipts read back from
//! the real database.

use pas::llm::config::Protocol;
use pas::llm::fake::{self, Fake, FakeOptions};
use serde_json::{json, Value};

/// (Re-exported for test files written before the helpers moved to `support/`.)
pub(crate) use crate::support::gateway::{ask, model, provider, read_all_receipts, sse_text, Gw};
use crate::support::http::{self, Reply};

const TEXT: &str = "hello from the fake upstream";

#[test]
fn both_protocols_plain_and_streamed_cost_the_same_exactly() {
    let oa = fake::start(FakeOptions::default());
    let an = fake::start(FakeOptions::default());
    let gw = Gw::start(
        &[
            provider(
                "oa",
                &oa,
                Protocol::Openai,
                "",
                &model("gpt-x", &["chat"], Some(("0.15", "0.60"))),
            ),
            provider(
                "an",
                &an,
                Protocol::Anthropic,
                "    api_key_env: PAS_TEST_ANTHROPIC_KEY\n",
                &model("claude-x", &["chat", "plan"], Some(("3.00", "15.00"))),
            ),
        ],
        "",
        &[("PAS_TEST_ANTHROPIC_KEY", "sk-ant-test-key-1")],
    );
    // OpenAI, plain.
    let r = gw.chat(&ask("gpt-x", false), &[("x-pas-agent", "coder-1")]);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["content"], TEXT);
    assert_eq!(v["usage"]["prompt_tokens"], 12);
    assert_eq!(r.header("x-pas-provider").as_deref(), Some("oa"));
    // (12 × 0.15 + 5 × 0.60) / 1e6
    assert_eq!(r.header("x-pas-cost-usd").as_deref(), Some("0.0000048"));
    let overhead: f64 = r.header("x-pas-overhead-ms").unwrap().parse().unwrap();
    assert!((0.0..1000.0).contains(&overhead), "{overhead}");
    // OpenAI, streamed, usage asked for.
    let mut body = ask("gpt-x", true);
    body["stream_options"] = json!({"include_usage": true});
    let r = gw.chat(&body, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("x-pas-overhead-ms").is_some());
    let (text, done, frames) = sse_text(&r.body);
    assert_eq!(text, TEXT);
    assert!(done, "no [DONE]: {}", r.body);
    assert!(frames.iter().any(|f| f["usage"]["completion_tokens"] == 5));
    // Anthropic, plain and streamed (by capability), with its key sent upstream.
    let r = gw.chat(&ask("claude-x", false), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["choices"][0]["message"]["content"], TEXT);
    let (headers, sent) = an.last_request().unwrap();
    assert!(headers
        .iter()
        .any(|(k, v)| k == "x-api-key" && v == "sk-ant-test-key-1"));
    assert_eq!(sent["system"], "be brief");
    let r = gw.chat(&ask("cap:plan", true), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let (text, done, frames) = sse_text(&r.body);
    assert_eq!((text.as_str(), done), (TEXT, true));
    assert!(
        frames.iter().all(|f| f["usage"].is_null()),
        "usage not asked for"
    );

    let rows = gw.receipts(4);
    let cost = |i: usize| rows[i]["cost"].as_str().unwrap().to_string();
    assert_eq!(cost(0), "0.0000048");
    assert_eq!(cost(0), cost(1), "streamed and plain cost the same");
    // (12 × 3 + 5 × 15) / 1e6
    assert_eq!(cost(2), "0.000111");
    assert_eq!(cost(2), cost(3));
    assert_eq!(rows[0]["agent"], "coder-1");
    assert!(rows
        .iter()
        .all(|r| r["status"] == "ok" && r["source"] == "provider"));
    assert!(rows[1]["stream"].as_bool().unwrap() && rows[1]["ttft_ms"].is_number());
    let costs = gw.ws.pas_json(&["costs", "--json"]);
    assert_eq!(costs["total"]["cost_usd"], "0.0002316");
    assert_eq!(costs["total"]["calls"], 4);
    assert_eq!(costs["today"]["cost_usd"], "0.0002316");
    let by = |dim: &str, key: &str| {
        costs[format!("by_{dim}")]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["key"] == key)
            .map(|t| t["cost_usd"].as_str().unwrap().to_string())
    };
    assert_eq!(by("agent", "coder-1").as_deref(), Some("0.0000048"));
    assert_eq!(by("provider", "an").as_deref(), Some("0.000222"));
    assert_eq!(by("model", "oa/gpt-x").as_deref(), Some("0.0000096"));
    assert!(costs["by_day"].as_array().unwrap().len() == 1);
    let text = gw.ws.pas_ok(&["costs"]);
    assert!(text.contains("total  $0.0002316"), "{text}");
}

#[test]
fn models_lists_capabilities_prices_and_cap_entries() {
    let oa = fake::start(FakeOptions::default());
    let gw = Gw::start(
        &[provider(
            "oa",
            &oa,
            Protocol::Openai,
            "    local: true\n",
            &format!(
                "{}{}",
                model("small", &["summarize"], Some(("0", "0"))),
                model("big", &["code", "summarize"], None)
            ),
        )],
        "",
        &[],
    );
    let r = http::get(&format!("{}/v1/models", gw.url));
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["small", "big", "cap:code", "cap:summarize"]);
    assert_eq!(v["data"][0]["pas"]["price_per_mtok"]["input"], "0");
    assert!(v["data"][1]["pas"]["price_per_mtok"].is_null());
    assert_eq!(
        v["data"][1]["pas"]["capabilities"],
        json!(["code", "summarize"])
    );
}

/// Runs `tests/sdk/<script>` with the official openai package against the gateway at
/// `gw` and returns what it printed (JSON); fails the test if it fails.
fn run_sdk(script: &str, gw: &Gw) -> Value {
    let pythonpath = crate::support::traces::python_with("openai", &["openai"]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(format!("{}/v1", gw.url))
        .env("PYTHONPATH", &pythonpath)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_official_openai_python_client_works_unchanged() {
    let oa = fake::start(FakeOptions::default());
    let gw = Gw::start(
        &[provider(
            "oa",
            &oa,
            Protocol::Openai,
            "",
            &model("gpt-x", &["chat"], Some(("0.15", "0.60"))),
        )],
        "",
        &[],
    );
    let seen = run_sdk("openai_client.py", &gw);
    assert_eq!(seen["plain_text"], TEXT);
    assert_eq!(seen["plain_usage"], 12);
    assert!(seen["overhead_header"].is_string());
    assert_eq!(seen["stream_text"], TEXT);
    assert_eq!(seen["stream_usage"], 5);
    assert_eq!(seen["models"], json!(["cap:chat", "gpt-x"]));
    assert_eq!(seen["missing"], "model_not_found");
    let rows = gw.receipts(2);
    assert_eq!(rows[0]["agent"], "sdk-agent");
    assert_eq!(rows[0]["job"], "J-sdk");
}

#[test]
fn cached_input_is_priced_at_its_own_rate_streamed_or_not() {
    let opts = FakeOptions {
        cached_tokens: 8,
        ..FakeOptions::default()
    };
    let oa = fake::start(opts.clone());
    let an = fake::start(opts);
    let priced = |id: &str| {
        format!(
            "      - id: {id}\n        capabilities: [chat]\n        price_per_mtok: {{input: \"3\", output: \"15\", cached_input: \"0.30\"}}\n"
        )
    };
    let gw = Gw::start(
        &[
            provider("oa", &oa, Protocol::Openai, "", &priced("o")),
            provider("an", &an, Protocol::Anthropic, "", &priced("a")),
        ],
        "",
        &[],
    );
    for m in ["o", "a"] {
        for stream in [false, true] {
            let r = gw.chat(&ask(m, stream), &[]);
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }
    let rows = gw.receipts(4);
    // The same 12 input tokens, 8 of them from the cache (OpenAI counts them inside
    // prompt_tokens, Anthropic beside input_tokens): 4 × 3 + 8 × 0.30 + 5 × 15, per million.
    let costs: Vec<&str> = rows.iter().map(|r| r["cost"].as_str().unwrap()).collect();
    assert_eq!(costs, vec!["0.0000894"; 4], "{rows:?}");
}

/// An OpenAI request with tools and a history of one tool call and its result.
fn ask_with_tools(stream: bool) -> Value {
    json!({"model": "cap:x", "stream": stream, "messages": [
        {"role": "user", "content": "weather in Oslo and Bergen?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_0",
            "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "4 C"}],
        "tools": [{"type": "function", "function": {"name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required"})
}

/// Tool calls of the fake: two, so a call's index (its ordinal) differs from its block's.
fn fake_tool_calls() -> Vec<fake::FakeToolCall> {
    ["Oslo", "Bergen"]
        .iter()
        .enumerate()
        .map(|(n, city)| fake::FakeToolCall {
            id: format!("toolu_{n}"),
            name: "weather".into(),
            arguments: json!({"city": city, "unit": "C"}),
        })
        .collect()
}

/// Regression: tools sent to a `protocol: anthropic` provider were dropped (and the tool
/// history sent raw), so a tool-using agent routed there by `cap:` silently lost them.
#[test]
fn tool_calls_through_an_anthropic_provider_come_back_in_openai_shape() {
    let an = fake::start(FakeOptions {
        tool_calls: fake_tool_calls(),
        ..FakeOptions::default()
    });
    let gw = Gw::one(&an, Protocol::Anthropic, "claude-x", Some(("3", "15")), "");
    let r = gw.chat(&ask_with_tools(false), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let want = json!([
        {"id": "toolu_0", "type": "function",
            "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\",\"unit\":\"C\"}"}},
        {"id": "toolu_1", "type": "function",
            "function": {"name": "weather", "arguments": "{\"city\":\"Bergen\",\"unit\":\"C\"}"}}]);
    assert_eq!(choice["message"]["tool_calls"], want);
    let (_, sent) = an.last_request().unwrap();
    assert_eq!(sent["tools"][0]["name"], "weather");
    assert_eq!(
        sent["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(sent["tool_choice"], json!({"type": "any"}));
    assert_eq!(
        sent["messages"][1]["content"],
        json!([{"type": "tool_use", "id": "call_0", "name": "weather",
            "input": {"city": "Oslo"}}])
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "user", "content": [{"type": "tool_result",
            "tool_use_id": "call_0", "content": "4 C"}]})
    );

    let r = gw.chat(&ask_with_tools(true), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let (text, done, frames) = sse_text(&r.body);
    assert_eq!((text.as_str(), done), (TEXT, true));
    let mut calls: Vec<Value> = Vec::new();
    for f in &frames {
        for d in f["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let n = d["index"].as_u64().unwrap() as usize;
            if n == calls.len() {
                calls.push(json!({"id": d["id"], "type": d["type"],
                    "function": {"name": d["function"]["name"], "arguments": ""}}));
            }
            let piece = d["function"]["arguments"].as_str().unwrap();
            let args = &mut calls[n]["function"]["arguments"];
            *args = format!("{}{piece}", args.as_str().unwrap()).into();
        }
    }
    assert_eq!(
        Value::Array(calls),
        want,
        "streamed arguments add up to the plain ones"
    );
    let finish = frames
        .iter()
        .filter_map(|f| f["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish.collect::<Vec<_>>(), ["tool_calls"]);
    let rows = gw.receipts(2);
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
    assert_eq!(rows[0]["cost"], rows[1]["cost"]);
}

/// Regression: `image_url` parts went to an anthropic provider raw, and it refused every
/// request with an image in it.
#[test]
fn images_reach_an_anthropic_provider_as_image_blocks() {
    let an = fake::start(FakeOptions::default());
    let gw = Gw::one(&an, Protocol::Anthropic, "claude-x", Some(("3", "15")), "");
    let ask = |url: &str, stream: bool| {
        json!({"model": "cap:x", "stream": stream, "messages": [
            {"role": "system", "content": "describe"},
            {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": url, "detail": "low"},
                    "cache_control": {"type": "ephemeral"}}]}]})
    };
    let sent_image = |url: &str, stream: bool| {
        let r = gw.chat(&ask(url, stream), &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        let (_, sent) = an.last_request().unwrap();
        assert_eq!(sent["messages"][0]["content"][0]["type"], "text");
        sent["messages"][0]["content"][1].clone()
    };
    assert_eq!(
        sent_image("data:image/png;base64,iVBORw0KGgo=", false),
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png",
            "data": "iVBORw0KGgo="}, "cache_control": {"type": "ephemeral"}})
    );
    assert_eq!(
        sent_image("https://example.test/cat.jpg", true),
        json!({"type": "image", "source": {"type": "url",
            "url": "https://example.test/cat.jpg"}, "cache_control": {"type": "ephemeral"}})
    );

    // An image the Messages API cannot take is the request's fault, named, and never sent.
    let before = an.requests();
    for (url, why) in [
        ("data:image/bmp;base64,Qk0=", "\"image/bmp\" is not taken"),
        ("file:///etc/passwd", "base64 `data:` URL or an http(s) URL"),
    ] {
        let r = gw.chat(&ask(url, false), &[]);
        assert_eq!(r.status, 400, "{}", r.body);
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains("messages[1]: content[1]: "), "{message}");
        assert!(message.contains(why), "{message} (wanted {why})");
    }
    assert_eq!(an.requests(), before, "nothing went upstream");
}

#[test]
fn the_official_openai_python_client_parses_tool_calls_from_anthropic() {
    let an = fake::start(FakeOptions {
        tool_calls: fake_tool_calls(),
        ..FakeOptions::default()
    });
    let gw = Gw::one(&an, Protocol::Anthropic, "claude-x", None, "");
    let seen = run_sdk("openai_tools.py", &gw);
    let want = json!([
        {"id": "toolu_0", "name": "weather", "arguments": "{\"city\":\"Oslo\",\"unit\":\"C\"}"},
        {"id": "toolu_1", "name": "weather", "arguments": "{\"city\":\"Bergen\",\"unit\":\"C\"}"}]);
    assert_eq!(seen["plain_finish"], "tool_calls");
    assert_eq!(seen["plain_calls"], want);
    assert_eq!(seen["stream_finish"], "tool_calls");
    assert_eq!(seen["stream_calls"], want);
}

/// Regression: Anthropic's cache writes (`cache_creation_input_tokens`) were priced as
/// plain input, though Anthropic bills them at 1.25 × (5-minute cache) or 2 × (1-hour).
#[test]
fn cache_writes_are_priced_at_their_own_rates_streamed_or_not() {
    // 12 input tokens: 2 read from the cache, 6 written (2 of them for an hour), 4 fresh.
    let an = fake::start(FakeOptions {
        cached_tokens: 2,
        cache_write_tokens: 6,
        cache_write_1h_tokens: 2,
        ..FakeOptions::default()
    });
    let priced = |id: &str, writes: &str| {
        format!(
            "      - id: {id}\n        capabilities: [chat]\n        price_per_mtok: {{input: \"3\", output: \"15\", cached_input: \"0.30\"{writes}}}\n"
        )
    };
    let gw = Gw::start(
        &[provider(
            "an",
            &an,
            Protocol::Anthropic,
            "",
            &format!(
                "{}{}",
                priced("default", ""),
                priced("set", ", cache_write: \"4.5\", cache_write_1h: \"7\"")
            ),
        )],
        "",
        &[],
    );
    for m in ["default", "set"] {
        for stream in [false, true] {
            let r = gw.chat(&ask(m, stream), &[]);
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }
    let r = gw.chat(&ask("default", false), &[]);
    // 4 × 3 + 2 × 0.30 + 4 × 3.75 (1.25 × 3) + 2 × 6 (2 × 3) + 5 × 15, per million.
    assert_eq!(r.header("x-pas-cost-usd").as_deref(), Some("0.0001146"));
    let rows = gw.receipts(5);
    let costs: Vec<&str> = rows.iter().map(|r| r["cost"].as_str().unwrap()).collect();
    // 4 × 3 + 2 × 0.30 + 4 × 4.5 + 2 × 7 + 5 × 15, per million.
    assert_eq!(
        costs,
        [
            "0.0001146",
            "0.0001146",
            "0.0001196",
            "0.0001196",
            "0.0001146"
        ],
        "{rows:?}"
    );
    let conn = rusqlite::Connection::open(gw.ws.path("telemetry/pas.db")).unwrap();
    let writes: Vec<(i64, i64, i64)> = conn
        .prepare("SELECT cached_tokens, cache_write_tokens, cache_write_1h_tokens FROM receipts")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(writes, vec![(2, 6, 2); 5]);
}

/// Regression: a streamed Anthropic answer whose `message_delta` repeated some counts
/// but not others (`input_tokens` without the cache counts, or the totals without the
/// split of writes by lifetime) had the missing ones set to 0: cache reads booked as
/// fresh input, 1-hour writes at the 5-minute rate. Streamed must cost what plain does.
#[test]
fn streamed_cache_counts_survive_a_message_delta_that_leaves_them_out() {
    use pas::llm::fake::DeltaUsage;
    let variants = [
        ("output", DeltaUsage::Output),
        ("input", DeltaUsage::Input),
        ("totals", DeltaUsage::Totals),
    ];
    // 12 input tokens: 2 read from the cache, 6 written (2 of them for an hour), 4 fresh.
    let fakes: Vec<Fake> = variants
        .iter()
        .map(|(_, d)| {
            fake::start(FakeOptions {
                cached_tokens: 2,
                cache_write_tokens: 6,
                cache_write_1h_tokens: 2,
                delta_usage: *d,
                ..FakeOptions::default()
            })
        })
        .collect();
    let providers: Vec<String> = variants
        .iter()
        .zip(&fakes)
        .map(|((id, _), f)| {
            let m = format!(
                "      - id: {id}\n        capabilities: [chat]\n        price_per_mtok: {{input: \"3\", output: \"15\", cached_input: \"0.30\"}}\n"
            );
            provider(id, f, Protocol::Anthropic, "", &m)
        })
        .collect();
    let gw = Gw::start(&providers, "", &[]);
    for (id, _) in variants {
        for stream in [false, true] {
            let r = gw.chat(&ask(id, stream), &[]);
            assert_eq!(r.status, 200, "{id}: {}", r.body);
        }
    }
    let rows = gw.receipts(6);
    // 4 × 3 + 2 × 0.30 + 4 × 3.75 + 2 × 6 + 5 × 15, per million, as a plain call.
    let costs: Vec<(&str, bool, &str)> = rows
        .iter()
        .map(|r| {
            let (m, s, c) = (&r["model"], &r["stream"], &r["cost"]);
            (
                m.as_str().unwrap(),
                s.as_bool().unwrap(),
                c.as_str().unwrap(),
            )
        })
        .collect();
    for (model, stream, cost) in &costs {
        assert_eq!(*cost, "0.0001146", "{model} stream={stream}: {costs:?}");
    }
    let conn = rusqlite::Connection::open(gw.ws.path("telemetry/pas.db")).unwrap();
    let counts: Vec<(String, bool, i64, i64, i64, i64)> = conn
        .prepare(
            "SELECT model, stream, input_tokens, cached_tokens, cache_write_tokens,
                    cache_write_1h_tokens FROM receipts ORDER BY ts",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (model, stream, input, cached, write, write_1h) in &counts {
        assert_eq!(
            (*input, *cached, *write, *write_1h),
            (12, 2, 6, 2),
            "{model} stream={stream}: {counts:?}"
        );
    }
}

#[test]
fn a_call_marked_for_the_cache_reserves_its_input_at_the_write_price() {
    let an = fake::start(FakeOptions::default());
    let mut marked = ask("claude-x", false);
    marked["messages"][0]["content"] = json!([{"type": "text", "text": "be brief",
        "cache_control": {"type": "ephemeral", "ttl": "1h"}}]);
    let plain = ask("claude-x", false);
    let bytes = |v: &Value| serde_json::to_vec(v).unwrap().len() as u64;
    // Worst cases in millionths of a dollar: the request's bytes as input tokens, at 3
    // (plain input) or 6 (the 1-hour write price, 2 × 3), plus 50 output tokens at 15.
    let (worst_marked, worst_plain) = (bytes(&marked) * 6 + 750, bytes(&plain) * 3 + 750);
    let limit = worst_marked - 1;
    assert!(limit >= worst_plain);
    let more = format!(
        "budgets: {{daily_usd: \"{}.{:06}\"}}\n",
        limit / 1_000_000,
        limit % 1_000_000
    );
    let gw = Gw::one(
        &an,
        Protocol::Anthropic,
        "claude-x",
        Some(("3", "15")),
        &more,
    );
    let r = gw.chat(&marked, &[]);
    assert_eq!(r.status, 402, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "budget_exceeded");
    let r = gw.chat(&plain, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Regression: Anthropic's reasoning was stored as 0 reported by the provider, though it
/// reports thinking only inside output_tokens.
#[test]
fn anthropic_reasoning_is_estimated_from_thinking_and_not_charged_twice() {
    let thinking = "the user wants a greeting, so keep it short and friendly";
    let an = fake::start(FakeOptions {
        thinking: thinking.into(),
        output_tokens: 40,
        ..FakeOptions::default()
    });
    let gw = Gw::one(&an, Protocol::Anthropic, "claude-x", Some(("3", "15")), "");
    for stream in [false, true] {
        let r = gw.chat(&ask("claude-x", stream), &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            !r.body.contains("greeting"),
            "thinking is not passed on: {}",
            r.body
        );
    }
    let rows = gw.receipts(2);
    // 12 × 3 + 40 × 15, per million: the thinking is in the 40 output tokens.
    let costs: Vec<&str> = rows.iter().map(|r| r["cost"].as_str().unwrap()).collect();
    assert_eq!(costs, ["0.000636", "0.000636"]);
    let conn = rusqlite::Connection::open(gw.ws.path("telemetry/pas.db")).unwrap();
    let counts: Vec<(i64, i64)> = conn
        .prepare("SELECT output_tokens, reasoning_tokens FROM receipts")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // 56 bytes of thinking, about 4 bytes a token.
    assert_eq!(counts, vec![(40, 14); 2]);
}

/// `x-pas-overhead-ms` of `r` as a number (fails the test when it is missing).
fn overhead_ms(what: &str, r: &Reply) -> f64 {
    r.header("x-pas-overhead-ms")
        .unwrap_or_else(|| panic!("{what}: no x-pas-overhead-ms: {r:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Regression: a failed call was reported with no upstream time, so a 502 after a 2 s
/// timeout claimed ~2,000 ms of pas overhead, in its header and in /metrics.
#[test]
fn a_failed_call_reports_pas_own_overhead_not_the_upstream_wait() {
    let up = fake::start(FakeOptions::default());
    up.set_mode(fake::Mode::Hang);
    let gw = Gw::one(&up, Protocol::Openai, "m", Some(("1", "1")), "");
    let r = gw.chat(&ask("m", false), &[]);
    assert_eq!(r.status, 502, "{}", r.body);
    let overhead = overhead_ms("502", &r);
    assert!(
        (0.0..1000.0).contains(&overhead),
        "the 2 s timeout is upstream time, not overhead: {overhead}"
    );
    let (dash, _) = gw.ws.addresses();
    let metrics = http::get(&format!("http://{dash}/metrics")).body;
    let sum: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pas_gateway_overhead_ms_sum "))
        .unwrap_or_else(|| panic!("{metrics}"))
        .parse()
        .unwrap();
    assert!(sum < 1000.0, "the histogram counts the wait: {sum}");
}

/// Regression: axum's own 404, 405 and 413 had no `x-pas-overhead-ms` and a plain-text
/// body an OpenAI client cannot read; and the body extractor's default 2 MB limit refused
/// long-context prompts.
#[test]
fn every_gateway_answer_has_its_overhead_and_an_openai_shaped_error() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::one(&up, Protocol::Openai, "m", Some(("1", "1")), "");
    let r = http::get(&format!("{}/v1/models", gw.url));
    assert_eq!(r.status, 200);
    overhead_ms("models", &r);
    for (method, path, status) in [
        ("GET", "/nope", 404),
        ("POST", "/v1/embeddings", 404),
        ("GET", "/v1/chat/completions", 405),
        ("DELETE", "/v1/models", 405),
        ("PUT", "/chat/completions", 405),
    ] {
        let what = format!("{method} {path}");
        let r = http::send(method, &format!("{}{path}", gw.url), &[], None);
        assert_eq!(r.status, status, "{what}: {}", r.body);
        overhead_ms(&what, &r);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json"),
            "{what}"
        );
        let e = &r.json()["error"];
        assert!(
            e["message"].as_str().is_some_and(|m| m.contains(path))
                && e["type"].is_string()
                && e["code"].is_string()
                && e.get("param").is_some_and(Value::is_null),
            "{what}: {e}"
        );
        if status == 405 {
            assert!(r.header("allow").is_some(), "{what}");
        }
    }
    // A prompt above axum's default 2 MB is a long context, not an attack.
    let mut big = ask("m", false);
    big["messages"][1]["content"] = json!("many words ".repeat(300_000));
    let r = gw.chat(&big, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    overhead_ms("a 3 MB prompt", &r);
}

#[test]
fn a_body_above_gateway_max_body_mb_is_a_413_naming_the_limit() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::one(
        &up,
        Protocol::Openai,
        "m",
        Some(("1", "1")),
        "gateway: {max_body_mb: 1}\n",
    );
    let mut body = ask("m", false);
    body["messages"][1]["content"] = json!("x".repeat(1_100_000));
    let (_, addr) = gw.ws.addresses();
    let r = crate::support::http::raw(
        &addr,
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        &body.to_string(),
    );
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.header("x-pas-overhead-ms").is_some(), "{r:?}");
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("1 MiB") && msg.contains("gateway.max_body_mb"),
        "{msg}"
    );
    assert_eq!(v["error"]["code"], "request_too_large");
    assert_eq!(up.requests(), 0);
    // Below the limit, served.
    body["messages"][1]["content"] = json!("x".repeat(900_000));
    assert_eq!(gw.chat(&body, &[]).status, 200);
}
