//! Routing end to end: `pas route` read from the files alone, the context window and every
//! policy through the real gateway, latency remembered across a restart, and the output
//! bound sent in the field each provider reads.

use std::time::Duration;

use pas::llm::config::Protocol;
use pas::llm::fake::{self, Fake, FakeOptions, Mode};
use serde_json::{json, Value};

use crate::support::gateway::{ask, model, provider, Gw};
use crate::support::http;
use crate::support::workspace::Workspace;

/// `pas route ... --json` in `ws`: the exit code, the order as `provider/model`, and the
/// models left out with why.
fn route(ws: &Workspace, args: &[&str]) -> (i32, Vec<String>, Vec<(String, String)>) {
    let mut all = vec!["route", "--json"];
    all.extend_from_slice(args);
    let out = ws.pas(&all);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "pas {all:?}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let order = v["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}/{}",
                c["provider"].as_str().unwrap(),
                c["model"].as_str().unwrap()
            )
        })
        .collect();
    let excluded = v["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["model"].as_str().unwrap().to_string(),
                c["why"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (out.status.code().unwrap_or(-1), order, excluded)
}

#[test]
fn pas_route_explains_the_order_and_what_is_left_out_without_a_daemon() {
    let ws = Workspace::with_config(
        "providers:\n\
         - name: cloud\n  protocol: anthropic\n  base_url: https://api.example.invalid\n  models:\n\
         \x20 - {id: pricey, capabilities: [x], price_per_mtok: {input: \"3\", output: \"15\"}}\n\
         \x20 - {id: cheap, capabilities: [x, y], price_per_mtok: {input: \"0.1\", output: \"0.2\"}}\n\
         - name: home\n  protocol: openai\n  base_url: http://127.0.0.1:9/v1\n  local: true\n  models:\n\
         \x20 - {id: small, capabilities: [x], ctx_limit: 1000, price_per_mtok: {input: \"0.5\", output: \"0.5\"}}\n\
         - name: nokey\n  protocol: openai\n  base_url: http://127.0.0.1:9/v1\n  api_key_env: PAS_TEST_ROUTE_SURELY_UNSET\n  models:\n\
         \x20 - {id: k, capabilities: [x], price_per_mtok: {input: \"0\", output: \"0\"}}\n",
    );
    // local first, then the cheapest; the provider without its key is out, naming it.
    let (code, order, out) = route(&ws, &["--caps", "x"]);
    assert_eq!(code, 0);
    assert_eq!(order, ["home/small", "cloud/cheap", "cloud/pricey"]);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, "nokey/k");
    assert!(out[0].1.contains("PAS_TEST_ROUTE_SURELY_UNSET"), "{out:?}");
    let (_, order, _) = route(&ws, &["--caps", "x", "--policy", "cheapest"]);
    assert_eq!(order, ["cloud/cheap", "home/small", "cloud/pricey"]);
    // A context the small model cannot hold, and a capability only one model has.
    let (_, order, out) = route(&ws, &["--caps", "x", "--ctx", "5000"]);
    assert_eq!(order, ["cloud/cheap", "cloud/pricey"]);
    assert!(
        out.contains(&("home/small".into(), "context 1000 < 5000 needed".into())),
        "{out:?}"
    );
    let (_, order, out) = route(&ws, &["--caps", "x,y"]);
    assert_eq!(order, ["cloud/cheap"]);
    assert!(
        out.contains(&("cloud/pricey".into(), "lacks [y]".into())),
        "{out:?}"
    );
    // A named model skips the choice, whatever the policy.
    let (_, order, _) = route(&ws, &["--model", "pricey", "--policy", "cheapest"]);
    assert_eq!(order, ["cloud/pricey"]);
    // Nothing can serve: exit 1, and the table says so with every reason.
    let (code, order, _) = route(&ws, &["--caps", "z"]);
    assert_eq!((code, order.len()), (1, 0));
    let text = ws.pas(&["route", "--caps", "x", "--ctx", "5000", "--explain"]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    for want in [
        "cloud",
        "cheap",
        "$0.1/$0.2 per Mtok in/out",
        "LEFT OUT",
        "context 1000 < 5000 needed",
        "PAS_TEST_ROUTE_SURELY_UNSET",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    let bad = ws.pas(&["route", "--caps", "x", "--policy", "random"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn the_context_window_keeps_long_requests_off_small_models() {
    let small = fake::start(FakeOptions::default());
    let big = fake::start(FakeOptions::default());
    let mut m_small = model("s", &["x"], Some(("0.1", "0.1")));
    m_small.push_str("        ctx_limit: 300\n");
    let mut m_big = model("b", &["x"], Some(("1", "1")));
    m_big.push_str("        ctx_limit: 100000\n");
    let gw = Gw::start(
        &[
            provider("small", &small, Protocol::Openai, "", &m_small),
            provider("big", &big, Protocol::Openai, "", &m_big),
        ],
        "routing: {policy: cheapest}\n",
        &[],
    );
    let via = |body: &Value| {
        let r = gw.chat(body, &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        r.header("x-pas-provider").unwrap()
    };
    assert_eq!(via(&ask("cap:x", false)), "small");
    let long = "word ".repeat(400); // 2,000 bytes: more than 300 tokens at 4 bytes each
    let mut body = ask("cap:x", true);
    body["messages"][1]["content"] = json!(long);
    assert_eq!(via(&body), "big");
    // The output the caller asks room for counts too.
    let mut body = ask("cap:x", false);
    body["max_tokens"] = json!(1000);
    assert_eq!(via(&body), "big");
    // Named, the small model is still refused rather than overflowed, and the error says why.
    let mut body = ask("s", false);
    body["messages"][1]["content"] = json!(long);
    let r = gw.chat(&body, &[]);
    assert_eq!(r.status, 404, "{}", r.body);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("small/s: context 300 <"), "{msg}");
    assert_eq!(
        small.requests(),
        1,
        "only the short call reached the small model"
    );
}

/// A provider named `name` on `f` with one model `name` (capability `x`) at `price`.
fn one(name: &str, f: &Fake, price: &str) -> String {
    provider(
        name,
        f,
        Protocol::Openai,
        "",
        &model(name, &["x"], Some((price, price))),
    )
}

#[test]
fn balanced_weighs_price_and_latency_where_cheapest_and_fastest_each_pick_one() {
    // Price order a < b < c < d; latency order c < b < d < a. Ranks summed: a 0+3, b 1+1,
    // c 2+0, d 3+2: balanced takes b (tied with c, the cheaper wins).
    let fakes: Vec<Fake> = (0..4)
        .map(|_| fake::start(FakeOptions::default()))
        .collect();
    for (f, ms) in fakes.iter().zip([450, 90, 0, 250]) {
        f.set_mode(Mode::Delay(Duration::from_millis(ms)));
    }
    let names = ["a", "b", "c", "d"];
    let gw = Gw::start(
        &names
            .iter()
            .zip(&fakes)
            .zip(["0.1", "0.5", "1", "5"])
            .map(|((n, f), p)| one(n, f, p))
            .collect::<Vec<_>>(),
        "",
        &[],
    );
    for n in names {
        assert_eq!(gw.chat(&ask(n, false), &[]).status, 200);
    }
    let via = |policy: &str| {
        let r = gw.chat(&ask("cap:x", false), &[("x-pas-policy", policy)]);
        assert_eq!(r.status, 200, "{}", r.body);
        r.header("x-pas-provider").unwrap()
    };
    assert_eq!(via("cheapest"), "a");
    assert_eq!(via("fastest"), "c");
    assert_eq!(via("balanced"), "b");
}

#[test]
fn fastest_remembers_what_it_saw_across_a_restart_and_pas_route_agrees() {
    let slow = fake::start(FakeOptions::default());
    let quick = fake::start(FakeOptions::default());
    slow.set_mode(Mode::Delay(Duration::from_millis(300)));
    // Listed first, so a router that forgot would try it first.
    let providers = [one("slow", &slow, "1"), one("quick", &quick, "1")];
    let mut gw = Gw::start(&providers, "routing: {policy: fastest}\n", &[]);
    for m in ["slow", "quick", "slow", "quick"] {
        assert_eq!(gw.chat(&ask(m, false), &[]).status, 200);
    }
    gw.receipts(4);
    assert!(gw._daemon.stop().success());
    let (_, order, _) = route(&gw.ws, &["--caps", "x"]);
    assert_eq!(order, ["quick/quick", "slow/slow"]);
    let _daemon = gw.ws.serve_with(&[]);
    let (_, addr) = gw.ws.addresses();
    let r = http::send(
        "POST",
        &format!("http://{addr}/v1/chat/completions"),
        &[],
        Some(&ask("cap:x", false)),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-pas-provider").as_deref(), Some("quick"));
}

#[test]
fn the_output_bound_pas_adds_goes_in_the_field_the_provider_reads() {
    let openai = fake::start(FakeOptions::default());
    let compat = fake::start(FakeOptions::default());
    let gw = Gw::start(
        &[
            provider(
                "o",
                &openai,
                Protocol::Openai,
                "    max_tokens_field: max_completion_tokens\n",
                &model("o", &["x"], Some(("1", "1"))),
            ),
            one("c", &compat, "1"),
        ],
        "budgets: {daily_usd: \"10\"}\n",
        &[],
    );
    for (m, f, field, other) in [
        ("o", &openai, "max_completion_tokens", "max_tokens"),
        ("c", &compat, "max_tokens", "max_completion_tokens"),
    ] {
        let mut body = ask(m, false);
        body.as_object_mut().unwrap().remove("max_tokens");
        assert_eq!(gw.chat(&body, &[]).status, 200);
        let (_, sent) = f.last_request().unwrap();
        assert_eq!(sent[field], 4096, "{m}: {sent}");
        assert!(sent.get(other).is_none(), "{m}: {sent}");
    }
}
