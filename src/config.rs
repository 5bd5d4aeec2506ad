//! `pas.yaml`: typed, validated, with defaults.
//!
//! Every key is optional and an unknown key is an error that names it (SPEC section 8), so a
//! typo such as `heartbeat_intervall_s` is caught at start instead of silently ignored.
//! Sections that later subsystems own (`providers`, `budgets`, `routing`) are parsed loosely
//! here and validated by those subsystems and by `contracts/config.schema.json`.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest heartbeat interval pas accepts: a year. Beyond it (or not a positive number)
/// the next one in line (definition, then `pas.yaml`) counts, and `pas validate` says why.
pub const MAX_INTERVAL_S: f64 = 365.0 * 86_400.0;

/// A positive, finite interval of at most [`MAX_INTERVAL_S`].
pub fn valid_interval(i: f64) -> bool {
    i.is_finite() && i > 0.0 && i <= MAX_INTERVAL_S
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Default heartbeat interval for agents that do not set their own.
    pub heartbeat_interval_s: f64,
    /// How long a card may stay in `assigned/` before it is taken back.
    pub default_timeout_s: f64,
    /// Take-backs after which a card goes to `failed/`.
    pub max_attempts: u32,
    /// How long a file written in place must be quiet before it is read (half-written guard).
    pub settle_ms: u64,
    /// fsync every file pas writes before renaming it into place (power-loss safety).
    pub fsync: bool,
    /// Resource capacities of this machine.
    pub capacity: Capacity,
    /// Token governor thresholds used when an agent does not set its own.
    pub token_budget: TokenBudget,
    /// Git audit trail.
    pub git: GitConfig,
    /// When finished cards leave `done/` and `failed/` for `work/archive/`.
    pub archive: ArchiveConfig,
    /// Dashboard listener and its limits.
    pub dashboard: DashboardConfig,
    /// LLM gateway listener and request limits.
    pub gateway: GatewayConfig,
    /// What pas keeps of traces (SPEC section 13).
    pub traces: TracesConfig,
    /// LLM providers (section 7); validated by the router.
    pub providers: Vec<serde_yaml::Value>,
    /// LLM budgets (section 7); validated by the router.
    pub budgets: Option<serde_yaml::Value>,
    /// LLM routing defaults (section 7).
    pub routing: Option<serde_yaml::Value>,
    /// Model names clients send, mapped to a model id or `cap:` route (section 7);
    /// validated against the providers by `llm::aliases`.
    pub model_aliases: Option<serde_yaml::Value>,
    /// What `GET /health` tolerates before it answers 503 (SPEC section 15).
    pub health: HealthConfig,
    /// Webhooks told of alerts and their all-clears (SPEC section 15); validated by
    /// `notify::config`, which names the entry and key that is wrong.
    pub notify: Vec<serde_yaml::Value>,
    /// The git remote several hosts share the board through (SPEC section 14); unset, pas
    /// runs on this machine alone.
    pub remote: Option<RemoteConfig>,
}

/// `remote:` in pas.yaml: the shared remote, and the lease of a claim on it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteConfig {
    /// The git remote's name in each clone (default `origin`).
    pub name: String,
    /// Its URL (`file://`, `ssh://`, `https://`); unset, the clone's own remote of that name.
    pub url: Option<String>,
    /// The branch the board lives on (default `main`).
    pub branch: String,
    /// How long a claim lasts unrenewed; owners renew every third of it.
    pub lease_s: f64,
    /// How often a host fetches, pushes and looks at other hosts' claims.
    pub poll_ms: u64,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            name: "origin".into(),
            url: None,
            branch: "main".into(),
            lease_s: 30.0,
            poll_ms: 500,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat_interval_s: 60.0,
            default_timeout_s: 3600.0,
            max_attempts: 3,
            settle_ms: 250,
            fsync: false,
            capacity: Capacity::default(),
            token_budget: TokenBudget::default(),
            git: GitConfig::default(),
            archive: ArchiveConfig::default(),
            dashboard: DashboardConfig::default(),
            gateway: GatewayConfig::default(),
            traces: TracesConfig::default(),
            providers: Vec::new(),
            budgets: None,
            routing: None,
            model_aliases: None,
            health: HealthConfig::default(),
            notify: Vec::new(),
            remote: None,
        }
    }
}

