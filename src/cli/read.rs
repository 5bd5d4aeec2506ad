//! Reading commands: status, jobs, show, log, validate. They read the files (and git),
//! never a running daemon.

use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{Format, Out};
use crate::board::{Board, Entry};
use crate::card::State;
use crate::snapshot::{self, Snapshot};
use crate::store::git::GitStore;
use crate::workspace::Workspace;

/// The board as JSON in the SPEC's `pas status --json` shape (and a little more).
pub fn status_json(snap: &Snapshot, waiting: &[(String, String)]) -> Value {
    let counts = snap.board.counts();
    let loads = snap.board.loads();
    let now = Utc::now();
    let agents: Vec<Value> = snap
        .board
        .agents
        .values()
        .map(|a| super::agents::agent_json(a, &loads, now))
        .collect();
    json!({
        "jobs": {
            "inbox": counts[&State::Inbox],
            "assigned": counts[&State::Assigned],
            "review": counts[&State::Review],
            "done": counts[&State::Done],
            "failed": counts[&State::Failed],
            "archived": counts[&State::Archived],
            "rejected": snap.rejected,
        },
        "agents": agents,
        "waiting": waiting.iter().map(|(id, r)| json!({"id": id, "reason": r})).collect::<Vec<_>>(),
        "problems": snap.problems.iter().map(|(p, r)| json!({"path": p, "problem": r})).collect::<Vec<_>>(),
        "cost_usd": {"today": "0", "month": "0", "total": "0"},
        "capacity": capacity_json(&snap.board),
    })
}

/// The repository's size and growth (`null` without git): `store::git::upkeep::report`.
pub fn repo_json(ws: &Workspace) -> Value {
    match GitStore::open(&ws.root) {
        Ok(Some(git)) => {
            crate::store::git::upkeep::report(git.git_dir(), &ws.db_path(), Utc::now())
        }
        _ => Value::Null,
    }
}

/// The repository's size and growth in one line, from `repo_json`.
fn repo_line(repo: &Value) -> Option<String> {
    let mb = |v: &Value| v.as_f64().map(|b| format!("{:.1} MB", b / 1e6));
    let mut line = format!(
        "repo: {} (packs {} in {}, loose {} in {} objects)",
        mb(&repo["bytes"])?,
        mb(&repo["packs"]["bytes"])?,
        repo["packs"]["count"],
        mb(&repo["loose"]["bytes"])?,
        repo["loose"]["objects"],
    );
    if let Some(n) = repo["commits"].as_u64() {
        line.push_str(&format!(" · {n} commits"));
    }
    if let Some(h) = mb(&repo["growth"]["bytes_per_hour"]) {
        line.push_str(&format!(" · growing {h} an hour"));
    }
    Some(line)
}

/// Each managed resource: its capacity and what assigned cards hold.
fn capacity_json(board: &Board) -> Value {
    let cap = &board.defaults.capacity;
    let used = board.resources_used(&Default::default());
    let mut v = serde_json::Map::new();
    let rows = [
        ("cpu", cap.cpu, used.cpu),
        ("mem_mb", cap.mem_mb.map(|c| c as f64), used.mem_mb as f64),
        ("gpu", cap.gpu.map(|c| c as f64), used.gpu as f64),
        (
            "gpu_mem_mb",
            cap.gpu_mem_mb.map(|c| c as f64),
            used.gpu_mem_mb as f64,
        ),
    ];
    for (name, total, used) in rows {
        if let Some(total) = total {
            v.insert(name.into(), json!({"total": total, "used": used}));
        }
    }
    Value::Object(v)
}

