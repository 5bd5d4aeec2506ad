//! Bringing the board in line with one card's files: which copy is the card, whether it
//! moved (a transition to record) or vanished, and taking a new or changed card in.
//!
//! Split from `engine.rs`, which holds the engine's state and the other inputs.

use std::path::PathBuf;
use std::time::SystemTime;

use super::engine::{place_from_meta, Engine};
use crate::board::{transition_meta, Entry, Place};
use crate::card::{Card, State};
use crate::fsops::Stamp;
use crate::intake::{self, FileKind};
use crate::workspace::rel;
use crate::workspace::{read_card, Kind};

impl Engine {
    /// Brings the board in line with the files of card `id`; `hints` are paths just seen.
    pub fn reconcile_card(&mut self, id: &str, hints: &[PathBuf]) {
        // The file pas knows, with its stamp when pas knows that too (an archived card on
        // the shelf since start-up is known by its place alone).
        let known: Option<(PathBuf, Option<Stamp>)> = match self.files.get(id) {
            Some((p, s)) => Some((p.clone(), Some(*s))),
            None => self.shelved_file(id),
        };
        let mut candidates: Vec<PathBuf> = hints.to_vec();
        if let Some((p, _)) = &known {
            candidates.push(p.clone());
        }
        candidates.sort();
        candidates.dedup();
        let mut present: Vec<PathBuf> = candidates
            .into_iter()
            .filter(|p| std::fs::symlink_metadata(p).is_ok())
            .collect();
        if present.is_empty() {
            present = self
                .ws
                .card_candidates(id)
                .into_iter()
                .filter(|p| std::fs::symlink_metadata(p).is_ok())
                .collect();
        }

        // Read what is there; a bad file is rejected once it has stopped changing.
        let mut good: Vec<(PathBuf, Place, Card, Stamp)> = Vec::new();
        let one = present.len() == 1;
        for path in present {
            let Kind::Card { place, .. } = self.ws.classify(&path) else {
                continue;
            };
            let Ok(stamp) = Stamp::of(&path) else {
                continue;
            };
            if let Some((kp, ks)) = &known {
                if *kp == path && *ks == Some(stamp) {
                    if let Some(e) = self.board.cards.get(id) {
                        good.push((path, place, e.card.clone(), stamp));
                        continue;
                    }
                    if one && self.board.shelf.contains_key(id) {
                        return; // pas's own write into the archive, echoed back
                    }
                }
            }
            match read_card(&path, id) {
                Ok(card) => good.push((path, place, card, stamp)),
                // Gone since it was seen (its writer moved it on): the next event says where.
                Err(_) if std::fs::symlink_metadata(&path).is_err() => continue,
                Err(e) => {
                    let fresh = SystemTime::now()
                        .duration_since(stamp.mtime)
                        .map_or(true, |age| age < self.settle());
                    // A link, a FIFO or a hard link never becomes a card by waiting.
                    let settles = match intake::open(&path, FileKind::Card) {
                        Err(refused) => refused.may_settle(),
                        Ok(_) => true,
                    };
                    if fresh && settles {
                        self.settling
                            .insert(path, self.clock.instant() + self.settle());
                    } else {
                        self.reject(&path, &e.to_string());
                    }
                }
            }
        }

        if good.is_empty() {
            if let Some((old, _)) = known {
                if self.ws.staging().join(format!("{id}.yaml")).exists() {
                    return; // another pas process holds it between two folders
                }
                if !self.vanished_for_good(id, &old) {
                    return;
                }
                // Clearing out finished cards is housekeeping; a live card vanishing is news.
                let finished = (self.board.cards.get(id)).is_some_and(|c| c.place.state.finished());
                if finished {
                    tracing::info!(job = id, path = %old.display(), "finished card removed outside pas");
                } else {
                    tracing::warn!(job = id, path = %old.display(), "card removed outside pas");
                }
                self.files.remove(id);
                self.board.cards.remove(id);
                self.unshelve(id);
                self.dirty.remove(id);
                self.replan = true;
                self.stage(&[&old], format!("pas: {id} removed outside pas"));
            }
            return;
        }

        self.vanishing.remove(id);
        // One id, one folder: keep the known file (else the most advanced), reject the rest.
        let keep = good
            .iter()
            .position(|(p, ..)| known.as_ref().is_some_and(|(kp, _)| kp == p))
            .unwrap_or_else(|| {
                (0..good.len())
                    .max_by_key(|&i| (good[i].1.state, std::cmp::Reverse(i)))
                    .unwrap_or(0)
            });
        let (path, place, card, stamp) = good.swap_remove(keep);
        for (other, other_place, other_card, _) in good {
            let at = rel(&self.ws, &path);
            let why = self
                .stale_completion(id, &other_place, &other_card)
                .unwrap_or_else(|| format!("duplicate id {id}: it already exists at {at}"));
            self.reject(&other, &why);
        }
        self.take_card(id, path, place, card, stamp);
    }

