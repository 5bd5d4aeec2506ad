//! Traces end to end (SPEC section 13): the real daemon and gateway, real clients (the
//! official OpenAI Python SDK, the OpenTelemetry Python SDK's OTLP/HTTP exporter), spans
//! read back with `pas trace` and `pas traces` and the dashboard's JSON twins.

use pas::llm::config::Protocol;
use pas::llm::fake::{self, FakeOptions, Mode};
use serde_json::{json, Value};

use crate::support::gateway::{ask, model, provider, sse_text, Gw};
use crate::support::traces::{python_with, run_py, spans_when, WAIT};
use crate::support::workspace::wait_until;

fn receipt(gw: &Gw, id: &str) -> Value {
    gw.receipts(1)
        .into_iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("receipt {id}"))
}

#[test]
fn the_openai_sdk_joins_the_callers_trace_with_the_receipts_tokens_and_exact_cost() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::start(
        &[provider(
            "oa",
            &up,
            Protocol::Openai,
            "",
            &model("gpt-x", &["chat"], Some(("0.15", "0.60"))),
        )],
        "",
        &[],
    );
    let py = python_with("openai", &["openai"]);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let seen = run_py(
        "traces_openai.py",
        &py,
        &[&format!("{}/v1", gw.url), trace, parent],
    );
    assert_eq!(seen["trace"], trace, "x-pas-trace-id is the caller's trace");
    let span_id = seen["span"].as_str().unwrap().to_string();
    assert_eq!(span_id.len(), 16);
    let spans = spans_when(&gw.ws, trace, "the call's span", |s| {
        s.iter().any(|x| x["span_id"] == span_id)
    });
    let s = spans.iter().find(|x| x["span_id"] == span_id).unwrap();
    let r = receipt(&gw, seen["receipt"].as_str().unwrap());
    assert_eq!(s["parent_id"], parent);
    assert_eq!(s["kind"], "llm");
    assert_eq!(s["status"], "ok");
    assert_eq!(s["receipt_id"], r["id"]);
    assert_eq!(s["input_tokens"], r["input"]);
    assert_eq!(s["output_tokens"], r["output"]);
    assert_eq!(
        s["cost_usd"], r["cost"],
        "the span's cost is the receipt's, exactly"
    );
    assert_eq!(s["cost_usd"], seen["cost"]);
    assert_eq!(
        (s["provider"].clone(), s["model"].clone()),
        (json!("oa"), json!("gpt-x"))
    );
    assert_eq!(s["agent"], "sdk-agent");
    // The request is kept whole (for a replay), the answer too; never the key.
    assert_eq!(
        s["input"]["messages"][0]["content"],
        "You answer in one line."
    );
    assert_eq!(s["input"]["temperature"], 0.2);
    assert_eq!(
        s["output"]["choices"][0]["message"]["content"],
        seen["text"]
    );
    assert_eq!(s["attrs"]["finish_reason"], "stop");
    let db = std::fs::read(gw.ws.path("telemetry/pas.db")).unwrap_or_default();
    let wal = std::fs::read(gw.ws.path("telemetry/pas.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !String::from_utf8_lossy(&bytes).contains("sk-test-must-never"),
            "the key reached the database"
        );
    }
    // The list and the dashboard's twins say the same.
    let list = gw
        .ws
        .pas_json(&["traces", "--agent", "sdk-agent", "--json"]);
    assert_eq!(list["traces"][0]["trace_id"], trace);
    assert_eq!(list["traces"][0]["cost_usd"], r["cost"]);
    let (dash, _) = gw.ws.addresses();
    let api = crate::support::http::get(&format!("http://{dash}/api/traces/{trace}")).json();
    assert_eq!(api["totals"]["cost_usd"], r["cost"]);
    assert_eq!(api["spans"][0]["span_id"], span_id);
}

