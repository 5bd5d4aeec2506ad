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

/// Output tokens asked for when neither the caller nor the model config names a limit.
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The upstream request body, or why the request cannot be said in the Messages API (then
/// another candidate may take it; with none left, the gateway answers a 400 naming it).
pub(super) fn request(body: &Value, model: &Model, stream: bool) -> Result<Vec<u8>, String> {
    let out = translate_request(body, model, stream)?;
    // Serializing a `Value` into a Vec cannot fail.
    Ok(serde_json::to_vec(&out).unwrap_or_default())
}

/// The caller's OpenAI chat request as a Messages request.
fn translate_request(body: &Value, model: &Model, stream: bool) -> Result<Value, String> {
    for key in ["functions", "function_call"] {
        if body.get(key).is_some_and(|v| !v.is_null()) {
            return Err(format!(
                "`{key}` (OpenAI's deprecated form of tools) is not translated to the \
                 Messages API; send `tools` and `tool_choice` instead"
            ));
        }
    }
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for (i, m) in body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = |e: String| format!("messages[{i}]: {e}");
        match m["role"].as_str() {
            Some("system" | "developer") => {
                system.extend(system_blocks(&m["content"]).map_err(at)?)
            }
            Some("tool") => push(&mut messages, "user", json!([tool_result(m).map_err(at)?])),
            Some("function") => {
                return Err(at("`role: function` (OpenAI's deprecated form of tool \
                     results) is not translated; send `role: tool` messages"
                    .into()))
            }
            Some("assistant") => {
                let calls = m["tool_calls"].as_array().filter(|c| !c.is_empty());
                let content = match calls {
                    None => content(&m["content"]).map_err(at)?,
                    Some(calls) => {
                        let mut blocks = into_blocks(content(&m["content"]).map_err(at)?);
                        for (j, call) in calls.iter().enumerate() {
                            let e = |e: String| at(format!("tool_calls[{j}]: {e}"));
                            blocks.push(tool_use(call).map_err(e)?);
                        }
                        Value::Array(blocks)
                    }
                };
                push(&mut messages, "assistant", content);
            }
            _ => {
                let role = m["role"].as_str().unwrap_or("user");
                push(&mut messages, role, content(&m["content"]).map_err(at)?);
            }
        }
    }
    if let Some(note) = response_format(&body["response_format"])? {
        system.push(json!({"type": "text", "text": note}));
    }
    let max_tokens = body["max_completion_tokens"]
        .as_u64()
        .or(body["max_tokens"].as_u64())
        .or(model.max_output_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let mut out = json!({"model": model.id, "max_tokens": max_tokens, "messages": messages});
    if system.iter().any(|b| b.get("cache_control").is_some()) {
        out["system"] = Value::Array(system);
    } else if !system.is_empty() {
        let texts: Vec<&str> = system.iter().filter_map(|b| b["text"].as_str()).collect();
        out["system"] = texts.join("\n\n").into();
    }
    if let Some(tools) = tools(&body["tools"])? {
        if let Some(choice) = tool_choice(body)? {
            out["tool_choice"] = choice;
        }
        out["tools"] = tools.into();
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
    Ok(out)
}

/// Appends a message, merged into the previous one when both have the same role: the
/// Messages API wants user and assistant turns to alternate, while OpenAI's history has
/// one message per tool result (and tool results are a user turn in Anthropic's terms).
/// A message with nothing in it (`""`, `null`, no parts, only blank text parts) is
/// skipped, as Anthropic refuses an empty turn or a blank text block with a 400; the
/// merge keeps the roles alternating around the gap.
fn push(messages: &mut Vec<Value>, role: &str, content: Value) {
    let blank = |t: &Value| t.as_str().is_some_and(|t| t.trim().is_empty());
    let content = match content {
        Value::Array(mut blocks) => {
            blocks.retain(|b| !(b["type"] == "text" && blank(&b["text"])));
            Value::Array(blocks)
        }
        other => other,
    };
    if content.is_null() || blank(&content) || content.as_array().is_some_and(Vec::is_empty) {
        return;
    }
    if let Some(last) = messages.last_mut().filter(|l| l["role"] == role) {
        let mut blocks = into_blocks(last["content"].take());
        blocks.extend(into_blocks(content));
        last["content"] = Value::Array(blocks);
        return;
    }
    messages.push(json!({"role": role, "content": content}));
}

/// Content as a list of blocks (a string becomes one text block; nothing, none).
fn into_blocks(c: Value) -> Vec<Value> {
    match c {
        Value::Array(blocks) => blocks,
        Value::Null => Vec::new(),
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        other => vec![other], // not content at all: Anthropic refuses it with its own words
    }
}

/// Message content: a string stays a string; OpenAI text parts become text blocks and
/// image parts image blocks (both with their `cache_control`, Anthropic's prompt-caching
/// marker, if the caller set one); other parts pass unchanged, so Anthropic refuses what it
/// cannot take with its own message rather than pas dropping it silently. `null` (an
/// assistant turn of only tool calls) stays `null`. A part that is recognized but cannot be
/// translated (an image pas cannot say as an Anthropic source) is an error naming the part.
fn content(c: &Value) -> Result<Value, String> {
    match c {
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| part(p).map_err(|e| format!("content[{j}]: {e}")))
            .collect(),
        other => Ok(other.clone()),
    }
}

fn part(p: &Value) -> Result<Value, String> {
    let mut b = match (p["type"].as_str(), p["text"].as_str()) {
        (Some("text"), Some(text)) => json!({"type": "text", "text": text}),
        (Some("image_url"), _) => json!({"type": "image", "source": image_source(p)?}),
        _ => return Ok(p.clone()),
    };
    if let Some(c) = p.get("cache_control") {
        b["cache_control"] = c.clone();
    }
    Ok(b)
}

/// The image types the Messages API takes; anything else it refuses, so pas refuses it
/// first, naming these, rather than spending a round trip to learn the same.
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// An OpenAI `image_url` part's image as an Anthropic image `source`: a base64 `data:` URL
/// becomes a `base64` source with its media type, an `http(s)` URL a `url` source (Anthropic
/// fetches it). `image_url.detail` (OpenAI's resolution knob) is dropped: the Messages API
/// has no such setting and sizes images itself, and refusing it would fail callers that
/// set it out of habit. Any other URL, a `data:` URL that is not base64, or a type in none
/// of [`IMAGE_TYPES`] cannot be sent, and is an error.
fn image_source(p: &Value) -> Result<Value, String> {
    // OpenAI's form is `{"url": ...}`; some clients send the URL as a bare string.
    let image = &p["image_url"];
    let url = image["url"]
        .as_str()
        .or(image.as_str())
        .ok_or("`image_url.url` is missing")?;
    let scheme = |s: &str| {
        url.get(..s.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(s))
    };
    if scheme("http://") || scheme("https://") {
        return Ok(json!({"type": "url", "url": url}));
    }
    if !scheme("data:") {
        return Err(format!(
            "an image must be a base64 `data:` URL or an http(s) URL, not {:?}",
            excerpt(url.as_bytes())
        ));
    }
    let (meta, data) = url[5..]
        .split_once(',')
        .ok_or("the image's `data:` URL has no `,` before its data")?;
    // Media types and the `;base64` marker are case-insensitive.
    let meta = meta.to_ascii_lowercase();
    let Some(meta) = meta.strip_suffix(";base64") else {
        return Err(
            "the image's `data:` URL is not base64 (`data:<type>;base64,...`), the only \
            encoding the Messages API takes"
                .into(),
        );
    };
    // Parameters before `;base64` (`;charset=...`) mean nothing for an image.
    let media = meta.split(';').next().unwrap_or_default();
    if !IMAGE_TYPES.contains(&media) {
        return Err(format!(
            "image type {media:?} is not taken by the Messages API (only {})",
            IMAGE_TYPES.join(", ")
        ));
    }
    Ok(json!({"type": "base64", "media_type": media, "data": data}))
}

/// The text blocks of a system message: a string is one block; parts are joined into one
/// block, unless one of them carries `cache_control`, when each keeps its own. Blank text
/// makes no block: Anthropic refuses a blank text block (a cache mark on one too).
fn system_blocks(c: &Value) -> Result<Vec<Value>, String> {
    let said = |p: &&Value| p["text"].as_str().is_some_and(|t| !t.trim().is_empty());
    Ok(match c {
        Value::String(s) if s.trim().is_empty() => Vec::new(),
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) if parts.iter().any(|p| p.get("cache_control").is_some()) => parts
            .iter()
            .filter(said)
            .map(part)
            .collect::<Result<_, _>>()?,
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(said)
                .filter_map(|p| p["text"].as_str())
                .collect();
            if texts.is_empty() {
                return Ok(Vec::new());
            }
            vec![json!({"type": "text", "text": texts.join("\n")})]
        }
        _ => Vec::new(),
    })
}

