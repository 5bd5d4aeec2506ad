//! A generated corpus of over a thousand hostile files against one running daemon: every
//! one is rejected with a reason, the daemon keeps serving, heartbeat garbage is logged
//! and skipped, and nothing outside the workspace is touched.

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use crate::support::workspace::{wait_until, Workspace};

/// Deterministic noise (xorshift), so a failing corpus can be regenerated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// (path under work/, bytes) of every hostile card file, each name unique.
fn corpus(rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |rel: String, bytes: Vec<u8>| out.push((rel, bytes));
    for i in 0..120 {
        // Truncated: cut inside a quoted scalar, so no prefix is a valid card.
        let full = format!("title: \"a card that never ends {i}\"\nrequires: [code]\n");
        let cut = 8 + (rng.next() as usize % 20);
        add(
            format!("inbox/T-trunc-{i}.yaml"),
            full.as_bytes()[..cut].to_vec(),
        );
    }
    for i in 0..120 {
        let mut b = rng.bytes(64 + i);
        b[3] = 0; // a NUL: binary, whatever else it holds
        add(format!("inbox/T-bin-{i}.yaml"), b);
    }
    for i in 0..4 {
        let mut big = b"title: huge\ndescription: \"".to_vec();
        big.extend(std::iter::repeat_n(b'x', (1 << 20) + 10));
        big.extend_from_slice(b"\"\n");
        add(format!("inbox/T-huge-{i}.yaml"), big);
    }
    for i in 0..60 {
        let depth = 200 + i * 50;
        let nested = format!(
            "title: deep\nextra: {}1{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        add(format!("inbox/T-deep-{i}.yaml"), nested.into_bytes());
    }
    for i in 0..60 {
        let mut bomb = pas::fuzzing::alias_bomb();
        bomb.push_str(&format!("title: bomb {i}\n"));
        add(format!("inbox/T-bomb-{i}.yaml"), bomb.into_bytes());
    }
    let wrong = [
        "title: [1, 2]\n",
        "title: ok\npriority: 7\n",
        "title: ok\nrequires: just-a-string\n",
        "title: ok\ntimeout_s: soon\n",
        "title: ok\nmax_attempts: -1\n",
        "title: ok\ndepends_on: {a: b}\n",
        "title: ok\nresources: {cpu: lots}\n",
        "title: ok\nbudget_usd: 1.2.3\n",
        "title: ok\npas: {state: flying}\n",
        "requires: [no-title]\n",
        "- a list, not a mapping\n",
        "just a string\n",
    ];
    for i in 0..240 {
        add(
            format!("inbox/T-type-{i}.yaml"),
            wrong[i % wrong.len()].as_bytes().to_vec(),
        );
    }
    for i in 0..100 {
        // Control characters are not allowed in YAML text.
        let c = [0x01u8, 0x07, 0x1b, 0x7f, 0x08][i % 5];
        let mut b = b"title: bell ".to_vec();
        b.push(c);
        b.extend_from_slice(b" here\n");
        add(format!("inbox/T-ctl-{i}.yaml"), b);
    }
    for i in 0..100 {
        // Ids pas does not accept: unicode, controls, spaces, too long.
        let id = match i % 5 {
            0 => format!("J\u{202e}{i}"),
            1 => format!("J\u{1}{i}"),
            2 => format!("é-{i}"),
            3 => format!("J {i}"),
            _ => format!("J{}{i}", "x".repeat(130)),
        };
        add(format!("inbox/{id}.yaml"), b"title: fine\n".to_vec());
    }
    for i in 0..100 {
        // Cards in the wrong places.
        let rel = match i % 4 {
            0 => format!("T-top-{i}.yaml"),
            1 => format!("done/sub/T-nested-{i}.yaml"),
            2 => format!("assigned/T-flat-{i}.yaml"),
            _ => format!("inbox/T-notes-{i}.txt"),
        };
        add(rel, b"title: misplaced\n".to_vec());
    }
    out
}

fn listing(dir: &std::path::Path) -> BTreeMap<String, (Vec<u8>, Option<std::time::SystemTime>)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let meta = e.metadata().ok();
            (
                e.path().display().to_string(),
                (
                    fs::read(e.path()).unwrap_or_default(),
                    meta.and_then(|m| m.modified().ok()),
                ),
            )
        })
        .collect()
}