#[test]
fn anthropic_protocol_calls_plain_and_streamed_are_spans_with_ttft_and_the_answer() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::one(&up, Protocol::Anthropic, "claude-x", Some(("3", "15")), "");
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let tp = format!("00-{trace}-b7ad6b7169203331-01");
    let plain = gw.chat(&ask("claude-x", false), &[("traceparent", &tp)]);
    assert_eq!(plain.status, 200, "{}", plain.body);
    let streamed = gw.chat(&ask("claude-x", true), &[("traceparent", &tp)]);
    assert_eq!(streamed.status, 200);
    let (text, _, _) = sse_text(&streamed.body);
    let sid = streamed.header("x-pas-span-id").unwrap();
    assert_eq!(streamed.header("x-pas-trace-id").as_deref(), Some(trace));
    let spans = spans_when(&gw.ws, trace, "two call spans", |s| s.len() == 2);
    let st = spans.iter().find(|s| s["span_id"] == sid).unwrap();
    let r = receipt(&gw, &streamed.header("x-pas-receipt").unwrap());
    assert_eq!(st["attrs"]["stream"], true);
    assert!(st["ttft_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(st["output"]["choices"][0]["message"]["content"], text);
    assert_eq!(st["cost_usd"], r["cost"]);
    assert_eq!(st["output_tokens"], r["output"]);
    let pl = spans.iter().find(|s| s["span_id"] != sid).unwrap();
    assert_eq!(pl["output"]["choices"][0]["message"]["content"], text);
    // A call without any context starts a trace of its own, and says which.
    let alone = gw.chat(&ask("claude-x", false), &[]);
    let own = alone.header("x-pas-trace-id").unwrap();
    assert_ne!(own, trace);
    spans_when(&gw.ws, &own, "a trace of its own", |s| {
        s.len() == 1 && s[0]["parent_id"].is_null()
    });
}

#[test]
fn a_fallback_is_the_call_span_with_its_failed_attempt_as_a_child() {
    let bad = fake::start(FakeOptions::default());
    let good = fake::start(FakeOptions::default());
    let gw = crate::support::gateway::pair(&bad, &good, "");
    bad.set_mode(Mode::Status {
        code: 500,
        retry_after: None,
    });
    let r = gw.chat(&ask("cap:x", false), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let trace = r.header("x-pas-trace-id").unwrap();
    let call = r.header("x-pas-span-id").unwrap();
    let spans = spans_when(&gw.ws, &trace, "the call and its failed attempt", |s| {
        s.len() == 2
    });
    let rows = gw.receipts(2);
    let top = spans.iter().find(|s| s["span_id"] == call).unwrap();
    let child = spans.iter().find(|s| s["span_id"] != call).unwrap();
    assert_eq!(child["parent_id"], call);
    assert_eq!(child["status"], "error");
    assert_eq!(child["provider"], "bad");
    assert_eq!(child["receipt_id"], rows[0]["id"]);
    assert!(
        child["attrs"]["error"]
            .as_str()
            .unwrap()
            .starts_with("http_500"),
        "{child}"
    );
    assert_eq!(top["provider"], "good");
    assert_eq!(top["receipt_id"], rows[1]["id"]);
    assert_eq!(top["status"], "ok");
    let tree = gw.ws.pas_ok(&["trace", &trace]);
    assert!(tree.contains("attempt 1 bad/m-bad"), "{tree}");
    assert!(tree.contains("subtree: 2 spans"), "{tree}");
}

#[test]
fn the_opentelemetry_sdk_exports_genai_spans_that_pas_trace_shows() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::paid(&up, "");
    let py = python_with(
        "opentelemetry.exporter.otlp.proto.http",
        &[
            "opentelemetry-sdk",
            "opentelemetry-exporter-otlp-proto-http",
        ],
    );
    let seen = run_py("otel_genai.py", &py, &[&gw.url]);
    let trace = seen["trace"].as_str().unwrap().to_string();
    let spans = spans_when(&gw.ws, &trace, "four OTLP spans", |s| s.len() == 4);
    let by = |name: &str| spans.iter().find(|s| s["name"] == name).unwrap().clone();
    let agent = by("invoke_agent planner");
    assert_eq!(agent["kind"], "agent");
    assert_eq!(agent["agent"], "otel-agent");
    let new = by("chat gpt-new");
    assert_eq!(new["kind"], "llm");
    assert_eq!(
        (new["input_tokens"].clone(), new["output_tokens"].clone()),
        (json!(31), json!(7))
    );
    assert_eq!(new["parent_id"], agent["span_id"]);
    assert_eq!(
        new["input"]["messages"][0]["parts"][0]["content"],
        "plan the release"
    );
    assert_eq!(
        new["output"]["messages"][0]["parts"][0]["content"],
        "step one"
    );
    let old = by("chat gpt-old");
    assert_eq!(old["kind"], "llm");
    assert_eq!(
        (old["input_tokens"].clone(), old["model"].clone()),
        (json!(11), json!("gpt-old"))
    );
    assert_eq!(old["input"]["messages"][0]["content"], "old style question");
    assert_eq!(old["output"]["messages"][0]["content"], "old style answer");
    assert!(
        old["attrs"].get("gen_ai.prompt.0.content").is_none(),
        "content is not an attribute"
    );
    let tool = by("execute_tool grep");
    assert_eq!(tool["kind"], "tool");
    assert_eq!(
        tool["attrs"]["http.request.header.authorization"],
        "[redacted]"
    );
    let tree = gw.ws.pas_ok(&["trace", &trace]);
    assert!(tree.contains("llm chat gpt-new"), "{tree}");
    assert!(tree.contains("tokens 31/7"), "{tree}");
    assert!(tree.contains("subtree: 4 spans, tokens 42/10"), "{tree}");
}

/// `POST /v1/traces` with raw bytes: (status, content-type, body).
pub(crate) fn post_raw(url: &str, ct: &str, body: Vec<u8>) -> (u16, String, Vec<u8>) {
    post_with(url, &[("content-type", ct)], body)
}

/// As [`post_raw`], with any headers.
pub(crate) fn post_with(
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    crate::support::http::block_on(async {
        let mut req = reqwest::Client::new().post(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.body(body).send().await.unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, ct, r.bytes().await.unwrap().to_vec())
    })
}

#[test]
fn otlp_json_is_taken_and_garbage_or_an_oversized_body_is_refused_with_a_reason() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::paid(&up, "gateway: {max_body_mb: 1}\n");
    let url = format!("{}/v1/traces", gw.url);
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "json span",
         "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000500000000",
         "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}}]},
        {"traceId": "", "spanId": "eee19b7ec3c1b175", "name": "no trace id"}]}]}]});
    let (status, ct, out) = post_raw(&url, "application/json", body.to_string().into_bytes());
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["partialSuccess"]["rejectedSpans"], 1, "{out}");
    assert!(out["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("no trace id"));
    let spans = spans_when(
        &gw.ws,
        "5b8efff798038103d269b633813fc60c",
        "the JSON span",
        |s| s.len() == 1,
    );
    assert_eq!(
        (spans[0]["kind"].clone(), spans[0]["duration_ms"].clone()),
        (json!("tool"), json!(500.0))
    );

    let (status, _, out) = post_raw(
        &url,
        "application/x-protobuf",
        b"\xff\xfe garbage \x00\x01".to_vec(),
    );
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&out).contains("not an OTLP protobuf"),
        "{out:?}"
    );
    let (status, _, out) = post_raw(&url, "application/json", b"{\"resourceSpans\": 7}".to_vec());
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&out).contains("not OTLP JSON"));
    let (status, _, _) = post_raw(&url, "text/plain", b"hello".to_vec());
    assert_eq!(status, 415);
    let (status, _, out) = post_raw(&url, "application/json", vec![b' '; 3 << 20]);
    assert_eq!(status, 413);
    let msg: Value = serde_json::from_slice(&out).unwrap();
    assert!(
        msg["message"].as_str().unwrap().contains("max_body_mb"),
        "{msg}"
    );
    // gzip is taken; a small body that unpacks past the limit (a zip bomb) is not.
    let gz = |bytes: &[u8]| {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    let one = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "6b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b176", "name": "gzip span",
         "startTimeUnixNano": "1700000000000000000"}]}]}]});
    let json_gz = [
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    let (status, _, _) = post_with(&url, &json_gz, gz(one.to_string().as_bytes()));
    assert_eq!(status, 200);
    spans_when(
        &gw.ws,
        "6b8efff798038103d269b633813fc60c",
        "the gzip span",
        |s| s.len() == 1,
    );
    let bomb = gz(&vec![b' '; 64 << 20]);
    assert!(bomb.len() < 1 << 20, "the bomb is small: {}", bomb.len());
    let (status, _, out) = post_with(&url, &json_gz, bomb);
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&out));
    // Each refusal is a trace.rejected event naming it; the gateway goes on answering.
    wait_until("trace.rejected events", WAIT, || {
        let n = crate::support::liveness::events(&gw.ws, "trace.rejected").len();
        if n >= 5 {
            Ok(())
        } else {
            Err(format!("{n} events"))
        }
    });
    assert_eq!(gw.chat(&ask("m", false), &[]).status, 200);
}