/// Why each inbox card waits, from the same rules the daemon runs. A card the rules
/// would place now is shown as ready for that agent (the daemon has not taken it yet).
pub fn waiting_reasons(board: &Board, now: DateTime<Utc>) -> Vec<(String, String)> {
    let plan = board.plan(now);
    let mut out: Vec<(String, String)> = plan.waiting;
    out.extend(
        plan.fail
            .into_iter()
            .map(|(id, reason)| (id, format!("will fail: {reason}"))),
    );
    out.extend(
        plan.assign
            .into_iter()
            .map(|(id, agent)| (id, format!("ready for {agent} (is pas serve running?)"))),
    );
    let key = |id: &str| {
        board
            .cards
            .get(id)
            .map(|e| (e.card.spec.priority, e.created))
    };
    out.sort_by(|a, b| key(&a.0).cmp(&key(&b.0)).then(a.0.cmp(&b.0)));
    out
}

fn load(ws: &Workspace, at: Option<&str>) -> Result<Snapshot> {
    match at {
        None => snapshot::load_with(ws, snapshot::Depth::Board),
        Some(rev) => {
            let git = GitStore::open(&ws.root)?
                .with_context(|| format!("{} is not in a git repository", ws.root.display()))?;
            let oid = git.resolve_rev(rev, Utc::now())?;
            let files = git.files_at(oid, Path::new("work"))?;
            snapshot::load_at(ws, files, snapshot::Depth::Board)
        }
    }
}

/// `pas status`.
pub fn status(ws: &Workspace, at: Option<&str>, fmt: Format, out: &Out) -> Result<i32> {
    let snap = load(ws, at)?;
    let waiting = waiting_reasons(&snap.board, Utc::now());
    if fmt.json {
        let mut v = status_json(&snap, &waiting);
        v["root"] = json!(ws.root.display().to_string());
        if at.is_none() {
            v["cost_usd"] = super::llm::cost_totals(ws);
        }
        v["daemon"] = json!(crate::workspace::lock::holder(ws).map(|p| json!({"pid": p})));
        v["repo"] = repo_json(ws);
        if let Some(rev) = at {
            v["at"] = json!(rev);
        }
        out.json(&v);
        return Ok(0);
    }
    let counts = snap.board.counts();
    let daemon = match crate::workspace::lock::holder(ws) {
        Some(pid) => format!("daemon running (pid {pid})"),
        None => "daemon not running".into(),
    };
    out.line(format!(
        "pas {}{} — {daemon}",
        ws.root.display(),
        at.map(|r| format!(" at {r}")).unwrap_or_default()
    ));
    out.line(format!(
        "jobs: inbox {} · assigned {} · review {} · done {} · failed {} · archived {} · rejected {}",
        counts[&State::Inbox],
        counts[&State::Assigned],
        counts[&State::Review],
        counts[&State::Done],
        counts[&State::Failed],
        counts[&State::Archived],
        snap.rejected
    ));
    if at.is_none() {
        if let Some(line) = repo_line(&repo_json(ws)) {
            out.line(line);
        }
    }
    if let Value::Object(cap) = capacity_json(&snap.board) {
        let parts: Vec<String> = cap
            .iter()
            .map(|(k, v)| format!("{k} {}/{}", v["used"], v["total"]))
            .collect();
        if !parts.is_empty() {
            out.line(format!("capacity in use: {}", parts.join(" · ")));
        }
    }
    let loads = snap.board.loads();
    let mut t = out.table(&["AGENT", "STATUS", "ASSIGNED", "PARENT", "CAPABILITIES"]);
    for a in snap.board.agents.values() {
        let mut caps: Vec<String> = a.def.iter().flat_map(|d| d.capabilities.clone()).collect();
        caps.extend(a.reg.iter().flat_map(|r| r.capabilities.clone()));
        caps.dedup();
        t.add_row(vec![
            a.name.clone(),
            a.status().to_string(),
            format!(
                "{}/{}",
                loads.get(a.name.as_str()).copied().unwrap_or(0),
                a.max_concurrent()
            ),
            a.parent().unwrap_or("-").to_string(),
            caps.join(","),
        ]);
    }
    out.line("");
    out.print_table(&t);
    if !waiting.is_empty() {
        out.line("");
        let mut t = out.table(&["WAITING", "PRIORITY", "WHY"]);
        for (id, reason) in waiting.iter().take(50) {
            let prio = snap
                .board
                .cards
                .get(id)
                .map(|e| e.card.spec.priority.as_str())
                .unwrap_or("");
            t.add_row(vec![id.clone(), prio.to_string(), reason.clone()]);
        }
        out.print_table(&t);
        if waiting.len() > 50 {
            out.line(format!(
                "... and {} more waiting (pas jobs --state inbox)",
                waiting.len() - 50
            ));
        }
    }
    for (path, problem) in &snap.problems {
        out.line(format!("problem: {path}: {problem}"));
    }
    Ok(0)
}

