//! Messages API requests said as OpenAI chat requests (the shape the call path routes,
//! budgets and records), and chat answers said back as Messages API messages. An
//! `anthropic` provider is sent the request as the client sent it instead (see
//! `call::Request::native`); what follows is what other providers get.
//!
//! Kept: the system prompt (string or blocks, with their `cache_control`), `role: system`
//! turns inside `messages` (Claude Code sends them), text, images (base64 or URL), tool
//! use and tool results (a user turn's results become `role: tool` messages before the
//! rest of that turn), tools (with `cache_control`), `tool_choice`
//! (`disable_parallel_tool_use` too), `stop_sequences`, `temperature`, `top_p`,
//! `max_tokens`. Blocks pas does not know (documents, search results) pass unchanged, so
//! an Anthropic provider takes them and another refuses them in its own words. Dropped,
//! as they steer Anthropic's own models and have no chat-completions form: `thinking` and
//! thinking blocks of past turns, `top_k`, `metadata`, `output_config`,
//! `context_management`, `service_tier`, and a tool result's `is_error`. Anthropic's
//! server tools (`web_search_...`, `code_execution_...`) run at Anthropic, not at a
//! routed model: a request holding one is refused, naming it.

use serde_json::{json, Map, Value};

use crate::llm::cost::Usage;

/// The Messages request `b` as an OpenAI chat request, or why it is not one.
pub fn to_chat(b: &Value) -> Result<Value, String> {
    let Some(obj) = b.as_object() else {
        return Err("the request body must be a JSON object".into());
    };
    let Some(model) = obj.get("model").and_then(Value::as_str) else {
        return Err("model: Field required (a model id, an alias, or cap:<capability>)".into());
    };
    let Some(messages) = obj.get("messages").and_then(Value::as_array) else {
        return Err("messages: Field required (a list of user and assistant turns)".into());
    };
    let mut out = Vec::new();
    match obj.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => out.push(json!({"role": "system", "content": s})),
        Some(Value::Array(blocks)) => {
            let parts = parts(blocks).map_err(|e| format!("system: {e}"))?;
            out.push(json!({"role": "system", "content": parts}));
        }
        Some(_) => return Err("system: must be a string or a list of text blocks".into()),
    }
    for (i, m) in messages.iter().enumerate() {
        turn(m, &mut out).map_err(|e| format!("messages.{i}: {e}"))?;
    }
    let mut chat = Map::new();
    chat.insert("model".into(), model.into());
    chat.insert("messages".into(), out.into());
    for key in ["max_tokens", "temperature", "top_p"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            chat.insert(key.into(), v.clone());
        }
    }
    if let Some(s) = obj.get("stop_sequences").filter(|v| !v.is_null()) {
        chat.insert("stop".into(), s.clone());
    }
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        let tools = tools
            .iter()
            .enumerate()
            .map(|(i, t)| tool(t).map_err(|e| format!("tools.{i}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if !tools.is_empty() {
            chat.insert("tools".into(), tools.into());
        }
    }
    if let Some(c) = obj.get("tool_choice").filter(|v| !v.is_null()) {
        let (choice, serial) = tool_choice(c)?;
        chat.insert("tool_choice".into(), choice);
        if serial {
            chat.insert("parallel_tool_calls".into(), false.into());
        }
    }
    if obj.get("stream").and_then(Value::as_bool) == Some(true) {
        chat.insert("stream".into(), true.into());
        // The answer's usage closes the Messages stream (`message_delta`).
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(chat))
}

/// One Messages turn appended to the chat messages.
fn turn(m: &Value, out: &mut Vec<Value>) -> Result<(), String> {
    let role = m["role"].as_str().ok_or("role: Field required")?;
    if !matches!(role, "user" | "assistant" | "system") {
        return Err(format!("role: {role:?} is not user or assistant"));
    }
    let blocks = match &m["content"] {
        Value::String(s) => {
            out.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Value::Array(b) => b,
        _ => return Err("content: must be a string or a list of blocks".into()),
    };
    if role == "assistant" {
        let mut text = Vec::new();
        let mut calls = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            match b["type"].as_str() {
                Some("text") => text.push(text_part(b)),
                Some("tool_use") => calls.push(json!({"id": b["id"], "type": "function",
                    "function": {"name": b["name"], "arguments": input_string(&b["input"])}})),
                Some("thinking" | "redacted_thinking") => {}
                _ => {
                    return Err(format!(
                        "content.{j}: an assistant block of type {} has no chat form",
                        b["type"]
                    ))
                }
            }
        }
        let content = if text.iter().any(|p| p.get("cache_control").is_some()) {
            Value::Array(text)
        } else if text.is_empty() {
            Value::Null
        } else {
            let joined: Vec<&str> = text.iter().filter_map(|p| p["text"].as_str()).collect();
            joined.concat().into()
        };
        let mut msg = json!({"role": "assistant", "content": content});
        if !calls.is_empty() {
            msg["tool_calls"] = calls.into();
        }
        out.push(msg);
        return Ok(());
    }
    let mut rest = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        if b["type"] == "tool_result" {
            let id = b["tool_use_id"]
                .as_str()
                .ok_or(format!("content.{j}: tool_use_id: Field required"))?;
            let content = match &b["content"] {
                Value::Null => Value::String(String::new()),
                Value::String(s) => s.clone().into(),
                Value::Array(parts) => Value::Array(
                    self::parts(parts).map_err(|e| format!("content.{j}.content: {e}"))?,
                ),
                _ => return Err(format!("content.{j}.content: must be a string or blocks")),
            };
            out.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
        } else {
            rest.push(part(b).map_err(|e| format!("content.{j}: {e}"))?);
        }
    }
    if !rest.is_empty() {
        out.push(json!({"role": role, "content": rest}));
    }
    Ok(())
}

