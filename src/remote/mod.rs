//! Many hosts, one workspace (SPEC section 14): daemons on several machines share a board
//! through a git remote, and no card is ever done twice.
//!
//! The remote is the only authority, and its one primitive is the compare-and-swap of a
//! ref update (`git push --atomic --force-with-lease`):
//!
//! - [`git`]     the `git` command line: pushes checked ref by ref, `ls-remote`.
//! - [`claim`]   claim commits: who holds a card, for which agent, epoch and lease.
//! - [`lease`]   leases judged on each host's own monotonic clock (pure).
//! - [`replica`] one host's side: fetch, claim, renew, take over, push transitions with
//!   their claims, prune ended claims.
//! - [`status`]  what `pas remote status` and `/health` say about the remote.
//! - [`audit`]   the proof from the remote alone: no card owned or finished twice.
//!
//! Nothing here needs a daemon: a bare repository and a few clones in a temp folder are
//! enough to drive every part (see the tests and `pas bench hosts`).

pub mod audit;
pub mod claim;
pub mod git;
pub mod lease;
pub mod probe;
mod push;
pub mod replica;
pub mod setup;
pub mod status;

use std::path::Path;

pub use git::RemoteError;
pub use replica::{Claimed, Op, Pushed, Replica};

/// This host's name in claims and commits: `PAS_HOST`, else the machine's hostname and a
/// suffix kept in the clone's `.git/` (never committed), so two clones on one machine are
/// two hosts.
pub fn host_name(clone: &Path) -> String {
    if let Ok(h) = std::env::var("PAS_HOST") {
        let h = h.trim();
        if !h.is_empty() {
            return sanitize(h);
        }
    }
    let machine = machine_name();
    let Ok(repo) = git2::Repository::open(clone) else {
        return machine;
    };
    let file = repo.path().join("pas-host-id");
    let suffix = match std::fs::read_to_string(&file) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            let s = ulid::Ulid::new().to_string()[20..].to_lowercase();
            if let Err(e) = std::fs::write(&file, &s) {
                tracing::warn!(file = %file.display(), error = %e, "cannot keep this clone's host id");
            }
            s
        }
    };
    sanitize(&format!("{machine}-{suffix}"))
}

/// The machine's hostname (`localhost` when it cannot be read).
fn machine_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(s) if rc == 0 && !s.is_empty() => s.to_string(),
        _ => "localhost".to_string(),
    }
}

/// A host name fit for a trailer and a ref-free message: no spaces, slashes or newlines.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
