//! `GET /health` on a full disk (issue 18, part 1): 503 naming the disk while the
//! workspace's device has no room, 200 once space is freed.

use std::time::Duration;

use crate::disk_full::{fill, Tmpfs};
use crate::fixture::{wait_until, Workspace, FAST};
use crate::serial;

fn health(addr: &str) -> (u16, serde_json::Value) {
    let r = crate::http::send("GET", &format!("http://{addr}/health"), &[], None);
    (r.status, r.json())
}

#[test]
fn a_full_disk_is_a_503_naming_the_disk_until_space_is_freed() {
    let _serial = serial();
    let Some(tmpfs) = Tmpfs::mount("4m") else {
        return;
    };
    let ws = Workspace::with_config_at(&tmpfs.dir.join("ws"), FAST);
    let mut d = ws.serve_ready();
    let (dash, gw) = ws.addresses();
    wait_until("/health 200", Duration::from_secs(10), || {
        match health(&dash) {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let ballast = tmpfs.dir.join("ballast");
    let (file, _) = fill(&ballast);
    for addr in [&dash, &gw] {
        let h = wait_until("/health 503", Duration::from_secs(10), || {
            match health(addr) {
                (503, h) => Ok(h),
                other => Err(format!("{other:?}")),
            }
        });
        assert!(
            h["failing"].as_array().unwrap().contains(&"disk".into()),
            "{h}"
        );
        assert!(h["message"].as_str().unwrap().contains("full"), "{h}");
    }
    drop(file);
    std::fs::remove_file(&ballast).unwrap();
    wait_until(
        "/health 200 again",
        Duration::from_secs(10),
        || match health(&dash) {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    d.assert_running();
    d.stop();
}
