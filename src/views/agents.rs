//! The agents as every reader shows them: `pas agents --json`, the `agents` of
//! `pas status --json`, the dashboard's agents (and its tree), the alerts' input. The JSON
//! of an agent is built here and nowhere else.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::agent::Agent;
use crate::board::Board;
use crate::config::Config;
use crate::heartbeat::BeatStatus;

/// The SPEC's default heartbeat interval, for readers that do not read pas.yaml
/// (`pas status --json`).
pub const DEFAULT_INTERVAL_S: f64 = 60.0;

/// One agent: who it is, what pas makes of it, and what it last said of itself.
#[derive(Debug, Clone, Serialize)]
pub struct AgentRow {
    pub name: String,
    /// `up`, `down`, `paused`, `unregistered`...
    pub status: &'static str,
    pub parent: Option<String>,
    pub epoch: Option<u64>,
    /// Cards it holds now.
    pub assigned: u32,
    pub max_concurrent: u32,
    pub last_heartbeat: Option<String>,
    pub last_seen: Option<String>,
    pub beat_age_s: Option<f64>,
    pub ctx_ratio: Option<f64>,
    /// `ok`, `warning`, `breach`.
    pub ctx: &'static str,
    pub job: Option<String>,
    pub beat_status: Option<BeatStatus>,
    pub note: Option<String>,
    pub progress: Option<f64>,
    pub cpu: Option<f64>,
    pub mem_mb: Option<f64>,
    /// Its own figures are older than one interval (or it is down): shown with their age.
    pub report_stale: bool,
}

/// An agent with what the dashboard and the alerts judge it by: its capabilities, its
/// context thresholds and heartbeat interval from pas.yaml, and its description.
#[derive(Debug, Clone, Serialize)]
pub struct AgentCard {
    #[serde(flatten)]
    pub row: AgentRow,
    pub capabilities: Vec<String>,
    pub ctx_target: f64,
    pub ctx_hard_max: f64,
    pub interval_s: f64,
    pub description: Option<String>,
}

fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One agent as of `now`; its figures are stale past `interval_s` (its own when it sets
/// one).
pub fn row(a: &Agent, loads: &HashMap<&str, u32>, now: DateTime<Utc>, interval_s: f64) -> AgentRow {
    let beat = a.live.beat.as_ref();
    let seen = a.live.last_seen.filter(|_| a.reg.is_some());
    AgentRow {
        name: a.name.clone(),
        status: a.status(),
        parent: a.parent().map(str::to_string),
        epoch: a.reg.as_ref().map(|r| r.epoch),
        assigned: loads.get(a.name.as_str()).copied().unwrap_or(0),
        max_concurrent: a.max_concurrent(),
        last_heartbeat: beat.map(|b| millis(b.ts)),
        last_seen: seen.map(millis),
        beat_age_s: seen.map(|t| (now - t).num_milliseconds() as f64 / 1000.0),
        ctx_ratio: a.ctx_ratio(),
        ctx: a.live.ctx.label(),
        job: beat.and_then(|b| b.job.clone()),
        beat_status: beat.and_then(|b| b.status),
        note: beat.and_then(|b| b.note.clone()),
        progress: beat.and_then(|b| b.progress),
        cpu: beat.and_then(|b| b.cpu),
        mem_mb: beat.and_then(|b| b.mem_mb),
        report_stale: report_stale(a, now, interval_s),
    }
}

/// Every agent of the board, by name.
pub fn rows(board: &Board, now: DateTime<Utc>, interval_s: f64) -> Vec<AgentRow> {
    let loads = board.loads();
    (board.agents.values())
        .map(|a| row(a, &loads, now, interval_s))
        .collect()
}

/// Every agent of the board with its capabilities and thresholds from `cfg`, by name.
pub fn cards(board: &Board, cfg: &Config, now: DateTime<Utc>) -> Vec<AgentCard> {
    let loads = board.loads();
    let interval = cfg.heartbeat_interval_s;
    (board.agents.values())
        .map(|a| {
            let mut caps: Vec<String> = a.def.iter().flat_map(|d| d.capabilities.clone()).collect();
            caps.extend(a.reg.iter().flat_map(|r| r.capabilities.clone()));
            caps.sort();
            caps.dedup();
            let budget = a.token_budget(&cfg.token_budget);
            AgentCard {
                row: row(a, &loads, now, interval),
                capabilities: caps,
                ctx_target: budget.target,
                ctx_hard_max: budget.hard_max,
                interval_s: a.interval_s(interval),
                description: a.def.as_ref().and_then(|d| d.description.clone()),
            }
        })
        .collect()
}

/// Whether an agent's own figures (status, progress, cpu, memory, note) are stale: its
/// newest beat is older than one interval (`default_interval_s` unless it sets its own),
/// or it is down. Stale figures are shown with their age, never as if current.
pub fn report_stale(a: &Agent, now: DateTime<Utc>, default_interval_s: f64) -> bool {
    let Some(b) = a.live.beat.as_ref() else {
        return false;
    };
    let age = (now - b.ts).num_milliseconds() as f64 / 1000.0;
    a.live.down || age > a.interval_s(default_interval_s)
}

/// The models as JSON values, for the readers that still edit or index them as such.
pub fn values<T: Serialize>(rows: &[T]) -> Vec<serde_json::Value> {
    rows.iter().map(super::value).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::test_support::workspace;

    #[test]
    fn every_reader_gets_the_same_agent_and_the_dashboard_its_thresholds() {
        let (_d, ws) = workspace();
        std::fs::write(
            ws.registry().join("probe-7.yaml"),
            "name: probe-7\ncapabilities: [rust, code]\nepoch: 3\n",
        )
        .unwrap();
        let beat = format!(
            "{{\"ts\": \"{}\", \"status\": \"blocked\", \"note\": \"waiting\", \"progress\": 0.5}}\n",
            millis(Utc::now() - chrono::Duration::seconds(5))
        );
        std::fs::write(ws.heartbeats().join("probe-7.jsonl"), beat).unwrap();
        let snap = crate::snapshot::load(&ws).unwrap();
        let now = Utc::now();
        let rows = rows(&snap.board, now, 600.0);
        let r = rows.iter().find(|r| r.name == "probe-7").unwrap();
        assert_eq!(r.epoch, Some(3));
        assert_eq!(r.beat_status, Some(BeatStatus::Blocked));
        assert_eq!(r.note.as_deref(), Some("waiting"));
        assert!(!r.report_stale, "five seconds is within a 600 s interval");
        let stale = super::rows(&snap.board, now, 1.0);
        assert!(
            stale
                .iter()
                .find(|r| r.name == "probe-7")
                .unwrap()
                .report_stale
        );
        let v = super::super::value(r);
        assert_eq!(v["beat_status"], "blocked");
        assert_eq!(v["progress"], 0.5);

        let cfg = ws.config().unwrap();
        let cards = cards(&snap.board, &cfg, now);
        let c = cards.iter().find(|c| c.row.name == "probe-7").unwrap();
        assert_eq!(c.capabilities, ["code", "rust"]);
        assert_eq!(c.interval_s, cfg.heartbeat_interval_s);
        // The card is the row and more: the same keys, flattened.
        let v = super::super::value(c);
        assert_eq!(v["name"], "probe-7");
        assert!(v["ctx_hard_max"].is_number());
        assert_eq!(v["report_stale"], json_bool(c.row.report_stale));
    }

    fn json_bool(b: bool) -> serde_json::Value {
        serde_json::Value::Bool(b)
    }
}
