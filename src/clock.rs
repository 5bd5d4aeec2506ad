//! The time the money path reads: UTC wall time (which day and month a call counts in)
//! and a monotonic instant (how long something took), from one [`Clock`] handed in rather
//! than `Utc::now()` called on the spot, so tests can put midnight where they want it.
//!
//! Three kinds, one API:
//! - [`Clock::real`]: the system's clocks (the default).
//! - [`Clock::starting_at`]: wall time starts at a given instant and then runs forward at
//!   the real rate (what `PAS_CLOCK_START` gives `pas serve`, for tests across midnight
//!   that need a real daemon and real calls in flight).
//! - [`Clock::fake`]: stands still until a test moves it with [`Clock::advance`] or
//!   [`Clock::set`] (unit tests).
//!
//! Clones share the same time: advancing one advances every holder.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// The environment variable that starts `pas serve`'s money clock at an RFC 3339 instant
/// (`2026-01-31T23:59:58Z`), from where it runs forward: a testing knob, logged loudly
/// when set, since budgets then count days that are not today's.
pub const START_ENV: &str = "PAS_CLOCK_START";

/// A source of wall and monotonic time; cheap to clone.
#[derive(Clone, Debug)]
pub struct Clock(Arc<Kind>);

#[derive(Debug)]
enum Kind {
    Real,
    /// Wall time = `wall` + real time elapsed since `base`.
    Offset {
        wall: DateTime<Utc>,
        base: Instant,
    },
    /// Time that moves only when told: (wall, monotonic) now.
    Fake(Mutex<(DateTime<Utc>, Instant)>),
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::real()
    }
}

impl Clock {
    /// The system's clocks.
    pub fn real() -> Clock {
        Clock(Arc::new(Kind::Real))
    }

    /// Wall time that reads `start` now and runs forward in real time from there.
    pub fn starting_at(start: DateTime<Utc>) -> Clock {
        Clock(Arc::new(Kind::Offset {
            wall: start,
            base: Instant::now(),
        }))
    }

    /// Time that stands at `start` until advanced.
    pub fn fake(start: DateTime<Utc>) -> Clock {
        Clock(Arc::new(Kind::Fake(Mutex::new((start, Instant::now())))))
    }

    /// The real clock, or one started at `PAS_CLOCK_START` when that is set: an error
    /// naming the variable when its value is not an RFC 3339 instant.
    pub fn from_env() -> Result<Clock, String> {
        match std::env::var(START_ENV) {
            Err(_) => Ok(Clock::real()),
            Ok(v) => DateTime::parse_from_rfc3339(v.trim())
                .map(|t| Clock::starting_at(t.to_utc()))
                .map_err(|e| format!("{START_ENV}={v:?} is not an RFC 3339 instant: {e}")),
        }
    }

    /// Whether this is the system's wall clock (not a test's).
    pub fn is_real(&self) -> bool {
        matches!(*self.0, Kind::Real)
    }

    /// UTC wall time now.
    pub fn now(&self) -> DateTime<Utc> {
        match &*self.0 {
            Kind::Real => Utc::now(),
            Kind::Offset { wall, base } => {
                *wall + chrono::Duration::from_std(base.elapsed()).unwrap_or_default()
            }
            Kind::Fake(t) => lock(t).0,
        }
    }

    /// A monotonic instant now (a fake clock's moves with its wall time).
    pub fn instant(&self) -> Instant {
        match &*self.0 {
            Kind::Real | Kind::Offset { .. } => Instant::now(),
            Kind::Fake(t) => lock(t).1,
        }
    }

    /// Moves a fake clock forward by `by`; other clocks cannot be moved (a no-op).
    pub fn advance(&self, by: Duration) {
        if let Kind::Fake(t) = &*self.0 {
            let mut t = lock(t);
            t.0 += chrono::Duration::from_std(by).unwrap_or_default();
            t.1 += by;
        }
    }

    /// Sets a fake clock's wall time to `to` (forward only: the monotonic time moves by
    /// the difference; a `to` in the past leaves it); other clocks: a no-op.
    pub fn set(&self, to: DateTime<Utc>) {
        if let Kind::Fake(t) = &*self.0 {
            let mut t = lock(t);
            if let Ok(by) = (to - t.0).to_std() {
                t.1 += by;
            }
            t.0 = to;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_fake_clock_moves_only_when_told_and_clones_share_it() {
        let c = Clock::fake(at("2026-01-31T23:59:59Z"));
        let other = c.clone();
        let i = c.instant();
        assert_eq!(c.now(), at("2026-01-31T23:59:59Z"));
        other.advance(Duration::from_secs(2));
        assert_eq!(c.now(), at("2026-02-01T00:00:01Z"));
        assert_eq!(c.instant() - i, Duration::from_secs(2));
        c.set(at("2026-03-01T00:00:00Z"));
        assert_eq!(other.now(), at("2026-03-01T00:00:00Z"));
        assert!(!c.is_real() && Clock::real().is_real());
    }

    #[test]
    fn a_started_clock_runs_forward_from_its_start() {
        let c = Clock::starting_at(at("2026-01-31T23:59:59Z"));
        let t = c.now();
        assert!(t >= at("2026-01-31T23:59:59Z") && t < at("2026-02-01T00:00:09Z"));
        std::thread::sleep(Duration::from_millis(20));
        assert!(c.now() > t);
    }
}
