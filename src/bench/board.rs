//! `pas bench board`: the kanban at scale in a real browser. A workspace holds `--cards`
//! cards (default 10,000) in the inbox; headless chromium opens the board; then cards are
//! dropped one at a time (`--drops`, critical priority so each lands in the shown part of
//! its column). For each drop: the time from the rename into `work/inbox/` to the card's
//! node being in the page's DOM (a MutationObserver stamps it), and how many card nodes
//! that were on the page before the drop and still are after it were replaced by new
//! nodes (a keyed board replaces none).
//!
//! `--old-assets DIR` (a folder with `templates/` and `static/`, e.g. from `git archive
//! <rev> dashboard`) measures that build too, in alternating rounds against the same
//! daemon and board: the daemon serves the assets from a folder (`PAS_DASHBOARD_DEV`) the
//! bench fills with the old or the new build before each round, so drift in the machine's
//! load touches both alike.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::cdp::Browser;
use super::{percentile, scratch, BenchArgs, Daemon};

/// Stamps when each dropped card's node enters the board; compares nodes across a drop.
const OBSERVER: &str = r#"window.__b = (() => {
  const seen = {}; const filled = {}; let before = new Map();
  const check = (id, el, t) => {
    if (!id || !id.startsWith('DROP')) return;
    if (!(id in seen)) seen[id] = t;
    const title = el.querySelector('.card-title');
    if (!(id in filled) && title && title.textContent.startsWith('dropped ')) filled[id] = t;
  };
  new MutationObserver((ms) => {
    const t = performance.timeOrigin + performance.now();
    for (const m of ms) {
      for (const n of m.addedNodes) if (n.nodeType === 1 && n.dataset) check(n.dataset.id, n, t);
      const card = m.target.nodeType === 1 && m.target.closest('article.card[data-id]');
      if (card) check(card.dataset.id, card, t);
    }
  }).observe(document.getElementById('board'), { childList: true, subtree: true });
  const cards = () => document.querySelectorAll('#board article.card[data-id]');
  return {
    seen, filled,
    snap() { before = new Map([...cards()].map((e) => [e.dataset.id, e])); return before.size; },
    compare() {
      let replaced = 0, same = 0;
      for (const e of cards()) { const b = before.get(e.dataset.id); if (!b) continue; if (b === e) same++; else replaced++; }
      return { replaced, same };
    },
  };
})(); true"#;

/// Stamps when the `/ws` message of each dropped card reaches the page (run before the
/// page's own scripts, so its listener comes first).
const WS_STAMP: &str = r#"window.__ws = {}; (() => {
  const Orig = window.WebSocket;
  window.WebSocket = function (url, protocols) {
    const w = new Orig(url, protocols);
    w.addEventListener('message', (m) => {
      const t = performance.timeOrigin + performance.now();
      const r = /"type":"job\.created".*?"id":"(DROP\d+)"|"id":"(DROP\d+)".*?"type":"job\.created"/.exec(String(m.data));
      const id = r && (r[1] || r[2]);
      if (id && !(id in window.__ws)) window.__ws[id] = t;
    });
    return w;
  };
  window.WebSocket.prototype = Orig.prototype;
})();"#;

/// What one build showed.
#[derive(Default)]
struct Figures {
    latencies_ms: Vec<f64>,
    /// From the `/ws` message reaching the page to the node in the DOM: the page's part.
    in_page_ms: Vec<f64>,
    /// From the rename to the node showing the card's title (fetched after the event).
    filled_ms: Vec<f64>,
    /// The keyed board's own time for its last render after each drop (the old build
    /// does not report it).
    render_ms: Vec<f64>,
    replaced: Vec<u64>,
    kept: Vec<u64>,
    /// Drops whose card was not on the page 10 s after the rename.
    missing: u64,
}

