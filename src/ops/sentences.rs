//! Each event kind as a sentence a person reads ("writer is down: no beat for 2
//! intervals, last seen 12:25:52"), with links to the agent and card it names. The JSON
//! stays in `--json` and the API; pages, `pas alerts` and notification bodies use these.
//! The dashboard's script has the same sentences (`describeEvent` in `ops.js`) for events
//! that arrive live.
//!
//! A sentence is plain text: pages escape it like any other string, and links are given
//! apart (label and path), never as markup inside the text.

use serde::Serialize;
use serde_json::Value;

/// The event kinds that are alerts: `/alerts` and `pas alerts` list their history.
/// (The dashboard's script has the same list as `ALERT_TYPES` in `app.js`.)
pub const ALERT_EVENT_KINDS: &[&str] = &[
    "agent.down",
    "agent.deregistered",
    "token.warning",
    "token.breach",
    "budget.alert",
    "job.rejected",
    "job.failed",
    "file.refused",
];

/// A link a sentence offers: what it names, and where that is on the dashboard.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Link {
    pub label: String,
    pub href: String,
}

/// An event told in words.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sentence {
    pub text: String,
    pub links: Vec<Link>,
}

/// `HH:MM:SS` of an RFC 3339 time (UTC as pas writes it), or the text as it is.
pub fn clock(ts: &str) -> String {
    ts.get(11..19)
        .map_or_else(|| ts.to_string(), str::to_string)
}

/// A fraction as a whole percentage ("0.8" -> "80%").
fn pct(v: &Value) -> String {
    let f = v
        .as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse::<f64>().ok()));
    f.map_or_else(|| "?".into(), |f| format!("{:.0}%", f * 100.0))
}

/// What a path segment keeps as it is: letters, digits and `-._~` (as `encodeURIComponent`
/// in the page's script, less its `!*'()`).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The dashboard path of an agent.
pub fn agent_href(name: &str) -> String {
    format!(
        "/tree#agent-{}",
        percent_encoding::utf8_percent_encode(name, SEGMENT)
    )
}

/// The dashboard path of a card.
pub fn job_href(id: &str) -> String {
    format!(
        "/jobs/{}",
        percent_encoding::utf8_percent_encode(id, SEGMENT)
    )
}

/// Event `kind` with payload `d` as a sentence.
pub fn of(kind: &str, d: &Value) -> Sentence {
    of_titled(kind, d, None)
}

