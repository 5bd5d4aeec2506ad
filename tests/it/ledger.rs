//! Money that holds across midnight and through `kill -9`: calls in flight at a month's
//! last midnight (the daemon's money clock started just before it with
//! `PAS_CLOCK_START`), paid calls in flight when the daemon is killed, an LLM card whose
//! call was killed, and a provider that bills far more input than the request shows.

use std::collections::BTreeMap;
use std::time::Duration;

use pas::llm::config::Protocol;
use pas::llm::fake::{self, FakeOptions, Mode};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::support::gateway::{ask, model, provider, read_all_receipts, Gw};
use crate::support::workspace::wait_until;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// `(day it counts in, ts, cost, status)` of every receipt.
fn receipt_days(gw: &Gw) -> Vec<(String, String, Decimal, String)> {
    let conn = rusqlite::Connection::open_with_flags(
        gw.ws.path("telemetry/pas.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = conn
        .prepare("SELECT COALESCE(day, substr(ts, 1, 10)), ts, cost_usd, status FROM receipts ORDER BY ts")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, String>(3)?,
        ))
    })
    .unwrap()
    .map(|r| {
        let (day, ts, cost, status) = r.unwrap();
        (day, ts, cost.map_or(Decimal::ZERO, |c| d(&c)), status)
    })
    .collect()
}

