//! `pas demo`: the main job on the embedded defaults. A scratch workspace, the real daemon
//! as a child process, and a small simulated swarm that follows the file protocol exactly
//! as real agents would: register by writing a file, receive pushed cards or pull-claim
//! with one rename, add `result:` and move the card to `done/` (sometimes `failed/`), and
//! now and then walk away from a card so that its timeout takes it back. They beat, their
//! context fills as they work (so the governor sends them save-state cards, which they
//! answer with a summary under `docs/runs/`), and one of them now and then falls silent
//! long enough to be taken for dead, then registers again. Their work goes through the
//! gateway to pas's built-in fake provider (see [`llm`]), so traces, receipts and costs
//! move as they would with real models.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use crate::card::State;
use crate::fsops;
use crate::workspace::Workspace;

mod llm;

/// Flags of `pas demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Workspace folder (default: a new folder under the system's temp folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<u64>,
}

/// The simulated agents: (name, pulls work itself).
const SWARM: &[(&str, bool)] = &[
    ("coder-1", false),
    ("coder-2", false),
    ("designer", false),
    ("researcher", true),
    ("writer", false),
    ("manager-backend", false),
];

/// Cards the producer drops: (title, required capabilities).
const WORK: &[(&str, &[&str])] = &[
    ("Implement the card parser", &["code", "rust"]),
    ("Write tests for the scheduler", &["test"]),
    ("Design the status page", &["design"]),
    ("Survey LLM gateways", &["research"]),
    ("Summarise the survey", &["summarize"]),
    ("Review the parser change", &["review"]),
    ("Port the client to Python", &["code", "python"]),
    ("Write the user guide", &["write"]),
    ("Train a model", &["gpu"]),
];

/// A tiny deterministic random source (xorshift), so the demo needs no extra crate.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Runs the demo until Ctrl-C or `--seconds`.
pub fn run(args: DemoArgs) -> Result<i32> {
    let dir = match args.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("pas-demo-{}", ulid::Ulid::new())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config = dir.join("pas.yaml");
    // The demo's own config is written afresh each run (a newer pas may say more); one a
    // person wrote is left alone.
    let ours = std::fs::read_to_string(&config).map_or(true, |t| t.starts_with(CONFIG_MARK));
    if ours {
        let text = format!(
            "{CONFIG_MARK} short timeouts and intervals so take-backs show within seconds\n\
             default_timeout_s: 6\nmax_attempts: 2\nheartbeat_interval_s: 2\n\
             git: {{commit_window_ms: 200}}\n{}",
            llm::CONFIG
        );
        fsops::write_atomic(&config, text.as_bytes(), false)?;
    }
    let report = crate::workspace::init(&dir)?;
    let dir = dir.canonicalize()?;
    let ws = Workspace::at(&dir);
    let mut git = match crate::store::git::GitStore::open(&dir)? {
        Some(g) => g,
        None => crate::store::git::GitStore::init(&dir)?,
    };
    git.commit_paths(&report.created, "pas: init demo workspace", "pas")?;

    let stop = Arc::new(AtomicBool::new(false));
    install_ctrl_c(stop.clone())?;
    let mut daemon = start_daemon(&dir)?;
    println!("pas demo: workspace {}", dir.display());
    match dashboard_url(&dir) {
        Some(url) => println!("pas demo: dashboard {url}   (open it in a browser)"),
        None => println!("pas demo: the dashboard did not start (see the daemon's output)"),
    }
    println!(
        "          watch it with: pas status --root {}   |   git -C {} log --oneline",
        dir.display(),
        dir.display()
    );

    let gateway = gateway_addr(&dir);
    let mut threads = Vec::new();
    for (i, (name, pulls)) in SWARM.iter().enumerate() {
        let (ws, stop, gateway) = (ws.clone(), stop.clone(), gateway.clone());
        let seed = 0x9E37_79B9_7F4A_7C15 ^ ((i as u64 + 1) * 0x1234_5678);
        threads.push(std::thread::spawn(move || {
            let caller = gateway.and_then(|g| llm::Caller::new(&g).ok());
            agent_loop(&ws, name, *pulls, seed, caller.as_ref(), &stop)
        }));
    }
    {
        let (ws, stop) = (ws.clone(), stop.clone());
        threads.push(std::thread::spawn(move || producer(&ws, &stop)));
    }

    let started = Instant::now();
    let mut replayed = false;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_secs(1));
        if args
            .seconds
            .is_some_and(|s| started.elapsed() >= Duration::from_secs(s))
        {
            stop.store(true, Ordering::SeqCst);
        }
        if !replayed && started.elapsed() >= Duration::from_secs(15) {
            if let Some(line) = llm::replay_one(&ws) {
                println!("pas demo: {line}");
                replayed = true;
            }
        }
        if let Ok(snap) = crate::snapshot::load(&ws) {
            let c = snap.board.counts();
            let status = |s: &str| {
                snap.board
                    .agents
                    .values()
                    .filter(|a| a.status() == s)
                    .count()
            };
            let (calls, usd) = llm::spend(&ws).unwrap_or_default();
            println!(
                "[{:>4}s] inbox {:>3} · assigned {:>3} · done {:>4} · failed {:>3} · rejected {} | agents up {} · down {} | {calls} LLM calls · ${:.4}",
                started.elapsed().as_secs(),
                c[&State::Inbox],
                c[&State::Assigned],
                c[&State::Done],
                c[&State::Failed],
                snap.rejected,
                status("up"),
                status("down"),
                usd,
            );
        }
    }
    for t in threads {
        let _ = t.join();
    }
    // SAFETY: signalling our own child process by pid.
    unsafe {
        libc::kill(daemon.id() as i32, libc::SIGTERM);
    }
    let _ = daemon.wait();
    println!("pas demo stopped. The workspace stays at {}", dir.display());
    println!("  git -C {} log --oneline | head", dir.display());
    println!(
        "  pas traces --root {0}   |   pas costs --root {0}",
        dir.display()
    );
    Ok(0)
}

