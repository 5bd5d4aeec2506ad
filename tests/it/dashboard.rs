//! The dashboard's routes (with `oneshot`, in-process) and its WebSocket stream (against
//! the real daemon, and in-process where the test must control the hub).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;

use crate::support::http;
use crate::support::workspace::Workspace;

fn shared(ws: &Workspace, hub: Arc<pas::events::Hub>) -> pas::web::Shared {
    pas::web::Shared {
        ws: pas::workspace::Workspace::at(&ws.root),
        hub,
        db: None,
        gateway_metrics: Arc::new(Default::default()),
    }
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String) {
    let r = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 16 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn every_route_answers_and_none_writes() {
    let ws = Workspace::new();
    ws.drop_card(
        "XSS-1",
        "title: \"<script>alert(1)</script>\"\nrequires: [nobody-has-this]\n",
    );
    ws.drop_card("CHILD-1", "title: a child\nparent: XSS-1\n");
    let app = pas::dashboard::router(shared(&ws, Arc::new(pas::events::Hub::new(0, None))));
    http::block_on(async {
        for uri in [
            "/",
            "/tree",
            "/costs",
            "/alerts",
            "/activity",
            "/jobs/XSS-1",
        ] {
            let (s, body) = get(&app, uri).await;
            assert_eq!(s, StatusCode::OK, "{uri}: {body}");
            assert!(body.contains("<nav>"), "{uri}");
            assert!(
                !body.contains("<script>alert(1)"),
                "{uri} shows a title unescaped"
            );
        }
        let (_, board) = get(&app, "/").await;
        assert!(board.contains("&lt;script&gt;alert(1)&lt;"), "{board}");

        let (s, body) = get(&app, "/api/status").await;
        assert_eq!(s, StatusCode::OK);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["jobs"]["inbox"], 2, "{v}");
        assert_eq!(v["cost_usd"]["total"], "0");

        let (_, body) = get(&app, "/api/jobs?state=inbox&q=ALERT").await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["total"], 1, "{v}");
        assert_eq!(v["jobs"][0]["id"], "XSS-1");
        assert!(!v["jobs"][0]["waiting"].as_str().unwrap().is_empty(), "{v}");

        let (s, body) = get(&app, "/api/jobs/XSS-1").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["children"][0]["id"], "CHILD-1");
        assert!(v["text"].as_str().unwrap().contains("<script>"));
        let (_, body) = get(&app, "/api/jobs/CHILD-1").await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["parent"]["id"], "XSS-1");

        assert_eq!(get(&app, "/api/jobs/NOPE").await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            get(&app, "/api/jobs/..%2Fx").await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(get(&app, "/jobs/NOPE").await.0, StatusCode::NOT_FOUND);
        for uri in [
            "/api/agents",
            "/api/tree",
            "/api/costs",
            "/api/costs/series?by=agent&step=hour",
            "/api/alerts",
            "/api/events?since=0",
            "/api/commits",
            "/static/app.js",
            "/static/pas.css",
        ] {
            let (s, body) = get(&app, uri).await;
            assert_eq!(s, StatusCode::OK, "{uri}: {body}");
        }
        let (s, metrics) = get(&app, "/metrics").await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            metrics.contains("pas_cards{state=\"inbox\"} 2"),
            "{metrics}"
        );
        assert!(metrics.contains("pas_gateway_"), "gateway metrics missing");
        assert!(
            metrics.contains("pas_events_published_total{type=\"agent.down\"} 0"),
            "every event type is counted: {metrics}"
        );
        for line in metrics.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("pas_"), "{line}");
        }
        // Read-only: nothing but GET is routed.
        for method in ["POST", "PUT", "DELETE"] {
            let r = app
                .clone()
                .oneshot(
                    Request::builder()
                        .method(method)
                        .uri("/api/jobs/XSS-1")
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        }
    });
    assert_eq!(ws.places_of("XSS-1"), vec!["inbox".to_string()]);
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(c: &mut Client) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .expect("a message within 10 s")
            .expect("socket open")
            .expect("a frame");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// Reads events until one satisfies `want`, checking that seqs rise by one.
async fn until(c: &mut Client, last: &mut u64, want: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v = next_json(c).await;
        let seq = v["seq"].as_u64().unwrap();
        assert_eq!(seq, *last + 1, "a gap before {v}");
        *last = seq;
        if want(&v) {
            return v;
        }
    }
}

