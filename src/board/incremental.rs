//! The daemon's incremental plan: the same decisions as `Board::plan`, looking only at
//! the inbox cards a change since the last plan can touch.
//!
//! A plan decides each inbox card in order of priority and age; cards interact only
//! through what assigned cards hold (slots per agent, resources), which only grows as a
//! plan goes. So a waiting card's decision can change only when
//! - the card itself changed (new, edited, moved back to the inbox);
//! - a card it depends on changed (moved, finished, archived, its outcome read): the
//!   index by dependency (`dependents`) finds it;
//! - the agents changed (registered, gone, paused, down, over budget, capabilities or
//!   slots): every inbox card is planned again. Agents change seldom, and a reason such
//!   as "no registered agent has [gpu]" must change when a gpu agent registers;
//! - it waits on what assigned cards hold (`Wait::by_load`: busy agents, resources) and
//!   that changed: a card left or joined `assigned/` since the last plan, a take-back,
//!   or this plan assigned a card before it in order.
//!
//! Every other waiting card would get the same decision and the same reason from a full
//! plan, so it is not looked at and its `pas.waiting_for` is not rewritten. Cards decided
//! to be assigned, failed or run by pas stay to be planned until their move is seen (a
//! move that failed on a full disk is planned again). The daemon's tests check every
//! incremental plan against the full one (`check`), and `tests.rs` does so over random
//! boards and changes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::ops::Bound;

use chrono::{DateTime, Utc};

use super::rules::{Decision, Held};
use super::{is_llm_card, Board, Defaults, Plan};
use crate::card::{Priority, State};

/// An inbox card's place in plan order.
type Key = (Priority, DateTime<Utc>, String);

/// What the incremental plan keeps between plans.
#[derive(Debug, Clone, Default)]
pub struct PlanIndex {
    /// Whether the index has taken in the whole board once.
    synced: bool,
    /// Every inbox card: its key, what it depends on, and whether it waits on loads.
    inbox: HashMap<String, Known>,
    /// Inbox cards to decide at the next plan.
    todo: BTreeSet<Key>,
    /// Inbox cards that waited on loads (busy agents, resources) at their last plan.
    by_load: BTreeSet<Key>,
    /// LLM job cards in the inbox: always decided (there are few; whether pas can run
    /// them depends on the gateway, not on the board).
    llm: BTreeSet<Key>,
    /// Card id → inbox cards that depend on it.
    dependents: HashMap<String, HashSet<String>>,
    /// Cards in `assigned/`, by agent (so a plan counts slots without walking them).
    on_agent: HashMap<String, BTreeSet<String>>,
    /// Each assigned card: its agent and when it times out (as of its last change).
    assigned: HashMap<String, (String, Option<DateTime<Utc>>)>,
    /// Assigned cards in order of their timeout.
    deadlines: BTreeSet<(DateTime<Utc>, String)>,
    /// Assigned cards that hold resources (few: most cards name none).
    holding: BTreeSet<String>,
    /// What assigned cards hold may have changed since the last plan.
    loads_changed: bool,
    /// A digest of what the rules read of the agents, at the last plan.
    agents: Option<u64>,
    /// The defaults at the last plan.
    defaults: Option<Defaults>,
}

#[derive(Debug, Clone)]
struct Known {
    key: Key,
    deps: Vec<String>,
}

impl PlanIndex {
    /// Takes in the cards (and shelved cards) changed since the last call.
    fn sync(&mut self, changed: Vec<String>, board: &Board) {
        let mut changed = changed;
        if !self.synced {
            self.synced = true;
            changed.extend(board.cards.keys().cloned());
            changed.extend(board.shelf.keys().map(|k| k.to_string()));
        }
        changed.sort_unstable();
        changed.dedup();
        for id in changed {
            if let Some(ds) = self.dependents.get(&id) {
                for d in ds {
                    if let Some(k) = self.inbox.get(d) {
                        self.todo.insert(k.key.clone());
                    }
                }
            }
            if let Some(old) = self.inbox.remove(&id) {
                self.todo.remove(&old.key);
                self.by_load.remove(&old.key);
                self.llm.remove(&old.key);
                for dep in old.deps {
                    if let Some(ds) = self.dependents.get_mut(&dep) {
                        ds.remove(&id);
                        if ds.is_empty() {
                            self.dependents.remove(&dep);
                        }
                    }
                }
            }
            if let Some((agent, deadline)) = self.assigned.remove(&id) {
                self.loads_changed = true;
                if let Some(ids) = self.on_agent.get_mut(&agent) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.on_agent.remove(&agent);
                    }
                }
                if let Some(d) = deadline {
                    self.deadlines.remove(&(d, id.clone()));
                }
                self.holding.remove(&id);
            }
            let Some(e) = board.cards.get(&id) else {
                continue;
            };
            match e.place.state {
                State::Inbox => {
                    let key = (e.card.spec.priority, e.created, id.clone());
                    let deps = e.card.spec.depends_on.clone();
                    for dep in &deps {
                        (self.dependents.entry(dep.clone()).or_default()).insert(id.clone());
                    }
                    if is_llm_card(&e.card.spec) {
                        self.llm.insert(key.clone());
                    }
                    self.todo.insert(key.clone());
                    self.inbox.insert(id, Known { key, deps });
                }
                State::Assigned => {
                    let agent = e.place.agent.clone().unwrap_or_default();
                    let deadline = board.deadline(e);
                    if let Some(d) = deadline {
                        self.deadlines.insert((d, id.clone()));
                    }
                    if e.card.spec.resources.is_some() {
                        self.holding.insert(id.clone());
                    }
                    (self.on_agent.entry(agent.clone()).or_default()).insert(id.clone());
                    self.assigned.insert(id, (agent, deadline));
                    self.loads_changed = true;
                }
                _ => {}
            }
        }
    }
}

