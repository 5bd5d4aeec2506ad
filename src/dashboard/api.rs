//! The JSON twins of the pages: `/api/status`, `/api/jobs`, `/api/jobs/{id}`, `/api/agents`,
//! `/api/tree`, `/api/costs`, `/api/alerts`, `/api/events?since=N`, and `/api/commits` (the
//! time slider's stops). Each reads; none writes.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, Dash, WebError};
use crate::views::job;
use crate::workspace::Workspace;

/// Event types the alerts page lists.
pub(crate) const ALERT_KINDS: &[&str] = crate::ops::sentences::ALERT_EVENT_KINDS;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AtQuery {
    pub at: Option<String>,
}

/// `GET /api/status[?at=REV]`: `pas status --json`, and the seq it reflects.
pub(crate) async fn status(
    State(dash): State<Dash>,
    Query(q): Query<AtQuery>,
) -> Result<Json<Value>, WebError> {
    let v = dash.views.view(q.at.as_deref()).await?;
    let mut s = v.status.clone();
    s["seq"] = json!(v.seq);
    s["at"] = json!(v.at);
    Ok(Json(s))
}

/// Filters of `/api/jobs`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct JobsQuery {
    pub at: Option<String>,
    pub state: Option<String>,
    pub agent: Option<String>,
    pub capability: Option<String>,
    pub priority: Option<String>,
    /// Words that must all occur in the id or title (case-insensitive).
    pub q: Option<String>,
    /// Comma-separated ids (the browser fetches the cards an event named).
    pub ids: Option<String>,
    #[serde(default)]
    pub offset: usize,
    pub limit: Option<usize>,
}

/// Whether a compact card passes the filters.
pub(crate) fn matches(c: &Value, f: &JobsQuery) -> bool {
    let is = |key: &str, want: &Option<String>| {
        want.as_deref()
            .filter(|w| !w.is_empty())
            .is_none_or(|w| c[key].as_str() == Some(w))
    };
    let cap = f.capability.as_deref().filter(|w| !w.is_empty());
    let cap_ok = cap.is_none_or(|w| {
        c["requires"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x.as_str() == Some(w)))
    });
    let text_ok = f.q.as_deref().is_none_or(|q| {
        let hay = format!(
            "{} {}",
            c["id"].as_str().unwrap_or(""),
            c["title"].as_str().unwrap_or("")
        )
        .to_lowercase();
        q.to_lowercase().split_whitespace().all(|w| hay.contains(w))
    });
    is("state", &f.state)
        && is("agent", &f.agent)
        && is("priority", &f.priority)
        && cap_ok
        && text_ok
}

/// `GET /api/jobs`: `{total, offset, jobs}` in board order, filtered and paged
/// (default 500 a page).
pub(crate) async fn jobs(
    State(dash): State<Dash>,
    Query(q): Query<JobsQuery>,
) -> Result<Json<Value>, WebError> {
    let v = dash.views.view(q.at.as_deref()).await?;
    if let Some(ids) = &q.ids {
        let jobs: Vec<&Value> = ids.split(',').filter_map(|id| v.card(id)).collect();
        return Ok(Json(
            json!({"seq": v.seq, "total": jobs.len(), "offset": 0, "jobs": jobs}),
        ));
    }
    let limit = q.limit.unwrap_or(500).min(10_000);
    let all: Vec<&Value> = v.cards.iter().filter(|c| matches(c, &q)).collect();
    let mut page: Vec<Value> = all
        .iter()
        .skip(q.offset)
        .take(limit)
        .map(|c| (*c).clone())
        .collect();
    let mut total = all.len();
    // The Done column (and `state=archived`) goes on into the archive, newest day first,
    // when it is not filtered otherwise: only the page's archived cards are read.
    let archive = match q.state.as_deref() {
        Some("archived") => Some(0),
        Some("done") => Some(all.len()),
        _ => None,
    };
    let plain = [&q.agent, &q.capability, &q.priority, &q.q]
        .iter()
        .all(|f| f.as_deref().is_none_or(str::is_empty));
    if let (Some(before), true, None) = (archive, plain, &v.at) {
        let archived = v.status["jobs"]["archived"].as_u64().unwrap_or(0) as usize;
        total = before + archived;
        let want = limit - page.len();
        if want > 0 {
            let offset = q.offset.saturating_sub(before);
            let ws = dash.shared.ws.clone();
            let page_ = job::Page {
                offset,
                limit: Some(want),
            };
            let rows = blocking(move || job::archived_page(&ws, page_)).await?;
            page.extend(
                rows.iter()
                    .map(|(id, e)| super::view::card_json(id, e, None)),
            );
        }
    }
    Ok(Json(
        json!({"seq": v.seq, "total": total, "offset": q.offset, "jobs": page}),
    ))
}

