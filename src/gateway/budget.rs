//! Budgets: daily, monthly, per agent per day, and per job (`budget_usd`).
//!
//! A paid call reserves its worst-case cost when it is admitted and settles its real cost
//! after, both under one lock, so calls running side by side can never spend past a
//! limit together: admission counts what is spent plus what is reserved. Free calls (a
//! worst case of $0, e.g. local models) are always admitted. Each `alert_at` share of each
//! budget raises one alert per period; thresholds already crossed when the daemon starts
//! (from the receipts) do not alert again. Periods are UTC days and months.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;

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
}

#[derive(Debug, Default)]
struct Books {
    day: Option<NaiveDate>,
    month: Option<(i32, u32)>,
    daily: Pot,
    monthly: Pot,
    agents: HashMap<String, Pot>,
    jobs: HashMap<String, Pot>,
    /// (scope, period, threshold) already alerted.
    fired: HashSet<(String, String, Decimal)>,
}

/// A reservation held by an admitted call; give it back with [`Ledger::settle`].
#[derive(Debug)]
#[must_use = "a hold must be settled, or the reservation stays taken"]
pub struct Hold {
    amount: Decimal,
    agent: Option<String>,
    job: Option<String>,
    day: NaiveDate,
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
    books: Mutex<Books>,
}