/// As [`of`], naming the card by its `title` (events carry only its id) when known.
pub fn of_titled(kind: &str, d: &Value, title: Option<&str>) -> Sentence {
    let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
    let agent = s("agent");
    let id = s("id");
    let mut links = Vec::new();
    if !agent.is_empty() {
        links.push(Link {
            label: agent.clone(),
            href: agent_href(&agent),
        });
    }
    let job = if id.is_empty() { s("job") } else { id.clone() };
    if !job.is_empty() {
        links.push(Link {
            label: job.clone(),
            href: job_href(&job),
        });
    }
    let card = s("card");
    if !card.is_empty() {
        links.push(Link {
            label: card.clone(),
            href: job_href(&card),
        });
    }
    let note = |k: &str| {
        d[k].as_str()
            .filter(|n| !n.is_empty())
            .map(|n| format!(", last note “{n}”"))
            .unwrap_or_default()
    };
    let who = |a: &str| {
        if a.is_empty() {
            "an agent".into()
        } else {
            a.to_string()
        }
    };
    // The card as a person knows it: its title, else its id.
    let card_name = match title.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => format!("“{}”", t.chars().take(80).collect::<String>()),
        None => id.clone(),
    };
    let text = match kind {
        "agent.down" => format!(
            "{} is down: no beat for 2 intervals ({}), last seen {}{}",
            who(&agent),
            d["interval_s"]
                .as_f64()
                .map_or("?".into(), |i| format!("{} s", fmt_num(2.0 * i))),
            clock(&s("last_seen")),
            note("last_note")
        ),
        "agent.up" => format!(
            "{} is back up: it beat at {}",
            who(&agent),
            clock(&s("last_seen"))
        ),
        "agent.deregistered" => {
            let seen = s("last_seen");
            format!(
                "{} was deregistered: {}{}{}",
                who(&agent),
                s("reason"),
                if seen.is_empty() {
                    String::new()
                } else {
                    format!(", last seen {}", clock(&seen))
                },
                note("last_note")
            )
        }
        "agent.registered" => format!("{} registered (epoch {})", who(&agent), d["epoch"]),
        "agent.paused" => format!(
            "{} is paused: it keeps its cards and gets no new ones",
            who(&agent)
        ),
        "agent.resumed" => format!("{} resumed", who(&agent)),
        "agent.heartbeat" => {
            let b = &d["beat"];
            let mut t = format!("{} beat", who(&agent));
            if let Some(st) = b["status"].as_str() {
                t.push_str(&format!(": {st}"));
            }
            if let Some(j) = b["job"].as_str() {
                t.push_str(&format!(" on {j}"));
            }
            if b["progress"].is_number() {
                t.push_str(&format!(", {} done", pct(&b["progress"])));
            }
            if let Some(n) = b["note"].as_str().filter(|n| !n.is_empty()) {
                t.push_str(&format!(", “{n}”"));
            }
            t
        }
        "token.warning" => format!(
            "{}'s context is at {}, over its target of {}",
            who(&agent),
            pct(&d["ctx_ratio"]),
            pct(&d["target"])
        ),
        "token.breach" => format!(
            "{}'s context is at {}, over its hard limit of {}{}",
            who(&agent),
            pct(&d["ctx_ratio"]),
            pct(&d["hard_max"]),
            if card.is_empty() {
                String::new()
            } else {
                format!(": pas dropped save-state card {card}")
            }
        ),
        "budget.alert" => format!(
            "the {} budget for {} crossed {}: ${} of ${} spent",
            s("scope"),
            s("period"),
            pct(&d["threshold"]),
            s("spent_usd"),
            s("limit_usd")
        ),
        "job.created" => format!("{card_name} arrived in {}", s("place")),
        "job.assigned" => format!("{card_name} was assigned to {}", who(&agent)),
        "job.review" => format!("{card_name} waits for review ({})", who(&agent)),
        "job.done" => format!("{card_name} is done ({})", who(&agent)),
        "job.failed" => {
            let why = s("reason");
            format!(
                "{card_name} failed{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            )
        }
        "job.requeued" => {
            let why = s("reason");
            format!(
                "{card_name} went back to the inbox{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            )
        }
        "job.rejected" => format!("{} was rejected: {}", s("file"), first_line(&s("reason"))),
        "file.refused" => format!("{} was refused: {}", s("file"), first_line(&s("reason"))),
        "cost.receipt" => format!(
            "{}/{} answered{}: {}, {} tokens in, {} out",
            s("provider"),
            s("model"),
            if agent.is_empty() {
                String::new()
            } else {
                format!(" {agent}")
            },
            d["cost_usd"]
                .as_str()
                .map_or("no price".into(), |c| format!("${c}")),
            d["input_tokens"],
            d["output_tokens"]
        ),
        other => other.to_string(),
    };
    Sentence { text, links }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// `2` rather than `2.0`, `0.5` as it is.
fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_agent_down_reads_as_a_sentence_with_its_link() {
        let s = of(
            "agent.down",
            &json!({"agent": "writer", "interval_s": 1.0, "last_seen": "2026-12-07T12:25:52.120Z", "last_note": null}),
        );
        assert_eq!(
            s.text,
            "writer is down: no beat for 2 intervals (2 s), last seen 12:25:52"
        );
        assert_eq!(s.links[0].href, "/tree#agent-writer");
        let s = of("job.failed", &json!({"id": "J/1 x", "reason": "timeout"}));
        assert_eq!(s.text, "J/1 x failed: timeout");
        assert_eq!(s.links[0].href, "/jobs/J%2F1%20x");
        let s = of_titled(
            "job.done",
            &json!({"id": "J-2", "agent": "c"}),
            Some("Write the parser"),
        );
        assert_eq!(s.text, "“Write the parser” is done (c)");
        assert_eq!(s.links[1].label, "J-2");
    }
}
