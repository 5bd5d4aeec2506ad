//! Pushing a host's pending transitions: one commit on the remote's freshly fetched tip,
//! each card's claim moved with it (renewed, or ended at a terminal commit), all in one
//! atomic push; replayed on the new tip when another host moved the branch first.

use std::collections::HashMap;
use std::time::Instant;

use super::claim::{self, claim_ref, ClaimNote, Outcome, CLAIMS_NS};
use super::git::{RefUpdate, RemoteError};
use super::replica::{Pushed, Replica};

/// Per card: the claim's new commit, and how it ended (`None`: renewed).
type Ends = HashMap<String, (String, Option<Outcome>)>;

impl Replica {
    /// Pushes every pending transition in one commit on the remote's tip, each card's
    /// claim moved with it, all in one atomic push; fetches and replays when another host
    /// moved the branch first.
    pub fn push_pending(&mut self, now: Instant) -> Result<Pushed, RemoteError> {
        let mut out = Pushed::default();
        for tries in 0..50u64 {
            if self.pending.is_empty() {
                return Ok(out);
            }
            let (commit, updates, ends) = self.build_push()?;
            let res = self.git.push_cas(&updates, true);
            self.stats.reachable = !matches!(&res, Err(e) if e.is_unreachable());
            let results = res?;
            if results.iter().all(|r| r.ok) {
                self.landed(commit, ends, now, &mut out);
                return Ok(out);
            }
            let branch = format!("refs/heads/{}", self.branch);
            for r in results.iter().filter(|r| r.lost_lease() && r.dst != branch) {
                let Some(id) = r.dst.strip_prefix(CLAIMS_NS).map(str::to_string) else {
                    continue;
                };
                self.stats.finishes_refused += 1;
                // A takeover that lost: someone renewed or took it first. Drop it.
                self.pending.retain(|op| op.card != id);
                self.lose(&id);
                out.refused.push(id);
            }
            if results.iter().any(|r| r.dst == branch && r.lost_lease()) {
                self.stats.branch_retries += 1;
            } else {
                // The remote's ref transaction could not lock (a prune of ended claims
                // holds `packed-refs.lock`): transient. Wait a moment, varied per try and
                // host, so the pushers do not collide again in step.
                let why: Vec<String> = (results.iter())
                    .filter(|r| !r.ok)
                    .map(|r| format!("{} {}", r.dst, r.reason))
                    .collect();
                tracing::debug!(host = %self.host, refused = ?why, "push refused for another reason; trying again");
                let jitter = u64::from(std::process::id() % 7) + tries * 13 % 50;
                std::thread::sleep(std::time::Duration::from_millis(20 + jitter));
            }
            self.fetch(now)?;
        }
        Err(RemoteError::Git {
            what: "push".into(),
            dir: self.git.dir.clone(),
            message: "the branch kept moving: 50 tries without landing".into(),
        })
    }

