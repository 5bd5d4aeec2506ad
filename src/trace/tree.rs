//! A trace as a tree: each span under its parent, each subtree's totals rolled up (tokens
//! and exact cost), and the terminal rendering of `pas trace`. Pure: spans in, tree out.
//!
//! A span whose parent never arrived is not dropped: it hangs at the top level, marked
//! with the parent it names, so a lost line costs a link, not the work below it.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::span::{Span, Status};

/// One span with its children and its subtree's totals.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Node {
    #[serde(flatten)]
    pub span: Span,
    pub duration_ms: Option<f64>,
    /// The parent this span names but the trace does not hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_parent: Option<String>,
    /// Drawn under an ancestor rather than its parent: the trace nests deeper than
    /// [`MAX_DEPTH`] levels (only a forged or runaway trace does).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub regrafted: bool,
    pub totals: Totals,
    pub children: Vec<Node>,
}

/// A subtree's sums: this span and everything below it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    pub spans: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Exact; `None` when no span below has a known cost.
    pub cost_usd: Option<Decimal>,
    /// Spans below (this one included) whose cost is unknown though they are LLM calls.
    pub unpriced: u64,
    pub errors: u64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.spans += o.spans;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cost_usd = match (self.cost_usd, o.cost_usd) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.unpriced += o.unpriced;
        self.errors += o.errors;
    }

    fn own(s: &Span) -> Totals {
        Totals {
            spans: 1,
            input_tokens: s.input_tokens.unwrap_or(0),
            output_tokens: s.output_tokens.unwrap_or(0),
            cost_usd: s.cost_usd,
            unpriced: u64::from(
                s.cost_usd.is_none() && s.kind == crate::span::Kind::Llm && s.receipt_id.is_some(),
            ),
            errors: u64::from(s.status == Status::Error),
        }
    }
}

/// The deepest level a forest nests: a span further down hangs under its ancestor at this
/// depth. Serialising, dropping and drawing a tree all recurse (serde, `Drop`, the page's
/// JSON); bounding the depth keeps a 100,000-deep chain from overflowing any of them,
/// and no real run nests anywhere near this.
pub const MAX_DEPTH: usize = 128;

