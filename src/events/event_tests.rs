use super::*;
use serde_json::json;

/// SPEC section 11's list of event types (copied: CI has no SPEC beside the repo), and
/// section 13's `trace.span`.
const SPEC: &str = "job.created|job.assigned|job.done|job.failed|job.requeued|job.rejected|\
agent.registered|agent.heartbeat|agent.down|agent.up|agent.deregistered|token.warning|\
token.breach|cost.receipt|budget.alert|trace.span";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// One event of every kind, with every optional field filled somewhere.
fn samples() -> Vec<Event> {
    let t = at("2026-01-31T23:59:58.250Z");
    let tr = Transition {
        id: "01J".into(),
        from: "inbox".into(),
        to: "assigned/coder-1".into(),
        agent: Some("coder-1".into()),
        by: None,
        reason: Some("why".into()),
    };
    let ae = AgentEpoch {
        agent: "a".into(),
        epoch: 3,
    };
    let tokens = Tokens {
        agent: "a".into(),
        ctx_ratio: Some(0.8),
        target: 0.5,
        hard_max: 0.75,
    };
    vec![
        Event::JobCreated(JobCreated {
            id: "01J".into(),
            place: "inbox".into(),
            title: "t".into(),
            priority: "high".into(),
            requires: vec!["rust".into()],
            created: t,
        }),
        Event::JobAssigned(tr.clone()),
        Event::JobReview(tr.clone()),
        Event::JobDone(tr.clone()),
        Event::JobFailed(tr.clone()),
        Event::JobRequeued(tr),
        Event::JobRejected(Rejected {
            file: "work/inbox/x.yaml".into(),
            to: "work/rejected/x.yaml".into(),
            reason: "bad".into(),
        }),
        Event::AgentRegistered(ae.clone()),
        Event::AgentPaused(ae.clone()),
        Event::AgentResumed(ae),
        Event::AgentHeartbeat(Heartbeat {
            agent: "a".into(),
            beat: json!({"note": "n"}),
            ctx_ratio: None,
        }),
        Event::AgentUp(AgentUp {
            agent: "a".into(),
            last_seen: t,
        }),
        Event::AgentDown(AgentDown {
            agent: "a".into(),
            last_seen: t,
            last_note: None,
            interval_s: 30.0,
            message: "m".into(),
        }),
        Event::AgentDeregistered(Deregistered {
            agent: "a".into(),
            epoch: Some(1),
            reason: "no beat for 3 intervals".into(),
            silent: Some(Silent {
                last_seen: t,
                last_note: Some("n".into()),
                cards: vec!["01J".into()],
            }),
        }),
        Event::TokenWarning(tokens.clone()),
        Event::TokenBreach(Breach { tokens, card: None }),
        Event::FileRefused(FileRefused {
            file: "f".into(),
            agent: "a".into(),
            reason: "r".into(),
        }),
        Event::CostReceipt(Box::new(Receipt {
            id: "r".into(),
            request_id: "q".into(),
            attempt: 1,
            job: None,
            agent: Some("a".into()),
            provider: "p".into(),
            model: "m".into(),
            input_tokens: 1,
            output_tokens: 2,
            cached_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            usage_source: Default::default(),
            cost_usd: Some("0.0001".into()),
            latency_ms: 1.5,
            stream: false,
            status: "ok".into(),
            error: None,
            replay_of: None,
        })),
        Event::BudgetAlert(BudgetAlert {
            scope: "daily".into(),
            period: "2026-01-31".into(),
            threshold: "0.8".into(),
            spent_usd: "8".into(),
            limit_usd: "10".into(),
        }),
        Event::TraceSpan(TraceSpans {
            trace_id: "t".into(),
            spans: vec![json!({"span_id": "s"})],
        }),
        Event::TraceRejected(TraceRejected {
            source: "s".into(),
            reason: "r".into(),
        }),
    ]
}

#[test]
fn every_spec_kind_has_a_variant_and_every_variant_round_trips() {
    let all = samples();
    let kinds: Vec<&str> = all.iter().map(Event::kind).collect();
    for k in SPEC.split('|') {
        assert!(kinds.contains(&k), "no variant for SPEC's {k}");
    }
    let mut listed = Event::KINDS.to_vec();
    listed.sort_unstable();
    let mut seen = kinds.clone();
    seen.sort_unstable();
    assert_eq!(listed, seen, "KINDS lists each variant once");
    for e in all {
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], e.kind(), "serde's tag is kind()");
        assert_eq!(v["data"], e.data());
        let back = Event::parse(e.kind(), e.data()).unwrap();
        assert_eq!(back, e, "{} round-trips", e.kind());
    }
}

#[test]
fn the_wire_data_keeps_today_shape() {
    let t = at("2026-01-31T23:59:58.250Z");
    let down = Event::AgentDown(AgentDown {
        agent: "a".into(),
        last_seen: t,
        last_note: None,
        interval_s: 30.0,
        message: "m".into(),
    });
    assert_eq!(
        down.data(),
        json!({"agent": "a", "last_seen": "2026-01-31T23:59:58.250Z", "last_note": null,
               "interval_s": 30.0, "message": "m"})
    );
    // Removed registration: no last_seen, cards.
    let gone = Event::AgentDeregistered(Deregistered {
        agent: "a".into(),
        epoch: Some(2),
        reason: "registration removed".into(),
        silent: None,
    });
    assert_eq!(
        gone.data(),
        json!({"agent": "a", "epoch": 2, "reason": "registration removed"})
    );
    let breach = Event::TokenBreach(Breach {
        tokens: Tokens {
            agent: "a".into(),
            ctx_ratio: None,
            target: 0.5,
            hard_max: 0.75,
        },
        card: Some("01K".into()),
    });
    assert_eq!(
        breach.data(),
        json!({"agent": "a", "ctx_ratio": null, "target": 0.5, "hard_max": 0.75, "card": "01K"})
    );
    assert!(Event::parse("job.nope", json!({})).is_err());
}
