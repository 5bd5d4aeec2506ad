//! The gateway against hostile upstreams and callers (issue 17): a redirect is not
//! followed, an endless answer is cut at the cap with pas's memory bounded, a caller that
//! stops reading a stream does not keep its hold past the stream's deadline, and bad
//! attribution headers are refused before anything is sent.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use pas::llm::config::Protocol;
use pas::llm::fake::{self, Fake, FakeOptions, Mode};

use crate::support::gateway::{ask, model, read_all_receipts, sse_text, Gw};
use crate::support::workspace::wait_until;

/// A provider entry like `gateway::provider`, with its own `timeout_s` and price (per
/// Mtok, each way), serving model `m-<name>` with capability `x`.
fn provider(name: &str, f: &Fake, timeout_s: u32, price: &str) -> String {
    format!(
        "  - name: {name}\n    protocol: openai\n    base_url: {}\n    timeout_s: {timeout_s}\n    models:\n{}",
        f.base_url(Protocol::Openai),
        model(&format!("m-{name}"), &["x"], Some((price, price)))
    )
}

/// The peak resident memory of process `pid`, in MiB (`VmHWM`).
fn peak_mib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

#[test]
fn a_redirect_is_a_failed_attempt_and_its_target_never_hears_of_it() {
    let target = fake::start(FakeOptions::default());
    let to = format!("{}/chat/completions", target.base_url(Protocol::Openai));
    crate::support::gateway::falls_back("redirect", Some(Mode::Redirect(to)), ["http_307"; 2]);
    assert_eq!(target.requests(), 0, "pas followed a provider's redirect");
}

