//! `pas trace diff A B` and `GET /api/traces/{a}/vs/{b}` (SPEC section 13) on two real
//! runs of one workflow: an agent's spans written as JSONL, its LLM calls through the
//! gateway under a `traceparent`. The runs part at a known span (a tool's result), and the
//! second run's last call on a dearer model makes an exact cost delta.

use std::io::Write;

use pas::llm::fake::{self, FakeOptions};
use serde_json::{json, Value};

use crate::support::gateway::Gw;
use crate::support::traces::spans_when;
use crate::support::workspace::Workspace;

fn append(ws: &Workspace, trace: &str, line: Value) {
    let path = ws.work(&format!("traces/{trace}.jsonl"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// One run: agent span, a call, the weather tool (answering `weather`), a call on `last`.
fn run(gw: &Gw, trace: &str, weather: &str, last: &str) {
    let now = || chrono::Utc::now().to_rfc3339();
    let agent = format!("{}a", &trace[..15]);
    append(
        &gw.ws,
        trace,
        json!({"span_id": agent, "name": "forecaster", "kind": "agent", "start": now(),
            "status": "running", "agent": "fc-1"}),
    );
    let tp = format!("00-{trace}-{agent}-01");
    let ask = |m: &str, q: &str| {
        let body = json!({"model": m, "messages": [{"role": "user", "content": q}]});
        let r = gw.chat(&body, &[("traceparent", &tp)]);
        assert_eq!(r.status, 200, "{}", r.body);
    };
    ask("m", "plan the forecast");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let tool = format!("{}b", &trace[..15]);
    append(
        &gw.ws,
        trace,
        json!({"span_id": tool, "parent_id": agent, "name": "weather", "kind": "tool",
            "start": now(), "end": now(), "status": "ok", "attrs": {"tool_call_id": "call_1"},
            "output": weather}),
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    ask(last, "write it up");
    append(
        &gw.ws,
        trace,
        json!({"span_id": agent, "end": now(), "status": "ok"}),
    );
    spans_when(&gw.ws, trace, "the run's four spans", |s| {
        s.len() == 4 && s.iter().all(|x| x["status"] == "ok")
    });
}

#[test]
fn traces_diff_names_the_first_divergence_and_the_exact_cost_delta() {
    let up = fake::start(FakeOptions {
        input_tokens: 1000,
        output_tokens: 200,
        ..FakeOptions::default()
    });
    let gw = crate::support::gateway::two_models(&up);
    let (a, b) = (
        "aaaa0000000000000000000000000001",
        "bbbb0000000000000000000000000002",
    );
    run(&gw, a, "4 C and sunny", "m");
    run(&gw, b, "9 C and rain", "n");

    let out = gw.ws.pas(&["trace", "diff", a, b]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "first divergence: \"weather\" (A {}b, B {}b): output",
            &a[..15],
            &b[..15]
        )),
        "{text}"
    );
    // m: 1000 x $1 + 200 x $10 per Mtok = $0.003; n: 1000 x $3 + 200 x $15 = $0.006.
    assert!(text.contains("delta: tokens +0/+0, cost +$0.003"), "{text}");
    assert!(
        text.contains("A: 4 C and sunny") && text.contains("B: 9 C and rain"),
        "{text}"
    );
    assert!(text.contains("model m vs n"), "{text}");

    let j = gw.ws.pas_json(&["trace", "diff", a, b, "--json"]);
    assert_eq!(j["first_divergence"]["name"], "weather");
    assert_eq!(j["cost_usd_delta"], "0.003");
    assert_eq!(j["totals_a"]["cost_usd"], "0.006");
    assert_eq!(j["totals_b"]["cost_usd"], "0.009");
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{j}");
    let tool = rows.iter().find(|r| r["a"]["name"] == "weather").unwrap();
    assert_eq!(tool["matched_by"], "tool_call_id");
    let last = &rows[3];
    assert_eq!(
        last["matched_by"], "position",
        "chat m and chat n are the same step"
    );
    assert_eq!(last["cost_usd_delta"], "0.003");
    assert_eq!(last["same_output"], true);

    // The dashboard's JSON twin says the same.
    let (dash, _) = gw.ws.addresses();
    let r = crate::support::http::send(
        "GET",
        &format!("http://{dash}/api/traces/{a}/vs/{b}"),
        &[],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let api: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(api["first_divergence"], j["first_divergence"]);
    assert_eq!(api["cost_usd_delta"], "0.003");
    let r = crate::support::http::send(
        "GET",
        &format!("http://{dash}/api/traces/{a}/vs/cccc0000000000000000000000000003"),
        &[],
        None,
    );
    assert_eq!(r.status, 404);
    let bad = gw.ws.pas(&["trace", "diff", a]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("pas trace diff A B"));
}