/// The limits of `GET /health`: past them a part of pas counts as broken, not busy.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// The engine loop turns at least once a second; this long without a turn is a stall.
    pub engine_stall_s: f64,
    /// A git lock (`index.lock`, a ref's lock) another process holds this long stops pas's
    /// commits for good rather than for a moment.
    pub git_lock_s: f64,
    /// How long the probe waits for the database's write lock before calling it locked.
    pub db_wait_ms: u64,
    /// Free space below this on the workspace's device counts as a full disk.
    pub min_free_mb: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            engine_stall_s: 30.0,
            git_lock_s: 30.0,
            db_wait_ms: 2000,
            min_free_mb: 1,
        }
    }
}

/// Resource capacities; `None` means "not managed" (unbounded).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    pub cpu: Option<f64>,
    pub mem_mb: Option<u64>,
    pub gpu: Option<u64>,
    pub gpu_mem_mb: Option<u64>,
}

/// Context-window thresholds as shares of `ctx_limit`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TokenBudget {
    pub target: f64,
    pub hard_max: f64,
}

impl Default for TokenBudget {
    fn default() -> Self {
        TokenBudget {
            target: 0.50,
            hard_max: 0.75,
        }
    }
}

/// Git settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GitConfig {
    /// Commit every transition (default true).
    pub enabled: bool,
    /// Transitions within this window share one commit.
    pub commit_window_ms: u64,
    /// Author and committer name of pas's commits.
    pub author: String,
    /// Commit heartbeat files too (default false: they are git-ignored).
    pub track_heartbeats: bool,
    /// Keeping the repository packed (loose objects and packs bounded).
    pub maintenance: MaintenanceConfig,
}

/// When the daemon repacks the repository (`git repack --geometric=2`, at idle priority):
/// looked at every `check_every_commits` commits (and a minute after the last one), and
/// repacked when loose objects exceed `max_loose_objects`, weigh more than half the packs,
/// or packs exceed `max_packs`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// Repack in the background (default true).
    pub enabled: bool,
    /// Loose objects allowed before a repack.
    pub max_loose_objects: u64,
    /// Packs allowed before everything is packed into one.
    pub max_packs: u32,
    /// Commits between two looks at `.git/objects`.
    pub check_every_commits: u32,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            enabled: true,
            // Some 6 objects per commit: a repack every few hundred commits at most.
            max_loose_objects: 2000,
            max_packs: 32,
            check_every_commits: 50,
        }
    }
}

impl Default for GitConfig {
    fn default() -> Self {
        GitConfig {
            enabled: true,
            commit_window_ms: 100,
            author: "pas".into(),
            track_heartbeats: false,
            maintenance: MaintenanceConfig::default(),
        }
    }
}

/// Archiving of finished cards (SPEC section 2): a card leaves `done/` or `failed/` for
/// `work/archive/YYYY/MM/DD/` once it finished more than `after` ago, or once `keep` cards
/// that finished later stand in its folder. The live folders stay small, so each commit
/// rewrites small trees and every scan of them is cheap.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Off: finished cards stay in `done/` and `failed/` for ever (as before pas archived).
    pub enabled: bool,
    /// How long a finished card stays in its folder: a number and a unit, `90s`, `90m`,
    /// `24h`, `7d`.
    pub after: String,
    /// Most cards `done/` (and, separately, `failed/`) hold; older ones are archived first.
    /// 500 by default, not the SPEC's 1000: each commit into `done/` rewrites the folder's
    /// tree, some 25 bytes a card (25 KB a commit at 1,000 cards, 13 KB at 500), and a
    /// busy day's commits should stay under 16 KiB each.
    pub keep: usize,
    /// Most cards archived in one go; the rest wait for the next round, so a big backlog
    /// (an upgrade from a flat `done/`) never holds up the board.
    pub batch: usize,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            enabled: true,
            after: "24h".into(),
            keep: 500,
            batch: 500,
        }
    }
}

