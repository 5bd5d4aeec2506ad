//! The event stream (SPEC section 11): one numbered sequence of everything that happens,
//! shared by the engine (jobs, agents, tokens) and the gateway (receipts, budget alerts).
//!
//! Each event gets the next `seq` under one lock, so the order in the ring buffer, on the
//! live channel and in the database is the same. The ring keeps the recent past for
//! clients that reconnect with `?since=N`; the database keeps all of it. Each event is
//! serialised to its wire JSON once, here, rather than once per listening client.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::store::db::{self, EventRow, Record};

mod event;
pub use event::*;

/// How many recent events the hub keeps for reconnecting clients.
pub const RING: usize = 10_000;

/// One published event in its wire form (the database has the row).
#[derive(Debug)]
pub struct Published {
    pub seq: u64,
    pub kind: &'static str,
    /// `{"data": {...}, "seq": n, "ts": "...", "type": "..."}`.
    pub json: String,
}

/// What `since` found.
#[derive(Debug)]
pub enum Since {
    /// Every event after the asked-for seq, in order (maybe none).
    Events(Vec<Arc<Published>>),
    /// The buffer no longer reaches back that far: take a fresh snapshot.
    TooOld,
}

struct State {
    seq: u64,
    ring: VecDeque<Arc<Published>>,
    /// Events published by this process, per kind (for `/metrics`).
    counts: BTreeMap<&'static str, u64>,
}

/// The hub; shared as `Arc<Hub>` by the engine thread and the servers.
pub struct Hub {
    state: Mutex<State>,
    live: broadcast::Sender<Arc<Published>>,
    db: Option<db::Sink>,
    capacity: usize,
}

impl Hub {
    /// A hub continuing after `seq` (the last one stored), writing events to `db`.
    pub fn new(seq: u64, db: Option<db::Sink>) -> Hub {
        Hub::with_capacity(seq, db, RING)
    }

    /// As [`Hub::new`] with a ring of `capacity` events (tests use small ones).
    pub fn with_capacity(seq: u64, db: Option<db::Sink>, capacity: usize) -> Hub {
        let (live, _) = broadcast::channel(4096);
        Hub {
            state: Mutex::new(State {
                seq,
                ring: VecDeque::with_capacity(capacity.min(1024)),
                counts: BTreeMap::new(),
            }),
            live,
            db,
            capacity: capacity.max(1),
        }
    }

    /// Publishes one event and returns its seq.
    ///
    /// Every emitting thread (the engine, the gateway's, the span thread) waits on the one
    /// lock, so the costly parts, the payload's and the time's text, are made before it:
    /// under it are only the seq, the envelope around that text, and handing the row on.
    pub fn emit(&self, ts: DateTime<Utc>, event: Event) -> u64 {
        let kind = event.kind();
        let data = event.data();
        let data_text = data.to_string();
        let ts_text = ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.seq += 1;
        let seq = st.seq;
        *st.counts.entry(kind).or_default() += 1;
        let event = Arc::new(Published {
            seq,
            kind,
            json: envelope(seq, &ts_text, kind, &data_text),
        });
        if st.ring.len() == self.capacity {
            st.ring.pop_front();
        }
        st.ring.push_back(event.clone());
        // No receiver is fine: nobody is watching.
        let _ = self.live.send(event);
        tracing::debug!(seq, kind, data = %data_text, "event");
        if let Some(db) = &self.db {
            // Sent under the lock, so the database gets the events in seq order.
            db.send(Record::Event(EventRow {
                seq,
                ts,
                kind: kind.to_string(),
                data,
            }));
        }
        seq
    }

    /// The seq of the last event published.
    pub fn seq(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).seq
    }

    /// How many events of each kind this process published (every kind, zeros too).
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Event::KINDS
            .iter()
            .map(|k| (*k, st.counts.get(k).copied().unwrap_or(0)))
            .collect()
    }

    /// The events after `since`, if the ring still holds them all.
    pub fn since(&self, since: u64) -> Since {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if since >= st.seq {
            return Since::Events(Vec::new());
        }
        let oldest = st.ring.front().map_or(st.seq + 1, |e| e.seq);
        if since + 1 < oldest {
            return Since::TooOld;
        }
        let skip = (since + 1 - oldest) as usize;
        Since::Events(st.ring.iter().skip(skip).cloned().collect())
    }

    /// Live events from now on, with the seq they follow: nothing between the two is
    /// missed, because both are taken under the lock `emit` holds.
    pub fn subscribe(&self) -> (u64, broadcast::Receiver<Arc<Published>>) {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (st.seq, self.live.subscribe())
    }
}

/// The SPEC's wire shape of an event.
pub fn wire_json(row: &EventRow) -> String {
    let ts = row.ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    envelope(row.seq, &ts, &row.kind, &row.data.to_string())
}

/// `{"data":..,"seq":..,"ts":..,"type":..}` around a payload already in JSON text: keys in
/// the order serde_json's maps write them, so a row read back is sent as it was live.
fn envelope(seq: u64, ts: &str, kind: &str, data: &str) -> String {
    let kind = serde_json::Value::from(kind);
    format!(r#"{{"data":{data},"seq":{seq},"ts":"{ts}","type":{kind}}}"#)
}

/// An `agent.up` event: what tests emit when the kind does not matter.
#[cfg(test)]
pub(crate) fn up(agent: &str) -> Event {
    Event::AgentUp(AgentUp {
        agent: agent.into(),
        last_seen: Utc::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(s: Since) -> Vec<u64> {
        match s {
            Since::Events(v) => v.iter().map(|e| e.seq).collect(),
            Since::TooOld => panic!("too old"),
        }
    }

    #[test]
    fn the_envelope_is_what_serde_json_writes_for_the_row() {
        let row = EventRow {
            seq: 7,
            ts: "2026-12-07T23:59:59.123Z".parse().unwrap(),
            kind: "job.\"odd\"".into(),
            data: serde_json::json!({"z": 1, "a": "<b>\u{e9}\n", "m": [1.5, null]}),
        };
        let by_serde = serde_json::json!({
            "seq": row.seq,
            "ts": "2026-12-07T23:59:59.123Z",
            "type": row.kind,
            "data": row.data,
        })
        .to_string();
        assert_eq!(wire_json(&row), by_serde);
    }

    #[test]
    fn seq_continues_and_since_reads_the_ring() {
        let hub = Hub::with_capacity(41, None, 3);
        for i in 0..5 {
            assert_eq!(hub.emit(Utc::now(), up(&format!("a{i}"))), 42 + i);
        }
        assert!(hub.counts().contains(&("agent.up", 5)));
        assert_eq!(hub.seq(), 46);
        assert_eq!(seqs(hub.since(44)), vec![45, 46]);
        assert_eq!(seqs(hub.since(43)), vec![44, 45, 46]);
        assert!(matches!(hub.since(42), Since::TooOld));
        assert!(seqs(hub.since(46)).is_empty());
        assert!(seqs(hub.since(99)).is_empty());
    }

    #[test]
    fn wire_shape_has_seq_ts_type_data() {
        let hub = Hub::new(0, None);
        let (at, mut rx) = hub.subscribe();
        assert_eq!(at, 0);
        hub.emit(
            Utc::now(),
            Event::TraceRejected(TraceRejected {
                source: "a".into(),
                reason: "r".into(),
            }),
        );
        let e = rx.try_recv().expect("live event");
        let v: serde_json::Value = serde_json::from_str(&e.json).unwrap();
        assert_eq!(v["seq"], 1);
        assert_eq!(v["type"], "trace.rejected");
        assert_eq!(v["data"]["source"], "a");
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }
}