#[test]
fn a_thousand_hostile_files_are_all_rejected_and_the_daemon_goes_on() {
    let ws = Workspace::new();
    ws.register("w", &[], 100);
    // Something outside the workspace that symbolic links point at.
    let outside = ws.outside();
    fs::create_dir_all(&outside).unwrap();
    fs::write(
        outside.join("secret.yaml"),
        "title: outside, do not touch\n",
    )
    .unwrap();
    let before = listing(&outside);
    let mut d = ws.serve_ready();

    // Duplicate ids: cards already done, then the same ids dropped into the inbox.
    for i in 0..40 {
        ws.drop_file(&format!("done/T-dup-{i}.yaml"), b"title: the original\n");
    }
    ws.wait_main_loop();

    let mut rng = Rng(0x1234_5678_9abc_def1);
    let files = corpus(&mut rng);
    let mut expected = files.len();
    let started = std::time::Instant::now();
    for (rel, bytes) in &files {
        ws.drop_file(rel, bytes);
    }
    for i in 0..60 {
        let link = ws.work(&format!("inbox/T-link-{i}.yaml"));
        std::os::unix::fs::symlink(outside.join("secret.yaml"), link).unwrap();
        expected += 1;
    }
    for i in 0..40 {
        ws.drop_file(&format!("inbox/T-dup-{i}.yaml"), b"title: the copy\n");
        expected += 1;
    }
    // Heartbeat garbage: torn, huge, binary lines.
    let mut beats = Vec::new();
    beats.extend_from_slice(b"{\"ts\": \"2026-01-01T00:00:00Z\", \"status\": \"runn\n");
    beats.extend(std::iter::repeat_n(b'{', 300_000));
    beats.push(b'\n');
    beats.extend(
        rng.bytes(5000)
            .into_iter()
            .map(|b| if b == b'\n' { b'x' } else { b }),
    );
    beats.push(b'\n');
    ws.drop_file("heartbeats/w.jsonl", &beats);
    assert!(expected >= 1000, "the corpus has {expected} files");

    let rejected = ws.work("rejected");
    let got = wait_until(
        &format!("{expected} rejections"),
        Duration::from_secs(60),
        || {
            // Visible names only: a reason still being written is a dot-file (`.x.tmp`).
            let names: Vec<String> = crate::support::workspace::visible_names(&rejected)
                .into_iter()
                .filter(|n| !n.ends_with(".reason.txt"))
                .collect();
            if names.len() >= expected {
                Ok(names)
            } else {
                let missing: Vec<&String> = files
                    .iter()
                    .map(|(rel, _)| rel)
                    .filter(|rel| fs::symlink_metadata(ws.work(rel)).is_ok())
                    .take(12)
                    .collect();
                let accepted: Vec<String> = ["inbox", "done", "failed", "assigned/w"]
                    .iter()
                    .flat_map(|d| fs::read_dir(ws.work(d)).into_iter().flatten().flatten())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("T-") && !n.starts_with("T-dup"))
                    .take(20)
                    .collect();
                Err(format!(
                    "{} of {expected}; still in place: {missing:?}; taken as cards: {accepted:?}",
                    names.len()
                ))
            }
        },
    );
    assert_eq!(got.len(), expected, "more rejected than dropped");
    eprintln!(
        "{expected} hostile files rejected in {:?}",
        started.elapsed()
    );
    for name in &got {
        let reason = fs::read_to_string(rejected.join(format!("{name}.reason.txt")))
            .unwrap_or_else(|e| panic!("no reason for {name}: {e}"));
        assert!(reason.trim().len() > 10, "{name}: {reason:?}");
    }
    // Nothing left where it was dropped.
    for (rel, _) in &files {
        assert!(
            fs::symlink_metadata(ws.work(rel)).is_err(),
            "{rel} is still there"
        );
    }
    d.assert_running();
    // The originals of the duplicates are untouched, and the daemon still assigns.
    for i in 0..40 {
        let original = ws.card(&format!("T-dup-{i}"));
        assert_eq!(original["title"].as_str(), Some("the original"));
    }
    ws.drop_card("T-good", "title: a good card after all that\n");
    ws.wait_state("T-good", "assigned/w");
    assert_eq!(
        listing(&outside),
        before,
        "something outside the workspace changed"
    );
    d.assert_running();
}

/// The hostile-tree bench with a fixed seed: a thousand files of every kind (non-regular
/// files, links of both kinds, sizes around each cap, sparse giants, bombs, every number at
/// its edges, forged `pas:` blocks, bad encodings) in every folder pas reads, against the
/// real daemon. Every check of `pas bench hostile` must pass: alive and assigning, status
/// and `/api/status` answering, nothing lost, nothing outside changed, a clean restart.
#[test]
fn the_hostile_tree_bench_passes_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::support::workspace::pas_bin())
        .args([
            "bench", "hostile", "--files", "1000", "--seed", "7", "--json", "--dir",
        ])
        .arg(dir.path())
        .env_remove("PAS_LOG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
    assert_eq!(v["failures"], serde_json::json!([]), "{stderr}");
    assert!(v["files"].as_u64().unwrap() >= 990, "{v}");
    assert!(v["kinds"].as_u64().unwrap() >= 50, "{v}");
    assert!(v["rejected"].as_u64().unwrap() >= 500, "{v}");
}
