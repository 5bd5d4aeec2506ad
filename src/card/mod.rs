//! Job cards: parse, validate and serialize (pure; no files, no clock).
//!
//! A card is a YAML mapping whose file stem is its id. pas reads a typed view of the keys it
//! understands (so a wrong type is reported with its line and column), keeps every other key
//! untouched, and rewrites only its own `pas:` block (and `result`/`error` when asked) by
//! editing the text, so a user's comments and formatting survive every move.

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

/// Largest epoch pas accepts: exact in a JSON number (2^53), and far from overflowing
/// when pas raises it.
pub const MAX_EPOCH: u64 = 1 << 53;

/// The epoch after `e`, never past [`MAX_EPOCH`] (so what pas writes it reads back; only a
/// forged epoch gets near the limit).
pub fn next_epoch(e: u64) -> u64 {
    e.saturating_add(1).min(MAX_EPOCH)
}

/// Largest card file pas accepts (SPEC section 12).
pub const MAX_CARD_BYTES: u64 = 1024 * 1024;

/// The folder a card lives in; the folder is the state (SPEC section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Inbox,
    Assigned,
    /// Finished by its agent, waiting for a person's `pas approve` or `pas reject`.
    Review,
    Done,
    Failed,
    /// Finished and moved to `work/archive/YYYY/MM/DD/` (the day it finished).
    Archived,
}

impl State {
    /// Folder name under `work/`.
    pub fn dir(self) -> &'static str {
        match self {
            State::Inbox => "inbox",
            State::Assigned => "assigned",
            State::Review => "review",
            State::Done => "done",
            State::Failed => "failed",
            State::Archived => "archive",
        }
    }

    /// Every state, in board order.
    pub const ALL: [State; 6] = [
        State::Inbox,
        State::Assigned,
        State::Review,
        State::Done,
        State::Failed,
        State::Archived,
    ];

    /// The name `pas jobs --state` and JSON use (`archived`; the folder is `archive/`).
    pub fn name(self) -> &'static str {
        match self {
            State::Archived => "archived",
            s => s.dir(),
        }
    }

    /// Whether the card's work is over (done, failed or archived).
    pub fn finished(self) -> bool {
        matches!(self, State::Done | State::Failed | State::Archived)
    }
}

/// Scheduling priority; `Ord` puts `Critical` first.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Critical,
    High,
    #[default]
    Medium,
    Low,
}

impl Priority {
    /// Lower-case name as written in cards.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }
}

/// Resources reserved while a card is assigned (SPEC section 6).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    pub cpu: f64,
    pub mem_mb: u64,
    pub gpu: u64,
    pub gpu_mem_mb: u64,
}

/// Timestamps in cards are RFC 3339 with milliseconds: precise enough to order
/// transitions, short enough to read.
pub mod millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(d)
    }

    /// The same for optional timestamps.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Option::<DateTime<Utc>>::deserialize(d)
        }
    }
}

/// One line of a card's `pas.history`: a transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(with = "millis")]
    pub at: DateTime<Utc>,
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The `pas:` block, written by pas alone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PasMeta {
    pub state: Option<State>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", with = "millis::option")]
    pub assigned_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    pub history: Vec<HistoryEntry>,
    /// The card's trace (SPEC section 13), stamped when pas first sees the card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The card's root span in that trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// The git branch the card's work was done on (`pas/<id>`, a runner's worktree): the
    /// review diff is `base..branch`. Only ever read as a ref name through git2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The commit `branch` started from (a full hex sha).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// The keys pas understands, typed; everything else stays in the text.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Spec {
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub priority: Priority,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub resources: Option<Resources>,
    #[serde(default)]
    pub timeout_s: Option<f64>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub llm: Option<serde_yaml::Value>,
    #[serde(default)]
    pub budget_usd: Option<String>,
    /// The recorded LLM call (`TRACE_ID/SPAN_ID`) this card replays (`pas replay`).
    #[serde(default)]
    pub replay_of: Option<String>,
    /// Finishing goes to `work/review/` for a person's approve or reject, not to `done/`.
    #[serde(default)]
    pub review: bool,
    #[serde(default)]
    pub pas: PasMeta,
}

/// A parsed card: its id, typed view and original text.
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    pub id: String,
    pub spec: Spec,
    text: String,
}

