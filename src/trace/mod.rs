//! Traces (SPEC section 13): the tree of steps behind a piece of work.
//!
//! Three sources feed one span model ([`crate::span::Span`]): pas itself (each card's lifecycle
//! is its trace's root span; each gateway call an `llm` span, see `gateway::spans`), agents' JSON
//! lines in `work/traces/<trace_id>.jsonl` ([`jsonl`]), and OTLP/HTTP exports to the
//! gateway's `POST /v1/traces` ([`otlp`]). Every span goes to the telemetry writer's queue
//! (so no request waits on the disk) and onto the event stream as `trace.span`; refused
//! input becomes a `trace.rejected` event naming what and where.
//!
//! - [`store`]  spans and content-addressed message text read from `telemetry/pas.db`
//!   (the writer's half is `store::spans`).
//! - [`tree`]   a trace as a tree with subtree roll-ups; `pas trace`'s rendering.
//! - [`jsonl`]  the watcher of `work/traces/`: incremental, through `intake`'s rules.
//! - [`otlp`]   `POST /v1/traces`: protobuf and JSON, GenAI attributes mapped.
//! - [`card`]   a card's root span after each of its transitions.
//! - [`diff`]   two traces lined up: first divergence, output, token and cost deltas.
//! - [`replay`] a recorded call written back as an LLM card (`pas replay`, `POST /api/replays`).
//! - [`resume`] a checkpoint span written back as a card to continue from (`--resume`).

pub mod card;
pub mod diff;
pub mod jsonl;
pub mod otlp;
pub mod replay;
pub mod resume;
pub mod store;
pub mod tree;

use std::sync::Arc;

pub use crate::config::{Capture, TracesConfig};
use crate::events::{self, Event, Hub};
pub use crate::span::{Kind, Source, Span, Status};
use crate::store::db::{Record, Sink};

/// A call's place in a trace: its own span, and the parent it hangs under.
#[derive(Debug, Clone, PartialEq)]
pub struct Ctx {
    pub trace_id: String,
    pub span_id: String,
    pub parent_id: Option<String>,
}

impl Ctx {
    /// A new trace with this span at its root.
    pub fn fresh() -> Ctx {
        Ctx {
            trace_id: crate::span::new_trace_id(),
            span_id: crate::span::new_span_id(),
            parent_id: None,
        }
    }

    /// A new span under `parent` in `trace`.
    pub fn under(trace: &str, parent: Option<&str>) -> Ctx {
        Ctx {
            trace_id: trace.to_string(),
            span_id: crate::span::new_span_id(),
            parent_id: parent.map(str::to_string),
        }
    }
}

/// How long the span thread gathers spans after the first before it stores them: short
/// beside the time a person takes to look, long beside a call through the gateway.
const SPAN_LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// Where spans go: the database (through the telemetry writer's queue) and the event
/// stream. A cheap handle; never blocks.
#[derive(Clone)]
pub struct Tracer {
    pub capture: Capture,
    db: Option<Sink>,
    hub: Arc<Hub>,
    /// A thread of its own that does the rest (stripping, the event, the queue), so a
    /// request's task only hands the span over ([`Tracer::background`]).
    queue: Option<std::sync::mpsc::Sender<Vec<(Span, bool)>>>,
}

impl Tracer {
    /// A tracer that records on the caller's thread (the engine's, the ingest's).
    pub fn new(capture: Capture, db: Option<Sink>, hub: Arc<Hub>) -> Tracer {
        Tracer {
            capture,
            db,
            hub,
            queue: None,
        }
    }

    /// A tracer whose [`record`](Self::record) is one channel send: the gateway's, so no
    /// answer waits on serialising a span or on the event hub's lock. The thread ends
    /// when the last handle is dropped.
    pub fn background(capture: Capture, db: Option<Sink>, hub: Arc<Hub>) -> Tracer {
        let inline = Tracer::new(capture, db.clone(), hub.clone());
        if capture == Capture::Off {
            return inline;
        }
        let (tx, rx) = std::sync::mpsc::channel::<Vec<(Span, bool)>>();
        let spawned = std::thread::Builder::new()
            .name("pas-spans".into())
            .spawn(move || {
                // Storing spans can wait; answering the calls they describe cannot.
                crate::store::background_priority();
                // Woken by the first span, it lets [`SPAN_LINGER`] pass and takes all that
                // came meanwhile: under load the request path's send then finds the thread
                // asleep, not waiting, and costs no wake-up.
                while let Ok(mut spans) = rx.recv() {
                    std::thread::sleep(SPAN_LINGER);
                    while let Ok(more) = rx.try_recv() {
                        spans.extend(more);
                    }
                    inline.keep(spans, true);
                }
            });
        match spawned {
            Ok(_) => Tracer {
                capture,
                db,
                hub,
                queue: Some(tx),
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the span thread: spans are recorded on the request's task");
                Tracer::new(capture, db, hub)
            }
        }
    }

