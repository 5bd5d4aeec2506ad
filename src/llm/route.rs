//! Which models can serve a request, in which order, and why.
//!
//! Candidates are the models with every required capability and a large enough context
//! window (or the models with a named id). A policy orders them; providers that are
//! cooling down after repeated failures go last, so they are tried only when nothing
//! else answers. Every place in the order carries its reason, for `pas route --explain`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;

use super::config::{Model, Policy, Provider};

/// What a request needs.
#[derive(Debug, Clone, Default)]
pub struct Need {
    /// Every one is required.
    pub capabilities: Vec<String>,
    /// Tokens the context window must hold (input estimate plus the output allowed).
    pub ctx_tokens: u64,
    /// A named model: only models with this id are candidates.
    pub model: Option<String>,
}

/// A model in the order, with why it is where it is.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub provider: &'a Provider,
    pub model: &'a Model,
    pub why: String,
}

/// The outcome of routing: the order, and the models left out with their reasons.
#[derive(Debug, Clone, Default)]
pub struct Routed<'a> {
    pub order: Vec<Candidate<'a>>,
    pub excluded: Vec<(String, String)>,
}

/// Input plus output price per million tokens, the figure policies compare; `None` when
/// the model has no price (it sorts after every priced model).
pub fn blended_price(m: &Model) -> Option<Decimal> {
    m.price_per_mtok.as_ref().map(|p| p.input + p.output)
}

/// Health of each provider and observed latency of each model, shared by the gateway's
/// requests. Circuit breaker: after `FAILS_TO_OPEN` failures in a row a provider cools
/// down; when the cool-down ends one request may probe it (half-open); any answer from
/// the provider closes it (a success, or a refusal of the request itself), failure
/// doubles the cool-down (up to `MAX_COOLDOWN`). Every attempt that took a probe ends
/// it with one [`Verdict`], so a probe can never stay taken; and only that attempt ends
/// it, so a late answer of an attempt sent while the breaker was closed can neither let
/// a second probe run beside the first nor have the first's result taken for another's.
#[derive(Debug, Default)]
pub struct Health {
    /// The first cool-down (`routing.cooldown_s`); zero means the default, 5 s.
    first_cooldown: Duration,
    providers: HashMap<String, Breaker>,
    /// EWMA of latency in ms per `provider/model`.
    latency: HashMap<String, f64>,
}

#[derive(Debug, Default, Clone)]
struct Breaker {
    fails: u32,
    open_until: Option<Instant>,
    cooldown: Duration,
    probing: bool,
    /// Kept away until then by a 429's `Retry-After`, apart from the breaker: a provider
    /// that asked for a pause is not broken, and is simply back after it.
    held_until: Option<Instant>,
}

const FAILS_TO_OPEN: u32 = 3;
const FIRST_COOLDOWN: Duration = Duration::from_secs(5);
const MAX_COOLDOWN: Duration = Duration::from_secs(300);
/// Weight of the newest latency sample in the EWMA.
const ALPHA: f64 = 0.3;

/// What one attempt showed of its provider's health.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// It served the call (first token of a stream), this fast.
    Served { latency_ms: f64 },
    /// It answered, refusing the request itself (a 400, a 413...): it is up.
    Answered,
    /// It asked for a pause (a 429's or 503's `Retry-After`).
    HoldOff(Duration),
    /// It failed: its fault (connect error, timeout, 5xx, a refused key...).
    Failed,
}

/// A provider's state as routing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Closed,
    /// Cooling down for this long yet.
    Open(Duration),
    /// The cool-down is over: one probe may go.
    HalfOpen,
}

impl Health {
    /// Health whose first cool-down lasts `first` (it doubles from there, up to 300 s).
    pub fn with_cooldown(first: Duration) -> Health {
        Health {
            first_cooldown: first,
            ..Health::default()
        }
    }

    fn first(&self) -> Duration {
        if self.first_cooldown.is_zero() {
            FIRST_COOLDOWN
        } else {
            self.first_cooldown
        }
    }

