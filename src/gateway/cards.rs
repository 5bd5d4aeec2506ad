//! LLM job cards: a card with an `llm` section and no agent requirement is run by pas
//! itself, through the same route, fallback, budget and receipt path as a gateway call.
//!
//! The engine hands such a card over when it is ready (its dependencies done) and keeps
//! it in `inbox/` with `waiting_for: pas is running its LLM call`; the outcome comes back
//! as an input to the engine, which writes `result` (or `error`) and moves the card to
//! `done/` (or `failed/`). A card whose call had not started when pas stopped is run
//! again after the restart, since it is still in `inbox/`. One whose call was in flight
//! when pas was killed (its hold left in `telemetry/pas.db-holds`, booked at start as an
//! `interrupted` receipt) is not: the provider may have billed that call, so buying it
//! again silently could pay twice. It goes to `failed/` with an error that names the
//! receipt and says to `pas retry` it, which runs it again on purpose.

use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::call::{self, Answer, Request, Served};
use super::Gateway;
use crate::llm::config::Policy;
use crate::watch::Input;

/// A card for pas to run.
#[derive(Debug, Clone)]
pub struct LlmJob {
    pub id: String,
    /// The card's `llm:` section.
    pub llm: serde_yaml::Value,
    /// The card's `budget_usd`.
    pub budget_usd: Option<String>,
    /// The card's trace and root span: its call is a span under that root.
    pub trace: Option<(String, String)>,
    /// The card's `replay_of`: the recorded call it replays, named on its receipts and span.
    pub replay_of: Option<String>,
}

/// The `llm:` section (SPEC section 2).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    #[serde(default)]
    require_caps: Vec<String>,
    #[serde(default)]
    policy: Option<Policy>,
    #[serde(default)]
    model: Option<String>,
    /// OpenAI chat messages, whole: a replay's tool-call history (assistant `tool_calls`,
    /// `tool` results with their `tool_call_id`) must reach the model as recorded.
    messages: Vec<serde_json::Value>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    /// Any other request parameters (`tools`, `tool_choice`, `top_p`, ...), sent as given:
    /// what a replay keeps of the recorded request besides its model and messages.
    #[serde(default)]
    params: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Parameters a card may not set through `params`: its own keys say them, and a card's
/// call is never streamed (nobody reads the frames).
const RESERVED: &[&str] = &["model", "messages", "stream", "stream_options"];

/// Runs the cards the engine sends, each on its own task; outcomes go back to the engine.
pub async fn executor(
    gw: Arc<Gateway>,
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<LlmJob>,
    engine: SyncSender<Input>,
) {
    while let Some(job) = jobs.recv().await {
        if gw.tasks.is_closed() {
            // pas is stopping: the card stays in the inbox and runs after the restart,
            // before a cent is spent on it.
            break;
        }
        let tasks = gw.tasks.clone();
        let gw = gw.clone();
        let engine = engine.clone();
        tasks.spawn(async move {
            let result = match run(&gw, &job).await {
                Err(Stopped) => return, // stays in the inbox; runs after the restart
                Ok(outcome) => outcome,
            };
            // The engine's queue is bounded; never block a runtime thread on it. The card
            // moves on only once its receipts are stored, so whoever sees it done finds them.
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(db) = &gw.shared.db {
                    db.flush_within(std::time::Duration::from_secs(2));
                }
                engine.send(Input::LlmDone { id: job.id, result })
            })
            .await;
        });
    }
}

/// pas stopped before the card's call could be made: nothing was spent, nothing is said.
#[derive(Debug)]
pub struct Stopped;

/// The card's call: its outcome, `Ok(result mapping)` or `Err(reason)`; `Err(Stopped)`
/// when pas began stopping while the call waited to be made.
pub async fn run(
    gw: &Arc<Gateway>,
    job: &LlmJob,
) -> Result<Result<serde_yaml::Value, String>, Stopped> {
    match call_card(gw, job).await {
        Ok(Some(v)) => Ok(Ok(v)),
        Ok(None) => Err(Stopped),
        Err(reason) => Ok(Err(reason)),
    }
}

