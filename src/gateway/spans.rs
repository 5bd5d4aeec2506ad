//! The gateway's spans. A call is one `llm` span (its id goes back to the caller as
//! `x-pas-span-id`): the request as the caller sent it (messages, tools, tool results,
//! parameters; never a header, so never a key), the answer (text, tool calls, finish
//! reason), and the answering attempt's receipt, tokens, exact cost, latency and TTFT.
//! Each failed attempt before it is a child span with its own receipt, so a fallback shows
//! as the attempts it took and the subtree's cost is what the call cost in all.
//!
//! Built from what the call path already has, after the fact; handing the span to the
//! [`Tracer`](crate::trace::Tracer) is a channel send, so no answer waits on it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::llm::cost::Usage;
use crate::span::{Kind, Source, Span, Status};
use crate::trace::Ctx;

/// What is known of a call when it starts.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub ctx: &'a Ctx,
    pub body: &'a Value,
    pub agent: Option<&'a str>,
    pub job: Option<&'a str>,
    pub stream: bool,
    pub request_id: &'a str,
    pub at: DateTime<Utc>,
    /// The recorded call this one replays (`TRACE_ID/SPAN_ID`): the link between the
    /// replay's trace and the original's.
    pub replay_of: Option<&'a str>,
}

/// How an attempt (or the whole call) ended.
#[derive(Debug, Clone, Default)]
pub struct Ended {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub receipt_id: Option<String>,
    pub usage: Option<Usage>,
    pub cost: Option<Decimal>,
    pub ttft: Option<Duration>,
    pub ok: bool,
    pub error: Option<String>,
    pub output: Option<Value>,
    pub attempt: Option<u32>,
}

/// The call's own span (`ctx.span_id`), ended now.
pub fn call_span(c: &Call<'_>, end: Ended) -> Span {
    let asked = c.body.get("model").and_then(Value::as_str).unwrap_or("?");
    let mut s = base(
        c,
        &c.ctx.span_id,
        c.ctx.parent_id.clone(),
        format!("chat {asked}"),
    );
    s.input = Some(c.body.clone());
    fill(&mut s, end);
    s
}

/// A failed attempt's child span (under the call's), lasting `took` up to now.
pub fn attempt_span(c: &Call<'_>, took: Duration, end: Ended) -> Span {
    let label = format!(
        "attempt {} {}/{}",
        end.attempt.unwrap_or(0),
        end.provider.as_deref().unwrap_or("?"),
        end.model.as_deref().unwrap_or("?")
    );
    let mut s = base(
        c,
        &crate::span::new_span_id(),
        Some(c.ctx.span_id.clone()),
        label,
    );
    let now = Utc::now();
    s.start = now - chrono::Duration::from_std(took).unwrap_or_default();
    s.end = Some(now);
    fill(&mut s, end);
    s
}

fn base(c: &Call<'_>, span_id: &str, parent: Option<String>, name: String) -> Span {
    let mut s = Span::new(&c.ctx.trace_id, span_id, &name, Kind::Llm, Source::Pas);
    s.parent_id = parent;
    s.start = c.at;
    s.end = Some(Utc::now());
    s.agent = c.agent.map(str::to_string);
    s.job = c.job.map(str::to_string);
    s.attrs.insert("request_id".into(), json!(c.request_id));
    s.attrs.insert("stream".into(), json!(c.stream));
    s.attrs
        .insert("gen_ai.operation.name".into(), json!("chat"));
    if let Some(m) = c.body.get("model") {
        s.attrs.insert("gen_ai.request.model".into(), m.clone());
    }
    if let Some(r) = c.replay_of {
        s.attrs.insert("pas.replay_of".into(), json!(r));
    }
    s
}

