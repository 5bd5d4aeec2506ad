//! `pas serve`: wires the watcher, the engine and the two store workers, and shuts them
//! down in order.
//!
//! The engine runs on one thread of its own (file work is blocking), fed by the watcher
//! over a bounded channel. Git commits and telemetry rows go to their own threads. On
//! SIGINT or SIGTERM the watcher stops first, the engine finishes its batch, then the git
//! worker commits what is pending (the commit in flight completes) and the database writer
//! drains.

mod actions;
mod archive;
pub mod effect;
mod engine;
mod exec;
mod faults;
mod liveness;
mod pacing;
mod reconcile;
mod record;
mod recover;
mod shelf;
mod trust;
mod ttl;

#[cfg(test)]
mod clock_tests;

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Kept for the daemon's own `super::rel` (merge aid; the function is `workspace::rel`).
pub(crate) use crate::workspace::rel;
pub use engine::Engine;

use crate::clock::Clock;

use crate::store::{db, git};
use crate::watch::{self, Input, Readiness};
use crate::workspace::lock::lock;
use crate::workspace::Workspace;

/// Options of `pas serve`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Reconcile once (recovery, scan, plan, commit) and exit.
    pub once: bool,
    /// Overrides of `dashboard.bind` / `gateway.bind`.
    pub dashboard_bind: Option<String>,
    pub gateway_bind: Option<String>,
    /// Required of every HTTP request (and for non-loopback binds).
    pub token: Option<String>,
}

/// Builds an engine with its sinks from the workspace's configuration.
pub fn build(ws: &Workspace, clock: Clock) -> Result<Engine> {
    let cfg = ws.config()?;
    // The telemetry writer first: it creates and migrates the database, which the git
    // worker's history index then opens (two first opens of a new database at once race).
    let db_path = ws.db_path();
    let writer = db::TelemetryWriter::spawn(&db_path)?;
    let git_worker = if cfg.git.enabled {
        let store = match git::GitStore::open(&ws.root)? {
            Some(mut s) => {
                // We hold the daemon lock: a git lock nobody holds open is a crash's leftover,
                // and so is an index that lags behind HEAD.
                s.clear_stale_locks();
                if let Err(e) = s.repair_index_under(&ws.work()) {
                    tracing::warn!(error = %e, "cannot compare the git index with HEAD");
                }
                if let Err(e) = s.reopen() {
                    tracing::warn!(error = %e, "cannot reopen the repository");
                }
                s
            }
            None => {
                tracing::info!(root = %ws.root.display(), "no git repository here: running git init");
                git::GitStore::init(&ws.root)?
            }
        };
        // The worker keeps the history index up with HEAD (catching up at start, in steps,
        // with what was committed while pas was down) and the repository packed.
        let keeping = git::Keeping {
            index: Some(ws.db_path()),
            maintenance: Some(cfg.git.maintenance.clone()),
        };
        Some(git::CommitWorker::spawn_keeping(
            store,
            cfg.commit_window(),
            cfg.git.author.clone(),
            keeping,
        ))
    } else {
        None
    };
    let (seq, epochs) = match db::open_read_only(&db_path)? {
        Some(conn) => (db::max_seq(&conn)?, db::agent_epochs(&conn)?),
        None => (0, Default::default()),
    };
    Ok(Engine::new(ws.clone(), cfg, git_worker, Some(writer), seq, clock).with_epochs(epochs))
}

