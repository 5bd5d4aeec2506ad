//! Providers, models and prices from `pas.yaml` (`providers:`, `budgets:`, `routing:`).
//!
//! `pas.yaml` keeps these sections as loose YAML so the rest of the file parses on its own;
//! this module gives them their types and says exactly which provider and key is wrong.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OpenAI chat completions (and every compatible server: Ollama, vLLM, llama.cpp, ...).
    Openai,
    /// Anthropic Messages API.
    Anthropic,
}

/// USD per million tokens. Strings in YAML ("0.15") so no float ever touches money.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[serde(with = "rust_decimal::serde::str")]
    pub input: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub output: Decimal,
    /// Cached input tokens; when absent they cost the input price.
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub cached_input: Option<Decimal>,
    /// Input tokens written to the provider's cache (Anthropic's 5-minute cache); when
    /// absent, 1.25 × input, Anthropic's rate. Only the anthropic protocol reports writes.
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub cache_write: Option<Decimal>,
    /// Input tokens written to Anthropic's 1-hour cache; when absent, 2 × input.
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub cache_write_1h: Option<Decimal>,
}

/// One model a provider serves.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub id: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Context window in tokens; unknown means "assume it fits".
    #[serde(default)]
    pub ctx_limit: Option<u64>,
    /// Most output tokens a call may produce; bounds a paid call's worst-case cost.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// Absent: the cost of its calls is unknown (null, with a warning), never $0.
    #[serde(default)]
    pub price_per_mtok: Option<Price>,
}

fn default_timeout() -> f64 {
    120.0
}

fn default_first_token() -> f64 {
    30.0
}

/// One provider in `pas.yaml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub name: String,
    pub protocol: Protocol,
    /// e.g. `http://127.0.0.1:11434/v1` (openai) or `https://api.anthropic.com` (anthropic).
    /// Required, unless `fake` is set (then it is the fake's, known once it listens).
    #[serde(default)]
    pub base_url: String,
    /// A fake upstream `pas serve` starts for this provider and points it at (tests,
    /// demos, offline runs), speaking `protocol`; with a `script`, it plays that.
    #[serde(default)]
    pub fake: Option<FakeSpec>,
    /// The environment variable holding the API key (never the key itself).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Runs on this machine (the `local` policy prefers it).
    #[serde(default)]
    pub local: bool,
    /// Whole-call timeout.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Time to the first streamed byte.
    #[serde(default = "default_first_token")]
    pub first_token_timeout_s: f64,
    /// The field pas bounds output with when it sets the bound itself (`openai` protocol;
    /// Anthropic's is always `max_tokens`). Absent: see [`Provider::max_tokens_field`].
    #[serde(default)]
    pub max_tokens_field: Option<MaxTokensField>,
    #[serde(default)]
    pub models: Vec<Model>,
}

/// `fake:` of a provider entry.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FakeSpec {
    /// The replies to play (see `llm::fake::script`): a file, relative to the workspace,
    /// or the list of steps itself. Absent: the fake's one fixed answer.
    #[serde(default)]
    pub script: Option<serde_yaml::Value>,
}

/// How an OpenAI-protocol server is told the most output tokens of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    /// `max_tokens`: what every OpenAI-compatible server (Ollama, vLLM, llama.cpp, ...) reads.
    MaxTokens,
    /// `max_completion_tokens`: what OpenAI itself wants; its reasoning models refuse
    /// `max_tokens` with a 400.
    MaxCompletionTokens,
}

