//! The token guard in front of both listeners.
//!
//! A request carries the token as `Authorization: Bearer <token>` (what every OpenAI client
//! sends as its API key), as `?token=` (a link to the dashboard), or as the `pas_token`
//! cookie that a `?token=` visit sets, so the page's own asset and WebSocket requests pass.
//! Tokens are compared in constant time; a refusal is an OpenAI-shaped 401.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// Whether `addr` (`host:port`) is a loopback address (`localhost` counts).
pub fn is_loopback(addr: &str) -> bool {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return sa.ip().is_loopback();
    }
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `app` behind the token check; with no token, `app` as it is.
pub fn guard(app: Router, token: Option<Arc<str>>) -> Router {
    match token {
        None => app,
        Some(t) => app.layer(middleware::from_fn_with_state(t, check)),
    }
}

/// The one path answered without the token: an uptime check or a Kubernetes probe holds
/// no token, and `/health` says only which part of pas is wrong, never what it holds.
pub const OPEN_PATH: &str = "/health";

async fn check(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    if req.uri().path() == OPEN_PATH {
        return next.run(req).await;
    }
    let given = presented(&req);
    let from_query = query_token(&req).is_some();
    if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
        if req.uri().path().contains("/messages") {
            // The Messages API's clients read only its own error shape.
            return crate::gateway::messages::error(
                401,
                "missing or wrong token: send x-api-key: <token> (the --token / PAS_TOKEN of pas serve)",
            );
        }
        return refuse();
    }
    let mut resp = next.run(req).await;
    if from_query {
        // Encoded, so a token holding `;` or a space stays one cookie value.
        let value = percent_encoding::utf8_percent_encode(&token, COOKIE_VALUE);
        let cookie = format!("pas_token={value}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

fn presented(req: &Request) -> Option<String> {
    let h = req.headers();
    if let Some(b) = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(b.trim().to_string());
    }
    // Anthropic's clients (Claude Code, the SDKs) send their key as `x-api-key`.
    if let Some(k) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim().to_string());
    }
    if let Some(q) = query_token(req) {
        return Some(q);
    }
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("pas_token="))
        .map(|v| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
}

/// What a cookie value may not hold as it is (RFC 6265 `cookie-octet`, and `%` itself).
const COOKIE_VALUE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b',')
    .add(b';')
    .add(b'\\')
    .add(b'%');

/// `?token=`, percent-decoded as a browser encodes it (a token may hold `+`, `&` or `%`).
fn query_token(req: &Request) -> Option<String> {
    form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// Equal without an early exit, so timing says nothing about how much matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refuse() -> Response {
    refusal(
        StatusCode::UNAUTHORIZED,
        "missing or wrong token: send Authorization: Bearer <token> (the --token / PAS_TOKEN of pas serve)",
        "invalid_api_key",
    )
}

/// An OpenAI-shaped JSON error, so SDK clients show the message: the guards' answer.
pub(super) fn refusal(status: StatusCode, message: &str, code: &str) -> Response {
    let body = serde_json::json!({"error": {
        "message": message,
        "type": "invalid_request_error",
        "param": null,
        "code": code,
    }});
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// The status and any `Set-Cookie` of a GET to a guarded app.
    async fn get(token: &str, uri: &str, cookie: Option<&str>) -> (u16, Option<String>) {
        let app = guard(
            Router::new().route("/", axum::routing::get(|| async { "ok" })),
            Some(token.into()),
        );
        let mut req = axum::http::Request::get(uri);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let resp = app
            .oneshot(req.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let set = resp
            .headers()
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_string());
        (resp.status().as_u16(), set)
    }

    #[tokio::test]
    async fn a_token_with_url_and_cookie_specials_works_by_query_then_cookie() {
        let token = "a+b&c%d;e f";
        let (status, set) = get(token, "/?x=1&token=a%2Bb%26c%25d%3Be+f", None).await;
        assert_eq!(status, 200);
        let set = set.expect("a query token sets the cookie");
        let value = set
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("pas_token=")
            .unwrap();
        assert!(!value.contains([';', ' ']), "one cookie value: {value}");
        let (status, _) = get(token, "/", Some(&format!("pas_token={value}"))).await;
        assert_eq!(status, 200, "the cookie it set lets the browser back in");
        assert_eq!(get(token, "/?token=a+b", None).await.0, 401);
        assert_eq!(get(token, "/", Some("pas_token=a%2Bb")).await.0, 401);
    }

    #[test]
    fn loopback_addresses() {
        for a in [
            "127.0.0.1:6101",
            "[::1]:80",
            "localhost:6120",
            "127.1.2.3:0",
        ] {
            assert!(is_loopback(a), "{a}");
        }
        for a in [
            "0.0.0.0:6101",
            "192.168.1.4:80",
            "[::]:6120",
            "example.com:80",
        ] {
            assert!(!is_loopback(a), "{a}");
        }
    }

    #[test]
    fn constant_time_compare() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
