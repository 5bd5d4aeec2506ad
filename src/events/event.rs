//! The events themselves: one variant per kind of SPEC section 11 (and 13's `trace.*`),
//! with typed fields, serialised here and nowhere else into the wire's
//! `{"type": kind, "data": {...}}` (the hub adds `seq` and `ts`).
//!
//! The stream, the database's rows, the dashboard and `/metrics` all name a kind through
//! [`Event::kind`], so what the SPEC lists, what is emitted and what is read agree by
//! construction rather than by convention. Readers of stored rows (which may predate a
//! field) keep reading `data` as JSON.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::card::millis;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// A card arrived in the inbox, with what the board needs to show and rank it.
    #[serde(rename = "job.created")]
    JobCreated(JobCreated),
    #[serde(rename = "job.assigned")]
    JobAssigned(Transition),
    /// Not among SPEC 11's types, which predate review: named like them.
    #[serde(rename = "job.review")]
    JobReview(Transition),
    #[serde(rename = "job.done")]
    JobDone(Transition),
    #[serde(rename = "job.failed")]
    JobFailed(Transition),
    #[serde(rename = "job.requeued")]
    JobRequeued(Transition),
    #[serde(rename = "job.rejected")]
    JobRejected(Rejected),
    #[serde(rename = "agent.registered")]
    AgentRegistered(AgentEpoch),
    #[serde(rename = "agent.paused")]
    AgentPaused(AgentEpoch),
    #[serde(rename = "agent.resumed")]
    AgentResumed(AgentEpoch),
    #[serde(rename = "agent.heartbeat")]
    AgentHeartbeat(Heartbeat),
    #[serde(rename = "agent.up")]
    AgentUp(AgentUp),
    #[serde(rename = "agent.down")]
    AgentDown(AgentDown),
    #[serde(rename = "agent.deregistered")]
    AgentDeregistered(Deregistered),
    #[serde(rename = "token.warning")]
    TokenWarning(Tokens),
    #[serde(rename = "token.breach")]
    TokenBreach(Breach),
    /// A heartbeat file pas would not read (a link, too big...).
    #[serde(rename = "file.refused")]
    FileRefused(FileRefused),
    #[serde(rename = "cost.receipt")]
    CostReceipt(Box<Receipt>),
    #[serde(rename = "budget.alert")]
    BudgetAlert(BudgetAlert),
    /// Spans stored for one trace, messages left out.
    #[serde(rename = "trace.span")]
    TraceSpan(TraceSpans),
    #[serde(rename = "trace.rejected")]
    TraceRejected(TraceRejected),
}

impl Event {
    /// Every kind, in the SPEC's order and then pas's own additions.
    pub const KINDS: [&'static str; 21] = [
        "job.created",
        "job.assigned",
        "job.done",
        "job.failed",
        "job.requeued",
        "job.rejected",
        "agent.registered",
        "agent.heartbeat",
        "agent.down",
        "agent.up",
        "agent.deregistered",
        "token.warning",
        "token.breach",
        "cost.receipt",
        "budget.alert",
        "trace.span",
        "trace.rejected",
        "job.review",
        "agent.paused",
        "agent.resumed",
        "file.refused",
    ];

    /// The kind's name on the wire (`job.created`).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::JobCreated(_) => "job.created",
            Event::JobAssigned(_) => "job.assigned",
            Event::JobReview(_) => "job.review",
            Event::JobDone(_) => "job.done",
            Event::JobFailed(_) => "job.failed",
            Event::JobRequeued(_) => "job.requeued",
            Event::JobRejected(_) => "job.rejected",
            Event::AgentRegistered(_) => "agent.registered",
            Event::AgentPaused(_) => "agent.paused",
            Event::AgentResumed(_) => "agent.resumed",
            Event::AgentHeartbeat(_) => "agent.heartbeat",
            Event::AgentUp(_) => "agent.up",
            Event::AgentDown(_) => "agent.down",
            Event::AgentDeregistered(_) => "agent.deregistered",
            Event::TokenWarning(_) => "token.warning",
            Event::TokenBreach(_) => "token.breach",
            Event::FileRefused(_) => "file.refused",
            Event::CostReceipt(_) => "cost.receipt",
            Event::BudgetAlert(_) => "budget.alert",
            Event::TraceSpan(_) => "trace.span",
            Event::TraceRejected(_) => "trace.rejected",
        }
    }

    /// The event's `data` object as it goes on the wire and into the database.
    pub fn data(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut m)) => m.remove("data").unwrap_or(Value::Null),
            // Every variant holds a struct of plain fields: serialising cannot fail.
            _ => Value::Null,
        }
    }

    /// Reads an event back from its kind and data (a stored row, a client's message).
    pub fn parse(kind: &str, data: Value) -> serde_json::Result<Event> {
        serde_json::from_value(serde_json::json!({"type": kind, "data": data}))
    }
}

