//! OpenAI chat requests said in the Messages API: messages, system, tools and tool
//! history, images, `response_format`, cache marks; or why a request cannot be said.

use super::*;

/// Output tokens asked for when neither the caller nor the model config names a limit.
pub(super) const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The upstream request body, or why the request cannot be said in the Messages API (then
/// another candidate may take it; with none left, the gateway answers a 400 naming it).
pub(in crate::llm::wire) fn request(
    body: &Value,
    model: &Model,
    stream: bool,
) -> Result<Vec<u8>, String> {
    let out = translate_request(body, model, stream)?;
    // Serializing a `Value` into a Vec cannot fail.
    Ok(serde_json::to_vec(&out).unwrap_or_default())
}

/// A Messages request sent on as its caller sent it (`native`), with the target's `model`,
/// `stream` as asked, and `max_tokens` (which the Messages API requires) from it, else
/// from the chat request pas made of it, else the model's bound.
pub(in crate::llm::wire) fn native_request(
    native: &Value,
    chat: &Value,
    model: &Model,
    stream: bool,
) -> Vec<u8> {
    let mut out = native.clone();
    out["model"] = model.id.clone().into();
    if out["max_tokens"].as_u64().is_none() {
        let max = chat["max_completion_tokens"]
            .as_u64()
            .or(chat["max_tokens"].as_u64())
            .or(model.max_output_tokens)
            .unwrap_or(DEFAULT_MAX_TOKENS);
        out["max_tokens"] = max.into();
    }
    match out.as_object_mut() {
        Some(o) if stream => {
            o.insert("stream".into(), true.into());
        }
        Some(o) => {
            o.remove("stream");
        }
        None => {}
    }
    serde_json::to_vec(&out).unwrap_or_default()
}

/// The caller's OpenAI chat request as a Messages request.
pub(super) fn translate_request(
    body: &Value,
    model: &Model,
    stream: bool,
) -> Result<Value, String> {
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
pub(super) fn push(messages: &mut Vec<Value>, role: &str, content: Value) {
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
pub(super) fn into_blocks(c: Value) -> Vec<Value> {
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
pub(super) fn content(c: &Value) -> Result<Value, String> {
    match c {
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| part(p).map_err(|e| format!("content[{j}]: {e}")))
            .collect(),
        other => Ok(other.clone()),
    }
}

pub(super) fn part(p: &Value) -> Result<Value, String> {
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
pub(super) const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// An OpenAI `image_url` part's image as an Anthropic image `source`: a base64 `data:` URL
/// becomes a `base64` source with its media type, an `http(s)` URL a `url` source (Anthropic
/// fetches it). `image_url.detail` (OpenAI's resolution knob) is dropped: the Messages API
/// has no such setting and sizes images itself, and refusing it would fail callers that
/// set it out of habit. Any other URL, a `data:` URL that is not base64, or a type in none
/// of [`IMAGE_TYPES`] cannot be sent, and is an error.
pub(super) fn image_source(p: &Value) -> Result<Value, String> {
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
pub(super) fn system_blocks(c: &Value) -> Result<Vec<Value>, String> {
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
pub(super) fn tool_use(call: &Value) -> Result<Value, String> {
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
pub(super) fn tool_result(m: &Value) -> Result<Value, String> {
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
pub(super) fn tools(list: &Value) -> Result<Option<Vec<Value>>, String> {
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
pub(super) fn tool_choice(body: &Value) -> Result<Option<Value>, String> {
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
pub(super) fn response_format(f: &Value) -> Result<Option<String>, String> {
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
