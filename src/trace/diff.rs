//! Two traces lined up (SPEC section 13, `pas trace diff A B`, `/api/traces/{a}/vs/{b}`):
//! which span of one run is which span of the other, the first place they part, and each
//! pair's differences in output, tokens and exact cost. Pure: spans in, report out.
//!
//! Two runs of the same work rarely share ids or times, so spans are paired by where they
//! are: under paired parents, first by `tool_call_id` (a tool's result belongs to the call
//! that asked for it, wherever it ran), then by kind and name with the same occurrence
//! count (the second `search` step pairs with the second), then what is left by kind and
//! order (a replay on another model renames `chat m` to `chat n` and is still the same
//! step). The walk is iterative, so a deep trace cannot overflow the stack.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Value};

use super::tree::{self, Node};
use crate::span::{Kind, Span};

/// One side of a pair, as the report shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Side {
    pub span_id: String,
    pub name: String,
    pub kind: Kind,
    pub status: String,
    pub model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost_usd: Option<Decimal>,
    /// The answer in short: an LLM call's text and tool calls, else the output as JSON.
    pub output: Option<String>,
}

/// One line of the report: a span of A, of B, or both.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub depth: usize,
    pub a: Option<Side>,
    pub b: Option<Side>,
    /// `tool_call_id`, `name` or `position`; `None` for a span on one side only.
    pub matched_by: Option<&'static str>,
    /// Whether the outputs are the same; `None` when either was not recorded.
    pub same_output: Option<bool>,
    pub input_tokens_delta: i64,
    pub output_tokens_delta: i64,
    /// B's cost less A's, exactly; `None` when either is unknown.
    pub cost_usd_delta: Option<Decimal>,
    /// Why this pair differs in what it did (empty: it does not).
    pub differs: Vec<String>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub a: String,
    pub b: String,
    /// The index into `rows` of the first pair (in tree order) that differs.
    pub first_divergence: Option<usize>,
    pub totals_a: tree::Totals,
    pub totals_b: tree::Totals,
    pub cost_usd_delta: Option<Decimal>,
    pub input_tokens_delta: i64,
    pub output_tokens_delta: i64,
    pub rows: Vec<Row>,
}

/// The id a tool span answers, if it says (`tool_call_id`, or OpenTelemetry's).
fn tool_call_id(s: &Span) -> Option<&str> {
    ["tool_call_id", "gen_ai.tool.call.id"]
        .iter()
        .find_map(|k| s.attrs.get(*k).and_then(Value::as_str))
}

/// Pairs `a` with `b` (indices into each); each pair says how it was made.
fn align(a: &[&Node], b: &[&Node]) -> Vec<(Option<usize>, Option<usize>, Option<&'static str>)> {
    let mut used_b = vec![false; b.len()];
    let mut pair_of: Vec<Option<(usize, &'static str)>> = vec![None; a.len()];
    // 1. tool_call_id.
    let by_call: HashMap<&str, usize> = b
        .iter()
        .enumerate()
        .filter_map(|(j, n)| tool_call_id(&n.span).map(|id| (id, j)))
        .collect();
    for (i, n) in a.iter().enumerate() {
        if let Some(j) = tool_call_id(&n.span).and_then(|id| by_call.get(id)) {
            if !used_b[*j] {
                used_b[*j] = true;
                pair_of[i] = Some((*j, "tool_call_id"));
            }
        }
    }
    // 2. kind and name, the k-th with the k-th; 3. what is left, by kind and order.
    for by_name in [true, false] {
        let key = |s: &Span| {
            if by_name {
                format!("{}\u{0}{}", s.kind.as_str(), s.name)
            } else {
                s.kind.as_str().to_string()
            }
        };
        let mut free_b: HashMap<String, std::collections::VecDeque<usize>> = HashMap::new();
        for (j, n) in b.iter().enumerate().filter(|(j, _)| !used_b[*j]) {
            free_b.entry(key(&n.span)).or_default().push_back(j);
        }
        for (i, n) in a.iter().enumerate() {
            if pair_of[i].is_some() {
                continue;
            }
            if let Some(j) = free_b.get_mut(&key(&n.span)).and_then(|q| q.pop_front()) {
                used_b[j] = true;
                pair_of[i] = Some((j, if by_name { "name" } else { "position" }));
            }
        }
    }
    // In A's order, each B-only span placed after the pair before it in B's order.
    let mut out = Vec::new();
    let mut b_after: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
    let mut last_paired_b: Option<usize> = None;
    let a_of_b: HashMap<usize, usize> = pair_of
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|(j, _)| (j, i)))
        .collect();
    for j in 0..b.len() {
        if a_of_b.contains_key(&j) {
            last_paired_b = Some(j);
        } else {
            b_after.entry(last_paired_b).or_default().push(j);
        }
    }
    for j in b_after.remove(&None).unwrap_or_default() {
        out.push((None, Some(j), None));
    }
    for (i, p) in pair_of.iter().enumerate() {
        match p {
            Some((j, how)) => {
                out.push((Some(i), Some(*j), Some(*how)));
                for k in b_after.remove(&Some(*j)).unwrap_or_default() {
                    out.push((None, Some(k), None));
                }
            }
            None => out.push((Some(i), None, None)),
        }
    }
    out
}

