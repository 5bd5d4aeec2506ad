//! Starting one run: the working folder, the template context from the card, its parent
//! and the definition, the rendered argv and environment, the process, and the threads
//! that read its output into the log and the transcript.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::definition::{self, Workdir};
use super::log::{Recent, RunLog};
use super::transcript::Transcript;
use super::worktree::{self, Worktree};
use super::Loaded;
use crate::card::Card;
use crate::workspace::{read_card, Workspace};

/// What the output threads of one run share.
pub struct Output {
    pub log: RunLog,
    pub recent: Recent,
    pub transcript: Transcript,
    /// When the process's first byte of output arrived.
    pub first_byte: Option<Instant>,
}

/// A run that has started.
pub struct Started {
    pub child: std::process::Child,
    pub output: Arc<Mutex<Output>>,
    pub readers: Vec<std::thread::JoinHandle<()>>,
    pub worktree: Option<Worktree>,
    /// Whether usage in the transcript is receipted (the run's calls bypass the gateway).
    pub receipts: bool,
    pub spawned_at: Instant,
}

/// A card's mapping as template values, with the keys templates commonly use present
/// (as none) even when the card lacks them, so `{{ card.description }}` is not an error.
fn card_value(card: &Card) -> Value {
    let mut v: Value = serde_yaml::from_str::<serde_yaml::Value>(card.text())
        .ok()
        .and_then(|y| serde_json::to_value(y).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), json!(card.id));
        for k in [
            "title",
            "description",
            "parent",
            "result",
            "error",
            "requires",
            "priority",
        ] {
            m.entry(k).or_insert(Value::Null);
        }
    }
    v
}

/// The template context of one run.
pub fn context(
    ws: &Workspace,
    agent: &Loaded,
    card: &Card,
    gateway: &str,
    workdir: &Path,
) -> minijinja::Value {
    let parent = card
        .spec
        .parent
        .as_deref()
        .and_then(|p| {
            ws.card_candidates(p)
                .into_iter()
                .chain(ws.find_archived(p))
                .find_map(|path| read_card(&path, p).ok())
        })
        .map(|c| card_value(&c))
        .unwrap_or_else(|| json!({"id": null, "title": null, "description": null, "result": null, "error": null}));
    let def = &agent.def;
    minijinja::Value::from_serialize(json!({
        "card": card_value(card),
        "parent": parent,
        "agent": {
            "name": def.name, "description": def.description, "model": def.model,
            "capabilities": def.capabilities, "body": agent.body,
        },
        "gateway": {
            "url": gateway, "openai_url": format!("{gateway}/v1"), "anthropic_url": gateway,
        },
        "workdir": workdir.display().to_string(),
    }))
}

/// The working folder of a run (making its worktree when asked for one).
fn workdir(ws: &Workspace, agent: &Loaded, id: &str) -> Result<(PathBuf, Option<Worktree>)> {
    let run = agent.run();
    match run.workdir() {
        Workdir::Workspace => Ok((ws.root.clone(), None)),
        Workdir::Path(p) => {
            let p = ws.root.join(p);
            if !p.is_dir() {
                bail!("run.workdir {} is not a folder", p.display());
            }
            Ok((p, None))
        }
        Workdir::Worktree => {
            let wt = worktree::create(&ws.root, id)?;
            Ok((wt.path.clone(), Some(wt)))
        }
    }
}

/// Parameters of one start.
pub struct Request<'a> {
    pub ws: &'a Workspace,
    pub agent: &'a Loaded,
    pub card: &'a Card,
    pub gateway: &'a str,
    pub log_path: PathBuf,
}

