//! `pas bench history`: a long history, and what reading a card's commits costs in it.
//!
//! It writes `--commits N` commits the way pas makes them (each card dropped into the
//! inbox, assigned, done; the pipeline keeps a few dozen cards in flight, so histories
//! interleave) with `git fast-import` (minutes of real commits in seconds), checks the work
//! tree out, and times as whole processes, median of `--runs`:
//! - `pas log ID --json` of the oldest and the newest card, three ways: the walk pas did
//!   before the index (`PAS_LOG_READ=walk`, one walk of the whole log), one pass over git
//!   (`PAS_LOG_READ=pass`: what a reader does when the index is absent) and the index;
//!   the three outputs must be identical;
//! - `pas reindex`;
//! - the dashboard's job page data (`GET /api/jobs/ID`) of both cards, from a daemon
//!   started on the workspace;
//! - the bytes one commit writes to `.git` before a repack, for a card into the inbox and
//!   into `done/` (which holds every finished card).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::{BenchArgs, Daemon};
use crate::workspace::Workspace;

pub fn history(args: &BenchArgs) -> Result<i32> {
    let commits = args.commits;
    let runs = args.runs.max(1);
    let (_dir, ws) = super::scratch(args.dir.as_deref(), 0, 1, args)?;
    for i in 0..3 {
        std::fs::create_dir_all(ws.work().join(format!("assigned/agent-{i}")))?;
    }
    let started = Instant::now();
    let cards = generate(&ws.root, commits)?;
    let generated_s = started.elapsed().as_secs_f64();
    let (oldest, newest) = ("J-0".to_string(), format!("J-{}", cards - 1));
    eprintln!(
        "{commits} commits, {cards} cards written in {generated_s:.1} s; timing pas log {oldest} and {newest}"
    );
    let exe = std::env::current_exe().context("cannot find the pas binary")?;
    let pas = |args: &[&str], read: &str| -> Result<(Duration, Vec<u8>)> {
        let t = Instant::now();
        let out = Command::new(&exe)
            .arg("--root")
            .arg(&ws.root)
            .args(args)
            .env("PAS_LOG_READ", read)
            .env("PAS_LOG", "warn")
            .stderr(Stdio::inherit())
            .output()?;
        let took = t.elapsed();
        if !out.status.success() {
            bail!("pas {args:?} failed");
        }
        Ok((took, out.stdout))
    };
    let t = Instant::now();
    let (_, said) = pas(&["reindex"], "")?;
    let reindex_ms = ms(t.elapsed());
    eprint!("pas reindex: {}", String::from_utf8_lossy(&said));
    let mut results = Vec::new();
    for (mode, read, n) in [
        ("index", "", runs),
        ("pass", "pass", runs.min(3)),
        ("walk", "walk", runs.min(3)),
    ] {
        for id in [&oldest, &newest] {
            let mut times = Vec::new();
            let mut output = Vec::new();
            for _ in 0..n {
                let (took, out) = pas(&["log", id, "--json"], read)?;
                times.push(ms(took));
                output = out;
            }
            let median = median(&mut times);
            eprintln!("pas log {id} ({mode}): {median:.1} ms (median of {n})");
            results.push((mode, id.clone(), median, output));
        }
    }
    for id in [&oldest, &newest] {
        let outputs: Vec<&Vec<u8>> = results
            .iter()
            .filter(|r| &r.1 == id)
            .map(|r| &r.3)
            .collect();
        if outputs.windows(2).any(|w| w[0] != w[1]) {
            bail!("pas log {id} differs between the index, the pass and the walk");
        }
    }
    let size = crate::store::git::upkeep::measure(&ws.root.join(".git"));
    // The job page, from a daemon (its start catches the index up, if it needs to).
    let daemon = Daemon::start(&ws.root)?;
    let addr = dashboard_addr(&ws)?;
    let mut page = Vec::new();
    for id in [&oldest, &newest] {
        let mut times = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let body = http_get(&addr, &format!("/api/jobs/{id}"))?;
            times.push(ms(t.elapsed()));
            let v: serde_json::Value =
                serde_json::from_str(&body).with_context(|| format!("job page of {id}: {body}"))?;
            if v["commits"].as_array().is_none_or(Vec::is_empty) {
                bail!("job page of {id} lists no commits: {body}");
            }
        }
        let median = median(&mut times);
        eprintln!("GET /api/jobs/{id}: {median:.1} ms (median of {runs})");
        page.push((id.clone(), median));
    }
    // What a commit writes to .git before a repack: a card into the inbox (a small
    // folder) and into done/ (which holds every finished card).
    let git_dir = ws.root.join(".git");
    let mut written = Vec::new();
    for (folder, n) in [("inbox", 10), ("done", 10)] {
        let mut bytes = Vec::new();
        for i in 0..n {
            let before = crate::store::git::upkeep::measure(&git_dir);
            let head = run_git(&ws.root, &["rev-parse", "HEAD"])?;
            let id = format!("W-{folder}-{i}");
            let dir = ws.work().join(folder);
            let tmp = dir.join(format!(".{id}.tmp"));
            std::fs::write(&tmp, format!("title: {id}\n"))?;
            std::fs::rename(&tmp, dir.join(format!("{id}.yaml")))?;
            super::wait_for(Duration::from_secs(30), "the card's commit", || {
                run_git(&ws.root, &["rev-parse", "HEAD"]).is_ok_and(|h| h != head)
            })?;
            let after = crate::store::git::upkeep::measure(&git_dir);
            if after.packs == before.packs {
                bytes.push(after.loose_bytes.saturating_sub(before.loose_bytes) as f64);
            }
        }
        let per_commit = if bytes.is_empty() {
            0.0
        } else {
            median(&mut bytes)
        };
        eprintln!("a commit of a card into {folder}/ writes {per_commit:.0} bytes (median)");
        written.push((folder, per_commit));
    }
    drop(daemon);
    let report = json!({
        "commits": commits,
        "cards": cards,
        "generate_s": generated_s,
        "git_objects_bytes": size.bytes(),
        "reindex_ms": reindex_ms,
        "log_ms": results.iter().map(|(mode, id, ms, _)| json!({"read": mode, "card": id, "median_ms": ms})).collect::<Vec<_>>(),
        "job_page_ms": page.iter().map(|(id, ms)| json!({"card": id, "median_ms": ms})).collect::<Vec<_>>(),
        "bytes_per_commit": written.iter().map(|(f, b)| json!({"into": f, "loose_bytes": b})).collect::<Vec<_>>(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("history of {commits} commits, {cards} cards; pas reindex {reindex_ms:.0} ms");
        println!("{:<8} {:<10} {:>12}", "read", "card", "pas log ms");
        for (mode, id, ms, _) in &results {
            println!("{mode:<8} {id:<10} {ms:>12.1}");
        }
        for (id, ms) in &page {
            println!("job page {id:<10} {ms:>9.1} ms");
        }
        for (folder, b) in &written {
            println!("a commit into {folder}/ writes {b:.0} bytes before packing");
        }
    }
    Ok(0)
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(super) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Writes some `commits` commits (a multiple of 3) on HEAD with `git fast-import`, then
/// checks them out: each card is dropped into the inbox, assigned to one of three agents
/// 16 commits later and done 47 commits after it was new (one transition per commit, as
/// pas commits them when they come apart); every card ends in done/. Returns the number
/// of cards.
fn generate(root: &Path, commits: usize) -> Result<usize> {
    let mut import = FastImport::start(root)?;
    let start = chrono::Utc::now().timestamp() - 2 * commits as i64;
    // Card k is new at slot 3k, assigned at 3k + 16 and done at 3k + 47: one transition
    // per slot (the offsets differ modulo 3), some 15 cards in flight at any time.
    let cards = commits.div_ceil(3).max(1);
    let mut slots: Vec<(usize, usize, String, String)> = Vec::with_capacity(3 * cards);
    for k in 0..cards {
        let agent = format!("assigned/agent-{}", k % 3);
        slots.push((3 * k, k, String::new(), "inbox".into()));
        slots.push((3 * k + 16, k, "inbox".into(), agent.clone()));
        slots.push((3 * k + 47, k, agent, "done".into()));
    }
    slots.sort_by_key(|s| s.0);
    let steps: Vec<(usize, String, String)> =
        slots.into_iter().map(|(_, k, f, t)| (k, f, t)).collect();
    for (i, (k, from, to)) in steps.iter().enumerate() {
        let id = format!("J-{k}");
        let msg = match from.as_str() {
            "" => format!("pas: {id} new -> {to}"),
            _ => format!("pas: {id} {from} -> {to}"),
        };
        import.commit(start + 2 * i as i64, &msg)?;
        let text = format!("title: bench card {id}\npriority: medium\n");
        writeln!(
            import.stdin,
            "M 100644 inline work/{to}/{id}.yaml\ndata {}\n{text}",
            text.len()
        )?;
        if !from.is_empty() {
            writeln!(import.stdin, "D work/{from}/{id}.yaml")?;
        }
        writeln!(import.stdin)?;
    }
    import.finish()?;
    Ok(cards)
}

/// `git -C root ARGS`; its output, trimmed.
pub(super) fn run_git(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A `git fast-import` writing commits onto HEAD's branch, by pas as author; `finish`
/// ends it and checks the result out.
pub(super) struct FastImport {
    root: std::path::PathBuf,
    branch: String,
    /// HEAD when the import started, the first commit's parent (taken once).
    head: Option<String>,
    child: std::process::Child,
    /// Where the commits' file commands (`M`, `D`) go after `commit`.
    pub stdin: std::io::BufWriter<std::process::ChildStdin>,
}

impl FastImport {
    pub(super) fn start(root: &Path) -> Result<FastImport> {
        let branch = run_git(root, &["symbolic-ref", "HEAD"])?;
        let head = run_git(root, &["rev-parse", "HEAD"])?;
        let mut child = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(["fast-import", "--quiet", "--done"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot run git fast-import")?;
        let stdin = std::io::BufWriter::new(child.stdin.take().context("no stdin")?);
        Ok(FastImport {
            root: root.to_path_buf(),
            branch,
            head: Some(head),
            child,
            stdin,
        })
    }

    /// Starts a commit at `time` (Unix seconds) with message `msg`.
    pub(super) fn commit(&mut self, time: i64, msg: &str) -> Result<()> {
        let branch = &self.branch;
        write!(
            self.stdin,
            "commit {branch}\nauthor pas <pas@localhost> {time} +0000\ncommitter pas <pas@localhost> {time} +0000\ndata {}\n{msg}\n",
            msg.len()
        )?;
        if let Some(head) = self.head.take() {
            writeln!(self.stdin, "from {head}")?;
        }
        Ok(())
    }

    /// Ends the import and checks HEAD out.
    pub(super) fn finish(mut self) -> Result<()> {
        writeln!(self.stdin, "done")?;
        self.stdin.flush()?;
        drop(self.stdin);
        if !self.child.wait()?.success() {
            bail!("git fast-import failed");
        }
        run_git(&self.root, &["reset", "-q", "--hard"])?;
        Ok(())
    }
}

/// The dashboard's address from `.pas/serve.json`.
pub(super) fn dashboard_addr(ws: &Workspace) -> Result<String> {
    let path = ws.root.join(".pas/serve.json");
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let v: serde_json::Value = serde_json::from_str(&text)?;
            if let Some(a) = v["dashboard"].as_str() {
                return Ok(a.to_string());
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the daemon wrote no {}", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP/1.1 GET on loopback; the body.
pub(super) fn http_get(addr: &str, path: &str) -> Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP reply")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {head}");
    }
    // Chunked bodies: the JSON is the concatenation of the chunks.
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n.min(tail.len())]);
            rest = tail.get(n + 2..).unwrap_or("");
        }
        return Ok(out);
    }
    Ok(body.to_string())
}
