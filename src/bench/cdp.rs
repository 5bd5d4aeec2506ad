//! Just enough of the Chrome DevTools Protocol to drive a headless `chromium` from a bench:
//! open a page, evaluate JavaScript. (The tests have their own copy in `tests/it/browser.rs`;
//! a bench must not depend on test code.)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless chromium with one page; killed when dropped.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    socket: Socket,
    next_id: u64,
}

/// The chromium binary on `PATH`, if any.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

impl Browser {
    pub fn launch() -> Result<Browser> {
        let bin = chromium().context("no chromium on PATH (apt-get install -y chromium)")?;
        let profile = tempfile::tempdir()?;
        let child = Command::new(bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1440,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start chromium")?;
        let port = wait_port(profile.path())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let socket = rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let list: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
                    .await?
                    .json()
                    .await?;
                let page = list.as_array().and_then(|l| {
                    l.iter()
                        .find(|t| t["type"] == "page")
                        .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_string))
                });
                if let Some(url) = page {
                    let (s, _) = tokio_tungstenite::connect_async(url).await?;
                    return Ok::<_, anyhow::Error>(s);
                }
                if Instant::now() > deadline {
                    bail!("chromium opened no page");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })?;
        Ok(Browser {
            child,
            _profile: profile,
            rt,
            socket,
            next_id: 0,
        })
    }

    fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        let socket = &mut self.socket;
        self.rt.block_on(async {
            socket.send(Message::Text(msg.into())).await?;
            loop {
                let m = tokio::time::timeout(Duration::from_secs(60), socket.next())
                    .await
                    .with_context(|| format!("{method}: no answer from chromium"))?
                    .context("the CDP socket closed")??;
                let Message::Text(t) = m else { continue };
                let v: Value = serde_json::from_str(&t)?;
                if v["id"] == id {
                    if !v["error"].is_null() {
                        bail!("{method}: {}", v["error"]);
                    }
                    return Ok(v["result"].clone());
                }
            }
        })
    }

    /// Runs `js` in every page opened from now on, before the page's own scripts.
    pub fn on_every_page(&mut self, js: &str) -> Result<()> {
        self.call("Page.enable", json!({}))?;
        self.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": js}),
        )?;
        Ok(())
    }

    /// Opens `url` and waits for the document to load.
    pub fn open(&mut self, url: &str) -> Result<()> {
        self.call("Page.navigate", json!({"url": url}))?;
        self.wait_for("the page to load", "document.readyState === 'complete'", 30)
    }

    /// Evaluates `js` in the page (promises awaited) and returns its value.
    pub fn eval(&mut self, js: &str) -> Result<Value> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        )?;
        if !r["exceptionDetails"].is_null() {
            bail!("{js}: {}", r["exceptionDetails"]);
        }
        Ok(r["result"]["value"].clone())
    }

    /// Polls `js` until it is true, up to `secs` seconds.
    pub fn wait_for(&mut self, what: &str, js: &str, secs: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.eval(js)? != json!(true) {
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_port(profile: &Path) -> Result<u16> {
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(p) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
        {
            return Ok(p);
        }
        if Instant::now() > deadline {
            bail!("chromium wrote no DevToolsActivePort");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
