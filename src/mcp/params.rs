//! The arguments of each `pas mcp` tool: typed, with JSON Schemas (schemars) that the
//! server lists, and each turned into the arguments of its CLI twin.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::card::Priority;

/// `submit`: a new card in `work/inbox/` (what `pas submit` writes).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Submit {
    /// One-line title.
    pub title: String,
    /// Free text: what to do.
    #[serde(default)]
    pub description: Option<String>,
    /// Capabilities the assignee must have.
    #[serde(default)]
    pub requires: Vec<String>,
    /// critical, high, medium (default) or low.
    #[serde(default)]
    pub priority: Option<String>,
    /// Pin to one agent.
    #[serde(default)]
    pub assignee: Option<String>,
    /// The job this card is part of: how an agent splits its work into cards.
    #[serde(default)]
    pub parent: Option<String>,
    /// Ids that must be done first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Longest time in assigned/ before the card is taken back, in seconds.
    #[serde(default)]
    pub timeout_s: Option<f64>,
    /// Take-backs before the card fails.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Finishing goes to work/review/ for a person's approve or reject.
    #[serde(default)]
    pub review: bool,
    /// Use this id instead of a new ULID.
    #[serde(default)]
    pub id: Option<String>,
}

impl Submit {
    /// The flags `pas submit` would have been given, or which argument is wrong.
    pub fn into_args(self) -> Result<crate::cli::write::SubmitArgs, String> {
        let priority = match self.priority.as_deref() {
            None => None,
            Some(p) => Some(
                [
                    Priority::Critical,
                    Priority::High,
                    Priority::Medium,
                    Priority::Low,
                ]
                .into_iter()
                .find(|x| x.as_str() == p)
                .ok_or_else(|| {
                    format!("argument `priority`: {p:?} is not one of critical, high, medium, low")
                })?,
            ),
        };
        Ok(crate::cli::write::SubmitArgs {
            title: Some(self.title),
            description: self.description,
            requires: self.requires,
            priority,
            assignee: self.assignee,
            parent: self.parent,
            depends_on: self.depends_on,
            timeout_s: self.timeout_s,
            max_attempts: self.max_attempts,
            review: self.review,
            file: None,
            id: self.id,
        })
    }
}

/// `claim`: an agent takes a card from the inbox by moving it into its own folder (the
/// Maildir rule: one rename, one winner).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// The agent claiming.
    pub agent: String,
    /// A named inbox card (default: the best card the agent can do; that needs the agent
    /// registered).
    #[serde(default)]
    pub id: Option<String>,
}

/// `done`: finish a card with its result (to work/review/ when the card asks for review).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Done {
    /// The card.
    pub id: String,
    /// The result text.
    #[serde(default)]
    pub result: Option<String>,
}

/// `fail`: give a card up with an error.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fail {
    /// The card.
    pub id: String,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// `span`: one step of a trace (what `pas span` appends).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Span {
    /// The trace (default: the trace of `job`'s card, else a new trace).
    #[serde(default)]
    pub trace: Option<String>,
    /// The span's id (default: a new one; give it again to update the span).
    #[serde(default)]
    pub id: Option<String>,
    /// The parent span (default for a job's trace: the card's root span).
    #[serde(default)]
    pub parent: Option<String>,
    /// What the step is.
    #[serde(default)]
    pub name: Option<String>,
    /// agent, step, tool, llm or checkpoint.
    #[serde(default)]
    pub kind: Option<String>,
    /// running, ok or error.
    #[serde(default)]
    pub status: Option<String>,
    /// The span ends now.
    #[serde(default)]
    pub end: bool,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub job: Option<String>,
    /// Attributes.
    #[serde(default)]
    pub attrs: serde_json::Map<String, Value>,
    /// The span's input (any JSON).
    #[serde(default)]
    pub input: Option<Value>,
    /// The span's output (any JSON).
    #[serde(default)]
    pub output: Option<Value>,
}

impl Span {
    /// The flags `pas span` would have been given.
    pub fn into_args(self) -> crate::cli::traces::SpanArgs {
        crate::cli::traces::SpanArgs {
            trace: self.trace,
            id: self.id,
            parent: self.parent,
            name: self.name,
            kind: self.kind,
            status: self.status,
            end: self.end,
            agent: self.agent,
            job: self.job,
            attrs: (self.attrs.into_iter())
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            input: self.input.map(|v| v.to_string()),
            output: self.output.map(|v| v.to_string()),
        }
    }
}

/// `status`: the board (what `pas status --json` prints).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// The board as it stood at a git revision or a time ("2h ago").
    #[serde(default)]
    pub at: Option<String>,
}

/// `show`: one card, its place, history and (in review) its diff.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Show {
    /// The card.
    pub id: String,
}

/// `approve`: a card in work/review/ to work/done/.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// The card.
    pub id: String,
    /// A word for the history.
    #[serde(default)]
    pub note: Option<String>,
}

/// `reject`: a card in work/review/ back to the inbox with feedback, attempts raised.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reject {
    /// The card.
    pub id: String,
    /// What to change.
    pub feedback: String,
}
