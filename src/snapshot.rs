//! The board read straight from the files (or from a git revision), for the reading
//! commands: they work with no daemon running.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::agent::{Agent, Registration};
use crate::board::{Board, Defaults, Entry, Place, Shelved};
use crate::card::{self, Card};
use crate::heartbeat::Tail;
use crate::intake::{self, FileKind};
use crate::liveness::Health;
use crate::workspace::{Kind, Workspace};

/// A board read from files, with the files that could not be read.
pub struct Snapshot {
    pub board: Board,
    /// (path relative to the root, problem) for unreadable files.
    pub problems: Vec<(String, String)>,
    /// Number of files in `work/rejected/` (reason files not counted).
    pub rejected: usize,
}

/// Reads the live tree. Files are read and parsed on every core: `pas status` must answer
/// in well under a second at 10,000 cards.
pub fn load(ws: &Workspace) -> anyhow::Result<Snapshot> {
    load_with(ws, Depth::Full)
}

/// How much of each card a reading command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Every card parsed (jobs, show, claim).
    Full,
    /// Only inbox cards parsed (and assigned ones when resources are managed, for what
    /// they hold): enough for counts, loads and why cards wait (`pas status`). A card
    /// elsewhere is known by its folder alone, which is its state.
    Board,
}

/// What to parse for one file.
enum Source {
    Disk,
    Bytes(Vec<u8>),
    /// Known by its place alone (see `Depth::Board`).
    Skip,
}

fn source_for(kind: &Kind, depth: Depth, managed: bool, bytes: Option<Vec<u8>>) -> Source {
    use crate::card::State;
    let needed = |s: State| s == State::Inbox || (managed && s == State::Assigned);
    // Archived cards are known by id and folder alone, whatever the depth: there may be
    // a hundred thousand of them, and the commands that want one read it by itself.
    let skip = matches!(kind, Kind::Card { place, .. } if place.state == State::Archived)
        || depth == Depth::Board
            && matches!(kind, Kind::Card { place, .. } if !needed(place.state));
    match (skip, bytes) {
        (true, _) => Source::Skip,
        (false, Some(b)) => Source::Bytes(b),
        (false, None) => Source::Disk,
    }
}

/// Reads the live tree to the given depth.
pub fn load_with(ws: &Workspace, depth: Depth) -> anyhow::Result<Snapshot> {
    let cfg = ws.config()?;
    let managed = cfg.capacity != crate::config::Capacity::default();
    // The archive is listed, not walked: its cards are known by id and day alone.
    let (files, archived) = ws.scan_listing();
    let items: Vec<(PathBuf, Kind, Source)> = (files.into_iter())
        .filter(|(_, kind, _)| matches!(kind, Kind::Card { .. } | Kind::Registration { .. }))
        .map(|(path, kind, _)| {
            let source = source_for(&kind, depth, managed, None);
            (path, kind, source)
        })
        .collect();
    let mut snap = build(ws, items, Defaults::from(&cfg));
    shelve_listed(ws, &mut snap, archived);
    read_outcomes(ws, &mut snap.board);
    snap.rejected = count_rejected(&ws.rejected());
    load_definitions(ws, &mut snap.board);
    read_liveness(ws, &mut snap.board, &cfg, Utc::now());
    Ok(snap)
}

/// Puts the archive's listed cards on the board's shelf; an id already on the board (or
/// listed twice) is a problem, as a duplicate anywhere is.
fn shelve_listed(ws: &Workspace, snap: &mut Snapshot, archived: Vec<(String, Shelved)>) {
    for (id, shelved) in archived {
        let first = match (snap.board.cards.get(&id), snap.board.shelf.get(id.as_str())) {
            (Some(e), _) => Some(ws.card_path(&id, &e.place)),
            (None, Some(s)) => Some(ws.card_path(&id, &s.place())),
            (None, None) => None,
        };
        match first {
            Some(first) => {
                let path = ws.card_path(&id, &shelved.place());
                snap.problems.push((
                    crate::workspace::rel(ws, &path),
                    format!(
                        "duplicate id {id} (also at {})",
                        crate::workspace::rel(ws, &first)
                    ),
                ));
            }
            None => {
                snap.board.shelf.insert(id.into(), shelved);
            }
        }
    }
}

