//! Archived cards on the shelf: the engine knows them by id and day folder (see
//! `board::Shelved`) and reads one only when something asks for it: a watch event on its
//! file, a waiting card that depends on it, a person moving it back to the inbox. A year
//! of finished cards costs the daemon a few bytes each, not their text, and start-up lists
//! the archive's folders without opening a file in them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::engine::Engine;
use crate::board::Shelved;
use crate::card::Card;
use crate::fsops::Stamp;
use crate::store::db;
use crate::workspace::read_card;

/// How many stamps of archive files pas wrote itself are kept, to know their watch events
/// as its own echo. Past this the map starts over: an echo not recognised costs one read.
const ECHO_STAMPS: usize = 10_000;

/// Stamps of the archive files pas wrote this run, by card id; and the text of the cards
/// shelved since the last commit was handed over, which that commit snapshots.
#[derive(Debug, Default)]
pub(super) struct Echoes {
    stamps: HashMap<String, Stamp>,
    unsent: HashMap<String, (PathBuf, Arc<str>)>,
}

impl Echoes {
    fn note(&mut self, id: &str, stamp: Stamp) {
        if self.stamps.len() >= ECHO_STAMPS {
            self.stamps.clear();
        }
        self.stamps.insert(id.to_string(), stamp);
    }

    /// The text of card `id` at `path` if it was shelved since the last commit.
    pub(super) fn shelved_since_flush(&self, id: &str, path: &std::path::Path) -> Option<Arc<str>> {
        let (p, text) = self.unsent.get(id)?;
        (p == path).then(|| text.clone())
    }

    /// The gathered commit went to the git worker with these texts.
    pub(super) fn flushed(&mut self) {
        self.unsent.clear();
    }
}

impl Engine {
    /// The file of shelved card `id` and, when pas wrote it this run, its stamp then.
    pub(super) fn shelved_file(&self, id: &str) -> Option<(PathBuf, Option<Stamp>)> {
        let s = self.board.shelf.get(id)?;
        let path = self.ws.card_path(id, &s.place());
        Some((path, self.echoes.stamps.get(id).copied()))
    }

    /// Takes an archived card off the board onto the shelf, keeping how it finished (its
    /// last move came from `done/` or `failed/`) and the stamp of the file pas knows.
    pub(super) fn shelve(&mut self, id: &str) {
        let Some(e) = self.board.cards.get(id) else {
            return;
        };
        let Some(day) = e.place.day.as_deref() else {
            return;
        };
        let Some(s) = Shelved::new(day, Some(e.succeeded())) else {
            return;
        };
        let Some(e) = self.board.cards.remove(id) else {
            return;
        };
        self.dirty.remove(id);
        if let Some((path, stamp)) = self.files.remove(id) {
            self.echoes.note(id, stamp);
            // The commit being gathered records the move with this text (see
            // `Engine::flush_commit`), as it would have taken it from the board.
            (self.echoes.unsent).insert(id.to_string(), (path, Arc::from(e.card.text())));
        }
        self.board.shelf.insert(id.into(), s);
    }

    /// Puts card `id`, listed in the archive, on the shelf without reading it, unless
    /// the board holds it otherwise; true when it is on the shelf where listed.
    pub(super) fn shelve_unread(&mut self, id: &str, listed: Shelved) -> bool {
        if self.board.cards.contains_key(id) {
            return false;
        }
        match self.board.shelf.get(id) {
            // Where pas knows it: a rescan after a lost event changes nothing here.
            Some(s) => s.place() == listed.place(),
            None => {
                self.board.shelf.insert(id.into(), listed);
                true
            }
        }
    }

    /// Forgets shelved card `id` (it moved on, or was removed).
    pub(super) fn unshelve(&mut self, id: &str) -> Option<Shelved> {
        self.echoes.stamps.remove(id);
        self.echoes.unsent.remove(id);
        self.board.shelf.remove(id)
    }

    /// Reads how each archived card a waiting card depends on finished, where the board
    /// does not know yet. Only those are read; each once.
    pub(super) fn resolve_shelved(&mut self) {
        let unknown = self.board.unread_dependencies_indexed();
        if unknown.is_empty() {
            return;
        }
        let conn = db::open_read_only(&self.ws.db_path()).ok().flatten();
        for id in unknown {
            let outcome = self.read_outcome(&id, conn.as_ref());
            if let Some(s) = self.board.shelf.get_mut(id.as_str()) {
                s.outcome = Some(outcome);
            }
        }
    }

    /// How shelved card `id` finished: pas's own record of its move into the archive, else
    /// what its file says.
    fn read_outcome(&self, id: &str, conn: Option<&rusqlite::Connection>) -> bool {
        let rows = conn
            .and_then(|c| db::transitions_for(c, id).ok())
            .unwrap_or_default();
        if let Some(r) = rows.iter().rev().find(|r| r.to.starts_with("archive/")) {
            return r.from == "done";
        }
        let Some((path, _)) = self.shelved_file(id) else {
            return false;
        };
        crate::snapshot::outcome_of(&path, id)
    }

    /// The card `id` as pas knows it: from the board, or read from its archive file.
    pub(super) fn card_of(&self, id: &str) -> Option<Card> {
        if let Some(e) = self.board.cards.get(id) {
            return Some(e.card.clone());
        }
        let (path, _) = self.shelved_file(id)?;
        read_card(&path, id).ok()
    }

    /// The `pas:` block of a card pas did not hold in memory (it came off the shelf), held
    /// against the database's rows of its transitions: what pas recorded wins over what
    /// the file says. Returns the card to take and what was put back.
    pub(super) fn held_against_rows(&self, id: &str, card: Card) -> (Card, Vec<String>) {
        let Ok(Some(conn)) = db::open_read_only(&self.ws.db_path()) else {
            return (card, Vec::new());
        };
        let Ok(rows) = db::transitions_for(&conn, id) else {
            return (card, Vec::new());
        };
        match super::trust::against_rows(&card.spec.pas, &rows) {
            Some((meta, found)) => (card.with_meta(&meta), found),
            None => (card, Vec::new()),
        }
    }
}

impl Engine {
    /// Gives back what start-up used and no longer needs: listing a year's archive and
    /// comparing it with git take tens of MiB for a moment, glibc keeps freed memory in
    /// its heap unless asked, and the git worker's handle keeps the pack index pages that
    /// start-up touched.
    pub fn let_go_of_start_up(&self) {
        if let Some(git) = &self.git {
            git.let_go();
        }
        // SAFETY: malloc_trim only returns free heap pages to the kernel.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
