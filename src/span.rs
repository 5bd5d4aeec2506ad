//! The span: one step of a trace, whoever recorded it (pas's gateway and cards, an agent's
//! JSONL line, an OTLP exporter), and the parsing of an agent's span line.
//!
//! One shape for all three sources, so the store, the tree and every reader treat them
//! alike. Money is a `Decimal` (written as a string); times are UTC; the request and
//! answer of a call are kept whole as JSON (`input`, `output`) so a later replay can send
//! the recorded request again.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a span stands for. `job` is pas's own root span of a card (agents cannot write
/// it: a forged root would pose as pas's record of the card).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Job,
    Agent,
    Step,
    Tool,
    Llm,
    Checkpoint,
}

impl Kind {
    /// The kinds an agent's line may name (the SPEC's list).
    pub const WRITABLE: &'static [&'static str] = &["agent", "step", "tool", "llm", "checkpoint"];

    /// The kind's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Job => "job",
            Kind::Agent => "agent",
            Kind::Step => "step",
            Kind::Tool => "tool",
            Kind::Llm => "llm",
            Kind::Checkpoint => "checkpoint",
        }
    }

    /// The kind named `s`, if an agent may write it.
    pub fn writable(s: &str) -> Option<Kind> {
        Some(match s {
            "agent" => Kind::Agent,
            "step" => Kind::Step,
            "tool" => Kind::Tool,
            "llm" => Kind::Llm,
            "checkpoint" => Kind::Checkpoint,
            _ => return None,
        })
    }

    /// Any kind, pas's own included (for reading the database back).
    pub fn parse(s: &str) -> Option<Kind> {
        if s == "job" {
            return Some(Kind::Job);
        }
        Kind::writable(s)
    }
}

/// Where a span is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Ok,
    Error,
}

impl Status {
    /// The status's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Ok => "ok",
            Status::Error => "error",
        }
    }

    /// The status named `s`, if it is one.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "running" => Status::Running,
            "ok" => Status::Ok,
            "error" => Status::Error,
            _ => return None,
        })
    }
}

/// Who recorded a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// pas itself: a card's lifecycle, a gateway call.
    Pas,
    /// A line of `work/traces/<trace_id>.jsonl` (or `pas span`).
    File,
    /// `POST /v1/traces`.
    Otlp,
}

impl Source {
    /// The source's name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Pas => "pas",
            Source::File => "file",
            Source::Otlp => "otlp",
        }
    }

    /// The source named `s` (pas's own for anything else).
    pub fn parse(s: &str) -> Source {
        match s {
            "file" => Source::File,
            "otlp" => Source::Otlp,
            _ => Source::Pas,
        }
    }
}

/// One span as pas stores and shows it. The LLM fields are filled for `llm` spans (by the
/// gateway from its receipt, or from GenAI attributes); `cost_usd` is `None` when unknown,
/// never a made-up zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    #[serde(default)]
    pub parent_id: Option<String>,
    pub name: String,
    pub kind: Kind,
    pub status: Status,
    pub start: DateTime<Utc>,
    #[serde(default)]
    pub end: Option<DateTime<Utc>>,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub job: Option<String>,
    pub source: Source,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cost_usd: Option<Decimal>,
    #[serde(default)]
    pub ttft_ms: Option<f64>,
    #[serde(default)]
    pub receipt_id: Option<String>,
    #[serde(default)]
    pub attrs: Map<String, Value>,
    #[serde(default)]
    pub input: Option<Value>,
    #[serde(default)]
    pub output: Option<Value>,
}

impl Span {
    /// A span with only its identity, kind and start; the rest empty.
    pub fn new(trace_id: &str, span_id: &str, name: &str, kind: Kind, source: Source) -> Span {
        Span {
            trace_id: trace_id.to_string(),
            span_id: span_id.to_string(),
            parent_id: None,
            name: name.to_string(),
            kind,
            status: Status::Running,
            start: Utc::now(),
            end: None,
            agent: None,
            job: None,
            source,
            provider: None,
            model: None,
            input_tokens: None,
            output_tokens: None,
            cost_usd: None,
            ttft_ms: None,
            receipt_id: None,
            attrs: Map::new(),
            input: None,
            output: None,
        }
    }