impl ArchiveConfig {
    /// `after` as a duration (checked when the file is loaded; a day if unreadable).
    pub fn after(&self) -> Duration {
        parse_duration(&self.after).unwrap_or(Duration::from_secs(86_400))
    }
}

/// Reads `90s`, `90m`, `24h`, `7d` (a whole number and one unit).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: u64 = s[..s.len() - unit.len_utf8()].trim().parse().ok()?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(secs)?))
}

/// The dashboard's listener and its limits (see [`Limits`] for what they bound).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    pub bind: String,
    pub max_connections: u32,
    pub max_concurrent_requests: u32,
    pub header_timeout_s: f64,
    /// `POST /api/replays` (the dashboard's "edit and replay"); `false` removes the route.
    pub replay: bool,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            bind: "127.0.0.1:6101".into(),
            // A handful of browsers, each with a websocket and a few fetches, and scripts.
            max_connections: 256,
            max_concurrent_requests: 64,
            header_timeout_s: 10.0,
            replay: true,
        }
    }
}

/// The LLM gateway's listener and request limits.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub bind: String,
    /// Largest request body in MiB (long-context and image prompts pass 2 MB easily);
    /// a larger one is answered 413 without reading further.
    pub max_body_mb: u64,
    pub max_connections: u32,
    pub max_concurrent_requests: u32,
    pub header_timeout_s: f64,
}

/// What one listener lets its clients hold, so that no client (a runaway agent, a
/// slowloris, a flood of keep-alive connections) can take all of pas's sockets, memory
/// or tasks:
///
/// - `max_connections`: open connections, websockets included; one past it is closed
///   as soon as it is accepted (the listener keeps accepting, so it never piles up in
///   the kernel's backlog).
/// - `max_concurrent_requests`: requests being answered at once, streams until they end;
///   one past it is answered 503 at once (OpenAI-shaped with `Retry-After` from the
///   gateway) rather than queued.
/// - `header_timeout_s`: how long a client has to send a request's headers whole, timed
///   from when the connection is ready for a request: on a new connection, and on a
///   kept-alive one after its last answer, so it is also the idle keep-alive timeout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_concurrent_requests: usize,
    pub header_timeout: Duration,
}

/// Most `max_connections` and `max_concurrent_requests` may be (a process rarely has
/// more file descriptors than this).
pub const MAX_CONNECTIONS_LIMIT: u32 = 65_536;
/// Most `header_timeout_s` may be.
pub const MAX_HEADER_TIMEOUT_S: f64 = 3600.0;

/// Most `gateway.max_body_mb` may be: a request body is held in memory whole.
pub const MAX_BODY_MB_LIMIT: u64 = 1024;

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            bind: "127.0.0.1:6120".into(),
            max_body_mb: 32,
            // Agents of a big swarm each keep a connection or two to their gateway.
            max_connections: 1024,
            max_concurrent_requests: 256,
            header_timeout_s: 10.0,
        }
    }
}

impl GatewayConfig {
    /// `max_body_mb` in bytes.
    pub fn max_body_bytes(&self) -> usize {
        mib(self.max_body_mb)
    }

    /// The listener's limits.
    pub fn limits(&self) -> Limits {
        limits(
            self.max_connections,
            self.max_concurrent_requests,
            self.header_timeout_s,
        )
    }
}

impl DashboardConfig {
    /// The listener's limits.
    pub fn limits(&self) -> Limits {
        limits(
            self.max_connections,
            self.max_concurrent_requests,
            self.header_timeout_s,
        )
    }
}

