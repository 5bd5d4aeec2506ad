//! Carrying out a plan: assignments, take-backs and waiting reasons become file moves,
//! each recorded as a transition.

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::engine::Engine;
use crate::board::{take_back_target, transition_meta, Place};
use crate::card::State;
use crate::fsops::{self, Moved};
use crate::workspace::rel;

/// The largest board whose incremental plans debug builds check against a full plan.
const CHECKED_BOARD: usize = 2000;

impl Engine {
    /// Plans at the current time and carries the plan out; repeats while moves free up
    /// room (a take-back can make a slot for a waiting card).
    pub fn step(&mut self) {
        self.check_liveness();
        // A card write failed before (a full disk): plan again only when the retry is due,
        // which retries its move. Until then a plan would fail the same way, and each
        // failed move puts a card back, whose watch event would ask for another plan.
        if !self.take_due_retry() && self.faults.retry_at().is_some() {
            self.flush_commit();
            return;
        }
        let due = self.next_timeout.is_some_and(|t| t <= self.now());
        let started = self.clock.instant();
        if !self.replan && !due || !self.pacing.may_plan(started) {
            // (A plan put off keeps `replan`; `next_wakeup` comes back for it.)
            self.replan |= due;
            self.write_dirty();
            self.flush_commit();
            return;
        }
        self.replan = false;
        let mut again = false;
        for _ in 0..4 {
            let now = self.now();
            self.resolve_shelved();
            let fx = self.handle(super::effect::Input::Plan, now);
            // Only a take-back can free room for another pass; assignments use it up.
            again = fx.iter().any(super::effect::Effect::frees_room);
            self.exec(fx, now);
            if !again {
                break;
            }
        }
        self.pacing.planned(started, self.clock.instant());
        // Room freed by a last pass's take-backs is used at the next wakeup (at once).
        self.replan |= again;
        self.next_timeout = self.board.next_deadline_indexed();
        self.write_dirty();
        self.flush_commit();
    }

    /// In debug builds (the tests), holds each incremental plan against the full plan of
    /// the same board while the board is small enough for that to stay cheap.
    pub(super) fn check_plan(&self, plan: &crate::board::Plan, now: DateTime<Utc>) {
        if cfg!(debug_assertions) && self.board.cards.len() <= CHECKED_BOARD {
            if let Err(e) = self.board.check(plan, now) {
                panic!("the incremental plan differs from the full plan: {e}");
            }
        }
    }

