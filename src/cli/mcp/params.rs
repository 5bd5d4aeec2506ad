//! The arguments of the `pas mcp` tools whose CLI twins take positional values or flags
//! shaped for a shell (`submit`, `register` and `heartbeat` take the CLI's own structs):
//! typed, with the JSON Schemas (schemars) the server lists.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

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
