//! `pas providers` and `/providers`: each provider and model with its breaker state,
//! cool-down left, last error (redacted), latency and error rate over the last minutes,
//! and calls and spend today.
//!
//! The figures come from the receipts in the database, so the report works with no daemon
//! running; the breaker lives only in the running gateway's memory, so the daemon adds it
//! ([`Breakers`]) and the report says `unknown` without one. Spend is summed as
//! `rust_decimal`; latencies and rates are display figures.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::gateway::{Breaker, Breakers};
use crate::llm::config::Provider;
use crate::workspace::Workspace;

/// The window of "recent" latency and errors.
pub const WINDOW: ChronoDuration = ChronoDuration::minutes(15);

/// One receipt, as much of it as the report reads.
#[derive(Debug, Clone)]
pub struct Call {
    pub provider: String,
    pub model: String,
    pub ts: DateTime<Utc>,
    pub day: Option<String>,
    pub latency_ms: f64,
    pub ok: bool,
    pub error: Option<String>,
    pub cost: Option<Decimal>,
}

#[derive(Default)]
struct Tally {
    calls_today: u64,
    unpriced_today: u64,
    spend_today: Decimal,
    recent: Vec<f64>,
    recent_errors: u64,
    last_error: Option<(DateTime<Utc>, String)>,
}

