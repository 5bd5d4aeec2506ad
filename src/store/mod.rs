//! The two stores that record what the files did: git (the audit trail) and SQLite
//! (telemetry). Both libraries are blocking, so each has a worker thread fed by a channel.

pub mod db;
pub mod git;
