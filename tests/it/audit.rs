//! Git as the audit trail (SPEC section 9 and 10): pas commits only its own paths, the board
//! has a past (`status --at`, `pas log`), `init` is idempotent, git can be off, and SIGTERM
//! commits what is pending.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::workspace::Workspace;

#[test]
fn users_unrelated_changes_survive_pas_commits() {
    let ws = Workspace::new();
    fs::write(ws.path("README.txt"), "first version\n").unwrap();
    ws.git(&["add", "README.txt"]);
    ws.git(&["commit", "-q", "-m", "user: add README"]);
    // An unstaged edit and a staged new file, both the user's business.
    fs::write(ws.path("README.txt"), "second version, not staged\n").unwrap();
    fs::write(ws.path("notes.md"), "staged, not committed\n").unwrap();
    ws.git(&["add", "notes.md"]);
    let before = ws.git_status(&[".", ":(exclude)work"]);
    assert_eq!(before, [" M README.txt", "A  notes.md"]);
    let staged_before = ws.git(&["diff", "--cached", "--", ".", ":(exclude)work"]);
    let unstaged_before = ws.git(&["diff", "README.txt"]);

    ws.register("a", &[], 1);
    let _d = ws.serve_ready();
    ws.drop_card("j", "title: j\n");
    ws.wait_state("j", "assigned/a");
    let commit = ws.wait_commit_line("pas: j inbox -> assigned/a");
    // pas's own index entries follow its commit, later when a user's git command holds
    // the index lock at that moment (this test's own `git status` can): wait for them.
    ws.wait_work_clean("pas's index entries in step with its commit");

    assert_eq!(
        ws.git_status(&[".", ":(exclude)work"]),
        before,
        "git status outside work/ changed"
    );
    assert_eq!(
        ws.git(&["diff", "--cached", "--", ".", ":(exclude)work"]),
        staged_before,
        "the index of the user's files changed"
    );
    assert_eq!(ws.git(&["diff", "README.txt"]), unstaged_before);
    assert_eq!(
        fs::read_to_string(ws.path("README.txt")).unwrap(),
        "second version, not staged\n"
    );
    for c in ws
        .git_log(&[])
        .iter()
        .take_while(|c| c.message.starts_with("pas:"))
    {
        let paths = ws.git(&["show", "--name-only", "--format=", &c.oid]);
        for p in paths.lines() {
            assert!(
                p.starts_with("work/"),
                "pas commit {} ({:?}) has {p}",
                c.oid,
                c.message
            );
        }
    }
    assert_eq!(
        ws.git(&["show", "-s", "--format=%an", &commit.oid]).trim(),
        "pas"
    );
    assert_eq!(
        ws.git(&["ls-tree", "HEAD", "notes.md"]),
        "",
        "the user's staged file was committed"
    );
    let readme = ws.git(&["show", "HEAD:README.txt"]);
    assert_eq!(
        readme, "first version\n",
        "the user's unstaged edit was committed"
    );
}

