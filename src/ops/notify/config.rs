//! `notify:` in pas.yaml: a list of webhooks, each with its filter.
//!
//! ```yaml
//! notify:
//!   - name: team-slack
//!     url_env: PAS_SLACK_WEBHOOK     # the URL is a secret: keep it out of files
//!     format: slack                  # json (default) | slack | ntfy
//!     kinds: [agent.down, budget.crossed]
//!     severity: warning              # the least severity sent (info | warning | critical)
//!   - name: phone
//!     url: https://ntfy.sh/my-pas-topic
//!     format: ntfy
//!     agents: [writer]
//! ```
//!
//! A webhook's URL is held as a [`Secret`]: its `Debug` and `Display` show only scheme,
//! host and first path segment, so no log line or page can carry its credentials.

use std::time::Duration;

use serde::Deserialize;

use crate::ops::alerts::{Active, Severity};

/// A body shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"pas": "alert", "key": ..., "text": ..., ...}`.
    #[default]
    Json,
    /// `{"text": "..."}`, which Slack, Mattermost, Rocket.Chat and Discord's `/slack` take.
    Slack,
    /// ntfy: the sentence as a plain-text body, with `Title`, `Priority` and `Tags` headers.
    Ntfy,
}

/// A URL that may hold credentials; shown only redacted.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The URL itself, for the request only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::ops::redact::url(&self.0))
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::ops::redact::url(&self.0))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Option<String>,
    url: Option<String>,
    url_env: Option<String>,
    #[serde(default)]
    format: Format,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    agents: Vec<String>,
    #[serde(default)]
    severity: Severity,
    retries: Option<u32>,
    timeout_s: Option<f64>,
}

/// One webhook, ready to send to.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub url: Secret,
    pub format: Format,
    pub kinds: Vec<String>,
    pub agents: Vec<String>,
    pub severity: Severity,
    /// Attempts after the first.
    pub retries: u32,
    /// The longest wait for one attempt.
    pub timeout: Duration,
}

impl Target {
    /// Whether this webhook wants `alert`.
    pub fn wants(&self, alert: &Active) -> bool {
        alert.severity >= self.severity
            && (self.kinds.is_empty() || self.kinds.contains(&alert.kind))
            && (self.agents.is_empty()
                || alert
                    .agent
                    .as_deref()
                    .is_some_and(|a| self.agents.iter().any(|x| x == a)))
    }
}

/// The webhooks of `notify:`, reading `url_env` from `env`. An error names the entry
/// (`notify[1]`, and its name when it has one) and what is wrong with it.
pub fn targets(
    raw: &[serde_yaml::Value],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for (i, v) in raw.iter().enumerate() {
        let at = |name: &Option<String>| match name {
            Some(n) => format!("notify[{i}] ({n})"),
            None => format!("notify[{i}]"),
        };
        let r: Raw = serde_yaml::from_value(v.clone()).map_err(|e| format!("notify[{i}]: {e}"))?;
        let url = match (&r.url, &r.url_env) {
            (Some(u), None) => u.clone(),
            (None, Some(var)) => env(var)
                .filter(|u| !u.trim().is_empty())
                .ok_or_else(|| format!("{}: url_env names {var}, which is not set", at(&r.name)))?,
            (Some(_), Some(_)) => {
                return Err(format!("{}: give url or url_env, not both", at(&r.name)))
            }
            (None, None) => return Err(format!("{}: url or url_env is required", at(&r.name))),
        };
        let parsed = reqwest::Url::parse(url.trim())
            .map_err(|e| format!("{}: the URL does not parse ({e})", at(&r.name)))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "{}: the URL must be http or https, not {}",
                at(&r.name),
                parsed.scheme()
            ));
        }
        let timeout = r.timeout_s.unwrap_or(5.0);
        if !(timeout.is_finite() && timeout > 0.0 && timeout <= 60.0) {
            return Err(format!(
                "{}: timeout_s must be above 0 and at most 60",
                at(&r.name)
            ));
        }
        let retries = r.retries.unwrap_or(3);
        if retries > 10 {
            return Err(format!("{}: retries must be at most 10", at(&r.name)));
        }
        let name = r
            .name
            .clone()
            .unwrap_or_else(|| format!("webhook-{}", i + 1));
        out.push(Target {
            name,
            url: Secret(url.trim().to_string()),
            format: r.format,
            kinds: r.kinds,
            agents: r.agents,
            severity: r.severity,
            retries,
            timeout: Duration::from_secs_f64(timeout),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Vec<Target>, String> {
        let v: Vec<serde_yaml::Value> = serde_yaml::from_str(yaml).unwrap();
        targets(&v, |k| {
            (k == "HOOK").then(|| "https://u:pw@example.test/h/secret".into())
        })
    }

    #[test]
    fn errors_name_the_entry_and_the_key() {
        let e = parse("- {name: a, url: 'http://x.test', formatt: slack}").unwrap_err();
        assert!(e.starts_with("notify[0]") && e.contains("formatt"), "{e}");
        let e = parse("- {name: b, url_env: NOPE}").unwrap_err();
        assert!(e.contains("notify[0] (b)") && e.contains("NOPE"), "{e}");
        let e = parse("- {url: 'ftp://x.test'}").unwrap_err();
        assert!(e.contains("http or https"), "{e}");
    }

    #[test]
    fn a_url_with_credentials_is_never_shown() {
        let t = parse("- {name: s, url_env: HOOK, format: slack}").unwrap();
        let shown = format!("{:?} {}", t[0], t[0].url);
        assert!(
            !shown.contains("pw") && !shown.contains("secret"),
            "{shown}"
        );
    }
}
