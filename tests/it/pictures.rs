//! Pictures and the board at scale, in a real browser (headless chromium over CDP, a real
//! daemon): the kanban keeps every unchanged card's DOM node (the same object) while
//! another card moves and a new one arrives; the agent graph draws the demo's swarm, pans
//! and zooms, and shows a blocked agent as blocked and a hostile note as text; the cost
//! charts draw series from real receipts (whose API is checked even without a browser). Screenshots go to `target/tmp/pictures/`
//! (copies are in `docs/screenshots/`).

use std::path::PathBuf;
use std::time::Duration;

use crate::support::browser::Browser;
use crate::support::liveness::Beater;
use crate::support::workspace::{Workspace, FAST};

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
        "every card on the board, with its title, drawn by the script (not the server's page)",
        "!!window.pasBoard && window.pasBoard.nodes.get('KEEP-29')?.el === document.querySelector('[data-id=\"KEEP-29\"]') && \
         document.querySelectorAll('#col-inbox article.card[data-id]').length === 31 && \
         document.querySelector('[data-id=\"KEEP-29\"] .card-title').textContent === 'card 29 nobody takes'",
    );
    // Remember each node and mark it: a replaced node would lose the mark.
    b.eval(
        "window.__kept = new Map([...document.querySelectorAll('article.card[data-id]')]\
         .map((e) => { e.__mark = 1; return [e.dataset.id, e]; })); window.__kept.size",
    );
    b.eval("window.__noReload = 5");
    // Count the board's fetches (with what they answered) and note when it last rendered,
    // to tell when the renders that follow the changes below are done.
    b.eval(
        "(() => { const w = window; const f = w.fetch; w.__fetched = []; w.__inflight = 0; \
         w.fetch = async (...a) => { w.__inflight++; try { const r = await f(...a); \
         w.__fetched.push({ url: String(a[0]), body: await r.clone().text(), at: performance.now() }); return r; } \
         finally { w.__inflight--; } }; \
         const st = w.pasBoard.stats; let n = st.renders; \
         Object.defineProperty(st, 'renders', { get: () => n, set: (v) => { n = v; w.__renderedAt = performance.now(); } }); \
         return true; })()",
    );

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
    // The renders that follow are done: the moved and the new card's fields and the new
    // agent have been fetched, nothing is being fetched, and the board rendered since.
    b.wait_for(
        "the moved card's fields and the agent's group rendered",
        "(() => { const w = window; if (w.__inflight || document.querySelector('article.card.pending')) return false; \
         const got = (path, id) => w.__fetched.some((d) => d.url.includes(path) && d.body.includes(id)); \
         if (!got('/api/jobs', '\"MOVE-1\"') || !got('/api/jobs', '\"NEW-1\"') || !got('/api/agents', '\"mover\"')) return false; \
         return w.__renderedAt > Math.max(...w.__fetched.map((d) => d.at)); })()",
    );
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

    // The filters still work on the keyed board: a text filter shows the matching cards
    // only, and clearing it brings the others back.
    let set_filter = |b: &mut Browser, v: &str| {
        b.eval(&format!(
            "(() => {{ const f = document.getElementById('f-text'); f.value = '{v}'; \
             f.dispatchEvent(new Event('input')); return true; }})()"
        ));
    };
    set_filter(&mut b, "keep-1");
    b.wait_for(
        "only the cards matching 'keep-1'",
        "[...document.querySelectorAll('#col-inbox article.card')].map((e) => e.dataset.id).sort().join(' ') \
         === 'KEEP-10 KEEP-11 KEEP-12 KEEP-13 KEEP-14 KEEP-15 KEEP-16 KEEP-17 KEEP-18 KEEP-19'",
    );
    set_filter(&mut b, "");
    b.wait_for(
        "every inbox card back",
        "document.querySelectorAll('#col-inbox article.card').length === 31",
    );
    beater.stop();
    d.stop();
}

/// The agents of the demo's workspace (`agents/*.md`) and their parents.
const DEMO_EDGES: &[(&str, &str)] = &[
    ("architect", "director-code"),
    ("architect", "director-research"),
    ("director-code", "manager-backend"),
    ("director-code", "manager-frontend"),
    ("director-research", "manager-research"),
    ("manager-backend", "coder-1"),
    ("manager-backend", "coder-2"),
    ("manager-frontend", "designer"),
    ("manager-research", "researcher"),
    ("manager-research", "writer"),
];

