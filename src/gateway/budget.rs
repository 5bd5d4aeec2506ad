//! Budgets: daily, monthly, per agent per day, and per job (`budget_usd`).
//!
//! A paid call reserves its worst-case cost when it is admitted and settles its real cost
//! after, both under one lock, so calls running side by side can never spend past a
//! limit together: admission counts what is spent plus what is reserved. Free calls (a
//! worst case of $0, e.g. local models) are always admitted. Each `alert_at` share of each
//! budget raises one alert per period; thresholds already crossed when the daemon starts
//! (from the receipts) do not alert again. Periods are UTC days and months, read from the
//! ledger's [`Clock`]; a hold belongs to the day (and month) it was admitted in, whenever it
//! settles, so calls in flight at midnight can overshoot neither the day they started in
//! nor the new one (see [`Books`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

use crate::clock::Clock;
use crate::llm::config::Budgets;
use crate::store::receipts::Spent;

/// A card's `budget_usd` as a decimal (`None`: the card sets no budget).
pub fn job_limit(budget_usd: Option<&str>) -> Result<Option<Decimal>, String> {
    budget_usd
        .map(|b| {
            b.parse::<Decimal>()
                .map_err(|e| format!("budget_usd {b:?}: {e}"))
        })
        .transpose()
}

/// Spent and reserved against one budget.
#[derive(Debug, Default, Clone, Copy)]
struct Pot {
    spent: Decimal,
    reserved: Decimal,
}

impl Pot {
    fn committed(&self) -> Decimal {
        self.spent + self.reserved
    }

    fn release(&mut self, reserved: Decimal, cost: Decimal) {
        self.reserved = (self.reserved - reserved).max(Decimal::ZERO);
        self.spent += cost;
    }
}

/// One UTC day's books: the daily budget and each agent's.
#[derive(Debug, Default)]
struct Day {
    pot: Pot,
    agents: HashMap<String, Pot>,
    /// Holds admitted this day and not settled yet: the day's books stay until they are.
    live: usize,
}

/// One UTC month's books.
#[derive(Debug, Default)]
struct Month {
    pot: Pot,
    live: usize,
}

type MonthKey = (i32, u32);

fn month_of(day: NaiveDate) -> MonthKey {
    (day.year(), day.month())
}

/// Every period's books. A period's are kept while it is the current one or while a hold
/// admitted in it is still live, so a call admitted before midnight settles against the
/// day (and month) it was admitted in, and the new period starts from what was admitted
/// in it only: yesterday's reservations are neither dropped (they still bound
/// yesterday's spend) nor charged to today (today never reserved them).
#[derive(Debug, Default)]
struct Books {
    days: BTreeMap<NaiveDate, Day>,
    months: BTreeMap<MonthKey, Month>,
    jobs: HashMap<String, Pot>,
    /// (scope, period, threshold) already alerted.
    fired: HashSet<(String, String, Decimal)>,
}

impl Books {
    /// Drops the books of past periods that no live hold needs any more.
    fn prune(&mut self, today: NaiveDate) {
        self.days.retain(|d, b| *d >= today || b.live > 0);
        let month = month_of(today);
        self.months.retain(|m, b| *m >= month || b.live > 0);
    }
}

/// A reservation held by an admitted call; give it back with [`Ledger::settle`].
#[derive(Debug)]
#[must_use = "a hold must be settled, or the reservation stays taken"]
pub struct Hold {
    amount: Decimal,
    agent: Option<String>,
    job: Option<String>,
    /// The UTC day it was admitted in: its cost counts in this day and its month.
    day: NaiveDate,
}

impl Hold {
    /// The worst case reserved.
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// The UTC day (and so the month) the call counts in, whenever it settles.
    pub fn day(&self) -> NaiveDate {
        self.day
    }
}

/// Why a paid call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `daily`, `monthly`, `agent <name>` or `job <id>`.
    pub scope: String,
    pub limit: Decimal,
    /// Spent (settled) so far.
    pub spent: Decimal,
    /// Spent plus reserved by calls still running.
    pub committed: Decimal,
    pub worst_case: Decimal,
}

impl Refusal {
    /// Whether what is already *spent* leaves no room for the call: final for this period
    /// (a 402). Otherwise only calls still in flight hold the rest, and once they settle
    /// for less than they reserved there may be room again (a 429 worth retrying).
    pub fn exhausted(&self) -> bool {
        self.spent + self.worst_case > self.limit
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the {} budget of ${} would be exceeded: ${} spent or reserved, and this call may \
             cost up to ${}",
            self.scope,
            self.limit,
            self.committed.normalize(),
            self.worst_case.normalize()
        )
    }
}

/// A threshold crossed: one `budget.alert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub scope: String,
    /// `2026-11-21`, `2026-11`, or `all` for a job.
    pub period: String,
    pub threshold: Decimal,
    pub spent: Decimal,
    pub limit: Decimal,
}

/// The books of every budget; shared by all gateway requests and LLM job cards.
pub struct Ledger {
    cfg: Budgets,
    clock: Clock,
    books: Mutex<Books>,
}

