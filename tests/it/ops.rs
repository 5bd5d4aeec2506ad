//! Operating pas (issue 18): `pas providers` during a fallback, `pas agents` with the
//! agents' own report, `pas alerts` as a state, and webhooks (a real receiver started by
//! the test): an agent going down and coming back sends one alert and one all-clear; a
//! receiver that hangs or answers 500 delays nothing else; a URL with credentials never
//! reaches a log, a record or a page.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pas::llm::fake::{self, FakeOptions, Mode};
use serde_json::Value;

use crate::support::gateway::ask;
use crate::support::gateway::pair;
use crate::support::liveness::Beater;
use crate::support::workspace::{wait_until, Workspace, FAST};

/// How a test receiver answers.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Ok,
    Fail500,
    /// Reads the request and never answers.
    Hang,
}

/// A webhook receiver: a real HTTP server on a free port, recording each request's
/// headers and body.
struct Receiver {
    addr: String,
    got: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    fn start(answer: Answer) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let g = got.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let g = g.clone();
                std::thread::spawn(move || serve(s, answer, &g));
            }
        });
        Receiver { addr, got }
    }

    /// The JSON bodies received so far.
    fn bodies(&self) -> Vec<Value> {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter_map(|(_, b)| serde_json::from_str(b).ok())
            .collect()
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

fn serve(s: TcpStream, answer: Answer, got: &Mutex<Vec<(String, String)>>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut head = String::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; len];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    got.lock()
        .unwrap()
        .push((head, String::from_utf8_lossy(&body).into_owned()));
    let mut s = s;
    match answer {
        Answer::Ok => {
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
        Answer::Fail500 => {
            let _ = s.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\nfail",
            );
        }
        Answer::Hang => std::thread::sleep(Duration::from_secs(600)),
    }
}

