//! Retrying a telemetry batch that failed to write.
//!
//! Some faults pass by themselves: another process holding the database's write lock (a
//! long `BEGIN EXCLUSIVE` in a script, a backup), a full disk, an I/O error. Those are
//! waited out for as long as the daemon runs: the rows are what `pas log`, the dashboard
//! and the cost reports read, and receipts and events have no other copy. Records that
//! arrive meanwhile queue in the writer's channel and follow once the batch is in. Other
//! errors (a corrupt file, a schema problem) get [`MAX_ATTEMPTS`], then the batch is dropped
//! with an error log, since retrying forever would never succeed. At shutdown a fault is
//! waited out for [`SHUTDOWN_GRACE`] at most.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

use super::db::{open, write_batch, Record};

/// Attempts at a batch whose error will not pass by itself.
const MAX_ATTEMPTS: u32 = 8;
/// How long a fault is waited out once the daemon is shutting down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The longest pause between two attempts (the busy timeout adds its 5 s to each).
const MAX_DELAY: Duration = Duration::from_secs(2);
/// While a fault lasts, the warning is repeated every this many attempts.
const REPEAT_EVERY: u32 = 10;

/// A fault that may pass by itself, and what it means for the user.
fn passing_fault(e: &rusqlite::Error, path: &Path) -> Option<String> {
    let path = path.display();
    Some(match e.sqlite_error_code()? {
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => format!(
            "telemetry database {path} is locked by another process (a long write \
             transaction?); pas keeps the rows and writes them once it is released"
        ),
        ErrorCode::DiskFull => format!(
            "no space left on the device holding telemetry database {path}; pas keeps the \
             rows and writes them once space is freed"
        ),
        ErrorCode::SystemIoFailure | ErrorCode::CannotOpen => format!(
            "telemetry database {path} cannot be written (I/O error); pas keeps the rows \
             and retries"
        ),
        _ => return None,
    })
}

/// Writes `batch`, retrying as the module doc says.
pub(super) fn write_with_retry(
    conn: &mut Connection,
    path: &Path,
    batch: &[Record],
    closing: &AtomicBool,
) {
    let mut delay = Duration::from_millis(50);
    let mut give_up: Option<Instant> = None;
    let started = Instant::now();
    for attempt in 1u32.. {
        let error = match write_batch(conn, batch) {
            Ok(()) => {
                if attempt > 1 {
                    tracing::info!(path = %path.display(), attempt, rows = batch.len(),
                        after_ms = started.elapsed().as_millis() as u64,
                        "telemetry rows written after the fault cleared");
                }
                return;
            }
            Err(error) => error,
        };
        let passing = passing_fault(&error, path);
        if closing.load(Ordering::SeqCst) {
            give_up.get_or_insert_with(|| Instant::now() + SHUTDOWN_GRACE);
        }
        let out_of_time = give_up.is_some_and(|t| Instant::now() >= t);
        if out_of_time || (passing.is_none() && attempt >= MAX_ATTEMPTS) {
            tracing::error!(path = %path.display(), rows = batch.len(), %error,
                "telemetry write failed for good; rows dropped (transitions are backfilled \
                 at start-up)");
            return;
        }
        if attempt == 1 || attempt % REPEAT_EVERY == 0 {
            let what = passing
                .as_deref()
                .unwrap_or("telemetry write failed; retrying");
            tracing::warn!(path = %path.display(), attempt, rows = batch.len(), %error, "{what}");
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(MAX_DELAY);
        if passing.is_none() {
            // A connection in a bad state is replaced; a lock or a full disk is not its fault.
            match open(path) {
                Ok(fresh) => *conn = fresh,
                Err(error) => tracing::warn!(%error, "cannot reopen telemetry database"),
            }
        }
    }
}
