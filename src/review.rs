//! The review step (SPEC section 2): a finished card waits in `work/review/` for a person's
//! `pas approve` or `pas reject`, and shows what its work changed.
//!
//! A card made in a git worktree carries `pas.branch` (e.g. `pas/<id>`) and `pas.base` (the
//! commit the branch started from); its diff is `git diff base..branch`, computed with git2
//! from the workspace's repository (where worktrees keep their branch refs). Both fields are
//! in a file anyone can write, so they are only ever used as a branch name and a hex commit
//! id given to git2, never to a shell, and refused when they are anything else.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::card::PasMeta;

/// Most bytes of diff text a page or `pas show` carries; the rest is cut with a note.
pub const MAX_DIFF_BYTES: usize = 256 * 1024;

/// What a card's work changed, as shown on the job page and by `pas show`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    /// The branch the work was done on.
    pub branch: String,
    /// The commit it started from.
    pub base: String,
    /// The unified diff (at most [`MAX_DIFF_BYTES`]), empty when it cannot be made.
    pub text: String,
    /// Files changed.
    pub files: usize,
    /// Whether `text` was cut at [`MAX_DIFF_BYTES`].
    pub truncated: bool,
    /// Why there is no diff (a missing branch, a bad name), when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The diff of a card whose `pas:` block names a branch and a base; `None` when it does
/// not (most cards: no diff section at all).
pub fn card_diff(root: &Path, meta: &PasMeta) -> Option<Diff> {
    let (branch, base) = (meta.branch.as_deref()?, meta.base.as_deref()?);
    let mut d = Diff {
        branch: branch.to_string(),
        base: base.to_string(),
        text: String::new(),
        files: 0,
        truncated: false,
        error: None,
    };
    if let Err(e) = fill(root, &mut d) {
        d.error = Some(e);
    }
    Some(d)
}

/// Whether `base` is a commit id: 4 to 64 hex digits (SHA-1 or SHA-256, maybe abbreviated).
fn is_hex_id(base: &str) -> bool {
    (4..=64).contains(&base.len()) && base.bytes().all(|b| b.is_ascii_hexdigit())
}

fn fill(root: &Path, d: &mut Diff) -> Result<(), String> {
    if !git2::Reference::is_valid_name(&format!("refs/heads/{}", d.branch)) {
        return Err(format!(
            "pas.branch {:?} is not a valid branch name",
            d.branch
        ));
    }
    if !is_hex_id(&d.base) {
        return Err(format!("pas.base {:?} is not a commit id (hex)", d.base));
    }
    let repo = git2::Repository::discover(root)
        .map_err(|e| format!("no git repository at {}: {}", root.display(), e.message()))?;
    let tip = repo
        .find_branch(&d.branch, git2::BranchType::Local)
        .and_then(|b| b.get().peel_to_commit())
        .map_err(|e| format!("branch {} not found: {}", d.branch, e.message()))?;
    let base = git2::Oid::from_str(&d.base)
        .and_then(|oid| match d.base.len() {
            40 | 64 => repo.find_commit(oid),
            n => repo
                .find_object_by_prefix(&d.base[..n], Some(git2::ObjectType::Commit))
                .and_then(|o| o.peel_to_commit()),
        })
        .map_err(|e| format!("base commit {} not found: {}", d.base, e.message()))?;
    let (old, new) = (
        base.tree().map_err(|e| e.message().to_string())?,
        tip.tree().map_err(|e| e.message().to_string())?,
    );
    let diff = repo
        .diff_tree_to_tree(Some(&old), Some(&new), None)
        .map_err(|e| format!("cannot diff: {}", e.message()))?;
    d.files = diff.deltas().len();
    let mut text = String::new();
    let mut truncated = false;
    // Printing stops (the callback says false) once the cap is reached: a branch that
    // rewrote a huge file costs no more than the cap.
    let printed = diff.print(git2::DiffFormat::Patch, |_, _, line| {
        let body = String::from_utf8_lossy(line.content());
        let origin = line.origin();
        let piece = match origin {
            '+' | '-' | ' ' => format!("{origin}{body}"),
            _ => body.into_owned(),
        };
        if text.len() + piece.len() > MAX_DIFF_BYTES {
            truncated = true;
            return false;
        }
        text.push_str(&piece);
        true
    });
    if let Err(e) = printed {
        if !truncated {
            return Err(format!("cannot print the diff: {}", e.message()));
        }
    }
    if truncated {
        let _ = write!(
            text,
            "\n… diff truncated at {} KiB ({} files changed in all)\n",
            MAX_DIFF_BYTES / 1024,
            d.files
        );
    }
    d.text = text;
    d.truncated = truncated;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hex_ids_and_branch_names_reach_git() {
        assert!(is_hex_id("0123abcd"));
        assert!(!is_hex_id("HEAD"));
        assert!(!is_hex_id("abc"));
        assert!(!is_hex_id("--output=/tmp/x"));
        let meta = PasMeta {
            branch: Some("../../etc".into()),
            base: Some("deadbeef".into()),
            ..PasMeta::default()
        };
        let d = card_diff(Path::new("/nonexistent"), &meta).expect("a diff section");
        assert!(d.error.unwrap().contains("not a valid branch name"));
        let meta = PasMeta {
            branch: Some("pas/J-1".into()),
            base: Some("main; rm -rf /".into()),
            ..PasMeta::default()
        };
        let d = card_diff(Path::new("/nonexistent"), &meta).expect("a diff section");
        assert!(d.error.unwrap().contains("not a commit id"));
        assert!(card_diff(Path::new("/x"), &PasMeta::default()).is_none());
    }
}
