//! The OpenAI-compatible LLM gateway (SPEC section 7), served by `pas serve`.
//!
//! - `call`: one call through the candidates, with fallback, budget holds and receipts.
//! - `http`: `POST /v1/chat/completions` (plain and streaming) and `GET /v1/models`, and
//!   OpenAI-shaped answers for everything else (404, 405, 413).
//! - `messages`: Anthropic's `POST /v1/messages` and `count_tokens`, said as chat calls.
//! - `budget`: the books of every budget; reservation on admission, settlement after.
//! - `metrics`: counters and the overhead histogram for `/metrics`.
//! - `relay`: a stream's frames handed to its caller, cut at its deadline.
//! - `receipt`: each attempt's receipt, its settled hold and its alerts; a stream's relay.
//! - `surplus`: input a provider bills beyond the request, learnt per model and reserved.
//!
//! Paid calls in flight are also in the database (`store::holds`), so a run killed
//! mid-call leaves their spend behind: the next start books each as an `interrupted`
//! receipt at its reserved worst case before the budgets count what was spent.
//!
//! The same [`Gateway`] runs LLM job cards, so a card's call is routed, budgeted and
//! receipted exactly like a request from an agent.

pub mod budget;
pub mod call;
pub mod cards;
pub mod http;
pub mod messages;
/// The counters live beside `web::Shared`, which carries them (merge aid: the old path).
pub use crate::web::gateway_metrics as metrics;
mod receipt;
mod relay;
pub mod spans;
pub mod surplus;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Datelike;

use crate::llm::aliases::Aliases;
use crate::llm::config::Policy;
use crate::llm::config::{self, Budgets, Provider};
use crate::llm::route::{self, Health, Need};
use crate::web::Shared;

pub(crate) use http::{overloaded, secure, stamped};
pub use http::{router, routes};

/// A provider's breaker as the running gateway holds it.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Breaker {
    /// `closed`, `open` (cooling down), `half-open` (one probe may go).
    pub state: &'static str,
    /// Seconds of cool-down left while open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_left_s: Option<f64>,
    /// Failures in a row.
    pub fails: u32,
}

/// Breakers by provider name (read by `ops::providers` and alerts).
pub type Breakers = std::collections::BTreeMap<String, Breaker>;

/// The gateway's state, shared by its handlers and by LLM job cards.
pub struct Gateway {
    pub shared: Shared,
    pub providers: Vec<Provider>,
    /// Each provider's key; `Err` says which variable is unset (that provider only fails).
    keys: HashMap<String, Result<Option<String>, String>>,
    pub policy: Policy,
    health: Mutex<Health>,
    pub ledger: budget::Ledger,
    pub client: reqwest::Client,
    pub metrics: Arc<metrics::Metrics>,
    /// `gateway.max_body_mb`: larger request bodies are answered 413.
    pub max_body_mb: u64,
    warned: Mutex<HashSet<String>>,
    /// Every call's task (callers' and LLM cards'): shutdown waits for them, so a call
    /// whose caller left still writes its receipt and settles its hold.
    pub tasks: tokio_util::task::TaskTracker,
    /// Where paid calls' holds are written before their upstream is called (`None`
    /// without a telemetry database).
    pub(crate) holds: Option<crate::store::holds::Holds>,
    /// Each model's learnt input surplus.
    pub surplus: surplus::Surplus,
    /// LLM cards whose call this start found interrupted: card id -> its receipt id and
    /// reserved cost (taken by the card's next run, which fails instead of buying again).
    interrupted: Mutex<Interrupted>,
    /// Where each call's span goes (`traces.capture` of pas.yaml).
    pub tracer: crate::trace::Tracer,
    /// `model_aliases:` of pas.yaml.
    pub aliases: Aliases,
    /// The fake upstreams of `fake:` providers, stopped with the gateway.
    _fakes: Vec<crate::llm::fake::Fake>,
}

