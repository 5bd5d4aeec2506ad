//! The token governor (SPEC section 5): warning at target, breach at hard_max with exactly
//! one save-state card per breach, re-armed once the ratio falls below target.

use std::time::Duration;

use crate::support::liveness::{beat, events, wait_event};
use crate::support::workspace::{holds_for, wait_until, Workspace, FAST, WAIT};

/// Ids of the save-state cards pinned to `agent`, anywhere on the board.
fn save_state_cards(ws: &Workspace, agent: &str) -> Vec<String> {
    let jobs = ws.pas_json(&["jobs", "--json"]);
    jobs.as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] == "save-state" && j["assignee"] == agent)
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect()
}

fn ctx(ws: &Workspace, used: u64) {
    beat(ws, "a", &format!(r#""ctx_used":{used},"ctx_limit":1000"#));
}

#[test]
fn warning_then_one_save_state_card_per_breach_then_rearmed_below_target() {
    let ws = Workspace::with_config(&format!("{FAST}heartbeat_interval_s: 30\n"));
    ws.register("a", &[], 1);
    let _d = ws.serve_ready();
    ws.drop_card("work", "title: ordinary work\n");
    ws.wait_assigned("work", "a");

    ctx(&ws, 400);
    ctx(&ws, 550);
    let (_, warning) = wait_event(&ws, "token.warning", "a", 1);
    assert_eq!(warning["ctx_ratio"], 0.55);
    assert_eq!(warning["target"], 0.5);
    assert!(events(&ws, "token.breach").is_empty());

    ctx(&ws, 800);
    let (_, breach) = wait_event(&ws, "token.breach", "a", 1);
    let id = breach["card"]
        .as_str()
        .expect("the breach names its card")
        .to_string();
    // Pinned to a and critical: it reaches a even though a's one slot is taken.
    let card = ws.wait_assigned(&id, "a");
    assert_eq!(card["kind"], "save-state");
    assert_eq!(card["priority"], "critical");
    let summary = card["summary_path"].as_str().unwrap();
    assert!(
        summary.starts_with("docs/runs/a-") && summary.ends_with("_summary.md"),
        "{summary}"
    );
    assert!(card["description"].as_str().unwrap().contains(summary));

    // While the breach lasts: no second card, and no ordinary work for a.
    ws.drop_card("more", "title: more work\n");
    for used in [850, 900, 780] {
        ctx(&ws, used);
    }
    let waiting = ws.wait_card("a reason", "more", |c| {
        c["pas"]["waiting_for"].as_str().is_some()
    });
    assert_eq!(
        waiting["pas"]["waiting_for"],
        "every registered agent is over its context budget (a)"
    );
    holds_for(
        "one save-state card only",
        Duration::from_millis(800),
        || match save_state_cards(&ws, "a").len() {
            1 => Ok(()),
            n => Err(format!("{n} save-state cards")),
        },
    );

    // The agent saves its state, clears its context, and finishes the card.
    ws.pas_ok(&["done", &id, "--result", "summary written"]);
    ctx(&ws, 100);
    ws.pas_ok(&["done", "work", "--result", "ok"]);
    ws.wait_assigned("more", "a");

    // Below target the governor is re-armed: the next breach opens a new card.
    ctx(&ws, 900);
    let (_, second) = wait_event(&ws, "token.breach", "a", 2);
    let second_id = second["card"].as_str().unwrap();
    assert_ne!(second_id, id);
    wait_until(
        "two save-state cards in all",
        WAIT,
        || match save_state_cards(&ws, "a").len() {
            2 => Ok(()),
            n => Err(format!("{n}")),
        },
    );
}

#[test]
fn thresholds_come_from_the_definition_and_survive_a_restart() {
    let ws = Workspace::with_config(&format!("{FAST}heartbeat_interval_s: 30\n"));
    std::fs::write(
        ws.path("agents/a.md"),
        "---\nname: a\nctx_limit: 1000\ntoken_budget: {target: 0.2, hard_max: 0.4}\n---\nAgent a.\n",
    )
    .unwrap();
    ws.register("a", &[], 1);
    let mut d = ws.serve_ready();
    beat(&ws, "a", r#""ctx_used":450"#); // 45% of the definition's ctx_limit
    let (_, breach) = wait_event(&ws, "token.breach", "a", 1);
    assert_eq!(breach["hard_max"], 0.4);
    let id = breach["card"].as_str().unwrap().to_string();
    ws.wait_assigned(&id, "a");
    d.stop();

    // Restarted with the breach still on and its card still open: no second card.
    let _d = ws.serve_ready();
    beat(&ws, "a", r#""ctx_used":460"#);
    holds_for(
        "still one save-state card",
        Duration::from_millis(800),
        || match save_state_cards(&ws, "a").len() {
            1 => Ok(()),
            n => Err(format!("{n} save-state cards")),
        },
    );
    let agents = ws.pas_json(&["agents", "--json"]);
    assert_eq!(agents[0]["ctx"], "breach", "{agents}");
}

#[test]
fn a_breach_that_began_while_pas_was_down_is_answered_on_the_next_beat() {
    // Regression: the level read at start-up was already "breach", and only a rising
    // level opened a card, so this breach never got one.
    let ws = Workspace::with_config(&format!("{FAST}heartbeat_interval_s: 30\n"));
    ws.register("a", &[], 1);
    ctx(&ws, 900);
    let _d = ws.serve_ready();
    ctx(&ws, 910);
    let (_, breach) = wait_event(&ws, "token.breach", "a", 1);
    let id = breach["card"].as_str().expect("a card for the breach");
    ws.wait_assigned(id, "a");
}
