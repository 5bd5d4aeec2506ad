//! `POST /api/replays`: the dashboard's one write (SPEC sections 11 and 13). It writes a
//! replay card exactly as `pas replay` does (`trace::replay::write`) and nothing else.
//!
//! A page of another site must not be able to spend money through it, so besides the
//! listener's guards (token, same-origin `Origin`, loopback `Host`) it asks for what a
//! cross-site form or `fetch` cannot send without a CORS preflight pas never grants: the
//! header `X-Pas-Replay: 1` and a JSON body; and a browser's `Sec-Fetch-Site`, when sent,
//! must say `same-origin`. `dashboard: {replay: false}` removes the route (404).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{blocking, Dash, WebError};
use crate::trace::replay::{self, Edits};

/// The anti-forgery header the route demands.
pub const HEADER: &str = "x-pas-replay";

/// The body: the recorded call and the edits, as `pas replay` takes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    /// `TRACE_ID/SPAN_ID`.
    replay_of: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    messages: Option<Value>,
    #[serde(default)]
    set: Map<String, Value>,
}

fn forbidden(message: String) -> WebError {
    WebError {
        status: StatusCode::FORBIDDEN,
        message,
    }
}

/// Refuses what a page of another site could send.
fn check(h: &HeaderMap) -> Result<(), WebError> {
    if h.get(HEADER).and_then(|v| v.to_str().ok()) != Some("1") {
        return Err(forbidden(
            "POST /api/replays needs the header X-Pas-Replay: 1 (the dashboard's page sends \
             it; a page of another site cannot)"
                .into(),
        ));
    }
    if let Some(site) = h.get("sec-fetch-site") {
        if site.as_bytes() != b"same-origin" {
            return Err(forbidden(format!(
                "POST /api/replays is refused from a page of another origin (Sec-Fetch-Site: \
                 {})",
                String::from_utf8_lossy(site.as_bytes())
            )));
        }
    }
    let json = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim() == "application/json");
    if !json {
        return Err(WebError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "POST /api/replays takes Content-Type: application/json".into(),
        });
    }
    Ok(())
}

/// `POST /api/replays`: 201 with `{job, path, replay_of}`.
pub(crate) async fn create(
    State(dash): State<Dash>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), WebError> {
    check(&headers)?;
    let b: Body = serde_json::from_slice(&body)
        .map_err(|e| WebError::bad_request(format!("POST /api/replays: the body: {e}")))?;
    let edits = Edits {
        model: b.model,
        policy: b.policy,
        messages: b.messages,
        set: b.set,
    };
    let ws = dash.shared.ws.clone();
    let target = b.replay_of;
    let written = blocking(move || Ok(replay::write(&ws, &target, &edits))).await?;
    match written {
        Ok(w) => {
            tracing::info!(job = %w.job, replay_of = %w.replay_of, "replay card written from the dashboard");
            Ok((StatusCode::CREATED, Json(json!(w))))
        }
        Err(e) if e.starts_with("no span") => Err(WebError::not_found(e)),
        Err(e) => Err(WebError::bad_request(e)),
    }
}