#[test]
fn status_at_shows_the_past_and_log_replays_transitions() {
    let ws = Workspace::new();
    let _d = ws.serve_ready();
    ws.drop_card("past", "title: p\n");
    ws.wait_recorded("past");
    let inbox_commit = ws.wait_commit_line("pas: past new -> inbox");
    ws.register("a", &[], 1);
    ws.wait_state("past", "assigned/a");
    ws.wait_commit_line("pas: past inbox -> assigned/a");
    ws.pas_ok(&["done", "past", "--result", "r"]);
    ws.wait_commit_line("pas: past assigned/a -> done");

    let n: usize = ws
        .git(&[
            "rev-list",
            "--count",
            &format!("{}..HEAD", inbox_commit.oid),
        ])
        .trim()
        .parse()
        .unwrap();
    assert!(
        n >= 2,
        "the assignment and completion were committed after the inbox commit"
    );
    let then = ws.pas_json(&["status", "--at", &format!("HEAD~{n}"), "--json"]);
    assert_eq!(then["jobs"]["inbox"], 1, "status --at HEAD~{n}: {then}");
    assert_eq!(then["jobs"]["assigned"], 0);
    assert_eq!(then["jobs"]["done"], 0);
    let now = ws.pas_json(&["status", "--at", "HEAD", "--json"]);
    assert_eq!(now["jobs"]["inbox"], 0, "status --at HEAD: {now}");
    assert_eq!(now["jobs"]["done"], 1);

    let text = ws.pas_ok(&["log", "past"]);
    for t in [
        "past new -> inbox",
        "past inbox -> assigned/a",
        "past assigned/a -> done",
    ] {
        assert!(text.contains(t), "pas log past lacks {t:?}:\n{text}");
    }

    // git log -- work/**/past.yaml shows the same commits as pas log --json.
    let json = ws.pas_json(&["log", "past", "--json"]);
    let mut pas_oids: Vec<String> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["oid"].as_str().unwrap().to_string())
        .collect();
    let mut git_oids: Vec<String> = ws
        .git_log(&["work/**/past.yaml"])
        .into_iter()
        .map(|c| c.oid)
        .collect();
    assert!(git_oids.contains(&inbox_commit.oid));
    pas_oids.sort();
    git_oids.sort();
    assert_eq!(pas_oids, git_oids);
}

#[test]
fn init_twice_adds_nothing_and_keeps_a_modified_config() {
    let ws = Workspace::new();
    let custom = "# mine\nsettle_ms: 100\nmax_attempts: 7\ngit: {commit_window_ms: 20}\n";
    fs::write(ws.path("pas.yaml"), custom).unwrap();
    let head = ws.head();
    let status = ws.git_status(&[]);
    let files = ws.git(&["ls-files", "--others", "--cached"]);
    let out = ws.pas_ok(&["init", ws.root.to_str().unwrap()]);
    assert!(out.contains("nothing to add"), "second init said: {out}");
    assert_eq!(fs::read_to_string(ws.path("pas.yaml")).unwrap(), custom);
    assert_eq!(ws.head(), head, "second init committed");
    assert_eq!(ws.git_status(&[]), status);
    assert_eq!(
        ws.git(&["ls-files", "--others", "--cached"]),
        files,
        "second init added files"
    );
}

#[test]
fn git_disabled_still_assigns_and_commits_nothing() {
    let ws = Workspace::with_config("settle_ms: 100\ngit: {enabled: false}\n");
    let commits = ws.commit_count();
    ws.register("a", &[], 1);
    let mut d = ws.serve();
    ws.drop_card("nogit", "title: n\n");
    ws.wait_state("nogit", "assigned/a");
    ws.pas_ok(&["done", "nogit"]);
    ws.wait_db_count("SELECT count(*) FROM transitions WHERE job_id = 'nogit'", 3);
    assert!(d.stop().success());
    assert_eq!(
        ws.commit_count(),
        commits,
        "pas committed with git: {{enabled: false}}"
    );
    let log = ws.pas_ok(&["log", "nogit"]);
    assert!(
        log.contains("assigned/a -> done"),
        "pas log without git: {log}"
    );
}

/// An agent's move made just before the stop (its watch event not yet read when the
/// signal came) is recorded and committed by the stop, not left for the next start.
#[test]
fn a_move_just_before_sigterm_is_committed_by_the_stop() {
    let ws = Workspace::with_config("settle_ms: 100\ngit: {commit_window_ms: 60000}\n");
    ws.register("a", &[], 5);
    let mut d = ws.serve_ready();
    let ids = ["m0", "m1", "m2", "m3", "m4"];
    for id in ids {
        ws.drop_card(id, "title: m\n");
    }
    for id in ids {
        ws.wait_state(id, "assigned/a");
    }
    // Finished as an agent finishes them, and the stop at once.
    for id in ids {
        fs::rename(
            ws.work(&format!("assigned/a/{id}.yaml")),
            ws.work(&format!("done/{id}.yaml")),
        )
        .unwrap();
    }
    assert!(d.stop().success());
    assert_eq!(ws.git_status(&["work"]), Vec::<String>::new());
    let log = ws.git(&["log", "--format=%B"]);
    for id in ids {
        assert!(
            log.contains(&format!("pas: {id} assigned/a -> done")),
            "{log}"
        );
    }
}