#[test]
fn an_endless_answer_is_cut_at_the_cap_falls_back_and_leaves_memory_bounded() {
    let endless = fake::start(FakeOptions::default());
    let good = fake::start(FakeOptions::default());
    endless.set_mode(Mode::Endless);
    let gw = Gw::start(
        &[
            provider("endless", &endless, 60, "0.5"),
            provider("good", &good, 60, "1"),
        ],
        "routing: {policy: cheapest, cooldown_s: 0.1}\n",
        &[],
    );
    let pid = gw._daemon.pid();
    let before = peak_mib(pid);

    // Plain: the 1 GiB answer is cut at 64 MiB, a failed attempt; the next candidate answers.
    let r = gw.chat(&ask("cap:x", false), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-pas-provider").as_deref(), Some("good"));
    let rows = gw.receipts(2);
    assert_eq!(rows[0]["provider"], "endless");
    let error = rows[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("malformed: ") && error.contains("too_large") && error.contains("64 MiB"),
        "{error}"
    );

    // Streamed: the content started, so the caller gets the part that came and a cut.
    let r = gw.chat(&ask("m-endless", true), &[]);
    assert_eq!(r.status, 200);
    let (_, done, frames) = sse_text(&r.body);
    assert!(!done);
    let last = &frames.last().unwrap()["error"];
    assert_eq!(last["code"], "upstream_cut");
    assert!(
        last["message"].as_str().unwrap().contains("too_large"),
        "{last}"
    );
    assert!(
        r.body.len() < 70 << 20,
        "the caller got {} bytes",
        r.body.len()
    );
    let rows = gw.receipts(3);
    assert_eq!(rows[2]["status"], "cut");

    let after = peak_mib(pid);
    eprintln!("pas peak memory: {before} MiB before, {after} MiB after 2 GiB offered");
    assert!(
        after < before + 256,
        "pas's memory grew from {before} to {after} MiB reading endless answers"
    );
}

#[test]
fn a_caller_that_stops_reading_a_stream_gives_its_hold_back_at_the_deadline() {
    // 12 MB of stream: more than the socket buffers between pas and a caller that never
    // reads, so pas's writes to it block.
    let word = "w".repeat(1000);
    let up = fake::start(FakeOptions {
        text: vec![word.as_str(); 12_000].join(" "),
        ..FakeOptions::default()
    });
    let gw = Gw::start(&[provider("p", &up, 3, "1")], "", &[]);
    let (_, addr) = gw.ws.addresses();
    let body = serde_json::to_string(&ask("m-p", true)).unwrap();
    let mut caller = TcpStream::connect(&addr).unwrap();
    write!(
        caller,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    // The receipt (and with it the hold's settlement) comes at the deadline, while the
    // caller's socket is still open and unread.
    let row = wait_until(
        "the stalled stream's receipt",
        Duration::from_secs(15),
        || {
            read_all_receipts(&gw.ws)
                .into_iter()
                .next()
                .ok_or_else(|| "no receipt yet".to_string())
        },
    );
    let took = t0.elapsed();
    eprintln!("stalled stream's receipt after {took:?} (timeout_s 3)");
    assert_eq!(row["status"], "cut", "{row}");
    let error = row["error"].as_str().unwrap_or_default();
    assert!(error.contains("stopped reading"), "{error}");
    assert!(
        took >= Duration::from_millis(2500),
        "cut before its deadline: {took:?}"
    );
    // pas is free for the next call, with the stalled caller still connected.
    up.set_mode(Mode::Ok);
    let next = gw.chat(&ask("m-p", false), &[]);
    assert_eq!(next.status, 200, "{}", next.body);
    // pas closed the stalled caller's connection: reading at last, it gets the start of
    // its stream and then the end of the connection, never a stream that looks complete.
    caller
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let ended = caller.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(
        !matches!(&ended, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "pas kept the stalled caller's connection open"
    );
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(
        !text.contains("[DONE]"),
        "a cut stream must not look complete"
    );
}

#[test]
fn bad_attribution_headers_are_refused_naming_the_header_and_sent_nowhere() {
    let up = fake::start(FakeOptions::default());
    let gw = Gw::start(&[provider("p", &up, 5, "1")], "", &[]);
    let long = "a".repeat(129);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("x-pas-agent", vec![("x-pas-agent", "../../etc/passwd")]),
        ("x-pas-agent", vec![("x-pas-agent", "two words")]),
        ("x-pas-agent", vec![("x-pas-agent", &long[..65])]),
        (
            "x-pas-agent",
            vec![("x-pas-agent", "a"), ("x-pas-agent", "b")],
        ),
        ("x-pas-job", vec![("x-pas-job", "-starts-with-a-dash")]),
        ("x-pas-job", vec![("x-pas-job", &long)]),
        ("x-request-id", vec![("x-request-id", "<script>")]),
    ];
    for (name, headers) in &cases {
        let r = gw.chat(&ask("m-p", false), headers);
        assert_eq!(r.status, 400, "{headers:?}: {}", r.body);
        let err = &r.json()["error"];
        assert_eq!(err["type"], "invalid_request_error");
        assert!(err["message"].as_str().unwrap().contains(name), "{err}");
    }
    // Bytes no header may hold, over a raw socket (a client library refuses to send them).
    let (_, addr) = gw.ws.addresses();
    let body = serde_json::to_string(&ask("m-p", false)).unwrap();
    let raw = crate::support::http::raw(
        &addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("x-pas-agent", "agent-\u{e9}"),
            ("content-type", "application/json"),
        ],
        &body,
    );
    assert_eq!(raw.status, 400, "{}", raw.body);
    assert!(raw.body.contains("x-pas-agent"), "{}", raw.body);
    assert_eq!(up.requests(), 0, "a refused call went upstream");
    // Good ones pass, and are what the receipt says.
    let r = gw.chat(
        &ask("m-p", false),
        &[
            ("x-pas-agent", "coder.v2_a-1"),
            ("x-pas-job", "J-42"),
            ("x-request-id", "req-1"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = gw.receipts(1);
    assert_eq!(rows.len(), 1, "refused calls leave no receipt: {rows:?}");
    assert_eq!(rows[0]["agent"], "coder.v2_a-1");
    assert_eq!(rows[0]["job"], "J-42");
    assert_eq!(rows[0]["request_id"], "req-1");
}
