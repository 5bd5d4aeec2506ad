//! The traces' JSON twins: `GET /api/traces` (the list, `?agent=&job=&limit=`) and
//! `GET /api/traces/{id}` (one trace as a tree with roll-ups, messages included unless
//! `?content=false`), `GET /api/traces/{id}/spans/{span}` (one span with its messages),
//! `GET /api/traces/{a}/vs/{b}` (two traces lined up, `trace::diff`). The pages that show
//! them build on these.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, Dash, WebError};
use crate::trace::{diff, store, tree};

/// `?agent=&job=&limit=`.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct TracesQuery {
    agent: Option<String>,
    job: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/traces`.
pub(crate) async fn list(
    State(dash): State<Dash>,
    Query(q): Query<TracesQuery>,
) -> Result<Json<Value>, WebError> {
    let ws = dash.shared.ws.clone();
    let rows = blocking(move || {
        let Some(conn) = crate::store::db::open_read_only(&ws.db_path())? else {
            return Ok(Vec::new());
        };
        let f = store::Filter {
            agent: q.agent,
            job: q.job,
            limit: q.limit.unwrap_or(100).min(10_000),
        };
        Ok(store::list(&conn, &f)?)
    })
    .await?;
    Ok(Json(json!({ "traces": rows })))
}

/// `?content=false`: a trace's tree without any span's messages.
#[derive(Debug, Deserialize)]
pub(crate) struct OneQuery {
    #[serde(default = "yes")]
    content: bool,
}

fn yes() -> bool {
    true
}

/// `GET /api/traces/{id}`: the trace's spans as a forest, with totals. `id` is a trace
/// id, or a job id standing for its card's trace (so a job page links it by its own id).
pub(crate) async fn one(
    State(dash): State<Dash>,
    Path(id): Path<String>,
    Query(q): Query<OneQuery>,
) -> Result<Json<Value>, WebError> {
    Ok(Json(one_json(&dash, id, q.content).await?))
}

/// [`one`]'s document; `content: false` leaves the messages out (and says so), for a page
/// that fetches one span's when it is looked at: a 10,000-span trace's texts are
/// megabytes the tree does not draw.
pub(crate) async fn one_json(dash: &Dash, id: String, content: bool) -> Result<Value, WebError> {
    let (id, spans) = load(dash, id, content).await?;
    if spans.is_empty() {
        return Err(WebError::not_found(format!("no trace {id}")));
    }
    let summary = store::summarize(&id, &spans);
    let forest = tree::build(spans);
    Ok(json!({
        "trace_id": id,
        "summary": summary,
        "totals": tree::totals(&forest),
        "content": content,
        "spans": forest,
    }))
}

/// `GET /api/traces/{id}/spans/{span}`: one span with its messages. Like the trace's own
/// route, `id` may be a job id; `span` may be `root`, the trace's first span without a
/// parent (a job's lifecycle span).
pub(crate) async fn span(
    State(dash): State<Dash>,
    Path((id, span)): Path<(String, String)>,
) -> Result<Json<Value>, WebError> {
    check_id(&id)?;
    if span != "root" && !crate::span::valid_span_id(&span) {
        return Err(WebError::bad_request(format!(
            "{span:?} is not a span id (16 lowercase hex digits) or `root`"
        )));
    }
    let ws = dash.shared.ws.clone();
    let found = blocking(move || {
        let Some(conn) = crate::store::db::open_read_only(&ws.db_path())? else {
            return Ok(None);
        };
        let trace = resolve(&conn, id)?;
        let span = if span == "root" {
            match store::root_span(&conn, &trace)? {
                Some(s) => s,
                None => return Ok(None),
            }
        } else {
            span
        };
        Ok(store::span(&conn, &trace, &span)?)
    })
    .await?;
    let s = found.ok_or_else(|| WebError::not_found("no such span".to_string()))?;
    Ok(Json(json!(s)))
}

/// The spans of the trace `id` names (a trace id, or a job id for its card's trace), with
/// their messages; the trace id it resolved to.
async fn load(
    dash: &Dash,
    id: String,
    content: bool,
) -> Result<(String, Vec<crate::span::Span>), WebError> {
    check_id(&id)?;
    let ws = dash.shared.ws.clone();
    blocking(move || {
        let Some(conn) = crate::store::db::open_read_only(&ws.db_path())? else {
            return Ok((id, Vec::new()));
        };
        let trace = resolve(&conn, id)?;
        let spans = store::spans(&conn, &trace, content)?;
        Ok((trace, spans))
    })
    .await
}

/// Refuses an `id` that is neither a trace id nor a job id.
fn check_id(id: &str) -> Result<(), WebError> {
    if crate::span::valid_trace_id(id) || crate::card::valid_id(id) {
        return Ok(());
    }
    Err(WebError::bad_request(format!(
        "{id:?} is neither a trace id (32 lowercase hex digits) nor a job id"
    )))
}

/// The trace `id` names: itself, or the trace of job `id`'s card (else `id` as it is,
/// which then finds nothing).
fn resolve(conn: &rusqlite::Connection, id: String) -> rusqlite::Result<String> {
    if crate::span::valid_trace_id(&id) {
        return Ok(id);
    }
    Ok(store::trace_of_job(conn, &id)?.unwrap_or(id))
}

/// `GET /api/traces/{a}/vs/{b}`: `pas trace diff A B --json`.
pub(crate) async fn vs(
    State(dash): State<Dash>,
    Path((a, b)): Path<(String, String)>,
) -> Result<Json<Value>, WebError> {
    Ok(Json(vs_json(&dash, a, b).await?))
}

/// [`vs`]'s document (its page shows the same).
pub(crate) async fn vs_json(dash: &Dash, a: String, b: String) -> Result<Value, WebError> {
    let (a, sa) = load(dash, a, true).await?;
    let (b, sb) = load(dash, b, true).await?;
    for (id, spans) in [(&a, &sa), (&b, &sb)] {
        if spans.is_empty() {
            return Err(WebError::not_found(format!("no trace {id}")));
        }
    }
    Ok(diff::to_json(&diff::diff(&a, sa, &b, sb)))
}

/// `GET /api/traces`'s rows, for its page.
pub(crate) async fn list_rows(dash: &Dash, limit: usize) -> Result<Vec<store::Summary>, WebError> {
    let ws = dash.shared.ws.clone();
    blocking(move || {
        let Some(conn) = crate::store::db::open_read_only(&ws.db_path())? else {
            return Ok(Vec::new());
        };
        let f = store::Filter {
            limit,
            ..store::Filter::default()
        };
        Ok(store::list(&conn, &f)?)
    })
    .await
}
