//! Anthropic's Messages API on the gateway, end to end: the real daemon, real HTTP, fake
//! upstreams of both protocols (started here, or by `pas serve` itself from a `fake:`
//! provider playing a script), receipts read back from the real database.

use pas::llm::config::Protocol;
use pas::llm::fake::{self, Fake, FakeOptions, FakeToolCall};
use serde_json::{json, Value};

use crate::support::gateway::{model, provider, Gw};
use crate::support::http::{self, Reply};
use crate::support::workspace::Workspace;

const TEXT: &str = "hello from the fake upstream";

/// `POST /v1/messages` with `body` and extra headers.
pub fn messages(gw: &Gw, body: &Value, headers: &[(&str, &str)]) -> Reply {
    let mut h = vec![("anthropic-version", "2023-06-01")];
    h.extend_from_slice(headers);
    http::send("POST", &format!("{}/v1/messages", gw.url), &h, Some(body))
}

/// A gateway over an OpenAI-protocol fake serving `gpt-x` (provider `oa`) and an
/// Anthropic-protocol one serving `claude-x` (provider `an`), at `price`, plus `more` of
/// `pas.yaml`.
fn both(oa: &Fake, an: &Fake, price: Option<(&str, &str)>, more: &str) -> Gw {
    Gw::start(
        &[
            provider(
                "oa",
                oa,
                Protocol::Openai,
                "",
                &model("gpt-x", &["chat"], price),
            ),
            provider(
                "an",
                an,
                Protocol::Anthropic,
                "",
                &model("claude-x", &["chat"], price),
            ),
        ],
        more,
        &[],
    )
}

/// The gateway of `ws`'s daemon, started now.
pub fn serving(ws: Workspace) -> Gw {
    let daemon = ws.serve();
    let (_, addr) = ws.addresses();
    Gw {
        ws,
        _daemon: daemon,
        url: format!("http://{addr}"),
    }
}

/// A Messages request.
fn ask(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 50, "stream": stream,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "say hello"}]})
}

/// The events of a Messages stream: (type, data) in order.
pub fn events(body: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut kind = String::new();
    for line in body.lines() {
        if let Some(k) = line.strip_prefix("event: ") {
            kind = k.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}"));
            assert_eq!(v["type"], kind.as_str(), "event name and type agree");
            out.push((kind.clone(), v));
        }
    }
    out
}

/// The text and the tool inputs (joined pieces) a stream carried, and its stop reason.
fn streamed(evs: &[(String, Value)]) -> (String, Vec<String>, String) {
    let mut text = String::new();
    let mut tools: Vec<String> = Vec::new();
    let mut stop = String::new();
    for (k, v) in evs {
        match k.as_str() {
            "content_block_start" if v["content_block"]["type"] == "tool_use" => {
                tools.push(String::new())
            }
            "content_block_delta" => match v["delta"]["type"].as_str() {
                Some("text_delta") => text.push_str(v["delta"]["text"].as_str().unwrap()),
                Some("input_json_delta") => tools
                    .last_mut()
                    .unwrap()
                    .push_str(v["delta"]["partial_json"].as_str().unwrap()),
                _ => {}
            },
            "message_delta" => stop = v["delta"]["stop_reason"].as_str().unwrap().into(),
            _ => {}
        }
    }
    (text, tools, stop)
}

