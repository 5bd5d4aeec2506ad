//! `pas bench history --cards N`: a workspace a year old, and what it costs to use.
//!
//! The history is written with `git fast-import` the way the daemon would have made it over
//! a year: N cards and N commits spread evenly over 365 days, each commit carrying four
//! transitions as pas batches them (a card new, one assigned, one done, one archived a day
//! after it finished, which is `archive.after`), every card's text exactly as pas writes it
//! (its `pas:` block and history built by pas's own functions). At the end the archive
//! holds nearly every card, `done/` a day's worth.
//!
//! Then whole `pas` processes are timed on it: the reading commands, `pas serve` until it
//! answers and its memory, the job page, what one commit writes to `.git`, and cards
//! dropped and assigned on this board against the same on an empty one.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

use super::history::{dashboard_addr, http_get, median, ms, run_git, FastImport};
use super::{drop_card, scratch, wait_for, BenchArgs, Daemon};
use crate::board::{transition_meta, Place};
use crate::card::{Card, State};
use crate::workspace::Workspace;

/// Commits between a card's arrival and its assignment, and its finish.
const ASSIGNED_AFTER: usize = 16;
const DONE_AFTER: usize = 47;

/// The id of card `k`: as long as the ULIDs `pas submit` makes, so trees weigh the same.
fn card_id(k: usize) -> String {
    format!("01JBENCH{k:018}")
}

