//! Anthropic's Messages API on the gateway: `POST /v1/messages` (plain and streamed) and
//! `POST /v1/messages/count_tokens`, so Claude Code and the Anthropic SDKs can set
//! `ANTHROPIC_BASE_URL` to pas.
//!
//! A Messages request is said as a chat request ([`translate`]) and goes down the very
//! path chat completions take (`http::serve`, `call::run`): the same aliases, routing,
//! fallback, budgets, receipts, spans, `x-pas-*` headers and attribution. Its answer is
//! said back as a Messages `message`, or a stream as the Messages events ([`events`]).
//! An `anthropic` provider is sent the request as the client sent it (`model` replaced,
//! `anthropic-beta` forwarded) and its answer or events go back as they came, so nothing
//! Anthropic-only (thinking and its signatures, beta fields) is lost on the way.
//! Errors are Anthropic-shaped: `{"type": "error", "error": {"type", "message"}}`.
//! `anthropic-version` and `anthropic-beta` are accepted and not needed.
//!
//! `count_tokens` costs nothing and writes no receipt: it routes the request as a call
//! would (an unknown model is a 404 as for a call), then asks the first candidate's count
//! endpoint when it speaks the Messages API, and otherwise (or when that fails) answers
//! pas's own estimate (about 4 bytes a token, images at their ceiling).

pub mod events;
pub mod translate;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::call::Request;
use super::http::{json_body, json_response, read_body, serve, Dialect};
use super::Gateway;
use crate::llm::config::Protocol;
use crate::web::listen::ConnSlot;

/// `POST /v1/messages`.
pub(super) async fn messages(
    State(gw): State<Arc<Gateway>>,
    conn: Option<Extension<ConnSlot>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    serve(gw, conn, headers, body, Dialect::Messages).await
}

/// The Messages API's error type for an HTTP status.
fn kind(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// An Anthropic-shaped error response.
pub(crate) fn error(status: u16, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind(status), "message": message}});
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        body.to_string(),
    )
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}`.
pub(super) async fn count_tokens(
    State(gw): State<Arc<Gateway>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let bytes = match read_body(&gw, body, Dialect::Messages) {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    let parsed = json_body(&bytes).and_then(|mut b| {
        // A count needs no output bound; the Messages API's count takes none.
        if let Some(o) = b.as_object_mut() {
            o.remove("max_tokens");
            o.remove("stream");
        }
        Ok((translate::to_chat(&b)?, b))
    });
    let (chat, original) = match parsed {
        Ok(p) => p,
        Err(m) => return error(400, &m),
    };
    let req = match Request::build(&gw, chat, bytes.len(), None) {
        Ok(r) => r,
        Err(m) => return error(400, &m),
    };
    let order = match gw.candidates(&req.need, req.policy) {
        Ok(o) => o,
        Err(f) => {
            return error(
                f.status(),
                f.body()["error"]["message"].as_str().unwrap_or(""),
            )
        }
    };
    let estimate = estimate(&req.body);
    let mut counted = None;
    if let Some(&(pi, mi)) = order.first() {
        let provider = &gw.providers[pi];
        if provider.protocol == Protocol::Anthropic {
            let key = match gw.keys.get(&provider.name) {
                Some(Ok(k)) => k.as_deref(),
                _ => None,
            };
            let target = crate::llm::wire::Target {
                provider,
                model: &provider.models[mi],
                api_key: key,
                native: None,
            };
            match crate::llm::wire::count_tokens(&gw.client, &target, &original).await {
                Ok(n) => counted = Some(n),
                Err(e) => tracing::debug!(provider = %provider.name,
                    "count_tokens upstream failed, answering pas's estimate: {e}"),
            }
        }
    }
    let n = counted.unwrap_or(estimate);
    json_response(StatusCode::OK, json!({"input_tokens": n}).to_string())
}

/// pas's estimate of a chat request's input: its messages (images at their ceiling) and
/// its tools' definitions.
fn estimate(chat: &Value) -> u64 {
    let tools = chat.get("tools").map_or(0, |t| t.to_string().len());
    crate::llm::wire::estimate_input(chat).saturating_add(crate::llm::cost::estimate_tokens(tools))
}
