//! `pas mcp` (SPEC section 16) driven by the official MCP Python SDK (`mcp` from PyPI) as a
//! stdio client, with `pas serve` running so every move is committed: the tools are
//! listed with their schemas, a card is submitted with a parent, claimed, beaten on and
//! finished, and the files and `git log` show it; wrong arguments are protocol errors that
//! name the argument and change nothing.

use serde_json::{json, Value};

use crate::review::work_files;
use crate::support::traces::{python_in, run_py};
use crate::support::workspace::{pas_bin, wait_until, Workspace, WAIT};

/// Runs `calls` (a list of `[tool, arguments]`) through one MCP session.
fn mcp(ws: &Workspace, calls: Value) -> Value {
    let py = python_in("pysdk-mcp", "mcp", &["mcp"]);
    run_py(
        "mcp_client.py",
        &py,
        &[pas_bin(), ws.root.to_str().unwrap(), &calls.to_string()],
    )
}

#[test]
fn the_python_sdk_submits_claims_beats_and_finishes_a_child_card_through_pas_mcp() {
    let ws = Workspace::new();
    let _d = ws.serve_ready();
    // Cards needing a capability no agent has: the daemon gives them to nobody, so the
    // claim (a named card: the Maildir rename) is the MCP client's.
    let out = mcp(
        &ws,
        json!([
            ["register", {"name": "mcp-agent"}],
            ["submit", {"title": "Build the thing", "id": "P-1", "requires": ["by-hand"]}],
            ["submit", {"title": "Write the parser", "parent": "P-1", "id": "C-1", "requires": ["by-hand"]}],
            ["claim", {"agent": "mcp-agent", "id": "C-1"}],
            ["heartbeat", {"agent": "mcp-agent", "job": "C-1", "status": "running", "progress": 0.5, "note": "parsing"}],
        ]),
    );
    let names: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "submit",
            "claim",
            "done",
            "fail",
            "register",
            "heartbeat",
            "span",
            "status",
            "show",
            "approve",
            "reject"
        ]
    );
    let submit = &out["tools"][0]["schema"];
    assert_eq!(submit["required"], json!(["title"]), "{submit}");
    assert!(submit["properties"]["parent"].is_object(), "{submit}");
    assert_eq!(out["server"], "pas");
    for c in out["calls"].as_array().unwrap() {
        assert_eq!(c["is_error"], false, "{c}");
    }
    assert_eq!(out["calls"][3]["text"], "C-1");

    // The claim is the agent's: committed as its move, the card in its folder.
    ws.wait_state("C-1", "assigned/mcp-agent");
    wait_until("the claim committed", WAIT, || {
        let log = ws.git(&["log", "--format=%B"]);
        match log
            .lines()
            .any(|l| l.starts_with("pas: C-1 ") && l.ends_with("-> assigned/mcp-agent"))
        {
            true => Ok(()),
            false => Err(log),
        }
    });
    assert_eq!(ws.card("C-1")["parent"], "P-1");
    let beats = std::fs::read_to_string(ws.work("heartbeats/mcp-agent.jsonl")).unwrap();
    assert!(
        beats.contains("\"job\":\"C-1\"") && beats.contains("\"note\":\"parsing\""),
        "{beats}"
    );

    let out = mcp(
        &ws,
        json!([
            ["span", {"job": "C-1", "name": "parse", "kind": "step", "end": true, "status": "ok", "attrs": {"files": 3}}],
            ["done", {"id": "C-1", "result": "parsed"}],
            ["show", {"id": "C-1"}],
            ["status", {}],
        ]),
    );
    for c in out["calls"].as_array().unwrap() {
        assert_eq!(c["is_error"], false, "{c}");
    }
    let card = ws.wait_state("C-1", "done");
    assert_eq!(card["result"], "parsed");
    ws.wait_commit_line("pas: C-1 assigned/mcp-agent -> done");
    let log = ws.git(&["log", "--format=%B", "--", "work/done/C-1.yaml"]);
    assert!(log.contains("pas: C-1 assigned/mcp-agent -> done"), "{log}");
    let status: Value = serde_json::from_str(out["calls"][3]["text"].as_str().unwrap()).unwrap();
    assert!(status["jobs"]["inbox"].as_u64().unwrap() >= 1, "{status}");
    let shown: Value = serde_json::from_str(out["calls"][2]["text"].as_str().unwrap()).unwrap();
    assert_eq!(shown["card"]["parent"], "P-1");
    // The span joined the card's trace.
    let trace = card["pas"]["trace_id"].as_str().unwrap().to_string();
    wait_until("the span in the card's trace", WAIT, || {
        let t = ws.pas(&["trace", &trace, "--json"]);
        let s = String::from_utf8_lossy(&t.stdout).to_string();
        if s.contains("\"parse\"") {
            Ok(())
        } else {
            Err(s)
        }
    });
}

