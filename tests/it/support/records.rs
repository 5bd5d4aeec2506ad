//! The records a workspace keeps beside its files: the git repository and the telemetry
//! database, read with the `git` command line and rusqlite (read-only).

use std::process::Command;
use std::time::Duration;

use super::workspace::{wait_until, Workspace, WAIT};

/// One commit of `git log`.
#[derive(Debug, Clone)]
pub struct Commit {
    pub oid: String,
    pub message: String,
}

impl Workspace {
    /// Runs git in the workspace; asserts success; returns stdout. Reading commands take
    /// no optional locks (`git status` would otherwise lock the index to refresh it and
    /// race with the daemon's own index update, see audit::git_index_catches_up_after_a_concurrent_lock).
    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
            .args(args)
            .env("GIT_OPTIONAL_LOCKS", "0")
            .current_dir(&self.root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `git log` (newest first) limited to `paths` (pathspecs; none: everything).
    pub fn git_log(&self, paths: &[&str]) -> Vec<Commit> {
        let mut args = vec!["log", "--format=%H%x01%B%x00"];
        if !paths.is_empty() {
            args.push("--");
            args.extend_from_slice(paths);
        }
        self.git(&args)
            .split('\0')
            .filter(|c| !c.trim().is_empty())
            .map(|c| {
                let (oid, message) = c.trim_start().split_once('\x01').unwrap();
                Commit {
                    oid: oid.to_string(),
                    message: message.trim().to_string(),
                }
            })
            .collect()
    }

    /// HEAD's oid.
    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }

    /// Number of commits on HEAD.
    pub fn commit_count(&self) -> usize {
        self.git(&["rev-list", "--count", "HEAD"])
            .trim()
            .parse()
            .unwrap()
    }

    /// Waits until some commit's message has the line `line` (optionally followed by a
    /// ` (reason)`); returns that commit.
    pub fn wait_commit_line(&self, line: &str) -> Commit {
        let with_reason = format!("{line} (");
        wait_until(&format!("a commit with the line {line:?}"), WAIT, || {
            let log = self.git_log(&[]);
            log.iter()
                .find(|c| {
                    c.message
                        .lines()
                        .any(|l| l == line || l.starts_with(&with_reason))
                })
                .cloned()
                .ok_or_else(|| format!("HEAD is {:?}", log.first().map(|c| &c.message)))
        })
    }

    /// Runs a query that returns one integer against `telemetry/pas.db`, read-only.
    pub fn db_count(&self, sql: &str) -> i64 {
        self.try_db_count(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// [`db_count`](Self::db_count), with "no database (or table) yet" as an error.
    pub fn try_db_count(&self, sql: &str) -> Result<i64, String> {
        use rusqlite::{Connection, OpenFlags};
        let path = self.path("telemetry/pas.db");
        if !path.exists() {
            return Err("no database yet".into());
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| e.to_string())?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        conn.query_row(sql, [], |r| r.get(0))
            .map_err(|e| e.to_string())
    }

    /// Runs a query against `telemetry/pas.db` (read-only), mapping each row.
    pub fn db_query<T>(
        &self,
        sql: &str,
        map: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Vec<T> {
        use rusqlite::{Connection, OpenFlags};
        let path = self.path("telemetry/pas.db");
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        let rows = stmt.query_map([], map).unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Waits until `sql` counts `want`.
    pub fn wait_db_count(&self, sql: &str, want: i64) {
        wait_until(&format!("{sql} = {want}"), WAIT, || {
            match self.try_db_count(sql)? {
                n if n == want => Ok(()),
                n => Err(n.to_string()),
            }
        })
    }

    /// Lines of `git status --porcelain` for `pathspec` (e.g. `work`).
    pub fn git_status(&self, pathspec: &[&str]) -> Vec<String> {
        let mut args = vec!["status", "--porcelain", "--untracked-files=all", "--"];
        args.extend_from_slice(pathspec);
        self.git(&args).lines().map(str::to_string).collect()
    }

    /// Waits until `git status` of `work/` is clean: pas has committed (and indexed)
    /// everything it did. `what` says why, for the failure message.
    pub fn wait_work_clean(&self, what: &str) {
        wait_until(what, WAIT, || {
            let dirty = self.git_status(&["work"]);
            if dirty.is_empty() {
                Ok(())
            } else {
                Err(format!("{dirty:?}"))
            }
        });
    }
}
