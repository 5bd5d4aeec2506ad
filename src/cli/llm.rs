//! LLM commands: `pas route` (which model would serve, and why) and `pas costs` (what
//! calls cost, from the receipts). Both read files only; no daemon needed.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{Datelike, Utc};
use clap::Args;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::{Format, Out};
use crate::llm::config;
use crate::llm::route::{self, Health, Need, Policy};
use crate::store::receipts;
use crate::store::totals::{self, Total};
use crate::workspace::Workspace;

/// Flags of `pas route`.
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// Capabilities the model must have (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    pub caps: Vec<String>,
    /// A model id: skips the choice.
    #[arg(long)]
    pub model: Option<String>,
    /// local, cheapest, fastest or balanced (default: routing.policy in pas.yaml).
    #[arg(long, value_enum)]
    pub policy: Option<Policy>,
    /// Tokens the context window must hold.
    #[arg(long, default_value_t = 0)]
    pub ctx: u64,
    /// Say why each model is where it is, and why others are left out.
    #[arg(long)]
    pub explain: bool,
}

/// Latency per `provider/model` as the gateway averages it, from the last receipts.
fn seeded_health(ws: &Workspace) -> Health {
    let past = receipts::past_latencies(&ws.db_path()).unwrap_or_default();
    Health::remembering(std::time::Duration::ZERO, past)
}

/// `pas route`.
pub fn route(ws: &Workspace, a: RouteArgs, fmt: Format, out: &Out) -> Result<i32> {
    let cfg = ws.config()?;
    let all = config::providers(&cfg.providers).map_err(|e| anyhow::anyhow!("pas.yaml: {e}"))?;
    let policy = match a.policy {
        Some(p) => p,
        None => {
            config::routing(cfg.routing.as_ref())
                .map_err(|e| anyhow::anyhow!("pas.yaml: {e}"))?
                .policy
        }
    };
    // A provider whose key is missing is out, with the variable named.
    let mut keyless = Vec::new();
    let usable: Vec<config::Provider> = all
        .into_iter()
        .filter(|p| match p.api_key() {
            Ok(_) => true,
            Err(e) => {
                for m in &p.models {
                    keyless.push((format!("{}/{}", p.name, m.id), e.clone()));
                }
                false
            }
        })
        .collect();
    let need = Need {
        capabilities: a.caps.clone(),
        ctx_tokens: a.ctx,
        model: a.model.clone(),
    };
    let health = seeded_health(ws);
    let routed = route::route(&usable, &need, policy, &health, Instant::now());
    let mut excluded = routed.excluded.clone();
    excluded.extend(keyless);
    if fmt.json {
        out.json(&json!({
            "policy": policy,
            "order": routed.order.iter().map(|c| json!({
                "provider": c.provider.name,
                "model": c.model.id,
                "local": c.provider.local,
                "price_per_mtok": c.model.price_per_mtok,
                "why": c.why,
            })).collect::<Vec<_>>(),
            "excluded": excluded.iter().map(|(m, why)| json!({"model": m, "why": why})).collect::<Vec<_>>(),
        }));
        return Ok(if routed.order.is_empty() { 1 } else { 0 });
    }
    if routed.order.is_empty() {
        out.line(format!(
            "no model can serve this (policy {policy:?}); {} left out",
            excluded.len()
        ));
    } else {
        let mut t = out.table(&["#", "PROVIDER", "MODEL", "WHY"]);
        for (i, c) in routed.order.iter().enumerate() {
            t.add_row(vec![
                (i + 1).to_string(),
                c.provider.name.clone(),
                c.model.id.clone(),
                if a.explain {
                    c.why.clone()
                } else {
                    String::new()
                },
            ]);
        }
        out.print_table(&t);
    }
    if a.explain && !excluded.is_empty() {
        out.line("");
        let mut t = out.table(&["LEFT OUT", "WHY"]);
        for (m, why) in &excluded {
            t.add_row(vec![m.clone(), why.clone()]);
        }
        out.print_table(&t);
    }
    Ok(if routed.order.is_empty() { 1 } else { 0 })
}

/// Sums of cost (exact), calls, tokens, and calls without a price.
#[derive(Debug, Default, Clone)]
struct Tally {
    cost: Decimal,
    calls: u64,
    unpriced: u64,
    input: u64,
    output: u64,
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

    fn json(&self) -> Value {
        json!({
            "cost_usd": self.cost.normalize().to_string(),
            "calls": self.calls,
            "unpriced_calls": self.unpriced,
            "input_tokens": self.input,
            "output_tokens": self.output,
        })
    }
}

/// `{"today", "month", "total"}` spent, as exact decimal strings (for `pas status --json`).
pub fn cost_totals(ws: &Workspace) -> Value {
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
    json!({
        "today": today.normalize().to_string(),
        "month": month.normalize().to_string(),
        "total": total.normalize().to_string(),
    })
}