impl Gateway {
    /// The gateway over the workspace's providers and budgets. A provider whose key is
    /// missing is logged as an error now and skipped by every call, naming the variable.
    /// `clock` is the daemon's (one clock for the engine and the money path).
    pub fn new(shared: Shared, clock: crate::clock::Clock) -> Result<Gateway> {
        let cfg = shared.ws.config()?;
        let providers =
            config::providers(&cfg.providers).map_err(|e| anyhow::anyhow!("pas.yaml: {e}"))?;
        let (providers, fakes) = start_fakes(&shared.ws.root, providers)?;
        let aliases = Aliases::parse(cfg.model_aliases.as_ref(), &providers)
            .map_err(|e| anyhow::anyhow!("pas.yaml: {e}"))?;
        let budgets: Budgets =
            config::budgets(cfg.budgets.as_ref()).map_err(|e| anyhow::anyhow!("pas.yaml: {e}"))?;
        let routing =
            config::routing(cfg.routing.as_ref()).map_err(|e| anyhow::anyhow!("pas.yaml: {e}"))?;
        let policy = routing.policy;
        let cooldown = Duration::from_secs_f64(routing.cooldown_s.unwrap_or(0.0));
        let mut keys = HashMap::new();
        for p in &providers {
            let key = p.api_key();
            if let Err(e) = &key {
                tracing::error!("{e}: its models are skipped until pas serve restarts with it set");
            }
            keys.insert(p.name.clone(), key);
        }
        if !clock.is_real() {
            tracing::warn!(now = %clock.now(), "{} is set: budgets count days by a test's clock, \
                not today's", crate::clock::START_ENV);
        }
        let (holds, interrupted) = recover_holds(&shared, &clock)?;
        let ledger = ledger(&shared, budgets, clock)?;
        let surplus = surplus::Surplus::remembering(past_surpluses(&shared));
        let health = Health::remembering(cooldown, past_latencies(&shared));
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            // A redirect would take the request, and its key, where pas.yaml never said:
            // a 3xx is a failed attempt instead (see llm::wire).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the HTTP client")?;
        let metrics = shared.gateway_metrics.clone();
        let tracer = crate::trace::Tracer::background(
            cfg.traces.capture,
            shared.db.clone(),
            shared.hub.clone(),
        );
        Ok(Gateway {
            tracer,
            aliases,
            _fakes: fakes,
            shared,
            providers,
            keys,
            policy,
            health: Mutex::new(health),
            ledger,
            client,
            metrics,
            max_body_mb: cfg.gateway.max_body_mb,
            warned: Mutex::new(HashSet::new()),
            tasks: tokio_util::task::TaskTracker::new(),
            holds,
            surplus,
            interrupted: Mutex::new(interrupted),
        })
    }

    /// The interrupted call of LLM card `job` found at this start, if any (once).
    pub fn take_interrupted(&self, job: &str) -> Option<(String, rust_decimal::Decimal)> {
        let mut m = self.interrupted.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(job)
    }

    /// Each configured provider's breaker now (for `/providers` and alerts). The lock is
    /// held for a copy of a few numbers, as a call's routing holds it.
    pub fn breakers(&self) -> Breakers {
        let now = self.ledger.clock().instant();
        let h = self.lock_health();
        self.providers
            .iter()
            .map(|p| {
                let (state, left) = match h.gate(&p.name, now) {
                    route::Gate::Closed => ("closed", None),
                    route::Gate::Open(left) => ("open", Some(left.as_secs_f64())),
                    route::Gate::HalfOpen => ("half-open", None),
                };
                let b = Breaker {
                    state,
                    cooldown_left_s: left,
                    fails: h.fails(&p.name),
                };
                (p.name.clone(), b)
            })
            .collect()
    }

    fn lock_health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The candidates for `need`, as (provider, model) indices in order; an error that
    /// says why nothing fits.
    fn candidates(
        &self,
        need: &Need,
        policy: Policy,
    ) -> Result<Vec<(usize, usize)>, call::Failure> {
        let health = self.lock_health();
        let routed = route::route(
            &self.providers,
            need,
            policy,
            &health,
            self.ledger.clock().instant(),
        );
        if routed.order.is_empty() {
            let what = match &need.model {
                Some(m) => format!("no provider serves the model {m:?}"),
                None => format!("no model has [{}]", need.capabilities.join(", ")),
            };
            let why: Vec<String> = routed
                .excluded
                .iter()
                .map(|(m, r)| format!("{m}: {r}"))
                .collect();
            let message = if why.is_empty() {
                format!("{what} (no providers are configured in pas.yaml)")
            } else {
                format!("{what} ({})", why.join("; "))
            };
            return Err(call::Failure::NoCandidate(message));
        }
        Ok(routed
            .order
            .iter()
            .map(|c| {
                let pi = self
                    .providers
                    .iter()
                    .position(|p| std::ptr::eq(p, c.provider))
                    .unwrap_or_default();
                let mi = self.providers[pi]
                    .models
                    .iter()
                    .position(|m| std::ptr::eq(m, c.model))
                    .unwrap_or_default();
                (pi, mi)
            })
            .collect())
    }

    /// Warns once per model per run that its calls have no known cost.
    fn warn_unpriced(&self, provider: &str, model: &str) {
        let key = format!("{provider}/{model}");
        let mut w = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if w.insert(key.clone()) {
            tracing::warn!(model = %key,
                "model has no price_per_mtok in pas.yaml: its receipts record cost null (unknown), not $0");
        }
    }
}

