//! Agents pas runs (SPEC section 16): `run:` definitions, a real process per card (small
//! Python programs stand in for Claude Code), the card moved by the exit, take-backs that
//! end the whole process group, logs, worktrees, transcripts and bad definitions.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::support::workspace::{wait_until, Daemon, Workspace, WAIT};

/// Settings for runner tests: quick settling, commits and beats.
pub(crate) const RUN_FAST: &str =
    "settle_ms: 100\ngit: {commit_window_ms: 20}\nheartbeat_interval_s: 1\n";

/// Writes `agents/<name>.py` (executable) and `agents/<name>.md` whose front matter is
/// `name`, capabilities `[code]` and `run:` made of `run` (YAML lines under `run:`).
pub(crate) fn agent(ws: &Workspace, name: &str, run: &str, script: &str) {
    let py = ws.path(&format!("agents/{name}.py"));
    fs::write(&py, script).unwrap();
    fs::set_permissions(&py, fs::Permissions::from_mode(0o755)).unwrap();
    let md = format!("---\nname: {name}\ncapabilities: [code]\nrun:\n{run}---\nYou do the work.\n");
    fs::write(ws.path(&format!("agents/{name}.md")), md).unwrap();
}

/// `pas run AGENT` (stopped with SIGTERM when dropped), once it has registered.
pub(crate) fn pas_run(ws: &Workspace, agent: &str) -> Daemon {
    let d = ws.spawn_logged(&["run", agent, "--poll-ms", "20"], &[]);
    let reg = ws.work(&format!("registry/{agent}.yaml"));
    wait_until("pas run to register its agent", WAIT, || {
        reg.exists().then_some(()).ok_or_else(|| d.log_text())
    });
    d
}

/// Submits a card with id `id`, title `title`, requiring `code`.
pub(crate) fn submit(ws: &Workspace, id: &str, title: &str) {
    ws.pas_ok(&["submit", "--id", id, "--title", title, "--requires", "code"]);
}

/// A workspace with agent `name` (see [`agent`]) run by `pas run`, and card `id` claimed
/// for it. (The runner is dropped, so stopped, before the workspace goes.)
pub(crate) fn claimed(name: &str, run: &str, script: &str, id: &str) -> (Workspace, Daemon) {
    let ws = Workspace::with_config(RUN_FAST);
    agent(&ws, name, run, script);
    let runner = pas_run(&ws, name);
    submit(&ws, id, &format!("a card for {name}"));
    ws.pas_ok(&["claim", name, id]);
    (ws, runner)
}

/// The card in `work/<folder>/<id>.yaml` once it is there.
pub(crate) fn wait_in(ws: &Workspace, folder: &str, id: &str) -> serde_yaml::Value {
    wait_in_for(ws, folder, id, Duration::from_secs(20))
}

/// [`wait_in`], waiting up to `limit`.
pub(crate) fn wait_in_for(
    ws: &Workspace,
    folder: &str,
    id: &str,
    limit: Duration,
) -> serde_yaml::Value {
    let path = ws.work(&format!("{folder}/{id}.yaml"));
    wait_until(&format!("{id} in {folder}/"), limit, || {
        let text = fs::read_to_string(&path).map_err(|e| format!("{e}; {:?}", ws.places_of(id)))?;
        serde_yaml::from_str(&text).map_err(|e| e.to_string())
    })
}

/// Whether a process of group `pgid` is alive (zombies aside), from `/proc`.
pub(crate) fn group_alive(pgid: i32) -> bool {
    fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        let Some(close) = stat.rfind(')') else {
            return false;
        };
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        f.len() > 3 && f[2] == pgid.to_string() && f[0] != "Z"
    })
}

const STREAM_JSON_AGENT: &str = r#"#!/usr/bin/env python3
import json, os, sys
assert len(sys.argv) == 2, sys.argv
title = sys.argv[1]
sys.stderr.write("argv=%d job=%s agent=%s headers=%s tp=%s\n" % (len(sys.argv), os.environ["PAS_JOB"],
    os.environ["PAS_AGENT"], os.environ["ANTHROPIC_CUSTOM_HEADERS"].replace("\n", "|"), os.environ.get("TRACEPARENT")))
def out(o):
    print(json.dumps(o), flush=True)
