//! `GET /api/costs/series?by=provider|model|agent&step=hour|day[&buckets=N]`: spend, tokens
//! and calls per hour or per day, one series per provider, model or agent, for the costs
//! page's charts (and anyone's). Money stays exact: each bucket's spend is a decimal string
//! summed with `rust_decimal`; the browser turns it into a number only to draw a bar.
//!
//! Hours are read from the receipts (indexed by `ts`, and the window is at most two weeks);
//! days from the daily totals the writer keeps, so a year of receipts is not re-read.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Duration, DurationRound, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, Dash, WebError};
use crate::workspace::Workspace;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SeriesQuery {
    pub by: Option<String>,
    pub step: Option<String>,
    pub buckets: Option<usize>,
}

#[derive(Clone, Copy, PartialEq)]
enum Step {
    Hour,
    Day,
}

/// One series: per bucket, spend (exact), tokens (in + out), calls; and its priceless calls.
#[derive(Default)]
struct Line {
    cost: Vec<Decimal>,
    tokens: Vec<u64>,
    calls: Vec<u64>,
    unpriced: u64,
}

pub(crate) async fn series(
    State(dash): State<Dash>,
    Query(q): Query<SeriesQuery>,
) -> Result<Json<Value>, WebError> {
    let by = q.by.unwrap_or_else(|| "provider".into());
    if !matches!(by.as_str(), "provider" | "model" | "agent") {
        return Err(WebError::bad_request(format!(
            "by={by:?}: one of provider, model, agent"
        )));
    }
    let step = match q.step.as_deref().unwrap_or("hour") {
        "hour" => Step::Hour,
        "day" => Step::Day,
        s => {
            return Err(WebError::bad_request(format!(
                "step={s:?}: one of hour, day"
            )))
        }
    };
    // Two days of hours or a month of days by default; at most two weeks of hours or a
    // year of days.
    let (default, max) = match step {
        Step::Hour => (48, 24 * 14),
        Step::Day => (30, 366),
    };
    let n = q.buckets.unwrap_or(default).clamp(1, max);
    let ws = dash.shared.ws.clone();
    let doc = blocking(move || compute(&ws, &by, step, n, Utc::now())).await?;
    Ok(Json(doc))
}

fn compute(
    ws: &Workspace,
    by: &str,
    step: Step,
    n: usize,
    now: DateTime<Utc>,
) -> anyhow::Result<Value> {
    let width = match step {
        Step::Hour => Duration::hours(1),
        Step::Day => Duration::days(1),
    };
    let last = now.duration_trunc(width)?;
    let first = last - width * (n as i32 - 1);
    let starts: Vec<DateTime<Utc>> = (0..n).map(|i| first + width * i as i32).collect();
    let mut lines: BTreeMap<String, Line> = BTreeMap::new();
    let mut add = |key: String,
                   at: DateTime<Utc>,
                   cost: Option<Decimal>,
                   tokens: u64,
                   calls: u64,
                   unpriced: u64| {
        let i = ((at - first).num_seconds() / width.num_seconds()) as usize;
        if at < first || i >= n {
            return;
        }
        let l = lines.entry(key).or_insert_with(|| Line {
            cost: vec![Decimal::ZERO; n],
            tokens: vec![0; n],
            calls: vec![0; n],
            unpriced: 0,
        });
        if let Some(c) = cost {
            l.cost[i] += c;
        }
        l.tokens[i] = l.tokens[i].saturating_add(tokens);
        l.calls[i] += calls;
        l.unpriced += unpriced;
    };
    let key = |provider: &str, model: &str, agent: Option<&str>| match by {
        "provider" => provider.to_string(),
        "model" => format!("{provider}/{model}"),
        _ => agent.unwrap_or("-").to_string(),
    };
    if let Some(conn) = crate::store::db::open_read_only(&ws.db_path())? {
        match step {
            Step::Day => {
                for t in crate::store::totals::since(&conn, Some(first.date_naive()))? {
                    let at = day_start(t.day);
                    let k = key(&t.provider, &t.model, t.agent.as_deref());
                    add(
                        k,
                        at,
                        Some(t.cost_usd),
                        t.input_tokens.saturating_add(t.output_tokens),
                        t.calls,
                        t.unpriced,
                    );
                }
            }
            Step::Hour => {
                let mut stmt = conn.prepare(
                    "SELECT ts, provider, model, agent, input_tokens, output_tokens, cost_usd
                     FROM receipts WHERE ts >= ?1",
                )?;
                let mut rows = stmt.query([crate::store::db::ts_text(&first)])?;
                while let Some(r) = rows.next()? {
                    let ts: String = r.get(0)?;
                    let Ok(at) = DateTime::parse_from_rfc3339(&ts) else {
                        continue; // not written by pas
                    };
                    let (provider, model): (String, String) = (r.get(1)?, r.get(2)?);
                    let agent: Option<String> = r.get(3)?;
                    let tokens = (r.get::<_, i64>(4)?.max(0) as u64)
                        .saturating_add(r.get::<_, i64>(5)?.max(0) as u64);
                    let cost: Option<Decimal> =
                        r.get::<_, Option<String>>(6)?.and_then(|c| c.parse().ok());
                    let unpriced = u64::from(cost.is_none());
                    add(
                        key(&provider, &model, agent.as_deref()),
                        at.to_utc(),
                        cost,
                        tokens,
                        1,
                        unpriced,
                    );
                }
            }
        }
    }
    let total = |l: &Line| l.cost.iter().copied().sum::<Decimal>();
    let mut ordered: Vec<(String, Line)> = lines.into_iter().collect();
    // The biggest spender first (the charts stack and colour in this order).
    ordered.sort_by(|a, b| {
        total(&b.1)
            .cmp(&total(&a.1))
            .then(
                b.1.tokens
                    .iter()
                    .sum::<u64>()
                    .cmp(&a.1.tokens.iter().sum::<u64>()),
            )
            .then(a.0.cmp(&b.0))
    });
    let series: Vec<Value> = ordered
        .iter()
        .map(|(k, l)| {
            json!({
                "key": k,
                "cost_usd": l.cost.iter().map(|c| c.normalize().to_string()).collect::<Vec<_>>(),
                "tokens": l.tokens,
                "calls": l.calls,
                "total_cost_usd": total(l).normalize().to_string(),
                "total_tokens": l.tokens.iter().sum::<u64>(),
                "total_calls": l.calls.iter().sum::<u64>(),
                "unpriced_calls": l.unpriced,
            })
        })
        .collect();
    Ok(json!({
        "by": by,
        "step": if step == Step::Hour { "hour" } else { "day" },
        "buckets": starts.iter().copied().map(crate::views::stamp).collect::<Vec<_>>(),
        "series": series,
    }))
}