impl PlanIndex {
    /// `Board::take_backs` over the assigned cards, from the index: the cards of agents
    /// no longer registered, and those whose timeout has come.
    fn take_backs(&self, board: &Board, now: DateTime<Utc>) -> Vec<(String, String)> {
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for (agent, ids) in &self.on_agent {
            if board.agents.get(agent).is_some_and(|a| a.reg.is_some()) {
                continue;
            }
            for id in ids {
                out.insert(id.clone(), format!("assignee {agent} is not registered"));
            }
        }
        for (d, id) in &self.deadlines {
            if *d > now {
                break;
            }
            if out.contains_key(id) {
                continue;
            }
            if let Some(e) = board.cards.get(id) {
                let timeout = e.card.timeout_s(board.defaults.timeout_s);
                out.insert(id.clone(), format!("timed out after {timeout}s"));
            }
        }
        out.into_iter().collect()
    }

    /// `Board::held` from the index: slots per agent, and the resources of the few
    /// assigned cards that hold any.
    fn held<'a>(&self, board: &'a Board, taken: &HashSet<&str>) -> Held<'a> {
        let mut loads: HashMap<&str, u32> = HashMap::new();
        for (agent, ids) in &self.on_agent {
            // The rules read the loads of known agents only.
            let Some((name, _)) = board.agents.get_key_value(agent) else {
                continue;
            };
            let n = ids.iter().filter(|id| !taken.contains(id.as_str())).count();
            if n > 0 {
                loads.insert(name.as_str(), n as u32);
            }
        }
        let holding = (self.holding.iter())
            .filter_map(|id| board.cards.get_key_value(id))
            .filter(|(id, _)| !taken.contains(id.as_str()));
        let (_, used) = board.held(holding, &HashSet::new());
        (loads, used)
    }

    /// The earliest timeout of an assigned card.
    fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.deadlines.first().map(|(d, _)| *d)
    }
}

/// A digest of what the rules read of the agents: who is registered, capabilities,
/// slots, and whether each is available (for ordinary and for save-state cards).
fn agents_digest(board: &Board) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for a in board.agents.values() {
        a.name.hash(&mut h);
        a.reg.is_some().hash(&mut h);
        if let Some(d) = &a.def {
            d.capabilities.hash(&mut h);
        }
        if let Some(r) = &a.reg {
            r.capabilities.hash(&mut h);
        }
        a.max_concurrent().hash(&mut h);
        a.unavailable(None).hash(&mut h);
        a.unavailable(Some(crate::agent::SAVE_STATE)).hash(&mut h);
    }
    h.finish()
}

impl Board {
    /// From now on, note every change to the cards and the shelf (the daemon's board,
    /// which plans with `plan_incremental`).
    pub fn track_changes(&mut self) {
        self.cards.track();
        self.shelf.track();
    }

    /// Brings the index up to date with the changes noted since the last call.
    fn sync_index(&mut self) {
        let mut changed = self.cards.take_changed();
        changed.extend(self.shelf.take_changed());
        let mut ix = std::mem::take(&mut self.index);
        ix.sync(changed, self);
        self.index = ix;
    }

    /// `next_deadline` from the index (no walk of the assigned cards).
    pub fn next_deadline_indexed(&mut self) -> Option<DateTime<Utc>> {
        if !self.cards.tracking() {
            return self.next_deadline();
        }
        self.sync_index();
        self.index.next_deadline()
    }

    /// `unread_dependencies` from the index by dependency (no walk of the inbox).
    pub fn unread_dependencies_indexed(&mut self) -> Vec<String> {
        if !self.cards.tracking() {
            return self.unread_dependencies();
        }
        self.sync_index();
        self.unread_among(self.index.dependents.keys())
    }

