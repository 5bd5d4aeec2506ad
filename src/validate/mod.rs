//! `pas validate`: checks every file of a workspace against the JSON Schemas of `contracts/`.
//!
//! The engine is pure library code: [`validate_workspace`] walks the tree and returns
//! [`Finding`]s (path relative to the root, line, column, message); the CLI prints them.
//! YAML syntax errors carry serde_yaml's position; schema errors carry the position of the
//! offending node, found by [`locate()`] from the error's JSON pointer, because serde_yaml keeps
//! no spans. A workspace may override a schema with its own `contracts/<kind>.schema.json`;
//! otherwise the copies compiled into the binary are used.
//!
//! This file owns the public face: [`Finding`], [`Contract`] and the built-in schemas,
//! [`validate_text`] for one document and [`validate_workspace`] for the whole tree (which
//! files are checked as what). The work is done by:
//! - `schema.rs`: checking one document's text against a compiled schema and wording the
//!   problems;
//! - `locate.rs`: finding a JSON pointer's line and column in YAML text;
//! - `files.rs`: reading the workspace's files, and the checks tied to where a file sits
//!   (file names, ids, duplicates).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

mod files;
mod locate;
mod schema;

pub use locate::locate;

use files::{list, Run};
use schema::{check, Schema};

/// One problem in one file, e.g. `work/inbox/J-1.yaml:3:11: /priority: ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The file, relative to the workspace root.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters), when known.
    pub column: Option<usize>,
    /// What is wrong; schema errors start with the JSON pointer of the field.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// The kinds of file pas reads, each with a schema `contracts/<name>.schema.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Contract {
    /// A job card (`work/<state>/<id>.yaml`).
    Card,
    /// An agent definition (`agents/<name>.md`, front matter plus Markdown).
    Agent,
    /// A registration (`work/registry/<name>.yaml`).
    Registration,
    /// A heartbeat file (`work/heartbeats/<name>.jsonl`, one JSON object a line).
    Heartbeat,
    /// The configuration (`pas.yaml`).
    Config,
}

impl Contract {
    /// Every contract, in the order of their slots in the schema caches.
    pub const ALL: [Contract; 5] = [
        Contract::Card,
        Contract::Agent,
        Contract::Registration,
        Contract::Heartbeat,
        Contract::Config,
    ];

    /// The schema's short name: `card` for `contracts/card.schema.json`.
    pub fn name(self) -> &'static str {
        match self {
            Contract::Card => "card",
            Contract::Agent => "agent",
            Contract::Registration => "registration",
            Contract::Heartbeat => "heartbeat",
            Contract::Config => "config",
        }
    }
}

macro_rules! contract_file {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/contracts/", $name))
    };
}

/// The schema compiled into the binary for `contract` (what `pas init` writes to `contracts/`).
pub fn embedded_schema(contract: Contract) -> &'static str {
    match contract {
        Contract::Card => contract_file!("card.schema.json"),
        Contract::Agent => contract_file!("agent.schema.json"),
        Contract::Registration => contract_file!("registration.schema.json"),
        Contract::Heartbeat => contract_file!("heartbeat.schema.json"),
        Contract::Config => contract_file!("config.schema.json"),
    }
}

/// A problem inside one document: 1-based line and column when known, and the message.
pub type Problem = (Option<usize>, Option<usize>, String);

/// Validate one document's text as the given contract; used by [`validate_workspace`] and by
/// tests. A card, registration or config may be YAML or JSON; an agent definition is the whole
/// `.md` file (front matter and Markdown); a heartbeat text is checked line by line.
pub fn validate_text(contract: Contract, text: &str) -> Vec<Problem> {
    match Schema::embedded(contract) {
        Ok(schema) => check(schema, contract, text),
        Err(message) => vec![(None, None, message)],
    }
}

