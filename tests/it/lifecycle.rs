//! A card's life after assignment: pull claims, completion, take-back on timeout and on
//! deregistration. Each transition must reach the card's history, git and the database.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::process::Stdio;

use crate::fixture::{history, history_at_ms, wait_until, Workspace, WAIT};

/// Asserts the transition `from -> to` of card `id` is one row in `transitions`, one
/// history entry, and one line of a commit that touched the card's file.
fn assert_recorded(ws: &Workspace, id: &str, from: &str, to: &str) {
    let line = format!("pas: {id} {from} -> {to}");
    let commit = ws.wait_commit_line(&line);
    let touched = ws.git(&["show", "--name-only", "--format=", &commit.oid]);
    assert!(
        touched.lines().any(|p| p.ends_with(&format!("/{id}.yaml"))),
        "commit {} with {line:?} does not touch {id}.yaml: {touched}",
        commit.oid
    );
    ws.wait_db_count(
        &format!("SELECT count(*) FROM transitions WHERE job_id = '{id}' AND from_state = '{from}' AND to_state = '{to}'"),
        1,
    );
    let card = ws.card(id);
    let n = history(&card)
        .iter()
        .filter(|h| **h == format!("{from} -> {to}"))
        .count();
    assert_eq!(n, 1, "history of {id}: {:?}", history(&card));
}

#[test]
fn racing_pull_claims_have_exactly_one_winner() {
    let ws = Workspace::new();
    // Both are registered but lack [manual], so the daemon leaves the cards to pull claims.
    ws.register("a", &[], 50);
    ws.register("b", &[], 50);
    let _d = ws.serve_ready();
    let ids: Vec<String> = (0..8).map(|i| format!("race-{i}")).collect();
    for id in &ids {
        ws.drop_card(id, "title: whoever is first\nrequires: [manual]\n");
    }
    for id in &ids {
        ws.wait_card("waiting in the inbox", id, |c| {
            c["pas"]["waiting_for"].is_string()
        });
    }
    // Start every claimant before waiting for any, so each pair really races.
    let claims: Vec<(String, &str, std::process::Child)> = ids
        .iter()
        .flat_map(|id| ["a", "b"].map(|agent| (id.clone(), agent)))
        .map(|(id, agent)| {
            let child = ws
                .cmd(&["claim", agent, &id])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (id, agent, child)
        })
        .collect();
    let mut winners = std::collections::HashMap::new();
    for (id, agent, child) in claims {
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            let prev = winners.insert(id.clone(), agent);
            assert!(
                prev.is_none(),
                "{id} was claimed by both {prev:?} and {agent}"
            );
        } else {
            assert_eq!(out.status.code(), Some(1), "loser of {id}: {:?}", out);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.starts_with("error: "), "loser of {id} said: {err}");
        }
    }
    for id in &ids {
        let winner = winners.get(id).unwrap_or_else(|| panic!("nobody won {id}"));
        let place = format!("assigned/{winner}");
        assert_recorded(&ws, id, "inbox", &place);
        assert_eq!(ws.state_of(id), Some(place));
    }
}

#[test]
fn agent_completes_with_a_plain_rename() {
    let ws = Workspace::new();
    ws.register("a", &[], 1);
    let _d = ws.serve_ready();
    ws.drop_card("job", "title: do it\nextra: kept through every move\n");
    ws.wait_state("job", "assigned/a");
    assert_recorded(&ws, "job", "inbox", "assigned/a");
    // The agent appends its result and moves the file; nothing else.
    let mut f = OpenOptions::new()
        .append(true)
        .open(ws.work("assigned/a/job.yaml"))
        .unwrap();
    f.write_all(b"result: it is done\n").unwrap();
    drop(f);
    fs::rename(ws.work("assigned/a/job.yaml"), ws.work("done/job.yaml")).unwrap();
    let card = ws.wait_card("history ends in done", "job", |c| {
        history(c).last().map(String::as_str) == Some("assigned/a -> done")
    });
    assert_eq!(card["result"], "it is done");
    assert_eq!(card["extra"], "kept through every move");
    assert_eq!(card["pas"]["state"], "done");
    assert_recorded(&ws, "job", "assigned/a", "done");
    let commit = ws.wait_commit_line("pas: job assigned/a -> done");
    let author = ws.git(&["show", "-s", "--format=%an", &commit.oid]);
    assert_eq!(author.trim(), "pas");
}