    /// Milliseconds from start to end (`None` while running).
    pub fn duration_ms(&self) -> Option<f64> {
        let end = self.end?;
        Some((end - self.start).num_microseconds().unwrap_or(0) as f64 / 1000.0)
    }

    /// Removes whatever could carry a secret from the attributes: keys that name a key,
    /// a password or an authorization header lose their value (said as `[redacted]`).
    pub fn redact(&mut self) {
        redact_map(&mut self.attrs);
    }

    /// The span as a `trace.span` event: what a live view needs to place and total it,
    /// without the messages and attributes, which the event stream (and the events
    /// table behind it) need not copy: `/api/traces/{id}` has them.
    pub fn event(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(m) = v.as_object_mut() {
            m.remove("input");
            m.remove("output");
            m.remove("attrs");
            m.insert("duration_ms".into(), serde_json::json!(self.duration_ms()));
        }
        v
    }
}

/// Whether an attribute named `key` may hold a secret.
pub fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "authorization",
        "api_key",
        "api-key",
        "apikey",
        "password",
        "secret",
        "cookie",
        "x-pas-token",
        "bearer",
    ]
    .iter()
    .any(|s| k.contains(s))
}

fn redact_map(m: &mut Map<String, Value>) {
    for (k, v) in m.iter_mut() {
        if secret_key(k) {
            *v = Value::String("[redacted]".into());
        } else if let Value::Object(inner) = v {
            redact_map(inner);
        }
    }
}

/// Whether `s` is a W3C trace id: 32 lowercase hex digits, not all zero.
pub fn valid_trace_id(s: &str) -> bool {
    hex_id(s, 32)
}

/// Whether `s` is a W3C span id: 16 lowercase hex digits, not all zero.
pub fn valid_span_id(s: &str) -> bool {
    hex_id(s, 16)
}

fn hex_id(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

/// A new random trace id (a ULID's 128 bits: never all zero, as its time part is not).
pub fn new_trace_id() -> String {
    format!("{:032x}", u128::from(ulid::Ulid::new()))
}

/// A new random span id (the random low 64 bits of a ULID; all zero is drawn again).
pub fn new_span_id() -> String {
    loop {
        let v = u128::from(ulid::Ulid::new()) as u64;
        if v != 0 {
            return format!("{v:016x}");
        }
    }
}

/// Parses a W3C `traceparent` header (`00-<trace>-<parent>-<flags>`); `None` when it is
/// not one, in which case the SPEC says to start afresh (the header is advice, not a
/// command, so a malformed one is ignored rather than refused).
pub fn parse_traceparent(h: &str) -> Option<(String, String)> {
    let mut parts = h.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2 || version == "ff" || flags.len() != 2 {
        return None;
    }
    if !version.bytes().all(|b| b.is_ascii_hexdigit())
        || (version == "00" && parts.next().is_some())
    {
        return None;
    }
    (valid_trace_id(trace) && valid_span_id(parent)).then(|| (trace.into(), parent.into()))
}

/// One agent's span line, as written (SPEC section 13). Unknown keys are refused, so a
/// typo (`"stauts"`) is said rather than silently lost.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    trace_id: Option<String>,
    span_id: String,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    start: Option<DateTime<Utc>>,
    #[serde(default)]
    end: Option<DateTime<Utc>>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    job: Option<String>,
    #[serde(default)]
    attrs: Option<Map<String, Value>>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    output: Option<Value>,
}

/// An agent's span line read: the fields it set (a later line for the same span sets
/// only what it names; see `store::upsert`).
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub span: Span,
    /// Whether the line named a start, a name and a kind (a first line must).
    pub complete: bool,
}

