//! The engine on a fake clock: liveness, take-back on a job's timeout and an agent's
//! deregistration, decided in milliseconds by moving the clock rather than by sleeping.
//! The files are real (a temporary workspace); no git, no database.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Engine;
use crate::agent::Registration;
use crate::clock::Clock;
use crate::config::Config;
use crate::events::Since;
use crate::watch::Readiness;
use crate::workspace::Workspace;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// A workspace with agent `a` registered at the clock's start (interval 60 s, the default).
fn engine(dir: &Path, clock: &Clock) -> Engine {
    let ws = Workspace::at(dir);
    crate::workspace::ensure_dirs(&ws).unwrap();
    let reg = Registration {
        name: Some("a".into()),
        epoch: 1,
        registered_at: Some(clock.now()),
        ..Default::default()
    };
    std::fs::write(ws.registration_path("a"), reg.to_yaml()).unwrap();
    let mut e = Engine::new(ws, Config::default(), None, None, 0, clock.clone());
    e.start();
    e
}

/// The (type, data) of every event since `after`.
fn events(e: &Engine, after: u64) -> Vec<(String, serde_json::Value)> {
    match e.hub.since(after) {
        Since::Events(v) => v
            .iter()
            .map(|p| {
                let wire: serde_json::Value = serde_json::from_str(&p.json).unwrap();
                (p.kind.to_string(), wire["data"].clone())
            })
            .collect(),
        Since::TooOld => panic!("the ring holds them"),
    }
}

fn kinds(e: &Engine, after: u64) -> Vec<String> {
    events(e, after).into_iter().map(|(k, _)| k).collect()
}

fn beat(e: &mut Engine, clock: &Clock) {
    let path = e.ws.heartbeats().join("a.jsonl");
    let line = format!(
        "{{\"ts\": \"{}\", \"note\": \"n\"}}\n",
        clock.now().to_rfc3339()
    );
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, line.as_bytes()).unwrap();
    e.handle_path(&path, Readiness::Ready);
    e.step();
}

#[test]
fn an_agent_is_down_after_two_silent_intervals_and_up_at_its_next_beat() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::fake(at("2026-03-01T12:00:00Z"));
    let mut e = engine(dir.path(), &clock);
    let seq = e.hub.seq();
    clock.advance(Duration::from_secs(119));
    e.step();
    assert!(!kinds(&e, seq).contains(&"agent.down".to_string()));
    clock.advance(Duration::from_secs(1));
    e.step();
    let down = events(&e, seq);
    let (_, data) = down.iter().find(|(k, _)| k == "agent.down").expect("down");
    assert_eq!(data["last_seen"], "2026-03-01T12:00:00.000Z");
    assert_eq!(data["interval_s"], 60.0);
    let seq = e.hub.seq();
    clock.advance(Duration::from_secs(5));
    beat(&mut e, &clock);
    let up = events(&e, seq);
    let (_, data) = up.iter().find(|(k, _)| k == "agent.up").expect("up");
    assert_eq!(data["last_seen"], "2026-03-01T12:02:05.000Z");
    // The check due at the old expiry finds it up, and looks next at two intervals
    // after the beat.
    let seq = e.hub.seq();
    clock.set(at("2026-03-01T12:03:00Z"));
    e.step();
    assert!(!kinds(&e, seq).iter().any(|k| k.starts_with("agent.")));
    assert_eq!(e.next_liveness_check(), Some(at("2026-03-01T12:04:05Z")));
}

#[test]
fn a_card_is_taken_back_at_its_timeout_and_a_silent_agent_is_deregistered() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::fake(at("2026-03-01T23:59:00Z"));
    let mut e = engine(dir.path(), &clock);
    let card = e.ws.state_dir(crate::card::State::Inbox).join("slow.yaml");
    std::fs::write(&card, "title: slow\ntimeout_s: 30\n").unwrap();
    e.handle_path(&card, Readiness::Ready);
    e.step();
    assert_eq!(e.board.cards["slow"].place.agent.as_deref(), Some("a"));
    let seq = e.hub.seq();
    clock.advance(Duration::from_millis(29_999));
    beat(&mut e, &clock);
    assert!(!kinds(&e, seq).contains(&"job.requeued".to_string()));
    // Past the timeout (and midnight): back to the inbox, then to `a` again.
    clock.advance(Duration::from_millis(2));
    e.step();
    let got = events(&e, seq);
    let (_, back) = got
        .iter()
        .find(|(k, _)| k == "job.requeued")
        .expect("taken back");
    assert!(
        back["reason"].as_str().unwrap().contains("timed out"),
        "{back}"
    );
    assert!(kinds(&e, seq).contains(&"job.assigned".to_string()));
    let card = &e.board.cards["slow"].card;
    assert_eq!(card.spec.pas.attempts, 1);
    // Three silent intervals after its last beat: deregistered, its card taken back.
    let seq = e.hub.seq();
    clock.advance(Duration::from_secs(180));
    e.step();
    let got = events(&e, seq);
    let (_, gone) = got
        .iter()
        .find(|(k, _)| k == "agent.deregistered")
        .expect("deregistered");
    assert_eq!(gone["cards"], serde_json::json!(["slow"]));
    assert_eq!(e.board.cards["slow"].place.agent, None);
    assert!(!e.ws.registration_path("a").exists());
}
