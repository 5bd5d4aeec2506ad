//! The daemon's side of liveness and the token governor: tailing heartbeat files, TTL
//! verdicts (down, up, deregistered), epochs, and the governor's save-state cards.
//!
//! The rules themselves are pure (`crate::liveness`); this file turns their verdicts into
//! events, commits and file moves.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::events::{self as ev, Event};

use super::effect::Input;
use super::engine::Engine;
use crate::agent::{Agent, Registration, SAVE_STATE};
use crate::board::Place;
use crate::card::{Card, State};
use crate::heartbeat::{Beat, Line, Tail};

use crate::store::db::Epochs;

/// What the engine keeps per agent for liveness, beyond what the board shows.
#[derive(Debug, Default)]
pub struct LiveState {
    /// Where each heartbeat file has been read to.
    pub(super) tails: HashMap<String, Tail>,
    /// The token governor's state (see `ttl.rs`).
    pub(super) governor: super::ttl::Governor,
    /// The epochs each agent has held, so a re-registration always rises.
    pub(super) epochs: HashMap<String, Epochs>,
    /// No verdict can change before this instant (a lower bound; beats only push it on).
    pub(super) next_check: Option<DateTime<Utc>>,
    /// When this daemon started: expiry waits one interval after it.
    pub(super) started: Option<DateTime<Utc>>,
    /// Heartbeat files refused (a FIFO, a link, a hard link), by agent, with the stamp
    /// seen: one alert per version of the file, not one per look.
    pub(super) refused: HashMap<String, crate::fsops::Stamp>,
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Engine {
    /// Starts the clock of liveness after the first scan (which read each registered
    /// agent's last beat): expiry waits one interval from now. A breach whose save-state
    /// card is still open does not open another.
    pub(super) fn start_liveness(&mut self) {
        let now = self.now();
        self.live.started = Some(now);
        for e in self.board.cards.values() {
            let open = matches!(e.place.state, State::Inbox | State::Assigned);
            if open && e.card.spec.kind.as_deref() == Some(SAVE_STATE) {
                if let Some(a) = &e.card.spec.assignee {
                    self.live.governor.disarm(a);
                }
            }
        }
        self.live.next_check = Some(now);
    }

    /// Reads the tail of an agent's heartbeat file when it (re)registers: its last good
    /// beat counts if the beat belongs to this registration.
    pub(super) fn seed_agent(&mut self, name: &str) {
        let now = self.now();
        let path = self.ws.heartbeats().join(format!("{name}.jsonl"));
        let (tail, last) = Tail::at_end(&path);
        self.live.tails.insert(name.to_string(), tail);
        let reg_mtime = crate::workspace::mtime(&self.ws.registration_path(name));
        if let Some(agent) = self.board.agents.get_mut(name) {
            agent.seed_live(last, reg_mtime, now, &self.cfg.token_budget);
        }
        self.live.next_check = Some(now);
    }

    /// Takes in the lines appended to `work/heartbeats/<name>.jsonl`.
    pub(super) fn read_heartbeats(&mut self, name: &str, path: &Path) {
        let registered = self.board.agents.get(name).is_some_and(|a| a.reg.is_some());
        let tail = self.live.tails.entry(name.to_string()).or_default();
        let lines = match tail.read_new(path) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                let seen = crate::fsops::Stamp::of(path).ok();
                if seen.is_some() && self.live.refused.get(name) != seen.as_ref() {
                    let shown = super::rel(&self.ws, path);
                    tracing::warn!(agent = name, file = %shown, error = %e, "heartbeat file refused");
                    self.emit(Event::FileRefused(ev::FileRefused {
                        file: shown,
                        agent: name.to_string(),
                        reason: e.to_string(),
                    }));
                    if let Some(seen) = seen {
                        self.live.refused.insert(name.to_string(), seen);
                    }
                }
                return;
            }
        };
        self.live.refused.remove(name);
        if !registered {
            if !lines.is_empty() {
                tracing::debug!(agent = name, "beats from an agent that is not registered");
            }
            return;
        }
        if self.cfg.git.track_heartbeats && !lines.is_empty() {
            self.change.paths.push(path.to_path_buf());
        }
        let shown = super::rel(&self.ws, path);
        let mut newest: Option<Beat> = None;
        for line in lines {
            match line {
                Line::Bad { offset, reason } => {
                    tracing::warn!(file = %shown, offset, reason, "heartbeat line refused");
                }
                Line::Beat(b) => {
                    let held = self.board.agents.get(name).and_then(|a| a.reg.as_ref());
                    let epoch = held.map_or(0, |r| r.epoch);
                    if b.epoch.is_some_and(|e| e < epoch) {
                        tracing::warn!(
                            file = %shown,
                            agent = name,
                            beat_epoch = b.epoch,
                            epoch,
                            "heartbeat from an older epoch refused"
                        );
                        continue;
                    }
                    if newest.as_ref().is_none_or(|n| b.ts >= n.ts) {
                        newest = Some(b);
                    }
                }
            }
        }
        if let Some(beat) = newest {
            let input = Input::Beat {
                agent: name.to_string(),
                beat,
            };
            let now = self.now();
            let fx = self.handle(input, now);
            self.exec(fx, now);
        }
    }

    /// Writes a save-state card pinned to `name` into the inbox; returns its id.
    pub(super) fn drop_save_state(&mut self, name: &str, ratio: Option<f64>) -> Option<String> {
        let id = ulid::Ulid::new().to_string();
        let run_id = format!("{name}-{}", self.now().format("%Y%m%dT%H%M%SZ"));
        let pct = ratio.map_or("?".into(), |r| format!("{:.0}%", r * 100.0));
        let card = serde_yaml::to_string(&json!({
            "title": format!("Save state: {name}'s context is at {pct}"),
            "kind": SAVE_STATE,
            "priority": "critical",
            "assignee": name,
            "description": format!(
                "Your context window is at {pct}, over its hard limit. Write a summary of \
                 what you know and what is left to docs/runs/{run_id}_summary.md, clear \
                 your context, read the summary back, and resume your work. Move this card \
                 to work/done/ when you have."
            ),
            "summary_path": format!("docs/runs/{run_id}_summary.md"),
            "run_id": run_id,
        }))
        .ok()?;
        let path = self.ws.state_dir(State::Inbox).join(format!("{id}.yaml"));
        if let Err(e) = crate::fsops::write_atomic(&path, card.as_bytes(), self.cfg.fsync) {
            tracing::error!(agent = name, error = %e, "cannot write the save-state card");
            return None;
        }
        self.reconcile_card(&id, &[path]);
        Some(id)
    }

    /// Applies TTL verdicts that are due: down (an alert, no new work) and expired (the
    /// registration is removed and its cards taken back).
    pub(super) fn check_liveness(&mut self) {
        let now = self.now();
        let fx = self.handle(Input::Tick, now);
        self.exec(fx, now);
    }

    fn last_note(&self, name: &str) -> Option<String> {
        self.board
            .agents
            .get(name)?
            .live
            .beat
            .as_ref()?
            .note
            .clone()
    }

    /// Deregisters an agent silent for three intervals: removes its registration (the
    /// commit says why), takes its cards back with `attempts` raised, and names them in
    /// the event.
    pub(super) fn expire(&mut self, name: &str, seen: DateTime<Utc>) {
        let now = self.now();
        let path = self.ws.registration_path(name);
        let reason = format!(
            "{name} was deregistered: no beat for 3 intervals, last seen {}",
            stamp(seen)
        );
        let mut cards: Vec<String> = self
            .board
            .cards
            .iter()
            .filter(|(_, e)| e.place.agent.as_deref() == Some(name))
            .map(|(id, _)| id.clone())
            .collect();
        cards.sort();
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(agent = name, error = %e, "cannot remove the registration");
                return;
            }
        }
        let note = self.last_note(name);
        let epoch = self.retire(name);
        tracing::warn!(agent = name, cards = ?cards, "ALERT: {reason}");
        self.stage(
            &[&path],
            format!(
                "pas: deregister {name} (no beat for 3 intervals, last seen {})",
                stamp(seen)
            ),
        );
        self.emit(Event::AgentDeregistered(ev::Deregistered {
            agent: name.to_string(),
            epoch,
            reason: "no beat for 3 intervals".into(),
            silent: Some(ev::Silent {
                last_seen: seen,
                last_note: note,
                cards: cards.clone(),
            }),
        }));
        for id in cards {
            self.take_back(&id, &reason, now);
        }
        self.replan = true;
    }

    /// Forgets an agent's registration, remembering its epoch; returns that epoch.
    pub(super) fn retire(&mut self, name: &str) -> Option<u64> {
        let agent: &mut Agent = self.board.agents.get_mut(name)?;
        let reg = agent.reg.take()?;
        agent.live.down = false;
        let e = self.live.epochs.entry(name.to_string()).or_default();
        e.retired = e.retired.max(reg.epoch);
        self.board
            .agents
            .retain(|_, a| a.def.is_some() || a.reg.is_some());
        Some(reg.epoch)
    }

    /// A registration may not name an epoch below the one it replaces or any its agent
    /// held before, nor reuse a deregistered one; such an epoch is raised past them (and
    /// written back), so beats and completions of an old incarnation stay fenced.
    pub(super) fn raise_epoch(&mut self, name: &str, reg: &mut Registration, current: Option<u64>) {
        let held = self.live.epochs.entry(name.to_string()).or_default();
        let ok = reg.epoch > held.retired
            && reg.epoch >= held.registered
            && current.is_none_or(|c| reg.epoch >= c);
        if ok {
            held.registered = reg.epoch;
            return;
        }
        let was = reg.epoch;
        reg.epoch =
            crate::card::next_epoch(held.retired.max(held.registered).max(current.unwrap_or(0)));
        held.registered = reg.epoch;
        let path = self.ws.registration_path(name);
        tracing::info!(
            agent = name,
            was,
            epoch = reg.epoch,
            "epoch raised above the last one held"
        );
        if let Err(e) = crate::fsops::write_atomic(&path, reg.to_yaml().as_bytes(), self.cfg.fsync)
        {
            tracing::error!(agent = name, error = %e, "cannot write the raised epoch");
        }
    }

    /// The instant of the next liveness verdict, for the engine's sleep.
    pub(super) fn next_liveness_check(&self) -> Option<DateTime<Utc>> {
        self.live.next_check
    }
}

