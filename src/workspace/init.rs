//! `pas init`: a new workspace's folders, `pas.yaml`, `.gitignore`, schemas and example
//! agents; and the folders `pas serve` makes sure of.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rust_embed::RustEmbed;

use super::Workspace;
use crate::card::State;
use crate::config::DEFAULT_CONFIG_YAML;

/// The JSON Schemas, compiled in so `pas init` works anywhere.
#[derive(RustEmbed)]
#[folder = "contracts/"]
#[include = "*.schema.json"]
pub struct Contracts;

/// The example swarm, compiled in.
#[derive(RustEmbed)]
#[folder = "agents/"]
#[include = "*.md"]
pub struct ExampleAgents;

/// Creates the state folders (and staging) that are missing, and adds pas's lines to
/// `.gitignore`; used by `pas serve`, which, unlike `pas init`, adds no example files.
pub fn ensure_dirs(ws: &Workspace) -> Result<()> {
    for s in State::ALL {
        fs::create_dir_all(ws.state_dir(s))?;
    }
    for d in [
        ws.rejected(),
        ws.registry(),
        ws.heartbeats(),
        ws.staging(),
        ws.work().join("traces"),
    ] {
        fs::create_dir_all(d)?;
    }
    let track = ws.config().is_ok_and(|c| c.git.track_heartbeats);
    ensure_gitignore(&ws.root, track)?;
    Ok(())
}

/// Appends the lines pas needs to `<root>/.gitignore`; true when the file was created.
/// It removes only pas's own heartbeat line, and only when `git.track_heartbeats` asks
/// for heartbeat files to be committed.
fn ensure_gitignore(root: &Path, track_heartbeats: bool) -> Result<bool> {
    let gitignore = root.join(".gitignore");
    let mut existing = fs::read_to_string(&gitignore).unwrap_or_default();
    let created = existing.is_empty();
    let wanted = |l: &&str| !(track_heartbeats && *l == HEARTBEAT_IGNORE);
    let missing: Vec<&str> = GITIGNORE_LINES
        .iter()
        .copied()
        .filter(wanted)
        .filter(|l| !existing.lines().any(|e| e.trim() == *l))
        .collect();
    let unwanted = track_heartbeats && existing.lines().any(|e| e.trim() == HEARTBEAT_IGNORE);
    if missing.is_empty() && !unwanted {
        return Ok(false);
    }
    if unwanted {
        existing = existing
            .lines()
            .filter(|e| e.trim() != HEARTBEAT_IGNORE)
            .map(|e| format!("{e}\n"))
            .collect();
    }
    let mut text = existing.clone();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if !missing.is_empty() {
        text.push_str("# pas\n");
    }
    for l in missing {
        text.push_str(l);
        text.push('\n');
    }
    crate::fsops::write_atomic(&gitignore, text.as_bytes(), false)
        .with_context(|| format!("cannot write {}", gitignore.display()))?;
    Ok(created)
}

/// The `.gitignore` line that keeps heartbeat files out of git.
const HEARTBEAT_IGNORE: &str = "work/heartbeats/*.jsonl";

/// What `pas init` did.
#[derive(Debug, Default)]
pub struct InitReport {
    /// Files and folders created (nothing existing is overwritten).
    pub created: Vec<PathBuf>,
    /// Whether a git repository was created.
    pub git_init: bool,
}

/// Lines `pas init` makes sure the workspace's `.gitignore` has.
const GITIGNORE_LINES: &[&str] = &[
    HEARTBEAT_IGNORE,
    // Agents' span files: traces live in telemetry/pas.db, not in the audit trail.
    "work/traces/",
    ".pas/",
    "work/.pas-daemon.lock",
    "telemetry/pas.db",
    "telemetry/pas.db-*",
];

/// Creates a workspace at `root`: folders, `pas.yaml`, `.gitignore`, schemas, example
/// agents. Safe to run twice: it adds what is missing and overwrites nothing.
pub fn init(root: &Path) -> Result<InitReport> {
    fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let root = &root
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", root.display()))?;
    let ws = Workspace::at(root);
    let mut report = InitReport::default();
    fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;

    let mut dirs: Vec<PathBuf> = State::ALL.iter().map(|s| ws.state_dir(*s)).collect();
    dirs.extend([ws.rejected(), ws.registry(), ws.heartbeats()]);
    for d in &dirs {
        let keep = d.join(".gitkeep");
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        add_file(&keep, b"", &mut report)?;
    }
    fs::create_dir_all(ws.staging())?;
    add_file(
        &ws.config_path(),
        DEFAULT_CONFIG_YAML.as_bytes(),
        &mut report,
    )?;
    add_file(
        &root.join("telemetry").join(".gitignore"),
        b"pas.db\npas.db-*\n",
        &mut report,
    )?;
    for name in Contracts::iter() {
        if let Some(f) = Contracts::get(&name) {
            add_file(&ws.contracts().join(name.as_ref()), &f.data, &mut report)?;
        }
    }
    for name in ExampleAgents::iter() {
        if let Some(f) = ExampleAgents::get(&name) {
            add_file(&ws.agents_dir().join(name.as_ref()), &f.data, &mut report)?;
        }
    }
    if ensure_gitignore(root, false)? {
        report.created.push(root.join(".gitignore"));
    }
    Ok(report)
}

fn add_file(path: &Path, bytes: &[u8], report: &mut InitReport) -> Result<()> {
    if fs::symlink_metadata(path).is_ok() {
        return Ok(());
    }
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    crate::fsops::write_atomic(path, bytes, false)
        .with_context(|| format!("cannot write {}", path.display()))?;
    report.created.push(path.to_path_buf());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_is_idempotent_and_overwrites_nothing() {
        let d = tempfile::tempdir().unwrap();
        let r1 = init(d.path()).unwrap();
        assert!(!r1.created.is_empty());
        fs::write(d.path().join("pas.yaml"), "max_attempts: 9\n").unwrap();
        let r2 = init(d.path()).unwrap();
        assert!(r2.created.is_empty(), "{:?}", r2.created);
        assert_eq!(
            fs::read_to_string(d.path().join("pas.yaml")).unwrap(),
            "max_attempts: 9\n"
        );
        for s in State::ALL {
            assert!(Workspace::at(d.path()).state_dir(s).is_dir());
        }
    }
}