    /// The gate of `provider` at `now`.
    pub fn gate(&self, provider: &str, now: Instant) -> Gate {
        let Some(b) = self.providers.get(provider) else {
            return Gate::Closed;
        };
        let breaker = match b.open_until {
            None => Gate::Closed,
            Some(t) if t > now => Gate::Open(t - now),
            Some(_) if b.probing => Gate::Open(Duration::ZERO),
            Some(_) => Gate::HalfOpen,
        };
        match (breaker, b.held_until.filter(|t| *t > now)) {
            (_, None) => breaker,
            (Gate::Open(left), Some(t)) => Gate::Open(left.max(t - now)),
            (_, Some(t)) => Gate::Open(t - now),
        }
    }

    /// Takes the probe of a half-open provider; false when another request has it.
    pub fn begin_probe(&mut self, provider: &str, now: Instant) -> bool {
        if self.gate(provider, now) != Gate::HalfOpen {
            return self.gate(provider, now) == Gate::Closed;
        }
        if let Some(b) = self.providers.get_mut(provider) {
            b.probing = true;
        }
        true
    }

    /// Gives back a probe that was taken but not sent (e.g. the budget refused the call).
    pub fn end_probe(&mut self, provider: &str) {
        if let Some(b) = self.providers.get_mut(provider) {
            b.probing = false;
        }
    }

    /// Records what an attempt at `provider`'s `model` showed, ending its probe if it
    /// took one (`probe`: its [`Health::begin_probe`] found the provider half-open);
    /// returns the cool-down when this opened (or reopened) the breaker.
    pub fn record(
        &mut self,
        provider: &str,
        model: &str,
        verdict: Verdict,
        probe: bool,
        now: Instant,
    ) -> Option<Duration> {
        match verdict {
            Verdict::Served { latency_ms } => self.success(provider, model, latency_ms, probe),
            Verdict::Answered => self.answered(provider, probe),
            Verdict::HoldOff(wait) => self.hold_off(provider, wait, probe, now),
            Verdict::Failed => return self.failure(provider, probe, now),
        }
        None
    }

    /// Records a success: closes the breaker and feeds the latency average.
    pub fn success(&mut self, provider: &str, model: &str, latency_ms: f64, probe: bool) {
        self.answered(provider, probe);
        self.observe(provider, model, latency_ms);
    }

    /// Feeds one observed latency into the model's average: the time to the first token
    /// of a stream, else the whole call (what a caller waits before anything comes).
    pub fn observe(&mut self, provider: &str, model: &str, latency_ms: f64) {
        let key = format!("{provider}/{model}");
        let avg = self.latency.entry(key).or_insert(latency_ms);
        *avg = ALPHA * latency_ms + (1.0 - ALPHA) * *avg;
    }

    /// Health that remembers the latencies of past calls (oldest first), so `fastest`
    /// orders by what was seen before a restart, and `pas route` by what the gateway
    /// would: the same average over the same samples.
    pub fn remembering(
        first: Duration,
        past: impl IntoIterator<Item = (String, String, f64)>,
    ) -> Health {
        let mut h = Health::with_cooldown(first);
        for (provider, model, ms) in past {
            h.observe(&provider, &model, ms);
        }
        h
    }

    /// Records an answer that proves the provider up, though it served nothing (it
    /// refused the request itself): closes the breaker, and ends the probe if this
    /// attempt took it. Another attempt's probe stays taken until that attempt ends, so
    /// no second probe starts beside it. A hold-off it asked for stands.
    pub fn answered(&mut self, provider: &str, probe: bool) {
        let b = self.providers.entry(provider.to_string()).or_default();
        *b = Breaker {
            held_until: b.held_until,
            probing: b.probing && !probe,
            ..Breaker::default()
        };
    }

    /// Records a failure that the provider is to blame for; returns the cool-down when it
    /// opened (or reopened) the breaker. A failed probe reopens it for twice as long; a
    /// late failure of an attempt sent before the breaker opened leaves the cool-down as
    /// it is (it neither shortens it nor counts as the probe's result).
    pub fn failure(&mut self, provider: &str, probe: bool, now: Instant) -> Option<Duration> {
        let first = self.first();
        let b = self.providers.entry(provider.to_string()).or_default();
        b.fails = b.fails.saturating_add(1);
        if probe {
            b.probing = false;
        }
        let reopen = match b.open_until {
            // Closed since the probe went out (another attempt's answer): a plain failure.
            None => false,
            Some(_) if probe => true,
            Some(_) => return None,
        };
        if reopen || b.fails >= FAILS_TO_OPEN {
            b.cooldown = if reopen {
                (b.cooldown * 2).min(MAX_COOLDOWN)
            } else {
                first
            };
            b.open_until = Some(now + b.cooldown);
            return Some(b.cooldown);
        }
        None
    }