#[test]
fn messages_plain_and_streamed_through_both_protocols_cost_the_same() {
    let oa = fake::start(FakeOptions::default());
    let an = fake::start(FakeOptions::default());
    let price = Some(("3", "15"));
    let gw = both(&oa, &an, price, "");
    let who = [("x-pas-agent", "coder-1"), ("x-pas-job", "J-7")];
    for m in ["gpt-x", "claude-x"] {
        let r = messages(&gw, &ask(m, false), &who);
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert_eq!(v["type"], "message");
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["content"], json!([{"type": "text", "text": TEXT}]));
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["usage"]["input_tokens"], 12);
        assert_eq!(v["usage"]["output_tokens"], 5);
        assert_eq!(r.header("x-pas-model").as_deref(), Some(m));
        assert!(r.header("x-pas-receipt").is_some() && r.header("x-pas-trace-id").is_some());
        assert_eq!(r.header("x-pas-cost-usd").as_deref(), Some("0.000111"));

        let r = messages(&gw, &ask(m, true), &who);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("text/event-stream")
        );
        let evs = events(&r.body);
        let kinds: Vec<&str> = evs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds[..3],
            ["message_start", "content_block_start", "ping"],
            "{kinds:?}"
        );
        assert_eq!(
            kinds[kinds.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
        let (text, tools, stop) = streamed(&evs);
        assert_eq!(
            (text.as_str(), tools.len(), stop.as_str()),
            (TEXT, 0, "end_turn")
        );
        let delta = &evs[evs.len() - 2].1;
        assert_eq!(delta["usage"]["output_tokens"], 5);
        // Anthropic's own stream says the input in message_start only; pas's says both.
        let input = match &delta["usage"]["input_tokens"] {
            Value::Null => &evs[0].1["message"]["usage"]["input_tokens"],
            n => n,
        };
        assert_eq!(input, 12);
    }
    // Upstream, the Messages request arrived as each protocol says it.
    let (_, sent) = an.last_request().unwrap();
    assert_eq!(sent["system"][0]["cache_control"]["type"], "ephemeral");
    let (_, sent) = oa.last_request().unwrap();
    assert_eq!(sent["messages"][0]["role"], "system");
    let rows = gw.receipts(4);
    for r in &rows {
        assert_eq!(
            (r["agent"].as_str(), r["job"].as_str()),
            (Some("coder-1"), Some("J-7"))
        );
        assert_eq!(
            r["cost"], "0.000111",
            "plain and streamed, both protocols: {r}"
        );
        assert_eq!(r["status"], "ok");
    }
    assert_eq!(rows.iter().filter(|r| r["stream"] == true).count(), 2);
}

fn tools_fake() -> FakeOptions {
    FakeOptions {
        text: String::new(),
        tool_calls: vec![FakeToolCall {
            id: "toolu_1".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Paris", "unit": "celsius"}),
        }],
        ..FakeOptions::default()
    }
}