    /// The plan at `now`, deciding only the inbox cards a change since the last plan can
    /// touch (see the module's doc). Its `waiting` lists only the cards decided; every
    /// other waiting card would get the reason it was given last. On a board that does
    /// not track changes, the full plan.
    pub fn plan_incremental(&mut self, now: DateTime<Utc>) -> Plan {
        if !self.cards.tracking() {
            return self.plan(now);
        }
        self.sync_index();
        let mut ix = std::mem::take(&mut self.index);
        let digest = agents_digest(self);
        let all = ix.agents != Some(digest) || ix.defaults.as_ref() != Some(&self.defaults);
        if all {
            ix.agents = Some(digest);
            if ix.defaults.as_ref() != Some(&self.defaults) {
                // Timeouts follow the default timeout: take every assigned card in again.
                ix.defaults = Some(self.defaults.clone());
                let ids: Vec<String> = ix.assigned.keys().cloned().collect();
                ix.sync(ids, self);
            }
        }

        let mut plan = Plan {
            take_back: ix.take_backs(self, now),
            ..Plan::default()
        };
        let taken: HashSet<&str> = plan.take_back.iter().map(|(id, _)| id.as_str()).collect();
        let mut held = ix.held(self, &taken);

        let mut todo = std::mem::take(&mut ix.todo);
        todo.extend(ix.llm.iter().cloned());
        if all {
            todo.extend(ix.inbox.values().map(|k| k.key.clone()));
        }
        let mut loads_all = all || ix.loads_changed || !taken.is_empty();
        if loads_all {
            todo.extend(ix.by_load.iter().cloned());
        }
        // Whatever this plan assigns changes the loads the next plan starts from.
        ix.loads_changed = false;
        let mut next_todo = BTreeSet::new();
        while let Some(key) = todo.pop_first() {
            let Some(e) = self.cards.get(&key.2) else {
                continue;
            };
            let decision = self.decide(e, &held);
            match &decision {
                Decision::Wait(w) if w.by_load => {
                    ix.by_load.insert(key.clone());
                }
                Decision::Wait(_) => {
                    ix.by_load.remove(&key);
                }
                Decision::Assign(_) => {
                    ix.by_load.remove(&key);
                    ix.loads_changed = true;
                    // Cards after this one that waited on loads see its slot taken.
                    if !loads_all {
                        loads_all = true;
                        let after = (Bound::Excluded(&key), Bound::Unbounded);
                        todo.extend(ix.by_load.range(after).cloned());
                    }
                    next_todo.insert(key.clone());
                }
                Decision::Fail(_) | Decision::Llm => {
                    ix.by_load.remove(&key);
                    next_todo.insert(key.clone());
                }
            }
            self.apply(&key.2, decision, &mut held, &mut plan);
        }
        ix.todo = next_todo;
        self.index = ix;
        plan
    }

    /// Checks an incremental plan against the full plan of the same board (before either
    /// is carried out): the same take-backs, failures, assignments and LLM cards, in the
    /// same order; and every card the full plan keeps waiting either decided with the same
    /// reason or already holding it in `pas.waiting_for`. `Err` says what differs.
    pub fn check(&self, incremental: &Plan, now: DateTime<Utc>) -> Result<(), String> {
        let full = self.plan(now);
        let same = |what: &str, a: &Vec<(String, String)>, b: &Vec<(String, String)>| {
            if a == b {
                Ok(())
            } else {
                Err(format!("{what}: incremental {a:?}, full {b:?}"))
            }
        };
        same("take_back", &incremental.take_back, &full.take_back)?;
        same("fail", &incremental.fail, &full.fail)?;
        same("assign", &incremental.assign, &full.assign)?;
        if incremental.llm != full.llm {
            return Err(format!(
                "llm: incremental {:?}, full {:?}",
                incremental.llm, full.llm
            ));
        }
        let decided: HashMap<&str, &str> = (incremental.waiting.iter())
            .map(|(id, r)| (id.as_str(), r.as_str()))
            .collect();
        let full_ids: HashSet<&str> = full.waiting.iter().map(|(id, _)| id.as_str()).collect();
        if let Some(id) = decided.keys().find(|id| !full_ids.contains(*id)) {
            return Err(format!("{id} waits in the incremental plan only"));
        }
        for (id, reason) in &full.waiting {
            let given = match decided.get(id.as_str()) {
                Some(r) => Some(*r),
                None => (self.cards.get(id)).and_then(|e| e.card.spec.pas.waiting_for.as_deref()),
            };
            if given != Some(reason.as_str()) {
                return Err(format!(
                    "{id}: incremental reason {given:?}, full {reason:?}"
                ));
            }
        }
        Ok(())
    }
}
