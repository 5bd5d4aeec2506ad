//! The token on non-loopback binds: refused to start without one, then every route of
//! both servers refused without it or with a wrong one, served with it in each of its
//! three forms, and the token itself never echoed into a body, a log or a file.
//! (server.rs has the first cases; this extends them to every route and form.)

use pas::llm::fake::{self, FakeOptions};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::routes::{DASHBOARD, GATEWAY};
use super::{places_holding, raw};
use crate::support::gateway::ask;
use crate::support::http;
use crate::support::workspace::Workspace;

const TOKEN: &str = "tok-SECSUITE-8e1f5a";

#[test]
fn a_non_loopback_bind_without_a_usable_token_does_not_start() {
    let ws = Workspace::new();
    for (flag, addr) in [
        ("--dashboard-bind", "0.0.0.0:0"),
        ("--gateway-bind", "0.0.0.0:0"),
        ("--dashboard-bind", "[::]:0"),
    ] {
        let out = ws.pas(&["serve", flag, addr]);
        assert_eq!(out.status.code(), Some(1), "{flag} {addr}");
        let err = String::from_utf8_lossy(&out.stderr);
        let what = if flag.contains("dashboard") {
            "dashboard"
        } else {
            "gateway"
        };
        assert!(
            err.contains(&format!("error: the {what} would listen on {addr}"))
                && err.contains("--token"),
            "{err}"
        );
    }
    // An empty token is no token; one of blanks matches nothing a client can send.
    for token in ["", "   "] {
        let out = ws.pas(&["serve", "--dashboard-bind", "0.0.0.0:0", "--token", token]);
        assert_eq!(out.status.code(), Some(1), "token {token:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: "), "{err}");
    }
    assert!(!ws.path(".pas/serve.json").exists());
}

/// The URL with `?token=t` (or `&token=t`) added.
fn with_query(url: &str, t: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}token={t}")
}