fn ask_tools(m: &str, stream: bool) -> Value {
    json!({"model": m, "max_tokens": 100, "stream": stream,
        "tools": [{"name": "get_weather", "description": "Weather of a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
        "messages": [{"role": "user", "content": "weather in Paris?"}]})
}

#[test]
fn tool_use_round_trips_through_both_protocols() {
    let oa = fake::start(tools_fake());
    let an = fake::start(tools_fake());
    let gw = both(&oa, &an, None, "");
    for (m, up) in [("gpt-x", &oa), ("claude-x", &an)] {
        let v = messages(&gw, &ask_tools(m, false), &[]).json();
        assert_eq!(v["stop_reason"], "tool_use", "{v}");
        assert_eq!(
            v["content"],
            json!([{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                "input": {"city": "Paris", "unit": "celsius"}}])
        );
        let r = messages(&gw, &ask_tools(m, true), &[]);
        let (text, tools, stop) = streamed(&events(&r.body));
        assert_eq!(
            (text.as_str(), stop.as_str()),
            ("", "tool_use"),
            "{}",
            r.body
        );
        let input: Value = serde_json::from_str(&tools[0]).unwrap();
        assert_eq!(input, json!({"city": "Paris", "unit": "celsius"}));
        // The result goes back as the next turn.
        let mut next = ask_tools(m, false);
        next["messages"] = json!([
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": "21 C, sunny"}]}, {"type": "text", "text": "thanks"}]}
        ]);
        assert_eq!(messages(&gw, &next, &[]).status, 200);
        let (_, sent) = up.last_request().unwrap();
        let msgs = sent["messages"].as_array().unwrap();
        if m == "gpt-x" {
            assert_eq!(sent["tool_choice"], "auto");
            assert_eq!(sent["parallel_tool_calls"], false);
            assert_eq!(
                msgs[1]["tool_calls"][0]["function"]["arguments"],
                "{\"city\":\"Paris\"}"
            );
            assert_eq!(msgs[2]["role"], "tool");
            assert_eq!(msgs[2]["tool_call_id"], "toolu_1");
            assert_eq!(msgs[3]["content"][0]["text"], "thanks");
        } else {
            assert_eq!(sent["tool_choice"]["disable_parallel_tool_use"], true);
            assert_eq!(msgs[1]["content"][1]["type"], "tool_use");
            assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
            assert_eq!(msgs[2]["content"][0]["content"][0]["text"], "21 C, sunny");
            assert_eq!(msgs[2]["content"][1]["text"], "thanks");
        }
    }
}

#[test]
fn errors_are_anthropic_shaped_and_aliases_route_client_names() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::one(
        &up,
        Protocol::Openai,
        "local-coder",
        None,
        "model_aliases:\n  claude-sonnet-4-5: local-coder\n  \"claude-*\": \"cap:x\"\n",
    );
    for (asked, served) in [
        ("claude-sonnet-4-5", "local-coder"),
        ("claude-haiku-9", "local-coder"),
    ] {
        let r = messages(&gw, &ask(asked, false), &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("x-pas-model").as_deref(), Some(served));
        // Chat completions take the aliases too.
        let r = gw.chat(&crate::support::gateway::ask(asked, false), &[]);
        assert_eq!(
            (r.status, r.header("x-pas-model").as_deref()),
            (200, Some(served))
        );
    }
    // The model list offers the exact alias (a prefix is no name to list).
    let listed = http::get(&format!("{}/v1/models", gw.url)).json();
    let alias: Vec<&Value> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["pas"]["alias_of"].is_string())
        .collect();
    assert_eq!(alias.len(), 1, "{listed}");
    assert_eq!(alias[0]["id"], "claude-sonnet-4-5");
    assert_eq!(alias[0]["pas"]["alias_of"], "local-coder");
    let r = messages(&gw, &ask("gpt-unknown", false), &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "not_found_error");
    let r = messages(&gw, &json!({"model": "local-coder"}), &[]);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("messages"));
    let server_tool = json!({"model": "local-coder", "max_tokens": 5,
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "messages": [{"role": "user", "content": "hi"}]});
    let r = messages(&gw, &server_tool, &[]);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("web_search"), "{}", r.body);
    let r = http::send(
        "POST",
        &format!("{}/v1/messages", gw.url),
        &[("content-type", "application/json")],
        None,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["type"], "error");
}

