//! `pas bench dashboard`: many WebSocket clients on `/ws` while cards arrive at a steady
//! rate. For every card the time from its rename into `work/inbox/` to its `job.created`
//! message at each client (p50/p99/max), messages lost (seq gaps and missing cards, must be
//! 0), resyncs, and the daemon's peak RSS.
//!
//! The clients run in this process on one thread (the daemon keeps the other core), so
//! the figures include the clients' own cost: a worst case for the server's fan-out.
//! Messages are read with a substring scan, not a JSON parse, for the same reason.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use super::{drop_card, machine_noise, percentile, scratch, BenchArgs, Daemon};

/// What one client saw.
#[derive(Default)]
struct Seen {
    /// Rename-to-message latencies, microseconds.
    latencies_us: Vec<u32>,
    /// Event-to-message latencies (the event's `ts` to arrival, wall clock), microseconds:
    /// the dashboard's fan-out alone, without the daemon's rename-to-event time.
    fanout_us: Vec<u32>,
    cards: u64,
    gaps: u64,
    resyncs: u64,
}

pub fn dashboard(args: &BenchArgs) -> Result<i32> {
    let clients = args.clients;
    let rate = args.events_per_s.max(1);
    let n = (rate as usize) * (args.seconds as usize);
    let noise = machine_noise();
    eprintln!(
        "machine noise (spin loop of fixed work, 20 runs): median {:.2} ms, min {:.2}, max {:.2}",
        noise.1, noise.0, noise.2
    );
    let (_dir, ws) = scratch(args.dir.as_deref(), 0, 1, args)?;
    let daemon = Daemon::start_quiet(&ws.root)?;
    let addr = std::fs::read_to_string(crate::server::addresses_path(&ws))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["dashboard"].as_str().map(str::to_string))
        .context("the daemon recorded no dashboard address in .pas/serve.json")?;
    let rss_idle = daemon.peak_rss_mb();

    let t0 = Instant::now();
    let dropped: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Connect every client and read its snapshot before the first card.
    let url = format!("ws://{addr}/ws");
    let sockets = rt.block_on(async {
        let mut out = Vec::with_capacity(clients);
        for chunk in (0..clients).collect::<Vec<_>>().chunks(100) {
            let conns = chunk.iter().map(|_| async {
                let (mut s, _) = tokio_tungstenite::connect_async(&url).await?;
                // The snapshot.
                let first = tokio::time::timeout(Duration::from_secs(30), s.next()).await;
                match first {
                    Ok(Some(Ok(Message::Text(t)))) if t.contains("\"snapshot\"") => {
                        let seq = field_u64(&t, "\"seq\":").unwrap_or(0);
                        Ok::<_, anyhow::Error>((s, seq))
                    }
                    other => bail!("no snapshot on connect: {other:?}"),
                }
            });
            for r in futures_util::future::join_all(conns).await {
                out.push(r?);
            }
        }
        Ok::<_, anyhow::Error>(out)
    })?;
    eprintln!(
        "{clients} clients connected in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // The producer drops cards at the rate, recording each rename's time.
    let inbox = ws.state_dir(crate::card::State::Inbox);
    let producer = {
        let dropped = dropped.clone();
        std::thread::spawn(move || -> Result<()> {
            let start = Instant::now();
            for i in 0..n {
                let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                drop_card(&inbox, &format!("D{i:07}"))?;
                dropped[i].store(t0.elapsed().as_micros() as u64 + 1, Ordering::Release);
            }
            Ok(())
        })
    };

    let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(args.seconds) + 60);
    let tasks = rt.block_on(async {
        let mut handles = Vec::new();
        for (k, (s, mut last)) in sockets.into_iter().enumerate() {
            let dropped = dropped.clone();
            // Timestamps are parsed on a sample of clients only (the parse costs CPU).
            let sample = k < 50;
            handles.push(tokio::spawn(async move {
                let mut seen = Seen::default();
                // After the snapshot nothing else was in flight, so the raw socket holds
                // the stream from here: frames are cut by hand (server frames are
                // unmasked), far cheaper than a full client per message.
                let tokio_tungstenite::MaybeTlsStream::Plain(mut tcp) = s.into_inner() else {
                    return seen;
                };
                let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
                'read: while seen.cards < n as u64 {
                    // Resynced clients never see every card (their snapshots hold some):
                    // everyone stops at the deadline at the latest.
                    match tokio::time::timeout_at(deadline, tcp.read_buf(&mut buf)).await {
                        Ok(Ok(k)) if k > 0 => {}
                        _ => break,
                    }
                    let at = t0.elapsed().as_micros() as u64;
                    let mut used = 0;
                    while let Some((op, head, total)) = frame_at(&buf[used..]) {
                        let payload = &buf[used + head..used + total];
                        used += total;
                        match op {
                            1 => {
                                if let Ok(t) = std::str::from_utf8(payload) {
                                    on_text(t, at, sample, &dropped, &mut seen, &mut last);
                                }
                            }
                            8 => break 'read,
                            _ => {} // ping: the server does not require the pong
                        }
                    }
                    buf.drain(..used);
                }
                seen
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.push(h.await.unwrap_or_default());
        }
        all
    });
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
    let rss = daemon.peak_rss_mb();

    let mut lat: Vec<f64> = tasks
        .iter()
        .flat_map(|s| s.latencies_us.iter().map(|u| f64::from(*u) / 1000.0))
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let mut fan: Vec<f64> = tasks
        .iter()
        .flat_map(|s| s.fanout_us.iter().map(|u| f64::from(*u) / 1000.0))
        .collect();
    fan.sort_by(|a, b| a.total_cmp(b));
    let expected = (n as u64) * clients as u64;
    let received: u64 = tasks.iter().map(|s| s.cards).sum();
    let gaps: u64 = tasks.iter().map(|s| s.gaps).sum();
    let resyncs: u64 = tasks.iter().map(|s| s.resyncs).sum();
    // Lost: a seq skipped without a snapshot, or a card never seen by a client that was
    // never resynced (a resync's snapshot carries what it replaced).
    let lost: u64 = gaps
        + tasks
            .iter()
            .filter(|s| s.resyncs == 0)
            .map(|s| (n as u64).saturating_sub(s.cards))
            .sum::<u64>();
    let result = json!({
        "clients": clients,
        "events_per_s": rate,
        "cards": n,
        "messages_expected": expected,
        "messages_received": received,
        "lost": lost,
        "seq_gaps": gaps,
        "resyncs": resyncs,
        "latency_ms": {
            "p50": percentile(&lat, 0.50),
            "p99": percentile(&lat, 0.99),
            "max": lat.last().copied().unwrap_or(0.0),
        },
        "event_to_client_ms": {
            "p50": percentile(&fan, 0.50),
            "p99": percentile(&fan, 0.99),
            "max": fan.last().copied().unwrap_or(0.0),
        },
        "daemon_peak_rss_mb": rss,
        "daemon_rss_before_clients_mb": rss_idle,
        "noise_ms": {"min": noise.0, "median": noise.1, "max": noise.2},
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "dashboard fan-out: {clients} clients, {rate} events/s for {} s ({n} cards)",
            args.seconds
        );
        println!(
            "  rename -> client: p50 {:.1} ms · p99 {:.1} ms · max {:.1} ms",
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(0.0)
        );
        println!(
            "  event ts -> client (fan-out alone, ms clock): p50 {:.1} ms · p99 {:.1} ms · max {:.1} ms",
            percentile(&fan, 0.50),
            percentile(&fan, 0.99),
            fan.last().copied().unwrap_or(0.0)
        );
        println!(
            "  messages: {received} of {expected} job.created received · lost {lost} · seq gaps {gaps} · resyncs {resyncs}"
        );
        println!(
            "  daemon peak RSS: {:.1} MiB ({:.1} MiB before the clients)",
            rss.unwrap_or(0.0),
            rss_idle.unwrap_or(0.0)
        );
    }
    Ok(0)
}

/// One text message: checks seq continuity and records the card's latencies.
fn on_text(t: &str, at: u64, sample: bool, dropped: &[AtomicU64], seen: &mut Seen, last: &mut u64) {
    if t.contains("\"type\":\"snapshot\"") {
        seen.resyncs += 1;
        *last = field_u64(t, "\"seq\":").unwrap_or(*last);
        return;
    }
    let Some(seq) = field_u64(t, "\"seq\":") else {
        return; // a pong
    };
    if seq != *last + 1 {
        seen.gaps += 1;
    }
    *last = seq;
    if !t.contains("\"type\":\"job.created\"") {
        return;
    }
    if let Some(ts) = field_str(t, "\"ts\":\"").filter(|_| sample) {
        if let Ok(ts) = chrono::DateTime::parse_from_rfc3339(ts) {
            let us = (chrono::Utc::now() - ts.to_utc()).num_microseconds();
            seen.fanout_us
                .push(us.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32);
        }
    }
    if let Some(i) = field_u64(t, "\"id\":\"D") {
        seen.cards += 1;
        let d = dropped
            .get(i as usize)
            .map_or(0, |d| d.load(Ordering::Acquire));
        if d > 0 {
            seen.latencies_us
                .push(at.saturating_sub(d - 1).min(u64::from(u32::MAX)) as u32);
        }
    }
}

/// The frame at the start of `b`, when whole: (opcode, header length, frame length).
fn frame_at(b: &[u8]) -> Option<(u8, usize, usize)> {
    if b.len() < 2 {
        return None;
    }
    let op = b[0] & 0x0f;
    let (len, head) = match b[1] & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(b.get(2..10)?);
            (u64::from_be_bytes(n) as usize, 10)
        }
        l => (l as usize, 2),
    };
    (b.len() >= head + len).then_some((op, head, head + len))
}

/// The string right after `key` (which ends in the opening quote) in `text`.
fn field_str<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(key)? + key.len();
    let rest = &text[at..];
    rest.find('"').map(|end| &rest[..end])
}

/// The unsigned number right after `key` in `text`.
fn field_u64(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: &str = &text[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}
