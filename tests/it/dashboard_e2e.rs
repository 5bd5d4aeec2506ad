//! The dashboard in a real browser (headless Debian chromium over CDP): cards appear and
//! move without a reload, an agent goes down on the tree when its beats stop, a `<script>`
//! title is text, the costs page follows new receipts (by status, per-agent budgets). A
//! screenshot of each page goes to `target/tmp/dashboard-e2e/`.

use std::path::PathBuf;
use std::time::Duration;

use pas::llm::config::Protocol;
use pas::llm::fake::{self, FakeOptions, Mode};
use serde_json::Value;

use crate::support::browser::Browser;
use crate::support::gateway::{ask, model, provider};
use crate::support::http;
use crate::support::liveness::Beater;
use crate::support::workspace::{Workspace, FAST};

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-e2e")
}

/// Records what the Content-Security-Policy blocks from now on (the pages re-render
/// from the stream, so a blocked style or connection would show up here).
const WATCH_CSP: &str = "window.__csp = []; document.addEventListener('securitypolicyviolation', \
    (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI))";

/// The column a card is shown in, or "" when it is not on the page.
fn column_of(id: &str) -> String {
    format!(
        "(() => {{ const c = document.querySelector('[data-id=\"{id}\"]'); \
         return c ? c.closest('.column').dataset.col : ''; }})()"
    )
}

