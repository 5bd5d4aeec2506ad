//! `pas replay TRACE_ID/SPAN_ID`: a recorded LLM call written back as a card (see
//! `trace::replay`), and with `--wait` the new answer printed beside the old.
//!
//! The command only writes the card: the daemon runs it, so the call has the gateway's
//! routing, budgets and receipts like any other, and a replay needs no key on the command
//! line's side.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Map, Value};

use super::{Format, Out};
use crate::trace::replay::{self, Edits};
use crate::workspace::Workspace;

/// `pas replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The recorded call: TRACE_ID/SPAN_ID (as `pas trace` shows).
    pub target: String,
    /// Send it to this model (a model id or cap:<capability>) instead.
    #[arg(long)]
    pub model: Option<String>,
    /// Route it by this policy (local, cheapest, fastest, balanced).
    #[arg(long)]
    pub policy: Option<String>,
    /// Send these messages instead: a JSON or YAML file with a list of
    /// {role, content, ...} (or a mapping with `messages:`); `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub messages: Option<std::path::PathBuf>,
    /// Set a request parameter (value as JSON when it parses, else text; null removes it).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Wait for the replay to finish and print its answer beside the recorded one.
    #[arg(long)]
    pub wait: bool,
    /// TRACE_ID/SPAN_ID is a checkpoint: drop a card with its state (`resume_from`,
    /// `resume_state`) that needs the original job's capabilities, for an agent to
    /// continue from there.
    #[arg(long, conflicts_with_all = ["model", "policy", "messages", "set", "wait"])]
    pub resume: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    #[command(flatten)]
    pub fmt: Format,
}

/// `--set key=value` pairs as parameters.
fn parse_set(pairs: &[String]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--set {p:?}: expected KEY=VALUE, e.g. --set temperature=0.2");
        };
        let k = k.trim();
        if k.is_empty() {
            bail!("--set {p:?}: the key is empty");
        }
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

fn read_messages(path: &std::path::Path) -> Result<Value> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    // YAML is a superset of JSON: one parser takes both.
    serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// `pas replay TRACE_ID/SPAN_ID [--model M] [--policy P] [--messages FILE] [--set k=v]
/// [--wait]`.
pub fn run(ws: &Workspace, a: ReplayArgs, out: &Out) -> Result<i32> {
    if a.resume {
        let r = crate::trace::resume::write(ws, &a.target).map_err(|e| anyhow::anyhow!(e))?;
        if a.fmt.json {
            out.json(&json!(r));
        } else {
            out.line(&r.job);
        }
        return Ok(0);
    }
    let edits = Edits {
        model: a.model.clone(),
        policy: a.policy.clone(),
        messages: a.messages.as_deref().map(read_messages).transpose()?,
        set: parse_set(&a.set)?,
    };
    let written = replay::write(ws, &a.target, &edits).map_err(|e| anyhow::anyhow!(e))?;
    if !a.wait {
        if a.fmt.json {
            out.json(&json!(written));
        } else {
            out.line(&written.job);
        }
        return Ok(0);
    }
    let (state, card) = wait_done(ws, &written.job, Duration::from_secs(a.timeout))?;
    let (trace, span) = replay::parse_target(&a.target).map_err(|e| anyhow::anyhow!(e))?;
    let old = crate::store::db::open_read_only(&ws.db_path())?
        .and_then(|c| crate::trace::store::span(&c, &trace, &span).ok().flatten());
    let old_answer = old
        .as_ref()
        .and_then(|s| s.output.as_ref())
        .map(replay::answer_of);
    let new_answer = card
        .get("result")
        .map(|r| replay::answer_of(&json!({"text": r["text"], "tool_calls": r["tool_calls"]})));
    let doc = json!({
        "job": written.job,
        "replay_of": written.replay_of,
        "state": state,
        "original": {
            "model": old.as_ref().and_then(|s| s.model.clone()),
            "cost_usd": old.as_ref().and_then(|s| s.cost_usd).map(|c| c.normalize().to_string()),
            "answer": old_answer,
        },
        "replay": {
            "model": card["result"]["model"],
            "cost_usd": card["result"]["cost_usd"],
            "receipt_id": card["result"]["receipt_id"],
            "answer": new_answer,
            "error": card.get("error"),
        },
    });
    if a.fmt.json {
        out.json(&doc);
    } else {
        out.line(format!(
            "replay {} of {}: {state}",
            written.job, written.replay_of
        ));
        side(out, "original", &doc["original"]);
        side(out, "replay", &doc["replay"]);
    }
    Ok(if state == "done" { 0 } else { 1 })
}

/// One side of the comparison, as lines.
fn side(out: &Out, label: &str, v: &Value) {
    let model = v["model"].as_str().unwrap_or("?");
    let cost = v["cost_usd"]
        .as_str()
        .map_or("unknown".to_string(), |c| format!("${c}"));
    out.line(format!("--- {label} ({model}, {cost})"));
    if let Some(e) = v["error"].as_str() {
        out.line(format!("error: {e}"));
    }
    let answer = &v["answer"];
    if let Some(t) = answer["text"].as_str().filter(|t| !t.is_empty()) {
        out.line(t);
    }
    for c in answer["tool_calls"].as_array().into_iter().flatten() {
        out.line(format!(
            "tool call: {}({})",
            c["name"].as_str().unwrap_or("?"),
            c["arguments"].as_str().unwrap_or("")
        ));
    }
    if answer.is_null() {
        out.line("(no answer recorded)");
    }
}

/// Waits for card `id` to reach `done/` or `failed/`; its state and its contents as JSON.
fn wait_done(ws: &Workspace, id: &str, limit: Duration) -> Result<(String, Value)> {
    let started = Instant::now();
    loop {
        for state in ["done", "failed"] {
            let path = ws.work().join(state).join(format!("{id}.yaml"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Ok(v) = serde_yaml::from_str::<Value>(&text) {
                    return Ok((state.to_string(), v));
                }
            }
        }
        if started.elapsed() > limit {
            bail!(
                "replay card {id} has not finished after {} s (is `pas serve` running? the \
                 card waits in work/inbox/ until it runs)",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
