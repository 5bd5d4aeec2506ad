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
    if !same_time(file.assigned_at, known.assigned_at) {
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
    if !same_history(&file.history, &known.history) {
        out.push(format!(
            "history of {} entries (pas: {})",
            file.history.len(),
            known.history.len()
        ));
    }
    out.extend(trace_forged(known, file));
    out
}

/// pas's record of a card with the fields its agent (or runner) may write kept from the
/// file: the review branch and its base, which pas only reads (as git names, never a shell).
pub(super) fn restored(known: &PasMeta, file: &PasMeta) -> PasMeta {
    PasMeta {
        branch: file.branch.clone(),
        base: file.base.clone(),
        ..known.clone()
    }
}

/// The card's trace ids changed from what pas stamped: a forged id would file the card's
/// calls and spans under someone else's trace.
fn trace_forged(known: &PasMeta, file: &PasMeta) -> Option<String> {
    (known.trace_id.is_some() && (file.trace_id != known.trace_id || file.span_id != known.span_id))
        .then(|| {
            format!(
                "trace_id {:?} span_id {:?} (pas: {:?} {:?})",
                file.trace_id, file.span_id, known.trace_id, known.span_id
            )
        })
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
    let extends = file.history.len() <= n + 1
        && file
            .history
            .get(..n)
            .is_some_and(|h| same_history(h, &known.history));
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
        if e.at > now + chrono::TimeDelta::seconds(SKEW_S)
            || last.is_some_and(|l| e.at.timestamp_millis() < l.timestamp_millis())
        {
            out.push(format!("history entry dated {}", show(Some(e.at))));
        }
    }
    let retry = to.state == State::Inbox && from.state.finished();
    // `pas reject` raises attempts by one on its way out of review (as a take-back would).
    let rejected = from.state == State::Review
        && matches!(to.state, State::Inbox | State::Failed)
        && file.attempts == known.attempts.saturating_add(1);
    if file.attempts != known.attempts && !(retry && file.attempts == 0) && !rejected {
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
                if !same_time(file.assigned_at, Some(e.at)) {
                    out.push(format!(
                        "assigned_at {} (the move was at {})",
                        show(file.assigned_at),
                        show(Some(e.at))
                    ));
                }
            }
        }
        State::Review | State::Done | State::Failed | State::Archived => {
            if !same_time(file.assigned_at, known.assigned_at) {
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
    out.extend(trace_forged(known, file));
    out
}

/// At start-up pas knows a card only from its file, so the file's block is held against the
/// database's rows of the card's transitions (one per history entry, written as pas made
/// them). An entry the rows contradict, a history shorter than the rows, an `assigned_at`
/// that is not the time of the assignment, or `attempts` below the number of take-backs by
/// pas since the last move from `done/` or `failed/` back to the inbox (a retry) is put
/// back. Rows the database lacks (a crash before its writer committed) are
/// not held against the file. Returns the corrected block and what was corrected.
pub(super) fn against_rows(
    file: &PasMeta,
    rows: &[crate::store::db::TransitionRow],
) -> Option<(PasMeta, Vec<String>)> {
    use crate::card::HistoryEntry;
    let mut found = Vec::new();
    let mut meta = file.clone();
    let agrees = |h: &HistoryEntry, r: &crate::store::db::TransitionRow| {
        h.from == r.from && h.to == r.to && h.at.timestamp_millis() == r.ts.timestamp_millis()
    };
    let same = file.history.len() >= rows.len()
        && file.history.iter().zip(rows).all(|(h, r)| agrees(h, r));
    if !same {
        found.push(format!(
            "history of {} entries (pas's database: {})",
            file.history.len(),
            rows.len()
        ));
        meta.history = rows
            .iter()
            .map(|r| HistoryEntry {
                at: r.ts,
                from: r.from.clone(),
                to: r.to.clone(),
                by: r.agent.clone(),
                reason: r.reason.clone(),
            })
            .collect();
    }
    if let Some(last) = meta.history.last() {
        if last.to.starts_with("assigned/") && !same_time(meta.assigned_at, Some(last.at)) {
            found.push(format!(
                "assigned_at {} (assigned at {})",
                show(meta.assigned_at),
                show(Some(last.at))
            ));
            meta.assigned_at = Some(last.at);
        }
    }
    // Each take-back by pas raised `attempts` by one; a retry from done/ or failed/ may
    // have reset it.
    let taken_back = meta
        .history
        .iter()
        .rev()
        .take_while(|h| {
            !(h.to == "inbox"
                && (h.from == "done" || h.from == "failed" || h.from.starts_with("archive/")))
        })
        .filter(|h| {
            h.from.starts_with("assigned/")
                && (h.to == "inbox" || h.to == "failed")
                && h.by.as_deref() == Some("pas")
        })
        .count() as u32;
    if meta.attempts < taken_back {
        found.push(format!(
            "attempts {} (pas took it back {taken_back} times)",
            meta.attempts
        ));
        meta.attempts = taken_back;
    }
    (!found.is_empty()).then_some((meta, found))
}

/// Times as a card holds them: to the millisecond (pas's clock in memory is finer).
fn same_time(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> bool {
    a.map(|t| t.timestamp_millis()) == b.map(|t| t.timestamp_millis())
}

/// Histories equal as a card holds them (times to the millisecond).
fn same_history(a: &[crate::card::HistoryEntry], b: &[crate::card::HistoryEntry]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            same_time(Some(x.at), Some(y.at))
                && x.from == y.from
                && x.to == y.to
                && x.by == y.by
                && x.reason == y.reason
        })
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
    fn a_reject_may_raise_attempts_by_one_and_a_runner_keeps_its_branch() {
        let known = PasMeta {
            state: Some(State::Review),
            ..assigned()
        };
        let (review, inbox) = (Place::of(State::Review), Place::of(State::Inbox));
        let mut back = transition_meta(&known, &review, &inbox, "cli", None, t(5));
        back.attempts = known.attempts + 1;
        assert!(moved(&known, &back, &review, &inbox, t(6)).is_empty());
        back.attempts = 0;
        assert!(!moved(&known, &back, &review, &inbox, t(6)).is_empty());
        let file = PasMeta {
            branch: Some("pas/J".into()),
            base: Some("abcd".into()),
            attempts: 0,
            ..known.clone()
        };
        let kept = restored(&known, &file);
        assert_eq!((kept.branch.as_deref(), kept.attempts), (Some("pas/J"), 2));
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

    /// pas's clock in memory has nanoseconds; a card holds milliseconds. The same block
    /// read back from the file is not an edit (this was once taken for a forged history).
    #[test]
    fn a_block_read_back_at_millisecond_precision_is_not_an_edit() {
        let fine = t(0) + chrono::TimeDelta::nanoseconds(123_456_789);
        let known = transition_meta(
            &PasMeta::default(),
            &Place::of(State::Inbox),
            &Place::assigned("w"),
            "pas",
            None,
            fine,
        );
        let text = serde_yaml::to_string(&known).unwrap();
        let file: PasMeta = serde_yaml::from_str(&text).unwrap();
        assert_ne!(file, known, "the file holds milliseconds only");
        assert!(edited(&known, &file).is_empty());
        let done = transition_meta(
            &file,
            &Place::assigned("w"),
            &Place::of(State::Done),
            "w",
            None,
            fine,
        );
        let found = moved(
            &known,
            &done,
            &Place::assigned("w"),
            &Place::of(State::Done),
            fine,
        );
        assert!(found.is_empty(), "{found:?}");
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
    fn the_database_rows_win_at_start_up() {
        use crate::store::db::TransitionRow;
        let row = |n: u32, s: i64, from: &str, to: &str, reason: Option<&str>| TransitionRow {
            job_id: "J".into(),
            n,
            ts: t(s),
            from: from.into(),
            to: to.into(),
            agent: None,
            reason: reason.map(str::to_string),
        };
        let rows = vec![
            row(0, 0, "new", "inbox", None),
            row(1, 1, "inbox", "assigned/w", None),
            TransitionRow {
                agent: Some("pas".into()),
                ..row(2, 5, "assigned/w", "inbox", Some("timed out after 4s"))
            },
            row(3, 6, "inbox", "assigned/w", None),
        ];
        let honest = PasMeta {
            state: Some(State::Assigned),
            assigned_to: Some("w".into()),
            assigned_at: Some(t(6)),
            attempts: 1,
            epoch: None,
            waiting_for: None,
            trace_id: None,
            branch: None,
            base: None,
            span_id: None,
            history: rows
                .iter()
                .map(|r| crate::card::HistoryEntry {
                    at: r.ts,
                    from: r.from.clone(),
                    to: r.to.clone(),
                    by: r.agent.clone(),
                    reason: r.reason.clone(),
                })
                .collect(),
        };
        assert_eq!(against_rows(&honest, &rows), None);
        // A crash before the database caught up: the file may hold more than the rows.
        assert_eq!(against_rows(&honest, &rows[..3]).map(|(_, f)| f), None);
        let forged = PasMeta {
            assigned_at: Some(t(1_000_000_000)),
            attempts: 0,
            ..honest.clone()
        };
        let (fixed, found) = against_rows(&forged, &rows).unwrap();
        assert_eq!(fixed, honest, "{found:?}");
        assert_eq!(found.len(), 2, "{found:?}");
        let cut = PasMeta {
            history: honest.history[..2].to_vec(),
            attempts: 0,
            ..honest.clone()
        };
        let (fixed, _) = against_rows(&cut, &rows).unwrap();
        assert_eq!(fixed.history.len(), 4);
        assert_eq!(fixed.attempts, 1);
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
