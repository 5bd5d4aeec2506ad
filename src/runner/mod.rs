//! Running agents (SPEC section 16): pas starts one process per card assigned to an agent
//! whose definition has `run:`, supervises it, and moves the card when it ends.
//!
//! A supervisor acts for its agent through the same files an agent would: it writes the
//! registration and the heartbeats (so the daemon's liveness and take-back work
//! unchanged, and no tokens are spent on beats), watches `work/assigned/<agent>/`, and
//! moves finished cards with the atomic moves of `pas done`. `pas serve` runs one
//! supervisor per such agent; `pas run AGENT` runs one from another terminal or host.
//!
//! - [`definition`] `run:`: shape, checks when read, template rendering.
//! - [`start`]      working folder, context, argv and environment, spawn, output readers.
//! - [`process`]    process groups: spawn, TERM then KILL, identity from `/proc`.
//! - [`supervise`]  the loop: register, beat, start, notice take-backs and exits.
//! - `settle`      a run that exited: drain, close, commit, receipt, move its card.
//! - [`cards`]      a finished run's card moves (first writer wins).
//! - [`worktree`]   a git worktree per card on `pas/<id>`.
//! - [`log`]        capped logs (head and tail) under `telemetry/runs/`.
//! - [`transcript`] stream-json or plain lines into spans of the card's trace.
//! - [`receipts`]   usage from transcripts for calls that bypassed the gateway.
//! - [`orphans`]    records of running children; the sweep after pas died.

pub mod cards;
pub mod log;
pub mod orphans;
pub mod process;
pub mod receipts;
mod settle;
pub mod start;
pub mod supervise;
pub mod transcript;
pub mod worktree;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

/// The `run:` block's parts, read with the agent definition that holds them.
pub use crate::agent::run as definition;
pub use crate::agent::run::{line_of, RunDef};
pub use supervise::{supervise, Options, RunStat};

use crate::agent::AgentDef;
use crate::workspace::Workspace;

/// An agent definition with `run:`, read and checked.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub file: PathBuf,
    pub def: AgentDef,
    /// The Markdown after the front matter: the agent's instructions (`agent.body`).
    pub body: String,
    /// The program, resolved when read (unless it is a template).
    pub program: Option<PathBuf>,
}

impl Loaded {
    /// The `run:` section (present by construction).
    pub fn run(&self) -> &RunDef {
        self.def
            .run
            .as_ref()
            .expect("Loaded is only made with run:")
    }

    /// Processes at once: `run.concurrency`, else `max_concurrent`, else 1.
    pub fn slots(&self) -> u32 {
        self.run()
            .concurrency
            .or(self.def.max_concurrent)
            .unwrap_or(1)
            .max(1)
    }
}

/// Reads one definition file; `Ok(None)` when it has no `run:`. The error names the file,
/// the line and the cause.
pub fn load_file(root: &Path, path: &Path) -> Result<Option<Loaded>> {
    let shown = path
        .strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string();
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let text = crate::intake::read_text(path, crate::intake::FileKind::Definition)
        .map_err(|e| anyhow!("{shown}: {e}"))?;
    let def = AgentDef::parse(stem, &text).map_err(|e| match e.line {
        Some(l) => anyhow!("{shown}:{l}: {}", e.message),
        None => anyhow!("{shown}: {}", e.message),
    })?;
    let Some(run) = &def.run else { return Ok(None) };
    let (front, body) = crate::agent::split_front_matter(&text).unwrap_or(("", ""));
    let program = run.program(root).map_err(|e| {
        anyhow!(
            "{shown}:{}: run: {}",
            line_of(front, e.snippet.as_deref()) + 2,
            e.message
        )
    })?;
    Ok(Some(Loaded {
        file: path.to_path_buf(),
        body: body.trim_start_matches('\n').to_string(),
        def,
        program,
    }))
}

