//! Agents' span files (`work/traces/<trace_id>.jsonl`) against the real daemon: a card's
//! trace, an agent's lines (and `pas span`) under it, a running span completed by a later
//! line, the commit that finishes the card naming the trace; and hostile span files
//! skipped with reasons while the daemon goes on.

use std::io::Write;

use serde_json::{json, Value};

use crate::support::traces::{spans_when, WAIT};
use crate::support::workspace::{wait_until, Workspace};

/// The card's trace and root span, once pas has stamped them.
fn card_trace(ws: &Workspace, id: &str) -> (String, String) {
    wait_until(&format!("{id} stamped with a trace"), WAIT, || {
        // A card being moved is briefly in no folder: look again then.
        let out = ws.pas(&["show", id, "--json"]);
        let text = String::from_utf8_lossy(&out.stdout).replace(": ", ":");
        let pick = |k: &str| {
            let at = text.find(&format!("\"{k}\":\""))?;
            let rest = &text[at + k.len() + 4..];
            Some(rest[..rest.find('"')?].to_string())
        };
        match (pick("trace_id"), pick("span_id")) {
            (Some(t), Some(s)) => Ok((t, s)),
            _ => Err(text),
        }
    })
}

fn append(ws: &Workspace, trace: &str, line: &str) {
    let path = ws.work(&format!("traces/{trace}.jsonl"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

#[test]
fn an_agents_span_lines_land_under_its_cards_trace_and_a_later_line_completes_one() {
    let ws = Workspace::new();
    let _d = ws.serve();
    ws.pas_ok(&["submit", "--id", "J-1", "--title", "Write the parser"]);
    let (trace, root) = card_trace(&ws, "J-1");
    assert_eq!((trace.len(), root.len()), (32, 16));
    // An agent's own line, a running tool span, then its completion.
    append(
        &ws,
        &trace,
        &json!({"span_id": "a1a1a1a1a1a1a1a1", "parent_id": root, "name": "plan",
        "kind": "step", "start": "2026-12-07T10:00:00Z", "status": "running", "agent": "coder-1",
        "input": {"goal": "a parser"}})
        .to_string(),
    );
    // `pas span` from a shell: under the job's root span by default; prints trace and id.
    let out = ws.pas_ok(&[
        "span",
        "--job",
        "J-1",
        "--name",
        "run tests",
        "--kind",
        "tool",
        "--agent",
        "coder-1",
        "--attr",
        "cmd=cargo test",
    ]);
    let sid = out.split_whitespace().nth(1).unwrap().to_string();
    let spans = spans_when(&ws, &trace, "root, plan and the tool span", |s| {
        s.len() == 3
    });
    let plan = spans.iter().find(|s| s["name"] == "plan").unwrap();
    assert_eq!(
        (plan["status"].clone(), plan["parent_id"].clone()),
        (json!("running"), json!(root))
    );
    assert_eq!(plan["source"], "file");
    // Live: one trace.span event per trace per batch of lines, with the spans in it.
    let live = crate::support::liveness::events(&ws, "trace.span");
    assert!(
        live.iter().any(|(_, e)| e["trace_id"] == trace.as_str()
            && e["spans"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == "plan")),
        "{live:?}"
    );
    let job = spans.iter().find(|s| s["kind"] == "job").unwrap();
    assert_eq!(
        (job["name"].clone(), job["job"].clone()),
        (json!("Write the parser"), json!("J-1"))
    );
    append(
        &ws,
        &trace,
        r#"{"span_id": "a1a1a1a1a1a1a1a1", "end": "2026-12-07T10:00:03Z", "status": "ok", "output": {"steps": 3}}"#,
    );
    ws.pas_ok(&[
        "span", "--trace", &trace, "--id", &sid, "--status", "error", "--end",
    ]);
    let spans = spans_when(&ws, &trace, "both spans completed", |s| {
        s.iter().any(|x| x["name"] == "plan" && x["status"] == "ok")
            && s.iter()
                .any(|x| x["span_id"] == sid.as_str() && x["status"] == "error")
    });
    let plan = spans.iter().find(|s| s["name"] == "plan").unwrap();
    assert_eq!(plan["duration_ms"], 3000.0);
    assert_eq!(
        plan["input"]["goal"], "a parser",
        "the first line's input is kept"
    );
    assert_eq!(plan["output"]["steps"], 3);
    assert_eq!(
        plan["kind"], "step",
        "an update keeps what it does not name"
    );
    // The job page names its trace; the list filters by job.
    let (dash, _) = ws.addresses();
    let page = crate::support::http::get(&format!("http://{dash}/api/jobs/J-1")).json();
    assert_eq!(page["trace_id"], trace.as_str());
    let list = ws.pas_json(&["traces", "--job", "J-1", "--json"]);
    assert_eq!(list["traces"][0]["root"], "Write the parser");
    // The commit that finishes the card names its trace; span files are never committed.
    ws.register("coder-1", &[], 1);
    wait_until("J-1 assigned", WAIT, || {
        ws.work("assigned/coder-1/J-1.yaml")
            .exists()
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
    ws.pas_ok(&["done", "J-1", "--result", "parsed"]);
    wait_until("the finishing commit", WAIT, || {
        let log = ws.git(&["log", "--format=%B", "-n", "20"]);
        if log.contains(&format!("Pas-Trace: J-1 {trace}")) {
            Ok(())
        } else {
            Err(log)
        }
    });
    assert_eq!(ws.git(&["ls-files", "work/traces"]).trim(), "");
    assert!(std::fs::read_to_string(ws.path(".gitignore"))
        .unwrap()
        .contains("work/traces/"));
}

#[test]
fn hostile_span_files_are_skipped_with_reasons_and_the_daemon_goes_on() {
    let ws = Workspace::new();
    let mut d = ws.serve();
    ws.addresses();
    let dir = ws.work("traces");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("11111111111111111111111111111111.jsonl");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    std::fs::write(ws.outside().join("secret"), "not a span\n").unwrap();
    std::os::unix::fs::symlink(
        ws.outside().join("secret"),
        dir.join("22222222222222222222222222222222.jsonl"),
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "hello\n").unwrap();
    let t = "33333333333333333333333333333333";
    let mut big = r#"{"span_id":"c000000000000001","name":"huge","kind":"step","start":"2026-12-07T10:00:00Z","output":""#
        .to_string();
    big.push_str(&"x".repeat(2 << 20));
    big.push_str("\"}");
    for line in [
        big.as_str(),
        "this is not json",
        r#"{"span_id":"c000000000000002","name":"x","kind":"wizard","start":"2026-12-07T10:00:00Z"}"#,
        r#"{"span_id":"c000000000000003","name":"x","kind":"step","start":"2026-12-07T10:00:00Z","stauts":"ok"}"#,
        r#"{"span_id":"c000000000000004","name":"orphan","kind":"tool","start":"2026-12-07T10:00:01Z","parent_id":"dddddddddddddddd"}"#,
        r#"{"span_id":"c000000000000005","name":"fine","kind":"step","start":"2026-12-07T10:00:00Z"}"#,
    ] {
        append(&ws, t, line);
    }
    let spans = spans_when(&ws, t, "the two good spans", |s| s.len() == 2);
    assert!(spans.iter().any(|s| s["name"] == "fine"));
    let tree = ws.pas_ok(&["trace", t]);
    assert!(
        tree.contains("orphan") && tree.contains("(parent dddddddddddddddd never arrived)"),
        "{tree}"
    );
    let reasons = wait_until("a reason for each bad input", WAIT, || {
        let ev: Vec<Value> = crate::support::liveness::events(&ws, "trace.rejected")
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        let line = |n: u32| format!("{t}.jsonl line {n}");
        let want: [(String, &str); 7] = [
            ("11111111111111111111111111111111.jsonl".into(), "a FIFO"),
            (
                "22222222222222222222222222222222.jsonl".into(),
                "symbolic link",
            ),
            ("notes.txt".into(), "not a trace file"),
            (line(1), "over the 1048576 byte limit"),
            (line(2), "expected"),
            (line(3), "unknown kind \"wizard\""),
            (line(4), "unknown field `stauts`"),
        ];
        let said = |(src, why): &(String, &str)| {
            ev.iter().any(|e| {
                e["source"].as_str().unwrap_or("").ends_with(src.as_str())
                    && e["reason"].as_str().unwrap_or("").contains(why)
            })
        };
        match want.iter().find(|w| !said(w)) {
            None => Ok(serde_json::to_string(&ev).unwrap()),
            Some(w) => Err(format!("missing {w:?} in {ev:?}")),
        }
    });
    assert!(
        !reasons.contains("not a span"),
        "nothing was read through the link"
    );
    d.assert_running();
    ws.pas_ok(&["submit", "--id", "J-2", "--title", "still working"]);
    card_trace(&ws, "J-2");
    assert!(!ws.work("rejected").join("traces").exists());
}

#[test]
fn a_call_naming_its_job_joins_the_cards_trace_and_forged_ids_are_put_back() {
    use pas::llm::config::Protocol;
    use pas::llm::fake::{self, FakeOptions};
    let up = fake::start(FakeOptions::default());
    let gw = crate::support::gateway::Gw::one(&up, Protocol::Openai, "m", Some(("1", "10")), "");
    gw.ws
        .pas_ok(&["submit", "--id", "J-9", "--title", "Call a model"]);
    let (trace, root) = card_trace(&gw.ws, "J-9");
    let r = gw.chat(
        &crate::support::gateway::ask("m", false),
        &[("x-pas-job", "J-9")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-pas-trace-id").as_deref(), Some(trace.as_str()));
    let sid = r.header("x-pas-span-id").unwrap();
    let spans = spans_when(&gw.ws, &trace, "the call under the card", |s| {
        s.iter().any(|x| x["span_id"] == sid.as_str())
    });
    let call = spans.iter().find(|x| x["span_id"] == sid.as_str()).unwrap();
    assert_eq!(
        (call["parent_id"].clone(), call["job"].clone()),
        (json!(root), json!("J-9"))
    );
    // An agent rewrites the card's trace id in place: pas puts its own back.
    let path = gw.ws.work("inbox/J-9.yaml");
    let forged = "ffffffffffffffffffffffffffffffff";
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&trace, forged);
    std::fs::write(&path, text).unwrap();
    wait_until("the trace id restored", WAIT, || {
        let now = std::fs::read_to_string(&path).unwrap_or_default();
        if now.contains(&trace) && !now.contains(forged) {
            Ok(())
        } else {
            Err(now)
        }
    });
}

#[test]
fn a_trace_id_forged_while_pas_was_stopped_is_put_back_at_start() {
    let ws = Workspace::new();
    let mut d = ws.serve();
    ws.pas_ok(&["submit", "--id", "J-5", "--title", "Kept"]);
    let (trace, _) = card_trace(&ws, "J-5");
    wait_until("the root span stored", WAIT, || {
        let out = ws.pas(&["trace", "J-5"]);
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
    d.stop();
    let path = ws.work("inbox/J-5.yaml");
    let forged = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&trace, forged);
    std::fs::write(&path, text).unwrap();
    let _d = ws.serve();
    wait_until("the trace id restored at start", WAIT, || {
        let now = std::fs::read_to_string(&path).unwrap_or_default();
        if now.contains(&trace) && !now.contains(forged) {
            Ok(())
        } else {
            Err(now)
        }
    });
}
