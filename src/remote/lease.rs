//! Leases judged without shared clocks (pure: observations and instants in, verdicts out).
//!
//! No host compares its clock with another's. An observer notes, on its own monotonic
//! clock, when it first saw each claim ref at each commit; a claim is expired for it only
//! once it has seen the very same commit for a whole lease plus grace. An owner renews
//! every third of the lease, so a live owner's claim changes long before that; a wall clock
//! set ten minutes off changes nothing, because no wall time is read.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// First sightings of claim commits, per ref.
#[derive(Debug, Default)]
pub struct Observer {
    /// ref -> (commit id, first seen at).
    seen: HashMap<String, (String, Instant)>,
}

impl Observer {
    /// Takes in the remote's claims as listed at `now`: refs that moved start over, refs
    /// that vanished are forgotten.
    pub fn observe(&mut self, refs: &[(String, String)], now: Instant) {
        let mut next = HashMap::with_capacity(refs.len());
        for (name, oid) in refs {
            let since = match self.seen.get(name) {
                Some((o, t)) if o == oid => *t,
                _ => now,
            };
            next.insert(name.clone(), (oid.clone(), since));
        }
        self.seen = next;
    }

    /// The commit `name` was last seen at.
    pub fn current(&self, name: &str) -> Option<&str> {
        self.seen.get(name).map(|(o, _)| o.as_str())
    }

    /// Whether `name` has stood at the same commit for at least `lease + grace` as of `now`.
    pub fn expired(&self, name: &str, lease: Duration, grace: Duration, now: Instant) -> bool {
        self.seen
            .get(name)
            .is_some_and(|(_, t)| now.saturating_duration_since(*t) >= lease + grace)
    }

    /// Every ref currently seen, with its commit.
    pub fn refs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.seen.iter().map(|(n, (o, _))| (n.as_str(), o.as_str()))
    }
}

/// When an owner renews: every third of the lease (as etcd's clients do).
pub fn renew_every(lease: Duration) -> Duration {
    lease / 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, oid: &str) -> (String, String) {
        (name.to_string(), oid.to_string())
    }

    #[test]
    fn a_claim_expires_only_after_the_same_commit_for_lease_plus_grace() {
        let t0 = Instant::now();
        let (lease, grace) = (Duration::from_secs(3), Duration::from_secs(1));
        let mut o = Observer::default();
        o.observe(&[r("a", "1")], t0);
        assert!(!o.expired("a", lease, grace, t0 + Duration::from_millis(3999)));
        assert!(o.expired("a", lease, grace, t0 + Duration::from_secs(4)));
        // A renewal (a new commit) starts the count over.
        o.observe(&[r("a", "2")], t0 + Duration::from_secs(3));
        assert!(!o.expired("a", lease, grace, t0 + Duration::from_secs(5)));
        assert!(o.expired("a", lease, grace, t0 + Duration::from_secs(7)));
        // A ref never seen is never expired; one gone is forgotten.
        assert!(!o.expired("b", lease, grace, t0 + Duration::from_secs(99)));
        o.observe(&[], t0 + Duration::from_secs(8));
        assert_eq!(o.current("a"), None);
    }
}
