//! The traces' JSON twins: `GET /api/traces` (the list, `?agent=&job=&limit=`) and
//! `GET /api/traces/{id}` (one trace as a tree with roll-ups, messages included). The
//! pages that show them build on these.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, Dash, WebError};
use crate::trace::{model, store, tree};

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

/// `GET /api/traces/{id}`: the trace's spans as a forest, with totals. `id` is a trace
/// id, or a job id standing for its card's trace (so a job page links it by its own id).
pub(crate) async fn one(
    State(dash): State<Dash>,
    Path(id): Path<String>,
) -> Result<Json<Value>, WebError> {
    if !model::valid_trace_id(&id) && !crate::card::valid_id(&id) {
        return Err(WebError::bad_request(format!(
            "{id:?} is neither a trace id (32 lowercase hex digits) nor a job id"
        )));
    }
    let ws = dash.shared.ws.clone();
    let owned = id.clone();
    let (id, spans) = blocking(move || {
        let Some(conn) = crate::store::db::open_read_only(&ws.db_path())? else {
            return Ok((owned, Vec::new()));
        };
        let trace = if model::valid_trace_id(&owned) {
            owned
        } else {
            store::trace_of_job(&conn, &owned)?.unwrap_or(owned)
        };
        let spans = store::spans(&conn, &trace, true)?;
        Ok((trace, spans))
    })
    .await?;
    if spans.is_empty() {
        return Err(WebError::not_found(format!("no trace {id}")));
    }
    let summary = store::summarize(&id, &spans);
    let forest = tree::build(spans);
    Ok(Json(json!({
        "trace_id": id,
        "summary": summary,
        "totals": tree::totals(&forest),
        "spans": forest,
    })))
}
