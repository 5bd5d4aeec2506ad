//! What a run does to its card when it ends, through the same atomic moves an agent makes
//! by hand (`fsops::move_card` through staging): exit 0 to `done/` (or `review/`) with
//! `result`, a failure to `failed/` with `error`, a run's own timeout back to the inbox
//! like any take-back.
//!
//! First writer wins: every move starts from the card's path in `assigned/<agent>/`, so
//! a card someone else moved first (the daemon's take-back, a person's `mv`) is found gone
//! and left where it is; and a card that is there again under a newer assignment (taken
//! back and given to this agent anew while the old process ended) is not the old run's.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use serde_yaml::Value;

use crate::board::{take_back_target, transition_meta, Place};
use crate::card::{Card, HistoryEntry, State};
use crate::fsops::{self, Moved};
use crate::workspace::{read_card, Workspace};

/// Where a finished run sends its card.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Exit 0: `result`, to `done/`, or to `review/` with the branch and base of the work.
    Done {
        result: String,
        review: Option<(String, String)>,
        to_review: bool,
    },
    /// A non-zero exit, a template or spawn error: `error`, to `failed/`.
    Failed { error: String },
    /// The run's own timeout: back to the inbox with attempts raised (or failed past
    /// `max_attempts`), as any take-back.
    TakeBack { reason: String },
}

/// The card at `path` if it is still the assignment the run started on.
pub fn still_ours(path: &Path, id: &str, assigned_at: Option<DateTime<Utc>>) -> Option<Card> {
    let card = read_card(path, id).ok()?;
    (card.spec.pas.assigned_at == assigned_at).then_some(card)
}

/// Moves the card of a run that ended. `Ok(None)`: the card was no longer the run's to
/// move (gone or re-assigned), and nothing changed.
pub fn settle(
    ws: &Workspace,
    agent: &str,
    id: &str,
    assigned_at: Option<DateTime<Utc>>,
    outcome: &Outcome,
    default_max_attempts: u32,
) -> Result<Option<PathBuf>> {
    let from_path = ws
        .state_dir(State::Assigned)
        .join(agent)
        .join(format!("{id}.yaml"));
    let Some(card) = still_ours(&from_path, id, assigned_at) else {
        return Ok(None);
    };
    let from = Place {
        state: State::Assigned,
        agent: Some(agent.to_string()),
        day: None,
    };
    let now = Utc::now();
    let set = |card: Card, key: &str, text: &str| {
        card.with_key(key, &Value::String(text.to_string()))
            .map_err(|e| anyhow!("{id}: {e}"))
    };
    let (card, to_path) = match outcome {
        Outcome::Done {
            result,
            review,
            to_review,
        } => {
            let card = set(card, "result", result)?;
            if *to_review {
                let mut meta = card.spec.pas.clone();
                meta.history.push(HistoryEntry {
                    at: now,
                    from: from.label(),
                    to: "review".into(),
                    by: Some(agent.to_string()),
                    reason: None,
                });
                let mut card = card.with_meta(&meta);
                if let Some((branch, base)) = review {
                    card = with_pas_keys(&card, &[("branch", branch), ("base", base)])?;
                }
                (card, ws.work().join("review").join(format!("{id}.yaml")))
            } else {
                let to = Place::of(State::Done);
                let meta = transition_meta(&card.spec.pas, &from, &to, agent, None, now);
                (card.with_meta(&meta), ws.card_path(id, &to))
            }
        }
        Outcome::Failed { error } => {
            let card = set(card, "error", error)?;
            let to = Place::of(State::Failed);
            let meta = transition_meta(&card.spec.pas, &from, &to, agent, None, now);
            (card.with_meta(&meta), ws.card_path(id, &to))
        }
        Outcome::TakeBack { reason } => {
            let (to, attempts) = take_back_target(&card, default_max_attempts);
            let mut meta =
                transition_meta(&card.spec.pas, &from, &to, "pas", Some(reason.clone()), now);
            meta.attempts = attempts;
            let mut card = card.with_meta(&meta);
            if to.state == State::Failed {
                card = set(card, "error", reason)?;
            }
            (card, ws.card_path(id, &to))
        }
    };
    std::fs::create_dir_all(ws.staging())?;
    let mut spares = fsops::Spares::open(&ws.staging());
    match fsops::move_card(&from_path, &to_path, card.text(), &mut spares, false)? {
        Moved::Done(_) => Ok(Some(to_path)),
        Moved::Gone => Ok(None),
        Moved::Blocked(staged) => {
            let _ = fsops::land(&staged, &from_path);
            Err(anyhow!(
                "cannot move {id}: {} already exists",
                crate::workspace::rel(ws, &to_path)
            ))
        }
    }
}

/// The card with `keys` set inside its `pas:` block (kept by a reader that knows them,
/// ignored by one that does not).
fn with_pas_keys(card: &Card, keys: &[(&str, &String)]) -> Result<Card> {
    let mut pas = serde_yaml::to_value(&card.spec.pas)?;
    if let Value::Mapping(m) = &mut pas {
        for (k, v) in keys {
            m.insert(Value::String(k.to_string()), Value::String(v.to_string()));
        }
    }
    card.with_key("pas", &pas)
        .map_err(|e| anyhow!("{}: {e}", card.id))
}
