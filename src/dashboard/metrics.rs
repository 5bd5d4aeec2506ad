//! `GET /metrics`: Prometheus text format; every name starts with `pas_`. Money is written
//! from the exact decimal strings (Prometheus itself only has floats).

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;

use super::{Dash, WebError};

pub(crate) async fn metrics(State(dash): State<Dash>) -> Result<impl IntoResponse, WebError> {
    let v = dash.views.live().await?;
    let mut out = String::new();
    let jobs = &v.status["jobs"];
    head(&mut out, "pas_cards", "gauge", "Cards per state folder.");
    for s in ["inbox", "assigned", "review", "done", "failed", "rejected"] {
        let _ = writeln!(
            out,
            "pas_cards{{state=\"{s}\"}} {}",
            jobs[s].as_u64().unwrap_or(0)
        );
    }
    head(&mut out, "pas_agents", "gauge", "Known agents per status.");
    for s in ["up", "down", "paused", "unregistered"] {
        let n = v.agents.iter().filter(|a| a["status"] == s).count();
        let _ = writeln!(out, "pas_agents{{status=\"{s}\"}} {n}");
    }
    head(
        &mut out,
        "pas_waiting_cards",
        "gauge",
        "Inbox cards that cannot be placed now.",
    );
    let waiting = v.status["waiting"].as_array().map_or(0, Vec::len);
    let _ = writeln!(out, "pas_waiting_cards {waiting}");
    head(
        &mut out,
        "pas_events_total",
        "counter",
        "Events published (the last seq).",
    );
    let _ = writeln!(out, "pas_events_total {}", dash.shared.hub.seq());
    head(
        &mut out,
        "pas_events_published_total",
        "counter",
        "Events published by this process, by type.",
    );
    for (kind, n) in dash.shared.hub.counts() {
        let _ = writeln!(out, "pas_events_published_total{{type=\"{kind}\"}} {n}");
    }
    head(
        &mut out,
        "pas_receipts_total",
        "counter",
        "LLM call attempts with a receipt.",
    );
    let calls = v.costs["total"]["calls"].as_u64().unwrap_or(0);
    let _ = writeln!(out, "pas_receipts_total {calls}");
    head(
        &mut out,
        "pas_spend_usd",
        "gauge",
        "LLM spend in USD by period.",
    );
    for p in ["today", "month", "total"] {
        let c = num(&v.costs[p]["cost_usd"]);
        let _ = writeln!(out, "pas_spend_usd{{period=\"{p}\"}} {c}");
    }
    head(
        &mut out,
        "pas_budget_remaining_usd",
        "gauge",
        "What is left of each budget, USD.",
    );
    for (name, period) in [("daily", "day"), ("monthly", "month")] {
        let g = &v.costs["budgets"][name];
        if g.is_object() {
            let _ = writeln!(
                out,
                "pas_budget_remaining_usd{{period=\"{period}\"}} {}",
                num(&g["remaining_usd"])
            );
        }
    }
    head(
        &mut out,
        "pas_dashboard_view_seq",
        "gauge",
        "The event seq of the cached board view.",
    );
    let _ = writeln!(out, "pas_dashboard_view_seq {}", v.seq);
    let ws = dash.shared.ws.clone();
    let repo = super::blocking(move || Ok(crate::views::status::repo(&ws))).await?;
    repo_gauges(&mut out, &repo);
    ops_gauges(&mut out, &dash).await;
    dash.shared.gateway_metrics.render(&mut out);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    ))
}

/// The `pas_repo_*` gauges from `pas status --json`'s `repo` object (none without git; a
/// growth gauge only once the daemon's samples span a minute).
fn repo_gauges(out: &mut String, repo: &Value) {
    if !repo.is_object() {
        return;
    }
    let gauges = [
        (
            "pas_repo_bytes",
            "Bytes in .git/objects (loose and packed).",
            &repo["bytes"],
        ),
        (
            "pas_repo_loose_objects",
            "Loose objects in .git/objects.",
            &repo["loose"]["objects"],
        ),
        (
            "pas_repo_loose_bytes",
            "Bytes of the loose objects.",
            &repo["loose"]["bytes"],
        ),
        (
            "pas_repo_packs",
            "Pack files in .git/objects/pack.",
            &repo["packs"]["count"],
        ),
        (
            "pas_repo_pack_bytes",
            "Bytes in .git/objects/pack.",
            &repo["packs"]["bytes"],
        ),
        (
            "pas_repo_commits",
            "Commits on HEAD, as the history index counts them.",
            &repo["commits"],
        ),
        (
            "pas_repo_growth_bytes_per_hour",
            "How fast .git/objects grew over the last hour of samples.",
            &repo["growth"]["bytes_per_hour"],
        ),
        (
            "pas_repo_growth_bytes_per_commit",
            "Growth of .git/objects per commit over the last hour of samples.",
            &repo["growth"]["bytes_per_commit"],
        ),
        (
            "pas_repo_loose_bytes_per_commit",
            "Loose bytes each commit writes before a repack packs them.",
            &repo["loose_bytes_per_commit"],
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(n) = value.as_f64() {
            head(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {n}");
        }
    }
}

/// What is wrong now, by kind and severity, and each provider's breaker (1 while it is
/// open or half-open), so an alerting rule needs no other source than `/metrics`.
async fn ops_gauges(out: &mut String, dash: &Dash) {
    let active = super::ops::active(dash).await.unwrap_or_default();
    head(
        out,
        "pas_alerts_active",
        "gauge",
        "Alerts active now, by kind and severity.",
    );
    let mut counts: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for a in &active {
        let sev = serde_json::to_value(a.severity).unwrap_or_default();
        let key = (a.kind.clone(), sev.as_str().unwrap_or("").to_string());
        *counts.entry(key).or_default() += 1;
    }
    for ((kind, sev), n) in counts {
        let _ = writeln!(
            out,
            "pas_alerts_active{{kind=\"{}\",severity=\"{}\"}} {n}",
            label(&kind),
            label(&sev)
        );
    }
    if let Some(gw) = &dash.gateway {
        head(
            out,
            "pas_provider_breaker_open",
            "gauge",
            "1 while a provider's breaker is open or half-open (cooling down).",
        );
        for (name, b) in gw.breakers() {
            let open = u8::from(b.state != "closed");
            let _ = writeln!(
                out,
                "pas_provider_breaker_open{{provider=\"{}\"}} {open}",
                label(&name)
            );
        }
    }
}

/// A Prometheus label value, escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A decimal string as Prometheus wants it ("0" when absent).
fn num(v: &Value) -> String {
    v.as_str()
        .filter(|s| s.parse::<rust_decimal::Decimal>().is_ok())
        .unwrap_or("0")
        .to_string()
}
