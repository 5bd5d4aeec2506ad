//! A fake LLM upstream: a real HTTP server on `127.0.0.1:0` that speaks both wire
//! protocols, plain and streaming, with deterministic text and usage, and fails on demand.
//!
//! Tests drive the real client against it, and `pas bench gateway` measures the gateway's
//! own overhead against it, so the `Ok` path answers from bodies rendered once at start.
//! It runs on its own thread and runtime, so sync code (the bench, the CLI) can use it, and
//! stopping it drops that runtime: every connection, hanging ones included, is closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::config::Protocol;

mod played;
mod render;
pub mod script;
use render::Rendered;
pub use script::Script;

/// What the fake answers with when it answers well.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The assistant text; streams send one chunk per word.
    pub text: String,
    /// All input tokens, cached ones included (OpenAI's way of counting).
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    /// Input tokens written to the cache (a part of `input_tokens`, apart from the cached
    /// ones), and how many of those for an hour. Anthropic reports them; OpenAI has no
    /// such count, so its answers leave them in `prompt_tokens`.
    pub cache_write_tokens: u64,
    pub cache_write_1h_tokens: u64,
    /// Pause before each streamed frame.
    pub chunk_delay: Duration,
    /// Anthropic only: a thinking block before the text (streamed a word at a time), as
    /// with extended thinking. Its tokens are part of `output_tokens`, as Anthropic's are.
    pub thinking: String,
    /// Tool calls after the text (which may then be empty): the answer ends with
    /// `finish_reason: tool_calls` (OpenAI) or `stop_reason: tool_use` (Anthropic), and a
    /// stream sends each call's arguments in pieces.
    pub tool_calls: Vec<FakeToolCall>,
    /// Anthropic streams: which counts `message_delta` carries besides `output_tokens`.
    pub delta_usage: DeltaUsage,
    /// A script of replies chosen per request (see [`script`]); then `text`,
    /// `tool_calls` and the token counts above are the script's instead.
    pub script: Option<Arc<Script>>,
}

/// The counts a streamed Anthropic answer's `message_delta` repeats besides
/// `output_tokens` (`message_start` always carries them all). The API has sent more of
/// them there over time, and a count an event leaves out is unchanged, not 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeltaUsage {
    /// Only `output_tokens`, as Anthropic long did.
    #[default]
    Output,
    /// `input_tokens` too, without any cache count.
    Input,
    /// Every total (`input_tokens`, cache reads and writes), without the split of the
    /// writes by lifetime (`cache_creation`).
    Totals,
}

/// One tool call the fake answers with.
#[derive(Debug, Clone)]
pub struct FakeToolCall {
    pub id: String,
    pub name: String,
    /// The arguments object (Anthropic's `input`; serialized for OpenAI).
    pub arguments: Value,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            text: "hello from the fake upstream".into(),
            input_tokens: 12,
            output_tokens: 5,
            cached_tokens: 0,
            cache_write_tokens: 0,
            cache_write_1h_tokens: 0,
            chunk_delay: Duration::ZERO,
            thinking: String::new(),
            tool_calls: Vec::new(),
            delta_usage: DeltaUsage::Output,
            script: None,
        }
    }
}

/// How the fake behaves for the requests that follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A correct answer with usage.
    Ok,
    /// An HTTP error in the protocol's error shape, with `Retry-After` (seconds) if given.
    Status { code: u16, retry_after: Option<u64> },
    /// An HTTP error whose message quotes the key the request carried, as a careless
    /// upstream or proxy might: pas must not pass the key on to any file, log or client.
    EchoKey { code: u16 },
    /// Accepts the request and never answers.
    Hang,
    /// Sends the response headers, then nothing.
    HangStream,
    /// Streams: drops the connection after this many content chunks; plain: mid-body.
    Cut { after_chunks: usize },
    /// 200 with a body that is not the protocol.
    Malformed,
    /// A correct answer without any usage.
    NoUsage,
    /// A correct answer after this long.
    Delay(Duration),
    /// Reads the request, then resets the connection (TCP RST) without a byte of answer:
    /// an upstream that crashed or a middlebox that dropped the connection.
    Reset,
    /// Answers `307 Temporary Redirect` to this URL (which a client must not follow).
    Redirect(String),
    /// A 200 whose body goes on for a GiB: plain, a JSON string that never closes;
    /// streamed, content frames of 32 KiB each, without end in sight.
    Endless,
}

