//! Cards as the readers show them: a row of `pas jobs`, the compact card of the kanban,
//! one card in detail (`pas show`, MCP `show`, the dashboard's job page: fields, place,
//! history, commits, receipts, trace and review diff), the archive paged, and where a
//! card is.

use std::path::PathBuf;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::stamp;
use crate::board::{Entry, Place};
use crate::card::{HistoryEntry, Priority, State};
use crate::review::Diff;
use crate::workspace::{self, Kind, Workspace};

/// A card as `pas jobs --json` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub id: String,
    pub state: State,
    pub agent: Option<String>,
    pub title: String,
    pub kind: Option<String>,
    pub priority: Priority,
    pub requires: Vec<String>,
    pub assignee: Option<String>,
    pub depends_on: Vec<String>,
    pub attempts: u32,
    pub waiting_for: Option<String>,
    pub created: DateTime<Utc>,
}

/// The row of card `id`.
pub fn row(id: &str, e: &Entry) -> JobRow {
    let s = &e.card.spec;
    JobRow {
        id: id.to_string(),
        state: e.place.state,
        agent: e.place.agent.clone(),
        title: s.title.clone(),
        kind: s.kind.clone(),
        priority: s.priority,
        requires: s.requires.clone(),
        assignee: s.assignee.clone(),
        depends_on: s.depends_on.clone(),
        attempts: s.pas.attempts,
        waiting_for: s.pas.waiting_for.clone(),
        created: e.created,
    }
}

/// One compact card: what the kanban shows. An archived card is shown in the column it
/// finished in (`done` or `failed`), with its day folder as `archived`.
#[derive(Debug, Clone, Serialize)]
pub struct JobCard {
    pub id: String,
    pub title: String,
    pub state: &'static str,
    pub archived: Option<String>,
    /// Its agent, or the last one that held it.
    pub agent: Option<String>,
    pub priority: &'static str,
    pub requires: Vec<String>,
    pub attempts: u32,
    pub waiting: Option<String>,
    pub created: String,
    pub updated: String,
    pub parent: Option<String>,
    pub kind: Option<String>,
    pub assignee: Option<String>,
}

/// The compact card of `id`; `waiting` is why it waits, when the rules say.
pub fn card(id: &str, e: &Entry, waiting: Option<&String>) -> JobCard {
    let s = &e.card.spec;
    let updated = s.pas.history.last().map(|h| h.at).unwrap_or(e.created);
    let state = match e.place.state {
        State::Archived if e.succeeded() => "done",
        State::Archived => "failed",
        st => st.name(),
    };
    JobCard {
        id: id.to_string(),
        title: s.title.clone(),
        state,
        archived: e.place.day.clone(),
        agent: e.place.agent.clone().or_else(|| worker_of(e)),
        priority: s.priority.as_str(),
        requires: s.requires.clone(),
        attempts: s.pas.attempts,
        waiting: waiting.cloned().or_else(|| s.pas.waiting_for.clone()),
        created: stamp(e.created),
        updated: stamp(updated),
        parent: s.parent.clone(),
        kind: s.kind.clone(),
        assignee: s.assignee.clone(),
    }
}

/// Who last held a card: the agent of its last move into `assigned/`.
fn worker_of(e: &Entry) -> Option<String> {
    e.card
        .spec
        .pas
        .history
        .iter()
        .rev()
        .find_map(|h| h.to.strip_prefix("assigned/").map(str::to_string))
}

/// Which part of a long list to show.
#[derive(Debug, Clone, Copy, Default)]
pub struct Page {
    pub offset: usize,
    pub limit: Option<usize>,
}

