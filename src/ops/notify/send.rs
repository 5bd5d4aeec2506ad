//! One notice to one webhook: its body in the webhook's shape, attempts with back-off
//! under a timeout each, and the record of how it went.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::config::{Format, Target};
use crate::ops::alerts::{Active, Severity};

/// What a notice says of its alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The alert began.
    Alert,
    /// The alert cleared.
    AllClear,
    /// `pas notify test`.
    Test,
}

/// An alert (or its all-clear) to send.
#[derive(Debug, Clone)]
pub struct Notice {
    pub phase: Phase,
    pub alert: Active,
    pub at: chrono::DateTime<chrono::Utc>,
}

impl Notice {
    /// The one line a chat shows.
    pub fn line(&self) -> String {
        match self.phase {
            Phase::Alert => format!("{} pas: {}", icon(self.alert.severity), self.alert.text),
            Phase::AllClear => format!("✅ pas, all clear: {} (no longer so)", self.alert.text),
            Phase::Test => format!("🔔 pas: {}", self.alert.text),
        }
    }
}

fn icon(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "🔴",
        Severity::Warning => "🟠",
        Severity::Info => "🔵",
    }
}

/// The request body and extra headers of `notice` for `format`. Every string in it comes
/// from the alert's sentence, which holds no secret; chat formats take it as text, so
/// nothing an agent wrote (a note, a name) can become markup beyond the chat's own.
pub fn body(format: Format, notice: &Notice) -> (Vec<u8>, Vec<(&'static str, String)>) {
    let a = &notice.alert;
    match format {
        Format::Json => {
            let v = json!({
                "pas": notice.phase,
                "key": a.key,
                "kind": a.kind,
                "severity": a.severity,
                "text": a.text,
                "line": notice.line(),
                "since": a.since,
                "agent": a.agent,
                "links": a.links,
                "at": notice.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            });
            (
                v.to_string().into_bytes(),
                vec![("content-type", "application/json".into())],
            )
        }
        Format::Slack => (
            json!({"text": slack_escape(&notice.line())})
                .to_string()
                .into_bytes(),
            vec![("content-type", "application/json".into())],
        ),
        Format::Ntfy => {
            let title = match notice.phase {
                Phase::Alert => format!("pas alert: {}", a.kind),
                Phase::AllClear => format!("pas all clear: {}", a.kind),
                Phase::Test => "pas test".to_string(),
            };
            let (priority, tags) = match (notice.phase, a.severity) {
                (Phase::AllClear, _) => ("default", "white_check_mark"),
                (_, Severity::Critical) => ("high", "rotating_light"),
                _ => ("default", "warning"),
            };
            (
                notice.line().into_bytes(),
                vec![
                    ("content-type", "text/plain; charset=utf-8".into()),
                    // Header values must be visible ASCII: the kind is.
                    ("title", ascii(&title)),
                    ("priority", priority.into()),
                    ("tags", tags.into()),
                ],
            )
        }
    }
}

/// Slack reads `<...>` as a link or a mention and `&` as an entity: escaped as Slack asks.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// How one delivery went.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub at: String,
    pub target: String,
    pub phase: Phase,
    pub key: String,
    /// `sent`, `failed` (every attempt failed) or `dropped` (the queue was full).
    pub status: &'static str,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Sends `notice` to `t`: up to `1 + retries` attempts, each within `t.timeout`, with
/// back-off between them (0.5 s, doubling, at most 8 s). A 2xx is a delivery; anything
/// else, a timeout or a refused connection is a failed attempt.
pub async fn deliver(client: &reqwest::Client, t: &Target, notice: &Notice) -> Outcome {
    let (bytes, headers) = body(t.format, notice);
    let mut delay = Duration::from_millis(500);
    let mut last_status = None;
    let mut last_error = None;
    let mut attempts = 0;
    for attempt in 0..=t.retries {
        attempts = attempt + 1;
        let mut req = client
            .post(t.url.expose())
            .timeout(t.timeout)
            .body(bytes.clone());
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => {
                return outcome(t, notice, "sent", attempts, Some(r.status().as_u16()), None)
            }
            Ok(r) => {
                last_status = Some(r.status().as_u16());
                last_error = Some(format!("the webhook answered {}", r.status()));
            }
            Err(e) => {
                last_status = None;
                // reqwest names the URL in its errors: take it out, then redact the rest.
                let e = e.without_url();
                let what = if e.is_timeout() {
                    format!("no answer within {} s", t.timeout.as_secs_f64())
                } else {
                    crate::ops::redact::text(&chain(&e))
                };
                last_error = Some(what);
            }
        }
        if attempt < t.retries {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(8));
        }
    }
    outcome(t, notice, "failed", attempts, last_status, last_error)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The outcome of `notice` at `t`.
