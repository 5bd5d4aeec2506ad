//! Agent commands: `pas agents [--tree]`, `pas pause`, `pas resume`, `pas heartbeat`.
//!
//! They use the same files as the daemon: `paused` in the registration, and one JSON line
//! per beat appended to `work/heartbeats/<agent>.jsonl`. `pas agents` judges liveness from
//! those files as the daemon does, so it needs no daemon.

use std::io::Write;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Args;
use serde_json::{json, Value};

use super::{Format, Out};
use crate::agent::Registration;
use crate::card::valid_agent_name;
use crate::snapshot;
use crate::views::{agents, tree};
use crate::workspace::Workspace;

/// Sets or clears `paused` in an agent's registration (written atomically; the daemon
/// commits it). A paused agent keeps its cards but is given no new ones.
pub fn set_paused(ws: &Workspace, name: &str, paused: bool, out: &Out) -> Result<i32> {
    let path = ws.registration_path(name);
    let text = crate::intake::read_text(&path, crate::intake::FileKind::Registration)
        .with_context(|| {
            format!(
                "{name} is not registered (no {})",
                crate::workspace::rel(ws, &path)
            )
        })?;
    let mut reg = Registration::parse(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", crate::workspace::rel(ws, &path), e.message))?;
    if reg.paused == paused {
        out.line(format!(
            "{name} is already {}",
            if paused { "paused" } else { "running" }
        ));
        return Ok(0);
    }
    reg.paused = paused;
    crate::fsops::write_atomic(&path, reg.to_yaml().as_bytes(), false)?;
    out.line(format!(
        "{} {name}",
        if paused { "paused" } else { "resumed" }
    ));
    Ok(0)
}

/// Flags of `pas heartbeat`, and the arguments of `pas mcp`'s `heartbeat` tool (its schema
/// comes from these doc comments).
#[derive(Debug, Args, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BeatArgs {
    /// The agent beating.
    pub agent: String,
    /// idle, running, blocked or error.
    #[arg(long)]
    pub status: Option<String>,
    /// The card being worked on.
    #[arg(long)]
    pub job: Option<String>,
    /// 0 to 1.
    #[arg(long)]
    pub progress: Option<f64>,
    /// Tokens in the context window now.
    #[arg(long)]
    pub ctx_used: Option<u64>,
    /// Size of the context window.
    #[arg(long)]
    pub ctx_limit: Option<u64>,
    /// CPU use (cores).
    #[arg(long)]
    pub cpu: Option<f64>,
    /// Memory use.
    #[arg(long)]
    pub mem_mb: Option<f64>,
    /// A word on what the agent is doing.
    #[arg(long)]
    pub note: Option<String>,
    /// The registration epoch the agent holds (beats from an older one are refused).
    #[arg(long)]
    pub epoch: Option<u64>,
}

/// Appends one beat: a single `write` of one line with `O_APPEND`, so concurrent writers
/// never interleave within a line.
pub fn heartbeat(ws: &Workspace, a: BeatArgs, out: &Out) -> Result<i32> {
    if !valid_agent_name(&a.agent) {
        bail!("{:?} is not a valid agent name", a.agent);
    }
    if let Some(s) = &a.status {
        if !["idle", "running", "blocked", "error"].contains(&s.as_str()) {
            bail!("unknown status {s:?} (idle, running, blocked, error)");
        }
    }
    if a.progress.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
        bail!("progress must be between 0 and 1");
    }
    let mut beat = json!({"ts": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)});
    let fields = [
        ("status", a.status.map(Value::from)),
        ("job", a.job.map(Value::from)),
        ("progress", a.progress.map(Value::from)),
        ("ctx_used", a.ctx_used.map(Value::from)),
        ("ctx_limit", a.ctx_limit.map(Value::from)),
        ("cpu", a.cpu.map(Value::from)),
        ("mem_mb", a.mem_mb.map(Value::from)),
        ("note", a.note.map(Value::from)),
        ("epoch", a.epoch.map(Value::from)),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            beat[k] = v;
        }
    }
    let mut line = serde_json::to_string(&beat)?;
    line.push('\n');
    std::fs::create_dir_all(ws.heartbeats())?;
    let path = ws.heartbeats().join(format!("{}.jsonl", a.agent));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.write_all(line.as_bytes())
        .with_context(|| format!("cannot append to {}", path.display()))?;
    out.line(line.trim_end());
    Ok(0)
}