/// Reads how each archived card a waiting card depends on finished (those alone), so
/// `pas status` says why a card waits as the daemon would.
fn read_outcomes(ws: &Workspace, board: &mut Board) {
    for id in board.unread_dependencies() {
        if let Some(s) = board.shelf.get_mut(id.as_str()) {
            let path = ws.card_path(&id, &s.place());
            s.outcome = Some(outcome_of(&path, &id));
        }
    }
}

/// Reads only the cards in one state's folder (`pas jobs --state done`): the other folders,
/// the archive above all, are not walked.
pub fn load_state(ws: &Workspace, state: crate::card::State) -> anyhow::Result<Snapshot> {
    let cfg = ws.config()?;
    let items: Vec<(PathBuf, Kind, Source)> = ws
        .scan_dir(&ws.state_dir(state))
        .into_iter()
        .filter(|(_, kind)| matches!(kind, Kind::Card { .. }))
        .map(|(path, kind)| {
            let source = source_for(&kind, Depth::Full, false, None);
            (path, kind, source)
        })
        .collect();
    Ok(build(ws, items, Defaults::from(&cfg)))
}

/// Reads the tree as it stood at a git commit.
pub fn load_at(
    ws: &Workspace,
    files: Vec<(PathBuf, Vec<u8>)>,
    depth: Depth,
) -> anyhow::Result<Snapshot> {
    let cfg = ws.config()?;
    let managed = cfg.capacity != crate::config::Capacity::default();
    let mut rejected = 0;
    let mut texts = Vec::new();
    for (rel, bytes) in files {
        let path = ws.root.join(&rel);
        let kind = ws.classify(&path);
        let hidden = rel
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if rel.starts_with("work/rejected")
            && !rel.to_string_lossy().ends_with(".reason.txt")
            && !hidden
        {
            rejected += 1;
        }
        if matches!(kind, Kind::Card { .. } | Kind::Registration { .. }) {
            let source = source_for(&kind, depth, managed, Some(bytes));
            texts.push((path, kind, source));
        }
    }
    let mut snap = build(ws, texts, Defaults::from(&cfg));
    snap.rejected = rejected;
    load_definitions(ws, &mut snap.board);
    Ok(snap)
}

fn count_rejected(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    !n.starts_with('.') && !n.ends_with(".reason.txt")
                })
                .count()
        })
        .unwrap_or(0)
}

type Parsed = (PathBuf, Kind, Result<Card, String>);

/// Reads (where no bytes are given) and parses one file.
fn parse_one(
    (path, kind, source): (PathBuf, Kind, Source),
) -> (Parsed, Option<Result<String, String>>) {
    let bytes = match source {
        Source::Bytes(b) => Ok(b),
        Source::Disk => {
            let kind = match &kind {
                Kind::Registration { .. } => FileKind::Registration,
                _ => FileKind::Card,
            };
            intake::read(&path, kind).map_err(|e| e.to_string())
        }
        Source::Skip => {
            let card = match &kind {
                Kind::Card { id, .. } => Ok(Card::stub(id)),
                _ => Err(String::new()),
            };
            return ((path, kind, card), None);
        }
    };
    let text = bytes.and_then(|b| {
        card::check_bytes(&b)
            .map(str::to_string)
            .map_err(|e| e.to_string())
    });
    match &kind {
        Kind::Card { id, .. } => {
            let card = text.and_then(|t| Card::parse(id, &t).map_err(|e| e.to_string()));
            ((path, kind, card), None)
        }
        _ => ((path, kind, Err(String::new())), Some(text)),
    }
}

