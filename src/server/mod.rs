//! The two HTTP listeners of `pas serve`: the dashboard (SPEC section 11, default
//! 127.0.0.1:6101) and the LLM gateway (section 7, default 127.0.0.1:6120).
//!
//! Both run on one small tokio runtime on threads of their own, beside the engine's
//! blocking thread. Addresses are bound before `start` returns, so a port in use is an
//! error at start that names the address. A listener on anything but loopback needs a
//! token (`--token` or `PAS_TOKEN`): pas refuses to start without one, because the
//! gateway spends money and the dashboard shows everything. The bound addresses are
//! written to `.pas/serve.json` (port 0 binds a free port, which tests and benchmarks use).
//! In front of both, `origin` refuses foreign web pages (cross-origin requests and DNS
//! rebinding), which a token-less loopback listener would otherwise serve. Each listener
//! is served within its limits (`max_connections`, `max_concurrent_requests`,
//! `header_timeout_s` of its section of pas.yaml): see `listen` and `limits`.

pub mod auth;
pub mod limits;
pub mod origin;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::sync::watch;

use crate::workspace::Workspace;

/// Where the listeners bind and with which token.
#[derive(Clone)]
pub struct Binds {
    pub dashboard: String,
    pub gateway: String,
    /// Required of every request when set; required to be set for non-loopback binds.
    pub token: Option<String>,
}

/// Written by hand so that no `{:?}` of the binds can put the token in a log.
impl std::fmt::Debug for Binds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binds")
            .field("dashboard", &self.dashboard)
            .field("gateway", &self.gateway)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Merge aid: `pas serve` (daemon/mod.rs, being rewritten beside this change) builds the
/// shared state by this path; the type is `web::Shared`.
pub use crate::web::Shared;

/// The running servers; [`Servers::shutdown`] stops them after in-flight requests finish.
pub struct Servers {
    pub dashboard: SocketAddr,
    pub gateway: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The gateway (its ledger and health), shared with the LLM job card executor.
    pub gateway_state: Arc<crate::gateway::Gateway>,
    /// Where the engine sends LLM job cards to be run.
    pub llm_jobs: tokio::sync::mpsc::UnboundedSender<crate::gateway::cards::LlmJob>,
}

/// Set by a second SIGTERM/SIGINT: stop now, without waiting for calls in flight.
pub static HURRY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How long a shutdown waits for LLM calls in flight: as long as the slowest provider lets
/// a call run (its `timeout_s`), so a call that is paid for gets its receipt (and an LLM
/// card its answer) rather than being cut off and bought again; at least [`DRAIN`].
fn drain_for(gw: &crate::gateway::Gateway) -> Duration {
    gw.providers
        .iter()
        .map(|p| Duration::from_secs_f64(p.timeout_s) + Duration::from_secs(1))
        .fold(DRAIN, Duration::max)
}

/// Serves until told to stop; only then does the drain's clock start (the runtime's, which
/// a test can pause): streams, and LLM calls in flight, get up to `drain` to finish.
async fn serve_then_drain(
    serving: impl std::future::Future<Output = ()>,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
    calls: tokio_util::task::TaskTracker,
) {
    tokio::pin!(serving);
    let served = tokio::select! {
        _ = &mut serving => true,
        _ = stop.wait_for(|s| *s) => false,
    };
    let started = tokio::time::Instant::now();
    // Streams keep their connections open until they end: bounded like calls.
    let served = served || within(drain, &mut serving).await;
    // Calls whose callers left, and LLM cards', finish here so their receipts are written
    // and their holds settled; no new card call starts.
    calls.close();
    if !calls.is_empty() {
        tracing::info!(
            calls = calls.len(),
            "waiting up to {} s for LLM calls in flight (a second SIGTERM stops now)",
            drain.as_secs()
        );
    }
    let left = drain.saturating_sub(started.elapsed());
    if !(served && within(left, calls.wait()).await) {
        tracing::warn!(
            calls = calls.len(),
            "LLM calls still running are stopped without a receipt"
        );
    }
}

/// Waits for `done` until `limit` has passed or a second signal says hurry; whether it
/// finished.
async fn within(limit: Duration, done: impl std::future::Future<Output = ()>) -> bool {
    let hurried = async {
        while !HURRY.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        _ = done => true,
        _ = tokio::time::sleep(limit) => false,
        _ = hurried => false,
    }
}