fn start_daemon(dir: &Path) -> Result<Child> {
    let exe = std::env::current_exe().context("cannot find the pas binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--root"]).arg(dir);
    // The usual ports when free (a stable URL), else any free port: the demo must start.
    for (var, default) in [
        ("PAS_DASHBOARD_BIND", "127.0.0.1:6101"),
        ("PAS_GATEWAY_BIND", "127.0.0.1:6120"),
    ] {
        if std::env::var_os(var).is_none() && std::net::TcpListener::bind(default).is_err() {
            cmd.env(var, "127.0.0.1:0");
        }
    }
    let child = cmd
        .env(
            "PAS_LOG",
            std::env::var("PAS_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start pas serve")?;
    let ws = Workspace::at(dir);
    let start = Instant::now();
    while !crate::workspace::lock::daemon_running(&ws) && start.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

/// The first line of a `pas.yaml` the demo wrote (and may write again).
const CONFIG_MARK: &str = "# pas demo:";

/// The dashboard's URL, from the addresses `pas serve` records once it listens.
fn dashboard_url(dir: &Path) -> Option<String> {
    listening(dir, "dashboard").map(|a| format!("http://{a}/"))
}

/// The gateway's `host:port`.
fn gateway_addr(dir: &Path) -> Option<String> {
    listening(dir, "gateway")
}

/// Where `pas serve` listens for `what`, from the addresses it records once it listens.
fn listening(dir: &Path, what: &str) -> Option<String> {
    let path = crate::server::addresses_path(&Workspace::at(dir));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let addr = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v[what].as_str().map(str::to_string));
        if addr.is_some() {
            return addr;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn install_ctrl_c(stop: Arc<AtomicBool>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        rt.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
            stop.store(true, Ordering::SeqCst);
        })
    });
    Ok(())
}

