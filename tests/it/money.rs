//! Money at the edges: calls in flight when pas stops, per-agent budgets, thresholds of the
//! user's choosing, the month and job views of `pas costs`, and `n` choices in the worst case.

use std::io::Write;
use std::time::Duration;

use pas::llm::config::Protocol;
use pas::llm::fake::{self, FakeOptions, Mode};
use serde_json::{json, Value};

use crate::support::gateway::{ask, read_all_receipts, Gw};
use crate::support::workspace::{wait_until, WAIT};

/// The `budget.alert` events' scopes and thresholds, in order.
fn alert_thresholds(gw: &Gw) -> Vec<String> {
    crate::support::gateway::events(gw, "budget.alert")
        .iter()
        .map(|v| {
            format!(
                "{} {}",
                v["scope"].as_str().unwrap(),
                v["threshold"].as_str().unwrap()
            )
        })
        .collect()
}

/// Waits for the first request to reach the fake upstream `up`: a call is in flight.
fn wait_call_started(up: &fake::Fake) {
    wait_until("the call to start", Duration::from_secs(10), || {
        (up.requests() >= 1)
            .then_some(())
            .ok_or("no request yet".to_string())
    });
}

#[test]
fn sigterm_lets_an_llm_cards_call_finish_into_done_with_its_receipt() {
    let up = fake::start(FakeOptions::default());
    up.set_mode(Mode::Delay(Duration::from_millis(1500)));
    let mut gw = Gw::one(&up, Protocol::Openai, "m", Some(("1", "1")), "");
    gw.ws.drop_card(
        "J-late",
        "title: late\nllm:\n  model: m\n  messages:\n    - {role: user, content: hi}\n",
    );
    wait_call_started(&up);
    assert!(gw._daemon.stop().success());
    // Bought and paid for before pas stopped: the answer is kept, not bought again later.
    assert_eq!(gw.ws.places_of("J-late"), vec!["done".to_string()]);
    let card = gw.ws.card("J-late");
    let rows = read_all_receipts(&gw.ws);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "ok");
    assert_eq!(
        card["result"]["receipt_id"].as_str(),
        rows[0]["id"].as_str()
    );
    assert_eq!(
        gw.ws.git_status(&["work"]),
        Vec::<String>::new(),
        "committed"
    );
}

#[test]
fn pas_waits_for_a_long_paid_call_at_stop_unless_told_twice() {
    let up = fake::start(FakeOptions::default());
    up.set_mode(Mode::Delay(Duration::from_secs(30)));
    let mut gw = Gw::start(
        &[crate::support::gateway::provider(
            "p",
            &up,
            Protocol::Openai,
            "    timeout_s: 60\n",
            &crate::support::gateway::model("m", &["x"], Some(("1", "1"))),
        )
        .replace("    timeout_s: 2\n", "")],
        "",
        &[],
    );
    gw.ws.drop_card(
        "J-long",
        "title: long\nllm:\n  model: m\n  messages:\n    - {role: user, content: hi}\n",
    );
    wait_call_started(&up);
    gw._daemon.term();
    // Still waiting for the call (its provider allows it 60 s), and saying how to stop now
    // (how long it waits is `server::tests`' business, on a paused clock).
    wait_until("the drain's notice", WAIT, || {
        let log = gw._daemon.log_text();
        match log.contains("a second SIGTERM stops now") {
            true => Ok(()),
            false => Err(log),
        }
    });
    gw._daemon.assert_running();
    gw._daemon.term();
    let status = gw._daemon.wait_exit(Duration::from_secs(5));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    // Nothing came back, so nothing is recorded: the card runs again after the restart.
    assert_eq!(gw.ws.places_of("J-long"), vec!["inbox".to_string()]);
}

#[test]
fn a_call_whose_caller_left_is_receipted_even_when_pas_stops() {
    let up = fake::start(FakeOptions::default());
    up.set_mode(Mode::Delay(Duration::from_millis(1500)));
    let mut gw = Gw::one(&up, Protocol::Openai, "m", Some(("1", "1")), "");
    let addr = gw.url.trim_start_matches("http://").to_string();
    let body = serde_json::to_string(&ask("m", false)).unwrap();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    wait_call_started(&up);
    drop(conn); // the caller hangs up; the call goes on
    assert!(gw._daemon.stop().success());
    let rows = read_all_receipts(&gw.ws);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "ok");
}

