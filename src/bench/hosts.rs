//! `pas bench hosts`: many hosts sharing one board through a git remote (SPEC section 14).
//!
//! On one machine: a bare repository as the remote and one clone per host, each driven by
//! its own thread through the protocol of `remote::Replica` (the pushes are real `git`
//! processes racing at the remote). Every verdict is read from the remote's reflogs and
//! history (`remote::audit`), not from the hosts' own counts.
//!
//! 1. Contention: `--agents` hosts (8) try to claim the same cards in the same order,
//!    `--seconds`-free: `--cards` cards (1,250, so 10,000 attempts); no card may have two
//!    owners, and every card exactly one.
//! 2. Throughput: 4 hosts work off `--cards[1]` cards (1,000) each picking a random eligible
//!    card, claiming it, and pushing assignments and finishes in batches with their claims;
//!    every card done exactly once, claims/s, claim latency, lost races per claim, and the
//!    claim latency of the last tenth against the first.
//! 3. Faults: an owner paused past its lease (its finish must be refused, the card done
//!    once, the takeover within lease + one poll); the remote moved away and back (no
//!    claims meanwhile, then every queued finish lands); `kill -9` of claim pushes at
//!    varied instants (each claim whole or absent, `git fsck` clean).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::{percentile, BenchArgs};
use crate::remote::claim::Outcome;
use crate::remote::{audit, setup, Claimed, Op, Replica};

/// Runs the three parts and prints their figures.
pub fn hosts(args: &BenchArgs) -> Result<i32> {
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("pas-bench-hosts-")
        .tempdir_in(&parent)?;
    let contenders = args.agents.unwrap_or(8);
    let contested = args.cards.first().copied().unwrap_or(1250);
    let cards = args.cards.get(1).copied().unwrap_or(1000);
    let c = contention(&dir.path().join("contention"), contenders, contested)?;
    let t = throughput(&dir.path().join("throughput"), 4, cards)?;
    let f = faults(&dir.path().join("faults"))?;
    let all = json!({"contention": c, "throughput": t, "faults": f});
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print_report(&all);
    }
    let clean = [&c, &t, &f].iter().all(|v| v["ok"] == json!(true));
    Ok(if clean { 0 } else { 1 })
}

fn print_report(v: &serde_json::Value) {
    let c = &v["contention"];
    println!(
        "contention: {} hosts x {} cards = {} claim attempts in {:.1} s; won {}, double owners {}, cards without one owner {}; claim p50 {:.0} ms p99 {:.0} ms",
        c["hosts"], c["cards"], c["attempts"], c["seconds"].as_f64().unwrap_or(0.0), c["won"],
        c["audit"]["double_owners"].as_array().map_or(0, |a| a.len()), c["unowned"],
        c["claim_ms"]["p50"].as_f64().unwrap_or(0.0), c["claim_ms"]["p99"].as_f64().unwrap_or(0.0)
    );
    let t = &v["throughput"];
    println!(
        "throughput: {} hosts x {} cards in {:.1} s: {:.1} claims/s; claim p50 {:.0} ms p99 {:.0} ms; lost races per claim {:.2}; done {} (twice: {}); claim p50 first tenth {:.0} ms, last tenth {:.0} ms",
        t["hosts"], t["cards"], t["seconds"].as_f64().unwrap_or(0.0), t["claims_per_s"].as_f64().unwrap_or(0.0),
        t["claim_ms"]["p50"].as_f64().unwrap_or(0.0), t["claim_ms"]["p99"].as_f64().unwrap_or(0.0),
        t["lost_per_claim"].as_f64().unwrap_or(0.0), t["audit"]["done"], t["audit"]["done_twice"],
        t["first_tenth_p50_ms"].as_f64().unwrap_or(0.0), t["last_tenth_p50_ms"].as_f64().unwrap_or(0.0)
    );
    let f = &v["faults"];
    println!(
        "faults: paused owner's finish refused: {}; takeover {:.2} s after the last renewal (lease {} s + poll {} s); remote away: {} claims meanwhile, {} finishes queued then landed: {}; kill -9 of {} pushes: {} partial states; all clean: {}",
        f["paused_finish_refused"], f["takeover_s"].as_f64().unwrap_or(0.0), f["lease_s"], f["poll_s"],
        f["claims_while_away"], f["queued_while_away"], f["landed_after"], f["kill9_pushes"], f["kill9_partial"], f["ok"]
    );
}

