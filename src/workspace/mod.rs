//! A workspace on disk: where everything lives, how a path is classified, and `pas init`.
//!
//! All path knowledge is here so the daemon, the CLI and the tests agree on what a file in
//! the tree means (a card in some state, a registration, something to ignore, or something
//! misplaced that must be rejected). `init` makes a workspace; `lock` is the daemon's lock
//! (one `pas serve` per workspace) and the probe the reading commands use to tell whether
//! one runs.

mod init;
pub mod lock;

pub use init::{ensure_dirs, init, Contracts, ExampleAgents, InitReport};

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::board::{is_day, Place, Shelved};
use crate::card::{self, Card, CardError, State};
use crate::config::Config;
use crate::intake::{self, FileKind};
/// The paths of one workspace.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
}

/// What a path inside `work/` is.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A card file in a state folder.
    Card { id: String, place: Place },
    /// `work/registry/<name>.yaml`.
    Registration { name: String },
    /// `work/heartbeats/<name>.jsonl`.
    Heartbeat { name: String },
    /// A file that has no business where it is; the reason says why.
    Misplaced(String),
    /// Temp files, dot-files, editor droppings, rejected files, folders pas owns.
    Ignored,
}

/// When a file was last modified, if it can be read.
pub fn mtime(path: &Path) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = fs::metadata(path).ok()?.modified().ok()?;
    Some(t.into())
}

/// Names pas never reads: hidden, temporary and editor files (SPEC section 1).
pub fn is_ignored_name(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with(".tmp")
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name == "4913"
}

impl Workspace {
    /// The workspace at `root` (not checked).
    pub fn at(root: impl Into<PathBuf>) -> Workspace {
        Workspace { root: root.into() }
    }