pub fn year(args: &BenchArgs, cards: usize) -> Result<i32> {
    let runs = args.runs.max(3);
    let (dir, ws) = scratch(args.dir.as_deref(), 1, 1000, args)?;
    // PAS_BENCH_KEEP=1 leaves the year-old workspace behind, to look into.
    let _dir = match std::env::var_os("PAS_BENCH_KEEP") {
        Some(_) => {
            eprintln!("keeping {}", dir.path().display());
            std::mem::forget(dir);
            None
        }
        None => Some(dir),
    };
    // No simulated agent beats here: give the one agent an hour between beats.
    let reg = crate::agent::Registration {
        name: Some("agent-0".into()),
        epoch: 1,
        max_concurrent: Some(2000),
        heartbeat_interval_s: Some(3600.0),
        ..Default::default()
    };
    crate::fsops::write_atomic(
        &ws.registration_path("agent-0"),
        reg.to_yaml().as_bytes(),
        false,
    )?;
    let started = Instant::now();
    generate(&ws, cards)?;
    let generate_s = started.elapsed().as_secs_f64();
    eprintln!("{cards} cards and {cards} commits over a year written in {generate_s:.0} s");
    let git_dir = ws.root.join(".git");
    let as_written = crate::store::git::upkeep::measure(&git_dir);
    run_git(&ws.root, &["repack", "-a", "-d", "-q"])?;
    let packed = crate::store::git::upkeep::measure(&git_dir);

    let exe = std::env::current_exe().context("cannot find the pas binary")?;
    let pas = |args: &[&str]| -> Result<Duration> {
        let t = Instant::now();
        let out = Command::new(&exe)
            .arg("--root")
            .arg(&ws.root)
            .args(args)
            .env("PAS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()?;
        if !out.success() {
            bail!("pas {args:?} failed");
        }
        Ok(t.elapsed())
    };
    let t = Instant::now();
    pas(&["reindex"])?;
    let reindex_ms = ms(t.elapsed());
    eprintln!("pas reindex: {reindex_ms:.0} ms");

    let (oldest, newest) = (card_id(0), card_id(cards - 1));
    let mut reads = Vec::new();
    for (name, argv) in [
        ("pas log, oldest", vec!["log", &oldest]),
        ("pas log, newest", vec!["log", &newest]),
        ("pas show, oldest", vec!["show", &oldest]),
        ("pas show, newest", vec!["show", &newest]),
        (
            "pas jobs --state done --limit 50",
            vec!["jobs", "--state", "done", "--limit", "50"],
        ),
        (
            "pas jobs --state archived --limit 50",
            vec!["jobs", "--state", "archived", "--limit", "50"],
        ),
        ("pas status --json", vec!["status", "--json"]),
    ] {
        let mut times = (0..runs)
            .map(|_| pas(&argv).map(ms))
            .collect::<Result<Vec<f64>>>()?;
        let max = times.iter().copied().fold(0.0, f64::max);
        let med = median(&mut times);
        eprintln!("{name}: {med:.1} ms (median of {runs}, max {max:.1})");
        reads.push(json!({"read": name, "median_ms": med, "max_ms": max}));
    }

    // The daemon: until it answers, its memory, the job page, a commit's bytes.
    let (listen_ms, daemon) = serve_timed(&ws)?;
    let addr = dashboard_addr(&ws)?;
    std::thread::sleep(Duration::from_secs(2));
    let (rss, hwm) = (
        rss_mib(daemon.pid(), "VmRSS:"),
        rss_mib(daemon.pid(), "VmHWM:"),
    );
    let anon = rss_mib(daemon.pid(), "RssAnon:");
    eprintln!("pas serve answered in {listen_ms:.0} ms; RSS {rss:.1} MiB ({anon:.1} anonymous; peak {hwm:.1})");
    let mut page = Vec::new();
    for id in [&oldest, &newest] {
        let mut times = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            http_get(&addr, &format!("/api/jobs/{id}"))?;
            times.push(ms(t.elapsed()));
        }
        let med = median(&mut times);
        eprintln!("job page of {id}: {med:.1} ms");
        page.push(json!({"card": id, "median_ms": med}));
    }
    let mut written = commit_bytes(&ws, &git_dir, "day")?;
    let drop_year = drop_to_assigned(&ws, "Y", 1000)?;
    // A busy day: done/ full to `archive.keep`, and what a commit into it writes then.
    fill_done(&ws, "Y", 1000)?;
    if let (Value::Array(w), Value::Array(more)) =
        (&mut written, commit_bytes(&ws, &git_dir, "full")?)
    {
        w.extend(more.into_iter().filter(|m| m["into"] == "done"));
    }
    drop(daemon);
    let (restart_ms, daemon) = serve_timed(&ws)?;
    std::thread::sleep(Duration::from_secs(2));
    let restart_rss = rss_mib(daemon.pid(), "VmRSS:");
    drop(daemon);
    eprintln!("restarted in {restart_ms:.0} ms, RSS {restart_rss:.1} MiB");

    // The same drop on an empty board, for the comparison.
    let (_fresh_dir, fresh) = scratch(args.dir.as_deref(), 1, 1000, args)?;
    crate::fsops::write_atomic(
        &fresh.registration_path("agent-0"),
        reg.to_yaml().as_bytes(),
        false,
    )?;
    let d = Daemon::start(&fresh.root)?;
    let drop_fresh = drop_to_assigned(&fresh, "F", 1000)?;
    drop(d);
    let end = crate::store::git::upkeep::measure(&git_dir);

    let report = json!({
        "cards": cards,
        "generate_s": generate_s,
        "git_bytes_as_written": as_written.bytes(),
        "git_bytes_packed": packed.bytes(),
        "git_bytes_at_end": end.bytes(),
        "reindex_ms": reindex_ms,
        "reads": reads,
        "serve_answers_ms": listen_ms,
        "restart_answers_ms": restart_ms,
        "rss_mib": rss,
        "rss_anonymous_mib": anon,
        "peak_rss_mib": hwm,
        "restart_rss_mib": restart_rss,
        "job_page": page,
        "bytes_per_commit": written,
        "drop_1000_to_assigned_ms": {"year_old": drop_year, "empty": drop_fresh},
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "a year of {cards} cards and commits; .git {:.0} MB packed, {:.0} MB at the end",
            packed.bytes() as f64 / 1e6,
            end.bytes() as f64 / 1e6
        );
        for r in report["reads"].as_array().into_iter().flatten() {
            println!(
                "{:<40} {:>9.1} ms",
                r["read"].as_str().unwrap_or(""),
                r["median_ms"].as_f64().unwrap_or(0.0)
            );
        }
        println!("pas serve answers in {listen_ms:.0} ms (restart {restart_ms:.0} ms); RSS {rss:.1} MiB, {anon:.1} anonymous");
        println!("1,000 cards dropped to assigned: {drop_year:.0} ms here, {drop_fresh:.0} ms on an empty board");
    }
    Ok(0)
}