#[test]
fn pas_done_and_pas_fail_finish_cards() {
    let ws = Workspace::new();
    ws.register("a", &[], 2);
    let _d = ws.serve_ready();
    ws.drop_card("good", "title: g\n");
    ws.drop_card("bad", "title: b\n");
    ws.wait_assigned("good", "a");
    ws.wait_assigned("bad", "a");
    ws.pas_ok(&["done", "good", "--result", "42"]);
    ws.pas_ok(&["fail", "bad", "--error", "disk on fire"]);
    assert_eq!(ws.card("good")["result"], "42");
    assert_eq!(ws.card("bad")["error"], "disk on fire");
    assert_recorded(&ws, "good", "assigned/a", "done");
    assert_recorded(&ws, "bad", "assigned/a", "failed");
    // Finishing twice is refused.
    let again = ws.pas(&["done", "good"]);
    assert_eq!(again.status.code(), Some(1));
}

#[test]
fn timed_out_card_returns_to_the_inbox_and_is_reassigned() {
    let ws = Workspace::new();
    ws.register("sleepy", &[], 1);
    let _d = ws.serve_ready();
    ws.drop_card("slow", "title: never finished\ntimeout_s: 1\n");
    let card = ws.wait_card("taken back and assigned again", "slow", |c| {
        history(c).len() >= 4
    });
    let h = history(&card);
    assert_eq!(
        h[..4],
        [
            "new -> inbox",
            "inbox -> assigned/sleepy",
            "assigned/sleepy -> inbox",
            "inbox -> assigned/sleepy"
        ]
    );
    let reason = card["pas"]["history"][2]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("timed out"), "take-back reason: {reason:?}");
    let held_ms = history_at_ms(&card, 2) - history_at_ms(&card, 1);
    assert!(
        (1000..3000).contains(&held_ms),
        "taken back after {held_ms} ms, timeout 1 s"
    );
    let take_backs = h
        .iter()
        .filter(|e| e.ends_with("-> inbox") && !e.starts_with("new"))
        .count();
    assert_eq!(
        card["pas"]["attempts"].as_u64(),
        Some(take_backs as u64),
        "{card:?}"
    );
    // The take-back and the new assignment share a commit; finish only once it is made.
    ws.wait_commit_line("pas: slow assigned/sleepy -> inbox");
    // Stop the cycle (a take-back may win the race with this; then try again), then check
    // that the database and git have every transition the card lists.
    wait_until("pas done slow to succeed", WAIT, || {
        match ws.pas(&["done", "slow"]) {
            out if out.status.success() => Ok(()),
            out => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    });
    let card = ws.wait_card("in done", "slow", |c| c["pas"]["state"] == "done");
    let h = history(&card);
    let rows = h.len() as i64;
    ws.wait_db_count(
        "SELECT count(*) FROM transitions WHERE job_id = 'slow'",
        rows,
    );
    let db: Vec<String> = ws.db_query(
        "SELECT from_state || ' -> ' || to_state FROM transitions WHERE job_id = 'slow' ORDER BY n",
        |r| r.get(0),
    );
    assert_eq!(db, h);
    ws.wait_commit_line("pas: slow assigned/sleepy -> done");
    let log = ws.git_log(&["work/**/slow.yaml"]);
    for t in &h {
        let line = format!("pas: slow {t}");
        assert!(
            log.iter().any(|c| c
                .message
                .lines()
                .any(|l| l == line || l.starts_with(&format!("{line} (")))),
            "no commit names {line:?}"
        );
    }
}

