//! Settling a run that exited: what is left of its group is ended, its output drained,
//! its log and spans closed, its worktree committed, its transcript receipted, and its
//! card moved (only while the run still holds it).

use std::process::ExitStatus;
use std::time::Instant;

use super::cards::{self, Outcome};
use super::orphans;
use super::runs_dir;
use super::supervise::{Ending, Run, RunStat, Shared};
use super::worktree;

/// Settles a run that exited: ends what is left of its group, drains its output, closes
/// its log and spans, commits its worktree, writes transcript receipts, moves its card.
pub(super) fn settle(shared: &Shared, id: &str, run: Run, status: ExitStatus, exited: Instant) {
    let ws = &shared.ws;
    let agent = &shared.agent;
    let name = &agent.def.name;
    // Children the process left behind in its group would hold the pipes open.
    super::process::end_group(run.pgid, agent.run().grace());
    for r in run.readers {
        let _ = r.join();
    }
    let (tail, final_message, usage, first_byte) = match run.output.lock() {
        Ok(mut o) => {
            let tail = o.recent.lines(20);
            let verdict = match &run.ending {
                None => format!("exited with {status}"),
                Some(e) => format!(
                    "exited with {status} after pas ended it ({e:?}): its outcome changes nothing"
                ),
            };
            o.log.note(&verdict);
            o.log.close();
            let ok = status.success() && run.ending.is_none();
            o.transcript.close(ok, &tail);
            (
                tail,
                o.transcript.final_message(),
                o.transcript.usage(),
                o.first_byte,
            )
        }
        Err(_) => (String::new(), None, Vec::new(), None),
    };
    let why = match &run.ending {
        None if status.success() => "done",
        None => "failed",
        Some(_) => "ended by pas",
    };
    let commit = run
        .worktree
        .as_ref()
        .and_then(|_| worktree::finish(&ws.root, id, name, why));
    let outcome = match run.ending {
        None if status.success() => Some(Outcome::Done {
            result: final_message.unwrap_or_else(|| tail.clone()),
            review: run
                .worktree
                .as_ref()
                .map(|w| (w.branch.clone(), w.base.clone())),
            to_review: agent.run().review,
        }),
        None => Some(Outcome::Failed {
            error: match status.code() {
                Some(c) => format!("exit status {c}; the log's last lines:\n{tail}"),
                None => format!("{status}; the log's last lines:\n{tail}"),
            },
        }),
        Some(Ending::Timeout(reason)) => Some(Outcome::TakeBack { reason }),
        Some(Ending::TakenBack(_) | Ending::Stop) => None,
    };
    if run.receipts && !usage.is_empty() {
        let rows = super::receipts::rows(
            &shared.cfg,
            name,
            id,
            &ulid::Ulid::new().to_string(),
            &usage,
        );
        if let Err(e) = super::receipts::record(&ws.db_path(), &rows) {
            tracing::error!(job = id, error = %format!("{e:#}"), "cannot write the run's transcript receipts");
        }
    }
    if let Some(outcome) = outcome {
        match cards::settle(
            ws,
            name,
            id,
            run.assigned_at,
            &outcome,
            shared.cfg.max_attempts,
        ) {
            Ok(Some(to)) => {
                tracing::info!(job = id, agent = %name, to = %crate::workspace::rel(ws, &to), commit = ?commit, "run settled")
            }
            Ok(None) => {
                tracing::info!(job = id, agent = %name, "run ended after its card moved on: nothing changed")
            }
            Err(e) => {
                tracing::error!(job = id, error = %format!("{e:#}"), "cannot move the run's card")
            }
        }
    }
    orphans::remove(&runs_dir(ws), id);
    if let Some(stats) = &shared.stats {
        if let Ok(mut s) = stats.lock() {
            s.push(RunStat {
                job: id.to_string(),
                first_byte: first_byte.map(|f| f.duration_since(run.spawned_at)),
                exit_to_moved: exited.elapsed(),
                rss_kib: run.rss_kib,
            });
        }
    }
}