fn fill(s: &mut Span, e: Ended) {
    s.status = if e.ok { Status::Ok } else { Status::Error };
    s.provider = e.provider;
    s.model = e.model;
    s.receipt_id = e.receipt_id;
    s.cost_usd = e.cost;
    s.ttft_ms = e.ttft.map(|t| t.as_secs_f64() * 1000.0);
    if let Some(u) = e.usage {
        s.input_tokens = Some(u.input);
        s.output_tokens = Some(u.output);
        if u.cached > 0 {
            s.attrs.insert("cached_tokens".into(), json!(u.cached));
        }
        if u.reasoning > 0 {
            s.attrs
                .insert("reasoning_tokens".into(), json!(u.reasoning));
        }
    }
    if let Some(err) = e.error {
        s.attrs.insert("error".into(), json!(err));
    }
    if let Some(n) = e.attempt {
        s.attrs.insert("attempt".into(), json!(n));
    }
    if let Some(out) = &e.output {
        if let Some(fr) = out.pointer("/choices/0/finish_reason") {
            s.attrs.insert("finish_reason".into(), fr.clone());
        }
    }
    s.output = e.output;
}

/// Most text of a streamed answer a span keeps: a stream may run to the gateway's answer
/// cap (64 MiB) before it is cut, and copying that into the span, the event thread and
/// the database would cost the memory the cap exists to bound.
pub const MAX_STREAM_TEXT: usize = 1 << 20;

/// What a stream's frames (OpenAI chunks, as the caller gets them) said beyond their
/// text: the tool calls, pieced together, and the finish reason. Only frames that name
/// either are parsed, so a plain text stream costs a byte scan per frame.
#[derive(Debug, Default)]
pub struct StreamSeen {
    calls: Vec<Value>,
    finish: Option<String>,
}

fn holds(frame: &[u8], pat: &[u8]) -> bool {
    frame.windows(pat.len()).any(|w| w == pat)
}

impl StreamSeen {
    /// Takes in one frame (`data: {...}` lines).
    pub fn observe(&mut self, frame: &[u8]) {
        let finish =
            holds(frame, b"\"finish_reason\":\"") || holds(frame, b"\"finish_reason\": \"");
        if !finish && !holds(frame, b"\"tool_calls\"") {
            return;
        }
        for line in frame.split(|b| *b == b'\n') {
            let Some(data) = line.strip_prefix(b"data: ") else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<Value>(data) else {
                continue;
            };
            let Some(choice) = v.pointer("/choices/0") else {
                continue;
            };
            if let Some(f) = choice["finish_reason"].as_str() {
                self.finish = Some(f.to_string());
            }
            for call in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                self.piece(call);
            }
        }
    }

    /// Merges one tool-call delta into the call at its index (bounded: 1,024 calls).
    fn piece(&mut self, d: &Value) {
        let i = d["index"].as_u64().unwrap_or(0) as usize;
        if i >= 1024 {
            return;
        }
        while self.calls.len() <= i {
            self.calls.push(json!({"id": null, "type": "function",
                "function": {"name": null, "arguments": ""}}));
        }
        let c = &mut self.calls[i];
        if let Some(id) = d["id"].as_str() {
            c["id"] = json!(id);
        }
        if let Some(name) = d["function"]["name"].as_str() {
            c["function"]["name"] = json!(name);
        }
        if let Some(a) = d["function"]["arguments"].as_str() {
            let so_far = c["function"]["arguments"].as_str().unwrap_or("");
            if so_far.len() + a.len() <= MAX_STREAM_TEXT {
                c["function"]["arguments"] = json!(format!("{so_far}{a}"));
            }
        }
    }
}

/// A streamed answer as pas saw it go by, in the shape of a plain answer: its text, at
/// most [`MAX_STREAM_TEXT`] bytes (`truncated` says when it was longer), its tool calls
/// and its finish reason.
pub fn streamed_output(text: &str, seen: &StreamSeen) -> Value {
    let mut end = text.len().min(MAX_STREAM_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut message = json!({"role": "assistant", "content": &text[..end]});
    if !seen.calls.is_empty() {
        message["tool_calls"] = Value::Array(seen.calls.clone());
    }
    let mut out = json!({"choices": [{"index": 0, "message": message,
        "finish_reason": seen.finish}]});
    if end < text.len() {
        out["truncated"] = json!({"kept_bytes": end, "total_bytes": text.len()});
    }
    out
}
