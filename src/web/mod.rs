//! What the dashboard and the gateway share beneath them, so that neither imports the
//! `server` that wires them together: the daemon's state handle ([`Shared`]), the accept
//! loop with its connection slots ([`listen`]), and the gateway's counters that the
//! dashboard's `/metrics` renders ([`gateway_metrics`]).

pub mod gateway_metrics;
pub mod listen;

use std::sync::Arc;

use crate::events::Hub;
use crate::store::db;
use crate::workspace::Workspace;

/// What the daemon shares with its two listeners: made by `pas serve`, handed to the
/// dashboard and the gateway.
#[derive(Clone)]
pub struct Shared {
    pub ws: Workspace,
    pub hub: Arc<Hub>,
    /// Receipts and events go to the telemetry writer through this.
    pub db: Option<db::Sink>,
    /// The gateway's counters and overhead histogram (rendered by `/metrics`).
    pub gateway_metrics: Arc<gateway_metrics::Metrics>,
}