/// Starts the run of `req.card`. An error is the card's: it fails with it.
pub fn start(req: Request<'_>) -> Result<Started> {
    let Request {
        ws,
        agent,
        card,
        gateway,
        log_path,
    } = req;
    let run = agent.run();
    let id = &card.id;
    let (dir, wt) = workdir(ws, agent, id)?;
    let undo = |e: anyhow::Error| {
        if wt.is_some() {
            worktree::remove(&ws.root, id);
        }
        e
    };
    let ctx = context(ws, agent, card, gateway, &dir);
    let env = definition::environment();
    let mut argv = Vec::with_capacity(run.command.len());
    for c in &run.command {
        argv.push(
            definition::render(&env, c, &ctx).map_err(|e| undo(anyhow!("run.command: {e}")))?,
        );
    }
    let program = match &agent.program {
        Some(p) => p.clone(),
        None => definition::resolve_program(&argv[0], &ws.root).map_err(|e| undo(anyhow!(e)))?,
    };
    let trace = card
        .spec
        .pas
        .trace_id
        .clone()
        .zip(card.spec.pas.span_id.clone());
    let mut transcript = Transcript::new(
        run.transcript,
        ws.work().join("traces"),
        trace.clone(),
        &agent.def.name,
        id,
        &program.display().to_string(),
    );
    // The process's own calls nest under the run's span.
    let traceparent = trace
        .as_ref()
        .map(|(t, _)| format!("00-{t}-{}-01", transcript.run_span()));
    let mut vars: Vec<(String, String)> = vec![
        ("OPENAI_BASE_URL".into(), format!("{gateway}/v1")),
        ("ANTHROPIC_BASE_URL".into(), gateway.to_string()),
    ];
    for (k, v) in &run.env {
        let value =
            definition::render(&env, v, &ctx).map_err(|e| undo(anyhow!("run.env.{k}: {e}")))?;
        vars.retain(|(n, _)| n != k);
        vars.push((k.clone(), value));
    }
    let name = &agent.def.name;
    let mut headers = format!("x-pas-agent: {name}\nx-pas-job: {id}");
    if let Some(tp) = &traceparent {
        headers.push_str(&format!("\ntraceparent: {tp}"));
        vars.push(("TRACEPARENT".into(), tp.clone()));
    }
    vars.extend([
        ("PAS_GATEWAY_URL".into(), gateway.to_string()),
        ("PAS_AGENT".into(), name.clone()),
        ("PAS_JOB".into(), id.clone()),
        ("PAS_WORKSPACE".into(), ws.root.display().to_string()),
        ("PAS_ROOT".into(), ws.root.display().to_string()),
        ("PAS_HEADERS".into(), headers.clone()),
        ("ANTHROPIC_CUSTOM_HEADERS".into(), headers),
    ]);
    let receipts = !vars.iter().any(|(k, v)| {
        k == "ANTHROPIC_BASE_URL" && v.trim_end_matches('/') == gateway.trim_end_matches('/')
    });
    let cap = run.max_log_bytes.unwrap_or(definition::DEFAULT_MAX_LOG);
    // Only the argv goes in the log: the environment may hold secrets.
    let mut log = RunLog::open(
        &log_path,
        cap,
        &format!(
            "{} run of {id} by {name}: {program:?} {:?} in {}",
            chrono::Utc::now().to_rfc3339(),
            &argv[1..],
            dir.display()
        ),
    );
    let spawned_at = Instant::now();
    let mut child = match super::process::spawn(&program, &argv[1..], &dir, &vars) {
        Ok(c) => c,
        Err(e) => {
            log.note(&format!("cannot start {}: {e}", program.display()));
            log.close();
            transcript.close(false, "");
            return Err(undo(
                anyhow::Error::new(e).context(format!("cannot start {}", program.display())),
            ));
        }
    };
    let output = Arc::new(Mutex::new(Output {
        log,
        recent: Recent::default(),
        transcript,
        first_byte: None,
    }));
    let mut readers = Vec::new();
    let pipes: [(Option<Box<dyn Read + Send>>, bool); 2] = [
        (
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            true,
        ),
        (
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            false,
        ),
    ];
    for (pipe, is_stdout) in pipes {
        let Some(pipe) = pipe else { continue };
        let out = output.clone();
        let h = std::thread::Builder::new()
            .name(format!("pas-run-{}", if is_stdout { "out" } else { "err" }))
            .spawn(move || read_pipe(pipe, &out, is_stdout))
            .context("cannot start a thread to read the run's output")?;
        readers.push(h);
    }
    Ok(Started {
        child,
        output,
        readers,
        worktree: wt,
        receipts,
        spawned_at,
    })
}

/// Longest line the transcript looks at; longer ones are only logged.
const MAX_LINE: usize = 1 << 20;

/// Copies one pipe into the log (and, for stdout, line by line into the transcript).
fn read_pipe(mut pipe: Box<dyn Read + Send>, out: &Mutex<Output>, is_stdout: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut skipping = false;
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Ok(mut o) = out.lock() else { break };
        o.first_byte.get_or_insert_with(Instant::now);
        o.log.write(&buf[..n]);
        o.recent.push(&buf[..n]);
        if !is_stdout {
            continue;
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                if !skipping {
                    o.transcript.line(&String::from_utf8_lossy(&line));
                }
                line.clear();
                skipping = false;
            } else if !skipping {
                line.push(b);
                if line.len() > MAX_LINE {
                    line.clear();
                    skipping = true;
                }
            }
        }
    }
    if is_stdout && !line.is_empty() && !skipping {
        if let Ok(mut o) = out.lock() {
            o.transcript.line(&String::from_utf8_lossy(&line));
        }
    }
}
