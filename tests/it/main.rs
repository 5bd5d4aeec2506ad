//! Integration tests of `pas`: the real binary against real temporary workspaces, real
//! git and the real telemetry database. One test binary:
//! `fixture.rs` (workspaces), `daemon.rs` (the daemon process) and `records.rs` (git and
//! the database) are the fixture; the other modules are the tests.

mod agents;
mod archive;
mod assignment;
mod audit;
mod bad_input;
mod browser;
mod claude_runner;
mod cli_json;
mod crash;
mod daemon;
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
mod http;
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
mod records;
mod resources;
mod review;
mod routing;
mod runner;
mod runner_crash;
mod security;
mod server;
mod spend;
mod traces;
mod traces_browser;
mod traces_diff;
mod traces_files;
mod traces_replay;
mod traces_replay_api;
mod trust;