/// One page of the archive, newest day first (ids descending within a day): only the day
/// folders the page reaches are listed, and only the page's cards are read.
pub fn archived_page(ws: &Workspace, page: Page) -> Result<Vec<(String, Entry)>> {
    let want = page.offset.saturating_add(page.limit.unwrap_or(usize::MAX));
    let mut found: Vec<(String, PathBuf, Place)> = Vec::new();
    for day in ws.archive_days() {
        if found.len() >= want {
            break;
        }
        let dir = ws.state_dir(State::Archived).join(&day);
        let mut here: Vec<(String, PathBuf, Place)> = ws
            .scan_dir(&dir)
            .into_iter()
            .filter_map(|(p, k)| match k {
                Kind::Card { id, place } => Some((id, p, place)),
                _ => None,
            })
            .collect();
        // Newest first within a day too, as far as ids tell (pas submit's ULIDs do).
        here.sort_by(|a, b| b.0.cmp(&a.0));
        found.extend(here);
    }
    let page_rows = found.into_iter().skip(page.offset).take(want - page.offset);
    let mut out = Vec::new();
    for (id, path, place) in page_rows {
        match workspace::read_card(&path, &id) {
            Ok(card) => {
                let created = card
                    .spec
                    .pas
                    .history
                    .first()
                    .map_or(DateTime::UNIX_EPOCH, |h| h.at);
                out.push((
                    id,
                    Entry {
                        card,
                        place,
                        created,
                    },
                ));
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "archived card unreadable")
            }
        }
    }
    Ok(out)
}

/// Where card `id` is, looking only where it can be (the live folders, then the archive
/// day by day, newest first): `pas show` reads one file, not the whole tree.
pub fn locate(ws: &Workspace, id: &str) -> Option<(PathBuf, Place)> {
    if !crate::card::valid_id(id) {
        return None;
    }
    ws.card_candidates(id)
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .find_map(|p| match ws.classify(&p) {
            Kind::Card { place, .. } => Some((p, place)),
            _ => None,
        })
}

/// One card as `pas show` presents it: where it is, the card, and what its work changed.
pub struct Shown {
    /// Its file, relative to the root.
    pub path: String,
    pub entry: Entry,
    /// `pas.base..pas.branch`, for a card with a branch.
    pub diff: Option<Diff>,
}

/// `pas show --json` (MCP `show`): the card's row, its file, the card as written, its
/// history, and its diff when it has one.
#[derive(Debug, Clone, Serialize)]
pub struct ShownDoc {
    #[serde(flatten)]
    pub row: JobRow,
    pub path: String,
    pub card: Value,
    pub history: Vec<HistoryEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<Diff>,
}

/// Card `id` found where it can be and read, or an error saying where it was looked for.
pub fn shown(ws: &Workspace, id: &str) -> Result<Shown> {
    let Some((path, place)) = locate(ws, id) else {
        bail!("no card {id} in work/ (inbox, assigned, review, done, failed, archive)");
    };
    let card = workspace::read_card(&path, id)
        .map_err(|e| anyhow::anyhow!("{}: {e}", workspace::rel(ws, &path)))?;
    let created = card.spec.pas.history.first().map_or_else(
        || workspace::mtime(&path).unwrap_or(DateTime::UNIX_EPOCH),
        |h| h.at,
    );
    let diff = crate::review::card_diff(&ws.root, &card.spec.pas);
    Ok(Shown {
        path: workspace::rel(ws, &path),
        entry: Entry {
            card,
            place,
            created,
        },
        diff,
    })
}

impl Shown {
    /// The `--json` document.
    pub fn doc(&self) -> ShownDoc {
        let e = &self.entry;
        let yaml: serde_yaml::Value = serde_yaml::from_str(e.card.text()).unwrap_or_default();
        ShownDoc {
            row: row(&e.card.id, e),
            path: self.path.clone(),
            card: serde_json::to_value(yaml).unwrap_or(Value::Null),
            history: e.card.spec.pas.history.clone(),
            diff: self.diff.clone(),
        }
    }
}

/// The compact card of an archived card, read from its one file.
pub fn archived_card(ws: &Workspace, id: &str) -> Option<JobCard> {
    let (path, place) = locate(ws, id)?;
    if place.state != State::Archived {
        return None;
    }
    let card = workspace::read_card(&path, id).ok()?;
    let created = card.spec.pas.history.first()?.at;
    let e = Entry {
        card,
        place,
        created,
    };
    Some(self::card(id, &e, None))
}

/// What the job page reads of a card beside the board: its text, its commits (empty
/// without git) and its receipts.
pub struct Records {
    pub text: Option<String>,
    pub commits: Value,
    pub receipts: Vec<Receipt>,
}

