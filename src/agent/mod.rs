//! Agents as pas knows them from files (pure): definitions in `agents/*.md` and
//! registrations in `work/registry/<name>.yaml`.
//!
//! Definitions are a superset of Claude Code sub-agent files, so `tools` may be a comma
//! string or a list and unknown front-matter keys are accepted as they are.

pub mod run;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::card::{valid_agent_name, MAX_EPOCH};
use crate::config::{valid_interval, TokenBudget};
use crate::heartbeat::Beat;
use crate::liveness::{CtxLevel, Live};

/// `tools:` is "Read, Grep" in Claude Code files and a list in ours.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Tools {
    Text(String),
    List(Vec<String>),
}

/// The front matter of `agents/<name>.md`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct AgentDef {
    /// Defaults to the file stem when the front matter has none.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tools: Option<Tools>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    #[serde(default)]
    pub ctx_limit: Option<u64>,
    #[serde(default)]
    pub token_budget: Option<TokenBudget>,
    #[serde(default)]
    pub heartbeat_interval_s: Option<f64>,
    /// How pas starts this agent for one card (SPEC section 16); see [`crate::runner`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<run::RunDef>,
}

/// A registration: the agent is present while this file exists.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Registration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "one")]
    pub epoch: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_s: Option<f64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

fn one() -> u64 {
    1
}

/// Deployment role of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Production,
    Staging,
    Canary,
    Experimental,
}

/// Why a definition or registration could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct AgentError {
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

fn yaml_err(e: serde_yaml::Error, line_offset: usize) -> AgentError {
    let loc = e.location();
    AgentError {
        message: e.to_string(),
        line: loc.as_ref().map(|l| l.line() + line_offset),
        column: loc.as_ref().map(|l| l.column()),
    }
}

/// Most slots (`max_concurrent`) one agent may claim.
pub const MAX_SLOTS: u32 = 100_000;

fn plain(message: String) -> AgentError {
    AgentError {
        message,
        line: None,
        column: None,
    }
}

/// The YAML guards of [`crate::intake::yaml_guard`], lines shifted by `line_offset`.
fn guard(text: &str, line_offset: usize) -> Result<(), AgentError> {
    crate::intake::yaml_guard(text).map_err(|e| AgentError {
        message: e.message,
        line: e.line.map(|l| l + line_offset),
        column: e.column,
    })
}

/// Splits `---\nfront matter\n---\nbody`; `None` when there is no front matter.
pub fn split_front_matter(text: &str) -> Option<(&str, &str)> {
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))?;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return Some((&rest[..offset], &rest[offset + line.len()..]));
        }
        offset += line.len();
    }
    None
}

impl AgentDef {
    /// Parses an agent definition file; `stem` is the file name without `.md`, used when
    /// the front matter has no `name`.
    pub fn parse(stem: &str, text: &str) -> Result<AgentDef, AgentError> {
        let (front, _body) = split_front_matter(text).ok_or_else(|| AgentError {
            message: "no YAML front matter (the file must start with a --- line and close it with another)".into(),
            line: Some(1),
            column: Some(1),
        })?;
        guard(front, 1)?;
        let mut def: AgentDef = serde_yaml::from_str(front).map_err(|e| yaml_err(e, 1))?;
        if def.max_concurrent.is_some_and(|n| n > MAX_SLOTS) {
            return Err(plain(format!("max_concurrent must be at most {MAX_SLOTS}")));
        }
        if def.name.is_empty() {
            def.name = stem.to_string();
        }
        if let Some(run) = &def.run {
            // Templates and variables are judged now, so a broken `run:` is refused when the
            // definition is read, with the line of the value at fault.
            run.check().map_err(|e| AgentError {
                // front starts on the file's second line; line_of counts from 0.
                line: Some(run::line_of(front, e.snippet.as_deref()) + 2),
                column: None,
                message: format!("run: {}", e.message),
            })?;
        }
        if !valid_agent_name(&def.name) {
            return Err(AgentError {
                message: format!(
                    "agent name {:?} is not valid (A-Z a-z 0-9 . _ -, up to 64)",
                    def.name
                ),
                line: None,
                column: None,
            });
        }
        Ok(def)
    }
}

