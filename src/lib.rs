//! # pas
//!
//! A file-based orchestrator for swarms of AI agents. The state is plain files in a
//! git-tracked folder; agents in any language take part with ordinary file operations,
//! and `git log` is the audit trail. See `README.md` for the walk-through and the SPEC
//! for the contract.
//!
//! # Layout
//!
//! - [`cli`]        clap commands and their output (tables, `--json`); `run` is the entry.
//!   `cli::mcp` is `pas mcp`: the same commands as Model Context Protocol tools.
//! - [`config`]     `pas.yaml`: typed, validated, defaults.
//! - [`workspace`]  paths of a workspace, what each path means, `pas init`, the daemon's
//!   lock (one `pas serve` per workspace) and the probe reading commands use.
//! - [`intake`]     the one way in for every file an agent can write: no links, FIFOs or
//!   hard links, size caps, YAML guards.
//! - [`yaml_depth`] a linear pre-scan of YAML nesting (deep documents are refused early).
//! - [`card`]       job cards: parse, validate, rewrite pas's own block (pure).
//! - [`clock`]      the wall and monotonic time the money path reads (real, or a test's).
//! - [`agent`]      agent definitions and registrations (pure).
//! - [`board`]      in-memory board and the rules of assignment (pure: board + time -> plan).
//! - [`resources`]  machine capacity against what cards need and hold (pure).
//! - [`fsops`]      atomic writes, moves through staging that never overwrite, rejection.
//! - [`snapshot`]   the board read from files or a git revision, for reading commands.
//! - [`span`]       the span, one step of a trace (its kinds, statuses, W3C ids, an agent's
//!   span line parsed): shared by the telemetry writer and `trace`.
//! - [`views`]      read models built from a snapshot (status, agents, tree, costs, job
//!   detail): typed structs the CLI, the dashboard, alerts and MCP present.
//! - [`watch`]      notify -> our own inputs; overflow -> full rescan.
//! - [`events`]     the numbered event stream: ring buffer, live channel, database.
//! - [`server`]     the dashboard and gateway listeners (one tokio runtime), their limits, token guard.
//! - [`web`]        what both listeners share beneath `server`: the state handle
//!   (`Shared`), the accept loop and its connection slots, the gateway's counters.
//! - [`health`]     `GET /health`: the engine's turn, git locks, database, disk, watcher.
//! - [`ops`]        operating pas: provider report, alerts as state, sentences,
//!   webhooks (`notify:`), redaction.
//! - [`dashboard`]  read-only pages, `/ws`, `/api/*`, `/metrics`.
//! - [`gateway`]    the LLM gateway (OpenAI chat completions, Anthropic Messages): route,
//!   fall back, budget, receipt.
//! - [`daemon`]     `pas serve`: the engine (reconcile, plan, record), start-up recovery,
//!   the loop and an orderly shutdown.
//! - [`store`]      git commit worker and history (`store::git`); SQLite telemetry
//!   (`store::db`), each on its own thread; paid calls' durable holds (`store::holds`).
//! - [`trace`]      traces (SPEC section 13): span model, JSONL and OTLP ingest, storage,
//!   the tree with roll-ups.
//! - [`runner`]     `run:` agents (SPEC section 16): a supervised process per card, its
//!   log, worktree, transcript spans and receipts; `pas run`.
//! - [`validate`]   `pas validate`: every file against `contracts/*.schema.json`.
//! - [`remote`]     many hosts, one workspace (SPEC section 14): claims as refs on a git
//!   remote, leases on each host's monotonic clock, transitions pushed with their claims.
//! - [`review`]     the review step: a card's diff (`base..branch`, git2) for the job page
//!   and `pas show`.
//! - [`demo`]       `pas demo`: the daemon with a simulated swarm (the main job).
//! - [`fuzzing`]    fuzz targets for the parsers of outside bytes (cards, beats,
//!   registrations, definitions, SSE).
//! - [`bench`]      `pas bench`: measurements on this machine.

pub mod agent;
pub mod bench;
pub mod board;
pub mod card;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dashboard;
pub mod demo;
pub mod events;
pub mod fsops;
pub mod fuzzing;
pub mod gateway;
pub mod health;
pub mod heartbeat;
pub mod intake;
pub mod liveness;
pub mod llm;
pub mod ops;
pub mod remote;
pub mod resources;
pub mod review;
pub mod runner;
pub mod server;
pub mod snapshot;
pub mod span;
pub mod store;
pub mod trace;
pub mod validate;
pub mod views;
pub mod watch;
pub mod web;
pub mod workspace;
pub mod yaml_depth;

/// Runs a parsed command line and returns the process exit status: 0 done, 1 failed
/// (2, usage, is clap's). Errors print as `error: <what>` with their cause chain.
pub fn run(cli: cli::Cli) -> i32 {
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            1
        }
    }
}