/// The card's text, its commits (from the history index; one pass over git when it cannot
/// be trusted) and its receipts (every attempt, up to the last 1,000).
pub fn records(ws: &Workspace, id: &str) -> Records {
    let text = ws
        .card_candidates(id)
        .into_iter()
        .find_map(|p| crate::intake::read_text(&p, crate::intake::FileKind::Card).ok());
    let commits = crate::store::git::GitStore::open(&ws.root)
        .ok()
        .flatten()
        .and_then(|g| g.card_history(Some(&ws.db_path()), id).ok())
        .map(|(commits, _)| commits)
        .and_then(|c| serde_json::to_value(c).ok())
        .unwrap_or_else(|| json!([]));
    let receipts = receipts(ws, Some(id), 1_000);
    Records {
        text,
        commits,
        receipts,
    }
}

/// A receipt as the job page and `/api/costs` list it.
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    pub id: String,
    pub request_id: String,
    pub attempt: u32,
    pub ts: String,
    pub job: Option<String>,
    pub agent: Option<String>,
    pub provider: String,
    pub model: String,
    pub tokens: Tokens,
    /// Null: the model has no price (unknown, not free).
    pub cost_usd: Option<String>,
    pub latency_ms: f64,
    pub status: String,
    pub error: Option<String>,
}

/// A receipt's tokens.
#[derive(Debug, Clone, Serialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
    pub reasoning: u64,
}

/// The last `limit` receipts (of `job` when given), newest last; none without a database.
pub fn receipts(ws: &Workspace, job: Option<&str>, limit: u32) -> Vec<Receipt> {
    let rows = crate::store::db::open_read_only(&ws.db_path())
        .ok()
        .flatten()
        .and_then(|c| crate::store::receipts::latest(&c, job, limit).ok())
        .unwrap_or_default();
    rows.into_iter()
        .map(|r| Receipt {
            id: r.id,
            request_id: r.request_id,
            attempt: r.attempt,
            ts: stamp(r.ts),
            job: r.job_id,
            agent: r.agent,
            provider: r.provider,
            model: r.model,
            tokens: Tokens {
                input: r.usage.input,
                output: r.usage.output,
                cached: r.usage.cached,
                reasoning: r.usage.reasoning,
            },
            cost_usd: r.cost_usd.map(|c| c.normalize().to_string()),
            latency_ms: r.latency_ms,
            status: r.status,
            error: r.error,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::test_support::workspace;

    #[test]
    fn a_card_is_found_shown_listed_and_carded_alike() {
        let (_d, ws) = workspace();
        let day = ws.state_dir(State::Archived).join("2026/12/07");
        std::fs::create_dir_all(&day).unwrap();
        std::fs::write(
            ws.state_dir(State::Inbox).join("J-1.yaml"),
            "title: one\nparent: J-0\n",
        )
        .unwrap();
        std::fs::write(day.join("J-2.yaml"), "title: two\n").unwrap();
        std::fs::write(day.join("J-3.yaml"), "title: three\n").unwrap();

        let s = shown(&ws, "J-1").unwrap();
        assert_eq!(s.path, "work/inbox/J-1.yaml");
        let doc = crate::views::value(&s.doc());
        assert_eq!(doc["id"], "J-1");
        assert_eq!(doc["state"], "inbox");
        assert_eq!(doc["card"]["title"], "one");
        assert!(doc.get("diff").is_none(), "no branch, no diff: {doc}");
        let c = crate::views::value(&card("J-1", &s.entry, None));
        assert_eq!(c["parent"], "J-0");
        assert_eq!(c["priority"], "medium");

        let err = shown(&ws, "J-9").err().unwrap().to_string();
        assert!(err.contains("no card J-9"), "{err}");

        // Newest id first within a day; a page reads only what it shows.
        let page = archived_page(
            &ws,
            Page {
                offset: 1,
                limit: Some(5),
            },
        )
        .unwrap();
        let ids: Vec<&str> = page.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["J-2"]);
        assert_eq!(
            locate(&ws, "J-3").unwrap().1.day.as_deref(),
            Some("2026/12/07")
        );
        assert!(archived_card(&ws, "J-1").is_none(), "not archived");
        let r = records(&ws, "J-1");
        assert_eq!(r.text.as_deref(), Some("title: one\nparent: J-0\n"));
        assert!(r.receipts.is_empty());
    }
}
