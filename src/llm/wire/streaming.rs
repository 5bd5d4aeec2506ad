//! A streamed call: it starts only once the first content has arrived, then hands the
//! caller OpenAI frames one by one while keeping count of text and usage, so a stream that
//! breaks off still knows what it cost.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::{anthropic, chain, estimate_input, openai, seconds, send, sse, CallError, Target};
use crate::llm::config::Protocol;
use crate::llm::cost::{estimate_tokens, Usage, UsageSource};

/// The response body as it arrives.
type Body = Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Starts a streamed call; resolves once the first content has arrived (within
/// `first_token_timeout_s`), so every failure before that is an `Err`.
pub async fn stream(
    client: &reqwest::Client,
    t: &Target<'_>,
    body: &serde_json::Value,
) -> Result<Stream, CallError> {
    let started = Instant::now();
    let total = seconds(t.provider.timeout_s);
    let first = seconds(t.provider.first_token_timeout_s).min(total);
    let first_deadline = started + first;
    let timed_out = CallError::Timeout {
        first_token: first < total,
        after: first,
    };
    let wants_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let resp = tokio::time::timeout_at(first_deadline, send(client, t, body, true))
        .await
        .map_err(|_| timed_out.clone())??;
    let mut s = Stream {
        body: Box::pin(resp.bytes_stream()),
        sse: sse::Parser::new(),
        events: Vec::new(),
        decoder: match t.provider.protocol {
            Protocol::Openai => Decoder::Openai(openai::StreamState::new(wants_usage)),
            Protocol::Anthropic => {
                let d = anthropic::StreamState::new(&t.model.id, wants_usage);
                Decoder::Anthropic(if t.native.is_some() { d.native() } else { d })
            }
        },
        tally: Tally::default(),
        input_estimate: estimate_input(body),
        deadline: started + total,
        total,
        ttft: Duration::ZERO,
        over: false,
        read: 0,
    };
    while !s.tally.started && !s.over {
        if let Err(f) = s.pump(first_deadline).await {
            return Err(match f {
                Failure::Timeout => timed_out,
                Failure::Read(m) => CallError::Connect(m),
                Failure::Upstream {
                    code: Some(code),
                    message,
                } => CallError::Status {
                    code,
                    retry_after: None,
                    message,
                },
                Failure::Upstream { message, .. } => CallError::Malformed(message),
            });
        }
    }
    s.ttft = started.elapsed();
    Ok(s)
}

/// A streamed call in progress: OpenAI SSE frames for the caller, and what it cost so far.
pub struct Stream {
    body: Body,
    sse: sse::Parser,
    /// Scratch for the events of one body chunk.
    events: Vec<sse::Event>,
    decoder: Decoder,
    tally: Tally,
    input_estimate: u64,
    /// When the whole call must be over (`timeout_s` after sending).
    deadline: Instant,
    total: Duration,
    ttft: Duration,
    /// Nothing more will be read: the end was seen, or the stream failed.
    over: bool,
    /// Bytes of the body read so far, up to [`super::MAX_ANSWER_BYTES`].
    read: usize,
}

/// What a stream has produced and learned so far; the protocol decoders fill it.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Frames ready for the caller.
    pub(super) frames: VecDeque<Bytes>,
    /// A frame with content (not just a role) has been produced.
    pub(super) started: bool,
    pub(super) text: String,
    /// Output that is not text (tool-call arguments), for the estimate.
    pub(super) other_output_bytes: usize,
    pub(super) input: Option<u64>,
    pub(super) output: Option<u64>,
    pub(super) cached: u64,
    pub(super) cache_write: u64,
    pub(super) cache_write_1h: u64,
    pub(super) reasoning: u64,
    /// The provider's events as they came (a native Messages stream only).
    pub(super) native: VecDeque<Bytes>,
}

/// How a protocol decoder reports an event it cannot accept.
#[derive(Debug)]
pub(super) struct Upstream {
    /// The HTTP status the error stands for, when the provider named one.
    pub(super) code: Option<u16>,
    pub(super) message: String,
}

enum Decoder {
    Openai(openai::StreamState),
    Anthropic(anthropic::StreamState),
}

/// Why reading a stream stopped short.
enum Failure {
    Timeout,
    Read(String),
    Upstream { code: Option<u16>, message: String },
}

