//! The board in numbers (`pas status`, `/api/status`, MCP `status`): cards per state,
//! the agents, why inbox cards wait, unreadable files, and managed capacity in use.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::agents::{self, AgentRow};
use super::costs::Totals;
use crate::board::Board;
use crate::card::State;
use crate::snapshot::{self, Snapshot};
use crate::store::git::GitStore;
use crate::workspace::Workspace;

/// Cards per state, and files refused into `work/rejected/`.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub inbox: usize,
    pub assigned: usize,
    pub review: usize,
    pub done: usize,
    pub failed: usize,
    pub archived: usize,
    pub rejected: usize,
}

/// An inbox card and why it waits.
#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    pub id: String,
    pub reason: String,
}

/// A file that could not be read, relative to the root.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub path: String,
    pub problem: String,
}

/// A managed resource: its capacity and what assigned cards hold.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    pub total: f64,
    pub used: f64,
}

/// The board: the SPEC's `pas status --json` shape (and a little more).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub jobs: Counts,
    pub agents: Vec<AgentRow>,
    pub waiting: Vec<Waiting>,
    pub problems: Vec<Problem>,
    /// Zero here; the live readers fill it from the receipts ([`super::costs::totals`]).
    pub cost_usd: Totals,
    pub capacity: BTreeMap<&'static str, Capacity>,
}

/// The board of `snap` as of `now`, with `waiting` from [`waiting_reasons`].
pub fn build(snap: &Snapshot, waiting: &[(String, String)], now: DateTime<Utc>) -> Status {
    let counts = snap.board.counts();
    Status {
        jobs: Counts {
            inbox: counts[&State::Inbox],
            assigned: counts[&State::Assigned],
            review: counts[&State::Review],
            done: counts[&State::Done],
            failed: counts[&State::Failed],
            archived: counts[&State::Archived],
            rejected: snap.rejected,
        },
        agents: agents::rows(&snap.board, now, agents::DEFAULT_INTERVAL_S),
        waiting: (waiting.iter())
            .map(|(id, r)| Waiting {
                id: id.clone(),
                reason: r.clone(),
            })
            .collect(),
        problems: (snap.problems.iter())
            .map(|(p, r)| Problem {
                path: p.clone(),
                problem: r.clone(),
            })
            .collect(),
        cost_usd: Totals::default(),
        capacity: capacity(&snap.board),
    }
}

/// Each managed resource (those with a capacity in pas.yaml): its total and what assigned
/// cards hold.
pub fn capacity(board: &Board) -> BTreeMap<&'static str, Capacity> {
    let cap = &board.defaults.capacity;
    let used = board.resources_used(&Default::default());
    let rows = [
        ("cpu", cap.cpu, used.cpu),
        ("mem_mb", cap.mem_mb.map(|c| c as f64), used.mem_mb as f64),
        ("gpu", cap.gpu.map(|c| c as f64), used.gpu as f64),
        (
            "gpu_mem_mb",
            cap.gpu_mem_mb.map(|c| c as f64),
            used.gpu_mem_mb as f64,
        ),
    ];
    (rows.into_iter())
        .filter_map(|(name, total, used)| total.map(|total| (name, Capacity { total, used })))
        .collect()
}

/// Why each inbox card waits, from the same rules the daemon runs. A card the rules
/// would place now is shown as ready for that agent (the daemon has not taken it yet).
pub fn waiting_reasons(board: &Board, now: DateTime<Utc>) -> Vec<(String, String)> {
    let plan = board.plan(now);
    let mut out: Vec<(String, String)> = plan.waiting;
    out.extend(
        plan.fail
            .into_iter()
            .map(|(id, reason)| (id, format!("will fail: {reason}"))),
    );
    out.extend(
        plan.assign
            .into_iter()
            .map(|(id, agent)| (id, format!("ready for {agent} (is pas serve running?)"))),
    );
    let key = |id: &str| {
        board
            .cards
            .get(id)
            .map(|e| (e.card.spec.priority, e.created))
    };
    out.sort_by(|a, b| key(&a.0).cmp(&key(&b.0)).then(a.0.cmp(&b.0)));
    out
}

/// The board now, or as it stood at a git revision or a time ("2h ago"), read only as
/// deep as counts and waiting reasons need.
pub fn load(ws: &Workspace, at: Option<&str>) -> Result<Snapshot> {
    match at {
        None => snapshot::load_with(ws, snapshot::Depth::Board),
        Some(rev) => {
            let git = GitStore::open(&ws.root)?
                .with_context(|| format!("{} is not in a git repository", ws.root.display()))?;
            let oid = git.resolve_rev(rev, Utc::now())?;
            let files = git.files_at(oid, Path::new("work"))?;
            snapshot::load_at(ws, files, snapshot::Depth::Board)
        }
    }
}

/// The repository's size and growth (`null` without git): `store::git::upkeep::report`.
pub fn repo(ws: &Workspace) -> Value {
    match GitStore::open(&ws.root) {
        Ok(Some(git)) => {
            crate::store::git::upkeep::report(git.git_dir(), &ws.db_path(), Utc::now())
        }
        _ => Value::Null,
    }
}

/// The whole `pas status --json` document (MCP's `status` too): the board with the root,
/// what was spent (live boards only), the daemon's pid when one runs, the repository,
/// and the revision asked for.
pub fn document(ws: &Workspace, at: Option<&str>) -> Result<Value> {
    let snap = load(ws, at)?;
    let now = Utc::now();
    let waiting = waiting_reasons(&snap.board, now);
    let mut v = super::value(&build(&snap, &waiting, now));
    v["root"] = json!(ws.root.display().to_string());
    if at.is_none() {
        v["cost_usd"] = super::value(&super::costs::totals(ws));
    }
    v["daemon"] = json!(crate::workspace::lock::holder(ws).map(|p| json!({"pid": p})));
    v["repo"] = repo(ws);
    if let Some(rev) = at {
        v["at"] = json!(rev);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::test_support::workspace;

    #[test]
    fn counts_waiting_and_problems_of_a_small_board() {
        let (_d, ws) = workspace();
        let inbox = ws.state_dir(State::Inbox);
        std::fs::write(
            inbox.join("J-1.yaml"),
            "title: one\nrequires: [nobody-has-this]\n",
        )
        .unwrap();
        std::fs::write(inbox.join("J-2.yaml"), "title: [not, a, title\n").unwrap();
        std::fs::write(ws.state_dir(State::Done).join("J-3.yaml"), "title: three\n").unwrap();
        let v = document(&ws, None).unwrap();
        assert_eq!(v["jobs"]["inbox"], 1, "{v}");
        assert_eq!(v["jobs"]["done"], 1, "{v}");
        assert_eq!(v["waiting"][0]["id"], "J-1");
        assert!(v["waiting"][0]["reason"].is_string());
        assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["problems"][0]["path"], "work/inbox/J-2.yaml");
        assert_eq!(
            v["cost_usd"],
            json!({"today": "0", "month": "0", "total": "0"})
        );
        assert_eq!(v["daemon"], Value::Null);
        assert_eq!(v["capacity"], json!({}));
        assert_eq!(v["root"], ws.root.display().to_string());
    }
}
