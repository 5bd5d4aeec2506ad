//! A chat-completions stream (the frames every provider's stream becomes in pas) said as
//! the Messages API's event stream, event for event as Anthropic sends it:
//! `message_start`; per content block `content_block_start` (the first followed by a
//! `ping`), its deltas (`text_delta`, or `input_json_delta` pieces of a tool call's input)
//! and `content_block_stop`; then `message_delta` (stop reason and usage) and
//! `message_stop`.
//! The usage in `message_delta` is the stream's own count at its end, the one its receipt
//! books, so what the client adds up is what pas charged.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{json, Value};

use super::translate::{stop_reason, usage};
use crate::llm::cost::Usage;

/// The translation state of one stream.
pub struct Events {
    id: String,
    model: String,
    started: bool,
    /// The open block: its index and whether it is text.
    open: Option<(usize, bool)>,
    blocks: usize,
    /// Chat tool-call index -> Messages block index.
    tools: HashMap<u64, usize>,
    finish: Option<String>,
}

/// `event: <type>\ndata: <json>\n\n`.
pub fn event(v: &Value) -> String {
    format!(
        "event: {}\ndata: {v}\n\n",
        v["type"].as_str().unwrap_or("message")
    )
}

impl Events {
    /// A stream answering as message `id` from `model`.
    pub fn new(id: &str, model: &str) -> Events {
        Events {
            id: id.into(),
            model: model.into(),
            started: false,
            open: None,
            blocks: 0,
            tools: HashMap::new(),
            finish: None,
        }
    }

    /// The events one chat frame becomes (none for a usage chunk); `usage` is asked only
    /// at the start and at the end.
    pub fn frame(&mut self, frame: &[u8], usage_now: impl Fn() -> Usage) -> Bytes {
        let mut out = String::new();
        if !self.started {
            self.started = true;
            let mut u = usage(&usage_now());
            u["output_tokens"] = 1.into(); // as Anthropic does: a placeholder until the end
            let start = json!({"type": "message_start", "message": {"id": self.id,
                "type": "message", "role": "assistant", "model": self.model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": u}});
            out.push_str(&event(&start));
        }
        let text = String::from_utf8_lossy(frame);
        for line in text.lines() {
            let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                continue;
            };
            if data == "[DONE]" {
                self.close(&mut out);
                let u = usage(&usage_now());
                out.push_str(&event(&json!({"type": "message_delta",
                    "delta": {"stop_reason": stop_reason(self.finish.as_deref()),
                        "stop_sequence": null},
                    "usage": u})));
                out.push_str(&event(&json!({"type": "message_stop"})));
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            self.chunk(&v, &mut out);
        }
        Bytes::from(out)
    }

    fn chunk(&mut self, v: &Value, out: &mut String) {
        let Some(choice) = v.pointer("/choices/0") else {
            return;
        };
        let d = &choice["delta"];
        if let Some(t) = d["content"].as_str().filter(|t| !t.is_empty()) {
            let index = match self.open {
                Some((i, true)) => i,
                _ => {
                    self.close(out);
                    self.begin(json!({"type": "text", "text": ""}), true, out)
                }
            };
            out.push_str(&event(
                &json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": t}}),
            ));
        }
        for call in d["tool_calls"].as_array().into_iter().flatten() {
            let n = call["index"].as_u64().unwrap_or(0);
            let index = match self.tools.get(&n) {
                Some(i) => *i,
                None => {
                    self.close(out);
                    let id = call["id"]
                        .as_str()
                        .map_or_else(|| format!("toolu_{}_{n}", self.id), str::to_string);
                    let name = call["function"]["name"].as_str().unwrap_or_default();
                    let i = self.begin(
                        json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                        false,
                        out,
                    );
                    self.tools.insert(n, i);
                    i
                }
            };
            if let Some(a) = call["function"]["arguments"]
                .as_str()
                .filter(|a| !a.is_empty())
            {
                out.push_str(&event(
                    &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": a}}),
                ));
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            self.finish = Some(f.to_string());
        }
    }

    fn begin(&mut self, block: Value, text: bool, out: &mut String) -> usize {
        let index = self.blocks;
        self.blocks += 1;
        self.open = Some((index, text));
        out.push_str(&event(
            &json!({"type": "content_block_start", "index": index,
            "content_block": block}),
        ));
        if index == 0 {
            // Where Anthropic sends its first ping.
            out.push_str(&event(&json!({"type": "ping"})));
        }
        index
    }

    fn close(&mut self, out: &mut String) {
        if let Some((index, _)) = self.open.take() {
            out.push_str(&event(
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(s: &str) -> Vec<String> {
        s.lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn text_then_a_tool_call_then_the_end() {
        let mut e = Events::new("msg_1", "m");
        let u = || Usage {
            input: 10,
            output: 4,
            ..Usage::default()
        };
        let mut all = String::new();
        for f in [
            r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi "}}]}"#,
            r#"data: {"choices":[{"index":0,"delta":{"content":"there"}}]}"#,
            r#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"W","arguments":""}}]}}]}"#,
            r#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":"}}]}}]}"#,
            r#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}"#,
            r#"data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            "data: [DONE]",
        ] {
            all.push_str(std::str::from_utf8(&e.frame(format!("{f}\n\n").as_bytes(), u)).unwrap());
        }
        assert_eq!(
            types(&all),
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(all.contains(r#""stop_reason":"tool_use""#), "{all}");
        assert!(all.contains(r#""output_tokens":4"#), "{all}");
        assert!(all.contains(r#""partial_json":"1}""#), "{all}");
    }
}