/// One OpenAI tool call of an assistant turn as a `tool_use` block; the arguments, a JSON
/// string for OpenAI, become the object Anthropic wants.
fn tool_use(call: &Value) -> Result<Value, String> {
    if !matches!(call["type"].as_str(), None | Some("function")) {
        return Err(format!(
            "a tool call of type {} has no Messages API form",
            call["type"]
        ));
    }
    let id = call["id"].as_str().ok_or("`id` is missing")?;
    let f = &call["function"];
    let name = f["name"].as_str().ok_or("`function.name` is missing")?;
    let input = match &f["arguments"] {
        Value::Null => json!({}),
        Value::String(s) if s.trim().is_empty() => json!({}),
        Value::String(s) => serde_json::from_str(s)
            .map_err(|e| format!("`function.arguments` is not JSON ({e})"))?,
        other => other.clone(),
    };
    if !input.is_object() {
        return Err("`function.arguments` must be a JSON object".into());
    }
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

/// A `role: tool` message as a `tool_result` block.
fn tool_result(m: &Value) -> Result<Value, String> {
    let id = m["tool_call_id"]
        .as_str()
        .ok_or("a tool message needs its `tool_call_id`")?;
    let mut block = json!({"type": "tool_result", "tool_use_id": id});
    match content(&m["content"])? {
        Value::Null => {}
        c => block["content"] = c,
    }
    Ok(block)
}

/// OpenAI function tools as Anthropic tools (`parameters` becomes `input_schema`, a
/// `cache_control` beside `function` is kept; `strict` has no equivalent and is not sent).
fn tools(list: &Value) -> Result<Option<Vec<Value>>, String> {
    let list = match list {
        Value::Null => return Ok(None),
        Value::Array(l) if l.is_empty() => return Ok(None),
        Value::Array(l) => l,
        _ => return Err("`tools` must be a list".into()),
    };
    let one = |(i, t): (usize, &Value)| {
        if !matches!(t["type"].as_str(), None | Some("function")) {
            return Err(format!(
                "tools[{i}]: only function tools have a Messages API form, not {}",
                t["type"]
            ));
        }
        let f = &t["function"];
        let name = f["name"]
            .as_str()
            .ok_or(format!("tools[{i}]: `function.name` is missing"))?;
        let schema = match &f["parameters"] {
            Value::Null => json!({"type": "object", "properties": {}}),
            p => p.clone(),
        };
        let mut out = json!({"name": name, "input_schema": schema});
        if let Some(d) = f["description"].as_str() {
            out["description"] = d.into();
        }
        if let Some(c) = t.get("cache_control") {
            out["cache_control"] = c.clone();
        }
        Ok(out)
    };
    list.iter()
        .enumerate()
        .map(one)
        .collect::<Result<_, _>>()
        .map(Some)
}

/// `tool_choice` and `parallel_tool_calls` as Anthropic's `tool_choice` (`None`: leave it
/// to the default, which is `auto`).
fn tool_choice(body: &Value) -> Result<Option<Value>, String> {
    let serial = body["parallel_tool_calls"] == false;
    let mut choice = match &body["tool_choice"] {
        Value::Null if serial => json!({"type": "auto"}),
        Value::Null => return Ok(None),
        Value::String(s) => match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "none" => json!({"type": "none"}),
            "required" => json!({"type": "any"}),
            other => return Err(format!("`tool_choice` {other:?} is not known")),
        },
        c => match c["function"]["name"].as_str() {
            Some(name) => json!({"type": "tool", "name": name}),
            None => return Err(format!("`tool_choice` {c} names no function")),
        },
    };
    if serial && choice["type"] != "none" {
        choice["disable_parallel_tool_use"] = true.into();
    }
    Ok(Some(choice))
}