#[test]
fn browser_sees_cards_move_agents_go_down_and_titles_stay_text() {
    let Some(mut b) = Browser::launch() else {
        // The README's test command (.ci/run) installs chromium and sets this: there, a
        // missing browser is a failure, never a silent skip.
        assert!(
            std::env::var_os("PAS_REQUIRE_BROWSER").is_none(),
            "PAS_REQUIRE_BROWSER is set but no chromium is installed"
        );
        eprintln!(
            "SKIPPED: no chromium installed (the README's test command installs it: \
             apt-get install -y chromium)"
        );
        return;
    };
    let up = fake::start(FakeOptions::default());
    let ws = Workspace::with_config(&format!(
        "{FAST}heartbeat_interval_s: 1\nbudgets: {{agent_daily_usd: \"1\"}}\nproviders:\n{}",
        provider(
            "p",
            &up,
            Protocol::Openai,
            "",
            &model("m", &["x"], Some(("1", "2")))
        )
    ));
    let mut d = ws.serve();
    let (dash, gw) = ws.addresses();
    let base = format!("http://{dash}");

    b.open(&format!("{base}/"));
    b.wait_for(
        "the stream to be live",
        "document.getElementById('live').className.includes('on')",
    );
    // Set once: still set later proves the page never reloaded.
    b.eval("window.__noReload = 42");
    b.eval(WATCH_CSP);

    // A card nobody can take yet shows in the inbox, with why it waits.
    ws.drop_card(
        "E2E-1",
        "title: \"<script>window.__pwned = 1</script> parse the cards\"\nrequires: [e2e]\npriority: high\n",
    );
    b.wait_for(
        "the card in the inbox",
        &format!("{} === 'inbox'", column_of("E2E-1")),
    );
    b.wait_for(
        "the title shown as text",
        "document.querySelector('[data-id=\"E2E-1\"] .card-title').textContent \
         === '<script>window.__pwned = 1</script> parse the cards'",
    );
    assert_eq!(b.eval("typeof window.__pwned"), "undefined");
    b.wait_for(
        "why the card waits",
        "!!document.querySelector('[data-id=\"E2E-1\"] .why')",
    );
    b.screenshot(&shots().join("kanban-waiting.png"));

    // An agent with the capability arrives: the card moves to assigned, no reload.
    let beater = Beater::start(&ws, "e2e-agent", Duration::from_millis(150));
    ws.register("e2e-agent", &["e2e"], 1);
    b.wait_for(
        "the card in assigned",
        &format!("{} === 'assigned'", column_of("E2E-1")),
    );
    assert_eq!(b.eval("window.__noReload"), 42, "the page reloaded");
    assert_eq!(
        b.eval("window.__csp.join(' | ')"),
        "",
        "the CSP blocked the board"
    );
    b.screenshot(&shots().join("kanban.png"));

    // The tree shows the agent up, then down once its beats stop.
    b.open(&format!("{base}/tree"));
    let status = "(() => { const n = document.querySelector('[data-agent=\"e2e-agent\"]'); \
                  return n ? n.dataset.status : ''; })()";
    b.wait_for("the agent up", &format!("{status} === 'up'"));
    b.eval("window.__noReload = 43");
    b.eval(WATCH_CSP);
    b.screenshot(&shots().join("tree-up.png"));
    beater.stop();
    b.wait_for("the agent down", &format!("{status} === 'down'"));
    assert_eq!(b.eval("window.__noReload"), 43, "the tree page reloaded");
    assert_eq!(
        b.eval("window.__csp.join(' | ')"),
        "",
        "the CSP blocked the tree"
    );
    b.screenshot(&shots().join("tree-down.png"));

    // The other pages render (and the alert of the agent going down is listed).
    b.open(&format!("{base}/alerts"));
    b.wait_for(
        "the agent.down alert",
        "document.getElementById('alerts').textContent.includes('e2e-agent is down: no beat for 2 intervals')",
    );
    b.screenshot(&shots().join("alerts.png"));
    b.open(&format!("{base}/jobs/E2E-1"));
    assert_eq!(
        b.eval("document.querySelector('h1').textContent"),
        "<script>window.__pwned = 1</script> parse the cards"
    );
    assert_eq!(b.eval("typeof window.__pwned"), "undefined");
    b.screenshot(&shots().join("job.png"));
    for page in ["costs", "activity"] {
        b.open(&format!("{base}/{page}"));
        b.wait_for(
            "the stream to be live",
            "document.getElementById('live').className.includes('on')",
        );
        b.screenshot(&shots().join(format!("{page}.png")));
    }

    // The costs page follows new receipts: an answered call by an agent, and one refused
    // upstream, show in the by-status table and the agent's budget.
    b.open(&format!("{base}/costs"));
    b.wait_for(
        "the stream to be live",
        "document.getElementById('live').className.includes('on')",
    );
    b.eval("window.__noReload = 44");
    b.eval(WATCH_CSP);
    let chat = |agent: Option<&str>| {
        let headers: Vec<(&str, &str)> = agent.map(|a| ("x-pas-agent", a)).into_iter().collect();
        let url = format!("http://{gw}/v1/chat/completions");
        http::send("POST", &url, &headers, Some(&ask("m", false))).status
    };
    // A hostile agent name never gets as far as a receipt; a plain one does.
    assert_eq!(
        chat(Some("<img src=x onerror=\"window.__pwned = 2\">")),
        400
    );
    let agent = "e2e-agent";
    assert_eq!(chat(Some(agent)), 200);
    up.set_mode(Mode::Status {
        code: 429,
        retry_after: None,
    });
    assert_ne!(chat(None), 200);
    b.wait_for(
        "the by-status table",
        "[...document.querySelectorAll('table[data-dim=\"status\"] tbody td:first-child')]\
         .map((td) => td.textContent).sort().join(' ') === 'http_429 ok'",
    );
    let gauge = b.eval("document.querySelector('.agent-budget h3').textContent");
    assert_eq!(
        gauge,
        Value::from(format!("Agent {agent} daily budget")),
        "the agent's name as text"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#cost-tiles img').length"),
        0
    );
    assert_eq!(b.eval("typeof window.__pwned"), "undefined");
    assert_eq!(b.eval("window.__noReload"), 44, "the costs page reloaded");
    assert_eq!(
        b.eval("window.__csp.join(' | ')"),
        "",
        "the CSP blocked the costs page"
    );
    b.screenshot(&shots().join("costs-live.png"));
    eprintln!("screenshots in {}", shots().display());
    d.stop();
}