pub fn outcome(
    t: &Target,
    notice: &Notice,
    status: &'static str,
    attempts: u32,
    http_status: Option<u16>,
    error: Option<String>,
) -> Outcome {
    Outcome {
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        target: t.name.clone(),
        phase: notice.phase,
        key: notice.alert.key.clone(),
        status,
        attempts,
        http_status,
        error,
    }
}

/// The delivery log: `.pas/notify.jsonl`, one outcome a line; past 1 MiB it is moved to
/// `notify.jsonl.1` and begun again, so it never grows without bound.
pub fn log_path(root: &Path) -> PathBuf {
    root.join(".pas").join("notify.jsonl")
}

const LOG_MAX: u64 = 1 << 20;

/// Appends `o` to the delivery log (and says it in the daemon's log).
pub fn record(root: &Path, o: &Outcome) {
    match o.status {
        "sent" => {
            tracing::info!(webhook = %o.target, key = %o.key, phase = ?o.phase, attempts = o.attempts, "notification sent")
        }
        _ => {
            tracing::warn!(webhook = %o.target, key = %o.key, phase = ?o.phase, attempts = o.attempts,
            error = o.error.as_deref().unwrap_or(""), "notification {}", o.status)
        }
    }
    let path = log_path(root);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.len() > LOG_MAX) {
        let _ = std::fs::rename(&path, path.with_extension("jsonl.1"));
    }
    let line = serde_json::to_string(o).unwrap_or_default();
    use std::os::unix::fs::OpenOptionsExt;
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        tracing::warn!(file = %path.display(), error = %e, "cannot record a notification");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::notify::config::targets;

    fn notice(phase: Phase, text: &str) -> Notice {
        Notice {
            phase,
            alert: Active {
                key: "agent.down:w".into(),
                kind: "agent.down".into(),
                severity: Severity::Critical,
                since: None,
                text: text.into(),
                links: Vec::new(),
                agent: Some("w".into()),
            },
            at: chrono::Utc::now(),
        }
    }

    #[test]
    fn bodies_in_each_shape_keep_hostile_text_as_text() {
        let n = notice(Phase::Alert, "w is down, last note “<@channel> & <script>”");
        let (b, _) = body(Format::Slack, &n);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(
            text.contains("&lt;@channel&gt; &amp; &lt;script&gt;"),
            "{text}"
        );
        let (b, h) = body(Format::Ntfy, &notice(Phase::AllClear, "w is down"));
        assert!(String::from_utf8(b)
            .unwrap()
            .starts_with("✅ pas, all clear: w is down"));
        assert!(h
            .iter()
            .any(|(k, v)| *k == "title" && v == "pas all clear: agent.down"));
        let (b, _) = body(Format::Json, &n);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            (v["pas"].as_str(), v["key"].as_str()),
            (Some("alert"), Some("agent.down:w"))
        );
    }

    #[test]
    fn filters_by_kind_agent_and_severity() {
        let raw: Vec<serde_yaml::Value> = serde_yaml::from_str(
            "- {url: 'http://x.test', kinds: [agent.down], agents: [w], severity: critical}\n\
             - {url: 'http://x.test', agents: [other]}\n\
             - {url: 'http://x.test', severity: critical, kinds: [budget.crossed]}\n",
        )
        .unwrap();
        let t = targets(&raw, |_| None).unwrap();
        let n = notice(Phase::Alert, "w is down");
        let wants: Vec<bool> = t.iter().map(|t| t.wants(&n.alert)).collect();
        assert_eq!(wants, [true, false, false]);
        let mut warn = n.alert.clone();
        warn.severity = Severity::Warning;
        assert!(!t[0].wants(&warn), "below the least severity");
    }
}
