//! Token usage and its cost, in exact decimals.
//!
//! Cost = (fresh input × input price + cached input × cached price + cache writes × write
//! price + output × output price) / 1,000,000, computed in `rust_decimal` and rounded only
//! for display. Cache writes (only Anthropic reports them) cost `cache_write` (5-minute
//! writes; default 1.25 × input) or `cache_write_1h` (default 2 × input), Anthropic's
//! rates. Reasoning tokens are part of the output count both protocols report, so they are
//! not charged twice. A model without a price has no cost (`None`), never $0.

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
    /// Reported by an agent in its transcript, for calls that did not pass through pas's
    /// gateway (a subscription): see `runner::receipts`.
    Transcript,
}

/// Token counts of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct Usage {
    /// All input tokens, cached ones included.
    pub input: u64,
    pub output: u64,
    /// Input tokens served from the provider's cache (a subset of `input`).
    pub cached: u64,
    /// Input tokens written to the provider's cache (a subset of `input`, apart from
    /// `cached`): Anthropic's `cache_creation_input_tokens`.
    #[serde(default)]
    pub cache_write: u64,
    /// The part of `cache_write` written to Anthropic's 1-hour cache (the rest went to the
    /// 5-minute one).
    #[serde(default)]
    pub cache_write_1h: u64,
    /// Reasoning tokens (a subset of `output`).
    pub reasoning: u64,
    pub source: UsageSource,
}

const MILLION: u64 = 1_000_000;

/// Estimated tokens for `bytes` of text, where a provider reported no usage.
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// The price of a million 5-minute and 1-hour cache writes: the configured ones, else
/// Anthropic's 1.25 × and 2 × the input price.
fn write_prices(p: &Price) -> (Decimal, Decimal) {
    (
        p.cache_write.unwrap_or(p.input * Decimal::new(125, 2)),
        p.cache_write_1h.unwrap_or(p.input * Decimal::TWO),
    )
}

/// Most input tokens one image can count as. Providers price an image by its pixels, not
/// its bytes: Anthropic scales images to at most about 1,600 tokens, OpenAI's high detail
/// tiles to about 1,500. A ceiling with room to spare, so a worst case stays a ceiling.
pub const IMAGE_TOKENS: u64 = 2_000;

/// The images in a request's messages: how many, and how many bytes of URL or base64
/// data they take (which count as image tokens, not as text).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Images {
    pub count: u64,
    pub bytes: u64,
}

/// Finds OpenAI `image_url` parts (and Anthropic `image` blocks) anywhere in `v`.
pub fn images_in(v: &serde_json::Value) -> Images {
    use serde_json::Value;
    let mut found = Images::default();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                let data = match map.get("type").and_then(Value::as_str) {
                    Some("image_url") => map
                        .get("image_url")
                        .and_then(|u| u.get("url").or(Some(u)))
                        .and_then(Value::as_str),
                    Some("image") => map
                        .get("source")
                        .and_then(|s| s.get("data").or_else(|| s.get("url")))
                        .and_then(Value::as_str),
                    _ => None,
                };
                match data {
                    Some(d) => {
                        found.count += 1;
                        found.bytes += d.len() as u64;
                    }
                    None => stack.extend(map.values()),
                }
            }
            _ => {}
        }
    }
    found
}

/// Input tokens of `bytes` of request text holding `images`: the text estimated, each
/// image at its ceiling.
pub fn estimate_with_images(bytes: u64, images: Images) -> u64 {
    estimate_tokens(bytes.saturating_sub(images.bytes) as usize)
        .saturating_add(images.count.saturating_mul(IMAGE_TOKENS))
}

/// What `usage` costs at `price` (USD); `None` when the model has no price.
pub fn cost(price: Option<&Price>, usage: &Usage) -> Option<Decimal> {
    let p = price?;
    // Each part is bounded by what is left of the input, so odd counts never go negative.
    let cached = usage.cached.min(usage.input);
    let written = usage.cache_write.min(usage.input - cached);
    let written_1h = usage.cache_write_1h.min(written);
    let fresh = usage.input - cached - written;
    let cached_price = p.cached_input.unwrap_or(p.input);
    let (write_price, write_1h_price) = write_prices(p);
    let total = Decimal::from(fresh) * p.input
        + Decimal::from(cached) * cached_price
        + Decimal::from(written - written_1h) * write_price
        + Decimal::from(written_1h) * write_1h_price
        + Decimal::from(usage.output) * p.output;
    Some((total / Decimal::from(MILLION)).normalize())
}

