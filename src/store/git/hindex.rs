//! The history index: which commits touched which card, kept in the telemetry database so
//! `pas log ID` and the dashboard's job page read a card's history without walking the log.
//!
//! The index is built by *one pass* over git: one revwalk of HEAD, each commit's `work/`
//! tree diffed against its first parent's (a tree diff that skips every folder whose tree
//! id is unchanged, so a commit costs what it changed, not the size of the board), each
//! changed path `work/<folder>/<id>.yaml` (or `work/assigned/<agent>/<id>.yaml`, or under
//! `work/archive/`) filed under its card. A card's entry is what [`GitStore::history_of`]'s
//! walk reports for it: the message lines naming the card (or the subject) and its paths.
//!
//! Rows are appended oldest first with a rising `seq`, together with `history_state.head`:
//! the commit up to which the index is complete. Readers ([`GitStore::card_history`]) trust
//! the index only when that head is HEAD or an ancestor of it (then they read the commits
//! past it from git, usually none or a handful), and each row's commit exists with the time
//! recorded; anything else (no database, no table, a rewritten history, a row that does
//! not check out, a query that fails) is answered by one pass over git instead, never by a
//! walk per card. Writers (the git worker after each commit and at start, `pas reindex`)
//! append only on top of the head they read, in one transaction, so two writers cannot
//! interleave their rows; a writer that finds the head moved plans again.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use std::cmp::Ordering;

use git2::{ObjectType, Oid, Sort, Tree, TreeEntry};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::history::mentions;
use super::{chain, git, CommitInfo, GitError, GitStore};

/// The tables, as migration 7 makes them (its text is idempotent): run again when a
/// writer finds them gone.
const TABLES: &str = include_str!("../../../telemetry/migrations/007_history_index.sql");

/// How many of the newest indexed commits the daemon checks against git at start.
const CHECK_AT_START: usize = 200;

/// One commit that touched at least one card, and what it did to each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedCommit {
    /// The commit.
    pub oid: Oid,
    /// Commit time, seconds since the epoch.
    pub time: i64,
    /// Author name.
    pub author: String,
    /// The cards it touched, by id.
    pub cards: Vec<CardEntry>,
}

/// What one commit did to one card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardEntry {
    /// The card's id.
    pub job_id: String,
    /// The message lines naming the card, or the subject when none does.
    pub lines: Vec<String>,
    /// The card's paths (from the workspace root, `work/...`) the commit added, changed or
    /// removed, sorted.
    pub paths: Vec<String>,
}

impl IndexedCommit {
    /// The entry of card `id` as `pas log` shows it.
    fn info(&self, id: &str) -> Option<CommitInfo> {
        let e = self.cards.iter().find(|c| c.job_id == id)?;
        Some(commit_info(
            &self.oid.to_string(),
            self.time,
            &self.author,
            e.lines.clone(),
            e.paths.clone(),
        ))
    }
}

fn commit_info(
    oid: &str,
    time: i64,
    author: &str,
    lines: Vec<String>,
    paths: Vec<String>,
) -> CommitInfo {
    CommitInfo {
        short: oid.get(..7).unwrap_or(oid).to_string(),
        oid: oid.to_string(),
        author: author.to_string(),
        time: DateTime::from_timestamp(time, 0).unwrap_or_default(),
        lines,
        paths,
    }
}

/// The card a path under `work/` (relative to it, '/'-separated) belongs to, if any: a
/// `<id>.yaml` directly in a folder (a state folder, `rejected/`, ...), in
/// `assigned/<agent>/`, or anywhere under `archive/`.
pub fn card_of(rel: &str) -> Option<&str> {
    let (dir, file) = rel.rsplit_once('/')?;
    let id = file.strip_suffix(".yaml")?;
    let depth = dir.split('/').count();
    let placed =
        depth == 1 || (depth == 2 && dir.starts_with("assigned/")) || dir.starts_with("archive/");
    (placed && crate::card::valid_id(id)).then_some(id)
}