/// `GET /api/jobs/{id}`: the card, its history from git, its receipts, parent and children.
pub(crate) async fn job(
    State(dash): State<Dash>,
    Path(id): Path<String>,
) -> Result<Json<Value>, WebError> {
    Ok(Json(job_detail(&dash, &id).await?))
}

/// The job view's data (shared by the page and its twin).
pub(crate) async fn job_detail(dash: &Dash, id: &str) -> Result<Value, WebError> {
    if !crate::card::valid_id(id) {
        return Err(WebError::bad_request(format!("{id:?} is not a card id")));
    }
    let v = dash.views.live().await?;
    let card = match v.card(id).cloned() {
        Some(c) => Some(c),
        None => {
            // Not on the board's view: perhaps archived (read by itself, not listed).
            let (ws, owned) = (dash.shared.ws.clone(), id.to_string());
            let card = blocking(move || Ok(job::archived_card(&ws, &owned))).await?;
            card.map(|c| crate::views::value(&c))
        }
    };
    let Some(card) = card else {
        return Err(WebError::not_found(format!(
            "no card {id} in work/ (inbox, assigned, review, done, failed, archive)"
        )));
    };
    let children: Vec<&Value> = v
        .cards
        .iter()
        .filter(|c| c["parent"].as_str() == Some(id))
        .collect();
    let parent = card["parent"].as_str().and_then(|p| v.card(p)).cloned();
    let ws = dash.shared.ws.clone();
    let owned = id.to_string();
    let job::Records {
        text,
        commits,
        receipts,
    } = blocking(move || Ok(job::records(&ws, &owned))).await?;
    let cost = receipts
        .iter()
        .filter_map(|r| r.cost_usd.as_deref()?.parse::<rust_decimal::Decimal>().ok())
        .sum::<rust_decimal::Decimal>();
    let doc: Value = text
        .as_deref()
        .and_then(|t| serde_yaml::from_str::<serde_yaml::Value>(t).ok())
        .and_then(|y| serde_json::to_value(y).ok())
        .unwrap_or(Value::Null);
    let history = doc["pas"]["history"].clone();
    // What the card's work changed (`pas.base..pas.branch`), for a person reviewing it.
    let diff = match text.clone().filter(|_| doc["pas"]["branch"].is_string()) {
        Some(text) => {
            let (ws, owned) = (dash.shared.ws.clone(), id.to_string());
            blocking(move || {
                let card = crate::card::Card::parse(&owned, &text).ok();
                Ok(card.and_then(|c| crate::review::card_diff(&ws.root, &c.spec.pas)))
            })
            .await?
        }
        None => None,
    };
    Ok(json!({
        "diff": diff,
        "job": card,
        // The card's trace (SPEC section 13): `/api/traces/{trace_id}`.
        "trace_id": doc["pas"]["trace_id"].clone(),
        "text": text,
        "card": doc,
        "history": history,
        "commits": commits,
        "receipts": receipts,
        "cost_usd": cost.normalize().to_string(),
        "parent": parent,
        "children": children,
    }))
}

/// `GET /api/agents`: every agent, as `pas agents --json` with capabilities and thresholds.
pub(crate) async fn agents(State(dash): State<Dash>) -> Result<Json<Value>, WebError> {
    let v = dash.views.live().await?;
    Ok(Json(Value::Array(v.agents.clone())))
}

/// `GET /api/tree`: the agent hierarchy with rolled-up cost, tokens and jobs.
pub(crate) async fn tree(State(dash): State<Dash>) -> Result<Json<Value>, WebError> {
    let v = dash.views.live().await?;
    Ok(Json(json!({"seq": v.seq, "roots": v.tree()})))
}

/// `GET /api/costs`: `pas costs --json` and the latest 50 receipts.
pub(crate) async fn costs(State(dash): State<Dash>) -> Result<Json<Value>, WebError> {
    Ok(Json(costs_json(&dash).await?))
}

pub(crate) async fn costs_json(dash: &Dash) -> Result<Value, WebError> {
    let ws = dash.shared.ws.clone();
    blocking(move || {
        let mut v = crate::views::costs::tally_of(&ws)?.json();
        v["receipts"] = json!(job::receipts(&ws, None, 50));
        Ok(v)
    })
    .await
}

/// `GET /api/alerts`: the latest alert events (newest first) and the rejected files.
pub(crate) async fn alerts(State(dash): State<Dash>) -> Result<Json<Value>, WebError> {
    Ok(Json(alerts_json(&dash).await?))
}

