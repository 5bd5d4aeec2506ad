//! The fake's answers, rendered once at start so the `Ok` path only clones `Bytes`.

use axum::body::Bytes;
use serde_json::{json, Value};

use super::{DeltaUsage, FakeOptions};

/// Every answer body, rendered once.
pub(super) struct Rendered {
    pub(super) openai_plain: Bytes,
    pub(super) anthropic_plain: Bytes,
    pub(super) openai: Frames,
    pub(super) anthropic: Frames,
}

/// A stream as frames: what precedes the content, one frame per word, and the end.
pub(super) struct Frames {
    pub(super) head: Vec<Bytes>,
    pub(super) words: Vec<Bytes>,
    /// The end when the caller asked for a usage chunk, and when it did not.
    pub(super) end_usage: Vec<Bytes>,
    pub(super) end: Vec<Bytes>,
    /// The whole body, with and without the usage chunk (the zero-delay fast path).
    pub(super) full_usage: Bytes,
    pub(super) full: Bytes,
}

impl Frames {
    fn new(head: Vec<Bytes>, words: Vec<Bytes>, end_usage: Vec<Bytes>, end: Vec<Bytes>) -> Self {
        let join = |end: &[Bytes]| {
            let all = head.iter().chain(&words).chain(end);
            Bytes::from(all.flat_map(|b| b.iter().copied()).collect::<Vec<u8>>())
        };
        Frames {
            full_usage: join(&end_usage),
            full: join(&end),
            head,
            words,
            end_usage,
            end,
        }
    }
}

