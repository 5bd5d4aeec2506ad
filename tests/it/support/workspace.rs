//! The workspace fixture: a temporary `pas` workspace driven through the real binary, the
//! real file system, real git and the real telemetry database.
//!
//! Every test gets its own workspace (tests run in parallel). The daemon is a child
//! process whose log goes to a file beside the workspace; when a test fails, the
//! workspace prints every daemon log and the tree of `work/`, so the failure explains
//! itself (set `PAS_TEST_KEEP=1` to keep the temporary folder, too). Waiting is always
//! a poll with a deadline that says what it waited for and what it saw last.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_yaml::Value;

pub use super::daemon::Daemon;

/// The settings every test workspace starts with: quick settling and commits.
pub const FAST: &str = "settle_ms: 100\ngit: {commit_window_ms: 20}\n";

/// How long a test waits for something the daemon should do.
pub const WAIT: Duration = Duration::from_secs(10);

/// The `pas` binary under test.
pub fn pas_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pas")
}

/// Polls `probe` every 10 ms until it returns `Ok`, or fails the test after `timeout`
/// with a message saying what was awaited and the last thing `probe` saw.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(v) => return v,
            Err(seen) if start.elapsed() >= timeout => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Checks `probe` for the whole of `window` (a negative: something must *not* happen).
