//! The `run:` section of an agent definition (SPEC section 16): its shape, the checks made
//! when the definition is read (templates, variables, the program), and rendering for one
//! card.
//!
//! Templates are minijinja with strict undefined, so a misspelt key fails loudly instead
//! of rendering as an empty string into an agent's prompt. The argv list never passes
//! through a shell: a card title full of `;`, `$(...)` or quotes is one argument.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

/// The variables a template may use.
pub const VARIABLES: &[&str] = &["card", "parent", "agent", "gateway", "workdir"];

/// minijinja's own globals a template may call.
const BUILTINS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "lipsum",
    "cycler",
    "joiner",
];

/// How a run's output is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transcript {
    /// Plain lines: one span for the run with the output's tail.
    #[default]
    Lines,
    /// Claude Code's `--output-format stream-json --verbose`.
    ClaudeStreamJson,
}

/// `run:` of an agent definition.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunDef {
    /// argv, each element a template; the first is the program.
    pub command: Vec<String>,
    /// `worktree` (a git worktree per card on branch `pas/<id>`), `workspace` (the
    /// default), or a path (relative to the workspace).
    #[serde(default)]
    pub workdir: Option<String>,
    /// Extra environment, each value a template.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Processes at once (the agent's slots); default `max_concurrent`, else 1.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Longest a process may run; then it is ended and the card taken back.
    #[serde(default)]
    pub timeout_s: Option<f64>,
    #[serde(default)]
    pub transcript: Transcript,
    /// Finished cards go to `work/review/` instead of `done/`.
    #[serde(default)]
    pub review: bool,
    /// Seconds between TERM and KILL when a run is ended (default 10).
    #[serde(default)]
    pub grace_s: Option<f64>,
    /// Bytes of output kept per run: the first half and the last half (default 1 MiB).
    #[serde(default)]
    pub max_log_bytes: Option<u64>,
}

/// Where a run works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workdir {
    Worktree,
    Workspace,
    Path(PathBuf),
}

/// What is wrong with a `run:`, and the text it is about (to find its line).
#[derive(Debug, Clone, PartialEq)]
pub struct RunError {
    pub message: String,
    /// A piece of the offending value as written, to find its line in the file.
    pub snippet: Option<String>,
}

fn err(message: String, snippet: Option<&str>) -> RunError {
    RunError {
        message,
        snippet: snippet.map(str::to_string),
    }
}

/// Default grace between TERM and KILL.
pub const DEFAULT_GRACE_S: f64 = 10.0;
/// Default bytes of output kept per run.
pub const DEFAULT_MAX_LOG: u64 = 1 << 20;

/// A template environment as every render uses it: strict about undefined values.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

impl RunDef {
    /// Checks what can be checked without the machine: a command, templates that parse,
    /// only known variables, sane numbers. The program is checked by [`RunDef::program`].
    pub fn check(&self) -> Result<(), RunError> {
        let Some(first) = self.command.first() else {
            return Err(err(
                "command is empty: it needs at least the program".into(),
                None,
            ));
        };
        if first.trim().is_empty() {
            return Err(err(
                "command's program (its first element) is empty".into(),
                None,
            ));
        }
        let env = environment();
        let values = self
            .command
            .iter()
            .map(|c| ("command", c))
            .chain(self.env.values().map(|v| ("env", v)));
        for (what, text) in values {
            let t = env.template_from_str(text).map_err(|e| {
                err(
                    format!(
                        "{what} template {text:?}: {}",
                        e.detail().unwrap_or("syntax error")
                    ),
                    Some(text),
                )
            })?;
            let mut unknown: Vec<String> = t
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !VARIABLES.contains(&v.as_str()) && !BUILTINS.contains(&v.as_str()))
                .collect();
            unknown.sort();
            if !unknown.is_empty() {
                return Err(err(
                    format!(
                        "{what} template {text:?} uses unknown variable{} {} (known: {})",
                        if unknown.len() > 1 { "s" } else { "" },
                        unknown.join(", "),
                        VARIABLES.join(", ")
                    ),
                    Some(text),
                ));
            }
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(err(format!("env name {key:?} is not valid"), Some(key)));
            }
        }
        if self
            .concurrency
            .is_some_and(|c| c == 0 || c > super::MAX_SLOTS)
        {
            return Err(err(
                format!("concurrency must be 1 to {}", super::MAX_SLOTS),
                Some("concurrency"),
            ));
        }
        for (name, v) in [("timeout_s", self.timeout_s), ("grace_s", self.grace_s)] {
            if v.is_some_and(|v| !(0.0..=crate::config::MAX_INTERVAL_S).contains(&v)) {
                return Err(err(
                    format!("{name} must be a number of seconds up to a year"),
                    Some(name),
                ));
            }
        }
        if let Some(w) = &self.workdir {
            if w.trim().is_empty() {
                return Err(err("workdir is empty".into(), Some("workdir")));
            }
        }
        Ok(())
    }

    /// The program, resolved now: a path (relative to the workspace `root`) or a name on
    /// `PATH`. A template as program is resolved when rendered.
    pub fn program(&self, root: &Path) -> Result<Option<PathBuf>, RunError> {
        let first = self.command.first().map(String::as_str).unwrap_or("");
        if first.contains("{{") || first.contains("{%") {
            return Ok(None);
        }
        resolve_program(first, root)
            .map(Some)
            .map_err(|m| err(m, Some(first)))
    }

    /// Where runs of this agent work.
    pub fn workdir(&self) -> Workdir {
        match self.workdir.as_deref() {
            None | Some("workspace") => Workdir::Workspace,
            Some("worktree") => Workdir::Worktree,
            Some(p) => Workdir::Path(PathBuf::from(p)),
        }
    }

    /// Grace between TERM and KILL.
    pub fn grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.grace_s.unwrap_or(DEFAULT_GRACE_S))
    }
}

