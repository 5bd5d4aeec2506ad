//! The review step (SPEC section 2) with a real daemon: a card with `review: true` waits in
//! `work/review/` (by `pas done` or a plain `mv` into `done/`), frees its agent's slot,
//! and leaves by `pas approve` (to `done/`, result kept) or `pas reject` (to the inbox with
//! the feedback and `attempts` raised; past `max_attempts` to `failed/`). A card made on a
//! branch shows its diff on `pas show` and the job page, escaped.

use std::fs;
use std::path::Path;

use crate::support::browser::Browser;
use crate::support::http;
use crate::support::workspace::{history, Workspace};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn review_waits_for_approve_frees_the_slot_and_keeps_the_result() {
    let ws = Workspace::new();
    let _d = ws.serve_ready();
    ws.register("a1", &[], 1);
    ws.drop_card("R-1", "title: Write the parser\nreview: true\n");
    ws.wait_assigned("R-1", "a1");

    assert_eq!(
        ws.pas_ok(&["done", "R-1", "--result", "made it"]).trim(),
        "R-1 -> review"
    );
    ws.wait_state("R-1", "review");
    ws.wait_commit_line("pas: R-1 assigned/a1 -> review");
    let status = ws.pas_json(&["status", "--json"]);
    assert_eq!(status["jobs"]["review"], 1, "{status}");

    // The slot is free: the next card goes to the same one-slot agent.
    ws.drop_card("R-2", "title: Next\n");
    ws.wait_assigned("R-2", "a1");

    // Only a card in review can be approved; the error says where the card is.
    let out = ws.pas(&["approve", "R-2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("R-2 is not in work/review/: it is in work/assigned/a1/"),
        "{}",
        stderr(&out)
    );
    let out = ws.pas(&["approve", "NOPE-1"]);
    assert!(stderr(&out).contains("no card NOPE-1"), "{}", stderr(&out));
    // An agent cannot finish its own review.
    let out = ws.pas(&["done", "R-1"]);
    assert!(stderr(&out).contains("pas approve R-1"), "{}", stderr(&out));

    ws.pas_ok(&["approve", "R-1", "--note", "looks right"]);
    let card = ws.wait_state("R-1", "done");
    assert_eq!(card["result"], "made it");
    ws.wait_commit_line("pas: R-1 review -> done (approved: looks right)");
    assert_eq!(history(&card).last().unwrap(), "review -> done", "{card:?}");
    ws.wait_db_count(
        "SELECT count(*) FROM events WHERE kind = 'job.review' AND data LIKE '%R-1%'",
        1,
    );
    ws.wait_work_clean("every move committed");
}

#[test]
fn a_plain_move_into_done_goes_to_review_and_reject_sends_it_back_then_fails_it() {
    let ws = Workspace::new();
    let _d = ws.serve_ready();
    ws.register("a1", &[], 1);
    ws.drop_card(
        "R-3",
        "title: Tidy up\ndescription: Make it tidy.\nreview: true\nmax_attempts: 2\n",
    );
    ws.wait_assigned("R-3", "a1");

    // The agent moves it by hand into done/: pas routes it to review/.
    fs::rename(ws.work("assigned/a1/R-3.yaml"), ws.work("done/R-3.yaml")).unwrap();
    ws.wait_state("R-3", "review");
    ws.wait_commit_line(
        "pas: R-3 done -> review (review: true; waits for pas approve or pas reject)",
    );

    ws.pas_ok(&["reject", "R-3", "--feedback", "add tests"]);
    // Back in the inbox with attempts raised, and the daemon gives it out again.
    let card = ws.wait_assigned("R-3", "a1");
    ws.wait_commit_line("pas: R-3 review -> inbox (rejected: add tests)");
    assert_eq!(card["pas"]["attempts"], 1, "{card:?}");
    let description = card["description"].as_str().unwrap();
    assert!(
        description.starts_with("Make it tidy.")
            && description.ends_with("Review feedback (attempt 1): add tests"),
        "{description}"
    );

    // Rejected again at its last attempt: failed, with the feedback as the error.
    ws.pas_ok(&["done", "R-3"]);
    ws.wait_state("R-3", "review");
    let out = ws.pas(&["reject", "R-3", "--feedback", ""]);
    assert!(stderr(&out).contains("--feedback"), "{}", stderr(&out));
    ws.pas_ok(&["reject", "R-3", "--feedback", "still untidy"]);
    let card = ws.wait_state("R-3", "failed");
    assert_eq!(card["pas"]["attempts"], 2);
    assert_eq!(
        card["error"],
        "rejected in review, attempt 2 of 2: still untidy"
    );
    ws.wait_commit_line("pas: R-3 review -> failed (rejected: still untidy)");
    ws.wait_work_clean("every move committed");
}

/// A branch `pas/<id>` with one change, made by hand in a worktree of the workspace's
/// repository, as a runner would; returns the base commit.
fn branch_with_change(ws: &Workspace, id: &str, file: &str, text: &str) -> String {
    let base = ws.head();
    let wt = ws.outside().join(format!("wt-{id}"));
    ws.git(&[
        "worktree",
        "add",
        "-q",
        "-b",
        &format!("pas/{id}"),
        wt.to_str().unwrap(),
        &base,
    ]);
    fs::write(wt.join(file), text).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=runner", "-c", "user.email=r@example.com"])
            .args(args)
            .current_dir(&wt)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    };
    git(&["add", file]);
    git(&["commit", "-q", "-m", "the work"]);
    base
}