/// [`run`]'s work; `Ok(None)` when stopped.
async fn call_card(gw: &Arc<Gateway>, job: &LlmJob) -> Result<Option<serde_yaml::Value>, String> {
    if let Some((receipt, cost)) = gw.take_interrupted(&job.id) {
        return Err(interrupted_reason(&job.id, &receipt, cost));
    }
    let section: Section = serde_yaml::from_value(job.llm.clone())
        .map_err(|e| format!("the llm section is not valid: {e}"))?;
    crate::llm::check_messages(&section.messages)?;
    let model = match (&section.model, section.require_caps.is_empty()) {
        (Some(m), _) => m.clone(),
        (None, false) => format!("cap:{}", section.require_caps.join(",")),
        (None, true) => {
            return Err("the llm section needs a model or require_caps to route by".into())
        }
    };
    let mut body = json!({});
    for (k, v) in section.params.into_iter().flatten() {
        if RESERVED.contains(&k.as_str()) {
            return Err(format!(
                "llm.params.{k} is not allowed: {}",
                if k.starts_with("stream") {
                    "a card's call is never streamed"
                } else {
                    "say it as llm.model / llm.messages"
                }
            ));
        }
        body[k] = v;
    }
    body["model"] = json!(model);
    body["messages"] = json!(section.messages);
    if let Some(m) = section.max_tokens {
        body["max_tokens"] = json!(m);
    }
    if let Some(t) = section.temperature {
        body["temperature"] = json!(t);
    }
    let len = body.to_string().len();
    let mut req = Request::build(gw, body, len, section.policy)?;
    req.job = Some(job.id.clone());
    req.replay_of = job.replay_of.clone();
    if let Some((trace, root)) = &job.trace {
        req.trace = crate::trace::Ctx::under(trace, Some(root));
    }
    req.job_budget = super::budget::job_limit(job.budget_usd.as_deref())?;
    let Some((answer, served)) = run_until_settled(gw, &req).await? else {
        return Ok(None);
    };
    let Answer::Plain(reply) = answer else {
        return Err("a card's call is never streamed".into());
    };
    let u = reply.usage;
    let mut result = json!({
        "text": reply.text,
        "provider": served.provider,
        "model": served.model,
        "tokens": {
            "input": u.input,
            "output": u.output,
            "cached": u.cached,
            "reasoning": u.reasoning,
            "source": u.source,
        },
        "cost_usd": served.cost.map(|c| c.normalize().to_string()),
        "receipt_id": served.receipt_id,
        "request_id": req.id,
    });
    // A tool-calling answer is its calls: a replay of one is compared by them.
    let choice = &reply.body["choices"][0];
    if let Some(calls) = choice["message"]["tool_calls"].as_array() {
        result["tool_calls"] = json!(calls);
    }
    if let Some(f) = choice["finish_reason"].as_str() {
        result["finish_reason"] = json!(f);
    }
    if let Some(r) = &job.replay_of {
        result["replay_of"] = json!(r);
    }
    serde_yaml::to_value(result)
        .map(Some)
        .map_err(|e| format!("cannot write the result: {e}"))
}

/// Why a card whose call pas was killed during is not run again on its own.
pub fn interrupted_reason(job: &str, receipt: &str, cost: rust_decimal::Decimal) -> String {
    format!(
        "pas stopped while this card's LLM call was in flight (receipt {receipt}, status \
         interrupted, booked at its reserved ${}); the provider may have billed it, so pas \
         does not buy it again on its own: `pas retry {job}` to run it again",
        cost.normalize()
    )
}

/// How long a card keeps waiting out transient refusals before it fails with the last one.
const PATIENCE: Duration = Duration::from_secs(300);

/// The card's call, run again while the refusal is one that passes on its own: a budget
/// held only by calls in flight (429), or every provider cooling down (503). An agent
/// would retry those; a card has no agent, so pas does, after the wait the refusal names.
async fn run_until_settled(
    gw: &Arc<Gateway>,
    req: &Request,
) -> Result<Option<(Answer, Served)>, String> {
    let started = tokio::time::Instant::now();
    loop {
        if gw.tasks.is_closed() {
            return Ok(None); // pas is stopping: no new call
        }
        match call::run(gw, req).await {
            Ok(done) => return Ok(Some(done)),
            Err(f) => {
                let message = f.body()["error"]["message"]
                    .as_str()
                    .unwrap_or("the call failed")
                    .to_string();
                let wait = match f.status() {
                    429 | 503 => f.retry_after().unwrap_or(Duration::from_secs(1)),
                    _ => return Err(message),
                };
                let wait = wait.clamp(Duration::from_millis(100), Duration::from_secs(30));
                if started.elapsed() + wait > PATIENCE {
                    return Err(format!(
                        "{message} (still refused after waiting {} s)",
                        started.elapsed().as_secs()
                    ));
                }
                tracing::info!(request = %req.id, wait_ms = wait.as_millis() as u64,
                    "LLM card's call refused for now ({message}); trying again");
                tokio::time::sleep(wait).await;
            }
        }
    }
}
