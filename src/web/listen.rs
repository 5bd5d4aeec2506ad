//! Accepting and serving one listener's connections within its [`Limits`].
//!
//! pas serves its listeners itself rather than through `axum::serve`, which bounds
//! nothing: a client could open connections until pas ran out of file descriptors, or
//! trickle a request's headers a byte at a time and hold a connection (and its task)
//! forever. Here:
//!
//! - every connection takes a slot of `max_connections`; one accepted past it is closed
//!   at once, so the kernel's backlog never fills with connections nobody will serve and
//!   the clients already in keep being answered. The slot rides in every request's
//!   extensions ([`ConnSlot`]), so a websocket, whose connection outlives the request
//!   hyper handed over, keeps its slot for as long as it lives;
//! - hyper's header-read timeout (`header_timeout_s`) closes a connection whose headers do
//!   not arrive whole in time. Hyper starts that clock whenever the connection waits for
//!   a request head, after an answer too, so it also bounds an idle keep-alive connection;
//! - the request cap is a layer (`server::limits`), since its refusal is an answer.
//!
//! Shutdown is graceful as `axum::serve`'s was: the listener stops accepting, each
//! connection finishes the request it is in (a stream until it ends) and then closes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::config::Limits;

/// A connection's slot of `max_connections`, in each of its requests' extensions. Whoever
/// takes the connection over after its request (the dashboard's websocket) keeps this
/// for as long as it uses the connection; the slot is free when the last clone is gone.
/// A handler may also [`close`](ConnSlot::close) the connection: the gateway does when a
/// caller stopped reading its stream, since hyper, blocked writing to that caller, would
/// otherwise keep the connection as long as the caller keeps the socket.
#[derive(Clone)]
pub struct ConnSlot {
    _permit: Arc<OwnedSemaphorePermit>,
    close: tokio_util::sync::CancellationToken,
}

impl ConnSlot {
    /// Drops the connection now, whatever it is doing.
    pub fn close(&self) {
        self.close.cancel();
    }
}

/// How often a refused connection is logged at most (a flood would fill the log).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` within `limits` until `stop` turns true, then lets the
/// connections finish what they are answering; returns when the last one has closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    what: &'static str,
    stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let conns = tokio_util::task::TaskTracker::new();
    let mut stopping = stop.clone();
    let mut last_refusal_log: Option<Instant> = None;
    let mut refused = 0u64;
    loop {
        let (tcp, _peer) = tokio::select! {
            got = listener.accept() => match got {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, mostly: the connections in will free some.
                    tracing::warn!(listener = what, error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stopping) => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if last_refusal_log.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
                last_refusal_log = Some(Instant::now());
                tracing::warn!(
                    listener = what,
                    limit = limits.max_connections,
                    refused,
                    "connection refused: the listener has max_connections open \
                     ({what}.max_connections in pas.yaml)"
                );
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let slot = ConnSlot {
            _permit: Arc::new(permit),
            close: tokio_util::sync::CancellationToken::new(),
        };
        let app = TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        conns.spawn(connection(tcp, app, slot, limits.header_timeout, stop));
    }
    drop(listener);
    conns.close();
    conns.wait().await;
}

/// One connection, until it closes or, once `stop` turns true, finishes its request.
async fn connection(
    tcp: tokio::net::TcpStream,
    app: TowerToHyperService<Router>,
    slot: ConnSlot,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let closed = slot.close.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(slot.clone());
        hyper::service::Service::call(&app, req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(tcp), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let done = tokio::select! {
        done = conn.as_mut() => done,
        _ = closed.cancelled() => return,
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                done = conn => done,
                _ = closed.cancelled() => return,
            }
        }
    };
    if let Err(e) = done {
        // A header timeout, a client gone mid-request: the client's business.
        tracing::debug!(error = %e, "connection closed");
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
