//! `pas demo`, the main job on the embedded defaults: its agents' work goes through the
//! gateway to the built-in fake provider, so receipts, costs and traces move.

use std::time::Duration;

use rusqlite::Connection;

use crate::fixture::{wait_until, Demo};

/// One number from the demo's database (0 while the daemon has not made it yet).
fn count(demo: &Demo, sql: &str) -> i64 {
    let db = demo.root().join("telemetry").join("pas.db");
    Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
        .unwrap_or(0)
}

#[test]
fn the_demo_makes_priced_calls_through_the_gateway_writes_agent_spans_and_replays_one_call() {
    let demo = Demo::start();
    let wait = Duration::from_secs(75);
    wait_until("priced receipts naming an agent and a job", wait, || {
        let n = count(
            &demo,
            "SELECT count(*) FROM receipts WHERE agent IS NOT NULL AND job_id IS NOT NULL \
             AND cost_usd IS NOT NULL AND CAST(cost_usd AS REAL) > 0",
        );
        (n >= 5).then_some(()).ok_or(format!("{n} so far"))
    });
    wait_until("an agent's own span and its tool span", wait, || {
        let agent = count(
            &demo,
            "SELECT count(*) FROM spans WHERE kind = 'agent' AND source = 'file'",
        );
        let tool = count(
            &demo,
            "SELECT count(*) FROM spans WHERE kind = 'tool' AND name = 'read_file'",
        );
        (agent > 0 && tool > 0)
            .then_some(())
            .ok_or(format!("{agent} agent spans, {tool} tool spans"))
    });
    // The gateway's spans hang under the agent's span (the traceparent it sent).
    let under = count(
        &demo,
        "SELECT count(*) FROM spans l JOIN spans a ON a.trace_id = l.trace_id \
         AND a.span_id = l.parent_id WHERE l.kind = 'llm' AND a.kind = 'agent'",
    );
    assert!(under > 0, "no llm span under an agent span");
    // Both wire protocols answered: the summaries go to the Anthropic-protocol fake.
    let providers = count(
        &demo,
        "SELECT count(DISTINCT provider) FROM receipts WHERE status = 'ok'",
    );
    assert!(providers >= 2, "{providers} providers answered");
    // The replay: a card pas ran itself, its receipt marked as a replay of a recorded call.
    wait_until("a replay with its receipt", wait, || {
        let n = count(
            &demo,
            "SELECT count(*) FROM receipts WHERE replay_of IS NOT NULL",
        );
        (n > 0).then_some(()).ok_or("none yet".to_string())
    });
    let done = std::fs::read_dir(demo.root().join("work").join("done"))
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("replay_of")))
        .count();
    assert_eq!(done, 1, "one replay card finished");
    demo.pas(&["costs"]);
}