/// Drops a card every ~0.6 s; now and then one that depends on the previous card.
fn producer(ws: &Workspace, stop: &AtomicBool) {
    let mut dice = Dice(0xDEAD_BEEF_CAFE_F00D);
    let mut last: Option<String> = None;
    let inbox = ws.state_dir(State::Inbox);
    while !stop.load(Ordering::SeqCst) {
        let (title, caps) = WORK[dice.below(WORK.len() as u64) as usize];
        let id = ulid::Ulid::new().to_string();
        if dice.below(8) == 0 {
            // A card pas runs itself: the gateway routes it by capability.
            let text = "title: Classify the new bug reports\nllm:\n  require_caps: [classify]\n  \
                        max_tokens: 100\n  messages:\n    - {role: user, content: \"Sort these \
                        reports by severity: crash on start; typo in help; slow status\"}\n";
            drop_card(&inbox, &id, text);
            std::thread::sleep(Duration::from_millis(400 + dice.below(400)));
            continue;
        }
        let priority = ["critical", "high", "medium", "medium", "low"][dice.below(5) as usize];
        let mut text = format!(
            "title: {title}\npriority: {priority}\nrequires: [{}]\n",
            caps.join(", ")
        );
        if let (Some(prev), 0) = (&last, dice.below(4)) {
            text.push_str(&format!("depends_on: [{prev}]\n"));
        }
        drop_card(&inbox, &id, &text);
        last = Some(id);
        std::thread::sleep(Duration::from_millis(400 + dice.below(400)));
    }
}

/// Writes a card beside the inbox under a hidden name, then renames it in: pas never
/// sees half a card.
fn drop_card(inbox: &Path, id: &str, text: &str) {
    let tmp = inbox.join(format!(".{id}.tmp"));
    if fsops::write_atomic(&tmp, text.as_bytes(), false).is_ok() {
        let _ = std::fs::rename(&tmp, inbox.join(format!("{id}.yaml")));
    }
}

/// Context window of the simulated agents, in tokens.
const CTX_LIMIT: u64 = 200_000;

/// One simulated agent: register, then beat and work the cards in `assigned/<name>/`.
/// With a `caller`, each card it finishes is worked through the gateway first.
fn agent_loop(
    ws: &Workspace,
    name: &str,
    pulls: bool,
    seed: u64,
    caller: Option<&llm::Caller>,
    stop: &AtomicBool,
) {
    let mut dice = Dice(seed);
    let reg = ws.registration_path(name);
    // Written without an epoch: pas raises it past any this name held before.
    let text = format!("name: {name}\nmax_concurrent: 2\nheartbeat_interval_s: 2\n");
    if fsops::write_atomic(&reg, text.as_bytes(), false).is_err() {
        return;
    }
    let mine = ws.state_dir(State::Assigned).join(name);
    let _ = std::fs::create_dir_all(&mine);
    let mut ctx_used: u64 = 10_000;
    let mut round: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(300 + dice.below(1500)));
        round += 1;
        if name == "coder-2" && round % 60 == 15 {
            // Falls silent past its deregistration (3 intervals), then comes back.
            std::thread::sleep(Duration::from_secs(8));
            let _ = fsops::write_atomic(&reg, text.as_bytes(), false);
            continue;
        }
        let cards: Vec<PathBuf> = std::fs::read_dir(&mine)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                    .collect()
            })
            .unwrap_or_default();
        let save_state = cards
            .iter()
            .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("kind: save-state")));
        let job = cards
            .first()
            .and_then(|p| p.file_stem())
            .map(|s| s.to_string_lossy().to_string());
        // coder-1 says it is blocked now and then (the board and the tree show it).
        let blocked = name == "coder-1" && round % 40 >= 30;
        beat(ws, name, ctx_used, job.as_deref(), blocked, round);
        if blocked {
            continue;
        }
        if let Some(card) = save_state {
            save_summary(ws, name, card);
            ctx_used = 5_000; // cleared, the summary read back
            finish(
                ws,
                card,
                State::Done,
                "result: summary written, context cleared\n",
            );
            continue;
        }
        if pulls {
            pull_one(ws, &mine);
        }
        let Some(card) = cards.first() else {
            continue;
        };
        match dice.below(20) {
            0 => {} // walks away: the card's timeout will take it back
            1 | 2 => finish(
                ws,
                card,
                State::Failed,
                "error: the simulated agent hit an error\n",
            ),
            _ => {
                ctx_used = (ctx_used + 15_000 + dice.below(25_000)).min(CTX_LIMIT);
                let answer = caller.and_then(|c| c.work(ws, name, card, dice.below(2) == 0));
                let result = answer.unwrap_or_else(|| format!("done by {name}"));
                // A JSON string is a YAML scalar: quotes and newlines stay the answer's.
                let line = format!("result: {}\n", serde_json::Value::from(result));
                finish(ws, card, State::Done, &line);
            }
        }
    }
}