/// What an output says, in the form compared: an LLM answer's message text and tool
/// calls (not its ids or timestamps, which differ in every run), else the output itself.
fn essence(s: &Span) -> Option<Value> {
    let out = s.output.as_ref()?;
    if s.kind == Kind::Llm && out.pointer("/choices/0/message").is_some() {
        return Some(super::replay::answer_of(out));
    }
    Some(out.clone())
}

fn short(v: &Value) -> String {
    let text = match (v.get("text"), v.get("tool_calls")) {
        (Some(t), Some(Value::Array(calls))) => {
            let mut s = t.as_str().unwrap_or("").to_string();
            for c in calls {
                s.push_str(&format!(
                    " [{}({})]",
                    c["name"].as_str().unwrap_or("?"),
                    c["arguments"].as_str().unwrap_or("")
                ));
            }
            s.trim().to_string()
        }
        _ => match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    };
    let mut t: String = text.chars().take(200).collect();
    if t.len() < text.len() {
        t.push('…');
    }
    t
}

fn side(n: &Node) -> Side {
    let s = &n.span;
    Side {
        span_id: s.span_id.clone(),
        name: s.name.clone(),
        kind: s.kind,
        status: s.status.as_str().to_string(),
        model: s.model.clone(),
        input_tokens: s.input_tokens,
        output_tokens: s.output_tokens,
        cost_usd: s.cost_usd,
        output: essence(s).map(|v| short(&v)),
    }
}

fn delta(a: Option<u64>, b: Option<u64>) -> i64 {
    b.unwrap_or(0) as i64 - a.unwrap_or(0) as i64
}

fn compare(depth: usize, a: Option<&Node>, b: Option<&Node>, how: Option<&'static str>) -> Row {
    let (sa, sb) = (a.map(|n| &n.span), b.map(|n| &n.span));
    let mut differs = Vec::new();
    let mut same_output = None;
    match (sa, sb) {
        (Some(x), Some(y)) => {
            if x.kind != y.kind {
                differs.push(format!("kind {} vs {}", x.kind.as_str(), y.kind.as_str()));
            }
            if x.status != y.status {
                differs.push(format!(
                    "status {} vs {}",
                    x.status.as_str(),
                    y.status.as_str()
                ));
            }
            if x.model != y.model {
                differs.push(format!(
                    "model {} vs {}",
                    x.model.as_deref().unwrap_or("-"),
                    y.model.as_deref().unwrap_or("-")
                ));
            }
            if let (Some(p), Some(q)) = (essence(x), essence(y)) {
                same_output = Some(p == q);
                if p != q {
                    differs.push("output".into());
                }
            } else if x.output_tokens != y.output_tokens {
                differs.push("output tokens (output not recorded)".into());
            }
        }
        (Some(_), None) => differs.push("only in A".into()),
        (None, Some(_)) => differs.push("only in B".into()),
        (None, None) => {}
    }
    let cost = |s: Option<&Span>| s.and_then(|s| s.cost_usd);
    Row {
        depth,
        a: a.map(side),
        b: b.map(side),
        matched_by: how,
        same_output,
        input_tokens_delta: delta(
            sa.and_then(|s| s.input_tokens),
            sb.and_then(|s| s.input_tokens),
        ),
        output_tokens_delta: delta(
            sa.and_then(|s| s.output_tokens),
            sb.and_then(|s| s.output_tokens),
        ),
        cost_usd_delta: match (cost(sa), cost(sb)) {
            (Some(x), Some(y)) => Some(y - x),
            (None, None) if sa.is_some() && sb.is_some() => None,
            (x, y) => match (sa, sb) {
                // A span on one side only: its whole cost is the difference.
                (None, Some(_)) => y,
                (Some(_), None) => x.map(|c| -c),
                _ => None,
            },
        },
        differs,
    }
}

fn kids(n: Option<&Node>) -> Vec<&Node> {
    n.map(|n| n.children.iter().collect()).unwrap_or_default()
}

