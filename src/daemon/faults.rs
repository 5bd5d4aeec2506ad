//! Card files that cannot be written for a reason outside pas (a full disk, a quota, a
//! file system remounted read-only): said once, clearly, then retried with back-off until
//! the writes work again.
//!
//! Nothing is lost meanwhile: a move that fails puts the card back where it was
//! (`fsops::move_card`), and an in-place write that fails keeps the card's new text in
//! memory. But a full disk raises no watch events, so nothing else would make the engine
//! try again once space is freed: it sets a wake-up of its own.

use std::path::Path;
use std::time::{Duration, Instant};

use super::engine::Engine;

/// The first retry after a failed write; each further failure doubles it up to
/// [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between retries: how late pas may notice that space was freed.
const MAX_RETRY: Duration = Duration::from_secs(2);
/// While failures go on, the error is repeated this often (each one is at debug level).
const REPEAT_EVERY: Duration = Duration::from_secs(30);

/// The state of a run of failed card writes.
#[derive(Debug, Default)]
pub(super) struct FileFaults {
    /// Failures since the last write that worked.
    failures: u32,
    /// When the run began.
    since: Option<Instant>,
    /// When to plan (and write) again.
    retry_at: Option<Instant>,
    /// When the error was last logged.
    said: Option<Instant>,
}

impl FileFaults {
    /// When the engine must wake to retry, if a retry is pending.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }
}

impl Engine {
    /// A card file could not be moved or written: log why (the first time in a run of
    /// failures, and now and then while it lasts) and schedule a retry.
    /// `what` says what was attempted, with the paths, e.g. `move card J-7 from
    /// work/inbox/J-7.yaml to work/assigned/a/J-7.yaml`.
    pub(super) fn file_failed(&mut self, what: &str, id: &str, e: &std::io::Error) {
        let f = &mut self.faults;
        f.failures = f.failures.saturating_add(1);
        let now = self.clock.instant();
        f.since.get_or_insert(now);
        let delay = FIRST_RETRY
            .saturating_mul(1u32 << (f.failures - 1).min(16))
            .min(MAX_RETRY);
        f.retry_at = Some(now + delay);
        if f.said
            .is_none_or(|t| now.saturating_duration_since(t) >= REPEAT_EVERY)
        {
            f.said = Some(now);
            let hint = io_hint(e, &self.ws.root);
            tracing::error!(
                job = id,
                failures = f.failures,
                "cannot {what}: {e}; {hint}"
            );
        } else {
            tracing::debug!(job = id, "cannot {what}: {e}; will retry");
        }
    }

    /// A card file was written: a run of failures, if any, is over. A retry already
    /// scheduled stays: another card may have failed in the same plan.
    pub(super) fn file_ok(&mut self) {
        let now = self.clock.instant();
        let f = &mut self.faults;
        if let Some(since) = f.since.take() {
            tracing::info!(
                failures = f.failures,
                after_ms = now.saturating_duration_since(since).as_millis() as u64,
                "card files can be written again; pas catches up"
            );
            f.failures = 0;
            f.said = None;
        }
    }

    /// Whether a retry is due; if so, the next step plans and writes again.
    pub(super) fn take_due_retry(&mut self) -> bool {
        match self.faults.retry_at {
            Some(t) if t <= self.clock.instant() => {
                self.faults.retry_at = None;
                self.replan = true;
                true
            }
            _ => false,
        }
    }
}

/// What an I/O error means for the user, and what pas does about it.
pub(crate) fn io_hint(e: &std::io::Error, root: &Path) -> String {
    let what = match e.raw_os_error() {
        Some(libc::ENOSPC) => format!("no space left on the device holding {}", root.display()),
        Some(libc::EDQUOT) => format!("the disk quota for {} is used up", root.display()),
        Some(libc::EROFS) => format!("the file system holding {} is read-only", root.display()),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            format!(
                "pas may not write there (check the owner and mode of {})",
                root.display()
            )
        }
        _ => "the card stays where it was".to_string(),
    };
    format!("{what}; pas keeps the card where it was, retries, and catches up once this is fixed")
}