/// `job.created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobCreated {
    pub id: String,
    pub place: String,
    pub title: String,
    pub priority: String,
    pub requires: Vec<String>,
    pub created: DateTime<Utc>,
}

/// A card moving between state folders (`job.assigned`, `.done`, `.failed`, `.requeued`,
/// `.review`), as its history's last entry says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub id: String,
    pub from: String,
    pub to: String,
    /// The agent it goes to, else the one it leaves.
    pub agent: Option<String>,
    pub by: Option<String>,
    pub reason: Option<String>,
}

/// `job.rejected`: a file moved to `work/rejected/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub file: String,
    pub to: String,
    pub reason: String,
}

/// An agent and the epoch of its registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEpoch {
    pub agent: String,
    pub epoch: u64,
}

/// `agent.heartbeat`: a beat that changed something.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub agent: String,
    /// The beat as the agent wrote it (after validation).
    pub beat: Value,
    pub ctx_ratio: Option<f64>,
}

/// `agent.up`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentUp {
    pub agent: String,
    #[serde(with = "millis")]
    pub last_seen: DateTime<Utc>,
}

/// `agent.down`: no beat for two intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentDown {
    pub agent: String,
    #[serde(with = "millis")]
    pub last_seen: DateTime<Utc>,
    pub last_note: Option<String>,
    pub interval_s: f64,
    pub message: String,
}

/// `agent.deregistered`: the registration was removed, or no beat for three intervals
/// (then with when it was last seen and the cards taken back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deregistered {
    pub agent: String,
    /// `None` when pas never saw the registration's epoch.
    pub epoch: Option<u64>,
    pub reason: String,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub silent: Option<Silent>,
}

/// What a deregistration for silence adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silent {
    #[serde(with = "millis")]
    pub last_seen: DateTime<Utc>,
    pub last_note: Option<String>,
    pub cards: Vec<String>,
}

/// `token.warning`: an agent's context at or over the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    pub agent: String,
    pub ctx_ratio: Option<f64>,
    pub target: f64,
    pub hard_max: f64,
}

/// `token.breach`: at or over hard_max, with the save-state card dropped (if one was).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    #[serde(flatten)]
    pub tokens: Tokens,
    pub card: Option<String>,
}

/// `file.refused`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRefused {
    pub file: String,
    pub agent: String,
    pub reason: String,
}

/// `cost.receipt`: one LLM call attempt (money as exact decimal strings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub id: String,
    pub request_id: String,
    pub attempt: u32,
    pub job: Option<String>,
    pub agent: Option<String>,
    pub provider: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub usage_source: crate::llm::cost::UsageSource,
    pub cost_usd: Option<String>,
    pub latency_ms: f64,
    pub stream: bool,
    pub status: String,
    pub error: Option<String>,
    pub replay_of: Option<String>,
}

/// `budget.alert`: spend crossed a threshold of a budget (decimal strings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetAlert {
    pub scope: String,
    pub period: String,
    pub threshold: String,
    pub spent_usd: String,
    pub limit_usd: String,
}

/// `trace.span`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceSpans {
    pub trace_id: String,
    pub spans: Vec<Value>,
}

/// `trace.rejected`: span input refused, naming the source and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceRejected {
    pub source: String,
    pub reason: String,
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
