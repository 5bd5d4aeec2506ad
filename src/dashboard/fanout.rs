//! Framing each event once for every client.
//!
//! A server's WebSocket frames are not masked, so the bytes of an event's frame are the same
//! for every client. One task per dashboard takes the hub's events, frames them, and joins
//! those that arrive within a coalescing window into one [`Batch`]: a single shared buffer
//! every client writes to its socket with one system call. The per-client work per event is
//! then nothing at all (a thousand clients at a thousand events a second would otherwise
//! frame and copy a million messages a second); a quiet stream is still sent at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::events::{Hub, Published, Since};

/// Events are gathered for at most this long after a batch went out, while they stream in
/// (a quiet stream's first event goes at once).
const COALESCE: Duration = Duration::from_millis(25);
/// Events in one batch, at most.
const BATCH: usize = 1024;
/// Bytes of frames in one batch: past this the batch goes out and the next begins.
const BATCH_BYTES: usize = 512 * 1024;
/// Batches the channel keeps for a slow client before it must resync: some 6 s of a busy
/// stream (40 batches a second), and at most 128 MiB held however large the events.
const KEEP: usize = 256;

/// WebSocket opcodes a server sends.
pub(crate) const TEXT: u8 = 0x1;
pub(crate) const CLOSE: u8 = 0x8;
pub(crate) const PING: u8 = 0x9;
pub(crate) const PONG: u8 = 0xA;

/// Consecutive events, framed: `bytes` holds each event's whole frame, in seq order.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Each event's seq and where its frame starts in `bytes`.
    starts: Vec<(u64, usize)>,
    pub bytes: Bytes,
    /// The hub's ring no longer holds events the fan-out missed: clients must resync.
    pub gap: bool,
}

impl Batch {
    /// The seq of the first and last event.
    pub fn seqs(&self) -> Option<(u64, u64)> {
        Some((self.starts.first()?.0, self.starts.last()?.0))
    }

    /// The frames of the events after `last`, or `None` when the batch starts further on
    /// than `last + 1` (something is missing).
    pub fn after(&self, last: u64) -> Option<Bytes> {
        let (first, _) = self.seqs()?;
        if first > last + 1 {
            return None;
        }
        let from = self.starts.iter().find(|(seq, _)| *seq > last);
        Some(from.map_or_else(Bytes::new, |&(_, at)| self.bytes.slice(at..)))
    }
}

/// Appends one unmasked, final frame of `opcode` holding `payload`.
pub(crate) fn put_frame(out: &mut BytesMut, opcode: u8, payload: &[u8]) {
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.put_u8(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.put_slice(payload);
}

/// One frame as bytes.
pub(crate) fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    put_frame(&mut out, opcode, payload);
    out.freeze()
}

/// Starts the fan-out task; clients subscribe to the sender it returns. Call from within
/// the runtime.
pub(crate) fn start(hub: Arc<Hub>) -> broadcast::Sender<Arc<Batch>> {
    let (tx, _) = broadcast::channel(KEEP);
    // Subscribed here, not when the task first runs: the first client's snapshot is taken
    // after this returns, and every event after it must reach a batch.
    let (last, live) = hub.subscribe();
    tokio::spawn(run(hub, tx.clone(), last, live));
    tx
}

async fn run(
    hub: Arc<Hub>,
    out: broadcast::Sender<Arc<Batch>>,
    mut last: u64,
    mut live: broadcast::Receiver<Arc<Published>>,
) {
    let mut sent_at = tokio::time::Instant::now() - COALESCE;
    loop {
        let first = match live.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(_)) => {
                // The hub outran even this task: fetch what was missed from its ring.
                let (_, again) = hub.subscribe();
                live = again;
                let (missed, gap) = match hub.since(last) {
                    Since::Events(events) => (events, false),
                    Since::TooOld => (Vec::new(), true),
                };
                // In batches of the usual size, so the channel's bound on what it holds
                // stays true while catching up.
                for chunk in chunks(&missed) {
                    if let Some(batch) = frame_batch(chunk, &mut last) {
                        let _ = out.send(Arc::new(batch));
                    }
                }
                if gap {
                    let _ = out.send(Arc::new(Batch::gap()));
                }
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let since = sent_at.elapsed();
        if since < COALESCE {
            tokio::time::sleep(COALESCE - since).await;
        }
        let mut bytes = first.json.len();
        let mut events = vec![first];
        while has_room(events.len(), bytes) {
            match live.try_recv() {
                Ok(e) => {
                    bytes += e.json.len();
                    events.push(e);
                }
                // Take what was missed from the ring on the next turn.
                Err(TryRecvError::Lagged(_)) => break,
                Err(_) => break,
            }
        }
        if let Some(batch) = frame_batch(&events, &mut last) {
            // No subscriber is fine: nobody is watching.
            let _ = out.send(Arc::new(batch));
        }
        sent_at = tokio::time::Instant::now();
    }
}

