//! The gateway's HTTP surface: what an OpenAI client library expects, plus pas's headers.
//!
//! Every response carries `x-pas-overhead-ms` (total time less time waiting on upstreams)
//! and, when a model answered, `x-pas-provider`, `x-pas-model`, `x-pas-receipt` and
//! `x-pas-cost-usd` (`unknown` for a model without a price). Errors use the OpenAI shape,
//! axum's own answers included: an unknown path (404), a wrong method (405) and a body
//! above `gateway.max_body_mb` (413).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, Request as HttpRequest, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tower_http::set_header::SetResponseHeaderLayer;

use super::call::{self, Answer, Failure, Request, Served};
use super::metrics::Outcome;
use super::Gateway;
use crate::llm::config::Policy;
use crate::web::listen::ConnSlot;

/// The gateway's routes (with and without the `/v1` prefix, as clients differ). Its
/// answers are JSON or an event stream, never to be sniffed into anything else, and all of
/// them, refusals included, are OpenAI-shaped and say their overhead.
pub fn router(gw: Arc<Gateway>) -> Router {
    let limit = crate::config::mib(gw.max_body_mb);
    let routes = table()
        .into_iter()
        .fold(Router::new(), |r, (_, path, handler)| {
            r.route(path, handler)
        });
    // After the routes: it applies to the routes there are.
    let app = routes
        .method_not_allowed_fallback(not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(gw);
    stamped(secure(app))
}

/// `app` with `x-pas-overhead-ms` on every answer that does not say it yet (the chat
/// handler says it less the upstream time); applied outside the guards too, so their
/// refusals carry it.
pub(crate) fn stamped(app: Router) -> Router {
    app.layer(middleware::from_fn(stamp))
}

async fn stamp(req: HttpRequest, next: Next) -> Response {
    let t0 = Instant::now();
    let mut resp = next.run(req).await;
    if !resp.headers().contains_key(OVERHEAD) {
        set_overhead(resp.headers_mut(), t0.elapsed());
    }
    resp
}

const OVERHEAD: &str = "x-pas-overhead-ms";

fn set_overhead(h: &mut HeaderMap, overhead: Duration) {
    let ms = format!("{:.3}", overhead.as_secs_f64() * 1000.0);
    if let Ok(v) = HeaderValue::from_str(&ms) {
        h.insert(OVERHEAD, v);
    }
}

/// What the gateway serves, for the messages of its 404 and 405.
fn served_routes() -> String {
    routes()
        .iter()
        .map(|(m, p)| format!("{m} {p}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An unknown path: OpenAI's "invalid URL", not axum's empty 404.
async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        404,
        format!(
            "no route {method} {}: the gateway serves {}",
            uri.path(),
            served_routes()
        ),
        "invalid_request_error",
        "unknown_url",
    )
}

/// A known path with the wrong method (axum adds `Allow`).
async fn not_allowed(method: Method, uri: Uri) -> Response {
    let allowed: Vec<&str> = routes()
        .into_iter()
        .filter(|(_, p)| *p == uri.path())
        .map(|(m, _)| m)
        .collect();
    error(
        405,
        format!(
            "{method} is not allowed on {}: use {}",
            uri.path(),
            allowed.join(", ")
        ),
        "invalid_request_error",
        "method_not_allowed",
    )
}

/// `app` with `nosniff` on every answer: also applied outside the token and origin
/// guards, so their refusals carry it too.
pub(crate) fn secure(app: Router) -> Router {
    app.layer(SetResponseHeaderLayer::if_not_present(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ))
}

/// Every `(method, path)` the gateway serves; the security suite checks that it walks
/// exactly these, and that every other method on them is refused.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    table()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// The one place the gateway's routes are declared.
fn table() -> Vec<(&'static str, &'static str, MethodRouter<Arc<Gateway>>)> {
    vec![
        ("POST", "/v1/chat/completions", post(chat)),
        ("POST", "/chat/completions", post(chat)),
        ("POST", "/v1/messages", post(super::messages::messages)),
        ("POST", "/messages", post(super::messages::messages)),
        (
            "POST",
            "/v1/messages/count_tokens",
            post(super::messages::count_tokens),
        ),
        (
            "POST",
            "/messages/count_tokens",
            post(super::messages::count_tokens),
        ),
        ("GET", "/v1/models", get(models)),
        ("GET", "/models", get(models)),
        ("GET", "/health", get(health)),
        ("POST", "/v1/traces", post(otlp)),
    ]
}

/// `POST /v1/traces`: OTLP spans into the gateway's tracer (see `trace::otlp`).
async fn otlp(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    crate::trace::otlp::export(&gw.tracer, gw.max_body_mb, &headers, body)
}

/// `GET /health`: the daemon's health, answered without the token (see `server::auth`).
async fn health(State(gw): State<Arc<Gateway>>) -> Response {
    crate::health::http::answer(gw.shared.ws.clone()).await
}

/// The answer to a call past `gateway.max_concurrent_requests`: OpenAI's 503 with
/// `Retry-After`, which the client libraries retry with backoff.
pub(crate) fn overloaded(max: usize) -> Response {
    let message = format!(
        "the gateway is answering its limit of {max} requests at once \
         (gateway.max_concurrent_requests in pas.yaml): retry shortly"
    );
    let mut r = error(503, message, "api_error", "overloaded");
    r.headers_mut()
        .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(1));
    r
}

/// Which API a call came in by: its request, answers and errors are in that API's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// OpenAI chat completions.
    Chat,
    /// Anthropic's Messages API.
    Messages,
}