#[test]
fn pas_providers_during_a_fallback_shows_the_breaker_open() {
    let bad = fake::start(FakeOptions::default());
    let good = fake::start(FakeOptions::default());
    let gw = pair(&bad, &good, "");
    bad.set_mode(Mode::Status {
        code: 500,
        retry_after: None,
    });
    // Three failures in a row open the breaker; each call still ends at `good`.
    for _ in 0..3 {
        let r = gw.chat(&ask("cap:x", false), &[]);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    gw.receipts(6);
    let p = wait_until("the breaker open", Duration::from_secs(10), || {
        let p = gw.ws.pas_json(&["providers", "--json"]);
        let bad = p["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "bad")
            .cloned()
            .unwrap();
        if bad["breaker"]["state"] == "open" {
            Ok(p)
        } else {
            Err(p.to_string())
        }
    });
    assert_eq!(p["daemon"], true, "{p}");
    let bad = &p["providers"][0];
    assert_eq!(bad["name"], "bad", "{p}");
    assert!(
        bad["breaker"]["cooldown_left_s"].as_f64().unwrap() > 0.0,
        "{p}"
    );
    assert_eq!(bad["breaker"]["fails"], 3, "{p}");
    let m = &bad["models"][0];
    assert_eq!(m["recent"]["errors"], 3, "{p}");
    assert!(
        m["last_error"]["text"].as_str().unwrap().contains("500"),
        "{p}"
    );
    let good = &p["providers"][1];
    assert_eq!(good["breaker"]["state"], "closed", "{p}");
    assert_eq!(good["models"][0]["calls_today"], 3, "{p}");
    // Spend is exact decimal text.
    assert!(
        good["spend_today_usd"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            > 0.0
    );
    // The table says it too; the page and its API agree.
    let table = gw.ws.pas_ok(&["providers"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("bad") && l.contains("open")),
        "{table}"
    );
    let (dash, _) = gw.ws.addresses();
    let page = crate::support::http::send("GET", &format!("http://{dash}/providers"), &[], None);
    assert!(page.body.contains("br-open"), "{}", page.body);
    // The active alerts name the provider cooling down.
    let alerts = gw.ws.pas_json(&["alerts", "--json"]);
    let keys: Vec<&str> = alerts["active"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["key"].as_str())
        .collect();
    assert!(keys.contains(&"provider.cooling:bad"), "{alerts}");
    // And /metrics, for an alerting rule.
    let m = crate::support::http::send("GET", &format!("http://{dash}/metrics"), &[], None).body;
    assert!(
        m.contains("pas_provider_breaker_open{provider=\"bad\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("pas_provider_breaker_open{provider=\"good\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("pas_alerts_active{kind=\"provider.cooling\",severity=\"warning\"} 1"),
        "{m}"
    );
}

#[test]
fn pas_providers_works_with_no_daemon() {
    let ws = Workspace::new();
    let p = ws.pas_json(&["providers", "--json"]);
    assert_eq!(p["daemon"], false, "{p}");
    assert_eq!(p["providers"], serde_json::json!([]), "{p}");
}

#[test]
fn an_agents_own_report_is_shown_escaped_and_aged() {
    let ws = Workspace::with_config(&format!("{FAST}heartbeat_interval_s: 60\n"));
    ws.register("w", &[], 1);
    let note = "<script>alert(1)</script> waiting for review";
    ws.pas_ok(&[
        "heartbeat",
        "w",
        "--status",
        "blocked",
        "--progress",
        "0.6",
        "--cpu",
        "1.5",
        "--mem-mb",
        "512",
        "--note",
        note,
    ]);
    let agents = ws.pas_json(&["agents", "--json"]);
    let w = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "w")
        .unwrap();
    assert_eq!(w["beat_status"], "blocked", "{w}");
    assert_eq!(w["progress"], 0.6, "{w}");
    assert_eq!(w["cpu"], 1.5, "{w}");
    assert_eq!(w["mem_mb"], 512.0, "{w}");
    assert_eq!(w["note"], note, "{w}");
    assert_eq!(w["report_stale"], false, "{w}");
    let table = ws.pas_ok(&["agents"]);
    assert!(
        table.contains("BLOCKED") && table.contains("60%"),
        "{table}"
    );
    // Without a daemon, `pas alerts` still says the agent is blocked.
    let alerts = ws.pas_ok(&["alerts"]);
    assert!(alerts.contains("w says it is blocked"), "{alerts}");
    // The dashboard: escaped on the tree and in the API.
    let _d = ws.serve();
    let (dash, _) = ws.addresses();
    let tree = wait_until("the tree with the report", Duration::from_secs(10), || {
        let r = crate::support::http::send("GET", &format!("http://{dash}/tree"), &[], None);
        if r.body.contains("said-blocked") {
            Ok(r.body)
        } else {
            Err(r.body)
        }
    });
    assert!(!tree.contains("<script>alert"), "the note is escaped");
    assert!(tree.contains("&lt;script&gt;alert(1)"), "the note is shown");
    assert!(tree.contains("active-alerts"), "the banner is on the page");
}

/// A workspace whose webhooks are `hooks` (YAML list items), agents beating every 0.5 s
/// by default with the interval of `w` at 3 s (down at 6 s, deregistered at 9 s).
fn notify_ws(hooks: &str) -> Workspace {
    let ws = Workspace::with_config(&format!("{FAST}notify:\n{hooks}"));
    ws.pas_ok(&["register", "w", "--heartbeat-interval-s", "3"]);
    ws
}

#[test]
fn an_agent_going_down_and_back_sends_one_alert_and_one_all_clear_and_bad_receivers_delay_nothing()
{
    let good = Receiver::start(Answer::Ok);
    let hang = Receiver::start(Answer::Hang);
    let fail = Receiver::start(Answer::Fail500);
    let secret = "s3cretpw";
    let hooks = format!(
        "  - {{name: good, url: 'http://hook:{secret}@{}/in?token={secret}', kinds: [agent.down]}}\n\
         \x20 - {{name: hangs, url: 'http://{}/in', timeout_s: 1, retries: 1}}\n\
         \x20 - {{name: fails, url: 'http://{}/in', retries: 1, format: slack}}\n",
        good.addr, hang.addr, fail.addr
    );
    let ws = notify_ws(&hooks);
    let mut d = ws.serve_ready();
    let beater = Beater::start(&ws, "w", Duration::from_millis(300));
    wait_until("w up", Duration::from_secs(10), || {
        let a = ws.pas_json(&["agents", "--json"]);
        let up = a
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "w" && x["status"] == "up");
        up.then_some(()).ok_or(a.to_string())
    });
    beater.stop();
    // Down after two intervals: one alert reaches the good receiver.
    let alert = wait_until("the alert", Duration::from_secs(15), || {
        good.bodies()
            .into_iter()
            .find(|b| b["pas"] == "alert")
            .ok_or(format!("{:?}", good.bodies()))
    });
    assert_eq!(alert["key"], "agent.down:w", "{alert}");
    assert_eq!(alert["severity"], "critical", "{alert}");
    assert!(
        alert["text"]
            .as_str()
            .unwrap()
            .starts_with("w is down: no beat for 2 intervals (6 s), last seen "),
        "{alert}"
    );
    // While the bad receivers hang and fail, the board moves as ever.
    let moved = std::time::Instant::now();
    ws.register("x", &[], 1);
    let _x = Beater::start(&ws, "x", Duration::from_millis(300));
    ws.drop_card("N-1", "title: moves while webhooks hang\n");
    ws.wait_assigned("N-1", "x");
    assert!(
        moved.elapsed() < Duration::from_secs(5),
        "{:?}",
        moved.elapsed()
    );
    // It beats again before it is deregistered: one all-clear.
    let back = Beater::start(&ws, "w", Duration::from_millis(300));
    let clear = wait_until("the all-clear", Duration::from_secs(15), || {
        good.bodies()
            .into_iter()
            .find(|b| b["pas"] == "all-clear")
            .ok_or(format!("{:?}", good.bodies()))
    });
    assert_eq!(clear["key"], "agent.down:w", "{clear}");
    // A rejected file raises an alert the good webhook does not want. Once the watch has
    // told of it (it keeps what it told in notify-state.json after queueing the notices),
    // it has compared the alerts again since the all-clear, and any further notice about
    // w is in the good webhook's queue, which delivers in order within milliseconds.
    ws.drop_file("inbox/BAD-1.yaml", b"title: [unclosed\n");
    wait_until("the watch's next round", Duration::from_secs(15), || {
        let told = std::fs::read_to_string(ws.path(".pas/notify-state.json")).unwrap_or_default();
        told.contains("\"files.rejected\"")
            .then_some(())
            .ok_or(told)
    });
    let kinds: Vec<String> = good
        .bodies()
        .iter()
        .map(|b| format!("{} {}", b["pas"], b["key"]))
        .collect();
    assert_eq!(
        kinds,
        [
            "\"alert\" \"agent.down:w\"",
            "\"all-clear\" \"agent.down:w\""
        ]
    );
    // The other receivers were tried (slack shape to the failing one), and failures are
    // recorded without the URL.
    assert!(hang.count() >= 1 && fail.count() >= 1);
    let slack: Value = serde_json::from_str(&fail.got.lock().unwrap()[0].1).unwrap();
    assert!(
        slack["text"].as_str().unwrap().contains("w is down"),
        "{slack}"
    );
    let log = wait_until("failures recorded", Duration::from_secs(15), || {
        let t = std::fs::read_to_string(ws.path(".pas/notify.jsonl")).unwrap_or_default();
        (t.contains("\"target\":\"fails\"")
            && t.contains("\"status\":\"failed\"")
            && t.contains("\"target\":\"hangs\""))
        .then_some(t.clone())
        .ok_or(t)
    });
    assert!(log.contains("\"status\":\"sent\""), "{log}");
    d.assert_running();
    drop(back);
    d.stop();
    let daemon_log = d.log_text();
    for text in [&log, &daemon_log] {
        assert!(
            !text.contains(secret),
            "the webhook's secret leaked: {text}"
        );
    }
    assert!(
        daemon_log.contains("good (http://127.0.0.1"),
        "{daemon_log}"
    );
}

#[test]
fn pas_notify_test_reports_each_webhook_and_a_bad_entry_is_named() {
    let good = Receiver::start(Answer::Ok);
    let fail = Receiver::start(Answer::Fail500);
    let hooks = format!(
        "  - {{name: ok, url: 'http://{}/x', format: ntfy}}\n  - {{name: bad, url: 'http://{}/x', retries: 0}}\n",
        good.addr, fail.addr
    );
    let ws = Workspace::with_config(&format!("{FAST}notify:\n{hooks}"));
    let out = ws.pas(&["notify", "test"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("ok (http://127.0.0.1") && text.contains("sent (HTTP 200)"),
        "{text}"
    );
    assert!(text.contains("bad (") && text.contains("FAILED"), "{text}");
    let (head, body) = good.got.lock().unwrap()[0].clone();
    assert!(
        head.to_ascii_lowercase().contains("title: pas test"),
        "{head}"
    );
    assert!(body.contains("this webhook works"), "{body}");
    // A wrong entry: pas serve refuses to start, naming it.
    let ws = Workspace::with_config(&format!(
        "{FAST}notify:\n  - {{name: x, url_env: PAS_NO_SUCH_HOOK}}\n"
    ));
    let out = ws.pas(&["serve"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("notify[0] (x)") && err.contains("PAS_NO_SUCH_HOOK"),
        "{err}"
    );
}
