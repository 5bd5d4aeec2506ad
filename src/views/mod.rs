//! Read models: what the reading commands, the dashboard, the alerts and `pas mcp` show,
//! built once from a snapshot of the files (and the telemetry database) into typed,
//! `Serialize` structs. Each edge only presents them: `cli` as tables or `--json`, the
//! dashboard as pages and `/api/*`, MCP as tool results. None of these reads a running
//! daemon.
//!
//! - [`status`] the board's counts, waiting cards, problems and capacity (`pas status`).
//! - [`agents`] one agent as every reader shows it (`pas agents`, the dashboard, alerts).
//! - [`tree`]   the agent hierarchy from `parent` links, with rolled-up cost and jobs.
//! - [`costs`]  receipts summed: today, month, all time, by dimension, budget gauges.
//! - [`job`]    cards: the list rows, the kanban card, one card in detail (`pas show`, the
//!   job page), the archive paged, where a card is.
//!
//! JSON keys come out sorted (serde_json without `preserve_order`), as they always have,
//! so the models print byte for byte what the hand-built documents did.

pub mod agents;
pub mod costs;
pub mod job;
pub mod status;
pub mod tree;

use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 with milliseconds, as every timestamp on the wire.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A model as a JSON value (for the edges that add a key or two before printing).
/// Serialising these plain structs cannot fail; a failure would be a bug, shown as null.
pub fn value<T: serde::Serialize + ?Sized>(model: &T) -> serde_json::Value {
    serde_json::to_value(model).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::workspace::Workspace;

    /// A fresh workspace (`pas init`) in a temporary folder that lives as long as the guard.
    pub fn workspace() -> (tempfile::TempDir, Workspace) {
        let d = tempfile::tempdir().expect("a temporary folder");
        crate::workspace::init(d.path()).expect("pas init");
        let ws = Workspace::at(d.path().canonicalize().expect("the folder exists"));
        (d, ws)
    }
}
