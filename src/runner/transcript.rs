//! A run's transcript as spans of the card's trace (SPEC sections 13 and 16).
//!
//! `claude-stream-json` reads Claude Code's `--output-format stream-json --verbose` lines
//! as they come: each assistant message becomes an `llm` span (its text and tool calls,
//! model and tokens), each `tool_use` with its `tool_result` a `tool` span under it, all
//! below one `agent` span for the run, itself under the card's root span. The final
//! `result` event gives the card's `result` and the usage by model. `lines` makes one
//! `agent` span per run with the output's tail.
//!
//! Spans are appended to `work/traces/<trace_id>.jsonl` like any agent's, so the daemon
//! ingests them the one way it knows; nothing here touches the database.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use super::definition::Transcript as Format;
use crate::llm::cost::{Usage, UsageSource};
use crate::span::new_span_id;

/// Usage an agent reported for one model over a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelUsage {
    pub model: String,
    pub usage: Usage,
    /// The cost the agent itself reported, read exactly from its decimal text.
    pub reported_cost: Option<Decimal>,
}

/// One open tool call: its span and when it started.
struct ToolCall {
    span: String,
    parent: String,
    name: String,
    input: Value,
    start: DateTime<Utc>,
}

/// One assistant message being built from its lines.
struct Turn {
    span: String,
    model: String,
    start: DateTime<Utc>,
    content: Vec<Value>,
    usage: Usage,
}

/// The transcript of one run.
pub struct Transcript {
    format: Format,
    /// `work/traces/<trace_id>.jsonl`, when the card has a trace.
    file: Option<PathBuf>,
    trace_id: String,
    run_span: String,
    /// The card's root span, the run span's parent.
    root: Option<String>,
    agent: String,
    job: String,
    start: DateTime<Utc>,
    turns: HashMap<String, Turn>,
    order: Vec<String>,
    tools: HashMap<String, ToolCall>,
    /// The final `result` event, if one came.
    result: Option<Value>,
}

/// Largest text kept in a span's output.
const MAX_TEXT: usize = 64 * 1024;

fn clip(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_string();
    }
    let mut cut = MAX_TEXT;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

