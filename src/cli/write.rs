//! Writing commands. Each makes the same atomic file moves an agent would make by hand
//! (write-temp-then-rename, claim by rename), so they are safe beside a running daemon;
//! the daemon records and commits what they did.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Args;

use super::Out;
use crate::agent::{Registration, Role};
use crate::board::{transition_meta, Place};
use crate::card::{self, Card, Priority, State};
use crate::fsops::{self, Moved};
use crate::snapshot;
use crate::workspace::{self, read_card, Kind, Workspace};

/// `pas init`.
pub fn init(dir: &Path, out: &Out) -> Result<i32> {
    let report = workspace::init(dir)?;
    let dir = &dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut git_note = String::new();
    let cfg = crate::config::Config::load(&dir.join("pas.yaml"))?;
    if cfg.git.enabled {
        use crate::store::git::GitStore;
        let mut store = match GitStore::open(dir)? {
            Some(s) => s,
            None => {
                git_note = " (git repository created)".into();
                GitStore::init(dir)?
            }
        };
        if !report.created.is_empty() {
            store.commit_paths(&report.created, "pas: init workspace", &cfg.git.author)?;
        }
    }
    if report.created.is_empty() {
        out.line(format!(
            "{} is already a pas workspace; nothing to add",
            dir.display()
        ));
    } else {
        out.line(format!(
            "initialised {}{git_note}: {} files added",
            dir.display(),
            report.created.len()
        ));
    }
    Ok(0)
}

/// Flags of `pas submit`, and the arguments of `pas mcp`'s `submit` tool (its schema comes
/// from these doc comments; `file` is the command line's alone).
#[derive(Debug, Args, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitArgs {
    /// One-line title (required).
    #[arg(long, short)]
    #[schemars(required)]
    pub title: Option<String>,
    /// Free text.
    #[arg(long, short)]
    pub description: Option<String>,
    /// Required capabilities (comma-separated or repeated).
    #[arg(long, short, value_delimiter = ',')]
    #[serde(default)]
    pub requires: Vec<String>,
    /// critical, high, medium, low.
    #[arg(long, short)]
    pub priority: Option<Priority>,
    /// Pin to one agent.
    #[arg(long)]
    pub assignee: Option<String>,
    /// Parent job id: how an agent splits its work into cards.
    #[arg(long)]
    pub parent: Option<String>,
    /// Jobs that must be done first (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Longest time in assigned/ before the card is taken back.
    #[arg(long)]
    pub timeout_s: Option<f64>,
    /// Take-backs before the card fails.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Read the card's YAML from this file ("-" for stdin); flags given too override it.
    #[arg(long, short)]
    #[serde(skip)]
    #[schemars(skip)]
    pub file: Option<PathBuf>,
    /// Use this id instead of a new ULID.
    #[arg(long)]
    pub id: Option<String>,
    /// When finished, wait in work/review/ for pas approve or pas reject.
    #[arg(long)]
    #[serde(default)]
    pub review: bool,
}

impl clap::ValueEnum for Priority {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Priority::Critical,
            Priority::High,
            Priority::Medium,
            Priority::Low,
        ]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// `pas submit`: writes the card to a temp name in the inbox, then renames it into place.