/// How long a shutdown waits for in-flight requests.
const DRAIN: Duration = Duration::from_secs(10);

/// Refuses a non-loopback bind without a token (checked before anything starts), and an
/// empty token anywhere: `?token=` or `Authorization: Bearer ` would match it, which is
/// no guard at all.
pub fn check(binds: &Binds) -> Result<()> {
    if binds.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        bail!("the token is empty: pass a non-empty --token or PAS_TOKEN, or none at all");
    }
    for (what, addr) in [("dashboard", &binds.dashboard), ("gateway", &binds.gateway)] {
        if binds.token.is_none() && !auth::is_loopback(addr) {
            bail!(
                "the {what} would listen on {addr}, which is not loopback, and no token is \
                 set: pass --token or set PAS_TOKEN (or bind to 127.0.0.1)"
            );
        }
    }
    Ok(())
}

/// Binds both listeners and serves them until [`Servers::shutdown`]. LLM job cards sent
/// to [`Servers::llm_jobs`] are run, and their outcomes go to `engine`.
pub fn start(
    shared: Shared,
    binds: &Binds,
    engine: std::sync::mpsc::SyncSender<crate::watch::Input>,
    clock: crate::clock::Clock,
) -> Result<Servers> {
    check(binds)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pas-http")
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    let bind = |what: &str, addr: &str| {
        let addr = addr.to_string();
        let what = what.to_string();
        rt.block_on(async move {
            tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for the {what}"))
        })
    };
    let dash_listener = bind("dashboard", &binds.dashboard)?;
    let gw_listener = bind("gateway", &binds.gateway)?;
    let dashboard = dash_listener.local_addr()?;
    let gateway = gw_listener.local_addr()?;

    let gateway_state = Arc::new(
        crate::gateway::Gateway::new(shared.clone(), clock).context("cannot start the gateway")?,
    );
    let token = binds.token.clone().map(Arc::<str>::from);
    let (dash_router, dash) = crate::dashboard::app(shared.clone(), Some(gateway_state.clone()));
    let dash_app = auth::guard(dash_router, token.clone());
    let gw_app = auth::guard(crate::gateway::router(gateway_state.clone()), token);
    let dash_app = origin::guard(dash_app, dashboard.ip().is_loopback());
    let gw_app = origin::guard(gw_app, gateway.ip().is_loopback());
    // Before the guards: a flood is refused without the work of checking it.
    let cfg = shared.ws.config().context("cannot read pas.yaml")?;
    // Webhooks are checked before anything is served: a wrong entry stops the start with
    // an error naming it, rather than alerts silently going nowhere.
    let hooks = crate::ops::notify::targets(&cfg.notify, |k| std::env::var(k).ok())
        .map_err(|e| anyhow::anyhow!("pas.yaml: {e}"))?;
    let (dash_limits, gw_limits) = (cfg.dashboard.limits(), cfg.gateway.limits());
    let dash_app = limits::capped(
        dash_app,
        dash_limits.max_concurrent_requests,
        crate::dashboard::overloaded,
    );
    let gw_app = limits::capped(
        gw_app,
        gw_limits.max_concurrent_requests,
        crate::gateway::overloaded,
    );
    // Outermost, so the guards' own refusals carry the same security headers as the
    // answers behind them (the layers inside add them only to what passed the guards),
    // and, from the gateway, its `x-pas-overhead-ms`.
    let dash_app = crate::dashboard::secure(dash_app);
    let gw_app = crate::gateway::secure(crate::gateway::stamped(gw_app));

    let (llm_jobs, jobs) = tokio::sync::mpsc::unbounded_channel();
    rt.spawn(crate::gateway::cards::executor(
        gateway_state.clone(),
        jobs,
        engine,
    ));
    if !hooks.is_empty() {
        tracing::info!(
            webhooks = ?hooks.iter().map(|h| format!("{} ({})", h.name, h.url)).collect::<Vec<_>>(),
            "alerts and their all-clears go to webhooks"
        );
        let root = shared.ws.root.clone();
        rt.spawn(async move {
            let notifier = crate::ops::notify::Notifier::start(hooks, root);
            crate::ops::notify::watch(notifier, move || {
                let dash = dash.clone();
                async move { crate::dashboard::active_alerts(&dash).await }
            })
            .await
        });
    }
    let (stop, stopped) = watch::channel(false);
    let calls = gateway_state.tasks.clone();
    let drain = drain_for(&gateway_state);
    let thread = std::thread::Builder::new()
        .name("pas-http".into())
        .spawn(move || {
            rt.block_on(async move {
                let stop = stopped.clone();
                let d = crate::web::listen::serve(
                    dash_listener,
                    dash_app,
                    dash_limits,
                    "dashboard",
                    stopped.clone(),
                );
                let g =
                    crate::web::listen::serve(gw_listener, gw_app, gw_limits, "gateway", stopped);
                let serving = async {
                    tokio::join!(d, g);
                };
                serve_then_drain(serving, stop, drain, calls).await;
            });
            rt.shutdown_timeout(DRAIN);
        })
        .context("cannot start the HTTP thread")?;
    write_addresses(&shared.ws, dashboard, gateway);
    tracing::info!(%dashboard, %gateway, "dashboard and gateway listening");
    Ok(Servers {
        dashboard,
        gateway,
        stop,
        thread: Some(thread),
        gateway_state,
        llm_jobs,
    })
}

