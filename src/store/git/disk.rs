//! Staging the paths to commit: reading the disk, never through a symbolic link.
//!
//! A card that is a link (or sits in a linked folder) is hostile: its target may be anywhere,
//! outside the tree included. pas moves such cards to `work/rejected/`, and the commit must
//! neither contain them nor read what they point at, so every path is checked from the
//! workspace root down before it is opened, and on unix the open itself refuses a link
//! (`O_NOFOLLOW`) and does not wait on a FIFO (`O_NONBLOCK`). A file read here also yields its
//! index entry, so the real index can be updated without hashing the file again. A snapshot
//! (the text a card had at its transition) is committed without reading the disk; the file is
//! read only to tell whether the index may trust its stat data.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use git2::{IndexEntry, IndexTime, Oid};

use super::commit::{Source, Staged, Step};
use super::{git, io_at, GitError, GitStore};

impl GitStore {
    /// What the commit does with each of `sources`, storing blobs with `store`: a `Disk` path
    /// is read now (skipped when it is or lies under a link), a `Text` snapshot is stored as
    /// it is, an `Absent` path is removed. Paths outside the workspace are skipped.
    pub(super) fn stage(
        &self,
        sources: &BTreeMap<PathBuf, Source>,
        mut store: impl FnMut(&[u8]) -> Result<Oid, git2::Error>,
    ) -> Result<Staged, GitError> {
        let mut staged = Vec::with_capacity(sources.len());
        let mut real_dirs = HashSet::new();
        for (path, source) in sources {
            let rel = self
                .repo_rel(path)
                .filter(|r| !r.is_empty() && r.split('/').next() != Some(".git"));
            // The path below the workspace root; always there, as `repo_rel` starts with the prefix.
            let ws_rel = rel
                .as_deref()
                .and_then(|r| Path::new(r).strip_prefix(&self.prefix).ok());
            let (Some(rel), Some(ws_rel)) = (rel.as_deref(), ws_rel) else {
                tracing::warn!(path = %path.display(), "not committing a path outside the workspace");
                continue;
            };
            // Look at the file where the check looked: under the canonical root.
            let disk = self.root.join(ws_rel);
            let link = first_link(&self.root, ws_rel, &mut real_dirs);
            let on_disk = match link {
                // The path itself is a link (its folders are real): what git stores of a
                // link is its target's name, read with readlink, never the target.
                Some(link) if link == disk => match link_entry(&disk, rel) {
                    Some((target, entry)) => OnDisk::LinkItself(target, entry),
                    None => OnDisk::Gone,
                },
                Some(link) => OnDisk::Link(link),
                None if *source == Source::Absent => OnDisk::Gone,
                None => match read_file(&disk, rel) {
                    // A snapshot does not need the file: an unreadable one only differs.
                    Err(_) if *source != Source::Disk => OnDisk::Gone,
                    read => read?,
                },
            };
            let step = match (source, on_disk) {
                (Source::Disk, OnDisk::File(bytes, mut entry)) => {
                    entry.id = store(&bytes).map_err(git(|| format!("storing {rel}")))?;
                    Step::Put(entry)
                }
                (Source::Disk, OnDisk::Gone) => Step::Remove { unindex: true },
                (Source::Disk, OnDisk::LinkItself(target, mut entry)) => {
                    entry.id = store(&target).map_err(git(|| format!("storing {rel}")))?;
                    Step::Put(entry)
                }
                (Source::Disk, OnDisk::Refused(why)) => {
                    tracing::warn!(path = %path.display(), reason = %why, "not committing a file pas would not read");
                    self.exclude(rel);
                    continue;
                }
                (Source::Disk, OnDisk::Link(link)) => {
                    tracing::warn!(
                        path = %path.display(),
                        link = %link.display(),
                        "not committing a path that is (or is under) a symbolic link; pas never follows links"
                    );
                    continue;
                }
                (Source::Text(text), on_disk) => {
                    let id = store(text.as_bytes()).map_err(git(|| format!("storing {rel}")))?;
                    // The index may trust the stat data only of a file holding the snapshot;
                    // otherwise an entry without any makes `git status` hash the file.
                    let entry = match on_disk {
                        OnDisk::File(bytes, entry) if bytes == text.as_bytes() => entry,
                        _ => bare_entry(rel),
                    };
                    Step::Put(IndexEntry { id, ..entry })
                }
                (Source::Absent, on_disk) => {
                    // Something back at the path (a link counts) keeps its index entry.
                    let back = matches!(
                        on_disk,
                        OnDisk::Link(_) | OnDisk::LinkItself(..) | OnDisk::Refused(_)
                    ) || disk.symlink_metadata().is_ok_and(|m| !m.is_dir());
                    Step::Remove { unindex: !back }
                }
            };
            staged.push((rel.to_string(), step));
        }
        Ok(staged)
    }
}

