//! Doing things to files safely: atomic writes, moves that never overwrite, rejection.
//!
//! Every write is write-temp-then-rename, so a reader never sees half a file and a crash
//! leaves either the old or the new content. A card changes folder and content in three
//! steps through a private staging folder: rename it out of its folder (atomic; whoever
//! renames first owns it, the Maildir rule), rewrite it there, then rename it into the
//! target without overwriting anything. No one else ever sees a card twice, and a crash
//! between the steps leaves it in staging, where start-up recovery finds it.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A file's identity and version as seen by `stat`: pas skips re-reading a file whose
/// stamp it already knows (its own writes echo back as watch events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub len: u64,
    pub mtime: SystemTime,
    pub ino: u64,
}

impl Stamp {
    /// The stamp of `path`, not following symbolic links.
    pub fn of(path: &Path) -> io::Result<Stamp> {
        let m = fs::symlink_metadata(path)?;
        Ok(Stamp::from_meta(&m))
    }

    /// The stamp from metadata already read.
    pub fn from_meta(m: &fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: m.len(),
            mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            ino: m.ino(),
        }
    }
}

/// A temporary name beside `path` that pas (and every other reader) ignores.
fn temp_name(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(".{name}.{}.tmp", ulid::Ulid::new()))
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8], fsync: bool) -> io::Result<()> {
    let tmp = temp_name(path);
    let result = (|| {
        // A new file, never one that is there (a link planted at the name is not followed).
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if fsync {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp); // our own temp file, never a card
    }
    result
}

/// Renames `from` to `to` unless `to` exists; `Ok(false)` when it does.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let a = CString::new(from.as_os_str().as_bytes())?;
        let b = CString::new(to.as_os_str().as_bytes())?;
        // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them as given.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EEXIST) => return Ok(false),
            Some(libc::EINVAL) | Some(libc::ENOSYS) => {} // filesystem without it: fall back
            _ => return Err(err),
        }
    }
    match fs::hard_link(from, to) {
        Ok(()) => {
            fs::remove_file(from)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// How a staged move ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Moved {
    /// The card is at the target with the new content.
    Done(Stamp),
    /// The source was gone: someone else moved it first.
    Gone,
    /// The target name was taken; the card stays in staging at this path.
    Blocked(PathBuf),
}

/// Suffix of the new version of a card while it is written in staging. A `.partial`
/// file is never trusted: until it has landed, the held original is the card.
pub const STAGED_PARTIAL: &str = ".partial";

/// Prefix of spare files in staging.
const SPARE_PREFIX: &str = ".spare-";

/// Old card versions kept in staging as scratch files to write the next version into.
///
/// Why: on ext4 (without a journal, as on this project's machines) creating a file soon
/// after deleting others makes inode allocation scan "recently deleted" inodes, and a
/// rename or truncate that replaces data forces it to disk. A move that wrote a fresh file
/// and deleted the old one cost about a millisecond; recycling the superseded version as
/// the next scratch file needs no new inode, no deletion and no replacing rename.
#[derive(Debug, Default)]
pub struct Spares {
    dir: PathBuf,
    free: Vec<PathBuf>,
}

impl Spares {
    /// The spares already in `staging` (left by earlier runs or other pas processes).
    pub fn open(staging: &Path) -> Spares {
        let free = fs::read_dir(staging)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(SPARE_PREFIX))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        Spares {
            dir: staging.to_path_buf(),
            free,
        }
    }

    /// A writable file at `path`: a spare renamed there, or a new file. A spare is written
    /// into in place, so it must be a regular file with no other name: a hard link's other
    /// name may be outside the workspace (an agent's card that was a hard link to a file of
    /// someone else's becomes, once superseded, a spare), and writing into it would write
    /// there. Such a spare is dropped (its name removed; the other name keeps the data).
    fn take(&mut self, path: &Path) -> io::Result<fs::File> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        while let Some(spare) = self.free.pop() {
            if fs::rename(&spare, path).is_err() {
                continue; // another pas process took it first; try the next
            }
            let opened = fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(path);
            match opened {
                Ok(f) if f.metadata().is_ok_and(|m| m.is_file() && m.nlink() == 1) => return Ok(f),
                _ => {
                    let _ = fs::remove_file(path);
                }
            }
        }
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
    }

    /// Keeps a superseded version as a spare, unless it is not a plain file of its own
    /// (a hard link, a link): then only its name here is removed.
    pub fn give(&mut self, path: &Path) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let own = fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.nlink() == 1);
        if !own {
            return fs::remove_file(path);
        }
        let spare = self
            .dir
            .join(format!("{SPARE_PREFIX}{}", ulid::Ulid::new()));
        fs::rename(path, &spare)?;
        self.free.push(spare);
        Ok(())
    }
}