impl MaxTokensField {
    /// The JSON key.
    pub fn key(self) -> &'static str {
        match self {
            MaxTokensField::MaxTokens => "max_tokens",
            MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

impl Provider {
    /// The output bound's field: the configured one, else `max_completion_tokens` for
    /// OpenAI's own API (whose reasoning models refuse the older name), else `max_tokens`
    /// (the name compatible servers know; some ignore the newer one) and always that for
    /// the Anthropic protocol, which translates it.
    pub fn max_tokens_field(&self) -> MaxTokensField {
        if self.protocol == Protocol::Anthropic {
            return MaxTokensField::MaxTokens;
        }
        self.max_tokens_field.unwrap_or_else(|| {
            let host = self
                .base_url
                .split_once("://")
                .map_or("", |(_, rest)| rest.split(['/', ':']).next().unwrap_or(""));
            if host.eq_ignore_ascii_case("api.openai.com") {
                MaxTokensField::MaxCompletionTokens
            } else {
                MaxTokensField::MaxTokens
            }
        })
    }

    /// The API key from the environment; `Err` names the variable when it is unset.
    pub fn api_key(&self) -> Result<Option<String>, String> {
        match &self.api_key_env {
            None => Ok(None),
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.is_empty() => Ok(Some(k)),
                _ => Err(format!(
                    "provider {}: the environment variable {var} (its API key) is not set",
                    self.name
                )),
            },
        }
    }
}

/// Parses and checks `providers:`; errors name the provider (by name or position) and key.
pub fn providers(raw: &[serde_yaml::Value]) -> Result<Vec<Provider>, String> {
    let mut out: Vec<Provider> = Vec::new();
    for (i, v) in raw.iter().enumerate() {
        let label = v
            .get("name")
            .and_then(|n| n.as_str())
            .map_or(format!("providers[{i}]"), |n| format!("provider {n}"));
        let p: Provider = serde_yaml::from_value(v.clone()).map_err(|e| format!("{label}: {e}"))?;
        if out.iter().any(|o| o.name == p.name) {
            return Err(format!("{label}: the name is used twice"));
        }
        if p.fake.is_some() && !p.base_url.is_empty() {
            return Err(format!(
                "{label}: base_url and fake exclude each other (a fake provider is pas's own)"
            ));
        }
        let fake = p.fake.is_some() && p.base_url.is_empty();
        let http = p.base_url.starts_with("http://") || p.base_url.starts_with("https://");
        if !(fake || http) {
            return Err(format!(
                "{label}: base_url must start with http:// or https://"
            ));
        }
        for (what, t) in [
            ("timeout_s", p.timeout_s),
            ("first_token_timeout_s", p.first_token_timeout_s),
        ] {
            if !(t.is_finite() && t > 0.0) {
                return Err(format!(
                    "{label}: {what} must be a positive number of seconds"
                ));
            }
        }
        for m in &p.models {
            if let Some(price) = &m.price_per_mtok {
                let all = [
                    Some(price.input),
                    Some(price.output),
                    price.cached_input,
                    price.cache_write,
                    price.cache_write_1h,
                ];
                if all.iter().flatten().any(|d| d.is_sign_negative()) {
                    return Err(format!(
                        "{label}: model {}: a price cannot be negative",
                        m.id
                    ));
                }
            }
        }
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Vec<Provider>, String> {
        let v: Vec<serde_yaml::Value> = serde_yaml::from_str(yaml).unwrap();
        providers(&v)
    }

    #[test]
    fn spec_example_parses_with_exact_prices() {
        let p = parse(
            r#"
- name: local
  protocol: openai
  base_url: http://127.0.0.1:11434/v1
  local: true
  models:
    - id: llama3.1:8b
      capabilities: [classify, summarize, plan]
      ctx_limit: 131072
      price_per_mtok: {input: "0", output: "0"}
- name: anthropic
  protocol: anthropic
  base_url: https://api.anthropic.com
  api_key_env: ANTHROPIC_API_KEY
  models:
    - id: claude-sonnet-4-5
      capabilities: [plan, code, review, summarize]
      price_per_mtok: {input: "3.00", output: "15.00", cached_input: "0.30", cache_write: "3.75"}
"#,
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[0].local);
        let price = p[1].models[0].price_per_mtok.clone().unwrap();
        assert_eq!(price.cached_input, Some(Decimal::new(30, 2)));
        assert_eq!(price.cache_write, Some(Decimal::new(375, 2)));
        assert_eq!(price.cache_write_1h, None);
        assert_eq!(p[1].protocol, Protocol::Anthropic);
    }

    #[test]
    fn errors_name_the_provider_and_key() {
        let e = parse("- name: x\n  protocol: grpc\n  base_url: http://a\n").unwrap_err();
        assert!(e.starts_with("provider x: unknown variant `grpc`"), "{e}");
        let e = parse("- protocol: openai\n  base_url: http://a\n").unwrap_err();
        assert!(e.starts_with("providers[0]: missing field `name`"), "{e}");
        let e = parse("- name: x\n  protocol: openai\n  base_url: ftp://a\n").unwrap_err();
        assert!(e.contains("base_url"), "{e}");
        let e = parse("- name: x\n  protocol: openai\n  base_url: http://a\n  models: [{id: m, price_per_mtok: {input: \"-1\", output: \"0\"}}]\n").unwrap_err();
        assert!(e.contains("negative"), "{e}");
        let e = parse("- name: x\n  protocol: anthropic\n  base_url: http://a\n  models: [{id: m, price_per_mtok: {input: \"1\", output: \"0\", cache_write: \"-1\"}}]\n").unwrap_err();
        assert!(e.contains("negative"), "{e}");
        let e = parse("- name: x\n  protocol: openai\n  base_url: http://a\n  colour: red\n")
            .unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn the_spec_budgets_parse_with_exact_shares() {
        let v: serde_yaml::Value = serde_yaml::from_str(
            "{daily_usd: \"20.00\", monthly_usd: \"300.00\", alert_at: [0.75, 0.90, 1.00]}",
        )
        .unwrap();
        let b = budgets(Some(&v)).unwrap();
        assert_eq!(
            b.alert_at,
            [Decimal::new(75, 2), Decimal::new(9, 1), Decimal::ONE]
        );
        assert_eq!(b.daily_usd, Some(Decimal::new(2000, 2)));
        let v: serde_yaml::Value = serde_yaml::from_str("{alert_at: [\"0.5\", 1]}").unwrap();
        assert_eq!(
            budgets(Some(&v)).unwrap().alert_at,
            [Decimal::new(5, 1), Decimal::ONE]
        );
        let v: serde_yaml::Value = serde_yaml::from_str("{alert_at: [half]}").unwrap();
        let e = budgets(Some(&v)).unwrap_err();
        assert!(e.contains("alert_at") && e.contains("half"), "{e}");
    }

    #[test]
    fn the_output_bound_field_suits_the_server() {
        let p = parse(
            "- {name: o, protocol: openai, base_url: https://api.openai.com/v1}\n\
             - {name: l, protocol: openai, base_url: http://127.0.0.1:11434/v1}\n\
             - {name: v, protocol: openai, base_url: http://vllm:8000/v1, max_tokens_field: max_completion_tokens}\n\
             - {name: a, protocol: anthropic, base_url: https://api.anthropic.com, max_tokens_field: max_completion_tokens}\n",
        )
        .unwrap();
        let keys: Vec<&str> = p.iter().map(|p| p.max_tokens_field().key()).collect();
        assert_eq!(
            keys,
            [
                "max_completion_tokens",
                "max_tokens",
                "max_completion_tokens",
                "max_tokens"
            ]
        );
    }

    #[test]
    fn a_missing_key_names_its_variable() {
        let p = parse("- name: x\n  protocol: openai\n  base_url: http://a\n  api_key_env: PAS_TEST_SURELY_UNSET_KEY\n").unwrap();
        let e = p[0].api_key().unwrap_err();
        assert!(e.contains("PAS_TEST_SURELY_UNSET_KEY"), "{e}");
    }
}

/// `budgets:` in `pas.yaml`: USD as decimal strings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub daily_usd: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub monthly_usd: Option<Decimal>,
    /// Per agent, per day (optional).
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub agent_daily_usd: Option<Decimal>,
    /// Shares of a budget at which one alert is raised per period.
    #[serde(default = "default_alert_at", deserialize_with = "shares")]
    pub alert_at: Vec<Decimal>,
}

/// `alert_at` as the SPEC writes it (`[0.75, 0.90, 1.00]`: YAML numbers) or as strings.
/// A share is a ratio, not money; a number is read through its shortest decimal form
/// (`0.9`, never `0.900000000000000022...`), so the threshold is exactly what was typed.
fn shares<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Decimal>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Share {
        Int(u64),
        Float(f64),
        Text(String),
    }
    let raw = Vec::<Share>::deserialize(d)?;
    raw.into_iter()
        .map(|s| {
            let text = match s {
                Share::Int(i) => i.to_string(),
                Share::Float(f) => f.to_string(),
                Share::Text(t) => t,
            };
            text.trim().parse::<Decimal>().map_err(|_| {
                serde::de::Error::custom(format!("alert_at: {text:?} is not a number"))
            })
        })
        .collect()
}

fn default_alert_at() -> Vec<Decimal> {
    vec![Decimal::new(75, 2), Decimal::new(90, 2), Decimal::ONE]
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            daily_usd: None,
            monthly_usd: None,
            agent_daily_usd: None,
            alert_at: default_alert_at(),
        }
    }
}

