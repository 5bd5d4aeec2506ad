//! `model_aliases:` in `pas.yaml`: the model names clients send, mapped to a model pas
//! serves or a `cap:` route, so an agent that names its own model (Claude Code asks for
//! `claude-sonnet-4-5`, an SDK example for `gpt-4o`) is routed where pas.yaml says.
//!
//! ```yaml
//! model_aliases:
//!   claude-sonnet-4-5: qwen2.5-coder:32b   # a model id of some provider
//!   claude-haiku-*: cap:summarize          # a prefix: every name starting so
//!   "*": cap:code                          # any name no provider serves
//! ```
//!
//! A key ending in `*` is a prefix; the longest matching prefix wins. An exact alias
//! applies to any name, even one a provider serves (that is how a real model is
//! redirected); a prefix applies only to names no provider serves, so `claude-*` never
//! hides a configured `claude-sonnet-4-5`. Targets are model ids or `cap:` routes, never
//! other aliases; one that no provider can serve is refused when pas.yaml is read, naming
//! the key.

use std::collections::HashMap;

use super::config::Provider;

/// The configured aliases.
#[derive(Debug, Clone, Default)]
pub struct Aliases {
    exact: HashMap<String, String>,
    /// (prefix, target), longest prefix first.
    prefixes: Vec<(String, String)>,
}

impl Aliases {
    /// Parses and checks `model_aliases:` against the providers; the error names the key.
    pub fn parse(
        raw: Option<&serde_yaml::Value>,
        providers: &[Provider],
    ) -> Result<Aliases, String> {
        let mut out = Aliases::default();
        let Some(raw) = raw.filter(|v| !v.is_null()) else {
            return Ok(out);
        };
        let map: HashMap<String, String> = serde_yaml::from_value(raw.clone()).map_err(|e| {
            format!("model_aliases: must map model names to a model id or cap:<capability> ({e})")
        })?;
        for (name, target) in map {
            let at = |why: String| format!("model_aliases.{name}: {why}");
            let name = name.trim().to_string();
            if name.is_empty() {
                return Err(at("an alias cannot be blank".into()));
            }
            check_target(target.trim(), providers).map_err(at)?;
            let target = target.trim().to_string();
            match name.strip_suffix('*') {
                Some(p) if !p.contains('*') => out.prefixes.push((p.to_string(), target)),
                _ if name.contains('*') => {
                    return Err(at(
                        "`*` may only end an alias (a prefix such as claude-*)".into()
                    ))
                }
                _ => {
                    out.exact.insert(name, target);
                }
            }
        }
        out.prefixes
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// What `model` stands for: its exact alias, else itself when a provider serves it or
    /// it is a `cap:` route, else its longest prefix alias, else itself (refused later as
    /// no model).
    pub fn resolve<'a>(&'a self, model: &'a str, providers: &[Provider]) -> &'a str {
        if let Some(t) = self.exact.get(model) {
            return t;
        }
        if self.prefixes.is_empty() || model.starts_with("cap:") || served(model, providers) {
            return model;
        }
        self.prefixes
            .iter()
            .find(|(p, _)| model.starts_with(p.as_str()))
            .map_or(model, |(_, t)| t.as_str())
    }

    /// The exact aliases, `(name, target)` in name order: what `/v1/models` lists, so a
    /// client that picks its model from that list (as Claude Code and many UIs do) can
    /// pick an alias. Prefix aliases match names no list could hold.
    pub fn exact(&self) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = self
            .exact
            .iter()
            .map(|(k, t)| (k.as_str(), t.as_str()))
            .collect();
        v.sort_unstable();
        v
    }

    /// Whether any alias is configured.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }
}

fn served(model: &str, providers: &[Provider]) -> bool {
    providers
        .iter()
        .flat_map(|p| &p.models)
        .any(|m| m.id == model)
}

/// A target must be a model some provider serves, or a `cap:` route whose every
/// capability some model has.
fn check_target(target: &str, providers: &[Provider]) -> Result<(), String> {
    if let Some(caps) = target.strip_prefix("cap:") {
        let caps: Vec<&str> = caps
            .split([',', '+'])
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        if caps.is_empty() {
            return Err(format!("{target:?} names no capability"));
        }
        let has = |c: &str| {
            providers
                .iter()
                .flat_map(|p| &p.models)
                .any(|m| m.capabilities.iter().any(|x| x == c))
        };
        if let Some(c) = caps.iter().find(|c| !has(c)) {
            return Err(format!(
                "{target:?}: no model of any provider has the capability {c:?}"
            ));
        }
        return Ok(());
    }
    if served(target, providers) {
        return Ok(());
    }
    let known: Vec<&str> = providers
        .iter()
        .flat_map(|p| &p.models)
        .map(|m| m.id.as_str())
        .collect();
    Err(format!(
        "{target:?} is no model of any provider (known: {}) nor a cap:<capability> route",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn providers() -> Vec<Provider> {
        let v: Vec<serde_yaml::Value> = serde_yaml::from_str(
            "- {name: a, protocol: openai, base_url: \"http://a\", models: [{id: small, capabilities: [chat]}, {id: claude-sonnet-4-5, capabilities: [code]}]}\n",
        )
        .unwrap();
        super::super::config::providers(&v).unwrap()
    }

    fn aliases(yaml: &str) -> Result<Aliases, String> {
        let v: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
        Aliases::parse(Some(&v), &providers())
    }

    #[test]
    fn exact_then_served_then_longest_prefix() {
        let p = providers();
        let a = aliases(
            "{big: small, claude-*: \"cap:code\", claude-haiku-*: small, \"*\": \"cap:chat\"}",
        )
        .unwrap();
        assert_eq!(a.resolve("big", &p), "small");
        assert_eq!(a.resolve("claude-haiku-4-5", &p), "small");
        assert_eq!(a.resolve("claude-opus-5", &p), "cap:code");
        assert_eq!(
            a.resolve("claude-sonnet-4-5", &p),
            "claude-sonnet-4-5",
            "served: kept"
        );
        assert_eq!(a.resolve("gpt-4o", &p), "cap:chat");
        assert_eq!(a.resolve("cap:code", &p), "cap:code");
        let redirect = aliases("{claude-sonnet-4-5: small}").unwrap();
        assert_eq!(redirect.resolve("claude-sonnet-4-5", &p), "small");
    }

    #[test]
    fn unknown_targets_are_refused_naming_the_key() {
        let e = aliases("{x: nope}").unwrap_err();
        assert!(
            e.starts_with("model_aliases.x: \"nope\" is no model"),
            "{e}"
        );
        assert!(e.contains("small"), "{e}");
        let e = aliases("{x: \"cap:vision\"}").unwrap_err();
        assert!(e.contains("model_aliases.x") && e.contains("vision"), "{e}");
        let e = aliases("{a*b: small}").unwrap_err();
        assert!(e.contains("may only end"), "{e}");
        assert!(aliases("[1, 2]").unwrap_err().starts_with("model_aliases:"));
    }
}
