//! One LLM call through the gateway: route, then try each candidate in order until one
//! answers, with a budget hold and a receipt for every attempt.
//!
//! Connect errors, timeouts, 429 (its `Retry-After` honoured), 5xx, and a 401, 403 or 404
//! (the provider's key, model id or `base_url` is wrong) move to the next candidate; a
//! 4xx that is the request's fault goes straight back to the caller, since another
//! provider would refuse it too. An upstream's 401 never reaches the caller as such: its
//! SDK would say the caller's own key is wrong. A stream counts as answered once its first
//! chunk has arrived, so a failure before that is invisible to the caller. Every attempt
//! gives its provider's breaker one verdict, and gets a receipt: these go to the telemetry
//! writer's queue (batched off the request path) and onto the event stream. A request a
//! candidate's protocol cannot say (the deprecated `functions` in the Messages API) is no
//! attempt: nothing is sent, so there is no verdict and no receipt, and the next candidate
//! may take it; only when none can is it the caller's 400.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::budget::Refusal;
pub use super::receipt::Relay;
use super::receipt::{Attempt, Ending, Open};
use super::Gateway;
use crate::llm::config::Policy;
use crate::llm::config::{Model, Protocol, Provider};
use crate::llm::cost::{self, Usage, UsageSource};
use crate::llm::route::{Gate, Need, Verdict};
use crate::llm::wire::{self, CallError};
use crate::trace;

/// What the caller asked for, resolved.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: String,
    /// OpenAI-shaped chat request.
    pub body: Value,
    pub stream: bool,
    pub agent: Option<String>,
    pub job: Option<String>,
    /// The job card's `budget_usd`.
    pub job_budget: Option<Decimal>,
    pub need: Need,
    pub policy: Policy,
    /// Most output tokens the call may produce (for the worst case), if the request says.
    pub max_output: Option<u64>,
    /// Upper bound of the input tokens: the request's bytes (a token is at least a byte),
    /// with each image at its ceiling instead of its bytes.
    pub input_bound: u64,
    /// How many completions the call asks for (`n`): each may be `max_output` long.
    pub choices: u64,
    /// The request marks something for Anthropic's prompt cache (`cache_control`), so its
    /// input may be billed at a cache-write rate.
    pub marks_cache: bool,
    /// The call's span and the trace it joins (a new trace unless the caller says).
    pub trace: crate::trace::Ctx,
    /// When the call came in (its span's start).
    pub at: chrono::DateTime<chrono::Utc>,
    /// The recorded call this one replays (`TRACE_ID/SPAN_ID`, from a replay card): its
    /// receipts and span name it.
    pub replay_of: Option<String>,
    /// The Messages API request as the caller sent it (`body` is its chat form): what an
    /// `anthropic` provider is sent, so nothing of it is lost on the way.
    pub native: Option<Value>,
    /// The caller's `anthropic-beta` header, sent on with `native`.
    pub beta: Option<String>,
}

