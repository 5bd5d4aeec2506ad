//! `GET /ws`: the live stream (SPEC section 11).
//!
//! On connect a client gets `{"type": "snapshot", "seq": S, "reason": ..., "data": {...}}`,
//! then every event after `S` in the SPEC's wire shape, each `seq` one more than the last.
//! `?since=N` replays what the client missed from the hub's ring, or sends a fresh snapshot
//! when the ring no longer reaches back. A client whose socket drains slower than events
//! arrive falls behind the broadcast channel (`Lagged`); it is then resynced with a new
//! snapshot, never dropped silently. Browsers cannot send ping frames, so a text
//! `{"type":"ping"}` is answered with `{"type":"pong","seq":...}`; the server also pings.
//!
//! Events already waiting are written together and flushed once, and a busy stream is
//! flushed at most once per 25 ms window, so it costs one system call per batch, not per
//! event; a quiet stream is sent at once.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::{Sink, SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::Dash;
use crate::events::{Published, Since};

/// How often the server pings an idle client.
const PING_EVERY: Duration = Duration::from_secs(20);
/// Events written before one flush, at most.
const BATCH: usize = 4096;
/// A client's socket is flushed at most once per this window while events stream in
/// (1,000 clients x 1,000 events/s would otherwise be a million writes a second).
const COALESCE: Duration = Duration::from_millis(25);

#[derive(Debug, Deserialize)]
pub(crate) struct WsQuery {
    since: Option<u64>,
}

/// Upgrades to a WebSocket (the token guard has already run on this request).
pub(crate) async fn upgrade(
    State(dash): State<Dash>,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| async move {
        if let Err(e) = session(dash, socket, q.since).await {
            tracing::debug!(error = %e, "dashboard client gone");
        }
    })
}

type Failed = Box<dyn std::error::Error + Send + Sync>;

async fn session(dash: Dash, socket: WebSocket, since: Option<u64>) -> Result<(), Failed> {
    let (mut tx, mut rx) = socket.split();
    // Subscribe before reading anything: no event after this point can be missed.
    let (_, mut live) = dash.shared.hub.subscribe();
    let mut last = start(&dash, &mut tx, since).await?;
    let mut last_flush = tokio::time::Instant::now() - COALESCE;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            got = live.recv() => match got {
                Ok(e) => {
                    let mut sent = send_event(&mut tx, &e, &mut last).await?;
                    // A busy stream is flushed at most once per window: what arrives
                    // meanwhile goes in the same write. A quiet one is sent at once.
                    let since = last_flush.elapsed();
                    if since < COALESCE {
                        tokio::time::sleep(COALESCE - since).await;
                    }
                    while sent < BATCH {
                        match live.try_recv() {
                            Ok(e) => sent += send_event(&mut tx, &e, &mut last).await?,
                            Err(TryRecvError::Lagged(n)) => {
                                live = resync(&dash, &mut tx, &mut last, n).await?;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    tx.flush().await?;
                    last_flush = tokio::time::Instant::now();
                }
                Err(RecvError::Lagged(n)) => {
                    live = resync(&dash, &mut tx, &mut last, n).await?;
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if t.contains("\"ping\"") {
                        let pong = format!(r#"{{"type":"pong","seq":{}}}"#, dash.shared.hub.seq());
                        tx.send(Message::Text(pong.into())).await?;
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                tx.send(Message::Ping(Vec::new().into())).await?;
            }
        }
    }
}

/// Writes one event unless the client already has it; returns how many were written.
async fn send_event<S>(tx: &mut S, e: &Published, last: &mut u64) -> Result<usize, Failed>
where
    S: Sink<Message> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    if e.row.seq <= *last {
        return Ok(0); // already replayed
    }
    tx.feed(Message::Text(Utf8Bytes::from(e.json.clone())))
        .await?;
    *last = e.row.seq;
    Ok(1)
}

/// What a new connection gets first; returns the seq the client is at.
async fn start<S>(dash: &Dash, tx: &mut S, since: Option<u64>) -> Result<u64, Failed>
where
    S: Sink<Message> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let hub = &dash.shared.hub;
    if let Some(n) = since {
        if n <= hub.seq() {
            if let Since::Events(events) = hub.since(n) {
                let mut last = n;
                for e in &events {
                    send_event(tx, e, &mut last).await?;
                }
                tx.flush().await?;
                return Ok(last);
            }
            return snapshot(dash, tx, "since-too-old").await;
        }
        // A seq from before the hub's numbering (another workspace or a reset database).
        return snapshot(dash, tx, "since-ahead").await;
    }
    snapshot(dash, tx, "connect").await
}

/// A client fell `n` events behind: a fresh subscription, then a snapshot and the replay.
async fn resync<S>(
    dash: &Dash,
    tx: &mut S,
    last: &mut u64,
    n: u64,
) -> Result<tokio::sync::broadcast::Receiver<Arc<Published>>, Failed>
where
    S: Sink<Message> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    tracing::info!(behind = n, "dashboard client fell behind; resyncing it");
    let (_, live) = dash.shared.hub.subscribe();
    *last = snapshot(dash, tx, "lagged").await?;
    Ok(live)
}

/// Sends the cached view as a snapshot, then the ring's events after it; returns the seq
/// the client is at.
async fn snapshot<S>(dash: &Dash, tx: &mut S, reason: &str) -> Result<u64, Failed>
where
    S: Sink<Message> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let mut view = dash.views.live().await.map_err(|e| e.message)?;
    let mut replay = dash.shared.hub.since(view.seq);
    if matches!(replay, Since::TooOld) {
        // The cached view is older than the ring (a tiny ring): read the files again.
        view = dash.views.recompute().await.map_err(|e| e.message)?;
        replay = dash.shared.hub.since(view.seq);
    }
    let head = format!(
        r#"{{"type":"snapshot","seq":{},"reason":"{reason}","data":{}}}"#,
        view.seq, view.snapshot
    );
    tx.feed(Message::Text(head.into())).await?;
    let mut last = view.seq;
    if let Since::Events(events) = replay {
        for e in &events {
            send_event(tx, e, &mut last).await?;
        }
    }
    tx.flush().await?;
    Ok(last)
}
