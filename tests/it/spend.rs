//! Money through the gateway: budgets under concurrency, alerts, job budgets, models
//! without a price, exact decimal sums, LLM job cards, and secrets kept out of every file.

use std::time::Duration;

use pas::llm::config::Protocol;
use pas::llm::fake::{self, FakeOptions, Mode};
use serde_json::Value;

use crate::support::gateway::events;
use crate::support::gateway::{ask, model, provider, Gw};
use crate::support::workspace::wait_until;

/// Sum of the receipts' costs, exactly.
fn spent(rows: &[Value]) -> rust_decimal::Decimal {
    rows.iter()
        .filter_map(|r| r["cost"].as_str())
        .map(|c| c.parse::<rust_decimal::Decimal>().unwrap())
        .sum()
}

#[test]
fn fifty_concurrent_calls_never_overshoot_the_budget_and_alert_once_per_threshold() {
    let paid = fake::start(FakeOptions {
        output_tokens: 50,
        ..FakeOptions::default()
    });
    paid.set_mode(Mode::Delay(Duration::from_millis(300)));
    let free = fake::start(FakeOptions::default());
    let gw = Gw::start(
        &[
            provider(
                "paid",
                &paid,
                Protocol::Openai,
                "",
                &model("m", &["x"], Some(("1", "10"))),
            ),
            provider(
                "free",
                &free,
                Protocol::Openai,
                "    local: true\n",
                &model("l", &["x"], Some(("0", "0"))),
            ),
        ],
        "budgets: {daily_usd: \"0.005\"}\n",
        &[],
    );
    let limit: rust_decimal::Decimal = "0.005".parse().unwrap();
    let statuses: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                s.spawn(|| {
                    let r = gw.chat(&ask("m", false), &[]);
                    (r.status, r.json())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    // Refused while others' reservations fill the budget (429, worth a retry), or once
    // what is spent leaves no room (402, final).
    let refused: Vec<&(u16, Value)> = statuses
        .iter()
        .filter(|(s, _)| *s == 429 || *s == 402)
        .collect();
    assert!(ok >= 1, "{statuses:?}");
    assert_eq!(ok + refused.len(), 50, "{statuses:?}");
    assert!(
        !refused.is_empty(),
        "50 calls of up to $0.00065 each cannot all fit in $0.005"
    );
    for (status, v) in &refused {
        let code = if *status == 402 {
            "budget_exceeded"
        } else {
            "budget_reserved"
        };
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("daily budget"));
    }
    let rows = gw.receipts(ok);
    assert!(
        spent(&rows) <= limit,
        "overshot: {} > {limit}",
        spent(&rows)
    );
    // Go on one by one until refused: each threshold alerts once, then no more.
    paid.set_mode(Mode::Ok);
    let mut more = 0;
    for _ in 0..12 {
        if gw.chat(&ask("m", false), &[]).status == 200 {
            more += 1;
        }
    }
    let rows = gw.receipts(ok + more);
    assert!(
        spent(&rows) <= limit,
        "overshot: {} > {limit}",
        spent(&rows)
    );
    // Free local models still run at 100 %.
    let r = gw.chat(&ask("l", false), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    gw.receipts(ok + more + 1);
    let alerts = wait_until("three alerts", Duration::from_secs(5), || {
        let a = events(&gw, "budget.alert");
        if a.len() >= 3 {
            Ok(a)
        } else {
            Err(format!("{a:?}"))
        }
    });
    let thresholds: Vec<&str> = alerts
        .iter()
        .map(|a| a["threshold"].as_str().unwrap())
        .collect();
    assert_eq!(thresholds, vec!["0.75", "0.9", "1"], "{alerts:?}");
    assert!(alerts
        .iter()
        .all(|a| a["scope"] == "daily" && a["limit_usd"] == "0.005"));
}

#[test]
fn a_job_budget_caps_that_job_only() {
    let up = fake::start(FakeOptions {
        output_tokens: 50,
        ..FakeOptions::default()
    });
    let gw = Gw::paid(&up, "");
    // A card no agent can take, so it stays put while calls are made for it.
    gw.ws.drop_card(
        "J-capped",
        "title: capped\nrequires: [nobody-has-this]\nbudget_usd: \"0.001\"\n",
    );
    let job = [("x-pas-job", "J-capped"), ("x-pas-agent", "a1")];
    assert_eq!(gw.chat(&ask("m", false), &job).status, 200);
    let r = gw.chat(&ask("m", false), &job);
    assert_eq!(r.status, 402, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "budget_exceeded");
    assert!(r.header("retry-after").is_none());
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("job J-capped budget"));
    // Other jobs are not held back.
    assert_eq!(
        gw.chat(&ask("m", false), &[("x-pas-job", "J-other")])
            .status,
        200
    );
    let rows = gw.receipts(2);
    assert_eq!(rows[0]["job"], "J-capped");
    assert_eq!(rows[0]["agent"], "a1");
}

/// Regression: an exhausted budget was answered 429, which OpenAI SDKs retry on their own
/// (they retry 408, 409, 429 and 5xx), hammering a budget that cannot recover today. Only
/// a refusal caused by calls still in flight is worth a retry: 429 with `Retry-After`.
#[test]
fn an_exhausted_budget_is_a_402_and_one_full_of_reservations_a_429() {
    let up = fake::start(FakeOptions {
        output_tokens: 50,
        ..FakeOptions::default()
    });
    // Each call may cost ~$0.00065 and costs $0.000512. A first call teaches the model's
    // input surplus (until then its calls go one at a time, see gateway::surplus); after
    // it, one more fits in $0.0016, two do not.
    let gw = Gw::paid(&up, "budgets: {daily_usd: \"0.0016\"}\n");
    assert_eq!(gw.chat(&ask("m", false), &[]).status, 200);
    up.set_mode(Mode::Delay(Duration::from_millis(800)));
    let (first, second) = std::thread::scope(|s| {
        let first = s.spawn(|| gw.chat(&ask("m", false), &[]));
        wait_until("the first call upstream", Duration::from_secs(5), || {
            if up.requests() == 2 {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        });
        let second = gw.chat(&ask("m", false), &[]);
        (first.join().unwrap(), second)
    });
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        second.status, 429,
        "only a reservation is in the way: {}",
        second.body
    );
    assert_eq!(second.json()["error"]["code"], "budget_reserved");
    assert!(second.header("retry-after").is_some());
    // The first call settled: what is spent leaves no room, a retry cannot help.
    let r = gw.chat(&ask("m", false), &[]);
    assert_eq!(r.status, 402, "{}", r.body);
    let e = &r.json()["error"];
    assert_eq!(e["code"], "budget_exceeded");
    assert_eq!(e["type"], "insufficient_quota");
    assert!(r.header("retry-after").is_none());
    assert_eq!(up.requests(), 2);
}

/// Regression: a timed-out attempt was booked at $0, although the provider had the
/// request and may bill its input. It is booked at the input estimated from the request.
#[test]
fn a_timed_out_attempt_is_booked_at_its_estimated_input() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::one(&up, Protocol::Openai, "m", Some(("2", "100")), "");
    up.set_mode(Mode::Hang);
    assert_eq!(gw.chat(&ask("m", false), &[]).status, 502);
    up.set_mode(Mode::HangStream);
    assert_eq!(gw.chat(&ask("m", true), &[]).status, 502);
    up.stop(); // refused: the provider never had the request
    assert_eq!(gw.chat(&ask("m", false), &[]).status, 502);
    let rows = gw.receipts(3);
    let messages = serde_json::to_vec(&ask("m", false)["messages"]).unwrap();
    let input = messages.len().div_ceil(4) as u64;
    let cost = (rust_decimal::Decimal::from(input * 2) / rust_decimal::Decimal::from(1_000_000))
        .normalize()
        .to_string();
    for (row, kind) in rows[..2].iter().zip(["timeout", "first_token_timeout"]) {
        assert!(row["error"].as_str().unwrap().starts_with(kind), "{row:?}");
        assert_eq!(row["input"].as_u64(), Some(input), "{row:?}");
        assert_eq!(row["output"], 0, "{row:?}");
        assert_eq!(row["source"], "estimated", "{row:?}");
        assert_eq!(row["cost"].as_str(), Some(cost.as_str()), "{row:?}");
    }
    assert_eq!(rows[2]["input"], 0, "{:?}", rows[2]);
    assert_eq!(rows[2]["cost"], "0", "{:?}", rows[2]);
    let costs = gw.ws.pas_json(&["costs", "--json"]);
    let total: rust_decimal::Decimal =
        cost.parse::<rust_decimal::Decimal>().unwrap() * rust_decimal::Decimal::from(2);
    assert_eq!(costs["total"]["cost_usd"], total.normalize().to_string());
}

