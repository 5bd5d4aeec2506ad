//! The dashboard's operating views: `/providers` and `/api/providers`, the active alerts
//! (`/api/alerts/active`, and the banner every page carries), and events told as
//! sentences on `/alerts`.

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};

use super::{blocking, Dash, WebError};
use crate::ops::alerts::{self, Active};

/// The running gateway's breakers (none when the dashboard runs without one).
fn breakers(dash: &Dash) -> Option<crate::gateway::Breakers> {
    dash.gateway.as_ref().map(|g| g.breakers())
}

/// `GET /api/providers`: `pas providers --json`, with the live breakers.
pub(crate) async fn api_providers(State(dash): State<Dash>) -> Result<Json<Value>, WebError> {
    Ok(Json(providers_json(&dash).await?))
}

async fn providers_json(dash: &Dash) -> Result<Value, WebError> {
    let ws = dash.shared.ws.clone();
    let b = breakers(dash);
    blocking(move || crate::ops::providers::load(&ws, b.as_ref())).await
}

/// `GET /providers`.
pub(crate) async fn providers_page(State(dash): State<Dash>) -> Result<Response, WebError> {
    let p = providers_json(&dash).await?;
    let ctx = json!({"page": "providers", "title": "Providers", "report": p});
    Ok(super::pages::render(
        &dash,
        "providers.html",
        ctx,
        json!({"page": "providers", "report": p}),
    )
    .await)
}

/// What is wrong now, from the cached view (agents, costs), the breakers and the
/// rejected folder.
pub(crate) async fn active(dash: &Dash) -> Result<Vec<Active>, WebError> {
    let v = dash.views.live().await?;
    let ws = dash.shared.ws.clone();
    let b = breakers(dash);
    blocking(move || {
        let rejected = alerts::rejected(&ws);
        Ok(alerts::active(&v.agents, &v.costs, b.as_ref(), &rejected))
    })
    .await
}

/// `GET /api/alerts/active`.
pub(crate) async fn api_active(State(dash): State<Dash>) -> Result<Json<Value>, WebError> {
    Ok(Json(json!({"active": active(&dash).await?})))
}

/// Adds `sentence` (text and links) to each event of an `/api/alerts` document, naming
/// cards by their titles from the cached view.
pub(crate) async fn with_sentences(dash: &Dash, doc: &mut Value) {
    let view = dash.views.live().await.ok();
    let title = |id: &str| -> Option<String> {
        let v = view.as_ref()?;
        let i = *v.index.get(id)?;
        v.cards.get(i)?["title"].as_str().map(str::to_string)
    };
    if let Some(events) = doc["events"].as_array_mut() {
        for e in events {
            let kind = e["type"].as_str().unwrap_or("").to_string();
            let t = e["data"]["id"].as_str().and_then(title);
            let s = crate::ops::sentences::of_titled(&kind, &e["data"], t.as_deref());
            e["sentence"] = json!(s);
        }
    }
}