#[test]
fn an_alias_to_nothing_stops_the_start_naming_the_key() {
    let up = fake::start(FakeOptions::default());
    let config = format!(
        "providers:\n{}model_aliases:\n  claude-sonnet-4-5: nope\n",
        provider("p", &up, Protocol::Openai, "", &model("m", &["code"], None))
    );
    let ws = Workspace::with_config(&config);
    let out = ws.cmd(&["serve"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("pas.yaml: model_aliases.claude-sonnet-4-5: \"nope\" is no model"),
        "{err}"
    );
}

#[test]
fn count_tokens_asks_an_anthropic_provider_and_estimates_otherwise() {
    let oa = fake::start(FakeOptions::default());
    let an = fake::start(FakeOptions::default());
    let gw = both(&oa, &an, None, "");
    let body =
        json!({"model": "claude-x", "messages": [{"role": "user", "content": "x".repeat(400)}]});
    let url = format!("{}/v1/messages/count_tokens", gw.url);
    let r = http::send("POST", &url, &[], Some(&body));
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, sent) = an.last_request().unwrap();
    assert_eq!(sent["model"], "claude-x");
    // The fake counts a token per 4 bytes of what it was sent.
    let upstream = serde_json::to_vec(&sent).unwrap().len().div_ceil(4) as u64;
    assert_eq!(r.json()["input_tokens"], upstream);
    let mut body = body;
    body["model"] = "gpt-x".into();
    let before = oa.requests();
    let n = http::send("POST", &url, &[], Some(&body)).json()["input_tokens"]
        .as_u64()
        .unwrap();
    assert!((100..=130).contains(&n), "pas's estimate: {n}");
    assert_eq!(oa.requests(), before, "an OpenAI provider is not asked");
    body["model"] = "nope".into();
    let r = http::send("POST", &url, &[], Some(&body));
    assert_eq!(
        (r.status, r.json()["error"]["type"].as_str()),
        (404, Some("not_found_error"))
    );
    // A chat's receipt is the barrier: receipts reach the database in the order they are
    // written, so one for a count would be there before it.
    body["model"] = "gpt-x".into();
    assert_eq!(gw.chat(&body, &[]).status, 200);
    let rows = gw.receipts(1);
    assert_eq!(rows.len(), 1, "counts cost nothing: {rows:?}");
    assert_eq!(rows[0]["model"], "gpt-x", "{rows:?}");
}

#[test]
fn the_gateway_token_is_taken_as_x_api_key() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::start(
        &[provider(
            "p",
            &up,
            Protocol::Anthropic,
            "",
            &model("m", &["x"], None),
        )],
        "",
        &[("PAS_TOKEN", "tok-anthropic")],
    );
    let r = messages(&gw, &ask("m", false), &[("x-api-key", "wrong")]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    let r = messages(&gw, &ask("m", false), &[("x-api-key", "tok-anthropic")]);
    assert_eq!(r.status, 200, "{}", r.body);
    let (headers, _) = up.last_request().unwrap();
    assert!(
        !headers.iter().any(|(_, v)| v.contains("tok-anthropic")),
        "the token stays at pas"
    );
}

/// A `fake:` provider playing a script: each request gets the step of its turn.
pub const SCRIPT: &str = "\
- when: {model: fake-haiku}
  text: side answer
