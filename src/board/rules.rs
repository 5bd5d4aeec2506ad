//! The rules of one plan (pure): take-backs, and for each inbox card in order of
//! priority and age, an agent or the reason it waits. `Board::plan` applies them to every
//! card; the daemon's incremental plan (`incremental.rs`) to the cards a change can touch,
//! with the same per-card rule (`Board::decide`), so the two cannot drift apart.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{is_llm_card, Board, Entry, Plan};
use crate::agent::Agent;
use crate::card::{Priority, Resources, State};

/// Why an inbox card waits, and what could end the wait.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Wait {
    pub reason: String,
    /// Held by what assigned cards take (slots, resources): may change whenever a card is
    /// assigned or leaves an agent. Otherwise held by its dependencies or by the agents
    /// (registered, capable, available), which change apart from loads.
    pub by_load: bool,
}

impl Wait {
    fn fixed(reason: String) -> Wait {
        Wait {
            reason,
            by_load: false,
        }
    }

    fn load(reason: String) -> Wait {
        Wait {
            reason,
            by_load: true,
        }
    }
}

/// What one plan does with one inbox card.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision<'a> {
    /// It can never run here: failed at once, with this reason.
    Fail(String),
    /// An LLM job card pas runs itself.
    Llm,
    Assign(&'a str),
    Wait(Wait),
}

/// Slots taken per agent and resources held, as a plan goes.
pub(crate) type Held<'a> = (HashMap<&'a str, u32>, Resources);

