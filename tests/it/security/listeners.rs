//! Both listeners under abuse (issue 17): a slowloris is cut off at the header timeout, an
//! idle keep-alive connection too, connections past `max_connections` are closed at once
//! (a websocket holding its slot) while the connections in are still answered, and a
//! request past `max_concurrent_requests` gets an OpenAI-shaped 503 with `Retry-After`.
//! Raw sockets throughout, so the test says exactly what went on the wire.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pas::llm::fake::{self, FakeOptions, Mode};

use crate::support::gateway::{ask, Gw};
use crate::support::workspace::{wait_until, Workspace};

/// Reads from `s` until the server closes it (EOF or reset), writing `drip` (if any) a
/// byte every 100 ms meanwhile; how long that took. Fails the test after `limit`.
fn closed_within(s: &mut TcpStream, drip: &[u8], limit: Duration) -> Duration {
    let t0 = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut next = drip.iter().cycle();
    loop {
        assert!(
            t0.elapsed() < limit,
            "the server kept the connection past {limit:?}"
        );
        if !drip.is_empty() && s.write_all(&[*next.next().unwrap()]).is_err() {
            return t0.elapsed();
        }
        match s.read(&mut buf) {
            Ok(0) => return t0.elapsed(),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return t0.elapsed(),
        }
    }
}

/// One keep-alive `GET path` on `s`; the status, once the whole answer is read.
fn get_on(s: &mut TcpStream, addr: &str, path: &str) -> u16 {
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).expect("the answer");
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("a content-length");
            if body.len() >= len {
                return head.split(' ').nth(1).unwrap().parse().unwrap();
            }
        }
    }
}

/// Whether the server closes a connection just opened to `addr` (without answering).
fn refused_at_once(addr: &str) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

#[test]
fn a_slowloris_and_an_idle_keep_alive_are_cut_off_at_the_header_timeout() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::start(
        &[crate::security::priced_provider(&up)],
        "gateway: {header_timeout_s: 1}\ndashboard: {header_timeout_s: 1}\n",
        &[],
    );
    let (dash, gateway) = gw.ws.addresses();
    for addr in [&gateway, &dash] {
        let path = if addr == &gateway {
            "/v1/models"
        } else {
            "/api/status"
        };
        // Headers a byte at a time, every 100 ms: never whole.
        let mut slow = TcpStream::connect(addr.as_str()).unwrap();
        let drip = format!("GET /v1/models HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ");
        let slow_for = closed_within(
            &mut slow,
            format!("{drip}{}", "a".repeat(10_000)).as_bytes(),
            Duration::from_secs(6),
        );
        eprintln!("{addr}: slowloris closed after {slow_for:?}");
        assert!(
            slow_for >= Duration::from_millis(800),
            "{addr}: cut off before its timeout ({slow_for:?})"
        );
        // The listener answered others all along.
        assert_eq!(
            crate::support::http::get(&format!("http://{addr}{path}")).status,
            200
        );
        // A kept-alive connection that asks nothing more is closed after the same time.
        let mut idle = TcpStream::connect(addr.as_str()).unwrap();
        assert_eq!(get_on(&mut idle, addr, path), 200);
        let idle_for = closed_within(&mut idle, b"", Duration::from_secs(6));
        eprintln!("{addr}: idle keep-alive closed after {idle_for:?}");
        assert!(
            idle_for >= Duration::from_millis(800),
            "{addr}: idle connection cut off too early ({idle_for:?})"
        );
    }
}

