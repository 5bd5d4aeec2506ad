//! What is wrong now (SPEC section 15): alerts as a state that clears, not a log.
//!
//! [`active`] is a pure function of what the dashboard already reads (the agents as
//! `pas agents --json` shows them, the cost tally with its budget gauges, the rejected
//! files, and the running gateway's breakers) and returns each alert that holds now, with
//! a stable key. An alert is active while its cause lasts: an agent down until it beats,
//! a budget crossed until its period turns, a provider cooling until its breaker closes,
//! a context breach until the agent's context falls, rejected files until they are moved
//! away. Pages show the active set on every page; the notifier compares one set with the
//! next and sends each new key as an alert and each key gone as its all-clear. The past
//! stays in the event log (`/alerts`).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sentences::{self, agent_href, Link};
use crate::gateway::Breakers;
use crate::views;

/// How bad an alert is; the notifier's filter sends a severity and those above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

/// One thing wrong now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Active {
    /// Stable while the cause lasts (`agent.down:writer`), so a page and the notifier
    /// know it again.
    pub key: String,
    /// `agent.down`, `agent.blocked`, `token.breach`, `budget.crossed`,
    /// `provider.cooling`, `files.rejected`.
    pub kind: String,
    pub severity: Severity,
    /// Since when, RFC 3339, when known.
    pub since: Option<String>,
    pub text: String,
    pub links: Vec<Link>,
    /// The agent it is about, for the notifier's filter.
    pub agent: Option<String>,
}

/// Rejected files waiting in `work/rejected/`: how many, and the oldest one's time.
#[derive(Debug, Clone, Default)]
pub struct Rejected {
    pub count: usize,
    pub oldest: Option<String>,
}

/// The alerts that hold, most severe first.
pub fn active(
    agents: &[Value],
    costs: &Value,
    breakers: Option<&Breakers>,
    rejected: &Rejected,
) -> Vec<Active> {
    let mut out = Vec::new();
    for a in agents {
        let Some(name) = a["name"].as_str() else {
            continue;
        };
        let link = || {
            vec![Link {
                label: name.to_string(),
                href: agent_href(name),
            }]
        };
        let seen = a["last_seen"].as_str().map(str::to_string);
        if a["status"] == "down" {
            let data = serde_json::json!({
                "agent": name,
                "interval_s": a["interval_s"],
                "last_seen": seen,
                "last_note": a["note"],
            });
            out.push(Active {
                key: format!("agent.down:{name}"),
                kind: "agent.down".into(),
                severity: Severity::Critical,
                since: seen.clone(),
                text: sentences::of("agent.down", &data).text,
                links: link(),
                agent: Some(name.to_string()),
            });
            continue;
        }
        if a["status"] != "up" {
            continue;
        }
        if let Some(st @ ("blocked" | "error")) = a["beat_status"].as_str() {
            let note = a["note"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(|n| format!(": “{n}”"))
                .unwrap_or_default();
            let mut links = link();
            if let Some(j) = a["job"].as_str() {
                links.push(Link {
                    label: j.to_string(),
                    href: sentences::job_href(j),
                });
            }
            out.push(Active {
                key: format!("agent.{st}:{name}"),
                kind: format!("agent.{st}"),
                severity: if st == "error" {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                since: a["last_heartbeat"].as_str().map(str::to_string),
                text: format!("{name} says it is {st}{note}"),
                links,
                agent: Some(name.to_string()),
            });
        }
        if a["ctx"] == "breach" {
            let data = serde_json::json!({
                "agent": name, "ctx_ratio": a["ctx_ratio"], "hard_max": a["ctx_hard_max"],
            });
            out.push(Active {
                key: format!("token.breach:{name}"),
                kind: "token.breach".into(),
                severity: Severity::Warning,
                since: a["last_heartbeat"].as_str().map(str::to_string),
                text: sentences::of("token.breach", &data).text,
                links: link(),
                agent: Some(name.to_string()),
            });
        }
    }
    let b = &costs["budgets"];
    let mut gauges: Vec<(String, &Value)> = vec![
        ("daily".to_string(), &b["daily"]),
        ("monthly".to_string(), &b["monthly"]),
    ];
    if let Some(list) = b["agents"].as_array() {
        for g in list {
            let who = g["agent"].as_str().unwrap_or("?");
            gauges.push((format!("agent {who} daily"), g));
        }
    }
    for (scope, g) in gauges {
        let share = g["share"].as_str().and_then(|s| s.parse::<Decimal>().ok());
        if share.is_some_and(|s| s >= Decimal::ONE) {
            let agent = g["agent"].as_str().map(str::to_string);
            out.push(Active {
                key: format!("budget.crossed:{scope}"),
                kind: "budget.crossed".into(),
                severity: Severity::Critical,
                since: None,
                text: format!(
                    "the {scope} budget is spent: ${} of ${}; paid calls are refused",
                    g["spent_usd"].as_str().unwrap_or("?"),
                    g["limit_usd"].as_str().unwrap_or("?")
                ),
                links: vec![Link {
                    label: "costs".into(),
                    href: "/costs".into(),
                }],
                agent,
            });
        }
    }
    for (name, br) in breakers.into_iter().flatten() {
        if br.state == "closed" {
            continue;
        }
        let left = br
            .cooldown_left_s
            .map(|s| format!(", {s:.0} s of cool-down left"))
            .unwrap_or_else(|| ", a probe may go now".into());
        out.push(Active {
            key: format!("provider.cooling:{name}"),
            kind: "provider.cooling".into(),
            severity: Severity::Warning,
            since: None,
            text: format!(
                "provider {name} is cooling down after {} failures in a row{left}; calls go to the others",
                br.fails
            ),
            links: vec![Link {
                label: name.clone(),
                href: "/providers".into(),
            }],
            agent: None,
        });
    }
    if rejected.count > 0 {
        out.push(Active {
            key: "files.rejected".into(),
            kind: "files.rejected".into(),
            severity: Severity::Warning,
            since: rejected.oldest.clone(),
            text: format!(
                "{} rejected file{} wait{} in work/rejected/: each has a .reason.txt saying what to fix",
                rejected.count,
                if rejected.count == 1 { "" } else { "s" },
                if rejected.count == 1 { "s" } else { "" }
            ),
            links: vec![Link {
                label: "why".into(),
                href: "/alerts#rejected".into(),
            }],
            agent: None,
        });
    }
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.key.cmp(&b.key)));
    out
}