    /// The commit of the pending transitions on the tip, and the ref updates that carry it.
    fn build_push(&mut self) -> Result<(git2::Oid, Vec<RefUpdate>, Ends), RemoteError> {
        let tip = self.tip.ok_or_else(|| RemoteError::Git {
            what: "push".into(),
            dir: self.git.dir.clone(),
            message: format!("no remote branch {} fetched yet", self.branch),
        })?;
        let base = self.repo.find_commit(tip).map_err(|e| self.local(e))?;
        let tree = base.tree().map_err(|e| self.local(e))?;
        let mut builder = git2::build::TreeUpdateBuilder::new();
        let mut lines = Vec::new();
        let mut claims: HashMap<String, (Option<String>, ClaimNote, Option<Outcome>, String)> =
            HashMap::new();
        // What the transitions so far did to the tip's tree: path -> blob (None: gone).
        let mut overlay: HashMap<String, Option<git2::Oid>> = HashMap::new();
        for op in &self.pending {
            let from = match overlay.get(&op.from) {
                Some(o) => *o,
                None => (tree.get_path(std::path::Path::new(&op.from)).ok()).map(|e| e.id()),
            };
            match from {
                Some(id) => {
                    let blob = match &op.text {
                        Some(t) => self.repo.blob(t).map_err(|e| self.local(e))?,
                        None => id,
                    };
                    if op.from != op.to {
                        overlay.insert(op.from.clone(), None);
                    }
                    overlay.insert(op.to.clone(), Some(blob));
                    lines.push(op.line.clone());
                }
                // Already there, or moved by someone else (a person): only the claim moves.
                None => {
                    tracing::debug!(job = %op.card, from = %op.from, "card not where the transition starts; only its claim moves")
                }
            }
            let (expect, note) = match (&op.takeover, self.held.get(&op.card)) {
                (Some((oid, note)), _) => (Some(oid.clone()), note.clone()),
                (None, Some(h)) => (Some(h.oid.clone()), h.note.clone()),
                (None, None) => continue,
            };
            let e = claims
                .entry(op.card.clone())
                .or_insert((expect, note, None, String::new()));
            if op.end.is_some() {
                e.2 = op.end;
                e.3 = op.line.clone();
            }
        }
        for (path, blob) in &overlay {
            match blob {
                Some(b) => builder.upsert(path.as_str(), *b, git2::FileMode::Blob),
                // Only what the tip has can be removed (not a file an earlier transition
                // of this push put there).
                None if tree.get_path(std::path::Path::new(path)).is_ok() => {
                    builder.remove(path.as_str())
                }
                None => &mut builder,
            };
        }
        let new_tree = builder
            .create_updated(&self.repo, &tree)
            .and_then(|t| self.repo.find_tree(t))
            .map_err(|e| self.local(e))?;
        let subject = match lines.len() {
            0 => format!("pas: claims ended on {}", self.host),
            1 => lines[0].clone(),
            n => format!("{}, +{} more", lines[0], n - 1),
        };
        let message = format!(
            "{subject}\n\n{}\n\nPas-Host: {}\n",
            lines.join("\n"),
            self.host
        );
        let sig = git2::Signature::now("pas", "pas@localhost").map_err(|e| self.local(e))?;
        let commit = self
            .repo
            .commit(None, &sig, &sig, &message, &new_tree, &[&base])
            .map_err(|e| self.local(e))?;
        let mut updates = vec![RefUpdate {
            src: commit.to_string(),
            dst: format!("refs/heads/{}", self.branch),
            expect: Some(tip.to_string()),
        }];
        let mut ends = HashMap::new();
        for (id, (expect, mut note, end, why)) in claims {
            let parent = expect.as_deref().and_then(|o| git2::Oid::from_str(o).ok());
            if end.is_some() {
                note.ended = end;
                note.host = self.host.clone();
            }
            let why = if end.is_some() { why } else { "renewed".into() };
            let oid = claim::write_claim(&self.repo, &note, &why, parent)?.to_string();
            updates.push(RefUpdate {
                src: oid.clone(),
                dst: claim_ref(&id),
                expect,
            });
            ends.insert(id, (oid, end));
        }
        Ok((commit, updates, ends))
    }

    fn landed(&mut self, commit: git2::Oid, ends: Ends, now: Instant, out: &mut Pushed) {
        for op in self.pending.drain(..) {
            if op.takeover.is_some() {
                self.stats.takeovers += 1;
            } else if op.end == Some(Outcome::Finished) {
                self.stats.finishes += 1;
            }
            out.landed.push(op.card);
        }
        for (id, (oid, end)) in ends {
            match end {
                Some(_) => {
                    self.held.remove(&id);
                }
                None => {
                    if let Some(h) = self.held.get_mut(&id) {
                        h.oid = oid;
                        h.renewed = now;
                    }
                }
            }
        }
        self.tip = Some(commit);
        self.stats.last_push = Some(now);
        let local = format!("refs/remotes/{}/{}", self.git.remote, self.branch);
        let _ = self
            .repo
            .reference(&local, commit, true, "pas: pushed to the remote");
    }
}
