//! The commit worker: a thread that owns the [`GitStore`], so the daemon never waits on git.
//!
//! The daemon sends a [`Change`] per transition and moves on; the worker folds everything that
//! arrives within a short window into one commit (one message line per transition), retries
//! with back-off when a commit fails (a held lock), and commits what is pending on shutdown.
//! A change carries the content of the cards it moved as the daemon knew it (snapshots): a
//! card may move on before the commit, and each commit's tree must show the cards where its
//! message says they went. Pending changes are merged in order, the later source of a path
//! winning, so a batch commits each path as the last change left it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use git2::Oid;

use super::commit::Source;
use super::hindex::Indexer;
use super::upkeep::Upkeep;
use super::{chain, GitStore};

/// The longest wait between two attempts at a failing commit or index update: how late pas
/// may notice that a lock was released or space freed. An attempt costs a few file
/// operations, so a short cap is cheap even when the fault lasts.
const MAX_BACKOFF: Duration = Duration::from_secs(3);

/// While a commit keeps failing, the warning is repeated every this many attempts.
const REPEAT_EVERY: u32 = 10;

/// One batch of changes to commit: the paths touched and one message line per transition,
/// e.g. `pas: J-7 inbox -> assigned/director-code`. A path in both lists is taken from
/// `snapshots`; a later change's entry for a path overrides an earlier one's.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Absolute paths under the workspace read from disk at commit time (present: added;
    /// gone: removed): rejected files, registrations, recovery.
    pub paths: Vec<PathBuf>,
    /// Absolute paths whose content the sender knows: `Some(text)` is the file's content at
    /// the transition, `None` that the path was absent then (removed or moved away). The
    /// commit holds this, whatever the disk holds by then.
    pub snapshots: Vec<(PathBuf, Option<Arc<str>>)>,
    /// One line per transition, for the commit message.
    pub lines: Vec<String>,
    /// What each transition means for a person (`done "Write the parser" (coder-1)`,
    /// see `subject::headline`): a batch's subject is its most newsworthy one.
    pub headlines: Vec<String>,
    /// Git trailers for the end of the message (`Pas-Trace: J-7 <trace_id>` for a card
    /// that finished), kept apart so the transition lines read as they always did.
    pub trailers: Vec<String>,
}

enum Msg {
    Change(Change),
    Flush(mpsc::Sender<Option<Oid>>),
    /// Open the repository afresh (see `CommitWorker::let_go`).
    Reopen,
    Shutdown,
}

/// The commit worker: owns a [`GitStore`] on its own thread so the daemon never blocks on git,
/// and folds every change arriving within `window` of the first into one commit.
pub struct CommitWorker {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

/// What the worker keeps besides the commits: the history index and the repository's
/// upkeep (both off by default).
#[derive(Debug, Clone, Default)]
pub struct Keeping {
    /// The telemetry database whose history index the worker keeps up with HEAD (after
    /// each commit, and at start in bounded steps between commits).
    pub index: Option<PathBuf>,
    /// Repack in the background under this policy.
    pub maintenance: Option<crate::config::MaintenanceConfig>,
}

impl CommitWorker {
    /// Start the worker thread; commits are authored by `author`.
    pub fn spawn(store: GitStore, window: Duration, author: String) -> CommitWorker {
        Self::spawn_keeping(store, window, author, Keeping::default())
    }

    /// Start the worker thread, keeping the history index and the repository as `keeping`
    /// says.
    pub fn spawn_keeping(
        store: GitStore,
        window: Duration,
        author: String,
        keeping: Keeping,
    ) -> CommitWorker {
        let (tx, rx) = mpsc::channel();
        let upkeep = keeping.maintenance.and_then(|policy| {
            Upkeep::spawn(store.git_dir().to_path_buf(), keeping.index.clone(), policy)
        });
        let worker = Worker {
            store,
            opened: Instant::now(),
            window,
            author,
            pending: BTreeMap::new(),
            lines: Vec::new(),
            headlines: Vec::new(),
            trailers: Vec::new(),
            last: None,
            failures: 0,
            commit_failures: 0,
            index: keeping.index.map(Indexer::new),
            upkeep,
        };
        let thread = thread::Builder::new()
            .name("pas-git".into())
            .spawn(move || {
                crate::store::background_priority();
                worker.run(rx)
            });
        let thread = thread
            .map_err(|e| tracing::error!(error = %e, "cannot start the git worker"))
            .ok();
        CommitWorker { tx, thread }
    }

    /// Queue a change; never blocks.
    pub fn send(&self, change: Change) {
        if self.tx.send(Msg::Change(change)).is_err() {
            tracing::warn!("git worker is gone; change not committed (start-up will commit it)");
        }
    }

    /// Block until everything queued before this call has been committed (one attempt: a
    /// failing commit stays queued). Returns the worker's last commit, if any.
    pub fn flush(&self) -> Option<Oid> {
        let (reply, answer) = mpsc::channel();
        self.tx.send(Msg::Flush(reply)).ok()?;
        answer.recv().ok().flatten()
    }

