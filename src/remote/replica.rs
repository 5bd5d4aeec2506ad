//! One host's side of the protocol: its clone, the claims it holds, the transitions it has
//! not pushed yet, and the pushes that carry them.
//!
//! Every push that touches a card also moves that card's claim ref with compare-and-swap
//! from the last value this host saw: an assignment renews the claim, a finish moves it to
//! a terminal commit. So a host that lost its claim (a takeover while it was paused) can
//! neither assign nor finish the card: its push is refused as a whole (`--atomic`).
//!
//! Transitions are replayed on the remote's tip at each push (a rebase of operations, not
//! of text): nothing is merged line by line, so no transition is lost and no JSONL file
//! ever sees git's `union` driver.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::claim::{self, claim_ref, ClaimNote, Outcome, CLAIMS_NS};
use super::git::{Git, RefUpdate, RemoteError};
use super::lease::{renew_every, Observer};

/// Where a host keeps its copy of the remote's claims (fetched with their objects).
const SEEN_NS: &str = "refs/pas/seen/";

/// What a host knows about the remote and its own claims.
pub struct Replica {
    pub git: Git,
    pub(super) repo: git2::Repository,
    pub host: String,
    pub branch: String,
    pub lease: Duration,
    pub grace: Duration,
    pub(super) observer: Observer,
    /// Claims this host holds: card -> its claim's last commit on the remote.
    pub(super) held: HashMap<String, Held>,
    /// The remote's branch tip at the last fetch.
    pub(super) tip: Option<git2::Oid>,
    /// Transitions made here and not yet on the remote, in order.
    pub(super) pending: Vec<Op>,
    /// When the last fetch succeeded (this host's monotonic clock).
    fetched_at: Option<Instant>,
    pub stats: Stats,
}

#[derive(Debug, Clone)]
pub(super) struct Held {
    pub(super) oid: String,
    pub(super) note: ClaimNote,
    pub(super) renewed: Instant,
}

/// Counters for `pas remote status` and the bench.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub claims_won: u64,
    pub claims_lost: u64,
    pub finishes: u64,
    pub finishes_refused: u64,
    pub takeovers: u64,
    pub branch_retries: u64,
    pub last_push: Option<Instant>,
    pub reachable: bool,
}

/// One transition of a card, as a file move in the branch's tree.
#[derive(Debug, Clone)]
pub struct Op {
    pub card: String,
    /// From this path to that one (paths in the tree, e.g. `work/inbox/J-7.yaml`).
    pub from: String,
    pub to: String,
    /// The card's new text (`None`: it moves as it is).
    pub text: Option<Vec<u8>>,
    /// Ends the claim (a finish, a take-back); `None` renews it.
    pub end: Option<Outcome>,
    /// The commit line, e.g. `pas: J-7 inbox -> assigned/coder-1`.
    pub line: String,
    /// For a takeover: the other host's claim commit this one replaces.
    pub(super) takeover: Option<(String, ClaimNote)>,
}

impl Op {
    pub fn new(card: &str, from: String, to: String, end: Option<Outcome>) -> Op {
        let line = format!("pas: {card} {} -> {}", place(&from), place(&to));
        Op {
            card: card.to_string(),
            from,
            to,
            text: None,
            end,
            line,
            takeover: None,
        }
    }
}

/// `work/assigned/a/J.yaml` -> `assigned/a`.
fn place(path: &str) -> String {
    let p = path.strip_prefix("work/").unwrap_or(path);
    p.rsplit_once('/').map_or(p, |(dir, _)| dir).to_string()
}

/// How a claim attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    Won,
    /// Another host's push landed first.
    Lost,
}

/// What one push of pending transitions did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pushed {
    /// Cards whose transitions reached the remote.
    pub landed: Vec<String>,
    /// Cards whose claim this host had lost: their transitions were dropped.
    pub refused: Vec<String>,
}

