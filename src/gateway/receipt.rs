//! Receipts of the gateway's attempts: each settles its budget hold, becomes one row in
//! the database and one `cost.receipt` event, and raises the budget alerts it crossed. A
//! stream's receipt waits for the stream to end, break off or be dropped ([`Relay`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rust_decimal::Decimal;

use super::budget::{Alert, Hold};
use super::call::Request;
use super::spans;
use super::Gateway;
use crate::events::{self, Event};
use crate::llm::config::{Model, Provider};
use crate::llm::cost::{self, Usage, UsageSource};
use crate::llm::wire;
use crate::store::db::Record;
use crate::store::holds::HoldRow;
use crate::store::receipts::ReceiptRow;

/// How an attempt ended, for its receipt.
pub(super) struct Ending {
    pub usage: Usage,
    pub cost: Option<Decimal>,
    pub took: Duration,
    pub ttft: Option<Duration>,
    /// `ok`, `error` or `cut`.
    pub status: &'static str,
    pub error: Option<String>,
}

/// Who made an attempt, for its receipt.
pub(super) struct Attempt<'a> {
    pub request: &'a Request,
    pub attempt: u32,
    pub provider: &'a Provider,
    pub model: &'a Model,
}

impl Gateway {
    /// Writes `hold` of a paid attempt to the holds file before its upstream is called, so
    /// a run killed mid-call leaves its spend behind (`store::holds`). A free call has
    /// nothing to lose. A failed write is logged and the call goes on: refusing every
    /// call while the disk is unwell would stop the swarm, and the receipt still comes
    /// unless pas is also killed in the meantime.
    pub(super) fn hold_durably(
        &self,
        req: &Request,
        attempt: u32,
        provider: &Provider,
        model: &Model,
        receipt_id: &str,
        hold: &Hold,
    ) {
        let Some(holds) = self
            .holds
            .as_ref()
            .filter(|_| hold.amount() > Decimal::ZERO)
        else {
            return;
        };
        let row = HoldRow {
            id: receipt_id.to_string(),
            request_id: req.id.clone(),
            attempt,
            ts: self.ledger.clock().now(),
            day: hold.day(),
            job_id: req.job.clone(),
            agent: req.agent.clone(),
            provider: provider.name.clone(),
            model: model.id.clone(),
            reserved_usd: hold.amount(),
            stream: req.stream,
        };
        if let Err(e) = holds.put(&row) {
            tracing::error!(request = %req.id, "cannot write the budget hold of a paid call \
                (a crash during it would forget its spend): {e}");
        }
    }

    /// Deletes the durable hold of an attempt that gets no receipt (nothing was sent).
    pub(super) fn forget_hold(&self, receipt_id: &str) {
        if let Some(holds) = &self.holds {
            if let Err(e) = holds.forget(receipt_id) {
                tracing::error!(receipt = %receipt_id, "cannot delete an unsent call's hold \
                    (the next start books it as interrupted): {e}");
            }
        }
    }

    /// Settles `hold`, writes the receipt of one attempt (and its event, and any budget
    /// alerts it crossed) under `id` (a new one when `None`); returns the receipt id.
    pub(super) fn record(
        &self,
        a: &Attempt<'_>,
        id: Option<String>,
        end: Ending,
        hold: Hold,
    ) -> String {
        let id = id.unwrap_or_else(|| ulid::Ulid::new().to_string());
        let Ending {
            usage,
            cost,
            took,
            ttft,
            status,
            error,
        } = end;
        let now = self.ledger.clock().now();
        if cost.is_none() && status == "ok" {
            self.warn_unpriced(&a.provider.name, &a.model.id);
        }
        if status == "ok" && usage.source == UsageSource::Provider {
            let surplus = usage.input.saturating_sub(a.request.input_bound);
            self.surplus.observe(&a.provider.name, &a.model.id, surplus);
        }
        let day = hold.day();
        let alerts = self.ledger.settle(hold, cost, a.request.job_budget);
        let row = ReceiptRow {
            id: id.clone(),
            request_id: a.request.id.clone(),
            attempt: a.attempt,
            ts: now,
            job_id: a.request.job.clone(),
            agent: a.request.agent.clone(),
            provider: a.provider.name.clone(),
            model: a.model.id.clone(),
            usage,
            cost_usd: cost,
            latency_ms: took.as_secs_f64() * 1000.0,
            ttft_ms: ttft.map(|t| t.as_secs_f64() * 1000.0),
            stream: a.request.stream,
            status: status.to_string(),
            error,
            day: Some(day),
            input_estimate: Some(a.request.input_bound),
            replay_of: a.request.replay_of.clone(),
        };
        self.shared.hub.emit(now, receipt_event(&row));
        if let Some(db) = &self.shared.db {
            db.send(Record::Receipt(Box::new(row)));
        }
        for al in alerts {
            self.alert(al, now);
        }
        id
    }

    /// Logs one budget alert and puts it on the event stream.
    pub(super) fn alert(&self, al: Alert, now: chrono::DateTime<Utc>) {
        tracing::warn!(scope = %al.scope, period = %al.period, threshold = %al.threshold,
            spent_usd = %al.spent, limit_usd = %al.limit, "budget alert");
        self.shared.hub.emit(
            now,
            Event::BudgetAlert(events::BudgetAlert {
                scope: al.scope,
                period: al.period,
                threshold: al.threshold.normalize().to_string(),
                spent_usd: al.spent.normalize().to_string(),
                limit_usd: al.limit.normalize().to_string(),
            }),
        );
    }
}

