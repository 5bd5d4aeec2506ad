//! Replay (SPEC section 13): a recorded `llm` span's request, edited as asked, written as
//! an LLM card into `work/inbox/` with `replay_of: TRACE_ID/SPAN_ID`.
//!
//! A replay goes through the file protocol, as an agent's card would: pas runs it with
//! the gateway's routing, budgets and receipts (`gateway::cards`), in the card's own new
//! trace, and its receipts and span name the original (`replay_of`, `pas.replay_of`).
//! `pas replay` and the dashboard's `POST /api/replays` both call [`write`], so the card
//! is the same whichever wrote it. The recorded request is OpenAI-shaped whatever the
//! provider's protocol (the gateway records what the caller sent), so a call an
//! Anthropic-protocol provider answered replays through the same translation, and a
//! tool-call history (assistant `tool_calls`, `tool` results) is sent back whole.

use serde_json::{json, Map, Value};

use super::Capture;
use crate::card::{Card, State};
use crate::fsops;
use crate::llm::config::Policy;
use crate::span::{valid_span_id, valid_trace_id, Kind, Span};
use crate::workspace::Workspace;

/// What to change in the recorded request.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edits {
    /// Another model id (or `cap:<capability>`).
    #[serde(default)]
    pub model: Option<String>,
    /// A routing policy for this call (`local`, `cheapest`, `fastest`, `balanced`).
    #[serde(default)]
    pub policy: Option<String>,
    /// The messages to send instead of the recorded ones.
    #[serde(default)]
    pub messages: Option<Value>,
    /// Request parameters to set (`temperature`, `max_tokens`, `tools`, ...); a `null`
    /// removes the recorded one.
    #[serde(default)]
    pub set: Map<String, Value>,
}

/// `TRACE_ID/SPAN_ID`, checked.
pub fn parse_target(s: &str) -> Result<(String, String), String> {
    let (t, sp) = s.split_once('/').ok_or_else(|| {
        format!("{s:?} is not TRACE_ID/SPAN_ID (32 and 16 hex digits, as `pas trace` shows)")
    })?;
    if !valid_trace_id(t) {
        return Err(format!("{t:?} is not a trace id (32 lowercase hex digits)"));
    }
    if !valid_span_id(sp) {
        return Err(format!("{sp:?} is not a span id (16 lowercase hex digits)"));
    }
    Ok((t.to_string(), sp.to_string()))
}

/// Parameters the card's own keys say, or that a card never uses.
const RESERVED: &[&str] = &["model", "messages", "stream", "stream_options"];

