//! How often the engine plans.
//!
//! A plan walks the whole board: every inbox card is sorted and placed, or given its reason
//! to wait. With thousands of cards waiting that is the engine's largest cost, and planning
//! after every small batch of new files would leave less and less time to read the files
//! themselves (whose events the dashboard and `pas status` wait for). So the engine plans
//! at most half the time: after a plan that took `d`, the next one waits until `d` has
//! passed (at most 100 ms). A small board plans in microseconds and never waits.

use std::time::{Duration, Instant};

/// The longest a plan is put off.
const MAX_WAIT: Duration = Duration::from_millis(100);

/// When the last plan ended and how long it took.
#[derive(Debug, Default)]
pub struct Pacing {
    last: Option<(Instant, Duration)>,
}

impl Pacing {
    /// The earliest instant the next plan may start (`None`: at once).
    pub fn next_plan_at(&self) -> Option<Instant> {
        self.last.map(|(ended, took)| ended + took.min(MAX_WAIT))
    }

    /// Whether a plan may start now.
    pub fn may_plan(&self, now: Instant) -> bool {
        self.next_plan_at().is_none_or(|at| at <= now)
    }

    /// A plan that started at `started` has just ended, `now`.
    pub fn planned(&mut self, started: Instant, now: Instant) {
        self.last = Some((now, now.saturating_duration_since(started)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_waits_as_long_as_the_last_one_took_at_most_100_ms() {
        let mut p = Pacing::default();
        let t0 = Instant::now();
        assert!(p.may_plan(t0), "the first plan never waits");
        p.planned(t0 - Duration::from_millis(30), t0);
        let at = p.next_plan_at().unwrap();
        assert!(at >= t0 + Duration::from_millis(30) && !p.may_plan(t0));
        assert!(p.may_plan(at));
        p.planned(t0 - Duration::from_secs(5), t0);
        assert!(p.next_plan_at().unwrap() <= Instant::now() + MAX_WAIT);
    }
}