/// The receipt totals' cost per day (what `pas costs` and a restart's budgets read).
fn totals_by_day(gw: &Gw) -> BTreeMap<String, Decimal> {
    let conn = rusqlite::Connection::open_with_flags(
        gw.ws.path("telemetry/pas.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = conn
        .prepare("SELECT day, cost_usd FROM receipt_totals")
        .unwrap();
    let mut out = BTreeMap::new();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
    {
        let (day, cost) = row.unwrap();
        *out.entry(day).or_insert(Decimal::ZERO) += d(&cost);
    }
    out
}

/// A provider on `up` whose calls may run a minute (not the fixture's 2 s).
fn patient(up: &fake::Fake, price: (&str, &str)) -> String {
    provider(
        "p",
        up,
        Protocol::Openai,
        "    timeout_s: 60\n",
        &model("m", &["x"], Some(price)),
    )
    .replace("    timeout_s: 2\n", "")
}

#[test]
fn fifty_calls_across_a_months_last_midnight_overshoot_neither_budget() {
    let up = fake::start(FakeOptions {
        output_tokens: 50,
        ..FakeOptions::default()
    });
    up.set_mode(Mode::Delay(Duration::from_millis(1500)));
    let daily = d("0.004");
    let monthly = d("0.006");
    let gw = Gw::start(
        &[provider(
            "p",
            &up,
            Protocol::Openai,
            "",
            &model("m", &["x"], Some(("1", "10"))),
        )],
        &format!("budgets: {{daily_usd: \"{daily}\", monthly_usd: \"{monthly}\"}}\n"),
        &[("PAS_CLOCK_START", "2026-01-31T23:59:48Z")],
    );
    // The first call teaches the model's surplus (none), and its receipt tells the time
    // on the daemon's clock however long the start took; the waves (5 calls every 700 ms,
    // each 1.5 s upstream) begin about 3 s before midnight, so calls are in flight at it.
    assert_eq!(gw.chat(&ask("m", false), &[]).status, 200);
    gw.receipts(1);
    let first_ts = chrono::DateTime::parse_from_rfc3339(&receipt_days(&gw)[0].1).unwrap();
    let midnight = chrono::DateTime::parse_from_rfc3339("2026-02-01T00:00:00Z").unwrap();
    if let Ok(left) = (midnight - first_ts - chrono::Duration::seconds(3)).to_std() {
        std::thread::sleep(left);
    }
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for _ in 0..10 {
            for _ in 0..5 {
                handles.push(s.spawn(|| gw.chat(&ask("m", false), &[]).status));
            }
            std::thread::sleep(Duration::from_millis(700));
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        statuses.iter().all(|s| [200, 402, 429].contains(s)),
        "{statuses:?}"
    );
    gw.receipts(ok + 1);
    let rows = receipt_days(&gw);
    let mut by_day: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut by_month: BTreeMap<String, Decimal> = BTreeMap::new();
    for (day, _, cost, _) in &rows {
        *by_day.entry(day.clone()).or_default() += cost;
        *by_month.entry(day[..7].to_string()).or_default() += cost;
    }
    for (day, spent) in &by_day {
        assert!(*spent <= daily, "{day}: {spent} > {daily}: {rows:?}");
    }
    for (month, spent) in &by_month {
        assert!(*spent <= monthly, "{month}: {spent} > {monthly}");
    }
    assert_eq!(
        by_day.keys().collect::<Vec<_>>(),
        ["2026-01-31", "2026-02-01"],
        "the calls straddle midnight: {rows:?}"
    );
    // A call admitted on the 31st and answered after midnight counts on the 31st.
    assert!(
        rows.iter()
            .any(|(day, ts, _, _)| day == "2026-01-31" && ts.starts_with("2026-02-01")),
        "some call was in flight at midnight: {rows:?}"
    );
    // The totals (what a restart and `pas costs` read) agree on the day of every call.
    wait_until("the totals", Duration::from_secs(10), || {
        let t = totals_by_day(&gw);
        (t == by_day)
            .then_some(())
            .ok_or(format!("{t:?} != {by_day:?}"))
    });
    // Both days were filled: the budget, not the clock, stopped the calls.
    assert!(statuses.iter().any(|s| *s != 200), "{statuses:?}");
}

/// Starts the daemon again after a `kill -9` (which left its addresses file behind).
fn restart(gw: &mut Gw) {
    std::fs::remove_file(gw.ws.path(".pas/serve.json")).unwrap();
    gw._daemon = gw.ws.serve_with(&[]);
    gw.url = format!("http://{}", gw.ws.addresses().1);
}

/// The worst case of `ask("m", false)` at $1 in / $10 out per Mtok: its bytes as input
/// tokens, and its 50 output tokens.
fn worst_of_ask() -> Decimal {
    let bytes = serde_json::to_vec(&ask("m", false)).unwrap().len();
    (Decimal::from(bytes) + Decimal::from(50 * 10)) / Decimal::from(1_000_000)
}

#[test]
fn three_paid_calls_in_flight_at_kill_9_are_spent_after_the_restart() {
    let up = fake::start(FakeOptions::default());
    let worst = worst_of_ask();
    // Room for one call and three worst cases, not for a fourth worst case after them.
    let limit = (worst * d("3.95")).round_dp(8);
    let budgets = format!("budgets: {{daily_usd: \"{limit}\"}}\n");
    let mut gw = Gw::start(&[patient(&up, ("1", "10"))], &budgets, &[]);
    // One answered call teaches the model's surplus (none), so three can be in flight.
    assert_eq!(gw.chat(&ask("m", false), &[]).status, 200);
    let first = gw.receipts(1)[0]["cost"].as_str().map(d).unwrap();
    up.set_mode(Mode::Delay(Duration::from_secs(30)));
    let url = gw.url.clone();
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let _ = crate::support::http::try_send(
                    "POST",
                    &format!("{url}/v1/chat/completions"),
                    &[],
                    Some(&ask("m", false)),
                );
            })
        })
        .collect();
    wait_until("three calls upstream", Duration::from_secs(10), || {
        (up.requests() >= 4)
            .then_some(())
            .ok_or(format!("{} requests", up.requests()))
    });
    gw._daemon.kill9();
    for c in callers {
        c.join().unwrap();
    }
    assert_eq!(
        read_all_receipts(&gw.ws).len(),
        1,
        "nothing settled the three"
    );
    up.set_mode(Mode::Ok);
    restart(&mut gw);
    let rows = gw.receipts(4);
    let interrupted: Vec<&Value> = rows
        .iter()
        .filter(|r| r["status"] == "interrupted")
        .collect();
    assert_eq!(interrupted.len(), 3, "{rows:?}");
    for r in &interrupted {
        assert_eq!(r["cost"].as_str().map(d), Some(worst), "{r}");
        assert!(r["error"].as_str().unwrap().contains("reserved worst case"));
    }
    // `pas costs` counts them, by status too.
    let costs = gw.ws.pas_json(&["costs", "--json"]);
    let by_status: BTreeMap<String, String> = costs["by_status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap().to_string(),
                t["cost_usd"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        by_status.get("interrupted").map(|c| d(c)),
        Some(worst * d("3")),
        "{costs}"
    );
    assert_eq!(
        costs["today"]["cost_usd"].as_str().map(d),
        Some(first + worst * d("3")),
        "{costs}"
    );
    // The restarted budget counts the interrupted spend: no room for another call.
    let r = gw.chat(&ask("m", false), &[]);
    assert_eq!(r.status, 402, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "budget_exceeded");
    assert_eq!(
        up.requests(),
        4,
        "the refused call never reached the provider"
    );
}

