//! Start-up: put back what a crash left half-done, so every card is in exactly one state
//! folder and git and the database agree with the files.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::engine::Engine;
use super::record::{transition_line, transition_row};
use crate::board::Place;
use crate::card::{Card, State};
use crate::fsops::{self, Moved};
use crate::store::db::{self, Record};
use crate::workspace::rel;
use crate::workspace::{is_ignored_name, read_card, Kind};

impl Engine {
    /// The full start-up sequence: staging, scan, plan, then git and the database.
    pub fn start(&mut self) {
        self.recover_staging();
        self.load_definitions();
        self.rescan();
        self.check_records();
        self.start_liveness();
        self.step();
        self.commit_leftovers();
        self.backfill_transitions();
    }

    /// Cards a crash left between two folders go back where their `pas:` block says.
    /// The held original (`<id>.yaml`) is the card; a `.partial` new version was never
    /// landed, so it is only scratch and becomes a spare.
    fn recover_staging(&mut self) {
        let staging = self.ws.staging();
        let _ = std::fs::create_dir_all(&staging);
        let Ok(rd) = std::fs::read_dir(&staging) else {
            return;
        };
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            let path = staging.join(&name);
            if name.ends_with(fsops::STAGED_PARTIAL) {
                let _ = self.spares.give(&path);
                continue;
            }
            let Some(id) = name.strip_suffix(".yaml") else {
                self.reject(
                    &path,
                    "unexpected file in pas's staging folder (.pas/staging)",
                );
                continue;
            };
            let card = match read_card(&path, id) {
                Ok(c) => c,
                Err(e) => {
                    self.reject(
                        &path,
                        &format!("left in staging by a crash and unreadable: {e}"),
                    );
                    continue;
                }
            };
            if let Some(existing) = self.ws.card_candidates(id).into_iter().find(|p| p.exists()) {
                let newer = read_card(&existing, id)
                    .is_ok_and(|c| c.spec.pas.history.len() >= card.spec.pas.history.len());
                if newer {
                    // The landed version supersedes this held copy.
                    let _ = self.spares.give(&path);
                } else {
                    let at = rel(&self.ws, &existing);
                    self.reject(
                        &path,
                        &format!("left in staging by a crash; {id} also exists at {at}"),
                    );
                }
                continue;
            }
            let meta = &card.spec.pas;
            let place = match meta.state {
                Some(State::Assigned) => match &meta.assigned_to {
                    Some(a) => Place::assigned(a),
                    None => Place::of(State::Inbox),
                },
                // Its day folder is in its last history entry; else back to done/.
                Some(State::Archived) => {
                    super::engine::place_from_meta(&card).unwrap_or_else(|| Place::of(State::Done))
                }
                Some(s) => Place::of(s),
                None => Place::of(State::Inbox),
            };
            let to = self.ws.card_path(id, &place);
            match fsops::land(&path, &to) {
                Ok(Moved::Done(_)) => {
                    tracing::warn!(job = id, to = %rel(&self.ws, &to), "recovered a card left in staging");
                }
                Ok(_) => {}
                Err(e) => tracing::error!(job = id, error = %e, "cannot recover staged card"),
            }
        }
    }

    /// Commits whatever under `work/` differs from HEAD (a crash before the commit).
    fn commit_leftovers(&mut self) {
        let Some(git) = &self.git else {
            return;
        };
        git.flush();
        let store = match crate::store::git::GitStore::open(&self.ws.root) {
            Ok(Some(s)) => s,
            _ => return,
        };
        let dirty = match store.dirty_paths_under(&self.ws.work()) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read git status of work/");
                return;
            }
        };
        // Only pas's own paths: state folders, registry and rejected files; never temp,
        // hidden or heartbeat files.
        let work = self.ws.work();
        let dirty: Vec<PathBuf> = dirty
            .into_iter()
            .filter(|p| {
                let Ok(rel) = p.strip_prefix(&work) else {
                    return false;
                };
                let own = rel
                    .iter()
                    .all(|c| c.to_str().is_some_and(|c| !is_ignored_name(c)));
                let first = rel.iter().next().and_then(|c| c.to_str());
                // Links too: the git worker commits a link as a link (its target's name),
                // never what it points at, and skips what lies under a linked folder.
                own && first != Some("heartbeats")
            })
            .collect();
        if dirty.is_empty() {
            return;
        }
        self.read_changed_archive(&dirty);
        tracing::info!(
            files = dirty.len(),
            "committing changes made while pas was not running"
        );
        let lines = self.uncommitted_transitions(&store, &dirty);
        let refs: Vec<&std::path::Path> = dirty.iter().map(PathBuf::as_path).collect();
        self.stage(
            &refs,
            format!(
                "pas: record {} file changes made while pas was not running",
                dirty.len()
            ),
        );
        self.change.lines.extend(lines);
        self.flush_commit();
    }

    /// Archived cards changed while pas was not running (git sees them differ from HEAD)
    /// are read now, as a watch event would have had them read: start-up put them on the
    /// shelf unread, and a card dropped into the archive by hand must be judged.
    fn read_changed_archive(&mut self, dirty: &[PathBuf]) {
        for path in dirty {
            if let Kind::Card { id, place } = self.ws.classify(path) {
                if place.state == State::Archived && self.board.shelf.contains_key(id.as_str()) {
                    self.reconcile_card(&id, std::slice::from_ref(path));
                }
            }
        }
    }

    /// One commit line per transition that the cards' histories hold but HEAD's versions
    /// of them do not (a crash came before the commit), so `git log` and `pas log` keep
    /// every transition.
    fn uncommitted_transitions(
        &self,
        store: &crate::store::git::GitStore,
        dirty: &[PathBuf],
    ) -> Vec<String> {
        let ids: HashSet<String> = dirty
            .iter()
            .filter_map(|p| match self.ws.classify(p) {
                Kind::Card { id, .. } => Some(id),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let mut committed: HashMap<String, usize> = HashMap::new();
        if let Ok(head) = store.resolve_rev("HEAD", self.now()) {
            for (rel, bytes) in store.files_at(head, Path::new("work")).unwrap_or_default() {
                let Kind::Card { id, .. } = self.ws.classify(&self.ws.root.join(&rel)) else {
                    continue;
                };
                if !ids.contains(&id) {
                    continue;
                }
                let len = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|t| Card::parse(&id, t).ok())
                    .map_or(0, |c| c.spec.pas.history.len());
                let e = committed.entry(id).or_default();
                *e = (*e).max(len);
            }
        }
        let mut sorted: Vec<&String> = ids.iter().collect();
        sorted.sort();
        let mut lines = Vec::new();
        for id in sorted {
            // (An archived card is read from its file: the board holds no text of it.)
            let Some(card) = self.card_of(id) else {
                continue;
            };
            let skip = committed.get(id).copied().unwrap_or(0);
            lines.extend(
                (card.spec.pas.history.iter())
                    .skip(skip)
                    .map(|h| transition_line(id, h)),
            );
        }
        lines
    }

    /// Holds the `pas:` block of every live card against the database's rows of its
    /// transitions (see `trust::against_rows`): what was edited while pas was not running
    /// is put back before anything is decided on it.
    fn check_records(&mut self) {
        let Ok(Some(conn)) = db::open_read_only(&self.ws.db_path()) else {
            return; // no database (a fresh clone): the files are all there is
        };
        let live: Vec<String> = (self.board.cards.iter())
            .filter(|(_, e)| matches!(e.place.state, State::Inbox | State::Assigned))
            .map(|(id, _)| id.clone())
            .collect();
        for id in live {
            let Ok(rows) = db::transitions_for(&conn, &id) else {
                continue;
            };
            let Some(entry) = self.board.cards.get(&id) else {
                continue;
            };
            let (meta, found) = match super::trust::against_rows(&entry.card.spec.pas, &rows) {
                Some((meta, found)) => (meta, found),
                None => (entry.card.spec.pas.clone(), Vec::new()),
            };
            let (meta, found) = trace_against_root(&conn, &id, meta, found);
            if found.is_empty() {
                continue;
            }
            let card = entry.card.with_meta(&meta);
            if let Some(e) = self.board.cards.get_mut(&id) {
                e.card = card;
            }
            self.dirty.insert(id.clone());
            if let Some((path, _)) = self.files.get(&id).cloned() {
                self.correct(&id, &path, &found);
            }
        }
    }

    /// Writes the telemetry rows of every history entry the database lacks (a crash
    /// before the writer committed). Rows are keyed by (job, index), so this is idempotent.
    fn backfill_transitions(&mut self) {
        let Some(writer) = &self.db else {
            return;
        };
        writer.flush();
        let counts = match db::open_read_only(&self.ws.db_path()) {
            Ok(Some(conn)) => db::known_transition_counts(&conn).unwrap_or_default(),
            _ => Default::default(),
        };
        let mut sent = 0usize;
        for (id, e) in &self.board.cards {
            let history = &e.card.spec.pas.history;
            let have = counts.get(id).copied().unwrap_or(0) as usize;
            if have >= history.len() {
                continue;
            }
            // Fewer rows than entries: send them all. The gap need not be at the end (a
            // transition found during this start-up's scan is written before this runs),
            // and rows are keyed by (job, index), so the ones already there are ignored.
            for (n, h) in history.iter().enumerate() {
                writer.send(Record::Transition(transition_row(id, n, h)));
                sent += 1;
            }
        }
        if sent > 0 {
            tracing::info!(
                rows = sent,
                "restored transition rows missing from the database"
            );
        }
    }
}

/// The card's trace ids held against its root span in the database: ids edited while pas
/// was not running are put back (with what was found). Only a root span that started
/// when this card was created counts, so a card that reuses an old card's id keeps its own.
fn trace_against_root(
    conn: &rusqlite::Connection,
    id: &str,
    mut meta: crate::card::PasMeta,
    mut found: Vec<String>,
) -> (crate::card::PasMeta, Vec<String>) {
    let Some(created) = meta.history.first().map(|h| h.at) else {
        return (meta, found);
    };
    let Ok(Some((trace, span))) = crate::trace::store::root_of_job(conn, id, created) else {
        return (meta, found);
    };
    if meta.trace_id.as_deref() != Some(trace.as_str())
        || meta.span_id.as_deref() != Some(span.as_str())
    {
        found.push(format!(
            "trace_id {:?} span_id {:?} (pas: {trace} {span})",
            meta.trace_id, meta.span_id
        ));
        meta.trace_id = Some(trace);
        meta.span_id = Some(span);
    }
    (meta, found)
}