/// What a pass over git found: the commits that touched cards, oldest first.
#[derive(Debug, Default)]
pub struct Pass {
    /// The commit the pass reached (HEAD when it started); `None` on an unborn branch.
    pub head: Option<Oid>,
    /// Commits walked, whether they touched a card or not.
    pub walked: u64,
    /// The commits that touched a card, oldest first.
    pub commits: Vec<IndexedCommit>,
}

/// How [`GitStore::card_history`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistorySource {
    /// From the index alone (it reaches HEAD).
    Index,
    /// From the index, and this many newer commits read from git.
    IndexAndGit(usize),
    /// One pass over git; why the index was not used.
    Pass(String),
}

impl GitStore {
    /// HEAD's commit id; `None` on an unborn branch.
    pub fn head_oid(&self) -> Result<Option<Oid>, GitError> {
        let head = self.head_commit().map_err(git(|| "reading HEAD".into()))?;
        Ok(head.map(|c| c.id()))
    }

    /// The git directory (`.git`).
    pub fn git_dir(&self) -> &Path {
        self.repo.path()
    }

    /// Commits reachable from `head` but not from `since`, oldest first (parents before
    /// children; git's topological order, ties by time, as `history_of` walks them).
    fn commits_between(&self, since: Option<Oid>, head: Oid) -> Result<Vec<Oid>, git2::Error> {
        let mut walk = self.repo.revwalk()?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME | Sort::REVERSE)?;
        walk.push(head)?;
        if let Some(since) = since {
            walk.hide(since)?;
        }
        walk.collect()
    }

    /// Whether `head` is `base` or a descendant of it (`base` unknown: no).
    fn reaches(&self, head: Oid, base: Oid) -> bool {
        head == base
            || (self.repo.find_commit(base).is_ok()
                && self.repo.graph_descendant_of(head, base).unwrap_or(false))
    }

    /// What one commit did to the cards (to card `only`, when given), compared with its
    /// first parent: `None` when it touched none.
    pub fn index_commit(
        &self,
        oid: Oid,
        only: Option<&str>,
    ) -> Result<Option<IndexedCommit>, git2::Error> {
        self.index_commit_with(oid, only, &mut Trees::default())
    }

    /// [`index_commit`](Self::index_commit), keeping the trees it reads in `trees`: in a
    /// pass, a commit's parent is usually the commit before, whose trees are then read once.
    fn index_commit_with<'r>(
        &'r self,
        oid: Oid,
        only: Option<&str>,
        trees: &mut Trees<'r>,
    ) -> Result<Option<IndexedCommit>, git2::Error> {
        trees.next_commit();
        let commit = self.repo.find_commit(oid)?;
        let work_of = |tree: Oid, trees: &mut Trees<'r>| -> Result<Option<Tree<'r>>, git2::Error> {
            let root = trees.get(&self.repo, tree)?;
            match root.get_path(&self.prefix.join("work")) {
                Ok(e) if e.kind() == Some(ObjectType::Tree) => {
                    trees.get(&self.repo, e.id()).map(Some)
                }
                _ => Ok(None),
            }
        };
        let work = work_of(commit.tree_id(), trees)?;
        let parent_work = match commit.parent_ids().next() {
            Some(p) => work_of(self.repo.find_commit(p)?.tree_id(), trees)?,
            None => None,
        };
        if work.as_ref().map(|t| t.id()) == parent_work.as_ref().map(|t| t.id()) {
            return Ok(None); // work/ untouched
        }
        let mut changed = Vec::new();
        self.changed_cards(
            "",
            parent_work.as_ref(),
            work.as_ref(),
            only,
            trees,
            &mut changed,
        )?;
        let mut touched: HashMap<String, BTreeSet<String>> = HashMap::new();
        for rel in changed {
            if let Some(id) = card_of(&rel) {
                touched
                    .entry(id.to_string())
                    .or_default()
                    .insert(format!("work/{rel}"));
            }
        }
        if touched.is_empty() {
            return Ok(None);
        }
        let message = commit.message().unwrap_or_default();
        let subject = commit.summary().unwrap_or_default().to_string();
        let naming = LinesNaming::new(message, touched.len());
        let mut cards: Vec<CardEntry> = touched
            .into_iter()
            .map(|(job_id, paths)| {
                let mut lines = naming.lines(&job_id);
                if lines.is_empty() {
                    lines.push(subject.clone());
                }
                CardEntry {
                    job_id,
                    lines,
                    paths: paths.into_iter().collect(),
                }
            })
            .collect();
        cards.sort_by(|a, b| a.job_id.cmp(&b.job_id));
        let author = commit.author().name().unwrap_or_default().to_string();
        Ok(Some(IndexedCommit {
            oid,
            time: commit.time().seconds(),
            author,
            cards,
        }))
    }

    /// The card files (paths relative to `work/`) that differ between two versions of the
    /// folder `rel` under `work/` (`""`: `work/` itself): a tree diff that skips every
    /// folder whose id is unchanged and only enters folders that hold cards (any folder of
    /// `work/`, `assigned/<agent>/`, all of `archive/`). With `only`, the card's file is
    /// looked up by name in each changed folder instead of listing the folder.
    fn changed_cards<'r>(
        &'r self,
        rel: &str,
        old: Option<&Tree<'r>>,
        new: Option<&Tree<'r>>,
        only: Option<&str>,
        trees: &mut Trees<'r>,
        out: &mut Vec<String>,
    ) -> Result<(), git2::Error> {
        let depth = if rel.is_empty() {
            0
        } else {
            rel.split('/').count()
        };
        let archive = rel == "archive" || rel.starts_with("archive/");
        let holds_cards = depth == 1 || (depth == 2 && rel.starts_with("assigned/")) || archive;
        let has_card_folders = depth == 0 || rel == "assigned" || archive;
        let join = |name: &str| match rel {
            "" => name.to_string(),
            _ => format!("{rel}/{name}"),
        };
        if let (true, Some(id)) = (holds_cards, only) {
            let file = format!("{id}.yaml");
            let blob = |t: Option<&Tree<'_>>| {
                t.and_then(|t| t.get_name(&file))
                    .filter(|e| e.kind() == Some(ObjectType::Blob))
                    .map(|e| e.id())
            };
            if blob(old) != blob(new) {
                out.push(join(&file));
            }
            if !has_card_folders {
                return Ok(());
            }
        }
        let mut a = old.into_iter().flat_map(|t| t.iter()).peekable();
        let mut b = new.into_iter().flat_map(|t| t.iter()).peekable();
        loop {
            let order = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(x), Some(y)) => git_order(x, y),
            };
            let (x, y) = match order {
                Ordering::Less => (a.next(), None),
                Ordering::Greater => (None, b.next()),
                Ordering::Equal => (a.next(), b.next()),
            };
            if let (Some(x), Some(y)) = (&x, &y) {
                if x.id() == y.id() {
                    continue; // unchanged (or only its mode changed)
                }
            }
            let Some(name) = x
                .as_ref()
                .or(y.as_ref())
                .and_then(|e| std::str::from_utf8(e.name_bytes()).ok().map(str::to_string))
            else {
                continue;
            };
            let of = |e: &Option<git2::TreeEntry<'_>>, tree: bool| {
                e.as_ref()
                    .filter(|e| (e.kind() == Some(ObjectType::Tree)) == tree)
                    .filter(|e| e.kind() != Some(ObjectType::Commit))
                    .map(|e| e.id())
            };
            if holds_cards && only.is_none() && of(&x, false) != of(&y, false) {
                out.push(join(&name));
            }
            let (tx, ty) = (of(&x, true), of(&y, true));
            if has_card_folders && tx != ty {
                let tx = tx.map(|id| trees.get(&self.repo, id)).transpose()?;
                let ty = ty.map(|id| trees.get(&self.repo, id)).transpose()?;
                self.changed_cards(&join(&name), tx.as_ref(), ty.as_ref(), only, trees, out)?;
            }
        }
        Ok(())
    }

    /// One pass over HEAD's history (all cards, or card `only`), oldest first.
    pub fn one_pass(&self, only: Option<&str>) -> Result<Pass, GitError> {
        let doing = || "reading the history of work/ in one pass".to_string();
        let Some(head) = self.head_oid()? else {
            return Ok(Pass::default());
        };
        self.pass_between(None, head, only).map_err(git(doing))
    }

    fn pass_between(
        &self,
        since: Option<Oid>,
        head: Oid,
        only: Option<&str>,
    ) -> Result<Pass, git2::Error> {
        let oids = self.commits_between(since, head)?;
        let mut commits = Vec::new();
        let mut trees = Trees::default();
        for &oid in &oids {
            commits.extend(self.index_commit_with(oid, only, &mut trees)?);
        }
        Ok(Pass {
            head: Some(head),
            walked: oids.len() as u64,
            commits,
        })
    }

    /// Every commit on HEAD that touched card `id`, newest first, as [`history_of`]
    /// reports them, read from the history index in the database at `db` when it can be
    /// trusted, else from one pass over git (`db` `None`: always). Never writes the
    /// database.
    ///
    /// [`history_of`]: GitStore::history_of
    pub fn card_history(
        &self,
        db: Option<&Path>,
        id: &str,
    ) -> Result<(Vec<CommitInfo>, HistorySource), GitError> {
        let Some(head) = self.head_oid()? else {
            return Ok((Vec::new(), HistorySource::Index));
        };
        let why = match self.read_index(db, id, head) {
            Ok(found) => return Ok(found),
            Err(why) => why,
        };
        tracing::debug!(job = id, %why, "history index not used; one pass over git");
        let doing = || format!("reading the history of {id}");
        let pass = self
            .pass_between(None, head, Some(id))
            .map_err(git(doing))?;
        let mut out: Vec<CommitInfo> = pass.commits.iter().filter_map(|c| c.info(id)).collect();
        out.reverse();
        Ok((out, HistorySource::Pass(why)))
    }

    /// The card's history from the index (and the commits past its head from git), or why
    /// the index cannot be trusted.
    fn read_index(
        &self,
        db: Option<&Path>,
        id: &str,
        head: Oid,
    ) -> Result<(Vec<CommitInfo>, HistorySource), String> {
        let Some(db) = db else {
            return Err("no index asked for".into());
        };
        let conn = match crate::store::db::open_read_only(db) {
            Ok(Some(conn)) => conn,
            Ok(None) => return Err("no telemetry database".into()),
            Err(e) => return Err(chain(&e)),
        };
        let state = read_state(&conn).map_err(|e| format!("index unreadable: {e}"))?;
        let Some(state) = state else {
            return Err("the index is empty".into());
        };
        if !self.reaches(head, state.head) {
            return Err(format!(
                "the index ends at {}, which is not on HEAD's history",
                state.head
            ));
        }
        let rows = rows_for(&conn, id).map_err(|e| format!("index unreadable: {e}"))?;
        for c in &rows {
            self.check_row(c)?;
        }
        if state.head == head {
            return Ok((rows, HistorySource::Index));
        }
        let doing = || format!("reading the commits after {}", state.head);
        let newer = self
            .pass_between(Some(state.head), head, Some(id))
            .map_err(|e| chain(&git(doing)(e)))?;
        let mut out: Vec<CommitInfo> = newer.commits.iter().filter_map(|c| c.info(id)).collect();
        out.reverse();
        out.extend(rows);
        Ok((out, HistorySource::IndexAndGit(newer.walked as usize)))
    }

    /// A row is believed only when its commit exists with the time it records.
    fn check_row(&self, c: &CommitInfo) -> Result<(), String> {
        let found = Oid::from_str(&c.oid)
            .and_then(|oid| self.repo.find_commit(oid))
            .map(|commit| commit.time().seconds());
        match found {
            Ok(t) if t == c.time.timestamp() => Ok(()),
            _ => Err(format!("index row {} does not match git", c.oid)),
        }
    }
}

