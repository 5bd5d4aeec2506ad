//! What LLM calls cost, from the receipts' running totals in the telemetry database:
//! today, this month, all time, by provider, model, agent, job, day and status, and how
//! much of each budget is spent. Money is exact (`rust_decimal`), shown as decimal strings.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use chrono::{Datelike, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

use crate::llm::config;
use crate::store::totals::{self, Total};
use crate::workspace::Workspace;

/// Sums of cost (exact), calls, tokens, and calls without a price.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub cost: Decimal,
    pub calls: u64,
    pub unpriced: u64,
    pub input: u64,
    pub output: u64,
}

impl Tally {
    fn add(&mut self, t: &Total) {
        self.calls += t.calls;
        // Saturating: a total may already hold an upstream's nonsense, clamped.
        self.input = self.input.saturating_add(t.input_tokens);
        self.output = self.output.saturating_add(t.output_tokens);
        self.cost += t.cost_usd;
        self.unpriced += t.unpriced;
    }

    /// The tally as the costs document shows it (decimal strings for money).
    pub fn doc(&self) -> TallyDoc {
        TallyDoc {
            cost_usd: self.cost.normalize().to_string(),
            calls: self.calls,
            unpriced_calls: self.unpriced,
            input_tokens: self.input,
            output_tokens: self.output,
        }
    }
}

/// What was spent today, this month and in all, as exact decimal strings (the
/// `cost_usd` of `pas status --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub today: String,
    pub month: String,
    pub total: String,
}

impl Default for Totals {
    /// Nothing spent (the board of a past revision, or no database yet).
    fn default() -> Totals {
        let zero = || "0".to_string();
        Totals {
            today: zero(),
            month: zero(),
            total: zero(),
        }
    }
}

/// What was spent today, this month and in all, from the receipts' running totals
/// (nothing when there is no database or it cannot be read).
pub fn totals(ws: &Workspace) -> Totals {
    let totals = crate::store::db::open_read_only(&ws.db_path())
        .ok()
        .flatten()
        .and_then(|conn| totals::since(&conn, None).ok())
        .unwrap_or_default();
    let now = Utc::now();
    let (mut today, mut month, mut total) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for t in totals {
        total += t.cost_usd;
        if (t.day.year(), t.day.month()) == (now.year(), now.month()) {
            month += t.cost_usd;
        }
        if t.day == now.date_naive() {
            today += t.cost_usd;
        }
    }
    Totals {
        today: today.normalize().to_string(),
        month: month.normalize().to_string(),
        total: total.normalize().to_string(),
    }
}

/// Receipts summed: today, this month, all time, and by provider, model, agent, job, day
/// and status (`ok`, `cut`, or the kind of error: `timeout`, `http_429`...).
pub struct Costs {
    pub budgets: crate::llm::config::Budgets,
    pub t_today: Tally,
    pub t_month: Tally,
    pub t_all: Tally,
    /// Today's receipts per agent, for `budgets.agent_daily_usd` (calls without an agent
    /// have no agent budget: the gateway holds only named agents to it).
    agents_today: BTreeMap<String, Tally>,
    /// By provider, model, agent, job, day and status.
    pub by: BTreeMap<&'static str, BTreeMap<String, Tally>>,
}

/// Sums the receipts of the workspace's database (none when there is no database yet),
/// from their running totals.
pub fn tally_of(ws: &Workspace) -> Result<Costs> {
    let cfg = ws.config()?;
    let budgets =
        config::budgets(cfg.budgets.as_ref()).map_err(|e| anyhow::anyhow!("pas.yaml: {e}"))?;
    let rows = match crate::store::db::open_read_only(&ws.db_path())? {
        Some(conn) => totals::since(&conn, None).with_context(|| {
            format!(
                "cannot read the receipt totals in {}",
                ws.db_path().display()
            )
        })?,
        None => Vec::new(),
    };
    Ok(tally(budgets, &rows, Utc::now()))
}