- tool_calls:
    - name: Write
      arguments: {file_path: hello.txt, content: \"hi from the script\\n\"}
- text: I wrote hello.txt.
";

#[test]
fn a_fake_provider_plays_its_script_by_turn_for_both_protocols() {
    let config = [
        "providers:",
        "  - name: scripted",
        "    protocol: anthropic",
        "    fake: {script: script.yaml}",
        "    models:",
        "      - {id: fake-claude, capabilities: [code], price_per_mtok: {input: \"3\", output: \"15\"}}",
        "      - {id: fake-haiku, capabilities: [code], price_per_mtok: {input: \"1\", output: \"5\"}}",
        "  - name: scripted-oa",
        "    protocol: openai",
        "    fake:",
        "      script:",
        "        - text: only step",
        "    models:",
        "      - {id: fake-gpt, capabilities: [chat], price_per_mtok: {input: \"1\", output: \"2\"}}",
        "model_aliases: {\"claude-*\": fake-claude, \"claude-haiku-*\": fake-haiku}",
        "",
    ]
    .join("\n");
    let ws = Workspace::with_config(&config);
    std::fs::write(ws.path("script.yaml"), SCRIPT).unwrap();
    let gw = serving(ws);
    let first = json!({"model": "claude-opus-5", "max_tokens": 100, "stream": true,
        "tools": [{"name": "Write", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "write hello.txt"}]});
    let (_, tools, stop) = streamed(&events(&messages(&gw, &first, &[]).body));
    assert_eq!(stop, "tool_use");
    assert_eq!(
        serde_json::from_str::<Value>(&tools[0]).unwrap()["content"],
        "hi from the script\n"
    );
    let side = json!({"model": "claude-haiku-4-5", "max_tokens": 10,
        "messages": [{"role": "user", "content": "title?"}]});
    let v = messages(&gw, &side, &[]).json();
    assert_eq!(v["content"][0]["text"], "side answer");
    let mut second = first.clone();
    second["stream"] = false.into();
    second["messages"] = json!([{"role": "user", "content": "write hello.txt"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Write", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}]);
    let v = messages(&gw, &second, &[]).json();
    assert_eq!(v["content"][0]["text"], "I wrote hello.txt.");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let r = gw.chat(&crate::support::gateway::ask("fake-gpt", false), &[]);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "only step");
    for r in gw.receipts(4) {
        assert!(r["cost"].as_str().is_some_and(|c| c != "0"), "{r}");
    }
}

#[test]
fn a_bad_script_stops_the_start_naming_file_and_line() {
    let config = "providers:\n  - name: s\n    protocol: openai\n    fake: {script: s.yaml}\n    models: [{id: m}]\n";
    let ws = Workspace::with_config(config);
    std::fs::write(ws.path("s.yaml"), "- text: fine\n- when: {turn: 2}\n").unwrap();
    let out = ws.cmd(&["serve"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("provider s: fake.script:") && err.contains("s.yaml: line 2:"),
        "{err}"
    );
    assert!(err.contains("needs `text`"), "{err}");
}

#[test]
fn an_anthropic_provider_takes_the_request_and_gives_the_answer_as_they_are() {
    let an = fake::start(FakeOptions {
        thinking: "let me think".into(),
        ..FakeOptions::default()
    });
    let oa = fake::start(FakeOptions::default());
    let price = Some(("3", "15"));
    let gw = both(
        &oa,
        &an,
        price,
        "model_aliases: {claude-sonnet-4-5: claude-x}\n",
    );
    let mut body = ask("claude-sonnet-4-5", false);
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    body["metadata"] = json!({"user_id": "u-1"});
    body["context_management"] = json!({"edits": []});
    let beta = ("anthropic-beta", "context-management-2025-06-27");
    let r = messages(&gw, &body, &[beta]);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["content"][0]["type"], "thinking", "{v}");
    assert_eq!(v["content"][0]["signature"], "fake-signature");
    assert_eq!(v["content"][1]["text"], TEXT);
    let (headers, sent) = an.last_request().unwrap();
    assert_eq!(sent["model"], "claude-x");
    assert_eq!(sent["thinking"]["budget_tokens"], 1024);
    assert_eq!(sent["metadata"]["user_id"], "u-1");
    assert_eq!(sent["context_management"], json!({"edits": []}));
    assert!(sent.get("stream").is_none());
    assert!(
        headers.contains(&("anthropic-beta".into(), beta.1.into())),
        "{headers:?}"
    );
    body["stream"] = true.into();
    let r = messages(&gw, &body, &[beta]);
    let evs = events(&r.body);
    assert!(
        evs.iter()
            .any(|(_, v)| v["delta"]["type"] == "thinking_delta"),
        "{}",
        r.body
    );
    assert!(evs
        .iter()
        .any(|(_, v)| v["delta"]["type"] == "signature_delta"));
    let (text, _, stop) = streamed(&evs);
    assert_eq!((text.as_str(), stop.as_str()), (TEXT, "end_turn"));
    assert_eq!(evs.last().unwrap().0, "message_stop");
    assert_eq!(an.last_request().unwrap().1["stream"], true);
    // The same request routed to an OpenAI provider is translated (thinking dropped).
    body["model"] = "gpt-x".into();
    body["stream"] = false.into();
    let v = messages(&gw, &body, &[beta]).json();
    assert_eq!(v["content"], json!([{"type": "text", "text": TEXT}]));
    assert!(oa.last_request().unwrap().1.get("thinking").is_none());
    let rows = gw.receipts(3);
    assert_eq!(
        rows[0]["cost"], rows[1]["cost"],
        "plain and streamed: {rows:?}"
    );
}
