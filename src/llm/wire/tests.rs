//! The real client against the real fake upstream, for both protocols: exact usage,
//! translations, and every failure mode mapped to the error fallback decides by.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::llm::fake::{self, Fake, FakeOptions, Mode};

mod tools;

const TEXT: &str = "hello from the fake upstream";
const BOTH: [Protocol; 2] = [Protocol::Openai, Protocol::Anthropic];

fn opts() -> FakeOptions {
    FakeOptions {
        cached_tokens: 4,
        ..FakeOptions::default()
    }
}

fn provider(fake: &Fake, protocol: Protocol, timeout_s: f64, first: f64) -> Provider {
    Provider {
        name: "fake".into(),
        protocol,
        base_url: format!("{}/", fake.base_url(protocol)),
        api_key_env: None,
        local: true,
        timeout_s,
        first_token_timeout_s: first,
        max_tokens_field: None,
        fake: None,
        models: vec![],
    }
}

fn model() -> Model {
    Model {
        id: "target-model".into(),
        capabilities: vec![],
        ctx_limit: None,
        max_output_tokens: None,
        price_per_mtok: None,
    }
}

fn request(include_usage: bool) -> Value {
    let mut body = json!({"model": "cap:summarize", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "say hello"}], "stream": true});
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

async fn plain(p: &Provider, body: &Value) -> Result<Reply, CallError> {
    let m = model();
    let t = Target {
        provider: p,
        model: &m,
        api_key: Some("sk-test"),
        native: None,
    };
    complete(&reqwest::Client::new(), &t, body).await
}

async fn open(p: &Provider, body: &Value) -> Result<Stream, CallError> {
    let m = model();
    let t = Target {
        provider: p,
        model: &m,
        api_key: Some("sk-test"),
        native: None,
    };
    stream(&reqwest::Client::new(), &t, body).await
}

/// Every frame's payload (the text after `data: `), and the error that ended the stream.
async fn drain(s: &mut Stream) -> (Vec<String>, Option<CallError>) {
    let mut frames = Vec::new();
    while let Some(f) = s.next().await {
        match f {
            Ok(b) => {
                let text = String::from_utf8(b.to_vec()).unwrap();
                let payload = text.strip_prefix("data: ").unwrap().strip_suffix("\n\n");
                frames.push(payload.unwrap().to_owned());
            }
            Err(e) => {
                assert!(s.next().await.is_none(), "nothing after an error");
                return (frames, Some(e));
            }
        }
    }
    (frames, None)
}