/// The report (pure): providers from pas.yaml (and any seen only in receipts), the calls
/// of today and of the window, and the breakers when a daemon runs (`None`: no daemon).
pub fn report(
    providers: &[Provider],
    calls: &[Call],
    breakers: Option<&Breakers>,
    now: DateTime<Utc>,
) -> Value {
    let today = now.date_naive().to_string();
    let since = now - WINDOW;
    let mut tallies: BTreeMap<(String, String), Tally> = BTreeMap::new();
    for p in providers {
        for m in &p.models {
            tallies.entry((p.name.clone(), m.id.clone())).or_default();
        }
    }
    for c in calls {
        let t = tallies
            .entry((c.provider.clone(), c.model.clone()))
            .or_default();
        let day = c
            .day
            .clone()
            .unwrap_or_else(|| c.ts.date_naive().to_string());
        if day == today {
            t.calls_today += 1;
            match c.cost {
                Some(cost) => t.spend_today += cost,
                None => t.unpriced_today += 1,
            }
        }
        if c.ts >= since {
            t.recent.push(c.latency_ms);
            if !c.ok {
                t.recent_errors += 1;
            }
        }
        if let (false, Some(e)) = (c.ok, &c.error) {
            if t.last_error.as_ref().is_none_or(|(at, _)| c.ts >= *at) {
                t.last_error = Some((c.ts, e.clone()));
            }
        }
    }
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for ((provider, model), mut t) in tallies {
        let entry = out.entry(provider.clone()).or_insert_with(|| {
            let cfg = providers.iter().find(|p| p.name == provider);
            let breaker = match breakers {
                None => json!({"state": "unknown"}),
                Some(b) => json!(b.get(&provider).cloned().unwrap_or(Breaker {
                    state: "closed",
                    cooldown_left_s: None,
                    fails: 0,
                })),
            };
            json!({
                "name": provider,
                "configured": cfg.is_some(),
                "base_url": cfg.map(|p| super::redact::url(&p.base_url)),
                "local": cfg.map(|p| p.local),
                "breaker": breaker,
                "calls_today": 0,
                "spend_today_usd": "0",
                "models": [],
            })
        });
        t.recent.sort_by(f64::total_cmp);
        let n = t.recent.len() as u64;
        let pct = |q: f64| -> Option<f64> {
            if t.recent.is_empty() {
                return None;
            }
            let rank = ((q * t.recent.len() as f64).ceil() as usize).clamp(1, t.recent.len());
            Some(t.recent[rank - 1])
        };
        let last_error = t.last_error.as_ref().map(|(at, e)| {
            json!({"at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                   "text": super::redact::text(&truncate(e, 300))})
        });
        let calls = entry["calls_today"].as_u64().unwrap_or(0) + t.calls_today;
        let spend = entry["spend_today_usd"]
            .as_str()
            .and_then(|s| s.parse::<Decimal>().ok())
            .unwrap_or_default()
            + t.spend_today;
        entry["calls_today"] = json!(calls);
        entry["spend_today_usd"] = json!(spend.normalize().to_string());
        if let Some(models) = entry["models"].as_array_mut() {
            models.push(json!({
                "id": model,
                "calls_today": t.calls_today,
                "spend_today_usd": t.spend_today.normalize().to_string(),
                "unpriced_calls_today": t.unpriced_today,
                "recent": {
                    "calls": n,
                    "errors": t.recent_errors,
                    "error_rate": if n == 0 { None } else { Some(t.recent_errors as f64 / n as f64) },
                    "p50_ms": pct(0.5),
                    "p99_ms": pct(0.99),
                },
                "last_error": last_error,
            }));
        }
    }
    json!({
        "daemon": breakers.is_some(),
        "window_s": WINDOW.num_seconds(),
        "at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "providers": out.into_values().collect::<Vec<_>>(),
    })
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The receipts since the start of today or of the window, whichever is earlier.
pub fn calls(ws: &Workspace, now: DateTime<Utc>) -> anyhow::Result<Vec<Call>> {
    let Some(conn) = crate::store::db::open_read_only(&ws.db_path())? else {
        return Ok(Vec::new());
    };
    let midnight = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(now);
    let from = midnight.min(now - WINDOW);
    let from = from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut st = conn.prepare(
        "SELECT provider, model, ts, day, latency_ms, status, error, cost_usd
         FROM receipts WHERE ts >= ?1 ORDER BY ts LIMIT 200000",
    )?;
    let rows = st.query_map([from], |r| {
        let ts: String = r.get(2)?;
        let cost: Option<String> = r.get(7)?;
        let status: String = r.get(5)?;
        Ok(Call {
            provider: r.get(0)?,
            model: r.get(1)?,
            ts: DateTime::parse_from_rfc3339(&ts)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(now),
            day: r.get(3)?,
            latency_ms: r.get::<_, Option<f64>>(4)?.unwrap_or(0.0),
            ok: status == "ok",
            error: r.get(6)?,
            cost: cost.and_then(|c| c.parse().ok()),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The report for `ws` from its files and database, with `breakers` from a running gateway.
pub fn load(ws: &Workspace, breakers: Option<&Breakers>) -> anyhow::Result<Value> {
    let cfg = ws.config()?;
    let providers = crate::llm::config::providers(&cfg.providers)
        .map_err(|e| anyhow::anyhow!("pas.yaml: {e}"))?;
    let now = Utc::now();
    Ok(report(&providers, &calls(ws, now)?, breakers, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(model: &str, secs_ago: i64, ms: f64, ok: bool, cost: &str) -> Call {
        let now = Utc::now();
        Call {
            provider: "p".into(),
            model: model.into(),
            ts: now - ChronoDuration::seconds(secs_ago),
            day: None,
            latency_ms: ms,
            ok,
            error: (!ok).then(|| "upstream 500 from https://u:secret@x.test/v1".into()),
            cost: cost.parse().ok(),
        }
    }

    #[test]
    fn percentiles_rates_and_exact_spend() {
        let calls: Vec<Call> = (1..=100)
            .map(|i| call("m", i, i as f64, i % 10 != 0, "0.1"))
            .collect();
        let mut b = Breakers::new();
        b.insert(
            "p".into(),
            Breaker {
                state: "open",
                cooldown_left_s: Some(3.0),
                fails: 3,
            },
        );
        let r = report(&[], &calls, Some(&b), Utc::now());
        let p = &r["providers"][0];
        assert_eq!(p["breaker"]["state"], "open");
        let m = &p["models"][0];
        assert_eq!(m["recent"]["p50_ms"], 50.0);
        assert_eq!(m["recent"]["p99_ms"], 99.0);
        assert_eq!(m["recent"]["errors"], 10);
        // 100 x 0.1 is exactly 10 (floats would say 9.99999...).
        if Utc::now().date_naive() == (Utc::now() - ChronoDuration::seconds(100)).date_naive() {
            assert_eq!(p["spend_today_usd"], "10");
        }
        let err = m["last_error"]["text"].as_str().unwrap();
        assert!(!err.contains("secret"), "{err}");
        assert_eq!(
            report(&[], &calls, None, Utc::now())["providers"][0]["breaker"]["state"],
            "unknown"
        );
    }
}
