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
            Err(e) => send(Input::Rescan(format!("watch error: {e}"))),
        }
    })?;
    watcher.watch(work, RecursiveMode::Recursive)?;
    if agents.is_dir() {
        watcher.watch(agents, RecursiveMode::NonRecursive)?;
    }
    Ok((watcher, flag))
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
