//! The daemon's state and how it takes in what the files say.
//!
//! The engine holds the board and, for every card, the file it lives in and the stamp of
//! that file as last read or written. A watch event only says "look at this path again":
//! the engine re-reads what changed, compares it with the board, and records any move it
//! finds as a transition. Its own writes echo back with a known stamp and cost a `stat`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::agent::{Agent, Registration};
use crate::board::{Board, Defaults, Place};
use crate::card::{Card, State};
use crate::clock::Clock;
use crate::config::Config;
use crate::events::{self as ev, Event, Hub};
use crate::fsops::{self, Moved, Stamp};
use crate::intake::{self, FileKind, Refused};
use crate::store::db::TelemetryWriter;
use crate::store::git::{Change, CommitWorker};
use crate::workspace::{rel, Kind, Workspace};

/// The daemon's state.
pub struct Engine {
    pub ws: Workspace,
    pub cfg: Config,
    pub board: Board,
    /// Where each known card's file is, and its stamp when pas last read or wrote it.
    pub(super) files: HashMap<String, (PathBuf, Stamp)>,
    /// Cards whose text in memory is newer than their file (written after planning).
    pub(super) dirty: HashSet<String>,
    /// Files being written in place, with the time to look at them again.
    pub(super) settling: HashMap<PathBuf, Instant>,
    /// Cards found nowhere, and since when: a card is called removed only when a second
    /// look, a settle time later, finds it nowhere either (an agent's rename caught
    /// between the folders pas looked in is a move).
    pub(super) vanishing: HashMap<String, Instant>,
    pub(super) change: Change,
    /// Scratch files for writing cards (see `fsops::Spares`).
    pub(super) spares: fsops::Spares,
    pub(super) git: Option<CommitWorker>,
    pub(super) db: Option<TelemetryWriter>,
    /// The event stream this engine publishes to (shared with the servers).
    pub hub: Arc<Hub>,
    pub(super) clock: Clock,
    /// Liveness and governor state (see `liveness.rs`).
    pub(super) live: super::liveness::LiveState,
    /// Something on the board changed since the last plan.
    pub(super) replan: bool,
    /// The earliest card timeout as of the last plan (every change since sets `replan`).
    pub(super) next_timeout: Option<DateTime<Utc>>,
    /// Where LLM job cards go to be run (the gateway's executor), once it is up.
    pub(super) llm_jobs: Option<tokio::sync::mpsc::UnboundedSender<crate::gateway::cards::LlmJob>>,
    /// LLM job cards whose call is under way.
    pub(super) llm_running: HashSet<String>,
    /// Card writes that failed (a full disk) and when to retry them (see `faults.rs`).
    pub(super) faults: super::faults::FileFaults,
    /// When the next plan may start (see `pacing.rs`).
    pub(super) pacing: super::pacing::Pacing,
    /// The agent definitions as last read, by file and stamp.
    pub(super) def_cache: crate::workspace::DefCache,
    /// When the next archive round is due (see `archive.rs`).
    pub(super) archive_next: Instant,
    /// Stamps of archive files pas wrote itself (see `shelf.rs`).
    pub(super) echoes: super::shelf::Echoes,
}

impl Engine {
    /// An engine over `ws` with the given sinks; call `start` next.
    pub fn new(
        ws: Workspace,
        cfg: Config,
        git: Option<CommitWorker>,
        db: Option<TelemetryWriter>,
        seq: u64,
        clock: Clock,
    ) -> Engine {
        let hub = Arc::new(Hub::new(seq, db.as_ref().map(|d| d.sink())));
        let mut board = Board::new(Defaults::from(&cfg));
        // Every change is noted for the incremental plan (see `board/incremental.rs`).
        board.track_changes();
        Engine {
            ws: ws.clone(),
            cfg,
            board,
            files: HashMap::new(),
            dirty: HashSet::new(),
            settling: HashMap::new(),
            vanishing: HashMap::new(),
            change: Change::default(),
            spares: fsops::Spares::open(&ws.staging()),
            git,
            db,
            hub,
            clock: clock.clone(),
            live: Default::default(),
            replan: true,
            next_timeout: None,
            llm_jobs: None,
            llm_running: HashSet::new(),
            faults: Default::default(),
            pacing: Default::default(),
            def_cache: Default::default(),
            // At once: a workspace from an earlier pas is worked off from the first turn.
            archive_next: clock.instant(),
            echoes: Default::default(),
        }
    }

    /// The epochs each agent held before (from telemetry), so re-registrations rise.
    pub fn with_epochs(mut self, epochs: HashMap<String, crate::store::db::Epochs>) -> Engine {
        self.live.epochs = epochs;
        self
    }

