//! Operating pas (SPEC section 15): what a person watching a swarm asks first.
//!
//! # Layout
//! - `redact.rs`    secrets out of any text shown or sent (URL credentials, keys, tokens).
//! - `providers.rs` each provider and model: breaker, recent latency and errors, spend today.
//! - `sentences.rs` each event kind as a sentence a person reads, with the links it names.
//! - `alerts.rs`    what is wrong now, as a state that clears (pure: inputs -> alerts).
//! - `notify/`      webhooks told of alerts and their all-clears, off the engine's thread.

pub mod alerts;
pub mod notify;
pub mod providers;
pub mod redact;
pub mod sentences;