/// Runs the daemon until SIGINT/SIGTERM (or once, with `opts.once`).
pub fn serve(ws: &Workspace, opts: &ServeOptions) -> Result<()> {
    let _lock = lock(ws)?;
    // glibc gives each thread that allocates its own 64 MiB arena; the daemon's few
    // worker threads need no more than two, and RSS stays well down.
    // SAFETY: mallopt only tunes the allocator; called before the worker threads start.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    // Signals first: a SIGTERM during start-up still ends in an orderly shutdown, taken
    // as the first input once start-up is done.
    let (tx, rx) = sync_channel::<Input>(65_536);
    install_signal_handler(tx.clone())?;
    crate::workspace::ensure_dirs(ws).context("cannot prepare the workspace folders")?;
    let clock = Clock::from_env().map_err(|e| anyhow::anyhow!(e))?;
    let cfg = ws.config()?;
    let binds = crate::server::Binds {
        dashboard: opts
            .dashboard_bind
            .clone()
            .unwrap_or_else(|| cfg.dashboard.bind.clone()),
        gateway: opts
            .gateway_bind
            .clone()
            .unwrap_or_else(|| cfg.gateway.bind.clone()),
        token: opts.token.clone(),
    };
    if !opts.once {
        crate::server::check(&binds)?;
    }
    let mut engine = build(ws, clock)?;

    // Watch before the first scan, so nothing that lands during the scan is missed.
    let (watcher, overflowed) =
        watch::start(&ws.work(), &ws.agents_dir(), tx.clone()).map_err(|e| watch_error(e, ws))?;
    crate::health::watching(&ws.work());
    // With `remote:`, a probe tells `/health` whether the shared remote answers.
    let _remote =
        (engine.cfg.remote.as_ref()).and_then(|r| crate::remote::probe::start(&ws.root, r));
    engine.start();
    engine.let_go_of_start_up();
    let counts = engine.board.counts();
    tracing::info!(
        root = %ws.root.display(),
        cards = engine.board.cards.len(),
        agents = engine.board.agents.len(),
        ?counts,
        "pas is watching"
    );
    if opts.once {
        drop(watcher);
        finish(engine, None);
        return Ok(());
    }
    let shared = crate::server::Shared {
        ws: ws.clone(),
        hub: engine.hub.clone(),
        db: engine.db.as_ref().map(|d| d.sink()),
        gateway_metrics: Default::default(),
    };
    let servers = match crate::server::start(shared, &binds, tx.clone(), engine.clock.clone()) {
        Ok(s) => {
            engine.run_llm_cards(s.llm_jobs.clone());
            s
        }
        Err(e) => {
            drop(watcher);
            finish(engine, None);
            return Err(e);
        }
    };
    drop(tx);
    let ingest = start_trace_ingest(&engine);
    // Agents with `run:` (SPEC section 16): a supervised process per assigned card.
    let fleet =
        crate::runner::start_all(ws, crate::runner::gateway_url(&servers.gateway.to_string()));
    run_loop(&mut engine, &rx, &overflowed);
    fleet.stop();
    if let Some(i) = ingest {
        i.stop();
    }
    drop(watcher);
    finish(engine, Some((servers, &rx)));
    Ok(())
}

/// Starts reading agents' span files (`work/traces/`) unless `traces.capture` is off. A
/// watch that cannot start is logged: the board runs without agents' spans rather than
/// not at all.
fn start_trace_ingest(engine: &Engine) -> Option<crate::trace::jsonl::Ingesting> {
    let capture = engine.cfg.traces.capture;
    if capture == crate::trace::Capture::Off {
        return None;
    }
    let tracer = crate::trace::Tracer::new(
        capture,
        engine.db.as_ref().map(|d| d.sink()),
        engine.hub.clone(),
    );
    let dir = engine.ws.work().join("traces");
    crate::trace::jsonl::start(&dir, tracer)
        .map_err(|e| {
            tracing::error!(error = %e, dir = %dir.display(), "cannot watch agents' span files: they are not read");
        })
        .ok()
}

/// Why the watch could not start. A kernel limit (watches or instances) is said with the
/// sysctl that sets it, its value and the command that raises it: the user's fix.
fn watch_error(e: notify::Error, ws: &Workspace) -> anyhow::Error {
    match watch::limit_hint(&e) {
        Some(hint) => anyhow::anyhow!("cannot watch {}: {hint}", ws.work().display()),
        None => anyhow::Error::new(e).context(format!("cannot watch {}", ws.work().display())),
    }
}

/// SIGINT and SIGTERM become `Input::Shutdown`; a second one hurries the shutdown.
fn install_signal_handler(tx: SyncSender<Input>) -> Result<()> {
    on_signals(
        move || {
            tracing::info!("signal received: shutting down");
            let _ = tx.send(Input::Shutdown);
        },
        || {
            // A second signal: the user will not wait for LLM calls in flight.
            tracing::warn!("second signal: stopping without waiting for LLM calls in flight");
            crate::server::HURRY.store(true, std::sync::atomic::Ordering::Relaxed);
        },
    )
}

