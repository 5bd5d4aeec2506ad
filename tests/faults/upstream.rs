//! An upstream LLM that resets the connection (TCP RST after reading the request: a crashed
//! server, a proxy dropping the connection). The caller gets another provider's answer or
//! an OpenAI-shaped error, every attempt is receipted with its failure, a provider that
//! keeps resetting cools down, and it is used again once it is back on the same port.
//! (Hangs and timeouts are the `it` suite's fallback.rs.)

use std::time::Duration;

use pas::llm::fake::{self, Fake, FakeOptions, Mode};
use serde_json::{json, Value};

use crate::daemon::Daemon;
use crate::fixture::{wait_until, Workspace};
use crate::http::{self, Reply};
use crate::serial;

/// A daemon routing capability `x` to `providers` (name, fake, price per Mtok), cheapest
/// first.
struct Gw {
    ws: Workspace,
    _daemon: Daemon,
    url: String,
}

impl Gw {
    /// `routing` is more keys of the `routing:` mapping, e.g. `, cooldown_s: 0.5`.
    fn start(providers: &[(&str, &Fake, &str)], routing: &str) -> Gw {
        let mut config = String::from("providers:\n");
        for (name, f, price) in providers {
            config.push_str(&format!(
                "  - name: {name}\n    protocol: openai\n    base_url: http://{}/v1\n    \
                 timeout_s: 2\n    first_token_timeout_s: 1\n    models:\n      - id: m-{name}\n        \
                 capabilities: [x]\n        price_per_mtok: {{input: \"{price}\", output: \"{price}\"}}\n",
                f.addr()
            ));
        }
        config.push_str(&format!("routing: {{policy: cheapest{routing}}}\n"));
        let ws = Workspace::with_config(&config);
        let daemon = ws.serve();
        let (_, gw) = ws.addresses();
        Gw {
            ws,
            _daemon: daemon,
            url: format!("http://{gw}"),
        }
    }

    fn chat(&self, stream: bool) -> Reply {
        let body = json!({
            "model": "cap:x",
            "messages": [{"role": "user", "content": "say hello"}],
            "stream": stream,
            "max_tokens": 50,
        });
        http::send(
            "POST",
            &format!("{}/v1/chat/completions", self.url),
            &[],
            Some(&body),
        )
    }

    /// (provider, status, error) of every receipt, oldest first, once there are `n`.
    fn receipts(&self, n: usize) -> Vec<(String, String, String)> {
        wait_until(&format!("{n} receipts"), Duration::from_secs(10), || {
            let rows = self.ws.db_query(
                "SELECT provider, status, COALESCE(error, '') FROM receipts ORDER BY ts, attempt",
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            );
            match rows.len() {
                k if k >= n => Ok(rows),
                k => Err(format!("{k} receipts")),
            }
        })
    }
}

/// What a reset looks like to pas's HTTP client: the connection ended without an answer.
fn names_the_reset(error: &str) -> bool {
    error.contains("connection failed")
        && ["reset", "closed", "connection"]
            .iter()
            .any(|w| error.contains(w))
}

/// An OpenAI-shaped error body, with its message.
fn openai_error(r: &Reply) -> String {
    let v: Value = r.json();
    assert!(
        v["error"]["type"].is_string(),
        "not an OpenAI error: {}",
        r.body
    );
    assert!(
        v["error"]["code"].is_string(),
        "not an OpenAI error: {}",
        r.body
    );
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_resetting_upstream_falls_back_to_the_next_provider() {
    let _serial = serial();
    let bad = fake::start(FakeOptions::default());
    let good = fake::start(FakeOptions::default());
    bad.set_mode(Mode::Reset);
    let gw = Gw::start(&[("bad", &bad, "0.1"), ("good", &good, "1")], "");
    for stream in [false, true] {
        let r = gw.chat(stream);
        assert_eq!(r.status, 200, "stream={stream}: {}", r.body);
        assert_eq!(r.header("x-pas-provider").as_deref(), Some("good"));
        let whole = if stream {
            "data: [DONE]"
        } else {
            "hello from the fake upstream"
        };
        assert!(r.body.contains(whole), "{}", r.body);
    }
    let rows = gw.receipts(4);
    for pair in rows.chunks(2) {
        let (p, status, error) = &pair[0];
        assert_eq!((p.as_str(), status.as_str()), ("bad", "error"), "{rows:?}");
        assert!(names_the_reset(error), "the receipt says why: {error}");
        assert_eq!((pair[1].0.as_str(), pair[1].1.as_str()), ("good", "ok"));
    }
    assert_eq!(bad.requests(), 2, "each call tried the reset provider once");
}

#[test]
fn a_resetting_only_provider_cools_down_and_is_used_again_once_back() {
    let _serial = serial();
    let only = fake::start(FakeOptions::default());
    only.set_mode(Mode::Reset);
    let addr = only.addr();
    let gw = Gw::start(&[("p", &only, "1")], ", cooldown_s: 0.5");
    // Three resets in a row: each an OpenAI-shaped 502 that says what happened.
    for _ in 0..3 {
        let r = gw.chat(false);
        assert_eq!(r.status, 502, "{}", r.body);
        let message = openai_error(&r);
        assert!(
            names_the_reset(&message),
            "the caller is told why: {message}"
        );
    }
    // Then it cools down: refused at once, without troubling the provider.
    let r = gw.chat(false);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(openai_error(&r).contains("cooling down"), "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert_eq!(only.requests(), 3);
    let rows = gw.receipts(3);
    assert!(
        rows.iter()
            .all(|(_, s, e)| s == "error" && names_the_reset(e)),
        "every failed attempt has its receipt: {rows:?}"
    );

    // The upstream restarts on the same port; after the cool-down the probe finds it.
    only.stop();
    drop(only);
    let back = wait_until(
        "the fake upstream back on its port",
        Duration::from_secs(10),
        || fake::try_start_at(FakeOptions::default(), addr).map_err(|e| e.to_string()),
    );
    let answered = wait_until(
        "an answer from the restarted upstream",
        Duration::from_secs(10),
        || {
            let r = gw.chat(false);
            match r.status {
                200 => Ok(r),
                503 => Err("still cooling down".to_string()),
                s => Err(format!("{s}: {}", r.body)),
            }
        },
    );
    assert_eq!(answered.header("x-pas-provider").as_deref(), Some("p"));
    assert_eq!(back.requests(), 1, "exactly one probe brought it back");
    for stream in [false, true] {
        let r = gw.chat(stream);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let rows = gw.receipts(6);
    assert_eq!(rows.last().map(|r| r.1.as_str()), Some("ok"), "{rows:?}");
}
