//! Resources (SPEC section 6): reserved at assignment, released when the card leaves
//! `assigned/`; a card needing more than the capacity fails at once, one needing more than
//! is free waits and says what it needs and what is free.

use crate::support::workspace::{Workspace, FAST};

#[test]
fn resources_are_reserved_released_and_over_capacity_fails() {
    let ws = Workspace::with_config(&format!("{FAST}capacity: {{cpu: 4, mem_mb: 1000}}\n"));
    ws.register("a", &[], 5);
    let _d = ws.serve_ready();

    ws.drop_card("big", "title: big\nresources: {cpu: 3}\n");
    ws.wait_assigned("big", "a");
    ws.drop_card("also", "title: also\nresources: {cpu: 2, mem_mb: 10}\n");
    let card = ws.wait_card("a resource reason", "also", |c| {
        c["pas"]["waiting_for"].as_str().is_some()
    });
    assert_eq!(card["pas"]["waiting_for"], "needs 2 cpu, 1 free");
    let status = ws.pas_json(&["status", "--json"]);
    assert_eq!(status["capacity"]["cpu"]["total"], 4.0);
    assert_eq!(status["capacity"]["cpu"]["used"], 3.0);

    ws.drop_card("huge", "title: huge\nresources: {cpu: 16}\n");
    let failed = ws.wait_state("huge", "failed");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("16 cpu (capacity 4)"), "{failed:?}");

    // Releasing the big card (it is done) lets the waiting one in.
    ws.pas_ok(&["done", "big", "--result", "ok"]);
    ws.wait_assigned("also", "a");
    let status = ws.pas_json(&["status", "--json"]);
    assert_eq!(status["capacity"]["cpu"]["used"], 2.0);
    assert_eq!(status["capacity"]["mem_mb"]["used"], 10.0);
}
