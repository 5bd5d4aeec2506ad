//! What `pas remote status` and `/health` say about the remote: whether it answers, the
//! hosts seen on it, their last pushes and claims, and how far this clone lags.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use super::claim::{read_claim, CLAIMS_NS};
use super::git::Git;
use crate::config::RemoteConfig;

/// The remote as this clone sees it.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteStatus {
    pub name: String,
    pub url: String,
    pub branch: String,
    /// This clone's host name.
    pub host: String,
    pub reachable: bool,
    /// Why not, when it is not.
    pub error: Option<String>,
    pub hosts: Vec<HostSeen>,
    /// Claims held now (not ended), all hosts.
    pub claims_held: usize,
    /// Commits of this clone's branch not on the remote, and the other way round.
    pub ahead: usize,
    pub behind: usize,
}

/// One host seen on the remote.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostSeen {
    pub host: String,
    /// Its newest commit on the branch (that host's own clock).
    pub last_push: Option<DateTime<Utc>>,
    pub claims_held: usize,
}

/// Fetches from the remote (when it answers) and reports. Never fails: an unreachable
/// remote is a status, reported with what was fetched before.
pub fn status(root: &Path, cfg: &RemoteConfig) -> RemoteStatus {
    let host = super::host_name(root);
    let git = Git::new(root, &cfg.name);
    let mut st = RemoteStatus {
        name: cfg.name.clone(),
        url: cfg
            .url
            .clone()
            .unwrap_or_else(|| remote_url(root, &cfg.name)),
        branch: cfg.branch.clone(),
        host,
        reachable: true,
        error: None,
        hosts: Vec::new(),
        claims_held: 0,
        ahead: 0,
        behind: 0,
    };
    let branch = format!(
        "+refs/heads/{b}:refs/remotes/{r}/{b}",
        b = cfg.branch,
        r = cfg.name
    );
    let claims = format!("+{CLAIMS_NS}*:refs/pas/seen/*");
    if let Err(e) = git.run(
        "fetch",
        &[
            "fetch",
            "--prune",
            "--no-tags",
            "--quiet",
            &cfg.name,
            &branch,
            &claims,
        ],
    ) {
        st.reachable = false;
        st.error = Some(e.to_string());
    }
    let Ok(repo) = git2::Repository::open(root) else {
        return st;
    };
    let mut hosts: BTreeMap<String, HostSeen> = BTreeMap::new();
    let seen = |hosts: &mut BTreeMap<String, HostSeen>, h: &str| -> HostSeen {
        hosts.remove(h).unwrap_or(HostSeen {
            host: h.to_string(),
            last_push: None,
            claims_held: 0,
        })
    };
    if let Ok(refs) = repo.references_glob("refs/pas/seen/*") {
        for r in refs.flatten() {
            let Some(note) = r.target().and_then(|o| read_claim(&repo, &o.to_string())) else {
                continue;
            };
            if note.ended.is_none() {
                st.claims_held += 1;
                let mut h = seen(&mut hosts, &note.host);
                h.claims_held += 1;
                hosts.insert(note.host.clone(), h);
            }
        }
    }
    let tip_ref = format!("refs/remotes/{}/{}", cfg.name, cfg.branch);
    if let Ok(tip) = repo.refname_to_id(&tip_ref) {
        if let Ok(mut walk) = repo.revwalk() {
            let _ = walk.push(tip);
            // The newest thousand commits are enough to see every active host.
            for oid in walk.flatten().take(1000) {
                let Ok(c) = repo.find_commit(oid) else {
                    continue;
                };
                let Some(name) = c
                    .message()
                    .and_then(|m| m.lines().find_map(|l| l.strip_prefix("Pas-Host: ")))
                    .map(str::to_string)
                else {
                    continue;
                };
                let when = Utc.timestamp_opt(c.time().seconds(), 0).single();
                let mut h = seen(&mut hosts, &name);
                h.last_push = h.last_push.max(when);
                hosts.insert(name, h);
            }
        }
        if let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) {
            if let Ok((a, b)) = repo.graph_ahead_behind(head.id(), tip) {
                (st.ahead, st.behind) = (a, b);
            }
        }
    }
    st.hosts = hosts.into_values().collect();
    st
}

/// The URL git has for remote `name` in this clone (empty when none).
fn remote_url(root: &Path, name: &str) -> String {
    git2::Repository::open(root)
        .ok()
        .and_then(|r| r.find_remote(name).ok()?.url().map(str::to_string))
        .unwrap_or_default()
}
