//! The `openai` protocol: chat completions, as OpenAI and every compatible server speak it.
//!
//! The caller already speaks it, so the work is small and kept cheap: the request is
//! re-serialized straight from the caller's JSON with `model` (and the stream options)
//! replaced, and stream chunks are forwarded as the raw JSON they arrived as, parsed only
//! into the few fields pas reads (text, finish, usage).

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sse::Event;
use super::{error_message, excerpt, frame, Plain, Tally, Upstream, DONE};
use crate::llm::cost::{Usage, UsageSource};

/// The upstream request body: the caller's fields, our `model`, and for streams
/// `stream: true` with usage always asked for (pas needs it even when the caller does not).
pub(super) fn request(body: &Value, model: &str, stream: bool) -> Vec<u8> {
    let req = Request {
        body,
        model,
        stream,
    };
    // Serializing a `Value` map into a Vec cannot fail (string keys, no I/O).
    serde_json::to_vec(&req).unwrap_or_default()
}

struct Request<'a> {
    body: &'a Value,
    model: &'a str,
    stream: bool,
}

impl Serialize for Request<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (k, v) in self.body.as_object().into_iter().flatten() {
            if !matches!(k.as_str(), "model" | "stream" | "stream_options") {
                m.serialize_entry(k, v)?;
            }
        }
        m.serialize_entry("model", self.model)?;
        if self.stream {
            m.serialize_entry("stream", &true)?;
            m.serialize_entry(
                "stream_options",
                &serde_json::json!({"include_usage": true}),
            )?;
        }
        m.end()
    }
}

/// OpenAI's `usage` object.
#[derive(Debug, Default, Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Default, Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl WireUsage {
    fn usage(&self) -> Usage {
        Usage {
            input: self.prompt_tokens,
            output: self.completion_tokens,
            cached: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            reasoning: self
                .completion_tokens_details
                .as_ref()
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
            source: UsageSource::Provider,
            ..Usage::default() // OpenAI reports no cache writes (it does not bill them)
        }
    }
}

/// A plain `chat.completion`: checked, with `model` set to the target's id.
pub(super) fn reply(bytes: &[u8], model: &str) -> Result<Plain, String> {
    let mut body: Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("the answer is not JSON ({e}): {}", excerpt(bytes)))?;
    let msg = body
        .pointer("/choices/0/message")
        .ok_or_else(|| format!("the answer has no choices[0].message: {}", excerpt(bytes)))?;
    let text = msg["content"].as_str().unwrap_or_default().to_owned();
    let mut other_output_bytes = msg["reasoning_content"].as_str().map_or(0, str::len);
    for call in msg["tool_calls"].as_array().into_iter().flatten() {
        other_output_bytes += call["function"]["arguments"].as_str().map_or(0, str::len);
    }
    let usage = match body.get("usage") {
        Some(u) if u.is_object() => Some(
            WireUsage::deserialize(u)
                .map_err(|e| format!("usage: {e}"))?
                .usage(),
        ),
        _ => None,
    };
    body["model"] = model.into();
    Ok(Plain {
        body,
        text,
        usage,
        other_output_bytes,
        reasoning_bytes: 0, // counted by the provider (completion_tokens_details)
    })
}

/// The fields of a `chat.completion.chunk` pas reads; the rest is forwarded untouched.
#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChoiceDelta>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChoiceDelta {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    /// DeepSeek, vLLM and llama.cpp stream their reasoning here.
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    arguments: Option<String>,
}

/// What an openai stream needs to remember between events.
pub(super) struct StreamState {
    /// The caller asked for the usage chunk (else it is read but not forwarded).
    wants_usage: bool,
    /// A `finish_reason` arrived, so a body ending without `[DONE]` is still complete.
    finished: bool,
}

impl StreamState {
    pub(super) fn new(wants_usage: bool) -> Self {
        StreamState {
            wants_usage,
            finished: false,
        }
    }