fn limits(connections: u32, requests: u32, header_timeout_s: f64) -> Limits {
    Limits {
        max_connections: connections as usize,
        max_concurrent_requests: requests as usize,
        header_timeout: Duration::try_from_secs_f64(header_timeout_s)
            .unwrap_or(Duration::from_secs(10)),
    }
}

/// Whether one listener's limits are in range; else what is wrong, naming the key.
fn check_limits(
    section: &str,
    connections: u32,
    requests: u32,
    header_s: f64,
) -> Result<(), String> {
    for (key, v) in [
        ("max_connections", connections),
        ("max_concurrent_requests", requests),
    ] {
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&v) {
            return Err(format!(
                "{section}.{key} must be between 1 and {MAX_CONNECTIONS_LIMIT}, got {v}"
            ));
        }
    }
    if !(header_s > 0.0 && header_s <= MAX_HEADER_TIMEOUT_S) {
        return Err(format!(
            "{section}.header_timeout_s must be a number of seconds above 0 and at most \
             {MAX_HEADER_TIMEOUT_S}, got {header_s}"
        ));
    }
    Ok(())
}

/// `n` MiB in bytes (saturating).
pub fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

/// Why `pas.yaml` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// Reads `pas.yaml` from `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match crate::intake::read_text_if_present(path, crate::intake::FileKind::Config)
        {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(Config::default()),
            Err(e) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source: std::io::Error::other(e.to_string()),
                })
            }
        };
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses configuration text (an empty or comment-only file is all defaults).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let is_empty = text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        let config: Config = if is_empty {
            Config::default()
        } else {
            crate::intake::yaml_guard(text).map_err(|e| ConfigError::Parse {
                path: "pas.yaml".into(),
                message: match e.line {
                    Some(l) => format!("line {l}: {}", e.message),
                    None => e.message,
                },
            })?;
            serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
                path: "pas.yaml".into(),
                message: e.to_string(),
            })?
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |message: String| {
            Err(ConfigError::Invalid {
                path: "pas.yaml".into(),
                message,
            })
        };
        if !valid_interval(self.heartbeat_interval_s) {
            return bad(format!(
                "heartbeat_interval_s must be a positive number, got {}",
                self.heartbeat_interval_s
            ));
        }
        if !(self.default_timeout_s > 0.0 && self.default_timeout_s.is_finite()) {
            return bad(format!(
                "default_timeout_s must be a positive number, got {}",
                self.default_timeout_s
            ));
        }
        if self.max_attempts == 0 {
            return bad("max_attempts must be at least 1".into());
        }
        if !(1..=MAX_BODY_MB_LIMIT).contains(&self.gateway.max_body_mb) {
            return bad(format!(
                "gateway.max_body_mb must be between 1 and {MAX_BODY_MB_LIMIT}, got {}",
                self.gateway.max_body_mb
            ));
        }
        let (d, g) = (&self.dashboard, &self.gateway);
        check_limits(
            "dashboard",
            d.max_connections,
            d.max_concurrent_requests,
            d.header_timeout_s,
        )
        .or_else(bad)?;
        check_limits(
            "gateway",
            g.max_connections,
            g.max_concurrent_requests,
            g.header_timeout_s,
        )
        .or_else(bad)?;
        if parse_duration(&self.archive.after).is_none() {
            return bad(format!(
                "archive.after {:?} is not a duration: write a whole number and a unit, e.g. 90s, 90m, 24h, 7d",
                self.archive.after
            ));
        }
        if self.archive.batch == 0 {
            return bad("archive.batch must be at least 1".into());
        }
        if let Some(r) = &self.remote {
            if !(r.lease_s >= 0.1 && r.lease_s.is_finite()) {
                return bad(format!(
                    "remote.lease_s must be a number of seconds of at least 0.1, got {}",
                    r.lease_s
                ));
            }
            if r.poll_ms == 0 || r.branch.trim().is_empty() || r.name.trim().is_empty() {
                return bad("remote.poll_ms must be at least 1, and remote.name and remote.branch must not be empty".into());
            }
        }
        let tb = &self.token_budget;
        if !(0.0..=1.0).contains(&tb.target) || !(0.0..=1.0).contains(&tb.hard_max) {
            return bad("token_budget.target and hard_max must be between 0 and 1".into());
        }
        Ok(())
    }

    /// The commit window as a duration.
    pub fn commit_window(&self) -> Duration {
        Duration::from_millis(self.git.commit_window_ms)
    }
}