impl GitStore {
    /// Keeps a file pas will not commit out of `git status` and a user's `git add -A` (which
    /// would read a sparse giant whole): one line in `.git/info/exclude`, never shared.
    fn exclude(&self, rel: &str) {
        let path = self.repo.path().join("info").join("exclude");
        let escaped: String = rel
            .chars()
            .flat_map(|c| {
                let special = matches!(c, '*' | '?' | '[' | ']' | '\\' | '!' | '#' | ' ');
                special
                    .then_some('\\')
                    .into_iter()
                    .chain(std::iter::once(c))
            })
            .collect();
        let line = format!("/{escaped}");
        let existing = crate::intake::read_text_if_present(&path, crate::intake::FileKind::Config)
            .ok()
            .flatten()
            .unwrap_or_default();
        if existing.lines().any(|l| l == line) {
            return;
        }
        let appended = (|| {
            use std::io::Write;
            fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
            let mut f = fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)?;
            let sep = if existing.is_empty() || existing.ends_with('\n') {
                ""
            } else {
                "\n"
            };
            f.write_all(format!("{sep}{line}\n").as_bytes())
        })();
        if let Err(e) = appended {
            tracing::warn!(path = rel, error = %e, "cannot add to .git/info/exclude");
        }
    }
}

/// What [`read_file`] found at a path.
pub(super) enum OnDisk {
    /// A file: its bytes, and its index entry (blob id not yet set).
    File(Vec<u8>, IndexEntry),
    /// Nothing (or a folder, a FIFO, a device): the path is removed from the tree.
    Gone,
    /// A symbolic link above the path (this one): skipped, never followed.
    Link(PathBuf),
    /// The path is itself a symbolic link: its target's name, and its index entry.
    LinkItself(Vec<u8>, IndexEntry),
    /// A file pas would not read (a hard link, over its cap): never staged.
    Refused(String),
}

/// The index entry of a symbolic link at `path` and the name it points to (`lstat` and
/// `readlink`: the target is never opened).
fn link_entry(path: &Path, rel: &str) -> Option<(Vec<u8>, IndexEntry)> {
    use std::os::unix::ffi::OsStrExt;
    let meta = path.symlink_metadata().ok()?;
    let target = fs::read_link(path).ok()?;
    let mut entry = index_entry(&meta, rel);
    entry.mode = 0o120000;
    Some((target.as_os_str().as_bytes().to_vec(), entry))
}

/// The most the git worker reads of a file under `rel`: what pas itself would read of that
/// kind of file (a sparse 64 GiB file in `work/rejected/` costs nothing to make and would
/// cost 64 GiB of memory to stage). Heartbeat files, committed only when
/// `git.track_heartbeats` asks, may be larger than any card.
fn cap_for(rel: &str) -> u64 {
    if rel.contains("/heartbeats/") || rel.starts_with("heartbeats/") {
        64 << 20
    } else {
        crate::intake::FileKind::Rejected.cap()
    }
}

/// The first symbolic link on the way from `root` down to `root/rel`, `rel` itself included,
/// if any: a card under a linked folder is as hostile as a linked card. `real_dirs` holds the
/// folders already found real, so a batch of thousands of cards in a dozen folders looks at
/// each folder once.
fn first_link(root: &Path, rel: &Path, real_dirs: &mut HashSet<PathBuf>) -> Option<PathBuf> {
    let mut at = root.to_path_buf();
    for part in rel.components() {
        at.push(part);
        if real_dirs.contains(&at) {
            continue;
        }
        match at.symlink_metadata() {
            Ok(meta) if meta.file_type().is_symlink() => return Some(at),
            Ok(meta) if meta.is_dir() => {
                real_dirs.insert(at.clone());
            }
            // A file or nothing: there is no link further down (opening reports the rest).
            _ => return None,
        }
    }
    None
}