/// `pas agents [--tree]`: every agent known from definitions and registrations.
pub fn list(ws: &Workspace, tree: bool, fmt: Format, out: &Out) -> Result<i32> {
    let snap = snapshot::load_with(ws, snapshot::Depth::Board)?;
    let interval = ws.config()?.heartbeat_interval_s;
    let rows = agents::values(&agents::rows(&snap.board, Utc::now(), interval));
    if fmt.json {
        out.json(&Value::Array(rows));
        return Ok(0);
    }
    let order: Vec<(usize, &Value)> = if tree {
        tree::indented(&tree::forest(&rows, tree::agent_name, tree::agent_parent))
            .into_iter()
            .map(|(d, r)| (d, *r))
            .collect()
    } else {
        rows.iter().map(|r| (0, r)).collect()
    };
    let mut t = out.table(&[
        "AGENT",
        "STATUS",
        "EPOCH",
        "ASSIGNED",
        "LAST BEAT",
        "CTX",
        "JOB",
        "SAYS",
        "PROGRESS",
        "CPU",
        "MEM",
        "NOTE",
    ]);
    for (depth, r) in order {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
        t.add_row(vec![
            format!("{}{}", "  ".repeat(depth), s("name")),
            s("status"),
            r["epoch"].as_u64().map_or("-".into(), |e| e.to_string()),
            format!("{}/{}", r["assigned"], r["max_concurrent"]),
            r["beat_age_s"].as_f64().map_or("-".into(), age),
            r["ctx_ratio"].as_f64().map_or("-".into(), |c| {
                let flag = match r["ctx"].as_str() {
                    Some("breach") => " breach",
                    Some("warning") => " warning",
                    _ => "",
                };
                format!("{:.0}%{flag}", c * 100.0)
            }),
            s("job"),
            says(r),
            r["progress"].as_f64().map_or("-".into(), bar),
            r["cpu"].as_f64().map_or("-".into(), |c| format!("{c}")),
            r["mem_mb"]
                .as_f64()
                .map_or("-".into(), |m| format!("{m:.0} MB")),
            r["note"].as_str().map_or("-".into(), |n| one_line(n, 40)),
        ]);
    }
    out.print_table(&t);
    Ok(0)
}

/// What the agent says of itself (`blocked`, `error` in capitals, so they stand out), with
/// the age of the beat when the figures are stale.
fn says(r: &Value) -> String {
    let Some(st) = r["beat_status"].as_str() else {
        return "-".into();
    };
    let st = match st {
        "blocked" | "error" => st.to_uppercase(),
        other => other.to_string(),
    };
    match (r["report_stale"].as_bool(), r["beat_age_s"].as_f64()) {
        (Some(true), Some(a)) => format!("{st} ({}, stale)", age(a)),
        _ => st,
    }
}

/// A progress bar of ten cells and the percentage: `[######    ] 60%`.
fn bar(p: f64) -> String {
    let p = p.clamp(0.0, 1.0);
    let full = (p * 10.0).round() as usize;
    format!(
        "[{}{}] {:.0}%",
        "#".repeat(full),
        " ".repeat(10 - full),
        p * 100.0
    )
}

/// A note on one line (control characters out, so a note cannot rewrite the terminal),
/// cut to `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match clean.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &clean[..i]),
        None => clean,
    }
}

/// "0.4s ago", "12s ago", "3m ago", "2h ago".
fn age(s: f64) -> String {
    match s {
        s if s < 10.0 => format!("{s:.1}s ago"),
        s if s < 120.0 => format!("{s:.0}s ago"),
        s if s < 7200.0 => format!("{:.0}m ago", s / 60.0),
        s => format!("{:.0}h ago", s / 3600.0),
    }
}
