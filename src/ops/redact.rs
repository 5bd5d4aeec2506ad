//! Secrets out of text that pas shows or sends: an upstream's error may quote the URL it
//! called (with `user:password@` in it), a key it refused, or an `Authorization` header.
//! Applied to every error text on `/providers`, `pas providers`, alerts and notification
//! bodies, and to every URL pas names (a webhook's, a provider's).

use std::sync::LazyLock;

use regex::Regex;

static USERINFO: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@").expect("valid regex"));
static QUERY_SECRET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)([?&](?:api[_-]?key|key|token|access_token|secret|sig|signature|auth|password)=)[^&\s]+")
        .expect("valid regex")
});
static BEARER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}").expect("valid regex")
});
static KEYLIKE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(sk|pk|rk|xox[abprs]|ghp|gho|ghs|AKIA)[-_]?[A-Za-z0-9_-]{8,}")
        .expect("valid regex")
});
static KEY_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)("?(?:api[_-]?key|x-api-key|authorization|password|secret)"?\s*[:=]\s*"?)[^"\s,}]+"#,
    )
    .expect("valid regex")
});

/// `text` with credentials replaced by `***`.
pub fn text(text: &str) -> String {
    let t = USERINFO.replace_all(text, "${1}***@");
    let t = QUERY_SECRET.replace_all(&t, "${1}***");
    let t = BEARER.replace_all(&t, "${1} ***");
    let t = KEY_FIELD.replace_all(&t, "${1}***");
    KEYLIKE.replace_all(&t, "${1}-***").into_owned()
}

/// A URL as it may be shown: scheme, host, port and path; no credentials, no query.
pub fn url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let path = u.path();
            // A path segment can be the secret itself (Slack's /services/T../B../XXXX):
            // keep the first segment only.
            let first = path.split('/').find(|s| !s.is_empty());
            let shown = match first {
                Some(f) if path.trim_matches('/') != f => format!("/{f}/…"),
                Some(f) => format!("/{f}"),
                None => String::new(),
            };
            format!("{}://{host}{port}{shown}", u.scheme())
        }
        Err(_) => "(an unreadable URL)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_survive() {
        let t = text(
            "POST https://bob:hunter2@api.example.com/v1?key=abc123&x=1 failed: \
             Authorization: Bearer sk-live-0123456789abcdef, {\"api_key\": \"zzz999\"}",
        );
        for secret in ["hunter2", "abc123", "0123456789abcdef", "zzz999", "bob:"] {
            assert!(!t.contains(secret), "{secret} in {t}");
        }
        assert!(t.contains("api.example.com"), "{t}");
        assert!(t.contains("x=1"), "{t}");
    }

    #[test]
    fn urls_keep_their_host_only() {
        let u = url("https://u:p@hooks.slack.com/services/T000/B000/XXXXSECRET?token=t");
        assert_eq!(u, "https://hooks.slack.com/services/…");
        assert_eq!(
            url("http://127.0.0.1:9000/hook"),
            "http://127.0.0.1:9000/hook"
        );
        assert_eq!(url("not a url"), "(an unreadable URL)");
    }
}
