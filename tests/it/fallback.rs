//! Gateway fallback and health: each failure a provider can show moves the call to the
//! next candidate (invisibly, before the first streamed byte); a request's own 4xx does
//! not; a provider that keeps failing cools down and is probed back.

use std::time::Duration;

use pas::llm::config::Protocol;
use pas::llm::fake::{self, Fake, FakeOptions, Mode};

use crate::support::gateway::{ask, model, provider, sse_text, Gw};
use crate::support::gateway::{falls_back, pair, wait_breaker};

#[test]
fn a_5xx_falls_back() {
    falls_back(
        "500",
        Some(Mode::Status {
            code: 500,
            retry_after: None,
        }),
        ["http_500"; 2],
    );
}

#[test]
fn a_429_falls_back() {
    falls_back(
        "429",
        Some(Mode::Status {
            code: 429,
            retry_after: Some(0),
        }),
        ["http_429"; 2],
    );
}

#[test]
fn malformed_json_falls_back() {
    falls_back("malformed", Some(Mode::Malformed), ["malformed"; 2]);
}

#[test]
fn a_refused_connection_falls_back() {
    falls_back("refused", None, ["connect_error"; 2]);
}

#[test]
fn a_hung_upstream_times_out_and_falls_back() {
    falls_back("hang", Some(Mode::Hang), ["timeout", "first_token_timeout"]);
}

/// Regression: a 401, 403 or 404 from a provider was passed on as the request's own fault,
/// so a bad key or an unknown model id at one provider failed calls another would serve.
#[test]
fn a_provider_refusing_its_key_or_model_falls_back() {
    for code in [401, 403, 404] {
        falls_back(
            &code.to_string(),
            Some(Mode::Status {
                code,
                retry_after: None,
            }),
            [format!("http_{code}").as_str(); 2],
        );
    }
}

/// Regression: with no other candidate the upstream's 401 reached the caller, whose SDK
/// then says *their* key is wrong; and it never counted toward the provider's breaker.
#[test]
fn a_lone_provider_refusing_its_key_is_a_502_naming_it_and_cools_down() {
    let only = fake::start(FakeOptions::default());
    let gw = Gw::one(&only, Protocol::Openai, "m", Some(("1", "1")), "");
    for (code, stream) in [(401, false), (403, true), (404, false)] {
        only.set_mode(Mode::Status {
            code,
            retry_after: None,
        });
        let r = gw.chat(&ask("m", stream), &[]);
        assert_eq!(r.status, 502, "{code}: {}", r.body);
        let e = &r.json()["error"];
        assert_eq!(e["code"], "upstream_unavailable", "{code}");
        let msg = e["message"].as_str().unwrap();
        assert!(
            msg.contains("p/m") && msg.contains(&format!("HTTP {code}")),
            "names the provider and its status: {msg}"
        );
    }
    assert_eq!(only.requests(), 3);
    // Three provider faults in a row: it cools down like any failing provider.
    let r = gw.chat(&ask("m", false), &[]);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(only.requests(), 3);
}

/// Opens the breaker of the lone provider `p` of `gw` (cool-down 0.5 s) and waits the
/// cool-down out, so the next call is its probe.
fn open_then_half_open(only: &Fake, gw: &Gw) {
    only.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    for _ in 0..3 {
        assert_eq!(gw.chat(&ask("m", false), &[]).status, 502);
    }
    assert_eq!(gw.chat(&ask("m", false), &[]).status, 503, "open");
    wait_breaker(gw, "p", "half-open");
}

/// Regression: a probe answered with a 4xx that is the request's fault left the probe
/// taken forever, and every later call got a 503 until pas restarted.
#[test]
fn a_probe_answered_with_a_400_closes_the_breaker() {
    let only = fake::start(FakeOptions::default());
    let gw = Gw::one(
        &only,
        Protocol::Openai,
        "m",
        Some(("1", "1")),
        "routing: {cooldown_s: 0.5}\n",
    );
    open_then_half_open(&only, &gw);
    only.set_mode(Mode::Status {
        code: 400,
        retry_after: None,
    });
    let r = gw.chat(&ask("m", false), &[]);
    assert_eq!(r.status, 400, "the probe's answer: {}", r.body);
    only.set_mode(Mode::Ok);
    for _ in 0..2 {
        let r = gw.chat(&ask("m", false), &[]);
        assert_eq!(
            r.status, 200,
            "an answered probe closes the breaker: {}",
            r.body
        );
    }
    assert_eq!(only.requests(), 6);
}