    /// Records `span` (`partial`: it updates only the fields it sets), keeping its
    /// messages only under `capture: full`; secrets in its attributes are redacted.
    pub fn record(&self, span: Span, partial: bool) {
        self.record_many(vec![(span, partial)]);
    }

    /// Records spans that arrived together (a file's new lines, an OTLP export): one
    /// `trace.span` event per trace among them, not one per span, so a burst of 20,000
    /// lines a second is a few dozen events.
    pub fn record_many(&self, spans: Vec<(Span, bool)>) {
        if self.capture == Capture::Off || spans.is_empty() {
            return;
        }
        if let Some(q) = &self.queue {
            if let Err(back) = q.send(spans) {
                self.keep(back.0, true);
            }
            return;
        }
        self.keep(spans, true);
    }

    /// As [`record`](Self::record), with no `trace.span` event: for a card's root span,
    /// whose every change is already a `job.*` event of the same transition.
    pub fn record_quietly(&self, span: Span) {
        self.keep(vec![(span, false)], false);
    }

    fn keep(&self, mut spans: Vec<(Span, bool)>, announce: bool) {
        if self.capture == Capture::Off {
            return;
        }
        for (span, _) in spans.iter_mut() {
            if self.capture != Capture::Full {
                span.input = None;
                span.output = None;
                strip_text_attrs(&mut span.attrs);
            }
            span.redact();
        }
        if announce {
            // `{"trace_id", "spans": [...]}` per trace, in the order the spans came; the
            // events leave the messages out (taken aside, they are not copied for it).
            let mut by_trace: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
            for (span, _) in spans.iter_mut() {
                let taken = (
                    span.input.take(),
                    span.output.take(),
                    std::mem::take(&mut span.attrs),
                );
                let ev = span.event();
                (span.input, span.output, span.attrs) = taken;
                match by_trace.iter_mut().find(|(t, _)| *t == span.trace_id) {
                    Some((_, v)) => v.push(ev),
                    None => by_trace.push((span.trace_id.clone(), vec![ev])),
                }
            }
            for (trace_id, list) in by_trace {
                self.hub.emit(
                    chrono::Utc::now(),
                    Event::TraceSpan(events::TraceSpans {
                        trace_id,
                        spans: list,
                    }),
                );
            }
        }
        if let Some(db) = &self.db {
            for (span, partial) in spans {
                db.send(Record::Span(Box::new(crate::store::spans::SpanRecord {
                    span,
                    partial,
                })));
            }
        }
    }

    /// Says that span input was refused: a `trace.rejected` event and a warning, naming
    /// the source (a file and line, an OTLP request) and why.
    pub fn reject(&self, source: &str, reason: &str) {
        tracing::warn!(source, reason, "span input refused");
        self.hub.emit(
            chrono::Utc::now(),
            Event::TraceRejected(events::TraceRejected {
                source: source.to_string(),
                reason: reason.to_string(),
            }),
        );
    }
}

/// Attributes that carry message text (the GenAI prompt and completion attributes):
/// dropped when content is not captured.
fn strip_text_attrs(attrs: &mut serde_json::Map<String, serde_json::Value>) {
    attrs.retain(|k, _| !otlp::content_attr(k));
}

/// A card's trace and root span, when its `pas:` block holds valid ones.
pub fn card_trace(meta: &crate::card::PasMeta) -> Option<(String, String)> {
    let t = meta
        .trace_id
        .as_ref()
        .filter(|t| crate::span::valid_trace_id(t))?;
    let s = meta
        .span_id
        .as_ref()
        .filter(|s| crate::span::valid_span_id(s))?;
    Some((t.clone(), s.clone()))
}
