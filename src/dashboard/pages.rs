//! Server-rendered pages (minijinja, templates in `dashboard/templates`). Each page is
//! complete without JavaScript; `app.js` then takes it over and keeps it live from `/ws`.
//!
//! Every user-supplied string goes through the template engine's HTML auto-escaping; the
//! data handed to the script is JSON inside `<script type="application/json">` with `<`,
//! `>` and `&` escaped, so a card titled `</script>` cannot end the block.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde_json::{json, Value};

use super::api::{self, AtQuery};
use super::{template_source, Dash, WebError};

/// Kanban columns in board order.
const COLUMNS: &[&str] = &["inbox", "assigned", "review", "done", "failed"];
/// Cards a column renders on the server (the script pages the rest).
const SERVER_CARDS: usize = 100;

/// Renders `name` (which extends `base.html`) with `ctx`, the active alerts (every page
/// shows them until they clear) and the script's boot data.
pub(crate) async fn render(dash: &Dash, name: &str, mut ctx: Value, boot: Value) -> Response {
    // A page still renders when the alerts cannot be computed (the banner is then empty).
    let active = super::ops::active(dash).await.unwrap_or_default();
    ctx["active"] = json!(active);
    let mut env = Environment::new();
    let dev = dash.dev.clone();
    env.set_loader(move |n| Ok(template_source(dev.as_deref(), n)));
    env.add_filter("short_time", |s: String| -> String {
        s.get(..19).map(|t| t.replace('T', " ")).unwrap_or(s)
    });
    ctx["boot"] = json!(script_json(&boot));
    let out = env
        .get_template(name)
        .and_then(|t| t.render(minijinja::Value::from_serialize(&ctx)));
    match out {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            let mut msg = format!("template {name}: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            tracing::warn!(error = %msg, "dashboard page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, msg).into_response()
        }
    }
}

/// JSON safe to place inside a `<script>` element.
fn script_json(v: &Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// `GET /[?at=REV]`: the kanban, live or as it stood at a revision.
pub(crate) async fn kanban(
    State(dash): State<Dash>,
    Query(q): Query<AtQuery>,
) -> Result<Response, WebError> {
    let v = dash.views.view(q.at.as_deref()).await?;
    let mut columns = Vec::new();
    for col in COLUMNS {
        let cards: Vec<&Value> = v.cards.iter().filter(|c| c["state"] == *col).collect();
        columns.push(json!({
            "name": col,
            "count": cards.len(),
            "cards": cards.iter().take(SERVER_CARDS).collect::<Vec<_>>(),
        }));
    }
    let commits = api::recent_commits(&dash).await;
    let mut boot = json!({"page": "kanban", "at": v.at, "commits": commits});
    if v.at.is_some() {
        // A board of the past does not move: the script renders it from this.
        boot["snapshot"] = serde_json::from_str(&v.snapshot).unwrap_or(Value::Null);
    }
    let ctx = json!({
        "page": "kanban",
        "title": "Board",
        "at": v.at,
        "columns": columns,
        "rejected": v.status["jobs"]["rejected"],
        "agents": v.agents,
    });
    Ok(render(&dash, "kanban.html", ctx, boot).await)
}

/// `GET /tree`: the agent hierarchy.
pub(crate) async fn tree(State(dash): State<Dash>) -> Result<Response, WebError> {
    let v = dash.views.live().await?;
    let ctx = json!({"page": "tree", "title": "Agents", "roots": v.tree()});
    Ok(render(&dash, "tree.html", ctx, json!({"page": "tree"})).await)
}

/// `GET /costs`.
pub(crate) async fn costs(State(dash): State<Dash>) -> Result<Response, WebError> {
    let c = api::costs_json(&dash).await?;
    let ctx = json!({"page": "costs", "title": "Costs", "costs": c});
    Ok(render(
        &dash,
        "costs.html",
        ctx,
        json!({"page": "costs", "costs": c}),
    )
    .await)
}

/// `GET /alerts`.
pub(crate) async fn alerts(State(dash): State<Dash>) -> Result<Response, WebError> {
    let a = api::alerts_json(&dash).await?;
    let ctx = json!({"page": "alerts", "title": "Alerts", "alerts": a});
    Ok(render(&dash, "alerts.html", ctx, json!({"page": "alerts"})).await)
}

/// `GET /activity`: the live feed (the last 200 events to start with).
pub(crate) async fn activity(State(dash): State<Dash>) -> Result<Response, WebError> {
    let hub = &dash.shared.hub;
    let from = hub.seq().saturating_sub(200);
    let recent: Vec<Value> = match hub.since(from) {
        crate::events::Since::Events(v) => v
            .iter()
            .rev()
            .filter_map(|e| serde_json::from_str(&e.json).ok())
            .collect(),
        crate::events::Since::TooOld => Vec::new(),
    };
    let ctx = json!({"page": "activity", "title": "Activity"});
    Ok(render(
        &dash,
        "activity.html",
        ctx,
        json!({"page": "activity", "recent": recent}),
    )
    .await)
}

/// `GET /jobs/{id}`: one card, its git history, receipts, parent and children.
pub(crate) async fn job(
    State(dash): State<Dash>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let d = match api::job_detail(&dash, &id).await {
        Ok(d) => d,
        Err(e) if e.status == StatusCode::NOT_FOUND || e.status == StatusCode::BAD_REQUEST => {
            let ctx = json!({"page": "job", "title": "No such card", "missing": e.message});
            let mut r = render(&dash, "job.html", ctx, json!({"page": "job"})).await;
            *r.status_mut() = e.status;
            return Ok(r);
        }
        Err(e) => return Err(e),
    };
    let ctx = json!({"page": "job", "title": id, "d": d});
    Ok(render(&dash, "job.html", ctx, json!({"page": "job", "id": id})).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_json_cannot_close_the_script() {
        let s = script_json(&json!({"title": "</script><script>alert(1)</script>&"}));
        assert!(
            !s.contains('<') && !s.contains('>') && !s.contains('&'),
            "{s}"
        );
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["title"], "</script><script>alert(1)</script>&");
    }
}
