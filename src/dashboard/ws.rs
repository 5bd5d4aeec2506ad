//! `GET /ws`: the live stream (SPEC section 11).
//!
//! On connect a client gets `{"type": "snapshot", "seq": S, "reason": ..., "data": {...}}`,
//! then every event after `S` in the SPEC's wire shape, each `seq` one more than the last.
//! `?since=N` replays what the client missed from the hub's ring, or sends a fresh snapshot
//! when the ring no longer reaches back. A client whose socket drains slower than events
//! arrive falls behind the batch channel (`Lagged`); it is then resynced with a new
//! snapshot, never dropped silently. Browsers cannot send ping frames, so a text
//! `{"type":"ping"}` is answered with `{"type":"pong","seq":...}`; the server also pings.
//!
//! pas speaks the WebSocket protocol here itself (RFC 6455, no extensions), on the
//! connection hyper hands over after the `101`: the events go out as the frames
//! [`fanout`](super::fanout) made once for every client, one write per batch, and the few
//! frames a client sends (pings, pongs, close) are read by a task of their own.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::fanout::{self, put_frame, Batch, CLOSE, PING, PONG, TEXT};
use super::{Dash, WebError};
use crate::events::{Published, Since};

/// How often the server pings an idle client.
const PING_EVERY: Duration = Duration::from_secs(20);
/// A client that takes longer than this to take one write is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest frame a client may send (they send pings and pongs).
const MAX_CLIENT_FRAME: u64 = 64 * 1024;

#[derive(Debug, Deserialize)]
pub(crate) struct WsQuery {
    since: Option<u64>,
}

type Failed = Box<dyn std::error::Error + Send + Sync>;

/// Answers the upgrade (the token guard has already run on this request) and runs the
/// session on the connection hyper hands over.
pub(crate) async fn upgrade(
    State(dash): State<Dash>,
    Query(q): Query<WsQuery>,
    mut req: Request,
) -> Response {
    let key = match handshake_key(req.headers()) {
        Ok(key) => key,
        Err(refusal) => return refusal.into_response(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    // The connection's slot of dashboard.max_connections, kept while the session lives:
    // a websocket is a connection like any other.
    let slot = req
        .extensions_mut()
        .remove::<crate::web::listen::ConnSlot>();
    tokio::spawn(async move {
        let _slot = slot;
        match on_upgrade.await {
            Ok(conn) => {
                if let Err(e) = session(dash, TokioIo::new(conn), q.since).await {
                    tracing::debug!(error = %e, "dashboard client gone");
                }
            }
            Err(e) => tracing::debug!(error = %e, "dashboard upgrade failed"),
        }
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, key);
    resp
}

/// Why an upgrade request is refused.
enum Refusal {
    /// Not a valid upgrade: 400 with this message.
    Bad(&'static str),
    /// Another protocol version: 426 naming version 13.
    Version,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Bad(why) => WebError::bad_request(why).into_response(),
            Refusal::Version => {
                let mut r = (
                    StatusCode::UPGRADE_REQUIRED,
                    "only WebSocket version 13 is spoken here",
                )
                    .into_response();
                r.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
                r
            }
        }
    }
}

/// The `Sec-WebSocket-Accept` value for a valid upgrade request, else the refusal.
fn handshake_key(h: &HeaderMap) -> Result<HeaderValue, Refusal> {
    let has = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return Err(Refusal::Bad(
            "GET /ws is a WebSocket: send Connection: upgrade and Upgrade: websocket",
        ));
    }
    if h.get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(Refusal::Version);
    }
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(Refusal::Bad("the upgrade has no Sec-WebSocket-Key"))?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| Refusal::Bad("the Sec-WebSocket-Key is not a header value"))
}

/// What the client's reader asks the writer to send.
enum Ask {
    /// A protocol pong with the ping's payload.
    Pong(Vec<u8>),
    /// `{"type":"pong"}` for a browser's text ping.
    TextPong,
}

async fn session<S>(dash: Dash, conn: S, since: Option<u64>) -> Result<(), Failed>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(conn);
    // Subscribe before reading anything: no event after this point can be missed.
    let mut batches = dash.batches().subscribe();
    let mut last = start(&dash, &mut wr, since).await?;
    let (ask, mut asked) = mpsc::channel::<Ask>(8);
    let _reader = AbortOnDrop(tokio::spawn(read_client(BufReader::new(rd), ask)));
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            got = batches.recv() => match got {
                Ok(batch) => match batch.after(last).filter(|_| !batch.gap) {
                    Some(frames) => {
                        write(&mut wr, &frames).await?;
                        last = last.max(batch.seqs().map_or(last, |(_, end)| end));
                    }
                    None => batches = resync(&dash, &mut wr, &mut last, "gap").await?,
                },
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::info!(behind_batches = n, "dashboard client fell behind; resyncing it");
                    batches = resync(&dash, &mut wr, &mut last, "lagged").await?;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            a = asked.recv() => match a {
                Some(Ask::Pong(payload)) => write(&mut wr, &fanout::frame(PONG, &payload)).await?,
                Some(Ask::TextPong) => {
                    let pong = format!(r#"{{"type":"pong","seq":{}}}"#, dash.shared.hub.seq());
                    write(&mut wr, &fanout::frame(TEXT, pong.as_bytes())).await?;
                }
                None => {
                    // The client closed (or its socket failed): answer a close, and end.
                    let _ = write(&mut wr, &fanout::frame(CLOSE, &1000u16.to_be_bytes())).await;
                    return Ok(());
                }
            },
            _ = ping.tick() => write(&mut wr, &fanout::frame(PING, b"")).await?,
        }
    }
}