impl Ledger {
    /// A ledger that already counts `past` receipts (this month's, and every one with a
    /// job), with the thresholds they crossed marked as alerted.
    pub fn new(cfg: Budgets, past: impl IntoIterator<Item = Spent>, now: DateTime<Utc>) -> Ledger {
        Self::counting(cfg, now, |add| {
            past.into_iter().for_each(add);
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap_or_else(|never| match never {})
    }

    /// As [`new`](Self::new), the past handed in by `fill` one receipt at a time (streamed
    /// from the database); `fill`'s error is returned.
    pub fn counting<E>(
        cfg: Budgets,
        now: DateTime<Utc>,
        fill: impl FnOnce(&mut dyn FnMut(Spent)) -> Result<(), E>,
    ) -> Result<Ledger, E> {
        let ledger = Ledger {
            cfg,
            books: Mutex::new(Books::default()),
        };
        {
            let mut b = ledger.lock();
            ledger.roll(&mut b, now);
            fill(&mut |r: Spent| {
                let c = r.cost_usd;
                if (r.ts.year(), r.ts.month()) == (now.year(), now.month()) {
                    b.monthly.spent += c;
                }
                if r.ts.date_naive() == now.date_naive() {
                    b.daily.spent += c;
                    if let Some(a) = &r.agent {
                        b.agents.entry(a.clone()).or_default().spent += c;
                    }
                }
                if let Some(j) = r.job_id {
                    b.jobs.entry(j).or_default().spent += c;
                }
            })?;
            // Thresholds crossed before this start were alerted by the run that crossed them.
            let _ = ledger.crossed(&mut b, None, None, &HashMap::new(), now);
        }
        Ok(ledger)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new day or month starts with empty pots; reservations of calls still running
    /// are settled against the period they were admitted in.
    fn roll(&self, b: &mut Books, now: DateTime<Utc>) {
        let day = now.date_naive();
        if b.day != Some(day) {
            b.day = Some(day);
            b.daily = Pot::default();
            b.agents.clear();
        }
        let month = (now.year(), now.month());
        if b.month != Some(month) {
            b.month = Some(month);
            b.monthly = Pot::default();
        }
    }

    /// Admits a call that may cost up to `worst` (reserving it), or says which budget it
    /// would break. `job_budget` is the job card's `budget_usd`.
    pub fn admit(
        &self,
        worst: Decimal,
        agent: Option<&str>,
        job: Option<&str>,
        job_budget: Option<Decimal>,
        now: DateTime<Utc>,
    ) -> Result<Hold, Refusal> {
        let mut b = self.lock();
        self.roll(&mut b, now);
        if worst > Decimal::ZERO {
            let agent_pot = agent
                .and_then(|a| b.agents.get(a))
                .copied()
                .unwrap_or_default();
            let job_pot = job.and_then(|j| b.jobs.get(j)).copied().unwrap_or_default();
            let checks = [
                ("daily".to_string(), self.cfg.daily_usd, b.daily),
                ("monthly".to_string(), self.cfg.monthly_usd, b.monthly),
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
        b.daily.reserved += worst;
        b.monthly.reserved += worst;
        if let Some(a) = agent {
            b.agents.entry(a.to_string()).or_default().reserved += worst;
        }
        if let Some(j) = job {
            b.jobs.entry(j.to_string()).or_default().reserved += worst;
        }
        Ok(Hold {
            amount: worst,
            agent: agent.map(str::to_string),
            job: job.map(str::to_string),
            day: now.date_naive(),
        })
    }

    /// Gives back `hold` and books `actual` (unknown cost books nothing); returns the
    /// alerts this crossed. `job_budget` as given to `admit`.
    pub fn settle(
        &self,
        hold: Hold,
        actual: Option<Decimal>,
        job_budget: Option<Decimal>,
        now: DateTime<Utc>,
    ) -> Vec<Alert> {
        let mut b = self.lock();
        let same_day = b.day == Some(hold.day);
        let same_month = b.month == Some((hold.day.year(), hold.day.month()));
        self.roll(&mut b, now);
        let cost = actual.unwrap_or_default();
        let release = |p: &mut Pot, live: bool| {
            if live {
                p.reserved = (p.reserved - hold.amount).max(Decimal::ZERO);
            }
            p.spent += cost;
        };
        release(&mut b.daily, same_day);
        release(&mut b.monthly, same_month);
        if let Some(a) = &hold.agent {
            release(b.agents.entry(a.clone()).or_default(), same_day);
        }
        if let Some(j) = &hold.job {
            release(b.jobs.entry(j.clone()).or_default(), true);
        }
        let jobs: HashMap<String, Decimal> = hold
            .job
            .iter()
            .filter_map(|j| job_budget.map(|l| (j.clone(), l)))
            .collect();
        self.crossed(
            &mut b,
            hold.agent.as_deref(),
            hold.job.as_deref(),
            &jobs,
            now,
        )
    }

    /// Marks every threshold now crossed as fired and returns the new ones.
    fn crossed(
        &self,
        b: &mut Books,
        agent: Option<&str>,
        job: Option<&str>,
        job_limits: &HashMap<String, Decimal>,
        now: DateTime<Utc>,
    ) -> Vec<Alert> {
        let day = now.date_naive().to_string();
        let month = now.format("%Y-%m").to_string();
        let mut scopes = vec![
            (
                "daily".to_string(),
                day.clone(),
                self.cfg.daily_usd,
                b.daily.spent,
            ),
            (
                "monthly".to_string(),
                month,
                self.cfg.monthly_usd,
                b.monthly.spent,
            ),
        ];
        let agents: Vec<String> = match agent {
            Some(a) => vec![a.to_string()],
            None => b.agents.keys().cloned().collect(),
        };
        if let Some(limit) = self.cfg.agent_daily_usd {
            for a in agents {
                let spent = b.agents.get(&a).map_or(Decimal::ZERO, |p| p.spent);
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
    pub fn refused(&self, r: &Refusal, now: DateTime<Utc>) -> Option<Alert> {
        if !r.exhausted() {
            return None;
        }
        // Only a 100 % threshold stands for exhaustion; lower ones fire as spend crosses them.
        let top = self.cfg.alert_at.iter().max().copied()?;
        if top < Decimal::ONE {
            return None;
        }
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

    /// Spent and reserved today and this month (for `/api/costs` and tests).
    pub fn totals(&self) -> (Decimal, Decimal, Decimal) {
        let b = self.lock();
        (b.daily.spent, b.monthly.spent, b.daily.reserved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn budgets(daily: &str) -> Budgets {
        Budgets {
            daily_usd: Some(d(daily)),
            ..Budgets::default()
        }
    }

    #[test]
    fn reservations_stop_concurrent_calls_at_the_limit() {
        let l = Ledger::new(budgets("1.00"), [], Utc::now());
        let now = Utc::now();
        let holds: Vec<_> = (0..10)
            .filter_map(|_| l.admit(d("0.30"), None, None, None, now).ok())
            .collect();
        assert_eq!(holds.len(), 3, "0.30 × 3 fits in 1.00, a fourth does not");
        let refused = l.admit(d("0.30"), None, None, None, now).unwrap_err();
        assert_eq!(refused.scope, "daily");
        assert!(
            refused.to_string().contains("daily budget of $1.00"),
            "{refused}"
        );
        assert!(!refused.exhausted(), "only reservations are in the way");
        // Free calls still run at the limit.
        let free = l.admit(Decimal::ZERO, None, None, None, now).unwrap();
        let _ = l.settle(free, Some(Decimal::ZERO), None, now);
        // Settling for less frees room.
        for h in holds {
            let _ = l.settle(h, Some(d("0.10")), None, now);
        }
        assert_eq!(l.totals(), (d("0.30"), d("0.30"), Decimal::ZERO));
        assert!(l.admit(d("0.70"), None, None, None, now).is_ok());
    }

    #[test]
    fn alerts_fire_once_per_threshold_per_period() {
        let l = Ledger::new(budgets("1.00"), [], Utc::now());
        let now = Utc::now();
        let mut seen = Vec::new();
        for _ in 0..10 {
            let h = l.admit(d("0.10"), None, None, None, now).unwrap();
            seen.extend(l.settle(h, Some(d("0.10")), None, now));
        }
        let shares: Vec<String> = seen
            .iter()
            .map(|a| a.threshold.normalize().to_string())
            .collect();
        assert_eq!(shares, vec!["0.75", "0.9", "1"]);
        assert!(seen.iter().all(|a| a.scope == "daily"));
        // At 100 % a paid call is refused, for good this period.
        let refused = l.admit(d("0.01"), None, None, None, now).unwrap_err();
        assert!(refused.exhausted());
    }

    #[test]
    fn job_and_agent_budgets_cap_their_own_calls() {
        let cfg = Budgets {
            agent_daily_usd: Some(d("0.50")),
            ..Budgets::default()
        };
        let l = Ledger::new(cfg, [], Utc::now());
        let now = Utc::now();
        let h = l
            .admit(d("0.40"), Some("a"), Some("J1"), Some(d("0.45")), now)
            .unwrap();
        let e = l
            .admit(d("0.11"), Some("a"), Some("J2"), None, now)
            .unwrap_err();
        assert_eq!(e.scope, "agent a");
        let e = l
            .admit(d("0.10"), Some("b"), Some("J1"), Some(d("0.45")), now)
            .unwrap_err();
        assert_eq!(e.scope, "job J1");
        assert!(l.admit(d("0.10"), Some("b"), Some("J2"), None, now).is_ok());
        let alerts = l.settle(h, Some(d("0.45")), Some(d("0.45")), now);
        assert!(alerts
            .iter()
            .any(|a| a.scope == "job J1" && a.threshold == Decimal::ONE));
    }

    #[test]
    fn past_spend_counts_and_does_not_alert_again() {
        let now = Utc::now();
        let past = Spent {
            ts: now,
            job_id: None,
            agent: None,
            cost_usd: d("0.80"),
        };
        let l = Ledger::new(budgets("1.00"), [past], now);
        let h = l.admit(d("0.05"), None, None, None, now).unwrap();
        let alerts = l.settle(h, Some(d("0.05")), None, now);
        assert!(
            alerts.is_empty(),
            "0.75 was crossed before the start: {alerts:?}"
        );
        let h = l.admit(d("0.10"), None, None, None, now).unwrap();
        let alerts = l.settle(h, Some(d("0.10")), None, now);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].threshold, d("0.90"));
    }
}
