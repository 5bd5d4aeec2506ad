//! Liveness and the token governor, as pure rules over timestamps and ratios.
//!
//! Liveness works as Consul's TTL checks do: an agent is up while it beats, down once
//! nothing has come for two intervals, and due for deregistration after three. Everything
//! is computed from persisted timestamps (the beat's `ts`, else the registration's
//! `registered_at`), so a restarted pas reaches the same verdicts; only the reaping waits
//! for one interval of grace after a start, so agents that were waiting on pas get a
//! chance to beat.

use chrono::{DateTime, Duration, Utc};

use crate::config::TokenBudget;
use crate::heartbeat::Beat;

/// What pas knows of an agent from its beats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// The last sign of life: the newest beat's `ts`, else when it registered.
    pub last_seen: Option<DateTime<Utc>>,
    /// The newest accepted beat.
    pub beat: Option<Beat>,
    /// Down: no beat for two intervals. Gets no new work.
    pub down: bool,
    /// Where its context window stands against its token budget.
    pub ctx: CtxLevel,
}

/// The verdict for an agent's silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    /// No beat for two intervals.
    Down,
    /// No beat for three intervals (and past the grace after a start): deregister it.
    Expired,
}

/// A duration of `n` intervals of `interval_s` seconds, to the millisecond.
pub fn intervals(n: f64, interval_s: f64) -> Duration {
    Duration::milliseconds((n * interval_s * 1000.0).round() as i64)
}

/// The verdict at `now` for an agent last seen at `last_seen`. `started` is when this pas
/// started: expiry waits until one interval after it.
pub fn health(
    last_seen: DateTime<Utc>,
    interval_s: f64,
    now: DateTime<Utc>,
    started: Option<DateTime<Utc>>,
) -> Health {
    let silent = now - last_seen;
    let grace_over = started.is_none_or(|s| now >= s + intervals(1.0, interval_s));
    if silent >= intervals(3.0, interval_s) && grace_over {
        Health::Expired
    } else if silent >= intervals(2.0, interval_s) {
        Health::Down
    } else {
        Health::Up
    }
}

/// When the verdict for an agent can next change, if it stays silent.
pub fn next_change(
    last_seen: DateTime<Utc>,
    interval_s: f64,
    now: DateTime<Utc>,
    started: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    let down = last_seen + intervals(2.0, interval_s);
    if down > now {
        return down;
    }
    let grace = started.map_or(last_seen, |s| s + intervals(1.0, interval_s));
    (last_seen + intervals(3.0, interval_s)).max(grace)
}

/// A context window against its budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum CtxLevel {
    /// Below `target`, or not reported.
    #[default]
    Ok,
    /// At or over `target`.
    Warning,
    /// At or over `hard_max`: time to save state and clear the context.
    Breach,
}

impl CtxLevel {
    /// The level of `ratio` against `budget`.
    pub fn of(ratio: Option<f64>, budget: &TokenBudget) -> CtxLevel {
        match ratio {
            Some(r) if r >= budget.hard_max => CtxLevel::Breach,
            Some(r) if r >= budget.target => CtxLevel::Warning,
            _ => CtxLevel::Ok,
        }
    }

    /// `ok`, `warning` or `breach`.
    pub fn label(self) -> &'static str {
        match self {
            CtxLevel::Ok => "ok",
            CtxLevel::Warning => "warning",
            CtxLevel::Breach => "breach",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    #[test]
    fn down_after_two_intervals_expired_after_three() {
        let seen = t(0);
        assert_eq!(health(seen, 0.5, t(999), None), Health::Up);
        assert_eq!(health(seen, 0.5, t(1000), None), Health::Down);
        assert_eq!(health(seen, 0.5, t(1499), None), Health::Down);
        assert_eq!(health(seen, 0.5, t(1500), None), Health::Expired);
        assert_eq!(next_change(seen, 0.5, t(10), None), t(1000));
        assert_eq!(next_change(seen, 0.5, t(1200), None), t(1500));
    }

    #[test]
    fn a_start_gives_one_interval_of_grace_before_expiry() {
        // Silent for a long time before pas started at t(10_000): down at once, but only
        // expired one interval after the start.
        let (seen, started) = (t(0), Some(t(10_000)));
        assert_eq!(health(seen, 1.0, t(10_000), started), Health::Down);
        assert_eq!(health(seen, 1.0, t(10_999), started), Health::Down);
        assert_eq!(health(seen, 1.0, t(11_000), started), Health::Expired);
        assert_eq!(next_change(seen, 1.0, t(10_000), started), t(11_000));
    }

    #[test]
    fn ctx_levels_at_the_thresholds() {
        let b = TokenBudget::default();
        assert_eq!(CtxLevel::of(None, &b), CtxLevel::Ok);
        assert_eq!(CtxLevel::of(Some(0.49), &b), CtxLevel::Ok);
        assert_eq!(CtxLevel::of(Some(0.50), &b), CtxLevel::Warning);
        assert_eq!(CtxLevel::of(Some(0.75), &b), CtxLevel::Breach);
    }
}