/// One write of whole frames, given up on after [`WRITE_TIMEOUT`].
async fn write<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8]) -> Result<(), Failed> {
    if bytes.is_empty() {
        return Ok(());
    }
    tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(bytes))
        .await
        .map_err(|_| "the client took no data for 30 s")??;
    Ok(())
}

/// Reads the client's frames until it closes, asking the writer for the answers.
async fn read_client<R: AsyncRead + Unpin>(mut rd: R, ask: mpsc::Sender<Ask>) {
    while let Ok(Some((opcode, payload))) = read_frame(&mut rd).await {
        let answer = match opcode {
            CLOSE => return,
            PING => Ask::Pong(payload),
            TEXT | 0x0 if payload.windows(6).any(|w| w == b"\"ping\"") => Ask::TextPong,
            _ => continue,
        };
        if ask.send(answer).await.is_err() {
            return;
        }
    }
}

/// One frame from a client, unmasked: `(opcode, payload)`; `None` at end of stream.
async fn read_frame<R: AsyncRead + Unpin>(rd: &mut R) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 2];
    match rd.read_exact(&mut head).await {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        r => r?,
    };
    let len = match head[1] & 0x7F {
        126 => u64::from(rd.read_u16().await?),
        127 => rd.read_u64().await?,
        n => u64::from(n),
    };
    if len > MAX_CLIENT_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a client frame of {len} bytes (at most {MAX_CLIENT_FRAME})"),
        ));
    }
    let mut mask = [0u8; 4];
    if head[1] & 0x80 != 0 {
        rd.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    rd.read_exact(&mut payload).await?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok(Some((head[0] & 0x0F, payload)))
}

/// Aborts a task when dropped, so a client's reader ends with its session.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a new connection gets first; returns the seq the client is at.
async fn start<W: AsyncWrite + Unpin>(
    dash: &Dash,
    wr: &mut W,
    since: Option<u64>,
) -> Result<u64, Failed> {
    let hub = &dash.shared.hub;
    if let Some(n) = since {
        if n <= hub.seq() {
            if let Since::Events(events) = hub.since(n) {
                let mut out = BytesMut::new();
                let last = put_events(&mut out, &events, n);
                write(wr, &out).await?;
                return Ok(last);
            }
            return snapshot(dash, wr, "since-too-old").await;
        }
        // A seq from before the hub's numbering (another workspace or a reset database).
        return snapshot(dash, wr, "since-ahead").await;
    }
    snapshot(dash, wr, "connect").await
}

/// A client fell behind or saw a gap: a fresh subscription, then a snapshot and the replay.
async fn resync<W: AsyncWrite + Unpin>(
    dash: &Dash,
    wr: &mut W,
    last: &mut u64,
    reason: &str,
) -> Result<broadcast::Receiver<Arc<Batch>>, Failed> {
    let batches = dash.batches().subscribe();
    *last = snapshot(dash, wr, reason).await?;
    Ok(batches)
}

/// Sends the cached view as a snapshot, then the ring's events after it; returns the seq
/// the client is at.
async fn snapshot<W: AsyncWrite + Unpin>(
    dash: &Dash,
    wr: &mut W,
    reason: &str,
) -> Result<u64, Failed> {
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
    let mut out = BytesMut::with_capacity(head.len() + 16);
    put_frame(&mut out, TEXT, head.as_bytes());
    let last = match replay {
        Since::Events(events) => put_events(&mut out, &events, view.seq),
        Since::TooOld => view.seq,
    };
    write(wr, &Bytes::from(out)).await?;
    Ok(last)
}

/// Frames the events after `last` into `out`; returns the seq the client is then at.
fn put_events(out: &mut BytesMut, events: &[Arc<Published>], mut last: u64) -> u64 {
    for e in events {
        if e.seq > last {
            put_frame(out, TEXT, e.json.as_bytes());
            last = e.seq;
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's frame: masked, as RFC 6455 requires of clients.
    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend((n as u16).to_be_bytes());
            }
        }
        out.extend(mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[tokio::test]
    async fn client_frames_are_unmasked_and_oversized_ones_refused() {
        let mut bytes = masked(TEXT, br#"{"type":"ping"}"#);
        bytes.extend(masked(PING, &[7u8; 200]));
        let mut rd = &bytes[..];
        let (op, text) = read_frame(&mut rd).await.unwrap().unwrap();
        assert_eq!((op, text.as_slice()), (TEXT, &br#"{"type":"ping"}"#[..]));
        let (op, payload) = read_frame(&mut rd).await.unwrap().unwrap();
        assert_eq!((op, payload), (PING, vec![7u8; 200]));
        assert!(
            read_frame(&mut rd).await.unwrap().is_none(),
            "end of stream"
        );
        let mut huge: &[u8] = &[0x82, 0xFF, 0, 0, 0, 0, 0, 0x10, 0, 0];
        assert!(read_frame(&mut huge).await.is_err());
    }

    #[tokio::test]
    async fn the_reader_asks_for_pongs_and_stops_at_close() {
        let mut bytes = masked(PING, b"p");
        bytes.extend(masked(TEXT, br#"{"type":"ping"}"#));
        bytes.extend(masked(TEXT, b"hello"));
        bytes.extend(masked(CLOSE, &1000u16.to_be_bytes()));
        bytes.extend(masked(PING, b"after close"));
        let (tx, mut rx) = mpsc::channel(8);
        read_client(&bytes[..], tx).await;
        assert!(matches!(rx.recv().await, Some(Ask::Pong(p)) if p == b"p"));
        assert!(matches!(rx.recv().await, Some(Ask::TextPong)));
        assert!(rx.recv().await.is_none(), "nothing after the close");
    }
}