impl Servers {
    /// Stops accepting, lets in-flight requests and LLM calls finish (up to the slowest
    /// provider's `timeout_s`, or until a second signal), and returns when the servers are
    /// down: every receipt they produced has been handed to the writer.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("HTTP thread panicked");
            }
        }
        let _ = std::fs::remove_file(addresses_path(&self.gateway_state.shared.ws));
    }
}

/// `.pas/serve.json`: the addresses the servers are listening on.
pub fn addresses_path(ws: &Workspace) -> std::path::PathBuf {
    ws.root.join(".pas").join("serve.json")
}

fn write_addresses(ws: &Workspace, dashboard: SocketAddr, gateway: SocketAddr) {
    let path = addresses_path(ws);
    let text = serde_json::json!({
        "dashboard": dashboard.to_string(),
        "gateway": gateway.to_string(),
        "pid": std::process::id(),
    })
    .to_string();
    let tmp = path.with_extension("json.tmp");
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|_| std::fs::write(&tmp, text))
        .and_then(|_| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot record the listening addresses");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Servers that answer until the stop, then end (as `listen::serve` does).
    fn servers(stop: watch::Receiver<bool>) -> impl std::future::Future<Output = ()> {
        let mut stop = stop;
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    }

    /// Regression: the shutdown drain's clock started with the servers, so after the drain
    /// window (10 s at least) the gateway and the dashboard stopped answering for good. On
    /// the runtime's paused clock: 11 s pass in no time.
    #[tokio::test(start_paused = true)]
    async fn the_servers_outlive_the_drain_window_and_calls_get_it_after_the_stop() {
        let (tx, rx) = watch::channel(false);
        let calls = tokio_util::task::TaskTracker::new();
        let drain = Duration::from_secs(10);
        let run = tokio::spawn(serve_then_drain(
            servers(rx.clone()),
            rx,
            drain,
            calls.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(!run.is_finished(), "still serving 11 s after the start");
        // A call in flight at the stop is waited for; one longer than the window is not.
        calls.spawn(tokio::time::sleep(Duration::from_secs(3)));
        let stopped = tokio::time::Instant::now();
        tx.send(true).unwrap();
        run.await.unwrap();
        let took = stopped.elapsed();
        assert!(took >= Duration::from_secs(3) && took < drain, "{took:?}");

        let (tx, rx) = watch::channel(false);
        let calls = tokio_util::task::TaskTracker::new();
        let run = tokio::spawn(serve_then_drain(
            servers(rx.clone()),
            rx,
            drain,
            calls.clone(),
        ));
        calls.spawn(tokio::time::sleep(Duration::from_secs(60)));
        let stopped = tokio::time::Instant::now();
        tx.send(true).unwrap();
        run.await.unwrap();
        let took = stopped.elapsed();
        assert!(
            took >= drain && took < drain + Duration::from_secs(1),
            "{took:?}"
        );
    }
}
