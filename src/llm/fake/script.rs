//! Scripts for the fake upstream: a YAML list of replies (text, tool calls, or both) that
//! the fake plays back, so a test or `pas demo` can drive a real agent CLI through a
//! multi-step task offline.
//!
//! ```yaml
//! - when: {model: haiku}            # side requests (titles, probes) by the small model
//!   text: "ok"
//! - tool_calls:                     # turn 0: the first request of the conversation
//!     - name: Write
//!       arguments: {file_path: hello.txt, content: "hi\n"}
//! - text: "I wrote hello.txt."      # turn 1: after one assistant turn
//! ```
//!
//! Which reply a request gets: first the steps with `when`, in file order, the first whose
//! conditions all hold; else the step in order at the request's *turn*, the number of
//! assistant messages already in its conversation. A step is chosen by what the request
//! holds, never by how many requests came before, so side requests, retries and
//! concurrent sessions do not use up steps. A turn past the last step in order gets a text
//! saying so. Usage is the step's `usage`, else estimated from the request and the reply
//! (about 4 bytes a token, at least 1), so a priced model's calls cost something. A
//! step's `delay_ms` holds its reply back that long (a slow model, to catch an agent
//! mid-call).
//!
//! A script that is not this shape is refused when it is read, naming the file, the line
//! and the reason.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::FakeToolCall;
use crate::llm::cost::estimate_tokens;

/// A script the fake plays.
#[derive(Debug, Clone, Default)]
pub struct Script {
    steps: Vec<Step>,
}

/// One reply of a script.
#[derive(Debug, Clone)]
pub struct Step {
    when: Option<When>,
    text: String,
    tool_calls: Vec<ScriptCall>,
    usage: Option<StepUsage>,
    /// How long the reply takes: a slow model, so a test can catch an agent mid-call.
    delay_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    when: Option<When>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ScriptCall>,
    #[serde(default)]
    usage: Option<StepUsage>,
    #[serde(default)]
    delay_ms: u64,
}

impl TryFrom<RawStep> for Step {
    type Error = String;

    /// A step that parsed, checked for sense.
    fn try_from(r: RawStep) -> Result<Step, String> {
        if r.text.as_deref().is_none_or(str::is_empty) && r.tool_calls.is_empty() {
            return Err("a step needs `text`, `tool_calls`, or both".into());
        }
        for c in &r.tool_calls {
            if c.name.trim().is_empty() {
                return Err("a tool call needs a `name`".into());
            }
            if !(c.arguments.is_object() || c.arguments.is_null()) {
                return Err(format!(
                    "the arguments of tool call {} must be a mapping (the tool's input)",
                    c.name
                ));
            }
        }
        if let Some(w) = &r.when {
            if w.is_empty() {
                return Err("`when` names no condition".into());
            }
        }
        Ok(Step {
            when: r.when,
            text: r.text.unwrap_or_default(),
            tool_calls: r.tool_calls,
            usage: r.usage,
            delay_ms: r.delay_ms,
        })
    }
}

/// Conditions a request must meet for a step with `when` (all that are given).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct When {
    /// The text of the last user message (tool results included) contains this.
    #[serde(default)]
    last_user_contains: Option<String>,
    /// The system prompt contains this.
    #[serde(default)]
    system_contains: Option<String>,
    /// The model id the fake is asked for contains this: the provider's model id, after
    /// pas resolved the client's name (alias a small model apart to script its calls).
    #[serde(default)]
    model: Option<String>,
    /// The conversation has this many assistant turns already.
    #[serde(default)]
    turn: Option<usize>,
    /// The request offers tools (true) or none (false).
    #[serde(default)]
    tools: Option<bool>,
}

