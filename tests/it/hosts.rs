//! Many hosts, one workspace (SPEC section 14): `pas init --remote`, `pas remote status`,
//! and `pas bench hosts` at a small size, whose verdicts come from the remote's reflogs
//! and history alone.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::workspace::pas_bin;

fn pas(args: &[&str]) -> Output {
    Command::new(pas_bin())
        .args(args)
        .env("PAS_LOG", "error")
        .env_remove("PAS_HOST")
        .output()
        .expect("pas runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "pas failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Two hosts join one remote with `pas init --remote`: the first makes the bare remote and
/// pushes its board, the second clones it; each is its own host; a claim made on one shows
/// in the other's `pas remote status`; a remote moved away is reported, exit status 1.
#[test]
fn two_clones_share_a_remote_and_see_each_others_claims() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("remote.git");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let said = ok(&pas(&["init", path(&a), "--remote", path(&bare)]));
    assert!(said.contains("pushed the board"), "{said}");
    let url = format!("file://{}", bare.display());
    ok(&pas(&["init", path(&b), "--remote", &url]));
    assert!(b.join("pas.yaml").exists() && b.join("work/inbox").is_dir());
    let yaml = std::fs::read_to_string(b.join("pas.yaml")).unwrap();
    assert!(yaml.contains("remote:"), "{yaml}");

    // A claims a card through the protocol; B's status sees A's claim on the remote.
    let host_a = {
        let st: serde_json::Value = serde_json::from_str(&ok(&pas(&[
            "--root",
            path(&a),
            "remote",
            "status",
            "--json",
        ])))
        .unwrap();
        st["host"].as_str().unwrap().to_string()
    };
    let mut r = pas::remote::Replica::open(
        &a,
        "origin",
        "main",
        &host_a,
        std::time::Duration::from_secs(30),
    )
    .unwrap();
    r.fetch(std::time::Instant::now()).unwrap();
    assert_eq!(
        r.claim("J-1", "coder", 1).unwrap(),
        pas::remote::Claimed::Won
    );
    let st: serde_json::Value = serde_json::from_str(&ok(&pas(&[
        "--root",
        path(&b),
        "remote",
        "status",
        "--json",
    ])))
    .unwrap();
    assert_eq!(st["reachable"], true);
    assert_ne!(st["host"], host_a.as_str(), "two clones are two hosts");
    assert_eq!(st["claims_held"], 1);
    let hosts = st["hosts"].as_array().unwrap();
    assert!(
        hosts
            .iter()
            .any(|h| h["host"] == host_a.as_str() && h["claims_held"] == 1),
        "{st}"
    );

    // The remote moved away: said, and the status fails.
    std::fs::rename(&bare, dir.path().join("away.git")).unwrap();
    let out = pas(&["--root", path(&b), "remote", "status"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("UNREACHABLE"), "{text}");
}

/// `pas bench hosts` at a small size: contended claims with no double owner, every card
/// done exactly once by four hosts, a paused owner's finish refused, no claims while the
/// remote is away and everything landing once it is back.
#[test]
fn bench_hosts_small_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let out = pas(&[
        "bench",
        "hosts",
        "--cards",
        "6,24",
        "--agents",
        "4",
        "--json",
        "--dir",
        path(dir.path()),
    ]);
    let text = ok(&out);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for part in ["contention", "throughput", "faults"] {
        assert_eq!(v[part]["ok"], true, "{part}: {}", v[part]);
    }
    assert_eq!(v["contention"]["won"], 6);
    assert_eq!(v["throughput"]["audit"]["done"], 24);
    assert_eq!(v["faults"]["claims_while_away"], 0);
    assert_eq!(v["faults"]["paused_finish_refused"], true);
}

/// A remote in pas.yaml with a bad lease is refused with the key named.
#[test]
fn a_bad_remote_lease_is_named() {
    let dir = tempfile::tempdir().unwrap();
    ok(&pas(&["init", path(dir.path())]));
    std::fs::write(
        dir.path().join("pas.yaml"),
        "remote: {name: origin, branch: main, lease_s: 0}\n",
    )
    .unwrap();
    let out = pas(&["--root", path(dir.path()), "remote", "status"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("remote.lease_s"), "{err}");
}
