//! Replay (SPEC section 13) end to end: a call recorded by the real gateway against a fake
//! upstream, `pas replay` writing the card, the daemon running it through the gateway,
//! the upstream getting the recorded request (tool history and all), and the receipt and
//! span naming the original.

use pas::llm::config::Protocol;
use pas::llm::fake::{self, FakeOptions};
use rust_decimal::Decimal;
use serde_json::json;

use crate::support::gateway::{ask, Gw};
use crate::support::traces::replay_receipts;
use crate::support::traces::spans_when;
use crate::support::workspace::Workspace;

fn inbox_files(ws: &Workspace) -> usize {
    std::fs::read_dir(ws.work("inbox"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".yaml"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn traces_replay_of_a_tool_calling_conversation_on_another_model_has_exact_receipts() {
    let calls = vec![fake::FakeToolCall {
        id: "call_9".into(),
        name: "weather".into(),
        arguments: json!({"city": "Bergen"}),
    }];
    let up = fake::start(FakeOptions {
        tool_calls: calls,
        input_tokens: 1234,
        output_tokens: 567,
        ..FakeOptions::default()
    });
    let gw = crate::support::gateway::two_models(&up);
    let body = json!({"model": "m", "temperature": 0.7, "messages": [
        {"role": "user", "content": "weather in Oslo and Bergen?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_0", "type": "function",
            "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "4 C"}],
        "tools": [{"type": "function", "function": {"name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]});
    let r = gw.chat(&body, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let trace = r.header("x-pas-trace-id").unwrap();
    let span = r.header("x-pas-span-id").unwrap();
    spans_when(&gw.ws, &trace, "the recorded call", |s| s.len() == 1);
    let target = format!("{trace}/{span}");

    let out = gw.ws.pas_json(&[
        "replay",
        &target,
        "--model",
        "n",
        "--set",
        "temperature=0",
        "--wait",
        "--json",
    ]);
    assert_eq!(out["state"], "done", "{out}");
    assert_eq!(out["replay_of"], target.as_str());
    assert_eq!(out["replay"]["model"], "n");
    assert_eq!(out["original"]["model"], "m");
    assert_eq!(out["replay"]["answer"]["tool_calls"][0]["name"], "weather");
    assert_eq!(
        out["original"]["answer"]["tool_calls"][0]["name"],
        "weather"
    );
    // 1234 in at $3/Mtok + 567 out at $15/Mtok, exactly.
    let want: Decimal = "0.012207".parse().unwrap();
    assert_eq!(out["replay"]["cost_usd"], want.to_string());
    assert_eq!(out["original"]["cost_usd"], "0.006904");

    // The upstream got the recorded conversation, tool history and tools whole, edited.
    let (_, sent) = up.last_request().unwrap();
    assert_eq!(sent["model"], "n");
    assert_eq!(sent["temperature"], 0);
    assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], "call_0");
    assert_eq!(sent["messages"][2]["tool_call_id"], "call_0");
    assert_eq!(sent["messages"][2]["role"], "tool");
    assert_eq!(sent["tools"][0]["function"]["name"], "weather");

    let job = out["job"].as_str().unwrap();
    let rows = replay_receipts(&gw.ws, &target);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "n");
    assert_eq!(rows[0].1.parse::<Decimal>().unwrap(), want);
    assert_eq!(rows[0].2, job);

    // The replay's span is in the card's new trace, naming the original.
    let card = gw.ws.card(job);
    assert_eq!(card["replay_of"], target.as_str());
    let spans = spans_when(&gw.ws, job, "the replay's call", |s| {
        s.iter().any(|x| x["kind"] == "llm")
    });
    let call = spans.iter().find(|s| s["kind"] == "llm").unwrap();
    assert_ne!(call["trace_id"], trace.as_str());
    assert_eq!(call["attrs"]["pas.replay_of"], target.as_str());
    assert_eq!(call["cost_usd"], want.to_string());
}

#[test]
fn traces_replay_of_an_anthropic_protocol_call_prints_both_answers() {
    let up = fake::start(FakeOptions {
        text: "bonjour".into(),
        ..FakeOptions::default()
    });
    let gw = Gw::one(&up, Protocol::Anthropic, "claude-x", Some(("3", "15")), "");
    let r = gw.chat(&ask("claude-x", true), &[]);
    assert_eq!(r.status, 200);
    let trace = r.header("x-pas-trace-id").unwrap();
    let span = r.header("x-pas-span-id").unwrap();
    spans_when(&gw.ws, &trace, "the recorded call", |s| {
        s.len() == 1 && s[0]["output"].is_object()
    });
    let target = format!("{trace}/{span}");
    let out = gw.ws.pas(&["replay", &target, "--wait"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("--- original (claude-x, $0.000111)"),
        "{text}"
    );
    assert!(text.contains("--- replay (claude-x, $0.000111)"), "{text}");
    assert_eq!(text.matches("bonjour").count(), 2, "{text}");
    // The Messages API got the recorded request, translated as the original was.
    let (headers, sent) = up.last_request().unwrap();
    assert!(headers.iter().any(|(k, _)| k == "anthropic-version"));
    assert_eq!(sent["system"], "be brief");
    assert_eq!(sent["max_tokens"], 50);
    assert_eq!(sent["messages"][0]["content"], "say hello");
    assert_eq!(replay_receipts(&gw.ws, &target).len(), 1);
}

#[test]
fn traces_replay_is_refused_with_why_when_no_request_was_recorded() {
    for capture in ["metadata", "off"] {
        let up = fake::start(FakeOptions::default());
        let gw = Gw::paid(&up, &format!("traces: {{capture: {capture}}}\n"));
        let r = gw.chat(&ask("m", false), &[]);
        assert_eq!(r.status, 200);
        let target = format!(
            "{}/{}",
            r.header("x-pas-trace-id").unwrap(),
            r.header("x-pas-span-id").unwrap()
        );
        gw.receipts(1);
        if capture == "metadata" {
            spans_when(&gw.ws, &target[..32], "the span", |s| s.len() == 1);
        }
        let out = gw.ws.pas(&["replay", &target]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains(&format!("capture is {capture}")),
            "{capture}: {err}"
        );
        assert_eq!(inbox_files(&gw.ws), 0, "{capture}: no card written");
    }
    let ws = Workspace::new();
    let out = ws.pas(&["replay", "nonsense"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("TRACE_ID/SPAN_ID"));
}

#[test]
fn traces_resume_from_a_checkpoint_drops_a_card_needing_the_jobs_capabilities() {
    let ws = Workspace::new();
    let _d = ws.serve();
    ws.drop_card(
        "J-cp",
        "title: port the parser\nrequires: [rust, nobody-has-this]\n",
    );
    let card = ws.wait_recorded("J-cp");
    let trace = card["pas"]["trace_id"].as_str().unwrap().to_string();
    let root = card["pas"]["span_id"].as_str().unwrap().to_string();
    let path = ws.work(&format!("traces/{trace}.jsonl"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let line = json!({"span_id": "c0c0c0c0c0c0c0c0", "parent_id": root, "name": "after step 3",
        "kind": "checkpoint", "start": "2026-12-07T10:00:00Z", "end": "2026-12-07T10:00:01Z",
        "agent": "coder-1", "output": {"step": 3, "done": ["lexer"], "next": "<parser>"}});
    let tool = json!({"span_id": "d0d0d0d0d0d0d0d0", "parent_id": root, "name": "cargo test",
        "kind": "tool", "start": "2026-12-07T10:00:02Z", "status": "ok"});
    std::fs::write(&path, format!("{line}\n{tool}\n")).unwrap();
    spans_when(&ws, &trace, "the checkpoint", |s| s.len() == 3);

    let out = ws.pas_json(&[
        "replay",
        "--resume",
        &format!("{trace}/c0c0c0c0c0c0c0c0"),
        "--json",
    ]);
    assert_eq!(out["original_job"], "J-cp");
    let id = out["job"].as_str().unwrap();
    let resumed = serde_json::to_value(ws.card(id)).unwrap();
    assert_eq!(resumed["requires"], json!(["rust", "nobody-has-this"]));
    assert_eq!(resumed["resume_from"], format!("{trace}/c0c0c0c0c0c0c0c0"));
    assert_eq!(resumed["resume_state"]["next"], "<parser>");
    assert_eq!(resumed["resume_state"]["done"], json!(["lexer"]));

    // Not a checkpoint, or not with edits: refused, saying why.
    let bad = ws.pas(&["replay", "--resume", &format!("{trace}/d0d0d0d0d0d0d0d0")]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a checkpoint"));
    let both = ws.pas(&[
        "replay",
        "--resume",
        "--model",
        "m",
        &format!("{trace}/c0c0c0c0c0c0c0c0"),
    ]);
    assert!(!both.status.success());
}

#[test]
fn traces_replay_of_an_anthropic_tool_history_sends_tool_use_and_tool_result_blocks() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::one(&up, Protocol::Anthropic, "claude-x", Some(("3", "15")), "");
    let body = json!({"model": "claude-x", "max_tokens": 64, "messages": [
        {"role": "user", "content": "weather in Oslo?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_7", "type": "function",
            "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_7", "content": "4 C"}],
        "tools": [{"type": "function", "function": {"name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]});
    let r = gw.chat(&body, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, original) = up.last_request().unwrap();
    let trace = r.header("x-pas-trace-id").unwrap();
    let target = format!("{trace}/{}", r.header("x-pas-span-id").unwrap());
    spans_when(&gw.ws, &trace, "the recorded call", |s| s.len() == 1);
    let out = gw.ws.pas_json(&["replay", &target, "--wait", "--json"]);
    assert_eq!(out["state"], "done", "{out}");
    let (_, replayed) = up.last_request().unwrap();
    // The Messages API got the same conversation: tool_use and tool_result blocks, tools.
    assert_eq!(replayed["messages"], original["messages"]);
    assert_eq!(replayed["tools"], original["tools"]);
    assert_eq!(replayed["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(replayed["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(
        replayed["messages"][2]["content"][0]["tool_use_id"],
        "toolu_7"
    );
    assert_eq!(replay_receipts(&gw.ws, &target).len(), 1);
}