/// The trees read for the commit being indexed and for the one before. libgit2 does not
/// cache big trees (a `done/` of thousands of cards), and in a pass each commit's trees are
/// its child's parent trees: kept here, each is read once.
#[derive(Default)]
struct Trees<'r> {
    prev: HashMap<Oid, Tree<'r>>,
    cur: HashMap<Oid, Tree<'r>>,
}

impl<'r> Trees<'r> {
    fn get(&mut self, repo: &'r git2::Repository, id: Oid) -> Result<Tree<'r>, git2::Error> {
        if let Some(t) = self.cur.get(&id).or_else(|| self.prev.get(&id)) {
            let t = t.clone();
            self.cur.insert(id, t.clone());
            return Ok(t);
        }
        let t = repo.find_tree(id)?;
        self.cur.insert(id, t.clone());
        Ok(t)
    }

    /// The commit before's trees are dropped; this one's become "before".
    fn next_commit(&mut self) {
        self.prev = std::mem::take(&mut self.cur);
    }
}

/// Git's order of tree entries: by name, a folder's name read with a '/' after it.
fn git_order(a: &TreeEntry<'_>, b: &TreeEntry<'_>) -> Ordering {
    let (an, bn) = (a.name_bytes(), b.name_bytes());
    let common = an.len().min(bn.len());
    match an[..common].cmp(&bn[..common]) {
        Ordering::Equal => {
            let next = |n: &[u8], e: &TreeEntry<'_>| {
                n.get(common)
                    .copied()
                    .or((e.kind() == Some(ObjectType::Tree)).then_some(b'/'))
            };
            next(an, a).cmp(&next(bn, b))
        }
        other => other,
    }
}

