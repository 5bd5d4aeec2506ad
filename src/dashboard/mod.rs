//! The read-only dashboard (SPEC section 11): pages, `/ws`, `/api/*` and `/metrics`.
//!
//! # Layout
//! - `view.rs`    the board as the dashboard shows it, computed from the files and the
//!   database (the same sources as the CLI) and cached per event seq, so a thousand
//!   clients do not each re-read ten thousand files.
//! - `ws.rs`      `GET /ws`: snapshot on connect, then one message per event, `?since=N`
//!   replay, resync of a client that fell behind, ping/pong.
//! - `fanout.rs`  frames each event once, in batches every client writes as they are.
//! - `api.rs`     the JSON twins of the pages.
//! - `series.rs`  `/api/costs/series`: spend and tokens per hour or day, for the charts.
//! - `pages.rs`   server-rendered HTML (minijinja templates from `dashboard/templates`).
//! - `metrics.rs` `GET /metrics` in Prometheus text.
//! - `headers.rs` the security headers on every response (CSP, nosniff, no framing).
//!
//! No route changes state but one: every handler is a `GET` that reads, except
//! `POST /api/replays` (`replays.rs`), which writes a replay card and nothing else, behind
//! its own anti-forgery checks, and is gone with `dashboard: {replay: false}`. Assets and templates are
//! compiled into the binary; `PAS_DASHBOARD_DEV=<folder holding templates/ and static/>`
//! serves them from disk instead, re-read on every request, for work on the design.

mod api;
mod fanout;
mod headers;
mod metrics;
mod ops;
mod pages;
mod replays;
mod series;
mod trace_pages;
mod traces;
mod view;
mod ws;

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;

use crate::web::Shared;

/// Templates compiled into the binary.
#[derive(rust_embed::RustEmbed)]
#[folder = "dashboard/templates/"]
struct Templates;

/// CSS, JS and the licence files of anything vendored.
#[derive(rust_embed::RustEmbed)]
#[folder = "dashboard/static/"]
struct Static;

/// What every handler shares: the server's handles and the view cache.
#[derive(Clone)]
pub(crate) struct Dash {
    pub shared: Shared,
    pub views: Arc<view::Cache>,
    /// `PAS_DASHBOARD_DEV`: read templates and assets from this folder.
    pub dev: Option<Arc<PathBuf>>,
    /// The framed event batches, started with the first stream client.
    batches: Arc<std::sync::OnceLock<tokio::sync::broadcast::Sender<Arc<fanout::Batch>>>>,
    /// The running gateway, for its breakers (`/providers`, alerts); none in tests that
    /// serve the dashboard alone.
    pub gateway: Option<Arc<crate::gateway::Gateway>>,
}

impl Dash {
    /// The batch channel, its fan-out task started on first use (inside the runtime).
    fn batches(&self) -> &tokio::sync::broadcast::Sender<Arc<fanout::Batch>> {
        self.batches
            .get_or_init(|| fanout::start(self.shared.hub.clone()))
    }
}

/// The dashboard's routes.
pub fn router(shared: Shared) -> Router {
    app(shared, None).0
}

/// The dashboard's routes beside the running `gateway`, and the state they share (the
/// notifier reads the active alerts through it).
pub(crate) fn app(shared: Shared, gateway: Option<Arc<crate::gateway::Gateway>>) -> (Router, Dash) {
    let dev = std::env::var_os("PAS_DASHBOARD_DEV")
        .filter(|d| !d.is_empty())
        .map(|d| Arc::new(PathBuf::from(d)));
    let dash = Dash {
        views: Arc::new(view::Cache::new(shared.ws.clone(), shared.hub.clone())),
        shared,
        dev,
        batches: Arc::default(),
        gateway,
    };
    // A config that cannot be read keeps the one write off rather than on.
    let replay = dash
        .shared
        .ws
        .config()
        .map(|c| c.dashboard.replay)
        .unwrap_or(false);
    let writes = writes().into_iter().filter(|_| replay);
    let app = table()
        .into_iter()
        .chain(writes.map(|(_, path, handler)| (path, handler)))
        .fold(Router::new(), |r, (path, handler)| r.route(path, handler));
    (headers::apply(app).with_state(dash.clone()), dash)
}

/// The active alerts as the dashboard shows them (for the notifier).
pub(crate) async fn active_alerts(dash: &Dash) -> anyhow::Result<Vec<crate::ops::alerts::Active>> {
    ops::active(dash)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))
}

/// `app` (the dashboard wrapped in its guards) with the dashboard's security headers on
/// every answer, the guards' refusals included.
pub(crate) fn secure(app: Router) -> Router {
    headers::apply(app)
}

/// The answer to a request past `dashboard.max_concurrent_requests`: a 503 saying so, in
/// the dashboard's error shape (its pages retry on their own).
pub(crate) fn overloaded(max: usize) -> Response {
    let mut r = WebError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: format!(
            "the dashboard is answering its limit of {max} requests at once \
             (dashboard.max_concurrent_requests in pas.yaml): retry shortly"
        ),
    }
    .into_response();
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(1),
    );
    r
}

/// Every path the dashboard serves, in the router's own syntax (`{id}`, `{*path}`).
/// The security suite walks each of them with every method, and fails when this list
/// and its own disagree, so a new route cannot slip in untested.
pub fn routes() -> Vec<&'static str> {
    table().into_iter().map(|(path, _)| path).collect()
}

