//! The `anthropic` protocol: the Messages API, translated to and from OpenAI chat
//! completions so the caller never knows the difference.
//!
//! Requests: system messages become the top-level `system`, text content parts become text
//! blocks, `max_tokens` is always set (Anthropic requires it), `stop` becomes
//! `stop_sequences`. Replies and stream events become `chat.completion` and
//! `chat.completion.chunk`. Anthropic counts cached input apart from `input_tokens`; OpenAI
//! (and pas) count it inside, so the two are added back together.
//!
//! Not translated yet: tool definitions and tool messages in requests, and `tool_use`
//! blocks in streams (plain replies do translate them to `tool_calls`).

use serde::Deserialize;
use serde_json::{json, Value};

use super::sse::Event;
use super::{excerpt, frame, Plain, Tally, Upstream, DONE};
use crate::llm::config::Model;
use crate::llm::cost::{Usage, UsageSource};

/// Output tokens asked for when neither the caller nor the model config names a limit.
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The upstream request body.
pub(super) fn request(body: &Value, model: &Model, stream: bool) -> Vec<u8> {
    // Serializing a `Value` into a Vec cannot fail.
    serde_json::to_vec(&translate_request(body, model, stream)).unwrap_or_default()
}

/// The caller's OpenAI chat request as a Messages request.
fn translate_request(body: &Value, model: &Model, stream: bool) -> Value {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        match m["role"].as_str() {
            Some("system" | "developer") => system.push(text_of(&m["content"])),
            _ => messages.push(json!({"role": m["role"], "content": content(&m["content"])})),
        }
    }
    let max_tokens = body["max_completion_tokens"]
        .as_u64()
        .or(body["max_tokens"].as_u64())
        .or(model.max_output_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let mut out = json!({"model": model.id, "max_tokens": max_tokens, "messages": messages});
    if !system.is_empty() {
        out["system"] = system.join("\n\n").into();
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            out[key] = v.clone();
        }
    }
    match &body["stop"] {
        Value::String(s) => out["stop_sequences"] = json!([s]),
        Value::Array(a) => out["stop_sequences"] = Value::Array(a.clone()),
        _ => {}
    }
    if stream {
        out["stream"] = true.into();
    }
    out
}

/// Message content: a string stays a string; OpenAI text parts become text blocks; other
/// parts pass unchanged, so Anthropic refuses what it cannot take with its own message
/// rather than pas dropping it silently.
fn content(c: &Value) -> Value {
    match c {
        Value::Array(parts) => parts
            .iter()
            .map(|p| match (p["type"].as_str(), p["text"].as_str()) {
                (Some("text"), Some(text)) => json!({"type": "text", "text": text}),
                _ => p.clone(),
            })
            .collect(),
        other => other.clone(),
    }
}

/// The text of a system message (a string, or text parts joined).
fn text_of(c: &Value) -> String {
    match c {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

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
}

impl WireUsage {
    /// All input tokens, cached ones included (OpenAI's and pas's way of counting).
    fn input(&self) -> u64 {
        self.input_tokens.unwrap_or(0)
            + self.cache_read_input_tokens.unwrap_or(0)
            + self.cache_creation_input_tokens.unwrap_or(0)
    }
}

/// Usage in OpenAI's shape, for bodies and usage chunks.
fn openai_usage(u: &Usage) -> Value {
    json!({"prompt_tokens": u.input, "completion_tokens": u.output,
        "total_tokens": u.input + u.output,
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
                other_output_bytes += b["thinking"].as_str().map_or(0, str::len);
            }
            _ => {}
        }
    }
    let usage = match v.get("usage") {
        Some(u) if u.is_object() => {
            let w = WireUsage::deserialize(u).map_err(|e| format!("usage: {e}"))?;
            Some(Usage {
                input: w.input(),
                output: w.output_tokens.unwrap_or(0),
                cached: w.cache_read_input_tokens.unwrap_or(0),
                reasoning: 0,
                source: UsageSource::Provider,
            })
        }
        _ => None,
    };
    let mut message = json!({"role": "assistant", "content": text});
    if !tool_calls.is_empty() {
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
        other_output_bytes,
    })
}

