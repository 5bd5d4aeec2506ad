//! Liveness and the governor through `Engine::handle`: inputs and a fake clock in,
//! effects out. No file is read or written (the workspace does not exist).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::super::effect::{Effect, Input};
use super::super::Engine;
use super::*;
use crate::agent::Registration;
use crate::clock::Clock;
use crate::config::Config;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// An engine over a workspace that is never touched, with agent `a` registered at the
/// clock's start with a 10 s interval and a 1,000-token context.
fn engine(clock: &Clock) -> Engine {
    let ws = crate::workspace::Workspace::at("/nonexistent/pas-ttl-tests");
    let mut e = Engine::new(ws, Config::default(), None, None, 0, clock.clone());
    let reg = Registration {
        epoch: 1,
        registered_at: Some(clock.now()),
        heartbeat_interval_s: Some(10.0),
        ..Default::default()
    };
    e.board.agents.insert(
        "a".into(),
        Agent {
            name: "a".into(),
            reg: Some(reg),
            ..Default::default()
        },
    );
    e.live.started = Some(clock.now());
    e
}

fn beat(clock: &Clock, ctx_used: Option<u64>, note: &str) -> Input {
    let line = serde_json::json!({
        "ts": clock.now(), "note": note, "ctx_used": ctx_used, "ctx_limit": 1000,
    });
    Input::Beat {
        agent: "a".into(),
        beat: Beat::parse(&line.to_string()).unwrap(),
    }
}

