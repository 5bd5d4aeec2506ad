//! The supervisor of one agent: registers and beats for it, starts a process for each card
//! in `work/assigned/<agent>/` (up to its slots), ends the process group of a card that
//! leaves that folder by any path (the daemon's take-back, a person's `mv`, `pas retry`),
//! ends runs past their timeout, and settles each run's card when it exits.
//!
//! The loop polls the agent's folder (a few small reads every `poll`); exits arrive at
//! once over a channel from one waiting thread per child. Ending a group and settling a
//! run (waiting out the grace period, joining the output readers, committing a worktree)
//! happen on threads of their own, so one slow run never holds up the others.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::cards::{self, Outcome};
use super::orphans::{self, ChildRecord};
use super::start::{self, Output};
use super::worktree::{self, Worktree};
use super::{log_path, runs_dir, Loaded};
use crate::agent::Registration;
use crate::card::State;
use crate::workspace::{read_card, Workspace};

/// How a supervisor runs.
#[derive(Clone)]
pub struct Options {
    /// The gateway's URL, as the processes get it.
    pub gateway: String,
    /// How often the agent's folder is looked at.
    pub poll: Duration,
    /// Set to stop: running processes are ended, their cards stay assigned.
    pub stop: Arc<AtomicBool>,
    /// Where per-run figures go (benches).
    pub stats: Option<Arc<Mutex<Vec<RunStat>>>>,
}

/// pas's own overhead on one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStat {
    pub job: String,
    /// From spawn to the process's first byte of output.
    pub first_byte: Option<Duration>,
    /// From the process's exit to its card moved.
    pub exit_to_moved: Duration,
    /// Resident memory of the process when last sampled, KiB.
    pub rss_kib: Option<u64>,
}

/// Why a run is being ended by pas.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ending {
    /// The card left `assigned/<agent>/` (or was assigned anew): nothing of the run counts.
    TakenBack(String),
    /// The run's own timeout: the card is taken back by the run.
    Timeout(String),
    /// pas is stopping: the card stays assigned and runs again at the next start.
    Stop,
}

/// One running process of the agent.
pub(super) struct Run {
    pub(super) pgid: i32,
    pub(super) assigned_at: Option<DateTime<Utc>>,
    pub(super) ending: Option<Ending>,
    missing_since: Option<Instant>,
    deadline: Option<Instant>,
    pub(super) output: Arc<Mutex<Output>>,
    pub(super) readers: Vec<std::thread::JoinHandle<()>>,
    pub(super) worktree: Option<Worktree>,
    pub(super) receipts: bool,
    pub(super) spawned_at: Instant,
    pub(super) rss_kib: Option<u64>,
}

enum Msg {
    Exited {
        id: String,
        status: std::process::ExitStatus,
        at: Instant,
    },
    Settled {
        id: String,
    },
}

/// What the settling threads need.
pub(super) struct Shared {
    pub(super) ws: Workspace,
    pub(super) agent: Loaded,
    pub(super) cfg: crate::config::Config,
    pub(super) stats: Option<Arc<Mutex<Vec<RunStat>>>>,
}

