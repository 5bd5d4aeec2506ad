//! The two wire protocols, `openai` and `anthropic`, over one shared `reqwest::Client`.
//!
//! Both speak OpenAI to the caller: a plain call returns a `chat.completion`, a stream
//! yields `chat.completion.chunk` SSE frames ready to write, so the gateway never cares
//! which protocol served it. Failures are typed ([`CallError`]) so the gateway can tell a
//! retryable provider fault from the request's own fault, and a stream only starts once
//! its first content has arrived: anything that fails before the caller saw a byte is an
//! `Err` the gateway can fall back from invisibly.
//!
//! Timeouts are per provider (`timeout_s`, `first_token_timeout_s`) with
//! `tokio::time`, since one client serves every provider.
//!
//! What a provider sends is read up to a cap: a plain answer up to [`MAX_ANSWER_BYTES`],
//! an error body up to [`MAX_ERROR_BYTES`], a stream up to [`MAX_ANSWER_BYTES`] in all
//! (and each of its events up to the SSE parser's own cap), so a provider that answers
//! without end is a failed attempt (`malformed`, naming the cap), never pas's memory. The
//! client follows no redirects (see `gateway::Gateway::new`): a 3xx is a failed attempt
//! (`http_3xx`, naming where it pointed), since following it would send the request,
//! and the key with it, somewhere the configuration never named.
//!
//! - `openai`: requests, replies and stream frames of chat completions.
//! - `anthropic`: translation to and from the Messages API.
//! - `sse`: an incremental server-sent-events parser.
//! - `streaming`: a streamed call, from its first token to `[DONE]` or its cut.

mod anthropic;
mod openai;
pub mod sse;
mod streaming;

pub use streaming::{stream, Stream};
use streaming::{Tally, Upstream};

use std::time::Duration;

use bytes::Bytes;

use super::config::{Model, Protocol, Provider};
use super::cost::{estimate_tokens, Usage, UsageSource};

/// Where a call goes: a provider, one of its models, and its key (if it needs one).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub provider: &'a Provider,
    pub model: &'a Model,
    pub api_key: Option<&'a str>,
    /// The Messages request as its caller sent it: an `anthropic` provider is sent this
    /// (its `model` and `stream` set) instead of a translation of the chat request, and
    /// its answer comes back as it is too ([`Reply::native`], [`Stream::take_native`]).
    pub native: Option<Native<'a>>,
}

/// A Messages API request as its caller sent it.
#[derive(Debug, Clone, Copy)]
pub struct Native<'a> {
    pub body: &'a serde_json::Value,
    /// The caller's `anthropic-beta` header: the features its request uses
    /// (`context_management`, ...), which Anthropic refuses unless they are named.
    pub beta: Option<&'a str>,
}

/// Why a call failed, in the terms fallback decides by.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// Could not connect, send, or read the answer: retryable.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The whole call (or, for a stream, the wait for its first token) took too long.
    #[error("{} after {after:?}", if *first_token { "no first token" } else { "timed out" })]
    Timeout { first_token: bool, after: Duration },
    /// The provider answered with an HTTP error.
    #[error("HTTP {code}: {message}")]
    Status {
        code: u16,
        retry_after: Option<Duration>,
        message: String,
    },
    /// The provider's answer is not the protocol: its fault, so retryable.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The stream broke after its first bytes reached the caller: too late to retry.
    #[error("stream cut: {message}")]
    Cut { usage: Usage, message: String },
    /// The request has no form in this provider's protocol (the deprecated `functions`
    /// in the Messages API...): nothing was sent, so it says nothing of the provider,
    /// and a candidate of another protocol may still take it.
    #[error("pas cannot say this request in the Messages API: {0}")]
    Untranslatable(String),
}

impl CallError {
    /// Whether another attempt (here or at the next candidate) may succeed: the provider's
    /// faults are, the request's own faults (other 4xx) are not, and a cut stream is not
    /// because the caller already has part of an answer. A 401 or 403 (the key pas holds
    /// for that provider) and a 404 (its model id or `base_url`) are the provider's
    /// setup, not the request: another provider may well serve it. So may a provider of
    /// another protocol serve a request this one's cannot say.
    pub fn retryable(&self) -> bool {
        match self {
            CallError::Connect(_)
            | CallError::Timeout { .. }
            | CallError::Malformed(_)
            | CallError::Untranslatable(_) => true,
            // A redirect is the provider's setup too (pas follows none): the next may serve.
            CallError::Status { code, .. } => {
                matches!(code, 300..=399 | 401 | 403 | 404 | 408 | 429 | 500..=599)
            }
            CallError::Cut { .. } => false,
        }
    }

    /// A short status for receipts: `connect_error`, `timeout`, `first_token_timeout`,
    /// `http_<code>`, `malformed`, `cut`, `untranslatable`.
    pub fn status(&self) -> String {
        match self {
            CallError::Connect(_) => "connect_error".into(),
            CallError::Timeout {
                first_token: true, ..
            } => "first_token_timeout".into(),
            CallError::Timeout { .. } => "timeout".into(),
            CallError::Status { code, .. } => format!("http_{code}"),
            CallError::Malformed(_) => "malformed".into(),
            CallError::Cut { .. } => "cut".into(),
            CallError::Untranslatable(_) => "untranslatable".into(),
        }
    }

