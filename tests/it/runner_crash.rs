//! `kill -9` of `pas serve` while three agent processes run: after the restart no process
//! of theirs is left unowned, every card is in exactly one state folder (still assigned,
//! run again from the start), and an orderly stop then ends the new processes too. And the
//! daemon's own take-back (a card's timeout) ending a run mid-way.

use std::fs;
use std::time::Duration;

use crate::runner::{agent, group_alive, submit, RUN_FAST};
use crate::support::workspace::{wait_until, Workspace};

/// The process groups the agent recorded (one file per run it started).
fn pgids(ws: &Workspace, id: &str) -> Vec<i32> {
    fs::read_to_string(ws.path(&format!("pgids-{id}")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn kill_9_of_pas_with_three_runs_leaves_no_orphan_after_the_restart() {
    let ws = Workspace::with_config(RUN_FAST);
    agent(
        &ws,
        "sleeper",
        "  command: [\"agents/sleeper.py\"]\n  concurrency: 3\n  grace_s: 2\n",
        "#!/usr/bin/env python3\nimport os, subprocess, time\nsubprocess.Popen(['sleep', '120'])\nwith open(os.environ['PAS_WORKSPACE'] + '/pgids-' + os.environ['PAS_JOB'], 'a') as f: f.write('%d\\n' % os.getpgid(0))\ntime.sleep(120)\n",
    );
    let ids = ["K-1", "K-2", "K-3"];
    let mut d = ws.serve();
    for id in ids {
        submit(&ws, id, "sleep a long time");
    }
    let first: Vec<i32> = ids
        .iter()
        .map(|id| {
            wait_until(&format!("{id}'s process"), Duration::from_secs(20), || {
                pgids(&ws, id)
                    .first()
                    .copied()
                    .ok_or_else(|| "none yet".to_string())
            })
        })
        .collect();
    d.kill9();
    // The processes outlive the crash (their own groups): orphans until pas returns.
    assert!(first.iter().all(|g| group_alive(*g)), "a run died with pas");

    let mut d = ws.serve();
    for (id, g) in ids.iter().zip(&first) {
        wait_until(
            &format!("{id}'s orphaned group {g} ended"),
            Duration::from_secs(10),
            || {
                (!group_alive(*g))
                    .then_some(())
                    .ok_or_else(|| "alive".to_string())
            },
        );
    }
    // Each card is where the SPEC says (assigned, in one folder) and runs again.
    for id in ids {
        let again = wait_until(&format!("{id} run again"), Duration::from_secs(20), || {
            pgids(&ws, id)
                .get(1)
                .copied()
                .ok_or_else(|| "not yet".to_string())
        });
        assert!(group_alive(again));
        assert_eq!(ws.places_of(id), vec!["assigned/sleeper".to_string()]);
    }
    let second: Vec<i32> = ids.iter().map(|id| pgids(&ws, id)[1]).collect();
    d.stop();
    assert!(
        second.iter().all(|g| !group_alive(*g)),
        "an orderly stop left a run behind"
    );
    for id in ids {
        assert_eq!(ws.places_of(id), vec!["assigned/sleeper".to_string()]);
    }
}

#[test]
fn the_daemons_timeout_take_back_ends_the_run_and_the_card_runs_anew() {
    let ws = Workspace::with_config(RUN_FAST);
    // Answers TERM with late output and goes on (only KILL ends it): nothing it prints
    // after the take-back may finish the card.
    agent(
        &ws,
        "stubborn",
        "  command: [\"agents/stubborn.py\"]\n  grace_s: 1\n",
        "#!/usr/bin/env python3\nimport os, signal, time\nsignal.signal(signal.SIGTERM, lambda *a: print('late output', flush=True))\nwith open(os.environ['PAS_WORKSPACE'] + '/pgids-' + os.environ['PAS_JOB'], 'a') as f: f.write('%d\\n' % os.getpgid(0))\nwhile True: time.sleep(60)\n",
    );
    let _d = ws.serve();
    ws.pas_ok(&[
        "submit",
        "--id",
        "D-1",
        "--title",
        "too long",
        "--requires",
        "code",
        "--timeout-s",
        "1.5",
        "--max-attempts",
        "10",
    ]);
    let first = wait_until("the first run", Duration::from_secs(20), || {
        pgids(&ws, "D-1")
            .first()
            .copied()
            .ok_or_else(|| "none yet".to_string())
    });
    // The daemon takes the card back after 1.5 s; the group is gone within the grace.
    wait_until("the first run's group gone", Duration::from_secs(8), || {
        (!group_alive(first))
            .then_some(())
            .ok_or_else(|| "alive".to_string())
    });
    let second = wait_until("the card run anew", Duration::from_secs(20), || {
        pgids(&ws, "D-1")
            .get(1)
            .copied()
            .ok_or_else(|| "not yet".to_string())
    });
    assert_ne!(first, second);
    let card = ws.card("D-1");
    assert!(
        card["pas"]["attempts"].as_u64().unwrap_or(0) >= 1,
        "{card:?}"
    );
    assert!(
        !ws.work("done/D-1.yaml").exists(),
        "a late exit finished the card"
    );
}
