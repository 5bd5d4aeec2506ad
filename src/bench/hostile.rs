//! `pas bench hostile`: a tree of hostile files against the real daemon.
//!
//! Every file an agent can write is hostile input (SPEC section 12). This bench plants
//! `--files` of them (seeded by `--seed`, so a failing tree can be made again), of more than
//! fifty kinds ([`KINDS`]): every type of non-regular file, links of both kinds to places
//! inside and outside the workspace, sizes around every cap, sparse giants, nesting and alias
//! bombs, every numeric field at 0, -1, its maximum and one past it, forged `pas:` blocks, bad
//! UTF-8 and NUL bytes, into every folder pas reads (each state folder, the registry, the
//! heartbeats, the agent definitions). Then it checks, against one running `pas serve`:
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

/// Where a planted file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Folder {
    /// A state folder: inbox, done, failed, or the probe's assigned folder.
    Cards,
    Registry,
    Heartbeats,
    Definitions,
}

/// One kind of hostile file: its name, which folders it belongs in, and how to make it.
struct Kind {
    name: &'static str,
    folders: &'static [Folder],
    make: fn(&Plant) -> std::io::Result<()>,
}

/// What a kind's maker gets: where to put the file and what lies outside.
struct Plant<'a> {
    path: PathBuf,
    outside: &'a Path,
    inside_card: &'a Path,
}

const ANY: &[Folder] = &[
    Folder::Cards,
    Folder::Registry,
    Folder::Heartbeats,
    Folder::Definitions,
];
const CARDS: &[Folder] = &[Folder::Cards];
const REGS: &[Folder] = &[Folder::Registry];
const BEATS: &[Folder] = &[Folder::Heartbeats];
const DEFS: &[Folder] = &[Folder::Definitions];

fn write(p: &Plant, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(&p.path, bytes)
}

fn text(p: &Plant, s: &str) -> std::io::Result<()> {
    write(p, s.as_bytes())
}

fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path; mknod only creates the node.
    if unsafe { libc::mknod(c.as_ptr(), mode, dev) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn fifo(p: &Plant) -> std::io::Result<()> {
    mknod(&p.path, libc::S_IFIFO | 0o600, 0)
}

fn socket(p: &Plant) -> std::io::Result<()> {
    // The socket's node stays on disk after the listener closes.
    std::os::unix::net::UnixListener::bind(&p.path).map(drop)
}

fn char_device(p: &Plant) -> std::io::Result<()> {
    // /dev/null's numbers; without the right to make devices, a FIFO stands in.
    mknod(&p.path, libc::S_IFCHR | 0o600, libc::makedev(1, 3)).or_else(|_| fifo(p))
}

fn folder_named_like_a_file(p: &Plant) -> std::io::Result<()> {
    std::fs::create_dir(&p.path)
}

fn folder_holding_a_card(p: &Plant) -> std::io::Result<()> {
    std::fs::create_dir(&p.path)?;
    std::fs::write(p.path.join("inner.yaml"), "title: inside a folder\n")
}

fn link_to(p: &Plant, target: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, &p.path)
}

fn sparse(p: &Plant, len: u64) -> std::io::Result<()> {
    std::fs::File::create(&p.path)?.set_len(len)
}

fn card_of(len: usize) -> Vec<u8> {
    let mut b = b"title: padded\ndescription: \"".to_vec();
    let pad = len.saturating_sub(b.len() + 2);
    b.extend(std::iter::repeat_n(b'x', pad));
    b.extend_from_slice(b"\"\n");
    b
}