/// Moves the card at `from` to `to` with new content `text`, through `staging`:
/// hold the original (one rename: the claim), write the new version into a spare, land
/// it without overwriting, then keep the held original as the next spare.
pub fn move_card(
    from: &Path,
    to: &Path,
    text: &str,
    spares: &mut Spares,
    fsync: bool,
) -> io::Result<Moved> {
    let name = from
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let held = spares.dir.join(&name);
    let fresh = spares.dir.join(format!("{name}{STAGED_PARTIAL}"));
    match fs::rename(from, &held) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Moved::Gone),
        Err(e) => return Err(e),
    }
    let written = (|| {
        let mut f = spares.take(&fresh)?;
        f.write_all(text.as_bytes())?;
        // Shrink to the new length (never to zero, which ext4 treats as a replacement).
        f.set_len(text.len() as u64)?;
        if fsync {
            f.sync_all()?;
        }
        Ok::<(), io::Error>(())
    })();
    if let Err(e) = written {
        // Put the original back where it was; the partial version becomes a spare.
        let _ = spares.give(&fresh);
        let _ = rename_no_replace(&held, from);
        return Err(e);
    }
    let landed = match land(&fresh, to) {
        Ok(landed) => landed,
        Err(e) => {
            // The target folder could not be made (a full disk): as above, the original
            // goes back, so the card is never left out of every state folder.
            let _ = spares.give(&fresh);
            let _ = rename_no_replace(&held, from);
            return Err(e);
        }
    };
    // The held original is now superseded by the landed (or blocked) new version. Another
    // pas process moving the same card right after this landing holds its original under
    // the same name, replacing ours, and may have given it away already: nothing is lost.
    match spares.give(&held) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        given => given?,
    }
    Ok(landed)
}

/// Puts a staged file at `to` without overwriting; creates the folder as needed.
pub fn land(staged: &Path, to: &Path) -> io::Result<Moved> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
        // Never into a linked folder (`assigned/<agent>` or a state folder swapped for a
        // link to elsewhere): the card would land wherever it points.
        for d in [Some(dir), dir.parent()].into_iter().flatten() {
            if fs::symlink_metadata(d).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a symbolic link; pas never writes through links",
                        d.display()
                    ),
                ));
            }
        }
    }
    let stamp = Stamp::of(staged)?;
    if rename_no_replace(staged, to)? {
        Ok(Moved::Done(stamp))
    } else {
        Ok(Moved::Blocked(staged.to_path_buf()))
    }
}