fn tally(
    budgets: crate::llm::config::Budgets,
    rows: &[Total],
    now: chrono::DateTime<Utc>,
) -> Costs {
    let (today, month) = (now.date_naive(), (now.year(), now.month()));
    let (mut t_today, mut t_month, mut t_all) =
        (Tally::default(), Tally::default(), Tally::default());
    let mut by: BTreeMap<&'static str, BTreeMap<String, Tally>> = BTreeMap::new();
    let mut agents_today: BTreeMap<String, Tally> = BTreeMap::new();
    for t in rows {
        t_all.add(t);
        if (t.day.year(), t.day.month()) == month {
            t_month.add(t);
        }
        if t.day == today {
            t_today.add(t);
            if let Some(a) = &t.agent {
                agents_today.entry(a.clone()).or_default().add(t);
            }
        }
        let keys = [
            ("provider", t.provider.clone()),
            ("model", format!("{}/{}", t.provider, t.model)),
            ("agent", t.agent.clone().unwrap_or_else(|| "-".into())),
            ("job", t.job_id.clone().unwrap_or_else(|| "-".into())),
            ("day", t.day.to_string()),
            ("status", t.kind.clone()),
        ];
        for (dim, key) in keys {
            by.entry(dim).or_default().entry(key).or_default().add(t);
        }
    }
    Costs {
        budgets,
        t_today,
        t_month,
        t_all,
        agents_today,
        by,
    }
}

/// A tally in the costs document.
#[derive(Debug, Clone, Serialize)]
pub struct TallyDoc {
    pub cost_usd: String,
    pub calls: u64,
    pub unpriced_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A tally of one key of a dimension (`by_agent`, `by_model`...).
#[derive(Debug, Clone, Serialize)]
pub struct Keyed {
    #[serde(flatten)]
    pub tally: TallyDoc,
    pub key: String,
}

/// How much of a budget is spent: the limit, what was spent and is left, and the share
/// (spent / limit, null for a zero limit), all exact decimal strings. `agent` names the
/// agent of a per-agent gauge.
#[derive(Debug, Clone, Serialize)]
pub struct Gauge {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub limit_usd: String,
    pub spent_usd: String,
    pub remaining_usd: String,
    pub share: Option<String>,
}

fn gauge(spent: &Tally, limit: Option<Decimal>) -> Option<Gauge> {
    limit.map(|l| Gauge {
        agent: None,
        limit_usd: l.to_string(),
        spent_usd: spent.cost.normalize().to_string(),
        remaining_usd: (l - spent.cost).max(Decimal::ZERO).normalize().to_string(),
        share: (!l.is_zero()).then(|| (spent.cost / l).round_dp(4).normalize().to_string()),
    })
}

/// The budgets' gauges: daily, monthly (null without a limit) and one per agent.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetsDoc {
    pub daily: Option<Gauge>,
    pub monthly: Option<Gauge>,
    pub agents: Vec<Gauge>,
}

/// `pas costs --json`: today, this month, all time, the budgets, and each dimension (the
/// dimensions are absent while there is no receipt at all).
#[derive(Debug, Clone, Serialize)]
pub struct CostsDoc {
    pub today: TallyDoc,
    pub month: TallyDoc,
    pub total: TallyDoc,
    pub budgets: BudgetsDoc,
    #[serde(flatten)]
    pub by: BTreeMap<String, Vec<Keyed>>,
}

impl Costs {
    /// The agents that spent today with their spending, most spent first (with one limit
    /// for all, that is the highest share first; ties by name), when `agent_daily_usd` is
    /// set; none otherwise. An agent whose calls today cost nothing has no gauge.
    pub fn agent_gauges(&self) -> Vec<(&str, &Tally, Decimal)> {
        let Some(limit) = self.budgets.agent_daily_usd else {
            return Vec::new();
        };
        let mut agents: Vec<(&str, &Tally, Decimal)> = self
            .agents_today
            .iter()
            .filter(|(_, t)| t.cost > Decimal::ZERO)
            .map(|(a, t)| (a.as_str(), t, limit))
            .collect();
        agents.sort_by(|a, b| b.1.cost.cmp(&a.1.cost).then(a.0.cmp(b.0)));
        agents
    }

    /// The `pas costs --json` document (the dashboard's `/api/costs` adds the latest
    /// receipts). `budgets.agents` holds one gauge per agent (see
    /// [`Costs::agent_gauges`]), each with its `agent`.
    pub fn doc(&self) -> CostsDoc {
        let agents = (self.agent_gauges().into_iter())
            .filter_map(|(a, t, limit)| {
                let mut g = gauge(t, Some(limit))?;
                g.agent = Some(a.to_string());
                Some(g)
            })
            .collect();
        let by = (self.by.iter())
            .map(|(dim, tallies)| {
                let rows = (tallies.iter())
                    .map(|(k, t)| Keyed {
                        tally: t.doc(),
                        key: k.clone(),
                    })
                    .collect();
                (format!("by_{dim}"), rows)
            })
            .collect();
        CostsDoc {
            today: self.t_today.doc(),
            month: self.t_month.doc(),
            total: self.t_all.doc(),
            budgets: BudgetsDoc {
                daily: gauge(&self.t_today, self.budgets.daily_usd),
                monthly: gauge(&self.t_month, self.budgets.monthly_usd),
                agents,
            },
            by,
        }
    }

