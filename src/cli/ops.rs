//! `pas providers`, `pas alerts` and `pas notify test` (SPEC section 15).
//!
//! The reading commands work from the files and the database with no daemon running; when
//! a daemon answers on the address it wrote to `.pas/serve.json`, they ask it too, for what
//! only it knows (the gateway's breakers), and say which they did.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use super::output::Out;
use super::Format;
use crate::workspace::Workspace;

/// `pas notify ...`.
#[derive(Debug, clap::Subcommand)]
pub enum NotifyCommand {
    /// Send a test notification to every webhook of `notify:` and say how each went.
    Test,
}

/// Asks the running daemon's dashboard for `path` (JSON); `None` when no daemon answers
/// within a second (none running, or a stale `.pas/serve.json`).
fn ask_daemon(ws: &Workspace, path: &str) -> Option<Value> {
    let text = crate::intake::read_text(
        &crate::server::addresses_path(ws),
        crate::intake::FileKind::Marker,
    )
    .ok()?;
    let addr: Value = serde_json::from_str(&text).ok()?;
    let dash = addr["dashboard"].as_str()?.to_string();
    let token = std::env::var("PAS_TOKEN").ok().filter(|t| !t.is_empty());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .ok()?;
        let mut req = client.get(format!("http://{dash}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json::<Value>().await.ok()
    })
}

/// `pas providers [--json]`.
pub fn providers(ws: &Workspace, fmt: Format, out: &Out) -> Result<i32> {
    let report = match ask_daemon(ws, "/api/providers") {
        Some(r) => r,
        None => crate::ops::providers::load(ws, None)?,
    };
    if fmt.json {
        out.json(&report);
        return Ok(0);
    }
    let mut t = out.table(&[
        "PROVIDER",
        "MODEL",
        "BREAKER",
        "P50",
        "P99",
        "ERRORS",
        "CALLS TODAY",
        "SPEND TODAY",
        "LAST ERROR",
    ]);
    let ms = |v: &Value| v.as_f64().map_or("-".into(), |m| format!("{m:.0} ms"));
    for p in report["providers"].as_array().into_iter().flatten() {
        let b = &p["breaker"];
        let mut breaker = b["state"].as_str().unwrap_or("?").to_string();
        if let Some(left) = b["cooldown_left_s"].as_f64() {
            breaker.push_str(&format!(" ({left:.0} s left)"));
        }
        if let Some(f) = b["fails"].as_u64().filter(|f| *f > 0) {
            breaker.push_str(&format!(", {f} failed"));
        }
        for m in p["models"].as_array().into_iter().flatten() {
            let r = &m["recent"];
            let errors = match r["calls"].as_u64() {
                Some(0) | None => "-".to_string(),
                Some(n) => format!("{}/{n}", r["errors"]),
            };
            let last = m["last_error"]["text"]
                .as_str()
                .map(|e| format!("{} {e}", m["last_error"]["at"].as_str().unwrap_or("")))
                .unwrap_or_else(|| "-".into());
            t.add_row(vec![
                p["name"].as_str().unwrap_or("?").to_string(),
                m["id"].as_str().unwrap_or("?").to_string(),
                breaker.clone(),
                ms(&r["p50_ms"]),
                ms(&r["p99_ms"]),
                errors,
                m["calls_today"].to_string(),
                format!("${}", m["spend_today_usd"].as_str().unwrap_or("0")),
                last.chars().take(80).collect(),
            ]);
        }
    }
    out.print_table(&t);
    if report["daemon"] != true {
        out.line("(no daemon answered: breaker states are known only to a running pas serve)");
    }
    Ok(0)
}

/// `pas alerts [--json]`: what is wrong now, then the latest alert events.
pub fn alerts(ws: &Workspace, fmt: Format, out: &Out) -> Result<i32> {
    let doc = match ask_daemon(ws, "/api/alerts") {
        Some(d) => d,
        None => {
            let active = crate::ops::alerts::from_files(ws)?;
            let mut events = recent_alert_events(ws, 50)?;
            for e in &mut events {
                let s = crate::ops::sentences::of(e["type"].as_str().unwrap_or(""), &e["data"]);
                e["sentence"] = serde_json::json!(s);
            }
            serde_json::json!({"active": active, "events": events, "daemon": false})
        }
    };
    if fmt.json {
        out.json(&doc);
        return Ok(0);
    }
    let active = doc["active"].as_array().cloned().unwrap_or_default();
    if active.is_empty() {
        out.line("Nothing is wrong now.");
    } else {
        out.line("Now:");
        for a in &active {
            let since = a["since"]
                .as_str()
                .map(|s| format!(" (since {})", s.get(..19).unwrap_or(s).replace('T', " ")))
                .unwrap_or_default();
            out.line(format!(
                "  {:<8} {}{since}",
                a["severity"].as_str().unwrap_or(""),
                clean(a["text"].as_str().unwrap_or(""))
            ));
        }
    }
    let events = doc["events"].as_array().cloned().unwrap_or_default();
    if !events.is_empty() {
        out.line("");
        out.line("Recent:");
        for e in events.iter().take(20) {
            let ts = e["ts"].as_str().unwrap_or("");
            out.line(format!(
                "  {}  {}",
                ts.get(..19).unwrap_or(ts).replace('T', " "),
                clean(e["sentence"]["text"].as_str().unwrap_or(""))
            ));
        }
    }
    Ok(0)
}

/// Control characters out of text an agent may have written, so it cannot move the
/// terminal's cursor or change its colours.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The latest alert events from the database, newest first.
fn recent_alert_events(ws: &Workspace, limit: usize) -> Result<Vec<Value>> {
    let Some(conn) = crate::store::db::open_read_only(&ws.db_path())? else {
        return Ok(Vec::new());
    };
    let kinds = crate::ops::sentences::ALERT_EVENT_KINDS;
    let marks = vec!["?"; kinds.len()].join(",");
    let sql = format!(
        "SELECT seq, ts, kind, data FROM events WHERE kind IN ({marks}) ORDER BY seq DESC LIMIT {limit}"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(kinds), |r| {
        let data: String = r.get(3)?;
        Ok(serde_json::json!({
            "seq": r.get::<_, i64>(0)?,
            "ts": r.get::<_, String>(1)?,
            "type": r.get::<_, String>(2)?,
            "data": serde_json::from_str::<Value>(&data).unwrap_or(Value::Null),
        }))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// `pas notify test`.
pub fn notify(ws: &Workspace, cmd: NotifyCommand, out: &Out) -> Result<i32> {
    let NotifyCommand::Test = cmd;
    let cfg = ws.config()?;
    let targets = crate::ops::notify::targets(&cfg.notify, |k| std::env::var(k).ok())
        .map_err(|e| anyhow::anyhow!("pas.yaml: {e}"))?;
    if targets.is_empty() {
        out.line("No webhooks: add a notify: section to pas.yaml (see README, Notifications).");
        return Ok(1);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the HTTP client")?;
    let outcomes = rt.block_on(crate::ops::notify::test(&targets, &ws.root));
    let mut failed = false;
    for (t, o) in targets.iter().zip(&outcomes) {
        let how = match (o.status, o.http_status, &o.error) {
            ("sent", Some(s), _) => format!("sent (HTTP {s})"),
            (_, _, Some(e)) => {
                failed = true;
                format!("FAILED after {} attempts: {e}", o.attempts)
            }
            (st, _, None) => {
                failed = st != "sent";
                st.to_string()
            }
        };
        out.line(format!("{} ({}): {how}", t.name, t.url));
    }
    Ok(if failed { 1 } else { 0 })
}
