//! `pas remote status` and `pas init --remote URL` (SPEC section 14).

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use super::{Format, Out};
use crate::workspace::Workspace;

/// `pas remote ...`.
#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Each host seen on the remote, its last push and claims held; this clone's lag; and
    /// whether the remote answers.
    Status {
        #[command(flatten)]
        fmt: Format,
    },
}

/// Runs `pas remote ...`.
pub fn run(ws: &Workspace, cmd: RemoteCommand, out: &Out) -> Result<i32> {
    match cmd {
        RemoteCommand::Status { fmt } => status(ws, fmt, out),
    }
}

fn status(ws: &Workspace, fmt: Format, out: &Out) -> Result<i32> {
    let cfg = ws.config()?;
    let Some(remote) = cfg.remote else {
        bail!(
            "{} has no remote: add `remote: {{name: origin, branch: main}}` to pas.yaml, or run pas init --remote URL",
            ws.root.display()
        );
    };
    let st = crate::remote::status::status(&ws.root, &remote);
    if fmt.json {
        out.json(&serde_json::to_value(&st)?);
        return Ok(if st.reachable { 0 } else { 1 });
    }
    let reach = match &st.error {
        None => "reachable".to_string(),
        Some(e) => format!("UNREACHABLE ({e})"),
    };
    out.line(format!(
        "remote {} {} branch {}: {reach}",
        st.name, st.url, st.branch
    ));
    out.line(format!(
        "this host: {} ({} ahead, {} behind the remote); claims held on the remote: {}",
        st.host, st.ahead, st.behind, st.claims_held
    ));
    let mut t = out.table(&["HOST", "LAST PUSH", "CLAIMS HELD"]);
    for h in &st.hosts {
        let last = h.last_push.map_or("-".to_string(), |t| {
            t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        });
        t.add_row(vec![h.host.clone(), last, h.claims_held.to_string()]);
    }
    out.print_table(&t);
    Ok(if st.reachable { 0 } else { 1 })
}

/// Before `pas init DIR --remote URL` makes the workspace: makes the remote when it is a
/// local path that does not exist yet (a bare repository: the embedded default for trying
/// many hosts on one machine), and clones it into DIR when it already holds a board.
pub fn before_init(dir: &Path, url: &str) -> Result<()> {
    let local = url.strip_prefix("file://").unwrap_or(url);
    let is_local = url.starts_with("file://") || !url.contains("://") && !url.contains(':');
    if is_local && !Path::new(local).exists() {
        crate::remote::setup::create_bare(Path::new(local))
            .with_context(|| format!("cannot create the remote {url}"))?;
    }
    let has_repo = dir.join(".git").exists();
    let git = crate::remote::git::Git::new(dir.parent().unwrap_or(Path::new(".")), url);
    let branches = git
        .ls_remote(&["refs/heads/*"])
        .with_context(|| format!("cannot reach the remote {url}"))?;
    if !has_repo && !branches.is_empty() {
        crate::remote::setup::clone(Path::new(url), dir)
            .with_context(|| format!("cannot clone {url} into {}", dir.display()))?;
    }
    Ok(())
}

/// After the workspace is made: `remote:` in pas.yaml, the git remote `origin`, and the
/// board pushed when the remote had none.
pub fn after_init(dir: &Path, url: &str, out: &Out) -> Result<()> {
    let ws = Workspace::at(dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()));
    let cfg = ws.config()?;
    let git = crate::remote::git::Git::new(&ws.root, "origin");
    if cfg.remote.is_none() {
        let mut text = std::fs::read_to_string(ws.config_path()).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "\n# Many hosts, one workspace (SPEC section 14): claims and the board live on this remote.\nremote: {{name: origin, url: {}, branch: main, lease_s: 30, poll_ms: 500}}\n",
            serde_json::to_string(url)?
        ));
        crate::fsops::write_atomic(&ws.config_path(), text.as_bytes(), false)?;
        git.run("add", &["add", "pas.yaml"])?;
        git.run(
            "commit",
            &[
                "-c",
                "user.name=pas",
                "-c",
                "user.email=pas@localhost",
                "commit",
                "--quiet",
                "-m",
                "pas: remote in pas.yaml",
                "--",
                "pas.yaml",
            ],
        )?;
    }
    if git.run("remote", &["remote", "get-url", "origin"]).is_err() {
        git.run("remote", &["remote", "add", "origin", url])?;
    }
    let remote = ws.config()?.remote.unwrap_or_default();
    let has_branch = !git
        .ls_remote(&[&format!("refs/heads/{}", remote.branch)])?
        .is_empty();
    if !has_branch {
        git.run(
            "push",
            &[
                "push",
                "--quiet",
                "origin",
                &format!("HEAD:refs/heads/{}", remote.branch),
            ],
        )?;
        out.line(format!(
            "pushed the board to {url} (branch {})",
            remote.branch
        ));
    }
    out.line(format!(
        "this clone is host {} of {url}",
        crate::remote::host_name(&ws.root)
    ));
    Ok(())
}