#[test]
fn capture_metadata_and_off_keep_no_message_text_anywhere_on_disk() {
    for capture in ["metadata", "off"] {
        let up = fake::start(FakeOptions {
            text: "ANSWER-TEXT-7731".into(),
            ..FakeOptions::default()
        });
        let gw = Gw::paid(&up, &format!("traces: {{capture: {capture}}}\n"));
        let body =
            json!({"model": "m", "messages": [{"role": "user", "content": "PROMPT-TEXT-4417"}]});
        let r = gw.chat(&body, &[]);
        assert_eq!(r.status, 200);
        let trace = r.header("x-pas-trace-id").unwrap();
        gw.receipts(1);
        if capture == "metadata" {
            let spans = spans_when(&gw.ws, &trace, "the span without text", |s| s.len() == 1);
            assert!(spans[0]["input"].is_null() && spans[0]["output"].is_null());
            assert!(spans[0]["input_tokens"].as_u64().unwrap() > 0);
        } else {
            // A second call's receipt is the barrier: what the first call stored (a span,
            // were one kept) reached the database before it.
            assert_eq!(gw.chat(&body, &[]).status, 200);
            gw.receipts(2);
            assert!(
                !gw.ws.pas(&["trace", &trace]).status.success(),
                "capture off records no span"
            );
        }
        for entry in walkdir::WalkDir::new(gw.ws.path("")).into_iter().flatten() {
            if entry.file_type().is_file() {
                let bytes = std::fs::read(entry.path()).unwrap_or_default();
                let text = String::from_utf8_lossy(&bytes);
                for marker in ["PROMPT-TEXT-4417", "ANSWER-TEXT-7731"] {
                    assert!(
                        !text.contains(marker),
                        "{capture}: {marker} in {}",
                        entry.path().display()
                    );
                }
            }
        }
    }
}

