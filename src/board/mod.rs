//! The board: every card and agent pas knows, and the rules of assignment (pure).
//!
//! `Board::plan` is a plain function of the board and the time: it says which inbox card
//! goes to which agent, why the others wait, and which assigned cards have timed out. The
//! daemon carries the plan out with file moves; `pas status` runs the same plan on a board
//! read from the files, so it can say why a card waits with no daemon running.

mod incremental;
mod rules;
mod tracked;

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::agent::Agent;
use crate::card::{Card, HistoryEntry, PasMeta, Resources, State};
pub use tracked::Tracked;

/// Whether `d` is a real day written `YYYY/MM/DD`, the archive's folder names (the day
/// of an archived card's place).
pub fn is_day(d: &str) -> bool {
    d.len() == 10 && chrono::NaiveDate::parse_from_str(d, "%Y/%m/%d").is_ok()
}

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
            (State::Archived, d) if is_day(d) => Place::archived_in(d.into()),
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
        if !is_day(day) {
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
    pub cards: Tracked<String, Entry>,
    /// The archived cards, without their text (see `Shelved`).
    pub shelf: Tracked<Box<str>, Shelved>,
    pub agents: BTreeMap<String, Agent>,
    pub defaults: Defaults,
    /// What the daemon's incremental plan keeps between plans (see `incremental.rs`).
    index: incremental::PlanIndex,
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

    /// Archived cards whose outcome is not known and that an inbox card depends on: the
    /// few a plan needs read.
    pub fn unread_dependencies(&self) -> Vec<String> {
        self.unread_among(
            (self.cards.values())
                .filter(|e| e.place.state == State::Inbox)
                .flat_map(|e| e.card.spec.depends_on.iter()),
        )
    }

    /// The shelved cards among `ids` whose outcome is not known, sorted, once each.
    fn unread_among<'a>(&self, ids: impl Iterator<Item = &'a String>) -> Vec<String> {
        let mut ids: Vec<String> = ids
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

#[cfg(test)]
mod incremental_tests;