/// The commented `pas.yaml` that `pas init` writes: every key with its default.
pub const DEFAULT_CONFIG_YAML: &str = r#"# pas.yaml — every key is optional; the values shown are the defaults.
# An unknown key is an error that names it.

# heartbeat_interval_s: 60        # agents that set no interval of their own beat this often
# default_timeout_s: 3600         # longest time a card may stay in assigned/ before it is taken back
# max_attempts: 3                 # take-backs after which a card goes to failed/
# settle_ms: 250                  # a file written in place must be quiet this long before it is read
# fsync: false                    # fsync every file pas writes (power-loss safety; slower)

# capacity:                       # resources of this machine; unset means unmanaged
#   cpu: 8
#   mem_mb: 32768
#   gpu: 1
#   gpu_mem_mb: 24576

# token_budget: {target: 0.50, hard_max: 0.75}   # governor thresholds (share of ctx_limit)

# git:
#   enabled: true                 # commit every transition; `git log` is the audit trail
#   commit_window_ms: 100         # transitions this close share one commit
#   author: pas
#   track_heartbeats: false       # heartbeat files are git-ignored by default
#   maintenance:                  # background `git repack --geometric=2` at idle priority
#     enabled: true
#     max_loose_objects: 2000     # loose objects (or more than half the packs' bytes) before a repack
#     max_packs: 32               # packs before everything is packed into one
#     check_every_commits: 50     # commits between two looks at .git/objects

# archive:                       # finished cards leave done/ and failed/ for work/archive/YYYY/MM/DD/
#   enabled: true                 # false keeps every finished card in done/ and failed/
#   after: 24h                    # archive a card this long after it finished (90s, 90m, 24h, 7d)
#   keep: 500                     # most cards done/ (and failed/) hold; the oldest go first
#   batch: 500                    # most cards archived in one commit; the rest follow in later rounds

# dashboard:
#   bind: "127.0.0.1:6101"
#   max_connections: 256          # open connections (websockets included); more are closed at once
#   max_concurrent_requests: 64   # requests answered at once; more get a 503
#   header_timeout_s: 10          # a request's headers must arrive whole within this (also the idle keep-alive)
#   replay: true                  # POST /api/replays ("edit and replay" writes a replay card); false removes it
# gateway:
#   bind: "127.0.0.1:6120"
#   max_body_mb: 32               # larger request bodies get a 413 (long prompts and images are big)
#   max_connections: 1024         # open connections; more are closed at once
#   max_concurrent_requests: 256  # calls answered at once (streams until they end); more get a 503 with Retry-After
#   header_timeout_s: 10          # a request's headers must arrive whole within this (also the idle keep-alive)

# traces:
#   capture: full                 # full: spans with messages; metadata: no message text; off: no spans

# providers: []                   # LLM providers (see the README)
# budgets: {daily_usd: "20.00", monthly_usd: "300.00", agent_daily_usd: "5.00", alert_at: [0.75, 0.90, 1.00]}
# routing: {policy: local, cooldown_s: 5}   # local | cheapest | fastest | balanced

# health:                        # what GET /health tolerates before it answers 503
#   engine_stall_s: 30            # the engine loop not turning this long is a stall
#   git_lock_s: 30                # a git lock another process holds this long blocks pas's commits
#   db_wait_ms: 2000              # how long the probe waits for the database's write lock
#   min_free_mb: 1                # less free space than this is a full disk