#[test]
fn an_agent_budget_caps_that_agent_only_and_alerts_at_the_users_thresholds() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::paid(
        &up,
        "budgets: {agent_daily_usd: \"0.001\", alert_at: [0.25, 0.9]}\n",
    );
    let mut body = ask("m", false);
    body["max_tokens"] = json!(5);
    let a1 = [("x-pas-agent", "a1")];
    let mut answered = 0;
    let refusal = loop {
        let r = gw.chat(&body, &a1);
        if r.status != 200 {
            break r;
        }
        answered += 1;
        assert!(answered < 100, "agent a1 was never held back");
    };
    let err = refusal.json();
    assert_eq!(err["error"]["code"], "budget_exceeded", "{}", refusal.body);
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.contains("agent a1 budget of $0.001"), "{msg}");
    // Another agent, and a call with no agent, are not held back by a1's spending.
    assert_eq!(gw.chat(&body, &[("x-pas-agent", "a2")]).status, 200);
    assert_eq!(gw.chat(&body, &[]).status, 200);
    let rows = gw.receipts(answered + 2);
    let a1_spent: rust_decimal::Decimal = rows
        .iter()
        .filter(|r| r["agent"] == "a1")
        .map(|r| {
            r["cost"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    assert!(a1_spent <= "0.001".parse().unwrap(), "overshot: {a1_spent}");
    // The threshold crossed alerts once. Refusals start near 76 % (the next call's worst
    // case no longer fits), so 90 % is never crossed, and no 100 % alert was asked for.
    wait_until("the alert", Duration::from_secs(5), || {
        let a = alert_thresholds(&gw);
        (!a.is_empty()).then_some(()).ok_or(format!("{a:?}"))
    });
    // The events reach the database in the order they were published, and a call's alerts
    // right after its receipt: once the last call's receipt event is in, every alert an
    // agent's call crossed is too (the last call has no agent, so no agent budget).
    wait_until("every receipt's event", Duration::from_secs(5), || {
        let n = crate::support::gateway::events(&gw, "cost.receipt").len();
        (n >= answered + 2)
            .then_some(())
            .ok_or(format!("{n} receipt events"))
    });
    assert_eq!(alert_thresholds(&gw), ["agent a1 0.25"]);
    let costs = gw.ws.pas_json(&["costs", "--json"]);
    let by_agent = costs["by_agent"].as_array().unwrap();
    let a1 = by_agent.iter().find(|t| t["key"] == "a1").unwrap();
    assert_eq!(a1["calls"], answered);
    assert_eq!(
        a1["cost_usd"]
            .as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap(),
        a1_spent
    );
    // Each agent's gauge against its daily budget, the fullest first; the call without an
    // agent has none (no agent budget holds it).
    let gauges = costs["budgets"]["agents"].as_array().unwrap();
    let agents: Vec<&str> = gauges
        .iter()
        .map(|g| g["agent"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["a1", "a2"], "{gauges:?}");
    let d = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap()
    };
    assert_eq!(gauges[0]["limit_usd"], "0.001");
    assert_eq!(d(&gauges[0]["spent_usd"]), a1_spent);
    assert_eq!(
        d(&gauges[0]["remaining_usd"]),
        d(&gauges[0]["limit_usd"]) - a1_spent
    );
    assert_eq!(
        d(&gauges[0]["share"]),
        (a1_spent / d(&gauges[0]["limit_usd"])).round_dp(4)
    );
    assert!(d(&gauges[1]["share"]) < d(&gauges[0]["share"]));
    // `pas costs` prints them too, beside the by-status table.
    let text = gw.ws.pas_ok(&["costs"]);
    let a1_line = text
        .lines()
        .find(|l| l.contains("a1") && l.contains("0.001"))
        .unwrap_or_else(|| panic!("no a1 gauge: {text}"));
    assert!(
        a1_line.contains(&a1_spent.normalize().to_string()),
        "{a1_line}"
    );
    assert!(
        text.contains("AGENT TODAY") && text.contains("STATUS"),
        "{text}"
    );
}

#[test]
fn costs_by_month_and_job_add_up_exactly() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::one(&up, Protocol::Anthropic, "m", Some(("0.15", "0.6")), "");
    for (job, n) in [("J-a", 3), ("J-b", 2)] {
        for i in 0..n {
            let r = gw.chat(&ask("m", i % 2 == 0), &[("x-pas-job", job)]);
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }
    gw.receipts(5);
    let costs = gw.ws.pas_json(&["costs", "--json"]);
    // Each call: 12 input tokens at $0.15/M and 5 output at $0.60/M = $0.0000048.
    let each: rust_decimal::Decimal = "0.0000048".parse().unwrap();
    let usd = |v: &Value| {
        v["cost_usd"]
            .as_str()
            .unwrap()
            .parse::<rust_decimal::Decimal>()
            .unwrap()
    };
    assert_eq!(usd(&costs["month"]), each * rust_decimal::Decimal::from(5));
    assert_eq!(usd(&costs["today"]), usd(&costs["month"]));
    assert_eq!(usd(&costs["total"]), usd(&costs["month"]));
    let jobs = costs["by_job"].as_array().unwrap();
    let job = |k: &str| {
        jobs.iter()
            .find(|t| t["key"] == k)
            .unwrap_or_else(|| panic!("{k}: {jobs:?}"))
    };
    assert_eq!(
        (usd(job("J-a")), job("J-a")["calls"].clone()),
        (each * rust_decimal::Decimal::from(3), json!(3))
    );
    assert_eq!(
        (usd(job("J-b")), job("J-b")["calls"].clone()),
        (each * rust_decimal::Decimal::from(2), json!(2))
    );
}

#[test]
fn the_worst_case_counts_every_choice_asked_for() {
    let up = fake::start(FakeOptions::default());
    // One choice of 100 tokens fits in $0.002; four of them may not, so the call is refused
    // before anything is spent.
    let gw = Gw::paid(&up, "budgets: {daily_usd: \"0.002\"}\n");
    let mut body = ask("m", false);
    body["max_tokens"] = json!(100);
    assert_eq!(gw.chat(&body, &[]).status, 200);
    body["n"] = json!(4);
    let r = gw.chat(&body, &[]);
    assert_ne!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "budget_exceeded");
    body["n"] = json!(0);
    let r = gw.chat(&body, &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("`n`"), "{}", r.body);
    assert_eq!(up.requests(), 1);
}

#[test]
fn an_llm_card_waits_out_a_budget_held_by_calls_in_flight() {
    let up = fake::start(FakeOptions::default());
    up.set_mode(Mode::Delay(Duration::from_millis(1500)));
    // Room for one call's worst case at a time: the card's call is refused while the
    // caller's is in flight, not because the budget is spent.
    let gw = Gw::paid(&up, "budgets: {daily_usd: \"0.001\"}\n");
    std::thread::scope(|s| {
        let caller = s.spawn(|| gw.chat(&ask("m", false), &[]).status);
        wait_call_started(&up);
        gw.ws.drop_card(
            "J-patient",
            "title: patient\nllm:\n  model: m\n  max_tokens: 40\n  messages:\n    - {role: user, content: hi}\n",
        );
        assert_eq!(caller.join().unwrap(), 200);
    });
    let done = gw.ws.wait_state("J-patient", "done");
    assert!(done["result"]["receipt_id"].as_str().is_some(), "{done:?}");
    assert_eq!(up.requests(), 2);
}

#[test]
fn a_spent_budget_is_not_final_while_a_free_model_only_cools_down() {
    let free = fake::start(FakeOptions::default());
    let paid = fake::start(FakeOptions::default());
    let gw = Gw::start(
        &[
            crate::support::gateway::provider(
                "home",
                &free,
                Protocol::Openai,
                "    local: true\n",
                &crate::support::gateway::model("l", &["x"], Some(("0", "0"))),
            ),
            crate::support::gateway::provider(
                "cloud",
                &paid,
                Protocol::Openai,
                "",
                &crate::support::gateway::model("c", &["x"], Some(("1", "10"))),
            ),
        ],
        // No paid call fits: every one is refused as over budget.
        "budgets: {daily_usd: \"0.0001\"}\nrouting: {cooldown_s: 1}\n",
        &[],
    );
    free.set_mode(Mode::Status {
        code: 500,
        retry_after: None,
    });
    for _ in 0..3 {
        assert_eq!(gw.chat(&ask("cap:x", false), &[]).status, 502);
    }
    // The free model cools down: come back soon, rather than "budget spent, give up".
    let r = gw.chat(&ask("cap:x", false), &[]);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.header("retry-after").is_some(), "{r:?}");
    free.set_mode(Mode::Ok);
    crate::support::gateway::wait_breaker(&gw, "home", "half-open");
    let r = gw.chat(&ask("cap:x", false), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-pas-provider").as_deref(), Some("home"));
    assert_eq!(paid.requests(), 0);
}

#[test]
fn an_image_is_reserved_by_its_pixels_not_its_base64_bytes() {
    let up = fake::start(FakeOptions::default());
    // A megabyte of base64 read as text would be ~$1 of input at $1/Mtok; as an image it
    // is at most 2,000 tokens, so it fits in $0.01.
    let gw = Gw::paid(&up, "budgets: {daily_usd: \"0.01\"}\n");
    let data = format!("data:image/png;base64,{}", "iVBORw0K".repeat(131_072));
    let mut body = ask("m", false);
    body["messages"][1]["content"] = json!([
        {"type": "text", "text": "what is in this picture?"},
        {"type": "image_url", "image_url": {"url": data}}]);
    let r = gw.chat(&body, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    // Two such images still fit; the text around them is still counted as text.
    let mut two = body.clone();
    let parts = two["messages"][1]["content"].as_array_mut().unwrap();
    parts.push(json!({"type": "image_url", "image_url": {"url": data}}));
    assert_eq!(gw.chat(&two, &[]).status, 200);
    // Text is still counted as text: 9 MB of it is far beyond $0.01.
    let mut text = body.clone();
    text["messages"][1]["content"][0]["text"] = json!("x".repeat(9_000_000));
    let r = gw.chat(&text, &[]);
    assert_eq!(r.json()["error"]["code"], "budget_exceeded", "{}", r.body);
    assert_eq!(up.requests(), 2);
}
