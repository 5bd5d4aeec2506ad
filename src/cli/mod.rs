//! The `pas` command line: clap definitions and dispatch. Reading commands work from the
//! files alone (no daemon) and take `--json`; writing commands make the same atomic file
//! moves an agent would.

pub(crate) mod agents;
pub(crate) mod llm;
pub mod mcp;
mod ops;
mod output;
pub(crate) mod read;
mod remote;
mod replay;
pub(crate) mod review;
mod run;
pub(crate) mod traces;
pub(crate) mod write;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use output::Out;

/// pas: a file-based orchestrator for swarms of AI agents.
#[derive(Debug, Parser)]
#[command(name = "pas", version, about, long_about = None)]
pub struct Cli {
    /// The workspace (default: $PAS_ROOT, else the nearest folder upwards with pas.yaml,
    /// else the current folder).
    #[arg(
        long,
        global = true,
        env = "PAS_ROOT",
        value_name = "DIR",
        visible_alias = "workspace"
    )]
    pub root: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a workspace (safe to run twice: adds what is missing, overwrites nothing).
    Init {
        /// Folder to initialise (default: the current folder).
        dir: Option<PathBuf>,
        /// Share the board with other hosts through this git remote (file://, ssh://,
        /// https://): a local path that does not exist is created as a bare repository, and
        /// a remote that already holds a board is cloned.
        #[arg(long, value_name = "URL")]
        remote: Option<String>,
    },
    /// Run the daemon: watch the tree, assign cards, commit every transition.
    Serve {
        /// Reconcile once (recover, scan, assign, commit) and exit.
        #[arg(long)]
        once: bool,
        /// Dashboard address (default: `dashboard.bind` of pas.yaml, 127.0.0.1:6101).
        #[arg(long, env = "PAS_DASHBOARD_BIND", value_name = "ADDR")]
        dashboard_bind: Option<String>,
        /// Gateway address (default: `gateway.bind` of pas.yaml, 127.0.0.1:6120).
        #[arg(long, env = "PAS_GATEWAY_BIND", value_name = "ADDR")]
        gateway_bind: Option<String>,
        /// Token every HTTP request must carry; required for a non-loopback bind.
        #[arg(long, env = "PAS_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// The board: counts, agents, and why waiting cards wait.
    Status {
        /// Show the board as it stood at a git revision or a time ("2h ago").
        #[arg(long, value_name = "REV")]
        at: Option<String>,
        #[command(flatten)]
        fmt: Format,
    },
    /// Drop a new card into work/inbox/ (from flags, a file, or stdin with --file -).
    Submit(write::SubmitArgs),
    /// Pull-claim a card for AGENT by moving it into work/assigned/AGENT/.
    Claim {
        agent: String,
        /// A specific card (default: the best card AGENT can do).
        id: Option<String>,
    },
    /// Complete a card: move it to work/done/ with a result.
    Done {
        id: String,
        /// The result text.
        #[arg(long)]
        result: Option<String>,
    },
    /// Fail a card: move it to work/failed/ with an error.
    Fail {
        id: String,
        /// Why it failed.
        #[arg(long)]
        error: Option<String>,
    },
    /// Put a failed, done or assigned card back into the inbox.
    Retry { id: String },
    /// Approve a card waiting in work/review/: it moves to work/done/ with its result.
    Approve {
        id: String,
        /// A word for the history (why it is good).
        #[arg(long)]
        note: Option<String>,
    },
    /// Reject a card waiting in work/review/: back to the inbox with the feedback and
    /// `attempts` raised (to work/failed/ past max_attempts).
    Reject {
        id: String,
        /// What to change; added to the card's history and description.
        #[arg(long)]
        feedback: String,
    },
    /// Serve the Model Context Protocol over stdio: tools submit, claim, done, fail,
    /// heartbeat, span, status, show, approve, reject.
    Mcp,
    /// Register an agent (writes work/registry/NAME.yaml; the epoch rises each time).
    Register(write::RegisterArgs),
    /// Deregister an agent (removes its registration; its cards are taken back).
    Deregister { name: String },
    /// Pause an agent: it keeps its cards and gets no new ones.
    Pause { name: String },
    /// Resume a paused agent.
    Resume { name: String },
    /// Append a heartbeat for AGENT to work/heartbeats/AGENT.jsonl.
    Heartbeat(agents::BeatArgs),
    /// Every agent: status, epoch, assigned cards, last beat, context use.
    Agents {
        /// Show the hierarchy from `parent` links.
        #[arg(long)]
        tree: bool,
        #[command(flatten)]
        fmt: Format,
    },
    /// List cards.
    Jobs {
        /// Only cards in this state (inbox, assigned, review, done, failed, archived). Without it,
        /// every card but the archived ones.
        #[arg(long, short)]
        state: Option<String>,
        /// Only cards assigned to this agent.
        #[arg(long, short)]
        agent: Option<String>,
        /// At most this many cards (archived cards: newest day first).
        #[arg(long)]
        limit: Option<usize>,
        /// Skip this many cards first (with --limit, pages through a long list).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[command(flatten)]
        fmt: Format,
    },
    /// One card: its fields, place and history.
    Show {
        id: String,
        #[command(flatten)]
        fmt: Format,
    },
    /// A card's whole history from git.
    Log {
        id: String,
        #[command(flatten)]
        fmt: Format,
    },
    /// Rebuild the history index (which commits touched which card) from git in one pass.
    Reindex {
        #[command(flatten)]
        fmt: Format,
    },
    /// Check every file of the workspace against contracts/.
    Validate {
        #[command(flatten)]
        fmt: Format,
    },
    /// Which models would serve a request, in order, and why (`--explain`).
    Route {
        #[command(flatten)]
        args: llm::RouteArgs,
        #[command(flatten)]
        fmt: Format,
    },
    /// What LLM calls cost: today, this month, in all; by provider, model, agent, job, day.
    Costs {
        #[command(flatten)]
        fmt: Format,
    },
    /// Each LLM provider and model: breaker, cool-down left, last error, latency and
    /// error rate over the last minutes, calls and spend today.
    Providers {
        #[command(flatten)]
        fmt: Format,
    },
    /// What is wrong now (agents down or blocked, budgets spent, providers cooling down,
    /// rejected files), then the latest alerts, in sentences.
    Alerts {
        #[command(flatten)]
        fmt: Format,
    },
    /// Webhooks of `notify:` in pas.yaml.
    Notify {
        #[command(subcommand)]
        cmd: ops::NotifyCommand,
    },
    /// Traces, newest first: root, agent, job, spans, duration, tokens, cost, status.
    Traces {
        #[command(flatten)]
        args: traces::ListArgs,
        #[command(flatten)]
        fmt: Format,
    },
    /// One trace (by trace id or job id) as a tree, with each subtree's totals;
    /// `pas trace diff A B` lines two traces up (first divergence, output, token and cost
    /// deltas).
    Trace {
        id: String,
        /// After `diff`: the two traces (trace ids or job ids).
        more: Vec<String>,
        #[command(flatten)]
        fmt: Format,
    },
    /// Append one span line to work/traces/<trace_id>.jsonl (prints `trace_id span_id`).
    Span(traces::SpanArgs),
    /// Run a recorded LLM call again (edited as asked) as a card through the gateway.
    Replay(replay::ReplayArgs),
    /// Run the daemon with a simulated swarm on a scratch workspace (the main job).
    Demo(crate::demo::DemoArgs),
    /// Measure pas on this machine.
    Bench(crate::bench::BenchArgs),
    /// Run AGENT's processes (its definition has `run:`): register, beat, start one per
    /// assigned card, supervise, settle (what `pas serve` does for every such agent).
    Run(run::RunArgs),
    /// A card's run log (the output of the processes pas ran for it, head and tail).
    Logs(run::LogsArgs),
    /// The git remote several hosts share (SPEC section 14): `pas remote status`.
    Remote {
        #[command(subcommand)]
        cmd: remote::RemoteCommand,
    },
}