pub fn board(args: &BenchArgs) -> Result<i32> {
    let n = args.cards.first().copied().unwrap_or(10_000);
    let drops = args.drops.max(1);
    let (_dir, ws) = scratch(args.dir.as_deref(), 0, 1, args)?;
    let inbox = ws.state_dir(crate::card::State::Inbox);
    let prios = ["low", "medium", "high", "medium"];
    for i in 0..n {
        std::fs::write(
            inbox.join(format!("B{i:06}.yaml")),
            format!(
                "title: board card {i}\npriority: {}\nrequires: [nobody-{}]\n",
                prios[i % prios.len()],
                i % 7
            ),
        )?;
    }
    // The daemon serves the dashboard's assets from here; each round fills it.
    let dev = tempfile::tempdir()?;
    let new_assets = tempfile::tempdir()?;
    crate::dashboard::write_assets(new_assets.path())?;
    let mut builds: Vec<(&str, &Path)> = Vec::new();
    if let Some(old) = &args.old_assets {
        if !old.join("static/app.js").is_file() {
            bail!("{}: no static/app.js in it", old.display());
        }
        builds.push(("old", old.as_path()));
    }
    builds.push(("new", new_assets.path()));
    std::env::set_var("PAS_DASHBOARD_DEV", dev.path());
    let t0 = Instant::now();
    let _daemon = Daemon::start_quiet(&ws.root)?;
    std::env::remove_var("PAS_DASHBOARD_DEV");
    // The servers listen once the daemon has read the board.
    let deadline = Instant::now() + Duration::from_secs(120);
    let addr = loop {
        let a = std::fs::read_to_string(crate::server::addresses_path(&ws))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["dashboard"].as_str().map(str::to_string));
        match a {
            Some(a) => break a,
            None if Instant::now() > deadline => {
                bail!("the daemon recorded no dashboard address in .pas/serve.json")
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    eprintln!(
        "daemon up with {n} cards in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let mut browser = Browser::launch()?;
    browser.on_every_page(WS_STAMP)?;
    let rounds = args.runs.max(1) * 2;
    let per_round = drops.div_ceil(rounds);
    let mut figures: Vec<Figures> = builds.iter().map(|_| Figures::default()).collect();
    let mut next = 0usize;
    for round in 0..rounds {
        for (b, (name, assets)) in builds.iter().enumerate() {
            copy_dir(assets, dev.path())?;
            browser.open(&format!("http://{addr}/"))?;
            browser.wait_for(
                "the board to hold every card",
                &format!(
                    "!!window.pas && window.pas.cards.size >= {n} && \
                     document.getElementById('live').className.includes('on')"
                ),
                120,
            )?;
            std::thread::sleep(Duration::from_millis(1500)); // the first renders settle
            browser.eval(OBSERVER)?;
            for _ in 0..per_round {
                let id = format!("DROP{next:05}");
                next += 1;
                browser.eval("window.__b.snap()")?;
                let tmp = inbox.join(format!(".{id}.tmp"));
                std::fs::write(&tmp, format!("title: dropped {id}\npriority: critical\n"))?;
                let at = epoch_ms();
                std::fs::rename(&tmp, inbox.join(format!("{id}.yaml")))?;
                let deadline = Instant::now() + Duration::from_secs(10);
                let seen = loop {
                    let v = browser.eval(&format!("window.__b.seen['{id}'] ?? null"))?;
                    if let Some(t) = v.as_f64() {
                        break Some(t);
                    }
                    if Instant::now() > deadline {
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                };
                // Not on the page after 10 s: counted, and left out of the times.
                let Some(seen) = seen else {
                    eprintln!("{name}: {id} not on the board after 10 s");
                    figures[b].missing += 1;
                    continue;
                };
                // The card's fields arrive in a later render (fetched after the event):
                // the comparison waits for them, so it covers that render too.
                let until = Instant::now() + Duration::from_secs(3);
                while browser.eval(&format!("'{id}' in window.__b.filled"))? != json!(true)
                    && Instant::now() < until
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                std::thread::sleep(Duration::from_millis(300));
                let c = browser.eval("window.__b.compare()")?;
                let render =
                    browser.eval("window.pasBoard ? window.pasBoard.stats.last_ms : null")?;
                let msg = browser.eval(&format!("window.__ws['{id}'] ?? null"))?;
                let filled = browser.eval(&format!("window.__b.filled['{id}'] ?? null"))?;
                let f = &mut figures[b];
                f.latencies_ms.push(seen - at);
                if let Some(m) = msg.as_f64() {
                    f.in_page_ms.push(seen - m);
                }
                if let Some(r) = render.as_f64() {
                    f.render_ms.push(r);
                }
                if let Some(t) = filled.as_f64() {
                    f.filled_ms.push(t - at);
                }
                f.replaced.push(c["replaced"].as_u64().unwrap_or(0));
                f.kept.push(c["same"].as_u64().unwrap_or(0));
            }
            eprintln!("round {}: {name} done", round + 1);
        }
    }
    let mut out = serde_json::Map::new();
    for ((name, _), f) in builds.iter().zip(figures.iter_mut()) {
        f.latencies_ms.sort_by(|a, b| a.total_cmp(b));
        f.in_page_ms.sort_by(|a, b| a.total_cmp(b));
        f.filled_ms.sort_by(|a, b| a.total_cmp(b));
        f.render_ms.sort_by(|a, b| a.total_cmp(b));
        let r = json!({
            "drops": f.latencies_ms.len() as u64 + f.missing,
            "not_shown_after_10_s": f.missing,
            "drop_to_dom_ms": {
                "p50": percentile(&f.latencies_ms, 0.50),
                "p99": percentile(&f.latencies_ms, 0.99),
                "max": f.latencies_ms.last().copied().unwrap_or(0.0),
            },
            "ws_message_to_dom_ms": {
                "p50": percentile(&f.in_page_ms, 0.50),
                "p99": percentile(&f.in_page_ms, 0.99),
                "max": f.in_page_ms.last().copied().unwrap_or(0.0),
            },
            "drop_to_title_ms": {
                "p50": percentile(&f.filled_ms, 0.50),
                "p99": percentile(&f.filled_ms, 0.99),
                "max": f.filled_ms.last().copied().unwrap_or(0.0),
            },
            "render_ms": (!f.render_ms.is_empty()).then(|| json!({
                "p50": percentile(&f.render_ms, 0.50),
                "max": f.render_ms.last().copied().unwrap_or(0.0),
            })),
            "unchanged_nodes_replaced": {
                "total": f.replaced.iter().sum::<u64>(),
                "per_drop_max": f.replaced.iter().max().copied().unwrap_or(0),
            },
            "nodes_kept_per_drop_min": f.kept.iter().min().copied().unwrap_or(0),
        });
        if !args.json {
            if let Some(r) = r["render_ms"].as_object() {
                println!(
                    "board of {n} cards, {name} build: one render (filter, sort, reconcile) p50 {:.1} ms · max {:.1} ms",
                    r["p50"].as_f64().unwrap_or(f64::NAN),
                    r["max"].as_f64().unwrap_or(f64::NAN)
                );
            }
            println!(
                "board of {n} cards, {name} build, {} drops ({} not on the page after 10 s):\n  rename -> node in the DOM p50 {:.1} ms · p99 {:.1} ms · max {:.1} ms\n  \
                 /ws message -> node in the DOM p50 {:.1} ms · p99 {:.1} ms · max {:.1} ms\n  \
                 rename -> the card's title on its node p50 {:.1} ms · p99 {:.1} ms · max {:.1} ms\n  \
                 unchanged card nodes replaced: {} in all (at most {} in one drop); nodes left alone per drop: at least {}",
                r["drops"],
                r["not_shown_after_10_s"],
                r["drop_to_dom_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
                r["drop_to_dom_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
                r["drop_to_dom_ms"]["max"].as_f64().unwrap_or(f64::NAN),
                r["ws_message_to_dom_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
                r["ws_message_to_dom_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
                r["ws_message_to_dom_ms"]["max"].as_f64().unwrap_or(f64::NAN),
                r["drop_to_title_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
                r["drop_to_title_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
                r["drop_to_title_ms"]["max"].as_f64().unwrap_or(f64::NAN),
                r["unchanged_nodes_replaced"]["total"],
                r["unchanged_nodes_replaced"]["per_drop_max"],
                r["nodes_kept_per_drop_min"],
            );
        }
        out.insert((*name).to_string(), r);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"cards": n, "builds": out}))?
        );
    }
    Ok(0)
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Replaces `to`'s `templates/` and `static/` with `from`'s.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    for sub in ["templates", "static"] {
        let dst = to.join(sub);
        if dst.exists() {
            std::fs::remove_dir_all(&dst)?;
        }
        std::fs::create_dir_all(&dst)?;
        for e in std::fs::read_dir(from.join(sub))
            .with_context(|| format!("{}/{sub}", from.display()))?
        {
            let e = e?;
            if e.file_type()?.is_file() {
                std::fs::copy(e.path(), dst.join(e.file_name()))?;
            }
        }
    }
    Ok(())
}
