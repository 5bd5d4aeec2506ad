//! The CLI surface (SPEC section 10): `--json` shapes of the reading commands with no
//! daemon running, `pas validate`, exit codes and error format.

use serde_json::Value;

use crate::support::workspace::Workspace;

/// Asserts `v` is an object with every one of `keys`.
fn has_keys(v: &Value, keys: &[&str], what: &str) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {v}"));
    for k in keys {
        assert!(obj.contains_key(*k), "{what} lacks {k:?}: {v}");
    }
}

/// Asserts `v` is a decimal number written as a string (money is never a float).
fn is_decimal_string(v: &Value, what: &str) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    assert!(
        s.parse::<f64>().is_ok() && !s.contains('e'),
        "{what} is not a decimal: {s:?}"
    );
}

fn check_status_shape(status: &Value) {
    has_keys(status, &["jobs", "agents", "waiting", "cost_usd"], "status");
    has_keys(
        &status["jobs"],
        &["inbox", "assigned", "done", "failed", "rejected"],
        "status.jobs",
    );
    for k in ["inbox", "assigned", "done", "failed", "rejected"] {
        assert!(
            status["jobs"][k].is_u64(),
            "jobs.{k} is not a count: {}",
            status["jobs"]
        );
    }
    for a in status["agents"].as_array().expect("agents is a list") {
        has_keys(
            a,
            &["name", "status", "last_heartbeat", "assigned", "ctx_ratio"],
            "agent",
        );
        assert!(a["name"].is_string());
        let s = a["status"].as_str().unwrap_or_default();
        assert!(
            ["up", "down", "unregistered", "paused"].contains(&s),
            "agent status {s:?}"
        );
        assert!(
            a["last_heartbeat"].is_null() || a["last_heartbeat"].is_string(),
            "{a}"
        );
        assert!(a["assigned"].is_u64(), "{a}");
        assert!(
            a["ctx_ratio"].is_null() || a["ctx_ratio"].is_number(),
            "{a}"
        );
    }
    for w in status["waiting"].as_array().expect("waiting is a list") {
        has_keys(w, &["id", "reason"], "waiting entry");
        assert!(w["id"].is_string() && w["reason"].is_string(), "{w}");
    }
    has_keys(
        &status["cost_usd"],
        &["today", "month", "total"],
        "cost_usd",
    );
    for k in ["today", "month", "total"] {
        is_decimal_string(&status["cost_usd"][k], &format!("cost_usd.{k}"));
    }
}

