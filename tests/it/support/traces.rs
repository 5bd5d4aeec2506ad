//! The traces' fixture: a Python with the official SDKs (installed on demand), spans read
//! back with `pas trace`, and the receipts of a replay.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::workspace::{wait_until, Workspace};

pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// A Python that imports `modules`, with the packages pip installed into
/// `target/pysdk` on first use (the test command needs the package registry once).
pub(crate) fn python_with(modules: &str, packages: &[&str]) -> PathBuf {
    python_in("pysdk", modules, packages)
}

/// [`python_with`] into `target/<folder>`: SDKs whose dependencies overlap go to folders of
/// their own, because `pip install --target` skips a package folder that already exists
/// instead of merging it (the anthropic and MCP SDKs bring part of the `opentelemetry`
/// namespace without the OTLP exporter).
pub(crate) fn python_in(folder: &str, modules: &str, packages: &[&str]) -> PathBuf {
    // One pip at a time: tests run in parallel, and two installs into one folder clash.
    static PIP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = PIP.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(folder);
    let has = || {
        std::process::Command::new("python3")
            .args(["-c", &format!("import {modules}")])
            .env("PYTHONPATH", &dir)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has() {
        let _ = std::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&dir)
            .args(packages)
            .status();
    }
    assert!(
        has(),
        "python3 with {packages:?} (pip install --target target/{folder} failed)"
    );
    dir
}

/// Runs `tests/sdk/<script> args...` with `pythonpath`; its printed JSON.
pub(crate) fn run_py(script: &str, pythonpath: &PathBuf, args: &[&str]) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let out = std::process::Command::new("python3")
        .arg(&path)
        .args(args)
        .env("PYTHONPATH", pythonpath)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script}: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{script}: {e}: {stderr}"))
}

/// Every span of trace `id` (flattened from `pas trace ID --json`), once `ok` holds.
pub(crate) fn spans_when(
    ws: &Workspace,
    id: &str,
    what: &str,
    ok: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    wait_until(what, WAIT, || {
        let out = ws.pas(&["trace", id, "--json"]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).to_string());
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let mut all = Vec::new();
        let mut stack: Vec<Value> = v["spans"].as_array().cloned().unwrap_or_default();
        while let Some(mut n) = stack.pop() {
            stack.extend(n["children"].as_array().cloned().unwrap_or_default());
            n.as_object_mut().unwrap().remove("children");
            all.push(n);
        }
        if ok(&all) {
            Ok(all)
        } else {
            Err(format!("{} spans: {all:?}", all.len()))
        }
    })
}

/// The receipts that replay `target`: `(model, cost, job)`.
pub(crate) fn replay_receipts(ws: &Workspace, target: &str) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open_with_flags(
        ws.path("telemetry/pas.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = conn
        .prepare("SELECT model, cost_usd, job_id FROM receipts WHERE replay_of = ?1")
        .unwrap();
    let rows = stmt
        .query_map([target], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    rows.map(Result::unwrap).collect()
}