/// The files waiting in `work/rejected/` (reason files and hidden names not counted),
/// known by `lstat` alone: a hostile file there is never opened.
pub fn rejected(ws: &crate::workspace::Workspace) -> Rejected {
    let mut r = Rejected::default();
    let mut oldest: Option<std::time::SystemTime> = None;
    if let Ok(rd) = std::fs::read_dir(ws.rejected()) {
        for e in rd.flatten().take(100_000) {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.ends_with(".reason.txt") {
                continue;
            }
            r.count += 1;
            if let Ok(t) = std::fs::symlink_metadata(e.path()).and_then(|m| m.modified()) {
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
            }
        }
    }
    r.oldest = oldest.map(|t| {
        chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    r
}

/// The active alerts read from the files and the database alone (no daemon: no breakers),
/// for `pas alerts`.
pub fn from_files(ws: &crate::workspace::Workspace) -> anyhow::Result<Vec<Active>> {
    let cfg = ws.config()?;
    let snap = crate::snapshot::load_with(ws, crate::snapshot::Depth::Board)?;
    let agents =
        views::agents::values(&views::agents::cards(&snap.board, &cfg, chrono::Utc::now()));
    let costs = views::costs::tally_of(ws)
        .map(|c| c.json())
        .unwrap_or_default();
    Ok(active(&agents, &costs, None, &rejected(ws)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_down_agent_is_an_alert_until_it_is_up() {
        let down = json!([{"name": "w", "status": "down", "interval_s": 1.0,
            "last_seen": "2026-12-07T12:25:52Z", "note": "compiling"}]);
        let a = active(
            down.as_array().unwrap(),
            &json!({}),
            None,
            &Rejected::default(),
        );
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].key, "agent.down:w");
        assert!(a[0].text.contains("last seen 12:25:52"), "{}", a[0].text);
        let up = json!([{"name": "w", "status": "up", "beat_status": "blocked", "note": "<b>x"}]);
        let a = active(
            up.as_array().unwrap(),
            &json!({}),
            None,
            &Rejected::default(),
        );
        assert_eq!(a[0].key, "agent.blocked:w");
    }

    #[test]
    fn budgets_providers_and_rejected_files() {
        let costs = json!({"budgets": {"daily": {"share": "1.02", "spent_usd": "5.1", "limit_usd": "5"}, "monthly": {"share": "0.5"}}});
        let mut b = Breakers::new();
        b.insert(
            "up".into(),
            crate::gateway::Breaker {
                state: "open",
                cooldown_left_s: Some(4.0),
                fails: 3,
            },
        );
        let r = Rejected {
            count: 2,
            oldest: None,
        };
        let a = active(&[], &costs, Some(&b), &r);
        let keys: Vec<&str> = a.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "budget.crossed:daily",
                "files.rejected",
                "provider.cooling:up"
            ]
        );
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_context_breach_and_an_error_are_alerts_and_unregistered_agents_are_not() {
        let agents = json!([
            {"name": "a", "status": "up", "ctx": "breach", "ctx_ratio": 0.8, "ctx_hard_max": 0.75},
            {"name": "b", "status": "up", "beat_status": "error", "note": "crashed", "job": "J-1"},
            {"name": "c", "status": "unregistered", "beat_status": "blocked"},
        ]);
        let a = active(
            agents.as_array().unwrap(),
            &json!({}),
            None,
            &Rejected::default(),
        );
        let keys: Vec<&str> = a.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["agent.error:b", "token.breach:a"]);
        assert_eq!(a[0].links[1].href, "/jobs/J-1");
        assert!(
            a[1].text.contains("80%") && a[1].text.contains("75%"),
            "{}",
            a[1].text
        );
    }
}