/// One heartbeat line, appended with a single write: the agent's own report (status,
/// job, progress, cpu, memory, a note) as a real agent would give it.
fn beat(ws: &Workspace, name: &str, ctx_used: u64, job: Option<&str>, blocked: bool, round: u64) {
    use std::io::Write;
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (status, job) = match job {
        _ if blocked => ("blocked", String::new()),
        Some(j) => ("running", format!(",\"job\":\"{j}\"")),
        None => ("idle", String::new()),
    };
    let note = match status {
        "blocked" => "waiting for a review of the parser",
        "running" => "working",
        _ => "waiting for work",
    };
    let progress = (round % 10) as f64 / 10.0;
    let cpu = 0.1 + (round % 7) as f64 / 10.0;
    let mem = 200 + ctx_used / 400;
    let line = format!(
        "{{\"ts\":\"{ts}\",\"status\":\"{status}\"{job},\"ctx_used\":{ctx_used},\"ctx_limit\":{CTX_LIMIT},\"progress\":{progress},\"cpu\":{cpu:.1},\"mem_mb\":{mem},\"note\":\"{note}\"}}\n"
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ws.heartbeats().join(format!("{name}.jsonl")))
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Writes the summary a save-state card asks for, at its `summary_path`.
fn save_summary(ws: &Workspace, name: &str, card: &Path) {
    let text = std::fs::read_to_string(card).unwrap_or_default();
    let Some(rel) = text
        .lines()
        .find_map(|l| l.strip_prefix("summary_path: "))
        .map(|p| p.trim().trim_matches(['\'', '"']).to_string())
        .filter(|p| p.starts_with("docs/runs/") && !p.contains(".."))
    else {
        return;
    };
    let path = ws.root.join(rel);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = fsops::write_atomic(
        &path,
        format!("# {name}: state before clearing the context\n\nWork so far: simulated.\n")
            .as_bytes(),
        false,
    );
}

/// A pull claim: one rename from the inbox; losing the race just means trying later.
fn pull_one(ws: &Workspace, mine: &Path) {
    let inbox = ws.state_dir(State::Inbox);
    let Ok(rd) = std::fs::read_dir(&inbox) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        if p.extension().is_some_and(|x| x == "yaml")
            && text.contains("research")
            && !text.contains("depends_on")
        {
            if let Some(n) = p.file_name() {
                let _ = std::fs::rename(&p, mine.join(n));
            }
            return;
        }
    }
}

/// Adds a line to the card (in the agent's own folder) and moves it to `done/`/`failed/`.
fn finish(ws: &Workspace, card: &Path, to: State, line: &str) {
    let Ok(mut text) = std::fs::read_to_string(card) else {
        return;
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    // The result goes before pas's own block, where a person would write it.
    match text.find("\npas:") {
        Some(i) => text.insert_str(i + 1, line),
        None => text.push_str(line),
    }
    let Some(name) = card.file_name() else {
        return;
    };
    let tmp = card.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    if fsops::write_atomic(&tmp, text.as_bytes(), false).is_ok()
        && std::fs::rename(&tmp, card).is_ok()
    {
        let _ = std::fs::rename(card, ws.state_dir(to).join(name));
    }
}