fn job_json(id: &str, e: &Entry) -> Value {
    let s = &e.card.spec;
    json!({
        "id": id,
        "state": e.place.state,
        "agent": e.place.agent,
        "title": s.title,
        "kind": s.kind,
        "priority": s.priority,
        "requires": s.requires,
        "assignee": s.assignee,
        "depends_on": s.depends_on,
        "attempts": s.pas.attempts,
        "waiting_for": s.pas.waiting_for,
        "created": e.created,
    })
}

/// Which part of a long list to show.
#[derive(Debug, Clone, Copy, Default)]
pub struct Page {
    pub offset: usize,
    pub limit: Option<usize>,
}

/// `pas jobs`. With a state, only that state's folder is read; archived cards are listed
/// newest day first and only the page shown is read. Without one, every card but the
/// archived ones.
pub fn jobs(
    ws: &Workspace,
    state: Option<&str>,
    agent: Option<&str>,
    page: Page,
    fmt: Format,
    out: &Out,
) -> Result<i32> {
    let state = match state {
        None => None,
        Some(s) => Some(
            State::ALL
                .into_iter()
                .find(|x| x.name() == s || x.dir() == s)
                .with_context(|| {
                    format!("unknown state {s:?} (inbox, assigned, done, failed, archived)")
                })?,
        ),
    };
    let snap;
    let archived;
    let mut rows: Vec<(&String, &Entry)> = if state == Some(State::Archived) {
        archived = archived_page(ws, page)?;
        archived.iter().map(|(id, e)| (id, e)).collect()
    } else {
        snap = match state {
            Some(s) => snapshot::load_state(ws, s)?,
            None => snapshot::load(ws)?,
        };
        let mut rows: Vec<(&String, &Entry)> = snap
            .board
            .cards
            .iter()
            .filter(|(_, e)| e.place.state != State::Archived || state.is_some())
            .filter(|(_, e)| agent.is_none_or(|a| e.place.agent.as_deref() == Some(a)))
            .collect();
        rows.sort_by(|a, b| {
            (a.1.place.state, a.1.card.spec.priority, a.1.created, a.0).cmp(&(
                b.1.place.state,
                b.1.card.spec.priority,
                b.1.created,
                b.0,
            ))
        });
        let rows = rows.into_iter().skip(page.offset);
        rows.take(page.limit.unwrap_or(usize::MAX)).collect()
    };
    if state == Some(State::Archived) && agent.is_some() {
        rows.clear(); // an archived card is with no agent
    }
    if fmt.json {
        out.json(&Value::Array(
            rows.iter().map(|(id, e)| job_json(id, e)).collect(),
        ));
        return Ok(0);
    }
    let mut t = out.table(&["ID", "STATE", "PRIORITY", "AGENT", "ATTEMPTS", "TITLE"]);
    for (id, e) in rows {
        t.add_row(vec![
            id.clone(),
            e.place.state.name().to_string(),
            e.card.spec.priority.as_str().to_string(),
            e.place.agent.clone().unwrap_or_else(|| "-".into()),
            e.card.spec.pas.attempts.to_string(),
            e.card.spec.title.clone(),
        ]);
    }
    out.print_table(&t);
    Ok(0)
}