    /// Asks the worker to open its repository afresh once what is queued is done: after
    /// the daemon's start-up, which compared the whole tree with git through this and
    /// other handles on the same pack, whose index stays mapped (and resident) while any
    /// handle that loaded it lives.
    pub fn let_go(&self) {
        let _ = self.tx.send(Msg::Reopen);
    }

    /// Commit what is pending and join the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.tx.send(Msg::Shutdown);
            if thread.join().is_err() {
                tracing::error!("git worker panicked");
            }
        }
    }
}

impl Drop for CommitWorker {
    /// Dropping the worker commits what is pending, like `shutdown`.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The state of the worker thread: what is waiting to be committed.
struct Worker {
    store: GitStore,
    window: Duration,
    author: String,
    /// Each pending path and where its content comes from, as the latest change said.
    pending: BTreeMap<PathBuf, Source>,
    lines: Vec<String>,
    headlines: Vec<String>,
    trailers: Vec<String>,
    last: Option<Oid>,
    failures: u32,
    /// Commits that failed in a row (for the log; `failures` also counts index retries).
    commit_failures: u32,
    /// Keeps the history index up with HEAD.
    index: Option<Indexer>,
    /// Keeps loose objects and packs bounded, on its own thread.
    upkeep: Option<Upkeep>,
    /// When the repository was last opened (see `REOPEN_EVERY`).
    opened: Instant,
}

/// How often the worker opens its repository afresh. Each commit looks objects up in the
/// pack's index, which libgit2 maps whole; the pages touched stay counted in the daemon's
/// resident memory while it stays mapped (a 100,000-commit pack has a 42 MB index).
const REOPEN_EVERY: Duration = Duration::from_secs(60);

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        // A start-up index repair that found the index locked is retried from the start,
        // and the history index catches up with commits made while pas was down.
        let mut deadline: Option<Instant> = self.next_wake();
        loop {
            let msg = match deadline {
                None => rx.recv().ok(),
                Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                    Ok(msg) => Some(msg),
                    Err(RecvTimeoutError::Timeout) => {
                        if self.commit() && self.store.index_pending() && self.store.retry_index() {
                            self.failures = 0;
                        } else if self.store.index_pending() {
                            self.failures = self.failures.saturating_add(1);
                        }
                        // One bounded step of a catch-up, between commits.
                        self.index_step();
                        deadline = self.next_wake();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                },
            };
            match msg {
                Some(Msg::Change(change)) => {
                    self.add(change);
                    let gather = Instant::now() + self.window;
                    deadline = Some(deadline.map_or(gather, |d| d.min(gather)));
                }
                Some(Msg::Flush(reply)) => {
                    self.commit();
                    let _ = reply.send(self.last);
                    deadline = self.next_wake();
                }
                Some(Msg::Reopen) => self.reopen(),
                Some(Msg::Shutdown) | None => return self.finish(),
            }
        }
    }

    /// When the loop must wake without a message: a retry, or a catch-up step.
    fn next_wake(&self) -> Option<Instant> {
        let index = self.index.as_ref().and_then(Indexer::next_step);
        match (self.retry_at(), index) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Bring the history index a step closer to HEAD.
    fn index_step(&mut self) {
        if let Some(index) = &mut self.index {
            index.step(&self.store);
            if index.take_settled() {
                self.reopen();
            }
        }
    }

    /// Opens the repository afresh (see `GitStore::reopen`).
    fn reopen(&mut self) {
        if let Err(e) = self.store.reopen() {
            tracing::debug!(error = %e, "cannot reopen the repository");
        }
        self.opened = Instant::now();
    }

    /// On shutdown: commit what is pending, then bring the index in line. A lock a crash
    /// left is removed once it is 2 s old, so the index gets a little over that.
    fn finish(&mut self) {
        let committed = (0..3).any(|attempt| {
            self.commit() || {
                thread::sleep(Duration::from_millis(100 << attempt));
                false
            }
        });
        if !committed {
            tracing::error!(
                paths = self.pending.len(),
                "left uncommitted; start-up commits them"
            );
        }
        let give_up = Instant::now() + Duration::from_millis(2500);
        while self.store.index_pending() && !self.store.retry_index() {
            if Instant::now() >= give_up {
                tracing::warn!(
                    "git index still locked; the next start brings it in line with HEAD"
                );
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Merge a change into what is pending: its disk paths, then its snapshots, each
    /// replacing what an earlier change said about the same path.
    fn add(&mut self, change: Change) {
        for path in change.paths {
            self.pending.insert(path, Source::Disk);
        }
        for (path, text) in change.snapshots {
            let source = text.map_or(Source::Absent, Source::Text);
            self.pending.insert(path, source);
        }
        self.lines.extend(change.lines);
        self.headlines.extend(change.headlines);
        self.trailers.extend(change.trailers);
    }

    /// After a failure, back off (doubling up to [`MAX_BACKOFF`]); a new change retries
    /// sooner. A locked index is retried on the same schedule.
    fn retry_at(&self) -> Option<Instant> {
        if self.pending.is_empty() && self.lines.is_empty() && !self.store.index_pending() {
            return None;
        }
        let base = self.window.max(Duration::from_millis(250));
        Some(Instant::now() + (base * 2u32.saturating_pow(self.failures)).min(MAX_BACKOFF))
    }

    /// Commit everything pending; true when nothing is left.
    fn commit(&mut self) -> bool {
        if self.pending.is_empty() && self.lines.is_empty() {
            return true;
        }
        let paths = self.pending.len();
        let mut message = super::subject::batch_message(&self.lines, &self.headlines, paths);
        if !self.trailers.is_empty() {
            message = format!("{}\n\n{}\n", message.trim_end(), self.trailers.join("\n"));
        }
        if self.upkeep.as_ref().is_some_and(Upkeep::take_repacked) {
            self.store.refresh_odb();
        }
        if self.opened.elapsed() >= REOPEN_EVERY {
            self.reopen();
        }
        match self
            .store
            .commit_sources(&self.pending, &message, &self.author)
        {
            Ok(oid) => {
                if self.commit_failures > 0 {
                    tracing::info!(
                        attempts = self.commit_failures + 1,
                        paths,
                        "git commit made after the fault cleared"
                    );
                }
                self.last = oid.or(self.last);
                self.pending.clear();
                self.lines.clear();
                self.headlines.clear();
                self.trailers.clear();
                self.failures = 0;
                self.commit_failures = 0;
                if oid.is_some() {
                    // Right after the commit: its entry in the history index (and any
                    // commit of someone else's before it), then a word to the upkeep.
                    self.index_step();
                    if let Some(upkeep) = &self.upkeep {
                        upkeep.committed();
                    }
                }
                true
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                self.commit_failures = self.commit_failures.saturating_add(1);
                let error = chain(&e);
                let n = self.commit_failures;
                if n == 1 || n % REPEAT_EVERY == 0 {
                    let hint = self
                        .store
                        .fault_hint(&e)
                        .unwrap_or_else(|| "pas retries".into());
                    tracing::warn!(%error, paths, attempts = n,
                        "git commit failed: {hint}");
                } else {
                    tracing::debug!(%error, paths, "git commit failed again; will retry");
                }
                // A lock left by a crashed git process would block every retry.
                self.store.clear_stale_locks();
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use git2::Repository;
    use std::fs;

    #[test]
    fn handles_cross_threads() {
        fn send<T: Send>() {}
        fn sync<T: Sync>() {}
        send::<GitStore>();
        send::<CommitWorker>();
        sync::<CommitWorker>();
    }

    #[test]
    fn worker_batches_flushes_retries_and_shuts_down() {
        let (dir, store) = setup();
        let root = dir.path().to_path_buf();
        let worker = CommitWorker::spawn(store, Duration::from_millis(200), "pas".into());
        for i in 0..3 {
            let card = write(&root, &format!("work/inbox/J-{i}.yaml"), "t\n");
            let lines = vec![format!("pas: J-{i} new")];
            worker.send(Change {
                paths: vec![card.clone(), card],
                lines,
                ..Default::default()
            });
        }
        let first = worker.flush().unwrap();
        let repo = Repository::open(&root).unwrap();
        let msg = repo
            .find_commit(first)
            .unwrap()
            .message()
            .unwrap()
            .to_string();
        assert_eq!(
            msg,
            "pas: J-0 new, +2 more\n\npas: J-0 new\npas: J-1 new\npas: J-2 new\n"
        );
        assert_eq!(tree_paths(&repo, first).len(), 3);
        // A held branch lock (a live process has it open) fails the commit; the change is
        // kept and committed later. (A lock nobody holds is stale and cleared: locks.rs.)
        let lock = repo
            .path()
            .join(format!("{}.lock", repo.head().unwrap().name().unwrap()));
        fs::write(&lock, "").unwrap();
        let held = fs::File::open(&lock).unwrap();
        let moved = mv(&root, "work/inbox/J-0.yaml", "work/done/J-0.yaml");
        worker.send(Change {
            paths: moved,
            lines: vec!["pas: J-0 inbox -> done".into()],
            ..Default::default()
        });
        assert_eq!(worker.flush(), Some(first), "commit failed while locked");
        drop(held);
        fs::remove_file(&lock).unwrap();
        let second = worker.flush().unwrap();
        assert_eq!(
            repo.find_commit(second).unwrap().message(),
            Some("pas: J-0 inbox -> done")
        );
        let card = write(&root, "work/inbox/J-9.yaml", "t\n");
        worker.send(Change {
            paths: vec![card],
            lines: vec!["pas: J-9 new".into()],
            ..Default::default()
        });
        worker.shutdown();
        let head = repo.head().unwrap().peel_to_commit().unwrap();
        assert_eq!(head.message(), Some("pas: J-9 new"));
        assert_eq!(head.parent_id(0).unwrap(), second);
        assert!(repo.statuses(None).unwrap().is_empty());
    }
}