pub(super) fn receipt_event(r: &ReceiptRow) -> Event {
    Event::CostReceipt(Box::new(events::Receipt {
        id: r.id.clone(),
        request_id: r.request_id.clone(),
        attempt: r.attempt,
        job: r.job_id.clone(),
        agent: r.agent.clone(),
        provider: r.provider.clone(),
        model: r.model.clone(),
        input_tokens: r.usage.input,
        output_tokens: r.usage.output,
        cached_tokens: r.usage.cached,
        cache_write_tokens: r.usage.cache_write,
        reasoning_tokens: r.usage.reasoning,
        usage_source: r.usage.source,
        cost_usd: r.cost_usd.map(|c| c.normalize().to_string()),
        latency_ms: (r.latency_ms * 1000.0).round() / 1000.0,
        stream: r.stream,
        status: r.status.clone(),
        error: r.error.clone(),
        replay_of: r.replay_of.clone(),
    }))
}

/// The answering stream of a call; its receipt is written when it ends, breaks off, or
/// is dropped because the caller went away.
pub struct Relay {
    pub stream: wire::Stream,
    pub(super) open: Option<Open>,
    /// The tool calls and finish reason its frames carried, for the call's span.
    pub(super) seen: spans::StreamSeen,
}

/// A stream's attempt until its receipt is written.
pub(super) struct Open {
    pub gw: Arc<Gateway>,
    pub request: Request,
    pub attempt: u32,
    /// Indices into the gateway's providers and that provider's models.
    pub provider: usize,
    pub model: usize,
    pub receipt_id: String,
    pub started: Instant,
    pub hold: Hold,
    /// The model's first-call gate, while its surplus is unknown: freed once the
    /// receipt has taught it.
    pub probe: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Relay {
    /// Writes the receipt: `ok`, or `cut` with why.
    pub fn finish(&mut self, status: &'static str, error: Option<String>) {
        let Some(o) = self.open.take() else {
            return;
        };
        let provider = &o.gw.providers[o.provider];
        let model = &provider.models[o.model];
        let usage = self.stream.usage();
        let c = cost::cost(model.price_per_mtok.as_ref(), &usage);
        let a = Attempt {
            request: &o.request,
            attempt: o.attempt,
            provider,
            model,
        };
        let span_end = spans::Ended {
            provider: Some(provider.name.clone()),
            model: Some(model.id.clone()),
            receipt_id: Some(o.receipt_id.clone()),
            usage: Some(usage),
            cost: c,
            ttft: Some(self.stream.ttft()),
            ok: status == "ok",
            error: error.clone(),
            // Copied only when it is kept.
            output: (o.gw.tracer.capture == crate::trace::Capture::Full)
                .then(|| spans::streamed_output(self.stream.text(), &self.seen)),
            attempt: Some(o.attempt),
        };
        let end = Ending {
            usage,
            cost: c,
            took: o.started.elapsed(),
            ttft: Some(self.stream.ttft()),
            status,
            error,
        };
        o.gw.record(&a, Some(o.receipt_id.clone()), end, o.hold);
        if o.gw.tracer.capture != crate::trace::Capture::Off {
            let span = spans::call_span(&o.request.span_call(), span_end);
            o.gw.tracer.record(span, false);
        }
        drop(o.probe);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.finish(
            "cut",
            Some("the caller closed the connection mid-stream".into()),
        );
    }
}

impl Request {
    /// What the call's spans need of the request.
    pub(super) fn span_call(&self) -> spans::Call<'_> {
        spans::Call {
            ctx: &self.trace,
            body: &self.body,
            agent: self.agent.as_deref(),
            job: self.job.as_deref(),
            stream: self.stream,
            request_id: &self.id,
            at: self.at,
            replay_of: self.replay_of.as_deref(),
        }
    }
}

/// Records the span of a call that is over: its answer, or why it failed. A streamed
/// answer is not over yet: its span is recorded when its relay finishes.
pub(super) fn record_call(
    tracer: &crate::trace::Tracer,
    req: &Request,
    out: &Result<(super::call::Answer, super::call::Served), super::call::Failure>,
) {
    use super::call::Answer;
    if tracer.capture == crate::trace::Capture::Off {
        return;
    }
    let end = match out {
        Ok((Answer::Stream(_), _)) => return,
        Ok((Answer::Plain(reply), served)) => spans::Ended {
            provider: Some(served.provider.clone()),
            model: Some(served.model.clone()),
            receipt_id: Some(served.receipt_id.clone()),
            usage: Some(reply.usage),
            cost: served.cost,
            ok: true,
            output: (tracer.capture == crate::trace::Capture::Full).then(|| reply.body.clone()),
            ..Default::default()
        },
        Err(f) => spans::Ended {
            error: Some(
                f.body()["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            ),
            ..Default::default()
        },
    };
    tracer.record(spans::call_span(&req.span_call(), end), false);
}
