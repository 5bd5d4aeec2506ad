//! A card's own span: the root of its trace, rebuilt from the card after each transition.
//! Pure: the card, where it went and the time in; the span out.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::board::Place;
use crate::card::{Card, State};
use crate::span::{Kind, Source, Span, Status};

/// The root span of card `id` (trace and span ids as stamped) after its move to `to`:
/// started at its creation, ended when it finished (ok in `done/`, error in `failed/`),
/// running meanwhile. Its moves and take-backs are not copied into it: they are the
/// card's transition rows, which readers join in. `None` for a move to the archive,
/// which is housekeeping (the span already says how the card ended).
pub fn root_span(
    id: &str,
    card: &Card,
    (trace, span): (&str, &str),
    to: &Place,
    now: DateTime<Utc>,
) -> Option<Span> {
    if to.state == State::Archived {
        return None;
    }
    let mut s = Span::new(trace, span, &card.spec.title, Kind::Job, Source::Pas);
    let h = &card.spec.pas.history;
    s.start = h.first().map_or(now, |e| e.at);
    s.job = Some(id.to_string());
    s.agent = to
        .agent
        .clone()
        .or_else(|| card.spec.pas.assigned_to.clone());
    s.status = match to.state {
        State::Done => Status::Ok,
        State::Failed => Status::Error,
        _ => Status::Running,
    };
    if to.state.finished() {
        s.end = h.last().map(|e| e.at);
    }
    s.attrs.insert("state".into(), json!(to.label()));
    s.attrs
        .insert("attempts".into(), json!(card.spec.pas.attempts));
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(text: &str, to: Place) -> Option<Span> {
        let card = Card::parse("J-1", text).unwrap();
        root_span(
            "J-1",
            &card,
            ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
            &to,
            Utc::now(),
        )
    }

    #[test]
    fn the_root_span_follows_the_card_and_ends_when_it_finishes() {
        let card = "title: Write the parser\npas:\n  state: done\n  attempts: 1\n  history:\n    - {at: \"2026-12-07T10:00:00.000Z\", from: new, to: inbox, by: submit}\n    - {at: \"2026-12-07T10:00:05.000Z\", from: assigned/a, to: done, by: a}\n";
        let s = moved(card, Place::of(State::Done)).unwrap();
        assert_eq!(
            (s.kind, s.status, s.name.as_str()),
            (Kind::Job, Status::Ok, "Write the parser")
        );
        assert_eq!(s.duration_ms(), Some(5000.0));
        assert_eq!(s.attrs["attempts"], 1);
        let s = moved(card, Place::assigned("a")).unwrap();
        assert_eq!(
            (s.status, s.end, s.agent.as_deref()),
            (Status::Running, None, Some("a"))
        );
        assert!(moved(card, Place::archived_in("2026/12/07".into())).is_none());
    }
}