impl Registration {
    /// Parses a registration file.
    pub fn parse(text: &str) -> Result<Registration, AgentError> {
        if text.trim().is_empty() {
            return Ok(Registration {
                epoch: 1,
                ..Registration::default()
            });
        }
        guard(text, 0)?;
        let reg: Registration = serde_yaml::from_str(text).map_err(|e| yaml_err(e, 0))?;
        reg.check()?;
        Ok(reg)
    }

    /// Range checks on the numbers an agent wrote: pas does arithmetic on each of them.
    fn check(&self) -> Result<(), AgentError> {
        if self.epoch > MAX_EPOCH {
            return Err(plain(format!(
                "epoch must be at most {MAX_EPOCH}, got {}",
                self.epoch
            )));
        }
        if self.max_concurrent.is_some_and(|n| n > MAX_SLOTS) {
            return Err(plain(format!("max_concurrent must be at most {MAX_SLOTS}")));
        }
        if let Some(at) = self.registered_at {
            if !crate::card::sane_date(at) {
                return Err(plain(format!(
                    "registered_at {at} is outside the years 2000 to 9999"
                )));
            }
        }
        Ok(())
    }

    /// The YAML pas writes.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }
}

/// What the board needs to know about one agent: definition, registration and liveness.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Agent {
    pub name: String,
    pub def: Option<AgentDef>,
    pub reg: Option<Registration>,
    pub live: Live,
}

/// Card kind of the governor's save-state cards; they reach an agent over its budget.
pub const SAVE_STATE: &str = "save-state";

impl Agent {
    /// Registered, not paused, not down and within its context budget.
    pub fn available(&self) -> bool {
        self.reg.is_some() && self.unavailable(None).is_none()
    }