pub fn holds_for(what: &str, window: Duration, mut probe: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    while start.elapsed() < window {
        if let Err(seen) = probe() {
            panic!("{what} stopped holding after {:?}: {seen}", start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary pas workspace.
pub struct Workspace {
    tmp: tempfile::TempDir,
    /// The workspace root (canonical).
    pub root: PathBuf,
    logs: PathBuf,
    daemons: AtomicUsize,
}

impl Workspace {
    /// `pas init`, then [`FAST`] settings, committed so `git status` starts clean.
    pub fn new() -> Workspace {
        Workspace::with_config(FAST)
    }

    /// `pas init`, then `pas.yaml` replaced by `config` (committed).
    pub fn with_config(config: &str) -> Workspace {
        let ws = Workspace::bare();
        fs::write(ws.root.join("pas.yaml"), config).unwrap();
        ws.git(&["add", "pas.yaml"]);
        ws.git(&["commit", "-q", "-m", "test settings", "--", "pas.yaml"]);
        ws
    }

    /// [`with_config`](Self::with_config) with the workspace at `root` (which must not
    /// exist yet), e.g. on a small file system of its own. The daemon logs stay in a
    /// temporary folder elsewhere, so they are written whatever happens at `root`.
    #[allow(dead_code)] // used by tests/faults (the disk-full test), which shares this file
    pub fn with_config_at(root: &Path, config: &str) -> Workspace {
        let ws = Workspace::bare_at(Some(root));
        fs::write(ws.root.join("pas.yaml"), config).unwrap();
        ws.git(&["add", "pas.yaml"]);
        ws.git(&["commit", "-q", "-m", "test settings", "--", "pas.yaml"]);
        ws
    }

    /// Exactly what `pas init` makes, untouched.
    pub fn bare() -> Workspace {
        Workspace::bare_at(None)
    }

    /// [`bare`](Self::bare) at `root`, or in the temporary folder.
    fn bare_at(root: Option<&Path>) -> Workspace {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let root = match root {
            Some(r) => {
                fs::create_dir_all(r).unwrap();
                r.canonicalize().unwrap()
            }
            None => base.join("ws"),
        };
        let logs = base.join("logs");
        fs::create_dir_all(&logs).unwrap();
        let out = Command::new(pas_bin())
            .arg("init")
            .arg(&root)
            .env_remove("PAS_ROOT")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pas init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Workspace {
            tmp,
            root,
            logs,
            daemons: AtomicUsize::new(0),
        }
    }

    /// A scratch folder outside the workspace (for symlink targets and the like).
    pub fn outside(&self) -> PathBuf {
        let p = self.tmp.path().join("outside");
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// `root/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `root/work/rel`.
    pub fn work(&self, rel: &str) -> PathBuf {
        self.root.join("work").join(rel)
    }

    /// A `pas` command aimed at this workspace.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(pas_bin());
        c.arg("--root").arg(&self.root).args(args);
        c.current_dir(&self.root)
            .env_remove("PAS_ROOT")
            .env_remove("PAS_LOG")
            .env_remove("PAS_TOKEN")
            // Tests run side by side: every daemon takes free ports (see `addresses`).
            .env("PAS_DASHBOARD_BIND", "127.0.0.1:0")
            .env("PAS_GATEWAY_BIND", "127.0.0.1:0");
        c
    }

    /// The dashboard and gateway addresses of the running daemon (`.pas/serve.json`),
    /// waiting for them to be written.
    pub fn addresses(&self) -> (String, String) {
        let path = self.root.join(".pas").join("serve.json");
        wait_until(
            "the daemon's listening addresses",
            Duration::from_secs(20),
            || {
                let text = fs::read_to_string(&path).map_err(|e| e.to_string())?;
                let v: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| e.to_string())?;
                match (v["dashboard"].as_str(), v["gateway"].as_str()) {
                    (Some(d), Some(g)) => Ok((d.to_string(), g.to_string())),
                    _ => Err(text),
                }
            },
        )
    }

    /// Runs `pas args` and returns its output, whatever the exit status.
    pub fn pas(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs `pas args`, asserts exit 0, returns stdout.
    pub fn pas_ok(&self, args: &[&str]) -> String {
        let out = self.pas(args);
        assert!(
            out.status.success(),
            "pas {args:?} exited {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `pas args` (which should include `--json`) and parses stdout.
    pub fn pas_json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.pas_ok(args);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("pas {args:?}: not JSON ({e}): {text}"))
    }

    /// `pas register name --capabilities caps --max-concurrent max`.
    pub fn register(&self, name: &str, caps: &[&str], max_concurrent: u32) {
        let max = max_concurrent.to_string();
        let mut args = vec!["register", name, "--max-concurrent", &max];
        let caps = caps.join(",");
        if !caps.is_empty() {
            args.extend(["--capabilities", &caps]);
        }
        self.pas_ok(&args);
    }

    /// Writes `bytes` to `work/rel` the way the SPEC asks writers to: a `.tmp` name in the
    /// same folder, then a rename into place.
    pub fn drop_file(&self, rel: &str, bytes: &[u8]) {
        let target = self.work(rel);
        let dir = target.parent().unwrap();
        fs::create_dir_all(dir).unwrap();
        let name = target.file_name().unwrap().to_string_lossy();
        let tmp = dir.join(format!(".{name}.drop.tmp"));
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, &target).unwrap();
    }

    /// Drops a card into `work/inbox/<id>.yaml` (write `.tmp`, then rename).
    pub fn drop_card(&self, id: &str, yaml: &str) {
        self.drop_file(&format!("inbox/{id}.yaml"), yaml.as_bytes());
    }

    /// Starts `pas serve` with `PAS_LOG=debug`, its log in a file beside the workspace.
    pub fn serve(&self) -> Daemon {
        self.serve_with(&[])
    }

    /// [`serve`](Self::serve) with more environment variables.
    pub fn serve_with(&self, env: &[(&str, &str)]) -> Daemon {
        self.spawn_logged(&["serve"], env)
    }

    /// `pas args` as a long-running child (`serve`, `run`), with `PAS_LOG=debug` and its
    /// log in a file beside the workspace (printed when a test fails).
    pub fn spawn_logged(&self, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let n = self.daemons.fetch_add(1, Ordering::SeqCst);
        let log = self.logs.join(format!("daemon-{n}.log"));
        let file = fs::File::create(&log).unwrap();
        let mut cmd = self.cmd(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .env("PAS_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    /// [`serve`](Self::serve), then [`wait_main_loop`](Self::wait_main_loop): for tests
    /// whose agents act on cards and check the commits of what they did.
    pub fn serve_ready(&self) -> Daemon {
        let d = self.serve();
        self.wait_main_loop();
        d
    }

    /// Where card `id` is: `inbox`, `assigned/<agent>`, `done`, `failed`,
    /// `archive/YYYY/MM/DD`; `None` when it is
    /// in no state folder (e.g. between two folders in staging). A card seen in two places
    /// fails the test, unless a second look shows one: the folders are not read at one
    /// instant, so a card moving from one to the next can be seen in both.
    pub fn state_of(&self, id: &str) -> Option<String> {
        let mut places = self.places_of(id);
        for _ in 0..20 {
            if places.len() <= 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            places = self.places_of(id);
        }
        assert!(
            places.len() <= 1,
            "card {id} is in several state folders: {places:?}"
        );
        places.into_iter().next()
    }

    /// Every state folder that holds `<id>.yaml`, read one folder after the other (exact
    /// only while nothing moves, e.g. with no daemon running).
    pub fn places_of(&self, id: &str) -> Vec<String> {
        let file = format!("{id}.yaml");
        let mut out = Vec::new();
        for s in ["inbox", "review", "done", "failed"] {
            if fs::symlink_metadata(self.work(s).join(&file)).is_ok() {
                out.push(s.to_string());
            }
        }
        if let Ok(rd) = fs::read_dir(self.work("assigned")) {
            for e in rd.flatten() {
                if e.path().is_dir() && fs::symlink_metadata(e.path().join(&file)).is_ok() {
                    out.push(format!("assigned/{}", e.file_name().to_string_lossy()));
                }
            }
        }
        // The archive: work/archive/YYYY/MM/DD/<id>.yaml.
        let subdirs = |d: &Path| -> Vec<PathBuf> {
            fs::read_dir(d)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.is_dir())
                        .collect()
                })
                .unwrap_or_default()
        };
        for y in subdirs(&self.work("archive")) {
            for m in subdirs(&y) {
                for d in subdirs(&m) {
                    if fs::symlink_metadata(d.join(&file)).is_ok() {
                        let rel = d.strip_prefix(self.work("")).unwrap();
                        out.push(rel.display().to_string());
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// The card `id` as YAML, wherever it is, or `None` (retries across a move).
    pub fn try_card(&self, id: &str) -> Option<Value> {
        for _ in 0..5 {
            if let Some(place) = self.state_of(id) {
                let path = self.work(&format!("{place}/{id}.yaml"));
                if let Ok(text) = fs::read_to_string(&path) {
                    return Some(serde_yaml::from_str(&text).unwrap_or_else(|e| {
                        panic!("{} is not YAML ({e}):\n{text}", path.display())
                    }));
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// The card `id` as YAML; fails the test when it is nowhere.
    pub fn card(&self, id: &str) -> Value {
        self.try_card(id)
            .unwrap_or_else(|| panic!("card {id} is in no state folder"))
    }

    /// Waits until card `id` is in `place` (e.g. `assigned/a`) and returns it.
    pub fn wait_state(&self, id: &str, place: &str) -> Value {
        wait_until(&format!("card {id} in {place}"), WAIT, || {
            match self.state_of(id) {
                Some(p) if p == place => self
                    .try_card(id)
                    .ok_or_else(|| "moved while read".to_string()),
                other => Err(format!("{other:?}")),
            }
        })
    }

    /// Waits until card `id` is in `assigned/<agent>` and that assignment is committed, so
    /// what the agent does next does not overlap it (audit::commit_trees_match_their_messages
    /// is the test of that overlap).
    pub fn wait_assigned(&self, id: &str, agent: &str) -> Value {
        self.wait_state(id, &format!("assigned/{agent}"));
        self.wait_commit_line(&format!("pas: {id} inbox -> assigned/{agent}"));
        self.card(id)
    }

    /// Waits until card `id` satisfies `pred` and returns it.
    pub fn wait_card(&self, what: &str, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_until(&format!("card {id}: {what}"), WAIT, || {
            match self.try_card(id) {
                Some(c) if pred(&c) => Ok(c),
                Some(c) => Err(format!(
                    "in {:?}: {}",
                    self.state_of(id),
                    serde_yaml::to_string(&c).unwrap()
                )),
                None => Err("no such card".into()),
            }
        })
    }

    /// Makes sure the daemon is past its start-up and in its main loop, leaving the board
    /// as it was. Two probe agents (with no slots) register one after the other: the
    /// second registers after the first was seen, so after the start-up scan, and only
    /// the main loop can take it in. Then both deregister. Events are the witness: they
    /// are written the same whether a change meets the start-up or the main loop.
    pub fn wait_main_loop(&self) {
        // A daemon started before left its own probe events: wait for one more.
        let count = |kind: &str, name: &str| {
            let sql = format!(
                "SELECT count(*) FROM events WHERE kind = '{kind}' AND data LIKE '%\"{name}\"%'"
            );
            move |ws: &Workspace| ws.try_db_count(&sql).unwrap_or(0)
        };
        let step = |kind: &str, name: &str, act: &dyn Fn()| {
            let n = count(kind, name);
            let before = n(self);
            act();
            wait_until(&format!("{kind} of {name}"), WAIT, || match n(self) {
                c if c > before => Ok(()),
                c => Err(c.to_string()),
            });
        };
        for p in ["probe-1", "probe-2"] {
            step("agent.registered", p, &|| self.register(p, &[], 0));
        }
        for p in ["probe-1", "probe-2"] {
            step("agent.deregistered", p, &|| {
                self.pas_ok(&["deregister", p]);
            });
        }
    }

    /// Waits until the daemon has taken in card `id` in the inbox (its history begins).
    pub fn wait_recorded(&self, id: &str) -> Value {
        self.wait_card("recorded in the inbox", id, |c| {
            c["pas"]["state"].as_str() == Some("inbox") && !history(c).is_empty()
        })
    }

    /// Files under `work/` (symbolic links included, folders not), leaving out rejection
    /// reasons and the names every reader ignores (dot-files, `*.tmp`: pas's lock, spares
    /// and writes in flight): what "nothing is deleted" counts.
    pub fn count_files(&self) -> usize {
        fn walk(dir: &Path, n: &mut usize) {
            for e in fs::read_dir(dir).unwrap().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let ft = e.file_type().unwrap();
                if ft.is_dir() {
                    walk(&e.path(), n);
                } else if !name.ends_with(".reason.txt")
                    && !name.ends_with(".tmp")
                    && !name.starts_with('.')
                {
                    *n += 1;
                }
            }
        }
        let mut n = 0;
        walk(&self.work(""), &mut n);
        n
    }

    /// Waits until [`count_files`](Self::count_files) is `want` (a walk of the tree is not
    /// one instant, so a file moving while counted can be missed or seen twice).
    pub fn wait_file_count(&self, want: usize, what: &str) {
        wait_until(
            &format!("{want} files under work/ ({what})"),
            WAIT,
            || match self.count_files() {
                n if n == want => Ok(()),
                n => Err(format!("{n} files")),
            },
        )
    }

    fn dump(&self) {
        eprintln!("==== workspace {}", self.root.display());
        let mut files = Vec::new();
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            let Ok(rd) = fs::read_dir(dir) else { return };
            for e in rd.flatten() {
                let p = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&p, root, out);
                } else {
                    out.push(p.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        walk(&self.work(""), &self.root, &mut files);
        files.sort();
        eprintln!("{}", files.join("\n"));
        let mut logs: Vec<PathBuf> = fs::read_dir(&self.logs)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        logs.sort();
        for log in logs {
            let text = fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(400);
            eprintln!("==== {} (last {} lines)", log.display(), lines.len() - from);
            eprintln!("{}", lines[from..].join("\n"));
        }
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
            if std::env::var_os("PAS_TEST_KEEP").is_some() {
                self.tmp.disable_cleanup(true);
                eprintln!("==== kept {} (PAS_TEST_KEEP)", self.tmp.path().display());
            }
        }
    }
}

/// The names in `dir` that are not dot-files (temp files and pas's own scratch), sorted;
/// none when `dir` does not exist.
pub fn visible_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A card's history as `from -> to` strings.
pub fn history(card: &Value) -> Vec<String> {
    card["pas"]["history"]
        .as_sequence()
        .map(|h| {
            h.iter()
                .map(|e| {
                    format!(
                        "{} -> {}",
                        e["from"].as_str().unwrap_or("?"),
                        e["to"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `at` of history entry `i`, in milliseconds since the epoch.
pub fn history_at_ms(card: &Value, i: usize) -> i64 {
    let at = card["pas"]["history"][i]["at"]
        .as_str()
        .unwrap_or_else(|| panic!("no history entry {i}"));
    chrono::DateTime::parse_from_rfc3339(at)
        .unwrap()
        .timestamp_millis()
}

/// `pas demo` in a folder of its own, stopped (Ctrl-C, so it stops its daemon) when dropped.
pub struct Demo {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Demo {
    pub fn start() -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new(pas_bin())
            .args(["demo", "--seconds", "90", "--dir"])
            .arg(dir.path().join("ws"))
            .env("PAS_DASHBOARD_BIND", "127.0.0.1:0")
            .env("PAS_GATEWAY_BIND", "127.0.0.1:0")
            .env_remove("PAS_ROOT")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Demo { child, dir }
    }
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("ws")
    }
    pub fn pas(&self, args: &[&str]) {
        let out = std::process::Command::new(pas_bin())
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env_remove("PAS_ROOT")
            .output()
            .unwrap();
        assert!(out.status.success(), "pas {args:?}: {out:?}");
    }
    pub fn dashboard(&self) -> String {
        let path = self.root().join(".pas").join("serve.json");
        wait_until("the demo's dashboard", Duration::from_secs(30), || {
            std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["dashboard"].as_str().map(str::to_string))
                .ok_or_else(|| "not yet".to_string())
        })
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