impl Request {
    /// A request for the OpenAI-shaped `body` (`len` bytes long): `model` is a model id
    /// or `cap:<capability>[,<capability>...]`; `policy` overrides the configured one.
    /// Attribution (agent, job) is the caller's to fill in.
    pub fn build(
        gw: &Gateway,
        body: Value,
        len: usize,
        policy: Option<Policy>,
    ) -> Result<Request, String> {
        if !body.is_object() {
            return Err("the request body must be a JSON object".into());
        }
        let Some(model) = body.get("model").and_then(Value::as_str) else {
            return Err("`model` is required: a model id, or cap:<capability>".into());
        };
        // A name the client chose (Claude Code's `claude-sonnet-4-5`) routes as pas.yaml says.
        let model = gw.aliases.resolve(model, &gw.providers);
        if !body.get("messages").is_some_and(Value::is_array) {
            return Err("`messages` must be a list of chat messages".into());
        }
        let max_output = ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|k| body.get(*k).and_then(Value::as_u64));
        let body_choices = match body.get("n") {
            None | Some(Value::Null) => 1,
            Some(n) => match n.as_u64() {
                Some(n @ 1..) => n,
                _ => return Err("`n` must be a whole number of choices, at least 1".into()),
            },
        };
        // Images count by their pixels (a ceiling each), not by their base64 bytes.
        let images = cost::images_in(&body["messages"]);
        let mut need = Need {
            // Saturating: a caller's huge max_tokens must fail the context check, not wrap.
            ctx_tokens: cost::estimate_with_images(len as u64, images)
                .saturating_add(max_output.unwrap_or(0)),
            ..Need::default()
        };
        match model.strip_prefix("cap:") {
            Some(caps) => {
                need.capabilities = caps
                    .split([',', '+'])
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect();
                if need.capabilities.is_empty() {
                    return Err("`cap:` needs at least one capability, e.g. cap:summarize".into());
                }
            }
            None => need.model = Some(model.to_string()),
        }
        Ok(Request {
            id: ulid::Ulid::new().to_string(),
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            agent: None,
            job: None,
            job_budget: None,
            need,
            policy: policy.unwrap_or(gw.policy),
            max_output,
            input_bound: (len as u64)
                .saturating_sub(images.bytes)
                .saturating_add(images.count.saturating_mul(cost::IMAGE_TOKENS)),
            choices: body_choices,
            marks_cache: marks_cache(&body),
            trace: crate::trace::Ctx::fresh(),
            at: chrono::Utc::now(),
            replay_of: None,
            native: None,
            beta: None,
            body,
        })
    }
}

/// Whether `v` holds a `cache_control` key anywhere (a text part, a tool, a block passed
/// through): the only way a call through pas writes to Anthropic's prompt cache.
fn marks_cache(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("cache_control") || m.values().any(marks_cache),
        Value::Array(a) => a.iter().any(marks_cache),
        _ => false,
    }
}

/// Why a call did not succeed, as the caller sees it (OpenAI error shape).
#[derive(Debug)]
pub enum Failure {
    /// No model can serve the request.
    NoCandidate(String),
    /// Every paid candidate would break a budget, and no free one was left: 402 when the
    /// budget is spent (final: OpenAI SDKs retry a 429 on their own), 429 with
    /// `Retry-After` when only calls in flight hold the rest.
    Budget(Refusal),
    /// The upstream refused the request itself (a 4xx): its status and message, and the
    /// time spent waiting on upstreams (this attempt and those before it).
    Rejected {
        code: u16,
        message: String,
        upstream: Duration,
    },
    /// No candidate's protocol can say the request (each one's reason, naming the field);
    /// nothing was sent.
    Untranslatable(String),
    /// Every candidate failed or is cooling down; `upstream` as for `Rejected`.
    Exhausted {
        attempts: Vec<String>,
        retry_after: Option<Duration>,
        upstream: Duration,
    },
}

impl Failure {
    pub fn status(&self) -> u16 {
        match self {
            Failure::NoCandidate(_) => 404,
            Failure::Budget(r) if r.exhausted() => 402,
            Failure::Budget(_) => 429,
            Failure::Rejected { code, .. } => *code,
            Failure::Untranslatable(_) => 400,
            Failure::Exhausted {
                retry_after: Some(_),
                ..
            } => 503,
            Failure::Exhausted { .. } => 502,
        }
    }

    /// The OpenAI error body.
    pub fn body(&self) -> Value {
        let (message, kind, code) = match self {
            Failure::NoCandidate(m) => (m.clone(), "invalid_request_error", "model_not_found"),
            Failure::Budget(r) if r.exhausted() => {
                (r.to_string(), "insufficient_quota", "budget_exceeded")
            }
            Failure::Budget(r) => (
                format!("{r}; calls in flight hold the rest: retry once they finish"),
                "rate_limit_error",
                "budget_reserved",
            ),
            Failure::Rejected { message, .. } => (
                message.clone(),
                "invalid_request_error",
                "upstream_rejected",
            ),
            Failure::Untranslatable(m) => {
                (m.clone(), "invalid_request_error", "untranslatable_request")
            }
            Failure::Exhausted { attempts, .. } => (
                format!("no provider answered: {}", attempts.join("; ")),
                "api_error",
                "upstream_unavailable",
            ),
        };
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
    }

