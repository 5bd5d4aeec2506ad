//! `pas bench agents`: liveness at scale.
//!
//! A scratch workspace gets `--agents` agents (default 1,000) that beat every
//! `--interval` seconds, spread evenly over the interval, each beat one `O_APPEND` write
//! of a JSON line as an agent would make it. Beside them run two small groups whose
//! timings are read back from the telemetry database afterwards:
//!
//! - probes (interval 0.5 s) fall silent long enough to go down, then beat: the time from
//!   that beat's `ts` to the daemon's `agent.up` event is the beat-to-state lag;
//! - victims (interval 0.5 s) hold one card each and stop beating half-way: the time from
//!   their third missed interval to the `assigned -> inbox` transition is the take-back
//!   time.
//!
//! The daemon's CPU share is read from `/proc/<pid>/stat` over the measured window, its
//! memory from `/proc/<pid>/status`.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{machine_noise, percentile, scratch, wait_for, BenchArgs, Daemon};
use crate::card::State;
use crate::workspace::Workspace;

const PROBES: usize = 20;
const VICTIMS: usize = 10;
/// Interval of probes and victims: short, so a run sees many verdicts.
const SHORT: f64 = 0.5;

/// Appends one beat line to `dir/<agent>.jsonl`; returns its `ts` (to the millisecond).
fn beat(dir: &Path, agent: &str, ctx_used: u64) -> std::io::Result<DateTime<Utc>> {
    let ts = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    let line = format!(
        "{{\"ts\":\"{}\",\"status\":\"running\",\"ctx_used\":{ctx_used},\"ctx_limit\":200000}}\n",
        ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{agent}.jsonl")))?;
    f.write_all(line.as_bytes())?;
    Ok(ts)
}

fn register(ws: &Workspace, name: &str, interval: Option<f64>, slots: u32) -> Result<()> {
    let reg = crate::agent::Registration {
        name: Some(name.to_string()),
        epoch: 1,
        registered_at: Some(Utc::now()),
        max_concurrent: Some(slots),
        heartbeat_interval_s: interval,
        ..Default::default()
    };
    crate::fsops::write_atomic(&ws.registration_path(name), reg.to_yaml().as_bytes(), false)?;
    Ok(())
}

/// (user + system CPU seconds) of a process.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ", field 3 (state) is index 0: utime is field 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / tick)
}

/// A thread that runs `body` until `stop` is set.
fn spawn(
    stop: &Arc<AtomicBool>,
    body: impl FnOnce(&AtomicBool) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let stop = stop.clone();
    std::thread::spawn(move || body(&stop))
}

