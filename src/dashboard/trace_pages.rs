//! The traces' pages (SPEC section 13): `/traces` (the list), `/traces/{id}` (span tree
//! beside a waterfall, roll-ups, a span's conversation, "edit and replay"), and
//! `/traces/{a}/vs/{b}` (two runs lined up). The server renders the frame and hands the
//! JSON twin's document to `static/traces.js`, which draws it and keeps it live; every
//! span text reaches the page as text (`textContent`), never as markup.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::pages::render;
use super::{traces, Dash, WebError};

/// Whether the "edit and replay" form may post (`dashboard.replay`).
fn replay_on(dash: &Dash) -> bool {
    dash.shared
        .ws
        .config()
        .map(|c| c.dashboard.replay)
        .unwrap_or(false)
}

/// A page for `doc`, or the page saying what is missing (with its status).
async fn page(
    dash: &Dash,
    title: String,
    mode: &str,
    doc: Result<serde_json::Value, WebError>,
) -> Response {
    let (status, doc, missing) = match doc {
        Ok(d) => (StatusCode::OK, d, None),
        Err(e) => (e.status, json!(null), Some(e.message)),
    };
    let ctx = json!({"page": "traces", "title": title, "mode": mode, "missing": missing});
    let boot = json!({"page": "traces", "mode": mode, "doc": doc, "replay": replay_on(dash)});
    let mut r = render(dash, "traces.html", ctx, boot).await;
    *r.status_mut() = status;
    r
}

/// `GET /traces`.
pub(crate) async fn list(State(dash): State<Dash>) -> Result<Response, WebError> {
    let rows = traces::list_rows(&dash, 200).await?;
    Ok(page(&dash, "Traces".into(), "list", Ok(json!({"traces": rows}))).await)
}

/// `GET /traces/{id}` (a trace id or a job id).
pub(crate) async fn one(
    State(dash): State<Dash>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    // Without the messages: the page fetches a span's when it is selected.
    let doc = traces::one_json(&dash, id.clone(), false).await;
    Ok(page(&dash, format!("Trace {id}"), "one", doc).await)
}

/// `GET /traces/{a}/vs/{b}`.
pub(crate) async fn vs(
    State(dash): State<Dash>,
    Path((a, b)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let doc = traces::vs_json(&dash, a.clone(), b.clone()).await;
    Ok(page(&dash, format!("{a} vs {b}"), "vs", doc).await)
}