/// Rewrites the card in `assigned/<agent>/` with `pas.branch`, `pas.base` and a result,
/// then renames it into `work/review/`: what the runner does when its process ends well.
fn runner_finishes(ws: &Workspace, id: &str, agent: &str, base: &str) {
    let from = ws.work(&format!("assigned/{agent}/{id}.yaml"));
    let mut card: serde_yaml::Value =
        serde_yaml::from_str(&fs::read_to_string(&from).unwrap()).unwrap();
    card["result"] = "changed the greeting".into();
    card["pas"]["branch"] = format!("pas/{id}").into();
    card["pas"]["base"] = base.into();
    let tmp = ws.work(&format!("assigned/{agent}/.{id}.yaml.tmp"));
    fs::write(&tmp, serde_yaml::to_string(&card).unwrap()).unwrap();
    fs::rename(&tmp, &from).unwrap();
    fs::rename(&from, ws.work(&format!("review/{id}.yaml"))).unwrap();
}

#[test]
fn a_runner_branch_shows_its_diff_on_pas_show_and_the_job_page_escaped() {
    let ws = Workspace::new();
    let _d = ws.serve_ready();
    ws.register("a1", &[], 1);
    ws.drop_card("R-4", "title: Change the greeting\nreview: true\n");
    ws.wait_assigned("R-4", "a1");
    let base = branch_with_change(
        &ws,
        "R-4",
        "hello.html",
        "<script>window.__pwned = 1</script>\n",
    );
    runner_finishes(&ws, "R-4", "a1", &base);
    let card = ws.wait_state("R-4", "review");
    ws.wait_commit_line("pas: R-4 assigned/a1 -> review");
    // The daemon kept the runner's fields.
    ws.wait_work_clean("the move committed");
    let card = ws.try_card("R-4").unwrap_or(card);
    assert_eq!(card["pas"]["branch"], "pas/R-4", "{card:?}");

    let shown = ws.pas_json(&["show", "R-4", "--json"]);
    let diff = &shown["diff"];
    assert_eq!(diff["branch"], "pas/R-4");
    assert_eq!(diff["base"], base.as_str());
    assert_eq!(diff["files"], 1);
    assert_eq!(diff["truncated"], false);
    let text = diff["text"].as_str().unwrap();
    assert!(text.contains("+++ b/hello.html"), "{text}");
    assert!(
        text.contains("+<script>window.__pwned = 1</script>"),
        "{text}"
    );
    let plain = ws.pas_ok(&["show", "R-4"]);
    assert!(
        plain.contains(&format!("# diff {base}..pas/R-4 (1 files changed)")),
        "{plain}"
    );
    assert!(
        plain.contains("+<script>window.__pwned = 1</script>"),
        "{plain}"
    );

    // A card without the fields has no diff section.
    ws.drop_card("R-5", "title: No branch\nrequires: [nobody]\n");
    ws.wait_recorded("R-5");
    assert!(ws
        .pas_json(&["show", "R-5", "--json"])
        .get("diff")
        .is_none());

    let (dash, _) = ws.addresses();
    let api = http::get(&format!("http://{dash}/api/jobs/R-4")).json();
    assert_eq!(api["diff"]["text"], diff["text"], "{api}");
    let page = http::get(&format!("http://{dash}/jobs/R-4"));
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("&lt;script&gt;window.__pwned = 1&lt;")
            && !page.body.contains("<script>window.__pwned"),
        "the diff must be escaped on the page"
    );

    let Some(mut b) = Browser::launch() else {
        assert!(
            std::env::var_os("PAS_REQUIRE_BROWSER").is_none(),
            "PAS_REQUIRE_BROWSER is set but no chromium is installed"
        );
        eprintln!("SKIPPED (browser part): no chromium installed");
        return;
    };
    b.open(&format!("http://{dash}/"));
    b.wait_for(
        "the card in the Review column",
        "(() => { const c = document.querySelector('[data-id=\"R-4\"]'); \
         return !!c && c.closest('.column').dataset.col === 'review'; })()",
    );
    b.open(&format!("http://{dash}/jobs/R-4"));
    b.wait_for(
        "the diff on the job page",
        "!!document.querySelector('pre.diff') && document.querySelector('pre.diff').textContent.includes('<script>window.__pwned = 1</script>')",
    );
    assert_eq!(b.eval("typeof window.__pwned"), "undefined");
}

/// The tree holds no file a failed command left: the names under `work/` (pas's own dot
/// files aside).
pub(crate) fn work_files(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root.join("work"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(root).unwrap().display().to_string())
        .filter(|p| !p.split('/').any(|c| c.starts_with('.')))
        .collect();
    out.sort();
    out
}

#[test]
fn approve_and_reject_work_without_a_daemon_and_refuse_other_cards() {
    let ws = Workspace::new();
    ws.register("a1", &[], 1);
    ws.pas_ok(&["submit", "--title", "Offline", "--review", "--id", "R-6"]);
    ws.pas_ok(&["claim", "a1", "R-6"]);
    assert_eq!(
        ws.pas_ok(&["done", "R-6", "--result", "r"]).trim(),
        "R-6 -> review"
    );
    let before = work_files(&ws.root);
    let out = ws.pas(&["reject", "R-6"]);
    assert_eq!(out.status.code(), Some(2), "--feedback is required");
    assert_eq!(work_files(&ws.root), before);
    ws.pas_ok(&["reject", "R-6", "--feedback", "again"]);
    let card = ws.card("R-6");
    assert_eq!(ws.state_of("R-6").as_deref(), Some("inbox"));
    assert_eq!(card["pas"]["attempts"], 1);
    let out = ws.pas(&["reject", "R-6", "--feedback", "x"]);
    assert!(
        stderr(&out).contains("R-6 is not in work/review/: it is in work/inbox/"),
        "{}",
        stderr(&out)
    );
}
