//! Bad input (SPEC section 12): whatever arrives goes to `work/rejected/` with a reason, the
//! daemon goes on, and nothing is deleted. Temp and editor files are left alone.

use std::fs;
use std::io::Write;
use std::time::Duration;

use crate::support::workspace::{holds_for, wait_until, Daemon, Workspace, WAIT};

/// A workspace with one roomy agent and a running daemon.
fn serving() -> (Workspace, Daemon) {
    let ws = Workspace::new();
    ws.register("w", &[], 100);
    let d = ws.serve_ready();
    (ws, d)
}

/// Waits until `work/rejected/<name>` exists; returns its reason text after checking it
/// names every one of `expect`.
fn assert_rejected(ws: &Workspace, name: &str, expect: &[&str]) -> String {
    let file = ws.work(&format!("rejected/{name}"));
    let reason_path = ws.work(&format!("rejected/{name}.reason.txt"));
    wait_until(&format!("work/rejected/{name}"), WAIT, || {
        if fs::symlink_metadata(&file).is_ok() && reason_path.exists() {
            Ok(())
        } else {
            let mut seen: Vec<String> = fs::read_dir(ws.work("rejected"))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            seen.sort();
            Err(format!("rejected/ holds {seen:?}"))
        }
    });
    let reason = fs::read_to_string(&reason_path).unwrap();
    for e in expect {
        assert!(
            reason.contains(e),
            "reason for {name} lacks {e:?}:\n{reason}"
        );
    }
    reason
}

/// The daemon is alive and still assigns: a good card dropped now reaches the agent.
fn assert_still_serving(ws: &Workspace, d: &mut Daemon, id: &str) {
    d.assert_running();
    ws.drop_card(id, "title: a good card after the bad one\n");
    ws.wait_state(id, "assigned/w");
    d.assert_running();
}

/// Drops `bytes` as `work/<rel>` into a running daemon, expects it rejected as `name`
/// with a reason naming each of `expect`, and checks that nothing was deleted.
fn rejects(rel: &str, bytes: &[u8], name: &str, expect: &[&str]) -> String {
    let (ws, mut d) = serving();
    let files = ws.count_files();
    ws.drop_file(rel, bytes);
    let reason = assert_rejected(&ws, name, expect);
    assert!(
        fs::symlink_metadata(ws.work(rel)).is_err(),
        "work/{rel} is still there"
    );
    assert_eq!(
        fs::read(ws.work(&format!("rejected/{name}"))).unwrap(),
        bytes,
        "rejected file changed"
    );
    assert_still_serving(&ws, &mut d, "after");
    ws.wait_file_count(files + 2, "nothing lost: the bad file and the good card");
    reason
}

#[test]
fn malformed_yaml_is_rejected_with_its_line_and_can_be_fixed() {
    let (ws, mut d) = serving();
    ws.drop_card("broken", "title: fine\nrequires: [gpu\npriority: high\n");
    assert_rejected(&ws, "broken.yaml", &["line", "work/inbox/broken.yaml"]);
    assert_still_serving(&ws, &mut d, "after");
    // Fixed and dropped again, it goes through.
    ws.drop_card("broken", "title: fine\nrequires: []\npriority: high\n");
    ws.wait_state("broken", "assigned/w");
}

#[test]
fn wrong_type_list_given_a_string_is_rejected() {
    rejects(
        "inbox/t1.yaml",
        b"title: x\nrequires: gpu\n",
        "t1.yaml",
        &["line 2", "requires"],
    );
}

#[test]
fn wrong_type_unknown_priority_is_rejected() {
    rejects(
        "inbox/t2.yaml",
        b"title: x\npriority: urgent\n",
        "t2.yaml",
        &["line 2", "urgent"],
    );
}

#[test]
fn unknown_pas_state_is_rejected() {
    rejects(
        "inbox/st.yaml",
        b"title: x\npas: {state: limbo}\n",
        "st.yaml",
        &["line 2", "limbo"],
    );
}

#[test]
fn bad_id_is_rejected() {
    rejects(
        "inbox/bad id!.yaml",
        b"title: x\n",
        "bad id!.yaml",
        &["bad id"],
    );
}

#[test]
fn file_over_one_mib_is_rejected() {
    let mut big = b"title: big\ndescription: ".to_vec();
    big.resize(1024 * 1024 + 100, b'a');
    big.push(b'\n');
    rejects("inbox/big.yaml", &big, "big.yaml", &["1 MiB"]);
}

#[test]
fn binary_data_is_rejected() {
    rejects(
        "inbox/bin.yaml",
        b"title: x\n\0\x01\x02\xff",
        "bin.yaml",
        &["binary"],
    );
}

