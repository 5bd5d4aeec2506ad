//! Recording a card's transition everywhere it is recorded: the telemetry row, the event,
//! the commit's line, headline and trailer, and the card's trace root span.

use std::path::Path;

use crate::board::Place;
use crate::card::{Card, HistoryEntry, State};
use crate::events::{self as ev, Event};
use crate::store::db::{Record, TransitionRow};

use super::engine::Engine;

impl Engine {
    /// Writes one transition to every record: telemetry row, event, commit line.
    pub(super) fn record(
        &mut self,
        id: &str,
        to: &Place,
        from_path: Option<&Path>,
        to_path: &Path,
        card: &Card,
    ) {
        // The transition is the last entry of the card's history, as pas just wrote it.
        let Some(entry) = card.spec.pas.history.last() else {
            return;
        };
        let n = card.spec.pas.history.len() - 1;
        if let Some(db) = &self.db {
            db.send(Record::Transition(transition_row(id, n, entry)));
        }
        let trace = crate::trace::card_trace(&card.spec.pas);
        if let Some((t, s)) = &trace {
            self.trace_root(id, card, t, s, to);
        }
        if entry.from == "new" {
            // With what the board needs to show and rank it at once (the page would
            // otherwise wait for the card's fields from the server).
            self.emit(Event::JobCreated(ev::JobCreated {
                id: id.to_string(),
                place: entry.to.clone(),
                title: card.spec.title.clone(),
                priority: card.spec.priority.as_str().to_string(),
                requires: card.spec.requires.clone(),
                created: entry.at,
            }));
        }
        let kind: Option<fn(ev::Transition) -> Event> = match to.state {
            State::Inbox if entry.from == "new" => None,
            State::Inbox => Some(Event::JobRequeued),
            State::Assigned => Some(Event::JobAssigned),
            // Not among SPEC 11's types, which predate review: named like them.
            State::Review => Some(Event::JobReview),
            State::Done => Some(Event::JobDone),
            State::Failed => Some(Event::JobFailed),
            // Housekeeping, not news: the SPEC's event types have none for it, and an
            // upgrade archives thousands at once. The commit and the database record it.
            State::Archived => None,
        };
        // Who: the agent it goes to, else the one it leaves (a card done by coder-1).
        let was = Place::from_label(&entry.from).and_then(|p| p.agent);
        if let Some(kind) = kind {
            // A card going to review names the agent whose work waits there.
            let agent = to
                .agent
                .as_ref()
                .or(was.as_ref().filter(|_| to.state == State::Review));
            self.emit(kind(ev::Transition {
                id: id.to_string(),
                from: entry.from.clone(),
                to: entry.to.clone(),
                agent: agent.cloned(),
                by: entry.by.clone(),
                reason: entry.reason.clone(),
            }));
        }
        if matches!(to.state, State::Done | State::Failed) {
            self.archive_soon();
        }
        let line = transition_line(id, entry);
        let title = Some(card.spec.title.clone());
        self.change
            .headlines
            .push(crate::store::git::subject::headline(
                id,
                title.as_deref(),
                entry.from == "new",
                to.state,
                to.agent.as_deref().or(was.as_deref()),
                entry.reason.as_deref(),
            ));
        if let (Some((t, _)), State::Done | State::Failed) = (&trace, to.state) {
            // The commit that finishes a card names its trace (SPEC section 13).
            self.change.trailers.push(format!("Pas-Trace: {id} {t}"));
        }
        let mut paths: Vec<&Path> = vec![to_path];
        if let Some(f) = from_path {
            paths.push(f);
        }
        self.stage(&paths, line);
    }

    /// Records the card's root span as it stands after this transition (pure part:
    /// `trace::card::root_span`).
    fn trace_root(&mut self, id: &str, card: &Card, trace: &str, span: &str, to: &Place) {
        let Some(s) = crate::trace::card::root_span(id, card, (trace, span), to, self.now()) else {
            return;
        };
        let db = self.db.as_ref().map(|d| d.sink());
        crate::trace::Tracer::new(self.cfg.traces.capture, db, self.hub.clone()).record_quietly(s);
    }
}

/// The telemetry row of history entry `n` of card `id`; the agent is the one the card went
/// to, else whoever moved it.
pub(super) fn transition_row(id: &str, n: usize, h: &HistoryEntry) -> TransitionRow {
    let agent = h.to.strip_prefix("assigned/").map(str::to_string);
    TransitionRow {
        job_id: id.to_string(),
        n: n as u32,
        ts: h.at,
        from: h.from.clone(),
        to: h.to.clone(),
        agent: agent.or_else(|| h.by.clone()),
        reason: h.reason.clone(),
    }
}

/// The commit message line of one transition: `pas: J-7 inbox -> assigned/a (reason)`.
pub(super) fn transition_line(id: &str, h: &HistoryEntry) -> String {
    let reason = h
        .reason
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    format!("pas: {id} {} -> {}{reason}", h.from, h.to)
}