/// Lines up traces `a` and `b` (their spans, messages included for the output diff).
pub fn diff(a_id: &str, a: Vec<Span>, b_id: &str, b: Vec<Span>) -> Report {
    let fa = tree::build(a);
    let fb = tree::build(b);
    let mut rows = Vec::new();
    // Depth-first in tree order, without recursion: a level is aligned when popped, and
    // each of its pairs is shown with its subtree right below it, before the next pair.
    enum Work<'n> {
        Level(Vec<&'n Node>, Vec<&'n Node>, usize),
        Show(
            Option<&'n Node>,
            Option<&'n Node>,
            Option<&'static str>,
            usize,
        ),
    }
    let mut stack = vec![Work::Level(fa.iter().collect(), fb.iter().collect(), 0)];
    while let Some(w) = stack.pop() {
        match w {
            Work::Show(x, y, how, depth) => rows.push(compare(depth, x, y, how)),
            Work::Level(xs, ys, depth) => {
                let pairs = align(&xs, &ys);
                for (i, j, how) in pairs.into_iter().rev() {
                    let (x, y) = (i.map(|i| xs[i]), j.map(|j| ys[j]));
                    let (kx, ky) = (kids(x), kids(y));
                    if !kx.is_empty() || !ky.is_empty() {
                        stack.push(Work::Level(kx, ky, depth + 1));
                    }
                    stack.push(Work::Show(x, y, how, depth));
                }
            }
        }
    }
    let (ta, tb) = (tree::totals(&fa), tree::totals(&fb));
    Report {
        a: a_id.to_string(),
        b: b_id.to_string(),
        first_divergence: rows.iter().position(|r| !r.differs.is_empty()),
        cost_usd_delta: match (ta.cost_usd, tb.cost_usd) {
            (Some(x), Some(y)) => Some(y - x),
            _ => None,
        },
        input_tokens_delta: tb.input_tokens as i64 - ta.input_tokens as i64,
        output_tokens_delta: tb.output_tokens as i64 - ta.output_tokens as i64,
        totals_a: ta,
        totals_b: tb,
        rows,
    }
}

/// `pas trace diff`'s text.
pub fn render(r: &Report) -> String {
    let money = |c: Option<Decimal>| c.map_or("unknown".into(), |c| format!("${}", c.normalize()));
    let signed = |c: Option<Decimal>| {
        c.map_or("unknown".into(), |c| {
            let c = c.normalize();
            if c.is_sign_negative() {
                format!("-${}", c.abs())
            } else {
                format!("+${c}")
            }
        })
    };
    let mut out = format!(
        "A {}: {} spans, tokens {}/{}, cost {}\nB {}: {} spans, tokens {}/{}, cost {}\n\
         delta: tokens {:+}/{:+}, cost {}\n",
        r.a,
        r.totals_a.spans,
        r.totals_a.input_tokens,
        r.totals_a.output_tokens,
        money(r.totals_a.cost_usd),
        r.b,
        r.totals_b.spans,
        r.totals_b.input_tokens,
        r.totals_b.output_tokens,
        money(r.totals_b.cost_usd),
        r.input_tokens_delta,
        r.output_tokens_delta,
        signed(r.cost_usd_delta),
    );
    match r.first_divergence.map(|i| &r.rows[i]) {
        None => out.push_str("no divergence: every span pairs up with the same output\n"),
        Some(row) => {
            let name = row.a.as_ref().or(row.b.as_ref()).map_or("?", |s| &s.name);
            out.push_str(&format!(
                "first divergence: {name:?} (A {}, B {}): {}\n",
                row.a.as_ref().map_or("-", |s| &s.span_id),
                row.b.as_ref().map_or("-", |s| &s.span_id),
                row.differs.join(", ")
            ));
        }
    }
    for row in &r.rows {
        let indent = "  ".repeat(row.depth.min(40));
        let mark = if row.differs.is_empty() { " " } else { "!" };
        let name = row.a.as_ref().or(row.b.as_ref()).map_or("?", |s| &s.name);
        out.push_str(&format!(
            "{mark} {indent}{name}  tokens {:+}/{:+}  cost {}{}\n",
            row.input_tokens_delta,
            row.output_tokens_delta,
            signed(row.cost_usd_delta),
            if row.differs.is_empty() {
                String::new()
            } else {
                format!("  [{}]", row.differs.join(", "))
            }
        ));
        if row.same_output == Some(false) {
            for (label, s) in [("A", &row.a), ("B", &row.b)] {
                let text = s
                    .as_ref()
                    .and_then(|s| s.output.clone())
                    .unwrap_or_default();
                out.push_str(&format!(
                    "  {indent}  {label}: {}\n",
                    text.replace('\n', " ")
                ));
            }
        }
    }
    out
}

/// The report as the JSON twin gives it (money as decimal strings).
pub fn to_json(r: &Report) -> Value {
    let first = r.first_divergence.map(|i| {
        let row = &r.rows[i];
        json!({
            "row": i,
            "name": row.a.as_ref().or(row.b.as_ref()).map(|s| s.name.clone()),
            "a_span": row.a.as_ref().map(|s| s.span_id.clone()),
            "b_span": row.b.as_ref().map(|s| s.span_id.clone()),
            "differs": row.differs,
        })
    });
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    v["first_divergence"] = first.unwrap_or(Value::Null);
    v
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