/// One page of the archive, newest day first (ids descending within a day): only the day
/// folders the page reaches are listed, and only the page's cards are read.
pub fn archived_page(ws: &Workspace, page: Page) -> Result<Vec<(String, Entry)>> {
    let want = page.offset.saturating_add(page.limit.unwrap_or(usize::MAX));
    let mut found: Vec<(String, std::path::PathBuf, crate::board::Place)> = Vec::new();
    for day in ws.archive_days() {
        if found.len() >= want {
            break;
        }
        let dir = ws.state_dir(State::Archived).join(&day);
        let mut here: Vec<(String, std::path::PathBuf, crate::board::Place)> = ws
            .scan_dir(&dir)
            .into_iter()
            .filter_map(|(p, k)| match k {
                crate::workspace::Kind::Card { id, place } => Some((id, p, place)),
                _ => None,
            })
            .collect();
        // Newest first within a day too, as far as ids tell (pas submit's ULIDs do).
        here.sort_by(|a, b| b.0.cmp(&a.0));
        found.extend(here);
    }
    let page_rows = found.into_iter().skip(page.offset).take(want - page.offset);
    let mut out = Vec::new();
    for (id, path, place) in page_rows {
        match crate::workspace::read_card(&path, &id) {
            Ok(card) => {
                let created = card
                    .spec
                    .pas
                    .history
                    .first()
                    .map_or(DateTime::UNIX_EPOCH, |h| h.at);
                out.push((
                    id,
                    Entry {
                        card,
                        place,
                        created,
                    },
                ));
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "archived card unreadable")
            }
        }
    }
    Ok(out)
}

/// Where card `id` is, looking only where it can be (the live folders, then the archive
/// day by day, newest first): `pas show` reads one file, not the whole tree.
pub fn locate(ws: &Workspace, id: &str) -> Option<(std::path::PathBuf, crate::board::Place)> {
    if !crate::card::valid_id(id) {
        return None;
    }
    ws.card_candidates(id)
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .find_map(|p| match ws.classify(&p) {
            crate::workspace::Kind::Card { place, .. } => Some((p, place)),
            _ => None,
        })
}

/// `pas show`.
pub fn show(ws: &Workspace, id: &str, fmt: Format, out: &Out) -> Result<i32> {
    let Some((path, place)) = locate(ws, id) else {
        bail!("no card {id} in work/ (inbox, assigned, review, done, failed, archive)");
    };
    let card = crate::workspace::read_card(&path, id)
        .map_err(|e| anyhow::anyhow!("{}: {e}", crate::workspace::rel(ws, &path)))?;
    let created = card.spec.pas.history.first().map_or_else(
        || crate::workspace::mtime(&path).unwrap_or(DateTime::UNIX_EPOCH),
        |h| h.at,
    );
    let diff = crate::review::card_diff(&ws.root, &card.spec.pas);
    let e = Entry {
        card,
        place,
        created,
    };
    if fmt.json {
        let doc: serde_yaml::Value = serde_yaml::from_str(e.card.text()).unwrap_or_default();
        let mut v = job_json(id, &e);
        v["path"] = json!(crate::workspace::rel(ws, &path));
        v["card"] = serde_json::to_value(doc).unwrap_or(Value::Null);
        v["history"] = serde_json::to_value(&e.card.spec.pas.history)?;
        if let Some(d) = &diff {
            v["diff"] = serde_json::to_value(d)?;
        }
        out.json(&v);
        return Ok(0);
    }
    out.line(format!("# {}", crate::workspace::rel(ws, &path)));
    out.line(e.card.text().trim_end());
    if let Some(d) = &diff {
        out.line(format!(
            "\n# diff {}..{} ({} files changed)",
            d.base, d.branch, d.files
        ));
        match &d.error {
            Some(err) => out.line(format!("(no diff: {err})")),
            None => out.line(d.text.trim_end()),
        }
    }
    Ok(0)
}