impl Ledger {
    /// A ledger that already counts `past` receipts (this month's, and every one with a
    /// job), with the thresholds they crossed marked as alerted.
    pub fn new(cfg: Budgets, past: impl IntoIterator<Item = Spent>, clock: Clock) -> Ledger {
        Self::counting(cfg, clock, |add| {
            past.into_iter().for_each(add);
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap_or_else(|never| match never {})
    }

    /// As [`new`](Self::new), the past handed in by `fill` one receipt at a time (streamed
    /// from the database); `fill`'s error is returned.
    pub fn counting<E>(
        cfg: Budgets,
        clock: Clock,
        fill: impl FnOnce(&mut dyn FnMut(Spent)) -> Result<(), E>,
    ) -> Result<Ledger, E> {
        let now = clock.now();
        let today = now.date_naive();
        let ledger = Ledger {
            cfg,
            clock,
            books: Mutex::new(Books::default()),
        };
        {
            let mut b = ledger.lock();
            b.days.entry(today).or_default();
            b.months.entry(month_of(today)).or_default();
            fill(&mut |r: Spent| {
                let c = r.cost_usd;
                let day = r.ts.date_naive();
                if month_of(day) == month_of(today) {
                    b.months.entry(month_of(day)).or_default().pot.spent += c;
                }
                if day == today {
                    let d = b.days.entry(day).or_default();
                    d.pot.spent += c;
                    if let Some(a) = &r.agent {
                        d.agents.entry(a.clone()).or_default().spent += c;
                    }
                }
                if let Some(j) = r.job_id {
                    b.jobs.entry(j).or_default().spent += c;
                }
            })?;
            // Thresholds crossed before this start were alerted by the run that crossed them.
            let _ = ledger.crossed(&mut b, today, None, None, &HashMap::new());
        }
        Ok(ledger)
    }

    /// The clock this ledger reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a call that may cost up to `worst` (reserving it in today's and this
    /// month's books), or says which budget it would break. `job_budget` is the job
    /// card's `budget_usd`.
    pub fn admit(
        &self,
        worst: Decimal,
        agent: Option<&str>,
        job: Option<&str>,
        job_budget: Option<Decimal>,
    ) -> Result<Hold, Refusal> {
        let today = self.clock.now().date_naive();
        let mut b = self.lock();
        b.prune(today);
        let b = &mut *b;
        let day = b.days.entry(today).or_default();
        let month = b.months.entry(month_of(today)).or_default();
        if worst > Decimal::ZERO {
            let agent_pot = agent
                .and_then(|a| day.agents.get(a))
                .copied()
                .unwrap_or_default();
            let job_pot = job.and_then(|j| b.jobs.get(j)).copied().unwrap_or_default();
            let checks = [
                ("daily".to_string(), self.cfg.daily_usd, day.pot),
                ("monthly".to_string(), self.cfg.monthly_usd, month.pot),
                (
                    format!("agent {}", agent.unwrap_or("-")),
                    self.cfg.agent_daily_usd.filter(|_| agent.is_some()),
                    agent_pot,
                ),
                (
                    format!("job {}", job.unwrap_or("-")),
                    job_budget.filter(|_| job.is_some()),
                    job_pot,
                ),
            ];
            for (scope, limit, pot) in checks {
                if let Some(limit) = limit {
                    if pot.committed() + worst > limit {
                        return Err(Refusal {
                            scope,
                            limit,
                            spent: pot.spent,
                            committed: pot.committed(),
                            worst_case: worst,
                        });
                    }
                }
            }
        }
        day.pot.reserved += worst;
        day.live += 1;
        month.pot.reserved += worst;
        month.live += 1;
        if let Some(a) = agent {
            day.agents.entry(a.to_string()).or_default().reserved += worst;
        }
        if let Some(j) = job {
            b.jobs.entry(j.to_string()).or_default().reserved += worst;
        }
        Ok(Hold {
            amount: worst,
            agent: agent.map(str::to_string),
            job: job.map(str::to_string),
            day: today,
        })
    }

    /// Gives back `hold` and books `actual` (unknown cost books nothing) in the day and
    /// month it was admitted in; returns the alerts this crossed. `job_budget` as given
    /// to `admit`.
    pub fn settle(
        &self,
        hold: Hold,
        actual: Option<Decimal>,
        job_budget: Option<Decimal>,
    ) -> Vec<Alert> {
        let today = self.clock.now().date_naive();
        let mut b = self.lock();
        let cost = actual.unwrap_or_default();
        let day = b.days.entry(hold.day).or_default();
        day.pot.release(hold.amount, cost);
        day.live = day.live.saturating_sub(1);
        if let Some(a) = &hold.agent {
            day.agents
                .entry(a.clone())
                .or_default()
                .release(hold.amount, cost);
        }
        let month = b.months.entry(month_of(hold.day)).or_default();
        month.pot.release(hold.amount, cost);
        month.live = month.live.saturating_sub(1);
        if let Some(j) = &hold.job {
            b.jobs
                .entry(j.clone())
                .or_default()
                .release(hold.amount, cost);
        }
        let jobs: HashMap<String, Decimal> = hold
            .job
            .iter()
            .filter_map(|j| job_budget.map(|l| (j.clone(), l)))
            .collect();
        let alerts = self.crossed(
            &mut b,
            hold.day,
            hold.agent.as_deref(),
            hold.job.as_deref(),
            &jobs,
        );
        b.prune(today);
        alerts
    }

    /// Marks every threshold now crossed in the books of `day` (and its month) as fired
    /// and returns the new ones.
    fn crossed(
        &self,
        b: &mut Books,
        day: NaiveDate,
        agent: Option<&str>,
        job: Option<&str>,
        job_limits: &HashMap<String, Decimal>,
    ) -> Vec<Alert> {
        let month = day.format("%Y-%m").to_string();
        let (day_spent, agent_spent) = match b.days.get(&day) {
            Some(d) => {
                let agents: Vec<(String, Decimal)> = match agent {
                    Some(a) => vec![(
                        a.to_string(),
                        d.agents.get(a).map_or(Decimal::ZERO, |p| p.spent),
                    )],
                    None => d.agents.iter().map(|(a, p)| (a.clone(), p.spent)).collect(),
                };
                (d.pot.spent, agents)
            }
            None => (Decimal::ZERO, Vec::new()),
        };
        let month_spent = b
            .months
            .get(&month_of(day))
            .map_or(Decimal::ZERO, |m| m.pot.spent);
        let day = day.to_string();
        let mut scopes = vec![
            (
                "daily".to_string(),
                day.clone(),
                self.cfg.daily_usd,
                day_spent,
            ),
            (
                "monthly".to_string(),
                month,
                self.cfg.monthly_usd,
                month_spent,
            ),
        ];
        if let Some(limit) = self.cfg.agent_daily_usd {
            for (a, spent) in agent_spent {
                scopes.push((format!("agent {a}"), day.clone(), Some(limit), spent));
            }
        }
        if let Some(j) = job {
            if let Some(limit) = job_limits.get(j) {
                let spent = b.jobs.get(j).map_or(Decimal::ZERO, |p| p.spent);
                scopes.push((format!("job {j}"), "all".into(), Some(*limit), spent));
            }
        }
        let mut out = Vec::new();
        for (scope, period, limit, spent) in scopes {
            let Some(limit) = limit.filter(|l| !l.is_zero()) else {
                continue;
            };
            for t in &self.cfg.alert_at {
                if spent >= *t * limit && b.fired.insert((scope.clone(), period.clone(), *t)) {
                    out.push(Alert {
                        scope: scope.clone(),
                        period: period.clone(),
                        threshold: *t,
                        spent,
                        limit,
                    });
                }
            }
        }
        out
    }

    /// The 100 % alert of a budget that refused a call because what is already spent
    /// leaves no room for it (reservations keep spend itself from ever reaching the
    /// limit); a refusal only because of calls still running is not exhaustion yet.
    pub fn refused(&self, r: &Refusal) -> Option<Alert> {
        if !r.exhausted() {
            return None;
        }
        // Only a 100 % threshold stands for exhaustion; lower ones fire as spend crosses them.
        let top = self.cfg.alert_at.iter().max().copied()?;
        if top < Decimal::ONE {
            return None;
        }
        let now = self.clock.now();
        let period = if r.scope == "monthly" {
            now.format("%Y-%m").to_string()
        } else if r.scope.starts_with("job ") {
            "all".to_string()
        } else {
            now.date_naive().to_string()
        };
        let mut b = self.lock();
        if !b.fired.insert((r.scope.clone(), period.clone(), top)) {
            return None;
        }
        Some(Alert {
            scope: r.scope.clone(),
            period,
            threshold: top,
            spent: r.spent,
            limit: r.limit,
        })
    }

    /// Whether any budget applies to every call (daily, monthly or per agent).
    pub fn limited(&self) -> bool {
        self.cfg.daily_usd.is_some()
            || self.cfg.monthly_usd.is_some()
            || self.cfg.agent_daily_usd.is_some()
    }

    /// Spent today, spent this month, and reserved today (for `/api/costs` and tests).
    pub fn totals(&self) -> (Decimal, Decimal, Decimal) {
        let today = self.clock.now().date_naive();
        let b = self.lock();
        let day = b.days.get(&today).map(|d| d.pot).unwrap_or_default();
        let month = b
            .months
            .get(&month_of(today))
            .map(|m| m.pot)
            .unwrap_or_default();
        (day.spent, month.spent, day.reserved)
    }

    /// Spent and reserved in the books of `day` and of its month, while they are kept
    /// (the current period, or one with calls still live): `(day, month)`.
    pub fn period(&self, day: NaiveDate) -> (Decimal, Decimal, Decimal, Decimal) {
        let b = self.lock();
        let d = b.days.get(&day).map(|d| d.pot).unwrap_or_default();
        let m = b
            .months
            .get(&month_of(day))
            .map(|m| m.pot)
            .unwrap_or_default();
        (d.spent, d.reserved, m.spent, m.reserved)
    }
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