impl Replica {
    /// A replica over the clone at `dir`, pushing to `remote`'s `branch`.
    pub fn open(
        dir: &std::path::Path,
        remote: &str,
        branch: &str,
        host: &str,
        lease: Duration,
    ) -> Result<Replica, RemoteError> {
        Ok(Replica {
            git: Git::new(dir, remote),
            repo: claim::open(dir)?,
            host: host.to_string(),
            branch: branch.to_string(),
            lease,
            grace: lease / 2,
            observer: Observer::default(),
            held: HashMap::new(),
            tip: None,
            pending: Vec::new(),
            fetched_at: None,
            stats: Stats::default(),
        })
    }

    pub(super) fn local(&self, source: git2::Error) -> RemoteError {
        RemoteError::Local {
            dir: self.git.dir.clone(),
            source,
        }
    }

    /// Fetches the branch and every claim (with their commits), and notes each claim's
    /// commit on this host's monotonic clock.
    pub fn fetch(&mut self, now: Instant) -> Result<(), RemoteError> {
        let branch = format!(
            "+refs/heads/{b}:refs/remotes/{r}/{b}",
            b = self.branch,
            r = self.git.remote
        );
        let claims = format!("+{CLAIMS_NS}*:{SEEN_NS}*");
        let args = [
            "fetch",
            "--prune",
            "--no-tags",
            "--quiet",
            &self.git.remote,
            &branch,
            &claims,
        ];
        let mut res = self.git.run("fetch", &args);
        // A claim deleted (pruned) between the remote's listing and the fetch of it makes
        // git ask for a ref that is gone ("not our ref"): a race, not a fault; ask again.
        for _ in 0..3 {
            match &res {
                Err(super::git::RemoteError::Git { message, .. })
                    if message.contains("not our ref") =>
                {
                    res = self.git.run("fetch", &args)
                }
                _ => break,
            }
        }
        self.stats.reachable = !matches!(&res, Err(e) if e.is_unreachable());
        res?;
        let tip_ref = format!("refs/remotes/{}/{}", self.git.remote, self.branch);
        self.tip = self.repo.refname_to_id(&tip_ref).ok();
        let seen = self.seen_claims()?;
        self.observer.observe(&seen, now);
        self.fetched_at = Some(Instant::now());
        Ok(())
    }

    /// The claims as last fetched: (remote ref, commit id).
    fn seen_claims(&self) -> Result<Vec<(String, String)>, RemoteError> {
        let refs = self
            .repo
            .references_glob(&format!("{SEEN_NS}*"))
            .map_err(|e| self.local(e))?;
        Ok(refs
            .flatten()
            .filter_map(|r| {
                let name = r.name()?.strip_prefix(SEEN_NS)?.to_string();
                Some((format!("{CLAIMS_NS}{name}"), r.target()?.to_string()))
            })
            .collect())
    }

    /// The claim note of the commit `oid` (fetched here before).
    pub fn note(&self, oid: &str) -> Option<ClaimNote> {
        claim::read_claim(&self.repo, oid)
    }

    /// The remote branch's tip as last fetched.
    pub fn tip(&self) -> Option<git2::Oid> {
        self.tip
    }

    /// Cards in `work/inbox/` at the tip that nobody holds: no claim, or one that ended
    /// with the card back in the inbox.
    pub fn eligible(&self) -> Vec<String> {
        let Some(tree) = self.tip_tree() else {
            return Vec::new();
        };
        let Ok(inbox) = tree
            .get_path(std::path::Path::new("work/inbox"))
            .and_then(|e| self.repo.find_tree(e.id()))
        else {
            return Vec::new();
        };
        inbox
            .iter()
            .filter_map(|e| e.name()?.strip_suffix(".yaml").map(str::to_string))
            .filter(|id| !self.held.contains_key(id))
            .filter(|id| match self.observer.current(&claim_ref(id)) {
                None => true,
                Some(oid) => self.note(oid).is_some_and(|n| n.claimable()),
            })
            .collect()
    }