/// An error response in `dialect`'s shape.
pub(super) fn refusal(
    dialect: Dialect,
    status: u16,
    message: String,
    kind: &str,
    code: &str,
) -> Response {
    match dialect {
        Dialect::Chat => error(status, message, kind, code),
        Dialect::Messages => super::messages::error(status, &message),
    }
}

/// An OpenAI-shaped error response.
fn error(status: u16, message: String, kind: &str, code: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        body.to_string(),
    )
}

pub(super) fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// Header `name`, trimmed; `None` when absent or blank. Refused (with a message naming
/// it) when sent twice or not visible ASCII: an attribution that pas cannot read must not
/// turn silently into no attribution.
pub(super) fn header(h: &HeaderMap, name: &str) -> Result<Option<String>, String> {
    let mut all = h.get_all(name).iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(format!("{name} is sent more than once: send it once"));
    }
    let v = v
        .to_str()
        .map_err(|_| format!("{name} holds bytes that are not visible ASCII"))?
        .trim();
    Ok((!v.is_empty()).then(|| v.to_string()))
}

/// Header `name`, which must follow the SPEC's id rule (`[A-Za-z0-9][A-Za-z0-9._-]*`, at
/// most `max` characters), like the agent names and card ids it stands for. Whatever
/// the caller sends here ends up in receipts, budgets by agent and job, and the
/// dashboard, so it is bounded and plain.
fn id_header(
    h: &HeaderMap,
    name: &str,
    max: usize,
    valid: fn(&str) -> bool,
) -> Result<Option<String>, String> {
    match header(h, name)? {
        Some(v) if !valid(&v) => {
            let shown: String = v.chars().take(40).collect();
            let more = if v.len() > shown.len() { "..." } else { "" };
            Err(format!(
                "{name} {shown:?}{more} is not a valid id: it must start with a letter or \
                 digit and hold only letters, digits, '.', '_' and '-', at most {max} characters"
            ))
        }
        v => Ok(v),
    }
}

/// Reads the caller's request into a [`Request`], or says what is wrong with it.
fn parse(
    gw: &Gateway,
    headers: &HeaderMap,
    bytes: &[u8],
    dialect: Dialect,
) -> Result<Request, String> {
    // The headers first: a request with a bad one is refused whatever its body.
    let policy = match header(headers, "x-pas-policy")? {
        None => None,
        Some(p) => Some(
            <Policy as clap::ValueEnum>::from_str(&p, true).map_err(|_| {
                format!("x-pas-policy {p:?} is not one of local, cheapest, fastest, balanced")
            })?,
        ),
    };
    let agent = id_header(headers, "x-pas-agent", 64, crate::card::valid_agent_name)?;
    let job = id_header(headers, "x-pas-job", 128, crate::card::valid_id)?;
    let request_id = id_header(headers, "x-request-id", 128, crate::card::valid_id)?;
    let body = json_body(bytes)?;
    let (body, native) = match dialect {
        Dialect::Chat => (body, None),
        Dialect::Messages => (super::messages::translate::to_chat(&body)?, Some(body)),
    };
    let (job_budget, job_trace) = match &job {
        Some(j) => job_card(gw, j)?,
        None => (None, None),
    };
    // The trace it joins: the caller's W3C context, else its job's, else a new one. A
    // malformed traceparent is advice not taken (W3C: start afresh), not a refusal.
    let parent = header(headers, "traceparent").ok().flatten();
    let trace = match parent.and_then(|h| crate::span::parse_traceparent(&h)) {
        Some((t, parent)) => crate::trace::Ctx::under(&t, Some(&parent)),
        None => match job_trace {
            Some((t, root)) => crate::trace::Ctx::under(&t, Some(&root)),
            None => crate::trace::Ctx::fresh(),
        },
    };
    let mut req = Request::build(gw, body, bytes.len(), policy)?;
    if let Some(id) = request_id {
        req.id = id;
    }
    req.agent = agent;
    req.job = job;
    req.native = native;
    req.beta = header(headers, "anthropic-beta")?;
    req.job_budget = job_budget;
    req.trace = trace;
    Ok(req)
}

