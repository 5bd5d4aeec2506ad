//! Token usage and its cost, in exact decimals.
//!
//! Cost = (uncached input × input price + cached input × cached price + output × output
//! price) / 1,000,000, computed in `rust_decimal` and rounded only for display. Reasoning
//! tokens are part of the output count both protocols report, so they are not charged
//! twice. A model without a price has no cost (`None`), never $0.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::config::Price;

/// Where token counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageSource {
    /// Reported by the provider.
    #[default]
    Provider,
    /// Estimated by pas (about 4 bytes per token) because the provider reported none.
    Estimated,
}

/// Token counts of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct Usage {
    /// All input tokens, cached ones included.
    pub input: u64,
    pub output: u64,
    /// Input tokens served from the provider's cache (a subset of `input`).
    pub cached: u64,
    /// Reasoning tokens (a subset of `output`).
    pub reasoning: u64,
    pub source: UsageSource,
}

const MILLION: u64 = 1_000_000;

/// Estimated tokens for `bytes` of text, where a provider reported no usage.
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// What `usage` costs at `price` (USD); `None` when the model has no price.
pub fn cost(price: Option<&Price>, usage: &Usage) -> Option<Decimal> {
    let p = price?;
    let cached = usage.cached.min(usage.input);
    let fresh = usage.input - cached;
    let cached_price = p.cached_input.unwrap_or(p.input);
    let total = Decimal::from(fresh) * p.input
        + Decimal::from(cached) * cached_price
        + Decimal::from(usage.output) * p.output;
    Some((total / Decimal::from(MILLION)).normalize())
}

/// The most a call can cost: its input at full price plus `max_output` tokens of output.
pub fn worst_case(price: Option<&Price>, input: u64, max_output: u64) -> Option<Decimal> {
    cost(
        price,
        &Usage {
            input,
            output: max_output,
            ..Usage::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(i: &str, o: &str, c: Option<&str>) -> Price {
        Price {
            input: i.parse().unwrap(),
            output: o.parse().unwrap(),
            cached_input: c.map(|c| c.parse().unwrap()),
        }
    }

    #[test]
    fn exact_cost_of_many_small_calls() {
        // 0.15 per million input tokens, 7 tokens per call, 1,000,000 calls: exactly 1.05.
        let p = price("0.15", "0.60", None);
        let one = cost(
            Some(&p),
            &Usage {
                input: 7,
                ..Usage::default()
            },
        )
        .unwrap();
        assert_eq!(one.to_string(), "0.00000105");
        let mut sum = Decimal::ZERO;
        for _ in 0..1_000_000 {
            sum += one;
        }
        assert_eq!(sum, "1.05".parse::<Decimal>().unwrap());
        // A float would not: 1e6 additions of 1.05e-6.
        let f: f64 = (0..1_000_000).map(|_| 0.00000105f64).sum();
        assert_ne!(f, 1.05);
    }

    #[test]
    fn cached_tokens_use_the_cached_price_and_missing_price_is_none() {
        let p = price("3.00", "15.00", Some("0.30"));
        let u = Usage {
            input: 1_000_000,
            cached: 400_000,
            output: 100_000,
            ..Usage::default()
        };
        // 600k × 3 + 400k × 0.3 + 100k × 15 = 1.8 + 0.12 + 1.5
        assert_eq!(
            cost(Some(&p), &u).unwrap(),
            "3.42".parse::<Decimal>().unwrap()
        );
        let no_cached_price = price("3.00", "15.00", None);
        assert_eq!(
            cost(Some(&no_cached_price), &u).unwrap(),
            "4.5".parse::<Decimal>().unwrap()
        );
        assert_eq!(cost(None, &u), None);
        assert_eq!(
            worst_case(Some(&p), 1000, 1000).unwrap(),
            "0.018".parse::<Decimal>().unwrap()
        );
    }

    #[test]
    fn free_models_cost_exactly_zero() {
        let p = price("0", "0", None);
        assert_eq!(
            cost(
                Some(&p),
                &Usage {
                    input: 5,
                    output: 5,
                    ..Usage::default()
                }
            ),
            Some(Decimal::ZERO)
        );
    }
}
