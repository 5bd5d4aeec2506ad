//! The git worker's side of the history index: after each commit, and at start in bounded
//! steps, bring the index up to HEAD (see `hindex.rs`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use git2::Oid;
use rusqlite::Connection;

use super::{
    append, commit_info, ensure_tables, read_state, tables_present, Base, IndexState, Trees,
    CHECK_AT_START,
};
use crate::store::git::GitStore;

/// How much one catch-up step may do before the worker looks at its queue again.
const STEP_TIME: Duration = Duration::from_millis(150);
const STEP_COMMITS: usize = 5000;

/// A catch-up under way: the commits still to index, oldest first.
struct Plan {
    base: Base,
    queue: VecDeque<Oid>,
    total: usize,
    why: String,
}

/// The git worker's indexer: after each commit (and at start, in steps) it brings the
/// index up to HEAD through its own connection to the database.
pub(in crate::store::git) struct Indexer {
    path: PathBuf,
    conn: Option<Connection>,
    plan: Option<Plan>,
    /// The first plan checks the newest rows against git (a corrupt index is rebuilt).
    checked: bool,
    /// Whether HEAD may be ahead of the index with no plan made yet.
    replan: bool,
    /// After an error, the next attempt waits until then.
    pub(in crate::store::git) retry_at: Option<Instant>,
    failures: u32,
    /// A catch-up (or the start-up check) ended since the worker last asked.
    settled: bool,
}

impl Indexer {
    pub(in crate::store::git) fn new(path: PathBuf) -> Indexer {
        Indexer {
            path,
            conn: None,
            plan: None,
            checked: false,
            replan: true,
            retry_at: None,
            failures: 0,
            settled: false,
        }
    }

    /// Whether a catch-up waits for its next step (and when it may run).
    pub(in crate::store::git) fn next_step(&self) -> Option<Instant> {
        match (&self.plan, self.retry_at) {
            (_, Some(at)) => Some(at),
            (Some(_), None) => Some(Instant::now()),
            (None, None) => self.replan.then(Instant::now),
        }
    }

    /// Whether a catch-up or the start-up check ended since the last call: it read many
    /// commits and trees, and the worker lets go of what that mapped.
    pub(in crate::store::git) fn take_settled(&mut self) -> bool {
        std::mem::take(&mut self.settled)
    }

    /// One bounded step: index up to [`STEP_COMMITS`] commits or [`STEP_TIME`] worth.
    pub(in crate::store::git) fn step(&mut self, store: &GitStore) {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        self.retry_at = None;
        if let Err(e) = self.try_step(store) {
            self.failures = self.failures.saturating_add(1);
            let wait = Duration::from_secs(2u64.saturating_pow(self.failures.min(5)));
            if self.failures == 1 || self.failures % 10 == 0 {
                tracing::warn!(error = %e, retry_s = wait.as_secs(),
                    "cannot update the history index (pas log reads git meanwhile)");
            }
            self.retry_at = Some(Instant::now() + wait);
            self.conn = None;
            self.plan = None;
            self.replan = true;
        }
    }

    fn try_step(&mut self, store: &GitStore) -> anyhow::Result<()> {
        if self.conn.is_none() {
            let conn = crate::store::db::open(&self.path)?;
            // The worker must not sit long behind another writer (`pas reindex`): a busy
            // database fails the step, and a later one retries.
            conn.busy_timeout(Duration::from_millis(500))?;
            if !tables_present(&conn)? {
                // Some table was deleted: what is left cannot be trusted; start afresh.
                ensure_tables(&conn)?;
                conn.execute("DELETE FROM history_state", [])?;
            }
            self.conn = Some(conn);
        }
        if self.plan.is_none() {
            self.settled |= !self.checked;
            self.plan = self.make_plan(store)?;
            self.checked = true;
            self.replan = false;
            let Some(plan) = &self.plan else {
                return Ok(());
            };
            if plan.total > 1 {
                tracing::info!(commits = plan.total, why = %plan.why,
                    "history index: catching up with HEAD");
            }
        }
        let (Some(conn), Some(plan)) = (self.conn.as_mut(), self.plan.as_mut()) else {
            return Ok(());
        };
        let started = Instant::now();
        let mut batch = Vec::new();
        let mut last = None;
        let mut walked = 0u64;
        let mut trees = Trees::default();
        while let Some(&oid) = plan.queue.front() {
            if walked as usize >= STEP_COMMITS || started.elapsed() >= STEP_TIME {
                break;
            }
            batch.extend(store.index_commit_with(oid, None, &mut trees)?);
            plan.queue.pop_front();
            last = Some(oid);
            walked += 1;
        }
        let Some(head) = last else {
            self.plan = None;
            self.replan = true;
            return Ok(());
        };
        if !append(conn, plan.base, &batch, head, walked)? {
            tracing::debug!("history index moved under the worker (pas reindex?); planning again");
            self.plan = None;
            self.replan = true;
            return Ok(());
        }
        let before = match plan.base {
            Base::After(Some(s)) => s.commits,
            _ => 0,
        };
        plan.base = Base::After(Some(IndexState {
            head,
            commits: before + walked,
        }));
        self.failures = 0;
        if plan.total > 1 {
            let done = plan.total - plan.queue.len();
            tracing::info!(
                done,
                of = plan.total,
                card_commits = batch.len(),
                step_ms = started.elapsed().as_millis() as u64,
                "history index: step"
            );
        }
        if plan.queue.is_empty() {
            // HEAD may have moved on meanwhile (commits made during the catch-up).
            self.settled |= plan.total > 1;
            self.plan = None;
            self.replan = true;
        }
        Ok(())
    }