/// Starts `pas serve` and times it until its dashboard answers `/api/status`.
fn serve_timed(ws: &Workspace) -> Result<(f64, Daemon)> {
    let _ = std::fs::remove_file(ws.root.join(".pas/serve.json"));
    let t = Instant::now();
    let d = Daemon::spawn(&ws.root, "warn")?;
    let addr = dashboard_addr(ws)?;
    wait_for(Duration::from_secs(120), "the dashboard to answer", || {
        http_get(&addr, "/api/status").is_ok()
    })?;
    Ok((ms(t.elapsed()), d))
}

/// Resident memory of `pid` in MiB, from the `field` line of its status.
fn rss_mib(pid: u32, field: &str) -> f64 {
    super::vm_kib(pid, field).unwrap_or(0.0) / 1024.0
}

/// Drops `n` cards at once and times until the daemon has assigned them all.
fn drop_to_assigned(ws: &Workspace, prefix: &str, n: usize) -> Result<f64> {
    let inbox = ws.state_dir(State::Inbox);
    let t = Instant::now();
    for i in 0..n {
        drop_card(&inbox, &format!("{prefix}-{i}"))?;
    }
    wait_for(
        Duration::from_secs(120),
        "the dropped cards assigned",
        || super::count_assigned(ws) >= n,
    )?;
    let took = ms(t.elapsed());
    eprintln!("{n} cards dropped and assigned in {took:.0} ms ({prefix})");
    Ok(took)
}

/// Finishes the `n` cards dropped as `prefix` (renamed into `done/` as an agent does) and
/// waits until the archive has brought `done/` back to `archive.keep`.
fn fill_done(ws: &Workspace, prefix: &str, n: usize) -> Result<()> {
    let mine = ws.state_dir(State::Assigned).join("agent-0");
    for i in 0..n {
        let name = format!("{prefix}-{i}.yaml");
        std::fs::rename(mine.join(&name), ws.state_dir(State::Done).join(&name))?;
    }
    let keep = ws.config()?.archive.keep;
    wait_for(
        Duration::from_secs(120),
        "done/ back to archive.keep",
        || yaml_count(&ws.state_dir(State::Done)) <= keep,
    )?;
    std::thread::sleep(Duration::from_secs(2));
    Ok(())
}

/// What one commit writes to `.git` before a repack: a card into the inbox, and one into
/// `done/` as it stands (median of 10 each).
fn commit_bytes(ws: &Workspace, git_dir: &Path, tag: &str) -> Result<Value> {
    let mut out = Vec::new();
    for folder in ["inbox", "done"] {
        let mut bytes = Vec::new();
        for i in 0..10 {
            let before = crate::store::git::upkeep::measure(git_dir);
            let head = run_git(&ws.root, &["rev-parse", "HEAD"])?;
            let id = format!("W-{tag}-{folder}-{i}");
            let dir = ws.work().join(folder);
            let tmp = dir.join(format!(".{id}.tmp"));
            std::fs::write(&tmp, format!("title: {id}\n"))?;
            std::fs::rename(&tmp, dir.join(format!("{id}.yaml")))?;
            wait_for(Duration::from_secs(30), "the card's commit", || {
                run_git(&ws.root, &["rev-parse", "HEAD"]).is_ok_and(|h| h != head)
            })?;
            // Its assignment (an inbox card) is the next commit: let it land first.
            std::thread::sleep(Duration::from_millis(300));
            let after = crate::store::git::upkeep::measure(git_dir);
            if after.packs == before.packs {
                bytes.push(after.loose_bytes.saturating_sub(before.loose_bytes) as f64);
            }
        }
        let n = bytes.len();
        let med = if bytes.is_empty() {
            0.0
        } else {
            median(&mut bytes)
        };
        let in_done = std::fs::read_dir(ws.state_dir(State::Done))?.count();
        eprintln!(
            "a card into {folder}/ writes {med:.0} bytes (median of {n}; done/ holds {in_done})"
        );
        out.push(json!({"into": folder, "loose_bytes": med, "done_holds": in_done}));
    }
    Ok(Value::Array(out))
}