#[test]
fn past_max_connections_new_ones_are_closed_and_those_in_are_still_answered() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::start(
        &[crate::security::priced_provider(&up)],
        "gateway: {max_connections: 4}\ndashboard: {max_connections: 2}\n",
        &[],
    );
    let (dash, gateway) = gw.ws.addresses();

    // The gateway: one client that keeps asking, three idle connections, then a flood.
    let mut client = TcpStream::connect(&gateway).unwrap();
    assert_eq!(get_on(&mut client, &gateway, "/v1/models"), 200);
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&gateway).unwrap())
        .collect();
    let t0 = Instant::now();
    for _ in 0..20 {
        assert!(
            refused_at_once(&gateway),
            "a connection past the cap was kept"
        );
    }
    let took = t0.elapsed();
    eprintln!("20 connections past the cap closed in {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "refusals must be quick: 20 took {took:?}"
    );
    assert_eq!(
        get_on(&mut client, &gateway, "/v1/models"),
        200,
        "the client in is still answered"
    );
    drop(idle);
    wait_until(
        "a slot free again",
        Duration::from_secs(10),
        || match crate::support::http::try_send(
            "GET",
            &format!("http://{gateway}/v1/models"),
            &[],
            None,
        ) {
            Ok(r) if r.status == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // The dashboard: a websocket keeps its connection's slot after the 101.
    let mut ws = TcpStream::connect(&dash).unwrap();
    write!(
        ws,
        "GET /ws HTTP/1.1\r\nHost: {dash}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1024];
    let n = ws.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let other = TcpStream::connect(&dash).unwrap();
    assert!(
        refused_at_once(&dash),
        "the websocket must count as a connection"
    );
    drop(other);
    drop(ws);
    wait_until("the websocket's slot free", Duration::from_secs(10), || {
        match crate::support::http::try_send("GET", &format!("http://{dash}/api/status"), &[], None)
        {
            Ok(r) if r.status == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

#[test]
fn past_max_concurrent_requests_the_gateway_answers_503_with_retry_after() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::start(
        &[crate::security::priced_provider(&up)],
        "gateway: {max_concurrent_requests: 1}\n",
        &[],
    );
    up.set_mode(Mode::Delay(Duration::from_millis(1500)));
    let url = gw.url.clone();
    let first = std::thread::spawn(move || {
        crate::support::http::send(
            "POST",
            &format!("{url}/v1/chat/completions"),
            &[],
            Some(&ask("m", false)),
        )
    });
    wait_until("the first call upstream", Duration::from_secs(10), || {
        (up.requests() == 1)
            .then_some(())
            .ok_or("not yet".to_string())
    });
    let second = gw.chat(&ask("m", false), &[]);
    assert_eq!(second.status, 503, "{}", second.body);
    assert_eq!(second.header("retry-after").as_deref(), Some("1"));
    let err = &second.json()["error"];
    assert_eq!(err["code"], "overloaded");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("gateway.max_concurrent_requests"),
        "{err}"
    );
    assert_eq!(up.requests(), 1, "a refused call goes nowhere");
    assert_eq!(first.join().unwrap().status, 200);
    up.set_mode(Mode::Ok);
    assert_eq!(
        gw.chat(&ask("m", false), &[]).status,
        200,
        "the slot is free again"
    );
    assert_eq!(gw.receipts(2).len(), 2, "the refused call has no receipt");
}

#[test]
fn a_flood_of_idle_connections_leaves_pas_answering() {
    // Many more idle sockets than the cap: pas keeps only the cap's worth open, and
    // answers again as soon as they go.
    let ws = Workspace::with_config("gateway: {max_connections: 64}\n");
    let _d = ws.serve_ready();
    let (_, gateway) = ws.addresses();
    let held: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(&gateway).ok())
        .collect();
    assert!(held.len() >= 64, "only {} connections opened", held.len());
    // Those past the cap were closed; the kernel backlog is empty, so a fresh connection
    // is accepted and closed at once rather than left waiting.
    assert!(refused_at_once(&gateway));
    drop(held);
    wait_until(
        "answering again",
        Duration::from_secs(10),
        || match crate::support::http::try_send(
            "GET",
            &format!("http://{gateway}/v1/models"),
            &[],
            None,
        ) {
            Ok(r) if r.status == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}