/// `response_format`, which the Messages API has no field for, as an instruction appended
/// to the system prompt: the model is asked for JSON (and given the schema), but nothing
/// enforces it, as OpenAI's `json_schema` with `strict` would.
fn response_format(f: &Value) -> Result<Option<String>, String> {
    const ONLY: &str = "Reply with one JSON object and nothing else: no prose before or \
        after it, no code fences.";
    Ok(match f["type"].as_str() {
        None if f.is_null() => None,
        Some("text") => None,
        Some("json_object") => Some(ONLY.into()),
        Some("json_schema") => {
            let s = &f["json_schema"];
            let Some(schema) = s.get("schema").filter(|v| !v.is_null()) else {
                return Err("`response_format.json_schema.schema` is missing".into());
            };
            let name = s["name"]
                .as_str()
                .map_or(String::new(), |n| format!(" {n}"));
            Some(format!(
                "{ONLY} The object must conform to this JSON schema{name}:\n{schema}"
            ))
        }
        _ => return Err(format!("`response_format` {f} is not known")),
    })
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

/// What an anthropic stream needs to remember between events.
pub(super) struct StreamState {
    id: String,
    created: u64,
    model: String,
    wants_usage: bool,
    /// The first chunk carries `role: assistant`, as OpenAI's does.
    role_sent: bool,
    stop_reason: Option<String>,
    /// The Anthropic block index of each `tool_use` block so far; its position here is
    /// the OpenAI tool call's `index` (its ordinal among the tool calls).
    tool_blocks: Vec<u64>,
    /// Thinking text so far, for the reasoning estimate.
    thinking_bytes: usize,
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
            tool_blocks: Vec::new(),
            thinking_bytes: 0,
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
                    u.input_into(t);
                }
            }
            "content_block_start" => {
                let b = &v["content_block"];
                if b["type"] == "tool_use" {
                    let n = self.tool_blocks.len();
                    self.tool_blocks
                        .push(v["index"].as_u64().unwrap_or(u64::MAX));
                    let call = json!({"index": n, "id": b["id"], "type": "function",
                        "function": {"name": b["name"], "arguments": ""}});
                    self.tool_call(call, t);
                } else if b["type"] == "thinking" {
                    self.thinking(b["thinking"].as_str().unwrap_or_default(), t);
                } else {
                    self.text(b["text"].as_str().unwrap_or_default(), t);
                }
            }
            "content_block_delta" => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => self.text(d["text"].as_str().unwrap_or_default(), t),
                    Some("input_json_delta") => {
                        let part = d["partial_json"].as_str().unwrap_or_default();
                        t.other_output_bytes += part.len();
                        let block = v["index"].as_u64();
                        let n = self.tool_blocks.iter().position(|b| Some(*b) == block);
                        if let (Some(n), false) = (n, part.is_empty()) {
                            let call = json!({"index": n, "function": {"arguments": part}});
                            self.tool_call(call, t);
                        }
                    }
                    Some("thinking_delta") => {
                        self.thinking(d["thinking"].as_str().unwrap_or_default(), t);
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
                    u.input_into(t);
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

    /// Thinking is not passed on, only counted: as output (for the estimate when usage is
    /// missing) and for the reasoning estimate.
    fn thinking(&mut self, thinking: &str, t: &mut Tally) {
        self.thinking_bytes += thinking.len();
        t.other_output_bytes += thinking.len();
        t.reasoning = estimate_tokens(self.thinking_bytes);
    }

    /// A chunk with one tool call's start or a piece of its arguments.
    fn tool_call(&mut self, call: Value, t: &mut Tally) {
        let mut delta = self.delta(None);
        delta["tool_calls"] = json!([call]);
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
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]},
            {"role": "assistant", "content": "hello"}],
            "temperature": 0.5, "top_p": null, "stop": "END", "max_tokens": 99});
        let r = translate_request(&body, &model(Some(500)), false).unwrap();
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
        assert_eq!(r["messages"][0]["content"][1]["type"], "image");
        assert_eq!(
            r["messages"][1],
            json!({"role": "assistant", "content": "hello"})
        );
    }

    /// Regression: `image_url` parts went to Anthropic raw, and it refused every request
    /// with an image.
    #[test]
    fn image_parts_become_image_blocks_with_their_cache_marks() {
        let image = |url: &str| json!({"type": "image_url", "image_url": {"url": url}});
        let mut marked = image("data:image/PNG;base64,iVBORw0K");
        marked["image_url"]["detail"] = "high".into();
        marked["cache_control"] = json!({"type": "ephemeral"});
        let body = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            marked,
            image("https://example.test/cat.jpg"),
            {"type": "image_url", "image_url": "HTTP://example.test/dog.webp"},
            image("data:image/webp;charset=utf-8;base64,UklGR")]}]});
        let r = translate_request(&body, &model(None), false).unwrap();
        assert_eq!(
            r["messages"][0]["content"],
            json!([
                {"type": "text", "text": "what is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                    "data": "iVBORw0K"}, "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "url",
                    "url": "https://example.test/cat.jpg"}},
                {"type": "image", "source": {"type": "url",
                    "url": "HTTP://example.test/dog.webp"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/webp",
                    "data": "UklGR"}}])
        );
        assert!(!r.to_string().contains("detail"), "{r}");
    }

    #[test]
    fn images_anthropic_cannot_take_are_refused_naming_the_message_and_part() {
        let ask = |part: Value| {
            json!({"messages": [{"role": "system", "content": "s"},
                {"role": "user", "content": "hi"},
                {"role": "user", "content": [{"type": "text", "text": "see"}, part]}]})
        };
        let image = |url: &str| json!({"type": "image_url", "image_url": {"url": url}});
        for (part, needle) in [
            (
                image("ftp://example.test/a.png"),
                "not \"ftp://example.test/a.png\"",
            ),
            (image("/tmp/a.png"), "base64 `data:` URL or an http(s) URL"),
            (image("data:image/png,%89PNG"), "is not base64"),
            (image("data:image/png;base64"), "no `,`"),
            (
                image("data:image/bmp;base64,Qk0"),
                "\"image/bmp\" is not taken by the Messages API (only image/jpeg, image/png, \
                 image/gif, image/webp)",
            ),
            (image("data:;base64,Qk0"), "image type \"\""),
            (
                json!({"type": "image_url", "image_url": {"detail": "low"}}),
                "url` is missing",
            ),
        ] {
            let e = translate_request(&ask(part), &model(None), false).unwrap_err();
            assert!(e.starts_with("messages[2]: content[1]: "), "{e}");
            assert!(e.contains(needle), "{e} (wanted {needle})");
        }
    }

    #[test]
    fn max_tokens_comes_from_the_caller_then_the_model_then_4096() {
        let m = json!({"messages": [], "max_completion_tokens": 7, "max_tokens": 9});
        assert_eq!(
            translate_request(&m, &model(Some(500)), true).unwrap()["max_tokens"],
            7
        );
        let m = json!({"messages": []});
        assert_eq!(
            translate_request(&m, &model(Some(500)), true).unwrap()["max_tokens"],
            500
        );
        let r = translate_request(&m, &model(None), true).unwrap();
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
    fn tool_choice_and_parallel_calls_translate() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        let named = json!({"type": "function", "function": {"name": "f"}});
        for (choice, parallel, want) in [
            (json!("auto"), json!(null), json!({"type": "auto"})),
            (json!("none"), json!(false), json!({"type": "none"})),
            (json!("required"), json!(true), json!({"type": "any"})),
            (
                named,
                json!(false),
                json!({"type": "tool", "name": "f",
                "disable_parallel_tool_use": true}),
            ),
            (
                json!(null),
                json!(false),
                json!({"type": "auto",
                "disable_parallel_tool_use": true}),
            ),
        ] {
            let body = json!({"messages": [], "tools": tools, "tool_choice": choice,
                "parallel_tool_calls": parallel});
            let r = translate_request(&body, &model(None), false).unwrap();
            assert_eq!(r["tool_choice"], want, "{choice} {parallel}");
            assert_eq!(
                r["tools"],
                json!([{"name": "f", "input_schema": {"type": "object", "properties": {}}}])
            );
        }
        let r = translate_request(
            &json!({"messages": [], "tool_choice": "auto"}),
            &model(None),
            false,
        )
        .unwrap();
        assert!(r.get("tools").is_none() && r.get("tool_choice").is_none());
    }

    #[test]
    fn what_has_no_messages_api_form_is_refused_naming_the_field() {
        let call = |args: Value| {
            json!({"messages": [{"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": args}}]}]})
        };
        for (body, needle) in [
            (
                json!({"messages": [], "functions": [{"name": "f"}]}),
                "`functions`",
            ),
            (
                json!({"messages": [{"role": "function", "name": "f", "content": "1"}]}),
                "messages[0]: `role: function`",
            ),
            (
                json!({"messages": [], "tools": [{"type": "custom", "custom": {"name": "g"}}]}),
                "tools[0]",
            ),
            (
                call(json!("{not json")),
                "messages[0]: tool_calls[0]: `function.arguments` is not JSON",
            ),
            (call(json!("[1]")), "must be a JSON object"),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                "tool_call_id",
            ),
            (
                json!({"messages": [], "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": "sometimes"}),
                "`tool_choice`",
            ),
            (
                json!({"messages": [], "response_format": {"type": "yaml"}}),
                "`response_format`",
            ),
            (
                json!({"messages": [], "response_format": {"type": "json_schema",
                "json_schema": {"name": "x"}}}),
                "schema` is missing",
            ),
        ] {
            let e = translate_request(&body, &model(None), false).unwrap_err();
            assert!(e.contains(needle), "{e} (wanted {needle})");
        }
        // Empty arguments are a call without any: `{}`.
        let r = translate_request(&call(json!("")), &model(None), false).unwrap();
        assert_eq!(r["messages"][0]["content"][0]["input"], json!({}));
    }

    #[test]
    fn response_format_becomes_a_system_instruction_and_cache_marks_are_kept() {
        let body = json!({"messages": [
            {"role": "system", "content": [{"type": "text", "text": "long rules",
                "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": "hi"}],
            "response_format": {"type": "json_object"}});
        let r = translate_request(&body, &model(None), false).unwrap();
        assert_eq!(
            r["system"][0],
            json!({"type": "text", "text": "long rules",
            "cache_control": {"type": "ephemeral"}})
        );
        assert!(r["system"][1]["text"]
            .as_str()
            .unwrap()
            .starts_with("Reply with one JSON object"));
        let body = json!({"messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "text"}});
        let r = translate_request(&body, &model(None), false).unwrap();
        assert!(r.get("system").is_none());
    }

    #[test]
    fn streamed_tool_calls_are_indexed_by_their_ordinal_not_their_block() {
        let mut s = StreamState::new("m", false);
        let mut t = Tally::default();
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_1"}}),
            json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": "Let me look."}}),
            json!({"type": "content_block_start", "index": 1, "content_block":
                {"type": "tool_use", "id": "toolu_a", "name": "f", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": ""}}),
            json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "{\"x\":"}}),
            json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
            json!({"type": "content_block_start", "index": 2, "content_block":
                {"type": "tool_use", "id": "toolu_b", "name": "g", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}}),
            json!({"type": "message_stop"}),
        ];
        for v in events {
            let ev = Event {
                event: v["type"].as_str().unwrap().into(),
                data: v.to_string(),
            };
            s.on_event(&ev, &mut t).unwrap();
        }
        let chunks: Vec<Value> = t
            .frames
            .iter()
            .map(|f| std::str::from_utf8(f).unwrap())
            .filter(|f| !f.contains("[DONE]"))
            .map(|f| serde_json::from_str(f.trim_start_matches("data: ").trim()).unwrap())
            .collect();
        let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(
            deltas[0],
            &json!({"role": "assistant", "content": "Let me look."})
        );
        assert_eq!(
            deltas[1]["tool_calls"],
            json!([{"index": 0, "id": "toolu_a",
            "type": "function", "function": {"name": "f", "arguments": ""}}])
        );
        assert_eq!(
            deltas[2]["tool_calls"],
            json!([{"index": 0,
            "function": {"arguments": "{\"x\":"}}]),
            "the empty piece is skipped"
        );
        assert_eq!(deltas[3]["tool_calls"][0]["function"]["arguments"], "1}");
        assert_eq!(deltas[4]["tool_calls"][0]["index"], 1);
        assert_eq!(deltas[4]["tool_calls"][0]["id"], "toolu_b");
        assert_eq!(
            deltas[5]["tool_calls"],
            json!([{"index": 1,
            "function": {"arguments": "{}"}}])
        );
        assert_eq!(chunks[6]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks.len(), 7);
        assert_eq!(t.other_output_bytes, "{\"x\":1}{}".len());
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
