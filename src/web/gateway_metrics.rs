//! The gateway's Prometheus figures: requests by outcome and the overhead histogram
//! (`x-pas-overhead-ms`: total time less upstream time). Lock-free counters, so recording
//! costs a few atomic adds on the request path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the overhead histogram, in milliseconds.
const BUCKETS_MS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0,
];

/// Counters shared by the gateway's handlers and the dashboard's `/metrics`.
#[derive(Default)]
pub struct Metrics {
    buckets: [AtomicU64; BUCKETS_MS.len()],
    count: AtomicU64,
    /// Sum of overheads in microseconds (an integer, so it can be atomic).
    sum_us: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    refused_budget: AtomicU64,
    fallbacks: AtomicU64,
}

/// How a gateway request ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    RefusedBudget,
}

impl Metrics {
    /// Records one request: its overhead and how it ended.
    pub fn record(&self, overhead_us: u64, outcome: Outcome) {
        let ms = overhead_us as f64 / 1000.0;
        if let Some(i) = BUCKETS_MS.iter().position(|b| ms <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(overhead_us, Ordering::Relaxed);
        let c = match outcome {
            Outcome::Ok => &self.ok,
            Outcome::Failed => &self.failed,
            Outcome::RefusedBudget => &self.refused_budget,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a move to the next candidate.
    pub fn fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the gateway's metrics in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP pas_gateway_requests_total Gateway requests by outcome.\n\
             # TYPE pas_gateway_requests_total counter"
        );
        for (label, c) in [
            ("ok", &self.ok),
            ("failed", &self.failed),
            ("refused_budget", &self.refused_budget),
        ] {
            let _ = writeln!(
                out,
                "pas_gateway_requests_total{{outcome=\"{label}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP pas_gateway_fallbacks_total Moves to the next candidate after a failed attempt.\n\
             # TYPE pas_gateway_fallbacks_total counter\npas_gateway_fallbacks_total {}",
            get(&self.fallbacks)
        );
        let _ = writeln!(
            out,
            "# HELP pas_gateway_overhead_ms Time pas adds to a request (total less upstream).\n\
             # TYPE pas_gateway_overhead_ms histogram"
        );
        let mut cumulative = 0;
        for (b, c) in BUCKETS_MS.iter().zip(&self.buckets) {
            cumulative += get(c);
            let _ = writeln!(
                out,
                "pas_gateway_overhead_ms_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let count = get(&self.count);
        let _ = writeln!(out, "pas_gateway_overhead_ms_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "pas_gateway_overhead_ms_sum {}\npas_gateway_overhead_ms_count {count}",
            get(&self.sum_us) as f64 / 1000.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_outcomes() {
        let m = Metrics::default();
        m.record(30, Outcome::Ok); // 0.03 ms
        m.record(700, Outcome::Ok); // 0.7 ms
        m.record(400_000, Outcome::Failed); // beyond the last bucket
        m.record(90, Outcome::RefusedBudget);
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("pas_gateway_overhead_ms_bucket{le=\"0.05\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("pas_gateway_overhead_ms_bucket{le=\"0.1\"} 2\n"));
        assert!(out.contains("pas_gateway_overhead_ms_bucket{le=\"1\"} 3\n"));
        assert!(out.contains("pas_gateway_overhead_ms_bucket{le=\"250\"} 3\n"));
        assert!(out.contains("pas_gateway_overhead_ms_bucket{le=\"+Inf\"} 4\n"));
        assert!(out.contains("pas_gateway_overhead_ms_count 4\n"));
        assert!(out.contains("pas_gateway_requests_total{outcome=\"ok\"} 2\n"));
        assert!(out.contains("pas_gateway_requests_total{outcome=\"refused_budget\"} 1\n"));
    }
}
