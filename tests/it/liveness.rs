//! Liveness (SPEC section 4): TTL verdicts from heartbeat files with sub-second
//! intervals, take-back on deregistration, restart grace, epoch fencing and malformed
//! heartbeat lines. Timings are asserted as windows, never instants.

use std::fs;
use std::time::Duration;

use chrono::Utc;

use crate::support::liveness::{append, beat, beat_at, events, wait_event, Beater};
use crate::support::workspace::{holds_for, wait_until, Workspace, FAST, WAIT};

fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// Asserts `secs` lies in `[lo, hi]`.
fn within(what: &str, secs: f64, lo: f64, hi: f64) {
    assert!(
        (lo..=hi).contains(&secs),
        "{what} after {secs:.3}s, expected between {lo}s and {hi}s"
    );
}

#[test]
fn silent_agent_goes_down_then_is_deregistered_and_its_cards_taken_back() {
    let ws = Workspace::with_config(&format!("{FAST}heartbeat_interval_s: 0.4\n"));
    ws.register("a", &[], 2);
    let beats = Beater::start(&ws, "a", Duration::from_millis(100));
    let _d = ws.serve_ready();
    ws.drop_card("one", "title: one\n");
    ws.drop_card("two", "title: two\n");
    ws.wait_assigned("one", "a");
    ws.wait_assigned("two", "a");
    holds_for(
        "no down while a beats",
        Duration::from_millis(1000),
        || match events(&ws, "agent.down").len() {
            0 => Ok(()),
            n => Err(format!("{n} agent.down events")),
        },
    );
    let last = beats.stop();

    let (down_at, down) = wait_event(&ws, "agent.down", "a", 1);
    within("down", seconds(down_at - last), 0.8, 1.6);
    let message = down["message"].as_str().unwrap();
    assert!(
        message.starts_with("no beat for 2 intervals, last seen "),
        "{down}"
    );

    let (gone_at, gone) = wait_event(&ws, "agent.deregistered", "a", 1);
    within("deregistered", seconds(gone_at - last), 1.2, 2.2);
    assert_eq!(gone["cards"], serde_json::json!(["one", "two"]), "{gone}");
    assert_eq!(gone["reason"], "no beat for 3 intervals");
    assert!(!ws.work("registry/a.yaml").exists());
    ws.wait_commit_line("pas: deregister a");

    for id in ["one", "two"] {
        let card = ws.wait_state(id, "inbox");
        assert_eq!(card["pas"]["attempts"], 1, "{card:?}");
        let reason = card["pas"]["history"][2]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("a was deregistered: no beat for 3 intervals"),
            "{reason}"
        );
    }
    let n: i64 = ws.db_count(
        "SELECT COUNT(*) FROM transitions WHERE from_state = 'assigned/a' AND to_state = 'inbox'",
    );
    assert_eq!(n, 2);
}