#[test]
fn a_model_without_a_price_costs_null_with_a_warning_never_zero() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::one(&up, Protocol::Openai, "unpriced", None, "");
    let r = gw.chat(&ask("unpriced", false), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-pas-cost-usd").as_deref(), Some("unknown"));
    let rows = gw.receipts(1);
    assert!(rows[0]["cost"].is_null(), "{:?}", rows[0]);
    let costs = gw.ws.pas_json(&["costs", "--json"]);
    assert_eq!(costs["total"]["unpriced_calls"], 1);
    wait_until("the warning", Duration::from_secs(5), || {
        let log = gw._daemon.log_text();
        if log.contains("p/unpriced") && log.contains("no price_per_mtok") {
            Ok(())
        } else {
            Err("no warning yet".to_string())
        }
    });
}

#[test]
fn a_price_of_fifteen_cents_sums_exactly_over_many_calls() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::one(&up, Protocol::Openai, "m", Some(("0.15", "0")), "");
    for i in 0..100 {
        let r = gw.chat(&ask("m", i % 2 == 1), &[]);
        assert_eq!(r.status, 200);
    }
    gw.receipts(100);
    // 100 × 12 tokens × $0.15 / 1e6, with no float anywhere to round it.
    let costs = gw.ws.pas_json(&["costs", "--json"]);
    assert_eq!(costs["total"]["cost_usd"], "0.00018");
    assert_eq!(costs["total"]["calls"], 100);
}