#[test]
fn wrong_arguments_are_mcp_errors_naming_the_argument_and_change_nothing() {
    let ws = Workspace::new();
    let before = work_files(&ws.root);
    let out = mcp(
        &ws,
        json!([
            ["submit", {"description": "no title"}],
            ["submit", {"title": "x", "requires": 5}],
            ["submit", {"title": "x", "priority": "urgent"}],
            ["submit", {"title": "x", "colour": "red"}],
            ["claim", {}],
            ["heartbeat", {"agent": "a", "progress": "half"}],
            ["reject", {"id": "J-1"}],
            ["nonsense", {}],
            ["approve", {"id": "J-404"}],
            ["heartbeat", {"agent": "a", "status": "sleeping"}],
        ]),
    );
    let calls = out["calls"].as_array().unwrap();
    let protocol = |i: usize, needle: &str| {
        let c = &calls[i];
        assert_eq!(c["code"], -32602, "{c}");
        let m = c["message"].as_str().unwrap();
        assert!(m.contains(needle), "{m} should name {needle}");
    };
    protocol(0, "`title`");
    protocol(1, "argument `requires`");
    protocol(2, "argument `priority`");
    protocol(3, "`colour`");
    protocol(4, "`agent`");
    protocol(5, "argument `progress`");
    protocol(6, "`feedback`");
    protocol(7, "unknown tool");
    // A command that refuses is a tool error with the CLI's own words.
    assert_eq!(calls[8]["is_error"], true, "{}", calls[8]);
    assert!(calls[8]["text"].as_str().unwrap().contains("no card J-404"));
    assert_eq!(calls[9]["is_error"], true, "{}", calls[9]);
    assert!(calls[9]["text"]
        .as_str()
        .unwrap()
        .contains("unknown status \"sleeping\""));
    assert_eq!(
        work_files(&ws.root),
        before,
        "a refused call changed the tree"
    );
}

#[test]
fn the_review_tools_approve_and_reject_like_their_cli_twins() {
    let ws = Workspace::new();
    let out = mcp(
        &ws,
        json!([
            ["register", {"name": "rev-agent"}],
            ["submit", {"title": "Needs a look", "id": "RV-1", "review": true}],
            ["claim", {"agent": "rev-agent", "id": "RV-1"}],
            ["done", {"id": "RV-1", "result": "first try"}],
            ["approve", {"id": "RV-1", "colour": "red"}],
            ["reject", {"id": "RV-1", "feedback": "name the files"}],
            ["claim", {"agent": "rev-agent", "id": "RV-1"}],
            ["done", {"id": "RV-1", "result": "second try"}],
            ["show", {"id": "RV-1"}],
            ["approve", {"id": "RV-1", "note": "good"}],
            ["claim", {"agent": "rev-agent"}],
        ]),
    );
    let calls = out["calls"].as_array().unwrap();
    assert_eq!(calls[3]["text"], "RV-1 -> review", "{}", calls[3]);
    assert_eq!(calls[4]["code"], -32602, "{}", calls[4]);
    assert_eq!(
        calls[5]["text"], "RV-1 -> inbox (rejected, attempt 1)",
        "{}",
        calls[5]
    );
    let shown: Value = serde_json::from_str(calls[8]["text"].as_str().unwrap()).unwrap();
    assert_eq!(shown["state"], "review", "{shown}");
    assert_eq!(calls[9]["text"], "RV-1 -> done (approved)", "{}", calls[9]);
    // Nothing to claim: an error result saying so (the CLI says it on stderr, exit 1).
    assert_eq!(calls[10]["is_error"], true, "{}", calls[10]);
    assert_eq!(
        calls[10]["text"],
        "nothing in work/inbox/ that rev-agent can take"
    );
    let card = ws.card("RV-1");
    assert_eq!(ws.state_of("RV-1").as_deref(), Some("done"));
    assert_eq!(card["result"], "second try");
    assert_eq!(card["pas"]["attempts"], 1);
    assert!(card["description"]
        .as_str()
        .unwrap()
        .contains("name the files"));
}