    /// Says that an edited `pas:` block was put back as pas recorded it: in the log and as
    /// a line of the commit that writes the corrected card.
    pub(super) fn correct(&mut self, id: &str, path: &std::path::Path, forged: &[String]) {
        let what = forged.join("; ");
        tracing::warn!(job = id, file = %rel(&self.ws, path), corrected = %what, "pas: block edited outside pas; pas's record restored");
        self.stage(
            &[path],
            format!("pas: {id} pas: block restored from pas's record ({what})"),
        );
    }

    /// Records what a readable card file at `path` means for the board.
    fn take_card(&mut self, id: &str, path: PathBuf, place: Place, card: Card, stamp: Stamp) {
        if let Some(why) = self.stale_completion(id, &place, &card) {
            return self.fence(id, &path, &why);
        }
        self.replan = true;
        let now = self.now();
        // A card coming off the shelf: pas holds no block of it in memory, so the file's
        // block is held against pas's rows of its transitions, as at start-up.
        let shelved = self.unshelve(id);
        let mut card = card;
        if shelved.is_some() {
            let (checked, forged) = self.held_against_rows(id, card);
            card = checked;
            if !forged.is_empty() {
                self.dirty.insert(id.to_string());
                self.correct(id, &path, &forged);
            }
        }
        // What pas itself recorded of the card, to hold an edited `pas:` block against.
        let known_meta = self.board.cards.get(id).map(|e| e.card.spec.pas.clone());
        let prev: Option<Place> = (self.board.cards.get(id).map(|e| e.place.clone()))
            .or_else(|| shelved.map(|s| s.place()))
            .or_else(|| place_from_meta(&card));
        let created = self
            .board
            .cards
            .get(id)
            .map(|e| e.created)
            .or_else(|| card.spec.pas.history.first().map(|h| h.at))
            .unwrap_or(now);
        let old_path = self
            .files
            .insert(id.to_string(), (path.clone(), stamp))
            .map(|(p, _)| p)
            .filter(|p| *p != path)
            .or_else(|| {
                let was = shelved.map(|s| self.ws.card_path(id, &s.place()));
                was.filter(|p| *p != path)
            });

        // A new card gets its trace now, whatever its file claimed (an id pas did not hand
        // out could file the card under someone else's trace); so does a live card from
        // before traces. One pas knows keeps pas's (restored below if edited).
        let unknown_trace = known_meta.as_ref().is_none_or(|k| k.trace_id.is_none());
        let untraced = crate::trace::card_trace(&card.spec.pas).is_none();
        if unknown_trace && (prev.is_none() || (untraced && !place.state.finished())) {
            let mut m = card.spec.pas.clone();
            m.trace_id = Some(crate::span::new_trace_id());
            m.span_id = Some(crate::span::new_span_id());
            card = card.with_meta(&m);
            self.dirty.insert(id.to_string());
        }
        // A card that asks for review, finished by its agent with a plain `mv` into done/:
        // recorded as it happened, then moved on to review/ (`pas done` goes there itself).
        let to_review = place.state == State::Done
            && card.spec.review
            && prev.as_ref().is_some_and(|p| p.state == State::Assigned);
        match prev {
            Some(p) if p == place => {
                // An edit in place (an agent noting progress, a human fixing a title) is
                // not a transition, but the audit trail still records it.
                // (A card off the shelf was read because its file changed.)
                let edited = shelved.is_some()
                    || (self.board.cards.get(id)).is_some_and(|e| e.card.text() != card.text());
                if edited {
                    self.stage(&[&path], format!("pas: {id} edited in {}", place.label()));
                }
                if let Some(known) = &known_meta {
                    let forged = super::trust::edited(known, &card.spec.pas);
                    if !forged.is_empty() {
                        card = card.with_meta(&super::trust::restored(known, &card.spec.pas));
                        self.dirty.insert(id.to_string());
                        self.correct(id, &path, &forged);
                    }
                }
                if card.spec.pas.state != Some(place.state) {
                    let mut meta = card.spec.pas.clone();
                    meta.state = Some(place.state);
                    card = card.with_meta(&meta);
                    self.dirty.insert(id.to_string());
                }
            }
            prev => {
                let from = prev.clone();
                let from_label = from.as_ref().map_or("new".to_string(), Place::label);
                if let (Some(known), Some(f)) = (&known_meta, &from) {
                    let forged = super::trust::moved(known, &card.spec.pas, f, &place, now);
                    if !forged.is_empty() {
                        // pas's own block, and the move recorded below as pas saw it.
                        card = card.with_meta(&super::trust::restored(known, &card.spec.pas));
                        self.dirty.insert(id.to_string());
                        self.correct(id, &path, &forged);
                    }
                }
                let meta = &card.spec.pas;
                let recorded = meta.state == Some(place.state)
                    && meta
                        .history
                        .last()
                        .is_some_and(|h| h.to == place.label() && h.from == from_label);
                if !recorded {
                    let by = place
                        .agent
                        .clone()
                        .or_else(|| from.as_ref().and_then(|f| f.agent.clone()))
                        .unwrap_or_else(|| {
                            if from.is_none() { "submit" } else { "external" }.into()
                        });
                    let from_place = from.clone().unwrap_or(Place::of(State::Inbox));
                    let mut m = transition_meta(meta, &from_place, &place, &by, None, now);
                    if let Some(h) = m.history.last_mut() {
                        h.from = from_label.clone();
                    }
                    if let Some(a) = &place.agent {
                        // A pull claim: the card belongs to the agent's current epoch.
                        m.epoch = self.epoch_of(a).or(m.epoch);
                    }
                    card = card.with_meta(&m);
                    self.dirty.insert(id.to_string());
                }
                self.record(id, &place, old_path.as_deref(), &path, &card);
            }
        }
        let archived = place.state == State::Archived;
        self.board.cards.insert(
            id.to_string(),
            Entry {
                card,
                place,
                created,
            },
        );
        if archived && !self.dirty.contains(id) {
            self.shelve(id);
        }
        if to_review {
            let why = "review: true; waits for pas approve or pas reject".to_string();
            self.transfer(id, Place::of(State::Review), "pas", Some(why), now, |_| {});
        }
    }
}

impl Engine {
    /// Whether card `id`, found in no folder, is gone: true at the second look, a settle
    /// time after the first (which asks for that look by settling its old path).
    fn vanished_for_good(&mut self, id: &str, old: &std::path::Path) -> bool {
        let now = self.clock.instant();
        let due = match self.vanishing.get(id) {
            Some(since) => *since + self.settle(),
            None => {
                self.vanishing.insert(id.to_string(), now);
                now + self.settle()
            }
        };
        if now >= due {
            self.vanishing.remove(id);
            return true;
        }
        self.settling.entry(old.to_path_buf()).or_insert(due);
        false
    }
}
