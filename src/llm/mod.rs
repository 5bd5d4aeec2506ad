//! LLM routing (SPEC section 7): providers from `pas.yaml`, the two wire protocols, route
//! policies, costs in exact decimals, and receipts.
//!
//! - `aliases`: `model_aliases:`, the names clients send mapped to a model or a route.
//! - `config`: providers, models and prices as `pas.yaml` declares them (validated).
//! - `cost`: token usage and what it costs (`rust_decimal`, never a float).
//! - `route`: which models can serve a request, in which order, and why.
//! - `fake`: a fake upstream speaking both protocols, for tests and `pas bench gateway`.
//! - `wire`: the `openai` and `anthropic` protocols over reqwest, plain and streaming.

pub mod aliases;
pub mod config;
pub mod cost;
pub mod fake;
pub mod route;
pub mod wire;