fn count(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// pas's usage from Anthropic's: its `input_tokens` leave out cache reads and writes,
/// pas's `input` counts them all.
fn anthropic_usage(u: &Value, cached: &str, write: &str, input: &str, output: &str) -> Usage {
    let cache_read = count(u, cached);
    let cache_write = count(u, write);
    Usage {
        input: count(u, input)
            .saturating_add(cache_read)
            .saturating_add(cache_write),
        output: count(u, output),
        cached: cache_read,
        cache_write,
        source: UsageSource::Transcript,
        ..Usage::default()
    }
}

impl Transcript {
    /// A transcript for a run of `agent` on card `job`, whose trace is `trace`
    /// (`trace_id`, root span id) when the card has one.
    pub fn new(
        format: Format,
        traces_dir: PathBuf,
        trace: Option<(String, String)>,
        agent: &str,
        job: &str,
        command: &str,
    ) -> Transcript {
        let (file, trace_id, root) = match trace {
            Some((t, root)) => (Some(traces_dir.join(format!("{t}.jsonl"))), t, Some(root)),
            None => (None, String::new(), None),
        };
        let t = Transcript {
            format,
            file,
            trace_id,
            run_span: new_span_id(),
            root,
            agent: agent.to_string(),
            job: job.to_string(),
            start: Utc::now(),
            turns: HashMap::new(),
            order: Vec::new(),
            tools: HashMap::new(),
            result: None,
        };
        let attrs = json!({"pas.run.command": command, "pas.source": "transcript"});
        t.emit(
            &t.run_span,
            t.root.as_deref(),
            &format!("run {agent}"),
            "agent",
            t.start,
            None,
            "running",
            attrs,
            None,
        );
        t
    }

    /// Appends one span line (an upsert by span id).
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        span: &str,
        parent: Option<&str>,
        name: &str,
        kind: &str,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
        status: &str,
        attrs: Value,
        output: Option<Value>,
    ) {
        let Some(file) = &self.file else { return };
        let mut line = json!({
            "trace_id": self.trace_id, "span_id": span, "name": name, "kind": kind,
            "start": start, "status": status, "agent": self.agent, "job": self.job,
            "attrs": attrs,
        });
        if let Some(p) = parent {
            line["parent_id"] = json!(p);
        }
        if let Some(e) = end {
            line["end"] = json!(e);
        }
        if let Some(o) = output {
            line["output"] = o;
        }
        let mut text = line.to_string();
        text.push('\n');
        if let Some(dir) = file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // One write with O_APPEND: a line is never interleaved with another writer's.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(file = %file.display(), error = %e, "cannot append a run's span");
        }
    }

    /// Takes one line of the process's stdout.
    pub fn line(&mut self, line: &str) {
        if self.format != Format::ClaudeStreamJson {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
            return; // not an event (a warning the program printed): the log has it
        };
        match v.get("type").and_then(Value::as_str) {
            Some("assistant") => self.assistant(&v),
            Some("user") => self.user(&v),
            Some("result") => self.result = Some(v),
            _ => {}
        }
    }

    fn assistant(&mut self, v: &Value) {
        let Some(msg) = v.get("message") else { return };
        let now = Utc::now();
        let id = msg
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("turn-{}", self.order.len()), str::to_string);
        if !self.turns.contains_key(&id) {
            self.order.push(id.clone());
            self.turns.insert(
                id.clone(),
                Turn {
                    span: new_span_id(),
                    model: msg
                        .get("model")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                        .to_string(),
                    start: now,
                    content: Vec::new(),
                    usage: Usage::default(),
                },
            );
        }
        let blocks = msg
            .get("content")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let turn_span;
        {
            let turn = self.turns.get_mut(&id).expect("inserted above");
            if let Some(u) = msg.get("usage") {
                turn.usage = anthropic_usage(
                    u,
                    "cache_read_input_tokens",
                    "cache_creation_input_tokens",
                    "input_tokens",
                    "output_tokens",
                );
            }
            for b in &blocks {
                let kept = match b.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        json!({"type": "text", "text": clip(b.get("text").and_then(Value::as_str).unwrap_or(""))})
                    }
                    _ => b.clone(),
                };
                turn.content.push(kept);
            }
            turn_span = turn.span.clone();
        }
        for b in &blocks {
            if b.get("type").and_then(Value::as_str) == Some("tool_use") {
                let tid = b
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let call = ToolCall {
                    span: new_span_id(),
                    parent: turn_span.clone(),
                    name: b
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("tool")
                        .to_string(),
                    input: b.get("input").cloned().unwrap_or(Value::Null),
                    start: now,
                };
                let attrs = json!({"tool_call_id": tid, "input": call.input});
                self.emit(
                    &call.span,
                    Some(&call.parent),
                    &call.name,
                    "tool",
                    now,
                    None,
                    "running",
                    attrs,
                    None,
                );
                self.tools.insert(tid, call);
            }
        }
        let turn = &self.turns[&id];
        let attrs = json!({
            "model": turn.model, "input_tokens": turn.usage.input,
            "output_tokens": turn.usage.output, "cached_tokens": turn.usage.cached,
            "pas.source": "transcript", "message_id": id,
        });
        let output = json!({"role": "assistant", "content": turn.content});
        let name = format!("turn {}", self.order.len());
        self.emit(
            &turn.span,
            Some(&self.run_span),
            &name,
            "llm",
            turn.start,
            Some(now),
            "ok",
            attrs,
            Some(output),
        );
    }

    fn user(&mut self, v: &Value) {
        let blocks = v
            .pointer("/message/content")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for b in blocks {
            if b.get("type").and_then(Value::as_str) != Some("tool_result") {
                continue;
            }
            let tid = b
                .get("tool_use_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let Some(call) = self.tools.remove(tid) else {
                continue;
            };
            let error = b.get("is_error").and_then(Value::as_bool).unwrap_or(false);
            let content = match b.get("content") {
                Some(Value::String(s)) => Value::String(clip(s)),
                Some(other) => other.clone(),
                None => Value::Null,
            };
            let attrs = json!({"tool_call_id": tid, "input": call.input});
            let status = if error { "error" } else { "ok" };
            self.emit(
                &call.span,
                Some(&call.parent),
                &call.name,
                "tool",
                call.start,
                Some(Utc::now()),
                status,
                attrs,
                Some(content),
            );
        }
    }

    /// The final message: the `result` event's text, if one came.
    pub fn final_message(&self) -> Option<String> {
        self.result
            .as_ref()?
            .get("result")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// Closes the run's span (and any tool call left open) with its outcome.
    pub fn close(&mut self, ok: bool, tail: &str) {
        let now = Utc::now();
        let open: Vec<ToolCall> = self.tools.drain().map(|(_, c)| c).collect();
        for c in open {
            let attrs = json!({"input": c.input, "note": "the run ended before the tool's result"});
            self.emit(
                &c.span,
                Some(&c.parent),
                &c.name,
                "tool",
                c.start,
                Some(now),
                "error",
                attrs,
                None,
            );
        }
        let mut attrs = Map::new();
        attrs.insert("pas.source".into(), json!("transcript"));
        let mut output = Value::String(clip(tail));
        if let Some(r) = &self.result {
            for k in ["num_turns", "duration_ms", "session_id", "is_error"] {
                if let Some(x) = r.get(k) {
                    attrs.insert(k.into(), x.clone());
                }
            }
            if let Some(c) = r.get("total_cost_usd") {
                attrs.insert("reported_cost_usd".into(), json!(c.to_string()));
            }
            if let Some(m) = self.final_message() {
                output = Value::String(clip(&m));
            }
        }
        let status = if ok { "ok" } else { "error" };
        self.emit(
            &self.run_span,
            self.root.as_deref(),
            &format!("run {}", self.agent),
            "agent",
            self.start,
            Some(now),
            status,
            Value::Object(attrs),
            Some(output),
        );
    }

    /// Usage by model for receipts: the `result` event's `modelUsage` when it came (it
    /// counts sub-agents too), else the sum of the assistant messages seen.
    pub fn usage(&self) -> Vec<ModelUsage> {
        if let Some(models) = self
            .result
            .as_ref()
            .and_then(|r| r.get("modelUsage"))
            .and_then(Value::as_object)
        {
            return models
                .iter()
                .map(|(model, u)| ModelUsage {
                    model: model.clone(),
                    usage: anthropic_usage(
                        u,
                        "cacheReadInputTokens",
                        "cacheCreationInputTokens",
                        "inputTokens",
                        "outputTokens",
                    ),
                    // A JSON number is read through its text, never through a float.
                    reported_cost: u
                        .get("costUSD")
                        .and_then(|c| c.as_number())
                        .and_then(|n| n.to_string().parse().ok()),
                })
                .collect();
        }
        let mut by_model: BTreeMap<String, Usage> = BTreeMap::new();
        for id in &self.order {
            let t = &self.turns[id];
            let u = by_model.entry(t.model.clone()).or_insert(Usage {
                source: UsageSource::Transcript,
                ..Usage::default()
            });
            u.input = u.input.saturating_add(t.usage.input);
            u.output = u.output.saturating_add(t.usage.output);
            u.cached = u.cached.saturating_add(t.usage.cached);
            u.cache_write = u.cache_write.saturating_add(t.usage.cache_write);
        }
        by_model
            .into_iter()
            .filter(|(_, u)| u.input > 0 || u.output > 0)
            .map(|(model, usage)| ModelUsage {
                model,
                usage,
                reported_cost: None,
            })
            .collect()
    }

    /// The run's span id.
    pub fn run_span(&self) -> &str {
        &self.run_span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_json_becomes_turns_tools_and_usage() {
        let dir = tempfile::tempdir().unwrap();
        let trace = "0af7651916cd43dd8448eb211c80319c".to_string();
        let root = "b7ad6b7169203331".to_string();
        let mut t = Transcript::new(
            Format::ClaudeStreamJson,
            dir.path().into(),
            Some((trace.clone(), root)),
            "coder",
            "J-1",
            "claude",
        );
        t.line(r#"{"type":"system","subtype":"init","model":"claude-sonnet-4-5"}"#);
        t.line(r#"{"type":"assistant","message":{"id":"msg_1","model":"claude-sonnet-4-5","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"ls"}}],"usage":{"input_tokens":10,"cache_read_input_tokens":100,"cache_creation_input_tokens":5,"output_tokens":7}}}"#);
        t.line(r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"a.txt","is_error":false}]}}"#);
        t.line(r#"{"type":"result","subtype":"success","result":"all done","num_turns":2,"total_cost_usd":0.0123,"modelUsage":{"claude-sonnet-4-5":{"inputTokens":20,"outputTokens":9,"cacheReadInputTokens":100,"cacheCreationInputTokens":5,"costUSD":0.0123}}}"#);
        t.close(true, "");
        assert_eq!(t.final_message().as_deref(), Some("all done"));
        let u = t.usage();
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].usage.input, 125);
        assert_eq!(u[0].reported_cost, Some("0.0123".parse().unwrap()));
        let text = std::fs::read_to_string(dir.path().join(format!("{trace}.jsonl"))).unwrap();
        for l in text.lines() {
            crate::span::parse_line(l, &trace).unwrap();
        }
        assert!(text.contains(r#""kind":"tool""#) && text.contains(r#""kind":"llm""#));
    }
}
