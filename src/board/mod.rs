//! The board: every card and agent pas knows, and the rules of assignment (pure).
//!
//! `Board::plan` is a plain function of the board and the time: it says which inbox card
//! goes to which agent, why the others wait, and which assigned cards have timed out. The
//! daemon carries the plan out with file moves; `pas status` runs the same plan on a board
//! read from the files, so it can say why a card waits with no daemon running.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::agent::Agent;
use crate::card::{Card, HistoryEntry, PasMeta, Priority, Resources, State};

/// Where a card is: its state folder and, for `assigned/`, the agent; for `archive/`, the
/// day folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Place {
    pub state: State,
    pub agent: Option<String>,
    /// `YYYY/MM/DD` under `work/archive/` (archived cards only).
    pub day: Option<String>,
}

impl Place {
    /// A place with no agent.
    pub fn of(state: State) -> Place {
        Place {
            state,
            agent: None,
            day: None,
        }
    }

    /// `assigned/<agent>`.
    pub fn assigned(agent: &str) -> Place {
        Place {
            state: State::Assigned,
            agent: Some(agent.to_string()),
            day: None,
        }
    }

    /// `archive/YYYY/MM/DD`, the day folder of a card that finished at `finished`.
    pub fn archived(finished: DateTime<Utc>) -> Place {
        Place::archived_in(finished.format("%Y/%m/%d").to_string())
    }

    /// `archive/<day>` for a day folder already written `YYYY/MM/DD`.
    pub fn archived_in(day: String) -> Place {
        Place {
            state: State::Archived,
            agent: None,
            day: Some(day),
        }
    }

    /// The folder as written in history and commit messages: `inbox`, `assigned/coder-1`,
    /// `archive/2026/12/07`. The archive's day is in it so a card's history (and the
    /// database's transitions) say where the card went without walking the archive.
    pub fn label(&self) -> String {
        match (&self.agent, &self.day) {
            (Some(a), _) => format!("{}/{}", self.state.dir(), a),
            (None, Some(d)) => format!("{}/{}", self.state.dir(), d),
            (None, None) => self.state.dir().to_string(),
        }
    }

    /// The place a history label names (`archive/2026/12/07`, `assigned/a`, `done`).
    pub fn from_label(label: &str) -> Option<Place> {
        let (dir, rest) = label.split_once('/').unwrap_or((label, ""));
        let state = State::ALL.into_iter().find(|s| s.dir() == dir)?;
        Some(match (state, rest) {
            (State::Assigned, a) if !a.is_empty() => Place::assigned(a),
            (State::Archived, d) if crate::workspace::is_day(d) => Place::archived_in(d.into()),
            (State::Inbox | State::Review | State::Done | State::Failed, "") => Place::of(state),
            _ => return None,
        })
    }
}

/// An archived card, known by id (the shelf's key), day folder and, once read, how it
/// finished: a year of finished cards is a hundred thousand of them, and nothing is
/// decided on their text. Whoever needs a card's text reads its one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shelved {
    /// The day folder as `YYYYMMDD`: four bytes rather than a string per card.
    day: u32,
    /// Whether it finished in `done/` (`Some(true)`) or `failed/`; `None` until read.
    pub outcome: Option<bool>,
}

impl Shelved {
    /// A card in the day folder `YYYY/MM/DD`, or `None` when `day` is not one.
    pub fn new(day: &str, outcome: Option<bool>) -> Option<Shelved> {
        if !crate::workspace::is_day(day) {
            return None;
        }
        let day = day.replace('/', "").parse().ok()?;
        Some(Shelved { day, outcome })
    }

    /// The day folder, `YYYY/MM/DD`.
    pub fn day(&self) -> String {
        let d = self.day;
        format!("{:04}/{:02}/{:02}", d / 10_000, d / 100 % 100, d % 100)
    }

    /// Where the card is.
    pub fn place(&self) -> Place {
        Place::archived_in(self.day())
    }
}

/// A card on the board.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub card: Card,
    pub place: Place,
    /// When the card entered the board; orders cards of equal priority.
    pub created: DateTime<Utc>,
}

impl Entry {
    /// Whether the card finished well: it is in `done/`, or it was archived from `done/`
    /// (its last history entry says where it came from). An archived card whose history is
    /// not at hand (a reading command that read only its folder) counts as done: a failed
    /// card is archived too, but the daemon, which decides, always has the history.
    pub fn succeeded(&self) -> bool {
        match self.place.state {
            State::Done => true,
            State::Archived => self
                .card
                .spec
                .pas
                .history
                .last()
                .is_none_or(|h| h.from == "done"),
            _ => false,
        }
    }

    /// When the card finished: its last move (into `done/` or `failed/`), else `None`.
    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        let h = self.card.spec.pas.history.last()?;
        (h.to == "done" || h.to == "failed").then_some(h.at)
    }
}

