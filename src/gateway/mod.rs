//! The OpenAI-compatible LLM gateway (SPEC section 7).

use std::sync::Arc;

use anyhow::Result;
use axum::Router;

use crate::server::Shared;

pub mod metrics;

/// The gateway's state, shared by its handlers and by LLM job cards.
pub struct Gateway {
    pub shared: Shared,
}

impl Gateway {
    /// The gateway over the workspace's providers.
    pub fn new(shared: Shared) -> Result<Gateway> {
        Ok(Gateway { shared })
    }
}

/// The gateway's routes.
pub fn router(gw: Arc<Gateway>) -> Router {
    let _ = gw;
    Router::new()
}
