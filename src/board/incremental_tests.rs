//! The incremental plan against the full plan: random boards and random sequences of
//! changes (seeded), each plan carried out as the daemon would, and after every step the
//! incremental plan must be the full plan (`Board::check`).

use super::tests::t;
use super::*;

use crate::fuzzing::Rng;

const CAPS: [&str; 3] = ["code", "gpu", "web"];
const AGENTS: [&str; 4] = ["a1", "a2", "a3", "a4"];

/// A registered agent with random capabilities and one to three slots.
fn agent(r: &mut Rng, name: &str) -> Agent {
    let caps: Vec<&str> = CAPS.iter().copied().filter(|_| r.chance(50)).collect();
    super::tests::agent(name, &caps, 1 + r.below(3) as u32)
}

/// A random card's text; `ids` are cards it may depend on.
fn card_text(r: &mut Rng, ids: &[String]) -> String {
    let prio = ["critical", "high", "medium", "low"][r.below(4)];
    let mut y = format!("title: x\npriority: {prio}\n");
    if r.chance(5) {
        y.push_str("llm:\n  model: m\n  messages:\n    - {role: user, content: hi}\n");
    } else {
        if r.chance(40) {
            y.push_str(&format!("requires: [{}]\n", CAPS[r.below(3)]));
        }
        if r.chance(10) {
            y.push_str(&format!("assignee: {}\n", AGENTS[r.below(4)]));
        }
    }
    if r.chance(30) {
        let cpu = [1, 2, 3, 9][r.below(4)];
        y.push_str(&format!("resources: {{cpu: {cpu}}}\n"));
    }
    if r.chance(25) && !ids.is_empty() {
        let dep = if r.chance(20) {
            "ghost".to_string()
        } else {
            ids[r.below(ids.len())].clone()
        };
        y.push_str(&format!("depends_on: [{dep}]\n"));
    }
    y
}

fn ids_in(b: &Board, state: State) -> Vec<String> {
    let mut ids: Vec<String> = (b.cards.iter())
        .filter(|(_, e)| e.place.state == state)
        .map(|(id, _)| id.clone())
        .collect();
    ids.sort();
    ids
}

fn move_to(b: &mut Board, id: &str, place: Place, now: DateTime<Utc>) {
    if let Some(e) = b.cards.get_mut(id) {
        let meta = transition_meta(&e.card.spec.pas, &e.place, &place, "test", None, now);
        e.card = e.card.with_meta(&meta);
        e.place = place;
    }
}

/// One random change to the board, as agents, people and the daemon make them.
fn change(r: &mut Rng, b: &mut Board, n: &mut usize, now: DateTime<Utc>) {
    let all: Vec<String> = {
        let mut v: Vec<String> = b.cards.keys().cloned().collect();
        v.extend(b.shelf.keys().map(|k| k.to_string()));
        v.sort();
        v
    };
    match r.below(12) {
        0..=3 => {
            *n += 1;
            let id = format!("c{n:03}");
            let card = Card::parse(&id, &card_text(r, &all)).unwrap();
            let place = Place::of(State::Inbox);
            let entry = Entry {
                card,
                place,
                created: t(r.below(50) as i64),
            };
            b.cards.insert(id, entry);
        }
        4 | 5 => {
            // An agent finishes (or fails) a card.
            let ids = ids_in(b, State::Assigned);
            if let Some(id) = ids.get(r.below(ids.len().max(1))) {
                let to = if r.chance(80) {
                    State::Done
                } else {
                    State::Failed
                };
                move_to(b, id, Place::of(to), now);
            }
        }
        6 => {
            // A finished card is archived (its outcome known or not yet read).
            let mut ids = ids_in(b, State::Done);
            ids.extend(ids_in(b, State::Failed));
            if let Some(id) = ids.get(r.below(ids.len().max(1))).cloned() {
                let ok = b
                    .cards
                    .get(&id)
                    .is_some_and(|e| e.place.state == State::Done);
                b.cards.remove(&id);
                let outcome = if r.chance(50) { Some(ok) } else { None };
                let s = Shelved::new("2027/01/15", outcome).unwrap();
                b.shelf.insert(id.into(), s);
            }
        }
        7 => {
            // An archived card's outcome is read.
            let mut ids: Vec<String> = b.shelf.keys().map(|k| k.to_string()).collect();
            ids.sort();
            if let Some(id) = ids.get(r.below(ids.len().max(1))) {
                let ok = r.chance(70);
                if let Some(s) = b.shelf.get_mut(id.as_str()) {
                    s.outcome = Some(ok);
                }
            }
        }
        8 => {
            // An agent registers anew, goes away, pauses, goes down or comes back.
            let name = AGENTS[r.below(4)];
            match r.below(4) {
                0 => {
                    let a = agent(r, name);
                    b.agents.insert(name.into(), a);
                }
                1 => {
                    b.agents.remove(name);
                }
                2 => {
                    if let Some(reg) = b.agents.get_mut(name).and_then(|a| a.reg.as_mut()) {
                        reg.paused = !reg.paused;
                    }
                }
                _ => {
                    if let Some(a) = b.agents.get_mut(name) {
                        a.live.down = !a.live.down;
                    }
                }
            }
        }
        9 => {
            // A person edits a waiting card (its priority, its needs).
            let ids = ids_in(b, State::Inbox);
            if let Some(id) = ids.get(r.below(ids.len().max(1))).cloned() {
                let card = Card::parse(&id, &card_text(r, &all)).unwrap();
                if let Some(e) = b.cards.get_mut(&id) {
                    e.card = card;
                }
            }
        }
        10 => {
            // A person takes a card out of the inbox, or an agent gives one back.
            let mut ids = ids_in(b, State::Inbox);
            ids.extend(ids_in(b, State::Assigned));
            if let Some(id) = ids.get(r.below(ids.len().max(1))).cloned() {
                let to = if r.chance(50) {
                    State::Failed
                } else {
                    State::Inbox
                };
                move_to(b, &id, Place::of(to), now);
            }
        }
        _ => {
            // A card is removed outright.
            if let Some(id) = all.get(r.below(all.len().max(1))).cloned() {
                b.cards.remove(&id);
                b.shelf.remove(id.as_str());
            }
        }
    }
}

