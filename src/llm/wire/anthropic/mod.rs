//! The `anthropic` protocol: the Messages API, translated to and from OpenAI chat
//! completions so the caller never knows the difference.
//!
//! Requests: system messages become the top-level `system`, text content parts become text
//! blocks and `image_url` parts image blocks (a base64 `data:` URL a `base64` source, an
//! http(s) URL a `url` source; `detail` has no equivalent and is not sent), `max_tokens` is
//! always set (Anthropic requires it), `stop` becomes `stop_sequences`. Replies and stream
//! events become `chat.completion` and `chat.completion.chunk`. Anthropic counts cached
//! input apart from `input_tokens`; OpenAI (and pas) count it inside, so the two are added
//! back together. Thinking is counted inside `output_tokens` (and billed as output);
//! Anthropic reports no separate count, so the reasoning tokens are estimated from the
//! thinking text (about 4 bytes a token, as every pas estimate; at most the output; 0
//! without thinking, or with only redacted thinking). Claude 4 models return a summary of
//! their thinking, so the estimate is low.
//!
//! Tools translate both ways. OpenAI `tools` become Anthropic tools (`parameters` is the
//! `input_schema`), `tool_choice` `auto` / `none` / `required` / a named function becomes
//! `{type: auto}` / `{type: none}` / `{type: any}` / `{type: tool, name}`, and
//! `parallel_tool_calls: false` becomes `disable_parallel_tool_use`. In the history an
//! assistant's `tool_calls` become `tool_use` blocks (the arguments string parsed into the
//! `input` object) and `role: tool` messages become `tool_result` blocks of a user turn,
//! consecutive ones merged (Anthropic wants the roles to alternate). Answers go back the
//! other way: `tool_use` blocks become `message.tool_calls` (the input serialized as the
//! arguments string), and in streams a `tool_use` block's start becomes a chunk with the
//! call's id and name and each `input_json_delta` a chunk with that piece of its
//! arguments, indexed by the call's ordinal among the tool calls (not the block's index).
//!
//! `cache_control` (Anthropic's prompt-cache marker) on a text or image part or a tool is
//! passed on, so OpenAI-speaking callers can use the cache; its writes are counted apart
//! (`cache_creation_input_tokens`, and the 1-hour part of them) and priced at their rates.
//!
//! `response_format` has no Messages API field: `json_object` and `json_schema` become an
//! instruction appended to the system prompt (with the schema), so the model is asked for
//! JSON but nothing enforces it. What has no translation at all (the deprecated
//! `functions`, a non-function tool, unparsable tool-call arguments, an unknown
//! `response_format`, an image that is neither base64 nor http(s) or of a type Anthropic
//! does not take) is never sent and never dropped silently: the gateway moves on to the
//! next candidate, and only when none can take the request answers a 400 naming the field.

use serde::Deserialize;
use serde_json::{json, Value};

use super::sse::Event;
use super::{excerpt, frame, Plain, Tally, Upstream, DONE};
use crate::llm::config::Model;
use crate::llm::cost::{estimate_tokens, Usage, UsageSource};

mod request;
mod stream;
#[cfg(test)]
mod tests;

#[cfg(test)]
use request::*;
pub(super) use request::{native_request, request};
pub(super) use stream::StreamState;

/// Anthropic's `usage` object.
#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    /// The cache writes by lifetime (newer API versions).
    #[serde(default)]
    cache_creation: Option<CacheCreation>,
}

/// Anthropic's `usage.cache_creation`.
#[derive(Debug, Default, Deserialize)]
struct CacheCreation {
    #[serde(default)]
    ephemeral_1h_input_tokens: Option<u64>,
}

impl WireUsage {
    /// All input tokens, cached ones included (OpenAI's and pas's way of counting).
    /// Saturating: the counts are the upstream's, and no number it sends may panic pas.
    fn input(&self) -> u64 {
        self.input_tokens
            .unwrap_or(0)
            .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
            .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
    }

