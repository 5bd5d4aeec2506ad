//! Tests of `diff.rs`: how two runs' spans pair up, the first divergence, the deltas.
use super::*;
use crate::trace::{Source, Status};

fn span(trace: &str, id: &str, parent: Option<&str>, kind: Kind, name: &str) -> Span {
    let mut s = Span::new(trace, id, name, kind, Source::File);
    s.parent_id = parent.map(str::to_string);
    s.status = Status::Ok;
    s
}

fn llm(trace: &str, id: &str, parent: &str, at: i64, text: &str, cost: &str) -> Span {
    let mut s = span(trace, id, Some(parent), Kind::Llm, "chat m");
    s.start = chrono::DateTime::from_timestamp(at, 0).unwrap();
    s.model = Some("m".into());
    s.input_tokens = Some(10);
    s.output_tokens = Some(text.len() as u64);
    s.cost_usd = Some(cost.parse().unwrap());
    s.output = Some(
        json!({"id": format!("chatcmpl-{id}"), "choices": [{"index": 0,
        "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}),
    );
    s
}

fn tool(trace: &str, id: &str, parent: &str, at: i64, call: &str, out: &str) -> Span {
    let mut s = span(trace, id, Some(parent), Kind::Tool, &format!("tool {call}"));
    s.start = chrono::DateTime::from_timestamp(at, 0).unwrap();
    s.attrs.insert("tool_call_id".into(), json!(call));
    s.output = Some(json!(out));
    s
}

/// Run A: root, chat (answer "plan"), tool c1, tool c2, chat ("done A").
/// Run B: another root title, tools in the other order, the last chat answers
/// otherwise and costs more, and one extra step.
fn runs() -> (Vec<Span>, Vec<Span>) {
    let a = vec![
        span("a", "ra", None, Kind::Job, "first run"),
        llm("a", "a1", "ra", 1, "plan", "0.001"),
        tool("a", "a2", "ra", 2, "c1", "4 C"),
        tool("a", "a3", "ra", 3, "c2", "9 C"),
        llm("a", "a4", "ra", 4, "done A", "0.0020"),
    ];
    let mut extra = span("b", "b5", Some("rb"), Kind::Step, "double-check");
    extra.start = chrono::DateTime::from_timestamp(6, 0).unwrap();
    let b = vec![
        span("b", "rb", None, Kind::Job, "second run"),
        llm("b", "b1", "rb", 1, "plan", "0.001"),
        tool("b", "b3", "rb", 2, "c2", "9 C"),
        tool("b", "b2", "rb", 3, "c1", "4 C"),
        llm("b", "b4", "rb", 4, "done B!", "0.0035"),
        extra,
    ];
    (a, b)
}

#[test]
fn spans_pair_by_tool_call_id_name_and_position_and_the_first_divergence_is_named() {
    let (a, b) = runs();
    let r = diff("a", a, "b", b);
    let pairs: Vec<(Option<&str>, Option<&str>, Option<&str>)> = r
        .rows
        .iter()
        .map(|row| {
            (
                row.a.as_ref().map(|s| s.span_id.as_str()),
                row.b.as_ref().map(|s| s.span_id.as_str()),
                row.matched_by,
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            (Some("ra"), Some("rb"), Some("position")),
            (Some("a1"), Some("b1"), Some("name")),
            (Some("a2"), Some("b2"), Some("tool_call_id")),
            (Some("a3"), Some("b3"), Some("tool_call_id")),
            (Some("a4"), Some("b4"), Some("name")),
            (None, Some("b5"), None),
        ]
    );
    assert_eq!(
        r.rows[1].same_output,
        Some(true),
        "ids differ, answers do not"
    );
    let first = &r.rows[r.first_divergence.unwrap()];
    assert_eq!(first.a.as_ref().unwrap().span_id, "a4");
    assert_eq!(first.differs, ["output"]);
    assert_eq!(first.cost_usd_delta, Some("0.0015".parse().unwrap()));
    assert_eq!(first.output_tokens_delta, 1);
    assert_eq!(r.cost_usd_delta, Some("0.0015".parse().unwrap()));
    assert_eq!(r.rows[5].differs, ["only in B"]);
    let text = render(&r);
    assert!(
        text.contains("first divergence: \"chat m\" (A a4, B b4): output"),
        "{text}"
    );
    assert!(text.contains("cost +$0.0015"), "{text}");
    assert!(
        text.contains("A: done A") && text.contains("B: done B!"),
        "{text}"
    );
    let v = to_json(&r);
    assert_eq!(v["first_divergence"]["a_span"], "a4");
    assert_eq!(v["cost_usd_delta"], "0.0015");
}

#[test]
fn identical_runs_do_not_diverge_and_a_deep_chain_does_not_overflow() {
    let (a, _) = runs();
    let r = diff("a", a.clone(), "a2", a);
    assert_eq!(r.first_divergence, None);
    assert!(render(&r).contains("no divergence"));
    let chain = |t: &str| -> Vec<Span> {
        (0..5_000)
            .map(|i| {
                let parent = (i > 0).then(|| format!("{:016x}", i - 1));
                span(t, &format!("{i:016x}"), parent.as_deref(), Kind::Step, "s")
            })
            .collect()
    };
    let r = diff("x", chain("x"), "y", chain("y"));
    assert_eq!(r.rows.len(), 5_000);
    assert_eq!(r.first_divergence, None);
}
