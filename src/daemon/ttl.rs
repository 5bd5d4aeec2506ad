//! Liveness and token-governor decisions, pure: given an agent's state, a beat or the
//! time, what changes and which effects follow. No file, no clock read: the time comes in
//! as `now`, so the tests drive them on any instant they like (see `ttl_tests.rs`).
//!
//! The rules themselves (`crate::liveness`) say when an agent is up, down or expired;
//! this module applies them to the board's agents and says what to announce.

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};

use super::effect::Effect;
use crate::agent::Agent;
use crate::config::TokenBudget;
use crate::events::{self as ev, Event};
use crate::heartbeat::Beat;
use crate::liveness::{self, CtxLevel, Health};

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The token governor's state: agents whose next breach opens no save-state card (one
/// was opened since they were last below target).
#[derive(Debug, Default)]
pub struct Governor {
    disarmed: HashSet<String>,
}

impl Governor {
    /// `name` already has an open save-state card (found at start-up).
    pub fn disarm(&mut self, name: &str) {
        self.disarmed.insert(name.to_string());
    }

    /// An agent's context level went from `before` to `level`: an event when it enters
    /// warning or breach, and on breach one save-state card until the ratio has fallen
    /// below target again.
    pub fn level(
        &mut self,
        name: &str,
        before: CtxLevel,
        level: CtxLevel,
        ratio: Option<f64>,
        budget: &TokenBudget,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        if level == CtxLevel::Ok {
            if self.disarmed.remove(name) {
                tracing::info!(agent = name, "context back below target: governor re-armed");
            }
            return fx;
        }
        let rising = level > before;
        // A breach pas has not answered yet (say it began while pas was down) is answered
        // on its next beat, even though the level did not rise.
        let unanswered = level == CtxLevel::Breach && !self.disarmed.contains(name);
        if !rising && !unanswered {
            return fx;
        }
        let tokens = ev::Tokens {
            agent: name.to_string(),
            ctx_ratio: ratio,
            target: budget.target,
            hard_max: budget.hard_max,
        };
        if rising && (level == CtxLevel::Warning || before < CtxLevel::Warning) {
            tracing::info!(agent = name, ratio, "context at or over target");
            fx.push(Effect::Emit(Event::TokenWarning(tokens.clone())));
        }
        if level == CtxLevel::Breach {
            tracing::warn!(agent = name, ratio, "ALERT: context at or over hard_max");
            let save_state = self.disarmed.insert(name.to_string());
            fx.push(Effect::Breach { tokens, save_state });
        }
        fx
    }
}

/// Applies an agent's newest beat at `now`: up again if it was down, its context level
/// (and the governor's answer), and an `agent.heartbeat` event when what it reports has
/// changed.
pub fn beat(
    agent: &mut Agent,
    beat: Beat,
    now: DateTime<Utc>,
    default_interval: f64,
    default_budget: &TokenBudget,
    governor: &mut Governor,
) -> Vec<Effect> {
    let mut fx = Vec::new();
    // A beat cannot vouch for the future: a clock ahead of ours counts as now.
    let ts = beat.ts.min(now);
    let seen = agent.live.last_seen.map_or(ts, |s| s.max(ts));
    agent.live.last_seen = Some(seen);
    // Only what an agent is doing makes an event; gauges (progress, context, CPU) change
    // with nearly every beat and are read from the agent's state instead.
    let changed = agent.live.beat.as_ref().is_none_or(|old| {
        (&old.status, &old.job, &old.note) != (&beat.status, &beat.job, &beat.note)
    });
    let was_down = agent.live.down;
    let before = agent.live.ctx;
    let value = changed.then(|| serde_json::to_value(&beat).unwrap_or_default());
    agent.live.beat = Some(beat);
    let budget = agent.token_budget(default_budget).clone();
    let ratio = agent.ctx_ratio();
    let level = CtxLevel::of(ratio, &budget);
    agent.live.ctx = level;
    let interval = agent.interval_s(default_interval);
    if liveness::health(seen, interval, now, None) == Health::Up {
        agent.live.down = false;
    }
    let name = agent.name.clone();
    if was_down && !agent.live.down {
        tracing::info!(agent = %name, "up again");
        fx.push(Effect::Emit(Event::AgentUp(ev::AgentUp {
            agent: name.clone(),
            last_seen: seen,
        })));
        fx.push(Effect::Replan);
    }
    if let Some(beat) = value {
        fx.push(Effect::Emit(Event::AgentHeartbeat(ev::Heartbeat {
            agent: name.clone(),
            beat,
            ctx_ratio: ratio,
        })));
    }
    if level != before {
        fx.push(Effect::Replan);
    }
    fx.extend(governor.level(&name, before, level, ratio, &budget));
    fx
}

/// The TTL verdicts at `now` over the registered `agents`: up (its interval grew), down
/// (an alert, no new work) and expired (deregistration); and when the next verdict can
/// change. `started` is when this daemon started (expiry waits one interval after it).
pub fn sweep<'a>(
    agents: impl Iterator<Item = &'a mut Agent>,
    now: DateTime<Utc>,
    started: Option<DateTime<Utc>>,
    default_interval: f64,
) -> (Vec<Effect>, Option<DateTime<Utc>>) {
    let mut next: Option<DateTime<Utc>> = None;
    let (mut up, mut down, mut expired) = (Vec::new(), Vec::new(), Vec::new());
    for a in agents.filter(|a| a.reg.is_some()) {
        let Some(seen) = a.baseline() else { continue };
        let interval = a.interval_s(default_interval);
        match liveness::health(seen, interval, now, started) {
            Health::Up if a.live.down => {
                // Its interval grew (a new definition or registration).
                a.live.down = false;
                up.push(Effect::Emit(Event::AgentUp(ev::AgentUp {
                    agent: a.name.clone(),
                    last_seen: seen,
                })));
            }
            Health::Up => {}
            Health::Down if !a.live.down => {
                a.live.down = true;
                down.push(Effect::Emit(Event::AgentDown(went_down(a, seen, interval))));
            }
            Health::Down => {}
            Health::Expired => {
                expired.push(Effect::Expire {
                    agent: a.name.clone(),
                    last_seen: seen,
                });
                continue;
            }
        }
        let at = liveness::next_change(seen, interval, now, started);
        next = Some(next.map_or(at, |n| n.min(at)));
    }
    let mut fx = Vec::new();
    if !up.is_empty() || !down.is_empty() {
        fx.push(Effect::Replan);
    }
    fx.extend(up);
    fx.extend(down);
    fx.extend(expired);
    (fx, next)
}

/// The `agent.down` event of `a`, last seen at `seen`.
fn went_down(a: &Agent, seen: DateTime<Utc>, interval: f64) -> ev::AgentDown {
    let note = a.live.beat.as_ref().and_then(|b| b.note.clone());
    tracing::warn!(
        agent = %a.name,
        last_seen = %stamp(seen),
        note = note.as_deref().unwrap_or(""),
        "ALERT: no beat for 2 intervals"
    );
    let message = format!(
        "no beat for 2 intervals, last seen {}, last note {}",
        stamp(seen),
        note.as_deref().unwrap_or("(none)")
    );
    ev::AgentDown {
        agent: a.name.clone(),
        last_seen: seen,
        last_note: note,
        interval_s: interval,
        message,
    }
}

#[cfg(test)]
#[path = "ttl_tests.rs"]
mod tests;
