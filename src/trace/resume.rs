//! Resume from a checkpoint (SPEC section 13): `pas replay --resume TRACE_ID/SPAN_ID`
//! drops a card that carries a `checkpoint` span's state, for an agent to continue from.
//!
//! The card needs the original job's capabilities (`requires`), so it goes to an agent
//! that can do that job's work, and names where it comes from (`resume_from`); the state
//! is the span's `output` as the agent recorded it (`resume_state`). The original job is
//! the span's `job`, else the job of its trace's root span; without one there is no
//! way to know who may continue, and the command says so rather than guess.

use serde_json::json;

use super::replay::{capture_name, drop_card, find_span};
use crate::card::Card;
use crate::span::{Kind, Span};
use crate::workspace::Workspace;

/// What a resume wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Resumed {
    pub job: String,
    pub path: String,
    pub resume_from: String,
    /// The original job, whose capabilities the card requires.
    pub original_job: String,
    pub requires: Vec<String>,
}

/// The original card of `span`: its own `job`, else its trace root's.
fn original(ws: &Workspace, span: &Span, target: &str) -> Result<Card, String> {
    let mut job = span.job.clone();
    if job.is_none() {
        if let Ok(Some(conn)) = crate::store::db::open_read_only(&ws.db_path()) {
            job = super::store::spans(&conn, &span.trace_id, false)
                .unwrap_or_default()
                .into_iter()
                .find(|s| s.kind == Kind::Job)
                .and_then(|s| s.job);
        }
    }
    let Some(job) = job else {
        return Err(format!(
            "checkpoint {target} names no job and its trace has no card: the card to \
             resume needs the original job's capabilities (give the span a \"job\")"
        ));
    };
    ws.card_candidates(&job)
        .iter()
        .find_map(|p| crate::workspace::read_card(p, &job).ok())
        .ok_or_else(|| {
            format!(
                "checkpoint {target} belongs to job {job}, whose card is nowhere in work/: \
                 its capabilities are needed to resume"
            )
        })
}

/// The resume card of checkpoint `span` (of card `orig`).
pub fn card_for(span: &Span, orig: &Card, target: &str) -> Result<serde_yaml::Mapping, String> {
    if span.kind != Kind::Checkpoint {
        return Err(format!(
            "span {target} is a {} span, not a checkpoint: --resume takes a span of kind \
             checkpoint (an LLM call is replayed without --resume)",
            span.kind.as_str()
        ));
    }
    let Some(state) = &span.output else {
        return Err(format!(
            "checkpoint {target} has no recorded state (its output): nothing to resume from"
        ));
    };
    let mut card = json!({
        "title": format!("resume {} from {}", one_line(&orig.spec.title), one_line(&span.name)),
        "description": format!(
            "Continues job {} from its checkpoint {target} (pas replay --resume): \
             resume_state is the state the agent recorded there.",
            orig.id
        ),
        "requires": orig.spec.requires,
        "resume_from": target,
        "resume_state": state,
    });
    if let Some(k) = &orig.spec.kind {
        card["kind"] = json!(k);
    }
    match serde_yaml::to_value(card) {
        Ok(serde_yaml::Value::Mapping(m)) => Ok(m),
        _ => Err("cannot write the resume card as YAML".into()),
    }
}

fn one_line(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(60).collect()
}

/// `pas replay --resume TRACE_ID/SPAN_ID`.
pub fn write(ws: &Workspace, target: &str) -> Result<Resumed, String> {
    let (span, capture) = find_span(ws, target)?;
    if span.kind == Kind::Checkpoint && span.output.is_none() && capture != super::Capture::Full {
        return Err(format!(
            "checkpoint {target} has no recorded state: traces.capture is {}, which keeps \
             no span output; only capture: full keeps what a resume needs",
            capture_name(capture)
        ));
    }
    let orig = original(ws, &span, target)?;
    let map = card_for(&span, &orig, target)?;
    let job = drop_card(ws, &map)?;
    Ok(Resumed {
        path: format!("work/inbox/{job}.yaml"),
        job,
        resume_from: target.to_string(),
        original_job: orig.id.clone(),
        requires: orig.spec.requires.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Source;
    use serde_json::Value;

    #[test]
    fn a_checkpoint_becomes_a_card_needing_the_jobs_capabilities() {
        let orig = Card::parse(
            "J-1",
            "title: write the parser\nrequires: [rust, parsing]\n",
        )
        .unwrap();
        let mut s = Span::new("t", "s", "after tests", Kind::Checkpoint, Source::File);
        s.output = Some(json!({"step": 3, "files": ["a.rs"]}));
        let m = card_for(&s, &orig, "t/s").unwrap();
        let v: Value = serde_yaml::from_value(serde_yaml::Value::Mapping(m)).unwrap();
        assert_eq!(v["requires"], json!(["rust", "parsing"]));
        assert_eq!(v["resume_from"], "t/s");
        assert_eq!(v["resume_state"]["step"], 3);
        s.kind = Kind::Llm;
        assert!(card_for(&s, &orig, "t/s")
            .unwrap_err()
            .contains("not a checkpoint"));
        s.kind = Kind::Checkpoint;
        s.output = None;
        assert!(card_for(&s, &orig, "t/s")
            .unwrap_err()
            .contains("no recorded state"));
    }
}