pub fn submit(ws: &Workspace, args: SubmitArgs, out: &Out) -> Result<i32> {
    let mut map: serde_yaml::Mapping = match &args.file {
        None => serde_yaml::Mapping::new(),
        Some(f) => {
            let text = if f.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("cannot read stdin")?;
                s
            } else {
                std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read {}", f.display()))?
            };
            let origin = f.display().to_string();
            let value: serde_yaml::Value =
                serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
            match value {
                serde_yaml::Value::Mapping(m) => m,
                _ => bail!("{origin}: a card must be a YAML mapping"),
            }
        }
    };
    let mut set = |k: &str, v: serde_yaml::Value| {
        map.insert(k.into(), v);
    };
    let s = |x: &str| serde_yaml::Value::String(x.to_string());
    let list = |xs: &[String]| serde_yaml::Value::Sequence(xs.iter().map(|x| s(x)).collect());
    if let Some(t) = &args.title {
        set("title", s(t));
    }
    if let Some(d) = &args.description {
        set("description", s(d));
    }
    if !args.requires.is_empty() {
        set("requires", list(&args.requires));
    }
    if let Some(p) = args.priority {
        set("priority", s(p.as_str()));
    }
    if let Some(a) = &args.assignee {
        set("assignee", s(a));
    }
    if let Some(p) = &args.parent {
        set("parent", s(p));
    }
    if !args.depends_on.is_empty() {
        set("depends_on", list(&args.depends_on));
    }
    if let Some(t) = args.timeout_s {
        set("timeout_s", serde_yaml::to_value(t)?);
    }
    if let Some(m) = args.max_attempts {
        set("max_attempts", serde_yaml::to_value(m)?);
    }
    if args.review {
        set("review", serde_yaml::Value::Bool(true));
    }
    if !map.contains_key("title") {
        bail!("a card needs a title: pass --title or a file with a title: key");
    }
    map.remove("pas"); // pas's own block is never taken from a submitter
    let id = args.id.unwrap_or_else(|| ulid::Ulid::new().to_string());
    let text = serde_yaml::to_string(&map)?;
    Card::parse(&id, &text).map_err(|e| anyhow::anyhow!("card {id}: {e}"))?;
    if let Some(existing) = ws.card_candidates(&id).into_iter().find(|p| p.exists()) {
        bail!(
            "id {id} already exists at {}",
            crate::workspace::rel(ws, &existing)
        );
    }
    let inbox = ws.state_dir(State::Inbox);
    std::fs::create_dir_all(&inbox)
        .with_context(|| format!("cannot create {}", inbox.display()))?;
    let target = inbox.join(format!("{id}.yaml"));
    let tmp = inbox.join(format!(".{id}.yaml.tmp"));
    fsops::write_atomic(&tmp, text.as_bytes(), false)?;
    if !fsops::rename_no_replace(&tmp, &target)? {
        let _ = std::fs::remove_file(&tmp); // our own temp copy
        bail!("id {id} already exists in work/inbox/");
    }
    out.line(&id);
    Ok(0)
}

