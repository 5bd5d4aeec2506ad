//! Real Anthropic clients against `pas serve`, offline, with `fake:` providers playing
//! scripts: the official `anthropic` Python SDK (PyPI, installed on demand into
//! `target/pysdk`), and the real Claude Code CLI (npm `@anthropic-ai/claude-code`,
//! installed on demand into `target/npm` at a pinned version), which writes a file with
//! its Write tool and then answers, through either protocol behind the gateway.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::workspace::Workspace;

/// The Claude Code release the tests drive.
pub const CLAUDE_CODE: &str = "2.1.337";

/// The `claude` binary of the pinned release, installed with npm into `target/npm` when
/// it is not there yet (one install at a time: tests run side by side).
pub fn claude_code() -> PathBuf {
    static NPM: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = NPM.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/npm");
    let bin = dir.join("node_modules/.bin/claude");
    let version = || {
        Command::new(&bin)
            .arg("--version")
            .env("DISABLE_AUTOUPDATER", "1")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
    };
    if !version().is_some_and(|v| v.contains(CLAUDE_CODE)) {
        std::fs::create_dir_all(&dir).unwrap();
        let _ = Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&dir)
            .arg(format!("@anthropic-ai/claude-code@{CLAUDE_CODE}"))
            .status();
    }
    let v = version();
    assert!(
        v.as_deref().is_some_and(|v| v.contains(CLAUDE_CODE)),
        "Claude Code {CLAUDE_CODE} (npm install --prefix target/npm failed): {v:?}"
    );
    bin
}