    /// From now on, LLM job cards go to `jobs` to be run.
    pub fn run_llm_cards(
        &mut self,
        jobs: tokio::sync::mpsc::UnboundedSender<crate::gateway::cards::LlmJob>,
    ) {
        self.llm_jobs = Some(jobs);
        self.replan = true;
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// A monotonic instant now, from the same clock as [`Engine::now`].
    pub(super) fn instant(&self) -> Instant {
        self.clock.instant()
    }

    pub(super) fn settle(&self) -> Duration {
        Duration::from_millis(self.cfg.settle_ms)
    }

    /// Publishes one event to the stream (and through it, the telemetry database).
    pub(super) fn emit(&mut self, event: Event) {
        self.hub.emit(self.now(), event);
    }

    /// Adds paths and a message line to the commit being gathered.
    pub(super) fn stage(&mut self, paths: &[&Path], line: String) {
        // The git worker never commits a symbolic link (its target may lie outside).
        self.change
            .paths
            .extend(paths.iter().map(|p| p.to_path_buf()));
        self.change.lines.push(line);
    }

    /// Hands the gathered commit to the git worker.
    ///
    /// Card files go as snapshots of what pas read or wrote, not as paths to read later: a
    /// card may move on before the worker commits, and each commit's tree must show the
    /// cards where its message says they went.
    pub fn flush_commit(&mut self) {
        if self.change.paths.is_empty() && self.change.lines.is_empty() {
            return;
        }
        let mut change = std::mem::take(&mut self.change);
        let mut disk = Vec::new();
        for path in std::mem::take(&mut change.paths) {
            let Kind::Card { id, .. } = self.ws.classify(&path) else {
                disk.push(path);
                continue;
            };
            let here = self.files.get(&id).is_some_and(|(p, _)| *p == path);
            let text = here
                .then(|| self.board.cards.get(&id))
                .flatten()
                .map(|e| Arc::<str>::from(e.card.text()))
                .or_else(|| self.echoes.shelved_since_flush(&id, &path));
            change.snapshots.push((path, text));
        }
        change.paths = disk;
        self.echoes.flushed();
        if let Some(git) = &self.git {
            git.send(change);
        }
    }

    /// Reads every agent definition in `agents/`.
    pub fn load_definitions(&mut self) {
        let mut defs = self.ws.definitions_cached(&mut self.def_cache);
        for a in self.board.agents.values_mut() {
            a.def = defs.remove(&a.name);
        }
        for (name, def) in defs {
            self.board.agents.insert(
                name.clone(),
                Agent {
                    name,
                    def: Some(def),
                    ..Agent::default()
                },
            );
        }
        self.board
            .agents
            .retain(|_, a| a.def.is_some() || a.reg.is_some());
        self.replan = true;
        // Intervals may have changed: judge every agent again now.
        self.live.next_check = Some(self.now());
    }

    /// Takes in a change to one path under `agents/` or `work/`.
    pub fn handle_path(&mut self, path: &Path, readiness: crate::watch::Readiness) {
        if path.starts_with(self.ws.agents_dir()) {
            if path.extension().is_some_and(|e| e == "md") {
                self.load_definitions();
            }
            return;
        }
        match self.ws.classify(path) {
            Kind::Ignored => return,
            // Beats are read as they are appended: a torn last line waits in the tail.
            Kind::Heartbeat { name } => return self.read_heartbeats(&name, path),
            _ => {}
        }
        if readiness == crate::watch::Readiness::Writing {
            self.settling
                .insert(path.to_path_buf(), self.clock.instant() + self.settle());
            return;
        }
        self.settling.remove(path);
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            // A new folder (e.g. assigned/<agent>/) may hold files that arrived before
            // the watch on it was set up.
            let inside: Vec<PathBuf> = walkdir::WalkDir::new(path)
                .follow_links(false)
                .into_iter()
                .flatten()
                .filter(|e| !e.file_type().is_dir())
                .map(|e| e.into_path())
                .collect();
            for p in inside {
                self.look_at(&p);
            }
            return;
        }
        self.look_at(path);
    }

