//! `pas run AGENT`: the supervisor of one `run:` agent without the daemon's other duties
//! (the daemon, here or on another host, assigns; this registers, beats and runs), and
//! `pas logs ID`: a card's run log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::Out;
use crate::workspace::Workspace;

/// Flags of `pas run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The agent (its definition in agents/ must have a run: section).
    pub agent: String,
    /// The gateway URL the processes get (default: where a local `pas serve` listens,
    /// else `gateway.bind` of pas.yaml).
    #[arg(long, value_name = "URL")]
    pub gateway: Option<String>,
    /// How often the agent's folder is looked at, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub poll_ms: u64,
}

/// `pas run AGENT`: runs until SIGINT or SIGTERM; running processes are then ended and
/// their cards stay assigned (the daemon takes them back if the agent does not return).
pub fn run(ws: &Workspace, args: RunArgs, out: &Out) -> Result<i32> {
    let agent = crate::runner::load(ws, &args.agent)?;
    let gateway = match args.gateway {
        Some(g) => g.trim_end_matches('/').to_string(),
        None => {
            // A local `pas serve` says where it listens; else `gateway.bind` of pas.yaml.
            let serving = std::fs::read_to_string(crate::server::addresses_path(ws))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["gateway"].as_str().map(str::to_string));
            let bind = match serving {
                Some(b) => b,
                None => ws.config()?.gateway.bind,
            };
            crate::runner::gateway_url(&bind)
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    crate::daemon::on_signals(move || flag.store(true, Ordering::Relaxed), || {})?;
    out.line(format!(
        "running {} ({} at once) from {}; Ctrl-C stops",
        agent.def.name,
        agent.slots(),
        agent.file.display()
    ));
    let opts = crate::runner::Options {
        gateway,
        poll: Duration::from_millis(args.poll_ms.clamp(5, 10_000)),
        stop,
        stats: None,
    };
    crate::runner::supervise(ws, agent, &opts)?;
    Ok(0)
}

/// Flags of `pas logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The card.
    pub id: String,
    /// Only the last N lines.
    #[arg(long, short = 'n')]
    pub tail: Option<usize>,
}

/// `pas logs ID`: the output of the card's runs, as pas kept it (head and tail).
pub fn logs(ws: &Workspace, args: LogsArgs, out: &Out) -> Result<i32> {
    if !crate::card::valid_id(&args.id) {
        bail!("{:?} is not a valid job id", args.id);
    }
    let path = crate::runner::log_path(ws, &args.id);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "no run log for {} (no {})",
                args.id,
                crate::workspace::rel(ws, &path)
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let text = String::from_utf8_lossy(&bytes);
    let shown = match args.tail {
        Some(n) => crate::runner::log::last_lines(&text, n, usize::MAX),
        None => text.trim_end().to_string(),
    };
    out.line(shown);
    Ok(0)
}