    /// [`Costs::doc`] as a JSON value.
    pub fn json(&self) -> Value {
        super::value(&self.doc())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use chrono::TimeZone;

    use super::*;
    use crate::llm::config::Budgets;

    fn row(day: &str, agent: Option<&str>, kind: &str, cost: &str) -> Total {
        Total {
            day: day.parse().unwrap(),
            provider: "p".into(),
            model: "m".into(),
            agent: agent.map(String::from),
            job_id: None,
            kind: kind.into(),
            calls: 1,
            unpriced: 0,
            input_tokens: 10,
            output_tokens: 2,
            cost_usd: cost.parse().unwrap(),
        }
    }

    #[test]
    fn agent_gauges_count_today_only_named_agents_and_come_most_spent_first() {
        let now = Utc.with_ymd_and_hms(2025, 3, 9, 12, 0, 0).unwrap();
        let rows = [
            row("2025-03-09", Some("small"), "ok", "0.1"),
            row("2025-03-09", Some("big"), "ok", "0.3"),
            row("2025-03-09", Some("big"), "timeout", "0.2"),
            row("2025-03-09", Some("idle"), "http_429", "0"),
            row("2025-03-09", None, "ok", "5"),
            // Yesterday's spending is not today's: `old` has no gauge, `small` no more.
            row("2025-03-08", Some("old"), "ok", "9"),
            row("2025-03-08", Some("small"), "ok", "9"),
        ];
        let budgets = Budgets {
            agent_daily_usd: Some("2".parse().unwrap()),
            ..Budgets::default()
        };
        let v = tally(budgets.clone(), &rows, now).json();
        assert_eq!(
            v["budgets"]["agents"],
            json!([
                {"agent": "big", "limit_usd": "2", "spent_usd": "0.5",
                    "remaining_usd": "1.5", "share": "0.25"},
                {"agent": "small", "limit_usd": "2", "spent_usd": "0.1",
                    "remaining_usd": "1.9", "share": "0.05"}])
        );
        let status: Vec<(&str, &str)> = v["by_status"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["key"].as_str().unwrap(), t["cost_usd"].as_str().unwrap()))
            .collect();
        assert_eq!(
            status,
            [("http_429", "0"), ("ok", "23.4"), ("timeout", "0.2")]
        );
        assert_eq!(
            v["by_agent"][0],
            json!({"key": "-", "cost_usd": "5", "calls": 1,
            "unpriced_calls": 0, "input_tokens": 10, "output_tokens": 2})
        );
        let dims: Vec<&String> = (v.as_object().unwrap().keys())
            .filter(|k| k.starts_with("by_"))
            .collect();
        assert_eq!(
            dims,
            [
                "by_agent",
                "by_day",
                "by_job",
                "by_model",
                "by_provider",
                "by_status"
            ]
        );
        // A zero limit has no share.
        let zero = Budgets {
            daily_usd: Some(Decimal::ZERO),
            ..Budgets::default()
        };
        let v = tally(zero, &rows, now).json();
        assert_eq!(v["budgets"]["daily"]["share"], Value::Null);
        assert_eq!(v["budgets"]["daily"]["remaining_usd"], "0");
        // Without an agent budget there are no agent gauges.
        let v = tally(Budgets::default(), &rows, now).json();
        assert_eq!(v["budgets"]["agents"], json!([]));
    }

    #[test]
    fn totals_of_a_workspace_without_a_database_are_zero() {
        let (_d, ws) = crate::views::test_support::workspace();
        assert_eq!(totals(&ws), Totals::default());
        let c = tally_of(&ws).unwrap();
        assert_eq!(c.t_all.calls, 0);
        let v = c.json();
        assert_eq!(v["total"]["cost_usd"], "0");
        // No receipt, no dimensions; no limits, null gauges.
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["budgets", "month", "today", "total"]);
        assert_eq!(
            v["budgets"],
            json!({"daily": null, "monthly": null, "agents": []})
        );
        assert_eq!(
            v["today"],
            json!({"cost_usd": "0", "calls": 0, "unpriced_calls": 0,
                "input_tokens": 0, "output_tokens": 0})
        );
        assert_eq!(
            crate::views::value(&totals(&ws)),
            json!({"today": "0", "month": "0", "total": "0"})
        );
    }
}
