//! The daemon's watch on the remote, for `GET /health`: a thread that asks the remote for
//! its branch and claims every poll interval and publishes what it saw. `/health` reads
//! the last verdict and never waits on the network itself.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::claim::CLAIMS_NS;
use super::git::Git;
use crate::config::RemoteConfig;

/// The remote as last probed.
#[derive(Debug, Clone)]
pub struct Seen {
    pub name: String,
    pub reachable: bool,
    /// The error of the last failed probe.
    pub error: Option<String>,
    /// When it last answered, on this host's monotonic clock.
    pub last_ok: Option<Instant>,
    /// Claim refs on the remote at the last answer.
    pub claims: usize,
}

/// The last verdict (one daemon per process; `None` without `remote:`). A std mutex:
/// held only to copy a small struct, never across a wait.
static SEEN: Mutex<Option<Seen>> = Mutex::new(None);

/// What the probe saw last, if a remote is configured and probed.
pub fn seen() -> Option<Seen> {
    SEEN.lock().ok()?.clone()
}

/// Stops the probe when dropped.
pub struct Probe {
    stop: Arc<AtomicBool>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts probing the remote of `cfg` from the clone at `root`.
pub fn start(root: &Path, cfg: &RemoteConfig) -> Option<Probe> {
    let stop = Arc::new(AtomicBool::new(false));
    let git = Git::new(root, &cfg.name);
    let every = Duration::from_millis(cfg.poll_ms).max(Duration::from_secs(1));
    let (name, branch) = (cfg.name.clone(), format!("refs/heads/{}", cfg.branch));
    let flag = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("pas-remote-probe".into())
        .spawn(move || {
            let claims = format!("{CLAIMS_NS}*");
            while !flag.load(Ordering::Relaxed) {
                let res = git.ls_remote(&[&branch, &claims]);
                let mut next = SEEN.lock().ok().and_then(|s| s.clone()).unwrap_or(Seen {
                    name: name.clone(),
                    reachable: false,
                    error: None,
                    last_ok: None,
                    claims: 0,
                });
                match res {
                    Ok(refs) => {
                        next.reachable = true;
                        next.error = None;
                        next.last_ok = Some(Instant::now());
                        next.claims = refs.iter().filter(|(n, _)| n.starts_with(CLAIMS_NS)).count();
                    }
                    Err(e) => {
                        if next.reachable || next.error.is_none() {
                            tracing::warn!(remote = %name, error = %e, "the remote cannot be reached: no new claims until it is back");
                        }
                        next.reachable = false;
                        next.error = Some(e.to_string());
                    }
                }
                if let Ok(mut s) = SEEN.lock() {
                    *s = Some(next);
                }
                let until = Instant::now() + every;
                while Instant::now() < until && !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
    match spawned {
        Ok(_) => Some(Probe { stop }),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the remote probe; /health will not report the remote");
            None
        }
    }
}