impl Stream {
    /// The next frame for the caller (`data: {chunk}\n\n`, the last one `data: [DONE]\n\n`);
    /// `Err(Cut)` if upstream breaks off, times out or sends garbage; then `None`.
    pub async fn next(&mut self) -> Option<Result<Bytes, CallError>> {
        loop {
            if let Some(f) = self.tally.frames.pop_front() {
                return Some(Ok(f));
            }
            if self.over {
                return None;
            }
            if let Err(f) = self.pump(self.deadline).await {
                let message = match f {
                    Failure::Timeout => format!("timed out after {:?}", self.total),
                    Failure::Read(m) | Failure::Upstream { message: m, .. } => m,
                };
                return Some(Err(CallError::Cut {
                    usage: self.usage(),
                    message,
                }));
            }
        }
    }

    /// Usage so far: the provider's counts where it reported them, the rest estimated from
    /// the request and the streamed output (and then marked `Estimated`).
    pub fn usage(&self) -> Usage {
        let t = &self.tally;
        let source = if t.input.is_some() && t.output.is_some() {
            UsageSource::Provider
        } else {
            UsageSource::Estimated
        };
        let output = t
            .output
            .unwrap_or_else(|| estimate_tokens(t.text.len() + t.other_output_bytes));
        Usage {
            input: t.input.unwrap_or(self.input_estimate),
            output,
            cached: t.cached,
            cache_write: t.cache_write,
            cache_write_1h: t.cache_write_1h,
            // A part of the output; an estimate (Anthropic's) never exceeds it.
            reasoning: t.reasoning.min(output),
            source,
        }
    }

    /// When the whole call must be over: `timeout_s` after its request was sent.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The provider's `timeout_s`, which set the deadline.
    pub fn total(&self) -> Duration {
        self.total
    }

    /// Time from sending the request to the first content.
    pub fn ttft(&self) -> Duration {
        self.ttft
    }

    /// The text streamed so far.
    pub fn text(&self) -> &str {
        &self.tally.text
    }

    /// Whether the provider's own events are kept for the caller ([`Target::native`] to an
    /// `anthropic` provider).
    pub fn is_native(&self) -> bool {
        matches!(&self.decoder, Decoder::Anthropic(d) if d.is_native())
    }

    /// The provider's events read since the last call, as they came.
    pub fn take_native(&mut self) -> Bytes {
        let parts: Vec<Bytes> = self.tally.native.drain(..).collect();
        Bytes::from(parts.concat())
    }

    /// Reads one body chunk (by `deadline`) and decodes the events it completes. Marks the
    /// stream over at its end or on failure.
    async fn pump(&mut self, deadline: Instant) -> Result<(), Failure> {
        let result = self.pump_inner(deadline).await;
        if result.is_err() {
            self.over = true;
        }
        result
    }

    async fn pump_inner(&mut self, deadline: Instant) -> Result<(), Failure> {
        let chunk = match tokio::time::timeout_at(deadline, self.body.next()).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(Some(Err(e))) => return Err(Failure::Read(format!("upstream: {}", chain(&e)))),
            Ok(Some(Ok(c))) => Some(c),
            Ok(None) => None,
        };
        if let Some(c) = &chunk {
            self.read += c.len();
            if self.read > super::MAX_ANSWER_BYTES {
                return Err(Failure::Upstream {
                    code: None,
                    message: super::too_large(super::MAX_ANSWER_BYTES),
                });
            }
        }
        let mut events = std::mem::take(&mut self.events);
        match &chunk {
            Some(c) => self
                .sse
                .push(c, &mut events)
                .map_err(|e| Failure::Upstream {
                    code: None,
                    message: e.to_string(),
                })?,
            None => self.sse.finish(&mut events),
        }
        let mut result = Ok(());
        for ev in events.drain(..) {
            let done = match &mut self.decoder {
                Decoder::Openai(d) => d.on_event(&ev, &mut self.tally),
                Decoder::Anthropic(d) => d.on_event(&ev, &mut self.tally),
            };
            match done {
                Ok(false) => {}
                Ok(true) => {
                    self.over = true;
                    break;
                }
                Err(Upstream { code, message }) => {
                    result = Err(Failure::Upstream { code, message });
                    break;
                }
            }
        }
        self.events = events;
        result?;
        if chunk.is_none() && !self.over {
            let end = match &mut self.decoder {
                Decoder::Openai(d) => d.on_eof(&mut self.tally),
                Decoder::Anthropic(_) => Err("the stream ended before message_stop".into()),
            };
            end.map_err(|message| Failure::Upstream {
                code: None,
                message,
            })?;
            self.over = true;
        }
        Ok(())
    }
}
