//! The gateway's fixture: a workspace whose daemon routes to fake upstreams, its
//! `pas.yaml` entries, chat bodies, and receipts and events read back from the database.

use std::time::Duration;

use pas::llm::config::Protocol;
use pas::llm::fake::{self, Fake, FakeOptions, Mode};
use serde_json::{json, Value};

use super::daemon::Daemon;
use super::http::{self, Reply};
use super::workspace::{wait_until, Workspace};

/// A workspace whose daemon routes to the given providers (YAML list items).
pub struct Gw {
    pub ws: Workspace,
    /// Stopped when the test ends.
    pub _daemon: Daemon,
    pub url: String,
}

impl Gw {
    /// Starts the daemon with `providers` (and any more `pas.yaml` text) and `env`.
    pub fn start(providers: &[String], more: &str, env: &[(&str, &str)]) -> Gw {
        let config = format!("providers:\n{}{more}", providers.concat());
        let ws = Workspace::with_config(&config);
        let daemon = ws.serve_with(env);
        let (_, gw) = ws.addresses();
        Gw {
            ws,
            _daemon: daemon,
            url: format!("http://{gw}"),
        }
    }

    /// One provider `p` on `up` serving model `id` (capability `x`) at `price`, plus
    /// `more` of `pas.yaml`.
    pub fn one(
        up: &Fake,
        protocol: Protocol,
        id: &str,
        price: Option<(&str, &str)>,
        more: &str,
    ) -> Gw {
        Gw::start(
            &[provider("p", up, protocol, "", &model(id, &["x"], price))],
            more,
            &[],
        )
    }

    /// The usual paid setup: model `m` at $1 in / $10 out per Mtok on one OpenAI-protocol
    /// provider on `up`, plus `more` of `pas.yaml` (budgets, mostly).
    pub fn paid(up: &Fake, more: &str) -> Gw {
        Gw::one(up, Protocol::Openai, "m", Some(("1", "10")), more)
    }

    /// `POST /v1/chat/completions` with `body` and extra headers.
    pub fn chat(&self, body: &Value, headers: &[(&str, &str)]) -> Reply {
        http::send(
            "POST",
            &format!("{}/v1/chat/completions", self.url),
            headers,
            Some(body),
        )
    }

    /// The receipts in the database, oldest first, once there are at least `n`.
    pub fn receipts(&self, n: usize) -> Vec<Value> {
        wait_until(&format!("{n} receipts"), Duration::from_secs(10), || {
            let rows = read_all_receipts(&self.ws);
            if rows.len() >= n {
                Ok(rows)
            } else {
                Err(format!("{} receipts", rows.len()))
            }
        })
    }
}

/// One provider entry for `pas.yaml`.
pub fn provider(name: &str, f: &Fake, protocol: Protocol, extra: &str, models: &str) -> String {
    let proto = match protocol {
        Protocol::Openai => "openai",
        Protocol::Anthropic => "anthropic",
    };
    format!(
        "  - name: {name}\n    protocol: {proto}\n    base_url: {}\n    timeout_s: 2\n    first_token_timeout_s: 1\n{extra}    models:\n{models}",
        f.base_url(protocol)
    )
}

/// One model entry: `id`, capabilities, and prices (`None`: no price).
pub fn model(id: &str, caps: &[&str], price: Option<(&str, &str)>) -> String {
    let price = price.map_or(String::new(), |(i, o)| {
        format!("        price_per_mtok: {{input: \"{i}\", output: \"{o}\"}}\n")
    });
    format!(
        "      - id: {id}\n        capabilities: [{}]\n{price}",
        caps.join(", ")
    )
}

/// Every receipt in the database now (no waiting).
pub fn read_all_receipts(ws: &Workspace) -> Vec<Value> {
    let Ok(conn) = rusqlite::Connection::open_with_flags(
        ws.path("telemetry/pas.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) else {
        return Vec::new();
    };
    let Ok(mut stmt) = conn.prepare(
        "SELECT id, request_id, attempt, job_id, agent, provider, model, input_tokens,
                output_tokens, usage_source, cost_usd, stream, status, error, ttft_ms
         FROM receipts ORDER BY ts, attempt",
    ) else {
        return Vec::new();
    };
    stmt.query_map([], |r| {
        Ok(json!({
            "id": r.get::<_, String>(0)?,
            "request_id": r.get::<_, String>(1)?,
            "attempt": r.get::<_, i64>(2)?,
            "job": r.get::<_, Option<String>>(3)?,
            "agent": r.get::<_, Option<String>>(4)?,
            "provider": r.get::<_, String>(5)?,
            "model": r.get::<_, String>(6)?,
            "input": r.get::<_, i64>(7)?,
            "output": r.get::<_, i64>(8)?,
            "source": r.get::<_, String>(9)?,
            "cost": r.get::<_, Option<String>>(10)?,
            "stream": r.get::<_, bool>(11)?,
            "status": r.get::<_, String>(12)?,
            "error": r.get::<_, Option<String>>(13)?,
            "ttft_ms": r.get::<_, Option<f64>>(14)?,
        }))
    })
    .map(|rows| rows.filter_map(Result::ok).collect())
    .unwrap_or_default()
}

/// A chat request body.
pub fn ask(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello"}],
        "stream": stream,
        "max_tokens": 50,
    })
}