fn bomb() -> String {
    let mut s = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (n, p) in (b'b'..=b'j').zip(b'a'..) {
        let (n, p) = (n as char, p as char);
        s.push_str(&format!(
            "{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        ));
    }
    s
}

fn tower(depth: usize) -> String {
    format!("x: {}1{}\n", "[".repeat(depth), "]".repeat(depth))
}

fn block_tower(depth: usize) -> String {
    let mut s = String::from("title: deep\nx:\n");
    for i in 1..depth {
        s.push_str(&" ".repeat(i));
        s.push_str("a:\n");
    }
    s
}

/// Every kind of hostile file the bench plants.
#[rustfmt::skip]
const KINDS: &[Kind] = &[
    // Not regular files.
    Kind { name: "fifo", folders: ANY, make: fifo },
    Kind { name: "socket", folders: ANY, make: socket },
    Kind { name: "char-device", folders: ANY, make: char_device },
    Kind { name: "folder", folders: ANY, make: folder_named_like_a_file },
    Kind { name: "folder-with-card", folders: CARDS, make: folder_holding_a_card },
    Kind { name: "link-dev-null", folders: ANY, make: |p| link_to(p, Path::new("/dev/null")) },
    // Links of both kinds, to places inside and outside.
    Kind { name: "link-outside-file", folders: ANY, make: |p| link_to(p, &p.outside.join("secret.yaml")) },
    Kind { name: "link-outside-fifo", folders: ANY, make: |p| link_to(p, &p.outside.join("fifo.yaml")) },
    Kind { name: "link-outside-folder", folders: ANY, make: |p| link_to(p, p.outside) },
    Kind { name: "link-inside-card", folders: ANY, make: |p| link_to(p, p.inside_card) },
    Kind { name: "link-dangling", folders: ANY, make: |p| link_to(p, &p.outside.join("nothing-here")) },
    Kind { name: "link-loop", folders: ANY, make: |p| link_to(p, &p.path) },
    Kind { name: "hardlink-outside", folders: ANY, make: |p| std::fs::hard_link(p.outside.join("secret.yaml"), &p.path) },
    Kind { name: "hardlink-inside", folders: ANY, make: |p| std::fs::hard_link(p.inside_card, &p.path) },
    // Sizes around the caps.
    Kind { name: "card-at-cap", folders: CARDS, make: |p| write(p, &card_of(1 << 20)) },
    Kind { name: "card-over-cap", folders: CARDS, make: |p| write(p, &card_of((1 << 20) + 1)) },
    Kind { name: "reg-at-cap", folders: REGS, make: |p| write(p, format!("labels: {{note: \"{}\"}}\n", "y".repeat((64 << 10) - 20)).as_bytes()) },
    Kind { name: "reg-over-cap", folders: REGS, make: |p| write(p, format!("labels: {{note: \"{}\"}}\n", "y".repeat(64 << 10)).as_bytes()) },
    Kind { name: "sparse-64g", folders: ANY, make: |p| sparse(p, 64 << 30) },
    Kind { name: "sparse-1g", folders: ANY, make: |p| sparse(p, 1 << 30) },
    Kind { name: "empty", folders: ANY, make: |p| write(p, b"") },
    // Nesting and alias bombs.
    Kind { name: "flow-tower", folders: &[Folder::Cards, Folder::Registry], make: |p| text(p, &format!("title: t\n{}", tower(5000))) },
    Kind { name: "block-tower", folders: &[Folder::Cards, Folder::Registry], make: |p| text(p, &block_tower(300)) },
    Kind { name: "alias-bomb", folders: &[Folder::Cards, Folder::Registry], make: |p| text(p, &format!("{}title: bomb\n", bomb())) },
    Kind { name: "def-tower", folders: DEFS, make: |p| text(p, &format!("---\n{}---\nbody\n", tower(5000))) },
    Kind { name: "def-bomb", folders: DEFS, make: |p| text(p, &format!("---\n{}---\nbody\n", bomb())) },
    // Numbers in cards at 0, -1, the maximum and one past it.
    Kind { name: "timeout-0", folders: CARDS, make: |p| text(p, "title: t\ntimeout_s: 0\n") },
    Kind { name: "timeout-neg", folders: CARDS, make: |p| text(p, "title: t\ntimeout_s: -1\n") },
    Kind { name: "timeout-1e13", folders: CARDS, make: |p| text(p, "title: t\ntimeout_s: 1e13\n") },
    Kind { name: "timeout-max-plus", folders: CARDS, make: |p| text(p, "title: t\ntimeout_s: 31536001\n") },
    Kind { name: "timeout-nan", folders: CARDS, make: |p| text(p, "title: t\ntimeout_s: .nan\n") },
    Kind { name: "timeout-inf", folders: CARDS, make: |p| text(p, "title: t\ntimeout_s: .inf\n") },
    Kind { name: "attempts-0", folders: CARDS, make: |p| text(p, "title: t\nmax_attempts: 0\n") },
    Kind { name: "attempts-neg", folders: CARDS, make: |p| text(p, "title: t\nmax_attempts: -1\n") },
    Kind { name: "attempts-u32-plus", folders: CARDS, make: |p| text(p, "title: t\nmax_attempts: 4294967296\n") },
    Kind { name: "attempts-max-plus", folders: CARDS, make: |p| text(p, "title: t\nmax_attempts: 1000001\n") },
    Kind { name: "cpu-neg", folders: CARDS, make: |p| text(p, "title: t\nresources: {cpu: -1}\n") },
    Kind { name: "cpu-huge", folders: CARDS, make: |p| text(p, "title: t\nresources: {cpu: 1e300}\n") },
    Kind { name: "mem-u64-max", folders: CARDS, make: |p| text(p, "title: t\nresources: {mem_mb: 18446744073709551615}\n") },
    Kind { name: "mem-u64-plus", folders: CARDS, make: |p| text(p, "title: t\nresources: {mem_mb: 18446744073709551616}\n") },
    Kind { name: "gpu-neg", folders: CARDS, make: |p| text(p, "title: t\nresources: {gpu: -1}\n") },
    Kind { name: "pas-attempts-max", folders: CARDS, make: |p| text(p, "title: t\npas: {state: inbox, attempts: 4294967295}\n") },
    Kind { name: "pas-attempts-neg", folders: CARDS, make: |p| text(p, "title: t\npas: {state: inbox, attempts: -1}\n") },
    Kind { name: "pas-epoch-max", folders: CARDS, make: |p| text(p, "title: t\npas: {state: inbox, epoch: 18446744073709551615}\n") },
    Kind { name: "pas-epoch-2p53-plus", folders: CARDS, make: |p| text(p, "title: t\npas: {state: inbox, epoch: 9007199254740993}\n") },
    Kind { name: "pas-assigned-far-future", folders: CARDS, make: |p| text(p, "title: t\npas: {state: assigned, assigned_to: probe, assigned_at: '9999-12-31T23:59:59.999Z'}\n") },
    Kind { name: "pas-assigned-year-1", folders: CARDS, make: |p| text(p, "title: t\npas: {state: assigned, assigned_to: probe, assigned_at: '0001-01-01T00:00:00Z'}\n") },
    Kind { name: "pas-assigned-year-99999", folders: CARDS, make: |p| text(p, "title: t\npas: {assigned_at: '+99999-01-01T00:00:00Z'}\n") },
    Kind { name: "pas-history-bad-date", folders: CARDS, make: |p| text(p, "title: t\npas: {history: [{at: '1000-01-01T00:00:00Z', from: new, to: inbox}]}\n") },
    Kind { name: "pas-forged-done", folders: CARDS, make: |p| text(p, "title: t\nresult: forged\npas: {state: done, assigned_to: probe, attempts: 0, epoch: 999, history: [{at: '2020-01-01T00:00:00Z', from: new, to: done, by: probe}]}\n") },
    Kind { name: "pas-forged-assignee", folders: CARDS, make: |p| text(p, "title: t\npas: {state: assigned, assigned_to: 'bad name!', attempts: 0}\n") },
    // Numbers in registrations.
    Kind { name: "reg-epoch-max", folders: REGS, make: |p| text(p, "epoch: 18446744073709551615\n") },
    Kind { name: "reg-epoch-neg", folders: REGS, make: |p| text(p, "epoch: -1\n") },
    Kind { name: "reg-slots-max", folders: REGS, make: |p| text(p, "max_concurrent: 4294967295\n") },
    Kind { name: "reg-interval-huge", folders: REGS, make: |p| text(p, "heartbeat_interval_s: 1e300\n") },
    Kind { name: "reg-interval-nan", folders: REGS, make: |p| text(p, "heartbeat_interval_s: .nan\n") },
    Kind { name: "reg-registered-far", folders: REGS, make: |p| text(p, "registered_at: '9999-12-31T23:59:59Z'\n") },
    Kind { name: "def-slots-max", folders: DEFS, make: |p| text(p, "---\nmax_concurrent: 4294967295\nctx_limit: 18446744073709551615\nheartbeat_interval_s: -1\n---\n") },
    // Heartbeat lines.
    Kind { name: "beat-epoch-max", folders: BEATS, make: |p| text(p, "{\"ts\":\"2026-01-01T00:00:00Z\",\"epoch\":18446744073709551615}\n") },
    Kind { name: "beat-ts-far", folders: BEATS, make: |p| text(p, "{\"ts\":\"9999-12-31T23:59:59Z\"}\n{\"ts\":\"0001-01-01T00:00:00Z\"}\n") },
    Kind { name: "beat-ctx-max", folders: BEATS, make: |p| text(p, "{\"ts\":\"2026-01-01T00:00:00Z\",\"ctx_used\":18446744073709551615,\"ctx_limit\":0}\n") },
    Kind { name: "beat-cpu-inf", folders: BEATS, make: |p| text(p, "{\"ts\":\"2026-01-01T00:00:00Z\",\"cpu\":1e309,\"progress\":-1}\n") },
    Kind { name: "beat-long-line", folders: BEATS, make: |p| text(p, &format!("{{\"ts\":\"2026-01-01T00:00:00Z\",\"note\":\"{}\"}}\n", "n".repeat(100 << 10))) },
    Kind { name: "beat-binary", folders: BEATS, make: |p| write(p, b"\xff\xfe\x00{\"ts\":\n\x00\x00\n") },
    // Encodings.
    Kind { name: "bad-utf8", folders: ANY, make: |p| write(p, b"title: \xff\xfe bad\n") },
    Kind { name: "nul-byte", folders: ANY, make: |p| write(p, b"title: a\0b\n") },
    Kind { name: "bom-crlf", folders: CARDS, make: |p| write(p, b"\xef\xbb\xbftitle: bom\r\npriority: low\r\n") },
    Kind { name: "control-chars", folders: ANY, make: |p| write(p, b"title: bell \x07 esc \x1b\n") },
    Kind { name: "not-a-mapping", folders: &[Folder::Cards, Folder::Registry], make: |p| text(p, "- a\n- list\n") },
];

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
    ];
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
