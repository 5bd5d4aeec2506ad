//! `pas bench hostile`: a tree of hostile files against the real daemon.
//!
//! Every file an agent can write is hostile input (SPEC section 12). This bench plants
//! `--files` of them (seeded by `--seed`, so a failing tree can be made again), of more than
//! fifty kinds ([`KINDS`]): every type of non-regular file, links of both kinds to places
//! inside and outside the workspace, sizes around every cap, sparse giants, nesting and alias
//! bombs, every numeric field at 0, -1, its maximum and one past it, forged `pas:` blocks, bad
//! UTF-8 and NUL bytes, into every folder pas reads (each state folder and the archive, the
//! registry, the heartbeats, the agent definitions). Then it checks, against one running `pas serve`:
//!
//! - the daemon stays alive, and a probe card dropped after the tree is assigned to the
//!   probe agent within a second, several times over;
//! - `pas status --json` and the dashboard's `/api/status` answer (each with a deadline: a
//!   reader blocked on a FIFO would never answer);
//! - nothing outside the workspace changes (every file there is checksummed before and
//!   after, the FIFO and the folder the links point at included);
//! - nothing is lost: every regular file planted under `work/` is still under `work/`,
//!   either taken in as a card or in `work/rejected/` with its bytes untouched;
//! - a stop and a restart come up clean: the daemon exits 0, starts again over the same
//!   tree, assigns a probe, and `git status` is clean after it stops again.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::{scratch, wait_for, BenchArgs, Daemon};
use crate::card::State;
use crate::workspace::Workspace;
use kinds::{mknod, Folder, Plant, KINDS};

mod kinds;

/// The agent the probe cards are for.
const PROBE: &str = "probe";

/// How quickly a probe card must be assigned while the tree is there. An unoptimised build
/// (the test suite's, which runs beside the other tests on two cores) digests the tree
/// several times slower, so it gets more time; the release figure is the measure.
const PROBE_LIMIT: Duration = if cfg!(debug_assertions) {
    Duration::from_secs(20)
} else {
    Duration::from_secs(1)
};

/// One planted file: where, of which kind, and the bytes of a regular file planted.
struct Planted {
    path: PathBuf,
    kind: &'static str,
    bytes: Option<Vec<u8>>,
}

/// A seeded xorshift: the same seed plants the same tree.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Plants `n` hostile files under `ws` (kinds in turn, folders by the dice).
fn plant(ws: &Workspace, outside: &Path, inside_card: &Path, n: usize, seed: u64) -> Vec<Planted> {
    let mut dice = Dice(seed | 1);
    let card_dirs = [
        ws.state_dir(State::Inbox),
        ws.state_dir(State::Done),
        ws.state_dir(State::Failed),
        ws.state_dir(State::Assigned).join(PROBE),
        // The archive is a state folder too (a day folder of today's, and one that is not a
        // date at all).
        ws.work()
            .join("archive")
            .join(chrono::Utc::now().format("%Y/%m/%d").to_string()),
        ws.work().join("archive/not/a/day"),
    ];
    for d in &card_dirs {
        let _ = std::fs::create_dir_all(d);
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let kind = &KINDS[i % KINDS.len()];
        let folder = kind.folders[dice.below(kind.folders.len())];
        let (dir, ext) = match folder {
            Folder::Cards => (card_dirs[dice.below(card_dirs.len())].clone(), "yaml"),
            Folder::Registry => (ws.registry(), "yaml"),
            Folder::Heartbeats => (ws.heartbeats(), "jsonl"),
            Folder::Definitions => (ws.agents_dir(), "md"),
        };
        let path = dir.join(format!("H-{i}-{}.{ext}", kind.name));
        let p = Plant {
            path: path.clone(),
            outside,
            inside_card,
        };
        if let Err(e) = (kind.make)(&p) {
            eprintln!("could not plant {} ({}): {e}", path.display(), kind.name);
            continue;
        }
        // What must not be lost: a regular file of its own (not a hard link's other name).
        let bytes = std::fs::symlink_metadata(&path)
            .ok()
            .filter(|m| {
                use std::os::unix::fs::MetadataExt;
                m.is_file() && m.nlink() == 1 && m.len() <= 2 << 20
            })
            .and_then(|_| std::fs::read(&path).ok());
        out.push(Planted {
            path,
            kind: kind.name,
            bytes,
        });
    }
    out
}