    /// Whether the file at `path` changed within the settle time (a writer may still be
    /// writing it in place); a file that cannot be looked at is not fresh.
    pub(super) fn is_fresh(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| {
                std::time::SystemTime::now()
                    .duration_since(t)
                    .map_or(true, |age| age < self.settle())
            })
    }

    /// Paths whose settle time has come.
    pub fn due_settled(&mut self) -> Vec<PathBuf> {
        let now = self.clock.instant();
        let due: Vec<PathBuf> = self
            .settling
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for p in &due {
            self.settling.remove(p);
        }
        due
    }

    fn look_at(&mut self, path: &Path) {
        match self.ws.classify(path) {
            Kind::Card { id, .. } => self.reconcile_card(&id, &[path.to_path_buf()]),
            Kind::Registration { name } => self.reconcile_registration(&name),
            Kind::Misplaced(reason) => match std::fs::symlink_metadata(path) {
                // A linked folder where a state folder or an agent's folder belongs: pas
                // would otherwise move cards into wherever it points.
                Ok(m) if m.is_symlink() => self.reject(
                    path,
                    &format!("symbolic link: pas never follows links, and folders under work/ must be real folders ({reason})"),
                ),
                Ok(_) => self.reject(path, &reason),
                Err(_) => {}
            },
            Kind::Heartbeat { .. } | Kind::Ignored => {}
        }
    }

    /// Reconciles everything from a full walk of the tree.
    pub fn rescan(&mut self) {
        let mut by_id: HashMap<String, Vec<PathBuf>> = HashMap::new();
        let mut registrations = Vec::new();
        let mut heartbeats = Vec::new();
        // Ids with a file that is not a regular one: read (and refused) however they lie.
        let mut odd: HashSet<String> = HashSet::new();
        let (files, archived) = self.ws.scan_listing();
        for (path, kind, regular) in files {
            match kind {
                Kind::Card { id, .. } => {
                    if !regular {
                        odd.insert(id.clone());
                    }
                    by_id.entry(id).or_default().push(path)
                }
                Kind::Registration { name } => registrations.push(name),
                Kind::Misplaced(reason) => self.reject(&path, &reason),
                Kind::Heartbeat { name } => heartbeats.push((name, path)),
                Kind::Ignored => {}
            }
        }
        let known_regs: Vec<String> = self
            .board
            .agents
            .values()
            .filter(|a| a.reg.is_some())
            .map(|a| a.name.clone())
            .collect();
        for name in known_regs.iter().chain(registrations.iter()) {
            self.reconcile_registration(name);
        }
        for (name, path) in heartbeats {
            self.read_heartbeats(&name, &path);
        }
        // An archived card alone under its id goes on the shelf unread (see `shelf.rs`):
        // start-up lists the archive, it does not open it. One with another file anywhere
        // is reconciled like any card (the duplicate rule).
        let mut listed: HashSet<String> = HashSet::with_capacity(archived.len());
        for (id, shelved) in archived {
            let path = self.ws.card_path(&id, &shelved.place());
            match by_id.get_mut(&id) {
                Some(paths) => paths.push(path),
                None if self.shelve_unread(&id, shelved) => {}
                None => {
                    by_id.insert(id.clone(), vec![path]);
                }
            }
            listed.insert(id);
        }
        // Known cards whose files were not seen: gone, or moved where the scan missed them.
        let known: Vec<String> = (self.board.cards.keys().cloned())
            .chain(
                (self.board.shelf.keys())
                    .filter(|id| !listed.contains(&***id))
                    .map(|id| id.to_string()),
            )
            .collect();
        for id in known {
            by_id.entry(id).or_default();
        }
        let mut ids: Vec<(String, Vec<PathBuf>)> = by_id.into_iter().collect();
        ids.sort();
        for (id, paths) in ids {
            self.reconcile_card(&id, &paths);
        }
    }

    /// Brings the board in line with the registration file of `name`.
    pub fn reconcile_registration(&mut self, name: &str) {
        let path = self.ws.registration_path(name);
        let was = self.board.agents.get(name).and_then(|a| a.reg.clone());
        let mut now_reg = match intake::read_text(&path, FileKind::Registration) {
            Ok(text) => match Registration::parse(&text) {
                Ok(r) => Some(r),
                Err(e) => {
                    let where_ = e
                        .line
                        .map(|l| format!("line {l}, column {}: ", e.column.unwrap_or(1)))
                        .unwrap_or_default();
                    self.reject(&path, &format!("{where_}{}", e.message));
                    None
                }
            },
            Err(Refused::Missing) => None,
            Err(e) if e.may_settle() && self.is_fresh(&path) => {
                // Perhaps still being written in place: look again once it has settled.
                self.settling
                    .insert(path, self.clock.instant() + self.settle());
                return;
            }
            Err(e) => {
                self.reject(&path, &e.to_string());
                None
            }
        };
        if was == now_reg {
            return;
        }
        if let Some(r) = now_reg.as_mut() {
            self.raise_epoch(name, r, was.as_ref().map(|w| w.epoch));
        }
        self.replan = true;
        self.live.next_check = Some(self.now()); // its interval may have changed
        let new_incarnation = match (&was, &now_reg) {
            (None, Some(_)) => true,
            (Some(w), Some(n)) => n.epoch > w.epoch,
            _ => false,
        };
        if new_incarnation {
            if let Some(w) = &was {
                let e = self.live.epochs.entry(name.to_string()).or_default();
                e.retired = e.retired.max(w.epoch);
            }
        }
        if now_reg.is_none() {
            let epoch = self.retire(name);
            tracing::info!(agent = name, "deregistered");
            self.emit(Event::AgentDeregistered(ev::Deregistered {
                agent: name.to_string(),
                epoch,
                reason: "registration removed".into(),
                silent: None,
            }));
            self.stage(&[&path], format!("pas: deregister {name}"));
            return;
        }
        let agent = self
            .board
            .agents
            .entry(name.to_string())
            .or_insert_with(|| Agent {
                name: name.to_string(),
                ..Agent::default()
            });
        agent.reg = now_reg.clone();
        let Some(n) = now_reg else { return };
        if new_incarnation {
            self.seed_agent(name);
            tracing::info!(agent = name, epoch = n.epoch, "registered");
            self.emit(Event::AgentRegistered(ev::AgentEpoch {
                agent: name.to_string(),
                epoch: n.epoch,
            }));
            self.stage(
                &[&path],
                format!("pas: register {name} (epoch {})", n.epoch),
            );
            return;
        }
        match &was {
            Some(w) if w.paused != n.paused => {
                let verb = if n.paused { "pause" } else { "resume" };
                tracing::info!(agent = name, "{verb}d");
                let who = ev::AgentEpoch {
                    agent: name.to_string(),
                    epoch: n.epoch,
                };
                self.emit(if n.paused {
                    Event::AgentPaused(who)
                } else {
                    Event::AgentResumed(who)
                });
                self.stage(&[&path], format!("pas: {verb} {name}"));
            }
            _ => self.stage(&[&path], format!("pas: update registration of {name}")),
        }
    }

    /// Moves a file that pas cannot accept to `work/rejected/` with its reason.
    pub fn reject(&mut self, path: &Path, reason: &str) {
        let shown = rel(&self.ws, path);
        let text = format!(
            "pas rejected {shown} at {}\nreason: {reason}\n\nThe file is kept here as it arrived. Fix it and move it back into the folder it belongs in.\n",
            self.now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
        match fsops::reject(path, &self.ws.rejected(), &text) {
            Ok((target, reason_path)) => {
                tracing::warn!(file = %shown, reason, "rejected");
                self.emit(Event::JobRejected(ev::Rejected {
                    file: shown.clone(),
                    to: rel(&self.ws, &target),
                    reason: reason.to_string(),
                }));
                self.stage(
                    &[path, &target, &reason_path],
                    format!("pas: reject {shown}: {}", first_line(reason)),
                );
                self.settling.remove(path);
            }
            Err(e) => {
                tracing::error!(file = %shown, error = %e, "cannot move file to work/rejected")
            }
        }
    }

    /// Writes a card whose new text is only in memory, in place (through staging).
    pub(super) fn write_dirty(&mut self) {
        let ids: Vec<String> = self.dirty.drain().collect();
        for id in ids {
            let (Some(entry), Some((path, _))) = (self.board.cards.get(&id), self.files.get(&id))
            else {
                continue;
            };
            let (text, path) = (entry.card.text().to_string(), path.clone());
            match fsops::move_card(&path, &path, &text, &mut self.spares, self.cfg.fsync) {
                Ok(Moved::Done(stamp)) => {
                    self.file_ok();
                    self.files.insert(id.clone(), (path.clone(), stamp));
                    self.change.paths.push(path);
                    if (self.board.cards.get(&id)).is_some_and(|e| e.place.state == State::Archived)
                    {
                        self.shelve(&id);
                    }
                }
                Ok(Moved::Gone) => self.reconcile_card(&id, &[]),
                Ok(Moved::Blocked(staged)) => {
                    let at = rel(&self.ws, &path);
                    self.reject(
                        &staged,
                        &format!("duplicate id {id}: it already exists at {at}"),
                    );
                    self.reconcile_card(&id, &[path]);
                }
                Err(e) => {
                    // The new text stays in memory until a retry writes it.
                    let what = format!("write card {id} at {}", rel(&self.ws, &path));
                    self.file_failed(&what, &id, &e);
                    self.dirty.insert(id);
                }
            }
        }
    }
}

/// Where a card's own `pas:` block says it is (for cards pas has not seen before).
pub(super) fn place_from_meta(card: &Card) -> Option<Place> {
    let m = &card.spec.pas;
    let state = m.state?;
    if state == State::Archived {
        // The day folder is in the history entry of the move to the archive.
        return Place::from_label(&m.history.last()?.to).filter(|p| p.state == state);
    }
    Some(Place {
        state,
        agent: if state == State::Assigned {
            m.assigned_to.clone()
        } else {
            None
        },
        day: None,
    })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