/// `pas claim AGENT [ID]`: the Maildir rule — one rename, one winner.
pub fn claim(ws: &Workspace, agent: &str, id: Option<&str>, out: &Out) -> Result<i32> {
    if !card::valid_agent_name(agent) {
        bail!("{agent:?} is not a valid agent name");
    }
    let dir = ws.state_dir(State::Assigned).join(agent);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let try_claim = |id: &str| -> Result<bool> {
        let from = ws.state_dir(State::Inbox).join(format!("{id}.yaml"));
        match fsops::rename_no_replace(&from, &dir.join(format!("{id}.yaml"))) {
            Ok(true) => Ok(true),
            Ok(false) => bail!("{agent} already holds a card named {id}"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot claim {id}")),
        }
    };
    if let Some(id) = id {
        if try_claim(id)? {
            out.line(id);
            return Ok(0);
        }
        bail!("{id} is not in work/inbox/ (claimed by someone else, or no such card)");
    }
    // The best card this agent may take, by the daemon's own rules.
    let snap = snapshot::load(ws)?;
    let mut board = snap.board;
    board.agents.retain(|name, _| name == agent);
    // A pull is the agent's own decision: its slots and pause do not limit it.
    // An agent that pulls is alive, whatever its last beat says.
    if let Some(a) = board.agents.get_mut(agent) {
        a.live = Default::default();
    }
    match board.agents.get_mut(agent).and_then(|a| a.reg.as_mut()) {
        Some(reg) => {
            reg.paused = false;
            reg.max_concurrent = Some(u32::MAX);
        }
        None => bail!("{agent} is not registered (run pas register {agent} first)"),
    }
    for (id, to) in board.plan(Utc::now()).assign {
        if to == agent && try_claim(&id)? {
            out.line(&id);
            return Ok(0);
        }
    }
    out.note(format!("nothing in work/inbox/ that {agent} can take"));
    Ok(1)
}

/// Finds the file of card `id` in the state folders.
pub(super) fn find(ws: &Workspace, id: &str) -> Result<(PathBuf, Place)> {
    if !card::valid_id(id) {
        bail!("{id:?} is not a valid job id");
    }
    for p in ws.card_candidates(id) {
        if p.exists() {
            if let Kind::Card { place, .. } = ws.classify(&p) {
                return Ok((p, place));
            }
        }
    }
    bail!("no card {id} in work/ (inbox, assigned, review, done, failed, archive)")
}

/// One card move made by a command: where to, and what changes on the way.
#[derive(Default)]
pub(super) struct Move<'a> {
    /// Top-level keys to set (`result`, `error`, `description`).
    pub keys: Vec<(&'a str, String)>,
    /// The history entry's reason.
    pub reason: Option<String>,
    /// `pas.attempts` after the move (a retry resets it, a reject raises it).
    pub attempts: Option<u32>,
    /// The folder the card must be in (else nothing moves).
    pub from_state: Option<State>,
}

/// Moves card `id` to `to` as `how` says, recording the transition in its history,
/// through staging so no one sees it twice.
pub(super) fn move_with(ws: &Workspace, id: &str, to: Place, how: Move) -> Result<()> {
    let (from_path, from) = find(ws, id)?;
    if let Some(want) = how.from_state {
        if from.state != want {
            bail!(
                "{id} is not in work/{}/: it is in work/{}/",
                want.dir(),
                from.label()
            );
        }
    }
    let mut card =
        read_card(&from_path, id).map_err(|e| anyhow::anyhow!("{}: {e}", from_path.display()))?;
    for (k, v) in how.keys {
        card = card
            .with_key(k, &serde_yaml::Value::String(v))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let by = from.agent.clone().unwrap_or_else(|| "cli".into());
    let mut meta = transition_meta(&card.spec.pas, &from, &to, &by, how.reason, Utc::now());
    if let Some(n) = how.attempts {
        meta.attempts = n;
    }
    let card = card.with_meta(&meta);
    let to_path = ws.card_path(id, &to);
    std::fs::create_dir_all(ws.staging())?;
    if let Some(dir) = to_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut spares = fsops::Spares::open(&ws.staging());
    match fsops::move_card(&from_path, &to_path, card.text(), &mut spares, false)? {
        Moved::Done(_) => Ok(()),
        Moved::Gone => {
            bail!("{id} moved while we worked on it (taken back or completed); nothing changed")
        }
        Moved::Blocked(staged) => {
            // Put it back where it was; the target name is taken.
            let _ = fsops::land(&staged, &from_path);
            bail!(
                "cannot move {id}: {} already exists",
                crate::workspace::rel(ws, &to_path)
            )
        }
    }
}

/// `pas done` / `pas fail`. A card with `review: true` finished by its agent goes to
/// `work/review/` instead of `done/`, its result kept, to wait for `pas approve`.
pub fn finish(
    ws: &Workspace,
    id: &str,
    done: bool,
    text: Option<String>,
    out: &Out,
) -> Result<i32> {
    let (path, from) = find(ws, id)?;
    if from.state.finished() {
        bail!("{id} is already in {}/", from.label());
    }
    if from.state == State::Review {
        bail!("{id} is in work/review/: a person finishes it with pas approve {id} or pas reject {id} --feedback TEXT");
    }
    let reviewed =
        done && from.state == State::Assigned && read_card(&path, id).is_ok_and(|c| c.spec.review);
    let (state, key) = match (done, reviewed) {
        (true, true) => (State::Review, "result"),
        (true, false) => (State::Done, "result"),
        (false, _) => (State::Failed, "error"),
    };
    let how = Move {
        keys: text.map(|t| (key, t)).into_iter().collect(),
        ..Move::default()
    };
    move_with(ws, id, Place::of(state), how)?;
    out.line(format!("{id} -> {}", state.dir()));
    Ok(0)
}

/// `pas retry`: back to the inbox with fresh attempts.
pub fn retry(ws: &Workspace, id: &str, out: &Out) -> Result<i32> {
    let (_, from) = find(ws, id)?;
    if from.state == State::Inbox {
        bail!("{id} is already in the inbox");
    }
    if from.state == State::Review {
        bail!("{id} is in work/review/: send it back with pas reject {id} --feedback TEXT");
    }
    let how = Move {
        attempts: Some(0),
        ..Move::default()
    };
    move_with(ws, id, Place::of(State::Inbox), how)?;
    out.line(format!("{id} -> inbox"));
    Ok(0)
}

/// Flags of `pas register`, and the arguments of `pas mcp`'s `register` tool (its schema
/// comes from these doc comments).
#[derive(Debug, Args, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterArgs {
    /// The agent's name.
    pub name: String,
    /// Capabilities beyond the definition's (comma-separated or repeated).
    #[arg(long, short, value_delimiter = ',')]
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Cards it may hold at once.
    #[arg(long)]
    pub max_concurrent: Option<u32>,
    /// Where the agent can be reached.
    #[arg(long)]
    pub url: Option<String>,
    /// production, staging, canary, experimental.
    #[arg(long)]
    pub role: Option<String>,
    /// Process id of the agent.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Heartbeat interval in seconds.
    #[arg(long)]
    pub heartbeat_interval_s: Option<f64>,
}

/// `pas register`.
pub fn register(ws: &Workspace, args: RegisterArgs, out: &Out) -> Result<i32> {
    if !card::valid_agent_name(&args.name) {
        bail!(
            "{:?} is not a valid agent name (A-Z a-z 0-9 . _ -, up to 64)",
            args.name
        );
    }
    let path = ws.registration_path(&args.name);
    let previous = crate::intake::read_text(&path, crate::intake::FileKind::Registration)
        .ok()
        .and_then(|t| Registration::parse(&t).ok());
    let role = match args.role.as_deref() {
        None => None,
        Some(r) => Some(serde_yaml::from_str::<Role>(r).map_err(|_| {
            anyhow::anyhow!("unknown role {r:?} (production, staging, canary, experimental)")
        })?),
    };
    let reg = Registration {
        name: Some(args.name.clone()),
        epoch: next_epoch(ws, &args.name, previous.as_ref()),
        registered_at: Some(Utc::now()),
        url: args.url,
        role,
        capabilities: args.capabilities,
        pid: args.pid,
        max_concurrent: args.max_concurrent,
        heartbeat_interval_s: args.heartbeat_interval_s,
        ..Registration::default()
    };
    std::fs::create_dir_all(ws.registry())?;
    fsops::write_atomic(&path, reg.to_yaml().as_bytes(), false)?;
    out.line(format!("registered {} (epoch {})", args.name, reg.epoch));
    Ok(0)
}

/// One more than any epoch the agent held: in its registration file now, or in the
/// registration events telemetry keeps (the file is gone after a deregistration).
fn next_epoch(ws: &Workspace, name: &str, previous: Option<&Registration>) -> u64 {
    let recorded = crate::store::db::open_read_only(&ws.db_path())
        .ok()
        .flatten()
        .and_then(|conn| crate::store::db::agent_epochs(&conn).ok())
        .and_then(|m| m.get(name).copied())
        .unwrap_or_default();
    let held = previous
        .map_or(0, |p| p.epoch)
        .max(recorded.registered)
        .max(recorded.retired);
    crate::card::next_epoch(held)
}

/// `pas deregister`.
pub fn deregister(ws: &Workspace, name: &str, out: &Out) -> Result<i32> {
    let path = ws.registration_path(name);
    if !card::valid_agent_name(name) || !path.exists() {
        bail!(
            "{name} is not registered (no {})",
            crate::workspace::rel(ws, &path)
        );
    }
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    out.line(format!("deregistered {name}"));
    Ok(0)
}