/// Builds the forest of `spans` (roots in start order; children likewise). Iterative, and
/// at most [`MAX_DEPTH`] deep, so a 100,000-deep chain overflows no stack; a cycle (a
/// forged parent loop) is cut.
pub fn build(spans: Vec<Span>) -> Vec<Node> {
    let n = spans.len();
    let index: HashMap<String, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.clone(), i))
        .collect();
    let mut parent: Vec<Option<usize>> = spans
        .iter()
        .map(|s| s.parent_id.as_ref().and_then(|p| index.get(p).copied()))
        .collect();
    cut_cycles(&mut parent);
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    for (i, up) in parent.iter().enumerate() {
        match *up {
            Some(p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    let (mut children, regrafted) = bound_depth(children, &roots);
    let order = |v: &mut Vec<usize>| {
        v.sort_by(|a, b| spans[*a].start.cmp(&spans[*b].start).then(a.cmp(b)));
    };
    order(&mut roots);
    for c in children.iter_mut() {
        order(c);
    }
    // Post-order without recursion: build each node once its children are built.
    let mut built: Vec<Option<Node>> = (0..n).map(|_| None).collect();
    let mut spans: Vec<Option<Span>> = spans.into_iter().map(Some).collect();
    let mut stack: Vec<(usize, bool)> = roots.iter().rev().map(|r| (*r, false)).collect();
    while let Some((i, expanded)) = stack.pop() {
        if !expanded {
            stack.push((i, true));
            for c in children[i].iter().rev() {
                stack.push((*c, false));
            }
            continue;
        }
        let Some(span) = spans[i].take() else {
            continue;
        };
        let kids: Vec<Node> = children[i]
            .iter()
            .filter_map(|c| built[*c].take())
            .collect();
        let mut totals = Totals::own(&span);
        for k in &kids {
            totals.add(&k.totals);
        }
        let missing_parent = span.parent_id.clone().filter(|_| parent[i].is_none());
        built[i] = Some(Node {
            duration_ms: span.duration_ms(),
            span,
            missing_parent,
            regrafted: regrafted[i],
            totals,
            children: kids,
        });
    }
    roots.iter().filter_map(|r| built[*r].take()).collect()
}

/// Cuts every parent loop (a forged trace's) at its first span, so the rest is a forest.
/// Each span is walked once: a walk stops at a span an earlier walk finished.
fn cut_cycles(parent: &mut [Option<usize>]) {
    const NEW: u8 = 0;
    const ON_PATH: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; parent.len()];
    let mut path = Vec::new();
    for i in 0..parent.len() {
        let mut at = Some(i);
        while let Some(a) = at.filter(|a| state[*a] == NEW) {
            state[a] = ON_PATH;
            path.push(a);
            at = parent[a];
        }
        if let Some(a) = at.filter(|a| state[*a] == ON_PATH) {
            // The loop is the path from `a` on.
            let from = path.iter().position(|p| *p == a).unwrap_or(0);
            if let Some(first) = path[from..].iter().min().copied() {
                parent[first] = None;
            }
        }
        for p in path.drain(..) {
            state[p] = DONE;
        }
    }
}

/// `children` with every span deeper than [`MAX_DEPTH`] moved under its ancestor at
/// depth `MAX_DEPTH - 1`, and which spans moved. Parents come before children in the walk,
/// so each span's drawn parent is known when it is reached: linear in the spans.
fn bound_depth(children: Vec<Vec<usize>>, roots: &[usize]) -> (Vec<Vec<usize>>, Vec<bool>) {
    let n = children.len();
    let mut depth = vec![0usize; n];
    let mut drawn: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut regrafted = vec![false; n];
    // (span, the span it is drawn under)
    let mut stack: Vec<(usize, Option<usize>)> = roots.iter().rev().map(|r| (*r, None)).collect();
    while let Some((i, under)) = stack.pop() {
        if let Some(u) = under {
            depth[i] = depth[u] + 1;
            drawn[u].push(i);
        }
        // Its children hang under it, or (at the deepest level) where it hangs itself.
        let (next, moved) = match under {
            Some(u) if depth[i] + 1 >= MAX_DEPTH => (u, true),
            _ => (i, false),
        };
        for c in children[i].iter().rev() {
            regrafted[*c] = moved;
            stack.push((*c, Some(next)));
        }
    }
    (drawn, regrafted)
}

/// The totals of a whole forest.
pub fn totals(forest: &[Node]) -> Totals {
    let mut t = Totals::default();
    for n in forest {
        t.add(&n.totals);
    }
    t
}

/// `pas trace`: one line per span, indented under its parent, with its own kind, duration,
/// tokens, cost and status, and its subtree's totals where it has children.
pub fn render(forest: &[Node]) -> String {
    let mut out = String::new();
    let mut stack: Vec<(&Node, usize)> = forest.iter().rev().map(|n| (n, 0)).collect();
    while let Some((n, depth)) = stack.pop() {
        let s = &n.span;
        let indent = "  ".repeat(depth.min(40));
        let dur = n
            .duration_ms
            .map_or("running".to_string(), |d| format!("{d:.0} ms"));
        let mut line = format!(
            "{indent}{} {} [{}] {dur} {}",
            s.kind.as_str(),
            s.name,
            &s.span_id,
            s.status.as_str()
        );
        if s.input_tokens.is_some() || s.output_tokens.is_some() {
            line.push_str(&format!(
                " tokens {}/{}",
                s.input_tokens.unwrap_or(0),
                s.output_tokens.unwrap_or(0)
            ));
        }
        if let Some(c) = s.cost_usd {
            line.push_str(&format!(" ${}", c.normalize()));
        }
        if let Some(m) = &s.model {
            line.push_str(&format!(" {m}"));
        }
        if let Some(p) = &n.missing_parent {
            line.push_str(&format!(" (parent {p} never arrived)"));
        }
        if n.regrafted {
            line.push_str(&format!(
                " (under {}: deeper than {MAX_DEPTH} levels)",
                s.parent_id.as_deref().unwrap_or("?")
            ));
        }
        if !n.children.is_empty() {
            let t = &n.totals;
            line.push_str(&format!(
                "  | subtree: {} spans, tokens {}/{}, cost {}",
                t.spans,
                t.input_tokens,
                t.output_tokens,
                t.cost_usd
                    .map_or("unknown".to_string(), |c| format!("${}", c.normalize()))
            ));
        }
        out.push_str(&line);
        out.push('\n');
        for c in n.children.iter().rev() {
            stack.push((c, depth + 1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{Kind, Source};

    fn span(id: &str, parent: Option<&str>, cost: Option<&str>, tokens: u64) -> Span {
        let mut s = Span::new(
            "0af7651916cd43dd8448eb211c80319c",
            id,
            id,
            Kind::Step,
            Source::File,
        );
        s.parent_id = parent.map(str::to_string);
        s.cost_usd = cost.map(|c| c.parse().unwrap());
        s.input_tokens = Some(tokens);
        s
    }

    #[test]
    fn subtree_totals_are_exact_sums() {
        let f = build(vec![
            span("a000000000000001", None, None, 1),
            span(
                "a000000000000002",
                Some("a000000000000001"),
                Some("0.1"),
                10,
            ),
            span(
                "a000000000000003",
                Some("a000000000000002"),
                Some("0.2"),
                100,
            ),
            span("a000000000000004", Some("a000000000000001"), None, 1000),
        ]);
        assert_eq!(f.len(), 1);
        let root = &f[0];
        assert_eq!(root.totals.spans, 4);
        assert_eq!(root.totals.input_tokens, 1111);
        // 0.1 + 0.2 is 0.3 exactly, as money must be (a float says 0.30000000000000004).
        assert_eq!(root.totals.cost_usd, Some("0.3".parse().unwrap()));
        assert_eq!(
            root.children[0].totals.cost_usd,
            Some("0.3".parse().unwrap())
        );
        assert_eq!(root.children[1].totals.cost_usd, None);
    }

    #[test]
    fn a_missing_parent_hangs_at_the_top_and_says_so() {
        let f = build(vec![
            span("a000000000000001", None, None, 0),
            span("a000000000000002", Some("b000000000000009"), None, 0),
        ]);
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].missing_parent.as_deref(), Some("b000000000000009"));
        assert!(render(&f).contains("parent b000000000000009 never arrived"));
    }

    #[test]
    fn a_parent_cycle_is_cut_not_looped() {
        let f = build(vec![
            span("a000000000000001", Some("a000000000000002"), None, 1),
            span("a000000000000002", Some("a000000000000001"), None, 1),
        ]);
        assert_eq!(totals(&f).spans, 2);
    }

    #[test]
    fn a_deep_chain_does_not_overflow() {
        let mut v = vec![span("0000000000000001", None, Some("0.001"), 1)];
        for i in 2..=5_000u64 {
            v.push(span(
                &format!("{i:016x}"),
                Some(&format!("{:016x}", i - 1)),
                Some("0.001"),
                1,
            ));
        }
        let f = build(v);
        assert_eq!(f[0].totals.spans, 5_000);
        assert_eq!(f[0].totals.cost_usd, Some("5".parse().unwrap()));
        let text = render(&f);
        assert_eq!(text.lines().count(), 5_000);
        // The chain is drawn MAX_DEPTH deep, the rest hung under the last level.
        let mut depth = 0;
        let mut at = &f[0];
        while let Some(c) = at.children.first() {
            depth += 1;
            at = c;
        }
        assert_eq!(depth, MAX_DEPTH - 1);
        assert_eq!(
            text.lines().filter(|l| l.contains("deeper than")).count(),
            5_000 - MAX_DEPTH
        );
        // Serialising and dropping the forest recurse only as deep as it is drawn.
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json.matches("\"span_id\"").count(), 5_000);
        drop(f);
    }

    #[test]
    fn a_chain_far_deeper_than_a_stack_serialises_and_drops() {
        let mut v = vec![span("0000000000000001", None, None, 1)];
        for i in 2..=30_000u64 {
            v.push(span(
                &format!("{i:016x}"),
                Some(&format!("{:016x}", i - 1)),
                None,
                1,
            ));
        }
        let f = build(v);
        assert_eq!(f[0].totals.spans, 30_000);
        assert!(serde_json::to_vec(&f).unwrap().len() > 30_000);
    }
}
