//! Operating pas in a real browser (headless chromium over CDP): an agent that says it is
//! blocked stands out on the board's agent group and on the tree; an agent gone down shows
//! as an active alert on the board page, and the alert clears, without a reload, when the
//! agent beats again. Screenshots go to `target/tmp/ops-browser/` (copies are in `docs/`).

use std::path::PathBuf;
use std::time::Duration;

use crate::support::browser::Browser;
use crate::support::workspace::{wait_until, Workspace, FAST};

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ops-browser")
}

const BANNER: &str = "document.getElementById('active-alerts')";

#[test]
fn a_blocked_agent_stands_out_and_an_alert_shows_until_the_agent_beats_again() {
    let Some(mut b) = Browser::launch() else {
        assert!(
            std::env::var_os("PAS_REQUIRE_BROWSER").is_none(),
            "PAS_REQUIRE_BROWSER is set but no chromium is installed"
        );
        eprintln!("SKIPPED: no chromium installed (apt-get install -y chromium)");
        return;
    };
    let ws = Workspace::with_config(FAST);
    // Interval 4 s: down after 8 s without a beat, deregistered after 12 s.
    ws.pas_ok(&[
        "register",
        "w",
        "--capabilities",
        "ops",
        "--heartbeat-interval-s",
        "4",
    ]);
    let beat = |status: &str, note: &str| {
        ws.pas_ok(&[
            "heartbeat",
            "w",
            "--status",
            status,
            "--note",
            note,
            "--progress",
            "0.3",
        ]);
    };
    beat("running", "starting");
    let mut d = ws.serve_ready();
    ws.drop_card("OPS-1", "title: review the parser\nrequires: [ops]\n");
    ws.wait_assigned("OPS-1", "w");
    let (dash, _) = ws.addresses();
    let base = format!("http://{dash}");
    b.open(&format!("{base}/"));
    b.wait_for(
        "the stream to be live",
        "document.getElementById('live').className.includes('on')",
    );
    b.eval("window.__noReload = 7");
    let group = "document.querySelector('.group[data-agent=\"w\"]')";
    b.wait_for("w's group", &format!("!!{group}"));
    assert_eq!(
        b.eval(&format!("{group}.classList.contains('said-blocked')")),
        false
    );

    // It says it is blocked: its group stands out, the note is text, the banner says so.
    beat(
        "blocked",
        "<img src=x onerror=\"window.__pwned=1\"> waiting for review",
    );
    b.wait_for(
        "the group drawn as blocked",
        &format!("{group}.classList.contains('said-blocked')"),
    );
    b.wait_for(
        "the blocked alert",
        &format!("{BANNER}.textContent.includes('w says it is blocked')"),
    );
    assert_eq!(b.eval("typeof window.__pwned"), "undefined");
    assert_eq!(
        b.eval(&format!("{group}.querySelectorAll('img').length")),
        0
    );
    b.screenshot(&shots().join("board-blocked.png"));

    // The tree draws it as blocked, with its progress.
    b.open(&format!("{base}/tree"));
    let node = "document.querySelector('#agent-w .agent')";
    b.wait_for("the tree node", &format!("!!{node}"));
    b.wait_for(
        "the node drawn as blocked",
        &format!("{node}.classList.contains('said-blocked') && !!{node}.querySelector('progress')"),
    );
    b.screenshot(&shots().join("tree-blocked.png"));

    // Silent: down after two intervals; the board page shows the alert without a reload.
    b.open(&format!("{base}/"));
    b.eval("window.__noReload = 8");
    b.wait_for(
        "the down alert on the board",
        &format!("!{BANNER}.hidden && {BANNER}.textContent.includes('w is down: no beat for 2 intervals (8 s)')"),
    );
    assert_eq!(b.eval("window.__noReload"), 8, "the page reloaded");
    b.screenshot(&shots().join("board-alert.png"));

    // It beats again: the alert clears.
    beat("running", "back at it");
    wait_until("w up", Duration::from_secs(5), || {
        let a = ws.pas_json(&["agents", "--json"]);
        let up = a
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "w" && x["status"] == "up");
        up.then_some(()).ok_or(a.to_string())
    });
    b.wait_for("the alert cleared", &format!("{BANNER}.hidden"));
    assert_eq!(b.eval("window.__noReload"), 8, "the page reloaded");
    b.screenshot(&shots().join("board-clear.png"));
    d.stop();
}

#[test]
fn the_providers_page_shows_a_breaker_opening_live_and_the_activity_feed_reads_sentences() {
    let Some(mut b) = Browser::launch() else {
        assert!(
            std::env::var_os("PAS_REQUIRE_BROWSER").is_none(),
            "PAS_REQUIRE_BROWSER is set but no chromium is installed"
        );
        eprintln!("SKIPPED: no chromium installed (apt-get install -y chromium)");
        return;
    };
    use pas::llm::fake::{self, FakeOptions, Mode};
    let bad = fake::start(FakeOptions::default());
    let good = fake::start(FakeOptions::default());
    let gw = crate::support::gateway::pair(&bad, &good, "");
    let (dash, _) = gw.ws.addresses();
    b.open(&format!("http://{dash}/providers"));
    let row = "document.querySelector('tr.prov[data-provider=\"bad\"]')";
    b.wait_for("the bad provider's row", &format!("!!{row}"));
    assert_eq!(b.eval(&format!("{row}.className")), "prov br-closed");
    b.eval("window.__noReload = 9");
    bad.set_mode(Mode::Status {
        code: 500,
        retry_after: None,
    });
    for _ in 0..3 {
        let r = gw.chat(&crate::support::gateway::ask("cap:x", false), &[]);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    b.wait_for(
        "the breaker open on the page",
        &format!("{row}.className === 'prov br-open'"),
    );
    b.wait_for(
        "the cooling alert in the banner",
        &format!("{BANNER}.textContent.includes('provider bad is cooling down after 3 failures in a row')"),
    );
    assert_eq!(b.eval("window.__noReload"), 9, "the page reloaded");
    b.screenshot(&shots().join("providers-open.png"));

    // The activity feed tells each event in words, live.
    b.open(&format!("http://{dash}/activity"));
    b.wait_for(
        "the stream to be live",
        "document.getElementById('live').className.includes('on')",
    );
    gw.ws
        .drop_card("ACT-1", "title: a card nobody takes\nrequires: [nobody]\n");
    b.wait_for(
        "a sentence in the feed, naming the card by its title",
        "document.getElementById('feed').textContent.includes('“a card nobody takes” arrived in inbox')",
    );
    b.wait_for(
        "the receipt as a sentence",
        "document.getElementById('feed').textContent.includes('good/m-good answered')",
    );
}
