//! Every route of both servers, walked with every method: the dashboard answers `GET`
//! (and `HEAD`) only and changes nothing; the gateway answers its two endpoints only; a
//! foreign web page is refused by both.

use std::collections::BTreeSet;
use std::time::Duration;

use pas::llm::config::Protocol;
use pas::llm::fake::{self, FakeOptions};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{raw, State};
use crate::support::gateway::{ask, Gw};
use crate::support::http;
use crate::support::workspace::{holds_for, Workspace};

/// Every dashboard route as the router spells it, and a URL that reaches it.
pub const DASHBOARD: &[(&str, &str)] = &[
    ("/", "/"),
    ("/health", "/health"),
    ("/tree", "/tree"),
    ("/costs", "/costs"),
    ("/alerts", "/alerts"),
    ("/activity", "/activity"),
    ("/providers", "/providers"),
    ("/jobs/{id}", "/jobs/SEC-1"),
    ("/traces", "/traces"),
    ("/traces/{id}", "/traces/SEC-1"),
    ("/traces/{id}/vs/{other}", "/traces/SEC-1/vs/SEC-1"),
    ("/ws", "/ws"),
    ("/api/status", "/api/status"),
    ("/api/jobs", "/api/jobs"),
    ("/api/jobs/{id}", "/api/jobs/SEC-1"),
    ("/api/agents", "/api/agents"),
    ("/api/tree", "/api/tree"),
    ("/api/costs", "/api/costs"),
    ("/api/costs/series", "/api/costs/series?by=model&step=day"),
    ("/api/alerts", "/api/alerts"),
    ("/api/alerts/active", "/api/alerts/active"),
    ("/api/providers", "/api/providers"),
    ("/api/events", "/api/events?since=0"),
    ("/api/commits", "/api/commits"),
    ("/api/traces", "/api/traces"),
    ("/api/traces/{id}", "/api/traces/SEC-1"),
    (
        "/api/traces/{id}/spans/{span}",
        "/api/traces/SEC-1/spans/root",
    ),
    ("/api/traces/{id}/vs/{other}", "/api/traces/SEC-1/vs/SEC-1"),
    ("/metrics", "/metrics"),
    ("/static/{*path}", "/static/app.js"),
];

/// The dashboard's one write (SPEC section 11): method and path. Walked apart, since it
/// answers no `GET` and refuses a `POST` without its anti-forgery header.
pub const DASHBOARD_WRITES: &[(&str, &str)] = &[("POST", "/api/replays")];

/// The gateway's routes: method and path.
pub const GATEWAY: &[(&str, &str)] = &[
    ("POST", "/v1/chat/completions"),
    ("POST", "/chat/completions"),
    ("POST", "/v1/messages"),
    ("POST", "/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/messages/count_tokens"),
    ("GET", "/v1/models"),
    ("GET", "/models"),
    ("GET", "/health"),
    ("POST", "/v1/traces"),
];

/// Paths no server has (traversal attempts among them), walked on both.
const UNKNOWN: &[&str] = &[
    "/nope",
    "/api",
    "/api/nope",
    "/api/jobs/SEC-1/done",
    "/jobs",
    "/static/",
    "/static/../pas.yaml",
    "/static/%2e%2e/pas.yaml",
    "/v1",
    "/v1/completions",
    "/v1/embeddings",
];

/// Every method a client could send, the unusual ones included.
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PROPFIND",
];

#[test]
fn the_walked_routes_are_exactly_the_routers_routes() {
    let walked: BTreeSet<&str> = DASHBOARD.iter().map(|(p, _)| *p).collect();
    let served: BTreeSet<&str> = pas::dashboard::routes().into_iter().collect();
    assert_eq!(
        walked, served,
        "the dashboard's routes changed: add the new ones to security::routes::DASHBOARD"
    );
    let walked: BTreeSet<(&str, &str)> = DASHBOARD_WRITES.iter().copied().collect();
    let served: BTreeSet<(&str, &str)> = pas::dashboard::write_routes().into_iter().collect();
    assert_eq!(
        walked, served,
        "the dashboard's writes changed: add them to security::routes::DASHBOARD_WRITES"
    );
    let walked: BTreeSet<(&str, &str)> = GATEWAY.iter().copied().collect();
    let served: BTreeSet<(&str, &str)> = pas::gateway::routes().into_iter().collect();
    assert_eq!(
        walked, served,
        "the gateway's routes changed: add the new ones to security::routes::GATEWAY"
    );
}

/// A refusal: 404 or 405 (and 400 for CONNECT, whose request line is not origin-form).
fn refused(method: &str, status: u16) -> bool {
    status == 404 || status == 405 || (method == "CONNECT" && status == 400)
}