/// Regression: a probe answered with a 429 and `Retry-After` held the provider off but
/// kept the probe taken, so after the wait every call still got a 503.
#[test]
fn a_probe_answered_with_a_429_waits_out_its_retry_after_then_probes_again() {
    let only = fake::start(FakeOptions::default());
    let gw = Gw::one(
        &only,
        Protocol::Openai,
        "m",
        Some(("1", "1")),
        "routing: {cooldown_s: 0.5}\n",
    );
    open_then_half_open(&only, &gw);
    only.set_mode(Mode::Status {
        code: 429,
        retry_after: Some(1),
    });
    let r = gw.chat(&ask("m", false), &[]);
    assert_eq!(r.status, 502, "{}", r.body);
    only.set_mode(Mode::Ok);
    let r = gw.chat(&ask("m", false), &[]);
    assert_eq!(r.status, 503, "held off for Retry-After: {}", r.body);
    assert_eq!(only.requests(), 4);
    wait_breaker(&gw, "p", "half-open");
    for _ in 0..2 {
        let r = gw.chat(&ask("m", false), &[]);
        assert_eq!(
            r.status, 200,
            "after the wait, probed and closed: {}",
            r.body
        );
    }
    assert_eq!(only.requests(), 6);
}

#[test]
fn a_stream_without_a_first_token_falls_back() {
    let bad = fake::start(FakeOptions::default());
    let good = fake::start(FakeOptions::default());
    let gw = pair(&bad, &good, "");
    bad.set_mode(Mode::HangStream);
    let r = gw.chat(&ask("cap:x", true), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-pas-provider").as_deref(), Some("good"));
    let rows = gw.receipts(2);
    assert!(
        rows[0]["error"].as_str().unwrap().contains("first"),
        "{:?}",
        rows[0]
    );
}

#[test]
fn a_request_fault_is_not_retried() {
    let bad = fake::start(FakeOptions::default());
    let good = fake::start(FakeOptions::default());
    let gw = pair(&bad, &good, "");
    for code in [400, 413, 422] {
        bad.set_mode(Mode::Status {
            code,
            retry_after: None,
        });
        let r = gw.chat(&ask("cap:x", false), &[]);
        assert_eq!(r.status, code, "{}", r.body);
        assert_eq!(r.json()["error"]["code"], "upstream_rejected");
    }
    assert_eq!(good.requests(), 0, "another provider would refuse it too");
    // A bad request body never leaves pas.
    let r = gw.chat(&serde_json::json!({"model": "cap:x"}), &[]);
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("messages"));
    let r = gw.chat(&ask("cap:nothing-has-this", false), &[]);
    assert_eq!(r.status, 404);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("no model has [nothing-has-this]") && msg.contains("lacks"),
        "{msg}"
    );
}

#[test]
fn a_stream_cut_midway_reaches_the_caller_and_gets_its_receipt() {
    let only = fake::start(FakeOptions {
        chunk_delay: Duration::from_millis(20),
        ..FakeOptions::default()
    });
    let gw = Gw::one(&only, Protocol::Openai, "m", Some(("1", "2")), "");
    only.set_mode(Mode::Cut { after_chunks: 2 });
    let r = gw.chat(&ask("m", true), &[]);
    assert_eq!(r.status, 200);
    let (text, done, frames) = sse_text(&r.body);
    let full = "hello from the fake upstream";
    assert!(
        !text.is_empty() && text.len() < full.len() && full.starts_with(&text),
        "the caller sees the part that came: {text:?}"
    );
    assert!(!done, "a cut stream must not look complete");
    assert_eq!(frames.last().unwrap()["error"]["code"], "upstream_cut");
    let rows = gw.receipts(1);
    assert_eq!(rows[0]["status"], "cut");
    assert_eq!(
        rows[0]["source"], "estimated",
        "no usage came before the cut"
    );
    assert!(rows[0]["output"].as_i64().unwrap() > 0, "{:?}", rows[0]);
    assert!(
        rows[0]["cost"].as_str().is_some(),
        "a cut stream still costs"
    );
}