/// Starts a fake upstream for every `fake:` provider (its script read now, so a bad one
/// stops the start naming file, line and reason) and points the provider at it.
fn start_fakes(
    root: &std::path::Path,
    mut providers: Vec<Provider>,
) -> Result<(Vec<Provider>, Vec<crate::llm::fake::Fake>)> {
    use crate::llm::fake::{self, FakeOptions, Script};
    let mut fakes = Vec::new();
    for p in &mut providers {
        let Some(spec) = &p.fake else { continue };
        let at = |e: String| anyhow::anyhow!("pas.yaml: provider {}: fake.script: {e}", p.name);
        let script = match &spec.script {
            None => None,
            Some(serde_yaml::Value::String(path)) => {
                Some(Script::load(&root.join(path)).map_err(at)?)
            }
            Some(v @ serde_yaml::Value::Sequence(_)) => Some(Script::from_yaml(v).map_err(at)?),
            Some(_) => return Err(at("must be a file path or a list of replies".into())),
        };
        let opts = FakeOptions {
            script: script.map(Arc::new),
            ..FakeOptions::default()
        };
        let f = fake::try_start(opts)
            .with_context(|| format!("cannot start the fake upstream of provider {}", p.name))?;
        p.base_url = f.base_url(p.protocol);
        tracing::info!(provider = %p.name, url = %p.base_url, "fake upstream started");
        fakes.push(f);
    }
    Ok((providers, fakes))
}

/// The latencies `fastest` saw before this start (an unreadable database: none, said).
fn past_latencies(shared: &Shared) -> Vec<(String, String, f64)> {
    crate::store::receipts::past_latencies(&shared.ws.db_path()).unwrap_or_else(|e| {
        tracing::warn!("cannot read past latencies, `fastest` starts blind: {e:#}");
        Vec::new()
    })
}

/// The surplus models billed before this start (an unreadable database: none, said).
fn past_surpluses(shared: &Shared) -> Vec<(String, String, u64)> {
    crate::store::receipts::past_surpluses(&shared.ws.db_path()).unwrap_or_else(|e| {
        tracing::warn!("cannot read past input surpluses, each model relearns its own: {e:#}");
        Vec::new()
    })
}

/// Interrupted LLM cards: card id -> (receipt id, reserved).
type Interrupted = HashMap<String, (String, rust_decimal::Decimal)>;

/// Opens the holds table and books the holds a killed run left as `interrupted` receipts
/// (before the ledger reads the totals, so they count); without a telemetry database
/// there is nowhere to keep holds.
fn recover_holds(
    shared: &Shared,
    clock: &crate::clock::Clock,
) -> Result<(Option<crate::store::holds::Holds>, Interrupted)> {
    if shared.db.is_none() {
        return Ok((None, HashMap::new()));
    }
    let path = shared.ws.db_path();
    let holds = crate::store::holds::Holds::open(&path)?;
    let now = clock.now();
    let found = holds.recover(now).with_context(|| {
        format!(
            "cannot book the calls a stopped run left in flight ({})",
            crate::store::holds::path_for(&path).display()
        )
    })?;
    let mut cards = HashMap::new();
    for r in &found {
        let cost = r.cost_usd.unwrap_or_default();
        tracing::warn!(receipt = %r.id, request = %r.request_id, provider = %r.provider,
            model = %r.model, job = ?r.job_id, cost_usd = %cost,
            "a paid call was in flight when pas last stopped: booked at its reserved worst case");
        shared.hub.emit(now, receipt::receipt_event(r));
        if let Some(j) = &r.job_id {
            cards.insert(j.clone(), (r.id.clone(), cost));
        }
    }
    Ok((Some(holds), cards))
}

/// The budgets' ledger, counting the receipts they must: this month's, and every one with
/// a job, streamed from the database.
fn ledger(shared: &Shared, budgets: Budgets, clock: crate::clock::Clock) -> Result<budget::Ledger> {
    let now = clock.now();
    let Some(conn) = crate::store::db::open_read_only(&shared.ws.db_path())? else {
        return Ok(budget::Ledger::new(budgets, [], clock));
    };
    let month = now
        .date_naive()
        .with_day(1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(now, |t| t.and_utc());
    budget::Ledger::counting(budgets, clock, |add| {
        crate::store::receipts::for_budgets(&conn, month, add)
    })
    .with_context(|| {
        format!(
            "cannot read the receipt totals in {} (the budgets start from them)",
            shared.ws.db_path().display()
        )
    })
}
