//! Agent commands: pause and resume (the board respects them), heartbeats appended as
//! JSON lines, and `pas agents` with its tree and JSON shapes.

use std::fs;

use crate::support::workspace::Workspace;

#[test]
fn paused_agent_keeps_its_card_and_gets_no_new_one_until_resumed() {
    let ws = Workspace::new();
    ws.register("a", &[], 2);
    let _d = ws.serve_ready();
    ws.drop_card("first", "title: one\n");
    ws.wait_assigned("first", "a");

    ws.pas_ok(&["pause", "a"]);
    ws.wait_commit_line("pas: pause a");
    ws.drop_card("second", "title: two\n");
    let card = ws.wait_card("a reason for second", "second", |c| {
        c["pas"]["waiting_for"].as_str().is_some()
    });
    assert_eq!(
        card["pas"]["waiting_for"],
        "every registered agent is paused (a)"
    );
    assert_eq!(
        ws.state_of("first").as_deref(),
        Some("assigned/a"),
        "pause keeps the work"
    );
    let status = ws.pas_json(&["status", "--json"]);
    let a = status["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "a")
        .unwrap()
        .clone();
    assert_eq!(a["status"], "paused");

    ws.pas_ok(&["resume", "a"]);
    ws.wait_commit_line("pas: resume a");
    ws.wait_assigned("second", "a");
}

#[test]
fn pause_of_an_unregistered_agent_is_an_error() {
    let ws = Workspace::new();
    let out = ws.pas(&["pause", "ghost"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: ghost is not registered"), "{err}");
}

#[test]
fn heartbeats_are_appended_as_json_lines_and_shown_by_pas_agents() {
    let ws = Workspace::new();
    ws.register("coder-1", &[], 1);
    ws.pas_ok(&["heartbeat", "coder-1", "--status", "idle"]);
    ws.pas_ok(&[
        "heartbeat",
        "coder-1",
        "--status",
        "running",
        "--job",
        "J-1",
        "--ctx-used",
        "50000",
        "--ctx-limit",
        "200000",
        "--note",
        "parsing",
    ]);
    let text = fs::read_to_string(ws.work("heartbeats/coder-1.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["status"], "idle");
    assert_eq!(lines[1]["note"], "parsing");
    assert!(lines[1]["ts"].as_str().unwrap().ends_with('Z'));

    let agents = ws.pas_json(&["agents", "--json"]);
    let c = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "coder-1")
        .unwrap();
    assert_eq!(c["status"], "up");
    assert_eq!(c["epoch"], 1);
    assert_eq!(c["job"], "J-1");
    assert_eq!(c["ctx_ratio"], 0.25);
    assert!(c["last_heartbeat"].as_str().is_some());

    let bad = ws.pas(&["heartbeat", "coder-1", "--status", "sleepy"]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        fs::read_to_string(ws.work("heartbeats/coder-1.jsonl")).unwrap(),
        text
    );
}

#[test]
fn agents_tree_follows_parent_links() {
    let ws = Workspace::new();
    let out = ws.pas_ok(&["agents", "--tree"]);
    let indent = |name: &str| {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from:\n{out}"));
        line.len() - line.trim_start().len()
    };
    // The example swarm: architect -> director-code -> manager-backend -> coder-1.
    assert!(indent("architect") < indent("director-code"), "{out}");
    assert!(indent("director-code") < indent("manager-backend"), "{out}");
    assert!(indent("manager-backend") < indent("coder-1"), "{out}");
    let names: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(
        pos("manager-backend") < pos("coder-1") && pos("coder-1") < pos("manager-frontend"),
        "{out}"
    );
}