#[test]
fn llm_job_cards_are_run_by_pas_into_done_or_failed() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::start(
        &[provider(
            "p",
            &up,
            Protocol::Anthropic,
            "",
            &model("m", &["summarize"], Some(("1", "1"))),
        )],
        "",
        &[],
    );
    gw.ws.drop_card(
        "J-sum",
        "title: summarize\nllm:\n  require_caps: [summarize]\n  messages:\n    - {role: user, content: \"sum it up\"}\n  max_tokens: 40\n",
    );
    gw.ws.drop_card(
        "J-nope",
        "title: impossible\nllm:\n  model: no-such-model\n  messages:\n    - {role: user, content: hi}\n",
    );
    let done = gw.ws.wait_state("J-sum", "done");
    let result = &done["result"];
    assert_eq!(
        result["text"].as_str(),
        Some("hello from the fake upstream")
    );
    assert_eq!(result["model"].as_str(), Some("m"));
    assert_eq!(result["tokens"]["input"].as_u64(), Some(12));
    assert_eq!(result["cost_usd"].as_str(), Some("0.000017"));
    let receipt = result["receipt_id"].as_str().unwrap().to_string();
    let rows = gw.receipts(1);
    assert_eq!(rows[0]["id"], receipt.as_str());
    assert_eq!(rows[0]["job"], "J-sum");
    let (_, sent) = up.last_request().unwrap();
    assert_eq!(sent["max_tokens"], 40);
    let failed = gw.ws.wait_state("J-nope", "failed");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("no-such-model"), "{error}");
}

