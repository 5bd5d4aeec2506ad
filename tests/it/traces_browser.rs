//! The traces' pages in headless chromium (SPEC section 13): a recorded tool-calling
//! conversation whose prompt holds `<script>` shown as text in `/traces/{id}`, the span
//! tree with its waterfall, "edit and replay" posting to `/api/replays` and showing both
//! answers side by side, and two traces lined up at `/traces/{a}/vs/{b}`.

use pas::llm::fake::{self, FakeOptions};
use serde_json::json;

use crate::support::browser::Browser;

use crate::support::traces::spans_when;

const WATCH_CSP: &str = "window.__csp = []; document.addEventListener('securitypolicyviolation', \
    (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI))";

#[test]
fn traces_pages_show_the_conversation_as_text_and_edit_and_replay_runs() {
    let Some(mut b) = Browser::launch() else {
        assert!(
            std::env::var_os("PAS_REQUIRE_BROWSER").is_none(),
            "PAS_REQUIRE_BROWSER is set but no chromium is installed"
        );
        eprintln!("SKIPPED: no chromium installed");
        return;
    };
    let up = fake::start(FakeOptions {
        text: "it is 4 C in Oslo".into(),
        ..FakeOptions::default()
    });
    let gw = crate::support::gateway::two_models(&up);
    let prompt = "<script>window.__pwned = 1</script> weather in Oslo?";
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_0", "type": "function",
            "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "4 C"}],
        "tools": [{"type": "function", "function": {"name": "weather"}}]});
    let r = gw.chat(&body, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let trace = r.header("x-pas-trace-id").unwrap();
    let span = r.header("x-pas-span-id").unwrap();
    spans_when(&gw.ws, &trace, "the call's span", |s| s.len() == 1);
    let (dash, _) = gw.ws.addresses();
    let base = format!("http://{dash}");

    b.open(&format!("{base}/traces"));
    b.wait_for(
        "the trace listed",
        &format!("!!document.querySelector('#trace-list a[href=\"/traces/{trace}\"]')"),
    );

    b.open(&format!("{base}/traces/{trace}"));
    b.eval(WATCH_CSP);
    b.wait_for(
        "the span in the tree",
        &format!("!!document.querySelector('tr[data-span=\"{span}\"] .wf-bar')"),
    );
    b.eval(&format!("window.pasTrace.select('{span}')"));
    b.wait_for(
        "the conversation",
        "!!document.querySelector('#conversation')",
    );
    let conv = b.eval("document.querySelector('#conversation').textContent");
    let conv = conv.as_str().unwrap();
    assert!(conv.contains(prompt), "{conv}");
    assert!(conv.contains("weather({\"city\":\"Oslo\"})"), "{conv}");
    assert!(
        conv.contains("tool → call_0") && conv.contains("4 C"),
        "{conv}"
    );
    assert_eq!(b.eval("typeof window.__pwned"), "undefined");
    assert_eq!(
        b.eval("document.querySelectorAll('#conversation script').length"),
        0,
        "the prompt's <script> is text, not an element"
    );

    // Edit and replay on model n: both answers side by side.
    b.eval("document.querySelector('#replay input[name=model]').value = 'n'");
    b.eval("document.querySelector('#replay form').requestSubmit()");
    b.wait_for(
        "both answers",
        "!!document.querySelector('#answer-new') && !!document.querySelector('#answer-old')",
    );
    let new = b.eval("document.querySelector('#answer-new').textContent");
    assert!(new.as_str().unwrap().contains("replay · n"), "{new}");
    assert!(new.as_str().unwrap().contains("it is 4 C in Oslo"), "{new}");
    let old = b.eval("document.querySelector('#answer-old').textContent");
    assert!(old.as_str().unwrap().contains("original · m"), "{old}");
    assert_eq!(
        b.eval("window.__csp.join(' | ')"),
        "",
        "the CSP blocked the page"
    );
    let target = format!("{trace}/{span}");
    assert_eq!(
        crate::support::traces::replay_receipts(&gw.ws, &target).len(),
        1
    );

    // The comparison page the replay links to.
    let vs =
        b.eval("document.querySelector('#replay-status a[href*=\"/vs/\"]').getAttribute('href')");
    b.open(&format!("{base}{}", vs.as_str().unwrap()));
    b.wait_for(
        "the first divergence",
        "!!document.querySelector('#first-divergence')",
    );
    let first = b.eval("document.querySelector('#first-divergence').textContent");
    assert!(
        first.as_str().unwrap().contains("first divergence"),
        "{first}"
    );
}