/// What is wrong with a card, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{message}", location(*line, *column))]
pub struct CardError {
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l}, column {c}: "),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    }
}

impl CardError {
    fn plain(message: impl Into<String>) -> CardError {
        CardError {
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

/// Longest `timeout_s` a card may ask for: a year.
pub const MAX_TIMEOUT_S: f64 = 365.0 * 86_400.0;

/// Most take-backs a card may allow (`max_attempts`), and most `pas.attempts` it may show.
pub const MAX_ATTEMPTS: u32 = 1_000_000;

/// Largest resource amount a card may ask for (cpu, mem_mb, gpu, gpu_mem_mb): far beyond
/// any machine, far from overflowing a sum.
pub const MAX_AMOUNT: u64 = 1 << 40;

/// Most history lines a card may carry (each transition adds one; a card that has moved a
/// million times is a loop, not a card).
pub const MAX_HISTORY: usize = 100_000;

/// Whether a date an agent could have written is one pas can do arithmetic with: from the
/// year 2000 to 9999 (chrono's own range is wider, but adding a year's timeout to its end
/// would overflow).
pub fn sane_date(d: DateTime<Utc>) -> bool {
    let y = d.year();
    (2000..=9999).contains(&y)
}

/// `since` plus `seconds` (a checked timeout), saturating at the last instant chrono can
/// hold instead of overflowing.
pub fn after(since: DateTime<Utc>, seconds: f64) -> DateTime<Utc> {
    let ms = (seconds.clamp(0.0, MAX_TIMEOUT_S) * 1000.0).round() as i64;
    chrono::TimeDelta::try_milliseconds(ms)
        .and_then(|d| since.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Whether `id` is a valid job id: `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`.
pub fn valid_id(id: &str) -> bool {
    valid_name(id, 128)
}

/// Whether `name` is a valid agent name (same alphabet as ids, at most 64 characters).
pub fn valid_agent_name(name: &str) -> bool {
    valid_name(name, 64)
}

fn valid_name(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Checks the raw bytes of a card file before parsing: size, binary data, encoding.
pub fn check_bytes(bytes: &[u8]) -> Result<&str, CardError> {
    if bytes.len() as u64 > MAX_CARD_BYTES {
        return Err(CardError::plain(format!(
            "file is {} bytes, over the 1 MiB limit for cards",
            bytes.len()
        )));
    }
    if let Some(pos) = bytes.iter().position(|&b| b == 0) {
        return Err(CardError::plain(format!(
            "binary data: NUL byte at offset {pos}"
        )));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        CardError::plain(format!(
            "binary data: not UTF-8 at offset {}",
            e.valid_up_to()
        ))
    })
}

impl Card {
    /// Parses and validates a card's text; `id` comes from the file name.
    pub fn parse(id: &str, text: &str) -> Result<Card, CardError> {
        if !valid_id(id) {
            return Err(CardError::plain(format!(
                "bad id {id:?}: ids are 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
            )));
        }
        // Deep nesting and alias bombs are refused before the typed parse, which skips
        // unknown keys without serde_yaml's limits (see `intake::yaml_guard`).
        crate::intake::yaml_guard(text).map_err(|e| CardError {
            message: e.message,
            line: e.line,
            column: e.column,
        })?;
        let spec: Spec = serde_yaml::from_str(text).map_err(|e| {
            // A type error can stop the typed parse before it reaches a syntax error
            // further on (`title: [unclosed`); the syntax error is what the writer needs.
            if let Err(syntax) = serde_yaml::from_str::<serde_yaml::Value>(text) {
                return yaml_error(syntax);
            }
            let mut err = yaml_error(e);
            // serde's wording for a document that is not a mapping names our struct.
            if err.message.contains("expected struct Spec") {
                err.message = format!(
                    "a card must be a YAML mapping ({})",
                    err.message
                        .replace("expected struct Spec", "expected a mapping")
                );
            } else if err.message.contains("missing field `title`") {
                err.message = "missing field `title` (every card needs a one-line title)".into();
            }
            err
        })?;
        let card = Card {
            id: id.to_string(),
            spec,
            text: text.to_string(),
        };
        card.check()?;
        Ok(card)
    }

    fn check(&self) -> Result<(), CardError> {
        let at = |key: &str, message: String| {
            let (line, column) = key_position(&self.text, key).unzip();
            Err(CardError {
                message,
                line,
                column,
            })
        };
        let s = &self.spec;
        if s.title.trim().is_empty() {
            return at("title", "title must not be empty".into());
        }
        if s.title.contains('\n') {
            return at("title", "title must be one line".into());
        }
        if let Some(a) = &s.assignee {
            if !valid_agent_name(a) {
                return at(
                    "assignee",
                    format!("assignee {a:?} is not a valid agent name"),
                );
            }
        }
        for d in s.depends_on.iter().chain(s.parent.iter()) {
            if !valid_id(d) {
                return at("depends_on", format!("{d:?} is not a valid job id"));
            }
        }
        if let Some(t) = s.timeout_s {
            if !(t > 0.0 && t <= MAX_TIMEOUT_S) {
                return at(
                    "timeout_s",
                    format!(
                        "timeout_s must be above 0 and at most {MAX_TIMEOUT_S} (a year), got {t}"
                    ),
                );
            }
        }
        match s.max_attempts {
            Some(0) => return at("max_attempts", "max_attempts must be at least 1".into()),
            Some(n) if n > MAX_ATTEMPTS => {
                return at(
                    "max_attempts",
                    format!("max_attempts must be at most {MAX_ATTEMPTS}, got {n}"),
                )
            }
            _ => {}
        }
        if let Some(b) = &s.budget_usd {
            let ok = {
                let mut parts = b.splitn(2, '.');
                let int = parts.next().unwrap_or("");
                let frac = parts.next();
                !int.is_empty()
                    && int.bytes().all(|c| c.is_ascii_digit())
                    && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()))
            };
            if !ok {
                return at(
                    "budget_usd",
                    format!("budget_usd must be a decimal string like \"2.50\", got {b:?}"),
                );
            }
        }
        if let Some(r) = &s.resources {
            if !(r.cpu >= 0.0 && r.cpu <= MAX_AMOUNT as f64) {
                return at(
                    "resources",
                    format!(
                        "resources.cpu must be from 0 to {MAX_AMOUNT}, got {}",
                        r.cpu
                    ),
                );
            }
            for (name, v) in [
                ("mem_mb", r.mem_mb),
                ("gpu", r.gpu),
                ("gpu_mem_mb", r.gpu_mem_mb),
            ] {
                if v > MAX_AMOUNT {
                    return at(
                        "resources",
                        format!("resources.{name} must be at most {MAX_AMOUNT}, got {v}"),
                    );
                }
            }
        }
        self.check_meta()
    }

    /// Range checks on the `pas:` block. pas wrote it, but anyone can edit a file, and pas
    /// does arithmetic on these numbers and dates: a card that would overflow one is
    /// refused here rather than panicking (and crash-looping) the daemon later. Whether the
    /// block is pas's own is judged elsewhere, against pas's records.
    fn check_meta(&self) -> Result<(), CardError> {
        let at = |message: String| {
            let (line, column) = key_position(&self.text, "pas").unzip();
            Err(CardError {
                message,
                line,
                column,
            })
        };
        let m = &self.spec.pas;
        if m.attempts > MAX_ATTEMPTS {
            return at(format!(
                "pas.attempts must be at most {MAX_ATTEMPTS}, got {}",
                m.attempts
            ));
        }
        if m.epoch.is_some_and(|e| e > MAX_EPOCH) {
            return at(format!("pas.epoch must be at most {}", MAX_EPOCH));
        }
        if let Some(a) = &m.assigned_to {
            if !valid_agent_name(a) {
                return at(format!("pas.assigned_to {a:?} is not a valid agent name"));
            }
        }
        let dates = m.assigned_at.iter().chain(m.history.iter().map(|h| &h.at));
        for d in dates {
            if !sane_date(*d) {
                return at(format!("pas: date {d} is outside the years 2000 to 9999"));
            }
        }
        if m.history.len() > MAX_HISTORY {
            return at(format!(
                "pas.history has {} entries, more than {MAX_HISTORY}",
                m.history.len()
            ));
        }
        Ok(())
    }

    /// A card known only by its id and folder (reading commands that need no more).
    pub fn stub(id: &str) -> Card {
        Card {
            id: id.to_string(),
            spec: Spec::default(),
            text: String::new(),
        }
    }

    /// The text as last parsed or written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The card's text with `key` set to `value` at the top level; other keys keep their text.
    pub fn with_key(&self, key: &str, value: &serde_yaml::Value) -> Result<Card, CardError> {
        let text = set_top_level_key(&self.text, key, value)?;
        Card::parse(&self.id, &text)
    }

    /// The card with a new `pas:` block.
    pub fn with_meta(&self, meta: &PasMeta) -> Card {
        let value = serde_yaml::to_value(meta).unwrap_or(serde_yaml::Value::Null);
        match set_top_level_key(&self.text, "pas", &value) {
            Ok(text) => Card {
                id: self.id.clone(),
                spec: Spec {
                    pas: meta.clone(),
                    ..self.spec.clone()
                },
                text,
            },
            // The text was parsed before, so this only happens for exotic layouts the
            // line editor refuses; a full re-serialisation loses comments but no keys.
            Err(_) => self.clone(),
        }
    }

    /// Effective timeout: the card's own, else the default.
    pub fn timeout_s(&self, default: f64) -> f64 {
        self.spec.timeout_s.unwrap_or(default)
    }

    /// Effective attempt limit: the card's own, else the default.
    pub fn max_attempts(&self, default: u32) -> u32 {
        self.spec.max_attempts.unwrap_or(default)
    }
}

fn yaml_error(e: serde_yaml::Error) -> CardError {
    let loc = e.location();
    let mut message = e.to_string();
    // serde_yaml appends " at line L column C"; we report the location separately.
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    CardError {
        message,
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
    }
}

/// 1-based line and column of a top-level `key:` in block-style YAML.
pub fn key_position(text: &str, key: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(i, line)| {
        let rest = line.strip_prefix(key)?;
        rest.trim_start().starts_with(':').then_some((i + 1, 1))
    })
}

/// Whether a line starts a new top-level entry of a block mapping.
fn is_top_level_line(line: &str) -> bool {
    matches!(line.bytes().next(), Some(c) if !c.is_ascii_whitespace() && c != b'#')
}

/// Replaces (or appends) a top-level key in block-style YAML text, leaving every other byte
/// alone. Falls back to re-serialising the mapping when the text is not a plain block mapping
/// (flow style, document markers), which keeps every key but not comments.
fn set_top_level_key(
    text: &str,
    key: &str,
    value: &serde_yaml::Value,
) -> Result<String, CardError> {
    let mut one = serde_yaml::Mapping::new();
    one.insert(serde_yaml::Value::String(key.into()), value.clone());
    let block = serde_yaml::to_string(&one).map_err(|e| CardError::plain(e.to_string()))?;

    if plain_block_mapping(text) {
        let mut out = String::with_capacity(text.len() + block.len());
        let mut skipping = false;
        for line in text.split_inclusive('\n') {
            if is_top_level_line(line) {
                skipping = line
                    .strip_prefix(key)
                    .is_some_and(|r| r.trim_start().starts_with(':'));
            }
            if !skipping {
                out.push_str(line);
            }
        }
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&block);
        return Ok(out);
    }
    let mut map: serde_yaml::Mapping = serde_yaml::from_str(text).map_err(yaml_error)?;
    map.insert(serde_yaml::Value::String(key.into()), value.clone());
    serde_yaml::to_string(&map).map_err(|e| CardError::plain(e.to_string()))
}

/// Whether every top-level line of `text` is a plain `key:` entry (comments aside), so a
/// top-level key can be replaced line by line. Anything unusual (flow style, document
/// markers, quoted or complex keys, tabs) takes the re-serialising path instead.
fn plain_block_mapping(text: &str) -> bool {
    let mut any = false;
    for line in text.lines() {
        if line.starts_with('\t') {
            return false;
        }
        if !is_top_level_line(line) {
            continue;
        }
        let Some(colon) = line.find(':') else {
            return false;
        };
        let key = &line[..colon];
        let simple = key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
        if key.is_empty() || !simple || line.starts_with(['-', '.']) {
            return false;
        }
        any = true;
    }
    any
}

#[cfg(test)]
mod tests;
