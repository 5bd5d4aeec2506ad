//! Making a remote and its clones: `pas init --remote`, the tests and `pas bench hosts`.

use std::path::Path;

use super::git::{Git, RemoteError};

/// Creates a bare repository at `bare` that keeps a reflog of every ref update (the audit
/// reads the claims' histories from it) and refuses nothing but what the lease refuses.
pub fn create_bare(bare: &Path) -> Result<(), RemoteError> {
    let parent = bare.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|source| RemoteError::Spawn {
        dir: parent.to_path_buf(),
        source,
    })?;
    let git = Git::new(parent, "origin");
    let path = bare.to_string_lossy();
    git.run(
        "init",
        &["init", "--quiet", "--bare", "--initial-branch=main", &path],
    )?;
    let git = Git::new(bare, "origin");
    git.run("config", &["config", "core.logAllRefUpdates", "always"])?;
    Ok(())
}

/// Puts a board of inbox cards `ids` on the bare repository's `main` in one commit
/// (libgit2, straight into the bare repository: no clone, no work tree).
pub fn seed_board(bare: &Path, _scratch: &Path, ids: &[String]) -> Result<(), RemoteError> {
    let local = |source| RemoteError::Local {
        dir: bare.to_path_buf(),
        source,
    };
    let repo = git2::Repository::open_bare(bare).map_err(local)?;
    let empty = repo
        .treebuilder(None)
        .and_then(|b| b.write())
        .and_then(|t| repo.find_tree(t))
        .map_err(local)?;
    let mut b = git2::build::TreeUpdateBuilder::new();
    let keep = repo.blob(b"").map_err(local)?;
    for dir in ["done", "failed", "assigned", "review"] {
        b.upsert(format!("work/{dir}/.keep"), keep, git2::FileMode::Blob);
    }
    for id in ids {
        let blob = repo
            .blob(format!("title: card {id}\n").as_bytes())
            .map_err(local)?;
        b.upsert(format!("work/inbox/{id}.yaml"), blob, git2::FileMode::Blob);
    }
    let tree = b
        .create_updated(&repo, &empty)
        .and_then(|t| repo.find_tree(t))
        .map_err(local)?;
    let sig = git2::Signature::now("pas", "pas@localhost").map_err(local)?;
    let parent = repo
        .refname_to_id("refs/heads/main")
        .ok()
        .and_then(|o| repo.find_commit(o).ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        &format!("pas: seed {} cards\n\nPas-Host: seed\n", ids.len()),
        &tree,
        &parents,
    )
    .map_err(local)?;
    Ok(())
}

/// Clones `url` (a path or URL) to `dir`.
pub fn clone(url: &Path, dir: &Path) -> Result<(), RemoteError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let git = Git::new(parent, "origin");
    git.run(
        "clone",
        &[
            "clone",
            "--quiet",
            &url.to_string_lossy(),
            &dir.to_string_lossy(),
        ],
    )?;
    Ok(())
}