/// What is wrong with the `run:` of a definition's `text`, as `(line, message)`, for
/// `pas validate` (problems elsewhere in the file are the schema's to report).
pub fn check_run(root: &Path, stem: &str, text: &str) -> Option<(Option<usize>, String)> {
    let def = match AgentDef::parse(stem, text) {
        Ok(d) => d,
        Err(e) if e.message.starts_with("run: ") => return Some((e.line, e.message)),
        Err(_) => return None,
    };
    let front = crate::agent::split_front_matter(text).map_or("", |(f, _)| f);
    let e = def.run.as_ref()?.program(root).err()?;
    Some((
        Some(line_of(front, e.snippet.as_deref()) + 2),
        format!("run: {}", e.message),
    ))
}

/// Every definition in `agents/` with `run:`; each refused one as its error (file, line,
/// cause), so the caller runs the good ones and reports the rest.
pub fn load_all(ws: &Workspace) -> (Vec<Loaded>, Vec<anyhow::Error>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let Ok(rd) = std::fs::read_dir(ws.agents_dir()) else {
        return (good, bad);
    };
    let mut paths: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".md") && !crate::workspace::is_ignored_name(n))
        })
        .collect();
    paths.sort();
    for p in paths {
        match load_file(&ws.root, &p) {
            Ok(Some(l)) => good.push(l),
            Ok(None) => {}
            Err(e) => bad.push(e),
        }
    }
    (good, bad)
}

/// The definition of agent `name` with `run:`.
pub fn load(ws: &Workspace, name: &str) -> Result<Loaded> {
    let (good, bad) = load_all(ws);
    if let Some(l) = good.into_iter().find(|l| l.def.name == name) {
        return Ok(l);
    }
    let shown = format!("agents/{name}.md");
    if let Some(e) = bad.into_iter().find(|e| e.to_string().starts_with(&shown)) {
        return Err(e);
    }
    bail!("no agent definition named {name} with a run: section in agents/")
}

/// The folder of run logs and records: `telemetry/runs/` (git-ignored).
pub fn runs_dir(ws: &Workspace) -> PathBuf {
    ws.root.join("telemetry").join("runs")
}

/// The log of card `id`'s runs.
pub fn log_path(ws: &Workspace, id: &str) -> PathBuf {
    runs_dir(ws).join(format!("{id}.log"))
}

/// The gateway's URL as runs see it, from its bind address (a wildcard bind is reached
/// on loopback).
pub fn gateway_url(bind: &str) -> String {
    let bind = bind
        .replace("0.0.0.0", "127.0.0.1")
        .replace("[::]", "[::1]");
    format!("http://{bind}")
}

/// The supervisors `pas serve` runs, one thread per agent with `run:`.
pub struct Fleet {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Starts a supervisor for every agent definition with `run:`. A refused definition is
/// logged with its file, line and cause, and the others run.
pub fn start_all(ws: &Workspace, gateway: String) -> Fleet {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (good, bad) = load_all(ws);
    for e in bad {
        tracing::error!(error = %format!("{e:#}"), "agent definition refused: its runs are not started");
    }
    let opts = Options {
        gateway,
        poll: std::time::Duration::from_millis(50),
        stop: stop.clone(),
        stats: None,
    };
    let mut threads = Vec::new();
    for agent in good {
        let ws = ws.clone();
        let opts = opts.clone();
        let name = agent.def.name.clone();
        let t = std::thread::Builder::new()
            .name(format!("pas-runner-{name}"))
            .spawn(move || {
                if let Err(e) = supervise(&ws, agent, &opts) {
                    tracing::error!(agent = %name, error = %format!("{e:#}"), "the agent's runs stopped");
                }
            });
        match t {
            Ok(t) => threads.push(t),
            Err(e) => tracing::error!(error = %e, "cannot start a supervisor thread"),
        }
    }
    Fleet { stop, threads }
}

impl Fleet {
    /// Ends every running process (their cards stay assigned and run again at the next
    /// start) and waits for the supervisors.
    pub fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}
