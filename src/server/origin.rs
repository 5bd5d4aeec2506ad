//! The guard against a browser used as a confused deputy.
//!
//! A listener on loopback needs no token, so any web page the user visits could make the
//! browser talk to it: a cross-site `POST` with a `text/plain` body is a "simple" request
//! that needs no CORS preflight, and the gateway would spend money on it; a WebSocket is
//! not bound by the same-origin policy, so a foreign page could read the whole event
//! stream; and DNS rebinding (a name that first points at the attacker, then at
//! 127.0.0.1) turns the attacker's page into a same-origin reader of the dashboard.
//!
//! Two rules stop all three, and cost nothing to the clients pas is for (SDKs, curl,
//! agents and the dashboard's own page, none of which send a foreign `Origin`):
//! - a request that carries `Origin` must come from the origin it is sent to;
//! - on a loopback listener, `Host` must name a loopback host (`localhost`, `127.x`,
//!   `::1`), which a rebound name never does.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;

/// `app` behind the Origin rule, and the Host rule when it listens on loopback only.
pub fn guard(app: Router, loopback: bool) -> Router {
    app.layer(middleware::from_fn_with_state(loopback, check))
}

async fn check(State(loopback): State<bool>, req: Request, next: Next) -> Response {
    let h = req.headers();
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    if loopback && host.is_some_and(|host| !is_loopback_host(host)) {
        return refuse(
            "the Host header does not name this machine's loopback address; \
             use http://127.0.0.1:<port> (a DNS name that points here is refused)",
        );
    }
    if let Some(origin) = h.get(header::ORIGIN) {
        if !same_origin(origin, host) {
            return refuse(
                "cross-origin requests are refused: pas answers only its own pages \
                 and clients that send no foreign Origin",
            );
        }
    }
    next.run(req).await
}

/// Whether a `Host` value (`name[:port]`, `[v6][:port]`) is a loopback host.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `Origin` (`scheme://host[:port]`) is the origin of `host`, the request's
/// own `Host`. `Origin: null` (a sandboxed frame, a file) is never the same.
fn same_origin(origin: &HeaderValue, host: Option<&str>) -> bool {
    let (Ok(origin), Some(host)) = (origin.to_str(), host) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

fn refuse(message: &str) -> Response {
    super::auth::refusal(StatusCode::FORBIDDEN, message, "forbidden_origin")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:6101",
            "localhost",
            "LOCALHOST:80",
            "[::1]:6120",
            "[::1]",
            "127.9.9.9",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:6101",
            "10.0.0.1:80",
            "[::]:80",
            "localhost.evil.example",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn origins() {
        let o = |s: &'static str| HeaderValue::from_static(s);
        assert!(same_origin(
            &o("http://127.0.0.1:6101"),
            Some("127.0.0.1:6101")
        ));
        assert!(!same_origin(
            &o("http://127.0.0.1:6101"),
            Some("127.0.0.1:6120")
        ));
        assert!(!same_origin(
            &o("https://evil.example"),
            Some("127.0.0.1:6101")
        ));
        assert!(!same_origin(&o("null"), Some("127.0.0.1:6101")));
        assert!(!same_origin(&o("http://127.0.0.1:6101"), None));
    }
}
