//! The `git` command line, for what libgit2 cannot do: a push whose every ref is checked
//! against the value the pusher last saw (`--force-with-lease`) and lands all or nothing
//! (`--atomic`). That pair is the compare-and-swap every claim, renewal and finish rests on.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What went wrong talking to the remote.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The remote could not be reached (no such path, connection refused, DNS, auth).
    #[error("remote {remote} is unreachable: {message}")]
    Unreachable { remote: String, message: String },
    /// git ran and failed for another reason.
    #[error("git {what} failed in {dir}: {message}")]
    Git {
        what: String,
        dir: PathBuf,
        message: String,
    },
    /// git could not be started at all.
    #[error("cannot run git in {dir}: {source}")]
    Spawn {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// A libgit2 call on the local clone failed.
    #[error("local repository {dir}: {source}")]
    Local { dir: PathBuf, source: git2::Error },
}

impl RemoteError {
    /// Whether this is the remote being out of reach (a partition), not a refusal.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RemoteError::Unreachable { .. })
    }
}

/// One ref update of a push: `src` (an object id, or empty to delete) to `dst`, allowed
/// only while the remote's `dst` is `expect` (`None`: the ref must be absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub src: String,
    pub dst: String,
    pub expect: Option<String>,
}

/// How the remote answered one ref of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefResult {
    pub dst: String,
    pub ok: bool,
    /// git's summary, e.g. `[rejected]` with `(stale info)` or `(atomic push failed)`.
    pub reason: String,
}

impl RefResult {
    /// Rejected because the remote's value was not the expected one (someone else moved
    /// it): the lost compare-and-swap, as opposed to a ref refused only because another
    /// ref of the same atomic push was.
    pub fn lost_lease(&self) -> bool {
        !self.ok
            && (self.reason.contains("stale info")
                || self.reason.contains("fetch first")
                || self.reason.contains("non-fast-forward")
                || self.reason.contains("already exists"))
    }
}

/// The `git` program run in one repository against one remote.
#[derive(Debug, Clone)]
pub struct Git {
    pub dir: PathBuf,
    pub remote: String,
}

impl Git {
    pub fn new(dir: &Path, remote: &str) -> Git {
        Git {
            dir: dir.to_path_buf(),
            remote: remote.to_string(),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new("git");
        c.arg("-C")
            .arg(&self.dir)
            // Never wait for a password on a terminal nobody watches; messages in English
            // so the reasons can be read.
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .env(
                "GIT_SSH_COMMAND",
                "ssh -o BatchMode=yes -o ConnectTimeout=10",
            )
            .stdin(Stdio::null());
        c
    }

    /// Runs `git args...`; its stdout on success.
    pub fn run(&self, what: &str, args: &[&str]) -> Result<String, RemoteError> {
        let out = self
            .command()
            .args(args)
            .output()
            .map_err(|source| RemoteError::Spawn {
                dir: self.dir.clone(),
                source,
            })?;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if !out.status.success() {
            return Err(self.failure(what, stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A failed git command as an error: unreachable when git says it could not talk to
    /// the remote at all.
    fn failure(&self, what: &str, stderr: String) -> RemoteError {
        const UNREACHABLE: [&str; 7] = [
            "does not appear to be a git repository",
            "Could not read from remote repository",
            "unable to access",
            "Connection refused",
            "Could not resolve host",
            "Repository not found",
            "unable to connect",
        ];
        if UNREACHABLE.iter().any(|m| stderr.contains(m)) {
            return RemoteError::Unreachable {
                remote: self.remote.clone(),
                message: stderr
                    .lines()
                    .find_map(|l| l.strip_prefix("fatal: "))
                    .or_else(|| stderr.lines().last())
                    .unwrap_or_default()
                    .to_string(),
            };
        }
        RemoteError::Git {
            what: what.to_string(),
            dir: self.dir.clone(),
            message: stderr,
        }
    }

    /// One push of `updates`, each checked against its expected value; with `atomic`,
    /// every ref lands or none does. The answer says, ref by ref, which were refused and why.
    pub fn push_cas(
        &self,
        updates: &[RefUpdate],
        atomic: bool,
    ) -> Result<Vec<RefResult>, RemoteError> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let mut args: Vec<String> = vec!["push".into(), "--porcelain".into()];
        if atomic {
            args.push("--atomic".into());
        }
        for u in updates {
            args.push(format!(
                "--force-with-lease={}:{}",
                u.dst,
                u.expect.as_deref().unwrap_or("")
            ));
        }
        args.push(self.remote.clone());
        for u in updates {
            args.push(format!("{}:{}", u.src, u.dst));
        }
        let out = self
            .command()
            .args(&args)
            .output()
            .map_err(|source| RemoteError::Spawn {
                dir: self.dir.clone(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let results = parse_porcelain(&stdout);
        if results.is_empty() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(self.failure("push", stderr));
        }
        Ok(results)
    }

    /// The remote's refs under `pattern` (e.g. `refs/pas/claims/*`), name to object id,
    /// without fetching any object.
    pub fn ls_remote(&self, patterns: &[&str]) -> Result<Vec<(String, String)>, RemoteError> {
        let mut args = vec!["ls-remote", self.remote.as_str()];
        args.extend_from_slice(patterns);
        let out = self.run("ls-remote", &args)?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(oid, name)| (name.to_string(), oid.to_string()))
            .collect())
    }
}

/// The ref lines of `git push --porcelain`: `<flag>\t<src>:<dst>\t<summary>`.
fn parse_porcelain(out: &str) -> Vec<RefResult> {
    out.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            let flag = parts.next()?;
            let refs = parts.next()?;
            let summary = parts.next().unwrap_or_default();
            let flag = flag.chars().next()?;
            let (_, dst) = refs.split_once(':')?;
            Some(RefResult {
                dst: dst.to_string(),
                ok: flag != '!',
                reason: summary.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porcelain_lines_say_which_ref_lost() {
        let out = "To /tmp/r.git\n*\tabc:refs/pas/claims/a\t[new reference]\n!\tdef:refs/pas/claims/b\t[rejected] (stale info)\n!\t1:refs/heads/main\t[rejected] (atomic push failed)\nDone\n";
        let r = parse_porcelain(out);
        assert_eq!(r.len(), 3);
        assert!(r[0].ok && !r[0].lost_lease());
        assert!(!r[1].ok && r[1].lost_lease());
        assert!(!r[2].ok && !r[2].lost_lease());
        assert_eq!(r[2].dst, "refs/heads/main");
    }
}
