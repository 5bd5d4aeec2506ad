//! `POST /api/replays` (SPEC sections 11 and 13): the dashboard's one write. Accepted from
//! its own origin with the anti-forgery header and the token, it writes the same card as
//! `pas replay`; refused (and nothing written) cross-origin, without the header, without
//! the token, and gone with `dashboard: {replay: false}`.

use pas::llm::fake::{self, FakeOptions};
use serde_json::{json, Value};

use crate::support::gateway::{ask, Gw};
use crate::support::http::raw;
use crate::support::traces::replay_receipts;
use crate::support::traces::spans_when;
use crate::support::workspace::Workspace;

const TOKEN: &str = "replay-token-5521";

/// Every card file in inbox/, done/ and failed/.
fn cards(ws: &Workspace) -> usize {
    ["inbox", "done", "failed"]
        .iter()
        .flat_map(|d| {
            std::fs::read_dir(ws.work(d))
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|e| e.file_name().to_string_lossy().ends_with(".yaml"))
        .count()
}

/// A recorded call on a fresh daemon (`more` of pas.yaml, token set); its target.
fn recorded(more: &str) -> (Gw, String, fake::Fake) {
    let up = fake::start(FakeOptions::default());
    let bearer = format!("Bearer {TOKEN}");
    let gw = Gw::start(
        &[crate::support::gateway::provider(
            "p",
            &up,
            pas::llm::config::Protocol::Openai,
            "",
            &crate::support::gateway::model("m", &["x"], Some(("1", "10"))),
        )],
        more,
        &[("PAS_TOKEN", TOKEN)],
    );
    let r = gw.chat(&ask("m", false), &[("authorization", &bearer)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let trace = r.header("x-pas-trace-id").unwrap();
    let target = format!("{trace}/{}", r.header("x-pas-span-id").unwrap());
    spans_when(&gw.ws, &trace, "the recorded call", |s| s.len() == 1);
    (gw, target, up)
}

#[test]
fn traces_replay_route_writes_the_card_from_its_own_origin_only() {
    let (gw, target, _up) = recorded("");
    let (dash, _) = gw.ws.addresses();
    let origin = format!("http://{dash}");
    let bearer = format!("Bearer {TOKEN}");
    let body = json!({"replay_of": target, "set": {"max_tokens": 7}}).to_string();
    let good: Vec<(&str, &str)> = vec![
        ("authorization", &bearer),
        ("origin", &origin),
        ("sec-fetch-site", "same-origin"),
        ("x-pas-replay", "1"),
        ("content-type", "application/json"),
    ];
    let without = |name: &str| -> Vec<(&str, &str)> {
        good.iter().copied().filter(|(k, _)| *k != name).collect()
    };
    let with = |name: &'static str, value: &'static str| -> Vec<(&str, &str)> {
        let mut h = without(name);
        h.push((name, value));
        h
    };
    let refusals = [
        ("cross-origin", with("origin", "https://evil.example"), 403),
        ("no anti-forgery header", without("x-pas-replay"), 403),
        ("a wrong header value", with("x-pas-replay", "yes"), 403),
        (
            "a cross-site fetch",
            with("sec-fetch-site", "cross-site"),
            403,
        ),
        (
            "a form's content type",
            with("content-type", "text/plain"),
            415,
        ),
        ("no token", without("authorization"), 401),
    ];
    for (what, headers, status) in &refusals {
        let r = raw(&dash, "POST", "/api/replays", headers, &body);
        assert_eq!(r.status, *status, "{what}: {}", r.body);
    }
    assert_eq!(cards(&gw.ws), 0, "a refused request writes nothing");
    let bad = raw(
        &dash,
        "POST",
        "/api/replays",
        &good,
        &json!({"replay_of": target, "policy": "quickest"}).to_string(),
    );
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("--policy") || bad.body.contains("quickest"),
        "{}",
        bad.body
    );
    let missing = format!("{}/0000000000000001", &target[..32]);
    let r = raw(
        &dash,
        "POST",
        "/api/replays",
        &good,
        &json!({"replay_of": missing}).to_string(),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(cards(&gw.ws), 0);

    let r = raw(&dash, "POST", "/api/replays", &good, &body);
    assert_eq!(r.status, 201, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let job = v["job"].as_str().unwrap();
    assert_eq!(v["replay_of"], target.as_str());
    let done = gw.ws.wait_state(job, "done");
    assert_eq!(done["replay_of"], target.as_str());
    assert_eq!(done["llm"]["params"]["max_tokens"], 7);
    assert_eq!(done["result"]["replay_of"], target.as_str());
    let rows = replay_receipts(&gw.ws, &target);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].2, job);
    // One card, nothing else (counted until it is seen: a card being rewritten in
    // place is briefly between names).
    crate::support::workspace::wait_until(
        "one card, nothing else",
        std::time::Duration::from_secs(5),
        || match cards(&gw.ws) {
            1 => Ok(()),
            n => Err(format!("{n} cards")),
        },
    );
}

#[test]
fn traces_replay_route_is_gone_with_replay_false() {
    let (gw, target, _up) = recorded("dashboard: {replay: false}\n");
    let (dash, _) = gw.ws.addresses();
    let origin = format!("http://{dash}");
    let bearer = format!("Bearer {TOKEN}");
    let r = raw(
        &dash,
        "POST",
        "/api/replays",
        &[
            ("authorization", &bearer),
            ("origin", &origin),
            ("x-pas-replay", "1"),
            ("content-type", "application/json"),
        ],
        &json!({"replay_of": target}).to_string(),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(cards(&gw.ws), 0);
    // `pas replay` itself still works: the setting is about the web page.
    assert!(gw.ws.pas(&["replay", &target]).status.success());
}