/// Whether a batch of `n` events and `bytes` bytes takes one more: the one rule of a
/// batch's size, live and catching up alike.
fn has_room(n: usize, bytes: usize) -> bool {
    n < BATCH && bytes < BATCH_BYTES
}

/// Splits events into runs of at most [`BATCH`] events and about [`BATCH_BYTES`] bytes.
fn chunks(events: &[Arc<Published>]) -> impl Iterator<Item = &[Arc<Published>]> {
    let mut rest = events;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut n = 0;
        while n < rest.len() && (n == 0 || has_room(n, bytes)) {
            bytes += rest[n].json.len();
            n += 1;
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

impl Batch {
    /// A batch that tells every client events were lost before it.
    fn gap() -> Batch {
        Batch {
            starts: Vec::new(),
            bytes: Bytes::new(),
            gap: true,
        }
    }
}

/// Frames the events after `last` (moving it on).
fn frame_batch(events: &[Arc<Published>], last: &mut u64) -> Option<Batch> {
    let fresh: Vec<&Arc<Published>> = events.iter().filter(|e| e.seq > *last).collect();
    let size: usize = fresh.iter().map(|e| e.json.len() + 10).sum();
    let mut bytes = BytesMut::with_capacity(size);
    let mut starts = Vec::with_capacity(fresh.len());
    for e in fresh {
        starts.push((e.seq, bytes.len()));
        put_frame(&mut bytes, TEXT, e.json.as_bytes());
        *last = e.seq;
    }
    (!starts.is_empty()).then(|| Batch {
        starts,
        bytes: bytes.freeze(),
        gap: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_length_in_the_smallest_form() {
        assert_eq!(&frame(TEXT, b"hi")[..], &[0x81, 2, b'h', b'i']);
        let mid = frame(TEXT, &[b'x'; 300]);
        assert_eq!(&mid[..4], &[0x81, 126, 1, 44]);
        assert_eq!(mid.len(), 304);
        let big = frame(TEXT, &vec![b'x'; 70_000]);
        assert_eq!(&big[..2], &[0x81, 127]);
        assert_eq!(u64::from_be_bytes(big[2..10].try_into().unwrap()), 70_000);
    }

    #[test]
    fn catching_up_keeps_to_the_batch_limits() {
        let hub = Hub::with_capacity(0, None, 3000);
        let pad = "x".repeat(200 * 1024);
        for i in 0..7 {
            hub.emit(chrono::Utc::now(), crate::events::up(&format!("{i}{pad}")));
        }
        let Since::Events(events) = hub.since(0) else {
            panic!("the ring holds them")
        };
        // 200 KiB each: a run closes once it reaches 512 KiB, so at three events.
        let sizes: Vec<usize> = chunks(&events).map(<[_]>::len).collect();
        assert_eq!(sizes, vec![3, 3, 1]);
        for i in 0..2500 {
            hub.emit(chrono::Utc::now(), crate::events::up(&i.to_string()));
        }
        let Since::Events(events) = hub.since(7) else {
            panic!("the ring holds them")
        };
        let sizes: Vec<usize> = chunks(&events).map(<[_]>::len).collect();
        assert_eq!(sizes, vec![BATCH, BATCH, 2500 - 2 * BATCH]);
    }

    #[test]
    fn a_batch_gives_each_client_the_events_it_lacks() {
        let hub = Hub::with_capacity(0, None, 100);
        for i in 0..3 {
            hub.emit(chrono::Utc::now(), crate::events::up(&i.to_string()));
        }
        let Since::Events(events) = hub.since(0) else {
            panic!("the ring holds them")
        };
        let mut last = 0;
        let batch = frame_batch(&events, &mut last).unwrap();
        assert_eq!((batch.seqs(), last), (Some((1, 3)), 3));
        assert_eq!(batch.after(0).unwrap(), batch.bytes);
        let tail = batch.after(2).unwrap();
        assert_eq!(&tail[..], &frame(TEXT, events[2].json.as_bytes())[..]);
        assert!(
            batch.after(3).unwrap().is_empty(),
            "a client past it gets nothing"
        );
        let later = frame_batch(&events[2..], &mut 2).unwrap();
        assert!(
            later.after(0).is_none(),
            "a client missing seq 1 and 2 must resync"
        );
    }
}