# notify: []                      # webhooks told of alerts and all-clears (see the README), e.g.
#   - {name: chat, url_env: PAS_SLACK_WEBHOOK, format: slack, kinds: [agent.down], severity: warning}
"#;

/// `traces:` in pas.yaml.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TracesConfig {
    /// What pas keeps of each span.
    pub capture: Capture,
}

/// `traces.capture`: `full` keeps messages (requests and answers), `metadata` keeps the
/// spans without any message text, `off` records no spans at all (ids are still handed
/// out, so callers' headers and cards look the same).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Capture {
    #[default]
    Full,
    Metadata,
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_template_parses_to_defaults() {
        assert_eq!(
            Config::parse(DEFAULT_CONFIG_YAML).unwrap(),
            Config::default()
        );
    }

    /// A user who uncomments every line of the template gets a file that starts: the
    /// schema and every parser take it.
    #[test]
    fn the_template_uncommented_is_valid_everywhere() {
        let text: String = DEFAULT_CONFIG_YAML
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if is_key_line(rest) => rest,
                _ => "",
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let c = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(c.heartbeat_interval_s, 60.0);
        assert!(c.budgets.is_some() && c.routing.is_some());
        let found = crate::validate::validate_text(crate::validate::Contract::Config, &text);
        assert_eq!(found, vec![], "{text}");
        crate::llm::config::budgets(c.budgets.as_ref()).unwrap();
        crate::llm::config::routing(c.routing.as_ref()).unwrap();
        crate::llm::config::providers(&c.providers).unwrap();
    }

    /// `key: ...` or `  key: ...`: a commented-out setting, not prose.
    fn is_key_line(line: &str) -> bool {
        line.trim_start().split_once(':').is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("heartbeat_intervall_s: 5\n").unwrap_err();
        assert!(err.to_string().contains("heartbeat_intervall_s"), "{err}");
        let err = Config::parse("git: {enabeld: false}\n").unwrap_err();
        assert!(err.to_string().contains("enabeld"), "{err}");
    }

    #[test]
    fn values_are_read_and_checked() {
        let c =
            Config::parse("max_attempts: 5\ngit: {enabled: false}\nheartbeat_interval_s: 0.2\n")
                .unwrap();
        assert_eq!(c.max_attempts, 5);
        assert!(!c.git.enabled);
        assert_eq!(c.git.commit_window_ms, 100);
        assert!(Config::parse("max_attempts: 0\n").is_err());
        let c = Config::parse("gateway: {max_body_mb: 64}\n").unwrap();
        assert_eq!(c.gateway.bind, "127.0.0.1:6120");
        assert_eq!(c.gateway.max_body_bytes(), 64 << 20);
        let err = Config::parse("gateway: {max_body_mb: 0}\n").unwrap_err();
        assert!(err.to_string().contains("gateway.max_body_mb"), "{err}");
        assert!(Config::parse("default_timeout_s: -1\n").is_err());
    }

    #[test]
    fn listener_limits_are_read_and_checked() {
        let c = Config::parse(
            "gateway: {max_connections: 8, max_concurrent_requests: 2, header_timeout_s: 0.5}\n",
        )
        .unwrap();
        let l = c.gateway.limits();
        assert_eq!((l.max_connections, l.max_concurrent_requests), (8, 2));
        assert_eq!(l.header_timeout, Duration::from_millis(500));
        assert_eq!(c.dashboard.limits().max_connections, 256);
        for (text, key) in [
            ("gateway: {max_connections: 0}\n", "gateway.max_connections"),
            (
                "dashboard: {max_concurrent_requests: 0}\n",
                "dashboard.max_concurrent_requests",
            ),
            (
                "dashboard: {header_timeout_s: 0}\n",
                "dashboard.header_timeout_s",
            ),
            (
                "gateway: {header_timeout_s: .nan}\n",
                "gateway.header_timeout_s",
            ),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