fn kinds(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .map(|f| match f {
            Effect::Emit(e) => e.kind().to_string(),
            Effect::Replan => "replan".into(),
            Effect::Breach { save_state, .. } => format!("breach(save_state={save_state})"),
            Effect::Expire { agent, .. } => format!("expire({agent})"),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn silence_gives_down_then_expiry_and_a_beat_brings_it_back() {
    let clock = Clock::fake(at("2026-05-01T08:00:00Z"));
    let mut e = engine(&clock);
    assert!(e.handle(Input::Tick, clock.now()).is_empty());
    assert_eq!(e.next_liveness_check(), Some(at("2026-05-01T08:00:20Z")));
    clock.advance(Duration::from_millis(19_999));
    assert!(e.handle(Input::Tick, clock.now()).is_empty(), "not yet due");
    clock.advance(Duration::from_millis(1));
    let fx = e.handle(Input::Tick, clock.now());
    assert_eq!(kinds(&fx), ["replan", "agent.down"]);
    let Effect::Emit(Event::AgentDown(down)) = &fx[1] else {
        unreachable!()
    };
    assert_eq!(down.last_seen, at("2026-05-01T08:00:00Z"));
    assert!(e.board.agents["a"].live.down);
    // Down is said once; the next verdict is expiry at three intervals.
    assert_eq!(e.next_liveness_check(), Some(at("2026-05-01T08:00:30Z")));
    clock.advance(Duration::from_secs(5));
    let fx = e.handle(beat(&clock, None, "back"), clock.now());
    assert_eq!(kinds(&fx), ["agent.up", "replan", "agent.heartbeat"]);
    assert!(!e.board.agents["a"].live.down);
    // Silent again for three intervals (past the start's grace): expired.
    clock.advance(Duration::from_secs(30));
    let fx = e.handle(Input::Tick, clock.now());
    assert_eq!(kinds(&fx), ["expire(a)"]);
    assert_eq!(
        fx[0],
        Effect::Expire {
            agent: "a".into(),
            last_seen: at("2026-05-01T08:00:25Z")
        }
    );
}

#[test]
fn a_beat_from_the_future_counts_as_now() {
    let clock = Clock::fake(at("2026-05-01T08:00:00Z"));
    let mut e = engine(&clock);
    let ahead = Clock::fake(at("2026-05-01T09:00:00Z"));
    e.handle(beat(&ahead, None, ""), clock.now());
    assert_eq!(
        e.board.agents["a"].live.last_seen,
        Some(at("2026-05-01T08:00:00Z"))
    );
}

#[test]
fn the_governor_warns_breaches_once_and_rearms_below_target() {
    let clock = Clock::fake(at("2026-05-01T08:00:00Z"));
    let mut e = engine(&clock);
    // Defaults: target 0.50, hard_max 0.75.
    let fx = e.handle(beat(&clock, Some(600), "n"), clock.now());
    assert_eq!(kinds(&fx), ["agent.heartbeat", "replan", "token.warning"]);
    let fx = e.handle(beat(&clock, Some(800), "n"), clock.now());
    assert_eq!(kinds(&fx), ["replan", "breach(save_state=true)"]);
    let Effect::Breach { tokens, .. } = &fx[1] else {
        unreachable!()
    };
    assert_eq!((tokens.ctx_ratio, tokens.hard_max), (Some(0.8), 0.75));
    // Still over: nothing more; no second save-state card while the first is answered.
    assert!(e
        .handle(beat(&clock, Some(900), "n"), clock.now())
        .is_empty());
    let fx = e.handle(beat(&clock, Some(600), "n"), clock.now());
    assert_eq!(kinds(&fx), ["replan"]);
    let fx = e.handle(beat(&clock, Some(790), "n"), clock.now());
    assert_eq!(kinds(&fx), ["replan", "breach(save_state=false)"]);
    // Below target re-arms: the next breach opens a card again.
    e.handle(beat(&clock, Some(100), "n"), clock.now());
    let fx = e.handle(beat(&clock, Some(800), "n"), clock.now());
    assert_eq!(
        kinds(&fx),
        ["replan", "token.warning", "breach(save_state=true)"]
    );
}

/// The plan through `handle`: a card past its timeout is taken back, an inbox card goes
/// to the free agent, and one nobody can take says why, as effects, with no file.
#[test]
fn a_plan_is_effects_take_backs_first() {
    let clock = Clock::fake(at("2027-01-15T08:00:00Z"));
    let mut e = engine(&clock);
    let add = |e: &mut Engine, id: &str, yaml: &str, place: crate::board::Place| {
        let card = crate::card::Card::parse(id, yaml).unwrap();
        let created = clock.now();
        let entry = crate::board::Entry {
            card,
            place,
            created,
        };
        e.board.cards.insert(id.into(), entry);
    };
    let held = "pas: {state: assigned, assigned_to: a, assigned_at: \"2027-01-15T08:00:00Z\"}\n";
    let slow = format!("title: slow\ntimeout_s: 10\n{held}");
    add(&mut e, "slow", &slow, crate::board::Place::assigned("a"));
    let inbox = crate::board::Place::of(crate::card::State::Inbox);
    add(&mut e, "gpu", "title: g\nrequires: [gpu]\n", inbox.clone());
    add(&mut e, "next", "title: n\n", inbox);
    // The agent's one slot is taken by `slow` until its timeout.
    e.board
        .agents
        .get_mut("a")
        .unwrap()
        .reg
        .as_mut()
        .unwrap()
        .max_concurrent = Some(1);
    let fx = e.handle(Input::Plan, clock.now());
    assert!(fx.iter().all(|f| !f.frees_room()), "{fx:?}");
    assert!(fx.contains(&Effect::Waiting {
        id: "gpu".into(),
        reason: "no registered agent has [gpu]".into()
    }));
    // Waiting reasons go into the cards in memory (written to files later, by the step).
    let waiting = fx
        .into_iter()
        .filter(|f| matches!(f, Effect::Waiting { .. }));
    e.exec(waiting.collect(), clock.now());
    clock.advance(Duration::from_secs(10));
    let fx = e.handle(Input::Plan, clock.now());
    let Effect::TakeBack { id, reason } = &fx[0] else {
        panic!("{fx:?}")
    };
    assert_eq!(id, "slow");
    assert!(reason.contains("timed out"), "{reason}");
}