#[test]
fn stream_sends_a_snapshot_then_every_event_and_replays_since() {
    let ws = Workspace::new();
    let mut d = ws.serve();
    let (dash, _) = ws.addresses();
    let before = http::block_on(async {
        let (mut c, _) = tokio_tungstenite::connect_async(format!("ws://{dash}/ws"))
            .await
            .unwrap();
        let snap = next_json(&mut c).await;
        assert_eq!(snap["type"], "snapshot", "{snap}");
        assert_eq!(snap["reason"], "connect");
        assert!(snap["data"]["cards"].is_array() && snap["data"]["agents"].is_array());
        let mut last = snap["seq"].as_u64().unwrap();
        ws.drop_card("WS-1", "title: one\n");
        let e = until(&mut c, &mut last, |v| v["type"] == "job.created").await;
        assert_eq!(e["data"]["id"], "WS-1");
        // What the board ranks it by comes with it.
        assert_eq!(e["data"]["title"], "one", "{e}");
        assert_eq!(e["data"]["priority"], "medium", "{e}");
        assert!(e["ts"].as_str().unwrap().ends_with('Z'));
        let before = last;
        ws.drop_card("WS-2", "title: two\n");
        ws.drop_card("WS-3", "title: three\n");
        until(&mut c, &mut last, |v| v["data"]["id"] == "WS-3").await;

        // Ping/pong for browsers, which cannot send ping frames.
        c.send(Message::Text(r#"{"type":"ping"}"#.into()))
            .await
            .unwrap();
        let pong = next_json(&mut c).await;
        assert_eq!(pong["type"], "pong", "{pong}");
        drop(c);

        // Reconnecting with ?since replays exactly what came after, no snapshot.
        let (mut c, _) = tokio_tungstenite::connect_async(format!("ws://{dash}/ws?since={before}"))
            .await
            .unwrap();
        let mut seq = before;
        let first = next_json(&mut c).await;
        assert_ne!(first["type"], "snapshot", "{first}");
        assert_eq!(first["seq"], before + 1);
        assert_eq!(first["data"]["id"], "WS-2");
        seq += 1;
        until(&mut c, &mut seq, |v| v["data"]["id"] == "WS-3").await;

        // A seq from another numbering gets a snapshot.
        let (mut c, _) =
            tokio_tungstenite::connect_async(format!("ws://{dash}/ws?since=999999999"))
                .await
                .unwrap();
        let s = next_json(&mut c).await;
        assert_eq!(s["type"], "snapshot");
        assert_eq!(s["reason"], "since-ahead");

        before
    });
    // The JSON twin pages through the same events.
    let r = http::get(&format!("http://{dash}/api/events?since={before}"));
    let evs = r.json()["events"].clone();
    assert_eq!(evs[0]["seq"], before + 1, "{evs}");
    d.stop();
}

/// Serves the router in-process on a free port (for tests that drive the hub).
fn serve_in_process(shared: pas::web::Shared) -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = pas::dashboard::router(shared);
    rt.spawn(async move { axum::serve(listener, app).await });
    (rt, addr)
}

#[test]
fn a_client_that_falls_behind_is_resynced_not_dropped() {
    let ws = Workspace::new();
    let hub = Arc::new(pas::events::Hub::with_capacity(0, None, 2000));
    let (rt, addr) = serve_in_process(shared(&ws, hub.clone()));
    rt.block_on(async {
        let (mut c, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .unwrap();
        let snap = next_json(&mut c).await;
        assert_eq!(snap["type"], "snapshot");
        // A second client reads everything as it comes: once it has the last event, every
        // batch has gone out, and the first client, which read nothing meanwhile, is far
        // behind. Each event is larger than a batch's byte limit, so each is a batch of its
        // own: more than the channel keeps (256) and the sockets buffer (a few MiB).
        let (mut watcher, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .unwrap();
        assert_eq!(next_json(&mut watcher).await["type"], "snapshot");
        let pad = "x".repeat(520 * 1024);
        let total = 360u64;
        let emitter = {
            let hub = hub.clone();
            tokio::task::spawn_blocking(move || {
                for i in 0..total {
                    let event = pas::events::TraceRejected {
                        source: format!("L-{i}"),
                        reason: pad.clone(),
                    };
                    hub.emit(chrono::Utc::now(), pas::events::Event::TraceRejected(event));
                }
            })
        };
        let mut seen = 0;
        until(&mut watcher, &mut seen, |v| v["seq"] == total).await;
        emitter.await.unwrap();
        let mut last = 0u64;
        let mut resyncs = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while last < total {
            assert!(Instant::now() < deadline, "stuck at {last}");
            let v = next_json(&mut c).await;
            if v["type"] == "snapshot" {
                assert_eq!(v["reason"], "lagged", "{}", v["reason"]);
                resyncs += 1;
                last = v["seq"].as_u64().unwrap();
                continue;
            }
            let seq = v["seq"].as_u64().unwrap();
            assert_eq!(seq, last + 1, "a silent gap after {last}");
            last = seq;
        }
        assert!(
            resyncs >= 1,
            "the client never fell behind; the test proves nothing"
        );
    });
}

#[test]
fn a_token_guards_the_stream_too() {
    let ws = Workspace::new();
    let mut d = ws.serve_with(&[
        ("PAS_TOKEN", "tok-123"),
        ("PAS_DASHBOARD_BIND", "0.0.0.0:0"),
    ]);
    let (dash, _) = ws.addresses();
    let port = dash.rsplit(':').next().unwrap();
    let base = format!("127.0.0.1:{port}");
    http::block_on(async {
        let refused = tokio_tungstenite::connect_async(format!("ws://{base}/ws")).await;
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status(), 401)
            }
            other => panic!("expected a 401, got {other:?}"),
        }
        let (mut c, _) = tokio_tungstenite::connect_async(format!("ws://{base}/ws?token=tok-123"))
            .await
            .unwrap();
        assert_eq!(next_json(&mut c).await["type"], "snapshot");
    });
    assert_eq!(http::get(&format!("http://{base}/api/status")).status, 401);
    assert_eq!(http::get(&format!("http://{base}/")).status, 401);
    assert_eq!(
        http::get(&format!("http://{base}/api/status?token=tok-123")).status,
        200
    );
    d.stop();
}