/// What an anthropic stream needs to remember between events.
pub(super) struct StreamState {
    id: String,
    created: u64,
    model: String,
    wants_usage: bool,
    /// The first chunk carries `role: assistant`, as OpenAI's does.
    role_sent: bool,
    stop_reason: Option<String>,
}

impl StreamState {
    pub(super) fn new(model: &str, wants_usage: bool) -> Self {
        StreamState {
            id: String::new(),
            created: unix_now(),
            model: model.to_owned(),
            wants_usage,
            role_sent: false,
            stop_reason: None,
        }
    }

    /// Takes one event; `Ok(true)` at `message_stop`.
    pub(super) fn on_event(&mut self, ev: &Event, t: &mut Tally) -> Result<bool, Upstream> {
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| Upstream {
            code: None,
            message: format!(
                "an event is not JSON ({e}): {}",
                excerpt(ev.data.as_bytes())
            ),
        })?;
        match v["type"].as_str().unwrap_or(&ev.event) {
            "message_start" => {
                let m = &v["message"];
                self.id = m["id"].as_str().unwrap_or_default().to_owned();
                if let Ok(u) = WireUsage::deserialize(&m["usage"]) {
                    if u.input_tokens.is_some() {
                        t.input = Some(u.input());
                        t.cached = u.cache_read_input_tokens.unwrap_or(0);
                    }
                }
            }
            "content_block_start" => {
                let text = v["content_block"]["text"].as_str().unwrap_or_default();
                if !text.is_empty() {
                    self.text(text, t);
                }
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => self.text(d["text"].as_str().unwrap_or_default(), t),
                    Some("input_json_delta") => {
                        t.other_output_bytes += d["partial_json"].as_str().map_or(0, str::len);
                    }
                    Some("thinking_delta") => {
                        t.other_output_bytes += d["thinking"].as_str().map_or(0, str::len);
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(r) = v["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(r.to_owned());
                }
                if let Ok(u) = WireUsage::deserialize(&v["usage"]) {
                    if let Some(out) = u.output_tokens {
                        t.output = Some(out);
                    }
                    if u.input_tokens.is_some() {
                        t.input = Some(u.input());
                        t.cached = u.cache_read_input_tokens.unwrap_or(0);
                    }
                }
            }
            "message_stop" => {
                let finish = finish_reason(self.stop_reason.as_deref()).unwrap_or("stop");
                let delta = self.delta(None);
                t.frames.push_back(self.chunk(
                    json!([{"index": 0, "delta": delta,
                    "finish_reason": finish}]),
                    None,
                ));
                if let (true, Some(input), Some(output)) = (self.wants_usage, t.input, t.output) {
                    let u = Usage {
                        input,
                        output,
                        cached: t.cached,
                        ..Usage::default()
                    };
                    t.frames
                        .push_back(self.chunk(json!([]), Some(openai_usage(&u))));
                }
                t.frames.push_back(bytes::Bytes::from_static(DONE));
                t.started = true;
                return Ok(true);
            }
            "error" => {
                let e = &v["error"];
                return Err(Upstream {
                    code: e["type"].as_str().and_then(error_code),
                    message: e["message"].as_str().unwrap_or(&ev.data).to_owned(),
                });
            }
            _ => {} // ping, content_block_stop, and events added after this was written
        }
        Ok(false)
    }

    fn text(&mut self, text: &str, t: &mut Tally) {
        if text.is_empty() {
            return;
        }
        t.text.push_str(text);
        let delta = self.delta(Some(text));
        let choices = json!([{"index": 0, "delta": delta, "finish_reason": null}]);
        t.frames.push_back(self.chunk(choices, None));
        t.started = true;
    }

    /// A delta, with the role on the first one sent.
    fn delta(&mut self, text: Option<&str>) -> Value {
        let mut d = json!({});
        if !self.role_sent {
            d["role"] = "assistant".into();
            self.role_sent = true;
        }
        if let Some(text) = text {
            d["content"] = text.into();
        }
        d
    }