impl When {
    fn is_empty(&self) -> bool {
        self.last_user_contains.is_none()
            && self.system_contains.is_none()
            && self.model.is_none()
            && self.turn.is_none()
            && self.tools.is_none()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptCall {
    #[serde(default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepUsage {
    input_tokens: u64,
    output_tokens: u64,
}

/// What the fake answers one request with.
#[derive(Debug, Clone)]
pub struct Played {
    pub text: String,
    pub tool_calls: Vec<FakeToolCall>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Wait this long before answering.
    pub delay: std::time::Duration,
}

impl Script {
    /// Reads a script file; the error names the file, the line and the reason.
    pub fn load(path: &Path) -> Result<Script, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the script: {e}", path.display()))?;
        Script::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses script text (a YAML list of steps); the error names the line.
    pub fn parse(text: &str) -> Result<Script, String> {
        let raw: Vec<RawStep> = serde_yaml::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map_or(String::new(), |l| format!("line {}: ", l.line()));
            // serde_yaml appends " at line L column C" itself; say it once, in front.
            let msg = e.to_string();
            let msg = match msg.rfind(" at line ") {
                Some(i) if !at.is_empty() => msg[..i].to_string(),
                _ => msg,
            };
            format!("{at}{msg}")
        })?;
        let lines = step_lines(text);
        let steps = raw
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                Step::try_from(r).map_err(|e| match lines.get(i) {
                    Some(l) => format!("line {l}: step {}: {e}", i + 1),
                    None => format!("step {}: {e}", i + 1),
                })
            })
            .collect::<Result<_, _>>()?;
        Script::from_steps(steps)
    }

    /// A script from YAML already parsed (an inline `script:` list in `pas.yaml`).
    pub fn from_yaml(v: &serde_yaml::Value) -> Result<Script, String> {
        let raw: Vec<RawStep> = serde_yaml::from_value(v.clone()).map_err(|e| e.to_string())?;
        let steps = raw
            .into_iter()
            .enumerate()
            .map(|(i, r)| Step::try_from(r).map_err(|e| format!("step {}: {e}", i + 1)))
            .collect::<Result<_, _>>()?;
        Script::from_steps(steps)
    }

    fn from_steps(steps: Vec<Step>) -> Result<Script, String> {
        if steps.is_empty() {
            return Err("the script has no steps: it must be a list of replies".into());
        }
        Ok(Script { steps })
    }

    /// The reply to `req` (a request body of either protocol, `len` bytes long).
    pub fn play(&self, req: &Value, len: usize) -> Played {
        let turn = turn(req);
        let hit = self
            .steps
            .iter()
            .enumerate()
            .find(|(_, s)| s.when.as_ref().is_some_and(|w| holds(w, req, turn)))
            .or_else(|| {
                self.steps
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.when.is_none())
                    .nth(turn)
            });
        let Some((at, step)) = hit else {
            let in_order = self.steps.iter().filter(|s| s.when.is_none()).count();
            let text =
                format!("pas fake script: no step for turn {turn} (it has {in_order} in order)");
            return Played {
                input_tokens: estimate_tokens(len).max(1),
                output_tokens: estimate_tokens(text.len()).max(1),
                text,
                tool_calls: Vec::new(),
                delay: std::time::Duration::ZERO,
            };
        };
        let tool_calls: Vec<FakeToolCall> = step
            .tool_calls
            .iter()
            .enumerate()
            .map(|(n, c)| FakeToolCall {
                id: c
                    .id
                    .clone()
                    .unwrap_or_else(|| format!("toolu_fake_{at}_{turn}_{n}")),
                name: c.name.clone(),
                arguments: match &c.arguments {
                    Value::Null => Value::Object(Default::default()),
                    a => a.clone(),
                },
            })
            .collect();
        let out_bytes = step.text.len()
            + tool_calls
                .iter()
                .map(|c| c.name.len() + c.arguments.to_string().len())
                .sum::<usize>();
        let (input_tokens, output_tokens) = match step.usage {
            Some(u) => (u.input_tokens, u.output_tokens),
            None => (
                estimate_tokens(len).max(1),
                estimate_tokens(out_bytes).max(1),
            ),
        };
        Played {
            text: step.text.clone(),
            tool_calls,
            input_tokens,
            output_tokens,
            delay: std::time::Duration::from_millis(step.delay_ms),
        }
    }
}

/// The line (1-based) each step of a block-style script starts on: the lines whose first
/// character is the list's `-` at the outermost indentation. A flow-style script
/// (`[{...}]`) has none, and its errors name the step alone.
fn step_lines(text: &str) -> Vec<usize> {
    let items: Vec<(usize, usize)> = text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let indent = l.len() - l.trim_start().len();
            let rest = &l[indent..];
            (rest == "-" || rest.starts_with("- ")).then_some((i + 1, indent))
        })
        .collect();
    let outer = items.iter().map(|(_, d)| *d).min().unwrap_or(0);
    items
        .into_iter()
        .filter(|(_, d)| *d == outer)
        .map(|(l, _)| l)
        .collect()
}