    /// How long the provider asked us to wait (`Retry-After` of a 429 or 503).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A finished non-streamed call.
#[derive(Debug, Clone)]
pub struct Reply {
    /// OpenAI `chat.completion` JSON (translated for anthropic); `model` is the target's id.
    pub body: serde_json::Value,
    /// The assistant text.
    pub text: String,
    /// The provider's counts; estimated only when it reported none.
    pub usage: Usage,
    /// The Messages answer as the provider sent it, for a [`Native`] request to an
    /// `anthropic` provider.
    pub native: Option<serde_json::Value>,
}

/// A plain (non-streamed) call. `body` is the caller's OpenAI chat request; its `model` is
/// replaced by the target's id and `stream` is dropped.
pub async fn complete(
    client: &reqwest::Client,
    t: &Target<'_>,
    body: &serde_json::Value,
) -> Result<Reply, CallError> {
    let total = seconds(t.provider.timeout_s);
    let call = async {
        let resp = send(client, t, body, false).await?;
        let bytes = read_capped(resp, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| match e {
                Capped::Read(e) => CallError::Connect(format!("reading the answer: {e}")),
                Capped::TooLarge => CallError::Malformed(too_large(MAX_ANSWER_BYTES)),
            })?;
        let plain = match t.provider.protocol {
            Protocol::Openai => openai::reply(&bytes, &t.model.id),
            Protocol::Anthropic => anthropic::reply(&bytes, &t.model.id),
        }
        .map_err(CallError::Malformed)?;
        let usage = plain.usage.unwrap_or_else(|| {
            let output = estimate_tokens(plain.text.len() + plain.other_output_bytes);
            Usage {
                input: estimate_input(body),
                output,
                reasoning: estimate_tokens(plain.reasoning_bytes).min(output),
                source: UsageSource::Estimated,
                ..Usage::default()
            }
        });
        let native = match (t.native, t.provider.protocol) {
            (Some(_), Protocol::Anthropic) => serde_json::from_slice(&bytes).ok(),
            _ => None,
        };
        Ok(Reply {
            body: plain.body,
            text: plain.text,
            usage,
            native,
        })
    };
    tokio::time::timeout(total, call)
        .await
        .unwrap_or(Err(CallError::Timeout {
            first_token: false,
            after: total,
        }))
}

/// The Messages API's own count of a request's input tokens (`POST
/// /v1/messages/count_tokens` of an `anthropic` provider), for `body` as a Messages
/// request with its `model` set to the target's. Nothing is billed for it.
pub async fn count_tokens(
    client: &reqwest::Client,
    t: &Target<'_>,
    body: &serde_json::Value,
) -> Result<u64, CallError> {
    let base = t.provider.base_url.trim_end_matches('/');
    let mut body = body.clone();
    body["model"] = t.model.id.clone().into();
    let req = client
        .post(format!("{base}/v1/messages/count_tokens"))
        .header("anthropic-version", "2023-06-01")
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    let req = match t.api_key {
        Some(key) => req.header("x-api-key", key),
        None => req,
    };
    let total = seconds(t.provider.timeout_s);
    let call = async {
        let resp = req
            .body(serde_json::to_vec(&body).unwrap_or_default())
            .send()
            .await
            .map_err(|e| CallError::Connect(chain(&e)))?;
        let status = resp.status();
        let bytes = read_capped(resp, MAX_ERROR_BYTES)
            .await
            .map_err(|_| CallError::Malformed("the count is not readable".into()))?;
        if !status.is_success() {
            return Err(CallError::Status {
                code: status.as_u16(),
                retry_after: None,
                message: redact(error_message(&bytes), t.api_key),
            });
        }
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["input_tokens"].as_u64())
            .ok_or_else(|| CallError::Malformed(format!("no input_tokens in {}", excerpt(&bytes))))
    };
    tokio::time::timeout(total, call)
        .await
        .unwrap_or(Err(CallError::Timeout {
            first_token: false,
            after: total,
        }))
}

/// A plain reply decoded by a protocol module.
struct Plain {
    body: serde_json::Value,
    text: String,
    usage: Option<Usage>,
    /// Output that is not text (tool-call arguments, reasoning), for the estimate.
    other_output_bytes: usize,
    /// Reasoning text whose token count pas must estimate (Anthropic's thinking; 0 where
    /// the provider counts reasoning itself).
    reasoning_bytes: usize,
}