#[test]
fn duplicate_id_is_rejected_and_the_original_is_untouched() {
    let (ws, mut d) = serving();
    let files = ws.count_files();
    ws.drop_card("dup", "title: the first\n");
    ws.wait_assigned("dup", "w");
    ws.pas_ok(&["done", "dup", "--result", "ok"]);
    ws.wait_commit_line("pas: dup assigned/w -> done");
    let original = fs::read(ws.work("done/dup.yaml")).unwrap();
    ws.wait_file_count(files + 1, "the first dup");
    ws.drop_card("dup", "title: the second\n");
    assert_rejected(&ws, "dup.yaml", &["duplicate id dup", "work/done/dup.yaml"]);
    assert_eq!(
        fs::read_to_string(ws.work("rejected/dup.yaml")).unwrap(),
        "title: the second\n"
    );
    assert_eq!(
        fs::read(ws.work("done/dup.yaml")).unwrap(),
        original,
        "done/dup.yaml changed"
    );
    assert_eq!(ws.places_of("dup"), ["done"]);
    assert_still_serving(&ws, &mut d, "after");
    ws.wait_file_count(files + 3, "nothing lost: both dups and the good card");
}

#[test]
fn symbolic_link_is_rejected_and_its_target_untouched() {
    let (ws, mut d) = serving();
    let target = ws.outside().join("secret.yaml");
    fs::write(&target, "title: secret\n").unwrap();
    std::os::unix::fs::symlink(&target, ws.work("inbox/link.yaml")).unwrap();
    assert_rejected(&ws, "link.yaml", &["symbolic link"]);
    let moved = ws.work("rejected/link.yaml");
    assert!(
        fs::symlink_metadata(&moved)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link itself is kept"
    );
    assert_eq!(fs::read_link(&moved).unwrap(), target);
    assert_eq!(
        fs::read_to_string(&target).unwrap(),
        "title: secret\n",
        "link target changed"
    );
    assert_still_serving(&ws, &mut d, "after");
    assert_eq!(
        fs::read_to_string(&target).unwrap(),
        "title: secret\n",
        "link target changed"
    );
}

#[test]
fn files_in_the_wrong_folder_are_rejected() {
    let (ws, mut d) = serving();
    let files = ws.count_files();
    ws.drop_file("assigned/x.yaml", b"title: x\n");
    ws.drop_file("stray.yaml", b"title: stray\n");
    ws.drop_file("inbox/notes.txt", b"just notes\n");
    assert_rejected(
        &ws,
        "x.yaml",
        &["work/assigned/x.yaml", "work/assigned/<agent>/"],
    );
    assert_rejected(
        &ws,
        "stray.yaml",
        &["work/stray.yaml", "not in a state folder"],
    );
    assert_rejected(&ws, "notes.txt", &["work/inbox/notes.txt", ".yaml"]);
    assert_still_serving(&ws, &mut d, "after");
    ws.wait_file_count(
        files + 4,
        "nothing lost: three misplaced files and the good card",
    );
}

#[test]
fn half_written_card_is_accepted_once_complete() {
    let (ws, mut d) = serving();
    ws.register("gpu-box", &["gpu"], 10);
    for i in 0..3 {
        let id = format!("slow-{i}");
        // Written in place, in two parts: the first part alone is not valid YAML.
        let mut f = fs::File::create(ws.work(&format!("inbox/{id}.yaml"))).unwrap();
        f.write_all(b"title: written slowly\nrequires: [gp")
            .unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50)); // the slow writer the test is about
        f.write_all(b"u]\npriority: high\n").unwrap();
        drop(f);
        let card = ws.wait_state(&id, "assigned/gpu-box");
        assert_eq!(card["requires"][0], "gpu");
        assert!(
            !ws.work(&format!("rejected/{id}.yaml")).exists(),
            "{id} was rejected"
        );
    }
    d.assert_running();
}

#[test]
fn temp_and_editor_files_are_ignored() {
    let (ws, mut d) = serving();
    let files = ws.count_files();
    let names = [".foo.swp", "foo.yaml~", ".hidden.yaml", "x.tmp", "4913"];
    for n in names {
        fs::write(ws.work(&format!("inbox/{n}")), "title: [not a card\n").unwrap();
    }
    assert_still_serving(&ws, &mut d, "after");
    // Give the daemon several settle windows to (wrongly) touch them.
    holds_for(
        "temp files left where they are",
        Duration::from_millis(600),
        || {
            for n in names {
                if !ws.work(&format!("inbox/{n}")).exists() {
                    return Err(format!("inbox/{n} is gone"));
                }
                if ws.work(&format!("rejected/{n}")).exists() {
                    return Err(format!("{n} was rejected"));
                }
            }
            Ok(())
        },
    );
    // Counted: foo.yaml~, 4913 and the good card (dot-files and *.tmp are not counted).
    ws.wait_file_count(files + 3, "nothing lost");
}
