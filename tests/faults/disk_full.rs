//! A full disk: the workspace (cards, `.git`, `.pas/`, the telemetry database) on a small
//! tmpfs filled to the last byte while cards arrive. pas must say the device is full, keep
//! every card in one state folder with nothing lost, and catch up once space is freed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fixture::{holds_for, Workspace, FAST};
use crate::{consistent_at_rest, one_place, serial, stores_intact, unavailable, wait_log};

/// A tmpfs of its own, unmounted (even when the test fails) when dropped.
pub(crate) struct Tmpfs {
    pub(crate) dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `4m`); `None` (after [`unavailable`]) when this
    /// machine does not let us (not root, no mount in a container).
    pub(crate) fn mount(size: &str) -> Option<Tmpfs> {
        let dir = std::env::temp_dir().join(format!(
            "pas-faults-fs-{}-{}",
            std::process::id(),
            ulid::Ulid::new()
        ));
        fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "pas-faults",
            ])
            .arg(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            other => {
                let _ = fs::remove_dir(&dir);
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                unavailable(&format!("mount -t tmpfs failed: {why}"));
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut c = Command::new("umount");
            if lazy {
                c.arg("-l");
            }
            c.arg(&self.dir).status().is_ok_and(|s| s.success())
        };
        if !umount(false) && !umount(true) {
            eprintln!("could not unmount {}", self.dir.display());
            return;
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Writes `path` until the device has no byte left (ENOSPC at a one-byte write); returns
/// the file, kept open, and its size.
pub(crate) fn fill(path: &Path) -> (fs::File, u64) {
    let mut f = fs::File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 1 << 16];
    let (mut size, mut total) = (chunk.len(), 0u64);
    loop {
        match f.write(&chunk[..size]) {
            Ok(n) => total += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                if size == 1 {
                    break;
                }
                size /= 2;
            }
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    (f, total)
}

#[test]
fn a_full_disk_loses_nothing_and_pas_catches_up_when_space_is_freed() {
    let _serial = serial();
    let Some(tmpfs) = Tmpfs::mount("4m") else {
        return;
    };
    let ws = Workspace::with_config_at(&tmpfs.dir.join("ws"), FAST);
    ws.register("a", &[], 50);
    let ids: Vec<String> = (0..6).map(|i| format!("full-{i}")).collect();
    // Written while there is room, outside work/: a rename puts them in the inbox with the
    // disk full (a rename needs no space).
    let early = tmpfs.dir.join("early");
    fs::create_dir_all(&early).unwrap();
    for (i, id) in ids.iter().enumerate() {
        let text = format!("title: arrives on a full disk\nkeep: {i}\n");
        fs::write(early.join(format!("{id}.yaml")), text).unwrap();
    }
    let mut d = ws.serve_ready();

    let ballast = tmpfs.dir.join("ballast");
    let (file, filled) = fill(&ballast);
    let full_since = Instant::now();
    assert!(
        filled > 0,
        "nothing could be written: the tmpfs was full already"
    );
    for id in &ids {
        let name = format!("{id}.yaml");
        fs::rename(early.join(&name), ws.work("inbox").join(&name)).unwrap();
    }

    // pas says what is wrong, naming the card, its path and the device.
    let line = wait_log(
        &d,
        &[
            "cannot ",
            "full-",
            "No space left on device",
            "no space left on the device holding",
        ],
        Duration::from_secs(10),
    );
    assert!(
        line.contains("work/inbox/full-"),
        "the path is named: {line}"
    );
    // While the disk is full: every card stays in exactly one state folder (the inbox),
    // and the daemon keeps running. Long enough for every store to have retried a few
    // times (the telemetry writer once dropped rows after about 6 s of failures).
    holds_for("every card in the inbox", Duration::from_secs(3), || {
        for id in &ids {
            let place = one_place(&ws, id);
            if place != "inbox" {
                return Err(format!("{id} is in {place} on a full disk"));
            }
        }
        Ok(())
    });
    while full_since.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(100));
    }
    d.assert_running();
    wait_log(
        &d,
        &["git commit failed", "no space left"],
        Duration::from_secs(5),
    );

    // Space is freed: pas catches up on its own, with no new event to wake it.
    drop(file);
    fs::remove_file(&ballast).unwrap();
    let recover = Duration::from_secs(30);
    for id in &ids {
        crate::fixture::wait_until(&format!("{id} assigned to a"), recover, || match one_place(
            &ws, id,
        )
        .as_str()
        {
            "assigned/a" => Ok(()),
            other => Err(other.to_string()),
        });
    }
    wait_log(&d, &["card files can be written again"], recover);
    for id in &ids {
        for t in ["new -> inbox", "inbox -> assigned/a"] {
            ws.wait_commit_line(&format!("pas: {id} {t}"));
        }
        assert_eq!(
            crate::fixture::history(&ws.card(id)),
            ["new -> inbox", "inbox -> assigned/a"]
        );
    }
    ws.wait_work_clean("git status -- work clean after the disk had room again");
    crate::rows_match_history(&ws, &ids);
    for id in &ids {
        let sql = format!(
            "SELECT count(*) FROM events WHERE kind = 'job.assigned' AND data LIKE '%\"{id}\"%'"
        );
        ws.wait_db_count(&sql, 1);
    }
    assert!(d.stop().success(), "pas serve exited badly after SIGTERM");
    consistent_at_rest(&ws, &ids);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            ws.card(id)["keep"].as_u64(),
            Some(i as u64),
            "{id} lost its own keys"
        );
    }
    stores_intact(&ws);
    assert_eq!(ws.git_status(&["work"]), Vec::<String>::new());
}
