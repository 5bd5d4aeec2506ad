//! Tests of the budgets' ledger (`budget.rs`): reservations, alerts, past spend, and
//! periods across midnight with a fake clock.
use super::*;
use chrono::{DateTime, Utc};

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
    let l = Ledger::new(budgets("1.00"), [], Clock::real());
    let holds: Vec<_> = (0..10)
        .filter_map(|_| l.admit(d("0.30"), None, None, None).ok())
        .collect();
    assert_eq!(holds.len(), 3, "0.30 × 3 fits in 1.00, a fourth does not");
    let refused = l.admit(d("0.30"), None, None, None).unwrap_err();
    assert_eq!(refused.scope, "daily");
    assert!(
        refused.to_string().contains("daily budget of $1.00"),
        "{refused}"
    );
    assert!(!refused.exhausted(), "only reservations are in the way");
    // Free calls still run at the limit.
    let free = l.admit(Decimal::ZERO, None, None, None).unwrap();
    let _ = l.settle(free, Some(Decimal::ZERO), None);
    // Settling for less frees room.
    for h in holds {
        let _ = l.settle(h, Some(d("0.10")), None);
    }
    assert_eq!(l.totals(), (d("0.30"), d("0.30"), Decimal::ZERO));
    assert!(l.admit(d("0.70"), None, None, None).is_ok());
}

#[test]
fn alerts_fire_once_per_threshold_per_period() {
    let l = Ledger::new(budgets("1.00"), [], Clock::real());
    let mut seen = Vec::new();
    for _ in 0..10 {
        let h = l.admit(d("0.10"), None, None, None).unwrap();
        seen.extend(l.settle(h, Some(d("0.10")), None));
    }
    let shares: Vec<String> = seen
        .iter()
        .map(|a| a.threshold.normalize().to_string())
        .collect();
    assert_eq!(shares, vec!["0.75", "0.9", "1"]);
    assert!(seen.iter().all(|a| a.scope == "daily"));
    // At 100 % a paid call is refused, for good this period.
    let refused = l.admit(d("0.01"), None, None, None).unwrap_err();
    assert!(refused.exhausted());
}

#[test]
fn job_and_agent_budgets_cap_their_own_calls() {
    let cfg = Budgets {
        agent_daily_usd: Some(d("0.50")),
        ..Budgets::default()
    };
    let l = Ledger::new(cfg, [], Clock::real());
    let h = l
        .admit(d("0.40"), Some("a"), Some("J1"), Some(d("0.45")))
        .unwrap();
    let e = l.admit(d("0.11"), Some("a"), Some("J2"), None).unwrap_err();
    assert_eq!(e.scope, "agent a");
    let e = l
        .admit(d("0.10"), Some("b"), Some("J1"), Some(d("0.45")))
        .unwrap_err();
    assert_eq!(e.scope, "job J1");
    assert!(l.admit(d("0.10"), Some("b"), Some("J2"), None).is_ok());
    let alerts = l.settle(h, Some(d("0.45")), Some(d("0.45")));
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
    let l = Ledger::new(budgets("1.00"), [past], Clock::fake(now));
    let h = l.admit(d("0.05"), None, None, None).unwrap();
    let alerts = l.settle(h, Some(d("0.05")), None);
    assert!(
        alerts.is_empty(),
        "0.75 was crossed before the start: {alerts:?}"
    );
    let h = l.admit(d("0.10"), None, None, None).unwrap();
    let alerts = l.settle(h, Some(d("0.10")), None);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].threshold, d("0.90"));
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

#[test]
fn calls_in_flight_at_midnight_settle_in_the_day_and_month_they_were_admitted_in() {
    let clock = Clock::fake(at("2026-01-31T23:59:59Z"));
    let cfg = Budgets {
        daily_usd: Some(d("1.00")),
        monthly_usd: Some(d("1.50")),
        ..Budgets::default()
    };
    let l = Ledger::new(cfg, [], clock.clone());
    let jan31 = clock.now().date_naive();
    let late: Vec<_> = (0..3)
        .map(|_| l.admit(d("0.30"), None, None, None).unwrap())
        .collect();
    assert!(late.iter().all(|h| h.day() == jan31));
    clock.advance(std::time::Duration::from_secs(2));
    // A new day and month: today's pot holds only today's calls, and yesterday's
    // reservations still bound yesterday's books.
    let early: Vec<_> = (0..3)
        .map(|_| l.admit(d("0.30"), None, None, None).unwrap())
        .collect();
    assert!(l.admit(d("0.30"), None, None, None).is_err(), "1.20 > 1.00");
    assert_eq!(l.period(jan31), (d("0"), d("0.90"), d("0"), d("0.90")));
    let mut late = late.into_iter();
    for h in late.by_ref().take(2) {
        let _ = l.settle(h, Some(d("0.30")), None);
    }
    // Charged to January 31st and January, not to today: today is not overshot.
    assert_eq!(
        l.period(jan31),
        (d("0.60"), d("0.30"), d("0.60"), d("0.30"))
    );
    assert_eq!(l.totals(), (d("0"), d("0"), d("0.90")));
    for h in late {
        let _ = l.settle(h, Some(d("0.30")), None);
    }
    for h in early {
        let _ = l.settle(h, Some(d("0.30")), None);
    }
    assert_eq!(l.totals(), (d("0.90"), d("0.90"), d("0")));
    // Yesterday's books are gone once nothing live needs them.
    assert_eq!(l.period(jan31), (d("0"), d("0"), d("0"), d("0")));
}

#[test]
fn a_new_day_in_the_same_month_still_counts_the_months_calls_in_flight() {
    let clock = Clock::fake(at("2026-01-30T23:59:59Z"));
    let cfg = Budgets {
        daily_usd: Some(d("1.00")),
        monthly_usd: Some(d("1.00")),
        ..Budgets::default()
    };
    let l = Ledger::new(cfg, [], clock.clone());
    let held: Vec<_> = (0..3)
        .map(|_| l.admit(d("0.30"), None, None, None).unwrap())
        .collect();
    clock.advance(std::time::Duration::from_secs(2));
    let r = l.admit(d("0.30"), None, None, None).unwrap_err();
    assert_eq!(r.scope, "monthly", "{r}");
    assert!(!r.exhausted(), "only calls in flight hold the month");
    for h in held {
        let _ = l.settle(h, Some(d("0.10")), None);
    }
    // 0.30 spent this month (on the 30th), none today: room again.
    assert_eq!(l.totals(), (d("0"), d("0.30"), d("0")));
    assert!(l.admit(d("0.70"), None, None, None).is_ok());
}
