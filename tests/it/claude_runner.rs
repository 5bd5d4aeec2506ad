//! pas runs a real coding agent end to end: `pas serve` starts the Claude Code CLI (npm,
//! offline) for a card in a git worktree, its calls answered through pas's gateway by the
//! fake provider playing a script that writes a file with the Write tool; the card lands
//! in review with that file in its diff, `pas approve` moves it to done, and its receipts
//! and spans name the agent and the card. A second run, taken back mid-way, has its whole
//! process group gone within the grace period, and its late exit changes nothing.

use std::fs;
use std::time::Duration;

use crate::messages_clients::claude_code;
use crate::runner::{group_alive, wait_in, wait_in_for};
use crate::support::daemon::Daemon;
use crate::support::workspace::{wait_until, Workspace, WAIT};

/// A workspace whose gateway answers every model name with a scripted fake (Anthropic
/// protocol), and agent `claude-coder` that pas runs as the Claude Code CLI.
fn workspace(claude: &std::path::Path, home: &std::path::Path) -> Workspace {
    let config = [
        "settle_ms: 100",
        "git: {commit_window_ms: 20}",
        "heartbeat_interval_s: 1",
        "providers:",
        "  - name: scripted",
        "    protocol: anthropic",
        "    fake: {script: claude-script.yaml}",
        "    models:",
        "      - {id: fake-claude, capabilities: [chat], price_per_mtok: {input: \"3\", output: \"15\"}}",
        "model_aliases: {\"*\": fake-claude}",
        "",
    ]
    .join("\n");
    let ws = Workspace::with_config(&config);
    let root = ws.path("");
    // Claude Code's Write tool takes an absolute path: the run's worktree is
    // `worktrees/<card id>/` inside the workspace.
    let script = format!(
        "# Side requests (no tools offered) get a short text and use up no step.\n\
         - when: {{tools: false}}\n  text: side answer\n\
         - when: {{last_user_contains: SLEEPY-CARD}}\n  text: too late\n  delay_ms: 60000\n\
         - tool_calls:\n    - name: Write\n      arguments:\n        file_path: {}/worktrees/CC-1/hello.txt\n        content: \"written by claude\\n\"\n\
         - text: I wrote hello.txt.\n",
        root.display().to_string().trim_end_matches('/')
    );
    fs::write(ws.path("claude-script.yaml"), script).unwrap();
    let md = format!(
        "---\nname: claude-coder\ncapabilities: [code]\nrun:\n  command: [\"{}\", \"-p\", \"{{{{ card.title }}}}\", \
         \"--output-format\", \"stream-json\", \"--verbose\", \"--allowedTools\", \"Write\"]\n  workdir: worktree\n  \
         env: {{HOME: \"{}\", ANTHROPIC_API_KEY: \"sk-any\", DISABLE_TELEMETRY: \"1\", DISABLE_AUTOUPDATER: \"1\", \
         CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: \"1\"}}\n  transcript: claude-stream-json\n  review: true\n  \
         timeout_s: 120\n---\nYou write code.\n",
        claude.display(),
        home.display()
    );
    fs::write(ws.path("agents/claude-coder.md"), md).unwrap();
    ws.git(&["add", "agents", "claude-script.yaml"]);
    ws.git(&["commit", "-q", "-m", "a Claude Code agent"]);
    ws
}

/// The workspace of [`workspace`] served, with card `id` (needing `code`) submitted; the
/// agent's home folder and the daemon live as long as the test holds them.
fn submitted(id: &str, title: &str) -> (Workspace, tempfile::TempDir, Daemon) {
    let home = tempfile::tempdir().unwrap();
    let ws = workspace(&claude_code(), home.path());
    let d = ws.serve_ready();
    ws.pas_ok(&["submit", "--id", id, "--title", title, "--requires", "code"]);
    (ws, home, d)
}

