//! notify -> our own events. The callback never blocks: it turns each notify event into
//! `Input`s and hands them on over a bounded channel; a full channel, an overflow or an
//! error becomes "reconcile everything" (a full rescan), so no change is ever missed.
//!
//! Debouncing and rename pairing happen downstream: the daemon drains everything queued
//! into one batch and reconciles by card id, so the two halves of a rename (and any burst
//! of writes to one file) resolve to a single look at that card. A fixed debounce timer
//! (as in notify-debouncer-full) would add its window to every card's latency instead.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// How often heartbeat changes are handed to the daemon at most.
pub const BEAT_TICK: std::time::Duration = std::time::Duration::from_millis(20);

/// Whether a changed file can be read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Renamed into place, closed after writing, or removed: look now.
    Ready,
    /// Being written in place: look once it has been quiet for `settle_ms`.
    Writing,
}

/// What the watcher (and the signal handler) tell the daemon.
#[derive(Debug)]
pub enum Input {
    Path(PathBuf, Readiness),
    Rescan(String),
    Shutdown,
    /// An LLM job card's call ended: its `result` mapping, or why it failed.
    LlmDone {
        id: String,
        result: Result<serde_yaml::Value, String>,
    },
}

/// Starts watching `work/` (recursively) and `agents/`. The flag it returns is set when
/// events were dropped because the channel was full; the daemon then rescans everything
/// (it is certain to wake, since a full channel has events waiting).
pub fn start(
    work: &Path,
    agents: &Path,
    tx: SyncSender<Input>,
) -> notify::Result<(RecommendedWatcher, Arc<AtomicBool>)> {
    let overflowed = Arc::new(AtomicBool::new(false));
    let flag = overflowed.clone();
    let tx_beats = tx.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let send = |input: Input| match tx.try_send(input) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => overflowed.store(true, Ordering::SeqCst),
            Err(TrySendError::Disconnected(_)) => {}
        };
        match res {
            Ok(event) if event.need_rescan() => send(Input::Rescan("watch overflow".into())),
            Ok(event) => {
                let Some(readiness) = readiness(&event.kind) else {
                    return;
                };
                for p in event.paths {
                    send(Input::Path(p, readiness));
                }
            }
            // Most likely the watch limit, met by a folder created since (assigned/<agent>):
            // the rescan still takes it in, and the log says what to raise.
            Err(e) => send(Input::Rescan(match limit_hint(&e) {
                Some(hint) => format!("watch error: {hint}"),
                None => format!("watch error: {e}"),
            })),
        }
    })?;
    watcher.watch(work, RecursiveMode::Recursive)?;
    // Heartbeats have a watcher of their own that reads in ticks (see `start_beats`).
    let beats = work.join("heartbeats");
    match start_beats(&beats, tx_beats, BEAT_TICK) {
        Ok(()) => {
            let _ = watcher.unwatch(&beats);
        }
        Err(e) => tracing::warn!(error = %e, "heartbeats are watched one event at a time"),
    }
    // Agents' span files have a watcher of their own too (trace::jsonl).
    let _ = watcher.unwatch(&work.join("traces"));
    if agents.is_dir() {
        watcher.watch(agents, RecursiveMode::NonRecursive)?;
    }
    Ok((watcher, flag))
}