fn day_start(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::receipts::ReceiptRow;

    fn receipt(id: &str, ts: &str, model: &str, agent: &str, cost: Option<&str>) -> ReceiptRow {
        ReceiptRow {
            id: id.into(),
            request_id: id.into(),
            attempt: 1,
            ts: DateTime::parse_from_rfc3339(ts).unwrap().to_utc(),
            job_id: None,
            replay_of: None,
            agent: Some(agent.into()),
            provider: "p".into(),
            model: model.into(),
            usage: crate::llm::cost::Usage {
                input: 10,
                output: 5,
                ..Default::default()
            },
            cost_usd: cost.map(|c| c.parse().unwrap()),
            latency_ms: 1.0,
            ttft_ms: None,
            stream: false,
            status: "ok".into(),
            error: None,
            day: None,
            input_estimate: None,
        }
    }

    /// Receipts land in their hour or day, exactly summed; those before the window are
    /// left out; a receipt without a price counts its call and tokens, not a zero cost.
    #[test]
    fn receipts_are_bucketed_by_hour_and_day_and_summed_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::at(dir.path());
        std::fs::create_dir_all(ws.db_path().parent().unwrap()).unwrap();
        let mut conn = crate::store::db::open(&ws.db_path()).unwrap();
        let tx = conn.transaction().unwrap();
        for r in [
            receipt("a", "2026-12-07T09:10:00.000Z", "m1", "alpha", Some("0.1")),
            receipt("b", "2026-12-07T09:50:00.000Z", "m1", "alpha", Some("0.2")),
            receipt(
                "c",
                "2026-12-07T11:00:00.000Z",
                "m2",
                "beta",
                Some("0.000001"),
            ),
            receipt("d", "2026-12-07T11:30:00.000Z", "m2", "beta", None),
            receipt("old", "2026-12-05T11:30:00.000Z", "m1", "alpha", Some("5")),
        ] {
            crate::store::receipts::insert(&tx, &r).unwrap();
        }
        tx.commit().unwrap();
        drop(conn);
        let now = DateTime::parse_from_rfc3339("2026-12-07T11:45:00Z")
            .unwrap()
            .to_utc();

        let h = compute(&ws, "model", Step::Hour, 4, now).unwrap();
        assert_eq!(
            h["buckets"],
            json!([
                "2026-12-07T08:00:00.000Z",
                "2026-12-07T09:00:00.000Z",
                "2026-12-07T10:00:00.000Z",
                "2026-12-07T11:00:00.000Z"
            ])
        );
        // The biggest spender first; 0.1 + 0.2 is exactly 0.3.
        assert_eq!(h["series"][0]["key"], "p/m1");
        assert_eq!(h["series"][0]["cost_usd"], json!(["0", "0.3", "0", "0"]));
        assert_eq!(h["series"][0]["calls"], json!([0, 2, 0, 0]));
        assert_eq!(h["series"][1]["key"], "p/m2");
        assert_eq!(
            h["series"][1]["cost_usd"],
            json!(["0", "0", "0", "0.000001"])
        );
        assert_eq!(h["series"][1]["tokens"], json!([0, 0, 0, 30]));
        assert_eq!(h["series"][1]["unpriced_calls"], 1);

        let d = compute(&ws, "agent", Step::Day, 3, now).unwrap();
        assert_eq!(d["buckets"][0], "2026-12-05T00:00:00.000Z");
        let alpha = &d["series"][0];
        assert_eq!(alpha["key"], "alpha");
        assert_eq!(alpha["cost_usd"], json!(["5", "0", "0.3"]));
        assert_eq!(alpha["total_cost_usd"], "5.3");
        // Two days of window: the receipt of the 5th is outside.
        let d2 = compute(&ws, "agent", Step::Day, 2, now).unwrap();
        assert_eq!(d2["series"][0]["total_cost_usd"], "0.3");
    }
}