fn content_of(frames: &[String]) -> String {
    let json = frames.iter().filter(|f| *f != "[DONE]");
    json.map(|f| serde_json::from_str::<Value>(f).unwrap())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn plain_calls_return_text_and_exact_usage_for_both_protocols() {
    let f = fake::start(opts());
    for proto in BOTH {
        let p = provider(&f, proto, 2.0, 1.0);
        let r = plain(&p, &request(false)).await.unwrap();
        assert_eq!(r.text, TEXT);
        assert_eq!(r.body["model"], "target-model");
        assert_eq!(r.body["choices"][0]["message"]["content"], TEXT);
        assert_eq!(r.body["choices"][0]["finish_reason"], "stop");
        assert_eq!(r.body["usage"]["prompt_tokens"], 12, "{proto:?}");
        let u = r.usage;
        assert_eq!((u.input, u.output, u.cached), (12, 5, 4), "{proto:?}");
        assert_eq!(u.source, UsageSource::Provider);

        let (headers, sent) = f.last_request().unwrap();
        assert_eq!(sent["model"], "target-model");
        assert!(sent.get("stream").is_none(), "a plain call is not streamed");
        match proto {
            Protocol::Openai => {
                assert_eq!(header(&headers, "authorization"), Some("Bearer sk-test"));
                assert_eq!(sent["messages"][0]["role"], "system");
            }
            Protocol::Anthropic => {
                assert_eq!(header(&headers, "x-api-key"), Some("sk-test"));
                assert_eq!(header(&headers, "anthropic-version"), Some("2023-06-01"));
                assert_eq!(sent["system"], "be brief");
                assert_eq!(sent["max_tokens"], 4096);
                assert_eq!(
                    sent["messages"],
                    json!([{"role": "user", "content": "say hello"}])
                );
            }
        }
    }
    assert_eq!(f.requests(), 2);
}

#[tokio::test]
async fn streams_forward_the_usage_chunk_only_when_asked() {
    let f = fake::start(opts());
    for proto in BOTH {
        for asked in [true, false] {
            let p = provider(&f, proto, 2.0, 1.0);
            let mut s = open(&p, &request(asked)).await.unwrap();
            let (frames, err) = drain(&mut s).await;
            assert!(err.is_none(), "{err:?}");
            assert_eq!(frames.last().unwrap(), "[DONE]");
            assert_eq!(content_of(&frames), TEXT);
            assert_eq!(s.text(), TEXT);
            let first: Value = serde_json::from_str(&frames[0]).unwrap();
            assert_eq!(
                first["choices"][0]["delta"]["role"], "assistant",
                "{proto:?}"
            );
            assert_eq!(first["object"], "chat.completion.chunk");
            let usage_chunks: Vec<Value> = frames[..frames.len() - 1]
                .iter()
                .map(|f| serde_json::from_str::<Value>(f).unwrap())
                .filter(|v| v["choices"] == json!([]))
                .collect();
            assert_eq!(
                usage_chunks.len(),
                usize::from(asked),
                "{proto:?} asked={asked}"
            );
            if asked {
                assert_eq!(usage_chunks[0]["usage"]["prompt_tokens"], 12);
                assert_eq!(usage_chunks[0]["usage"]["completion_tokens"], 5);
            }
            let finish: Value =
                serde_json::from_str(&frames[frames.len() - 2 - usize::from(asked)]).unwrap();
            assert_eq!(finish["choices"][0]["finish_reason"], "stop", "{proto:?}");
            let u = s.usage();
            assert_eq!((u.input, u.output, u.cached), (12, 5, 4), "{proto:?}");
            assert_eq!(u.source, UsageSource::Provider);
            assert!(s.ttft() > Duration::ZERO);

            let (_, sent) = f.last_request().unwrap();
            assert_eq!(sent["stream"], true);
            if proto == Protocol::Openai {
                assert_eq!(
                    sent["stream_options"]["include_usage"], true,
                    "always asked upstream"
                );
            }
        }
    }
}

#[tokio::test]
async fn http_errors_keep_their_code_and_retry_after() {
    let f = fake::start(opts());
    for proto in BOTH {
        let p = provider(&f, proto, 2.0, 1.0);
        for (code, retry, retryable) in
            [(429, Some(7), true), (503, None, true), (400, None, false)]
        {
            f.set_mode(Mode::Status {
                code,
                retry_after: retry,
            });
            for streamed in [false, true] {
                let e = if streamed {
                    open(&p, &request(false)).await.err().unwrap()
                } else {
                    plain(&p, &request(false)).await.unwrap_err()
                };
                let CallError::Status {
                    code: got,
                    ref message,
                    ..
                } = e
                else {
                    panic!("{e:?}")
                };
                assert_eq!(got, code);
                assert!(message.contains(&format!("HTTP {code}")), "{message}");
                assert_eq!(e.retryable(), retryable);
                assert_eq!(e.status(), format!("http_{code}"));
                assert_eq!(e.retry_after(), retry.map(Duration::from_secs));
            }
        }
    }
}

#[tokio::test]
async fn a_stopped_upstream_is_a_retryable_connect_error() {
    let f = fake::start(opts());
    let p = provider(&f, Protocol::Openai, 1.0, 0.5);
    f.stop();
    let e = plain(&p, &request(false)).await.unwrap_err();
    assert!(matches!(e, CallError::Connect(_)), "{e:?}");
    assert!(e.retryable());
    assert_eq!(e.status(), "connect_error");
}

#[tokio::test]
async fn first_token_and_total_timeouts_are_told_apart() {
    let f = fake::start(opts());
    for proto in BOTH {
        f.set_mode(Mode::Hang);
        let e = plain(&provider(&f, proto, 0.2, 5.0), &request(false))
            .await
            .unwrap_err();
        assert_eq!(e.status(), "timeout", "{e:?}");
        assert!(e.retryable());

        f.set_mode(Mode::HangStream);
        let t0 = Instant::now();
        let e = open(&provider(&f, proto, 5.0, 0.2), &request(false))
            .await
            .err()
            .unwrap();
        let CallError::Timeout { first_token, after } = e else {
            panic!("{e:?}")
        };
        assert!(first_token);
        assert_eq!(after, Duration::from_millis(200));
        assert!(t0.elapsed() < Duration::from_secs(2));

        // A total limit shorter than the first-token one is what expires.
        let e = open(&provider(&f, proto, 0.2, 5.0), &request(false))
            .await
            .err()
            .unwrap();
        assert_eq!(e.status(), "timeout", "{e:?}");

        f.set_mode(Mode::Delay(Duration::from_millis(300)));
        let e = open(&provider(&f, proto, 5.0, 0.1), &request(false))
            .await
            .err()
            .unwrap();
        assert_eq!(e.status(), "first_token_timeout");
        let mut s = open(&provider(&f, proto, 5.0, 1.0), &request(false))
            .await
            .unwrap();
        assert!(s.ttft() >= Duration::from_millis(300));
        assert!(drain(&mut s).await.1.is_none());
    }
}

#[tokio::test]
async fn the_total_timeout_cuts_a_slow_stream_midway() {
    let f = fake::start(FakeOptions {
        text: "one two three four five six seven eight nine ten".into(),
        chunk_delay: Duration::from_millis(60),
        ..opts()
    });
    for proto in BOTH {
        let mut s = open(&provider(&f, proto, 0.4, 0.3), &request(true))
            .await
            .unwrap();
        let (frames, err) = drain(&mut s).await;
        let Some(CallError::Cut { usage, message }) = err else {
            panic!("{err:?}")
        };
        assert!(message.contains("timed out"), "{message}");
        assert!(!frames.is_empty() && frames.last().unwrap() != "[DONE]");
        assert_eq!(usage.source, UsageSource::Estimated);
    }
}

#[tokio::test]
async fn a_cut_stream_yields_its_frames_then_cut_with_partial_usage() {
    let f = fake::start(opts());
    f.set_mode(Mode::Cut { after_chunks: 2 });
    let body = request(false);
    let input_estimate = estimate_input(&body);
    for proto in BOTH {
        let mut s = open(&provider(&f, proto, 2.0, 1.0), &body).await.unwrap();
        let (frames, err) = drain(&mut s).await;
        assert_eq!(content_of(&frames), "hello from ");
        let Some(e @ CallError::Cut { .. }) = err else {
            panic!("{err:?}")
        };
        assert!(!e.retryable());
        assert_eq!(e.status(), "cut");
        let CallError::Cut { usage, .. } = e else {
            unreachable!()
        };
        // Output is estimated from what streamed; anthropic reported its input up front.
        assert_eq!(usage.output, estimate_tokens("hello from ".len()));
        assert_eq!(usage.source, UsageSource::Estimated);
        let want_input = if proto == Protocol::Anthropic {
            12
        } else {
            input_estimate
        };
        assert_eq!(usage.input, want_input, "{proto:?}");
    }
    // Broken before any content: invisible to the caller, so a retryable Err.
    f.set_mode(Mode::Cut { after_chunks: 0 });
    for proto in BOTH {
        let e = open(&provider(&f, proto, 2.0, 1.0), &body)
            .await
            .err()
            .unwrap();
        assert!(matches!(e, CallError::Connect(_)) && e.retryable(), "{e:?}");
        let e = plain(&provider(&f, proto, 2.0, 1.0), &body)
            .await
            .unwrap_err();
        assert!(matches!(e, CallError::Connect(_)) && e.retryable(), "{e:?}");
    }
}

#[tokio::test]
async fn malformed_answers_are_retryable() {
    let f = fake::start(opts());
    f.set_mode(Mode::Malformed);
    for proto in BOTH {
        let p = provider(&f, proto, 2.0, 1.0);
        let e = plain(&p, &request(false)).await.unwrap_err();
        assert_eq!(e.status(), "malformed", "{e:?}");
        assert!(e.retryable());
        let e = open(&p, &request(false)).await.err().unwrap();
        assert_eq!(e.status(), "malformed", "{e:?}");
    }
}

#[tokio::test]
async fn without_usage_the_counts_are_estimated_and_plain_equals_streamed() {
    let f = fake::start(opts());
    f.set_mode(Mode::NoUsage);
    let body = request(true);
    let want = Usage {
        input: estimate_input(&body),
        output: estimate_tokens(TEXT.len()),
        source: UsageSource::Estimated,
        ..Usage::default()
    };
    for proto in BOTH {
        let p = provider(&f, proto, 2.0, 1.0);
        assert_eq!(plain(&p, &body).await.unwrap().usage, want, "{proto:?}");
        let mut s = open(&p, &body).await.unwrap();
        let (frames, err) = drain(&mut s).await;
        assert!(err.is_none() && frames.last().unwrap() == "[DONE]");
        assert_eq!(s.usage(), want, "{proto:?}");
    }
}

#[test]
fn retry_after_reads_seconds_and_http_dates() {
    assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
    assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
    let at = chrono::Utc::now() + chrono::Duration::seconds(60);
    let d = parse_retry_after(&at.to_rfc2822()).unwrap();
    assert!(
        d > Duration::from_secs(55) && d <= Duration::from_secs(60),
        "{d:?}"
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
        Some(Duration::ZERO),
        "a date in the past means now"
    );
    assert_eq!(parse_retry_after("soon"), None);
    assert_eq!(parse_retry_after("-3"), None);
}

#[test]
fn only_the_providers_faults_are_retryable() {
    let status = |code| CallError::Status {
        code,
        retry_after: None,
        message: String::new(),
    };
    for code in [401, 403, 404, 408, 429, 500, 502, 503, 529] {
        assert!(status(code).retryable(), "{code}");
    }
    for code in [400, 409, 413, 422] {
        assert!(!status(code).retryable(), "{code}");
    }
    let cut = CallError::Cut {
        usage: Usage::default(),
        message: "x".into(),
    };
    assert!(!cut.retryable());
    let ft = CallError::Timeout {
        first_token: true,
        after: Duration::from_secs(1),
    };
    assert_eq!(
        (ft.status().as_str(), ft.retryable()),
        ("first_token_timeout", true)
    );
}

#[test]
fn calls_and_streams_can_move_between_tasks() {
    // The gateway awaits these inside axum handlers and spawned tasks.
    fn send<T: Send>(_: &T) {}
    let (p, m, body, client) = (
        provider(&fake::start(opts()), Protocol::Openai, 1.0, 1.0),
        model(),
        request(false),
        reqwest::Client::new(),
    );
    let t = Target {
        provider: &p,
        model: &m,
        api_key: None,
        native: None,
    };
    send(&complete(&client, &t, &body));
    send(&stream(&client, &t, &body));
    fn stream_is_send<T: Send + 'static>() {}
    stream_is_send::<Stream>();
}

#[test]
fn a_key_quoted_in_an_upstream_error_is_redacted() {
    let key = "sk-live-abc123";
    let m = redact(format!("Incorrect API key: Bearer {key}"), Some(key));
    assert_eq!(m, "Incorrect API key: Bearer [redacted key]");
    assert_eq!(redact("plain".into(), Some("")), "plain");
    assert_eq!(redact("plain".into(), None), "plain");
}