    /// Why a registered agent takes no card of kind `kind` now: `paused`, `down`, or
    /// `over its context budget` (save-state cards still reach it then).
    pub fn unavailable(&self, kind: Option<&str>) -> Option<&'static str> {
        if self.reg.as_ref().is_some_and(|r| r.paused) {
            Some("paused")
        } else if self.live.down {
            Some("down")
        } else if self.live.ctx == CtxLevel::Breach && kind != Some(SAVE_STATE) {
            Some("over its context budget")
        } else {
            None
        }
    }

    /// `up`, `down`, `paused` or `unregistered`, as `pas status` and `pas agents` show it.
    pub fn status(&self) -> &'static str {
        match &self.reg {
            None => "unregistered",
            Some(r) if r.paused => "paused",
            Some(_) if self.live.down => "down",
            Some(_) => "up",
        }
    }

    /// Heartbeat interval: registration, else definition, else `default`.
    pub fn interval_s(&self, default: f64) -> f64 {
        self.reg
            .as_ref()
            .and_then(|r| r.heartbeat_interval_s)
            .or_else(|| self.def.as_ref().and_then(|d| d.heartbeat_interval_s))
            .filter(|i| valid_interval(*i))
            .unwrap_or(default)
    }

    /// Token budget: definition, else `default` (from `pas.yaml`).
    pub fn token_budget<'a>(&'a self, default: &'a TokenBudget) -> &'a TokenBudget {
        self.def
            .as_ref()
            .and_then(|d| d.token_budget.as_ref())
            .unwrap_or(default)
    }

    /// `ctx_used / ctx_limit` from the last beat (the limit from the beat, else the
    /// definition).
    pub fn ctx_ratio(&self) -> Option<f64> {
        let limit = self.def.as_ref().and_then(|d| d.ctx_limit);
        self.live.beat.as_ref()?.ctx_ratio(limit)
    }

    /// Sets what is known of liveness from the files: the last beat in the heartbeat file
    /// (ignored if it names an older epoch) and when the registration was made (its
    /// `registered_at`, else `reg_mtime`, else `now`). The agent starts up; the caller
    /// judges its silence.
    pub fn seed_live(
        &mut self,
        last: Option<Beat>,
        reg_mtime: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        default_budget: &TokenBudget,
    ) {
        let Some(reg) = &self.reg else { return };
        let registered = reg.registered_at.or(reg_mtime).unwrap_or(now);
        let last = last.filter(|b| b.epoch.is_none_or(|e| e >= reg.epoch));
        let seen = last
            .as_ref()
            .map_or(registered, |b| b.ts.min(now).max(registered));
        self.live = Live {
            last_seen: Some(seen),
            beat: last,
            down: false,
            ctx: CtxLevel::Ok,
        };
        self.live.ctx = CtxLevel::of(self.ctx_ratio(), self.token_budget(default_budget));
    }

    /// The last sign of life: newest beat, else registration time.
    pub fn baseline(&self) -> Option<DateTime<Utc>> {
        self.live
            .last_seen
            .or_else(|| self.reg.as_ref().and_then(|r| r.registered_at))
    }

    /// Capabilities from the definition and the registration.
    pub fn has_capability(&self, cap: &str) -> bool {
        let in_def = self
            .def
            .as_ref()
            .is_some_and(|d| d.capabilities.iter().any(|c| c == cap));
        in_def
            || self
                .reg
                .as_ref()
                .is_some_and(|r| r.capabilities.iter().any(|c| c == cap))
    }

    /// Slots: registration, else definition, else 1.
    pub fn max_concurrent(&self) -> u32 {
        self.reg
            .as_ref()
            .and_then(|r| r.max_concurrent)
            .or_else(|| self.def.as_ref().and_then(|d| d.max_concurrent))
            .unwrap_or(1)
    }

    /// Parent in the agent tree.
    pub fn parent(&self) -> Option<&str> {
        self.def.as_ref().and_then(|d| d.parent.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_code_subagent_is_accepted_as_is() {
        let text = "---\nname: code-reviewer\ndescription: Reviews code\ntools: Read, Grep, Glob\nmodel: sonnet\ncolor: blue\n---\nYou review code.\n";
        let d = AgentDef::parse("code-reviewer", text).unwrap();
        assert_eq!(d.tools, Some(Tools::Text("Read, Grep, Glob".into())));
        assert!(d.capabilities.is_empty());
    }

    #[test]
    fn pas_definition_fields() {
        let text = "---\nname: director-code\nparent: architect\ncapabilities: [plan, review]\nmax_concurrent: 2\ntoken_budget: {target: 0.5, hard_max: 0.75}\nheartbeat_interval_s: 0.5\n---\nbody\n";
        let d = AgentDef::parse("director-code", text).unwrap();
        assert_eq!(d.parent.as_deref(), Some("architect"));
        assert_eq!(d.max_concurrent, Some(2));
        let a = Agent {
            name: d.name.clone(),
            def: Some(d),
            reg: Some(Registration {
                capabilities: vec!["extra".into()],
                ..Default::default()
            }),
            live: Live::default(),
        };
        assert!(a.has_capability("plan") && a.has_capability("extra"));
        assert!(!a.has_capability("gpu"));
        assert_eq!(a.max_concurrent(), 2);
        assert!(a.available());
    }

    #[test]
    fn missing_front_matter_and_bad_types_are_errors() {
        assert!(AgentDef::parse("x", "just markdown\n").is_err());
        let e = AgentDef::parse("x", "---\nname: x\nmax_concurrent: lots\n---\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e:?}");
    }

    #[test]
    fn name_defaults_to_file_stem() {
        let d = AgentDef::parse("writer", "---\ndescription: w\n---\n").unwrap();
        assert_eq!(d.name, "writer");
    }

    #[test]
    fn registration_round_trip() {
        let r = Registration::parse("epoch: 3\ncapabilities: [gpu]\npaused: true\n").unwrap();
        assert_eq!(r.epoch, 3);
        assert!(r.paused);
        assert_eq!(Registration::parse(&r.to_yaml()).unwrap(), r);
        assert_eq!(Registration::parse("").unwrap().epoch, 1);
        assert!(Registration::parse("epoch: many\n").is_err());
    }
}