#[test]
fn every_route_of_both_servers_needs_the_token_which_is_never_shown() {
    let up = fake::start(FakeOptions::default());
    let config = format!("providers:\n{}", super::priced_provider(&up));
    let ws = Workspace::with_config(&config);
    ws.drop_card("SEC-1", "title: a card\nrequires: [nobody-has-this]\n");
    let mut d = ws.serve_with(&[
        ("PAS_TOKEN", TOKEN),
        ("PAS_DASHBOARD_BIND", "0.0.0.0:0"),
        ("PAS_GATEWAY_BIND", "0.0.0.0:0"),
    ]);
    let (dash, gw) = ws.addresses();
    let local = |a: &str| format!("127.0.0.1:{}", a.rsplit(':').next().unwrap());
    let (dash, gw) = (local(&dash), local(&gw));
    ws.wait_recorded("SEC-1");
    let bearer = format!("Bearer {TOKEN}");
    let cookie = format!("pas_token={TOKEN}");
    let near = &TOKEN[..TOKEN.len() - 1];
    let refusals: Vec<(String, Vec<(&str, String)>)> = vec![
        ("none".into(), vec![]),
        (
            "wrong bearer".into(),
            vec![("authorization", "Bearer nope".into())],
        ),
        (
            "a prefix".into(),
            vec![("authorization", format!("Bearer {near}"))],
        ),
        (
            "longer".into(),
            vec![("authorization", format!("{bearer}x"))],
        ),
        (
            "not bearer".into(),
            vec![("authorization", format!("Basic {TOKEN}"))],
        ),
        (
            "wrong cookie".into(),
            vec![("cookie", format!("pas_token={near}"))],
        ),
        (
            "other cookie".into(),
            vec![("cookie", format!("token={TOKEN}"))],
        ),
    ];
    // `/health` is answered without the token (uptime checks hold none) and says nothing
    // the token guards: which parts work, never what the board holds.
    for addr in [&dash, &gw] {
        let r = raw(addr, "GET", "/health", &[], "");
        assert_eq!(r.status, 200, "{addr}/health: {r:?}");
        assert!(
            !r.body.contains(TOKEN) && !r.body.contains("SEC-1"),
            "{}",
            r.body
        );
    }
    let mut gets: Vec<(&str, String)> = DASHBOARD
        .iter()
        .filter(|(p, _)| *p != "/ws" && *p != "/health")
        .map(|(_, u)| (dash.as_str(), u.to_string()))
        .collect();
    gets.extend(
        GATEWAY
            .iter()
            .filter(|(m, p)| *m == "GET" && *p != "/health")
            .map(|(_, p)| (gw.as_str(), p.to_string())),
    );
    let mut bodies = Vec::new();
    for (addr, url) in &gets {
        for (what, headers) in &refusals {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = raw(addr, "GET", url, &h, "");
            assert_eq!(r.status, 401, "{what}: {addr}{url}: {r:?}");
            assert_eq!(r.header("content-type"), Some("application/json"));
            // The guard's refusal carries the security headers of what it guards.
            assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{url}");
            if *addr == gw {
                // Like every gateway answer, the refusal says what pas spent on it.
                assert!(r.header("x-pas-overhead-ms").is_some(), "{url}: {r:?}");
            }
            if *addr == dash {
                assert!(
                    r.header("content-security-policy")
                        .is_some_and(|c| c.contains("frame-ancestors 'none'")),
                    "{what}: {url}: {r:?}"
                );
            }
            bodies.push(r.body);
        }
        let r = raw(addr, "GET", &with_query(url, near), &[], "");
        assert_eq!(r.status, 401, "?token= wrong: {addr}{url}");
        for (what, headers, target) in [
            (
                "bearer",
                vec![("authorization", bearer.as_str())],
                url.clone(),
            ),
            ("cookie", vec![("cookie", cookie.as_str())], url.clone()),
            ("query", vec![], with_query(url, TOKEN)),
        ] {
            let r = raw(addr, "GET", &target, &headers, "");
            assert_eq!(r.status, 200, "{what}: {addr}{url}: {r:?}");
            bodies.push(r.body);
        }
    }
    // The spending routes, too: refused before any upstream is asked.
    let chat = serde_json::to_string(&ask("m", false)).unwrap();
    for (_, path) in GATEWAY.iter().filter(|(m, _)| *m == "POST") {
        let r = raw(
            &gw,
            "POST",
            path,
            &[("content-type", "application/json")],
            &chat,
        );
        assert_eq!(r.status, 401, "{path}");
        bodies.push(r.body);
    }
    assert_eq!(up.requests(), 0);
    let r = raw(
        &gw,
        "POST",
        "/v1/chat/completions",
        &[("authorization", &bearer)],
        &chat,
    );
    assert_eq!(r.status, 200, "{r:?}");
    bodies.push(r.body);
    // The stream: refused without the token or with a wrong one, served with the cookie
    // the page carries (a browser cannot set Authorization on a WebSocket).
    http::block_on(async {
        for q in ["", "?token=nope"] {
            match tokio_tungstenite::connect_async(format!("ws://{dash}/ws{q}")).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                    assert_eq!(r.status(), 401, "{q}")
                }
                other => panic!("/ws{q} was not refused: {other:?}"),
            }
        }
        for (k, v) in [("cookie", &cookie), ("authorization", &bearer)] {
            let mut req = format!("ws://{dash}/ws").into_client_request().unwrap();
            req.headers_mut().insert(k, v.parse().unwrap());
            tokio_tungstenite::connect_async(req)
                .await
                .unwrap_or_else(|e| panic!("/ws with the {k}: {e}"));
        }
    });
    for b in &bodies {
        assert!(!b.contains(TOKEN), "a response body shows the token: {b}");
    }
    d.stop();
    let log = d.log_text();
    assert!(!log.contains(TOKEN), "the daemon log holds the token");
    let seen = places_holding(&ws, TOKEN);
    assert!(seen.is_empty(), "the token was written to {seen:?}");
}
