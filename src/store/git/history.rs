//! Reading the past: what a card went through, what the board looked like, what is dirty.
//!
//! [`GitStore::history_of`] walks HEAD for the commits that touched one card (for `pas log`),
//! [`GitStore::resolve_rev`] turns a revision or a time into a commit and
//! [`GitStore::files_at`] reads a folder as it was there (for `pas status --at`), and
//! [`GitStore::dirty_paths_under`] lists what a crash left uncommitted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};
use git2::{ObjectType, Oid, StatusOptions, Tree, TreeWalkMode, TreeWalkResult};
use regex::Regex;

use super::{git, CommitInfo, GitError, GitStore};

impl GitStore {
    /// Paths under `dir` that differ between HEAD and the work tree (untracked, modified,
    /// deleted), leaving out git-ignored files: at start-up these are what a crash left
    /// uncommitted. Absolute paths under the root as the caller named it. A symbolic link is
    /// listed like a file: `commit_paths` commits it as a link, never what it points at.
    pub fn dirty_paths_under(&self, dir: &Path) -> Result<Vec<PathBuf>, GitError> {
        let Some(rel) = self.repo_rel(dir) else {
            return Ok(Vec::new());
        };
        let rel = Some(rel).filter(|r| !r.is_empty());
        let mut opts = StatusOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false);
        opts.exclude_submodules(true);
        if let Some(rel) = &rel {
            opts.pathspec(rel);
        }
        let doing = || format!("reading the status of {}", dir.display());
        let statuses = self.repo.statuses(Some(&mut opts)).map_err(git(doing))?;
        let under = |p: &str| {
            rel.as_ref()
                .is_none_or(|r| p == r || p.starts_with(&format!("{r}/")))
        };
        Ok(statuses
            .iter()
            .filter(|s| !s.status().is_ignored())
            .filter_map(|s| s.path().filter(|p| under(p)).and_then(|p| self.abs(p)))
            .collect())
    }

    /// The card `<id>.yaml` wherever it sits under `work/` in `tree`: path -> blob.
    fn card_blobs(
        &self,
        tree: &Tree<'_>,
        file: &str,
    ) -> Result<BTreeMap<String, Oid>, git2::Error> {
        let mut found = BTreeMap::new();
        let Some(work) = self.work_tree(tree)? else {
            return Ok(found);
        };
        for state in work.iter().filter(|e| e.kind() == Some(ObjectType::Tree)) {
            let name = String::from_utf8_lossy(state.name_bytes()).into_owned();
            let dir = self.repo.find_tree(state.id())?;
            let mut dirs = Vec::new();
            if name == "assigned" {
                for agent in dir.iter().filter(|e| e.kind() == Some(ObjectType::Tree)) {
                    let agent_name = String::from_utf8_lossy(agent.name_bytes());
                    dirs.push((
                        format!("assigned/{agent_name}"),
                        self.repo.find_tree(agent.id())?,
                    ));
                }
            }
            dirs.push((name, dir));
            for (path, dir) in dirs {
                if let Some(e) = dir.get_name(file) {
                    found.insert(format!("work/{path}/{file}"), e.id());
                }
            }
        }
        Ok(found)
    }

    /// The workspace's `work/` folder in a commit's tree.
    pub(super) fn work_tree(&self, tree: &Tree<'_>) -> Result<Option<Tree<'_>>, git2::Error> {
        match tree.get_path(&self.prefix.join("work")) {
            Ok(e) if e.kind() == Some(ObjectType::Tree) => self.repo.find_tree(e.id()).map(Some),
            _ => Ok(None),
        }
    }

    /// Every commit on HEAD (newest first) that added, changed or removed the card `<id>.yaml`
    /// in any state folder, for `pas log ID`. Merges are compared with their first parent.
    pub fn history_of(&self, id: &str) -> Result<Vec<CommitInfo>, GitError> {
        self.history(id)
            .map_err(git(|| format!("reading the history of {id}")))
    }

    fn history(&self, id: &str) -> Result<Vec<CommitInfo>, git2::Error> {
        let Some(head) = self.head_commit()? else {
            return Ok(Vec::new());
        };
        let file = format!("{id}.yaml");
        let mut walk = self.repo.revwalk()?;
        // Topological order: commits of the same second keep their parent-child order.
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
        walk.push(head.id())?;
        let mut out = Vec::new();
        for oid in walk {
            let commit = self.repo.find_commit(oid?)?;
            let tree = commit.tree()?;
            let parent = commit.parent(0).and_then(|p| p.tree()).ok();
            let work = self.work_tree(&tree)?.map(|t| t.id());
            let parent_work = match &parent {
                Some(t) => self.work_tree(t)?.map(|t| t.id()),
                None => None,
            };
            if work == parent_work {
                continue; // work/ untouched: skip reading its folders
            }
            let now = self.card_blobs(&tree, &file)?;
            let before = match &parent {
                Some(t) => self.card_blobs(t, &file)?,
                None => BTreeMap::new(),
            };
            let touched: BTreeSet<&String> = now
                .keys()
                .chain(before.keys())
                .filter(|p| now.get(*p) != before.get(*p))
                .collect();
            if touched.is_empty() {
                continue;
            }
            let message = commit.message().unwrap_or_default();
            let mut lines: Vec<String> = message
                .lines()
                .filter(|l| mentions(l, id))
                .map(str::to_string)
                .collect();
            if lines.is_empty() {
                lines.push(commit.summary().unwrap_or_default().to_string());
            }
            let oid = commit.id().to_string();
            out.push(CommitInfo {
                short: oid[..7].to_string(),
                oid,
                author: commit.author().name().unwrap_or_default().to_string(),
                time: DateTime::from_timestamp(commit.time().seconds(), 0).unwrap_or_default(),
                lines,
                paths: touched.into_iter().cloned().collect(),
            });
        }
        Ok(out)
    }

    /// The newest `limit` commits on HEAD's first-parent line (newest first), for the
    /// dashboard's time slider: each is a board the slider can show.
    pub fn recent(&self, limit: usize) -> Result<Vec<CommitInfo>, GitError> {
        let read = || -> Result<Vec<CommitInfo>, git2::Error> {
            let mut out = Vec::new();
            let mut commit = self.head_commit()?;
            while let Some(c) = commit {
                if out.len() >= limit {
                    break;
                }
                let oid = c.id().to_string();
                out.push(CommitInfo {
                    short: oid[..7].to_string(),
                    oid,
                    author: c.author().name().unwrap_or_default().to_string(),
                    time: DateTime::from_timestamp(c.time().seconds(), 0).unwrap_or_default(),
                    lines: vec![c.summary().unwrap_or_default().to_string()],
                    paths: Vec::new(),
                });
                commit = c.parent(0).ok();
            }
            Ok(out)
        };
        read().map_err(git(|| "reading the recent commits".to_string()))
    }

    /// Resolve what `pas status --at` was given: a git revision (`HEAD~2`, a short sha, a
    /// branch or tag), a relative time (`2h ago`, `3 days ago`) or a time (RFC 3339,
    /// `YYYY-MM-DD`, `YYYY-MM-DD HH:MM`, local time), which means the newest commit on
    /// HEAD's first-parent line made at or before it. `now` is injected so tests hold time.
    pub fn resolve_rev(&self, spec: &str, now: DateTime<Utc>) -> Result<Oid, GitError> {
        let rev = |source| GitError::Revision {
            spec: spec.into(),
            source: Some(source),
        };
        if let Some(time) = parse_time(spec, now)? {
            let mut commit = self.head_commit().map_err(rev)?;
            while let Some(c) = commit {
                if c.time().seconds() <= time.timestamp() {
                    return Ok(c.id());
                }
                commit = c.parent(0).ok();
            }
            return Err(GitError::TooEarly {
                spec: spec.into(),
                time,
            });
        }
        let object = self.repo.revparse_single(spec).map_err(rev)?;
        Ok(object.peel_to_commit().map_err(rev)?.id())
    }

    /// Every file under the workspace's `rel_dir` (e.g. `work`) as it was at `commit`: (path
    /// relative to the workspace root, bytes), so the board of the past can be rebuilt.
    pub fn files_at(
        &self,
        commit: Oid,
        rel_dir: &Path,
    ) -> Result<Vec<(PathBuf, Vec<u8>)>, GitError> {
        self.files(commit, rel_dir)
            .map_err(git(|| format!("reading {} at {commit}", rel_dir.display())))
    }

    fn files(&self, commit: Oid, rel_dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, git2::Error> {
        let tree = self.repo.find_commit(commit)?.tree()?;
        let dir = self.prefix.join(rel_dir);
        let dir: PathBuf = dir
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        let sub = match tree.get_path(&dir) {
            _ if dir.as_os_str().is_empty() => tree,
            Ok(e) if e.kind() == Some(ObjectType::Tree) => self.repo.find_tree(e.id())?,
            _ => return Ok(Vec::new()),
        };
        let mut blobs = Vec::new();
        sub.walk(TreeWalkMode::PreOrder, |parent, entry| {
            if entry.kind() == Some(ObjectType::Blob) {
                let name = String::from_utf8_lossy(entry.name_bytes());
                blobs.push((rel_dir.join(parent).join(&*name), entry.id()));
            }
            TreeWalkResult::Ok
        })?;
        let read = |(path, oid)| Ok((path, self.repo.find_blob(oid)?.content().to_vec()));
        blobs.into_iter().map(read).collect()
    }
}

/// Whether `line` names the card `id` as a whole word (so `J-7` is not found in `J-70`).
pub(super) fn mentions(line: &str, id: &str) -> bool {
    let part_of_id = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    line.match_indices(id).any(|(at, _)| {
        !line[..at].ends_with(part_of_id) && !line[at + id.len()..].starts_with(part_of_id)
    })
}

/// `N unit ago`; compiled once.
static RELATIVE: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern: compiling it cannot fail.
    Regex::new(r"^(\d+)\s*([A-Za-z]+)\s+ago$").expect("valid regex")
});