#[test]
fn sigterm_exits_promptly_and_commits_the_last_transition() {
    // A commit window far longer than the test: only the shutdown can commit in time.
    let ws = Workspace::with_config("settle_ms: 100\ngit: {commit_window_ms: 60000}\n");
    ws.register("a", &[], 1);
    let mut d = ws.serve();
    // "first" may be taken in by the start-up scan; "last", dropped after "first" was
    // assigned, can only reach the daemon through its main loop, where SIGTERM is handled.
    ws.drop_card("first", "title: f\n");
    ws.wait_state("first", "assigned/a");
    ws.pas_ok(&["done", "first"]);
    ws.drop_card("last", "title: l\n");
    ws.wait_state("last", "assigned/a");
    let start = Instant::now();
    let status = d.stop();
    let took = start.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
    let head = ws.git_log(&[]);
    assert!(
        head[0]
            .message
            .lines()
            .any(|l| l == "pas: last inbox -> assigned/a"),
        "HEAD after SIGTERM: {:?}",
        head[0].message
    );
    assert_eq!(
        ws.git(&["show", "HEAD:work/assigned/a/last.yaml"]),
        fs::read_to_string(ws.work("assigned/a/last.yaml")).unwrap()
    );
    // The database writer drained before the exit, too.
    assert_eq!(
        ws.db_count("SELECT count(*) FROM transitions WHERE job_id = 'last'"),
        2
    );
}

/// Regression: `pas log` sorted by commit time alone (one-second resolution), so
/// transitions committed within one second came out of order.
#[test]
fn pas_log_lists_transitions_in_order() {
    let ws = Workspace::new();
    let _d = ws.serve_ready();
    ws.drop_card("quick", "title: q\n");
    ws.wait_commit_line("pas: quick new -> inbox");
    ws.register("a", &[], 1);
    ws.wait_commit_line("pas: quick inbox -> assigned/a");
    ws.pas_ok(&["done", "quick"]);
    ws.wait_commit_line("pas: quick assigned/a -> done");
    // Three commits in well under a second: git's one-second timestamps tie.
    let text = ws.pas_ok(&["log", "quick"]);
    let order = [
        "quick new -> inbox",
        "quick inbox -> assigned/a",
        "quick assigned/a -> done",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|t| {
            text.find(t)
                .unwrap_or_else(|| panic!("pas log quick lacks {t:?}:\n{text}"))
        })
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "pas log out of order:\n{text}"
    );
    let json = ws.pas_json(&["log", "quick", "--json"]);
    let pas_oids: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["oid"].as_str().unwrap())
        .collect();
    let git_oids: Vec<String> = ws
        .git_log(&["work/**/quick.yaml"])
        .into_iter()
        .map(|c| c.oid)
        .collect();
    assert_eq!(
        pas_oids, git_oids,
        "pas log --json is not newest first like git log"
    );
}