/// The replay card's YAML mapping for `span` (found at `target`) edited by `e`; an error
/// that says why when the span cannot be replayed.
pub fn card_for(span: &Span, target: &str, e: &Edits) -> Result<serde_yaml::Mapping, String> {
    if span.kind != Kind::Llm {
        return Err(format!(
            "span {target} is a {} span, not an LLM call: only llm spans can be replayed",
            span.kind.as_str()
        ));
    }
    let Some(request) = &span.input else {
        return Err(format!(
            "span {target} has no recorded request: it was recorded with traces.capture \
             metadata (or its content was not kept), and only capture: full keeps what a \
             replay sends"
        ));
    };
    let Some(recorded) = request.as_object().filter(|o| o["messages"].is_array()) else {
        return Err(format!(
            "span {target}'s recorded input is not a chat request with messages (it came \
             from {}): nothing to send again",
            span.source.as_str()
        ));
    };
    let mut params: Map<String, Value> = recorded
        .iter()
        .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &e.set {
        if RESERVED.contains(&k.as_str()) {
            return Err(format!(
                "--set {k}: not a parameter a replay sets (use --model / --messages; a \
                 replay is never streamed)"
            ));
        }
        if v.is_null() {
            params.remove(k);
        } else {
            params.insert(k.clone(), v.clone());
        }
    }
    let model = match &e.model {
        Some(m) if m.trim().is_empty() => return Err("--model is empty".into()),
        Some(m) => m.clone(),
        None => recorded
            .get("model")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("span {target}'s recorded request names no model"))?
            .to_string(),
    };
    let messages = match &e.messages {
        Some(Value::Array(m)) if !m.is_empty() => Value::Array(m.clone()),
        Some(Value::Object(o)) if o.get("messages").is_some_and(Value::is_array) => {
            o["messages"].clone()
        }
        Some(_) => {
            return Err(
                "the messages must be a non-empty list of {role, content} (or a \
                 mapping with such a `messages` list)"
                    .into(),
            )
        }
        None => recorded["messages"].clone(),
    };
    // Checked now, naming the message, rather than when the card runs and fails.
    crate::llm::check_messages(messages.as_array().map_or(&[][..], |m| m))?;
    if let Some(p) = &e.policy {
        serde_yaml::from_value::<Policy>(serde_yaml::Value::String(p.clone())).map_err(|_| {
            format!("--policy {p:?} is not one of local, cheapest, fastest, balanced")
        })?;
    }
    let mut llm = json!({"model": model, "messages": messages});
    if let Some(p) = &e.policy {
        llm["policy"] = json!(p);
    }
    if !params.is_empty() {
        llm["params"] = Value::Object(params);
    }
    let card = json!({
        "title": format!("replay of {}", one_line(&span.name)),
        "description": format!("Replays the LLM call {target} (pas replay)."),
        "replay_of": target,
        "llm": llm,
    });
    match serde_yaml::to_value(card) {
        Ok(serde_yaml::Value::Mapping(m)) => Ok(m),
        _ => Err("cannot write the replay card as YAML".into()),
    }
}

fn one_line(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).take(80).collect();
    if s.trim().is_empty() {
        "an LLM call".into()
    } else {
        s
    }
}

/// What [`write`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Written {
    /// The new card's id.
    pub job: String,
    /// Where it was written, relative to the workspace.
    pub path: String,
    pub replay_of: String,
}

/// Reads span `target` from the workspace's database and writes its replay card into
/// `work/inbox/`. Every refusal names what is wrong (the target, the capture setting).
pub fn write(ws: &Workspace, target: &str, e: &Edits) -> Result<Written, String> {
    let (span, capture) = find_span(ws, target)?;
    if span.input.is_none() && span.kind == Kind::Llm && capture != Capture::Full {
        return Err(format!(
            "span {target} has no recorded request: traces.capture is {}, which keeps no \
             message content; only capture: full keeps what a replay sends",
            capture_name(capture)
        ));
    }
    let map = card_for(&span, target, e)?;
    let job = drop_card(ws, &map)?;
    Ok(Written {
        path: format!("work/inbox/{job}.yaml"),
        job,
        replay_of: target.to_string(),
    })
}

pub(crate) fn capture_name(c: Capture) -> &'static str {
    match c {
        Capture::Full => "full",
        Capture::Metadata => "metadata",
        Capture::Off => "off",
    }
}

/// Span `target` (`TRACE_ID/SPAN_ID`) with its content, and the capture setting; an
/// error naming the target (and the setting, when it explains the absence).
pub(crate) fn find_span(ws: &Workspace, target: &str) -> Result<(Span, Capture), String> {
    let (trace, span_id) = parse_target(target)?;
    let capture = ws.config().map(|c| c.traces.capture).unwrap_or_default();
    let conn = crate::store::db::open_read_only(&ws.db_path())
        .map_err(|err| format!("cannot open {}: {err}", ws.db_path().display()))?;
    let found = match &conn {
        Some(conn) => super::store::span(conn, &trace, &span_id)
            .map_err(|err| format!("cannot read span {target}: {err}"))?,
        None => None,
    };
    match found {
        Some(span) => Ok((span, capture)),
        None if capture == Capture::Off => Err(format!(
            "no span {target}: traces.capture is off, so pas records no spans and there is \
             nothing to replay (set traces: {{capture: full}} to record requests)"
        )),
        None => Err(format!("no span {target} in {}", ws.db_path().display())),
    }
}