/// A running fake upstream; dropping it stops it.
pub struct Fake {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Starts a fake upstream and returns once it listens. Panics only if no port on
/// 127.0.0.1 can be bound (see [`try_start`]).
pub fn start(opts: FakeOptions) -> Fake {
    match try_start(opts) {
        Ok(f) => f,
        Err(e) => panic!("the fake upstream could not start: {e}"),
    }
}

/// Starts a fake upstream on its own thread and runtime, on a free port.
pub fn try_start(opts: FakeOptions) -> std::io::Result<Fake> {
    try_start_at(opts, SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// Starts a fake upstream on `addr`: a known port lets another proxy (LiteLLM in
/// `bench/vs-litellm.sh`) be configured to call it before it starts.
pub fn try_start_at(opts: FakeOptions, addr: SocketAddr) -> std::io::Result<Fake> {
    let shared = Arc::new(Shared::new(opts));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(shared.clone());
    let thread = std::thread::Builder::new()
        .name("pas-fake-upstream".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return drop(ready_tx.send(Err(e))),
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => l,
                    Err(e) => return drop(ready_tx.send(Err(e))),
                };
                let _ = ready_tx.send(listener.local_addr());
                let app = app.into_make_service_with_connect_info::<Conn>();
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = stop_rx => {}
                }
            });
            // Dropping the runtime here aborts every connection task, hanging ones too.
        })?;
    let addr = ready_rx
        .recv()
        .map_err(|_| std::io::Error::other("the fake upstream thread ended"))??;
    Ok(Fake {
        addr,
        shared,
        stop: Mutex::new(Some(stop_tx)),
        thread: Mutex::new(Some(thread)),
    })
}

impl Fake {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `base_url` a provider of `protocol` would have in `pas.yaml`.
    pub fn base_url(&self, protocol: Protocol) -> String {
        match protocol {
            Protocol::Openai => format!("http://{}/v1", self.addr),
            Protocol::Anthropic => format!("http://{}", self.addr),
        }
    }