/// Carries a plan out as the daemon does; a few moves fail (a full disk) and the card
/// stays where it was.
fn carry_out(r: &mut Rng, b: &mut Board, plan: Plan, now: DateTime<Utc>) {
    for (id, _) in plan.take_back {
        move_to(b, &id, Place::of(State::Inbox), now);
    }
    for (id, _) in plan.fail {
        if !r.chance(10) {
            move_to(b, &id, Place::of(State::Failed), now);
        }
    }
    for (id, agent) in plan.assign {
        if !r.chance(10) {
            move_to(b, &id, Place::assigned(&agent), now);
        }
    }
    for (id, reason) in plan.waiting {
        if let Some(e) = b.cards.get_mut_unplanned(&id) {
            let mut meta = e.card.spec.pas.clone();
            meta.waiting_for = Some(reason);
            e.card = e.card.with_meta(&meta);
        }
    }
    for id in plan.llm {
        if r.chance(20) {
            move_to(b, &id, Place::of(State::Done), now);
        }
    }
}

#[test]
fn incremental_plans_equal_full_plans_over_random_changes() {
    for seed in 1..=60u64 {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut defaults = Defaults::default();
        if r.chance(50) {
            defaults.capacity.cpu = Some(4.0);
        }
        let mut b = Board::new(defaults);
        b.track_changes();
        for name in AGENTS.iter().take(r.below(4)) {
            let a = agent(&mut r, name);
            b.agents.insert(name.to_string(), a);
        }
        let mut n = 0;
        for step in 0..150 {
            let now = t(100 + step);
            for _ in 0..1 + r.below(4) {
                change(&mut r, &mut b, &mut n, now);
            }
            let plan = b.plan_incremental(now);
            if let Err(e) = b.check(&plan, now) {
                panic!("seed {seed}, step {step}: {e}");
            }
            carry_out(&mut r, &mut b, plan, now);
        }
    }
}

#[test]
fn an_unchanged_waiting_card_is_not_decided_again() {
    let mut b = Board::new(Defaults::default());
    b.track_changes();
    for i in 0..100 {
        let id = format!("w{i:03}");
        let card = Card::parse(&id, "title: x\nrequires: [gpu]\n").unwrap();
        let place = Place::of(State::Inbox);
        b.cards.insert(
            id,
            Entry {
                card,
                place,
                created: t(i),
            },
        );
    }
    let first = b.plan_incremental(t(200));
    assert_eq!(first.waiting.len(), 100);
    for (id, reason) in first.waiting {
        assert_eq!(reason, "no agent is registered");
        b.cards
            .get_mut_unplanned(&id)
            .unwrap()
            .card
            .spec
            .pas
            .waiting_for = Some(reason);
    }
    let card = Card::parse("new", "title: x\n").unwrap();
    let place = Place::of(State::Inbox);
    b.cards.insert(
        "new".into(),
        Entry {
            card,
            place,
            created: t(1000),
        },
    );
    let second = b.plan_incremental(t(201));
    assert_eq!(
        second.waiting,
        vec![("new".into(), "no agent is registered".into())]
    );
    b.check(&second, t(201)).unwrap();

    // A gpu agent registers: every card that waited for one is decided again.
    let gpu = super::tests::agent("a1", &["gpu"], 1);
    b.agents.insert("a1".into(), gpu);
    let third = b.plan_incremental(t(202));
    assert_eq!(third.assign, vec![("w000".into(), "a1".into())]);
    assert_eq!(third.waiting.len(), 100);
    b.check(&third, t(202)).unwrap();
}
