//! Crashes (SPEC section 2, "Nothing is lost"): after kill -9 at any instant and a restart,
//! every card is in exactly one state folder, and git and the database agree with the files.

use std::collections::HashMap;
use std::fs;

use crate::support::workspace::{history, wait_until, Workspace, FAST, WAIT};

/// Cards in `work/assigned/*/`.
fn assigned_count(ws: &Workspace) -> usize {
    fs::read_dir(ws.work("assigned"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| {
            fs::read_dir(e.path())
                .unwrap()
                .filter(|f| {
                    f.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".yaml")
                })
                .count()
        })
        .sum()
}

/// Card files (not dot-files) directly in `work/<dir>`.
fn yaml_in(ws: &Workspace, dir: &str) -> Vec<String> {
    crate::support::workspace::visible_names(&ws.work(dir))
}

#[test]
fn kill_9_mid_burst_then_restart_keeps_every_card() {
    let ws = Workspace::new();
    let agents = ["a1", "a2", "a3"];
    for a in agents {
        ws.register(a, &[], 50);
    }
    let mut d = ws.serve();
    let ids: Vec<String> = (0..300).map(|i| format!("burst-{i:03}")).collect();
    for (i, id) in ids.iter().enumerate() {
        ws.drop_card(id, &format!("title: burst card {i}\nkeep: {i}\n"));
        if i == 150 {
            // The daemon is at work on the first half...
            wait_until("the first assignments", WAIT, || {
                match assigned_count(&ws) {
                    0 => Err("none assigned".to_string()),
                    _ => Ok(()),
                }
            });
        }
        if i == 225 {
            // ...and the second half is still arriving: crash now.
            d.kill9();
        }
    }

    let mut d = ws.serve();
    wait_until("150 assigned and 150 waiting", WAIT, || {
        let (a, inbox) = (assigned_count(&ws), yaml_in(&ws, "inbox").len());
        if a == 150 && inbox == 150 {
            Ok(())
        } else {
            Err(format!("{a} assigned, {inbox} in the inbox"))
        }
    });
    // SIGTERM only once the main loop runs, where its handler is in place (see
    // audit::sigterm_during_start_up_exits_cleanly).
    ws.wait_main_loop();
    let status = d.stop();
    assert!(status.success(), "pas serve exited {status} after SIGTERM");

    // Every card in exactly one state folder; none lost, none left in staging.
    let mut per_agent: HashMap<String, usize> = HashMap::new();
    for id in &ids {
        let places = ws.places_of(id);
        assert_eq!(places.len(), 1, "{id} is in {places:?}");
        let place = &places[0];
        assert!(
            place == "inbox" || place.starts_with("assigned/a"),
            "{id} is in {place}"
        );
        *per_agent.entry(place.clone()).or_default() += 1;
        let card = ws.card(id);
        assert_eq!(
            card["keep"].as_u64(),
            Some(id[6..].parse().unwrap()),
            "{id} lost its own keys"
        );
    }
    for a in agents {
        let n = per_agent
            .get(&format!("assigned/{a}"))
            .copied()
            .unwrap_or(0);
        assert!(n <= 50, "{a} holds {n} cards, over max_concurrent 50");
    }
    assert_eq!(
        yaml_in(&ws, "../.pas/staging"),
        Vec::<String>::new(),
        "cards left in .pas/staging"
    );
    assert_eq!(
        yaml_in(&ws, "rejected")
            .iter()
            .filter(|n| !n.ends_with(".reason.txt"))
            .count(),
        0
    );

    // git agrees with the files: nothing under work/ differs from HEAD.
    let dirty = ws.git_status(&["work"]);
    assert!(
        dirty.is_empty(),
        "git status -- work after restart: {dirty:?}"
    );

    // The database has one row per history entry of every card, and nothing else.
    let rows: HashMap<String, i64> = ws
        .db_query(
            "SELECT job_id, count(*) FROM transitions GROUP BY job_id",
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .into_iter()
        .collect();
    for id in &ids {
        let h = history(&ws.card(id)).len() as i64;
        assert_eq!(
            rows.get(id).copied().unwrap_or(0),
            h,
            "{id}: {h} history entries vs rows in transitions"
        );
    }
    assert_eq!(
        rows.len(),
        ids.len(),
        "transitions has rows for unknown jobs"
    );

    // A sample card's git log reaches the card as it is now.
    let sample = &ids[200];
    let place = ws.state_of(sample).unwrap();
    let log = ws.git_log(&[&format!("work/**/{sample}.yaml")]);
    assert!(!log.is_empty(), "git log has nothing for {sample}");
    let path = format!("work/{place}/{sample}.yaml");
    let in_head = ws.git(&["show", &format!("{}:{path}", log[0].oid)]);
    assert_eq!(in_head, fs::read_to_string(ws.path(&path)).unwrap());
}

/// Regression: the start-up recovery commit named no transitions, so `git log` and
/// `pas log` lost those a crash left uncommitted.
#[test]
fn crash_before_commit_git_log_still_names_each_transition() {
    // A long commit window holds the commit back, so the crash lands between the move
    // and its commit every time.
    let ws = Workspace::with_config("settle_ms: 100\ngit: {commit_window_ms: 60000}\n");
    ws.register("a", &[], 1);
    let mut d = ws.serve();
    ws.drop_card("c", "title: crash me\n");
    ws.wait_state("c", "assigned/a");
    d.kill9();
    fs::write(ws.path("pas.yaml"), FAST).unwrap();
    let mut d = ws.serve();
    ws.wait_work_clean("work/ committed after the restart");
    d.stop();
    let card = ws.card("c");
    let h = history(&card);
    assert_eq!(h, ["new -> inbox", "inbox -> assigned/a"]);
    let messages: Vec<String> = ws
        .git_log(&["work/**/c.yaml"])
        .into_iter()
        .map(|c| c.message)
        .collect();
    let pas_log = ws.pas_ok(&["log", "c"]);
    for t in &h {
        let line = format!("pas: c {t}");
        assert!(
            messages.iter().any(|m| m.lines().any(|l| l == line)),
            "git log -- work/**/c.yaml names no {line:?}; messages: {messages:?}"
        );
        assert!(
            pas_log.contains(&line),
            "pas log c lacks {line:?}:\n{pas_log}"
        );
    }
}

/// Regression: `work/.pas-daemon.lock` was neither git-ignored nor committed.
#[test]
fn daemon_leaves_git_status_of_work_clean() {
    let ws = Workspace::new();
    ws.register("a", &[], 1);
    let mut d = ws.serve_ready();
    ws.drop_card("j", "title: j\n");
    ws.wait_assigned("j", "a");
    ws.pas_ok(&["done", "j"]);
    ws.wait_commit_line("pas: j assigned/a -> done");
    assert!(d.stop().success());
    assert_eq!(
        ws.git_status(&["work"]),
        Vec::<String>::new(),
        "git status --porcelain -- work"
    );
}

/// Regression: a transition made while `pas serve` started up was committed by the start-up
/// recovery commit without its line; the line landed in a later commit that did not touch
/// the card.
#[test]
fn transition_during_start_up_is_named_in_git() {
    let ws = Workspace::new();
    ws.register("a", &[], 1);
    // Cards nobody can take keep the start-up busy (each gets its waiting_for written).
    for i in 0..300 {
        ws.drop_card(&format!("idle-{i}"), "title: idle\nrequires: [nobody]\n");
    }
    ws.drop_card("x", "title: x\n");
    let _d = ws.serve();
    // x is assigned by the start-up's first plan; the agent finishes at once.
    ws.wait_state("x", "assigned/a");
    ws.pas_ok(&["done", "x", "--result", "quick"]);
    ws.wait_main_loop();
    let card = ws.wait_state("x", "done");
    assert_eq!(
        history(&card),
        ["new -> inbox", "inbox -> assigned/a", "assigned/a -> done"]
    );
    let line = "pas: x assigned/a -> done";
    wait_until("the completion named in x's git log", WAIT, || {
        let log = ws.git_log(&["work/**/x.yaml"]);
        if log.iter().any(|c| c.message.lines().any(|l| l == line)) {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                log.iter()
                    .map(|c| c.message.lines().next().unwrap_or(""))
                    .collect::<Vec<_>>()
            ))
        }
    });
}

/// Regression: a `kill -9` while git's index (or a ref) was being written leaves
/// `.git/index.lock` behind, and every later index update failed, so `git status` never
/// came clean again. A lock no process holds open is removed.
#[test]
fn stale_git_locks_left_by_a_crash_are_cleared() {
    let ws = Workspace::new();
    ws.register("a", &[], 1);
    fs::write(ws.path(".git/index.lock"), "").unwrap();
    let _d = ws.serve();
    ws.drop_card("after", "title: after a crash\n");
    ws.wait_state("after", "assigned/a");
    ws.wait_commit_line("pas: after inbox -> assigned/a");
    ws.wait_work_clean("git status -- work clean");
    assert!(!ws.path(".git/index.lock").exists());
}

/// `pas bench crash` in small: kill -9 at random instants mid-flow, restart, and every
/// check (one place per card, git clean and fsck, SQLite integrity, history = database).
#[test]
fn bench_crash_rounds_pass_their_checks() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::support::workspace::pas_bin())
        .args([
            "bench", "crash", "--rounds", "2", "--cards", "300", "--seed", "7", "--dir",
        ])
        .arg(dir.path())
        .env_remove("PAS_LOG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("every check passed").count(), 2, "{text}");
}