/// Finds `program`: with a `/` a path (relative to `root`), else the first executable of
/// that name on `PATH`.
pub fn resolve_program(program: &str, root: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = root.join(program);
        if executable(&p) {
            return Ok(p);
        }
        return Err(format!(
            "program {program:?} is not an executable file ({} does not exist or cannot be run)",
            p.display()
        ));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| executable(p))
        .ok_or_else(|| format!("program {program:?} is not on PATH"))
}

/// The 0-based line of `front` (front matter) where `snippet` first appears after the
/// `run:` key, else the `run:` key's line, else 0. Only its first plain characters are
/// looked for: YAML may have written the rest with escapes.
pub fn line_of(front: &str, snippet: Option<&str>) -> usize {
    let run_line = front
        .lines()
        .position(|l| l.trim_start().starts_with("run:"))
        .unwrap_or(0);
    let Some(s) = snippet else { return run_line };
    let plain: String = s
        .chars()
        .take_while(|c| !matches!(c, '\\' | '"' | '\'' | '\n'))
        .take(24)
        .collect();
    if plain.trim().is_empty() {
        return run_line;
    }
    front
        .lines()
        .enumerate()
        .skip(run_line)
        .find(|(_, l)| l.contains(plain.as_str()))
        .map_or(run_line, |(i, _)| i)
}

/// Renders one template against `ctx`; the error says which variable or what syntax.
pub fn render(env: &Environment<'_>, text: &str, ctx: &minijinja::Value) -> Result<String, String> {
    env.render_str(text, ctx).map_err(|e| {
        let mut s = format!("template {text:?}: {}", e.kind());
        if let Some(d) = e.detail() {
            s.push_str(": ");
            s.push_str(d);
        }
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(command: &[&str]) -> RunDef {
        RunDef {
            command: command.iter().map(|s| s.to_string()).collect(),
            workdir: None,
            env: BTreeMap::new(),
            concurrency: None,
            timeout_s: None,
            transcript: Transcript::Lines,
            review: false,
            grace_s: None,
            max_log_bytes: None,
        }
    }

    #[test]
    fn known_variables_pass_and_unknown_ones_are_named() {
        assert!(
            def(&["sh", "{{ card.title }} {{ parent.result }} {{ workdir }}"])
                .check()
                .is_ok()
        );
        let e = def(&["sh", "{{ cards.title }}"]).check().unwrap_err();
        assert!(
            e.message.contains("unknown variable cards"),
            "{}",
            e.message
        );
        let e = def(&["sh", "{{ card.title "]).check().unwrap_err();
        assert!(e.message.contains("command template"), "{}", e.message);
        assert!(def(&[]).check().is_err());
    }

    #[test]
    fn strict_rendering_refuses_missing_keys() {
        let env = environment();
        let ctx = minijinja::context! { card => minijinja::context! { title => "a; rm -rf /" } };
        assert_eq!(
            render(&env, "{{ card.title }}", &ctx).unwrap(),
            "a; rm -rf /"
        );
        assert!(render(&env, "{{ card.nope }}", &ctx).is_err());
    }

    #[test]
    fn line_of_finds_the_value() {
        let front = "name: x\nrun:\n  command: [sh, \"{{ nope }}\"]\n";
        assert_eq!(line_of(front, Some("{{ nope }}")), 2);
        assert_eq!(line_of(front, None), 1);
    }
}
