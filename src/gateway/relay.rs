//! A streamed answer on its way to the caller: the relay runs as a task of its own and
//! hands frames to the response body through a short channel (see [`frames`]); a
//! Messages caller gets them as Messages events.

use std::sync::Arc;

use axum::body::Bytes;
use serde_json::json;

use super::call;
use super::Gateway;
use crate::web::listen::ConnSlot;

/// Frames the relay may read ahead of a slow caller.
const RELAY_AHEAD: usize = 16;

/// The relay as a body: upstream frames as they come; a break-off becomes an OpenAI
/// error frame (the client libraries raise it) and the receipt says `cut`.
///
/// The relay runs as a task of its own, which hands frames to the body through a short
/// channel. Hyper polls a body only when it can write, so a relay inside the body would
/// stop with a caller that stops reading (its socket buffers full), keeping its budget
/// hold, its receipt unwritten, and its upstream open, for as long as the caller likes.
/// The task instead gives each frame until the stream's deadline (the provider's
/// `timeout_s` from the request, the longest the call could have run anyway) to be
/// taken; past it the stream is cut, its receipt written and its hold settled, whether or
/// not the caller ever reads again, and the connection is closed (`conn`): hyper, blocked
/// writing to the caller, would not close it. Should the body be polled again, it ends
/// in an error, so hyper drops the connection rather than end the stream as if complete.
pub(super) fn frames(
    gw: &Gateway,
    relay: Box<call::Relay>,
    conn: Option<ConnSlot>,
    events: Option<super::messages::events::Events>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel(RELAY_AHEAD);
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    gw.tasks
        .spawn(pump(relay, tx, stalled.clone(), conn, events));
    futures_util::stream::unfold(Some(rx), move |state| {
        let stalled = stalled.clone();
        async move {
            let mut rx = state?;
            match rx.recv().await {
                Some(frame) => Some((Ok(frame), Some(rx))),
                None if stalled.load(std::sync::atomic::Ordering::Acquire) => Some((
                    Err(std::io::Error::other(
                        "the caller stopped reading the stream",
                    )),
                    None,
                )),
                None => None,
            }
        }
    })
}

/// Reads the relay into `tx` until its end, its cut, the caller's leaving, or its deadline.
async fn pump(
    mut relay: Box<call::Relay>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    stalled: Arc<std::sync::atomic::AtomicBool>,
    conn: Option<ConnSlot>,
    mut events: Option<super::messages::events::Events>,
) {
    let deadline = relay.stream.deadline();
    // The call's span keeps the answer's tool calls only when it keeps messages at all.
    let keep_answer = relay
        .open
        .as_ref()
        .is_some_and(|o| o.gw.tracer.capture == crate::trace::Capture::Full);
    loop {
        let (frame, last) = match relay.stream.next().await {
            Some(Ok(frame)) => {
                if keep_answer {
                    relay.seen.observe(&frame);
                }
                match &mut events {
                    None => (frame, false),
                    Some(ev) => {
                        let said = if relay.stream.is_native() {
                            relay.stream.take_native()
                        } else {
                            ev.frame(&frame, || relay.stream.usage())
                        };
                        if said.is_empty() {
                            continue; // a usage chunk: it closes the stream's message_delta
                        }
                        (said, false)
                    }
                }
            }
            Some(Err(e)) => {
                let msg = e.to_string();
                relay.finish("cut", Some(msg.clone()));
                let message = format!("the upstream stream broke off: {msg}");
                let frame = match events {
                    None => {
                        let body = json!({"error": {"message": message,
                            "type": "api_error", "param": null, "code": "upstream_cut"}});
                        format!("data: {body}\n\n")
                    }
                    Some(_) => super::messages::events::event(
                        &json!({"type": "error", "error": {"type": "api_error", "message": message}}),
                    ),
                };
                (Bytes::from(frame), true)
            }
            None => {
                relay.finish("ok", None);
                return;
            }
        };
        match tokio::time::timeout_at(deadline, tx.send(frame)).await {
            Ok(Ok(())) if last => return,
            Ok(Ok(())) => {}
            // The caller hung up: dropping the relay writes its receipt (`cut`, saying so).
            Ok(Err(_)) => return,
            Err(_) => {
                stalled.store(true, std::sync::atomic::Ordering::Release);
                relay.finish(
                    "cut",
                    Some(format!(
                        "the caller stopped reading the stream: it was cut at its deadline \
                         ({:.0} s, the provider's timeout_s)",
                        relay.stream.total().as_secs_f64()
                    )),
                );
                if let Some(c) = conn {
                    c.close();
                }
                return;
            }
        }
    }
}