/// Calls `first` on the first SIGINT or SIGTERM and `second` on the next. The handlers are
/// registered before this returns (so no signal in between kills the process unshut); a
/// small thread with its own runtime waits on them.
pub(crate) fn on_signals(
    first: impl FnOnce() + Send + 'static,
    second: impl FnOnce() + Send + 'static,
) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal handler")?;
    let (mut term, mut int) = rt
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ))
        })
        .context("cannot install the SIGTERM/SIGINT handlers")?;
    std::thread::Builder::new()
        .name("pas-signals".into())
        .spawn(move || {
            let mut next = |rt: &tokio::runtime::Runtime| {
                rt.block_on(async {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                })
            };
            next(&rt);
            first();
            next(&rt);
            second();
        })
        .context("cannot start the signal handler")?;
    Ok(())
}

/// The longest the engine loop waits without turning (see `health`).
const TURN: Duration = Duration::from_secs(1);

/// The engine's loop: wait for input or the next deadline, take in everything queued as
/// one batch, then plan once.
pub fn run_loop(
    engine: &mut Engine,
    rx: &Receiver<Input>,
    overflowed: &std::sync::atomic::AtomicBool,
) {
    loop {
        crate::health::engine_turned();
        let due = engine.next_wakeup();
        let timeout = due
            .map(|t| t.saturating_duration_since(engine.instant()))
            .unwrap_or(Duration::from_secs(60));
        // The loop turns at least once a second, so `/health` sees it alive; a turn before
        // anything is due does nothing else.
        let first = match rx.recv_timeout(timeout.min(TURN)) {
            Ok(i) => Some(i),
            Err(RecvTimeoutError::Timeout) if timeout > TURN => continue,
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch: Vec<Input> = first.into_iter().collect();
        while batch.len() < 100_000 {
            match rx.try_recv() {
                Ok(i) => batch.push(i),
                Err(_) => break,
            }
        }
        let mut rescan = overflowed.swap(false, std::sync::atomic::Ordering::SeqCst);
        let mut shutdown = false;
        let mut paths = Vec::new();
        let mut llm = Vec::new();
        for input in batch {
            match input {
                Input::Path(p, r) => paths.push((p, r)),
                Input::Rescan(why) => {
                    tracing::warn!(why, "full rescan");
                    rescan = true;
                }
                Input::Shutdown => shutdown = true,
                Input::LlmDone { id, result } => llm.push((id, result)),
            }
        }
        // Coalesce: one look per path, with the most ready of its readinesses.
        paths.sort_by(|a, b| a.0.cmp(&b.0));
        paths.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                if later.1 == Readiness::Ready {
                    earlier.1 = Readiness::Ready;
                }
                true
            } else {
                false
            }
        });
        let started = Instant::now();
        let n_paths = paths.len();
        if rescan {
            engine.rescan();
        } else {
            for (p, r) in paths {
                engine.handle_path(&p, r);
            }
        }
        for p in engine.due_settled() {
            engine.handle_path(&p, Readiness::Ready);
        }
        for (id, result) in llm {
            engine.finish_llm(&id, result);
        }
        let looked = started.elapsed();
        engine.step();
        // After the plan, so a round of archiving never delays an assignment.
        engine.archive_if_due();
        tracing::debug!(
            paths = n_paths,
            look_us = looked.as_micros() as u64,
            total_us = started.elapsed().as_micros() as u64,
            "batch"
        );
        if shutdown {
            return;
        }
    }
}

/// Stops the servers (in-flight requests finish and hand over their receipts), then the
/// store workers in order, committing and writing what is pending. LLM cards whose calls
/// ended while the servers drained get their outcome now (the loop has stopped reading
/// `rx`), so a paid answer is not thrown away and bought again after the restart.
pub fn finish(
    mut engine: Engine,
    servers: Option<(crate::server::Servers, &std::sync::mpsc::Receiver<Input>)>,
) {
    if let Some((s, rx)) = servers {
        s.shutdown();
        for input in rx.try_iter() {
            if let Input::LlmDone { id, result } = input {
                engine.finish_llm(&id, result);
            }
        }
        // What agents did just before the signal (a card renamed into done/ a moment
        // earlier) may still be an unread watch event, now dropped with the watcher: one
        // last look records it, so an orderly stop leaves every move committed. Nothing
        // new is assigned.
        engine.rescan();
        engine.write_dirty();
    }
    engine.flush_commit();
    if let Some(g) = engine.git.take() {
        g.shutdown();
    }
    if let Some(d) = engine.db.take() {
        d.shutdown();
    }
    tracing::info!("pas stopped");
}