/// Read a file for committing: its bytes and an index entry carrying its stat data, so the
/// real index sees it clean without hashing it again. [`OnDisk::Gone`] when it is gone (or not
/// a regular file). The caller has checked for links; on unix the open refuses one that
/// appeared since (`O_NOFOLLOW`), so a link's target is never opened, and does not block on
/// a FIFO (`O_NONBLOCK`, which regular files ignore).
pub(super) fn read_file(path: &Path, rel: &str) -> Result<OnDisk, GitError> {
    let mut open = fs::OpenOptions::new();
    open.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let mut file = match open.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(OnDisk::Gone),
        Err(e) if is_link_refused(&e) => return Ok(OnDisk::Link(path.to_path_buf())),
        // A socket cannot be opened at all (ENXIO), nor some devices: no file to commit.
        Err(_)
            if path
                .symlink_metadata()
                .is_ok_and(|m| !m.is_file() && !m.is_symlink()) =>
        {
            return Ok(OnDisk::Gone)
        }
        Err(e) => return Err(io_at(path)(e)),
    };
    // Stat the open file before reading it: if it changes after, its mtime tells git.
    let meta = file.metadata().map_err(io_at(path))?;
    if !meta.is_file() {
        return Ok(OnDisk::Gone);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.nlink() > 1 {
            return Ok(OnDisk::Refused(format!(
                "a hard link ({} names for one file)",
                meta.nlink()
            )));
        }
    }
    let cap = cap_for(rel);
    if meta.len() > cap {
        return Ok(OnDisk::Refused(format!(
            "{} bytes, over the {cap} bytes pas reads of such a file",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut file)
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(io_at(path))?;
    if bytes.len() as u64 > cap {
        return Ok(OnDisk::Refused(format!("grew past {cap} bytes while read")));
    }
    Ok(OnDisk::File(bytes, index_entry(&meta, rel)))
}

/// Whether opening failed because the path is a symbolic link (`O_NOFOLLOW` says `ELOOP`).
#[cfg(unix)]
fn is_link_refused(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// Whether opening failed because the path is a symbolic link (only unix can tell).
#[cfg(not(unix))]
fn is_link_refused(_: &io::Error) -> bool {
    false
}

/// An index entry with the file's stat data (truncated to 32 bits, as git itself does), so
/// `git status` trusts it. Elsewhere than unix git re-hashes the file: slower, still clean.
fn index_entry(meta: &fs::Metadata, rel: &str) -> IndexEntry {
    let mut entry = bare_entry(rel);
    entry.file_size = meta.len() as u32;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        entry.ctime = IndexTime::new(meta.ctime() as i32, meta.ctime_nsec() as u32);
        entry.mtime = IndexTime::new(meta.mtime() as i32, meta.mtime_nsec() as u32);
        (entry.dev, entry.ino) = (meta.dev() as u32, meta.ino() as u32);
        (entry.uid, entry.gid) = (meta.uid(), meta.gid());
        if meta.mode() & 0o111 != 0 {
            entry.mode = 0o100755;
        }
    }
    entry
}

/// An index entry for a plain file without stat data (and no blob id yet): git trusts no
/// stat data of it, a zero size included, so `git status` hashes the file to compare.
fn bare_entry(rel: &str) -> IndexEntry {
    let zero = IndexTime::new(0, 0);
    #[rustfmt::skip]
    let entry = IndexEntry {
        ctime: zero, mtime: zero, dev: 0, ino: 0, mode: 0o100644, uid: 0, gid: 0,
        file_size: 0, id: Oid::zero(), flags: 0, flags_extended: 0,
        path: rel.as_bytes().to_vec(),
    };
    entry
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use git2::{ObjectType, Repository};
    use std::time::Duration;

    /// A symbolic link is never committed nor followed: not a link to a file outside the
    /// repository, not a file under a linked folder, not a link to a FIFO outside. Opening a
    /// FIFO blocks until someone writes to it, so if pas opened one (read anything outside)
    /// the commit would hang: the test then unblocks it and fails.
    #[cfg(unix)]
    #[test]
    fn symbolic_links_are_skipped_never_followed() {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::{symlink, OpenOptionsExt};
        use std::sync::mpsc;

        let (dir, mut store) = setup();
        let root = dir.path().to_path_buf();
        let outside = tempfile::tempdir().unwrap();
        let secret = write(outside.path(), "secret.yaml", "token: SECRET\n");
        let fifo = outside.path().join("fifo.yaml");
        let c_fifo = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
        fs::create_dir_all(root.join("work/rejected")).unwrap();
        let linked_file = root.join("work/rejected/J-1.yaml");
        symlink(&secret, &linked_file).unwrap();
        let linked_fifo = root.join("work/rejected/J-2.yaml");
        symlink(&fifo, &linked_fifo).unwrap();
        let linked_dir = root.join("work/inbox");
        symlink(outside.path(), &linked_dir).unwrap();
        let card = write(&root, "work/done/J-3.yaml", "title: real\n");
        let paths = vec![
            linked_file,
            linked_fifo,
            linked_dir.join("secret.yaml"),
            linked_dir.join("fifo.yaml"),
            card,
        ];
        let (done, wait) = mpsc::channel();
        let committer = std::thread::spawn(move || {
            let oid = store.commit_paths(&paths, "pas: links", "pas");
            let _ = done.send(());
            (oid.map_err(|e| e.to_string()), store)
        });
        if wait.recv_timeout(Duration::from_secs(20)).is_err() {
            // Let a reader blocked on the FIFO go (a no-op when there is none), then fail.
            let _ = fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo);
            panic!("commit_paths opened a FIFO outside the repository through a link");
        }
        let (oid, store) = committer.join().unwrap();
        let oid = oid.unwrap().expect("the real card is committed");
        // The links themselves are committed as links (their targets' names, as git does);
        // nothing under the linked folder is.
        assert_eq!(
            tree_paths(&store.repo, oid),
            [
                "work/done/J-3.yaml",
                "work/rejected/J-1.yaml",
                "work/rejected/J-2.yaml"
            ]
        );
        let tree = store.repo.find_commit(oid).unwrap().tree().unwrap();
        let entry = tree.get_path(Path::new("work/rejected/J-1.yaml")).unwrap();
        assert_eq!(entry.filemode(), 0o120000);
        let blob = store.repo.find_blob(entry.id()).unwrap();
        assert_eq!(blob.content(), secret.as_os_str().as_encoded_bytes());
        let leaked = Oid::hash_object(ObjectType::Blob, b"token: SECRET\n").unwrap();
        assert!(store.repo.find_blob(leaked).is_err(), "outside file stored");
        let index = Repository::open(&root).unwrap().index().unwrap();
        let indexed: Vec<_> = index.iter().map(|e| e.path).collect();
        assert_eq!(
            indexed,
            [
                b"work/done/J-3.yaml".to_vec(),
                b"work/rejected/J-1.yaml".to_vec(),
                b"work/rejected/J-2.yaml".to_vec()
            ]
        );
        // And `git status` agrees: nothing left over (the linked folder is not pas's).
        let status = std::process::Command::new("git")
            .args(["status", "--porcelain", "--", "work/rejected"])
            .current_dir(&root)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&status.stdout), "");
    }

    /// The git worker never reads more of a file than pas would: a sparse 64 GiB file and a
    /// hard link to a file outside are left out of the commit (and out of `git status`,
    /// through `.git/info/exclude`), and the rest of the commit is made.
    #[cfg(unix)]
    #[test]
    fn giants_and_hard_links_are_not_staged() {
        let (dir, mut store) = setup();
        let root = dir.path().to_path_buf();
        let outside = tempfile::tempdir().unwrap();
        let secret = write(outside.path(), "secret.yaml", "token: SECRET\n");
        fs::create_dir_all(root.join("work/rejected")).unwrap();
        let giant = root.join("work/rejected/giant.yaml");
        fs::File::create(&giant).unwrap().set_len(64 << 30).unwrap();
        let hard = root.join("work/rejected/hard [1].yaml");
        fs::hard_link(&secret, &hard).unwrap();
        let card = write(&root, "work/done/J-3.yaml", "title: real\n");
        let oid = store
            .commit_paths(&[giant, hard, card], "pas: hostile", "pas")
            .unwrap()
            .expect("the real card is committed");
        assert_eq!(tree_paths(&store.repo, oid), ["work/done/J-3.yaml"]);
        let leaked = Oid::hash_object(ObjectType::Blob, b"token: SECRET\n").unwrap();
        assert!(store.repo.find_blob(leaked).is_err(), "outside file stored");
        let status = std::process::Command::new("git")
            .args(["status", "--porcelain"])
            .current_dir(&root)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&status.stdout), "");
    }
}