#[test]
fn a_missing_key_disables_only_its_provider_and_secrets_are_never_written() {
    let keyed = fake::start(FakeOptions::default());
    let unkeyed = fake::start(FakeOptions::default());
    let secret = "sk-live-TOPSECRET-4242";
    let gw = Gw::start(
        &[
            provider(
                "nokey",
                &unkeyed,
                Protocol::Openai,
                "    api_key_env: PAS_TEST_SURELY_UNSET\n",
                &model("cheap", &["x"], Some(("0.1", "0.1"))),
            ),
            provider(
                "keyed",
                &keyed,
                Protocol::Openai,
                "    api_key_env: PAS_TEST_SECRET_KEY\n",
                &model("dear", &["x"], Some(("1", "1"))),
            ),
        ],
        "routing: {policy: cheapest}\n",
        &[("PAS_TEST_SECRET_KEY", secret)],
    );
    for stream in [false, true] {
        let r = gw.chat(&ask("cap:x", stream), &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("x-pas-provider").as_deref(), Some("keyed"));
    }
    assert_eq!(unkeyed.requests(), 0);
    let (headers, _) = keyed.last_request().unwrap();
    assert!(headers
        .iter()
        .any(|(k, v)| k == "authorization" && v == &format!("Bearer {secret}")));
    let r = gw.chat(&ask("cheap", false), &[]);
    assert_eq!(r.status, 502);
    assert!(r.body.contains("PAS_TEST_SURELY_UNSET"), "{}", r.body);
    keyed.set_mode(Mode::Status {
        code: 401,
        retry_after: None,
    });
    let _ = gw.chat(&ask("dear", false), &[]);
    gw.receipts(3);
    let log_path = gw._daemon.log.clone();
    drop(gw._daemon); // stopped: everything it would write is written
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(
        log.contains("PAS_TEST_SURELY_UNSET"),
        "the missing key is named at start"
    );
    assert!(!log.contains(secret), "the daemon log holds the key");
    let history = gw.ws.git(&["log", "-p", "--all"]);
    assert!(!history.contains(secret), "a commit holds the key");
    let mut seen = Vec::new();
    for entry in walkdir::WalkDir::new(&gw.ws.root).into_iter().flatten() {
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                seen.push(entry.path().display().to_string());
            }
        }
    }
    assert!(seen.is_empty(), "the key was written to {seen:?}");
}

#[test]
fn sigterm_mid_traffic_loses_no_receipt() {
    let up = fake::start(FakeOptions::default());
    up.set_mode(Mode::Delay(Duration::from_millis(300)));
    let mut gw = Gw::one(&up, Protocol::Openai, "m", Some(("1", "1")), "");
    let url = format!("{}/v1/chat/completions", gw.url);
    let answered = std::thread::scope(|s| {
        let calls: Vec<_> = (0..30)
            .map(|i| {
                let url = url.clone();
                s.spawn(move || {
                    let body = ask("m", i % 2 == 0);
                    crate::support::http::try_send("POST", &url, &[], Some(&body))
                        .is_ok_and(|r| r.status == 200 && !r.body.contains("upstream_cut"))
                })
            })
            .collect();
        // Mid traffic: calls have reached the upstream, which holds each 300 ms.
        wait_until("calls in flight", Duration::from_secs(10), || {
            (up.requests() > 0)
                .then_some(())
                .ok_or("none yet".to_string())
        });
        let status = gw._daemon.stop();
        assert!(status.success(), "{status}");
        calls
            .into_iter()
            .filter_map(|c| c.join().unwrap().then_some(()))
            .count()
    });
    assert!(
        answered > 0,
        "in-flight calls finish before the daemon exits"
    );
    let rows = super::gateway::read_all_receipts(&gw.ws);
    let ok = rows.iter().filter(|r| r["status"] == "ok").count();
    assert_eq!(
        ok, answered,
        "every answered call has its receipt: {rows:?}"
    );
}