/// Receipts summed: today, this month, all time, and by provider, model, agent, job, day
/// and status (`ok`, `cut`, or the kind of error: `timeout`, `http_429`...).
pub struct Costs {
    budgets: crate::llm::config::Budgets,
    t_today: Tally,
    t_month: Tally,
    t_all: Tally,
    /// Today's receipts per agent, for `budgets.agent_daily_usd` (calls without an agent
    /// have no agent budget: the gateway holds only named agents to it).
    agents_today: BTreeMap<String, Tally>,
    by: BTreeMap<&'static str, BTreeMap<String, Tally>>,
}

/// Sums the receipts of the workspace's database (none when there is no database yet),
/// from their running totals.
pub fn cost_tally(ws: &Workspace) -> Result<Costs> {
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

/// How much of a budget is spent: the limit, what was spent and is left, and the share
/// (spent / limit, null for a zero limit), all exact decimal strings.
fn gauge(spent: &Tally, limit: Option<Decimal>) -> Option<Value> {
    limit.map(|l| {
        json!({
            "limit_usd": l.to_string(),
            "spent_usd": spent.cost.normalize().to_string(),
            "remaining_usd": (l - spent.cost).max(Decimal::ZERO).normalize().to_string(),
            "share": if l.is_zero() { Value::Null } else { Value::String((spent.cost / l).round_dp(4).normalize().to_string()) },
        })
    })
}

impl Costs {
    /// The agents that spent today with their spending, most spent first (with one limit
    /// for all, that is the highest share first; ties by name), when `agent_daily_usd` is
    /// set; none otherwise. An agent whose calls today cost nothing has no gauge.
    fn agent_gauges(&self) -> Vec<(&str, &Tally, Decimal)> {
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

    /// The `pas costs --json` document (the dashboard's `/api/costs` adds the latest receipts).
    /// `budgets.agents` holds one gauge per agent (see [`Costs::agent_gauges`]), each with
    /// its `agent`.
    pub fn json(&self) -> Value {
        let agents: Vec<Value> = self
            .agent_gauges()
            .into_iter()
            .filter_map(|(a, t, limit)| {
                let mut g = gauge(t, Some(limit))?;
                g["agent"] = a.into();
                Some(g)
            })
            .collect();
        let mut v = json!({
            "today": self.t_today.json(),
            "month": self.t_month.json(),
            "total": self.t_all.json(),
            "budgets": {
                "daily": gauge(&self.t_today, self.budgets.daily_usd),
                "monthly": gauge(&self.t_month, self.budgets.monthly_usd),
                "agents": agents,
            },
        });
        for (dim, tallies) in &self.by {
            v[format!("by_{dim}")] = tallies
                .iter()
                .map(|(k, t)| {
                    let mut j = t.json();
                    j["key"] = json!(k);
                    j
                })
                .collect::<Vec<_>>()
                .into();
        }
        v
    }
}

/// `pas costs`.
pub fn costs(ws: &Workspace, fmt: Format, out: &Out) -> Result<i32> {
    let c = cost_tally(ws)?;
    let Costs {
        budgets,
        t_today,
        t_month,
        t_all,
        by,
        ..
    } = &c;
    if fmt.json {
        out.json(&c.json());
        return Ok(0);
    }
    let line = |label: &str, t: &Tally, limit: Option<Decimal>| {
        let budget = limit.map_or(String::new(), |l| format!(" of ${l}"));
        let unpriced = if t.unpriced > 0 {
            format!(" (+{} calls without a price)", t.unpriced)
        } else {
            String::new()
        };
        format!(
            "{label:<6} ${}{budget} · {} calls · {} in / {} out tokens{unpriced}",
            t.cost.normalize(),
            t.calls,
            t.input,
            t.output
        )
    };
    out.line(line("today", t_today, budgets.daily_usd));
    out.line(line("month", t_month, budgets.monthly_usd));
    out.line(line("total", t_all, None));
    let agents = c.agent_gauges();
    if !agents.is_empty() {
        out.line("");
        let mut t = out.table(&["AGENT TODAY", "COST USD", "BUDGET USD", "SHARE", "CALLS"]);
        for (a, x, limit) in agents {
            let share = if limit.is_zero() {
                "-".to_string()
            } else {
                format!(
                    "{}%",
                    (x.cost * Decimal::ONE_HUNDRED / limit)
                        .round_dp(1)
                        .normalize()
                )
            };
            t.add_row(vec![
                a.to_string(),
                x.cost.normalize().to_string(),
                limit.normalize().to_string(),
                share,
                x.calls.to_string(),
            ]);
        }
        out.print_table(&t);
    }
    for (dim, tallies) in by {
        out.line("");
        let header = dim.to_uppercase();
        let mut t = out.table(&[
            header.as_str(),
            "COST USD",
            "CALLS",
            "NO PRICE",
            "IN",
            "OUT",
        ]);
        for (k, x) in tallies {
            t.add_row(vec![
                k.clone(),
                x.cost.normalize().to_string(),
                x.calls.to_string(),
                x.unpriced.to_string(),
                x.input.to_string(),
                x.output.to_string(),
            ]);
        }
        out.print_table(&t);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
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
        // Without an agent budget there are no agent gauges.
        let v = tally(Budgets::default(), &rows, now).json();
        assert_eq!(v["budgets"]["agents"], json!([]));
    }
}