/// The kernel limit behind a watch error, said so a user can act on it: the sysctl, its
/// value now and the command that raises it. `None` when the error is something else.
///
/// inotify reports a full watch table as ENOSPC (notify: `MaxFilesWatch`), which reads
/// like a full disk; too many inotify instances as EMFILE, which reads like the process's
/// own file limit (and may be: both are named).
pub fn limit_hint(e: &notify::Error) -> Option<String> {
    let errno = match &e.kind {
        notify::ErrorKind::MaxFilesWatch => Some(libc::ENOSPC),
        notify::ErrorKind::Io(io) => io.raw_os_error(),
        _ => None,
    };
    let (key, raise, what, also) = match errno? {
        libc::ENOSPC => ("max_user_watches", 524_288, "inotify watches", ""),
        libc::EMFILE => (
            "max_user_instances",
            1024,
            "inotify instances",
            " (or the process's open-file limit, `ulimit -n`)",
        ),
        _ => return None,
    };
    let now = std::fs::read_to_string(format!("/proc/sys/fs/inotify/{key}"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Some(format!(
        "the per-user limit of {what} is reached{also}: fs.inotify.{key} = {now}; raise it \
         with `sudo sysctl fs.inotify.{key}={raise}` (and a line in /etc/sysctl.d/ to keep \
         it after a reboot)"
    ))
}

fn readiness(kind: &EventKind) -> Option<Readiness> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Readiness::Ready),
        EventKind::Access(_) => None,
        EventKind::Create(CreateKind::Folder) => Some(Readiness::Ready),
        EventKind::Create(_) => Some(Readiness::Writing),
        EventKind::Modify(ModifyKind::Data(_)) | EventKind::Modify(ModifyKind::Any) => {
            Some(Readiness::Writing)
        }
        EventKind::Modify(ModifyKind::Metadata(_)) => None,
        _ => Some(Readiness::Ready),
    }
}

/// Watches `work/heartbeats/` on its own inotify instance and hands the changed files on
/// at most once per `tick`.
///
/// A thousand agents beating every second would otherwise wake the notify thread and the
/// engine a thousand times a second each; read in ticks, the cost is a few wakeups per
/// tick whatever the rate, and a beat is taken in within one tick (liveness works in
/// intervals, not milliseconds). An idle swarm costs nothing: the first event is awaited
/// with a blocking read.
pub fn start_beats(
    dir: &Path,
    tx: SyncSender<Input>,
    tick: std::time::Duration,
) -> std::io::Result<()> {
    use inotify::{EventMask, Inotify, WatchMask};
    let mut ino = Inotify::init()?;
    ino.watches().add(
        dir,
        WatchMask::MODIFY | WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::CREATE,
    )?;
    let dir = dir.to_path_buf();
    std::thread::Builder::new()
        .name("pas-heartbeats".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut names: std::collections::BTreeSet<std::ffi::OsString> = Default::default();
            // Returns whether the kernel's queue overflowed (events were lost).
            let take =
                |events: inotify::Events<'_>,
                 names: &mut std::collections::BTreeSet<std::ffi::OsString>| {
                    let mut overflow = false;
                    for e in events {
                        if e.mask.contains(EventMask::Q_OVERFLOW) {
                            overflow = true;
                        } else if let Some(n) = e.name {
                            names.insert(n.to_os_string());
                        }
                    }
                    overflow
                };
            loop {
                let mut overflow = false;
                match ino.read_events_blocking(&mut buf) {
                    Ok(events) => overflow |= take(events, &mut names),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read heartbeat events: polling the folder every second instead");
                        return poll_beats(&dir, &tx);
                    }
                }
                std::thread::sleep(tick);
                // Drain what came during the tick (WouldBlock ends it).
                while let Ok(events) = ino.read_events(&mut buf) {
                    overflow |= take(events, &mut names);
                }
                if overflow {
                    if let Ok(rd) = std::fs::read_dir(&dir) {
                        names.extend(rd.flatten().map(|e| e.file_name()));
                    }
                }
                for n in std::mem::take(&mut names) {
                    if tx.send(Input::Path(dir.join(n), Readiness::Ready)).is_err() {
                        return; // the daemon is gone
                    }
                }
            }
        })?;
    Ok(())
}

/// The fallback when the heartbeat watch fails: every file of the folder, once a second
/// (each look reads only what was appended, so liveness keeps working).
fn poll_beats(dir: &Path, tx: &SyncSender<Input>) {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            if tx.send(Input::Path(e.path(), Readiness::Ready)).is_err() {
                return;
            }
        }
    }
}