impl Board {
    /// Decides assignments, waiting reasons and take-backs at time `now`, looking at every
    /// card (`pas status`, and the oracle of the daemon's incremental plan).
    pub fn plan(&self, now: DateTime<Utc>) -> Plan {
        let mut plan = Plan {
            take_back: self.take_backs(self.cards.iter(), now),
            ..Plan::default()
        };
        // Each card's entry travels with its sort key: no second lookup per card.
        let mut inbox: Vec<(&Priority, &DateTime<Utc>, &String, &Entry)> = self
            .cards
            .iter()
            .filter(|(_, e)| e.place.state == State::Inbox)
            .map(|(id, e)| (&e.card.spec.priority, &e.created, id, e))
            .collect();
        inbox.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));

        let taken: HashSet<&str> = plan.take_back.iter().map(|(id, _)| id.as_str()).collect();
        let mut held = self.held(self.cards.iter(), &taken);
        for (_, _, id, e) in inbox {
            let decision = self.decide(e, &held);
            self.apply(id, decision, &mut held, &mut plan);
        }
        plan
    }

    /// Assigned cards (among `cards`) to take back at `now`, with why, sorted by id.
    pub(crate) fn take_backs<'a>(
        &self,
        cards: impl Iterator<Item = (&'a String, &'a Entry)>,
        now: DateTime<Utc>,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (id, e) in cards {
            if e.place.state != State::Assigned {
                continue;
            }
            let agent = e.place.agent.as_deref().unwrap_or_default();
            let registered = self.agents.get(agent).is_some_and(|a| a.reg.is_some());
            if !registered {
                out.push((id.clone(), format!("assignee {agent} is not registered")));
            } else if self.deadline(e).is_some_and(|d| d <= now) {
                out.push((
                    id.clone(),
                    format!(
                        "timed out after {}s",
                        e.card.timeout_s(self.defaults.timeout_s)
                    ),
                ));
            }
        }
        out.sort();
        out
    }

    /// Slots and resources held by the assigned cards among `cards`, but those `taken`
    /// back.
    pub(crate) fn held<'a>(
        &self,
        cards: impl Iterator<Item = (&'a String, &'a Entry)>,
        taken: &HashSet<&str>,
    ) -> Held<'a> {
        let mut loads: HashMap<&str, u32> = HashMap::new();
        let mut used = Resources::default();
        for (id, e) in cards {
            if e.place.state != State::Assigned || taken.contains(id.as_str()) {
                continue;
            }
            if let Some(a) = &e.place.agent {
                *loads.entry(a.as_str()).or_default() += 1;
            }
            if let Some(r) = &e.card.spec.resources {
                crate::resources::reserve(&mut used, r);
            }
        }
        (loads, used)
    }

    /// The rule for one inbox card, given what earlier cards of this plan took.
    pub(crate) fn decide<'a>(&'a self, e: &Entry, held: &Held) -> Decision<'a> {
        let cap = &self.defaults.capacity;
        let need = e.card.spec.resources.clone().unwrap_or_default();
        if let Some(reason) = crate::resources::never_fits(&need, cap) {
            return Decision::Fail(reason);
        }
        if is_llm_card(&e.card.spec) {
            return match self.pending_dependencies(&e.card.spec) {
                Some(reason) => Decision::Wait(Wait::fixed(reason)),
                None => Decision::Llm,
            };
        }
        match self.place_card(e, &held.0) {
            Ok(agent) => match crate::resources::wait_reason(&need, cap, &held.1) {
                None => Decision::Assign(agent),
                Some(reason) => Decision::Wait(Wait::load(reason)),
            },
            Err(wait) => Decision::Wait(wait),
        }
    }

    /// Puts one card's decision into `plan`; an assignment takes its slot and resources.
    pub(crate) fn apply<'a>(
        &'a self,
        id: &str,
        decision: Decision<'a>,
        held: &mut Held<'a>,
        plan: &mut Plan,
    ) {
        match decision {
            Decision::Fail(reason) => plan.fail.push((id.to_string(), reason)),
            Decision::Llm => plan.llm.push(id.to_string()),
            Decision::Wait(w) => plan.waiting.push((id.to_string(), w.reason)),
            Decision::Assign(agent) => {
                if let Some(r) = self
                    .cards
                    .get(id)
                    .and_then(|e| e.card.spec.resources.as_ref())
                {
                    crate::resources::reserve(&mut held.1, r);
                }
                *held.0.entry(agent).or_default() += 1;
                plan.assign.push((id.to_string(), agent.to_string()));
            }
        }
    }

    /// Why a card must wait for its dependencies, if it must.
    fn pending_dependencies(&self, spec: &crate::card::Spec) -> Option<String> {
        let pending: Vec<&str> = spec
            .depends_on
            .iter()
            .filter(|d| !self.succeeded(d))
            .map(String::as_str)
            .collect();
        if pending.is_empty() {
            return None;
        }
        let described: Vec<String> = pending
            .iter()
            .map(
                |d| match (self.cards.get(*d), self.shelf.contains_key(*d)) {
                    (Some(x), _) if x.place.state == State::Failed => format!("{d} (failed)"),
                    (Some(x), _) if x.place.state == State::Archived => {
                        format!("{d} (failed, archived)")
                    }
                    (Some(_), _) => d.to_string(),
                    (None, true) => format!("{d} (failed, archived)"),
                    (None, false) => format!("{d} (unknown job)"),
                },
            )
            .collect();
        Some(format!("waiting for {}", described.join(", ")))
    }

    /// The agent an inbox card should go to, or why it must wait.
    fn place_card<'a>(&'a self, e: &Entry, loads: &HashMap<&str, u32>) -> Result<&'a str, Wait> {
        let spec = &e.card.spec;
        if let Some(reason) = self.pending_dependencies(spec) {
            return Err(Wait::fixed(reason));
        }
        let load = |name: &str| loads.get(name).copied().unwrap_or(0);
        let missing = |a: &Agent| -> Vec<&str> {
            spec.requires
                .iter()
                .filter(|c| !a.has_capability(c))
                .map(String::as_str)
                .collect()
        };
        let caps = format!("[{}]", spec.requires.join(", "));

        if let Some(name) = &spec.assignee {
            let Some(a) = self.agents.get(name).filter(|a| a.reg.is_some()) else {
                return Err(Wait::fixed(format!(
                    "pinned to {name}, who is not registered"
                )));
            };
            let lacks = missing(a);
            if !lacks.is_empty() {
                return Err(Wait::fixed(format!(
                    "pinned to {name}, who lacks [{}]",
                    lacks.join(", ")
                )));
            }
            if let Some(why) = a.unavailable(spec.kind.as_deref()) {
                return Err(Wait::fixed(format!("pinned to {name}, who is {why}")));
            }
            // A save-state card is how a full agent gets room again: no slot needed.
            let slot_free = load(name) < a.max_concurrent()
                || spec.kind.as_deref() == Some(crate::agent::SAVE_STATE);
            if !slot_free {
                return Err(Wait::load(format!("pinned to {name}, who is busy")));
            }
            return Ok(a.name.as_str());
        }

        let registered: Vec<&Agent> = self.agents.values().filter(|a| a.reg.is_some()).collect();
        if registered.is_empty() {
            return Err(Wait::fixed("no agent is registered".into()));
        }
        let capable: Vec<&Agent> = registered
            .iter()
            .copied()
            .filter(|a| missing(a).is_empty())
            .collect();
        if capable.is_empty() {
            let nobody: Vec<&str> = spec
                .requires
                .iter()
                .filter(|c| !registered.iter().any(|a| a.has_capability(c)))
                .map(String::as_str)
                .collect();
            return Err(Wait::fixed(if nobody.is_empty() {
                format!("no registered agent has all of {caps}")
            } else {
                format!("no registered agent has [{}]", nobody.join(", "))
            }));
        }
        let kind = spec.kind.as_deref();
        let active: Vec<&Agent> = capable
            .iter()
            .copied()
            .filter(|a| a.unavailable(kind).is_none())
            .collect();
        if active.is_empty() {
            let who = if spec.requires.is_empty() {
                "every registered agent".to_string()
            } else {
                format!("every agent with {caps}")
            };
            return Err(Wait::fixed(format!(
                "{who} is {}",
                unavailable_summary(&capable, kind)
            )));
        }
        active
            .iter()
            .filter(|a| load(&a.name) < a.max_concurrent())
            .min_by(|a, b| {
                let (la, lb) = (load(&a.name), load(&b.name));
                // Least loaded first; between equals, the one with more room, then by name.
                la.cmp(&lb)
                    .then(
                        (u64::from(la) * u64::from(b.max_concurrent()))
                            .cmp(&(u64::from(lb) * u64::from(a.max_concurrent()))),
                    )
                    .then(a.name.cmp(&b.name))
            })
            .map(|a| a.name.as_str())
            // No counts in the reason: it is written into the card only when it changes,
            // and a count would change for every waiting card whenever an agent comes or goes.
            .ok_or_else(|| {
                Wait::load(if spec.requires.is_empty() {
                    "all registered agents are busy".to_string()
                } else {
                    format!("all agents with {caps} are busy")
                })
            })
    }
}

/// "paused (a, b)" when all share one reason, else "paused or down (a: paused, b: down)".
fn unavailable_summary(agents: &[&Agent], kind: Option<&str>) -> String {
    let why: Vec<(&str, &str)> = agents
        .iter()
        .map(|a| (a.name.as_str(), a.unavailable(kind).unwrap_or("busy")))
        .collect();
    let mut reasons: Vec<&str> = why.iter().map(|(_, w)| *w).collect();
    reasons.sort();
    reasons.dedup();
    if let [one] = reasons[..] {
        let names: Vec<&str> = why.iter().map(|(n, _)| *n).collect();
        return format!("{one} ({})", names.join(", "));
    }
    let each: Vec<String> = why.iter().map(|(n, w)| format!("{n}: {w}")).collect();
    format!("{} ({})", reasons.join(" or "), each.join(", "))
}