#[test]
fn every_method_on_every_route_is_refused_or_reads_and_nothing_changes() {
    let ws = Workspace::new();
    ws.drop_card("SEC-1", "title: stays put\nrequires: [nobody-has-this]\n");
    let _d = ws.serve();
    let (dash, gw) = ws.addresses();
    ws.wait_main_loop();
    ws.wait_recorded("SEC-1");
    let before = State::settled(&ws);
    let body = r#"{"state": "done", "title": "changed", "model": "cap:x"}"#;
    let mut wrong = Vec::new();
    let dashboard = DASHBOARD.iter().map(|(_, u)| (true, *u));
    for (routed, url) in dashboard.chain(UNKNOWN.iter().map(|u| (false, *u))) {
        for &m in METHODS {
            let r = raw(&dash, m, url, &[("content-type", "application/json")], body);
            let ok = match (routed, m) {
                (true, "GET" | "HEAD") if url == "/ws" => (400..500).contains(&r.status),
                (true, "GET" | "HEAD") => r.status == 200,
                _ => refused(m, r.status),
            };
            let allow = r.header("allow").unwrap_or("GET,HEAD");
            if !ok
                || (r.status == 405
                    && allow
                        .split(',')
                        .any(|a| !a.contains("GET") && !a.contains("HEAD")))
            {
                wrong.push(format!("dashboard {m} {url}: {} allow {allow}", r.status));
            }
        }
    }
    // The write: every other method is a 405; a POST without X-Pas-Replay a 403 that
    // writes nothing (checked with the rest below).
    for (method, url) in DASHBOARD_WRITES {
        for &m in METHODS {
            let r = raw(&dash, m, url, &[("content-type", "application/json")], body);
            let ok = if m == *method {
                r.status == 403
            } else {
                refused(m, r.status)
            };
            if !ok {
                wrong.push(format!("dashboard {m} {url}: {}", r.status));
            }
        }
    }
    let gateway = GATEWAY.iter().map(|(m, p)| (Some(*m), *p));
    for (allowed, url) in gateway.chain(UNKNOWN.iter().map(|u| (None, *u))) {
        for &m in METHODS {
            let r = raw(&gw, m, url, &[("content-type", "application/json")], "{}");
            let ok = match allowed {
                // `{}` names no model: refused before any upstream is asked. To the
                // OTLP ingest it is an export of no spans: taken, and nothing stored.
                Some("POST") if m == "POST" && url == "/v1/traces" => r.status == 200,
                Some("POST") if m == "POST" => r.status == 400,
                Some("GET") if m == "GET" || m == "HEAD" => r.status == 200,
                _ => refused(m, r.status),
            };
            // Every answer pas gives carries its overhead (a CONNECT never reaches pas).
            let stamped = m == "CONNECT" || r.header("x-pas-overhead-ms").is_some();
            if !ok || !stamped {
                wrong.push(format!(
                    "gateway {m} {url}: {} {:?} {}",
                    r.status, r.headers, r.body
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "unexpected answers:\n{}",
        wrong.join("\n")
    );
    // Nothing changed, and nothing changes later (a commit window, a settle) either.
    holds_for(
        "the workspace as it was",
        Duration::from_millis(600),
        || {
            let now = State::of(&ws);
            if now == before {
                Ok(())
            } else {
                Err(format!("before {before:?}\nafter {now:?}"))
            }
        },
    );
    assert_eq!(ws.places_of("SEC-1"), vec!["inbox".to_string()]);
}

#[test]
fn foreign_web_pages_are_refused_and_spend_nothing() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::one(&up, Protocol::Openai, "m", Some(("1", "1")), "");
    let (dash, gw_addr) = gw.ws.addresses();
    let evil = [("origin", "https://evil.example")];
    // A page on another site posts a "simple" request (text/plain needs no preflight).
    let chat = serde_json::to_string(&ask("m", false)).unwrap();
    let plain = [("content-type", "text/plain"), evil[0]];
    for path in ["/v1/chat/completions", "/chat/completions"] {
        let r = raw(&gw_addr, "POST", path, &plain, &chat);
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert!(r.body.contains("forbidden_origin"), "{}", r.body);
        assert!(r.header("x-pas-overhead-ms").is_some(), "{path}: {r:?}");
    }
    let null = raw(
        &gw_addr,
        "POST",
        "/v1/chat/completions",
        &[("origin", "null")],
        &chat,
    );
    assert_eq!(null.status, 403, "{null:?}");
    assert_eq!(
        up.requests(),
        0,
        "a foreign page made pas call the upstream"
    );
    // DNS rebinding: the browser sends the attacker's name as Host.
    for addr in [&dash, &gw_addr] {
        let port = addr.rsplit(':').next().unwrap();
        let host = format!("rebind.evil.example:{port}");
        for path in ["/api/status", "/v1/models"] {
            let r = raw(addr, "GET", path, &[("host", &host)], "");
            assert_eq!(r.status, 403, "{addr}{path}: {r:?}");
        }
    }
    for path in ["/", "/api/status", "/api/jobs"] {
        let r = raw(&dash, "GET", path, &evil, "");
        assert_eq!(r.status, 403, "{path}");
        // A refusal is framed like every other answer: it cannot be embedded or sniffed.
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}: {r:?}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    // A foreign page cannot read the event stream through a WebSocket either.
    http::block_on(async {
        let mut req = format!("ws://{dash}/ws").into_client_request().unwrap();
        req.headers_mut()
            .insert("origin", "https://evil.example".parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
            other => panic!("a foreign WebSocket was not refused: {other:?}"),
        }
        let mut req = format!("ws://{dash}/ws").into_client_request().unwrap();
        let own = format!("http://{dash}");
        req.headers_mut().insert("origin", own.parse().unwrap());
        tokio_tungstenite::connect_async(req)
            .await
            .expect("the dashboard's own page connects");
    });
    // Its own pages, `localhost`, and clients that send no Origin (SDKs, curl) still pass.
    let own = format!("http://{dash}");
    assert_eq!(
        raw(&dash, "GET", "/api/status", &[("origin", &own)], "").status,
        200
    );
    let port = dash.rsplit(':').next().unwrap();
    let local = format!("localhost:{port}");
    assert_eq!(raw(&dash, "GET", "/", &[("host", &local)], "").status, 200);
    let r = gw.chat(&ask("m", false), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.requests(), 1);
}