/// Runs Claude Code in `dir` against the gateway at `url` with `prompt`; its exit
/// status's success and its stream-json lines. Killed past a minute.
pub fn run_claude(
    url: &str,
    dir: &Path,
    prompt: &str,
    extra_env: &[(&str, &str)],
) -> (bool, Vec<Value>) {
    let home = dir.join(".home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = Command::new(claude_code());
    cmd.args(["-p", prompt, "--output-format", "stream-json", "--verbose"])
        .args(["--allowedTools", "Write"])
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &home)
        .env("ANTHROPIC_BASE_URL", url)
        .env("ANTHROPIC_API_KEY", "sk-any")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if !out.status.success() {
        eprintln!(
            "claude failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (out.status.success(), lines)
}

/// A workspace whose only provider is a scripted fake of `protocol` serving every model
/// name (`"*"` alias), with a script that writes `file` with the Write tool, then answers.
fn scripted(protocol: &str, file: &Path) -> Workspace {
    let config = [
        "providers:",
        "  - name: scripted",
        &format!("    protocol: {protocol}"),
        "    fake: {script: claude-script.yaml}",
        "    models:",
        "      - {id: fake-claude, capabilities: [code], price_per_mtok: {input: \"3\", output: \"15\"}}",
        "model_aliases: {\"*\": fake-claude}",
        "",
    ]
    .join("\n");
    let ws = Workspace::with_config(&config);
    let script = format!(
        "# Side requests (no tools offered) get a short text and use up no step.\n\
         - when: {{tools: false}}\n  text: side answer\n\
         - tool_calls:\n    - name: Write\n      arguments:\n        file_path: {}\n        content: \"written by the script\\n\"\n\
         - text: I wrote hello.txt.\n",
        file.display()
    );
    std::fs::write(ws.path("claude-script.yaml"), script).unwrap();
    ws
}

#[test]
fn claude_code_writes_a_file_through_the_gateway_with_either_protocol_behind_it() {
    for protocol in ["openai", "anthropic"] {
        let proj = tempfile::tempdir().unwrap();
        let proj = proj.path().canonicalize().unwrap();
        let file = proj.join("hello.txt");
        let ws = scripted(protocol, &file);
        let gw = crate::messages::serving(ws);
        let (ok, lines) = run_claude(
            &gw.url,
            &proj,
            "write hello.txt",
            &[(
                "ANTHROPIC_CUSTOM_HEADERS",
                "x-pas-agent: claude-1\nx-pas-job: J-cc",
            )],
        );
        assert!(ok, "{protocol}: {lines:?}");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "written by the script\n",
            "{protocol}"
        );
        let last = lines.last().unwrap();
        assert_eq!(last["type"], "result", "{protocol}: {last}");
        assert_eq!(last["subtype"], "success");
        assert_eq!(last["result"], "I wrote hello.txt.");
        let used: Vec<&str> = lines
            .iter()
            .filter(|l| l["type"] == "assistant")
            .flat_map(|l| l["message"]["content"].as_array().into_iter().flatten())
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(used, ["Write"], "{protocol}");

        let rows = gw.receipts(2);
        for r in &rows {
            assert_eq!(r["agent"], "claude-1", "{r}");
            assert_eq!(r["job"], "J-cc");
            assert_eq!(r["provider"], "scripted");
            assert!(r["cost"].as_str().is_some_and(|c| c != "0"), "{r}");
            assert_eq!(r["stream"], true);
        }
        let traces = gw.ws.pas_json(&["traces", "--json", "--agent", "claude-1"]);
        assert!(traces["traces"].as_array().unwrap().len() >= 2, "{traces}");
    }
}

/// A scripted fake of each protocol behind the gateway, for the SDK: text (with fixed
/// usage, so plain and streamed calls cost the same), a tool call, and the answer after it.
const SDK_SCRIPT: &str = "
        - when: {tools: false}
          text: hello from the script
          usage: {input_tokens: 40, output_tokens: 9}
        - tool_calls:
            - {name: get_weather, arguments: {city: Paris}}
        - text: It is sunny in Paris.
";

#[test]
fn the_official_anthropic_python_sdk_works_unchanged() {
    let mut config = String::from("providers:\n");
    for (name, proto, id) in [
        ("fake-oa", "openai", "gpt-fake"),
        ("fake-an", "anthropic", "claude-fake"),
    ] {
        config.push_str(&format!(
            "  - name: {name}\n    protocol: {proto}\n    fake:\n      script:{SDK_SCRIPT}    models:\n      - {{id: {id}, capabilities: [chat], price_per_mtok: {{input: \"3\", output: \"15\"}}}}\n"
        ));
    }
    let ws = Workspace::with_config(&config);
    let gw = crate::messages::serving(ws);
    let py = crate::support::traces::python_in("pysdk-anthropic", "anthropic", &["anthropic"]);
    let seen = crate::support::traces::run_py(
        "anthropic_client.py",
        &py,
        &[&gw.url, "gpt-fake", "claude-fake"],
    );
    for (model, provider) in [("gpt-fake", "fake-oa"), ("claude-fake", "fake-an")] {
        let s = &seen[model];
        assert_eq!(s["plain_text"], "hello from the script", "{model}: {s}");
        assert_eq!(s["stream_text"], "hello from the script");
        assert_eq!(s["plain_usage"], json!([40, 9]));
        assert_eq!(s["stream_usage"], json!([40, 9]));
        assert_eq!(s["stop_reason"], "end_turn");
        assert_eq!(s["headers"]["x-pas-provider"], provider);
        assert_eq!(s["headers"]["x-pas-model"], model);
        // 40 x $3 + 9 x $15 per Mtok.
        assert_eq!(s["headers"]["x-pas-cost-usd"], "0.000255");
        assert!(
            s["headers"]["x-pas-trace-id"].is_string()
                && s["headers"]["x-pas-overhead-ms"].is_string()
        );
        assert_eq!(
            s["tool"],
            json!({"name": "get_weather", "input": {"city": "Paris"}, "stop_reason": "tool_use"})
        );
        assert_eq!(s["after_tool"], "It is sunny in Paris.");
        assert!(s["count"].as_u64().unwrap() > 0, "{s}");
    }
    assert_eq!(seen["missing"], "not_found_error");
    // Eight calls (plain, streamed, two tool turns, each model); count_tokens books none.
    let rows = gw.receipts(8);
    assert_eq!(rows.len(), 8);
    for r in &rows {
        assert_eq!(
            (r["agent"].as_str(), r["job"].as_str()),
            (Some("sdk-agent"), Some("J-sdk"))
        );
    }
    let text: Vec<&Value> = rows.iter().filter(|r| r["input"] == 40).collect();
    assert_eq!(text.len(), 4, "{rows:?}");
    assert!(
        text.iter().all(|r| r["cost"] == "0.000255"),
        "plain and streamed cost the same: {text:?}"
    );
    assert_eq!(text.iter().filter(|r| r["stream"] == true).count(), 2);
    // Each call is an llm span with the request and the answer.
    let traces = gw
        .ws
        .pas_json(&["traces", "--json", "--agent", "sdk-agent"]);
    let traces = traces["traces"].as_array().unwrap();
    // Eight calls and the refused unknown model.
    assert_eq!(traces.len(), 9, "{traces:?}");
    assert_eq!(traces.iter().filter(|t| t["status"] == "error").count(), 1);
    let id = traces[1]["trace_id"].as_str().unwrap();
    let tree = gw.ws.pas_json(&["trace", id, "--json"]);
    let text = tree.to_string();
    assert!(
        text.contains("\"llm\"") && text.contains("sdk-agent"),
        "{text}"
    );
}