usage = {"input_tokens": 10, "cache_read_input_tokens": 500, "cache_creation_input_tokens": 25, "output_tokens": 7}
out({"type": "system", "subtype": "init", "model": "claude-sonnet-4-5", "session_id": "s-1"})
out({"type": "assistant", "message": {"id": "msg_1", "model": "claude-sonnet-4-5", "role": "assistant",
     "content": [{"type": "text", "text": "I will list the files."}], "usage": usage}})
out({"type": "assistant", "message": {"id": "msg_1", "model": "claude-sonnet-4-5", "role": "assistant",
     "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}], "usage": usage}})
out({"type": "user", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt", "is_error": False}]}})
out({"type": "assistant", "message": {"id": "msg_2", "model": "claude-sonnet-4-5", "role": "assistant",
     "content": [{"type": "text", "text": "Done."}], "usage": usage}})
out({"type": "result", "subtype": "success", "is_error": False, "num_turns": 2, "result": "finished: " + title,
     "total_cost_usd": 0.0375, "session_id": "s-1",
     "modelUsage": {"claude-sonnet-4-5": {"inputTokens": 20, "outputTokens": 14, "cacheReadInputTokens": 1000,
                    "cacheCreationInputTokens": 50, "costUSD": 0.0375}}})
"#;

#[test]
fn a_run_agent_finishes_its_card_with_the_final_message_spans_and_transcript_receipts() {
    let ws = Workspace::with_config(RUN_FAST);
    // The agent's calls bypass pas's gateway (a subscription): its usage is receipted.
    agent(
        &ws,
        "claude-ish",
        "  command: [\"agents/claude-ish.py\", \"{{ card.title }}\"]\n  transcript: claude-stream-json\n  env: {ANTHROPIC_BASE_URL: \"https://api.anthropic.invalid\", MY_SECRET: \"s3cr3t-{{ card.id }}\"}\n",
        STREAM_JSON_AGENT,
    );
    let _d = ws.serve();
    let title = r#"fix it; rm -rf / $(touch /tmp/pwned) `id` "quoted" 'single' && echo | cat"#;
    submit(&ws, "R-1", title);
    let card = wait_in(&ws, "done", "R-1");
    assert_eq!(
        card["result"].as_str(),
        Some(format!("finished: {title}").as_str())
    );
    let trace_id = card["pas"]["trace_id"].as_str().unwrap().to_string();

    // One argv element with the whole title; attribution and trace context in the env.
    let log = ws.pas_ok(&["logs", "R-1"]);
    assert!(log.contains("argv=2 job=R-1 agent=claude-ish"), "{log}");
    assert!(
        log.contains("x-pas-agent: claude-ish|x-pas-job: R-1|traceparent: 00-"),
        "{log}"
    );
    assert!(log.contains(&format!("tp=00-{trace_id}-")), "{log}");
    assert!(
        !log.contains("s3cr3t"),
        "an env value reached the log: {log}"
    );

    // Turns and the tool call are spans of the card's trace, under the run's span.
    let spans = crate::support::traces::spans_when(&ws, &trace_id, "the run's spans", |s| {
        s.iter().filter(|x| x["kind"] == "llm").count() == 2
            && s.iter().any(|x| x["kind"] == "tool" && x["status"] == "ok")
            && s.iter()
                .any(|x| x["kind"] == "agent" && x["status"] == "ok")
    });
    let tool = spans.iter().find(|s| s["kind"] == "tool").unwrap();
    assert_eq!(tool["name"], "Bash");

    // One receipt from the transcript, at the cost the agent reported (no price in pas.yaml).
    ws.wait_db_count(
        "SELECT count(*) FROM receipts WHERE job_id = 'R-1' AND usage_source = 'transcript'",
        1,
    );
    let (cost, input, output): (String, i64, i64) = ws
        .db_query(
            "SELECT cost_usd, input_tokens, output_tokens FROM receipts WHERE job_id = 'R-1'",
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .remove(0);
    assert_eq!((cost.as_str(), input, output), ("0.0375", 1070, 14));
}

#[test]
fn calls_through_the_gateway_are_not_receipted_again_from_the_transcript() {
    let (ws, _run) = claimed(
        "via-pas",
        "  command: [\"agents/via-pas.py\", \"{{ card.title }}\"]\n  transcript: claude-stream-json\n",
        STREAM_JSON_AGENT,
        "G-1",
    );
    let card = wait_in(&ws, "done", "G-1");
    assert_eq!(
        card["result"].as_str(),
        Some("finished: a card for via-pas")
    );
    let n = ws
        .try_db_count("SELECT count(*) FROM receipts WHERE usage_source = 'transcript'")
        .unwrap_or(0);
    assert_eq!(
        n, 0,
        "usage of calls that went through pas was receipted twice"
    );
}

#[test]
fn a_worktree_run_commits_its_changes_on_its_branch_and_goes_to_review() {
    let ws = Workspace::with_config(RUN_FAST);
    agent(
        &ws,
        "coder",
        "  command: [\"agents/coder.py\", \"{{ workdir }}\"]\n  workdir: worktree\n  review: true\n",
        "#!/usr/bin/env python3\nimport os, sys\nassert os.getcwd() == sys.argv[1]\nopen('hello.txt', 'w').write('hi\\n')\nprint('wrote hello.txt')\n",
    );
    ws.git(&["add", "agents"]);
    ws.git(&["commit", "-q", "-m", "agents"]);
    let _run = pas_run(&ws, "coder");
    submit(&ws, "W-1", "write hello");
    ws.pas_ok(&["claim", "coder", "W-1"]);
    let card = wait_in(&ws, "review", "W-1");
    assert_eq!(card["pas"]["branch"].as_str(), Some("pas/W-1"));
    let base = card["pas"]["base"].as_str().unwrap().to_string();
    assert_eq!(
        base,
        ws.head(),
        "the base is the commit the branch started from"
    );
    assert!(card["result"].as_str().unwrap().contains("wrote hello.txt"));
    let diff = ws.git(&["diff", "--name-only", &format!("{base}..pas/W-1")]);
    assert_eq!(diff.trim(), "hello.txt");
    // The worktree lived inside the workspace's folder for them, and is gone.
    assert!(!ws.path("worktrees/W-1").exists());
    assert!(ws
        .git(&["status", "--porcelain"])
        .lines()
        .all(|l| !l.contains("worktrees")));
}

#[test]
fn a_failing_run_fails_its_card_with_the_logs_last_lines() {
    // (stdout and stderr are two pipes: the pause keeps their order in the log plain.)
    let (ws, _run) = claimed(
        "breaks",
        "  command: [\"agents/breaks.py\"]\n",
        "#!/usr/bin/env python3\nimport sys, time\nfor i in range(50): print('step', i)\nsys.stdout.flush()\ntime.sleep(0.2)\nsys.stderr.write('boom: the disk is on fire\\n')\nsys.exit(3)\n",
        "F-1",
    );
    let card = wait_in(&ws, "failed", "F-1");
    let error = card["error"].as_str().unwrap();
    assert!(error.starts_with("exit status 3"), "{error}");
    assert!(
        error.contains("boom: the disk is on fire") && error.contains("step 49"),
        "{error}"
    );
    assert!(
        !error.contains("step 10\n"),
        "the whole log went into the card: {error}"
    );
}

#[test]
fn a_card_taken_back_mid_run_ends_the_whole_group_within_the_grace_and_its_exit_changes_nothing() {
    let ws = Workspace::with_config(RUN_FAST);
    // Ignores TERM (so only KILL ends it) and keeps a grandchild in its group.
    agent(
        &ws,
        "stubborn",
        "  command: [\"agents/stubborn.py\"]\n  grace_s: 1\n",
        "#!/usr/bin/env python3\nimport os, signal, subprocess, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nsubprocess.Popen(['sleep', '60'])\nopen(os.environ['PAS_WORKSPACE'] + '/pgid-' + os.environ['PAS_JOB'], 'w').write(str(os.getpgid(0)))\nprint('working', flush=True)\ntime.sleep(60)\nprint('late output')\n",
    );
    let _run = pas_run(&ws, "stubborn");
    submit(&ws, "T-1", "long job");
    ws.pas_ok(&["claim", "stubborn", "T-1"]);
    let pgid_file = ws.path("pgid-T-1");
    let pgid: i32 = wait_until("the agent to start", WAIT, || {
        fs::read_to_string(&pgid_file)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                t.trim()
                    .parse()
                    .map_err(|e: std::num::ParseIntError| e.to_string())
            })
    });
    assert!(group_alive(pgid));
    // A person moves the card away (the daemon's take-back is the same move).
    ws.pas_ok(&["fail", "T-1", "--error", "stopped by hand"]);
    let t0 = Instant::now();
    wait_until(
        "the process group to be gone",
        Duration::from_secs(5),
        || {
            (!group_alive(pgid))
                .then_some(())
                .ok_or_else(|| "alive".to_string())
        },
    );
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "took {:?} with a grace of 1 s",
        t0.elapsed()
    );
    wait_until("the runner to settle the ended run", WAIT, || {
        let log = ws.pas_ok(&["logs", "T-1"]);
        log.contains("after pas ended it").then_some(()).ok_or(log)
    });
    let card = wait_in(&ws, "failed", "T-1");
    assert_eq!(card["error"].as_str(), Some("stopped by hand"));
    assert!(!ws.work("done/T-1.yaml").exists());
    assert!(!ws.pas_ok(&["logs", "T-1"]).contains("late output"));
}

#[test]
fn a_flooding_run_keeps_a_capped_log_with_its_head_and_tail() {
    let (ws, _run) = claimed(
        "flood",
        "  command: [\"agents/flood.py\"]\n  max_log_bytes: 100000\n",
        "#!/usr/bin/env python3\nimport sys\nfor i in range(300000): sys.stdout.write('line %d of a flood\\n' % i)\nprint('the end')\n",
        "L-1",
    );
    let card = wait_in(&ws, "done", "L-1");
    assert!(card["result"].as_str().unwrap().ends_with("the end"));
    let log = fs::read_to_string(ws.path("telemetry/runs/L-1.log")).unwrap();
    assert!(log.len() < 110_000, "log of {} bytes", log.len());
    assert!(log.contains("line 0 of a flood") && log.contains("line 299999 of a flood"));
    assert!(log.contains("bytes of output cut here"));
}

#[test]
fn bad_run_definitions_are_refused_with_file_line_and_cause_and_serve_keeps_going() {
    let ws = Workspace::with_config(RUN_FAST);
    let cases = [
        (
            "unknown-var",
            "  command: [\"sh\", \"{{ cards.title }}\"]\n",
            "agents/unknown-var.md:5: run: command template",
            "unknown variable cards",
        ),
        (
            "broken",
            "  command: [\"sh\",\n    \"{{ card.title \"]\n",
            "agents/broken.md:6: run: command template",
            "card.title",
        ),
        (
            "no-program",
            "  command: [\"no-such-program-anywhere\", \"x\"]\n",
            "agents/no-program.md:5: run:",
            "not on PATH",
        ),
        (
            "typo",
            "  commands: [\"sh\"]\n",
            "agents/typo.md:",
            "unknown field `commands`",
        ),
    ];
    for (name, run, at, cause) in cases {
        agent(&ws, name, run, "");
        let out = ws.pas(&["run", name]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(at) && err.contains(cause), "{name}: {err}");
    }
    // pas validate names them too.
    let out = ws.pas(&["validate"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("agents/unknown-var.md:5") && text.contains("unknown variable cards"),
        "{text}"
    );
    assert!(
        text.contains("agents/no-program.md:5") && text.contains("not on PATH"),
        "{text}"
    );
    // The daemon starts anyway, says why, and runs the good agent beside the bad ones.
    agent(
        &ws,
        "fine",
        "  command: [\"agents/fine.py\"]\n",
        "#!/usr/bin/env python3\nprint('ok')\n",
    );
    let d = ws.serve();
    submit(&ws, "B-1", "still works");
    let card = wait_in(&ws, "done", "B-1");
    assert_eq!(card["result"].as_str(), Some("ok"));
    assert!(
        d.log_text().contains("agents/no-program.md:5: run:"),
        "{}",
        d.log_text()
    );
}

#[test]
fn a_run_past_its_timeout_is_ended_and_its_card_taken_back() {
    let (ws, _run) = claimed(
        "slow",
        "  command: [\"agents/slow.py\"]\n  timeout_s: 0.5\n  grace_s: 1\n",
        "#!/usr/bin/env python3\nimport time\nprint('starting', flush=True)\ntime.sleep(60)\n",
        "S-1",
    );
    let card = wait_in(&ws, "inbox", "S-1");
    assert_eq!(card["pas"]["attempts"].as_u64(), Some(1));
    let last = card["pas"]["history"]
        .as_sequence()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["reason"].as_str(), Some("run timed out after 0.5 s"));
    assert!(ws
        .pas_ok(&["logs", "S-1"])
        .contains("ending the run: run timed out"));
}
