//! Notifications (SPEC section 15): webhooks told when an alert begins and when it clears.
//!
//! The notifier lives on the HTTP runtime, never on the engine's thread. A watch task
//! compares the active alerts (`ops::alerts`) once a second with the set it last told of:
//! each new key goes out as an alert, each key gone as its all-clear. Every webhook has its
//! own bounded queue and sender task, so a webhook that hangs or fails delays only its own
//! notices; when its queue is full, further notices to it are dropped and recorded as
//! such. The set last told of is kept in `.pas/notify-state.json`, so a restart neither
//! repeats alerts already sent nor forgets to send their all-clears.
//!
//! - `config.rs` the `notify:` section and its filters.
//! - `send.rs`   bodies (generic JSON, Slack, ntfy), attempts, the delivery log.

pub mod config;
pub mod send;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

pub use config::{targets, Target};
pub use send::{Notice, Outcome, Phase};

use crate::ops::alerts::{Active, Severity};

/// Notices a webhook's queue holds; more are dropped (and recorded) until it drains.
pub const QUEUE: usize = 64;
/// How often the watch compares the active alerts.
pub const EVERY: Duration = Duration::from_secs(1);

/// The webhooks' queues.
#[derive(Clone)]
pub struct Notifier {
    queues: Vec<(Target, mpsc::Sender<Notice>)>,
    root: PathBuf,
}

/// An HTTP client for webhooks: no redirects (a redirect would carry the body where the
/// configuration never said), rustls.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

impl Notifier {
    /// Starts one sender task per webhook (call inside a tokio runtime).
    pub fn start(targets: Vec<Target>, root: PathBuf) -> Notifier {
        let client = client();
        let queues = targets
            .into_iter()
            .map(|t| {
                let (tx, mut rx) = mpsc::channel::<Notice>(QUEUE);
                let (target, client, root) = (t.clone(), client.clone(), root.clone());
                tokio::spawn(async move {
                    while let Some(n) = rx.recv().await {
                        let o = send::deliver(&client, &target, &n).await;
                        let root = root.clone();
                        let _ = tokio::task::spawn_blocking(move || send::record(&root, &o)).await;
                    }
                });
                (t, tx)
            })
            .collect();
        Notifier { queues, root }
    }

    /// Queues `notice` for every webhook that wants it; never waits.
    pub fn send(&self, notice: &Notice) {
        for (t, tx) in &self.queues {
            if !t.wants(&notice.alert) {
                continue;
            }
            if tx.try_send(notice.clone()).is_err() {
                let o = send::outcome(
                    t,
                    notice,
                    "dropped",
                    0,
                    None,
                    Some(format!(
                        "its queue of {QUEUE} notices is full (the webhook is slow or down)"
                    )),
                );
                send::record(&self.root, &o);
            }
        }
    }
}

fn state_path(root: &std::path::Path) -> PathBuf {
    root.join(".pas").join("notify-state.json")
}

/// The alerts last told of (empty when never, or unreadable).
fn load_told(root: &std::path::Path) -> BTreeMap<String, Active> {
    crate::intake::read(&state_path(root), crate::intake::FileKind::Config)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_told(root: &std::path::Path, told: &BTreeMap<String, Active>) {
    let path = state_path(root);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec(told).unwrap_or_default();
    if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &path)) {
        tracing::warn!(file = %path.display(), error = %e, "cannot keep the notified alerts");
    }
}

/// Compares the active alerts (from `source`) with those told of, every [`EVERY`], and
/// notifies each change. Runs until the runtime stops.
pub async fn watch<F, Fut>(notifier: Notifier, source: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<Active>>>,
{
    let root = notifier.root.clone();
    let mut told = {
        let r = root.clone();
        tokio::task::spawn_blocking(move || load_told(&r))
            .await
            .unwrap_or_default()
    };
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now_active = match source().await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "alerts not computed this round");
                continue;
            }
        };
        let now: BTreeMap<String, Active> =
            now_active.into_iter().map(|a| (a.key.clone(), a)).collect();
        let at = chrono::Utc::now();
        let mut changed = false;
        for (key, a) in &now {
            if !told.contains_key(key) {
                changed = true;
                notifier.send(&Notice {
                    phase: Phase::Alert,
                    alert: a.clone(),
                    at,
                });
            }
        }
        for (key, a) in &told {
            if !now.contains_key(key) {
                changed = true;
                notifier.send(&Notice {
                    phase: Phase::AllClear,
                    alert: a.clone(),
                    at,
                });
            }
        }
        if changed {
            told = now;
            let (r, t) = (root.clone(), told.clone());
            let _ = tokio::task::spawn_blocking(move || save_told(&r, &t)).await;
        }
    }
}

/// `pas notify test`: one test notice to every webhook (filters aside), each awaited;
/// the outcomes in the order of `notify:`.
pub async fn test(targets: &[Target], root: &std::path::Path) -> Vec<Outcome> {
    let client = client();
    let notice = Notice {
        phase: Phase::Test,
        alert: Active {
            key: "test".into(),
            kind: "test".into(),
            severity: Severity::Info,
            since: None,
            text: "a test notification from pas notify test: this webhook works".into(),
            links: Vec::new(),
            agent: None,
        },
        at: chrono::Utc::now(),
    };
    let sends = targets.iter().map(|t| send::deliver(&client, t, &notice));
    let outcomes = futures_util::future::join_all(sends).await;
    for o in &outcomes {
        send::record(root, o);
    }
    outcomes
}
