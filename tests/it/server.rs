//! The HTTP listeners of `pas serve`: free ports for tests, the token rule.

use crate::support::http;
use crate::support::workspace::Workspace;

#[test]
fn listeners_bind_free_ports_and_record_them() {
    let ws = Workspace::new();
    let mut d = ws.serve();
    let (dash, gw) = ws.addresses();
    assert_ne!(dash, gw);
    // Both answer HTTP (whatever the route).
    for addr in [&dash, &gw] {
        let r = http::get(&format!("http://{addr}/no-such-route"));
        assert_eq!(r.status, 404, "{addr}: {r:?}");
    }
    d.stop();
    assert!(
        !ws.path(".pas/serve.json").exists(),
        "the address file outlives the daemon"
    );
}

#[test]
fn non_loopback_bind_without_token_is_refused() {
    let ws = Workspace::new();
    let out = ws
        .cmd(&["serve"])
        .env("PAS_GATEWAY_BIND", "0.0.0.0:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: the gateway would listen on 0.0.0.0:0") && err.contains("PAS_TOKEN"),
        "{err}"
    );
    assert!(!ws.path(".pas/serve.json").exists());
}

#[test]
fn a_token_guards_every_request() {
    let ws = Workspace::new();
    let mut d = ws.serve_with(&[
        ("PAS_TOKEN", "s3cret-token"),
        ("PAS_GATEWAY_BIND", "0.0.0.0:0"),
    ]);
    let (_, gw) = ws.addresses();
    let port = gw.rsplit(':').next().unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/models");
    let none = http::get(&url);
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"]["code"], "invalid_api_key");
    let wrong = http::send("GET", &url, &[("authorization", "Bearer nope")], None);
    assert_eq!(wrong.status, 401);
    let right = http::send(
        "GET",
        &url,
        &[("authorization", "Bearer s3cret-token")],
        None,
    );
    assert_ne!(right.status, 401, "{right:?}");
    // A dashboard link carries the token once; the cookie carries it after.
    let link = http::get(&format!("{url}?token=s3cret-token"));
    assert_ne!(link.status, 401, "{link:?}");
    let cookie = link.header("set-cookie").expect("a cookie");
    assert!(cookie.starts_with("pas_token=s3cret-token;"), "{cookie}");
    let by_cookie = http::send("GET", &url, &[("cookie", "pas_token=s3cret-token")], None);
    assert_ne!(by_cookie.status, 401);
    d.stop();
}
