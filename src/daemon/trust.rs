//! pas's own records win over a `pas:` block someone edited.
//!
//! The `pas:` block of a card is pas's record of it (when it was assigned, how often it was
//! taken back, under which epoch, its history), but it lives in a file any agent can write.
//! An agent that sets `assigned_at` to the year 9999 would never time out; one that sets
//! `attempts: 0` would be retried for ever; one that rewrites `history` would rewrite the
//! audit trail. So whenever pas already knows a card, the block in the file is compared
//! with what pas knows, and what pas alone decides is put back, with a line in the commit
//! saying what was corrected. What others may legitimately add is left: one history entry
//! for the move itself (`pas done`, `pas fail` and `pas retry` write one), and `attempts`
//! reset to 0 by a retry (a move from `done/` or `failed/` back to the inbox).
//!
//! Pure: the engine calls these with what it knows and what it read.

use chrono::{DateTime, Utc};

use crate::board::Place;
use crate::card::{PasMeta, State};

/// How far ahead of pas's clock a recorded transition time may be (clocks of other
/// processes on the same machine differ by less).
const SKEW_S: i64 = 5;

/// What a `pas:` block edited in place changed of pas's own fields, in words (empty when
/// nothing did). `state` and `waiting_for` are pas's too but only mirror the folder and
/// the plan, which pas rewrites anyway.
pub(super) fn edited(known: &PasMeta, file: &PasMeta) -> Vec<String> {
    let mut out = Vec::new();
    if file.assigned_to != known.assigned_to {
        out.push(format!(
            "assigned_to {:?} (pas: {:?})",
            file.assigned_to, known.assigned_to
        ));
    }
    if file.assigned_at != known.assigned_at {
        out.push(format!(
            "assigned_at {} (pas: {})",
            show(file.assigned_at),
            show(known.assigned_at)
        ));
    }
    if file.attempts != known.attempts {
        out.push(format!(
            "attempts {} (pas: {})",
            file.attempts, known.attempts
        ));
    }
    if file.epoch != known.epoch {
        out.push(format!("epoch {:?} (pas: {:?})", file.epoch, known.epoch));
    }
    if file.history != known.history {
        out.push(format!(
            "history of {} entries (pas: {})",
            file.history.len(),
            known.history.len()
        ));
    }
    out
}

/// What a `pas:` block that arrived with a move (`from` to `to`, seen at `now`) changed of
/// pas's own fields beyond what the mover may write, in words.
pub(super) fn moved(
    known: &PasMeta,
    file: &PasMeta,
    from: &Place,
    to: &Place,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut out = Vec::new();
    let n = known.history.len();
    let extends = file.history.len() <= n + 1 && file.history.get(..n) == Some(&known.history[..]);
    if !extends {
        out.push(format!(
            "history of {} entries does not extend pas's {}",
            file.history.len(),
            n
        ));
    }
    let added = file.history.get(n).filter(|_| extends);
    if let Some(e) = added {
        let last = known.history.last().map(|h| h.at);
        if e.at > now + chrono::TimeDelta::seconds(SKEW_S) || last.is_some_and(|l| e.at < l) {
            out.push(format!("history entry dated {}", show(Some(e.at))));
        }
    }
    let retry = to.state == State::Inbox && matches!(from.state, State::Done | State::Failed);
    if file.attempts != known.attempts && !(retry && file.attempts == 0) {
        out.push(format!(
            "attempts {} (pas: {})",
            file.attempts, known.attempts
        ));
    }
    match to.state {
        // pas stamps the assignment itself unless the move recorded it; a recorded one must
        // say when it happened, as its history entry does.
        State::Assigned => {
            if let Some(e) = added {
                if file.assigned_at != Some(e.at) {
                    out.push(format!(
                        "assigned_at {} (the move was at {})",
                        show(file.assigned_at),
                        show(Some(e.at))
                    ));
                }
            }
        }
        State::Done | State::Failed => {
            if file.assigned_at != known.assigned_at {
                out.push(format!(
                    "assigned_at {} (pas: {})",
                    show(file.assigned_at),
                    show(known.assigned_at)
                ));
            }
            if file.epoch != known.epoch {
                out.push(format!("epoch {:?} (pas: {:?})", file.epoch, known.epoch));
            }
        }
        State::Inbox => {}
    }
    out
}

fn show(t: Option<DateTime<Utc>>) -> String {
    t.map_or("none".into(), |t| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::transition_meta;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn assigned() -> PasMeta {
        let m = transition_meta(
            &PasMeta::default(),
            &Place::of(State::Inbox),
            &Place::assigned("w"),
            "pas",
            None,
            t(0),
        );
        PasMeta {
            attempts: 2,
            epoch: Some(3),
            ..m
        }
    }

    #[test]
    fn an_untouched_block_and_a_recorded_move_pass() {
        let known = assigned();
        assert!(edited(&known, &known).is_empty());
        let done = transition_meta(
            &known,
            &Place::assigned("w"),
            &Place::of(State::Done),
            "w",
            None,
            t(5),
        );
        let moves = moved(
            &known,
            &done,
            &Place::assigned("w"),
            &Place::of(State::Done),
            t(6),
        );
        assert!(moves.is_empty(), "{moves:?}");
        // A plain mv carries pas's block unchanged: nothing to correct either.
        let moves = moved(
            &known,
            &known,
            &Place::assigned("w"),
            &Place::of(State::Done),
            t(6),
        );
        assert!(moves.is_empty(), "{moves:?}");
    }

    #[test]
    fn forged_times_attempts_and_history_are_found() {
        let known = assigned();
        let far = PasMeta {
            assigned_at: Some(DateTime::from_timestamp(253_402_300_799, 0).unwrap()),
            attempts: 0,
            ..known.clone()
        };
        let found = edited(&known, &far);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("assigned_at 9999-12-31"), "{found:?}");
        assert_eq!(found[1], "attempts 0 (pas: 2)");
        let rewritten = PasMeta {
            history: Vec::new(),
            ..known.clone()
        };
        assert!(!moved(
            &known,
            &rewritten,
            &Place::assigned("w"),
            &Place::of(State::Done),
            t(1)
        )
        .is_empty());
        // attempts back to 0 with a move from assigned is forged; from failed it is a retry.
        let reset = PasMeta {
            attempts: 0,
            ..known.clone()
        };
        assert!(!moved(
            &known,
            &reset,
            &Place::assigned("w"),
            &Place::of(State::Inbox),
            t(1)
        )
        .is_empty());
        assert!(moved(
            &known,
            &reset,
            &Place::of(State::Failed),
            &Place::of(State::Inbox),
            t(1)
        )
        .is_empty());
    }

    #[test]
    fn a_recorded_claim_dated_in_the_future_is_found() {
        let inbox = PasMeta::default();
        let claim = transition_meta(
            &inbox,
            &Place::of(State::Inbox),
            &Place::assigned("w"),
            "w",
            None,
            t(1_000_000),
        );
        let found = moved(
            &inbox,
            &claim,
            &Place::of(State::Inbox),
            &Place::assigned("w"),
            t(0),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("history entry dated"), "{found:?}");
    }
}
