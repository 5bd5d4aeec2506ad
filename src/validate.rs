//! `pas validate`: checks every file of a workspace against the JSON Schemas of `contracts/`.
//!
//! The engine is pure library code: [`validate_workspace`] walks the tree and returns
//! [`Finding`]s (path relative to the root, line, column, message); the CLI prints them.
//! YAML syntax errors carry serde_yaml's position; schema errors carry the position of the
//! offending node, found by [`locate`] from the error's JSON pointer, because serde_yaml keeps
//! no spans. A workspace may override a schema with its own `contracts/<kind>.schema.json`;
//! otherwise the copies compiled into the binary are used.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use jsonschema::error::ValidationErrorKind;
use jsonschema::Validator;
use serde::Serialize;
use serde_json::Value;

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

/// A compiled schema with its JSON, which error messages consult for descriptions.
struct Schema {
    json: Value,
    validator: Validator,
}

impl Schema {
    fn compile(text: &str) -> Result<Schema, String> {
        let json: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&json)
            .map_err(|e| format!("not a valid JSON Schema: {e}"))?;
        Ok(Schema { json, validator })
    }

    /// The compiled built-in schema, compiled once per process.
    fn embedded(contract: Contract) -> Result<&'static Schema, String> {
        static CACHE: [OnceLock<Result<Schema, String>>; 5] = [const { OnceLock::new() }; 5];
        CACHE[contract as usize]
            .get_or_init(|| Schema::compile(embedded_schema(contract)))
            .as_ref()
            .map_err(|e| format!("built-in {} schema is {e}", contract.name()))
    }
}

/// Validate one document's text as the given contract; used by [`validate_workspace`] and by
/// tests. A card, registration or config may be YAML or JSON; an agent definition is the whole
/// `.md` file (front matter and Markdown); a heartbeat text is checked line by line.
pub fn validate_text(contract: Contract, text: &str) -> Vec<Problem> {
    match Schema::embedded(contract) {
        Ok(schema) => check(schema, contract, text),
        Err(message) => vec![(None, None, message)],
    }
}

/// The problems of `text`, in the order of their positions.
fn check(schema: &Schema, contract: Contract, text: &str) -> Vec<Problem> {
    let mut problems = match contract {
        Contract::Heartbeat => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .flat_map(|(i, line)| shift(check_beat(schema, line), i))
            .collect(),
        Contract::Agent => match front_matter(text) {
            Ok(yaml) => shift(check_yaml(schema, yaml), 1),
            Err(problem) => vec![problem],
        },
        _ => check_yaml(schema, text),
    };
    problems.sort_by_key(|&(line, col, _)| (line, col));
    problems
}

/// Moves the problems of a sub-document down by `lines` lines.
fn shift(problems: Vec<Problem>, lines: usize) -> Vec<Problem> {
    let moved = |(line, col, msg): Problem| (line.map(|l| l + lines), col, msg);
    problems.into_iter().map(moved).collect()
}

/// The YAML between the opening `---` line and the closing one.
fn front_matter(text: &str) -> Result<&str, Problem> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    if lines.next().map(str::trim_end) != Some("---") {
        let msg = "missing front matter: an agent definition starts with a line `---`";
        return Err((Some(1), Some(1), msg.to_string()));
    }
    let start = text.find('\n').map_or(text.len(), |i| i + 1);
    let mut at = start;
    for line in lines {
        if line.trim_end() == "---" {
            return Ok(&text[start..at]);
        }
        at += line.len();
    }
    let msg = "unterminated front matter: no closing `---` line";
    Err((Some(1), Some(1), msg.to_string()))
}

fn check_yaml(schema: &Schema, text: &str) -> Vec<Problem> {
    // Through serde_yaml's own Value first: it rejects duplicate keys, serde_json's keeps the last.
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(yaml) => match serde_json::to_value(yaml) {
            Ok(value) => schema_problems(schema, &value, text),
            Err(e) => vec![(
                None,
                None,
                format!("YAML: cannot be read as JSON data: {e}"),
            )],
        },
        Err(e) => {
            let (line, col) = e.location().map(|l| (l.line(), l.column())).unzip();
            let msg = format!("YAML: {}", strip_position(&e.to_string()));
            vec![(line, col, msg)]
        }
    }
}