/// A bare remote seeded with `n` inbox cards, and `hosts` clones of it.
fn board(dir: &Path, n: usize, hosts: usize, lease: Duration) -> Result<Vec<Replica>> {
    std::fs::create_dir_all(dir)?;
    let bare = dir.join("remote.git");
    setup::create_bare(&bare)?;
    let ids: Vec<String> = (0..n).map(|i| format!("C-{i:05}")).collect();
    setup::seed_board(&bare, dir, &ids)?;
    (0..hosts)
        .map(|h| {
            let path = dir.join(format!("host-{h}"));
            setup::clone(&bare, &path)?;
            Ok(Replica::open(
                &path,
                "origin",
                "main",
                &format!("host-{h}"),
                lease,
            )?)
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    json!({"p50": percentile(&v, 0.5), "p99": percentile(&v, 0.99), "n": v.len()})
}

/// Part 1: every host claims every card, in the same order, all at once.
fn contention(dir: &Path, hosts: usize, cards: usize) -> Result<serde_json::Value> {
    // A lease longer than the run: every host keeps its first view, so every attempt is a
    // real push racing the others (a fresher view would skip cards already taken).
    let replicas = board(dir, cards, hosts, Duration::from_secs(3600))?;
    let lat = Arc::new(Mutex::new(Vec::new()));
    let won = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let threads: Vec<_> = replicas
        .into_iter()
        .map(|mut r| {
            let (lat, won) = (lat.clone(), won.clone());
            std::thread::spawn(move || -> Result<()> {
                r.fetch(Instant::now())?;
                let mut mine = Vec::with_capacity(cards);
                for i in 0..cards {
                    let t = Instant::now();
                    if r.claim(&format!("C-{i:05}"), "agent", 1)? == Claimed::Won {
                        won.fetch_add(1, Ordering::Relaxed);
                    }
                    mine.push(ms(t.elapsed()));
                }
                lat.lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .extend(mine);
                Ok(())
            })
        })
        .collect();
    let (seconds, a) = join_and_audit(threads, start, dir)?;
    let won = won.load(Ordering::Relaxed);
    let unowned = cards.saturating_sub(a.claims);
    let lat = std::mem::take(&mut *lat.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    Ok(json!({
        "hosts": hosts, "cards": cards, "attempts": hosts * cards, "seconds": seconds,
        "won": won, "unowned": unowned, "claim_ms": summary(lat), "audit": a,
        "ok": a.clean() && won == cards && a.claims == cards,
    }))
}

/// Waits for the host threads, then audits the remote: (seconds taken, the audit).
fn join_and_audit(
    threads: Vec<std::thread::JoinHandle<Result<()>>>,
    start: Instant,
    dir: &Path,
) -> Result<(f64, audit::Audit)> {
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a host thread panicked"))??;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok((seconds, audit::audit(&dir.join("remote.git"), "main")?))
}

/// A small xorshift: which eligible card a host tries (no two hosts race in step).
fn pick(seed: &mut u64, n: usize) -> usize {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    (*seed % n.max(1) as u64) as usize
}

fn assign_and_finish(r: &mut Replica, id: &str) {
    let agent = format!("{}-agent", r.host);
    r.queue(Op::new(
        id,
        format!("work/inbox/{id}.yaml"),
        format!("work/assigned/{agent}/{id}.yaml"),
        None,
    ));
    let mut done = Op::new(
        id,
        format!("work/assigned/{agent}/{id}.yaml"),
        format!("work/done/{id}.yaml"),
        Some(Outcome::Finished),
    );
    done.text = Some(format!("title: card {id}\nresult: done by {agent}\n").into_bytes());
    r.queue(done);
}

/// Part 2: hosts work off a board, each claim a random eligible card.
fn throughput(dir: &Path, hosts: usize, cards: usize) -> Result<serde_json::Value> {
    // A short lease, so finished claims are pruned during the run (after ten leases) and
    // the refs each fetch lists stay few: claim latency must not grow with cards done.
    let replicas = board(dir, cards, hosts, Duration::from_secs(3))?;
    let lat = Arc::new(Mutex::new(Vec::<(Instant, f64)>::new()));
    let lost = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let threads: Vec<_> = replicas
        .into_iter()
        .enumerate()
        .map(|(h, mut r)| {
            let (lat, lost) = (lat.clone(), lost.clone());
            std::thread::spawn(move || -> Result<()> {
                let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ ((h as u64 + 1) * 0x1000_0001);
                let mut last_push = Instant::now();
                let mut last_prune = Instant::now();
                // The eligible cards as of the last fetch: a host fetches again when they
                // run out or a second has passed, not before every claim.
                let mut eligible: Vec<String> = Vec::new();
                let mut fetched = Instant::now() - Duration::from_secs(60);
                loop {
                    if eligible.is_empty() || fetched.elapsed() > Duration::from_secs(2) {
                        r.fetch(Instant::now())?;
                        eligible = r.eligible();
                        fetched = Instant::now();
                        if eligible.is_empty() && r.pending() == 0 {
                            break;
                        }
                    }
                    // A host with four free agents claims four cards in one push.
                    let agent = format!("{}-agent", r.host);
                    let batch: Vec<(String, String, u64)> = (0..4.min(eligible.len()))
                        .map(|_| {
                            (
                                eligible.swap_remove(pick(&mut seed, eligible.len())),
                                agent.clone(),
                                1,
                            )
                        })
                        .collect();
                    if !batch.is_empty() {
                        let t = Instant::now();
                        let got = r.claim_many(&batch)?;
                        let took = ms(t.elapsed());
                        for ((id, _, _), c) in batch.iter().zip(got) {
                            if c == Claimed::Won {
                                lat.lock()
                                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                                    .push((t, took));
                                assign_and_finish(&mut r, id);
                            } else {
                                lost.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    // Transitions go in batches, as a daemon's commit window gathers them.
                    if r.pending() >= 64
                        || last_push.elapsed() > Duration::from_millis(1500)
                        || eligible.is_empty()
                    {
                        r.push_pending(Instant::now())?;
                        last_push = Instant::now();
                    }
                    // Seldom, and at different moments per host: a prune's deletions hold the
                    // remote's packed-refs.lock, which every other push then waits out.
                    if last_prune.elapsed() > Duration::from_secs(20 + 7 * h as u64) {
                        r.prune(Duration::ZERO, 500, Instant::now())?;
                        last_prune = Instant::now();
                    }
                }
                Ok(())
            })
        })
        .collect();
    let (seconds, a) = join_and_audit(threads, start, dir)?;
    let mut lat = std::mem::take(&mut *lat.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    lat.sort_by_key(|(t, _)| *t);
    let won = lat.len();
    let tenth = (won / 10).max(1);
    let p50 = |s: &[(Instant, f64)]| {
        let mut v: Vec<f64> = s.iter().map(|(_, l)| *l).collect();
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    let first = p50(&lat[..tenth.min(won)]);
    let last = p50(&lat[won.saturating_sub(tenth)..]);
    let lost = lost.load(Ordering::Relaxed);
    Ok(json!({
        "hosts": hosts, "cards": cards, "seconds": seconds, "claims": won,
        "claims_per_s": won as f64 / seconds,
        "claim_ms": summary(lat.iter().map(|(_, l)| *l).collect()),
        "lost_races": lost, "lost_per_claim": lost as f64 / won.max(1) as f64,
        "first_tenth_p50_ms": first, "last_tenth_p50_ms": last,
        "audit": a,
        "ok": a.clean() && a.done == cards && won == cards,
    }))
}

/// Part 3: a paused owner, and the remote moved away and back.
fn faults(dir: &Path) -> Result<serde_json::Value> {
    let lease = Duration::from_secs(2);
    let poll = Duration::from_millis(200);
    let mut r = board(dir, 6, 2, lease)?;
    let mut b = r.pop().context("two hosts")?;
    // The observer's grace: one poll (the owner renews every third of the lease, so a
    // live owner's claim never stands still that long).
    b.grace = poll;
    let mut a = r.pop().context("two hosts")?;
    // A claims and assigns C-00000, then is paused (no renewals, no pushes).
    a.fetch(Instant::now())?;
    if a.claim("C-00000", "a-agent", 1)? != Claimed::Won {
        bail!("the first claim of an empty board was lost");
    }
    let paused_at = Instant::now();
    // B polls and takes over once it has seen the same claim for lease + grace.
    let took = loop {
        b.fetch(Instant::now())?;
        if !b.take_over_expired(Instant::now()).is_empty() {
            b.push_pending(Instant::now())?;
            break paused_at.elapsed();
        }
        if paused_at.elapsed() > lease * 10 {
            bail!("no takeover after ten leases");
        }
        std::thread::sleep(poll);
    };
    // A resumes and finishes: refused. B claims the card again and finishes it.
    assign_and_finish(&mut a, "C-00000");
    a.fetch(Instant::now())?;
    let refused = a.push_pending(Instant::now())?.refused == vec!["C-00000".to_string()];
    b.fetch(Instant::now())?;
    if b.claim("C-00000", "b-agent", 1)? == Claimed::Won {
        assign_and_finish(&mut b, "C-00000");
        b.push_pending(Instant::now())?;
    }
    // The remote moves away: no claim can be made; owned work queues its finish.
    let bare = dir.join("remote.git");
    let away = dir.join("away.git");
    a.fetch(Instant::now())?;
    if a.claim("C-00001", "a-agent", 1)? != Claimed::Won {
        bail!("claim before the outage lost");
    }
    assign_and_finish(&mut a, "C-00001");
    std::fs::rename(&bare, &away)?;
    let mut claims_while_away = 0;
    for id in ["C-00002", "C-00003"] {
        if matches!(a.claim(id, "a-agent", 1), Ok(Claimed::Won)) {
            claims_while_away += 1;
        }
    }
    let queued = a.pending();
    let pushed_away = a.push_pending(Instant::now()).is_ok();
    std::fs::rename(&away, &bare)?;
    a.fetch(Instant::now())?;
    let landed = a.push_pending(Instant::now())?.landed.len() == queued;
    let killed = kill_mid_push(&dir.join("host-0"), 20)?;
    let au = audit::audit(&bare, "main")?;
    Ok(json!({
        "kill9_pushes": 20, "kill9_partial": killed,
        "lease_s": lease.as_secs_f64(), "poll_s": poll.as_secs_f64(),
        "takeover_s": took.as_secs_f64(),
        "takeover_in_time": took <= lease + b.grace + poll * 2,
        "paused_finish_refused": refused,
        "claims_while_away": claims_while_away, "queued_while_away": queued,
        "pushed_while_away": pushed_away, "landed_after": landed,
        "audit": au,
        "ok": refused && claims_while_away == 0 && !pushed_away && landed && au.clean() && au.done == 2
            && killed == 0,
    }))
}

/// `kill -9` of claim pushes at varied instants: afterwards each claim ref is either absent
/// or a whole claim commit, and the remote passes `git fsck`. Returns the partial states
/// found (refs at a missing object, or fsck errors).
fn kill_mid_push(clone: &Path, n: usize) -> Result<usize> {
    let repo = crate::remote::claim::open(clone)?;
    let mut partial = 0;
    for i in 0..n {
        let note = crate::remote::claim::ClaimNote {
            card: format!("K-{i}"),
            host: "killed".into(),
            agent: "a".into(),
            epoch: 1,
            lease_s: 30.0,
            ended: None,
        };
        let oid = crate::remote::claim::write_claim(&repo, &note, "", None)?;
        let dst = crate::remote::claim::claim_ref(&note.card);
        let mut child = std::process::Command::new("git")
            .arg("-C")
            .arg(clone)
            .args(["push", "--porcelain", "--atomic"])
            .arg(format!("--force-with-lease={dst}:"))
            .arg("origin")
            .arg(format!("{oid}:{dst}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        // From at once to well after a push would have landed.
        std::thread::sleep(Duration::from_millis((i as u64 * 7) % 60));
        // SAFETY: signalling our own child, not yet reaped.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGKILL);
        }
        let _ = child.wait();
    }
    let bare = clone.join("..").join("remote.git");
    let git = crate::remote::git::Git::new(&bare, "origin");
    for i in 0..n {
        let name = crate::remote::claim::claim_ref(&format!("K-{i}"));
        if let Ok(oid) = git.run("rev-parse", &["rev-parse", "--verify", "--quiet", &name]) {
            let whole = git.run("cat-file", &["cat-file", "-e", oid.trim()]).is_ok();
            partial += usize::from(!whole);
        }
    }
    if git.run("fsck", &["fsck", "--no-dangling"]).is_err() {
        partial += 1;
    }
    Ok(partial)
}