    /// Time spent waiting on upstreams before the call failed: not pas's overhead.
    pub fn upstream(&self) -> Duration {
        match self {
            Failure::Rejected { upstream, .. } | Failure::Exhausted { upstream, .. } => *upstream,
            Failure::NoCandidate(_) | Failure::Budget(_) | Failure::Untranslatable(_) => {
                Duration::ZERO
            }
        }
    }

    /// How long the caller should wait: when every candidate is cooling down, or when
    /// only reservations of calls in flight fill a budget (they settle within a call's
    /// time; a second is a retry soon, not a promise).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Exhausted { retry_after, .. } => *retry_after,
            Failure::Budget(r) if !r.exhausted() => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

/// Who answered, and at what cost.
#[derive(Debug, Clone)]
pub struct Served {
    pub provider: String,
    pub model: String,
    pub receipt_id: String,
    pub cost: Option<Decimal>,
    /// Time spent waiting on upstreams, all attempts together.
    pub upstream: Duration,
    /// Streamed: the cost is in the receipt written at the end, not known yet.
    pub streamed: bool,
}

/// A successful attempt's payload.
pub enum Answer {
    Plain(wire::Reply),
    Stream(Box<Relay>),
}

/// Runs `req` through the candidates. For a stream, the receipt of the answering
/// attempt is written when the [`Relay`] finishes (or is dropped), and so is its span;
/// otherwise the call's span is recorded here, once the call is over.
pub async fn run(gw: &Arc<Gateway>, req: &Request) -> Result<(Answer, Served), Failure> {
    let out = attempts(gw, req).await;
    super::receipt::record_call(&gw.tracer, req, &out);
    out
}

async fn attempts(gw: &Arc<Gateway>, req: &Request) -> Result<(Answer, Served), Failure> {
    let order = gw.candidates(&req.need, req.policy)?;
    let mut attempts: Vec<String> = Vec::new();
    let mut refusal: Option<Refusal> = None;
    let mut upstream = Duration::ZERO;
    let mut soonest: Option<Duration> = None;
    // Attempts sent, and candidates whose protocol could not say the request.
    let mut n = 0u32;
    let mut unsaid = 0usize;
    for (pi, mi) in order {
        let provider = &gw.providers[pi];
        let model = &provider.models[mi];
        let label = format!("{}/{}", provider.name, model.id);
        let key = match gw.keys.get(&provider.name) {
            Some(Ok(k)) => k.as_deref(),
            Some(Err(e)) => {
                attempts.push(format!("{label}: {e}"));
                continue;
            }
            None => None,
        };
        let now = gw.ledger.clock().instant();
        let mut probing = false;
        {
            let mut health = gw.lock_health();
            match health.gate(&provider.name, now) {
                Gate::Open(left) => {
                    soonest = Some(soonest.map_or(left, |s| s.min(left)));
                    attempts.push(format!(
                        "{label}: cooling down for {:.1} s",
                        left.as_secs_f64()
                    ));
                    continue;
                }
                Gate::HalfOpen => {
                    if !health.begin_probe(&provider.name, now) {
                        attempts.push(format!("{label}: another request is probing it"));
                        continue;
                    }
                    probing = true;
                }
                Gate::Closed => {}
            }
        }
        let price = model.price_per_mtok.as_ref();
        let max_out = req
            .max_output
            .or(model.max_output_tokens)
            .unwrap_or(DEFAULT_MAX_OUTPUT);
        // Every one of `n` choices may run to the bound, and each is billed as output.
        let may_write_cache = req.marks_cache && provider.protocol == Protocol::Anthropic;
        let worst_for = |input: u64| {
            cost::worst_case(
                price,
                input,
                max_out.saturating_mul(req.choices),
                may_write_cache,
            )
            .unwrap_or_default()
        };
        let budgeted = gw.ledger.limited() || req.job_budget.is_some();
        // Under a budget, a model whose billed surplus is unknown takes one paid call at a
        // time until an answer teaches it (see `surplus`).
        let probe = if budgeted && worst_for(req.input_bound) > Decimal::ZERO {
            let patience = Duration::try_from_secs_f64(provider.timeout_s).unwrap_or(Duration::MAX);
            gw.surplus
                .first_call(&provider.name, &model.id, patience)
                .await
        } else {
            None
        };
        let surplus = gw.surplus.of(&provider.name, &model.id).unwrap_or(0);
        let worst = worst_for(req.input_bound.saturating_add(surplus));
        let hold = match gw.ledger.admit(
            worst,
            req.agent.as_deref(),
            req.job.as_deref(),
            req.job_budget,
        ) {
            Ok(h) => h,
            Err(r) => {
                if probing {
                    gw.lock_health().end_probe(&provider.name);
                }
                if let Some(al) = gw.ledger.refused(&r) {
                    gw.alert(al, gw.ledger.clock().now());
                }
                attempts.push(format!("{label}: {r}"));
                // Say the refusal a retry could get past, if any candidate has one.
                if refusal
                    .as_ref()
                    .is_none_or(|o| o.exhausted() && !r.exhausted())
                {
                    refusal = Some(r);
                }
                continue;
            }
        };
        // The receipt's id, chosen now so the durable hold and the receipt share it.
        let attempt = n + 1;
        let receipt_id = ulid::Ulid::new().to_string();
        gw.hold_durably(req, attempt, provider, model, &receipt_id, &hold);
        let mut body = req.body.clone();
        if req.max_output.is_none()
            && worst > Decimal::ZERO
            && (gw.ledger.limited() || req.job_budget.is_some())
        {
            // The worst case assumed this bound; hold the provider to it, in the field
            // that provider reads (OpenAI's reasoning models refuse `max_tokens`).
            body[provider.max_tokens_field().key()] = json!(max_out);
        }
        let target = wire::Target {
            provider,
            model,
            api_key: key,
            native: req.native.as_ref().map(|body| wire::Native {
                body,
                beta: req.beta.as_deref(),
            }),
        };
        let started = Instant::now();
        let got = if req.stream {
            wire::stream(&gw.client, &target, &body)
                .await
                .map(|s| Got::Stream(Box::new(s)))
        } else {
            wire::complete(&gw.client, &target, &body)
                .await
                .map(Got::Plain)
        };
        let took = started.elapsed();
        if let Err(e @ CallError::Untranslatable(_)) = &got {
            // Nothing was sent: it says nothing of the provider (a probe it took goes back
            // untried), costs nothing, and is no attempt, so it gets no receipt (there is no
            // call to account for) and no fallback is counted; the next candidate, of
            // another protocol, may take the request.
            if probing {
                gw.lock_health().end_probe(&provider.name);
            }
            gw.forget_hold(&receipt_id);
            let now = gw.ledger.clock().now();
            for al in gw.ledger.settle(hold, Some(Decimal::ZERO), req.job_budget) {
                gw.alert(al, now);
            }
            attempts.push(format!("{label}: {e}"));
            unsaid += 1;
            continue;
        }
        n = attempt;
        if n > 1 {
            gw.metrics.fallback();
        }
        upstream += took;
        // Every attempt tells the breaker something, and ends its probe if it took one.
        let verdict = match &got {
            Ok(Got::Plain(_)) => Verdict::Served {
                latency_ms: took.as_secs_f64() * 1000.0,
            },
            Ok(Got::Stream(s)) => Verdict::Served {
                latency_ms: s.ttft().as_secs_f64() * 1000.0,
            },
            Err(e) if !e.retryable() => Verdict::Answered,
            Err(e) => e.retry_after().map_or(Verdict::Failed, Verdict::HoldOff),
        };
        let opened = gw.lock_health().record(
            &provider.name,
            &model.id,
            verdict,
            probing,
            gw.ledger.clock().instant(),
        );
        if let Some(cool) = opened {
            tracing::warn!(provider = %provider.name, cooldown_s = cool.as_secs_f64(),
                "provider keeps failing: cooling down");
        }
        let base = Attempt {
            request: req,
            attempt: n,
            provider,
            model,
        };
        match got {
            Ok(Got::Plain(reply)) => {
                let c = cost::cost(price, &reply.usage);
                let end = Ending {
                    usage: reply.usage,
                    cost: c,
                    took,
                    ttft: None,
                    status: "ok",
                    error: None,
                };
                let receipt_id = gw.record(&base, Some(receipt_id), end, hold);
                drop(probe); // the surplus is learnt (or this answer had no usage)
                let served = served(provider, model, receipt_id, c, upstream);
                return Ok((Answer::Plain(reply), served));
            }
            Ok(Got::Stream(stream)) => {
                let relay = Relay {
                    seen: Default::default(),
                    stream: *stream,
                    open: Some(Open {
                        gw: gw.clone(),
                        request: req.clone(),
                        attempt: n,
                        provider: pi,
                        model: mi,
                        receipt_id: receipt_id.clone(),
                        started,
                        hold,
                        probe,
                    }),
                };
                let mut served = served(provider, model, receipt_id, None, upstream);
                served.streamed = true;
                return Ok((Answer::Stream(Box::new(relay)), served));
            }
            Err(e) => {
                let usage = billed_for(&e, &body);
                let c = cost::cost(price, &usage);
                let end = Ending {
                    usage,
                    cost: c,
                    took,
                    ttft: None,
                    status: "error",
                    // The kind first (`timeout: ...`, `http_429: ...`): see ReceiptRow::kind.
                    error: Some(format!("{}: {e}", e.status())),
                };
                let receipt_id = gw.record(&base, Some(receipt_id), end, hold);
                if gw.tracer.capture != trace::Capture::Off {
                    let end = super::spans::Ended {
                        provider: Some(provider.name.clone()),
                        model: Some(model.id.clone()),
                        receipt_id: Some(receipt_id),
                        usage: Some(usage),
                        cost: c,
                        error: Some(format!("{}: {e}", e.status())),
                        attempt: Some(n),
                        ..Default::default()
                    };
                    let span = super::spans::attempt_span(&req.span_call(), took, end);
                    gw.tracer.record(span, false);
                }
                drop(probe);
                attempts.push(format!("{label}: {e}{}", hint(&e)));
                if !e.retryable() {
                    let code = match &e {
                        CallError::Status { code, .. } => *code,
                        _ => 502,
                    };
                    return Err(Failure::Rejected {
                        code,
                        message: format!("{label}: {e}"),
                        upstream,
                    });
                }
            }
        }
    }
    if let (Some(r), true) = (refusal, n == 0) {
        // A spent budget is final only if no other candidate can serve later: a free one
        // cooling down will, so that is a 503 with its Retry-After, not a 402.
        if !(r.exhausted() && soonest.is_some()) {
            return Err(Failure::Budget(r));
        }
    }
    if unsaid > 0 && unsaid == attempts.len() {
        return Err(Failure::Untranslatable(attempts.join("; ")));
    }
    Err(Failure::Exhausted {
        attempts,
        retry_after: soonest.filter(|_| n == 0),
        upstream,
    })
}

/// What a failed attempt is booked at. A timeout comes after the request was sent, so the
/// provider may have read (and will bill) its input: the input estimated from the request,
/// no output. A refusal (an HTTP error), a connect error or a malformed answer is $0, as
/// providers do not bill them (or, malformed, as nothing says what was used).
fn billed_for(e: &CallError, body: &Value) -> Usage {
    match e {
        CallError::Timeout { .. } => Usage {
            input: wire::estimate_input(body),
            source: UsageSource::Estimated,
            ..Usage::default()
        },
        _ => Usage::default(),
    }
}

/// What to fix, for a refusal that is pas's setup of the provider rather than the request.
fn hint(e: &CallError) -> &'static str {
    match e {
        CallError::Status {
            code: 401 | 403, ..
        } => " (the provider refused the key pas holds for it: check its api_key_env)",
        CallError::Status { code: 404, .. } => {
            " (the provider does not know this model id, or its base_url is wrong)"
        }
        _ => "",
    }
}

/// Output tokens assumed when neither the request nor the model bounds them.
pub const DEFAULT_MAX_OUTPUT: u64 = 4096;

enum Got {
    Plain(wire::Reply),
    Stream(Box<wire::Stream>),
}

fn served(
    p: &Provider,
    m: &Model,
    receipt_id: String,
    cost: Option<Decimal>,
    up: Duration,
) -> Served {
    Served {
        provider: p.name.clone(),
        model: m.id.clone(),
        receipt_id,
        cost,
        upstream: up,
        streamed: false,
    }
}
