//! Helpers the test modules share, by concern: the workspace (`workspace.rs`, re-exported
//! as `crate::fixture` too), the daemon process, HTTP (a client and raw sockets), the
//! browser, git and database records, the gateway, liveness and traces. Test modules
//! import from here and export nothing.

pub mod browser;
pub mod daemon;
pub mod gateway;
pub mod http;
pub mod liveness;
pub mod records;
pub mod traces;
pub mod workspace;
