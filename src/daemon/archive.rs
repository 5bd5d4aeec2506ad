//! Archiving finished cards (SPEC section 2): cards leave `done/` and `failed/` for
//! `work/archive/YYYY/MM/DD/` (the day they finished) once they finished more than
//! `archive.after` ago, or once `archive.keep` cards that finished later stand in their
//! folder. The live folders stay small, so every commit rewrites small trees.
//!
//! Archiving runs in rounds from the engine's loop, after the plan, never inside it: a
//! round moves at most `archive.batch` cards (oldest first) and, when more are due, asks
//! for the next round at the loop's next turn. Between two rounds the loop takes in what
//! arrived and plans, so a big backlog (a workspace upgraded from a flat `done/` of any
//! size) is worked off in bounded steps while new cards are still assigned at once.
//! Each archived card is an ordinary transition (`done -> archive/2026/12/07`): a history
//! entry, a telemetry row and a commit line, moved through `fsops::move_card`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::engine::Engine;
use crate::board::Place;
use crate::card::State;

/// How soon after a card finishes the next round looks (cards finishing in a burst share
/// one round; `keep` is exceeded for at most this long).
const AFTER_FINISH: Duration = Duration::from_secs(1);

/// The longest wait between two rounds when nothing is due (a clock that jumps, a card
/// dropped into `done/` while pas looked elsewhere).
const IDLE_ROUND: Duration = Duration::from_secs(60);

/// What one round found: the cards to archive now (oldest first) and when the next falls due.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Due {
    pub now: Vec<(String, DateTime<Utc>)>,
    /// Cards due beyond this round's batch.
    pub more: usize,
    /// When the earliest card not yet due will be.
    pub next: Option<DateTime<Utc>>,
}

/// Which finished cards are due: `cards` are (id, state, finished) of every card in
/// `done/` and `failed/`. Pure, so the rule is tested without files.
pub(super) fn due(
    cards: &[(String, State, DateTime<Utc>)],
    now: DateTime<Utc>,
    after: Duration,
    keep: usize,
    batch: usize,
) -> Due {
    let after = chrono::TimeDelta::from_std(after).unwrap_or(chrono::TimeDelta::MAX);
    let mut out = Due::default();
    let mut all: Vec<(DateTime<Utc>, String)> = Vec::new();
    for state in [State::Done, State::Failed] {
        let mut here: Vec<(DateTime<Utc>, &str)> = cards
            .iter()
            .filter(|(_, s, _)| *s == state)
            .map(|(id, _, at)| (*at, id.as_str()))
            .collect();
        here.sort_unstable();
        let over = here.len().saturating_sub(keep);
        for (i, (at, id)) in here.into_iter().enumerate() {
            let old = now.signed_duration_since(at) >= after;
            if i < over || old {
                all.push((at, id.to_string()));
            } else {
                let at_ = at
                    .checked_add_signed(after)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                out.next = Some(out.next.map_or(at_, |n| n.min(at_)));
            }
        }
    }
    all.sort_unstable();
    out.more = all.len().saturating_sub(batch);
    all.truncate(batch);
    out.now = all.into_iter().map(|(at, id)| (id, at)).collect();
    out
}

impl Engine {
    /// Runs an archive round if one is due.
    pub fn archive_if_due(&mut self) {
        if !self.cfg.archive.enabled || self.clock.instant() < self.archive_next {
            return;
        }
        self.archive_round();
        self.flush_commit();
    }

    /// The next instant an archive round is due (for the loop's wakeup), if archiving is on.
    pub(super) fn next_archive(&self) -> Option<Instant> {
        self.cfg.archive.enabled.then_some(self.archive_next)
    }

    /// A card just finished: look soon, so `keep` holds.
    pub(super) fn archive_soon(&mut self) {
        self.archive_next = self.archive_next.min(self.clock.instant() + AFTER_FINISH);
    }

    /// Archives at most `archive.batch` due cards and sets when the next round is.
    fn archive_round(&mut self) {
        let started = Instant::now();
        let now = self.now();
        let cards: Vec<(String, State, DateTime<Utc>)> = self
            .board
            .cards
            .iter()
            .filter(|(_, e)| matches!(e.place.state, State::Done | State::Failed))
            .map(|(id, e)| {
                (
                    id.clone(),
                    e.place.state,
                    e.finished_at().unwrap_or(e.created),
                )
            })
            .collect();
        let a = &self.cfg.archive;
        let due = due(&cards, now, a.after(), a.keep, a.batch);
        let n = due.now.len();
        for (id, finished) in due.now {
            self.transfer(&id, Place::archived(finished), "pas", None, now, |_| {});
        }
        self.archive_next = if due.more > 0 {
            self.clock.instant()
        } else {
            let wait = due
                .next
                .map(|t| (t - now).to_std().unwrap_or_default())
                .unwrap_or(IDLE_ROUND);
            // A little past the due time, so the card is due when the round looks.
            self.clock.instant() + wait.min(IDLE_ROUND) + Duration::from_millis(10)
        };
        if n > 0 {
            tracing::info!(
                archived = n,
                left = due.more,
                ms = started.elapsed().as_millis() as u64,
                "finished cards moved to work/archive"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn cards(n: usize, state: State) -> Vec<(String, State, DateTime<Utc>)> {
        (0..n)
            .map(|i| (format!("{state:?}-{i}"), state, t(i as i64)))
            .collect()
    }

    #[test]
    fn old_cards_go_and_the_next_due_is_known() {
        let c = cards(5, State::Done);
        let d = due(&c, t(102), Duration::from_secs(100), 10, 500);
        let ids: Vec<&str> = d.now.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["Done-0", "Done-1", "Done-2"]);
        assert_eq!(d.more, 0);
        assert_eq!(d.next, Some(t(103)));
    }

    #[test]
    fn keep_bounds_each_folder_oldest_first() {
        let mut c = cards(5, State::Done);
        c.extend(cards(2, State::Failed));
        let d = due(&c, t(10), Duration::from_secs(3600), 3, 500);
        let ids: Vec<&str> = d.now.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["Done-0", "Done-1"]);
    }

    #[test]
    fn a_backlog_goes_in_batches() {
        let c = cards(1200, State::Done);
        let d = due(&c, t(10_000), Duration::from_secs(1), 1000, 500);
        assert_eq!(d.now.len(), 500);
        assert_eq!(d.more, 700);
        assert_eq!(d.now[0].0, "Done-0");
    }
}
