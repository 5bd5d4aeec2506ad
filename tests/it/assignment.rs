//! The rules of assignment (SPEC section 2), one by one, through a running daemon.

use std::fs;
use std::time::Duration;

use crate::support::workspace::{holds_for, wait_until, Workspace, WAIT};

/// Card ids in `work/assigned/<agent>/`, sorted.
fn held_by(ws: &Workspace, agent: &str) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(ws.work(&format!("assigned/{agent}")))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".yaml")
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Waits until the inbox card `id` says why it waits, and returns the reason.
fn wait_waiting(ws: &Workspace, id: &str, reason: &str) {
    ws.wait_card(&format!("waiting_for = {reason:?}"), id, |c| {
        c["pas"]["state"].as_str() == Some("inbox")
            && c["pas"]["waiting_for"].as_str() == Some(reason)
    });
}

#[test]
fn required_capabilities_pick_the_agent() {
    let ws = Workspace::new();
    ws.register("cpu-box", &["code"], 5);
    ws.register("gpu-box", &["gpu"], 5);
    let _d = ws.serve();
    for id in ["g1", "g2", "g3"] {
        ws.drop_card(id, "title: train\nrequires: [gpu]\n");
    }
    ws.drop_card("c1", "title: build\nrequires: [code]\n");
    for id in ["g1", "g2", "g3"] {
        ws.wait_state(id, "assigned/gpu-box");
    }
    ws.wait_state("c1", "assigned/cpu-box");
    assert_eq!(held_by(&ws, "cpu-box"), vec!["c1"]);
}

#[test]
fn unknown_capability_waits_and_says_why_in_file_and_status() {
    let ws = Workspace::new();
    ws.register("gpu-box", &["gpu"], 5);
    let _d = ws.serve();
    ws.drop_card("t1", "title: needs a tpu\nrequires: [tpu]\n");
    wait_waiting(&ws, "t1", "no registered agent has [tpu]");
    assert_eq!(ws.state_of("t1").as_deref(), Some("inbox"));
    let status = ws.pas_json(&["status", "--json"]);
    let waiting = status["waiting"].as_array().expect("waiting is a list");
    assert!(
        waiting
            .iter()
            .any(|w| w["id"] == "t1" && w["reason"] == "no registered agent has [tpu]"),
        "status --json waiting: {waiting:?}"
    );
}

#[test]
fn priority_first_then_age() {
    let ws = Workspace::new();
    let _d = ws.serve();
    // Each card is taken in before the next arrives, so their ages are distinct.
    for (id, prio) in [
        ("low-old", "low"),
        ("med-old", "medium"),
        ("med-new", "medium"),
        ("crit-new", "critical"),
    ] {
        ws.drop_card(id, &format!("title: {id}\npriority: {prio}\n"));
        ws.wait_recorded(id);
    }
    ws.register("solo", &[], 1);
    let mut order = Vec::new();
    for _ in 0..4 {
        let id = wait_until("solo to hold exactly one card", WAIT, || {
            match held_by(&ws, "solo").as_slice() {
                [one] if !order.contains(one) => Ok(one.clone()),
                other => Err(format!("{other:?}")),
            }
        });
        ws.pas_ok(&["done", &id, "--result", "ok"]);
        order.push(id);
    }
    assert_eq!(order, ["crit-new", "med-old", "med-new", "low-old"]);
}

#[test]
fn assignee_pins_the_card() {
    let ws = Workspace::new();
    ws.register("a1", &[], 5);
    ws.register("a2", &[], 5);
    let _d = ws.serve();
    // a1 is alphabetically first and as idle as a2: only the pin sends the card to a2.
    ws.drop_card("pinned", "title: for a2\nassignee: a2\n");
    ws.wait_state("pinned", "assigned/a2");
    ws.drop_card("ghostly", "title: for ghost\nassignee: ghost\n");
    wait_waiting(&ws, "ghostly", "pinned to ghost, who is not registered");
    assert!(held_by(&ws, "a1").is_empty(), "a1 took a pinned card");
    ws.register("ghost", &[], 1);
    ws.wait_state("ghostly", "assigned/ghost");
}

#[test]
fn depends_on_holds_the_card_until_the_dependency_is_done() {
    let ws = Workspace::new();
    ws.register("w", &[], 5);
    let _d = ws.serve();
    ws.drop_card("dep", "title: first\n");
    ws.wait_state("dep", "assigned/w");
    ws.drop_card("child", "title: second\ndepends_on: [dep]\n");
    wait_waiting(&ws, "child", "waiting for dep");
    // The agent finishes by hand: a plain rename into done/.
    fs::rename(ws.work("assigned/w/dep.yaml"), ws.work("done/dep.yaml")).unwrap();
    let child = ws.wait_state("child", "assigned/w");
    assert!(
        child["pas"]["waiting_for"].is_null(),
        "waiting_for kept after assignment: {child:?}"
    );
}

#[test]
fn least_loaded_agent_gets_the_card() {
    let ws = Workspace::new();
    ws.register("a", &[], 5);
    let _d = ws.serve_ready();
    for id in ["x1", "x2"] {
        ws.drop_card(id, "title: x\n");
        ws.wait_state(id, "assigned/a");
    }
    // b arrives idle while a holds two cards and still has room: b gets the next two.
    ws.register("b", &[], 5);
    ws.wait_commit_line("pas: register b (epoch 1)");
    for id in ["y1", "y2"] {
        ws.drop_card(id, "title: y\n");
        ws.wait_state(id, "assigned/b");
    }
    assert_eq!(held_by(&ws, "a"), vec!["x1", "x2"]);
}

#[test]
fn max_concurrent_is_respected() {
    let ws = Workspace::new();
    ws.register("w", &[], 2);
    let _d = ws.serve();
    let ids = ["m1", "m2", "m3", "m4", "m5"];
    for id in ids {
        ws.drop_card(id, "title: m\n");
    }
    wait_until("2 assigned and 3 waiting", WAIT, || {
        let held = held_by(&ws, "w");
        assert!(held.len() <= 2, "w holds {held:?}, over max_concurrent 2");
        let waiting = ids
            .iter()
            .filter(|id| {
                ws.try_card(id)
                    .is_some_and(|c| c["pas"]["waiting_for"] == "all registered agents are busy")
            })
            .count();
        if held.len() == 2 && waiting == 3 {
            Ok(())
        } else {
            Err(format!("held {held:?}, {waiting} waiting"))
        }
    });
    holds_for(
        "w holds at most 2",
        Duration::from_millis(300),
        || match held_by(&ws, "w").len() {
            n if n <= 2 => Ok(()),
            n => Err(format!("w holds {n}")),
        },
    );
    let first = held_by(&ws, "w")[0].clone();
    ws.pas_ok(&["done", &first]);
    wait_until("a third card to take the freed slot", WAIT, || {
        let held = held_by(&ws, "w");
        assert!(held.len() <= 2, "w holds {held:?}, over max_concurrent 2");
        let done = ids
            .iter()
            .filter(|id| ws.state_of(id).as_deref() == Some("done"))
            .count();
        let inbox = ids
            .iter()
            .filter(|id| ws.state_of(id).as_deref() == Some("inbox"))
            .count();
        if held.len() == 2 && done == 1 && inbox == 2 {
            Ok(())
        } else {
            Err(format!("held {held:?}, done {done}, inbox {inbox}"))
        }
    });
}