/// Sleeps until `due`, or returns false at once when `stop` is set.
fn sleep_until(due: Instant, stop: &AtomicBool) -> bool {
    while let Some(left) = due.checked_duration_since(Instant::now()) {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    !stop.load(Ordering::Relaxed)
}

pub fn agents(args: &BenchArgs) -> Result<i32> {
    let n = args.agents.unwrap_or(1000);
    let interval = args.interval;
    let noise = machine_noise();
    eprintln!(
        "machine noise (spin loop of fixed work, 20 runs): median {:.2} ms, min {:.2}, max {:.2}",
        noise.1, noise.0, noise.2
    );
    let (_dir, ws) = scratch(args.dir.as_deref(), 0, 1, args)?;
    let mut cfg = std::fs::read_to_string(ws.config_path())?;
    cfg.push_str(&format!("heartbeat_interval_s: {interval}\n"));
    std::fs::write(ws.config_path(), cfg)?;
    let beats_dir = ws.heartbeats();
    std::fs::create_dir_all(&beats_dir)?;
    let names: Vec<String> = (0..n).map(|i| format!("agent-{i:04}")).collect();
    for name in &names {
        register(&ws, name, None, 0)?;
        beat(&beats_dir, name, 0)?;
    }
    for i in 0..PROBES {
        register(&ws, &format!("probe-{i:02}"), Some(SHORT), 0)?;
    }
    let inbox = ws.state_dir(State::Inbox);
    for i in 0..VICTIMS {
        let name = format!("victim-{i:02}");
        register(&ws, &name, Some(SHORT), 1)?;
        beat(&beats_dir, &name, 0)?;
        std::fs::write(
            inbox.join(format!("V{i:02}.yaml")),
            format!("title: held by {name}\nassignee: {name}\n"),
        )?;
    }

    let daemon = Daemon::start_quiet(&ws.root)?;
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));

    // The crowd: every agent once per interval, spread evenly.
    let crowd = {
        let (dir, names, written) = (beats_dir.clone(), names.clone(), written.clone());
        spawn(&stop, move |stop| {
            let start = Instant::now();
            let step = Duration::from_secs_f64(interval / names.len().max(1) as f64);
            let mut k: u64 = 0;
            'outer: loop {
                for (i, name) in names.iter().enumerate() {
                    let slot = k as u32 * names.len() as u32 + i as u32;
                    if !sleep_until(start + step * slot, stop) {
                        break 'outer;
                    }
                    if beat(&dir, name, 1000 + k * 10).is_ok() {
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                }
                k += 1;
            }
        })
    };
    // Victims beat until told to stop; their last beat times come back.
    let victims_stop = Arc::new(AtomicBool::new(false));
    let victims = {
        let dir = beats_dir.clone();
        let vs = victims_stop.clone();
        std::thread::spawn(move || {
            let mut last = vec![Utc::now(); VICTIMS];
            while !vs.load(Ordering::SeqCst) {
                for (i, l) in last.iter_mut().enumerate() {
                    if let Ok(ts) = beat(&dir, &format!("victim-{i:02}"), 0) {
                        *l = ts;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            last
        })
    };
    // Probes: silent for 2.5 intervals (down after 2), then one beat (up again).
    let probes = {
        let dir = beats_dir.clone();
        spawn(&stop, move |stop| {
            let start = Instant::now();
            let cycle = Duration::from_secs_f64(SHORT * 2.5);
            let offset = cycle / PROBES as u32;
            let mut k = 0u32;
            'outer: loop {
                for i in 0..PROBES {
                    if !sleep_until(start + cycle * k + offset * i as u32, stop) {
                        break 'outer;
                    }
                    let _ = beat(&dir, &format!("probe-{i:02}"), 0);
                }
                k += 1;
            }
        })
    };

    let assigned = ws.state_dir(State::Assigned);
    wait_for(
        Duration::from_secs(30),
        "the victims' cards assigned",
        || {
            (0..VICTIMS).all(|i| {
                assigned
                    .join(format!("victim-{i:02}/V{i:02}.yaml"))
                    .exists()
            })
        },
    )?;
    std::thread::sleep(Duration::from_secs(2)); // warm-up
    let pid = daemon.pid();
    let (cpu0, t0, w0) = (
        cpu_seconds(pid).context("cannot read the daemon's CPU time")?,
        Instant::now(),
        written.load(Ordering::Relaxed),
    );
    let window = Duration::from_secs(u64::from(args.seconds));
    std::thread::sleep(window / 2);
    victims_stop.store(true, Ordering::SeqCst);
    let victim_last = victims.join().unwrap_or_default();
    std::thread::sleep(window / 2);
    let (cpu1, t1, w1) = (
        cpu_seconds(pid).context("cannot read the daemon's CPU time")?,
        Instant::now(),
        written.load(Ordering::Relaxed),
    );
    let rss_kib = super::vm_kib(pid, "VmRSS:");
    let hwm_kib = super::vm_kib(pid, "VmHWM:");
    wait_for(
        Duration::from_secs(30),
        "the victims' cards back in the inbox",
        || (0..VICTIMS).all(|i| inbox.join(format!("V{i:02}.yaml")).exists()),
    )?;
    stop.store(true, Ordering::SeqCst);
    let _ = crowd.join();
    let _ = probes.join();
    drop(daemon); // SIGTERM: the telemetry writer drains before it exits

    let wall = (t1 - t0).as_secs_f64();
    let cpu_pct = (cpu1 - cpu0) / wall * 100.0;
    let beats_per_s = (w1 - w0) as f64 / wall;
    let (lags, takebacks) = read_timings(&ws.db_path(), &victim_last)?;
    let r = json!({
        "bench": "agents",
        "agents": n,
        "interval_s": interval,
        "window_s": wall,
        "beats_per_s": beats_per_s,
        "daemon_cpu_pct_of_one_core": cpu_pct,
        "daemon_rss_mb": rss_kib.map(|k| k / 1024.0),
        "daemon_peak_rss_mb": hwm_kib.map(|k| k / 1024.0),
        "beat_to_state_ms": summary(&lags),
        "takeback_after_third_interval_ms": summary(&takebacks),
        "noise_ms": {"min": noise.0, "median": noise.1, "max": noise.2},
    });
    eprintln!(
        "{n} agents beating every {interval} s ({beats_per_s:.0} beats/s) for {wall:.1} s: daemon CPU {cpu_pct:.2} % of one core, RSS {:.1} MiB (peak {:.1})",
        rss_kib.unwrap_or(f64::NAN) / 1024.0,
        hwm_kib.unwrap_or(f64::NAN) / 1024.0,
    );
    eprintln!(
        "beat-to-state lag (agent.up after a beat, {} samples): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lags.len(),
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(f64::NAN)
    );
    eprintln!(
        "take-back after the third missed interval ({} cards): p50 {:.1} ms, max {:.1} ms",
        takebacks.len(),
        percentile(&takebacks, 0.5),
        takebacks.last().copied().unwrap_or(f64::NAN)
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    Ok(0)
}

fn summary(sorted: &[f64]) -> serde_json::Value {
    json!({
        "samples": sorted.len(),
        "p50": percentile(sorted, 0.5),
        "p99": percentile(sorted, 0.99),
        "max": sorted.last(),
    })
}

/// From the telemetry database: the probes' beat-to-`agent.up` lags, and the victims'
/// take-back times after their third missed interval; both sorted, in ms.
fn read_timings(db: &Path, victim_last: &[DateTime<Utc>]) -> Result<(Vec<f64>, Vec<f64>)> {
    let conn = crate::store::db::open_read_only(db)?.context("no telemetry database")?;
    let parse = |s: &str| DateTime::parse_from_rfc3339(s).map(|t| t.to_utc());
    let mut lags = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT ts, json_extract(data, '$.last_seen') FROM events
         WHERE kind = 'agent.up' AND json_extract(data, '$.agent') LIKE 'probe-%'",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (at, seen) = row?;
        if let (Ok(at), Ok(seen)) = (parse(&at), parse(&seen)) {
            lags.push((at - seen).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
    }
    let mut takebacks = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT from_state, ts FROM transitions
         WHERE from_state LIKE 'assigned/victim-%' AND to_state = 'inbox'",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (from, at) = row?;
        let i: Option<usize> = from
            .strip_prefix("assigned/victim-")
            .and_then(|s| s.parse().ok());
        if let (Some(last), Ok(at)) = (i.and_then(|i| victim_last.get(i)), parse(&at)) {
            let due = *last + crate::liveness::intervals(3.0, SHORT);
            takebacks.push((at - due).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
    }
    lags.sort_by(f64::total_cmp);
    takebacks.sort_by(f64::total_cmp);
    Ok((lags, takebacks))
}