/// Moves `path` into `rejected` with a `<name>.reason.txt` beside it; returns the new path.
/// The name gets a `.1`, `.2`, ... suffix when taken, so nothing is ever overwritten.
pub fn reject(path: &Path, rejected: &Path, reason: &str) -> io::Result<(PathBuf, PathBuf)> {
    fs::create_dir_all(rejected)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unnamed".into());
    for n in 0u32.. {
        let candidate = if n == 0 {
            name.clone()
        } else {
            format!("{name}.{n}")
        };
        let target = rejected.join(&candidate);
        let reason_path = rejected.join(format!("{candidate}.reason.txt"));
        if fs::symlink_metadata(&reason_path).is_ok() || fs::symlink_metadata(&target).is_ok() {
            continue;
        }
        write_atomic(&reason_path, reason.as_bytes(), false)?;
        match rename_no_replace(path, &target) {
            Ok(true) => return Ok((target, reason_path)),
            Ok(false) => {}
            Err(e) => {
                // The file went away (moved by its writer) or could not be moved: no reason
                // file may stand without the file it explains.
                let _ = fs::remove_file(&reason_path);
                return Err(e);
            }
        }
    }
    unreachable!("u32 suffixes exhausted") // 4 billion rejected files of one name
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that went away before it could be rejected leaves no reason file behind (the
    /// demo once showed a reason for a card its agent had just moved to done/).
    #[test]
    fn rejecting_a_file_that_is_gone_leaves_no_reason() {
        let d = tempfile::tempdir().unwrap();
        let rejected = d.path().join("rejected");
        assert!(reject(&d.path().join("gone.yaml"), &rejected, "why").is_err());
        assert_eq!(fs::read_dir(&rejected).unwrap().count(), 0);
    }

    #[test]
    fn atomic_write_and_no_replace() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        write_atomic(&a, b"one", false).unwrap();
        write_atomic(&b, b"two", false).unwrap();
        assert!(!rename_no_replace(&a, &b).unwrap());
        assert_eq!(fs::read(&b).unwrap(), b"two");
        fs::remove_file(&b).unwrap();
        assert!(rename_no_replace(&a, &b).unwrap());
        assert_eq!(fs::read(&b).unwrap(), b"one");
        // No temp files are left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn move_card_reports_gone_and_blocked() {
        let d = tempfile::tempdir().unwrap();
        let staging = d.path().join(".staging");
        fs::create_dir_all(&staging).unwrap();
        let mut spares = Spares::open(&staging);
        let from = d.path().join("inbox/x.yaml");
        let to = d.path().join("assigned/w/x.yaml");
        fs::create_dir_all(from.parent().unwrap()).unwrap();
        fs::write(&from, "title: a much longer first version\n").unwrap();
        assert!(matches!(
            move_card(&from, &to, "title: y\n", &mut spares, false).unwrap(),
            Moved::Done(_)
        ));
        assert_eq!(fs::read_to_string(&to).unwrap(), "title: y\n");
        // The superseded version is a spare; the next move reuses it and shrinks it.
        assert_eq!(spares.free.len(), 1);
        let back = d.path().join("inbox/x.yaml");
        assert!(matches!(
            move_card(&to, &back, "title: z\n", &mut spares, false).unwrap(),
            Moved::Done(_)
        ));
        assert_eq!(fs::read_to_string(&back).unwrap(), "title: z\n");
        assert_eq!(spares.free.len(), 1);
        assert_eq!(
            move_card(&to, &back, "t", &mut spares, false).unwrap(),
            Moved::Gone
        );
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::write(&to, "title: other\n").unwrap();
        assert!(matches!(
            move_card(&back, &to, "title: w\n", &mut spares, false).unwrap(),
            Moved::Blocked(_)
        ));
        assert_eq!(fs::read_to_string(&to).unwrap(), "title: other\n");
    }

    #[test]
    fn reject_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let rejected = d.path().join("rejected");
        for i in 0..3 {
            let p = d.path().join("bad.yaml");
            fs::write(&p, format!("{i}")).unwrap();
            let (target, reason) = reject(&p, &rejected, "why").unwrap();
            assert_eq!(fs::read_to_string(target).unwrap(), i.to_string());
            assert_eq!(fs::read_to_string(reason).unwrap(), "why");
        }
        assert_eq!(fs::read_dir(&rejected).unwrap().count(), 6);
    }
}
