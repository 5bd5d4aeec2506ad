//! Git worktrees for runs with `workdir: worktree`: one per card, at
//! `worktrees/<id>/` inside the workspace (a folder that ignores itself, so the user's
//! `git status` stays clean), on branch `pas/<id>`. When the run ends, whatever the agent
//! left is committed on that branch, so `base..pas/<id>` is exactly the agent's work, and
//! the worktree folder is removed (the branch keeps the work; a later attempt starts
//! from it).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use git2::{IndexAddOption, Repository, Signature};

/// A card's worktree, made for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worktree {
    pub path: PathBuf,
    /// `pas/<id>`.
    pub branch: String,
    /// The commit the branch started from (full hex).
    pub base: String,
}

/// The folder worktrees live in.
pub fn root(ws_root: &Path) -> PathBuf {
    ws_root.join("worktrees")
}

fn name(id: &str) -> String {
    format!("pas-{id}")
}

/// Makes the worktree of card `id`: on branch `pas/<id>`, made from `HEAD` unless an
/// earlier attempt left the branch (then the work goes on from it). Never over an
/// existing path.
pub fn create(ws_root: &Path, id: &str) -> Result<Worktree> {
    let repo = Repository::open(ws_root).with_context(|| {
        format!(
            "workdir: worktree needs a git repository at {}",
            ws_root.display()
        )
    })?;
    let dir = root(ws_root);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        crate::fsops::write_atomic(&ignore, b"*\n", false)?;
    }
    let path = dir.join(id);
    if std::fs::symlink_metadata(&path).is_ok() {
        bail!(
            "{} already exists: pas never makes a worktree over an existing path (remove it, or `git worktree remove` it)",
            path.display()
        );
    }
    // A stale registration of this worktree (its folder removed by hand) is pruned first.
    if let Ok(old) = repo.find_worktree(&name(id)) {
        let _ = old.prune(Some(git2::WorktreePruneOptions::new().valid(true)));
    }
    let head = repo
        .head()?
        .peel_to_commit()
        .context("HEAD has no commit to start from")?;
    let branch_name = format!("pas/{id}");
    let (branch, base) = match repo.find_branch(&branch_name, git2::BranchType::Local) {
        Ok(b) => {
            let tip = b.get().peel_to_commit()?;
            let base = repo.merge_base(head.id(), tip.id()).unwrap_or(head.id());
            (b, base)
        }
        Err(_) => (repo.branch(&branch_name, &head, false)?, head.id()),
    };
    let mut opts = git2::WorktreeAddOptions::new();
    opts.reference(Some(branch.get()));
    repo.worktree(&name(id), &path, Some(&opts))
        .with_context(|| format!("cannot make the worktree {}", path.display()))?;
    Ok(Worktree {
        path,
        branch: branch_name,
        base: base.to_string(),
    })
}

/// Commits everything in the worktree (new, changed and deleted files) on its branch;
/// nothing when the agent changed nothing. Returns the new commit, if any.
pub fn commit_all(wt: &Path, author: &str, message: &str) -> Result<Option<String>> {
    let repo = Repository::open(wt)?;
    let mut index = repo.index()?;
    index.add_all(["*"], IndexAddOption::DEFAULT, None)?;
    index.update_all(["*"], None)?;
    index.write()?;
    let tree_id = index.write_tree()?;
    let parent = repo.head()?.peel_to_commit()?;
    if parent.tree_id() == tree_id {
        return Ok(None);
    }
    let tree = repo.find_tree(tree_id)?;
    let who = Signature::now(author, &format!("{author}@pas.invalid"))?;
    let id = repo.commit(Some("HEAD"), &who, &who, message, &tree, &[&parent])?;
    Ok(Some(id.to_string()))
}

/// Removes the worktree folder of card `id` and its registration in the repository.
pub fn remove(ws_root: &Path, id: &str) {
    let path = root(ws_root).join(id);
    if let Err(e) = std::fs::remove_dir_all(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a run's worktree");
        }
    }
    if let Ok(repo) = Repository::open(ws_root) {
        if let Ok(w) = repo.find_worktree(&name(id)) {
            let _ = w.prune(Some(git2::WorktreePruneOptions::new().valid(true)));
        }
    }
}

/// Commits what a run left and removes its worktree (a run that ended in any way).
pub fn finish(ws_root: &Path, id: &str, agent: &str, why: &str) -> Option<String> {
    let path = root(ws_root).join(id);
    let commit = if path.exists() {
        commit_all(&path, agent, &format!("{agent}: {id} ({why})"))
            .map_err(|e| tracing::warn!(job = id, error = %e, "cannot commit a run's worktree"))
            .ok()
            .flatten()
    } else {
        None
    };
    remove(ws_root, id);
    commit
}