#[test]
fn the_graph_draws_the_demo_swarm_pans_zooms_and_shows_a_blocked_agent_and_hostile_text_as_such() {
    let Some(mut b) = browser() else { return };
    let demo = crate::support::workspace::Demo::start();
    let dash = demo.dashboard();
    b.open(&format!("http://{dash}/tree"));
    b.wait_for("the stream to be live", LIVE);
    b.eval("window.__noReload = 6");
    b.wait_for(
        "a node for each of the demo's eleven agents",
        "document.querySelectorAll('#graph g.gnode').length === 11",
    );
    for (parent, child) in DEMO_EDGES {
        b.wait_for(
            &format!("the edge {parent} -> {child}"),
            &format!("!!document.querySelector('#graph path.edge[data-from=\"{parent}\"][data-to=\"{child}\"]')"),
        );
    }
    assert_eq!(
        b.eval("document.querySelectorAll('#graph path.edge').length"),
        DEMO_EDGES.len()
    );
    // The demo's simulated agents register and beat: they are drawn up.
    b.wait_for(
        "the simulated coder-1 drawn up",
        "document.querySelector('#graph g.gnode[data-agent=\"coder-1\"]').dataset.status === 'up'",
    );
    // Each node has its context gauge with the governor's two thresholds, and its roll-up.
    assert_eq!(
        b.eval("document.querySelectorAll('#graph g.gnode[data-agent=\"coder-1\"] .ctx line.tick').length"),
        2
    );
    b.wait_for(
        "a roll-up on the root",
        "/\\$\\d+\\.\\d+ · \\d+ tok/.test(document.querySelector('#graph g.gnode[data-agent=\"architect\"] text.roll').textContent)",
    );

    // manager-frontend (not simulated) registers and says it is blocked, with a hostile note.
    demo.pas(&["register", "manager-frontend"]);
    demo.pas(&[
        "heartbeat",
        "manager-frontend",
        "--status",
        "blocked",
        "--note",
        "<img src=x onerror=\"window.__pwned=1\"> waiting on design",
    ]);
    let node = "document.querySelector('#graph g.gnode[data-agent=\"manager-frontend\"]')";
    b.wait_for(
        "manager-frontend drawn as blocked",
        &format!("{node}.classList.contains('said-blocked') && {node}.dataset.beat === 'blocked'"),
    );
    assert_eq!(
        b.eval(&format!("{node}.querySelector('text.state').textContent")),
        "blocked"
    );
    // Blocked stands out: its box is drawn in the warning colour, not the state's.
    assert_ne!(
        b.eval(&format!("getComputedStyle({node}.querySelector('rect.box')).stroke")),
        b.eval("getComputedStyle(document.querySelector('#graph g.gnode[data-agent=\"coder-1\"] rect.box')).stroke")
    );
    // The hostile note is text, in the list and the graph's tooltip.
    b.wait_for(
        "the note in the node's tooltip",
        &format!("{node}.querySelector(':scope > title').textContent.includes('<img src=x')"),
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#graph img, #tree img').length"),
        0
    );
    // Agent names are validated where they enter pas, so a hostile one cannot come from a
    // file: put one straight into the page's state to see the drawing keep it as text.
    b.eval(
        "window.pas.agents.set('<b>x</b><img src=y onerror=\"window.__pwned=2\">', \
         { name: '<b>x</b><img src=y onerror=\"window.__pwned=2\">', status: 'up', parent: 'writer' }); true",
    );
    b.wait_for(
        "the hostile name drawn as text",
        "[...document.querySelectorAll('#graph text.name')].some((t) => t.textContent.startsWith('<b>x</b>'))",
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#graph img, #graph b, #tree img').length"),
        0
    );
    assert_eq!(b.eval("typeof window.__pwned"), "undefined");
    b.screenshot(&shots().join("tree-graph.png"));

    // Pan and zoom change the view's transform: the buttons, the wheel, a drag.
    let transform = "document.querySelector('#graph g.view').getAttribute('transform')";
    let before = b.eval(transform);
    b.eval("document.getElementById('g-in').click()");
    let zoomed = b.eval(transform);
    assert_ne!(zoomed, before, "zoom in changed nothing");
    assert!(
        zoomed.as_str().unwrap().contains("scale(1.250)"),
        "{zoomed}"
    );
    b.eval(
        "document.querySelector('svg.graph').dispatchEvent(new WheelEvent('wheel', \
         { deltaY: 100, clientX: 300, clientY: 200, bubbles: true, cancelable: true }))",
    );
    let wheeled = b.eval(transform);
    assert_ne!(wheeled, zoomed, "the wheel changed nothing");
    b.call(
        "Input.dispatchMouseEvent",
        serde_json::json!({"type": "mousePressed", "x": 700, "y": 300, "button": "left", "clickCount": 1}),
    );
    b.call(
        "Input.dispatchMouseEvent",
        serde_json::json!({"type": "mouseMoved", "x": 760, "y": 340, "button": "left", "buttons": 1}),
    );
    b.call(
        "Input.dispatchMouseEvent",
        serde_json::json!({"type": "mouseReleased", "x": 760, "y": 340, "button": "left", "clickCount": 1}),
    );
    let dragged = b.eval(transform);
    assert_ne!(dragged, wheeled, "the drag changed nothing");
    b.eval("document.getElementById('g-reset').click()");
    assert_eq!(b.eval(transform), before);
    assert_eq!(b.eval("window.__noReload"), 6, "the page reloaded");
}

