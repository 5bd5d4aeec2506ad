//! The fake's answers that depend on the request: a script's reply, and the Messages
//! API's token count.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};

use super::render::Rendered;
use super::{lock, reply, FakeOptions, Protocol, Req, Script, Shared};

/// The Messages API's `count_tokens`: the fake's estimate, one token per 4 bytes of the
/// request (so a test can tell it from pas's own, which counts only what is sent).
pub(super) async fn count(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.requests.fetch_add(1, Ordering::Relaxed);
    let n = crate::llm::cost::estimate_tokens(body.len());
    *lock(&s.last) = Some((headers, body));
    let body = json!({"input_tokens": n}).to_string();
    reply("application/json", Body::from(body))
}

/// The script's reply to one request, rendered for it (after the step's delay).
pub(super) async fn played(
    o: &FakeOptions,
    script: &Script,
    proto: Protocol,
    req: &Req,
    body: &Bytes,
    with_usage: bool,
) -> Response {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let p = script.play(&parsed, body.len());
    tokio::time::sleep(p.delay).await;
    let opts = FakeOptions {
        text: p.text,
        tool_calls: p.tool_calls,
        input_tokens: p.input_tokens,
        output_tokens: p.output_tokens,
        cached_tokens: 0,
        cache_write_tokens: 0,
        cache_write_1h_tokens: 0,
        script: None,
        ..o.clone()
    };
    let r = Rendered::new(&opts, true);
    let (plain, frames) = match proto {
        Protocol::Openai => (r.openai_plain, r.openai),
        Protocol::Anthropic => (r.anthropic_plain, r.anthropic),
    };
    if !req.stream {
        return reply("application/json", Body::from(plain));
    }
    let all = if with_usage || proto == Protocol::Anthropic {
        frames.full_usage
    } else {
        frames.full
    };
    reply("text/event-stream", Body::from(all))
}
