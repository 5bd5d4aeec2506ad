//! Receipts for the usage an agent reported in its transcript (SPEC section 16), so a
//! card's cost is whole when its agent paid for calls pas never saw (a subscription).
//!
//! No double counting: calls that went through pas's gateway already have receipts. A
//! run counts as going through the gateway when its `ANTHROPIC_BASE_URL` (pas sets it to
//! the gateway unless the definition's `env` says otherwise) is the gateway's URL; then its
//! transcript usage is shown in spans but never receipted. Otherwise one receipt per
//! model is written, `usage_source = 'transcript'`, priced from `pas.yaml` when the model
//! is listed there, else at the cost the agent reported, else null (never $0).

use anyhow::{Context, Result};
use chrono::Utc;

use super::transcript::ModelUsage;
use crate::store::receipts::ReceiptRow;

/// The provider and price of `model` in `pas.yaml`, if listed.
fn priced(
    providers: &[crate::llm::config::Provider],
    model: &str,
) -> Option<(String, Option<crate::llm::config::Price>)> {
    providers.iter().find_map(|p| {
        p.models
            .iter()
            .find(|m| m.id == model)
            .map(|m| (p.name.clone(), m.price_per_mtok.clone()))
    })
}

/// The receipts for `usage`, reported by a run of `agent` on card `job`.
pub fn rows(
    cfg: &crate::config::Config,
    agent: &str,
    job: &str,
    run_id: &str,
    usage: &[ModelUsage],
) -> Vec<ReceiptRow> {
    let providers = crate::llm::config::providers(&cfg.providers).unwrap_or_default();
    usage
        .iter()
        .map(|u| {
            let (provider, price) = priced(&providers, &u.model)
                .unwrap_or_else(|| ("transcript".to_string(), None));
            let cost = crate::llm::cost::cost(price.as_ref(), &u.usage).or(u.reported_cost);
            if cost.is_none() {
                tracing::warn!(model = %u.model, job, "no price for a model an agent reported: its receipt has no cost");
            }
            ReceiptRow {
                id: ulid::Ulid::new().to_string(),
                request_id: format!("transcript-{run_id}-{}", u.model),
                attempt: 1,
                ts: Utc::now(),
                job_id: Some(job.to_string()),
                agent: Some(agent.to_string()),
                provider,
                model: u.model.clone(),
                usage: u.usage,
                cost_usd: cost,
                status: "ok".into(),
                ..ReceiptRow::default()
            }
        })
        .collect()
}

/// Writes `rows` into the telemetry database (beside the daemon's writer: SQLite's WAL
/// and busy timeout serialise the two), each with its total.
pub fn record(db_path: &std::path::Path, rows: &[ReceiptRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut conn = crate::store::db::open(db_path)?;
    let tx = conn
        .transaction()
        .context("cannot write transcript receipts")?;
    let mut totals = crate::store::totals::Pending::default();
    for r in rows {
        if crate::store::receipts::insert_only(&tx, r)? {
            totals.add(r);
        } else {
            tracing::warn!(receipt = %r.id, job = ?r.job_id, "a transcript receipt was not taken");
        }
    }
    totals.apply(&tx)?;
    tx.commit()?;
    Ok(())
}
