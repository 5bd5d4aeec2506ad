//! Integration tests of `pas`: the real binary against real temporary workspaces, real
//! git and the real telemetry database. One test binary:
//! `support/` holds the helpers (workspaces, the daemon process, HTTP, git and database
//! records, the gateway, liveness, traces); the other modules are the tests.

mod agents;
mod archive;
mod assignment;
mod audit;
mod bad_input;
mod claude_runner;
mod cli_json;
mod crash;
mod dashboard;
mod dashboard_e2e;
mod demo;
mod fallback;
mod fixture;
mod gateway;
mod governor;
mod health;
mod hindex;
mod hostile;
mod hosts;
mod ledger;
mod lifecycle;
mod liveness;
mod mcp;
mod messages;
mod messages_clients;
mod money;
mod ops;
mod ops_browser;
mod pictures;
mod resources;
mod review;
mod routing;
mod runner;
mod runner_crash;
mod security;
mod server;
mod spend;
mod support;
mod traces;
mod traces_browser;
mod traces_diff;
mod traces_files;
mod traces_replay;
mod traces_replay_api;
mod trust;

// The helpers' paths from before they moved to `support/`, for test files written on
// other branches (new files import `crate::support::…`).
#[allow(unused_imports)]
use support::{daemon, http};