/// The assistant turns already in a request's conversation.
fn turn(req: &Value) -> usize {
    req["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["role"] == "assistant").count())
}

fn holds(w: &When, req: &Value, turn: usize) -> bool {
    let has = |hay: String, needle: &Option<String>| {
        needle.as_ref().is_none_or(|n| hay.contains(n.as_str()))
    };
    let tools = req["tools"].as_array().is_some_and(|t| !t.is_empty());
    w.turn.is_none_or(|t| t == turn)
        && w.tools.is_none_or(|t| t == tools)
        && has(
            req["model"].as_str().unwrap_or_default().to_string(),
            &w.model,
        )
        && has(system_text(req), &w.system_contains)
        && has(last_user_text(req), &w.last_user_contains)
}

/// All text of a content value (a string, or blocks/parts with `text`, tool results'
/// content included).
fn text_of(c: &Value, out: &mut String) {
    match c {
        Value::String(s) => out.push_str(s),
        Value::Array(parts) => {
            for p in parts {
                if let Some(t) = p["text"].as_str() {
                    out.push_str(t);
                }
                text_of(&p["content"], out);
                out.push('\n');
            }
        }
        _ => {}
    }
}

fn system_text(req: &Value) -> String {
    let mut out = String::new();
    text_of(&req["system"], &mut out);
    for m in req["messages"].as_array().into_iter().flatten() {
        if matches!(m["role"].as_str(), Some("system" | "developer")) {
            text_of(&m["content"], &mut out);
        }
    }
    out
}

fn last_user_text(req: &Value) -> String {
    let mut out = String::new();
    let msgs = req["messages"].as_array();
    // OpenAI's tool results are `role: tool` messages after the user's.
    if let Some(m) = msgs.and_then(|m| {
        m.iter()
            .rev()
            .find(|m| matches!(m["role"].as_str(), Some("user" | "tool")))
    }) {
        text_of(&m["content"], &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCRIPT: &str = "\
- when: {model: haiku}
  text: side
- tool_calls:
    - name: Write
      arguments: {file_path: a.txt, content: hi}
- text: done
  usage: {input_tokens: 7, output_tokens: 3}
";

    #[test]
    fn steps_go_by_the_turn_of_the_conversation_and_when_comes_first() {
        let s = Script::parse(SCRIPT).unwrap();
        let first = json!({"model": "big", "messages": [{"role": "user", "content": "go"}]});
        let p = s.play(&first, 400);
        assert_eq!(p.tool_calls.len(), 1);
        assert_eq!(p.tool_calls[0].arguments["file_path"], "a.txt");
        assert_eq!(p.input_tokens, 100);
        // A side request does not use up a step.
        let side = json!({"model": "claude-haiku", "messages": [{"role": "user", "content": "t"}]});
        assert_eq!(s.play(&side, 10).text, "side");
        let second = json!({"model": "big", "messages": [{"role": "user", "content": "go"},
            {"role": "assistant", "content": []}, {"role": "user", "content": "ok"}]});
        let p = s.play(&second, 10);
        assert_eq!(
            (p.text.as_str(), p.input_tokens, p.output_tokens),
            ("done", 7, 3)
        );
        let third =
            json!({"model": "big", "messages": [{"role": "assistant"}, {"role": "assistant"}]});
        assert!(s.play(&third, 10).text.contains("no step for turn 2"));
    }

    #[test]
    fn bad_scripts_name_the_line_and_the_reason() {
        for (bad, line, why) in [
            ("- text: a\n- when: {turn: 1}\n", 2, "needs `text`"),
            ("- text: a\n\n- txt: b\n", 3, "unknown field `txt`"),
            (
                "- tool_calls:\n    - {name: W, arguments: [1]}\n",
                1,
                "must be a mapping",
            ),
            ("- text: a\n  when: {}\n", 1, "names no condition"),
        ] {
            let e = Script::parse(bad).unwrap_err();
            assert!(e.starts_with(&format!("line {line}:")), "{bad:?}: {e}");
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(Script::parse("[]").unwrap_err().contains("no steps"));
    }
}