    /// Takes one event; `Ok(true)` at `[DONE]`.
    pub(super) fn on_event(&mut self, ev: &Event, t: &mut Tally) -> Result<bool, Upstream> {
        if ev.data == "[DONE]" {
            t.frames.push_back(bytes::Bytes::from_static(DONE));
            t.started = true;
            return Ok(true);
        }
        let chunk: Chunk = serde_json::from_str(&ev.data).map_err(|e| Upstream {
            code: None,
            message: format!(
                "a stream chunk is not JSON ({e}): {}",
                excerpt(ev.data.as_bytes())
            ),
        })?;
        if ev.event == "error" || chunk.error.is_some() {
            let code = chunk.error.as_ref().and_then(|e| e["code"].as_u64());
            return Err(Upstream {
                code: code.and_then(|c| u16::try_from(c).ok()),
                message: error_message(ev.data.as_bytes()),
            });
        }
        let mut progress = false;
        for c in &chunk.choices {
            if let Some(d) = &c.delta {
                if let Some(text) = &d.content {
                    t.text.push_str(text);
                    progress |= !text.is_empty();
                }
                if let Some(r) = &d.reasoning_content {
                    t.other_output_bytes += r.len();
                    progress |= !r.is_empty();
                }
                for call in d.tool_calls.iter().flatten() {
                    progress = true;
                    let args = call.function.as_ref().and_then(|f| f.arguments.as_ref());
                    t.other_output_bytes += args.map_or(0, String::len);
                }
            }
            if c.finish_reason.is_some() {
                progress = true;
                self.finished = true;
            }
        }
        if let Some(u) = &chunk.usage {
            let u = u.usage();
            t.input = Some(u.input);
            t.output = Some(u.output);
            t.cached = u.cached;
            t.reasoning = u.reasoning;
            progress = true;
        }
        let usage_only = chunk.choices.is_empty() && chunk.usage.is_some();
        if self.wants_usage || !usage_only {
            t.frames.push_back(frame(ev.data.as_bytes()));
        }
        t.started |= progress;
        Ok(false)
    }

    /// The body ended without `[DONE]`: complete if a finish reason was seen (some
    /// compatible servers never send `[DONE]`), else cut.
    pub(super) fn on_eof(&mut self, t: &mut Tally) -> Result<(), String> {
        if !self.finished {
            return Err("the stream ended before [DONE]".into());
        }
        t.frames.push_back(bytes::Bytes::from_static(DONE));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_replaces_model_and_forces_usage_on_streams() {
        let body = json!({"model": "cap:code", "messages": [{"role": "user", "content": "hi"}],
            "stream": false, "stream_options": {"include_usage": false}, "temperature": 0.2});
        let plain: Value = serde_json::from_slice(&request(&body, "gpt-x", false)).unwrap();
        assert_eq!(plain["model"], "gpt-x");
        assert_eq!(plain["temperature"], 0.2);
        assert_eq!(plain["messages"], body["messages"]);
        assert!(plain.get("stream").is_none() && plain.get("stream_options").is_none());
        let streamed: Value = serde_json::from_slice(&request(&body, "gpt-x", true)).unwrap();
        assert_eq!(streamed["stream"], true);
        assert_eq!(streamed["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn reply_reads_all_usage_fields_and_sets_the_model() {
        let raw = json!({"id": "c1", "object": "chat.completion", "model": "gpt-x-2025",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140,
                "prompt_tokens_details": {"cached_tokens": 60},
                "completion_tokens_details": {"reasoning_tokens": 30}}});
        let p = reply(raw.to_string().as_bytes(), "gpt-x").unwrap();
        assert_eq!(p.text, "ok");
        assert_eq!(p.body["model"], "gpt-x");
        let u = p.usage.unwrap();
        assert_eq!(
            (u.input, u.output, u.cached, u.reasoning),
            (100, 40, 60, 30)
        );
        assert_eq!(u.source, UsageSource::Provider);
    }

    #[test]
    fn reply_without_choices_or_json_is_refused() {
        assert!(reply(b"{\"object\":\"list\"}", "m").is_err());
        assert!(reply(b"<html>bad gateway</html>", "m").is_err());
    }

    #[test]
    fn usage_only_chunk_is_read_but_stripped_unless_asked() {
        let ev = Event {
            event: String::new(),
            data: r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#.into(),
        };
        for wants in [false, true] {
            let mut t = Tally::default();
            StreamState::new(wants).on_event(&ev, &mut t).unwrap();
            assert_eq!((t.input, t.output), (Some(3), Some(2)));
            assert_eq!(t.frames.len(), usize::from(wants));
        }
    }

    #[test]
    fn a_role_only_chunk_is_not_yet_content_and_a_body_may_end_after_finish() {
        let mut s = StreamState::new(false);
        let mut t = Tally::default();
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        let ev = |d: &str| Event {
            event: String::new(),
            data: d.into(),
        };
        s.on_event(&ev(role), &mut t).unwrap();
        assert!(!t.started, "the role chunk is not the first token");
        assert!(s.on_eof(&mut t).is_err(), "no finish yet: cut");
        let fin = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        s.on_event(&ev(fin), &mut t).unwrap();
        assert!(t.started);
        s.on_eof(&mut t).unwrap();
        assert_eq!(t.frames.back().unwrap().as_ref(), DONE);
    }
}