    /// `--root`, else `$PAS_ROOT` (clap fills it in), else the nearest folder upwards from
    /// the current one that has `pas.yaml`, else the current folder.
    pub fn discover(root: Option<&Path>) -> Result<Workspace> {
        if let Some(r) = root {
            // Absolute, so git paths and messages never depend on the current folder.
            let abs = std::path::absolute(r)
                .with_context(|| format!("cannot resolve {}", r.display()))?;
            return Ok(Workspace::at(abs.canonicalize().unwrap_or(abs)));
        }
        let cwd = std::env::current_dir().context("cannot read the current folder")?;
        let found = cwd.ancestors().find(|d| d.join("pas.yaml").is_file());
        Ok(Workspace::at(found.unwrap_or(&cwd)))
    }

    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }
    pub fn state_dir(&self, s: State) -> PathBuf {
        self.work().join(s.dir())
    }
    pub fn rejected(&self) -> PathBuf {
        self.work().join("rejected")
    }
    pub fn registry(&self) -> PathBuf {
        self.work().join("registry")
    }
    pub fn heartbeats(&self) -> PathBuf {
        self.work().join("heartbeats")
    }
    /// Private folder for cards between two folders (see `fsops`). It sits outside
    /// `work/` so that pas's own intermediate renames raise no watch events.
    pub fn staging(&self) -> PathBuf {
        self.root.join(".pas").join("staging")
    }
    pub fn agents_dir(&self) -> PathBuf {
        self.root.join("agents")
    }
    pub fn contracts(&self) -> PathBuf {
        self.root.join("contracts")
    }
    /// The daemon's lock (one `pas serve` per workspace).
    pub fn lock_path(&self) -> PathBuf {
        self.work().join(".pas-daemon.lock")
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join("pas.yaml")
    }
    pub fn db_path(&self) -> PathBuf {
        self.root.join("telemetry").join("pas.db")
    }

    /// Every readable agent definition in `agents/`, by name. A definition that does not
    /// parse is left out with a warning (`pas validate` names its line).
    pub fn definitions(&self) -> std::collections::BTreeMap<String, crate::agent::AgentDef> {
        self.definitions_cached(&mut DefCache::default())
    }

    /// [`Workspace::definitions`], reading again only the files whose stamp changed since
    /// `cache` saw them: the daemon reloads on every change under `agents/`, and a folder
    /// of fifty definitions (or one alias bomb) must not be parsed fifty times over, nor a
    /// refused file warned about on every look.
    pub fn definitions_cached(
        &self,
        cache: &mut DefCache,
    ) -> std::collections::BTreeMap<String, crate::agent::AgentDef> {
        let mut defs = std::collections::BTreeMap::new();
        let Ok(rd) = fs::read_dir(self.agents_dir()) else {
            cache.clear();
            return defs;
        };
        let mut seen = std::collections::HashSet::new();
        for e in rd.flatten() {
            let path = e.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".md").filter(|_| !is_ignored_name(name)) else {
                continue;
            };
            let Ok(stamp) = crate::fsops::Stamp::of(&path) else {
                continue;
            };
            seen.insert(path.clone());
            let def = match cache.get(&path) {
                Some((known, def)) if *known == stamp => def.clone(),
                _ => {
                    let def = intake::read_text(&path, FileKind::Definition)
                        .map_err(|e| e.to_string())
                        .and_then(|text| {
                            crate::agent::AgentDef::parse(stem, &text).map_err(|e| e.to_string())
                        });
                    let def = match def {
                        Ok(d) => Some(d),
                        Err(error) => {
                            tracing::warn!(file = %path.display(), %error, "agent definition ignored");
                            None
                        }
                    };
                    cache.insert(path, (stamp, def.clone()));
                    def
                }
            };
            if let Some(d) = def {
                defs.insert(d.name.clone(), d);
            }
        }
        cache.retain(|p, _| seen.contains(p));
        defs
    }

    /// Reads `pas.yaml` (defaults when absent).
    pub fn config(&self) -> Result<Config> {
        Ok(Config::load(&self.config_path())?)
    }

    /// Where a card with this id lives in `place`.
    pub fn card_path(&self, id: &str, place: &Place) -> PathBuf {
        let dir = self.state_dir(place.state);
        let dir = match (&place.agent, &place.day) {
            (Some(a), _) => dir.join(a),
            (None, Some(d)) => dir.join(d),
            (None, None) => dir,
        };
        dir.join(format!("{id}.yaml"))
    }

    /// The archive's day folders (`YYYY/MM/DD`), newest first. A reading command looks
    /// for an archived card day by day rather than walking every archived file: there are
    /// a few hundred days for a hundred thousand cards.
    pub fn archive_days(&self) -> Vec<String> {
        let names = |dir: &Path, len: usize| -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.len() == len && n.bytes().all(|b| b.is_ascii_digit()))
                .collect();
            v.sort_unstable_by(|a, b| b.cmp(a));
            v
        };
        let root = self.state_dir(State::Archived);
        let mut out = Vec::new();
        for y in names(&root, 4) {
            for m in names(&root.join(&y), 2) {
                for d in names(&root.join(&y).join(&m), 2) {
                    out.push(format!("{y}/{m}/{d}"));
                }
            }
        }
        out
    }

    /// Where card `id` lies in the archive, if it does (newest day first).
    pub fn find_archived(&self, id: &str) -> Option<PathBuf> {
        let file = format!("{id}.yaml");
        let root = self.state_dir(State::Archived);
        self.archive_days()
            .into_iter()
            .map(|d| root.join(d).join(&file))
            .find(|p| fs::symlink_metadata(p).is_ok())
    }

    /// Where a registration lives.
    pub fn registration_path(&self, name: &str) -> PathBuf {
        self.registry().join(format!("{name}.yaml"))
    }

    /// Every path a card with this id could have, for a search after it moved.
    pub fn card_candidates(&self, id: &str) -> Vec<PathBuf> {
        let file = format!("{id}.yaml");
        let mut out: Vec<PathBuf> = [State::Inbox, State::Review, State::Done, State::Failed]
            .iter()
            .map(|s| self.state_dir(*s).join(&file))
            .collect();
        if let Ok(rd) = fs::read_dir(self.state_dir(State::Assigned)) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path().join(&file));
                }
            }
        }
        out.extend(self.find_archived(id));
        out
    }

    /// Classifies a path under `work/` (files; folders are the caller's business).
    pub fn classify(&self, path: &Path) -> Kind {
        let Ok(rel) = path.strip_prefix(self.work()) else {
            return Kind::Ignored;
        };
        let parts: Vec<&str> = rel.iter().filter_map(|p| p.to_str()).collect();
        if parts.len() != rel.iter().count() {
            return Kind::Misplaced("file name is not valid UTF-8".into());
        }
        if parts.iter().any(|p| is_ignored_name(p)) {
            return Kind::Ignored;
        }
        let yaml_stem = |f: &str| f.strip_suffix(".yaml").map(str::to_string);
        match parts.as_slice() {
            ["rejected", ..] => Kind::Ignored,
            [dir @ ("inbox" | "review" | "done" | "failed"), file] => match yaml_stem(file) {
                Some(id) => Kind::Card {
                    id,
                    place: Place::of(state_named(dir)),
                },
                None => Kind::Misplaced(format!("only <id>.yaml card files belong in work/{dir}/")),
            },
            ["assigned", agent, file] => match (card::valid_agent_name(agent), yaml_stem(file)) {
                (true, Some(id)) => Kind::Card {
                    id,
                    place: Place::assigned(agent),
                },
                (false, _) => Kind::Misplaced(format!(
                    "work/assigned/{agent}/ is not named for a valid agent"
                )),
                (true, None) => Kind::Misplaced(format!(
                    "only <id>.yaml card files belong in work/assigned/{agent}/"
                )),
            },
            ["assigned", _] => {
                Kind::Misplaced("cards in work/assigned/ belong in work/assigned/<agent>/".into())
            }
            ["archive", y, m, d, file] if is_day(&format!("{y}/{m}/{d}")) => {
                match yaml_stem(file) {
                    Some(id) => Kind::Card {
                        id,
                        place: Place::archived_in(format!("{y}/{m}/{d}")),
                    },
                    None => Kind::Misplaced(format!(
                        "only <id>.yaml card files belong in work/archive/{y}/{m}/{d}/"
                    )),
                }
            }
            ["archive", ..] => Kind::Misplaced(
                "work/archive/ holds cards at work/archive/YYYY/MM/DD/<id>.yaml only (a real day)"
                    .into(),
            ),
            ["registry", file] => match yaml_stem(file) {
                Some(name) if card::valid_agent_name(&name) => Kind::Registration { name },
                _ => Kind::Misplaced("work/registry/ holds <agent>.yaml registrations only".into()),
            },
            ["heartbeats", file] => match file.strip_suffix(".jsonl") {
                Some(name) => Kind::Heartbeat { name: name.into() },
                None => Kind::Ignored,
            },
            ["heartbeats", ..] => Kind::Ignored,
            // Agents' span lines: read by their own watcher (trace::jsonl), never cards.
            ["traces", ..] => Kind::Ignored,
            [_] => Kind::Misplaced(
                "not in a state folder (work/inbox, assigned/<agent>, done, failed, archive/YYYY/MM/DD)".into(),
            ),
            _ => Kind::Misplaced("nested too deep for a state folder".into()),
        }
    }

    /// Every file under `work/` with its kind (walkdir; symbolic links are not followed).
    pub fn scan(&self) -> Vec<(PathBuf, Kind)> {
        self.scan_dir(&self.work())
    }

    /// Every file under `dir` (a folder under `work/`) with its kind.
    pub fn scan_dir(&self, dir: &Path) -> Vec<(PathBuf, Kind)> {
        (self.scan_typed(dir).into_iter())
            .map(|(p, k, _)| (p, k))
            .collect()
    }

    /// Every file under `dir` with its kind and whether it is a regular file, as the
    /// folder listing says (no `stat` per file: the archive may hold a hundred thousand).
    pub fn scan_typed(&self, dir: &Path) -> Vec<Scanned> {
        self.walk(dir, false)
    }

    /// Every file under `work/` with its kind and whether it is regular, but the archive's
    /// cards, which come apart by id and day as [`list_archive`](Self::list_archive) lists
    /// them (far more cheaply than a walk). What else lies in a day folder is among the
    /// files, as not regular, for the caller to judge as it would any file.
    pub fn scan_listing(&self) -> (Vec<Scanned>, Vec<(String, Shelved)>) {
        let (archived, unusual) = self.list_archive();
        let mut files = self.walk(&self.work(), true);
        files.extend(
            unusual
                .into_iter()
                .map(|p| (p.clone(), self.classify(&p), false)),
        );
        (files, archived)
    }

    /// The archive's cards as its day folders list them, with no `stat` and no read: each
    /// regular `<id>.yaml` file with a valid id, by id and day; and the path of whatever
    /// else lies in a day folder (a link, a FIFO, a folder, another name).
    fn list_archive(&self) -> (Vec<(String, Shelved)>, Vec<PathBuf>) {
        let root = self.state_dir(State::Archived);
        let (mut cards, mut odd) = (Vec::new(), Vec::new());
        for day in self.archive_days() {
            let Some(shelved) = Shelved::new(&day, None) else {
                continue;
            };
            let dir = root.join(&day);
            let Ok(rd) = fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name();
                let id = name
                    .to_str()
                    .filter(|n| !is_ignored_name(n))
                    .and_then(|n| n.strip_suffix(".yaml"));
                let regular = e.file_type().is_ok_and(|t| t.is_file());
                match id {
                    Some(id) if regular && card::valid_id(id) => {
                        cards.push((id.to_string(), shelved))
                    }
                    Some(_) => odd.push(e.path()),
                    None if name.to_str().is_some_and(is_ignored_name) => {}
                    None => odd.push(e.path()),
                }
            }
        }
        (cards, odd)
    }

    fn walk(&self, dir: &Path, skip_days: bool) -> Vec<Scanned> {
        let mut out = Vec::new();
        let archive = self.state_dir(State::Archived);
        let is_day_dir = |p: &Path| {
            p.strip_prefix(&archive)
                .ok()
                .and_then(|r| r.to_str())
                .is_some_and(is_day)
        };
        let base = dir
            .strip_prefix(self.work())
            .map_or(0, |r| r.iter().count());
        let walker = walkdir::WalkDir::new(dir)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| {
                e.depth() == 0
                    || !(e.file_type().is_dir()
                        && (e.file_name().to_str().is_none_or(|n| {
                            n.starts_with('.') || (e.depth() + base == 1 && n == "rejected")
                        }) || (skip_days && e.depth() + base == 4 && is_day_dir(e.path()))))
            });
        for entry in walker.flatten() {
            if entry.file_type().is_dir() {
                continue;
            }
            let kind = self.classify(entry.path());
            let regular = entry.file_type().is_file();
            out.push((entry.into_path(), kind, regular));
        }
        out
    }
}