/// `pas log`: the card's commits (or its own history when git is off).
pub fn log(ws: &Workspace, id: &str, fmt: Format, out: &Out) -> Result<i32> {
    let cfg = ws.config()?;
    let git = if cfg.git.enabled {
        GitStore::open(&ws.root)?
    } else {
        None
    };
    let Some(git) = git else {
        let (path, _) = locate(ws, id).with_context(|| format!("no card {id}"))?;
        let card = crate::workspace::read_card(&path, id)
            .map_err(|e| anyhow::anyhow!("{}: {e}", crate::workspace::rel(ws, &path)))?;
        if fmt.json {
            out.json(&serde_json::to_value(&card.spec.pas.history)?);
        } else {
            for h in &card.spec.pas.history {
                out.line(format!(
                    "{}  {} -> {}  {}",
                    h.at.to_rfc3339(),
                    h.from,
                    h.to,
                    h.by.clone().unwrap_or_default()
                ));
            }
        }
        return Ok(0);
    };
    let commits = card_commits(ws, &git, id)?;
    if commits.is_empty() {
        bail!("no commit mentions card {id}");
    }
    if fmt.json {
        out.json(&serde_json::to_value(&commits)?);
        return Ok(0);
    }
    for c in commits.iter().rev() {
        for l in &c.lines {
            out.line(format!(
                "{}  {}  {}  {l}",
                c.short,
                c.time.format("%Y-%m-%d %H:%M:%S"),
                c.author
            ));
        }
    }
    Ok(0)
}

/// A card's commits, newest first: from the history index in the telemetry database when
/// it reaches HEAD's history, else from one pass over git (see `store::git::hindex`).
/// `PAS_LOG_READ=walk` reads them the way pas did before the index (one walk of the whole
/// log per card) and `PAS_LOG_READ=pass` skips the index, for `pas bench history`.
fn card_commits(
    ws: &Workspace,
    git: &GitStore,
    id: &str,
) -> Result<Vec<crate::store::git::CommitInfo>> {
    let how = std::env::var("PAS_LOG_READ").unwrap_or_default();
    if how == "walk" {
        return Ok(git.history_of(id)?);
    }
    let db = ws.db_path();
    let db = Some(db.as_path()).filter(|_| how != "pass");
    let (commits, source) = git.card_history(db, id)?;
    tracing::debug!(job = id, ?source, "pas log read");
    Ok(commits)
}

/// `pas reindex`: the history index rebuilt from git in one pass.
pub fn reindex(ws: &Workspace, fmt: Format, out: &Out) -> Result<i32> {
    let git = GitStore::open(&ws.root)?
        .with_context(|| format!("{} is not in a git repository", ws.root.display()))?;
    let started = std::time::Instant::now();
    let done = crate::store::git::hindex::rebuild(&git, &ws.db_path())?;
    let took_ms = started.elapsed().as_millis() as u64;
    if fmt.json {
        let mut v = serde_json::to_value(&done)?;
        v["took_ms"] = json!(took_ms);
        out.json(&v);
        return Ok(0);
    }
    out.line(format!(
        "indexed {} commits ({} touching {} cards) in {} ms (pass {} ms, write {} ms)",
        done.commits, done.card_commits, done.cards, took_ms, done.pass_ms, done.write_ms
    ));
    Ok(0)
}

/// `pas validate`: exit 1 when any file breaks its contract.
pub fn validate(ws: &Workspace, fmt: Format, out: &Out) -> Result<i32> {
    let findings = crate::validate::validate_workspace(&ws.root)?;
    if fmt.json {
        out.json(&serde_json::to_value(&findings)?);
    } else if findings.is_empty() {
        out.line("every file matches its contract");
    } else {
        for f in &findings {
            out.line(f.to_string());
        }
        out.line(format!("{} problem(s)", findings.len()));
    }
    Ok(if findings.is_empty() { 0 } else { 1 })
}
