//! Processes: spawning an agent in its own process group (never through a shell), ending
//! a whole group (TERM, then KILL after a grace period), and telling from `/proc` whether
//! a recorded process is still the one pas started (pids are reused; start times are not).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `program args` in `cwd` with `env` added to pas's own environment, in a new
/// process group whose id is the child's pid, stdin closed, stdout and stderr piped.
pub fn spawn(
    program: &Path,
    args: &[String],
    cwd: &Path,
    env: &[(String, String)],
) -> std::io::Result<Child> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd.spawn()
}

/// Whether any process of group `pgid` is alive (zombies, already dead, do not count).
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks; a negative pid names the group.
    if unsafe { libc::kill(-pgid, 0) } != 0 {
        return false;
    }
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return true;
    };
    rd.flatten().any(|e| {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            return false;
        };
        stat(pid).is_some_and(|s| s.pgrp == pgid && s.state != 'Z' && s.state != 'X')
    })
}

/// Sends `sig` to every process of group `pgid`.
pub fn signal_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: a plain kill(2) on a group pas started; ESRCH (gone) is fine.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// Ends group `pgid`: TERM, then KILL once `grace` has passed with any member alive.
/// Returns when no member is left (or a second after KILL). Blocking: run it off the
/// supervisor's loop.
pub fn end_group(pgid: i32, grace: Duration) {
    if !group_alive(pgid) {
        return;
    }
    signal_group(pgid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !group_alive(pgid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::warn!(
        pgid,
        grace_s = grace.as_secs_f64(),
        "run did not end on TERM: killing its group"
    );
    signal_group(pgid, libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(1);
    while group_alive(pgid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What `/proc/<pid>/stat` says that pas needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub pgrp: i32,
    /// Clock ticks after boot when the process started: with the pid, its identity.
    pub start: u64,
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); pgrp is field 5, starttime field 22.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Resident memory of `pid` in KiB (from `/proc/<pid>/status`), if it lives.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_ended_whole() {
        let child = spawn(
            Path::new("/bin/sh"),
            &["-c".into(), "sleep 30 & sleep 30; wait".into()],
            Path::new("/"),
            &[],
        )
        .unwrap();
        let pgid = child.id() as i32;
        let mine = stat(pgid).unwrap();
        assert_eq!(mine.pgrp, pgid);
        // Reap the leader in the background, as the supervisor does.
        std::thread::spawn(move || {
            let mut c = child;
            let _ = c.wait();
        });
        assert!(group_alive(pgid));
        end_group(pgid, Duration::from_secs(5));
        assert!(!group_alive(pgid));
    }
}