#[test]
fn card_fails_after_max_attempts_with_an_error() {
    let ws = Workspace::new();
    ws.register("sleepy", &[], 1);
    let _d = ws.serve_ready();
    ws.drop_card(
        "doomed",
        "title: never finished\ntimeout_s: 1\nmax_attempts: 2\n",
    );
    let card = wait_until("doomed in failed/", WAIT, || {
        match ws.state_of("doomed").as_deref() {
            Some("failed") => ws.try_card("doomed").ok_or_else(|| "moved".to_string()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(
        history(&card),
        [
            "new -> inbox",
            "inbox -> assigned/sleepy",
            "assigned/sleepy -> inbox",
            "inbox -> assigned/sleepy",
            "assigned/sleepy -> failed"
        ]
    );
    assert_eq!(card["pas"]["attempts"].as_u64(), Some(2));
    let error = card["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error key: {card:?}"));
    assert!(!error.is_empty());
    let total_ms = history_at_ms(&card, 4) - history_at_ms(&card, 1);
    assert!(
        (2000..5000).contains(&total_ms),
        "failed {total_ms} ms after first assignment"
    );
    assert_recorded(&ws, "doomed", "assigned/sleepy", "failed");
}

#[test]
fn deregistration_takes_back_the_agents_cards() {
    let ws = Workspace::new();
    ws.register("leaver", &[], 2);
    let _d = ws.serve_ready();
    for id in ["d1", "d2"] {
        ws.drop_card(id, "title: d\n");
        ws.wait_assigned(id, "leaver");
    }
    ws.pas_ok(&["deregister", "leaver"]);
    for id in ["d1", "d2"] {
        let card = ws.wait_card("back in the inbox", id, |c| {
            c["pas"]["state"] == "inbox" && c["pas"]["waiting_for"] == "no agent is registered"
        });
        assert_eq!(
            history(&card).last().map(String::as_str),
            Some("assigned/leaver -> inbox")
        );
        assert_eq!(card["pas"]["attempts"].as_u64(), Some(1));
        assert_recorded(&ws, id, "assigned/leaver", "inbox");
    }
    ws.wait_commit_line("pas: deregister leaver");
    assert!(!ws.work("registry/leaver.yaml").exists());
    ws.register("stayer", &[], 2);
    for id in ["d1", "d2"] {
        ws.wait_state(id, "assigned/stayer");
    }
}

/// Agents finish cards the way the demo's do (the result written into the card in place,
/// by a rename over it, then the card renamed into `done/`) as fast as they can: pas
/// looks for a card it cannot find in one folder after another, and may look just as it
/// passes between two of them. Each is a move, never "removed outside pas"; a card a
/// person deletes is still called removed.
#[test]
fn cards_renamed_on_while_pas_looks_are_moves_and_a_deleted_card_is_removed() {
    let ws = Workspace::new();
    ws.register("a", &[], 40);
    let _d = ws.serve_ready();
    let n = 120;
    for i in 0..n {
        ws.drop_card(&format!("c{i:03}"), "title: quick\n");
    }
    let mine = ws.work("assigned/a");
    let done = ws.work("done");
    wait_until("every card finished by the agent", WAIT, || {
        for e in fs::read_dir(&mine).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "yaml") {
                continue;
            }
            let Ok(mut text) = fs::read_to_string(&p) else {
                continue;
            };
            text.push_str("result: ok\n");
            let tmp = p.with_extension("tmp");
            if fs::write(&tmp, &text).is_ok() && fs::rename(&tmp, &p).is_ok() {
                let _ = fs::rename(&p, done.join(p.file_name().unwrap()));
            }
        }
        let names: Vec<String> = fs::read_dir(&done)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        let finished = names.len();
        (finished == n)
            .then_some(())
            .ok_or(format!("{finished} of {n}"))
    });
    ws.wait_commit_line(&format!("pas: c{:03} assigned/a -> done", n - 1));
    fs::remove_file(ws.work("done/c000.yaml")).unwrap();
    ws.wait_commit_line("pas: c000 removed outside pas");
    let log = ws.git(&["log", "--format=%B"]);
    let removed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("removed outside pas"))
        .collect();
    assert_eq!(
        removed,
        ["pas: c000 removed outside pas"],
        "only the deleted card is removed"
    );
    assert!(!log.contains("rejected"), "no copy was rejected: {log}");
}