fn check_beat(schema: &Schema, line: &str) -> Vec<Problem> {
    match serde_json::from_str::<Value>(line) {
        Ok(value) => schema_problems(schema, &value, line),
        Err(e) => {
            let msg = format!("JSON: {}", strip_position(&e.to_string()));
            vec![(Some(1), Some(e.column().max(1)), msg)]
        }
    }
}

/// Drops the " at line 3 column 7" that serde adds; the finding carries the position.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => &message[..i],
        _ => message,
    }
}

fn schema_problems(schema: &Schema, value: &Value, text: &str) -> Vec<Problem> {
    if value.is_null() {
        let msg = "the document is empty; expected a mapping".to_string();
        return vec![(Some(1), Some(1), msg)];
    }
    let doc = Doc::new(text);
    // An unknown key is reported at the key, anything else at its value.
    let at = |found: Option<(Node, bool)>, key: bool| {
        let pick = |(n, whole): (Node, bool)| n.key.filter(|_| key && whole).unwrap_or(n.report);
        found.map(|f| doc.pos(pick(f))).unzip()
    };
    let mut out = Vec::new();
    for err in schema.validator.iter_errors(value) {
        let ptr = err.instance_path.as_str().to_string();
        let shown = if ptr.is_empty() { "/" } else { ptr.as_str() };
        let (line, col) = at(doc.find(&ptr), false);
        let msg = match &err.kind {
            ValidationErrorKind::Required { property } => {
                let name = property
                    .as_str()
                    .map_or_else(|| property.to_string(), escape);
                format!("{ptr}/{name}: required field is missing")
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for key in unexpected {
                    let child = format!("{ptr}/{}", escape(key));
                    let (line, col) = at(doc.find(&child), true);
                    let key = Value::from(key.as_str());
                    out.push((
                        line,
                        col,
                        format!("{child}: unknown key {key} is not allowed here"),
                    ));
                }
                continue;
            }
            ValidationErrorKind::Enum { options } => {
                format!("{shown}: {} is not one of {options}", err.instance)
            }
            // The schema's description says what was meant better than a regex or a type.
            ValidationErrorKind::Pattern { .. } | ValidationErrorKind::Type { .. } => {
                let hint = describe(&schema.json, err.schema_path.as_str());
                format!(
                    "{shown}: {err}{}",
                    hint.map_or_else(String::new, |d| format!(" ({d})"))
                )
            }
            _ => format!("{shown}: {err}"),
        };
        out.push((line, col, msg));
    }
    out
}

/// The description of the schema that holds the keyword at `schema_path`, following `$ref`s;
/// none for the root, whose description is about the whole file.
fn describe<'a>(root: &'a Value, schema_path: &str) -> Option<&'a str> {
    let segments: Vec<String> = segments(schema_path)?.collect();
    let (_keyword, path) = segments.split_last().filter(|(_, path)| !path.is_empty())?;
    let mut node = root;
    for seg in path {
        node = if seg == "$ref" {
            root.pointer(node.get("$ref")?.as_str()?.strip_prefix('#')?)?
        } else {
            node.get(seg.as_str())?
        };
    }
    node.get("description")?.as_str()
}

/// Escapes a key for use as a JSON pointer segment.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The unescaped segments of a JSON pointer; `None` when it does not start with `/`.
fn segments(pointer: &str) -> Option<impl Iterator<Item = String> + '_> {
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~")),
    )
}

/// Map a JSON pointer like `/requires/0` or `/pas/history/2/at` to the 1-based (line, column)
/// of that node in block-style YAML text (flow collections and JSON work too). Best effort:
/// a segment that cannot be found yields the deepest node found so far; `None` when the text
/// is empty or the pointer is malformed. A value on its key's line is reported at the value;
/// a block value at its key.
pub fn locate(yaml_text: &str, pointer: &str) -> Option<(usize, usize)> {
    let doc = Doc::new(yaml_text);
    doc.find(pointer).map(|(node, _)| doc.pos(node.report))
}

/// A node found in the text: byte offsets of its content, of where to report it, of its key.
#[derive(Clone, Copy)]
struct Node {
    at: Option<usize>,
    report: usize,
    key: Option<usize>,
}

fn node(at: Option<usize>, report: usize, key: Option<usize>) -> Node {
    Node { at, report, key }
}

