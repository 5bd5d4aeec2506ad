//! The demo's model traffic, so a newcomer sees traces, receipts and costs move: pas's
//! built-in fake provider (two priced models, OpenAI and Anthropic protocols, playing
//! scripts) behind the gateway; the simulated agents call through the gateway with the
//! attribution headers (`x-pas-agent`, `x-pas-job`, a W3C `traceparent` under their own
//! span), some conversations with a tool call in the middle, and write their own spans to
//! `work/traces/`; and one recorded call is replayed with an edited prompt.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::span::new_span_id;
use crate::workspace::Workspace;

/// The model part of the demo's `pas.yaml`: content kept in full (so a call can be
/// replayed), a daily budget, and two providers that `pas serve` starts itself as its
/// built-in fake (`fake:`), priced like real models: `demo-large` (OpenAI protocol) asks
/// for `read_file` on a conversation's first turn and answers on the second, and `demo-haiku` (Anthropic protocol) does the summaries routed by capability.
pub const CONFIG: &str = r#"traces: {capture: full}
budgets: {daily_usd: "5.00", monthly_usd: "50.00"}
providers:
  - name: demo-cloud
    protocol: openai
    fake:
      script:
        - tool_calls:
            - {name: read_file, arguments: {path: src/lib.rs}}
          usage: {input_tokens: 900, output_tokens: 60}
        - text: "Done. The change is written, the tests pass, and the notes are in the card."
          usage: {input_tokens: 1850, output_tokens: 420}
    models:
      - {id: demo-large, capabilities: [code, write, plan, review], price_per_mtok: {input: "3.00", output: "15.00"}}
  - name: demo-anthropic
    protocol: anthropic
    fake:
      script:
        - text: "In short: the swarm finished its cards; two need another look."
          usage: {input_tokens: 600, output_tokens: 90}
    models:
      - {id: demo-haiku, capabilities: [summarize, classify], price_per_mtok: {input: "0.80", output: "4.00"}}
"#;

/// A card an agent works on, as far as the calls need it.
struct Job {
    id: String,
    title: String,
    trace_id: String,
    span_id: String,
}

impl Job {
    /// Reads the card pas has stamped with its trace; `None` before pas has seen it.
    fn read(card: &Path) -> Option<Job> {
        let text = std::fs::read_to_string(card).ok()?;
        let v: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
        let s = |v: &serde_yaml::Value| v.as_str().map(str::to_string);
        Some(Job {
            id: card.file_stem()?.to_string_lossy().into_owned(),
            title: s(&v["title"]).unwrap_or_default(),
            trace_id: s(&v["pas"]["trace_id"])?,
            span_id: s(&v["pas"]["span_id"])?,
        })
    }
}

/// One agent's way to the gateway.
pub struct Caller {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    url: String,
}