/// Defaults from `pas.yaml` the rules need.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub timeout_s: f64,
    pub max_attempts: u32,
    /// Machine capacity from `pas.yaml`; unset resources are not managed.
    pub capacity: crate::config::Capacity,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            timeout_s: 3600.0,
            max_attempts: 3,
            capacity: crate::config::Capacity::default(),
        }
    }
}

impl From<&crate::config::Config> for Defaults {
    fn from(cfg: &crate::config::Config) -> Defaults {
        Defaults {
            timeout_s: cfg.default_timeout_s,
            max_attempts: cfg.max_attempts,
            capacity: cfg.capacity.clone(),
        }
    }
}

/// All cards and agents.
#[derive(Debug, Clone, Default)]
pub struct Board {
    /// Every card but the archived ones, with its text.
    pub cards: HashMap<String, Entry>,
    /// The archived cards, without their text (see `Shelved`).
    pub shelf: HashMap<Box<str>, Shelved>,
    pub agents: BTreeMap<String, Agent>,
    pub defaults: Defaults,
}

/// What the rules decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// (card id, agent) in the order they should be carried out.
    pub assign: Vec<(String, String)>,
    /// (card id, reason) for inbox cards that stay.
    pub waiting: Vec<(String, String)>,
    /// (card id, reason) for assigned cards to take back.
    pub take_back: Vec<(String, String)>,
    /// (card id, reason) for inbox cards that can never run here: failed at once.
    pub fail: Vec<(String, String)>,
    /// LLM job cards ready for pas itself to run (no agent needed).
    pub llm: Vec<String>,
}

/// Whether pas runs this card itself: it has an `llm` section and asks for no agent.
pub fn is_llm_card(spec: &crate::card::Spec) -> bool {
    spec.llm.is_some() && spec.requires.is_empty() && spec.assignee.is_none()
}

impl Board {
    /// An empty board with these defaults.
    pub fn new(defaults: Defaults) -> Board {
        Board {
            defaults,
            ..Board::default()
        }
    }

    /// Resources held by assigned cards (but those in `leaving`, about to be taken back).
    pub fn resources_used(&self, leaving: &HashSet<&str>) -> Resources {
        let mut used = Resources::default();
        for (id, e) in &self.cards {
            if e.place.state == State::Assigned && !leaving.contains(id.as_str()) {
                if let Some(r) = &e.card.spec.resources {
                    crate::resources::reserve(&mut used, r);
                }
            }
        }
        used
    }

    /// Number of cards assigned to each agent.
    pub fn loads(&self) -> HashMap<&str, u32> {
        let mut loads: HashMap<&str, u32> = HashMap::new();
        for e in self.cards.values() {
            if let Some(a) = &e.place.agent {
                *loads.entry(a.as_str()).or_default() += 1;
            }
        }
        loads
    }

    /// Count of cards per state.
    pub fn counts(&self) -> BTreeMap<State, usize> {
        let mut counts: BTreeMap<State, usize> = State::ALL.iter().map(|s| (*s, 0)).collect();
        for e in self.cards.values() {
            *counts.entry(e.place.state).or_default() += 1;
        }
        *counts.entry(State::Archived).or_default() += self.shelf.len();
        counts
    }

    /// When the assigned card `e` times out.
    pub fn deadline(&self, e: &Entry) -> Option<DateTime<Utc>> {
        if e.place.state != State::Assigned {
            return None;
        }
        let since = e.card.spec.pas.assigned_at?;
        Some(crate::card::after(
            since,
            e.card.timeout_s(self.defaults.timeout_s),
        ))
    }