impl Engine {
    /// The epoch of `agent`'s registration.
    pub(super) fn epoch_of(&self, agent: &str) -> Option<u64> {
        Some(self.board.agents.get(agent)?.reg.as_ref()?.epoch)
    }

    /// Why a card file is a stale completion, if it is one: it lands in `done/` or
    /// `failed/` naming an agent and epoch (`pas.assigned_to`, `pas.epoch`) that no longer
    /// hold the card, because it was taken back or given to a newer incarnation.
    pub(super) fn stale_completion(&self, id: &str, place: &Place, card: &Card) -> Option<String> {
        if !matches!(place.state, State::Review | State::Done | State::Failed) {
            return None;
        }
        let m = &card.spec.pas;
        let (Some(agent), Some(epoch)) = (&m.assigned_to, m.epoch) else {
            return None;
        };
        let known = self.board.cards.get(id)?;
        // The file pas knew is gone: this file is the card, moved on (a hand move between
        // folders may not have been re-stamped yet). Only a copy can be stale.
        let (known_path, _) = self.files.get(id)?;
        if std::fs::symlink_metadata(known_path).is_err() {
            return None;
        }
        let k = &known.card.spec.pas;
        let holds = known.place.state != State::Inbox
            && k.assigned_to.as_deref() == Some(agent.as_str())
            && k.epoch == Some(epoch);
        if holds {
            return None;
        }
        let now_at = match (&k.assigned_to, k.epoch, known.place.state) {
            (Some(a), Some(e), s) if s != State::Inbox => {
                format!("{} (epoch {e} of {a})", known.place.label())
            }
            _ => known.place.label(),
        };
        Some(format!(
            "stale completion: {agent} at epoch {epoch} no longer holds {id} (it was taken back; it is now in {now_at})"
        ))
    }

    /// Refuses a stale completion: the file goes to `work/rejected/` with the reason, and
    /// if it replaced or moved the card, pas writes the card back as it knows it.
    pub(super) fn fence(&mut self, id: &str, path: &Path, why: &str) {
        tracing::warn!(job = id, file = %super::rel(&self.ws, path), why, "completion refused");
        self.reject(path, why);
        let (Some((known, _)), Some(entry)) =
            (self.files.get(id).cloned(), self.board.cards.get(id))
        else {
            return;
        };
        if std::fs::symlink_metadata(&known).is_ok() {
            return;
        }
        let text = entry.card.text().to_string();
        match crate::fsops::write_atomic(&known, text.as_bytes(), self.cfg.fsync)
            .and_then(|()| crate::fsops::Stamp::of(&known))
        {
            Ok(stamp) => {
                self.files.insert(id.to_string(), (known.clone(), stamp));
                self.stage(
                    &[&known],
                    format!("pas: {id} restored after a stale completion"),
                );
            }
            Err(e) => tracing::error!(job = id, error = %e, "cannot restore the card"),
        }
    }
}