#[test]
fn a_failing_only_provider_cools_down_then_a_probe_brings_it_back() {
    let only = fake::start(FakeOptions::default());
    let gw = Gw::one(
        &only,
        Protocol::Openai,
        "m",
        Some(("1", "1")),
        "routing: {cooldown_s: 0.5}\n",
    );
    only.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    for _ in 0..3 {
        let r = gw.chat(&ask("m", false), &[]);
        assert_eq!(r.status, 502, "{}", r.body);
    }
    assert_eq!(only.requests(), 3);
    // Open: refused at once, with Retry-After, without troubling the provider.
    let r = gw.chat(&ask("m", false), &[]);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("cooling down"));
    assert_eq!(only.requests(), 3);
    // Still failing at the probe: open again, for twice as long.
    wait_breaker(&gw, "p", "half-open");
    let r = gw.chat(&ask("m", false), &[]);
    assert_eq!(r.status, 502);
    assert_eq!(only.requests(), 4, "exactly one probe");
    let r = gw.chat(&ask("m", false), &[]);
    assert_eq!(r.status, 503);
    // Recovered: the next probe succeeds and closes the breaker.
    only.set_mode(Mode::Ok);
    wait_breaker(&gw, "p", "half-open");
    for _ in 0..3 {
        let r = gw.chat(&ask("m", false), &[]);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(only.requests(), 7);
}

#[test]
fn retry_after_keeps_calls_away_for_that_long() {
    let bad = fake::start(FakeOptions::default());
    let good = fake::start(FakeOptions::default());
    let gw = pair(&bad, &good, "");
    bad.set_mode(Mode::Status {
        code: 429,
        retry_after: Some(1),
    });
    let r = gw.chat(&ask("cap:x", false), &[]);
    assert_eq!(r.header("x-pas-provider").as_deref(), Some("good"));
    bad.set_mode(Mode::Ok);
    for _ in 0..3 {
        let r = gw.chat(&ask("cap:x", false), &[]);
        assert_eq!(r.header("x-pas-provider").as_deref(), Some("good"));
    }
    assert_eq!(
        bad.requests(),
        1,
        "within Retry-After, bad is not asked again"
    );
    wait_breaker(&gw, "bad", "closed");
    let r = gw.chat(&ask("cap:x", false), &[]);
    assert_eq!(r.header("x-pas-provider").as_deref(), Some("bad"));
}

#[test]
fn policies_order_candidates() {
    let local = fake::start(FakeOptions::default());
    let cheap = fake::start(FakeOptions::default());
    let fast = fake::start(FakeOptions::default());
    local.set_mode(Mode::Delay(Duration::from_millis(150)));
    cheap.set_mode(Mode::Delay(Duration::from_millis(80)));
    let gw = Gw::start(
        &[
            provider(
                "local",
                &local,
                Protocol::Openai,
                "    local: true\n",
                &model("l", &["x"], Some(("0.5", "0.5"))),
            ),
            provider(
                "cheap",
                &cheap,
                Protocol::Openai,
                "",
                &model("c", &["x"], Some(("0.1", "0.1"))),
            ),
            provider(
                "fast",
                &fast,
                Protocol::Anthropic,
                "",
                &model("f", &["x"], Some(("2", "2"))),
            ),
        ],
        "",
        &[],
    );
    let via = |policy: &str| {
        let r = gw.chat(&ask("cap:x", false), &[("x-pas-policy", policy)]);
        assert_eq!(r.status, 200, "{}", r.body);
        r.header("x-pas-provider").unwrap()
    };
    assert_eq!(via("local"), "local");
    assert_eq!(via("cheapest"), "cheap");
    // `fastest` tries what it has not measured after what it has; measure all three.
    let _ = gw.chat(&ask("f", false), &[]);
    assert_eq!(via("fastest"), "fast");
    // A named model skips the choice.
    let r = gw.chat(&ask("l", false), &[("x-pas-policy", "cheapest")]);
    assert_eq!(r.header("x-pas-provider").as_deref(), Some("local"));
    let r = gw.chat(&ask("cap:x", false), &[("x-pas-policy", "nope")]);
    assert_eq!(r.status, 400);
}

/// `ask` with OpenAI's deprecated `functions`, which the Messages API has no form for.
fn ask_with_functions(model: &str, stream: bool) -> serde_json::Value {
    let mut body = ask(model, stream);
    body["functions"] = serde_json::json!([{"name": "f", "parameters": {"type": "object"}}]);
    body
}

