//! Input a provider bills beyond what the request shows: tool scaffolding, a system
//! prompt or other text it adds on its side. A reservation bounds the input by the
//! request's bytes; a provider that bills 1,000 input tokens for "hi" makes every call
//! cost more than it reserved, and a hundred such calls in flight together overshoot a
//! budget by a hundred surpluses.
//!
//! So each (provider, model) learns its surplus: billed input less the request's bound,
//! never below 0, the largest of its last [`WINDOW`] answered calls (conservative: the
//! figure follows a provider that adds more, and forgets a spike after a while). Each
//! later reservation adds it to the input bound. Until a model has one observation (in
//! this run, or from the receipts of earlier runs), its paid calls under a budget go one
//! at a time ([`Surplus::first_call`], each waiting at most as long as a call may run):
//! the first answer teaches the surplus before a second call is admitted, so the most a surplus can push spend past a budget is one
//! call's surplus per model the first time pas ever calls it (and after, a surplus larger
//! than any of the last calls', once per call in flight when it grows).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many recent observations the figure is the largest of.
pub const WINDOW: usize = 32;

type Key = (String, String);

#[derive(Debug)]
struct Learnt {
    recent: VecDeque<u64>,
    /// One call at a time while `recent` is empty.
    gate: Arc<Semaphore>,
}

impl Default for Learnt {
    fn default() -> Learnt {
        Learnt {
            recent: VecDeque::new(),
            gate: Arc::new(Semaphore::new(1)),
        }
    }
}

/// Every model's learnt surplus.
#[derive(Debug, Default)]
pub struct Surplus {
    models: Mutex<HashMap<Key, Learnt>>,
}

impl Surplus {
    /// Surplus already observed, `(provider, model, tokens)` oldest first (from receipts).
    pub fn remembering(past: impl IntoIterator<Item = (String, String, u64)>) -> Surplus {
        let s = Surplus::default();
        for (p, m, n) in past {
            s.observe(&p, &m, n);
        }
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Learnt>> {
        self.models.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The surplus to add to a reservation's input: `None` while nothing is known.
    pub fn of(&self, provider: &str, model: &str) -> Option<u64> {
        let m = self.lock();
        m.get(&(provider.to_string(), model.to_string()))
            .and_then(|l| l.recent.iter().max().copied())
    }

    /// Waits until this paid call may go: at once when the model's surplus is known
    /// (`None`), else as the only call to it in flight (`Some(permit)`, held until its
    /// receipt has taught the surplus, or it failed and the next waiter tries). A call
    /// waits at most `patience` (the provider's `timeout_s`: as long as the call before
    /// it may run), then goes without the gate: a slow or failing model must not queue
    /// calls behind each other, and only a first call that outlives its own timeout (a
    /// long stream) lets others go unlearnt.
    pub async fn first_call(
        &self,
        provider: &str,
        model: &str,
        patience: std::time::Duration,
    ) -> Option<OwnedSemaphorePermit> {
        let gate = {
            let mut m = self.lock();
            let l = m
                .entry((provider.to_string(), model.to_string()))
                .or_default();
            if !l.recent.is_empty() {
                return None;
            }
            l.gate.clone()
        };
        // The semaphore is never closed, so acquiring only waits.
        let Ok(Ok(permit)) = tokio::time::timeout(patience, gate.acquire_owned()).await else {
            tracing::debug!(
                provider,
                model,
                "waited a call's time for the first call to \
                teach the model's surplus: going without it"
            );
            return None;
        };
        if self.of(provider, model).is_some() {
            return None; // learnt while this call waited: no need to go alone
        }
        Some(permit)
    }

    /// One answered call billed `surplus` input tokens beyond its request's bound.
    pub fn observe(&self, provider: &str, model: &str, surplus: u64) {
        let mut m = self.lock();
        let l = m
            .entry((provider.to_string(), model.to_string()))
            .or_default();
        if l.recent.len() == WINDOW {
            l.recent.pop_front();
        }
        l.recent.push_back(surplus);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_call_goes_alone_and_the_largest_recent_surplus_counts() {
        let s = Arc::new(Surplus::default());
        assert_eq!(s.of("p", "m"), None);
        let wait = std::time::Duration::from_secs(60);
        let first = s.first_call("p", "m", wait).await;
        assert!(first.is_some(), "nothing known: the call goes alone");
        let s2 = s.clone();
        let second = tokio::spawn(async move { s2.first_call("p", "m", wait).await.is_some() });
        tokio::task::yield_now().await;
        assert!(
            !second.is_finished(),
            "a second call waits for the first to teach"
        );
        s.observe("p", "m", 950);
        drop(first);
        assert!(
            !second.await.unwrap(),
            "learnt meanwhile: it goes without the gate"
        );
        s.observe("p", "m", 10);
        assert_eq!(s.of("p", "m"), Some(950), "the largest recent one");
        for _ in 0..WINDOW {
            s.observe("p", "m", 20);
        }
        assert_eq!(
            s.of("p", "m"),
            Some(20),
            "a spike is forgotten after WINDOW calls"
        );
        let known = Surplus::remembering([("p".into(), "m".into(), 5)]);
        assert!(known.first_call("p", "m", wait).await.is_none());
    }
}