pub(crate) async fn alerts_json(dash: &Dash) -> Result<Value, WebError> {
    let ws = dash.shared.ws.clone();
    let mut doc = blocking(move || Ok(read_alerts(&ws, 300))).await?;
    super::ops::with_sentences(dash, &mut doc).await;
    doc["active"] = json!(super::ops::active(dash).await?);
    Ok(doc)
}

fn read_alerts(ws: &Workspace, limit: usize) -> Value {
    let mut events = Vec::new();
    if let Ok(Some(conn)) = crate::store::db::open_read_only(&ws.db_path()) {
        let marks = vec!["?"; ALERT_KINDS.len()].join(",");
        let sql = format!(
            "SELECT seq, ts, kind, data FROM events WHERE kind IN ({marks}) ORDER BY seq DESC LIMIT {limit}"
        );
        let rows = conn.prepare(&sql).and_then(|mut st| {
            st.query_map(rusqlite::params_from_iter(ALERT_KINDS), |r| {
                let data: String = r.get(3)?;
                Ok(json!({
                    "seq": r.get::<_, i64>(0)?,
                    "ts": r.get::<_, String>(1)?,
                    "type": r.get::<_, String>(2)?,
                    "data": serde_json::from_str::<Value>(&data).unwrap_or(Value::Null),
                }))
            })?
            .collect::<rusqlite::Result<Vec<Value>>>()
        });
        events = rows.unwrap_or_default();
    }
    let mut rejected = Vec::new();
    if let Ok(rd) = std::fs::read_dir(ws.rejected()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.ends_with(".reason.txt") {
                continue;
            }
            let reason_path = ws.rejected().join(format!("{name}.reason.txt"));
            let reason = crate::intake::read_text(&reason_path, crate::intake::FileKind::Reason)
                .unwrap_or_default();
            let reason: String = reason.chars().take(2000).collect();
            let at = crate::workspace::mtime(&e.path()).map(crate::views::stamp);
            rejected.push(json!({"file": name, "reason": reason, "at": at}));
        }
    }
    rejected.sort_by(|a, b| b["at"].as_str().cmp(&a["at"].as_str()));
    json!({"events": events, "rejected": rejected})
}

#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
}

/// `GET /api/events?since=N[&limit=]`: events after N, oldest first, from the database
/// (all of history), or from the hub's ring when there is no database.
pub(crate) async fn events(
    State(dash): State<Dash>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, WebError> {
    let limit = q.limit.unwrap_or(1000).min(10_000);
    let hub = dash.shared.hub.clone();
    let ws = dash.shared.ws.clone();
    let since = q.since;
    let (events, too_old) = blocking(move || {
        if let Some(conn) = crate::store::db::open_read_only(&ws.db_path())? {
            let rows = crate::store::db::events_since(&conn, since, limit)?;
            let evs: Vec<Value> = rows
                .iter()
                .filter_map(|r| serde_json::from_str(&crate::events::wire_json(r)).ok())
                .collect();
            // The writer batches: the newest events may not be stored yet; the ring has them.
            if evs.len() < limit {
                let after = evs.last().and_then(|e| e["seq"].as_u64()).unwrap_or(since);
                if let crate::events::Since::Events(more) = hub.since(after) {
                    let mut evs = evs;
                    evs.extend(
                        more.iter()
                            .take(limit - evs.len())
                            .filter_map(|e| serde_json::from_str(&e.json).ok()),
                    );
                    return Ok((evs, false));
                }
            }
            return Ok((evs, false));
        }
        Ok(match hub.since(since) {
            crate::events::Since::Events(v) => (
                v.iter()
                    .take(limit)
                    .filter_map(|e| serde_json::from_str(&e.json).ok())
                    .collect(),
                false,
            ),
            crate::events::Since::TooOld => (Vec::new(), true),
        })
    })
    .await?;
    let next = events
        .last()
        .and_then(|e: &Value| e["seq"].as_u64())
        .unwrap_or(since);
    Ok(Json(
        json!({"seq": dash.shared.hub.seq(), "next": next, "too_old": too_old, "events": events}),
    ))
}

/// `GET /api/commits`: the newest commits, the stops of the time slider.
pub(crate) async fn commits(State(dash): State<Dash>) -> Result<Json<Value>, WebError> {
    Ok(Json(recent_commits(&dash).await))
}

pub(crate) async fn recent_commits(dash: &Dash) -> Value {
    let ws = dash.shared.ws.clone();
    blocking(move || {
        Ok(crate::store::git::GitStore::open(&ws.root)
            .ok()
            .flatten()
            .and_then(|g| g.recent(300).ok())
            .and_then(|c| serde_json::to_value(c).ok())
            .unwrap_or_else(|| json!([])))
    })
    .await
    .unwrap_or_else(|_| json!([]))
}