/// Every file under `dir` (links not followed) with its type and, for regular files, a
/// checksum of its bytes (read at most 4 MiB: the folder is the bench's own).
fn checksums(dir: &Path) -> BTreeMap<PathBuf, String> {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .flatten()
        .map(|e| {
            let t = e.file_type();
            let what = if t.is_file() {
                let mut bytes = Vec::new();
                let _ = std::fs::File::open(e.path())
                    .and_then(|f| f.take(4 << 20).read_to_end(&mut bytes));
                format!("file {:016x}", fnv(&bytes))
            } else if t.is_symlink() {
                format!("link {:?}", std::fs::read_link(e.path()).ok())
            } else if t.is_dir() {
                "folder".to_string()
            } else {
                "other".to_string()
            };
            (e.into_path(), what)
        })
        .collect()
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Drops a probe card for the probe agent and returns how long it took to be assigned.
fn probe(ws: &Workspace, n: usize) -> Result<Duration> {
    let id = format!("PROBE-{n}-{}", ulid::Ulid::new());
    let inbox = ws.state_dir(State::Inbox);
    let tmp = inbox.join(format!(".{id}.tmp"));
    std::fs::write(&tmp, "title: probe\nrequires: [probe]\n")?;
    let start = Instant::now();
    std::fs::rename(&tmp, inbox.join(format!("{id}.yaml")))?;
    let at = ws
        .state_dir(State::Assigned)
        .join(PROBE)
        .join(format!("{id}.yaml"));
    wait_for(
        Duration::from_secs(30),
        "a probe card to be assigned",
        || at.exists(),
    )?;
    let took = start.elapsed();
    // Done, so the probe's one slot is free for the next probe.
    std::fs::rename(&at, ws.state_dir(State::Done).join(format!("{id}.yaml")))?;
    Ok(took)
}

/// Runs `pas status --json` with a deadline; its time.
fn status_answers(ws: &Workspace) -> Result<Duration> {
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let mut child = std::process::Command::new(exe)
        .args(["status", "--json", "--root"])
        .arg(&ws.root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let limit = Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("pas status --json failed ({status})");
            }
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("pas status --json did not answer within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// GETs `/api/status` from the dashboard with a deadline; its time.
fn api_status_answers(ws: &Workspace) -> Result<Duration> {
    let addr = std::fs::read_to_string(crate::server::addresses_path(ws))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["dashboard"].as_str().map(str::to_string))
        .context("no dashboard address in .pas/serve.json")?;
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(&addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "GET /api/status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .context("/api/status did not answer")?;
    let head = String::from_utf8_lossy(&answer[..answer.len().min(20)]).to_string();
    if !head.starts_with("HTTP/1.1 200") {
        bail!("/api/status answered {head:?}");
    }
    Ok(start.elapsed())
}

/// Where each planted regular file's bytes ended up: (lost, changed) planted files.
fn accounted(ws: &Workspace, planted: &[Planted]) -> (Vec<String>, Vec<String>) {
    let names: BTreeMap<String, Vec<PathBuf>> = walkdir::WalkDir::new(ws.work())
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter(|e| !e.file_type().is_dir())
        .fold(BTreeMap::new(), |mut m, e| {
            let name = e.file_name().to_string_lossy().into_owned();
            m.entry(name).or_default().push(e.into_path());
            m
        });
    let mut lost = Vec::new();
    let mut changed = Vec::new();
    for p in planted {
        let Some(bytes) = &p.bytes else { continue };
        if !p.path.starts_with(ws.work()) {
            continue; // definitions stay where they are, ignored
        }
        let name = p
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(found) = names.get(&name) else {
            lost.push(format!("{} ({})", p.path.display(), p.kind));
            continue;
        };
        // A rejected file keeps its bytes; a card taken in gains pas's block.
        let in_rejected = found.iter().find(|f| f.starts_with(ws.rejected()));
        if let Some(r) = in_rejected {
            if std::fs::read(r).ok().as_ref() != Some(bytes) {
                changed.push(format!("{} ({})", r.display(), p.kind));
            }
        }
    }
    (lost, changed)
}

/// `git status --porcelain` of the workspace.
fn git_status(root: &Path) -> Result<String> {
    let out = std::process::Command::new("git")
        .args(["status", "--porcelain", "--", "work"])
        .current_dir(root)
        .output()
        .context("cannot run git status")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Stops the daemon with SIGTERM and waits for its exit status.
fn stop(mut d: Daemon) -> Result<()> {
    // SAFETY: signalling our own child process, not yet reaped.
    unsafe {
        libc::kill(d.child.id() as i32, libc::SIGTERM);
    }
    let status = d.child.wait()?;
    if !status.success() {
        bail!("the daemon exited with {status} after SIGTERM");
    }
    Ok(())
}

fn alive(d: &mut Daemon) -> Result<()> {
    if let Some(status) = d.child.try_wait()? {
        bail!("the daemon died ({status})");
    }
    Ok(())
}

/// Probes `rounds` times; the slowest assignment.
fn probes(ws: &Workspace, d: &mut Daemon, rounds: usize, from: usize) -> Result<Duration> {
    let mut worst = Duration::ZERO;
    for i in 0..rounds {
        alive(d)?;
        worst = worst.max(probe(ws, from + i)?);
    }
    Ok(worst)
}

pub fn hostile(args: &BenchArgs) -> Result<i32> {
    let n = args.files;
    let (_dir, ws) = scratch(args.dir.as_deref(), 0, 1, args)?;
    let reg = crate::agent::Registration {
        name: Some(PROBE.into()),
        epoch: 1,
        capabilities: vec![PROBE.into()],
        // Room for the planted cards it may be given as well as the probes.
        max_concurrent: Some(10_000),
        heartbeat_interval_s: Some(3600.0),
        ..Default::default()
    };
    crate::fsops::write_atomic(
        &ws.registration_path(PROBE),
        reg.to_yaml().as_bytes(),
        false,
    )?;
    std::fs::create_dir_all(ws.state_dir(State::Assigned).join(PROBE))?;
    let outside_dir = tempfile::Builder::new()
        .prefix("pas-bench-outside-")
        .tempdir_in(ws.root.parent().unwrap_or(Path::new("/tmp")))?;
    let outside = outside_dir.path().to_path_buf();
    std::fs::write(
        outside.join("secret.yaml"),
        "title: outside, do not touch\n",
    )?;
    mknod(&outside.join("fifo.yaml"), libc::S_IFIFO | 0o600, 0)?;
    std::fs::create_dir(outside.join("folder"))?;
    std::fs::write(outside.join("folder/inner.yaml"), "title: inner\n")?;
    let before = checksums(&outside);
    let inside_card = ws.state_dir(State::Done).join("INSIDE.yaml");
    std::fs::write(&inside_card, "title: a card inside\n")?;

    let mut daemon = Daemon::start_logging(
        &ws.root,
        &std::env::var("PAS_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
    )?;
    probes(&ws, &mut daemon, 1, 0)?;
    let t0 = Instant::now();
    let planted = plant(&ws, &outside, &inside_card, n, args.seed);
    let kinds: std::collections::BTreeSet<&str> = planted.iter().map(|p| p.kind).collect();
    let planting = t0.elapsed();
    eprintln!(
        "planted {} files of {} kinds in {:.1} s",
        planted.len(),
        kinds.len(),
        planting.as_secs_f64()
    );

    let mut failures = Vec::new();
    let mut check = |what: &str, r: Result<String>| match r {
        Ok(s) => eprintln!("ok    {what}: {s}"),
        Err(e) => {
            eprintln!("FAIL  {what}: {e:#}");
            failures.push(format!("{what}: {e:#}"));
        }
    };
    let worst = probes(&ws, &mut daemon, 5, 1);
    let worst_ms = worst.as_ref().map(|d| d.as_secs_f64() * 1000.0).ok();
    check(
        &format!(
            "probe cards assigned within {} s while the tree is there",
            PROBE_LIMIT.as_secs()
        ),
        worst.and_then(|w| {
            if w > PROBE_LIMIT {
                bail!("slowest took {w:?}")
            }
            Ok(format!("slowest {:.0} ms", w.as_secs_f64() * 1000.0))
        }),
    );
    check(
        "pas status --json answers",
        status_answers(&ws).map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0)),
    );
    check(
        "/api/status answers",
        api_status_answers(&ws).map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0)),
    );
    check(
        "the daemon is alive",
        alive(&mut daemon).map(|_| "yes".into()),
    );
    // Let every write in place settle and be judged before accounting.
    std::thread::sleep(Duration::from_millis(1500));
    let (lost, changed) = accounted(&ws, &planted);
    check(
        "nothing planted under work/ is lost or changed in work/rejected/",
        if lost.is_empty() && changed.is_empty() {
            Ok(format!(
                "{} regular files accounted for",
                planted.iter().filter(|p| p.bytes.is_some()).count()
            ))
        } else {
            Err(anyhow::anyhow!(
                "lost: {:?}; changed: {:?}",
                &lost[..lost.len().min(10)],
                &changed[..changed.len().min(10)]
            ))
        },
    );
    check(
        "a stop, a restart and another stop come up clean",
        (|| {
            stop(daemon)?;
            let mut again = Daemon::start(&ws.root)?;
            probes(&ws, &mut again, 2, 100)?;
            alive(&mut again)?;
            stop(again)?;
            let status = git_status(&ws.root)?;
            if !status.is_empty() {
                bail!(
                    "git status is not clean:\n{}",
                    status.lines().take(10).collect::<Vec<_>>().join("\n")
                );
            }
            Ok("exit 0 twice, git status clean".to_string())
        })(),
    );
    let after = checksums(&outside);
    let differ: Vec<String> = before
        .iter()
        .filter(|(p, c)| after.get(*p) != Some(c))
        .map(|(p, _)| p.display().to_string())
        .chain(
            after
                .keys()
                .filter(|p| !before.contains_key(*p))
                .map(|p| p.display().to_string()),
        )
        .collect();
    check(
        "nothing outside the workspace changed",
        if differ.is_empty() {
            Ok(format!("{} paths checksummed", before.len()))
        } else {
            Err(anyhow::anyhow!("changed: {differ:?}"))
        },
    );
    let rejected = std::fs::read_dir(ws.rejected())
        .map(|rd| {
            rd.flatten()
                .filter(|e| !e.file_name().to_string_lossy().ends_with(".reason.txt"))
                .count()
        })
        .unwrap_or(0);
    if args.json {
        println!(
            "{}",
            json!({
                "files": planted.len(), "kinds": kinds.len(), "seed": args.seed,
                "rejected": rejected, "slowest_probe_ms": worst_ms,
                "failures": failures,
            })
        );
    } else {
        println!(
            "{} files of {} kinds (seed {}): {} in work/rejected/; slowest probe {}",
            planted.len(),
            kinds.len(),
            args.seed,
            rejected,
            worst_ms.map_or("-".into(), |m| format!("{m:.0} ms"))
        );
        if failures.is_empty() {
            println!("every check passed");
        }
    }
    Ok(if failures.is_empty() { 0 } else { 1 })
}
