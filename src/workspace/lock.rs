//! The daemon's lock: one `pas serve` per workspace. An exclusive `flock` on
//! `work/.pas-daemon.lock` that holds the daemon's pid; reading commands probe it (shared,
//! non-blocking) to say whether a daemon runs, without importing the daemon itself.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;

use anyhow::{bail, Context, Result};

use super::Workspace;

/// Holds the workspace's daemon lock; one daemon per workspace.
pub struct DaemonLock {
    _file: File,
}

/// Attempts at the lock, 10 ms apart, before pas believes another daemon holds it.
const LOCK_TRIES: u32 = 50;

/// Takes the daemon lock of `ws`, or says which process holds it.
pub fn lock(ws: &Workspace) -> Result<DaemonLock> {
    let path = ws.lock_path();
    std::fs::create_dir_all(ws.work())
        .with_context(|| format!("cannot create {}", ws.work().display()))?;
    let mut file = open_lock(&path)?;
    // The lock lives under work/, where anyone can write: a link or a FIFO put in its
    // place is moved to work/rejected/ (never written through), and a fresh lock made.
    let meta = file.metadata()?;
    if let Err(refused) = crate::intake::check(&meta, crate::intake::FileKind::Marker) {
        if !matches!(refused, crate::intake::Refused::TooBig { .. }) {
            drop(file);
            let why = format!("the daemon's lock file was refused: {refused}");
            tracing::warn!(file = %path.display(), reason = %why, "moved to work/rejected");
            crate::fsops::reject(&path, &ws.rejected(), &why)
                .with_context(|| format!("cannot move {} aside", path.display()))?;
            file = open_lock(&path)?;
        }
    }
    // A reader asking whether a daemon runs ([`holder`]) holds a shared lock for a moment:
    // that is no daemon, so a refusal is believed only once it has lasted a while.
    let mut tries = 0;
    let rc = loop {
        // SAFETY: flock on a file descriptor we own; released when the file is closed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        tries += 1;
        if rc == 0 || tries >= LOCK_TRIES {
            break rc;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    if rc != 0 {
        let mut holder = String::new();
        let _ = (&file).take(64).read_to_string(&mut holder);
        bail!(
            "another pas serve is already running on {} (pid {})",
            ws.root.display(),
            holder.trim()
        );
    }
    let _ = file.set_len(0);
    let _ = file.write_all(std::process::id().to_string().as_bytes());
    Ok(DaemonLock { _file: file })
}

/// Opens (or creates) the lock file without following a link or blocking on a FIFO.
fn open_lock(path: &std::path::Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .or_else(|e| {
            // A symbolic link (ELOOP) or a socket (ENXIO) where the lock should be: move it
            // aside as a file pas cannot accept, then make the lock anew.
            if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO)) {
                if let Some(work) = path.parent() {
                    let why = format!("the daemon's lock file was refused: {e}");
                    crate::fsops::reject(path, &work.join("rejected"), &why)?;
                    return std::fs::OpenOptions::new()
                        .create_new(true)
                        .read(true)
                        .write(true)
                        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                        .open(path);
                }
            }
            Err(e)
        })
        .with_context(|| format!("cannot open {}", path.display()))
}

/// The pid of the `pas serve` holding the workspace's lock, if one does (a shared probe:
/// it never blocks and never takes the lock from a daemon).
pub fn holder(ws: &Workspace) -> Option<String> {
    use std::os::fd::AsRawFd;
    let path = ws.lock_path();
    // Under work/, so anyone could have put a FIFO there: opened the one safe way.
    let (file, meta) = crate::intake::open(&path, crate::intake::FileKind::Marker).ok()?;
    // SAFETY: flock on a descriptor we own; a shared probe released when `file` drops.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc == 0 {
        return None;
    }
    let holder =
        crate::intake::read_open(file, &meta, crate::intake::FileKind::Marker).unwrap_or_default();
    Some(String::from_utf8_lossy(&holder).trim().to_string())
}

/// Whether a `pas serve` holds the workspace's lock.
pub fn daemon_running(ws: &Workspace) -> bool {
    holder(ws).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_readers_probe_does_not_keep_a_daemon_from_starting_but_a_daemon_does() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::at(dir.path());
        std::fs::create_dir_all(ws.work()).unwrap();
        std::fs::write(ws.lock_path(), "").unwrap();
        // A reader's shared probe, held for a moment as `holder` holds it.
        let probe = File::open(ws.lock_path()).unwrap();
        // SAFETY: flock on a descriptor this test owns.
        assert_eq!(
            unsafe { libc::flock(probe.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) },
            0
        );
        let reader = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(probe);
        });
        let held = lock(&ws).expect("a probe is no daemon");
        reader.join().unwrap();
        assert_eq!(holder(&ws), Some(std::process::id().to_string()));
        let err = lock(&ws).err().expect("a daemon holds it").to_string();
        assert!(
            err.contains("another pas serve is already running"),
            "{err}"
        );
        drop(held);
        assert_eq!(holder(&ws), None);
    }
}