    /// What the index lacks to reach HEAD; `None` when it reaches it.
    fn make_plan(&mut self, store: &GitStore) -> anyhow::Result<Option<Plan>> {
        let Some(conn) = &self.conn else {
            return Ok(None);
        };
        let Some(head) = store.head_oid()? else {
            return Ok(None);
        };
        let state = match read_state(conn) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "history index unreadable; rebuilding it");
                None
            }
        };
        let reset = |why: String| -> anyhow::Result<Option<Plan>> {
            let queue: VecDeque<Oid> = store.commits_between(None, head)?.into();
            Ok(Some(Plan {
                base: Base::Reset,
                total: queue.len(),
                queue,
                why,
            }))
        };
        let Some(state) = state else {
            return reset("the index is empty".into());
        };
        if !self.checked {
            if let Err(why) = self.check_newest(store, conn) {
                return reset(why);
            }
        }
        if state.head == head {
            return Ok(None);
        }
        // The usual case, right after the worker's own commit: one commit on top.
        let parents: Vec<Oid> = store.repo.find_commit(head)?.parent_ids().collect();
        if parents == [state.head] {
            return Ok(Some(Plan {
                base: Base::After(Some(state)),
                total: 1,
                queue: VecDeque::from([head]),
                why: "a new commit".into(),
            }));
        }
        if !store.reaches(head, state.head) {
            return reset(format!(
                "the index ends at {}, which is not on HEAD's history",
                state.head
            ));
        }
        let queue: VecDeque<Oid> = store.commits_between(Some(state.head), head)?.into();
        Ok(Some(Plan {
            base: Base::After(Some(state)),
            total: queue.len(),
            queue,
            why: "commits made while pas was not indexing".into(),
        }))
    }

    /// The newest rows must check out against git, or the index is rebuilt.
    fn check_newest(&self, store: &GitStore, conn: &Connection) -> Result<(), String> {
        type Rows = (Vec<(i64, String, i64)>, Vec<(String, String)>);
        let read = || -> rusqlite::Result<Rows> {
            let mut stmt = conn
                .prepare("SELECT seq, oid, time FROM history_commits ORDER BY seq DESC LIMIT ?1")?;
            let commits = stmt
                .query_map([CHECK_AT_START as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let from = commits.last().map_or(i64::MAX, |c| c.0);
            // One scan of the cards' rows (they are keyed by card, not by seq).
            let mut stmt =
                conn.prepare("SELECT lines, paths FROM history_cards WHERE seq >= ?1")?;
            let cards = stmt
                .query_map([from], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((commits, cards))
        };
        let (commits, cards) = read().map_err(|e| format!("the index is unreadable: {e}"))?;
        let parses = |t: &str| serde_json::from_str::<Vec<String>>(t).is_ok();
        if let Some((lines, paths)) = cards.iter().find(|(l, p)| !parses(l) || !parses(p)) {
            return Err(format!(
                "the index holds a corrupt row ({lines:.40} / {paths:.40})"
            ));
        }
        for (_, oid, time) in commits {
            let info = commit_info(&oid, time, "", Vec::new(), Vec::new());
            store.check_row(&info)?;
        }
        Ok(())
    }
}