/// The request body as JSON, or where it is not.
pub(super) fn json_body(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "the request body is not valid JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        )
    })
}

/// A card's trace and root span, as its `pas:` block records them.
type JobTrace = Option<(String, String)>;

/// The `budget_usd` of card `id`, wherever it is (none when there is no such card), and
/// its trace (none for a card pas has not stamped yet).
pub(super) fn job_card(gw: &Gateway, id: &str) -> Result<(Option<Decimal>, JobTrace), String> {
    if !crate::card::valid_id(id) {
        return Err(format!("x-pas-job {id:?} is not a valid job id"));
    }
    for path in gw.shared.ws.card_candidates(id) {
        if let Ok(card) = crate::workspace::read_card(&path, id) {
            let budget = super::budget::job_limit(card.spec.budget_usd.as_deref())
                .map_err(|e| format!("job {id}: {e}"))?;
            return Ok((budget, crate::trace::card_trace(&card.spec.pas)));
        }
    }
    Ok((None, None))
}

async fn chat(
    State(gw): State<Arc<Gateway>>,
    conn: Option<Extension<ConnSlot>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    serve(gw, conn, headers, body, Dialect::Chat).await
}

/// The request body, or the answer to a body that could not be read (too large: 413).
pub(super) fn read_body(
    gw: &Gateway,
    body: Result<Bytes, BytesRejection>,
    dialect: Dialect,
) -> Result<Bytes, Box<Response>> {
    body.map_err(|e| {
        Box::new(if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let message = format!(
                "the request body is larger than the gateway's limit of {} MiB \
                 (gateway.max_body_mb in pas.yaml)",
                gw.max_body_mb
            );
            refusal(
                dialect,
                413,
                message,
                "invalid_request_error",
                "request_too_large",
            )
        } else {
            let message = format!("cannot read the request body: {}", e.body_text());
            refusal(
                dialect,
                400,
                message,
                "invalid_request_error",
                "invalid_request",
            )
        })
    })
}

/// One call by either API: parsed, run as its own task, answered in the caller's shape.
pub(super) async fn serve(
    gw: Arc<Gateway>,
    conn: Option<Extension<ConnSlot>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    dialect: Dialect,
) -> Response {
    let t0 = Instant::now();
    let bytes = match read_body(&gw, body, dialect) {
        Ok(b) => b,
        Err(resp) => return finish(&gw, *resp, t0, Duration::ZERO, None, Outcome::Failed),
    };
    let req = match parse(&gw, &headers, &bytes, dialect) {
        Ok(r) => r,
        Err(m) => {
            let resp = refusal(dialect, 400, m, "invalid_request_error", "invalid_request");
            return finish(&gw, resp, t0, Duration::ZERO, None, Outcome::Failed);
        }
    };
    let ctx = req.trace.clone();
    let message_id = format!("msg_{}", req.id);
    // The call runs as its own task: a caller that hangs up mid-call does not cancel it,
    // so its receipt is still written and its budget hold still settled.
    let task = {
        let state = gw.clone();
        gw.tasks.spawn(async move { call::run(&state, &req).await })
    };
    let outcome = match task.await {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(error = %e, "gateway call task failed");
            let resp = refusal(
                dialect,
                500,
                "the gateway call failed inside pas".into(),
                "api_error",
                "internal",
            );
            return traced(
                finish(&gw, resp, t0, Duration::ZERO, None, Outcome::Failed),
                &ctx,
            );
        }
    };
    match outcome {
        Ok((Answer::Plain(reply), served)) => {
            let body = match (dialect, &reply.native) {
                (Dialect::Chat, _) => serde_json::to_string(&reply.body),
                (Dialect::Messages, Some(native)) => serde_json::to_string(native),
                (Dialect::Messages, None) => {
                    serde_json::to_string(&super::messages::translate::to_message(
                        &reply.body,
                        &reply.usage,
                        &message_id,
                        &served.model,
                    ))
                }
            }
            .unwrap_or_default();
            let resp = json_response(StatusCode::OK, body);
            let up = served.upstream;
            traced(finish(&gw, resp, t0, up, Some(&served), Outcome::Ok), &ctx)
        }
        Ok((Answer::Stream(relay), served)) => {
            let events = (dialect == Dialect::Messages)
                .then(|| super::messages::events::Events::new(&message_id, &served.model));
            let body =
                Body::from_stream(super::relay::frames(&gw, relay, conn.map(|c| c.0), events));
            let mut resp = (StatusCode::OK, body).into_response();
            let h = resp.headers_mut();
            h.insert(
                "content-type",
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert("cache-control", HeaderValue::from_static("no-cache"));
            let up = served.upstream;
            traced(finish(&gw, resp, t0, up, Some(&served), Outcome::Ok), &ctx)
        }
        Err(f) => {
            let outcome = match f {
                Failure::Budget(_) => Outcome::RefusedBudget,
                _ => Outcome::Failed,
            };
            let mut resp = match dialect {
                Dialect::Chat => json_response(
                    StatusCode::from_u16(f.status()).unwrap_or(StatusCode::BAD_GATEWAY),
                    f.body().to_string(),
                ),
                Dialect::Messages => super::messages::error(
                    f.status(),
                    f.body()["error"]["message"].as_str().unwrap_or_default(),
                ),
            };
            if let Some(wait) = f.retry_after() {
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                resp.headers_mut()
                    .insert("retry-after", HeaderValue::from(secs));
            }
            traced(finish(&gw, resp, t0, f.upstream(), None, outcome), &ctx)
        }
    }
}

