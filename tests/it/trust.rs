//! pas's own records win over a `pas:` block an agent edited (SPEC section 12): a forged
//! `assigned_at` far in the future and `attempts: 0` are put back, and the card still times
//! out and fails after its attempts; the correction is in the git log.

use std::time::Duration;

use crate::support::workspace::{history, wait_until, Workspace};

/// The card's text with the `pas:` block's `assigned_at` moved to the year 9999 and
/// `attempts` reset to 0, as a hostile agent would write it.
fn forge(text: &str) -> String {
    text.lines()
        .map(|l| {
            let key = l.trim_start();
            let indent = &l[..l.len() - key.len()];
            if indent.is_empty() {
                l.to_string()
            } else if key.starts_with("assigned_at:") {
                format!("{indent}assigned_at: 9999-12-31T23:59:59.000Z")
            } else if key.starts_with("attempts:") {
                format!("{indent}attempts: 0")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Waits for card `id` to be in `failed/` and returns it.
fn wait_failed(ws: &Workspace, id: &str) -> serde_yaml::Value {
    wait_until(
        &format!("{id} in failed/"),
        Duration::from_secs(30),
        || match ws.state_of(id).as_deref() {
            Some("failed") => ws.try_card(id).ok_or_else(|| "moved".to_string()),
            other => Err(format!("{other:?}")),
        },
    )
}

/// The commit line saying pas put card `id`'s `pas:` block back.
fn correction_line(ws: &Workspace, id: &str) -> String {
    let log = ws.git(&["log", "--format=%B", "--", "work"]);
    let want = format!("{id} pas: block restored from pas's record");
    log.lines()
        .find(|l| l.contains(&want))
        .unwrap_or_else(|| panic!("no correction in the git log:\n{log}"))
        .to_string()
}

#[test]
fn a_forged_assigned_at_and_attempts_are_put_back_and_the_card_still_fails() {
    let ws = Workspace::new();
    ws.register("sly", &[], 1);
    let _d = ws.serve_ready();
    ws.drop_card(
        "forged",
        "title: never finished\ntimeout_s: 2\nmax_attempts: 2\n",
    );
    // Taken back once (attempts 1) and given to the agent again.
    ws.wait_card("assigned a second time", "forged", |c| {
        history(c).len() >= 4
    });
    let path = ws.work("assigned/sly/forged.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("attempts: 1"), "{text}");
    let forged = forge(&text);
    assert!(forged.contains("9999-12-31") && forged.contains("attempts: 0"));
    let tmp = ws.work("assigned/sly/.forged.tmp");
    std::fs::write(&tmp, forged).unwrap();
    std::fs::rename(&tmp, &path).unwrap();

    // pas puts its record back, so the card times out again and, out of attempts, fails.
    let card = wait_failed(&ws, "forged");
    assert_eq!(card["pas"]["attempts"].as_u64(), Some(2), "{card:?}");
    assert_eq!(history(&card).last().unwrap(), "assigned/sly -> failed");
    let line = correction_line(&ws, "forged");
    assert!(line.contains("assigned_at 9999-12-31"), "{line}");
    assert!(line.contains("attempts 0 (pas: 1)"), "{line}");
}

/// The same forgery made while pas is not running: at start-up pas knows the card only from
/// its file, so the database's rows of its transitions are what the block is held against.
#[test]
fn a_block_forged_while_pas_was_stopped_is_put_back_at_start_up() {
    let ws = Workspace::new();
    ws.register("sly", &[], 1);
    let mut d = ws.serve_ready();
    // The second assignment's timeout must not pass before pas is stopped and the block
    // forged: 5 s leaves room for a stop on a loaded machine.
    ws.drop_card(
        "forged",
        "title: never finished\ntimeout_s: 5\nmax_attempts: 2\n",
    );
    ws.wait_card("assigned a second time", "forged", |c| {
        history(c).len() >= 4
    });
    assert!(d.stop().success());
    let path = ws.work("assigned/sly/forged.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, forge(&text)).unwrap();

    let _d = ws.serve_ready();
    let card = wait_failed(&ws, "forged");
    assert_eq!(card["pas"]["attempts"].as_u64(), Some(2), "{card:?}");
    let line = correction_line(&ws, "forged");
    assert!(line.contains("assigned_at 9999-12-31"), "{line}");
    assert!(
        line.contains("attempts 0 (pas took it back 1 times)"),
        "{line}"
    );
}