    /// Keeps requests away from `provider` for `wait` (a 429's `Retry-After`), without
    /// counting it as broken: after the wait its breaker is as it was (closed, no probe
    /// needed; or half-open when this answered a probe, so the next call probes again).
    /// Only the attempt that took the probe gives it back.
    pub fn hold_off(&mut self, provider: &str, wait: Duration, probe: bool, now: Instant) {
        let b = self.providers.entry(provider.to_string()).or_default();
        let until = now + wait.min(MAX_COOLDOWN);
        if probe {
            b.probing = false;
        }
        if b.held_until.is_none_or(|t| t < until) {
            b.held_until = Some(until);
        }
    }

    /// Failures in a row of `provider` (for `pas providers`).
    pub fn fails(&self, provider: &str) -> u32 {
        self.providers.get(provider).map_or(0, |b| b.fails)
    }

    /// Observed latency of a model (EWMA, ms).
    pub fn latency_ms(&self, provider: &str, model: &str) -> Option<f64> {
        self.latency.get(&format!("{provider}/{model}")).copied()
    }

    /// Seeds a latency average (from past receipts, for `pas route`).
    pub fn seed_latency(&mut self, provider: &str, model: &str, ms: f64) {
        self.latency.insert(format!("{provider}/{model}"), ms);
    }
}