/// Parse the time forms of `resolve_rev`; `Ok(None)` when `spec` is not a time at all.
fn parse_time(spec: &str, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, GitError> {
    let s = spec.trim();
    let bad = || GitError::Revision {
        spec: spec.into(),
        source: None,
    };
    if let Some(caps) = RELATIVE.captures(s) {
        let n: i64 = caps[1].parse().map_err(|_| bad())?;
        let unit = match caps[2].to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 604_800,
            _ => return Err(bad()),
        };
        let ago = n
            .checked_mul(unit)
            .and_then(chrono::TimeDelta::try_seconds)
            .ok_or_else(bad)?;
        return now.checked_sub_signed(ago).map(Some).ok_or_else(bad);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    });
    match naive {
        Some(n) => Local
            .from_local_datetime(&n)
            .earliest()
            .map(|t| Some(t.with_timezone(&Utc)))
            .ok_or_else(bad),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use std::fs;

    #[test]
    fn dirty_paths_honour_gitignore() {
        let (dir, mut store) = setup();
        let root = dir.path();
        let ignore = write(root, ".gitignore", "work/heartbeats/\n");
        let a = write(root, "work/done/A.yaml", "a\n");
        let b = write(root, "work/done/B.yaml", "b\n");
        store
            .commit_paths(&[ignore, a.clone(), b.clone()], "setup", "pas")
            .unwrap();
        assert!(store
            .dirty_paths_under(&root.join("work"))
            .unwrap()
            .is_empty());
        write(root, "work/done/A.yaml", "a2\n");
        fs::remove_file(&b).unwrap();
        let c = write(root, "work/inbox/C.yaml", "c\n");
        write(root, "work/heartbeats/x.jsonl", "{}\n");
        write(root, "elsewhere.txt", "not under work\n");
        let mut dirty = store.dirty_paths_under(&root.join("work")).unwrap();
        dirty.sort();
        assert_eq!(dirty, [a, b, c]);
        assert!(store
            .dirty_paths_under(Path::new("/elsewhere"))
            .unwrap()
            .is_empty());
    }

    /// Links are reported like files (a linked card and a linked folder alike), since the
    /// commit stores a link as a link; nothing is listed from inside the linked folder.
    #[cfg(unix)]
    #[test]
    fn dirty_paths_list_links_as_links() {
        use std::os::unix::fs::symlink;
        let (dir, store) = setup();
        let root = dir.path();
        let outside = tempfile::tempdir().unwrap();
        let secret = write(outside.path(), "secret.yaml", "x\n");
        let card = write(root, "work/done/J-1.yaml", "a\n");
        fs::create_dir_all(root.join("work/rejected")).unwrap();
        symlink(&secret, root.join("work/rejected/J-2.yaml")).unwrap();
        symlink(outside.path(), root.join("work/inbox")).unwrap();
        fs::write(outside.path().join("inside-the-link.yaml"), "y\n").unwrap();
        let mut dirty = store.dirty_paths_under(&root.join("work")).unwrap();
        dirty.sort();
        assert_eq!(
            dirty,
            [
                card,
                root.join("work/inbox"),
                root.join("work/rejected/J-2.yaml")
            ]
        );
    }

    #[test]
    fn history_follows_one_card() {
        let (dir, mut store) = setup();
        let (root, s) = (dir.path(), &mut store);
        let new = [
            write(root, "work/inbox/J-1.yaml", "1\n"),
            write(root, "work/inbox/J-10.yaml", "10\n"),
        ];
        commit_at(
            s,
            &new,
            "pas: 2 transitions\n\npas: J-1 new\npas: J-10 new\n",
            1000,
        );
        let moved = mv(root, "work/inbox/J-1.yaml", "work/assigned/x/J-1.yaml");
        commit_at(s, &moved, "pas: J-1 inbox -> assigned/x", 2000);
        let other = mv(root, "work/inbox/J-10.yaml", "work/assigned/y/J-10.yaml");
        commit_at(s, &other, "pas: J-10 inbox -> assigned/y", 3000);
        let done = mv(root, "work/assigned/x/J-1.yaml", "work/done/J-1.yaml");
        commit_at(s, &done, "finished", 4000);
        let log = store.history_of("J-1").unwrap();
        let lines: Vec<_> = log.iter().map(|c| c.lines.join("|")).collect();
        assert_eq!(
            lines,
            ["finished", "pas: J-1 inbox -> assigned/x", "pas: J-1 new"]
        );
        assert_eq!(
            log[1].paths,
            ["work/assigned/x/J-1.yaml", "work/inbox/J-1.yaml"]
        );
        assert_eq!(
            (log[0].time.timestamp(), log[0].author.as_str()),
            (4000, "pas")
        );
        assert_eq!(store.history_of("J-10").unwrap().len(), 2);
        assert!(store.history_of("J").unwrap().is_empty());
    }

    #[test]
    fn resolves_revisions_and_times_and_reads_the_past() {
        let (dir, mut store) = setup();
        let mut oids = Vec::new();
        for (i, time) in [1000, 2000, 3000].into_iter().enumerate() {
            let card = write(dir.path(), "work/inbox/J-1.yaml", &format!("v{i}\n"));
            oids.push(commit_at(&mut store, &[card], "pas: J-1 edit", time));
        }
        let now = DateTime::from_timestamp(3500, 0).unwrap();
        let resolve = |spec: &str| store.resolve_rev(spec, now).map_err(|e| e.to_string());
        assert_eq!(resolve("HEAD~1"), Ok(oids[1]));
        assert_eq!(resolve(&oids[0].to_string()[..8]), Ok(oids[0]));
        assert_eq!(resolve("600 s ago"), Ok(oids[1]));
        assert_eq!(resolve("1 sec ago"), Ok(oids[2]));
        assert_eq!(resolve("40 min ago"), Ok(oids[0]));
        assert_eq!(resolve("1970-01-01T00:25:00Z"), Ok(oids[0]));
        assert!(resolve("1 hour ago").unwrap_err().contains("'1 hour ago'"));
        assert!(resolve("2 fortnights ago")
            .unwrap_err()
            .contains("fortnights"));
        assert!(resolve("no-such-branch")
            .unwrap_err()
            .contains("no-such-branch"));
        let past = store.files_at(oids[0], Path::new("work")).unwrap();
        assert_eq!(
            past,
            [(PathBuf::from("work/inbox/J-1.yaml"), b"v0\n".to_vec())]
        );
        assert!(store
            .files_at(oids[0], Path::new("nowhere"))
            .unwrap()
            .is_empty());
    }
}