    /// The earliest timeout among assigned cards.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.cards.values().filter_map(|e| self.deadline(e)).min()
    }

    /// Decides assignments, waiting reasons and take-backs at time `now`.
    pub fn plan(&self, now: DateTime<Utc>) -> Plan {
        let mut plan = Plan::default();
        for (id, e) in &self.cards {
            if e.place.state != State::Assigned {
                continue;
            }
            let agent = e.place.agent.as_deref().unwrap_or_default();
            let registered = self.agents.get(agent).is_some_and(|a| a.reg.is_some());
            if !registered {
                plan.take_back
                    .push((id.clone(), format!("assignee {agent} is not registered")));
            } else if self.deadline(e).is_some_and(|d| d <= now) {
                plan.take_back.push((
                    id.clone(),
                    format!(
                        "timed out after {}s",
                        e.card.timeout_s(self.defaults.timeout_s)
                    ),
                ));
            }
        }
        plan.take_back.sort();

        // Each card's entry travels with its sort key: no second lookup per card.
        let mut inbox: Vec<(&Priority, &DateTime<Utc>, &String, &Entry)> = self
            .cards
            .iter()
            .filter(|(_, e)| e.place.state == State::Inbox)
            .map(|(id, e)| (&e.card.spec.priority, &e.created, id, e))
            .collect();
        inbox.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));

        let mut loads: HashMap<&str, u32> = self.loads();
        let taken: HashSet<&str> = plan.take_back.iter().map(|(id, _)| id.as_str()).collect();
        for (id, e) in &self.cards {
            if taken.contains(id.as_str()) {
                if let Some(a) = &e.place.agent {
                    if let Some(l) = loads.get_mut(a.as_str()) {
                        *l = l.saturating_sub(1);
                    }
                }
            }
        }
        let cap = &self.defaults.capacity;
        let mut used = self.resources_used(&taken);
        for (_, _, id, e) in inbox {
            let need = e.card.spec.resources.clone().unwrap_or_default();
            if let Some(reason) = crate::resources::never_fits(&need, cap) {
                plan.fail.push((id.clone(), reason));
                continue;
            }
            if is_llm_card(&e.card.spec) {
                match self.pending_dependencies(&e.card.spec) {
                    Some(reason) => plan.waiting.push((id.clone(), reason)),
                    None => plan.llm.push(id.clone()),
                }
                continue;
            }
            match self.place_card(e, &loads) {
                Ok(agent) => match crate::resources::wait_reason(&need, cap, &used) {
                    None => {
                        crate::resources::reserve(&mut used, &need);
                        *loads.entry(agent).or_default() += 1;
                        plan.assign.push((id.clone(), agent.to_string()));
                    }
                    Some(reason) => plan.waiting.push((id.clone(), reason)),
                },
                Err(reason) => plan.waiting.push((id.clone(), reason)),
            }
        }
        plan
    }

    /// Archived cards whose outcome is not known and that an inbox card depends on: the
    /// few a plan needs read.
    pub fn unread_dependencies(&self) -> Vec<String> {
        let mut ids: Vec<String> = (self.cards.values())
            .filter(|e| e.place.state == State::Inbox)
            .flat_map(|e| e.card.spec.depends_on.iter())
            .filter(|d| {
                self.shelf
                    .get(d.as_str())
                    .is_some_and(|s| s.outcome.is_none())
            })
            .cloned()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Whether the card `id` finished well, as far as the board knows. An archived card
    /// whose outcome was never read counts as done: the daemon reads the outcome of every
    /// archived card a waiting card depends on before it plans (`Engine::resolve_shelved`),
    /// and a reading command that did not is only guessing about a card long finished.
    pub fn succeeded(&self, id: &str) -> bool {
        match self.cards.get(id) {
            Some(e) => e.succeeded(),
            None => self.shelf.get(id).is_some_and(|s| s.outcome != Some(false)),
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
    fn place_card<'a>(&'a self, e: &Entry, loads: &HashMap<&str, u32>) -> Result<&'a str, String> {
        let spec = &e.card.spec;
        if let Some(reason) = self.pending_dependencies(spec) {
            return Err(reason);
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
                return Err(format!("pinned to {name}, who is not registered"));
            };
            let lacks = missing(a);
            if !lacks.is_empty() {
                return Err(format!(
                    "pinned to {name}, who lacks [{}]",
                    lacks.join(", ")
                ));
            }
            if let Some(why) = a.unavailable(spec.kind.as_deref()) {
                return Err(format!("pinned to {name}, who is {why}"));
            }
            // A save-state card is how a full agent gets room again: no slot needed.
            let slot_free = load(name) < a.max_concurrent()
                || spec.kind.as_deref() == Some(crate::agent::SAVE_STATE);
            if !slot_free {
                return Err(format!("pinned to {name}, who is busy"));
            }
            return Ok(a.name.as_str());
        }

        let registered: Vec<&Agent> = self.agents.values().filter(|a| a.reg.is_some()).collect();
        if registered.is_empty() {
            return Err("no agent is registered".into());
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
            return Err(if nobody.is_empty() {
                format!("no registered agent has all of {caps}")
            } else {
                format!("no registered agent has [{}]", nobody.join(", "))
            });
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
            return Err(format!("{who} is {}", unavailable_summary(&capable, kind)));
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
                if spec.requires.is_empty() {
                    "all registered agents are busy".to_string()
                } else {
                    format!("all agents with {caps} are busy")
                }
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

/// The `pas:` block after a transition from `from` to `to`.
pub fn transition_meta(
    meta: &PasMeta,
    from: &Place,
    to: &Place,
    by: &str,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> PasMeta {
    let mut m = meta.clone();
    m.state = Some(to.state);
    m.waiting_for = None;
    if to.state == State::Assigned {
        m.assigned_to = to.agent.clone();
        m.assigned_at = Some(now);
    } else if to.state == State::Inbox {
        m.assigned_to = None;
        m.assigned_at = None;
        m.epoch = None;
    }
    m.history.push(HistoryEntry {
        at: now,
        from: from.label(),
        to: to.label(),
        by: Some(by.to_string()),
        reason,
    });
    m
}

/// Where a taken-back card goes: back to the inbox with `attempts` raised, or to `failed/`
/// once it has used up `max_attempts`.
pub fn take_back_target(card: &Card, default_max: u32) -> (Place, u32) {
    let attempts = card.spec.pas.attempts.saturating_add(1);
    if attempts >= card.max_attempts(default_max) {
        (Place::of(State::Failed), attempts)
    } else {
        (Place::of(State::Inbox), attempts)
    }
}

#[cfg(test)]
mod tests;
