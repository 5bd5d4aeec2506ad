//! LLM commands: `pas route` (which model would serve, and why) and `pas costs` (what
//! calls cost, from the receipts). Both read files only; no daemon needed.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use rust_decimal::Decimal;
use serde_json::json;

use super::{Format, Out};
use crate::llm::config;
use crate::llm::config::Policy;
use crate::llm::route::{self, Health, Need};
use crate::store::receipts;
use crate::views::costs::{Costs, Tally};
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

/// `pas costs`.
pub fn costs(ws: &Workspace, fmt: Format, out: &Out) -> Result<i32> {
    let c = crate::views::costs::tally_of(ws)?;
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