/// Runs the supervisor of `agent` until `opts.stop` is set.
pub fn supervise(ws: &Workspace, agent: Loaded, opts: &Options) -> Result<()> {
    let name = agent.def.name.clone();
    let _lock = orphans::lock_agent(ws, &name)?;
    let cfg = ws.config()?;
    let grace = agent.run().grace();
    for rec in orphans::sweep(&runs_dir(ws), |a| a == name, grace) {
        if rec.worktree.is_some() {
            worktree::finish(&ws.root, &rec.job, &name, "ended after pas restarted");
        }
        tracing::info!(job = %rec.job, agent = %name, "run ended after a restart of pas; its card runs again");
    }
    let interval = agent
        .def
        .heartbeat_interval_s
        .filter(|i| crate::config::valid_interval(*i))
        .unwrap_or(cfg.heartbeat_interval_s);
    let mut sup = Supervisor {
        shared: Arc::new(Shared {
            ws: ws.clone(),
            agent,
            cfg,
            stats: opts.stats.clone(),
        }),
        name,
        runs: HashMap::new(),
        settling: HashSet::new(),
        beat_every: Duration::from_secs_f64((interval / 3.0).max(0.05)),
        next_beat: Instant::now(),
        epoch: None,
    };
    let (tx, rx) = channel::<Msg>();
    tracing::info!(agent = %sup.name, slots = sup.shared.agent.slots(), "supervising the agent's runs");
    loop {
        let stopping = opts.stop.load(Ordering::Relaxed);
        if stopping {
            sup.stop_all();
            if sup.runs.is_empty() && sup.settling.is_empty() {
                return Ok(());
            }
        }
        match rx.recv_timeout(opts.poll) {
            Ok(m) => sup.handle(m, &tx),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        while let Ok(m) = rx.try_recv() {
            sup.handle(m, &tx);
        }
        sup.check_runs();
        if !stopping {
            sup.start_new(opts, &tx);
        }
        if Instant::now() >= sup.next_beat {
            sup.beat();
        }
    }
}

struct Supervisor {
    shared: Arc<Shared>,
    name: String,
    runs: HashMap<String, Run>,
    /// Runs that exited and are being settled: their cards are not started again.
    settling: HashSet<String>,
    beat_every: Duration,
    next_beat: Instant,
    epoch: Option<u64>,
}

impl Supervisor {
    fn ws(&self) -> &Workspace {
        &self.shared.ws
    }

    fn assigned_dir(&self) -> PathBuf {
        self.ws().state_dir(State::Assigned).join(&self.name)
    }

    fn handle(&mut self, m: Msg, tx: &Sender<Msg>) {
        match m {
            Msg::Exited { id, status, at } => {
                let Some(run) = self.runs.remove(&id) else {
                    return;
                };
                self.settling.insert(id.clone());
                let shared = self.shared.clone();
                let tx = tx.clone();
                let spawned = std::thread::Builder::new()
                    .name("pas-run-settle".into())
                    .spawn(move || {
                        super::settle::settle(&shared, &id, run, status, at);
                        let _ = tx.send(Msg::Settled { id });
                    });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start a thread to settle a run");
                }
            }
            Msg::Settled { id } => {
                self.settling.remove(&id);
            }
        }
    }

    /// Ends the group of run `id` for `why` (on a thread: the grace period is waited out
    /// there; the exit then arrives as for any run).
    fn end(&mut self, id: &str, why: Ending) {
        let grace = self.shared.agent.run().grace();
        let Some(run) = self.runs.get_mut(id) else {
            return;
        };
        if run.ending.is_some() {
            return;
        }
        let note = match &why {
            Ending::TakenBack(w) | Ending::Timeout(w) => w.clone(),
            Ending::Stop => "pas is stopping".into(),
        };
        tracing::info!(job = id, agent = %self.name, why = %note, "ending a run's process group");
        if let Ok(mut o) = run.output.lock() {
            o.log.note(&format!("ending the run: {note}"));
        }
        run.ending = Some(why);
        let pgid = run.pgid;
        let _ = std::thread::Builder::new()
            .name("pas-run-end".into())
            .spawn(move || super::process::end_group(pgid, grace));
    }

    fn stop_all(&mut self) {
        let ids: Vec<String> = self.runs.keys().cloned().collect();
        for id in ids {
            self.end(&id, Ending::Stop);
        }
    }

    /// Notices take-backs and timeouts of running cards.
    fn check_runs(&mut self) {
        let now = Instant::now();
        let dir = self.assigned_dir();
        let mut to_end = Vec::new();
        for (id, run) in self.runs.iter_mut() {
            if run.ending.is_some() {
                continue;
            }
            let path = dir.join(format!("{id}.yaml"));
            match read_card(&path, id) {
                Ok(card) => {
                    run.missing_since = None;
                    if card.spec.pas.assigned_at != run.assigned_at {
                        to_end.push((
                            id.clone(),
                            Ending::TakenBack("the card was taken back and assigned anew".into()),
                        ));
                        continue;
                    }
                }
                Err(_) => {
                    // Gone from our folder: taken back once it shows up elsewhere, or has
                    // stayed away a moment (a move through staging takes microseconds).
                    let since = *run.missing_since.get_or_insert(now);
                    let elsewhere = self
                        .shared
                        .ws
                        .card_candidates(id)
                        .into_iter()
                        .chain(std::iter::once(
                            self.shared
                                .ws
                                .work()
                                .join("review")
                                .join(format!("{id}.yaml")),
                        ))
                        .filter(|p| *p != path)
                        .find(|p| p.exists());
                    if let Some(p) = elsewhere {
                        let at = crate::workspace::rel(&self.shared.ws, &p);
                        to_end.push((
                            id.clone(),
                            Ending::TakenBack(format!(
                                "the card left assigned/{} (now {at})",
                                self.name
                            )),
                        ));
                    } else if now.duration_since(since) > Duration::from_secs(2) {
                        to_end.push((
                            id.clone(),
                            Ending::TakenBack(format!("the card left assigned/{}", self.name)),
                        ));
                    }
                    continue;
                }
            }
            if run.deadline.is_some_and(|d| now >= d) {
                let secs = self.shared.agent.run().timeout_s.unwrap_or_default();
                to_end.push((
                    id.clone(),
                    Ending::Timeout(format!("run timed out after {secs} s")),
                ));
            }
        }
        for (id, why) in to_end {
            self.end(&id, why);
        }
    }

    /// Starts a run for each card in the agent's folder that has none, up to its slots.
    fn start_new(&mut self, opts: &Options, tx: &Sender<Msg>) {
        let slots = self.shared.agent.slots() as usize;
        if self.runs.len() >= slots {
            return;
        }
        let Ok(rd) = std::fs::read_dir(self.assigned_dir()) else {
            return;
        };
        let mut ids: Vec<String> = rd
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().into_string().ok()?;
                if crate::workspace::is_ignored_name(&n) {
                    return None;
                }
                n.strip_suffix(".yaml").map(str::to_string)
            })
            .filter(|id| !self.runs.contains_key(id) && !self.settling.contains(id))
            .collect();
        ids.sort();
        for id in ids {
            if self.runs.len() >= slots {
                break;
            }
            self.start_one(&id, opts, tx);
        }
    }

    fn start_one(&mut self, id: &str, opts: &Options, tx: &Sender<Msg>) {
        let ws = self.shared.ws.clone();
        let path = self.assigned_dir().join(format!("{id}.yaml"));
        let Ok(card) = read_card(&path, id) else {
            return; // moved on, or not a card (the daemon rejects it)
        };
        let req = start::Request {
            ws: &ws,
            agent: &self.shared.agent,
            card: &card,
            gateway: &opts.gateway,
            log_path: log_path(&ws, id),
        };
        let started = match start::start(req) {
            Ok(s) => s,
            Err(e) => {
                let error = format!("{e:#}");
                tracing::warn!(job = id, agent = %self.name, %error, "run could not start: card failed");
                let outcome = Outcome::Failed { error };
                if let Err(e) = cards::settle(
                    &ws,
                    &self.name,
                    id,
                    card.spec.pas.assigned_at,
                    &outcome,
                    self.shared.cfg.max_attempts,
                ) {
                    tracing::error!(job = id, error = %e, "cannot fail the card");
                }
                return;
            }
        };
        let start::Started {
            mut child,
            output,
            readers,
            worktree,
            receipts,
            spawned_at,
        } = started;
        let pid = child.id() as i32;
        let (owner_pid, owner_start) = orphans::me();
        let rec = ChildRecord {
            job: id.to_string(),
            agent: self.name.clone(),
            pid,
            pgid: pid,
            start: super::process::stat(pid).map_or(0, |s| s.start),
            owner_pid,
            owner_start,
            worktree: worktree.as_ref().map(|w| w.path.clone()),
        };
        if let Err(e) = orphans::write(&runs_dir(&ws), &rec) {
            tracing::warn!(job = id, error = %e, "cannot record a run (it would not be found after a crash)");
        }
        let tx = tx.clone();
        let job = id.to_string();
        let waiter = std::thread::Builder::new()
            .name("pas-run-wait".into())
            .spawn(move || {
                let status = child.wait();
                let at = Instant::now();
                if let Ok(status) = status {
                    let _ = tx.send(Msg::Exited {
                        id: job,
                        status,
                        at,
                    });
                }
            });
        if let Err(e) = waiter {
            tracing::error!(error = %e, "cannot start a thread to wait for a run");
        }
        let deadline = self
            .shared
            .agent
            .run()
            .timeout_s
            .map(|t| spawned_at + Duration::from_secs_f64(t));
        tracing::info!(job = id, agent = %self.name, pid, "run started");
        self.runs.insert(
            id.to_string(),
            Run {
                pgid: pid,
                assigned_at: card.spec.pas.assigned_at,
                ending: None,
                missing_since: None,
                deadline,
                output,
                readers,
                worktree,
                receipts,
                spawned_at,
                rss_kib: None,
            },
        );
    }

    /// Registers the agent if it is not, and appends a beat for it.
    fn beat(&mut self) {
        self.next_beat = Instant::now() + self.beat_every;
        let ws = self.shared.ws.clone();
        let reg_path = ws.registration_path(&self.name);
        match crate::intake::read_text_if_present(&reg_path, crate::intake::FileKind::Registration)
        {
            Ok(Some(text)) => {
                self.epoch = Registration::parse(&text).ok().map(|r| r.epoch);
            }
            Ok(None) => self.register(),
            Err(_) => {}
        }
        let mut mem_kib = 0u64;
        for run in self.runs.values_mut() {
            run.rss_kib = super::process::rss_kib(run.pgid).or(run.rss_kib);
            mem_kib += run.rss_kib.unwrap_or(0);
        }
        let mut ids: Vec<&String> = self.runs.keys().collect();
        ids.sort();
        let beat = crate::heartbeat::Beat {
            ts: Utc::now(),
            status: Some(if ids.is_empty() {
                crate::heartbeat::BeatStatus::Idle
            } else {
                crate::heartbeat::BeatStatus::Running
            }),
            job: ids.first().map(|s| s.to_string()),
            progress: None,
            ctx_used: None,
            ctx_limit: None,
            cpu: None,
            mem_mb: (!ids.is_empty()).then(|| mem_kib as f64 / 1024.0),
            note: Some(format!(
                "pas runs {} process(es){}",
                ids.len(),
                if ids.is_empty() {
                    String::new()
                } else {
                    format!(
                        ": {}",
                        ids.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            )),
            epoch: self.epoch,
        };
        let Ok(mut line) = serde_json::to_string(&beat) else {
            return;
        };
        line.push('\n');
        let path = ws.heartbeats().join(format!("{}.jsonl", self.name));
        let _ = std::fs::create_dir_all(ws.heartbeats());
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(agent = %self.name, error = %e, "cannot append the agent's heartbeat");
        }
    }

    /// Writes the agent's registration with the next epoch (as `pas register` does).
    fn register(&mut self) {
        let ws = &self.shared.ws;
        let recorded = crate::store::db::open_read_only(&ws.db_path())
            .ok()
            .flatten()
            .and_then(|c| crate::store::db::agent_epochs(&c).ok())
            .and_then(|m| m.get(&self.name).copied())
            .unwrap_or_default();
        let epoch = crate::card::next_epoch(
            recorded
                .registered
                .max(recorded.retired)
                .max(self.epoch.unwrap_or(0)),
        );
        let reg = Registration {
            name: Some(self.name.clone()),
            epoch,
            registered_at: Some(Utc::now()),
            pid: Some(std::process::id()),
            max_concurrent: Some(self.shared.agent.slots()),
            labels: [("runner".to_string(), "pas".to_string())]
                .into_iter()
                .collect(),
            ..Registration::default()
        };
        let _ = std::fs::create_dir_all(ws.registry());
        match crate::fsops::write_atomic(
            &ws.registration_path(&self.name),
            reg.to_yaml().as_bytes(),
            false,
        ) {
            Ok(()) => {
                tracing::info!(agent = %self.name, epoch, "registered the agent for its runs");
                self.epoch = Some(epoch);
            }
            Err(e) => tracing::warn!(agent = %self.name, error = %e, "cannot register the agent"),
        }
    }
}