    fn chunk(&self, choices: Value, usage: Option<Value>) -> bytes::Bytes {
        let mut c = json!({"id": self.id, "object": "chat.completion.chunk",
            "created": self.created, "model": self.model, "choices": choices});
        if let Some(u) = usage {
            c["usage"] = u;
        }
        frame(&serde_json::to_vec(&c).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(max: Option<u64>) -> Model {
        Model {
            id: "claude-x".into(),
            capabilities: vec![],
            ctx_limit: None,
            max_output_tokens: max,
            price_per_mtok: None,
        }
    }

    #[test]
    fn system_messages_move_to_the_top_and_parts_become_blocks() {
        let body = json!({"model": "cap:plan", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "system", "content": [{"type": "text", "text": "be kind"}]},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "x"}}]},
            {"role": "assistant", "content": "hello"}],
            "temperature": 0.5, "top_p": null, "stop": "END", "max_tokens": 99});
        let r = translate_request(&body, &model(Some(500)), false);
        assert_eq!(r["system"], "be brief\n\nbe kind");
        assert_eq!(r["model"], "claude-x");
        assert_eq!(r["max_tokens"], 99);
        assert_eq!(r["temperature"], 0.5);
        assert!(r.get("top_p").is_none() && r.get("stream").is_none());
        assert_eq!(r["stop_sequences"], json!(["END"]));
        assert_eq!(r["messages"].as_array().unwrap().len(), 2);
        assert_eq!(
            r["messages"][0]["content"][0],
            json!({"type": "text", "text": "hi"})
        );
        assert_eq!(r["messages"][0]["content"][1]["type"], "image_url");
        assert_eq!(
            r["messages"][1],
            json!({"role": "assistant", "content": "hello"})
        );
    }

    #[test]
    fn max_tokens_comes_from_the_caller_then_the_model_then_4096() {
        let m = json!({"messages": [], "max_completion_tokens": 7, "max_tokens": 9});
        assert_eq!(
            translate_request(&m, &model(Some(500)), true)["max_tokens"],
            7
        );
        let m = json!({"messages": []});
        assert_eq!(
            translate_request(&m, &model(Some(500)), true)["max_tokens"],
            500
        );
        let r = translate_request(&m, &model(None), true);
        assert_eq!(
            (r["max_tokens"].clone(), r["stream"].clone()),
            (json!(4096), json!(true))
        );
        assert!(r.get("system").is_none());
    }

    #[test]
    fn finish_reasons_and_cached_usage_translate() {
        for (stop, want) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
        ] {
            let raw = json!({"id": "msg_1", "type": "message", "content": [
                {"type": "text", "text": "a"}, {"type": "text", "text": "b"},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}}],
                "stop_reason": stop, "usage": {"input_tokens": 10, "output_tokens": 4,
                "cache_read_input_tokens": 30, "cache_creation_input_tokens": 5}});
            let p = reply(raw.to_string().as_bytes(), "claude-x").unwrap();
            assert_eq!(p.body["choices"][0]["finish_reason"], want);
            assert_eq!(p.text, "ab");
            assert_eq!(p.body["choices"][0]["message"]["content"], "ab");
            let call = &p.body["choices"][0]["message"]["tool_calls"][0];
            assert_eq!(call["function"]["arguments"], "{\"x\":1}");
            let u = p.usage.unwrap();
            assert_eq!((u.input, u.output, u.cached), (45, 4, 30));
            assert_eq!(p.body["usage"]["prompt_tokens"], 45);
            assert_eq!(p.body["usage"]["total_tokens"], 49);
            assert_eq!(
                p.body["usage"]["prompt_tokens_details"]["cached_tokens"],
                30
            );
            assert_eq!(p.body["model"], "claude-x");
            assert_eq!(p.body["object"], "chat.completion");
        }
        assert!(reply(b"{\"type\":\"message\"}", "m").is_err());
    }

    #[test]
    fn error_events_name_their_status() {
        let mut s = StreamState::new("m", false);
        let ev = Event {
            event: "error".into(),
            data: r#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#.into(),
        };
        let e = s.on_event(&ev, &mut Tally::default()).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (Some(529), "busy"));
    }
}
