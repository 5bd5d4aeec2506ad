//! The board as the dashboard shows it, computed from the same files and database the CLI
//! reads (no daemon internals), and cached.
//!
//! A view is computed by one task at a time and shared by every request that arrives
//! meanwhile; it is reused while no event has been published since (the hub's seq is
//! unchanged) and is younger than [`IDLE_MAX_AGE`], or while it is younger than
//! [`BUSY_MAX_AGE`] even though events arrived. A WebSocket client gets the cached view plus
//! the events the hub's ring holds after the view's seq, so a stale view is never wrong,
//! only replayed further.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use serde_json::{json, Value};

use crate::board::Entry;
use crate::card::State;
use crate::events::Hub;
use crate::snapshot::{self, Snapshot};
use crate::views::{agents, costs, job, status, tree};
use crate::workspace::Workspace;

use super::WebError;

/// A view with no event since is reused for this long (liveness ages and context gauges
/// move without events).
pub const IDLE_MAX_AGE: Duration = Duration::from_secs(2);
/// A view is reused for this long even while events arrive (they are replayed on top).
pub const BUSY_MAX_AGE: Duration = Duration::from_millis(250);
/// Done cards sent in a snapshot, newest first; the rest are paged from `/api/jobs`.
pub const DONE_PAGE: usize = 200;

/// The board, computed once and shared.
pub struct View {
    /// The hub's seq read before the files were: every later event may or may not show yet.
    pub seq: u64,
    pub made: Instant,
    /// Set for a board of the past (`?at=REV`).
    pub at: Option<String>,
    /// `pas status --json` with cost totals.
    pub status: Value,
    /// Every card, compact, in board order (state, priority, age; done newest first).
    pub cards: Vec<Value>,
    pub index: HashMap<String, usize>,
    /// Every agent as `pas agents --json` shows it, with capabilities and gauge thresholds.
    pub agents: Vec<Value>,
    /// `pas costs --json` (empty sums when the database does not exist yet).
    pub costs: Value,
    /// The `data` of a WebSocket snapshot, serialised once.
    pub snapshot: String,
}

/// One compact card: what the kanban shows (see `views::job::card`).
pub(crate) fn card_json(id: &str, e: &Entry, waiting: Option<&String>) -> Value {
    crate::views::value(&job::card(id, e, waiting))
}

impl View {
    /// Reads the live board, liveness and receipts.
    pub fn compute(ws: &Workspace, seq: u64) -> Result<View> {
        let snap = snapshot::load(ws)?;
        let costs = costs::tally_of(ws)
            .map(|c| c.json())
            .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
        let mut v = View::build(ws, &snap, costs, seq, None)?;
        v.status["cost_usd"] = crate::views::value(&costs::totals(ws));
        Ok(v)
    }

    /// Reads the board as it stood at a git revision (no liveness, no costs).
    pub fn compute_at(ws: &Workspace, rev: &str) -> Result<View> {
        let git = crate::store::git::GitStore::open(&ws.root)?
            .with_context(|| format!("{} is not in a git repository", ws.root.display()))?;
        let oid = git.resolve_rev(rev, Utc::now())?;
        let files = git.files_at(oid, std::path::Path::new("work"))?;
        let snap = snapshot::load_at(ws, files, snapshot::Depth::Full)?;
        View::build(ws, &snap, json!({}), 0, Some(rev.to_string()))
    }

    fn build(
        ws: &Workspace,
        snap: &Snapshot,
        costs: Value,
        seq: u64,
        at: Option<String>,
    ) -> Result<View> {
        let cfg = ws.config()?;
        let now = Utc::now();
        let waiting = status::waiting_reasons(&snap.board, now);
        let mut status = crate::views::value(&status::build(snap, &waiting, now));
        let why: HashMap<&String, &String> = waiting.iter().map(|(i, r)| (i, r)).collect();

        // Archived cards are known here by id alone; the Done column pages into them
        // through `/api/jobs?state=done`, which reads only the page it shows.
        let mut entries: Vec<(&String, &Entry)> = (snap.board.cards.iter())
            .filter(|(_, e)| e.place.state != State::Archived)
            .collect();
        let updated = |e: &Entry| e.card.spec.pas.history.last().map(|h| h.at);
        entries.sort_by(|a, b| {
            let (ea, eb) = (a.1, b.1);
            ea.place.state.cmp(&eb.place.state).then_with(|| {
                if ea.place.state == State::Done || ea.place.state == State::Failed {
                    updated(eb).cmp(&updated(ea)).then(b.0.cmp(a.0))
                } else {
                    (ea.card.spec.priority, ea.created, a.0).cmp(&(
                        eb.card.spec.priority,
                        eb.created,
                        b.0,
                    ))
                }
            })
        });
        let cards: Vec<Value> = entries
            .iter()
            .map(|(id, e)| card_json(id, e, why.get(id).copied()))
            .collect();
        let index = cards
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c["id"].as_str().map(|id| (id.to_string(), i)))
            .collect();

