//! The liveness fixture: heartbeat lines written as an agent writes them, a thread that
//! beats on, and the daemon's events read back from the database.

use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::workspace::{wait_until, Workspace, WAIT};

/// Appends one beat line (with `extra` JSON fields) to an agent's heartbeat file.
pub fn beat(ws: &Workspace, agent: &str, extra: &str) -> DateTime<Utc> {
    beat_at(ws, agent, Utc::now(), extra)
}

/// Appends a beat dated `at` (a silence that already happened, without waiting it out).
pub fn beat_at(ws: &Workspace, agent: &str, at: DateTime<Utc>, extra: &str) -> DateTime<Utc> {
    let now = DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap();
    let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let sep = if extra.is_empty() { "" } else { "," };
    append(ws, agent, &format!("{{\"ts\":\"{ts}\"{sep}{extra}}}\n"));
    now
}

/// Appends raw bytes to an agent's heartbeat file.
pub fn append(ws: &Workspace, agent: &str, text: &str) {
    let dir = ws.work("heartbeats");
    fs::create_dir_all(&dir).unwrap();
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{agent}.jsonl")))
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// An agent process that beats every `every` until stopped (or dropped).
pub struct Beater {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<DateTime<Utc>>>,
}
impl Beater {
    pub fn start(ws: &Workspace, agent: &str, every: Duration) -> Beater {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, dir, agent) = (stop.clone(), ws.work("heartbeats"), agent.to_string());
        let thread = std::thread::spawn(move || {
            let mut last = Utc::now();
            while !flag.load(Ordering::SeqCst) {
                // The beat's ts as written: to the millisecond.
                last = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
                let ts = last.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                fs::create_dir_all(&dir).unwrap();
                let mut f = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{agent}.jsonl")))
                    .unwrap();
                f.write_all(format!("{{\"ts\":\"{ts}\",\"status\":\"running\"}}\n").as_bytes())
                    .unwrap();
                std::thread::sleep(every);
            }
            last
        });
        Beater {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops beating; returns the time of the last beat.
    pub fn stop(mut self) -> DateTime<Utc> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}
impl Drop for Beater {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The events of one kind, oldest first: (ts, data).
pub fn events(ws: &Workspace, kind: &str) -> Vec<(DateTime<Utc>, Value)> {
    if !ws.path("telemetry/pas.db").exists() {
        return Vec::new();
    }
    ws.db_query(
        &format!("SELECT ts, data FROM events WHERE kind = '{kind}' ORDER BY seq"),
        |r| {
            let ts: String = r.get(0)?;
            let data: String = r.get(1)?;
            Ok((
                DateTime::parse_from_rfc3339(&ts).unwrap().to_utc(),
                serde_json::from_str(&data).unwrap(),
            ))
        },
    )
}

/// Waits for the `n`th event of `kind` about `agent`.
pub fn wait_event(ws: &Workspace, kind: &str, agent: &str, n: usize) -> (DateTime<Utc>, Value) {
    wait_until(&format!("{kind} event #{n} for {agent}"), WAIT, || {
        let mine: Vec<_> = events(ws, kind)
            .into_iter()
            .filter(|(_, d)| d["agent"] == agent)
            .collect();
        mine.get(n - 1)
            .cloned()
            .ok_or_else(|| format!("{} so far", mine.len()))
    })
}
