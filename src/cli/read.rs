//! Reading commands: status, jobs, show, log, validate. They read the files (and git),
//! never a running daemon.

use anyhow::{bail, Context, Result};
use chrono::Utc;
use serde_json::{json, Value};

use super::{Format, Out};
use crate::board::Entry;
use crate::card::State;
use crate::snapshot;
use crate::store::git::GitStore;
use crate::views::job::{self, JobRow, Page};
use crate::views::status;
use crate::workspace::Workspace;

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

/// `pas status`.
pub fn status(ws: &Workspace, at: Option<&str>, fmt: Format, out: &Out) -> Result<i32> {
    if fmt.json {
        out.json(&status::document(ws, at)?);
        return Ok(0);
    }
    let snap = status::load(ws, at)?;
    let waiting = status::waiting_reasons(&snap.board, Utc::now());
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
        if let Some(line) = repo_line(&status::repo(ws)) {
            out.line(line);
        }
    }
    let cap = status::capacity(&snap.board);
    if !cap.is_empty() {
        // Through JSON, so the figures read as `pas status --json` prints them.
        let parts: Vec<String> = (cap.iter())
            .map(|(k, c)| format!("{k} {}/{}", json!(c.used), json!(c.total)))
            .collect();
        out.line(format!("capacity in use: {}", parts.join(" · ")));
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
        archived = job::archived_page(ws, page)?;
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
        let rows: Vec<JobRow> = rows.iter().map(|(id, e)| job::row(id, e)).collect();
        out.json(&crate::views::value(&rows));
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

/// `pas show`.
pub fn show(ws: &Workspace, id: &str, fmt: Format, out: &Out) -> Result<i32> {
    let shown = job::shown(ws, id)?;
    if fmt.json {
        out.json(&crate::views::value(&shown.doc()));
        return Ok(0);
    }
    out.line(format!("# {}", shown.path));
    out.line(shown.entry.card.text().trim_end());
    if let Some(d) = &shown.diff {
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
        let (path, _) = job::locate(ws, id).with_context(|| format!("no card {id}"))?;
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
