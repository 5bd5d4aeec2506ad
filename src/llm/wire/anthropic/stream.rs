//! Anthropic stream events turned into OpenAI `chat.completion.chunk`s as they come.

use super::*;

/// What an anthropic stream needs to remember between events.
pub(in crate::llm::wire) struct StreamState {
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
    /// Keep every event as it came too (`Tally::native`), for a caller of the Messages
    /// API whose request went on as it was.
    native: bool,
}

impl StreamState {
    pub(in crate::llm::wire) fn new(model: &str, wants_usage: bool) -> Self {
        StreamState {
            id: String::new(),
            created: unix_now(),
            model: model.to_owned(),
            wants_usage,
            role_sent: false,
            stop_reason: None,
            tool_blocks: Vec::new(),
            thinking_bytes: 0,
            native: false,
        }
    }

    /// Whether events are kept as they came.
    pub(in crate::llm::wire) fn is_native(&self) -> bool {
        self.native
    }

    /// The same, keeping each event as it came as well.
    pub(in crate::llm::wire) fn native(mut self) -> Self {
        self.native = true;
        self
    }

    /// Takes one event; `Ok(true)` at `message_stop`.
    pub(in crate::llm::wire) fn on_event(
        &mut self,
        ev: &Event,
        t: &mut Tally,
    ) -> Result<bool, Upstream> {
        if self.native {
            let name = if ev.event.is_empty() {
                "message"
            } else {
                &ev.event
            };
            let raw = format!("event: {name}\ndata: {}\n\n", ev.data);
            t.native.push_back(bytes::Bytes::from(raw));
        }
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