fn data(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn event(v: &Value) -> Bytes {
    Bytes::from(format!(
        "event: {}\ndata: {v}\n\n",
        v["type"].as_str().unwrap_or("")
    ))
}

/// A tool call's arguments in the pieces a stream sends them in.
fn pieces(args: &str) -> Vec<String> {
    let chars: Vec<char> = args.chars().collect();
    chars.chunks(8).map(|c| c.iter().collect()).collect()
}

impl Rendered {
    pub(super) fn new(o: &FakeOptions, with_usage: bool) -> Self {
        let (i, out, c) = (o.input_tokens, o.output_tokens, o.cached_tokens);
        let words: Vec<&str> = o.text.split_inclusive(' ').collect();
        let calls = &o.tool_calls;
        let (finish_reason, stop_reason) = match calls.is_empty() {
            true => ("stop", "end_turn"),
            false => ("tool_calls", "tool_use"),
        };
        let usage = json!({"prompt_tokens": i, "completion_tokens": out, "total_tokens": i + out,
            "prompt_tokens_details": {"cached_tokens": c},
            "completion_tokens_details": {"reasoning_tokens": 0}});
        let (w, w1h) = (o.cache_write_tokens, o.cache_write_1h_tokens);
        let a_usage = json!({"input_tokens": i.saturating_sub(c + w), "output_tokens": out,
            "cache_read_input_tokens": c, "cache_creation_input_tokens": w,
            "cache_creation": {"ephemeral_5m_input_tokens": w.saturating_sub(w1h),
                "ephemeral_1h_input_tokens": w1h}});

        let mut message = json!({"role": "assistant", "content": o.text});
        if !calls.is_empty() {
            if o.text.is_empty() {
                message["content"] = Value::Null;
            }
            message["tool_calls"] = calls
                .iter()
                .map(|t| {
                    json!({"id": t.id, "type": "function",
                        "function": {"name": t.name, "arguments": t.arguments.to_string()}})
                })
                .collect();
        }
        let mut plain = json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
            "model": "fake-model", "choices": [{"index": 0, "message": message,
            "finish_reason": finish_reason}]});
        let chunk = |delta: Value, finish: Value| {
            json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                "model": "fake-model", "choices": [{"index": 0, "delta": delta,
                "finish_reason": finish}]})
        };
        let mut o_deltas: Vec<Value> = words.iter().map(|w| json!({"content": w})).collect();
        for (n, t) in calls.iter().enumerate() {
            o_deltas.push(
                json!({"tool_calls": [{"index": n, "id": t.id, "type": "function",
                "function": {"name": t.name, "arguments": ""}}]}),
            );
            for piece in pieces(&t.arguments.to_string()) {
                o_deltas.push(json!({"tool_calls": [{"index": n,
                    "function": {"arguments": piece}}]}));
            }
        }
        if let Some(first) = o_deltas.first_mut() {
            first["role"] = "assistant".into();
        }
        let o_words = o_deltas.into_iter().map(|d| data(&chunk(d, Value::Null)));
        let finish = data(&chunk(json!({}), finish_reason.into()));
        let done = Bytes::from_static(b"data: [DONE]\n\n");
        let mut o_end_usage = vec![finish.clone()];
        if with_usage {
            plain["usage"] = usage.clone();
            let mut u = chunk(json!({}), Value::Null);
            u["choices"] = json!([]);
            u["usage"] = usage;
            o_end_usage.push(data(&u));
        }
        o_end_usage.push(done.clone());
        let openai = Frames::new(vec![], o_words.collect(), o_end_usage, vec![finish, done]);

        // A text block unless the answer is only tool calls.
        let has_text = !o.text.is_empty() || calls.is_empty();
        let thinks = !o.thinking.is_empty();
        // Block indices: the thinking, the text, then the tool calls.
        let text_index = usize::from(thinks);
        let mut a_content = Vec::new();
        if thinks {
            a_content.push(json!({"type": "thinking", "thinking": o.thinking,
                "signature": "fake-signature"}));
        }
        if has_text {
            a_content.push(json!({"type": "text", "text": o.text}));
        }
        for t in calls {
            a_content.push(json!({"type": "tool_use", "id": t.id, "name": t.name,
                "input": t.arguments}));
        }
        let mut a_plain = json!({"id": "msg_fake", "type": "message", "role": "assistant",
            "model": "fake-model", "content": a_content,
            "stop_reason": stop_reason, "stop_sequence": null});
        let mut start = json!({"type": "message_start", "message": {"id": "msg_fake",
            "type": "message", "role": "assistant", "model": "fake-model", "content": [],
            "stop_reason": null, "stop_sequence": null}});
        let mut delta = json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null}});
        if with_usage {
            a_plain["usage"] = a_usage.clone();
            let mut last = json!({"output_tokens": out});
            let repeated: &[&str] = match o.delta_usage {
                DeltaUsage::Output => &[],
                DeltaUsage::Input => &["input_tokens"],
                DeltaUsage::Totals => &[
                    "input_tokens",
                    "cache_read_input_tokens",
                    "cache_creation_input_tokens",
                ],
            };
            for key in repeated {
                last[*key] = a_usage[*key].clone();
            }
            let mut first = a_usage;
            first["output_tokens"] = 1.into(); // as Anthropic does: a placeholder
            start["message"]["usage"] = first;
            delta["usage"] = last;
        }
        let mut head = vec![event(&start)];
        if thinks {
            head.push(event(&json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""}})));
            for w in o.thinking.split_inclusive(' ') {
                head.push(event(&json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": w}})));
            }
            head.push(event(&json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "signature_delta", "signature": "fake-signature"}})));
            head.push(event(&json!({"type": "content_block_stop", "index": 0})));
        }
        if has_text {
            head.push(event(
                &json!({"type": "content_block_start", "index": text_index,
                "content_block": {"type": "text", "text": ""}}),
            ));
        }
        head.push(event(&json!({"type": "ping"})));
        let mut a_words: Vec<Bytes> = words
            .iter()
            .map(|w| {
                event(&json!({"type": "content_block_delta", "index": text_index,
                "delta": {"type": "text_delta", "text": w}}))
            })
            .collect();
        let text_stop = event(&json!({"type": "content_block_stop", "index": text_index}));
        let mut end = Vec::new();
        if has_text && calls.is_empty() {
            end.push(text_stop);
        } else if has_text {
            a_words.push(text_stop);
        }
        for (n, t) in calls.iter().enumerate() {
            let index = text_index + usize::from(has_text) + n;
            a_words.push(event(
                &json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": t.id, "name": t.name,
                "input": {}}}),
            ));
            // Anthropic opens with an empty piece.
            let args = std::iter::once(String::new()).chain(pieces(&t.arguments.to_string()));
            for piece in args {
                a_words.push(event(
                    &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece}}),
                ));
            }
            a_words.push(event(
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
        end.push(event(&delta));
        end.push(event(&json!({"type": "message_stop"})));
        Rendered {
            openai_plain: Bytes::from(plain.to_string()),
            anthropic_plain: Bytes::from(a_plain.to_string()),
            openai,
            anthropic: Frames::new(head, a_words, end.clone(), end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_so_they_join_back_to_the_text() {
        let r = Rendered::new(&FakeOptions::default(), true);
        assert_eq!(r.openai.words.len(), 5);
        assert_eq!(r.anthropic.words.len(), 5);
        let full = String::from_utf8(r.openai.full_usage.to_vec()).unwrap();
        assert!(full.starts_with("data: {") && full.ends_with("data: [DONE]\n\n"));
        assert!(full.contains("\"role\":\"assistant\""));
        assert_eq!(full.matches("\"usage\"").count(), 1);
        assert!(!String::from_utf8(r.openai.full.to_vec())
            .unwrap()
            .contains("usage"));
    }
}
