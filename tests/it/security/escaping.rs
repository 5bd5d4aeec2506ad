//! Every user string escaped: hostile text in every place a user or an agent can put
//! text (card titles and descriptions, agent descriptions and heartbeat notes, results,
//! errors, rejected file names; hostile receipt attribution is refused at the gateway) is
//! shown as text on every page,
//! round-trips exactly through the JSON API, and is never evaluated as a template.

use pas::llm::fake::{self, FakeOptions};
use serde_json::Value;

use super::raw;
use super::routes::DASHBOARD;
use crate::support::gateway::ask;
use crate::support::workspace::{wait_until, Workspace, WAIT};

/// Script, an attribute break-out, template injection (Jinja and JS), and a script end
/// tag meant for JSON embedded in a page.
const HOSTILE: &str = "<script>alert(1)</script> \"><img src=x onerror=alert(1)> SSTI{{7*7}} \
                       SSTI${7*7} </script><script>alert(2)</script> 'q' &amp;";

/// The percent-encoding of `s` for a path segment or a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What must hold of every HTML page: only the page's own two script elements, no
/// injected element, no evaluated template, and the headers of an HTML page.
fn check_html(url: &str, status: u16, headers: &[(String, String)], body: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    let h = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    if h("content-type") != Some("text/html; charset=utf-8") {
        wrong.push(format!("{url}: content-type {:?}", h("content-type")));
    }
    if h("x-content-type-options") != Some("nosniff") {
        wrong.push(format!("{url}: no nosniff"));
    }
    let csp = h("content-security-policy").unwrap_or("");
    let script_src = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src"));
    if script_src != Some("script-src 'self'") || !csp.contains("frame-ancestors 'none'") {
        wrong.push(format!("{url}: CSP {csp:?}"));
    }
    let lower = body.to_ascii_lowercase();
    // The boot data, ops.js, board.js, graph.js, charts.js and app.js: nothing else may
    // open a script.
    for (what, n) in [("<script", 6), ("</script", 6), ("<img", 0)] {
        if lower.matches(what).count() != n {
            wrong.push(format!(
                "{url} ({status}): {what} appears {} times",
                lower.matches(what).count()
            ));
        }
    }
    if body.contains("SSTI49") {
        wrong.push(format!("{url}: a template in user text was evaluated"));
    }
    wrong
}

/// The page's boot data (the JSON inside `<script id="boot">`).
fn boot(body: &str) -> Value {
    let start = body
        .find("<script id=\"boot\" type=\"application/json\">")
        .unwrap();
    let rest = &body[start..];
    let json = &rest[rest.find('>').unwrap() + 1..rest.find("</script>").unwrap()];
    serde_json::from_str(json).unwrap_or_else(|e| panic!("boot data is not JSON ({e}): {json}"))
}