/// The most a call can cost: `input` tokens at the input price (at the dearest cache-write
/// price instead when the call `may_write_cache`) plus `max_output` tokens of output.
pub fn worst_case(
    price: Option<&Price>,
    input: u64,
    max_output: u64,
    may_write_cache: bool,
) -> Option<Decimal> {
    let p = price?;
    let (write, write_1h) = write_prices(p);
    let input_price = match may_write_cache {
        true => p.input.max(write).max(write_1h),
        false => p.input,
    };
    let total = Decimal::from(input) * input_price + Decimal::from(max_output) * p.output;
    Some((total / Decimal::from(MILLION)).normalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(i: &str, o: &str, c: Option<&str>) -> Price {
        Price {
            input: i.parse().unwrap(),
            output: o.parse().unwrap(),
            cached_input: c.map(|c| c.parse().unwrap()),
            cache_write: None,
            cache_write_1h: None,
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
            worst_case(Some(&p), 1000, 1000, false).unwrap(),
            "0.018".parse::<Decimal>().unwrap()
        );
    }

    #[test]
    fn cache_writes_cost_their_own_rates_by_default_anthropics() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        // 1,000,000 input tokens: 100k read from the cache, 300k written (100k of them
        // for an hour), 600k fresh; 100k output.
        let u = Usage {
            input: 1_000_000,
            cached: 100_000,
            cache_write: 300_000,
            cache_write_1h: 100_000,
            output: 100_000,
            ..Usage::default()
        };
        // 600k × 3 + 100k × 0.30 + 200k × 3.75 + 100k × 6 + 100k × 15
        // = 1.8 + 0.03 + 0.75 + 0.6 + 1.5
        let p = price("3.00", "15.00", Some("0.30"));
        assert_eq!(cost(Some(&p), &u).unwrap(), d("4.68"));
        let mut set = p.clone();
        set.cache_write = Some(d("4"));
        set.cache_write_1h = Some(d("5"));
        // 600k × 3 + 100k × 0.30 + 200k × 4 + 100k × 5 + 100k × 15
        assert_eq!(cost(Some(&set), &u).unwrap(), d("4.63"));
        // Prices with many decimals stay exact: 1.25 × 0.8 = 1, per million.
        let small = Usage {
            input: 7,
            cache_write: 7,
            ..Usage::default()
        };
        let haiku = price("0.80", "4", None);
        assert_eq!(cost(Some(&haiku), &small).unwrap(), d("0.000007"));
        // Counts that do not add up are bounded by the input, never negative.
        let odd = Usage {
            input: 10,
            cached: 6,
            cache_write: 9,
            cache_write_1h: 20,
            ..Usage::default()
        };
        // 6 × 0.30 + 4 × 6 (all of the 4 writes left, at the 1-hour rate)
        assert_eq!(cost(Some(&p), &odd).unwrap(), d("0.0000258"));
        // A call that may write to the cache reserves its input at the dearest rate.
        assert_eq!(worst_case(Some(&p), 1000, 0, true).unwrap(), d("0.006"));
        assert_eq!(worst_case(Some(&set), 1000, 0, true).unwrap(), d("0.005"));
        assert_eq!(worst_case(Some(&p), 1000, 0, false).unwrap(), d("0.003"));
        assert_eq!(worst_case(None, 1000, 0, true), None);
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

    #[test]
    fn an_image_counts_by_its_ceiling_not_its_bytes() {
        let data = format!("data:image/png;base64,{}", "A".repeat(1_000_000));
        let messages = serde_json::json!([{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": data}},
            {"type": "image_url", "image_url": "https://example.com/cat.png"}]}]);
        let im = images_in(&messages);
        assert_eq!(im.count, 2);
        assert_eq!(im.bytes, data.len() as u64 + 27);
        let bytes = serde_json::to_vec(&messages).unwrap().len() as u64;
        let tokens = estimate_with_images(bytes, im);
        // Two images at their ceiling, and a little text: not 250,000 tokens of base64.
        assert!(
            tokens > 2 * IMAGE_TOKENS && tokens < 2 * IMAGE_TOKENS + 100,
            "{tokens}"
        );
        assert_eq!(estimate_with_images(40, Images::default()), 10);
    }
}