/// Writes the card `map` into `work/inbox/` under a new id, as `pas submit` does (a
/// temporary name, then a rename that never replaces); the id.
pub(crate) fn drop_card(ws: &Workspace, map: &serde_yaml::Mapping) -> Result<String, String> {
    let id = ulid::Ulid::new().to_string();
    let text = serde_yaml::to_string(map).map_err(|err| err.to_string())?;
    Card::parse(&id, &text).map_err(|err| format!("the card is not valid: {err}"))?;
    let inbox = ws.state_dir(State::Inbox);
    std::fs::create_dir_all(&inbox)
        .map_err(|err| format!("cannot create {}: {err}", inbox.display()))?;
    let to = inbox.join(format!("{id}.yaml"));
    let tmp = inbox.join(format!(".{id}.yaml.tmp"));
    fsops::write_atomic(&tmp, text.as_bytes(), false)
        .map_err(|err| format!("cannot write {}: {err}", tmp.display()))?;
    match fsops::rename_no_replace(&tmp, &to) {
        Ok(true) => Ok(id),
        other => {
            let _ = std::fs::remove_file(&tmp); // our own temp copy
            Err(format!(
                "cannot put the card at {}: {other:?}",
                to.display()
            ))
        }
    }
}

/// The answer of a recorded call or of a replay's result, in the one shape `--wait` and
/// the dashboard compare: its text and its tool calls (`name(arguments)`).
pub fn answer_of(v: &Value) -> Value {
    let message = v.pointer("/choices/0/message").unwrap_or(v);
    let text = message
        .get("content")
        .or_else(|| message.get("text"))
        .cloned()
        .unwrap_or(Value::Null);
    let calls: Vec<Value> = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            json!({
                "name": c.pointer("/function/name").cloned().unwrap_or(Value::Null),
                "arguments": c.pointer("/function/arguments").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    json!({"text": text, "tool_calls": calls})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Source, Status};

    fn recorded() -> Span {
        let mut s = Span::new(
            "0af7651916cd43dd8448eb211c80319c",
            "b7ad6b7169203331",
            "chat m",
            Kind::Llm,
            Source::Pas,
        );
        s.status = Status::Ok;
        s.input = Some(json!({"model": "m", "stream": true, "temperature": 0.5,
            "messages": [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1",
                    "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}],
            "tools": [{"type": "function", "function": {"name": "f"}}]}));
        s
    }

    #[test]
    fn the_card_keeps_the_tool_history_and_parameters_and_drops_stream() {
        let e = Edits {
            model: Some("n".into()),
            set: [("temperature".to_string(), json!(0))]
                .into_iter()
                .collect(),
            ..Edits::default()
        };
        let m = card_for(&recorded(), "t/s", &e).unwrap();
        let v: Value = serde_yaml::from_value(serde_yaml::Value::Mapping(m)).unwrap();
        assert_eq!(v["replay_of"], "t/s");
        assert_eq!(v["llm"]["model"], "n");
        assert_eq!(v["llm"]["messages"][2]["tool_call_id"], "c1");
        assert_eq!(v["llm"]["params"]["temperature"], 0);
        assert_eq!(v["llm"]["params"]["tools"][0]["function"]["name"], "f");
        assert!(v["llm"]["params"].get("stream").is_none());
    }

    #[test]
    fn spans_without_a_request_or_bad_edits_are_refused_with_why() {
        let mut s = recorded();
        s.input = None;
        let err = card_for(&s, "t/s", &Edits::default()).unwrap_err();
        assert!(err.contains("capture"), "{err}");
        let e = Edits {
            policy: Some("quickest".into()),
            ..Edits::default()
        };
        assert!(card_for(&recorded(), "t/s", &e)
            .unwrap_err()
            .contains("--policy"));
        let e = Edits {
            set: [("stream".to_string(), json!(true))].into_iter().collect(),
            ..Edits::default()
        };
        assert!(card_for(&recorded(), "t/s", &e)
            .unwrap_err()
            .contains("--set stream"));
        assert!(parse_target("abc")
            .unwrap_err()
            .contains("TRACE_ID/SPAN_ID"));
    }
}