/// A file found by a scan: its path, its kind, and whether the listing says it is a
/// regular file.
pub type Scanned = (PathBuf, Kind, bool);

fn state_named(dir: &str) -> State {
    match dir {
        "inbox" => State::Inbox,
        "review" => State::Review,
        "done" => State::Done,
        "failed" => State::Failed,
        _ => State::Assigned,
    }
}

/// What [`Workspace::definitions_cached`] knows of each definition file: its stamp when
/// read, and the definition it held (`None`: refused or unparsable).
pub type DefCache =
    std::collections::HashMap<PathBuf, (crate::fsops::Stamp, Option<crate::agent::AgentDef>)>;

/// Reads and parses the card at `path` through [`crate::intake`]: links, FIFOs and other
/// non-files, hard links, oversized and binary files are refused before any parsing.
pub fn read_card(path: &Path, id: &str) -> Result<Card, CardError> {
    let bytes = intake::read(path, FileKind::Card).map_err(|e| CardError {
        message: e.to_string(),
        line: None,
        column: None,
    })?;
    let text = card::check_bytes(&bytes)?;
    Card::parse(id, text)
}

/// A path relative to the workspace root, for messages (the path itself when it is not
/// under the root).
pub fn rel(ws: &Workspace, path: &Path) -> String {
    path.strip_prefix(&ws.root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_paths() {
        let ws = Workspace::at("/w");
        let c = |p: &str| ws.classify(Path::new(p));
        assert_eq!(
            c("/w/work/inbox/J-1.yaml"),
            Kind::Card {
                id: "J-1".into(),
                place: Place::of(State::Inbox)
            }
        );
        assert_eq!(
            c("/w/work/assigned/coder-1/J-1.yaml"),
            Kind::Card {
                id: "J-1".into(),
                place: Place::assigned("coder-1")
            }
        );
        assert_eq!(
            c("/w/work/review/J-1.yaml"),
            Kind::Card {
                id: "J-1".into(),
                place: Place::of(State::Review)
            }
        );
        assert!(matches!(c("/w/work/review/a/J-1.yaml"), Kind::Misplaced(_)));
        assert_eq!(Place::from_label("review"), Some(Place::of(State::Review)));
        assert_eq!(Place::of(State::Review).label(), "review");
        assert_eq!(c("/w/work/inbox/.J-1.yaml.tmp"), Kind::Ignored);
        assert_eq!(c("/w/work/inbox/J-1.yaml~"), Kind::Ignored);
        assert_eq!(c("/w/work/inbox/4913"), Kind::Ignored);
        assert_eq!(c("/w/work/.staging/J-1.yaml"), Kind::Ignored);
        assert_eq!(c("/w/work/rejected/x.yaml"), Kind::Ignored);
        assert!(matches!(c("/w/work/inbox/notes.txt"), Kind::Misplaced(_)));
        assert!(matches!(c("/w/work/assigned/J-1.yaml"), Kind::Misplaced(_)));
        assert!(matches!(c("/w/work/J-1.yaml"), Kind::Misplaced(_)));
        assert!(matches!(
            c("/w/work/inbox/sub/J-1.yaml"),
            Kind::Misplaced(_)
        ));
        assert_eq!(
            c("/w/work/archive/2026/12/07/J-1.yaml"),
            Kind::Card {
                id: "J-1".into(),
                place: Place::archived_in("2026/12/07".into())
            }
        );
        for bad in [
            "/w/work/archive/J-1.yaml",
            "/w/work/archive/2026/12/J-1.yaml",
            "/w/work/archive/2026/13/07/J-1.yaml",
            "/w/work/archive/2026/12/7/J-1.yaml",
            "/w/work/archive/2026/12/07/notes.txt",
            "/w/work/archive/2026/12/07/x/J-1.yaml",
        ] {
            assert!(matches!(c(bad), Kind::Misplaced(_)), "{bad}");
        }
        assert_eq!(
            c("/w/work/registry/coder-1.yaml"),
            Kind::Registration {
                name: "coder-1".into()
            }
        );
    }
}