    fn tip_tree(&self) -> Option<git2::Tree<'_>> {
        self.repo.find_commit(self.tip?).ok()?.tree().ok()
    }

    /// Tries to claim card `id` for `agent`: one push that must find the claim ref absent,
    /// or still at the requeued end this host saw.
    pub fn claim(&mut self, id: &str, agent: &str, epoch: u64) -> Result<Claimed, RemoteError> {
        let won = self.claim_many(&[(id.to_string(), agent.to_string(), epoch)])?;
        Ok(won.into_iter().next().unwrap_or(Claimed::Lost))
    }

    /// Claims several cards in one push (a host with several free agents): each ref is
    /// its own compare-and-swap, so each is won or lost alone. Answers in the same order.
    pub fn claim_many(
        &mut self,
        wanted: &[(String, String, u64)],
    ) -> Result<Vec<Claimed>, RemoteError> {
        // A claim rests on a fresh view: a finished claim is pruned only after ten leases,
        // so a view younger than a lease never mistakes a pruned (finished) card for a free one.
        if self.fetched_at.is_none_or(|t| t.elapsed() > self.lease) {
            self.fetch(Instant::now())?;
        }
        let mut updates = Vec::with_capacity(wanted.len());
        let mut notes = Vec::with_capacity(wanted.len());
        let mut skipped = Vec::new();
        for (id, agent, epoch) in wanted {
            let name = claim_ref(id);
            let expect = self.observer.current(&name).map(str::to_string);
            // Held by someone, or finished: not to be claimed, whatever a stale list said.
            if expect
                .as_deref()
                .is_some_and(|o| !self.note(o).is_some_and(|n| n.claimable()))
            {
                skipped.push(name);
                continue;
            }
            let note = ClaimNote {
                card: id.clone(),
                host: self.host.clone(),
                agent: agent.clone(),
                epoch: *epoch,
                lease_s: self.lease.as_secs_f64(),
                ended: None,
            };
            let parent = expect.as_deref().and_then(|o| git2::Oid::from_str(o).ok());
            let oid = claim::write_claim(&self.repo, &note, "", parent)?.to_string();
            updates.push(RefUpdate {
                src: oid,
                dst: name,
                expect,
            });
            notes.push(note);
        }
        let res = self.git.push_cas(&updates, false);
        self.stats.reachable = !matches!(&res, Err(e) if e.is_unreachable());
        let results = res?;
        let now = Instant::now();
        let mut results_by_card: HashMap<String, Claimed> = HashMap::new();
        for name in skipped {
            self.stats.claims_lost += 1;
            results_by_card.insert(name, Claimed::Lost);
        }
        for (u, note) in updates.into_iter().zip(notes) {
            let ok = results.iter().any(|r| r.dst == u.dst && r.ok);
            if ok {
                self.stats.claims_won += 1;
                self.stats.last_push = Some(now);
                let held = Held {
                    oid: u.src.clone(),
                    note,
                    renewed: now,
                };
                self.held.insert(held.note.card.clone(), held);
                results_by_card.insert(u.dst, Claimed::Won);
            } else {
                self.stats.claims_lost += 1;
                results_by_card.insert(u.dst, Claimed::Lost);
            }
        }
        Ok(wanted
            .iter()
            .map(|(id, ..)| (results_by_card.remove(&claim_ref(id))).unwrap_or(Claimed::Lost))
            .collect())
    }

    /// The cards this host holds a claim on.
    pub fn held(&self) -> Vec<String> {
        self.held.keys().cloned().collect()
    }

    /// Whether this host holds card `id`'s claim.
    pub fn holds(&self, id: &str) -> bool {
        self.held.contains_key(id)
    }

    /// Queues a transition of a card this host holds (or a takeover's).
    pub fn queue(&mut self, op: Op) {
        self.pending.push(op);
    }

    /// Transitions not yet on the remote (queued while it was out of reach, say).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Renews every held claim whose last renewal is a third of a lease old; returns the
    /// cards whose claim was lost meanwhile (their pending transitions are dropped).
    pub fn renew_due(&mut self, now: Instant) -> Result<Vec<String>, RemoteError> {
        let due: Vec<String> = (self.held.iter())
            .filter(|(_, h)| now.saturating_duration_since(h.renewed) >= renew_every(self.lease))
            .map(|(id, _)| id.clone())
            .collect();
        let mut updates = Vec::new();
        let mut next = HashMap::new();
        for id in &due {
            let h = &self.held[id];
            let parent = git2::Oid::from_str(&h.oid).ok();
            let oid = claim::write_claim(&self.repo, &h.note, "renewed", parent)?.to_string();
            updates.push(RefUpdate {
                src: oid.clone(),
                dst: claim_ref(id),
                expect: Some(h.oid.clone()),
            });
            next.insert(claim_ref(id), (id.clone(), oid));
        }
        // Not atomic: one lost claim must not keep the others from being renewed.
        let res = self.git.push_cas(&updates, false);
        self.stats.reachable = !matches!(&res, Err(e) if e.is_unreachable());
        let mut lost = Vec::new();
        for r in res? {
            let Some((id, oid)) = next.remove(&r.dst) else {
                continue;
            };
            if r.ok {
                if let Some(h) = self.held.get_mut(&id) {
                    h.oid = oid;
                    h.renewed = now;
                }
            } else if r.lost_lease() {
                self.lose(&id);
                lost.push(id);
            }
        }
        Ok(lost)
    }

    /// Forgets a claim this host no longer holds, and the transitions it queued for it.
    pub(super) fn lose(&mut self, id: &str) {
        tracing::warn!(job = id, host = %self.host, "claim lost to another host; its transitions are dropped");
        self.held.remove(id);
        self.pending
            .retain(|op| op.card != id || op.takeover.is_some());
    }

    /// Queues takeovers of other hosts' claims that this host has seen unchanged for a
    /// lease plus grace: the claim ends as requeued and the card goes back to the inbox, in
    /// one push. Returns the cards queued.
    pub fn take_over_expired(&mut self, now: Instant) -> Vec<String> {
        let mut queued = Vec::new();
        let candidates: Vec<(String, String)> = (self.observer.refs())
            .map(|(n, o)| (n.to_string(), o.to_string()))
            .collect();
        for (name, oid) in candidates {
            let Some(id) = name.strip_prefix(CLAIMS_NS) else {
                continue;
            };
            if self.held.contains_key(id) || self.pending.iter().any(|o| o.card == id) {
                continue;
            }
            let Some(note) = self.note(&oid).filter(|n| n.ended.is_none()) else {
                continue;
            };
            let lease = Duration::from_secs_f64(note.lease_s.max(0.0)).max(self.lease);
            if !self.observer.expired(&name, lease, self.grace, now) {
                continue;
            }
            let from = format!("work/assigned/{}/{id}.yaml", note.agent);
            let mut op = Op::new(
                id,
                from,
                format!("work/inbox/{id}.yaml"),
                Some(Outcome::Requeued),
            );
            op.line = format!("{} (lease of host {} expired)", op.line, note.host);
            op.takeover = Some((oid, note));
            self.pending.push(op);
            queued.push(id.to_string());
        }
        queued
    }

    /// Deletes, in batches of `batch`, finished claims that have stood unchanged for
    /// `after` on this host's clock: the card's finish is long on the branch by then.
    pub fn prune(
        &mut self,
        after: Duration,
        batch: usize,
        now: Instant,
    ) -> Result<usize, RemoteError> {
        // Never sooner than ten leases: a claim needs a view younger than one lease, so no
        // host can take a pruned (finished) card for a free one.
        let after = after.max(self.lease * 10);
        let stale: Vec<RefUpdate> = (self.observer.refs())
            .filter(|(n, o)| {
                self.observer.expired(n, after, Duration::ZERO, now)
                    && self
                        .note(o)
                        .is_some_and(|c| c.ended == Some(Outcome::Finished))
            })
            .map(|(n, o)| RefUpdate {
                src: String::new(),
                dst: n.to_string(),
                expect: Some(o.to_string()),
            })
            .collect();
        let mut pruned = 0;
        for chunk in stale.chunks(batch.max(1)) {
            pruned += self
                .git
                .push_cas(chunk, false)?
                .iter()
                .filter(|r| r.ok)
                .count();
        }
        Ok(pruned)
    }
}