/// Parses one line of `work/traces/<trace_id>.jsonl`; `file_trace` is the file's trace id.
/// The error says what is wrong, for the reason pas gives.
pub fn parse_line(text: &str, file_trace: &str) -> Result<Update, String> {
    let l: Line = serde_json::from_str(text).map_err(|e| {
        let t = e.to_string();
        match t.rsplit_once(" at line 1 column ") {
            Some((what, col)) => format!("{what} (column {col})"),
            None => t,
        }
    })?;
    let trace_id = l.trace_id.unwrap_or_else(|| file_trace.to_string());
    if trace_id != file_trace {
        return Err(format!(
            "trace_id {trace_id:?} is not the file's ({file_trace}): a trace's spans go in work/traces/<its trace_id>.jsonl"
        ));
    }
    if !valid_span_id(&l.span_id) {
        return Err(format!(
            "span_id {:?} is not 16 lowercase hex digits (not all zero)",
            l.span_id
        ));
    }
    if let Some(p) = &l.parent_id {
        if !valid_span_id(p) {
            return Err(format!(
                "parent_id {p:?} is not 16 lowercase hex digits (not all zero)"
            ));
        }
        if *p == l.span_id {
            return Err("parent_id is the span's own span_id".into());
        }
    }
    let kind =
        match &l.kind {
            Some(k) => Some(Kind::writable(k).ok_or_else(|| {
                format!("unknown kind {k:?}: one of {}", Kind::WRITABLE.join(", "))
            })?),
            None => None,
        };
    let status = match &l.status {
        Some(s) => Some(
            Status::parse(s)
                .ok_or_else(|| format!("unknown status {s:?}: one of running, ok, error"))?,
        ),
        None => None,
    };
    for (what, t) in [("start", l.start), ("end", l.end)] {
        if t.is_some_and(|t| !crate::card::sane_date(t)) {
            return Err(format!("{what} is outside the years 2000 to 9999"));
        }
    }
    if let (Some(s), Some(e)) = (l.start, l.end) {
        if e < s {
            return Err("end is before start".into());
        }
    }
    if let Some(a) = &l.agent {
        if !crate::card::valid_agent_name(a) {
            return Err(format!("agent {a:?} is not a valid agent name"));
        }
    }
    if let Some(j) = &l.job {
        if !crate::card::valid_id(j) {
            return Err(format!("job {j:?} is not a valid job id"));
        }
    }
    let name = l.name.clone().unwrap_or_default();
    if name.len() > 512 {
        return Err("name is longer than 512 bytes".into());
    }
    let complete = l.start.is_some() && l.name.is_some() && kind.is_some();
    let mut span = Span::new(
        &trace_id,
        &l.span_id,
        &name,
        kind.unwrap_or(Kind::Step),
        Source::File,
    );
    span.parent_id = l.parent_id;
    span.start = l.start.unwrap_or(span.start);
    span.end = l.end;
    span.status = status.unwrap_or(if l.end.is_some() {
        Status::Ok
    } else {
        Status::Running
    });
    span.agent = l.agent;
    span.job = l.job;
    span.attrs = l.attrs.unwrap_or_default();
    span.input = l.input;
    span.output = l.output;
    llm_fields_from_attrs(&mut span);
    span.redact();
    Ok(Update { span, complete })
}

/// Takes an `llm` span's counts from its attributes, by the GenAI names
/// (`gen_ai.usage.input_tokens`, `gen_ai.request.model`, ...) or pas's short ones
/// (`input_tokens`, `model`, `cost_usd`), so an agent's own calls roll up like pas's.
pub fn llm_fields_from_attrs(span: &mut Span) {
    let a = &span.attrs;
    let num = |keys: &[&str]| {
        keys.iter().find_map(|k| {
            a.get(*k).and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
        })
    };
    let text = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| a.get(*k).and_then(Value::as_str).map(str::to_string))
    };
    span.input_tokens = span.input_tokens.or(num(&[
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.prompt_tokens",
        "input_tokens",
    ]));
    span.output_tokens = span.output_tokens.or(num(&[
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",
        "output_tokens",
    ]));
    span.model = span
        .model
        .take()
        .or_else(|| text(&["gen_ai.response.model", "gen_ai.request.model", "model"]));
    span.provider = span
        .provider
        .take()
        .or_else(|| text(&["gen_ai.provider.name", "gen_ai.system", "provider"]));
    if span.cost_usd.is_none() {
        // Only an exact decimal is money: a JSON number is read through its text, never
        // through a float.
        span.cost_usd = ["cost_usd", "pas.cost_usd"]
            .iter()
            .find_map(|k| match a.get(*k)? {
                Value::String(s) => s.parse().ok(),
                Value::Number(n) => n.to_string().parse().ok(),
                _ => None,
            });
    }
}