#[test]
fn hostile_text_everywhere_is_shown_as_text_on_every_page() {
    let up = fake::start(FakeOptions::default());
    // An agent budget, so the hostile agent's receipt also gets a budget gauge on /costs.
    let config = format!(
        "{}budgets: {{agent_daily_usd: \"100\"}}\nproviders:\n{}",
        crate::support::workspace::FAST,
        super::priced_provider(&up)
    );
    let ws = Workspace::with_config(&config);
    let quoted = serde_json::to_string(HOSTILE).unwrap();
    std::fs::write(
        ws.path("agents/sec-agent.md"),
        format!("---\nname: sec-agent\ndescription: {quoted}\ncapabilities: [sec]\n---\nbody\n"),
    )
    .unwrap();
    let card = |id: &str, caps: &str| {
        ws.drop_card(
            id,
            &format!("title: {quoted}\ndescription: {quoted}\nrequires: [{caps}]\n"),
        );
    };
    card("SEC-WAIT", "nobody-has-this");
    card("SEC-DONE", "sec");
    card("SEC-FAIL", "sec");
    ws.drop_file(
        "inbox/\"><img src=x onerror=alert(1)>.yaml",
        b"title: bad name\n",
    );
    ws.drop_file(
        "inbox/SEC-BAD.yaml",
        format!("title: [{quoted}\n").as_bytes(),
    );
    let mut d = ws.serve();
    let (dash, gw) = ws.addresses();
    ws.register("sec-agent", &["sec"], 2);
    ws.wait_assigned("SEC-DONE", "sec-agent");
    ws.wait_assigned("SEC-FAIL", "sec-agent");
    ws.pas_ok(&[
        "heartbeat",
        "sec-agent",
        "--status",
        "running",
        "--job",
        "SEC-DONE",
        "--note",
        HOSTILE,
    ]);
    ws.pas_ok(&["done", "SEC-DONE", "--result", HOSTILE]);
    ws.pas_ok(&["fail", "SEC-FAIL", "--error", HOSTILE]);
    ws.wait_state("SEC-DONE", "done");
    ws.wait_state("SEC-FAIL", "failed");
    // A hostile agent name or job id is refused as JSON (never reaching a receipt); a
    // plain one gets the receipt the pages show.
    let chat = serde_json::to_string(&ask("m", false)).unwrap();
    for header in ["x-pas-agent", "x-pas-job"] {
        let r = raw(
            &gw,
            "POST",
            "/v1/chat/completions",
            &[(header, HOSTILE)],
            &chat,
        );
        assert_eq!(r.status, 400, "{header}: {r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let r = raw(
        &gw,
        "POST",
        "/v1/chat/completions",
        &[("x-pas-agent", "sec-agent")],
        &chat,
    );
    assert_eq!(r.status, 200, "{r:?}");
    wait_until("the receipt and both rejections", WAIT, || {
        let s = super::super::http::get(&format!("http://{dash}/api/status")).json();
        let receipts = ws
            .try_db_count("SELECT count(*) FROM receipts")
            .unwrap_or(0);
        match (s["jobs"]["rejected"].as_u64(), receipts) {
            (Some(2), 1) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    ws.wait_work_clean("everything committed");
    let past = ws.git_log(&[])[1].oid.clone();

    let mut wrong = Vec::new();
    let mut pages = vec![
        "/".to_string(),
        format!("/?at={past}"),
        format!("/?at={}", enc(HOSTILE)),
        format!("/jobs/{}", enc(HOSTILE)),
        "/jobs/SEC-DONE".into(),
        "/jobs/SEC-FAIL".into(),
        "/jobs/SEC-WAIT".into(),
    ];
    pages.extend(["/tree", "/costs", "/alerts", "/activity"].map(String::from));
    let mut seen_boot = String::new();
    for url in &pages {
        let r = raw(&dash, "GET", url, &[], "");
        if r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
        {
            assert!(r.status >= 400, "{url}: {r:?}");
            continue; // a JSON error: checked with the API below
        }
        wrong.extend(check_html(url, r.status, &r.headers, &r.body));
        seen_boot.push_str(&boot(&r.body).to_string());
        if url == "/" {
            assert!(r.body.contains("&lt;script&gt;alert(1)&lt;"), "{}", r.body);
            assert!(
                r.body.contains("SSTI{{7*7}}"),
                "the title is not on the board"
            );
        }
    }
    // The hostile text did reach the pages' data (unescaped JSON, then escaped for HTML).
    let as_json = serde_json::to_string(HOSTILE).unwrap();
    let inner = &as_json[1..as_json.len() - 1];
    assert!(
        seen_boot.contains(inner),
        "no page carried the hostile text in its data"
    );
    for page in ["/jobs/SEC-DONE", "/jobs/SEC-FAIL", "/jobs/SEC-WAIT"] {
        let body = raw(&dash, "GET", page, &[], "").body;
        assert!(
            body.contains("SSTI{{7*7}}"),
            "{page} does not show the text: {body}"
        );
    }

    // The JSON twins: JSON, the text exactly as written.
    let mut apis: Vec<String> = DASHBOARD
        .iter()
        .filter(|(p, _)| p.starts_with("/api/"))
        .map(|(_, u)| u.replace("SEC-1", "SEC-DONE"))
        .collect();
    apis.push(format!("/api/jobs/{}", enc(HOSTILE)));
    apis.push(format!("/api/jobs?q={}", enc("<script>")));
    let mut all = String::new();
    for url in &apis {
        let r = raw(&dash, "GET", url, &[], "");
        if r.header("content-type") != Some("application/json") {
            wrong.push(format!(
                "{url}: content-type {:?}",
                r.header("content-type")
            ));
        }
        if r.header("x-content-type-options") != Some("nosniff") {
            wrong.push(format!("{url}: no nosniff"));
        }
        let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{url}: {e}"));
        all.push_str(&v.to_string());
    }
    for needle in ["SEC-DONE", "sec-agent"] {
        assert!(all.contains(needle), "the API does not list {needle}");
    }
    assert!(
        all.contains(inner),
        "the API does not return the text exactly"
    );
    let job = raw(&dash, "GET", "/api/jobs/SEC-DONE", &[], "").body;
    let job: Value = serde_json::from_str(&job).unwrap();
    assert_eq!(job["job"]["title"], HOSTILE, "{job}");
    let costs = raw(&dash, "GET", "/api/costs", &[], "").body;
    let costs: Value = serde_json::from_str(&costs).unwrap();
    assert_eq!(
        costs["budgets"]["agents"][0]["agent"], "sec-agent",
        "{costs}"
    );
    let metrics = raw(&dash, "GET", "/metrics", &[], "");
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert!(!metrics.body.contains("<script"), "{}", metrics.body);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    d.stop();
}