/// The message lines naming each card, found in one read of the message: a card id is a
/// whole word of id characters, so a line names a card exactly when the id is one of its
/// words (what [`mentions`] checks). A batch of thousands of transitions is then read once,
/// not once per card.
struct LinesNaming<'a> {
    lines: Vec<&'a str>,
    words: Option<HashMap<&'a str, Vec<usize>>>,
}

impl<'a> LinesNaming<'a> {
    fn new(message: &'a str, cards: usize) -> Self {
        let lines: Vec<&str> = message.lines().collect();
        // For a few cards, scanning is cheaper than building the map.
        let words = (cards > 4).then(|| {
            let mut words: HashMap<&str, Vec<usize>> = HashMap::new();
            let part_of_id = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
            for (i, line) in lines.iter().enumerate() {
                for word in line.split(|c: char| !part_of_id(c)) {
                    let at = words.entry(word).or_default();
                    if at.last() != Some(&i) {
                        at.push(i);
                    }
                }
            }
            words
        });
        LinesNaming { lines, words }
    }

    fn lines(&self, id: &str) -> Vec<String> {
        match &self.words {
            Some(words) => words
                .get(id)
                .map(|at| at.iter().map(|&i| self.lines[i].to_string()).collect())
                .unwrap_or_default(),
            None => self
                .lines
                .iter()
                .filter(|l| mentions(l, id))
                .map(|l| l.to_string())
                .collect(),
        }
    }
}

#[path = "hindex_db.rs"]
mod db;
pub use db::{append, ensure_tables, read_state, rebuild, Base, IndexState, Rebuilt};
use db::{rows_for, tables_present};

#[path = "hindex_catchup.rs"]
mod catchup;
pub(super) use catchup::Indexer;

#[cfg(test)]
#[path = "hindex_tests.rs"]
mod tests;