/// Checks every file of the workspace at `root` against the schemas: `pas.yaml` (Config),
/// `agents/*.md` front matter (Agent; missing or unterminated front matter is a finding),
/// `work/inbox/*.yaml`, `work/assigned/<agent>/*.yaml`, `work/done/*.yaml`,
/// `work/failed/*.yaml` (Card; also the id rule on the file stem, and a duplicate id across
/// folders), `work/registry/*.yaml` (Registration; the stem must equal `name` when present),
/// `work/heartbeats/*.jsonl` (Heartbeat, per line). Skips `work/rejected/`, dot-files and
/// names ending `.tmp`, `~` or `.swp`. Schemas are read from `root/contracts/` when present,
/// else the built-in copies are used. Findings are sorted by path, then line.
pub fn validate_workspace(root: &Path) -> anyhow::Result<Vec<Finding>> {
    anyhow::ensure!(root.is_dir(), "{} is not a folder", root.display());
    let mut run = Run {
        root,
        findings: Vec::new(),
        schemas: Vec::new(),
    };
    for contract in Contract::ALL {
        let schema = run.load_schema(contract);
        run.schemas.push(schema);
    }
    let config = root.join("pas.yaml");
    if config.symlink_metadata().is_ok() {
        run.check_file(&config, Contract::Config);
    }
    for path in list(&root.join("agents"), false)? {
        if path.extension().is_some_and(|e| e == "md") {
            run.check_named(&path, Contract::Agent);
        }
    }
    let work = root.join("work");
    let mut seen = BTreeMap::new();
    for state in ["inbox", "assigned", "done", "failed"] {
        let mut cards = list(&work.join(state), false)?;
        if state == "assigned" {
            for card in &cards {
                let msg = "a card in assigned/ belongs in assigned/<agent>/";
                run.push(card, None, None, msg.to_string());
            }
            cards.clear();
            for dir in list(&work.join(state), true)? {
                cards.extend(list(&dir, false)?);
            }
        }
        for card in cards {
            run.check_card(&card, &mut seen);
        }
    }
    for path in list(&work.join("registry"), false)? {
        run.check_named(&path, Contract::Registration);
    }
    for path in list(&work.join("heartbeats"), false)? {
        if path.extension().is_some_and(|e| e == "jsonl") {
            run.check_named(&path, Contract::Heartbeat);
        }
    }
    let mut findings = run.findings;
    findings.sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A card using most fields, valid; the submodules' tests use it too.
    pub(super) const CARD: &str = "title: Add a login page
description: |
  Two fields and a button.
requires: [rust, test]
priority: high
resources: {cpu: 0.5, mem_mb: 512}
budget_usd: \"0.50\"
timeout_s: 90.5
custom_key: kept
pas:
  state: assigned
  assigned_to: coder-1
  assigned_at: 2025-01-01T10:00:00Z
  attempts: 0
  history:
    - at: 2025-01-01T10:00:00Z
      from: inbox
      to: assigned/coder-1
      by: pas
      reason: least loaded
";

    #[test]
    fn example_agents_validate_clean() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("agents");
        let agents = list(&dir, false).unwrap();
        assert!(agents.len() >= 11, "{agents:?}");
        for path in agents {
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(validate_text(Contract::Agent, &text), vec![], "{path:?}");
        }
    }

    #[test]
    fn workspace_findings() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let write = |rel: &str, text: &str| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        #[rustfmt::skip]
        let files = [
            ("pas.yaml", "heartbeat_interval_s: 0.5\n"),
            ("agents/coder-1.md", "---\nname: coder-1\ncapabilities: [rust]\n---\nWork.\n"),
            ("agents/other.md", "---\nname: someone\n---\n"),
            ("work/inbox/J-1.yaml", "title: ok\n"),
            ("work/inbox/J-2.yaml", "title: bad\npriority: urgent\n"),
            ("work/inbox/bad id.yaml", "title: x\n"),
            ("work/done/J-1.yaml", "title: ok again\nresult: 42\n"),
            ("work/assigned/coder-1/J-3.yaml", "title: mine\n"),
            ("work/assigned/stray.yaml", "title: where?\n"),
            ("work/inbox/.J-4.yaml.tmp", "not: [valid"),
            ("work/inbox/J-5.yaml~", "not: [valid"),
            ("work/inbox/.x.swp", "not: [valid"),
            ("work/rejected/J-6.yaml", "not: [valid"),
            ("work/registry/coder-1.yaml", "name: coder-2\nepoch: 1\n"),
            ("work/heartbeats/coder-1.jsonl", "{\"ts\":\"2025-01-01T00:00:00Z\"}\n{\"ts\":5}\n"),
        ];
        for (rel, text) in files {
            write(rel, text);
        }
        let found = validate_workspace(root).unwrap();
        let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
        let expected = [
            "agents/other.md:2:7: /name: \"someone\" differs from the file name \"other\"",
            "work/assigned/stray.yaml: a card in assigned/ belongs in assigned/<agent>/",
            "work/done/J-1.yaml: duplicate id \"J-1\": also in work/inbox/J-1.yaml",
            "work/heartbeats/coder-1.jsonl:2:7: /ts: 5 is not of type \"string\"",
            "work/inbox/J-2.yaml:2:11: /priority: \"urgent\" is not one of",
            "work/inbox/bad id.yaml: \"bad id\" is not a valid job id",
            "work/registry/coder-1.yaml:1:7: /name: \"coder-2\" differs from the file name",
        ];
        assert_eq!(shown.len(), expected.len(), "{shown:#?}");
        for (got, want) in shown.iter().zip(expected) {
            assert!(
                got.starts_with(want),
                "{got:?} does not start with {want:?}"
            );
        }
        write("pas.yaml", "fsync: yes-please\n");
        write("contracts/card.schema.json", "{ not json");
        let found = validate_workspace(root).unwrap();
        assert!(found
            .iter()
            .any(|f| f.path == Path::new("pas.yaml") && f.line == Some(1)));
        assert!(found
            .iter()
            .any(|f| f.path == Path::new("contracts/card.schema.json")));
        assert!(validate_workspace(&root.join("missing")).is_err());
    }
}
