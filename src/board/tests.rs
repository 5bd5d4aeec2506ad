//! Tests of the assignment rules.
use super::*;
use crate::agent::{AgentDef, Registration};
use chrono::Duration;

pub(super) fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

pub(super) fn agent(name: &str, caps: &[&str], max: u32) -> Agent {
    Agent {
        name: name.into(),
        def: Some(AgentDef {
            name: name.into(),
            description: None,
            tools: None,
            model: None,
            parent: None,
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            max_concurrent: Some(max),
            ctx_limit: None,
            token_budget: None,
            heartbeat_interval_s: None,
            run: None,
        }),
        reg: Some(Registration {
            epoch: 1,
            ..Default::default()
        }),
        live: Default::default(),
    }
}

fn board(agents: Vec<Agent>) -> Board {
    let mut b = Board::new(Defaults::default());
    for a in agents {
        b.agents.insert(a.name.clone(), a);
    }
    b
}

fn add(b: &mut Board, id: &str, yaml: &str, place: Place, created: i64) {
    let card = Card::parse(id, yaml).unwrap();
    b.cards.insert(
        id.into(),
        Entry {
            card,
            place,
            created: t(created),
        },
    );
}

fn inbox(b: &mut Board, id: &str, yaml: &str, created: i64) {
    add(b, id, yaml, Place::of(State::Inbox), created);
}

#[test]
fn capabilities_decide() {
    let mut b = board(vec![
        agent("cpu-box", &["code"], 1),
        agent("gpu-box", &["gpu"], 1),
    ]);
    inbox(&mut b, "a", "title: a\nrequires: [gpu]\n", 0);
    inbox(&mut b, "b", "title: b\nrequires: [tpu]\n", 0);
    let p = b.plan(t(1));
    assert_eq!(p.assign, vec![("a".into(), "gpu-box".into())]);
    assert_eq!(
        p.waiting,
        vec![("b".into(), "no registered agent has [tpu]".into())]
    );
}

#[test]
fn priority_then_age() {
    let mut b = board(vec![agent("w", &[], 1)]);
    inbox(&mut b, "old-low", "title: x\npriority: low\n", 0);
    inbox(&mut b, "new-high", "title: x\npriority: high\n", 5);
    inbox(&mut b, "old-high", "title: x\npriority: high\n", 1);
    let p = b.plan(t(10));
    assert_eq!(p.assign, vec![("old-high".into(), "w".into())]);
    assert_eq!(p.waiting.len(), 2);
    assert!(p
        .waiting
        .iter()
        .all(|(_, r)| r == "all registered agents are busy"));
}

#[test]
fn pinned_assignee() {
    let mut b = board(vec![agent("a1", &[], 5), agent("a2", &[], 5)]);
    inbox(&mut b, "p", "title: x\nassignee: a2\n", 0);
    inbox(&mut b, "q", "title: x\nassignee: ghost\n", 0);
    let p = b.plan(t(1));
    assert_eq!(p.assign, vec![("p".into(), "a2".into())]);
    assert_eq!(
        p.waiting,
        vec![("q".into(), "pinned to ghost, who is not registered".into())]
    );
}

#[test]
fn depends_on_holds_until_done() {
    let mut b = board(vec![agent("w", &[], 5)]);
    inbox(&mut b, "child", "title: x\ndepends_on: [dep, missing]\n", 0);
    add(&mut b, "dep", "title: d\n", Place::assigned("w"), 0);
    let p = b.plan(t(1));
    assert_eq!(
        p.waiting,
        vec![(
            "child".into(),
            "waiting for dep, missing (unknown job)".into()
        )]
    );
    b.cards.get_mut("dep").unwrap().place = Place::of(State::Done);
    add(&mut b, "missing", "title: m\n", Place::of(State::Done), 0);
    assert_eq!(b.plan(t(2)).assign, vec![("child".into(), "w".into())]);
}

#[test]
fn least_loaded_and_max_concurrent() {
    let mut b = board(vec![agent("a", &[], 2), agent("b", &[], 2)]);
    add(&mut b, "x", "title: x\n", Place::assigned("a"), 0);
    for (i, id) in ["1", "2", "3", "4"].iter().enumerate() {
        inbox(&mut b, id, "title: x\n", i as i64);
    }
    let p = b.plan(t(10));
    // b has 0, a has 1: b gets the first; then both at 1 -> a (by name); then b; then full.
    assert_eq!(
        p.assign,
        vec![
            ("1".into(), "b".into()),
            ("2".into(), "a".into()),
            ("3".into(), "b".into())
        ]
    );
    assert_eq!(
        p.waiting,
        vec![("4".into(), "all registered agents are busy".into())]
    );
}

#[test]
fn paused_agents_get_nothing() {
    let mut a = agent("a", &["x"], 1);
    a.reg.as_mut().unwrap().paused = true;
    let mut b = board(vec![a]);
    inbox(&mut b, "c", "title: x\nrequires: [x]\n", 0);
    let p = b.plan(t(1));
    assert_eq!(
        p.waiting,
        vec![("c".into(), "every agent with [x] is paused (a)".into())]
    );
}

#[test]
fn timeouts_and_unregistered_assignees_are_taken_back() {
    let mut b = board(vec![agent("w", &[], 3)]);
    let assigned_at = "pas: {state: assigned, assigned_to: w, assigned_at: \"2027-01-15T08:00:00Z\", attempts: 0, history: []}\n";
    add(
        &mut b,
        "slow",
        &format!("title: x\ntimeout_s: 10\n{assigned_at}"),
        Place::assigned("w"),
        0,
    );
    add(&mut b, "orphan", "title: x\n", Place::assigned("gone"), 0);
    let start = DateTime::parse_from_rfc3339("2027-01-15T08:00:00Z")
        .unwrap()
        .to_utc();
    let p = b.plan(start + Duration::seconds(9));
    assert_eq!(
        p.take_back,
        vec![("orphan".into(), "assignee gone is not registered".into())]
    );
    let p = b.plan(start + Duration::seconds(10));
    assert_eq!(p.take_back.len(), 2);
    assert_eq!(b.next_deadline(), Some(start + Duration::seconds(10)));
}

#[test]
fn take_back_fails_after_max_attempts() {
    let c = Card::parse("c", "title: x\nmax_attempts: 2\npas: {attempts: 0}\n").unwrap();
    assert_eq!(take_back_target(&c, 3), (Place::of(State::Inbox), 1));
    let c = Card::parse("c", "title: x\nmax_attempts: 2\npas: {attempts: 1}\n").unwrap();
    assert_eq!(take_back_target(&c, 3), (Place::of(State::Failed), 2));
}

#[test]
fn transition_meta_records_history() {
    let m = transition_meta(
        &PasMeta::default(),
        &Place::of(State::Inbox),
        &Place::assigned("w"),
        "pas",
        None,
        t(0),
    );
    assert_eq!(m.state, Some(State::Assigned));
    assert_eq!(m.assigned_to.as_deref(), Some("w"));
    assert_eq!(m.history[0].to, "assigned/w");
    let back = transition_meta(
        &m,
        &Place::assigned("w"),
        &Place::of(State::Inbox),
        "pas",
        Some("timeout".into()),
        t(5),
    );
    assert_eq!(back.assigned_to, None);
    assert_eq!(back.history.len(), 2);
}