#[test]
fn an_llm_card_run_by_pas_is_an_llm_span_under_its_cards_root_span() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::paid(&up, "");
    gw.ws.drop_card(
        "J-llm",
        "title: summarize\nllm:\n  model: m\n  messages:\n    - {role: user, content: \"sum it up\"}\n  max_tokens: 40\n",
    );
    let done = gw.ws.wait_state("J-llm", "done");
    let receipt = done["result"]["receipt_id"].as_str().unwrap().to_string();
    let cost = done["result"]["cost_usd"].as_str().unwrap().to_string();
    let spans = spans_when(&gw.ws, "J-llm", "the card's root and its call", |s| {
        s.len() == 2 && s.iter().any(|x| x["kind"] == "job" && x["status"] == "ok")
    });
    let root = spans.iter().find(|s| s["kind"] == "job").unwrap();
    let call = spans.iter().find(|s| s["kind"] == "llm").unwrap();
    assert_eq!(call["parent_id"], root["span_id"]);
    assert_eq!(call["receipt_id"], receipt);
    assert_eq!(call["cost_usd"], cost.as_str());
    assert_eq!(call["job"], "J-llm");
    assert_eq!(call["input"]["messages"][0]["content"], "sum it up");
}

#[test]
fn a_tool_calling_conversation_is_kept_whole_and_streamed_tool_calls_are_pieced_together() {
    for protocol in [Protocol::Openai, Protocol::Anthropic] {
        let calls = ["Oslo", "Bergen"]
            .iter()
            .enumerate()
            .map(|(n, city)| fake::FakeToolCall {
                id: format!("toolu_{n}"),
                name: "weather".into(),
                arguments: json!({"city": city}),
            })
            .collect();
        let up = fake::start(FakeOptions {
            tool_calls: calls,
            ..FakeOptions::default()
        });
        let gw = Gw::one(&up, protocol, "m", Some(("1", "10")), "");
        let body = |stream: bool| {
            json!({"model": "m", "stream": stream, "messages": [
                {"role": "user", "content": "weather in Oslo and Bergen?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_0", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "call_0", "content": "4 C"}],
                "tools": [{"type": "function", "function": {"name": "weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]})
        };
        for stream in [false, true] {
            let r = gw.chat(&body(stream), &[]);
            assert_eq!(r.status, 200, "{protocol:?} {}", r.body);
            let trace = r.header("x-pas-trace-id").unwrap();
            let spans = spans_when(&gw.ws, &trace, "the call's span", |s| s.len() == 1);
            let s = &spans[0];
            // The request's tool history and tools, as sent (what a replay needs).
            assert_eq!(
                s["input"]["messages"][2]["tool_call_id"], "call_0",
                "{protocol:?}"
            );
            assert_eq!(s["input"]["tools"][0]["function"]["name"], "weather");
            let msg = &s["output"]["choices"][0]["message"];
            let got: Vec<Value> = msg["tool_calls"].as_array().cloned().unwrap_or_default();
            assert_eq!(got.len(), 2, "{protocol:?} stream={stream}: {s}");
            let args: Value =
                serde_json::from_str(got[1]["function"]["arguments"].as_str().unwrap()).unwrap();
            assert_eq!(args["city"], "Bergen", "{protocol:?} stream={stream}");
            assert_eq!(got[1]["function"]["name"], "weather");
            assert_eq!(s["output"]["choices"][0]["finish_reason"], "tool_calls");
        }
    }
}