#[test]
fn an_llm_card_killed_mid_call_is_failed_for_a_retry_not_bought_again() {
    let up = fake::start(FakeOptions::default());
    up.set_mode(Mode::Delay(Duration::from_secs(30)));
    let mut gw = Gw::start(&[patient(&up, ("1", "1"))], "", &[]);
    gw.ws.drop_card(
        "J-cut",
        "title: cut\nllm:\n  model: m\n  messages:\n    - {role: user, content: hi}\n",
    );
    wait_until("the card's call", Duration::from_secs(10), || {
        (up.requests() >= 1)
            .then_some(())
            .ok_or("no request yet".to_string())
    });
    gw._daemon.kill9();
    up.set_mode(Mode::Ok);
    restart(&mut gw);
    let card = gw.ws.wait_state("J-cut", "failed");
    let receipts = gw.receipts(1);
    assert_eq!(receipts[0]["status"], "interrupted");
    assert_eq!(receipts[0]["job"], "J-cut");
    let error = serde_yaml::to_string(&card).unwrap();
    let id = receipts[0]["id"].as_str().unwrap();
    assert!(
        error.contains(id) && error.contains("pas retry J-cut"),
        "the failure names the receipt and the way out: {error}"
    );
    assert_eq!(up.requests(), 1, "not bought a second time on its own");
    // Retried on purpose, it is bought again, and says so in its receipts.
    gw.ws.pas_ok(&["retry", "J-cut"]);
    let card = gw.ws.wait_state("J-cut", "done");
    assert_eq!(up.requests(), 2);
    let rows = gw.receipts(2);
    assert_eq!(rows[1]["status"], "ok");
    assert_eq!(
        card["result"]["receipt_id"].as_str(),
        rows[1]["id"].as_str()
    );
}

#[test]
fn a_provider_billing_a_thousand_input_tokens_for_hi_stays_within_the_budget() {
    // Bills 1,000 input tokens for a request of a few dozen bytes, every time.
    let up = fake::start(FakeOptions {
        input_tokens: 1000,
        output_tokens: 5,
        ..FakeOptions::default()
    });
    let limit = d("0.0100");
    let gw = Gw::start(
        &[provider(
            "p",
            &up,
            Protocol::Openai,
            "",
            &model("m", &["x"], Some(("1", "10"))),
        )],
        &format!("budgets: {{daily_usd: \"{limit}\"}}\n"),
        &[],
    );
    let hi = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 20});
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..100)
            .map(|_| s.spawn(|| gw.chat(&hi, &[]).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let rows = gw.receipts(ok);
    let spent: Decimal = rows.iter().filter_map(|r| r["cost"].as_str()).map(d).sum();
    eprintln!(
        "100 concurrent calls billed 1,000 input tokens each: {ok} answered, ${spent} of ${limit}"
    );
    assert!(ok >= 1, "{statuses:?}");
    // The bound: the first call goes alone and teaches the surplus; every later
    // reservation carries it, so spend never passes the budget.
    assert!(spent <= limit, "overshot: ${spent} > ${limit}");
    // It still spends most of the budget (the surplus is not wildly overestimated).
    assert!(ok >= 7, "{ok} calls of $0.00105 in $0.01: {statuses:?}");
}