/// Sends the request and turns an HTTP error into `CallError::Status`; a request the
/// protocol cannot say is `CallError::Untranslatable`, and never leaves pas.
async fn send(
    client: &reqwest::Client,
    t: &Target<'_>,
    body: &serde_json::Value,
    stream: bool,
) -> Result<reqwest::Response, CallError> {
    let base = t.provider.base_url.trim_end_matches('/');
    let req = match t.provider.protocol {
        Protocol::Openai => {
            let req = client.post(format!("{base}/chat/completions"));
            let req = match t.api_key {
                Some(key) => req.bearer_auth(key),
                None => req,
            };
            req.body(openai::request(body, &t.model.id, stream))
        }
        Protocol::Anthropic => {
            let req = client
                .post(format!("{base}/v1/messages"))
                .header("anthropic-version", "2023-06-01");
            let mut req = match t.api_key {
                Some(key) => req.header("x-api-key", key),
                None => req,
            };
            let bytes = match t.native {
                Some(n) => {
                    if let Some(beta) = n.beta {
                        req = req.header("anthropic-beta", beta);
                    }
                    anthropic::native_request(n.body, body, t.model, stream)
                }
                None => {
                    anthropic::request(body, t.model, stream).map_err(CallError::Untranslatable)?
                }
            };
            req.body(bytes)
        }
    };
    let resp = req
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .send()
        .await
        .map_err(|e| CallError::Connect(chain(&e)))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    if status.is_redirection() {
        let to = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|v| excerpt(v.as_bytes()))
            .unwrap_or_else(|| "nowhere".into());
        return Err(CallError::Status {
            code: status.as_u16(),
            retry_after: None,
            message: redact(
                format!(
                    "the provider redirected to {to}, which pas does not follow \
                     (point its base_url at the right place)"
                ),
                t.api_key,
            ),
        });
    }
    // Only its message is wanted: a provider's error body is read no further than this.
    let text = read_capped(resp, MAX_ERROR_BYTES)
        .await
        .unwrap_or_else(|e| match e {
            Capped::Read(_) => Vec::new(),
            Capped::TooLarge => too_large(MAX_ERROR_BYTES).into_bytes(),
        });
    Err(CallError::Status {
        code: status.as_u16(),
        retry_after,
        message: redact(error_message(&text), t.api_key),
    })
}

/// Most bytes of a provider's answer pas reads: a plain answer's body, or a whole stream.
/// Far above any real answer (a long completion is a few hundred KiB), low enough that
/// a few calls at once cannot run pas out of memory.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Most bytes of a provider's error body pas reads (only its message is used).
pub const MAX_ERROR_BYTES: usize = 64 << 10;

/// Why a body could not be read whole.
enum Capped {
    Read(String),
    TooLarge,
}

/// The message of an answer cut at `cap`.
fn too_large(cap: usize) -> String {
    format!(
        "too_large: the answer went past the {} pas reads of an answer and was cut off there",
        size(cap)
    )
}

/// `n` bytes, in MiB or KiB.
fn size(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{} MiB", n >> 20)
    } else {
        format!("{} KiB", n >> 10)
    }
}

/// The body of `resp`, or `TooLarge` as soon as it passes `cap` (a `Content-Length`
/// above it is refused before a byte is read).
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, Capped> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(Capped::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| Capped::Read(chain(&e)))? {
        if out.len() + chunk.len() > cap {
            return Err(Capped::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The `error.message` of an OpenAI or Anthropic error body, else the start of the body.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = parsed.as_ref().and_then(|v| match &v["error"] {
        serde_json::Value::String(s) => Some(s.clone()),
        e => e["message"].as_str().map(str::to_owned),
    });
    field.unwrap_or_else(|| excerpt(body))
}

/// `message` without `key`. Some upstreams (and proxies before them) quote the key they
/// refused; the message goes on to the caller, the receipt, the log and an LLM card's
/// `error` (and so into git), none of which may hold a key.
fn redact(message: String, key: Option<&str>) -> String {
    match key.map(str::trim).filter(|k| !k.is_empty()) {
        Some(k) if message.contains(k) => message.replace(k, "[redacted key]"),
        _ => message,
    }
}

/// The start of a body, for error messages.
fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// `Retry-After`: delay seconds, or an HTTP date (the time left until it).
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<f64>() {
        return Duration::try_from_secs_f64(s).ok();
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let left = at.signed_duration_since(chrono::Utc::now());
    Some(left.to_std().unwrap_or(Duration::ZERO))
}

/// The input tokens estimated from the caller's messages: the same for a plain and a
/// streamed call, and for either protocol, so their costs agree (and the same for an
/// attempt that timed out, booked at its input).
pub fn estimate_input(body: &serde_json::Value) -> u64 {
    let messages = &body["messages"];
    let bytes = serde_json::to_vec(messages).map_or(0, |b| b.len());
    crate::llm::cost::estimate_with_images(bytes as u64, crate::llm::cost::images_in(messages))
}

/// A configured number of seconds; validated positive by config, clamped against nonsense
/// from code-built providers (a day is "never" for an LLM call).
fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.clamp(0.0, 86_400.0)).unwrap_or(Duration::from_secs(86_400))
}

/// An error with its sources, which is where reqwest says what actually went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// `data: <json>\n\n`.
fn frame(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The last frame of every stream.
const DONE: &[u8] = b"data: [DONE]\n\n";

#[cfg(test)]
mod tests;
