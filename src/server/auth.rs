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

async fn check(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    let given = presented(&req);
    let from_query = query_token(&req).is_some();
    if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
        return refuse();
    }
    let mut resp = next.run(req).await;
    if from_query {
        let cookie = format!("pas_token={token}; Path=/; HttpOnly; SameSite=Strict");
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
    if let Some(q) = query_token(req) {
        return Some(q);
    }
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("pas_token=").map(str::to_string))
}

fn query_token(req: &Request) -> Option<String> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(str::to_string)
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