        let agents = agents::values(&agents::cards(&snap.board, &cfg, now));
        status["agents"] = json!(agents);

        // A snapshot carries every open card and the newest done ones.
        let mut shown: Vec<&Value> = Vec::new();
        let mut done = 0;
        for c in &cards {
            if c["state"] == "done" {
                done += 1;
                if done > DONE_PAGE {
                    continue;
                }
            }
            shown.push(c);
        }
        let archived = status["jobs"]["archived"].as_u64().unwrap_or(0) as usize;
        let snapshot = json!({
            "status": status,
            "cards": shown,
            "done_total": done + archived,
            "agents": agents,
            "costs": {
                "today": costs["today"],
                "month": costs["month"],
                "total": costs["total"],
                "budgets": costs["budgets"],
            },
            "at": at,
        })
        .to_string();
        Ok(View {
            seq,
            made: Instant::now(),
            at,
            status,
            cards,
            index,
            agents,
            costs,
            snapshot,
        })
    }

    /// The agent tree from `parent` links: each node with its own and its subtree's cost,
    /// tokens and job counts (see `views::tree`).
    pub fn tree(&self) -> Value {
        crate::views::value(&tree::rolled_up(&self.agents, &self.cards, &self.costs))
    }

    /// One card by id, compact.
    pub fn card(&self, id: &str) -> Option<&Value> {
        self.index.get(id).map(|i| &self.cards[*i])
    }
}

/// The cache of the live view and of the last past one.
pub struct Cache {
    ws: Workspace,
    hub: Arc<Hub>,
    /// The newest live view; a std mutex, never held across an await.
    live: Mutex<Option<Arc<View>>>,
    /// The last board of the past asked for, by revision.
    past: Mutex<Option<Arc<View>>>,
    /// One computation at a time; the others wait for it and share its result.
    computing: tokio::sync::Mutex<()>,
}

impl Cache {
    pub fn new(ws: Workspace, hub: Arc<Hub>) -> Cache {
        Cache {
            ws,
            hub,
            live: Mutex::new(None),
            past: Mutex::new(None),
            computing: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self) -> Option<Arc<View>> {
        let cur = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let age = cur.made.elapsed();
        let quiet = cur.seq == self.hub.seq();
        (age < BUSY_MAX_AGE || (quiet && age < IDLE_MAX_AGE)).then_some(cur)
    }

    /// The live view, computed at most once at a time.
    pub async fn live(&self) -> Result<Arc<View>, WebError> {
        if let Some(v) = self.fresh() {
            return Ok(v);
        }
        let _one = self.computing.lock().await;
        if let Some(v) = self.fresh() {
            return Ok(v);
        }
        let seq = self.hub.seq();
        let ws = self.ws.clone();
        let v = Arc::new(super::blocking(move || View::compute(&ws, seq)).await?);
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(v.clone());
        Ok(v)
    }

    /// A new live view whatever the cache holds.
    pub async fn recompute(&self) -> Result<Arc<View>, WebError> {
        let _one = self.computing.lock().await;
        let seq = self.hub.seq();
        let ws = self.ws.clone();
        let v = Arc::new(super::blocking(move || View::compute(&ws, seq)).await?);
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(v.clone());
        Ok(v)
    }

    /// The board at a revision (the last one asked for is kept).
    pub async fn at(&self, rev: &str) -> Result<Arc<View>, WebError> {
        if rev.is_empty() || rev.len() > 200 {
            return Err(WebError::bad_request(format!("bad revision {rev:?}")));
        }
        let cached = self.past.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(v) = cached.filter(|v| v.at.as_deref() == Some(rev)) {
            return Ok(v);
        }
        let ws = self.ws.clone();
        let r = rev.to_string();
        let v = Arc::new(
            super::blocking(move || View::compute_at(&ws, &r))
                .await
                .map_err(|e| WebError::bad_request(e.message))?,
        );
        *self.past.lock().unwrap_or_else(|p| p.into_inner()) = Some(v.clone());
        Ok(v)
    }

    /// The live view, or the board at `at` when given.
    pub async fn view(&self, at: Option<&str>) -> Result<Arc<View>, WebError> {
        match at.filter(|a| !a.is_empty()) {
            Some(rev) => self.at(rev).await,
            None => self.live().await,
        }
    }
}