/// `an` (anthropic protocol, cheaper: tried first under `cheapest`) and `oa` (openai),
/// both serving capability `x`, cooling down for 0.5 s after three failures.
fn anthropic_then_openai(an: &Fake, oa: &Fake) -> Gw {
    Gw::start(
        &[
            provider(
                "an",
                an,
                Protocol::Anthropic,
                "",
                &model("m-an", &["x"], Some(("0.10", "0.10"))),
            ),
            provider(
                "oa",
                oa,
                Protocol::Openai,
                "",
                &model("m-oa", &["x"], Some(("1", "1"))),
            ),
        ],
        "routing: {policy: cheapest, cooldown_s: 0.5}\n",
        &[],
    )
}

/// Regression: a request the Messages API cannot say (here `functions`) was answered 400
/// by pas as if the anthropic provider had refused it, though an openai candidate would
/// have taken it; and it was receipted as an `http_400` attempt that never left pas.
#[test]
fn a_request_one_protocol_cannot_say_goes_to_a_provider_of_the_other() {
    let an = fake::start(FakeOptions::default());
    let oa = fake::start(FakeOptions::default());
    let gw = anthropic_then_openai(&an, &oa);
    for stream in [false, true] {
        let r = gw.chat(&ask_with_functions("cap:x", stream), &[]);
        assert_eq!(r.status, 200, "stream={stream}: {}", r.body);
        assert_eq!(r.header("x-pas-provider").as_deref(), Some("oa"));
    }
    assert_eq!(an.requests(), 0, "nothing went to the anthropic provider");
    let (_, sent) = oa.last_request().unwrap();
    assert_eq!(sent["functions"][0]["name"], "f", "passed on as it came");
    // Only the calls that were made have receipts: one each, the first attempt.
    let r = gw.chat(&ask("cap:x", false), &[]);
    assert_eq!(r.header("x-pas-provider").as_deref(), Some("an"));
    let rows = gw.receipts(3);
    let seen: Vec<(&str, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["provider"].as_str().unwrap(),
                r["attempt"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [("oa", 1), ("oa", 1), ("an", 1)], "{rows:?}");
}

/// Regression: an untranslatable request counted as the provider answering, so the probe
/// of a provider that was down closed its breaker and traffic went back to it.
#[test]
fn an_untranslatable_probe_leaves_the_breaker_half_open() {
    let an = fake::start(FakeOptions::default());
    let oa = fake::start(FakeOptions::default());
    let gw = anthropic_then_openai(&an, &oa);
    an.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    for _ in 0..3 {
        let r = gw.chat(&ask("cap:x", false), &[]);
        assert_eq!(r.header("x-pas-provider").as_deref(), Some("oa"));
    }
    assert_eq!(an.requests(), 3, "open now");
    wait_breaker(&gw, "an", "half-open");
    // Half-open: this call takes the probe, but nothing can be sent to `an`.
    let r = gw.chat(&ask_with_functions("cap:x", false), &[]);
    assert_eq!(r.header("x-pas-provider").as_deref(), Some("oa"));
    assert_eq!(an.requests(), 3);
    // Still half-open: the next call probes it, which fails and reopens the breaker, so
    // the call after it does not go there (as it would to a provider judged healthy).
    for _ in 0..2 {
        let r = gw.chat(&ask("cap:x", false), &[]);
        assert_eq!(r.header("x-pas-provider").as_deref(), Some("oa"));
    }
    assert_eq!(an.requests(), 4, "one probe, then cooling down again");
}

/// With no candidate that can say it, the request is the caller's 400 naming the field:
/// nothing sent, no receipt, its budget hold released.
#[test]
fn a_request_no_candidate_can_say_is_a_400_naming_the_field() {
    let an = fake::start(FakeOptions::default());
    // Room for one call's worst case (its bytes as input at $1/Mtok, 50 output at $10),
    // not two: a hold left behind would refuse the next call.
    let gw = Gw::one(
        &an,
        Protocol::Anthropic,
        "m",
        Some(("1", "10")),
        "budgets: {daily_usd: \"0.001\"}\n",
    );
    for stream in [false, true] {
        let r = gw.chat(&ask_with_functions("m", stream), &[]);
        assert_eq!(r.status, 400, "{}", r.body);
        let e = &r.json()["error"];
        assert_eq!(e["code"], "untranslatable_request");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains("p/m") && msg.contains("`functions`"), "{msg}");
    }
    assert_eq!(an.requests(), 0);
    let r = gw.chat(&ask("m", false), &[]);
    assert_eq!(r.status, 200, "no hold left behind: {}", r.body);
    let rows = gw.receipts(1);
    assert_eq!(rows.len(), 1, "only the call that was made: {rows:?}");
    assert_eq!(rows[0]["attempt"], 1);
}