fn parts(blocks: &[Value]) -> Result<Vec<Value>, String> {
    blocks
        .iter()
        .enumerate()
        .map(|(j, b)| part(b).map_err(|e| format!("{j}: {e}")))
        .collect()
}

/// A text block as a text part (with its cache mark).
fn text_part(b: &Value) -> Value {
    let mut p = json!({"type": "text", "text": b["text"].as_str().unwrap_or_default()});
    if let Some(c) = b.get("cache_control") {
        p["cache_control"] = c.clone();
    }
    p
}

/// A content block as a chat content part: text and images translated, anything else
/// passed unchanged.
fn part(b: &Value) -> Result<Value, String> {
    match b["type"].as_str() {
        Some("text") => Ok(text_part(b)),
        Some("image") => {
            let s = &b["source"];
            let url = match s["type"].as_str() {
                Some("base64") => format!(
                    "data:{};base64,{}",
                    s["media_type"]
                        .as_str()
                        .ok_or("source.media_type: Field required")?,
                    s["data"].as_str().ok_or("source.data: Field required")?
                ),
                Some("url") => s["url"]
                    .as_str()
                    .ok_or("source.url: Field required")?
                    .to_string(),
                _ => {
                    return Err(format!(
                        "an image source of type {} has no chat form",
                        s["type"]
                    ))
                }
            };
            let mut p = json!({"type": "image_url", "image_url": {"url": url}});
            if let Some(c) = b.get("cache_control") {
                p["cache_control"] = c.clone();
            }
            Ok(p)
        }
        _ => Ok(b.clone()),
    }
}

fn input_string(input: &Value) -> String {
    match input {
        Value::Null => "{}".into(),
        v => v.to_string(),
    }
}

/// A Messages tool as a chat function tool; a server tool is refused.
fn tool(t: &Value) -> Result<Value, String> {
    let name = t["name"].as_str().ok_or("name: Field required")?;
    if let Some(kind) = t["type"].as_str().filter(|k| *k != "custom") {
        return Err(format!(
            "{name} is Anthropic's server tool {kind:?}: it runs at Anthropic, not at a model \
             pas routes to, so pas does not take it"
        ));
    }
    let mut f = json!({"name": name, "parameters": t.get("input_schema").cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}))});
    if let Some(d) = t["description"].as_str() {
        f["description"] = d.into();
    }
    let mut out = json!({"type": "function", "function": f});
    if let Some(c) = t.get("cache_control") {
        out["cache_control"] = c.clone();
    }
    Ok(out)
}

/// `tool_choice` as chat's, and whether parallel tool use is off.
fn tool_choice(c: &Value) -> Result<(Value, bool), String> {
    let serial = c["disable_parallel_tool_use"] == true;
    let choice = match c["type"].as_str() {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = c["name"]
                .as_str()
                .ok_or("tool_choice.name: Field required")?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => return Err(format!("tool_choice: {c} is not auto, any, tool or none")),
    };
    Ok((choice, serial))
}

/// A chat finish reason as a Messages stop reason.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Usage as the Messages API counts it: `input_tokens` without the cache reads and writes.
pub fn usage(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input.saturating_sub(u.cached.saturating_add(u.cache_write)),
        "output_tokens": u.output,
        "cache_read_input_tokens": u.cached,
        "cache_creation_input_tokens": u.cache_write,
    })
}

/// A chat answer (`chat.completion`) as a Messages `message`.
pub fn to_message(chat: &Value, u: &Usage, id: &str, model: &str) -> Value {
    let choice = &chat["choices"][0];
    let msg = &choice["message"];
    let mut content = Vec::new();
    if let Some(t) = msg["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": t}));
    }
    for c in msg["tool_calls"].as_array().into_iter().flatten() {
        content.push(
            json!({"type": "tool_use", "id": c["id"], "name": c["function"]["name"],
            "input": parse_input(c["function"]["arguments"].as_str())}),
        );
    }
    json!({"id": id, "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop_reason(choice["finish_reason"].as_str()),
        "stop_sequence": null, "usage": usage(u)})
}

/// A tool call's arguments as the `input` object (`{}` when they are not a JSON object,
/// as a model that breaks its JSON still made the call).
pub fn parse_input(args: Option<&str>) -> Value {
    args.and_then(|a| serde_json::from_str::<Value>(a).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}
