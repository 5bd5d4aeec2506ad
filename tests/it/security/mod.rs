//! The security suite (issue 6): the dashboard changes nothing whatever the method, the
//! token is enforced on non-loopback binds, every user string is escaped, foreign web
//! pages are refused, and no secret reaches any file, log, receipt or page.
//!
//! Real daemons and real HTTP throughout. Requests that a client library would not send
//! (TRACE, CONNECT, a foreign `Host`) go over a raw TCP socket, so the test says exactly
//! what went on the wire.

mod escaping;
mod listeners;
mod routes;
mod secrets;
mod token;
mod upstreams;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::process::Command;
use std::time::Duration;

use crate::support::http::raw;
use crate::support::workspace::Workspace;

/// One OpenAI provider `p` at `up` with model `m` (capability `x`, $1 per Mtok each way).
pub fn priced_provider(up: &pas::llm::fake::Fake) -> String {
    crate::support::gateway::provider(
        "p",
        up,
        pas::llm::config::Protocol::Openai,
        "",
        &crate::support::gateway::model("m", &["x"], Some(("1", "1"))),
    )
}

/// Everything a request could change: HEAD, `git status`, the bytes of every file outside
/// `.git`, `telemetry/` and `.pas/` (heartbeats excluded: agents write them), and the row
/// count of every table.
#[derive(Debug, PartialEq, Eq)]
pub struct State {
    head: String,
    status: Vec<String>,
    /// Path to a hash of the bytes (a readable diff when the test fails).
    files: BTreeMap<String, u64>,
    rows: BTreeMap<String, i64>,
}

impl State {
    /// The state once the daemon has finished what it was doing: `git status` clean and
    /// nothing changing for 300 ms (its own commits must not pass for the requests').
    pub fn settled(ws: &Workspace) -> State {
        crate::support::workspace::wait_until(
            "the workspace to settle",
            crate::support::workspace::WAIT,
            || {
                let first = State::of(ws);
                std::thread::sleep(Duration::from_millis(300));
                let second = State::of(ws);
                if first == second && second.status.is_empty() {
                    Ok(second)
                } else {
                    Err(format!("{first:?}\n{second:?}"))
                }
            },
        )
    }

    pub fn of(ws: &Workspace) -> State {
        let mut files = BTreeMap::new();
        let skip = |rel: &str| {
            [".git", "telemetry", ".pas", "work/heartbeats"]
                .iter()
                .any(|p| rel == *p || rel.starts_with(&format!("{p}/")))
        };
        let walk = walkdir::WalkDir::new(&ws.root).into_iter();
        for e in walk.filter_entry(|e| !skip(&rel(ws, e.path()))).flatten() {
            if !e.file_type().is_dir() {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(e.path()).unwrap_or_default().hash(&mut h);
                files.insert(rel(ws, e.path()), h.finish());
            }
        }
        State {
            head: ws.head(),
            status: ws.git_status(&[]),
            files,
            rows: tables(ws)
                .into_iter()
                .map(|t| {
                    let n = ws.db_count(&format!("SELECT count(*) FROM \"{t}\""));
                    (t, n)
                })
                .collect(),
        }
    }
}

fn rel(ws: &Workspace, p: &std::path::Path) -> String {
    p.strip_prefix(&ws.root)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// The tables of the telemetry database.
pub fn tables(ws: &Workspace) -> Vec<String> {
    ws.db_query(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
        |r| r.get(0),
    )
}

/// Every place under the workspace that holds `needle`: raw files (the `.git` folder,
/// the database and its WAL included), every git object decompressed, and every cell of
/// every table. Empty when the needle is nowhere.
pub fn places_holding(ws: &Workspace, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for e in walkdir::WalkDir::new(&ws.root).into_iter().flatten() {
        if e.file_type().is_file() {
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            if contains(&bytes, needle) {
                seen.push(format!("file {}", rel(ws, e.path())));
            }
        }
    }
    let objects = Command::new("git")
        .args(["cat-file", "--batch-all-objects", "--batch"])
        .current_dir(&ws.root)
        .output()
        .unwrap();
    assert!(objects.status.success(), "git cat-file failed");
    assert!(!objects.stdout.is_empty(), "no git objects to search");
    if contains(&objects.stdout, needle) {
        seen.push("a git object".into());
    }
    for t in tables(ws) {
        let cells = ws.db_query(&format!("SELECT * FROM \"{t}\""), |r| {
            let mut out = Vec::new();
            for i in 0..r.as_ref().column_count() {
                let v: rusqlite::types::Value = r.get(i)?;
                out.push(format!("{v:?}"));
            }
            Ok(out.join("\u{1}"))
        });
        if cells.iter().any(|c| c.contains(needle)) {
            seen.push(format!("table {t}"));
        }
    }
    seen
}

/// Whether `hay` holds `needle` as bytes.
pub fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}