/// `--json` for reading commands.
#[derive(Debug, Clone, Copy, Args)]
pub struct Format {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs a parsed command; returns the exit status (0 done, 1 failed).
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    use crate::workspace::Workspace;
    let out = Out::stdout();
    if let Command::Init { dir, remote } = &cli.command {
        let dir = dir
            .clone()
            .or(cli.root.clone())
            .unwrap_or_else(|| PathBuf::from("."));
        let Some(url) = remote else {
            return write::init(&dir, &out);
        };
        remote::before_init(&dir, url)?;
        let code = write::init(&dir, &out)?;
        remote::after_init(&dir, url, &out)?;
        return Ok(code);
    }
    if let Command::Demo(args) = cli.command {
        return crate::demo::run(args);
    }
    let ws = Workspace::discover(cli.root.as_deref())?;
    match cli.command {
        Command::Init { .. } | Command::Demo(_) => unreachable!("handled above"),
        Command::Serve {
            once,
            dashboard_bind,
            gateway_bind,
            token,
        } => {
            let opts = crate::daemon::ServeOptions {
                once,
                dashboard_bind,
                gateway_bind,
                token: token.filter(|t| !t.is_empty()),
            };
            crate::daemon::serve(&ws, &opts)?;
            Ok(0)
        }
        Command::Status { at, fmt } => read::status(&ws, at.as_deref(), fmt, &out),
        Command::Submit(args) => write::submit(&ws, args, &out),
        Command::Claim { agent, id } => write::claim(&ws, &agent, id.as_deref(), &out),
        Command::Done { id, result } => write::finish(&ws, &id, true, result, &out),
        Command::Fail { id, error } => write::finish(&ws, &id, false, error, &out),
        Command::Retry { id } => write::retry(&ws, &id, &out),
        Command::Approve { id, note } => review::approve(&ws, &id, note, &out),
        Command::Reject { id, feedback } => review::reject(&ws, &id, &feedback, &out),
        Command::Mcp => mcp::serve(&ws),
        Command::Register(args) => write::register(&ws, args, &out),
        Command::Deregister { name } => write::deregister(&ws, &name, &out),
        Command::Pause { name } => agents::set_paused(&ws, &name, true, &out),
        Command::Resume { name } => agents::set_paused(&ws, &name, false, &out),
        Command::Heartbeat(args) => agents::heartbeat(&ws, args, &out),
        Command::Agents { tree, fmt } => agents::list(&ws, tree, fmt, &out),
        Command::Jobs {
            state,
            agent,
            limit,
            offset,
            fmt,
        } => {
            let page = crate::views::job::Page { offset, limit };
            read::jobs(&ws, state.as_deref(), agent.as_deref(), page, fmt, &out)
        }
        Command::Show { id, fmt } => read::show(&ws, &id, fmt, &out),
        Command::Log { id, fmt } => read::log(&ws, &id, fmt, &out),
        Command::Validate { fmt } => read::validate(&ws, fmt, &out),
        Command::Reindex { fmt } => read::reindex(&ws, fmt, &out),
        Command::Bench(args) => crate::bench::run(&ws, args),
        Command::Route { args, fmt } => llm::route(&ws, args, fmt, &out),
        Command::Costs { fmt } => llm::costs(&ws, fmt, &out),
        Command::Providers { fmt } => ops::providers(&ws, fmt, &out),
        Command::Alerts { fmt } => ops::alerts(&ws, fmt, &out),
        Command::Notify { cmd } => ops::notify(&ws, cmd, &out),
        Command::Traces { args, fmt } => traces::list(&ws, args, fmt, &out),
        Command::Trace { id, more, fmt } => match (id.as_str(), more.as_slice()) {
            ("diff", [a, b]) => traces::diff(&ws, a, b, fmt, &out),
            ("diff", _) => anyhow::bail!("usage: pas trace diff A B (two trace or job ids)"),
            (_, []) => traces::show(&ws, &id, fmt, &out),
            (_, extra) => anyhow::bail!(
                "pas trace takes one trace id ({extra:?} left over; `pas trace diff A B` compares two)"
            ),
        },
        Command::Span(args) => traces::span(&ws, args, &out),
        Command::Replay(args) => replay::run(&ws, args, &out),
        Command::Run(args) => run::run(&ws, args, &out),
        Command::Logs(args) => run::logs(&ws, args, &out),
        Command::Remote { cmd } => remote::run(&ws, cmd, &out),
    }
}