#[test]
fn json_shapes_of_reading_commands_without_a_daemon() {
    let ws = Workspace::new();
    ws.register("a", &[], 1);
    // Before any daemon has run.
    let empty = ws.pas_json(&["status", "--json"]);
    check_status_shape(&empty);
    assert_eq!(empty["jobs"]["inbox"], 0);

    // Agents act only once the start-up is over: this test is about shapes, not the
    // start-up race (crash::transition_during_start_up_is_named_in_git).
    let mut d = ws.serve_ready();
    ws.drop_card("j-done", "title: finished\n");
    ws.wait_assigned("j-done", "a");
    ws.pas_ok(&["done", "j-done", "--result", "yes"]);
    ws.drop_card("j-failed", "title: broken\n");
    ws.wait_assigned("j-failed", "a");
    ws.pas_ok(&["fail", "j-failed", "--error", "no"]);
    ws.drop_card("j-busy", "title: running\npriority: high\n");
    ws.wait_state("j-busy", "assigned/a");
    ws.drop_card("j-wait", "title: queued\n");
    ws.wait_card("waiting", "j-wait", |c| c["pas"]["waiting_for"].is_string());
    ws.drop_file("inbox/junk.yaml", b"title: [\n");
    ws.wait_commit_line("pas: j-failed assigned/a -> failed");
    crate::support::workspace::wait_until("junk rejected", crate::support::workspace::WAIT, || {
        if ws.work("rejected/junk.yaml").exists() {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    });
    assert!(d.stop().success());

    let status = ws.pas_json(&["status", "--json"]);
    check_status_shape(&status);
    let jobs = &status["jobs"];
    assert_eq!(
        (
            &jobs["inbox"],
            &jobs["assigned"],
            &jobs["done"],
            &jobs["failed"],
            &jobs["rejected"]
        ),
        (&1.into(), &1.into(), &1.into(), &1.into(), &1.into()),
        "jobs: {jobs}"
    );
    let agents = status["agents"].as_array().unwrap();
    let a = agents
        .iter()
        .find(|a| a["name"] == "a")
        .expect("agent a listed");
    assert_eq!(a["status"], "up");
    assert_eq!(a["assigned"], 1);
    let waiting = status["waiting"].as_array().unwrap();
    assert_eq!(waiting.len(), 1, "waiting: {waiting:?}");
    assert_eq!(waiting[0]["id"], "j-wait");
    assert_eq!(waiting[0]["reason"], "all registered agents are busy");

    let jobs = ws.pas_json(&["jobs", "--json"]);
    let jobs = jobs.as_array().expect("jobs --json is a list");
    assert_eq!(jobs.len(), 4);
    for j in jobs {
        has_keys(j, &["id", "state", "title", "priority", "agent"], "job");
    }
    let busy = jobs.iter().find(|j| j["id"] == "j-busy").unwrap();
    assert_eq!(
        (&busy["state"], &busy["agent"], &busy["priority"]),
        (&"assigned".into(), &"a".into(), &"high".into())
    );
    let done = ws.pas_json(&["jobs", "--state", "done", "--json"]);
    let ids: Vec<&str> = done
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["j-done"]);

    let show = ws.pas_json(&["show", "j-done", "--json"]);
    has_keys(&show, &["id", "state", "title", "history"], "show");
    assert_eq!(show["id"], "j-done");
    assert_eq!(show["state"], "done");
    assert_eq!(show["title"], "finished");
    assert_eq!(show["card"]["result"], "yes");
    let hist: Vec<String> = show["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{} -> {}",
                h["from"].as_str().unwrap(),
                h["to"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        hist,
        ["new -> inbox", "inbox -> assigned/a", "assigned/a -> done"]
    );
    assert!(show["history"][0]["at"].is_string());

    let log = ws.pas_json(&["log", "j-done", "--json"]);
    let log = log.as_array().expect("log --json is a list");
    assert!(!log.is_empty());
    for c in log {
        has_keys(c, &["oid", "author", "time", "lines"], "log entry");
        assert_eq!(c["author"], "pas");
    }
    let lines: Vec<&str> = log
        .iter()
        .flat_map(|c| c["lines"].as_array().unwrap())
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        lines.contains(&"pas: j-done assigned/a -> done"),
        "log lines: {lines:?}"
    );
}

/// Regression: the all-comment `pas.yaml` of `pas init` was reported as an empty document.
#[test]
fn validate_is_clean_on_a_fresh_workspace() {
    let ws = Workspace::bare();
    let out = ws.pas(&["validate"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "pas validate on a fresh workspace: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn validate_is_clean_on_a_configured_workspace() {
    let ws = Workspace::new();
    ws.register("a", &["code"], 2);
    ws.pas_ok(&["submit", "--title", "fine", "--id", "ok-1"]);
    let out = ws.pas(&["validate"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "pas validate: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn validate_points_at_the_bad_line_of_a_card() {
    let ws = Workspace::new();
    ws.drop_card("v1", "title: x\npriority: urgent\n");
    let out = ws.pas(&["validate"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "pas validate: {text}");
    assert!(
        text.contains("work/inbox/v1.yaml:2:"),
        "pas validate output: {text}"
    );
    // It only reads: the card is where it was.
    assert_eq!(ws.state_of("v1").as_deref(), Some("inbox"));
}

#[test]
fn exit_codes_and_error_format() {
    let ws = Workspace::new();
    let usage = ws.pas(&["no-such-command"]);
    assert_eq!(usage.status.code(), Some(2), "unknown subcommand");
    let missing = ws.pas(&["show", "nope"]);
    assert_eq!(missing.status.code(), Some(1), "pas show nope");
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.starts_with("error: "), "stderr: {err:?}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "stderr: {err:?}"
    );
    assert!(ws.pas(&["status"]).status.success());
}
