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

    /// A write failed at `now`: the retry waits twice as long as the last one (up to
    /// [`MAX_RETRY`]). Whether to say so loudly: the first failure of a run, then every
    /// [`REPEAT_EVERY`].
    pub(super) fn failed(&mut self, now: Instant) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.since.get_or_insert(now);
        let delay = FIRST_RETRY
            .saturating_mul(1u32 << (self.failures - 1).min(16))
            .min(MAX_RETRY);
        self.retry_at = Some(now + delay);
        let say = self
            .said
            .is_none_or(|t| now.saturating_duration_since(t) >= REPEAT_EVERY);
        if say {
            self.said = Some(now);
        }
        say
    }

    /// A write worked at `now`: the run of failures, if one was going on, is over; how
    /// many there were and for how long. A retry already scheduled stays (another card
    /// may have failed in the same plan).
    pub(super) fn worked(&mut self, now: Instant) -> Option<(u32, Duration)> {
        let since = self.since.take()?;
        let run = (self.failures, now.saturating_duration_since(since));
        self.failures = 0;
        self.said = None;
        Some(run)
    }

    /// Whether the retry is due at `now`; if so, it is taken.
    pub(super) fn take_due(&mut self, now: Instant) -> bool {
        let due = self.retry_at.is_some_and(|t| t <= now);
        if due {
            self.retry_at = None;
        }
        due
    }
}

impl Engine {
    /// A card file could not be moved or written: log why (the first time in a run of
    /// failures, and now and then while it lasts) and schedule a retry.
    /// `what` says what was attempted, with the paths, e.g. `move card J-7 from
    /// work/inbox/J-7.yaml to work/assigned/a/J-7.yaml`.
    pub(super) fn file_failed(&mut self, what: &str, id: &str, e: &std::io::Error) {
        let now = self.clock.instant();
        if self.faults.failed(now) {
            let hint = io_hint(e, &self.ws.root);
            let failures = self.faults.failures;
            tracing::error!(job = id, failures, "cannot {what}: {e}; {hint}");
        } else {
            tracing::debug!(job = id, "cannot {what}: {e}; will retry");
        }
    }

    /// A card file was written: a run of failures, if any, is over.
    pub(super) fn file_ok(&mut self) {
        if let Some((failures, took)) = self.faults.worked(self.clock.instant()) {
            tracing::info!(
                failures,
                after_ms = took.as_millis() as u64,
                "card files can be written again; pas catches up"
            );
        }
    }

    /// Whether a retry is due; if so, the next step plans and writes again.
    pub(super) fn take_due_retry(&mut self) -> bool {
        let due = self.faults.take_due(self.clock.instant());
        self.replan |= due;
        due
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_two_seconds_and_the_error_is_said_every_30_s() {
        let t0 = Instant::now();
        let mut f = FileFaults::default();
        let mut waits = Vec::new();
        let mut said = Vec::new();
        let mut now = t0;
        for _ in 0..7 {
            said.push(f.failed(now));
            let at = f.retry_at().unwrap();
            waits.push((at - now).as_millis());
            assert!(!f.take_due(at - Duration::from_millis(1)), "not before");
            assert!(f.take_due(at) && f.retry_at().is_none());
            now = at;
        }
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(said, [true, false, false, false, false, false, false]);
        assert!(f.failed(t0 + REPEAT_EVERY), "said again after 30 s");
        assert_eq!(f.worked(t0 + REPEAT_EVERY), Some((8, REPEAT_EVERY)));
        assert_eq!(f.worked(t0 + REPEAT_EVERY), None, "the run is over");
        assert!(f.failed(t0 + REPEAT_EVERY), "a new run is said at once");
        assert_eq!(f.retry_at(), Some(t0 + REPEAT_EVERY + FIRST_RETRY));
    }
}
