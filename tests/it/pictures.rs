//! Pictures and the board at scale, in a real browser (headless chromium over CDP, a real
//! daemon): the kanban keeps every unchanged card's DOM node (the same object) while
//! another card moves and a new one arrives; the agent graph draws the demo's swarm, pans
//! and zooms, and shows a blocked agent as blocked and a hostile note as text; the cost
//! charts draw series from real receipts. Screenshots go to `target/tmp/pictures/`
//! (copies are in `docs/screenshots/`).

use std::path::PathBuf;
use std::time::Duration;

use crate::browser::Browser;
use crate::fixture::{Workspace, FAST};
use crate::liveness::Beater;

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pictures")
}

fn browser() -> Option<Browser> {
    let b = Browser::launch();
    if b.is_none() {
        assert!(
            std::env::var_os("PAS_REQUIRE_BROWSER").is_none(),
            "PAS_REQUIRE_BROWSER is set but no chromium is installed"
        );
        eprintln!("SKIPPED: no chromium installed (apt-get install -y chromium)");
    }
    b
}

const LIVE: &str = "document.getElementById('live').className.includes('on')";

#[test]
fn the_kanban_keeps_unchanged_card_nodes_when_another_card_moves_and_a_new_one_arrives() {
    let Some(mut b) = browser() else { return };
    let ws = Workspace::with_config(&format!("{FAST}heartbeat_interval_s: 1\n"));
    for i in 0..30 {
        ws.drop_card(
            &format!("KEEP-{i:02}"),
            &format!("title: card {i} nobody takes\nrequires: [nobody]\npriority: low\n"),
        );
    }
    ws.drop_card("MOVE-1", "title: the card that moves\nrequires: [mover]\n");
    let mut d = ws.serve();
    let (dash, _) = ws.addresses();
    b.open(&format!("http://{dash}/"));
    b.wait_for("the stream to be live", LIVE);
    b.wait_for(
        "every card on the board, with its title",
        "document.querySelectorAll('#col-inbox article.card[data-id]').length === 31 && \
         document.querySelector('[data-id=\"KEEP-29\"] .card-title').textContent === 'card 29 nobody takes'",
    );
    // Remember each node and mark it: a replaced node would lose the mark.
    b.eval(
        "window.__kept = new Map([...document.querySelectorAll('article.card[data-id]')]\
         .map((e) => { e.__mark = 1; return [e.dataset.id, e]; })); window.__kept.size",
    );
    b.eval("window.__noReload = 5");

    let beater = Beater::start(&ws, "mover", Duration::from_millis(200));
    ws.register("mover", &["mover"], 1);
    ws.drop_card(
        "NEW-1",
        "title: a new card\nrequires: [nobody]\npriority: critical\n",
    );
    b.wait_for(
        "the moved card in assigned and the new one in the inbox",
        "document.querySelector('[data-id=\"MOVE-1\"]')?.closest('.column').dataset.col === 'assigned' && \
         document.querySelector('#col-inbox [data-id=\"NEW-1\"] .card-title')?.textContent === 'a new card'",
    );
    // Let the renders that follow (the moved card's fields, the agent's group) settle.
    std::thread::sleep(Duration::from_millis(800));
    let replaced = b.eval(
        "[...window.__kept].filter(([id, e]) => document.querySelector(`[data-id=\"${id}\"]`) !== e).map(([id]) => id).join(' ')",
    );
    assert_eq!(replaced, "", "card nodes replaced instead of kept");
    assert_eq!(
        b.eval("[...document.querySelectorAll('#col-inbox article.card')].filter((e) => !e.__mark).map((e) => e.dataset.id).join(' ')"),
        "NEW-1",
        "only the new card has a new node"
    );
    // The new card is first (critical); only it may play the entry animation.
    assert_eq!(
        b.eval("document.querySelector('#col-inbox article.card').dataset.id"),
        "NEW-1"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#board article.card.enter:not([data-id=\"NEW-1\"])').length"),
        0
    );
    assert_eq!(b.eval("window.__noReload"), 5, "the page reloaded");
    b.screenshot(&shots().join("kanban-keyed.png"));
    beater.stop();
    d.stop();
}