/// Parses `budgets:` (absent: no budget).
pub fn budgets(raw: Option<&serde_yaml::Value>) -> Result<Budgets, String> {
    let Some(v) = raw else {
        return Ok(Budgets::default());
    };
    let b: Budgets = serde_yaml::from_value(v.clone()).map_err(|e| format!("budgets: {e}"))?;
    let amounts = [b.daily_usd, b.monthly_usd, b.agent_daily_usd];
    if amounts.iter().flatten().any(|d| d.is_sign_negative()) {
        return Err("budgets: an amount cannot be negative".into());
    }
    if b.alert_at
        .iter()
        .any(|a| *a <= Decimal::ZERO || *a > Decimal::ONE)
    {
        return Err("budgets: alert_at shares must be above 0 and at most 1".into());
    }
    Ok(b)
}

/// How candidates are ordered (`routing.policy`; the ordering itself is `route::route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Local models first (cheapest among them), then the cheapest remote ones.
    #[default]
    Local,
    /// Lowest price per token first.
    Cheapest,
    /// Lowest observed latency first (EWMA); models never measured come after measured ones.
    Fastest,
    /// The best sum of the cheapest and fastest ranks.
    Balanced,
}

/// `routing:` in `pas.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    #[serde(default)]
    pub policy: Policy,
    /// First cool-down of a failing provider, in seconds (default 5; doubles up to 300).
    #[serde(default)]
    pub cooldown_s: Option<f64>,
}

/// Parses `routing:` (absent: the `local` policy).
pub fn routing(raw: Option<&serde_yaml::Value>) -> Result<Routing, String> {
    match raw {
        None => Ok(Routing::default()),
        Some(v) => {
            let r: Routing =
                serde_yaml::from_value(v.clone()).map_err(|e| format!("routing: {e}"))?;
            if r.cooldown_s.is_some_and(|c| !(c > 0.0 && c <= 300.0)) {
                return Err("routing: cooldown_s must be above 0 and at most 300".into());
            }
            Ok(r)
        }
    }
}