fn build(ws: &Workspace, items: Vec<(PathBuf, Kind, Source)>, defaults: Defaults) -> Snapshot {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let chunk = items.len().div_ceil(threads).max(1);
    let mut items = items;
    let mut chunks = Vec::new();
    while items.len() > chunk {
        let rest = items.split_off(chunk);
        chunks.push(std::mem::replace(&mut items, rest));
    }
    chunks.push(items);
    let parsed: Vec<(Parsed, Option<Result<String, String>>)> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| s.spawn(move || c.into_iter().map(parse_one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });

    let mut board = Board::new(defaults);
    let mut problems = Vec::new();
    let mut regs: Vec<(String, Registration)> = Vec::new();
    let mut cards: Vec<Parsed> = Vec::new();
    for ((path, kind, card), reg_text) in parsed {
        match kind {
            Kind::Registration { name } => {
                let parsed = reg_text
                    .unwrap_or_else(|| Err("not read".into()))
                    .and_then(|t| Registration::parse(&t).map_err(|e| e.message));
                match parsed {
                    Ok(r) => regs.push((name, r)),
                    Err(e) => problems.push((crate::workspace::rel(ws, &path), e)),
                }
            }
            k => cards.push((path, k, card)),
        }
    }
    for (name, reg) in regs {
        board.agents.insert(
            name.clone(),
            Agent {
                name,
                reg: Some(reg),
                ..Agent::default()
            },
        );
    }
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for (path, kind, card) in cards {
        let Kind::Card { id, place } = kind else {
            continue;
        };
        let shelved = place.day.as_deref().and_then(|d| Shelved::new(d, None));
        match card {
            Ok(card) => {
                if let Some(first) = seen.get(&id) {
                    problems.push((
                        crate::workspace::rel(ws, &path),
                        format!(
                            "duplicate id {id} (also at {})",
                            crate::workspace::rel(ws, first)
                        ),
                    ));
                    continue;
                }
                seen.insert(id.clone(), path.clone());
                if let (Some(s), true) = (shelved, card.text().is_empty()) {
                    board.shelf.insert(id.into(), s);
                    continue;
                }
                let created = created_of(&card, &path);
                board.cards.insert(
                    id,
                    Entry {
                        card,
                        place: Place { ..place },
                        created,
                    },
                );
            }
            Err(e) => problems.push((crate::workspace::rel(ws, &path), e)),
        }
    }
    Snapshot {
        board,
        problems,
        rejected: 0,
    }
}

fn created_of(card: &Card, path: &Path) -> DateTime<Utc> {
    if let Some(first) = card.spec.pas.history.first() {
        return first.at;
    }
    if card.text().is_empty() {
        return DateTime::UNIX_EPOCH; // a stub: its age orders nothing
    }
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(DateTime::<Utc>::from)
        .unwrap_or_else(|_| Utc::now())
}

/// Liveness as the files show it, with no daemon: each registered agent's last beat (read
/// from the end of its heartbeat file), down after two silent intervals, and its context
/// level. No grace applies: that is the daemon's, before it reaps.
fn read_liveness(
    ws: &Workspace,
    board: &mut Board,
    cfg: &crate::config::Config,
    now: DateTime<Utc>,
) {
    for a in board.agents.values_mut().filter(|a| a.reg.is_some()) {
        let (_, last) = Tail::at_end(&ws.heartbeats().join(format!("{}.jsonl", a.name)));
        let reg_mtime = crate::workspace::mtime(&ws.registration_path(&a.name));
        a.seed_live(last, reg_mtime, now, &cfg.token_budget);
        if let Some(seen) = a.live.last_seen {
            let interval = a.interval_s(cfg.heartbeat_interval_s);
            a.live.down = crate::liveness::health(seen, interval, now, None) != Health::Up;
        }
    }
}

fn load_definitions(ws: &Workspace, board: &mut Board) {
    for (name, def) in ws.definitions() {
        board
            .agents
            .entry(name.clone())
            .or_insert_with(|| Agent {
                name,
                ..Agent::default()
            })
            .def = Some(def);
    }
}

/// How the archived card in `path` finished, as its file says (its last move came from
/// `done/`); a card that cannot be read counts as failed: nothing waiting on it runs on a
/// guess.
pub fn outcome_of(path: &std::path::Path, id: &str) -> bool {
    match crate::workspace::read_card(path, id) {
        Ok(card) => (card.spec.pas.history.last()).is_some_and(|h| h.from == "done"),
        Err(e) => {
            tracing::warn!(job = id, error = %e, "cannot read an archived card another depends on");
            false
        }
    }
}