#[test]
fn pas_runs_claude_code_for_a_card_its_work_goes_to_review_and_approve_finishes_it() {
    let (ws, _home, _d) = submitted("CC-1", "Write hello.txt");
    // Room for Claude Code's start-up on a loaded machine.
    let card = wait_in_for(&ws, "review", "CC-1", Duration::from_secs(120));
    assert_eq!(card["pas"]["branch"].as_str(), Some("pas/CC-1"));
    assert!(
        card["result"]
            .as_str()
            .unwrap_or("")
            .contains("I wrote hello.txt"),
        "{card:?}"
    );
    let base = card["pas"]["base"].as_str().unwrap().to_string();
    let diff = ws.git(&["diff", &format!("{base}..pas/CC-1")]);
    assert!(diff.contains("+++ b/hello.txt"), "{diff}");
    assert!(diff.contains("+written by claude"), "{diff}");
    let shown = ws.pas_ok(&["show", "CC-1"]);
    assert!(
        shown.contains("written by claude"),
        "pas show has the diff: {shown}"
    );

    ws.pas_ok(&["approve", "CC-1"]);
    wait_in(&ws, "done", "CC-1");

    // Every call went through the gateway: receipts name the agent and the card, and the
    // transcript added none of its own (no double count).
    let receipts = ws.pas_json(&["costs", "--json"]);
    let text = receipts.to_string();
    assert!(text.contains("CC-1"), "{text}");
    let traces = ws.pas_json(&["trace", "CC-1", "--json"]);
    let spans = traces.to_string();
    assert!(spans.contains("\"agent\":\"claude-coder\""), "{spans}");
    assert!(spans.contains("\"kind\":\"llm\""), "{spans}");
    assert!(
        spans.contains("\"kind\":\"tool\""),
        "the Write call is a tool span: {spans}"
    );
}

#[test]
fn a_claude_code_run_taken_back_mid_way_is_ended_and_changes_nothing() {
    let (ws, _home, _d) = submitted("CC-2", "SLEEPY-CARD: ask the slow model");
    ws.wait_assigned("CC-2", "claude-coder");
    // The run is mid-way once Claude Code has started (its stream's `init` line is in the
    // run's log) and asked the scripted model, which takes a minute to answer.
    let pgid = wait_until(
        "Claude Code started by the run",
        Duration::from_secs(60),
        || {
            let log = fs::read_to_string(ws.path("telemetry/runs/CC-2.log")).unwrap_or_default();
            match run_group(&ws, "CC-2") {
                Some(p) if log.contains("\"subtype\":\"init\"") => Ok(p),
                _ => Err(format!("not yet: {log}")),
            }
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(group_alive(pgid));
    // A person takes the card back; pas assigns it again, and a new run starts.
    fs::rename(
        ws.work("assigned/claude-coder/CC-2.yaml"),
        ws.work("inbox/CC-2.yaml"),
    )
    .unwrap();
    wait_until("the whole group ended", Duration::from_secs(20), || {
        (!group_alive(pgid))
            .then_some(())
            .ok_or("alive".to_string())
    });
    // The runner starts a card again only once its old run is settled, so the new run is
    // the sign that the old run's end was handled.
    let new_pgid = wait_until("the new run", WAIT, || {
        run_group(&ws, "CC-2")
            .filter(|p| *p != pgid)
            .ok_or_else(|| "not yet".to_string())
    });
    // The old run's end moved nothing: the card is with the new run, not finished.
    for folder in ["review", "done", "failed"] {
        assert!(
            !ws.work(&format!("{folder}/CC-2.yaml")).exists(),
            "CC-2 in {folder}/"
        );
    }
    assert!(group_alive(new_pgid));
}

/// The process group of job `id`'s run, from the record the runner keeps of it.
fn run_group(ws: &Workspace, id: &str) -> Option<i32> {
    fs::read_to_string(ws.path(&format!("telemetry/runs/{id}.child.json")))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["pgid"].as_i64())
        .map(|p| p as i32)
}