/// Regression: the SIGTERM handler was installed only after start-up, so a SIGTERM during
/// start-up killed `pas serve` (no orderly exit, nothing committed).
#[test]
fn sigterm_during_start_up_exits_cleanly() {
    let ws = Workspace::new();
    ws.register("a", &[], 500);
    for i in 0..200 {
        ws.drop_card(&format!("s{i}"), "title: s\n");
    }
    let mut d = ws.serve();
    // The first assignment shows the start-up's plan at work; 199 more moves and their
    // commit are still to come.
    crate::support::workspace::wait_until(
        "the first start-up assignment",
        crate::support::workspace::WAIT,
        || match fs::read_dir(ws.work("assigned/a")).map(|rd| rd.count()) {
            Ok(n) if n > 0 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let status = d.stop();
    assert_eq!(status.code(), Some(0), "SIGTERM during start-up: {status}");
    let dirty = ws.git_status(&["work"]);
    assert!(dirty.is_empty(), "left uncommitted: {dirty:?}");
}

/// Regression: when another git process held `.git/index.lock` during a pas commit, pas
/// retried the index update only at its next commit; until then `git status` showed the
/// card deleted (staged) and untracked.
#[test]
fn git_index_catches_up_after_a_concurrent_lock() {
    let ws = Workspace::new();
    ws.register("a", &[], 1);
    let _d = ws.serve_ready();
    // What a user's `git status` or `git add` does for a moment, held a little longer.
    let lock = ws.path(".git/index.lock");
    fs::write(&lock, "").unwrap();
    // Held open, as a live git process holds it (a lock nobody holds is stale and pas
    // clears it: crash::stale_git_locks_left_by_a_crash_are_cleared).
    let held = fs::File::open(&lock).unwrap();
    ws.drop_card("locked", "title: l\n");
    ws.wait_state("locked", "assigned/a");
    ws.wait_commit_line("pas: locked inbox -> assigned/a");
    // The other git process lets go a while after pas's commit (the scenario, not a wait
    // for pas: pas has nothing more to do either way).
    std::thread::sleep(Duration::from_millis(300));
    drop(held);
    // Released and over 2 s old, the lock is fair game for pas's stale-lock sweep, which
    // may remove it first (seen under load): either way it is gone.
    if let Err(e) = fs::remove_file(&lock) {
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    }
    // Nothing else happens: pas alone must bring the index in step with its commit.
    ws.wait_work_clean("git status -- work clean");
}

/// For every pas commit, each card that a message line names is, in that commit's tree,
/// where the last line naming it says: a commit is a snapshot of the transitions it lists.
fn assert_commits_match_their_messages(ws: &Workspace) {
    for c in ws.git_log(&[]) {
        let mut last: std::collections::BTreeMap<&str, &str> = Default::default();
        for l in c.message.lines() {
            let words: Vec<&str> = l.strip_prefix("pas: ").unwrap_or("").split(' ').collect();
            if let [id, _from, "->", to, ..] = words.as_slice() {
                last.insert(id, to);
            }
        }
        if last.is_empty() {
            continue;
        }
        let tree = ws.git(&["ls-tree", "-r", "--name-only", &c.oid, "work"]);
        for (id, to) in last {
            let want = format!("work/{to}/{id}.yaml");
            let found: Vec<&str> = tree
                .lines()
                .filter(|p| p.ends_with(&format!("/{id}.yaml")))
                .collect();
            assert!(
                tree.lines().any(|p| p == want),
                "commit {} says {id} -> {to}, but its tree has {found:?}\n{}",
                c.oid,
                c.message
            );
        }
    }
}

/// Regression: the git worker read card files when it committed, not when the transition
/// happened, so a card that moved again during a commit landed in a commit whose message
/// said otherwise (this race test caught it about 5 runs in 6).
#[test]
fn commit_trees_match_their_messages() {
    let ws = Workspace::new();
    ws.register("quick", &[], 4);
    let mut d = ws.serve_ready();
    let n = 100;
    // The agent: finishes each card 20-45 ms after it arrives (around the commit window).
    let agent = {
        let dir = ws.work("assigned/quick");
        let done = ws.work("done");
        std::thread::spawn(move || {
            let mut finished = 0;
            let mut i = 0u64;
            while finished < n {
                let Ok(rd) = fs::read_dir(&dir) else { continue };
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !name.ends_with(".yaml") {
                        continue;
                    }
                    std::thread::sleep(Duration::from_millis(20 + (i % 6) * 5));
                    i += 1;
                    if fs::rename(e.path(), done.join(&name)).is_ok() {
                        finished += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    for i in 0..n {
        ws.drop_card(&format!("q{i:02}"), "title: quick\n");
        std::thread::sleep(Duration::from_millis(5));
    }
    agent.join().unwrap();
    ws.wait_db_count(
        "SELECT count(*) FROM transitions WHERE to_state = 'done'",
        n as i64,
    );
    assert!(d.stop().success());
    assert_commits_match_their_messages(&ws);
}
