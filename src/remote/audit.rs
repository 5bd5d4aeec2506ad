//! The proof read from the remote alone, not from any host's word: every claim ref's
//! reflog on the remote (each accepted update, old value to new) and the branch's history.
//!
//! A card is owned twice when a claim commit held by one host replaced one held by another
//! with no end between, or when an update replaced a value that was not its parent (a push
//! that skipped the compare-and-swap). A card is finished twice when two commits of the
//! branch each add it to `work/done/`.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::claim::{ClaimNote, CLAIMS_NS};

/// What the audit found.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Audit {
    /// Claim refs whose reflog was read.
    pub claims: usize,
    /// Accepted claim updates read.
    pub updates: usize,
    /// Cards held by two hosts at once.
    pub double_owners: Vec<String>,
    /// Cards whose claim moved to a commit that did not follow the value it replaced.
    pub broken_chains: Vec<String>,
    /// Cards added to `work/done/` by more than one commit.
    pub done_twice: Vec<String>,
    /// Distinct cards that reached `work/done/`.
    pub done: usize,
    /// Commits on the branch, and how many name their host.
    pub commits: usize,
    pub commits_naming_host: usize,
}

impl Audit {
    /// No card owned or finished twice.
    pub fn clean(&self) -> bool {
        self.double_owners.is_empty() && self.broken_chains.is_empty() && self.done_twice.is_empty()
    }
}

/// Audits the bare repository at `bare` (made with `core.logAllRefUpdates=always`).
pub fn audit(bare: &Path, branch: &str) -> Result<Audit, git2::Error> {
    let repo = git2::Repository::open_bare(bare)?;
    let mut a = Audit::default();
    let names: Vec<String> = repo
        .references_glob(&format!("{CLAIMS_NS}*"))?
        .flatten()
        .filter_map(|r| r.name().map(str::to_string))
        .collect();
    for name in names {
        a.claims += 1;
        let id = name.trim_start_matches(CLAIMS_NS).to_string();
        let log = repo.reflog(&name)?;
        let mut owner: Option<String> = None;
        let (mut double, mut broken) = (false, false);
        // The reflog is newest first.
        for e in log.iter().collect::<Vec<_>>().into_iter().rev() {
            a.updates += 1;
            let (old, new) = (e.id_old(), e.id_new());
            let Ok(commit) = repo.find_commit(new) else {
                continue;
            };
            if !old.is_zero() && commit.parent_id(0).ok() != Some(old) {
                broken = true;
            }
            match commit.message().and_then(ClaimNote::parse) {
                Some(n) if n.ended.is_none() => {
                    if owner.as_ref().is_some_and(|o| *o != n.host) {
                        double = true;
                    }
                    owner = Some(n.host);
                }
                Some(_) => owner = None,
                None => broken = true,
            }
        }
        if double {
            a.double_owners.push(id.clone());
        }
        if broken {
            a.broken_chains.push(id);
        }
    }
    let mut added: HashMap<String, usize> = HashMap::new();
    let mut walk = repo.revwalk()?;
    walk.push_ref(&format!("refs/heads/{branch}"))?;
    for oid in walk {
        let commit = repo.find_commit(oid?)?;
        a.commits += 1;
        if commit
            .message()
            .is_some_and(|m| m.lines().any(|l| l.starts_with("Pas-Host: ")))
        {
            a.commits_naming_host += 1;
        }
        let tree = commit.tree()?;
        let parent = commit.parent(0).ok().map(|p| p.tree()).transpose()?;
        let sub = |t: &git2::Tree| t.get_path(Path::new("work/done")).ok().map(|e| e.id());
        if parent.as_ref().map(sub) == Some(sub(&tree)) {
            continue;
        }
        let done_now = done_ids(&repo, &tree);
        let done_before = parent.map(|t| done_ids(&repo, &t)).unwrap_or_default();
        for id in done_now
            .into_keys()
            .filter(|i| !done_before.contains_key(i))
        {
            *added.entry(id).or_default() += 1;
        }
    }
    a.done = added.len();
    a.done_twice = added
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(id, _)| id)
        .collect();
    a.double_owners.sort();
    a.broken_chains.sort();
    a.done_twice.sort();
    Ok(a)
}

/// The cards in `work/done/` of `tree`, by blob (the subtree is read once per commit).
fn done_ids(repo: &git2::Repository, tree: &git2::Tree) -> HashMap<String, git2::Oid> {
    let Ok(entry) = tree.get_path(Path::new("work/done")) else {
        return HashMap::new();
    };
    let Ok(done) = repo.find_tree(entry.id()) else {
        return HashMap::new();
    };
    done.iter()
        .filter_map(|e| Some((e.name()?.strip_suffix(".yaml")?.to_string(), e.id())))
        .collect()
}
