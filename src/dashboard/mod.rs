//! The read-only dashboard (SPEC section 11): pages, `/ws`, `/api/*` and `/metrics`.

use axum::Router;

use crate::server::Shared;

/// The dashboard's routes.
pub fn router(shared: Shared) -> Router {
    let _ = shared;
    Router::new()
}