impl Caller {
    /// A caller for the gateway listening at `addr` (`host:port`).
    pub fn new(addr: &str) -> Result<Caller> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the demo's HTTP client")?;
        Ok(Caller {
            rt,
            client,
            url: format!("http://{addr}/v1/chat/completions"),
        })
    }

    /// Works `card` as agent `agent` would with a model: its own `agent` span under the
    /// card's root; with `tools`, a call that asks for `read_file`, the tool's own span,
    /// then the answer given the file; else one summary routed by capability. Returns the
    /// answer for the card's `result`, or `None` when the gateway did not answer.
    pub fn work(&self, ws: &Workspace, agent: &str, card: &Path, tools: bool) -> Option<String> {
        let job = Job::read(card)?;
        let spans = Spans::new(ws, &job, agent);
        let mine = new_span_id();
        spans.line(json!({
            "span_id": mine, "parent_id": job.span_id, "name": format!("work: {}", job.title),
            "kind": "agent", "start": now(), "status": "running",
        }));
        let parent = format!("00-{}-{mine}-01", job.trace_id);
        let mut messages = vec![
            json!({"role": "system", "content": format!("You are {agent}, one agent of a pas swarm. Be brief.")}),
            json!({"role": "user", "content": format!("Card {}: {}", job.id, job.title)}),
        ];
        let answer = if tools {
            self.with_tool(&spans, &job, agent, &mine, &parent, &mut messages)
        } else {
            let body = json!({"model": "cap:summarize", "messages": messages, "max_tokens": 200});
            self.call(agent, &job, &parent, body).map(|a| text_of(&a))
        };
        let status = if answer.is_some() { "ok" } else { "error" };
        spans.line(json!({"span_id": mine, "end": now(), "status": status}));
        answer
    }

    /// The tool-using conversation: ask, run the tool the model picked, answer.
    fn with_tool(
        &self,
        spans: &Spans,
        job: &Job,
        agent: &str,
        mine: &str,
        parent: &str,
        messages: &mut Vec<Value>,
    ) -> Option<String> {
        let tool_def = json!([{"type": "function", "function": {
            "name": "read_file", "description": "Read a file of the repository",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                           "required": ["path"]}}}]);
        let body = json!({"model": "demo-large", "messages": messages, "tools": tool_def});
        let first = self.call(agent, job, parent, body)?;
        let asked = first["choices"][0]["message"].clone();
        let call = asked["tool_calls"][0].clone();
        let call_id = call["id"].as_str().unwrap_or("call_0").to_string();
        let args = call["function"]["arguments"]
            .as_str()
            .unwrap_or("{}")
            .to_string();
        let tool_span = new_span_id();
        let contents = "//! pas: a file-based orchestrator\npub mod board;\npub mod daemon;\n";
        spans.line(json!({
            "span_id": tool_span, "parent_id": mine, "name": "read_file", "kind": "tool",
            "start": now(), "end": now(), "status": "ok",
            "input": serde_json::from_str::<Value>(&args).unwrap_or(Value::Null),
            "output": contents,
        }));
        messages.push(asked);
        messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": contents}));
        let body = json!({"model": "demo-large", "messages": messages, "tools": tool_def,
                          "stream": true, "stream_options": {"include_usage": true}});
        self.call(agent, job, parent, body).map(|a| text_of(&a))
    }

    /// One call through the gateway; a streamed answer is gathered into the plain shape.
    fn call(&self, agent: &str, job: &Job, traceparent: &str, body: Value) -> Option<Value> {
        let streamed = body["stream"].as_bool().unwrap_or(false);
        let req = self
            .client
            .post(&self.url)
            .header("x-pas-agent", agent)
            .header("x-pas-job", &job.id)
            .header("traceparent", traceparent)
            .json(&body);
        self.rt.block_on(async {
            let resp = req.send().await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            if !streamed {
                return resp.json::<Value>().await.ok();
            }
            let text = resp.text().await.ok()?;
            let said: String = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .filter_map(|v| {
                    v["choices"][0]["delta"]["content"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect();
            Some(json!({"choices": [{"message": {"role": "assistant", "content": said}}]}))
        })
    }
}

fn text_of(answer: &Value) -> String {
    answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// An agent's span lines for one card: `work/traces/<trace_id>.jsonl`, one `O_APPEND`
/// write per line, as the README tells agent authors.
struct Spans {
    path: std::path::PathBuf,
    agent: String,
    job: String,
}

impl Spans {
    fn new(ws: &Workspace, job: &Job, agent: &str) -> Spans {
        let dir = ws.work().join("traces");
        let _ = std::fs::create_dir_all(&dir);
        Spans {
            path: dir.join(format!("{}.jsonl", job.trace_id)),
            agent: agent.to_string(),
            job: job.id.clone(),
        }
    }

    fn line(&self, mut v: Value) {
        if let Some(m) = v.as_object_mut() {
            m.insert("agent".into(), json!(self.agent));
            m.insert("job".into(), json!(self.job));
        }
        let mut text = v.to_string();
        text.push('\n');
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// Replays the first recorded tool-using call with an edited prompt and another model, as
/// a person would from the trace page: writes the replay card (the daemon runs it through
/// the gateway, with a receipt and a span of its own). Returns the line to print.
pub fn replay_one(ws: &Workspace) -> Option<String> {
    let conn = crate::store::db::open_read_only(&ws.db_path()).ok()??;
    let (trace, span): (String, String) = conn
        .query_row(
            "SELECT trace_id, span_id FROM spans
             WHERE kind = 'llm' AND model = 'demo-large' AND status = 'ok'
             ORDER BY start LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()?;
    let target = format!("{trace}/{span}");
    let recorded = crate::trace::store::span(&conn, &trace, &span).ok()??;
    let mut messages = recorded.input.as_ref()?.get("messages")?.clone();
    if let Some(first) = messages.get_mut(0) {
        first["content"] = json!("You are a careful reviewer. Answer in one sentence.");
    }
    let edits = crate::trace::replay::Edits {
        model: Some("cap:summarize".into()),
        messages: Some(messages),
        ..Default::default()
    };
    let written = crate::trace::replay::write(ws, &target, &edits).ok()?;
    Some(format!(
        "replaying {target} with an edited system prompt on cap:summarize as job {} (pas trace diff shows both)",
        written.job
    ))
}

/// Calls and their exact cost so far, from the receipts.
pub fn spend(ws: &Workspace) -> Option<(u64, Decimal)> {
    let conn = crate::store::db::open_read_only(&ws.db_path()).ok()??;
    let totals = crate::store::totals::since(&conn, None).ok()?;
    Some(totals.iter().fold((0, Decimal::ZERO), |(n, c), t| {
        (n + t.calls, c + t.cost_usd)
    }))
}