/// The content of an SSE response, and whether it ended with `[DONE]`.
pub fn sse_text(body: &str) -> (String, bool, Vec<Value>) {
    let mut text = String::new();
    let mut done = false;
    let mut frames = Vec::new();
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(c);
        }
        frames.push(v);
    }
    (text, done, frames)
}

/// `bad` (cheaper, tried first under `cheapest`) and `good`, both serving capability `x`.
pub(crate) fn pair(bad: &Fake, good: &Fake, more: &str) -> Gw {
    Gw::start(
        &[
            provider(
                "bad",
                bad,
                Protocol::Openai,
                "",
                &model("m-bad", &["x"], Some(("0.10", "0.10"))),
            ),
            provider(
                "good",
                good,
                Protocol::Anthropic,
                "",
                &model("m-good", &["x"], Some(("1", "1"))),
            ),
        ],
        &format!("routing: {{policy: cheapest{more}}}\n"),
        &[],
    )
}

/// A gateway over `up` with one OpenAI-protocol provider and two priced models: `m`
/// ($1/$10 a million tokens in/out), the one calls name, and `n` ($3/$15), the one a
/// replay or a second run switches to.
pub(crate) fn two_models(up: &fake::Fake) -> Gw {
    let models = format!(
        "{}{}",
        model("m", &["x"], Some(("1", "10"))),
        model("n", &["x"], Some(("3", "15")))
    );
    Gw::start(&[provider("p", up, Protocol::Openai, "", &models)], "", &[])
}

/// The data of every event of `kind`, in order.
pub fn events(gw: &Gw, kind: &str) -> Vec<Value> {
    let conn = rusqlite::Connection::open_with_flags(
        gw.ws.path("telemetry/pas.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = conn
        .prepare("SELECT data FROM events WHERE kind = ?1 ORDER BY seq")
        .unwrap();
    stmt.query_map([kind], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| serde_json::from_str(&d.unwrap()).unwrap())
        .collect()
}

/// One failure mode of `bad`: a plain and a streamed call both end at `good`, each with
/// two receipts (the failed attempt, then the answer) under one request id. The failed
/// attempt's error starts with the kind of failure (`kinds`: plain, streamed), so SQL and
/// `pas costs` can tell a timeout from a 429.
pub(crate) fn falls_back(what: &str, mode: Option<Mode>, kinds: [&str; 2]) {
    let bad = fake::start(FakeOptions::default());
    let good = fake::start(FakeOptions::default());
    let gw = pair(&bad, &good, "");
    match mode {
        Some(m) => bad.set_mode(m),
        None => bad.stop(), // connections refused
    }
    for stream in [false, true] {
        let r = gw.chat(&ask("cap:x", stream), &[]);
        assert_eq!(r.status, 200, "{what} stream={stream}: {}", r.body);
        assert_eq!(
            r.header("x-pas-provider").as_deref(),
            Some("good"),
            "{what}"
        );
        if stream {
            let (text, done, _) = sse_text(&r.body);
            assert_eq!(text, "hello from the fake upstream", "{what}");
            assert!(done, "{what}");
        }
    }
    let rows = gw.receipts(4);
    assert_eq!(rows.len(), 4, "{what}: {rows:?}");
    for (pair, kind) in rows.chunks(2).zip(kinds) {
        assert_eq!(pair[0]["provider"], "bad", "{what}");
        assert_eq!(pair[0]["status"], "error", "{what}");
        let error = pair[0]["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(&format!("{kind}: ")),
            "{what}: the error names its kind {kind}: {error}"
        );
        assert_eq!(pair[0]["attempt"], 1);
        assert_eq!(pair[1]["provider"], "good");
        assert_eq!(pair[1]["attempt"], 2);
        assert_eq!(pair[1]["status"], "ok");
        assert_eq!(pair[0]["request_id"], pair[1]["request_id"]);
    }
    let costs = gw.ws.pas_json(&["costs", "--json"]);
    let by_status = costs["by_status"].as_array().cloned().unwrap_or_default();
    let calls = |key: &str| {
        by_status
            .iter()
            .filter(|t| t["key"] == key)
            .map(|t| t["calls"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!(calls("ok"), 2, "{what}: {by_status:?}");
    for kind in kinds {
        let want = kinds.iter().filter(|k| **k == kind).count() as u64;
        assert_eq!(calls(kind), want, "{what}: {by_status:?}");
    }
}

/// Waits until provider `name`'s breaker is `state` (`closed`, `open`, `half-open`) as
/// `/api/providers` shows it: a cool-down or a Retry-After is waited out by looking at
/// the breaker (which looking does not change), not by a fixed sleep.
pub fn wait_breaker(gw: &Gw, name: &str, state: &str) {
    let (dash, _) = gw.ws.addresses();
    let what = format!("{name}'s breaker {state}");
    wait_until(&what, Duration::from_secs(10), || {
        let r = http::get(&format!("http://{dash}/api/providers"));
        let v: Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
        let p = v["providers"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .cloned()
            .unwrap_or_default();
        match p["breaker"]["state"] == state {
            true => Ok(()),
            false => Err(format!("{}", p["breaker"])),
        }
    });
}