    /// The input counts of one stream event into a tally: reads, writes, the writes for an
    /// hour, and the input they are part of. Only the counts the event carries: a later
    /// event (`message_delta`) may repeat some and leave others out, and a count left out
    /// is unchanged, not 0 (else cache reads would be booked as fresh input and 1-hour
    /// writes at the 5-minute rate).
    fn input_into(&self, t: &mut Tally) {
        let fresh = t
            .input
            .map(|i| i.saturating_sub(t.cached.saturating_add(t.cache_write)));
        if let Some(n) = self.cache_read_input_tokens {
            t.cached = n;
        }
        if let Some(n) = self.cache_creation_input_tokens {
            t.cache_write = n;
        }
        if let Some(n) = self
            .cache_creation
            .as_ref()
            .and_then(|c| c.ephemeral_1h_input_tokens)
        {
            t.cache_write_1h = n;
        }
        if let Some(fresh) = self.input_tokens.or(fresh) {
            t.input = Some(fresh.saturating_add(t.cached).saturating_add(t.cache_write));
        }
    }

    fn write_1h(&self) -> u64 {
        let c = self.cache_creation.as_ref();
        c.and_then(|c| c.ephemeral_1h_input_tokens).unwrap_or(0)
    }
}

/// Usage in OpenAI's shape, for bodies and usage chunks.
fn openai_usage(u: &Usage) -> Value {
    json!({"prompt_tokens": u.input, "completion_tokens": u.output,
        "total_tokens": u.input.saturating_add(u.output),
        "prompt_tokens_details": {"cached_tokens": u.cached}})
}

/// Anthropic's stop reason as an OpenAI finish reason.
fn finish_reason(stop: Option<&str>) -> Option<&'static str> {
    Some(match stop? {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop", // end_turn, stop_sequence, pause_turn
    })
}

/// The HTTP status an error event stands for, so an error before the first token falls
/// back exactly as the same error as a response would.
fn error_code(kind: &str) -> Option<u16> {
    Some(match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "overloaded_error" => 529,
        _ => return None,
    })
}

fn unix_now() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_secs())
}

/// A Messages reply as a `chat.completion`.
pub(super) fn reply(bytes: &[u8], model: &str) -> Result<Plain, String> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("the answer is not JSON ({e}): {}", excerpt(bytes)))?;
    let blocks = v["content"]
        .as_array()
        .ok_or_else(|| format!("the answer has no content blocks: {}", excerpt(bytes)))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut other_output_bytes = 0;
    let mut thinking_bytes = 0;
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or_default()),
            Some("tool_use") => {
                let args = b["input"].to_string();
                other_output_bytes += args.len();
                tool_calls.push(json!({"id": b["id"], "type": "function",
                    "function": {"name": b["name"], "arguments": args}}));
            }
            Some("thinking") => {
                thinking_bytes += b["thinking"].as_str().map_or(0, str::len);
            }
            _ => {}
        }
    }
    let usage = match v.get("usage") {
        Some(u) if u.is_object() => {
            let w = WireUsage::deserialize(u).map_err(|e| format!("usage: {e}"))?;
            let output = w.output_tokens.unwrap_or(0);
            Some(Usage {
                input: w.input(),
                output,
                cached: w.cache_read_input_tokens.unwrap_or(0),
                cache_write: w.cache_creation_input_tokens.unwrap_or(0),
                cache_write_1h: w.write_1h(),
                // Anthropic counts thinking inside output_tokens and reports no count of
                // its own: estimated from the thinking text, never above the output.
                reasoning: estimate_tokens(thinking_bytes).min(output),
                source: UsageSource::Provider,
            })
        }
        _ => None,
    };
    let mut message = json!({"role": "assistant", "content": text});
    if !tool_calls.is_empty() {
        if text.is_empty() {
            message["content"] = Value::Null; // as OpenAI answers a turn of only tool calls
        }
        message["tool_calls"] = tool_calls.into();
    }
    let mut body = json!({"id": v["id"], "object": "chat.completion", "created": unix_now(),
        "model": model, "choices": [{"index": 0, "message": message,
        "finish_reason": finish_reason(v["stop_reason"].as_str())}]});
    if let Some(u) = &usage {
        body["usage"] = openai_usage(u);
    }
    Ok(Plain {
        body,
        text,
        usage,
        other_output_bytes: other_output_bytes + thinking_bytes,
        reasoning_bytes: thinking_bytes,
    })
}