    /// The next instant the engine must wake: a timeout or a settling file.
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.replan && self.faults.retry_at().is_none() {
            return Some(self.pacing.next_plan_at().unwrap_or_else(Instant::now));
        }
        let settle = [
            self.settling.values().min().copied(),
            self.faults.retry_at(),
        ]
        .into_iter()
        .flatten()
        .min();
        let now = self.now();
        let deadline = [self.next_timeout, self.next_liveness_check()]
            .into_iter()
            .flatten()
            .min()
            .map(|d| self.clock.instant() + (d - now).to_std().unwrap_or_default());
        let deadline = match (deadline, self.next_archive()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (settle, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves one card from the inbox to `assigned/<agent>/`.
    pub(super) fn assign(&mut self, id: &str, agent: &str, now: DateTime<Utc>) {
        let to = Place::assigned(agent);
        let epoch = self.epoch_of(agent);
        self.transfer(id, to, "pas", None, now, |m| m.epoch = epoch);
    }

    /// Takes a card back from its agent: to the inbox, or to `failed/` past max_attempts
    /// (with an `error` saying why, unless the card already has one).
    pub(super) fn take_back(&mut self, id: &str, reason: &str, now: DateTime<Utc>) {
        let max_default = self.board.defaults.max_attempts;
        let Some(entry) = self.board.cards.get_mut(id) else {
            return;
        };
        let (target, attempts) = take_back_target(&entry.card, max_default);
        let mut reason = reason.to_string();
        if target.state == State::Failed {
            reason = format!(
                "{reason}; attempt {attempts} of {}",
                entry.card.max_attempts(max_default)
            );
            if crate::card::key_position(entry.card.text(), "error").is_none() {
                let error = serde_yaml::Value::String(format!("pas gave up: {reason}"));
                if let Ok(card) = entry.card.with_key("error", &error) {
                    entry.card = card;
                }
            }
        }
        // The epoch goes with the agent: a completion naming it is stale from now on.
        self.transfer(id, target, "pas", Some(reason), now, move |m| {
            m.attempts = attempts;
            m.epoch = None;
        });
    }

    /// Fails an inbox card at once (it can never run here), with the reason as `error`.
    pub(super) fn fail(&mut self, id: &str, reason: &str, now: DateTime<Utc>) {
        let Some(entry) = self.board.cards.get_mut(id) else {
            return;
        };
        if crate::card::key_position(entry.card.text(), "error").is_none() {
            let error = serde_yaml::Value::String(format!("pas: {reason}"));
            if let Ok(card) = entry.card.with_key("error", &error) {
                entry.card = card;
            }
        }
        self.transfer(
            id,
            Place::of(State::Failed),
            "pas",
            Some(reason.to_string()),
            now,
            |_| {},
        );
    }

    /// Hands an LLM job card to the gateway's executor (once; it stays in the inbox while
    /// its call runs), or says it waits for one.
    pub(super) fn start_llm(&mut self, id: &str) {
        if self.llm_running.contains(id) {
            return;
        }
        let Some(jobs) = &self.llm_jobs else {
            self.note_waiting(id, "waits for pas serve to run its LLM call".into());
            return;
        };
        let Some(entry) = self.board.cards.get(id) else {
            return;
        };
        let job = crate::gateway::cards::LlmJob {
            id: id.to_string(),
            llm: entry.card.spec.llm.clone().unwrap_or_default(),
            budget_usd: entry.card.spec.budget_usd.clone(),
            trace: crate::trace::card_trace(&entry.card.spec.pas),
            replay_of: entry.card.spec.replay_of.clone(),
        };
        if jobs.send(job).is_err() {
            tracing::error!(job = id, "the LLM executor is gone; the card waits");
            return;
        }
        self.llm_running.insert(id.to_string());
        self.note_waiting(id, "pas is running its LLM call".into());
    }

    /// An LLM job card's call ended: `result` (or `error`) into the card, and the card to
    /// `done/` (or `failed/`). A card moved meanwhile (by a person) is left where it is.
    pub fn finish_llm(&mut self, id: &str, result: Result<serde_yaml::Value, String>) {
        self.llm_running.remove(id);
        self.replan = true;
        let now = self.now();
        let Some(entry) = self.board.cards.get_mut(id) else {
            tracing::warn!(
                job = id,
                "LLM call ended for a card that is gone; result dropped"
            );
            return;
        };
        if entry.place.state != State::Inbox {
            tracing::warn!(job = id, place = ?entry.place, "LLM call ended after the card moved on; result dropped");
            return;
        }
        let (key, value, to, reason) = match result {
            Ok(v) => ("result", v, State::Done, None),
            Err(e) => (
                "error",
                serde_yaml::Value::String(format!("pas: {e}")),
                State::Failed,
                Some(e),
            ),
        };
        match entry.card.with_key(key, &value) {
            Ok(card) => entry.card = card,
            Err(e) => {
                tracing::error!(job = id, error = %e, "cannot write the LLM outcome into the card")
            }
        }
        self.transfer(id, Place::of(to), "pas", reason, now, |_| {});
    }

    /// Puts the reason in `pas.waiting_for` when it changed (written after planning).
    pub(super) fn note_waiting(&mut self, id: &str, reason: String) {
        // The reason is the plan's own output: writing it is no news to the next plan.
        let Some(entry) = self.board.cards.get_mut_unplanned(id) else {
            return;
        };
        if entry.card.spec.pas.waiting_for.as_deref() == Some(reason.as_str()) {
            return;
        }
        let mut meta = entry.card.spec.pas.clone();
        meta.waiting_for = Some(reason);
        entry.card = entry.card.with_meta(&meta);
        self.dirty.insert(id.to_string());
    }

    /// Moves card `id` to `to` with a new history entry; `adjust` edits the `pas:` block.
    pub(super) fn transfer(
        &mut self,
        id: &str,
        to: Place,
        by: &str,
        reason: Option<String>,
        now: DateTime<Utc>,
        adjust: impl FnOnce(&mut crate::card::PasMeta),
    ) {
        let (Some(entry), Some((from_path, _))) = (self.board.cards.get(id), self.files.get(id))
        else {
            return;
        };
        let from_path = from_path.clone();
        let mut meta = transition_meta(&entry.card.spec.pas, &entry.place, &to, by, reason, now);
        adjust(&mut meta);
        let card = entry.card.with_meta(&meta);
        let to_path = self.ws.card_path(id, &to);
        match fsops::move_card(
            &from_path,
            &to_path,
            card.text(),
            &mut self.spares,
            self.cfg.fsync,
        ) {
            Ok(Moved::Done(stamp)) => {
                self.file_ok();
                self.dirty.remove(id);
                self.files.insert(id.to_string(), (to_path.clone(), stamp));
                if let Some(e) = self.board.cards.get_mut(id) {
                    e.card = card.clone();
                    e.place = to.clone();
                }
                self.record(id, &to, Some(&from_path), &to_path, &card);
                if to.state == State::Archived {
                    self.shelve(id);
                }
            }
            // Someone else moved it first (a pull claim, a completion): look again.
            Ok(Moved::Gone) => self.reconcile_card(id, &[]),
            Ok(Moved::Blocked(staged)) => {
                let at = rel(&self.ws, &to_path);
                self.reject(
                    &staged,
                    &format!("duplicate id {id}: it already exists at {at}"),
                );
                self.reconcile_card(id, &[to_path]);
            }
            Err(e) => {
                // fsops put the card back where it was; the retry plans its move again.
                let what = format!(
                    "move card {id} from {} to {}",
                    rel(&self.ws, &from_path),
                    rel(&self.ws, &to_path)
                );
                self.file_failed(&what, id, &e);
            }
        }
    }
}
