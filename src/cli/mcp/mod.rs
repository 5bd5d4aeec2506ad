//! `pas mcp`: the Model Context Protocol over stdio (SPEC section 16), on `rmcp`, the
//! official Rust SDK. It lives in `cli` because it is the command line's second face: the
//! same commands, spoken over MCP.
//!
//! Each tool runs its CLI twin, the very same function, with output captured instead of
//! printed (stdout is the protocol here): `submit` is `pas submit`, `claim` is `pas claim`,
//! and so on (`status` and `show` print the read models `pas status --json` and
//! `pas show --json` print), so an agent speaking MCP moves the same files an agent using the shell does,
//! and a running `pas serve` records and commits them the same way.
//!
//! Arguments are checked before anything runs: a missing, unknown or mistyped argument is a
//! JSON-RPC "invalid params" error naming it (its path in the arguments), and no file
//! changes. A command that refuses (no such card, not in review) is a tool result marked
//! `isError` with the command's own `error: ...` text, as the MCP spec asks for failures a
//! model should read.

mod params;

use rmcp::handler::server::common::schema_for_type;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    Tool,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use serde::de::DeserializeOwned;

use crate::cli::Out;
use crate::workspace::Workspace;

/// Runs the server on stdin/stdout until the client closes it.
pub fn serve(ws: &Workspace) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server = PasMcp { ws: ws.clone() }
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| anyhow::anyhow!("MCP handshake failed: {e}"))?;
        server.waiting().await?;
        Ok(0)
    })
}

/// The MCP server of one workspace.
#[derive(Clone)]
pub struct PasMcp {
    ws: Workspace,
}

/// A tool: its name, what it does, and its argument type (for the schema).
fn tool<T: schemars::JsonSchema + 'static>(name: &'static str, description: &'static str) -> Tool {
    Tool::new(name, description, schema_for_type::<T>())
}

/// Every tool, in the order they are listed.
fn tools() -> Vec<Tool> {
    use crate::cli::{agents, write};
    use params::*;
    vec![
        tool::<write::SubmitArgs>("submit", "Submit a new job card into work/inbox/ (like `pas submit`); `parent` makes it part of a larger job. Returns the new card's id."),
        tool::<Claim>("claim", "Claim a card for an agent by moving it from work/inbox/ into work/assigned/<agent>/ (like `pas claim AGENT [ID]`); without `id`, the best card the agent can do. Returns the id."),
        tool::<Done>("done", "Finish a card with its result (like `pas done`): to work/done/, or to work/review/ when the card has `review: true`."),
        tool::<Fail>("fail", "Fail a card with an error (like `pas fail`): to work/failed/."),
        tool::<write::RegisterArgs>("register", "Register an agent (like `pas register`): it may then be given or claim cards."),
        tool::<agents::BeatArgs>("heartbeat", "Append a heartbeat for an agent (like `pas heartbeat`)."),
        tool::<Span>("span", "Append one span to a trace (like `pas span`). Returns `trace_id span_id`."),
        tool::<Status>("status", "The board as JSON (like `pas status --json`): counts per state, agents, waiting cards."),
        tool::<Show>("show", "One card as JSON (like `pas show --json`): fields, place, history, and its diff when in review."),
        tool::<Approve>("approve", "Approve a card waiting in work/review/: it moves to work/done/ (like `pas approve`)."),
        tool::<Reject>("reject", "Reject a card waiting in work/review/: back to work/inbox/ with the feedback and attempts raised (like `pas reject --feedback`)."),
    ]
}

/// The arguments as `T`, or an "invalid params" error naming the argument that is wrong.
fn parse<T: DeserializeOwned>(args: Option<rmcp::model::JsonObject>) -> Result<T, ErrorData> {
    let value = serde_json::Value::Object(args.unwrap_or_default());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path == "." {
            format!("invalid arguments: {inner}")
        } else {
            format!("argument `{path}`: {inner}")
        };
        ErrorData::invalid_params(message, None)
    })
}