    /// Changes how the following requests are answered.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
    }

    /// Requests received so far, on either endpoint.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// The headers (lowercase names) and JSON body of the latest request (`Null` if the
    /// body was not JSON).
    pub fn last_request(&self) -> Option<(Vec<(String, String)>, Value)> {
        let (headers, body) = lock(&self.shared.last).clone()?;
        let headers = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into(),
                )
            })
            .collect();
        Some((
            headers,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        ))
    }

    /// Stops the server: the port refuses connections once this returns. Idempotent.
    pub fn stop(&self) {
        if let Some(tx) = lock(&self.stop).take() {
            let _ = tx.send(());
        }
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A std lock never held across an await; a panic elsewhere cannot corrupt plain values.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Shared {
    mode: Mutex<Mode>,
    requests: AtomicU64,
    /// Kept raw; parsed only when a test asks, so the benchmark path stays cheap.
    last: Mutex<Option<(HeaderMap, Bytes)>>,
    chunk_delay: Duration,
    usage: Rendered,
    no_usage: Rendered,
    /// What a script's replies are rendered from (with the script's text and calls).
    opts: FakeOptions,
}

impl Shared {
    fn new(o: FakeOptions) -> Self {
        Shared {
            mode: Mutex::new(Mode::Ok),
            requests: AtomicU64::new(0),
            last: Mutex::new(None),
            chunk_delay: o.chunk_delay,
            usage: Rendered::new(&o, true),
            no_usage: Rendered::new(&o, false),
            opts: o,
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(|State(s), ConnectInfo(c), h, b| answer(s, c, Protocol::Openai, h, b)),
        )
        .route(
            "/v1/messages",
            post(|State(s), ConnectInfo(c), h, b| answer(s, c, Protocol::Anthropic, h, b)),
        )
        .route("/v1/messages/count_tokens", post(played::count))
        // Long-context prompts pass axum's default 2 MB; the gateway sets its own limit.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(shared)
}

/// The request fields the fake looks at.
#[derive(Debug, Default, Deserialize)]
struct Req {
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// The socket a request came on, so [`Mode::Reset`] can make its close a reset. The fd is
/// only used while the request's handler runs, when the connection still owns it.
#[derive(Clone, Copy, Debug)]
struct Conn(std::os::fd::RawFd);

impl Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>> for Conn {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Conn(std::os::fd::AsRawFd::as_raw_fd(stream.io()))
    }
}

/// Makes the connection's close send RST (SO_LINGER with a zero timeout) and returns a
/// body that fails before its first byte: hyper drops the connection with nothing sent.
fn reset(conn: Conn) -> Response {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on the connection's own fd, alive while its handler runs, with a
    // correctly sized `linger` value.
    unsafe {
        libc::setsockopt(
            conn.0,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let fail =
        futures_util::stream::once(async { Err::<Bytes, _>(std::io::Error::other("reset")) });
    reply("application/json", Body::from_stream(fail))
}

async fn answer(
    s: Arc<Shared>,
    conn: Conn,
    proto: Protocol,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.requests.fetch_add(1, Ordering::Relaxed);
    let req: Req = serde_json::from_slice(&body).unwrap_or_default();
    let key = ["authorization", "x-api-key"]
        .iter()
        .find_map(|k| headers.get(*k).and_then(|v| v.to_str().ok()))
        .unwrap_or("")
        .to_string();
    *lock(&s.last) = Some((headers, body.clone()));
    let mode = lock(&s.mode).clone();
    let rendered = if mode == Mode::NoUsage {
        &s.no_usage
    } else {
        &s.usage
    };
    let (plain, frames) = match proto {
        Protocol::Openai => (&rendered.openai_plain, &rendered.openai),
        Protocol::Anthropic => (&rendered.anthropic_plain, &rendered.anthropic),
    };
    // Anthropic has no opt-in usage chunk; its usage rides in message_start/message_delta.
    let with_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let json = "application/json";
    let sse = "text/event-stream";
    match mode {
        Mode::Hang => std::future::pending().await,
        Mode::Reset => reset(conn),
        Mode::Redirect(to) => {
            let h = [(header::LOCATION, to)];
            (StatusCode::TEMPORARY_REDIRECT, h, "moved").into_response()
        }
        Mode::Endless => endless(req.stream),
        Mode::Status { .. } | Mode::EchoKey { .. } => {
            let (code, retry_after, message) = match mode {
                Mode::Status { code, retry_after } => {
                    (code, retry_after, format!("fake upstream: HTTP {code}"))
                }
                Mode::EchoKey { code } => (code, None, format!("Incorrect API key: {key}")),
                _ => unreachable!("matched above"),
            };
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = match proto {
                Protocol::Openai => json!({"error": {"message": message, "type": "fake_error",
                    "param": null, "code": null}}),
                Protocol::Anthropic => json!({"type": "error",
                    "error": {"type": "api_error", "message": message}}),
            };
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(json));
            if let Some(secs) = retry_after {
                h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            (status, h, body.to_string()).into_response()
        }
        Mode::HangStream => {
            let kind = if req.stream { sse } else { json };
            let never = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
            reply(kind, Body::from_stream(never))
        }
        Mode::Malformed if req.stream => {
            let garbage = match proto {
                Protocol::Openai => "data: {\"choices\": [garbage\n\n",
                Protocol::Anthropic => "event: content_block_delta\ndata: {garbage\n\n",
            };
            reply(sse, Body::from(garbage))
        }
        Mode::Malformed => reply(json, Body::from("{\"choices\": [ this is not json")),
        Mode::Cut { after_chunks } if req.stream => {
            let n = after_chunks.min(frames.words.len());
            let sent: Vec<Bytes> = frames
                .head
                .iter()
                .chain(&frames.words[..n])
                .cloned()
                .collect();
            reply(sse, stream_body(sent, s.chunk_delay, true))
        }
        Mode::Cut { .. } => {
            let half = plain.slice(..plain.len() / 2);
            reply(json, stream_body(vec![half], Duration::ZERO, true))
        }
        Mode::Ok | Mode::NoUsage | Mode::Delay(_) => {
            if let Mode::Delay(d) = mode {
                tokio::time::sleep(d).await;
            }
            if let Some(script) = &s.opts.script {
                return played::played(&s.opts, script, proto, &req, &body, with_usage).await;
            }
            if !req.stream {
                return reply(json, Body::from(plain.clone()));
            }
            let end = if with_usage {
                &frames.end_usage
            } else {
                &frames.end
            };
            if s.chunk_delay.is_zero() {
                let full = if with_usage {
                    &frames.full_usage
                } else {
                    &frames.full
                };
                return reply(sse, Body::from(full.clone()));
            }
            let all = frames.head.iter().chain(&frames.words).chain(end);
            reply(
                sse,
                stream_body(all.cloned().collect(), s.chunk_delay, false),
            )
        }
    }
}

/// [`Mode::Endless`]'s answer: 1 GiB, a chunk at a time.
fn endless(stream: bool) -> Response {
    let word = "a".repeat(32 << 10);
    let (kind, head, chunk) = if stream {
        let frame = json!({"id": "endless", "object": "chat.completion.chunk", "created": 0,
            "model": "m", "choices": [{"index": 0, "delta": {"content": word},
            "finish_reason": null}]});
        (
            "text/event-stream",
            String::new(),
            format!("data: {frame}\n\n"),
        )
    } else {
        (
            "application/json",
            "{\"choices\": [{\"message\": {\"content\": \"".into(),
            word,
        )
    };
    let chunk = Bytes::from(chunk);
    let n = (1usize << 30) / chunk.len();
    let body = futures_util::stream::iter(
        std::iter::once(Bytes::from(head)).chain(std::iter::repeat_n(chunk, n)),
    )
    .map(Ok::<_, std::io::Error>);
    reply(kind, Body::from_stream(body))
}

fn reply(content_type: &'static str, body: Body) -> Response {
    let h = [(header::CONTENT_TYPE, content_type)];
    (StatusCode::OK, h, body).into_response()
}

/// Frames sent one by one after `delay` each; `cut` then breaks the connection.
fn stream_body(frames: Vec<Bytes>, delay: Duration, cut: bool) -> Body {
    let frames = futures_util::stream::iter(frames).then(move |f| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, std::io::Error>(f)
    });
    // The pause lets hyper flush what was sent; an error while frames still sit in its
    // write buffer would drop them unsent, and the cut would come before any byte.
    let tail = futures_util::stream::iter(cut.then_some(())).then(|()| async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Err(std::io::Error::other("cut"))
    });
    Body::from_stream(frames.chain(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_and_kept_and_stop_closes_the_port() {
        let f = start(FakeOptions::default());
        assert_eq!(
            f.base_url(Protocol::Openai),
            format!("http://{}/v1", f.addr())
        );
        assert!(f.last_request().is_none());
        f.set_mode(Mode::Hang);
        // A raw request: the fake records it even though it never answers.
        let mut conn = std::net::TcpStream::connect(f.addr()).unwrap();
        let body = r#"{"model":"m","messages":[]}"#;
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: k1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        std::io::Write::write_all(&mut conn, head.as_bytes()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while f.requests() == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(f.requests(), 1);
        let (headers, sent) = f.last_request().unwrap();
        assert!(headers.contains(&("x-api-key".into(), "k1".into())));
        assert_eq!(sent["model"], "m");
        let addr = f.addr();
        f.stop(); // does not wait for the hanging request
        assert!(std::net::TcpStream::connect(addr).is_err());
        drop(f); // a second stop is harmless
    }

    #[test]
    fn reset_answers_a_request_with_a_tcp_reset() {
        use std::io::{Read, Write};
        let f = start(FakeOptions::default());
        f.set_mode(Mode::Reset);
        let mut conn = std::net::TcpStream::connect(f.addr()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let body = r#"{"model":"m","messages":[]}"#;
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(head.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let err = conn.read_to_end(&mut buf).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
        assert!(buf.is_empty(), "nothing of an answer: {buf:?}");
        assert_eq!(f.requests(), 1);
    }
}
