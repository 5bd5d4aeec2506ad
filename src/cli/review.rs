//! `pas approve` and `pas reject`: a person's verdict on a card in `work/review/`. Like the
//! other writing commands they only move files; the daemon, when it runs, records and
//! commits the move.

use anyhow::{Context, Result};

use super::write::{find, move_with, Move};
use super::Out;
use crate::board::{take_back_target, Place};
use crate::card::State;
use crate::workspace::{read_card, Workspace};

/// `pas approve ID [--note TEXT]`: review → done, the result kept.
pub fn approve(ws: &Workspace, id: &str, note: Option<String>, out: &Out) -> Result<i32> {
    let how = Move {
        reason: Some(match &note {
            Some(n) => format!("approved: {n}"),
            None => "approved".into(),
        }),
        from_state: Some(State::Review),
        ..Move::default()
    };
    move_with(ws, id, Place::of(State::Done), how)?;
    out.line(format!("{id} -> done (approved)"));
    Ok(0)
}

/// `pas reject ID --feedback TEXT`: review → inbox with `attempts` raised and the feedback
/// in its history and under its description (so the next attempt reads it); past
/// `max_attempts` the card goes to `failed/` instead, as a take-back would.
pub fn reject(ws: &Workspace, id: &str, feedback: &str, out: &Out) -> Result<i32> {
    let feedback = feedback.trim();
    if feedback.is_empty() {
        anyhow::bail!("--feedback must say what to change (it is empty)");
    }
    let (path, place) = find(ws, id)?;
    if place.state != State::Review {
        anyhow::bail!(
            "{id} is not in work/review/: it is in work/{}/",
            place.label()
        );
    }
    let card = read_card(&path, id).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let max = ws.config().context("cannot read pas.yaml")?.max_attempts;
    let (to, attempts) = take_back_target(&card, max);
    let description = match card.spec.description.as_deref().map(str::trim_end) {
        Some(d) if !d.is_empty() => {
            format!("{d}\n\nReview feedback (attempt {attempts}): {feedback}")
        }
        _ => format!("Review feedback (attempt {attempts}): {feedback}"),
    };
    let mut keys = vec![("description", description)];
    if to.state == State::Failed {
        let limit = card.max_attempts(max);
        keys.push((
            "error",
            format!("rejected in review, attempt {attempts} of {limit}: {feedback}"),
        ));
    }
    let how = Move {
        keys,
        reason: Some(format!("rejected: {feedback}")),
        attempts: Some(attempts),
        from_state: Some(State::Review),
    };
    move_with(ws, id, to.clone(), how)?;
    out.line(format!(
        "{id} -> {} (rejected, attempt {attempts})",
        to.state.dir()
    ));
    Ok(0)
}