/// YAML text cut into lines, for the indentation-based search of [`locate`].
struct Doc<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Doc<'a> {
    fn new(text: &'a str) -> Doc<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Doc { text, starts }
    }

    fn line(&self, i: usize) -> &'a str {
        let end = self.starts.get(i + 1).map_or(self.text.len(), |&e| e - 1);
        let line = &self.text[self.starts[i]..end.max(self.starts[i])];
        line.strip_suffix('\r').unwrap_or(line)
    }

    fn line_of(&self, offset: usize) -> usize {
        self.starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1)
    }

    fn pos(&self, offset: usize) -> (usize, usize) {
        let line = self.line_of(offset);
        let col = self.text[self.starts[line]..offset].chars().count() + 1;
        (line + 1, col)
    }

    /// The indentation of line `i`, or `None` for a blank or comment line.
    fn indent(&self, i: usize) -> Option<usize> {
        let line = self.line(i);
        let body = line.trim_start_matches(' ');
        (!body.is_empty() && !body.starts_with('#')).then_some(line.len() - body.len())
    }

    /// The first content line after line `i` (skipping the `---` document marker).
    fn next_content(&self, i: usize) -> Option<(usize, usize)> {
        (i..self.starts.len())
            .filter(|&l| self.line(l).trim_end() != "---")
            .find_map(|l| self.indent(l).map(|ind| (l, ind)))
    }

    fn find(&self, pointer: &str) -> Option<(Node, bool)> {
        let (l, ind) = self.next_content(0)?;
        let at = self.starts[l] + ind;
        let mut node = node(Some(at), at, None);
        if pointer.is_empty() {
            return Some((node, true));
        }
        for seg in segments(pointer)? {
            match self.child(node, &seg) {
                Some(child) => node = child,
                None => return Some((node, false)),
            }
        }
        Some((node, true))
    }

    fn child(&self, parent: Node, seg: &str) -> Option<Node> {
        let at = parent.at?;
        match self.text.as_bytes().get(at)? {
            b'[' | b'{' => {
                let items = flow_items(self.text, at);
                let item = match seg.parse::<usize>() {
                    Ok(n) if self.text.as_bytes()[at] == b'[' => items.get(n),
                    _ => items.iter().find(|it| it.0.as_deref() == Some(seg)),
                }?;
                let key = item.0.as_ref().map(|_| item.1);
                Some(node(Some(item.2), item.2, key))
            }
            _ if is_dash(&self.text[at..]) => self.seq_child(at, seg.parse().ok()?),
            _ => self.map_child(at, seg),
        }
    }

    /// The entries of the block collection whose first entry is at `at`: that one and the
    /// lines below at its column (`dash`: only `- ` lines; else none of them).
    fn entries(&self, at: usize, dash: bool) -> Vec<usize> {
        let first = self.line_of(at);
        let col = at - self.starts[first];
        let mut out = vec![at];
        for l in first + 1..self.starts.len() {
            match self.indent(l) {
                Some(ind) if ind < col => break,
                Some(ind) if ind == col => {
                    let here = self.starts[l] + col;
                    if is_dash(&self.text[here..]) == dash {
                        out.push(here);
                    } else if dash {
                        break;
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The node of a value that starts at `from` (after `key:` or `-`) on the same line,
    /// or on the lines below when that line has nothing more.
    fn value(&self, from: usize, owner: usize, key: Option<usize>) -> Node {
        let line = self.line_of(owner);
        let end = self.starts[line] + self.line(line).len();
        let rest = &self.text[from.min(end)..end];
        let v = from + (rest.len() - rest.trim_start().len());
        if v < end && !self.text[v..].starts_with('#') {
            return node(Some(v), v, key);
        }
        let col = owner - self.starts[line];
        let below = self.next_content(line + 1).filter(|&(l, ind)| {
            ind > col || (ind == col && key.is_some() && is_dash(&self.line(l)[ind..]))
        });
        let at = below.map(|(l, ind)| self.starts[l] + ind);
        node(at, owner, key)
    }

    fn seq_child(&self, at: usize, index: usize) -> Option<Node> {
        let item = *self.entries(at, true).get(index)?;
        Some(self.value(item + 1, item, None))
    }

    fn map_child(&self, at: usize, seg: &str) -> Option<Node> {
        self.entries(at, false).into_iter().find_map(|e| {
            let line = self.line_of(e);
            let end = self.starts[line] + self.line(line).len();
            let (key, after) = block_key(&self.text[e..end])?;
            (key == seg).then(|| self.value(e + after, e, Some(e)))
        })
    }
}

fn is_dash(s: &str) -> bool {
    s == "-" || s.starts_with("- ") || s.starts_with("-\n") || s.starts_with("-\r")
}

/// The key at the start of a block mapping entry, and the offset just after its colon.
fn block_key(s: &str) -> Option<(String, usize)> {
    let (key, rest) = match s.as_bytes().first()? {
        b'"' | b'\'' => {
            let close = skip_quoted(s.as_bytes(), 0);
            (unquote(&s[..close]), &s[close..])
        }
        b'[' | b'{' | b'#' | b'|' | b'>' => return None,
        _ => {
            let colon = s
                .match_indices(':')
                .map(|(i, _)| i)
                .find(|&i| s[i + 1..].is_empty() || s[i + 1..].starts_with([' ', '\t']))?;
            (s[..colon].trim_end().to_string(), &s[colon..])
        }
    };
    let trimmed = rest.trim_start_matches([' ', '\t']);
    trimmed
        .starts_with(':')
        .then(|| (key, s.len() - trimmed.len() + 1))
}

/// The index just past the quoted scalar that opens at `open` (JSON/YAML escapes).
fn skip_quoted(b: &[u8], open: usize) -> usize {
    let quote = b[open];
    let mut i = open + 1;
    while i < b.len() {
        match b[i] {
            b'\\' if quote == b'"' => i += 1,
            b'\'' if quote == b'\'' && b.get(i + 1) == Some(&b'\'') => i += 1,
            c if c == quote => return i + 1,
            _ => {}
        }
        i += 1;
    }
    b.len()
}

fn unquote(s: &str) -> String {
    if s.starts_with('"') {
        serde_json::from_str(s).unwrap_or_else(|_| s.trim_matches('"').to_string())
    } else if let Some(inner) = s.strip_prefix('\'') {
        inner.strip_suffix('\'').unwrap_or(inner).replace("''", "'")
    } else {
        s.to_string()
    }
}

/// The items of the flow collection opening at `open`: (key, item start, value start).
fn flow_items(text: &str, open: usize) -> Vec<(Option<String>, usize, usize)> {
    let b = text.as_bytes();
    let is_map = b[open] == b'{';
    let skip_ws = |mut i: usize| {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'#') {
            if b[i] == b'#' {
                i = text[i..].find('\n').map_or(b.len(), |n| i + n);
            } else {
                i += 1;
            }
        }
        i
    };
    let mut items = Vec::new();
    let mut i = skip_ws(open + 1);
    while i < b.len() && b[i] != b']' && b[i] != b'}' {
        let (start, mut key, mut value, mut depth, mut prev) = (i, None, i, 0usize, b'[');
        while i < b.len() {
            let c = b[i];
            match c {
                b'"' | b'\'' if b"[{,:".contains(&prev) => {
                    i = skip_quoted(b, i);
                    prev = c;
                    continue;
                }
                b'[' | b'{' => depth += 1,
                b']' | b'}' if depth == 0 => break,
                b']' | b'}' => depth -= 1,
                b',' if depth == 0 => break,
                b':' if depth == 0 && is_map && key.is_none() => {
                    let next = b.get(i + 1).copied().unwrap_or(b' ');
                    if prev == b'"' || prev == b'\'' || b" \t\r\n,]}".contains(&next) {
                        key = Some(unquote(text[start..i].trim()));
                        value = skip_ws(i + 1);
                    }
                }
                _ => {}
            }
            if !c.is_ascii_whitespace() {
                prev = c;
            }
            i += 1;
        }
        items.push((key, start, value));
        if b.get(i) == Some(&b',') {
            i += 1;
        }
        i = skip_ws(i);
    }
    items
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
fn list(dir: &Path, folders: bool) -> anyhow::Result<Vec<PathBuf>> {
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

/// One run of [`validate_workspace`].
struct Run<'a> {
    root: &'a Path,
    findings: Vec<Finding>,
    /// Workspace schemas, by [`Contract`] slot; `None` means the built-in one.
    schemas: Vec<Option<Schema>>,
}

impl Run<'_> {
    fn push(&mut self, path: &Path, line: Option<usize>, column: Option<usize>, message: String) {
        let path = path.strip_prefix(self.root).unwrap_or(path).to_path_buf();
        self.findings.push(Finding {
            path,
            line,
            column,
            message,
        });
    }

    fn load_schema(&mut self, contract: Contract) -> Option<Schema> {
        let path = self
            .root
            .join("contracts")
            .join(format!("{}.schema.json", contract.name()));
        let text = std::fs::read_to_string(&path).ok()?;
        Schema::compile(&text)
            .map_err(|e| self.push(&path, None, None, format!("{e}; using the built-in schema")))
            .ok()
    }

    /// Reads a file as pas would accept it, or records why it would not.
    fn read(&mut self, path: &Path) -> Option<String> {
        let problem = match path.symlink_metadata() {
            Ok(meta) if meta.file_type().is_symlink() => {
                "is a symbolic link; pas does not follow links".to_string()
            }
            Ok(meta) if meta.len() > 1 << 20 => "is larger than 1 MiB".to_string(),
            Ok(_) => match std::fs::read(path).map(String::from_utf8) {
                Ok(Ok(text)) if !text.contains('\0') => return Some(text),
                Ok(_) => "is not UTF-8 text (binary data?)".to_string(),
                Err(e) => format!("cannot be read: {e}"),
            },
            Err(e) => format!("cannot be read: {e}"),
        };
        self.push(path, None, None, problem);
        None
    }

    /// Checks a file against its contract's schema; returns its text when it could be read.
    fn check_file(&mut self, path: &Path, contract: Contract) -> Option<String> {
        let text = self.read(path)?;
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
    fn check_named(&mut self, path: &Path, contract: Contract) {
        let Some(text) = self.check_file(path, contract) else {
            return;
        };
        let stem = stem(path);
        if !valid_name(&stem, 64) {
            let msg =
                format!("{stem:?} is not a valid agent name ([A-Za-z0-9][A-Za-z0-9._-]{{0,63}})");
            self.push(path, None, None, msg);
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

    fn check_card(&mut self, path: &Path, seen: &mut BTreeMap<String, PathBuf>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = "title: Add a login page
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

    /// Asserts that each text has exactly one problem, on `line`, with `fragment` in its message.
    fn expect(cases: &[(Contract, &str, usize, &str)]) {
        for &(contract, text, line, fragment) in cases {
            let found = validate_text(contract, text);
            assert_eq!(found.len(), 1, "{text}\n{found:?}");
            assert_eq!(found[0].0, Some(line), "{text}\n{found:?}");
            assert!(
                found[0].2.contains(fragment),
                "{found:?} lacks {fragment:?}"
            );
        }
    }

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
    fn bad_cards_point_at_the_field() {
        assert_eq!(validate_text(Contract::Card, CARD), vec![]);
        #[rustfmt::skip]
        let cases = [
            ("priority: high", "priority: urgent", 5, r#"/priority: "urgent" is not one of ["critical","high","medium","low"]"#),
            ("[rust, test]", "gpu", 4, r#"/requires: "gpu" is not of type "array""#),
            ("title: Add a login page", "name: x", 1, "/title: required field is missing"),
            ("Add a login page", "|\n  one\n  two", 1, "/title: \"one\\ntwo\\n\" does not match"),
            ("\"0.50\"", "\"1.2.3\"", 7, "/budget_usd: \"1.2.3\" does not match"),
            ("\"0.50\"", "0.5", 7, "/budget_usd: 0.5 is not of type \"string\""),
            ("state: assigned", "state: lost", 11, "/pas/state: \"lost\" is not one of"),
            ("      by: pas", "      by: [pas]", 19, "/pas/history/0/by"),
            ("timeout_s: 90.5", "timeout_s: 0", 8, "/timeout_s: 0 is less than or equal"),
            ("{cpu: 0.5, ", "{cpu: 0.5, disk: 1, ", 6, "/resources/disk: unknown key"),
        ];
        for (from, to, line, fragment) in cases {
            expect(&[(Contract::Card, &CARD.replace(from, to), line, fragment)]);
        }
        let budget = validate_text(Contract::Card, &CARD.replace("\"0.50\"", "\"1.2.3\""));
        assert_eq!(budget[0].1, Some(13));
        #[rustfmt::skip]
        expect(&[
            (Contract::Card, "title: a\n  b: [\n", 2, "YAML: "),
            (Contract::Card, "{\"title\": \"x\",\n \"priority\": 3}", 2, "/priority: 3 is not"),
            (Contract::Card, "# nothing yet\n", 1, "empty"),
        ]);
    }

    #[test]
    fn config_unknown_key_is_named() {
        let found = validate_text(Contract::Config, "git:\n  enabled: true\ncolour: blue\n");
        let msg = r#"/colour: unknown key "colour" is not allowed here"#;
        assert_eq!(found, vec![(Some(3), Some(1), msg.to_string())]);
        let price = "providers:\n  - name: x\n    models:\n      - id: m\n        price_per_mtok: {input: 3.0}\n";
        #[rustfmt::skip]
        expect(&[
            (Contract::Config, "git:\n  enabled: true\n  autor: me\n", 3, "/git/autor"),
            (Contract::Config, price, 5, "/providers/0/models/0/price_per_mtok/input"),
        ]);
    }

    #[test]
    fn heartbeat_reports_the_bad_line() {
        let text = "{\"ts\":\"2025-01-01T00:00:00Z\",\"status\":\"idle\"}\n\
                    {\"ts\":\"2025-01-01T00:01:00Z\",\"progress\":0.5}\n\
                    {\"ts\":\"2025-01-01T00:02:00Z\",\"status\":\"sleeping\"}\n\n\
                    {\"ts\":\"2025-01-01T00:03:00Z\"}\n";
        let found = validate_text(Contract::Heartbeat, text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].0, found[0].1), (Some(3), Some(39)));
        #[rustfmt::skip]
        expect(&[
            (Contract::Heartbeat, "{\"ts\":\"2025-01-01T00:00:00Z\"}\n{\"ts\": 1,", 2, "JSON: "),
            (Contract::Heartbeat, "{\"status\":\"idle\"}", 1, "/ts: required"),
            (Contract::Heartbeat, "{\"ts\":\"yesterday\"}", 1, "date-time"),
        ]);
    }

    #[test]
    fn agent_front_matter() {
        #[rustfmt::skip]
        expect(&[
            (Contract::Agent, "# no front matter\n", 1, "missing front matter"),
            (Contract::Agent, "---\nname: a\n", 1, "unterminated"),
            (Contract::Agent, "---\nname: a\nmax_concurrent: 0\n---\nhi\n", 3, "/max_concurrent"),
            (Contract::Agent, "---\nname: a\ntoken_budget: {hard_max: 2}\n---\n", 3, "/token_budget/hard_max"),
        ]);
        let plain = "---\nname: r\ndescription: d\ntools: Read, Grep\nmodel: haiku\n---\n";
        assert_eq!(validate_text(Contract::Agent, plain), vec![]);
    }

    #[test]
    fn locate_nested_nodes_and_list_items() {
        #[rustfmt::skip]
        let cases = [
            ("", (1, 1)), ("/priority", (5, 11)), ("/requires/1", (4, 18)), ("/nope", (1, 1)),
            ("/resources/mem_mb", (6, 31)), ("/pas", (10, 1)), ("/pas/history", (15, 3)),
            ("/pas/history/0", (16, 7)), ("/pas/history/0/at", (16, 11)),
            ("/pas/history/0/reason", (20, 15)),
            ("/pas/history/7/at", (15, 3)), // no item 7: falls back to the parent
        ];
        for (pointer, at) in cases {
            assert_eq!(locate(CARD, pointer), Some(at), "{pointer}");
        }
        let seq = "list:\n- a\n- b:\n    c: 1\n  'd': x # note\nafter: 2\n";
        assert_eq!(locate(seq, "/list/1/d"), Some((5, 8)));
        assert_eq!(locate(seq, "/list/1/b/c"), Some((4, 8)));
        assert_eq!(locate(seq, "/after"), Some((6, 8)));
        let json = "{\n  \"a\": {\"b\": [1, {\"c\": \"x,y\"}]},\n  \"é\": 2\n}";
        assert_eq!(locate(json, "/a/b/1/c"), Some((2, 24)));
        assert_eq!(locate(json, "/é"), Some((3, 8)));
        assert_eq!(locate("", "/a"), None);
        assert_eq!(locate("a: 1", "no-slash"), None);
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
