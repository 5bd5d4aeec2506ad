//! No secret anywhere: provider keys used for plain, streaming, refused and broken calls,
//! through the gateway and by LLM job cards, with an upstream that quotes the key back,
//! and then looked for in every file (git objects decompressed), every table, the log,
//! every page and API answer, `/metrics` and the CLI. (spend.rs checks the files, the
//! log and `git log -p` for one key on the plain path; this covers the rest.)

use std::time::Duration;

use pas::llm::config::Protocol;
use pas::llm::fake::{self, FakeOptions, Mode};

use super::routes::DASHBOARD;
use super::{places_holding, raw};
use crate::support::gateway::{ask, model, provider, read_all_receipts};
use crate::support::workspace::{Workspace, FAST};

const KEY_OPENAI: &str = "sk-live-SECSUITE-openai-5b7c21";
const KEY_ANTHROPIC: &str = "sk-ant-SECSUITE-anthropic-3d9e84";

#[test]
fn provider_keys_reach_the_upstream_and_nothing_else() {
    let oa = fake::start(FakeOptions::default());
    let an = fake::start(FakeOptions::default());
    let config = format!(
        "{FAST}providers:\n{}{}",
        provider(
            "oa",
            &oa,
            Protocol::Openai,
            "    api_key_env: PAS_SEC_KEY_OPENAI\n",
            &model("mo", &["x"], Some(("1", "1")))
        ),
        provider(
            "an",
            &an,
            Protocol::Anthropic,
            "    api_key_env: PAS_SEC_KEY_ANTHROPIC\n",
            &model("ma", &["summarize"], Some(("1", "1")))
        ),
    );
    let ws = Workspace::with_config(&config);
    let mut d = ws.serve_with(&[
        ("PAS_SEC_KEY_OPENAI", KEY_OPENAI),
        ("PAS_SEC_KEY_ANTHROPIC", KEY_ANTHROPIC),
    ]);
    let (dash, gw) = ws.addresses();
    let mut seen: Vec<String> = Vec::new(); // every answer, headers and body
    let call = |seen: &mut Vec<String>, model: &str, stream: bool, agent: &str| {
        let body = serde_json::to_string(&ask(model, stream)).unwrap();
        let r = raw(
            &gw,
            "POST",
            "/v1/chat/completions",
            &[("x-pas-agent", agent)],
            &body,
        );
        seen.push(format!("{:?}\n{}", r.headers, r.body));
        r.status
    };
    for stream in [false, true] {
        assert_eq!(call(&mut seen, "mo", stream, "ok"), 200);
        assert_eq!(call(&mut seen, "ma", stream, "ok"), 200);
    }
    // The keys did go where they belong (so their absence below means something).
    let (h, _) = oa.last_request().unwrap();
    assert!(h
        .iter()
        .any(|(k, v)| k == "authorization" && v == &format!("Bearer {KEY_OPENAI}")));
    let (h, _) = an.last_request().unwrap();
    assert!(h
        .iter()
        .any(|(k, v)| k == "x-api-key" && v == KEY_ANTHROPIC));
    // Refused, refused with the key quoted back, and cut off mid-stream.
    oa.set_mode(Mode::Status {
        code: 401,
        retry_after: None,
    });
    assert_ne!(call(&mut seen, "mo", false, "refused"), 200);
    oa.set_mode(Mode::EchoKey { code: 401 });
    an.set_mode(Mode::EchoKey { code: 403 });
    for stream in [false, true] {
        assert_ne!(call(&mut seen, "mo", stream, "echo"), 200);
        assert_ne!(call(&mut seen, "ma", stream, "echo"), 200);
        if !stream {
            // A refused key is the provider's fault and counts toward its breaker: an
            // answer in between keeps both below the three failures in a row that open
            // it, so every call below still reaches its upstream.
            oa.set_mode(Mode::Ok);
            an.set_mode(Mode::Ok);
            assert_eq!(call(&mut seen, "mo", false, "ok"), 200);
            assert_eq!(call(&mut seen, "ma", false, "ok"), 200);
            oa.set_mode(Mode::EchoKey { code: 401 });
            an.set_mode(Mode::EchoKey { code: 403 });
        }
    }
    assert!(
        seen.iter().any(|s| s.contains("[redacted key]")),
        "{seen:?}"
    );
    // LLM job cards: the failure's reason goes into the card, and so into git.
    let card = |id: &str, m: &str| {
        ws.drop_card(
            id,
            &format!(
                "title: {id}\nllm:\n  model: {m}\n  messages:\n    - {{role: user, content: hi}}\n"
            ),
        );
    };
    card("J-echo-oa", "mo");
    card("J-echo-an", "ma");
    for id in ["J-echo-oa", "J-echo-an"] {
        let failed = ws.wait_state(id, "failed");
        let error = failed["error"].as_str().unwrap_or_default();
        assert!(error.contains("[redacted key]"), "{id}: {error}");
    }
    oa.set_mode(Mode::Ok);
    an.set_mode(Mode::Cut { after_chunks: 1 });
    call(&mut seen, "ma", true, "cut");
    an.set_mode(Mode::Ok);
    card("J-ok", "ma");
    ws.wait_state("J-ok", "done");
    let calls = 4 + 1 + 4 + 2 + 2 + 1 + 1;
    crate::support::workspace::wait_until("every receipt", Duration::from_secs(10), || {
        match read_all_receipts(&ws).len() {
            n if n >= calls => Ok(()),
            n => Err(n.to_string()),
        }
    });
    ws.wait_work_clean("the cards committed");
    // Every page, API answer and /metrics, and the CLI's views.
    let mut urls: Vec<String> = DASHBOARD
        .iter()
        .filter(|(p, _)| *p != "/ws")
        .map(|(_, u)| u.replace("SEC-1", "J-echo-oa"))
        .collect();
    urls.extend(["/jobs/J-echo-an", "/api/jobs/J-echo-an", "/api/jobs/J-ok"].map(String::from));
    for u in &urls {
        let r = raw(&dash, "GET", u, &[], "");
        assert_eq!(r.status, 200, "{u}");
        seen.push(format!("{u} {:?}\n{}", r.headers, r.body));
    }
    for path in ["/v1/models", "/models"] {
        seen.push(raw(&gw, "GET", path, &[], "").body);
    }
    for args in [
        &["costs", "--json"][..],
        &["status", "--json"],
        &["show", "J-echo-oa", "--json"],
        &["log", "J-echo-an"],
    ] {
        seen.push(ws.pas_ok(args));
    }
    d.stop();
    seen.push(d.log_text());
    for key in [KEY_OPENAI, KEY_ANTHROPIC] {
        let shown: Vec<&String> = seen.iter().filter(|s| s.contains(key)).collect();
        assert!(shown.is_empty(), "{key} was shown: {shown:?}");
        let written = places_holding(&ws, key);
        assert!(written.is_empty(), "{key} was written to {written:?}");
    }
}
