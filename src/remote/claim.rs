//! Claim commits: what a claim ref points at, and how one is written and read.
//!
//! A claim is a tiny commit (the empty tree) whose message names the card, the host, the
//! agent, the agent's epoch and the lease. A renewal is a new commit with the previous one
//! as parent, so "the same claim commit unchanged" is a comparison of object ids. An ended
//! claim points at a terminal commit (outcome `done`, `failed`, `requeued`, ...) rather
//! than being deleted: deletions contend on the remote's `packed-refs.lock`, and a
//! terminal commit keeps the whole chain of a card's claims as its audit trail.

use std::path::Path;

use super::git::RemoteError;

/// Where claims live on the remote.
pub const CLAIMS_NS: &str = "refs/pas/claims/";

/// The remote ref of card `id`'s claim.
pub fn claim_ref(id: &str) -> String {
    format!("{CLAIMS_NS}{id}")
}

/// What a claim commit says.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimNote {
    pub card: String,
    pub host: String,
    pub agent: String,
    pub epoch: u64,
    pub lease_s: f64,
    /// `None` while held; the outcome once ended.
    pub ended: Option<Outcome>,
}

/// How a claim ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The card was finished (done, failed or sent to review) by its owner.
    Finished,
    /// The card went back to the inbox (taken back, lease expired, released): claimable.
    Requeued,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Finished => "finished",
            Outcome::Requeued => "requeued",
        }
    }
}

impl ClaimNote {
    /// Whether another host may claim the card over this commit.
    pub fn claimable(&self) -> bool {
        self.ended == Some(Outcome::Requeued)
    }

    /// The commit message: a subject for `git log`, then one trailer per field.
    pub fn message(&self, why: &str) -> String {
        let state = match self.ended {
            None => "held".to_string(),
            Some(o) => format!("ended {}", o.as_str()),
        };
        let why = if why.is_empty() {
            String::new()
        } else {
            format!(" ({why})")
        };
        format!(
            "pas-claim: {} {state} by {}/{}{why}\n\nPas-Card: {}\nPas-Host: {}\nPas-Agent: {}\nPas-Epoch: {}\nPas-Lease-S: {}\nPas-Claim: {state}\n",
            self.card, self.host, self.agent, self.card, self.host, self.agent, self.epoch, self.lease_s
        )
    }

    /// Reads a claim commit's message; `None` when it is not one.
    pub fn parse(message: &str) -> Option<ClaimNote> {
        let field = |key: &str| {
            message
                .lines()
                .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        };
        let ended = match field("Pas-Claim:")?.as_str() {
            "held" => None,
            "ended finished" => Some(Outcome::Finished),
            "ended requeued" => Some(Outcome::Requeued),
            _ => return None,
        };
        Some(ClaimNote {
            card: field("Pas-Card:")?,
            host: field("Pas-Host:")?,
            agent: field("Pas-Agent:").unwrap_or_default(),
            epoch: field("Pas-Epoch:")?.parse().ok()?,
            lease_s: field("Pas-Lease-S:")?.parse().ok()?,
            ended,
        })
    }
}

/// Writes a claim commit into the local clone's object store (libgit2: no process) and
/// returns its id. `parent` is the commit it follows, when that object is here.
pub fn write_claim(
    repo: &git2::Repository,
    note: &ClaimNote,
    why: &str,
    parent: Option<git2::Oid>,
) -> Result<git2::Oid, RemoteError> {
    let local = |source| RemoteError::Local {
        dir: repo.path().to_path_buf(),
        source,
    };
    let tree = repo
        .treebuilder(None)
        .and_then(|b| b.write())
        .and_then(|t| repo.find_tree(t))
        .map_err(local)?;
    let sig =
        git2::Signature::now(&format!("pas@{}", note.host), "pas@localhost").map_err(local)?;
    let parents: Vec<git2::Commit> = parent
        .and_then(|p| repo.find_commit(p).ok())
        .into_iter()
        .collect();
    let parents: Vec<&git2::Commit> = parents.iter().collect();
    repo.commit(None, &sig, &sig, &note.message(why), &tree, &parents)
        .map_err(local)
}

/// Reads the claim commit `oid` from the local object store.
pub fn read_claim(repo: &git2::Repository, oid: &str) -> Option<ClaimNote> {
    let oid = git2::Oid::from_str(oid).ok()?;
    let commit = repo.find_commit(oid).ok()?;
    ClaimNote::parse(commit.message()?)
}

/// Opens the clone at `dir`.
pub fn open(dir: &Path) -> Result<git2::Repository, RemoteError> {
    git2::Repository::open(dir).map_err(|source| RemoteError::Local {
        dir: dir.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_message_reads_back() {
        let mut n = ClaimNote {
            card: "J-7".into(),
            host: "box-a1b2".into(),
            agent: "coder-1".into(),
            epoch: 3,
            lease_s: 30.0,
            ended: None,
        };
        let m = n.message("");
        assert!(m.starts_with("pas-claim: J-7 held by box-a1b2/coder-1\n"));
        assert_eq!(ClaimNote::parse(&m), Some(n.clone()));
        n.ended = Some(Outcome::Requeued);
        let back = ClaimNote::parse(&n.message("lease expired")).unwrap();
        assert!(back.claimable());
        assert_eq!(ClaimNote::parse("pas: J-7 inbox -> done"), None);
    }
}