/// The candidates for `need` in `policy` order.
pub fn route<'a>(
    providers: &'a [Provider],
    need: &Need,
    policy: Policy,
    health: &Health,
    now: Instant,
) -> Routed<'a> {
    let mut routed = Routed::default();
    let mut fit: Vec<(&Provider, &Model)> = Vec::new();
    for p in providers {
        for m in &p.models {
            let label = format!("{}/{}", p.name, m.id);
            if let Some(id) = &need.model {
                if &m.id != id {
                    continue;
                }
            }
            let lacks: Vec<&str> = need
                .capabilities
                .iter()
                .filter(|c| !m.capabilities.contains(c))
                .map(String::as_str)
                .collect();
            if need.model.is_none() && !lacks.is_empty() {
                routed
                    .excluded
                    .push((label, format!("lacks [{}]", lacks.join(", "))));
                continue;
            }
            if let Some(limit) = m.ctx_limit.filter(|l| *l < need.ctx_tokens) {
                routed.excluded.push((
                    label,
                    format!("context {limit} < {} needed", need.ctx_tokens),
                ));
                continue;
            }
            fit.push((p, m));
        }
    }
    let price_key = |m: &Model| blended_price(m).map_or((1, Decimal::ZERO), |d| (0, d));
    let latency = |p: &Provider, m: &Model| health.latency_ms(&p.name, &m.id);
    let lat_key = |p: &Provider, m: &Model| match latency(p, m) {
        Some(l) => (0, (l * 1000.0) as u64),
        None => (1, 0),
    };
    let by_price = {
        let mut v = fit.clone();
        v.sort_by(|a, b| {
            price_key(a.1)
                .cmp(&price_key(b.1))
                .then(b.0.local.cmp(&a.0.local))
                .then(a.0.name.cmp(&b.0.name))
        });
        v
    };
    let by_latency = {
        let mut v = fit.clone();
        v.sort_by(|a, b| {
            lat_key(a.0, a.1)
                .cmp(&lat_key(b.0, b.1))
                .then(price_key(a.1).cmp(&price_key(b.1)))
        });
        v
    };
    let rank = |list: &[(&Provider, &Model)], p: &Provider, m: &Model| {
        list.iter()
            .position(|(q, n)| q.name == p.name && n.id == m.id)
            .unwrap_or(usize::MAX)
    };
    let mut ordered: Vec<(&Provider, &Model)> = match policy {
        Policy::Cheapest => by_price.clone(),
        Policy::Fastest => by_latency.clone(),
        Policy::Local => {
            let mut v = by_price.clone();
            v.sort_by_key(|(p, _)| !p.local); // stable: cheapest within each group
            v
        }
        Policy::Balanced => {
            let mut v = by_price.clone();
            v.sort_by_key(|(p, m)| rank(&by_price, p, m) + rank(&by_latency, p, m));
            v
        }
    };
    // Cooling providers go last (stable), still there for when nothing else answers.
    ordered.sort_by_key(|(p, _)| matches!(health.gate(&p.name, now), Gate::Open(_)));
    for (p, m) in ordered {
        let price = match &m.price_per_mtok {
            Some(pr) => format!("${}/${} per Mtok in/out", pr.input, pr.output),
            None => "no price".into(),
        };
        let lat = latency(p, m).map_or("latency unknown".into(), |l| format!("{l:.0} ms"));
        let mut why = match policy {
            Policy::Local if p.local => format!("local, {price}"),
            Policy::Local => format!("remote, {price}"),
            Policy::Cheapest => price,
            Policy::Fastest => lat,
            Policy::Balanced => format!(
                "price rank {} + latency rank {} ({price}, {lat})",
                rank(&by_price, p, m) + 1,
                rank(&by_latency, p, m) + 1
            ),
        };
        match health.gate(&p.name, now) {
            Gate::Open(left) => why.push_str(&format!(
                "; cooling down for {:.1} s after repeated failures",
                left.as_secs_f64()
            )),
            Gate::HalfOpen => why.push_str("; cool-down over, next call probes it"),
            Gate::Closed => {}
        }
        routed.order.push(Candidate {
            provider: p,
            model: m,
            why,
        });
    }
    if need.model.is_some() && routed.order.is_empty() && routed.excluded.is_empty() {
        routed.excluded.push((
            need.model.clone().unwrap_or_default(),
            "no provider serves this model".into(),
        ));
    }
    routed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::config::providers;

    fn fleet() -> Vec<Provider> {
        let yaml = r#"
- name: local
  protocol: openai
  base_url: http://127.0.0.1:1/v1
  local: true
  models:
    - {id: small, capabilities: [summarize], ctx_limit: 8000, price_per_mtok: {input: "0", output: "0"}}
- name: cloud
  protocol: openai
  base_url: http://127.0.0.1:2/v1
  models:
    - {id: cheap, capabilities: [summarize, code], price_per_mtok: {input: "0.15", output: "0.60"}}
    - {id: smart, capabilities: [summarize, code, plan], price_per_mtok: {input: "3", output: "15"}}
    - {id: mystery, capabilities: [summarize]}
"#;
        providers(&serde_yaml::from_str::<Vec<serde_yaml::Value>>(yaml).unwrap()).unwrap()
    }

    fn ids(r: &Routed<'_>) -> Vec<String> {
        r.order.iter().map(|c| c.model.id.clone()).collect()
    }

    fn need(caps: &[&str], ctx: u64) -> Need {
        Need {
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            ctx_tokens: ctx,
            model: None,
        }
    }

    #[test]
    fn policies_order_the_candidates() {
        let f = fleet();
        let mut h = Health::default();
        let now = Instant::now();
        let n = need(&["summarize"], 100);
        assert_eq!(
            ids(&route(&f, &n, Policy::Local, &h, now)),
            ["small", "cheap", "smart", "mystery"]
        );
        assert_eq!(
            ids(&route(&f, &n, Policy::Cheapest, &h, now)),
            ["small", "cheap", "smart", "mystery"]
        );
        h.seed_latency("cloud", "smart", 80.0);
        h.seed_latency("cloud", "cheap", 900.0);
        h.seed_latency("local", "small", 400.0);
        assert_eq!(
            ids(&route(&f, &n, Policy::Fastest, &h, now)),
            ["smart", "small", "cheap", "mystery"]
        );
        // small: price 1 + latency 2 = 3; smart: 3 + 1 = 4; cheap: 2 + 3 = 5; mystery last.
        assert_eq!(
            ids(&route(&f, &n, Policy::Balanced, &h, now)),
            ["small", "smart", "cheap", "mystery"]
        );
    }

    #[test]
    fn capabilities_context_and_named_models_filter_with_reasons() {
        let f = fleet();
        let h = Health::default();
        let now = Instant::now();
        let r = route(&f, &need(&["code"], 100), Policy::Local, &h, now);
        assert_eq!(ids(&r), ["cheap", "smart"]);
        assert!(r
            .excluded
            .iter()
            .any(|(m, why)| m == "local/small" && why == "lacks [code]"));
        let r = route(&f, &need(&["summarize"], 10_000), Policy::Local, &h, now);
        assert!(r
            .excluded
            .iter()
            .any(|(_, why)| why == "context 8000 < 10000 needed"));
        let named = Need {
            model: Some("smart".into()),
            ..need(&["nothing-matters"], 0)
        };
        assert_eq!(
            ids(&route(&f, &named, Policy::Cheapest, &h, now)),
            ["smart"]
        );
        let unknown = Need {
            model: Some("gpt-9".into()),
            ..Need::default()
        };
        let r = route(&f, &unknown, Policy::Cheapest, &h, now);
        assert!(r.order.is_empty() && r.excluded[0].1.contains("no provider"));
    }

    #[test]
    fn breaker_opens_after_three_failures_probes_once_and_backs_off() {
        let mut h = Health::default();
        let t0 = Instant::now();
        assert_eq!(h.failure("cloud", false, t0), None);
        assert_eq!(h.failure("cloud", false, t0), None);
        assert_eq!(h.failure("cloud", false, t0), Some(FIRST_COOLDOWN));
        assert!(matches!(h.gate("cloud", t0), Gate::Open(_)));
        let f = fleet();
        h.seed_latency("cloud", "smart", 10.0);
        h.seed_latency("local", "small", 500.0);
        let r = route(&f, &need(&["summarize"], 1), Policy::Fastest, &h, t0);
        assert_eq!(
            ids(&r),
            ["small", "smart", "cheap", "mystery"],
            "cooling providers go last"
        );
        assert!(r.order[1].why.contains("cooling down"));
        let later = t0 + FIRST_COOLDOWN;
        assert_eq!(h.gate("cloud", later), Gate::HalfOpen);
        assert!(h.begin_probe("cloud", later));
        assert!(!h.begin_probe("cloud", later), "one probe at a time");
        assert_eq!(h.failure("cloud", true, later), Some(FIRST_COOLDOWN * 2));
        let again = later + FIRST_COOLDOWN * 2;
        assert!(h.begin_probe("cloud", again));
        h.success("cloud", "cheap", 100.0, true);
        assert_eq!(h.gate("cloud", again), Gate::Closed);
        h.success("cloud", "cheap", 200.0, false);
        assert_eq!(h.latency_ms("cloud", "cheap"), Some(130.0));
    }

    /// The breaker as the gateway drives it, on the gateway's clock: a fake one here, so
    /// the cool-down passes at once rather than in real seconds.
    #[test]
    fn on_a_fake_clock_the_cool_down_passes_when_the_clock_moves() {
        let clock = crate::clock::Clock::fake(chrono::Utc::now());
        let mut h = Health::with_cooldown(Duration::from_secs(30));
        for _ in 0..FAILS_TO_OPEN {
            h.record("cloud", "cheap", Verdict::Failed, false, clock.instant());
        }
        assert_eq!(
            h.gate("cloud", clock.instant()),
            Gate::Open(Duration::from_secs(30))
        );
        clock.advance(Duration::from_secs(29));
        assert_eq!(
            h.gate("cloud", clock.instant()),
            Gate::Open(Duration::from_secs(1))
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(h.gate("cloud", clock.instant()), Gate::HalfOpen);
        assert!(h.begin_probe("cloud", clock.instant()));
        let served = Verdict::Served { latency_ms: 5.0 };
        h.record("cloud", "cheap", served, true, clock.instant());
        assert_eq!(h.gate("cloud", clock.instant()), Gate::Closed);
    }

    /// Opens `cloud`'s breaker at `t0` and returns when its probe may go.
    fn half_open(h: &mut Health, t0: Instant) -> Instant {
        for _ in 0..FAILS_TO_OPEN {
            h.failure("cloud", false, t0);
        }
        let later = t0 + FIRST_COOLDOWN;
        assert!(h.begin_probe("cloud", later));
        later
    }

    #[test]
    fn a_probe_answered_with_a_refusal_of_the_request_closes_the_breaker() {
        let mut h = Health::default();
        let t = half_open(&mut h, Instant::now());
        assert_eq!(h.record("cloud", "cheap", Verdict::Answered, true, t), None);
        assert_eq!(h.gate("cloud", t), Gate::Closed);
        // And the failures before it no longer count as a row.
        h.failure("cloud", false, t);
        h.failure("cloud", false, t);
        assert_eq!(h.gate("cloud", t), Gate::Closed);
    }

    #[test]
    fn a_hold_off_ends_the_probe_and_passes_by_itself() {
        let mut h = Health::default();
        let t = half_open(&mut h, Instant::now());
        let wait = Duration::from_secs(2);
        h.record("cloud", "cheap", Verdict::HoldOff(wait), true, t);
        assert_eq!(h.gate("cloud", t), Gate::Open(wait));
        assert_eq!(
            h.gate("cloud", t + wait),
            Gate::HalfOpen,
            "the probe was given back: the next call probes"
        );
        // On a closed breaker, the wait passes into closed, with no probe.
        let mut h = Health::default();
        let t0 = Instant::now();
        h.record("cloud", "cheap", Verdict::HoldOff(wait), false, t0);
        assert!(matches!(h.gate("cloud", t0), Gate::Open(_)));
        assert_eq!(h.gate("cloud", t0 + wait), Gate::Closed);
        // It is not counted as broken: two failures after it do not open the breaker.
        h.failure("cloud", false, t0 + wait);
        h.failure("cloud", false, t0 + wait);
        assert_eq!(h.gate("cloud", t0 + wait), Gate::Closed);
    }

    /// Regression: a 429 (with `Retry-After`) of an attempt sent while the breaker was
    /// closed gave back the probe another attempt held, so a second probe could go beside
    /// it after the wait, and the first probe's failure then counted as a plain one (the
    /// cool-down restarted at its first length instead of doubling).
    #[test]
    fn a_hold_off_of_an_attempt_that_did_not_probe_leaves_the_probe_taken() {
        let mut h = Health::default();
        let t = half_open(&mut h, Instant::now());
        let wait = Duration::from_secs(2);
        h.record("cloud", "cheap", Verdict::HoldOff(wait), false, t);
        assert_eq!(
            h.gate("cloud", t + wait),
            Gate::Open(Duration::ZERO),
            "the probe is still out"
        );
        assert!(!h.begin_probe("cloud", t + wait), "no second probe");
        let failed = h.record("cloud", "cheap", Verdict::Failed, true, t + wait);
        assert_eq!(failed, Some(FIRST_COOLDOWN * 2), "the probe's own failure");
    }

    /// Regression: an answer of an attempt sent while the breaker was closed reset the
    /// breaker whole, the probe another attempt held included: once the breaker opened
    /// again, a second probe went while the first was still out.
    #[test]
    fn an_answer_of_an_attempt_that_did_not_probe_closes_but_leaves_the_probe_taken() {
        let mut h = Health::default();
        let t = half_open(&mut h, Instant::now());
        let served = Verdict::Served { latency_ms: 50.0 };
        h.record("cloud", "cheap", served, false, t);
        assert_eq!(h.gate("cloud", t), Gate::Closed, "the provider is up");
        for _ in 0..FAILS_TO_OPEN {
            h.record("cloud", "cheap", Verdict::Failed, false, t);
        }
        let later = t + FIRST_COOLDOWN;
        assert_eq!(h.gate("cloud", later), Gate::Open(Duration::ZERO));
        assert!(
            !h.begin_probe("cloud", later),
            "the first probe is still out"
        );
        h.record("cloud", "cheap", Verdict::Answered, true, later);
        assert_eq!(h.gate("cloud", later), Gate::Closed, "its answer ends it");
    }

    /// A late failure of an attempt sent before the breaker opened neither counts as the
    /// probe's result nor shortens a long cool-down.
    #[test]
    fn a_late_failure_of_an_attempt_that_did_not_probe_leaves_the_cool_down() {
        let mut h = Health::default();
        let t = half_open(&mut h, Instant::now());
        assert_eq!(h.failure("cloud", true, t), Some(FIRST_COOLDOWN * 2));
        assert_eq!(h.record("cloud", "cheap", Verdict::Failed, false, t), None);
        assert_eq!(h.gate("cloud", t), Gate::Open(FIRST_COOLDOWN * 2));
    }
}
