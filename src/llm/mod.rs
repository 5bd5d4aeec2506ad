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

/// Each message must be a mapping with a `role`, so a typo fails here, naming the message,
/// rather than as the provider's 400. Used by LLM job cards (`gateway::cards`) and
/// replays (`trace::replay`) alike.
pub fn check_messages(messages: &[serde_json::Value]) -> Result<(), String> {
    if messages.is_empty() {
        return Err("llm.messages is empty: give at least one {role, content}".into());
    }
    for (i, m) in messages.iter().enumerate() {
        if !m.get("role").is_some_and(serde_json::Value::is_string) {
            return Err(format!(
                "llm.messages[{i}] needs a role (system, user, assistant or tool): {m}"
            ));
        }
        match m.get("content") {
            None | Some(serde_json::Value::Null) if m.get("tool_calls").is_some() => {}
            Some(serde_json::Value::String(_) | serde_json::Value::Array(_)) => {}
            _ => {
                return Err(format!(
                    "llm.messages[{i}] needs content (text or a list of parts), or \
                     tool_calls for an assistant message"
                ))
            }
        }
    }
    Ok(())
}