/// Runs a CLI twin on a blocking thread with its output captured: its text is the tool's
/// result; its error (`error: ...` with the cause chain, as the CLI prints it) an error
/// result.
async fn twin(
    ws: &Workspace,
    run: impl FnOnce(&Workspace, &Out) -> anyhow::Result<i32> + Send + 'static,
) -> Result<CallToolResponse, ErrorData> {
    let ws = ws.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let out = Out::capture();
        let code = run(&ws, &out);
        (code, out.take())
    })
    .await
    .map_err(|e| ErrorData::internal_error(format!("the command panicked: {e}"), None))?;
    let result = match outcome {
        (Ok(0), text) => CallToolResult::success(vec![ContentBlock::text(text.trim_end())]),
        (Ok(code), text) => {
            let text = if text.trim().is_empty() {
                format!("exit status {code}: nothing done")
            } else {
                text
            };
            CallToolResult::error(vec![ContentBlock::text(text.trim_end())])
        }
        (Err(e), _) => CallToolResult::error(vec![ContentBlock::text(format!("error: {e:#}"))]),
    };
    Ok(result.into())
}

impl PasMcp {
    /// Checks the arguments of tool `name` and runs its twin.
    async fn call(
        &self,
        name: &str,
        args: Option<rmcp::model::JsonObject>,
    ) -> Result<CallToolResponse, ErrorData> {
        use crate::cli::{agents, review, traces, write};
        use params::*;
        let ws = &self.ws;
        match name {
            "submit" => {
                let a: write::SubmitArgs = parse(args)?;
                if a.title.is_none() {
                    let m = "argument `title`: missing (every card needs a one-line title)";
                    return Err(ErrorData::invalid_params(m, None));
                }
                twin(ws, move |ws, out| write::submit(ws, a, out)).await
            }
            "claim" => {
                let a: Claim = parse(args)?;
                twin(ws, move |ws, out| {
                    write::claim(ws, &a.agent, a.id.as_deref(), out)
                })
                .await
            }
            "done" | "fail" => {
                let (id, text, done) = if name == "done" {
                    let a: Done = parse(args)?;
                    (a.id, a.result, true)
                } else {
                    let a: Fail = parse(args)?;
                    (a.id, a.error, false)
                };
                twin(ws, move |ws, out| write::finish(ws, &id, done, text, out)).await
            }
            "register" => {
                let a: write::RegisterArgs = parse(args)?;
                twin(ws, move |ws, out| write::register(ws, a, out)).await
            }
            "heartbeat" => {
                let a: agents::BeatArgs = parse(args)?;
                twin(ws, move |ws, out| agents::heartbeat(ws, a, out)).await
            }
            "span" => {
                let a = parse::<Span>(args)?.into_args();
                twin(ws, move |ws, out| traces::span(ws, a, out)).await
            }
            "status" => {
                let a: Status = parse(args)?;
                twin(ws, move |ws, out| {
                    out.json(&crate::views::status::document(ws, a.at.as_deref())?);
                    Ok(0)
                })
                .await
            }
            "show" => {
                let a: Show = parse(args)?;
                twin(ws, move |ws, out| {
                    out.json(&crate::views::value(
                        &crate::views::job::shown(ws, &a.id)?.doc(),
                    ));
                    Ok(0)
                })
                .await
            }
            "approve" => {
                let a: Approve = parse(args)?;
                twin(ws, move |ws, out| review::approve(ws, &a.id, a.note, out)).await
            }
            "reject" => {
                let a: Reject = parse(args)?;
                twin(ws, move |ws, out| {
                    review::reject(ws, &a.id, &a.feedback, out)
                })
                .await
            }
            other => Err(ErrorData::invalid_params(
                format!("unknown tool {other:?}"),
                None,
            )),
        }
    }
}

impl ServerHandler for PasMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("pas", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "pas: a file-based orchestrator. Cards are YAML files moving between work/inbox, \
             work/assigned/<agent>, work/review, work/done and work/failed; these tools make \
             the same moves as the pas CLI.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        self.call(&name, request.arguments).await
    }
}

/// The tool names `pas mcp` lists (for tests and the README).
pub fn tool_names() -> Vec<String> {
    tools().into_iter().map(|t| t.name.to_string()).collect()
}