#[test]
fn the_cost_charts_draw_spend_and_tokens_per_hour_and_day_from_real_receipts() {
    use pas::llm::config::Protocol;
    use pas::llm::fake::{self, FakeOptions};

    use crate::support::gateway::{ask, model, provider};
    let up = fake::start(FakeOptions::default());
    let ws = Workspace::with_config(&format!(
        "{FAST}providers:\n{}",
        provider(
            "p",
            &up,
            Protocol::Openai,
            "",
            &format!(
                "{}{}",
                model("m1", &["x"], Some(("1", "2"))),
                model("m2", &["y"], Some(("3", "4")))
            )
        )
    ));
    let mut d = ws.serve();
    let (dash, gw) = ws.addresses();
    let chat = |m: &str, agent: &str| {
        let url = format!("http://{gw}/v1/chat/completions");
        let r = crate::support::http::send(
            "POST",
            &url,
            &[("x-pas-agent", agent)],
            Some(&ask(m, false)),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    };
    chat("m1", "alpha");
    chat("m1", "alpha");
    chat("m2", "beta");

    // The API: one series per model, this hour's spend the exact sum of the receipts.
    let series = |q: &str| -> serde_json::Value {
        let r = crate::support::http::send(
            "GET",
            &format!("http://{dash}/api/costs/series?{q}"),
            &[],
            None,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).unwrap()
    };
    let costs: serde_json::Value = crate::support::workspace::wait_until(
        "three receipts in /api/costs",
        Duration::from_secs(10),
        || {
            let r =
                crate::support::http::send("GET", &format!("http://{dash}/api/costs"), &[], None);
            let v: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
            (v["total"]["calls"] == 3)
                .then_some(v.clone())
                .ok_or(v.to_string())
        },
    );
    let by_model = series("by=model&step=hour");
    assert_eq!(by_model["buckets"].as_array().unwrap().len(), 48);
    let keys: Vec<&str> = by_model["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 2, "{by_model}");
    let total: rust_decimal::Decimal = by_model["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["total_cost_usd"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    assert_eq!(
        total,
        costs["total"]["cost_usd"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        "the series add up to the receipts, exactly"
    );
    for s in by_model["series"].as_array().unwrap() {
        // Money is a decimal string in every bucket; the last bucket is this hour.
        assert!(
            s["cost_usd"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c.is_string()),
            "{s}"
        );
        assert_eq!(s["cost_usd"][47], s["total_cost_usd"], "{s}");
    }
    let by_agent = series("by=agent&step=day");
    assert_eq!(by_agent["buckets"].as_array().unwrap().len(), 30);
    let alpha = by_agent["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "alpha")
        .unwrap();
    assert_eq!(alpha["total_calls"], 2);
    assert_eq!(
        crate::support::http::send(
            "GET",
            &format!("http://{dash}/api/costs/series?by=job"),
            &[],
            None
        )
        .status,
        400
    );

    // The page draws them: bars for each series this hour, the model share.
    let Some(mut b) = browser() else { return };
    b.open(&format!("http://{dash}/costs"));
    b.wait_for("the stream to be live", LIVE);
    b.eval("window.__noReload = 7");
    b.wait_for(
        "spend bars by provider",
        "document.querySelectorAll('#cost-series svg.series[data-field=\"cost_usd\"] rect[data-key=\"p\"]').length === 1",
    );
    b.eval("(() => { const s = document.getElementById('s-by'); s.value = 'model'; s.dispatchEvent(new Event('change')); return true; })()");
    b.wait_for(
        "spend and token bars by model",
        "['cost_usd', 'tokens'].every((f) => [...document.querySelectorAll(`#cost-series svg.series[data-field=\"${f}\"] rect[data-key]`)]\
         .map((r) => r.dataset.key).sort().join(' ') === 'p/m1 p/m2')",
    );
    assert_eq!(
        b.eval("[...document.querySelectorAll('#cost-series svg.donut .slice')].map((p) => p.dataset.key).sort().join(' ')"),
        "p/m1 p/m2"
    );
    b.screenshot(&shots().join("costs-charts-hour.png"));
    // A new receipt redraws the charts without a reload: agent gamma appears.
    b.eval("(() => { const s = document.getElementById('s-by'); s.value = 'agent'; s.dispatchEvent(new Event('change')); return true; })()");
    b.wait_for(
        "the bars by agent",
        "!!document.querySelector('#cost-series rect[data-key=\"alpha\"]')",
    );
    chat("m2", "gamma");
    b.wait_for(
        "gamma's bar, live",
        "!!document.querySelector('#cost-series svg.series rect[data-key=\"gamma\"]')",
    );
    b.eval("(() => { const s = document.getElementById('s-step'); s.value = 'day'; s.dispatchEvent(new Event('change')); return true; })()");
    b.wait_for(
        "the bars per day",
        "document.querySelectorAll('#cost-series svg.series[data-field=\"tokens\"] rect[data-key=\"gamma\"]').length === 1 && \
         document.querySelector('#cost-series h2').textContent === 'Spend per day by agent'",
    );
    b.screenshot(&shots().join("costs-charts-day.png"));
    assert_eq!(b.eval("window.__noReload"), 7, "the page reloaded");
    d.stop();
}