/// Writes the year: `cards` commits, commit `i` bringing card `i` in, assigning card
/// `i - 16`, finishing card `i - 47` and archiving the card that finished a day before.
fn generate(ws: &Workspace, cards: usize) -> Result<()> {
    let root = &ws.root;
    let mut import = FastImport::start(root)?;
    let step = TimeDelta::days(365) / cards.max(1) as i32;
    let per_day = (cards / 365).max(1);
    // The last commit is now, when the last card finishes: the cards that finished within
    // the day are still in done/, as `archive.after` leaves them.
    let start: DateTime<Utc> = Utc::now() - step * (cards + DONE_AFTER) as i32;
    let at = |i: usize| start + step * i as i32;
    let mut live: std::collections::HashMap<usize, (Card, Place)> = Default::default();
    let inbox = Place::of(State::Inbox);
    for i in 0..cards + DONE_AFTER {
        let now = at(i);
        let mut lines = Vec::new();
        let mut files = Vec::new();
        let mut gone = Vec::new();
        let mut moves: Vec<(usize, Place)> = Vec::new();
        if i < cards {
            let id = card_id(i);
            let card = Card::parse(&id, &format!("title: bench card {id}\npriority: medium\n"))?;
            live.insert(i, (card, Place::of(State::Inbox)));
            moves.push((i, inbox.clone()));
        }
        if let Some(k) = i.checked_sub(ASSIGNED_AFTER).filter(|k| *k < cards) {
            moves.push((k, Place::assigned("agent-0")));
        }
        if let Some(k) = i.checked_sub(DONE_AFTER).filter(|k| *k < cards) {
            moves.push((k, Place::of(State::Done)));
        }
        if let Some(k) = i.checked_sub(DONE_AFTER + per_day).filter(|k| *k < cards) {
            moves.push((k, Place::archived(at(k + DONE_AFTER))));
        }
        for (k, to) in moves {
            let id = card_id(k);
            let Some((card, from)) = live.get(&k).cloned() else {
                continue;
            };
            let new = card.spec.pas.history.is_empty();
            let from_label = if new { "new".to_string() } else { from.label() };
            let mut meta = transition_meta(&card.spec.pas, &from, &to, "pas", None, now);
            if let Some(h) = meta.history.last_mut() {
                h.from = from_label.clone();
            }
            let card = card.with_meta(&meta);
            lines.push(format!("pas: {id} {from_label} -> {}", to.label()));
            if !new {
                gone.push(ws.card_path(&id, &from));
            }
            files.push((ws.card_path(&id, &to), card.text().to_string()));
            if to.state == State::Archived {
                live.remove(&k);
            } else {
                live.insert(k, (card, to));
            }
        }
        let msg = format!("pas: {} transitions\n\n{}\n", lines.len(), lines.join("\n"));
        import.commit(now.timestamp(), &msg)?;
        let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
        for p in &gone {
            writeln!(import.stdin, "D {}", rel(p))?;
        }
        for (p, text) in &files {
            writeln!(
                import.stdin,
                "M 100644 inline {}\ndata {}\n{text}",
                rel(p),
                text.len()
            )?;
        }
        writeln!(import.stdin)?;
    }
    import.finish()
}

/// Card files in `dir` (not its `.gitkeep`).
fn yaml_count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".yaml"))
            .count()
    })
}