/// Every `(method, path)` the dashboard writes through (when enabled); the security
/// suite walks these too.
pub fn write_routes() -> Vec<(&'static str, &'static str)> {
    writes().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// The routes that write: `POST /api/replays` alone (SPEC section 11's one exception).
fn writes() -> Vec<(&'static str, &'static str, MethodRouter<Dash>)> {
    vec![("POST", "/api/replays", axum::routing::post(replays::create))]
}

/// The one place the reading routes are declared: path and handler. Only `get` handlers (axum adds
/// `HEAD`): the dashboard is read-only, so anything else is a 405.
fn table() -> Vec<(&'static str, MethodRouter<Dash>)> {
    vec![
        ("/", get(pages::kanban)),
        ("/health", get(health)),
        ("/tree", get(pages::tree)),
        ("/costs", get(pages::costs)),
        ("/alerts", get(pages::alerts)),
        ("/activity", get(pages::activity)),
        ("/providers", get(ops::providers_page)),
        ("/jobs/{id}", get(pages::job)),
        ("/traces", get(trace_pages::list)),
        ("/traces/{id}", get(trace_pages::one)),
        ("/traces/{id}/vs/{other}", get(trace_pages::vs)),
        ("/ws", get(ws::upgrade)),
        ("/api/status", get(api::status)),
        ("/api/jobs", get(api::jobs)),
        ("/api/jobs/{id}", get(api::job)),
        ("/api/agents", get(api::agents)),
        ("/api/tree", get(api::tree)),
        ("/api/costs", get(api::costs)),
        ("/api/costs/series", get(series::series)),
        ("/api/alerts", get(api::alerts)),
        ("/api/alerts/active", get(ops::api_active)),
        ("/api/providers", get(ops::api_providers)),
        ("/api/events", get(api::events)),
        ("/api/commits", get(api::commits)),
        ("/api/traces", get(traces::list)),
        ("/api/traces/{id}", get(traces::one)),
        ("/api/traces/{id}/spans/{span}", get(traces::span)),
        ("/api/traces/{id}/vs/{other}", get(traces::vs)),
        ("/metrics", get(metrics::metrics)),
        ("/static/{*path}", get(asset)),
    ]
}

/// `GET /health`: answered without the token (see `server::auth`), for uptime checks.
async fn health(axum::extract::State(dash): axum::extract::State<Dash>) -> Response {
    crate::health::http::answer(dash.shared.ws.clone()).await
}

/// The one error type of the dashboard: a status and a message that names what failed.
#[derive(Debug)]
pub(crate) struct WebError {
    pub status: StatusCode,
    pub message: String,
}

impl WebError {
    pub fn not_found(what: impl Into<String>) -> WebError {
        WebError {
            status: StatusCode::NOT_FOUND,
            message: what.into(),
        }
    }
    pub fn bad_request(what: impl Into<String>) -> WebError {
        WebError {
            status: StatusCode::BAD_REQUEST,
            message: what.into(),
        }
    }
}

impl From<anyhow::Error> for WebError {
    fn from(e: anyhow::Error) -> WebError {
        WebError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("{e:#}"),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(error = %self.message, "dashboard request failed");
        }
        let body = serde_json::json!({"error": {"message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

/// Runs blocking file and database reads off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, WebError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow::anyhow!("dashboard worker failed: {e}"))?
        .map_err(WebError::from)
}

/// `GET /static/{path}`: an embedded asset (or, in dev mode, the file on disk).
async fn asset(
    axum::extract::State(dash): axum::extract::State<Dash>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    let bytes: Option<Vec<u8>> = match &dash.dev {
        Some(dir) if !path.split('/').any(|p| p == ".." || p.is_empty()) => {
            std::fs::read(dir.join("static").join(&path)).ok()
        }
        Some(_) => None,
        None => Static::get(&path).map(|f| f.data.into_owned()),
    };
    let Some(bytes) = bytes else {
        return WebError::not_found(format!("no asset {path}")).into_response();
    };
    let mime = match path.rsplit('.').next().unwrap_or("") {
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        _ => "text/plain; charset=utf-8",
    };
    let mut r = bytes.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Writes the embedded templates and assets under `dir` (`templates/`, `static/`): what
/// `pas bench board` serves through `PAS_DASHBOARD_DEV` to compare builds.
pub(crate) fn write_assets(dir: &std::path::Path) -> anyhow::Result<()> {
    for (sub, names, get) in [
        (
            "templates",
            Templates::iter().collect::<Vec<_>>(),
            Templates::get as fn(&str) -> Option<rust_embed::EmbeddedFile>,
        ),
        ("static", Static::iter().collect(), Static::get),
    ] {
        std::fs::create_dir_all(dir.join(sub))?;
        for name in names {
            if let Some(f) = get(&name) {
                std::fs::write(dir.join(sub).join(name.as_ref()), f.data)?;
            }
        }
    }
    Ok(())
}

/// A template's text, embedded or (dev mode) from disk.
pub(crate) fn template_source(dev: Option<&PathBuf>, name: &str) -> Option<String> {
    match dev {
        Some(dir) => std::fs::read_to_string(dir.join("templates").join(name)).ok(),
        None => Templates::get(name).map(|f| String::from_utf8_lossy(&f.data).into_owned()),
    }
}
