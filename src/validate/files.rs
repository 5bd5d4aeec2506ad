//! Reading the workspace's files for `pas validate`, and the checks tied to where a file sits.
//!
//! [`Run`] reads each file as pas would accept it (no symbolic links, at most 1 MiB, UTF-8
//! text), checks it against the workspace's schema for its kind (else the built-in one), and
//! adds what the schema cannot know: an agent's or registration's `name` must match its file
//! name, a card's file name is its id, and an id is used once across the state folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use super::schema::{check, front_matter, Schema};
use super::{locate, Contract, Finding};

/// Names pas never reads: writes in progress and editor droppings.
fn ignored(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with(".tmp")
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name == "4913"
}

/// The entries of `dir` that are folders (`folders`) or not (symbolic links included), sorted;
/// none when `dir` does not exist.
pub(super) fn list(dir: &Path, folders: bool) -> anyhow::Result<Vec<PathBuf>> {
    let list = match std::fs::read_dir(dir) {
        Ok(list) => list,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in list {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !ignored(&entry.file_name().to_string_lossy()) && is_dir == folders {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// A name as pas allows it: ASCII letter or digit first, then letters, digits, `.`, `_`, `-`.
fn valid_name(name: &str, max: usize) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= max
        && chars.all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One run of [`validate_workspace`](super::validate_workspace).
pub(super) struct Run<'a> {
    pub(super) root: &'a Path,
    pub(super) findings: Vec<Finding>,
    /// Workspace schemas, by [`Contract`] slot; `None` means the built-in one.
    pub(super) schemas: Vec<Option<Schema>>,
}

impl Run<'_> {
    pub(super) fn push(
        &mut self,
        path: &Path,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    ) {
        let path = path.strip_prefix(self.root).unwrap_or(path).to_path_buf();
        self.findings.push(Finding {
            path,
            line,
            column,
            message,
        });
    }

    pub(super) fn load_schema(&mut self, contract: Contract) -> Option<Schema> {
        let path = self
            .root
            .join("contracts")
            .join(format!("{}.schema.json", contract.name()));
        let text = crate::intake::read_text(&path, crate::intake::FileKind::Config).ok()?;
        Schema::compile(&text)
            .map_err(|e| self.push(&path, None, None, format!("{e}; using the built-in schema")))
            .ok()
    }

    /// Reads a file as pas would accept it (through [`crate::intake`]), or records why not.
    fn read(&mut self, path: &Path, contract: Contract) -> Option<String> {
        use crate::intake::FileKind;
        let kind = match contract {
            Contract::Card => FileKind::Card,
            Contract::Agent => FileKind::Definition,
            Contract::Registration => FileKind::Registration,
            Contract::Heartbeat => FileKind::BeatLog,
            Contract::Config => FileKind::Config,
        };
        match crate::intake::read_text(path, kind) {
            Ok(text) => Some(text),
            Err(refused) => {
                self.push(path, None, None, refused.to_string());
                None
            }
        }
    }

    /// Checks a file against its contract's schema; returns its text when it could be read.
    pub(super) fn check_file(&mut self, path: &Path, contract: Contract) -> Option<String> {
        let text = self.read(path, contract)?;
        let schema = match &self.schemas[contract as usize] {
            Some(schema) => Ok(schema),
            None => Schema::embedded(contract),
        };
        let problems = match schema {
            Ok(schema) => check(schema, contract, &text),
            Err(message) => vec![(None, None, message)],
        };
        for (line, col, message) in problems {
            self.push(path, line, col, message);
        }
        Some(text)
    }

    /// An agent definition, registration or heartbeat file: named for its agent.
    pub(super) fn check_named(&mut self, path: &Path, contract: Contract) {
        let Some(text) = self.check_file(path, contract) else {
            return;
        };
        let stem = stem(path);
        if !valid_name(&stem, 64) {
            let msg =
                format!("{stem:?} is not a valid agent name ([A-Za-z0-9][A-Za-z0-9._-]{{0,63}})");
            self.push(path, None, None, msg);
        }
        if matches!(contract, Contract::Agent) {
            // `run:` templates, variables and program (SPEC section 16).
            if let Some((line, msg)) = crate::runner::check_run(self.root, &stem, &text) {
                self.push(path, line, None, msg);
            }
        }
        let (yaml, skip) = match contract {
            Contract::Agent => (front_matter(&text).unwrap_or_default(), 1),
            Contract::Registration => (text.as_str(), 0),
            _ => return,
        };
        let name = serde_yaml::from_str::<Value>(yaml)
            .ok()
            .and_then(|v| v.get("name").cloned());
        if let Some(Value::String(name)) = name.filter(|n| n.as_str() != Some(stem.as_str())) {
            let (line, col) = locate(yaml, "/name").unzip();
            let msg = format!("/name: {name:?} differs from the file name {stem:?}");
            self.push(path, line.map(|l| l + skip), col, msg);
        }
    }

    pub(super) fn check_card(&mut self, path: &Path, seen: &mut BTreeMap<String, PathBuf>) {
        let id = stem(path);
        if path.extension() != Some("yaml".as_ref()) {
            let msg = "not a card: a card file is named <id>.yaml".to_string();
            self.push(path, None, None, msg);
            return;
        }
        if !valid_name(&id, 128) {
            let msg = format!("{id:?} is not a valid job id ([A-Za-z0-9][A-Za-z0-9._-]{{0,127}})");
            self.push(path, None, None, msg);
        }
        let rel = path.strip_prefix(self.root).unwrap_or(path).to_path_buf();
        match seen.get(&id) {
            Some(first) => {
                let msg = format!("duplicate id {id:?}: also in {}", first.display());
                self.push(path, None, None, msg);
            }
            None => {
                seen.insert(id, rel);
            }
        }
        self.check_file(path, Contract::Card);
    }
}