#[test]
fn a_beat_brings_a_down_agent_back_up_and_down_agents_get_no_work() {
    let ws = Workspace::with_config(&format!("{FAST}heartbeat_interval_s: 1\n"));
    ws.register("a", &[], 1);
    beat(&ws, "a", r#""note":"thinking hard""#);
    let _d = ws.serve_ready();
    let (_, down) = wait_event(&ws, "agent.down", "a", 1);
    assert_eq!(down["last_note"], "thinking hard");
    let agents = ws.pas_json(&["agents", "--json"]);
    assert_eq!(agents[0]["status"], "down", "{agents}");

    ws.drop_card("job", "title: job\n");
    let card = ws.wait_card("a reason", "job", |c| {
        c["pas"]["waiting_for"].as_str().is_some()
    });
    assert_eq!(
        card["pas"]["waiting_for"],
        "every registered agent is down (a)"
    );

    let beats = Beater::start(&ws, "a", Duration::from_millis(200));
    wait_event(&ws, "agent.up", "a", 1);
    ws.wait_assigned("job", "a");
    let agents = ws.pas_json(&["agents", "--json"]);
    assert_eq!(agents[0]["status"], "up", "{agents}");
    assert_eq!(agents[0]["assigned"], 1);
    drop(beats);
}

#[test]
fn after_a_restart_every_agent_gets_one_interval_of_grace() {
    let ws = Workspace::with_config(&format!("{FAST}heartbeat_interval_s: 0.8\n"));
    ws.register("a", &[], 1);
    ws.register("b", &[], 1);
    beat(&ws, "a", "");
    beat(&ws, "b", "");
    let mut d = ws.serve_ready();
    d.stop();
    // Both fell silent for well over three intervals while pas was down: their last
    // beats are dated 3 s back rather than the silence waited out.
    for agent in ["a", "b"] {
        std::fs::remove_file(ws.work(&format!("heartbeats/{agent}.jsonl"))).unwrap();
        beat_at(&ws, agent, Utc::now() - chrono::Duration::seconds(3), "");
    }
    let started = Utc::now();
    let _d = ws.serve();
    // b beats within its grace interval and stays; a does not and is reaped after it.
    let beats = Beater::start(&ws, "b", Duration::from_millis(150));
    let (gone_at, _) = wait_event(&ws, "agent.deregistered", "a", 1);
    within("a reaped", seconds(gone_at - started), 0.8, 3.0);
    holds_for("b stays registered", Duration::from_millis(1500), || {
        if ws.work("registry/b.yaml").exists() {
            Ok(())
        } else {
            Err("b was deregistered".into())
        }
    });
    assert!(events(&ws, "agent.deregistered")
        .iter()
        .all(|(_, d)| d["agent"] != "b"));
    drop(beats);
}

#[test]
fn a_completion_from_an_older_epoch_is_refused_and_the_card_kept() {
    let ws = Workspace::with_config(&format!("{FAST}heartbeat_interval_s: 0.3\n"));
    ws.register("a", &[], 1);
    let beats = Beater::start(&ws, "a", Duration::from_millis(80));
    let d = ws.serve_ready();
    ws.drop_card("job", "title: job\n");
    let held = ws.wait_assigned("job", "a");
    assert_eq!(held["pas"]["epoch"], 1, "{held:?}");
    // The agent keeps a copy of its card, then stalls past its deregistration.
    let copy = fs::read_to_string(ws.work("assigned/a/job.yaml")).unwrap();
    beats.stop();
    wait_event(&ws, "agent.deregistered", "a", 1);
    ws.wait_state("job", "inbox");

    // It comes back as a new incarnation and is given the card again.
    let out = ws.pas_ok(&["register", "a"]);
    assert!(out.contains("(epoch 2)"), "{out}");
    let _beats = Beater::start(&ws, "a", Duration::from_millis(80));
    let again = ws.wait_assigned("job", "a");
    assert_eq!(again["pas"]["epoch"], 2, "{again:?}");

    // The old incarnation wakes and "completes" the card from its copy.
    let stale = copy.replace("title: job\n", "title: job\nresult: from the old epoch\n");
    ws.drop_file("done/job.yaml", stale.as_bytes());
    wait_until("the stale completion rejected", WAIT, || {
        let reason = fs::read_to_string(ws.work("rejected/job.yaml.reason.txt"))
            .map_err(|e| e.to_string())?;
        if reason.contains("stale completion: a at epoch 1 no longer holds job") {
            Ok(())
        } else {
            Err(reason)
        }
    });
    assert_eq!(ws.state_of("job").as_deref(), Some("assigned/a"));
    assert!(ws.card("job").get("result").is_none());

    // A beat naming the old epoch is refused and logged.
    beat(&ws, "a", r#""epoch":1,"note":"zombie""#);
    wait_until("the stale beat logged", WAIT, || {
        let log = d.log_text();
        if log.contains("heartbeat from an older epoch refused") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
}

#[test]
fn a_stale_completion_that_overwrites_a_finished_card_is_undone() {
    let ws = Workspace::with_config(&format!("{FAST}heartbeat_interval_s: 0.3\n"));
    ws.register("a", &[], 1);
    let beats = Beater::start(&ws, "a", Duration::from_millis(80));
    let _d = ws.serve_ready();
    ws.drop_card("job", "title: job\n");
    ws.wait_assigned("job", "a");
    let copy = fs::read_to_string(ws.work("assigned/a/job.yaml")).unwrap();
    beats.stop();
    wait_event(&ws, "agent.deregistered", "a", 1);
    ws.register("b", &[], 1);
    let _b = Beater::start(&ws, "b", Duration::from_millis(80));
    ws.wait_assigned("job", "b");
    ws.pas_ok(&["done", "job", "--result", "b did it"]);
    ws.wait_card("b's result recorded", "job", |c| {
        c["pas"]["state"] == "done"
    });
    // `pas done` writes the state itself; wait for the daemon to have taken the move in,
    // or the stale copy below could be the first done/ version it reads (seen under load).
    ws.wait_commit_line("pas: job assigned/b -> done");

    // a's old process writes its copy over b's finished card.
    let stale = copy.replace("title: job\n", "title: job\nresult: a did it\n");
    fs::write(ws.work("done/job.yaml"), stale).unwrap();
    wait_until("b's card restored", WAIT, || {
        let card = ws.try_card("job").ok_or("no card")?;
        match card["result"].as_str() {
            Some("b did it") if ws.work("rejected/job.yaml").exists() => Ok(()),
            other => Err(format!("result {other:?}")),
        }
    });
    ws.wait_commit_line("pas: job restored after a stale completion");
}

#[test]
fn malformed_heartbeat_lines_are_logged_and_the_good_ones_kept() {
    let ws = Workspace::with_config(&format!("{FAST}heartbeat_interval_s: 30\n"));
    ws.register("a", &[], 1);
    // `b` beats only to show when the daemon has read the files written before its beat.
    ws.register("b", &[], 1);
    let d = ws.serve_ready();
    append(&ws, "a", "this is not json\n{\"status\":\"idle\"}\n");
    beat(&ws, "a", r#""note":"first good""#);
    wait_until("the good beat taken in", WAIT, || {
        let seen: Vec<_> = events(&ws, "agent.heartbeat")
            .into_iter()
            .filter(|(_, d)| d["beat"]["note"] == "first good")
            .collect();
        if seen.len() == 1 {
            Ok(())
        } else {
            Err(format!("{} events", seen.len()))
        }
    });
    let log = d.log_text();
    assert!(log.contains("heartbeat line refused"), "{log}");
    assert!(log.contains("missing field `ts`"), "{log}");

    // A torn line waits for its end; nothing is judged on the half.
    let ts = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let line = format!("{{\"ts\":\"{ts}\",\"note\":\"second good\"}}\n");
    let (head, rest) = line.split_at(20);
    append(&ws, "a", head);
    // The daemon takes in heartbeat files in the order they change: once b's later beat
    // is in, a's file has been read with the half line at its end.
    beat(&ws, "b", r#""note":"after the half""#);
    wait_event(&ws, "agent.heartbeat", "b", 1);
    append(&ws, "a", rest);
    wait_until("the torn beat taken in whole", WAIT, || {
        match events(&ws, "agent.heartbeat")
            .iter()
            .any(|(_, d)| d["beat"]["note"] == "second good")
        {
            true => Ok(()),
            false => Err("not yet".into()),
        }
    });
    assert_eq!(
        d.log_text().matches("heartbeat line refused").count(),
        2,
        "only the two bad lines are refused"
    );
}

#[test]
fn heartbeat_files_stay_out_of_git_but_the_changes_they_cause_are_committed() {
    let ws = Workspace::with_config(&format!("{FAST}heartbeat_interval_s: 0.3\n"));
    ws.register("a", &[], 1);
    let beats = Beater::start(&ws, "a", Duration::from_millis(80));
    let _d = ws.serve_ready();
    // The daemon takes in beats written while it runs before they stop.
    let started = Utc::now();
    wait_until("a beat read by the running daemon", WAIT, || {
        let agents = ws.pas_json(&["agents", "--json"]);
        let seen = agents
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "a")
            .and_then(|x| x["last_seen"].as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        match seen {
            Some(t) if t > started => Ok(()),
            _ => Err(agents.to_string()),
        }
    });
    beats.stop();
    ws.wait_commit_line("pas: deregister a");
    let tracked = ws.git(&["ls-files", "work/heartbeats/*.jsonl"]);
    assert_eq!(tracked.trim(), "", "heartbeat files are git-ignored");
    assert!(ws.git_status(&["work/heartbeats"]).is_empty());
}

#[test]
fn heartbeat_files_are_committed_when_configured() {
    let ws = Workspace::with_config(
        "settle_ms: 100\ngit: {commit_window_ms: 20, track_heartbeats: true}\n",
    );
    ws.register("a", &[], 1);
    let _d = ws.serve_ready();
    assert!(!fs::read_to_string(ws.path(".gitignore"))
        .unwrap()
        .contains("work/heartbeats/*.jsonl"));
    beat(&ws, "a", r#""note":"tracked""#);
    wait_until("the heartbeat file committed", WAIT, || {
        let shown = ws.git(&["log", "-p", "--format=", "--", "work/heartbeats/a.jsonl"]);
        if shown.contains("tracked") {
            Ok(())
        } else {
            Err(shown)
        }
    });
}

#[test]
fn a_card_failed_by_a_take_back_cannot_be_completed_by_the_old_agent() {
    // Regression: a take-back into failed/ kept the agent's epoch, so its stale copy
    // counted as a completion.
    let ws = Workspace::with_config(&format!(
        "{FAST}heartbeat_interval_s: 0.3\nmax_attempts: 1\n"
    ));
    ws.register("a", &[], 1);
    let beats = Beater::start(&ws, "a", Duration::from_millis(80));
    let _d = ws.serve_ready();
    ws.drop_card("job", "title: job\n");
    ws.wait_assigned("job", "a");
    let copy = fs::read_to_string(ws.work("assigned/a/job.yaml")).unwrap();
    beats.stop();
    let failed = ws.wait_state("job", "failed");
    assert!(failed["pas"].get("epoch").is_none(), "{failed:?}");
    let stale = copy.replace("title: job\n", "title: job\nresult: late\n");
    ws.drop_file("done/job.yaml", stale.as_bytes());
    wait_until("the late completion rejected", WAIT, || {
        fs::read_to_string(ws.work("rejected/job.yaml.reason.txt"))
            .map_err(|e| e.to_string())
            .and_then(|r| match r.contains("stale completion") {
                true => Ok(()),
                false => Err(r),
            })
    });
    assert_eq!(ws.state_of("job").as_deref(), Some("failed"));
}

#[test]
fn an_absurd_interval_is_ignored_not_a_crash() {
    // Regression: an interval of 1e300 s overflowed the date arithmetic and panicked.
    let ws = Workspace::with_config(&format!("{FAST}heartbeat_interval_s: 30\n"));
    ws.drop_file(
        "registry/a.yaml",
        b"name: a\nepoch: 1\nheartbeat_interval_s: 1.0e300\n",
    );
    let mut d = ws.serve_ready();
    beat(&ws, "a", r#""note":"fine""#);
    wait_event(&ws, "agent.heartbeat", "a", 1);
    d.assert_running();
    let agents = ws.pas_json(&["agents", "--json"]);
    assert_eq!(agents[0]["status"], "up", "{agents}");
}