/// `resp` with the call's place in its trace: `x-pas-trace-id` and `x-pas-span-id`.
fn traced(mut resp: Response, ctx: &crate::trace::Ctx) -> Response {
    let h = resp.headers_mut();
    for (k, v) in [
        ("x-pas-trace-id", &ctx.trace_id),
        ("x-pas-span-id", &ctx.span_id),
    ] {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    }
    resp
}

/// Adds pas's headers and records the request in the metrics.
fn finish(
    gw: &Gateway,
    mut resp: Response,
    t0: Instant,
    upstream: Duration,
    served: Option<&Served>,
    outcome: Outcome,
) -> Response {
    let overhead = t0.elapsed().saturating_sub(upstream);
    gw.metrics.record(overhead.as_micros() as u64, outcome);
    let h = resp.headers_mut();
    set_overhead(h, overhead);
    if let Some(s) = served {
        let cost = s
            .cost
            .map_or("unknown".to_string(), |c| c.normalize().to_string());
        for (k, v) in [
            ("x-pas-provider", s.provider.as_str()),
            ("x-pas-model", s.model.as_str()),
            ("x-pas-receipt", s.receipt_id.as_str()),
        ] {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(k, v);
            }
        }
        // A stream's cost is known only at its end (in its receipt), not in the headers.
        if !s.streamed {
            if let Ok(v) = HeaderValue::from_str(&cost) {
                h.insert("x-pas-cost-usd", v);
            }
        }
    }
    resp
}

/// `GET /v1/models`: every model with its provider, capabilities, context and price, a
/// `cap:<capability>` entry per capability, and an entry per exact `model_aliases:` name.
async fn models(State(gw): State<Arc<Gateway>>) -> Response {
    let mut data = Vec::new();
    let mut caps = std::collections::BTreeSet::new();
    for p in &gw.providers {
        for m in &p.models {
            caps.extend(m.capabilities.iter().cloned());
            data.push(json!({
                "id": m.id,
                "object": "model",
                "created": 0,
                "owned_by": p.name,
                "pas": {
                    "provider": p.name,
                    "local": p.local,
                    "capabilities": m.capabilities,
                    "ctx_limit": m.ctx_limit,
                    "max_output_tokens": m.max_output_tokens,
                    "price_per_mtok": m.price_per_mtok,
                    "available": gw.keys.get(&p.name).is_none_or(|k| k.is_ok()),
                },
            }));
        }
    }
    for c in caps {
        data.push(
            json!({"id": format!("cap:{c}"), "object": "model", "created": 0, "owned_by": "pas"}),
        );
    }
    for (name, target) in gw.aliases.exact() {
        data.push(json!({
            "id": name, "object": "model", "created": 0, "owned_by": "pas",
            "pas": {"alias_of": target},
        }));
    }
    json_response(
        StatusCode::OK,
        json!({"object": "list", "data": data}).to_string(),
    )
}
