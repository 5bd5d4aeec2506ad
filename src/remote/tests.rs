//! The protocol against a real bare repository and real clones in a temp folder.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::claim::Outcome;
use super::replica::{Claimed, Op, Replica};

/// A bare remote with a board of `cards` inbox cards on `main`, and the folder for clones.
pub(crate) struct Remote {
    pub dir: tempfile::TempDir,
    pub bare: PathBuf,
}

pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Remote {
    pub(crate) fn new(cards: usize) -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("remote.git");
        super::setup::create_bare(&bare).unwrap();
        let seed = dir.path().join("seed");
        let ids: Vec<String> = (0..cards).map(|i| format!("J-{i}")).collect();
        super::setup::seed_board(&bare, &seed, &ids).unwrap();
        Remote { dir, bare }
    }

    /// Hosts `a` and `b`.
    pub(crate) fn pair(&self, lease: Duration) -> (Replica, Replica) {
        (self.clone("a", lease), self.clone("b", lease))
    }

    /// The remote's audit, which must find no card owned or finished twice.
    pub(crate) fn clean_audit(&self) -> super::audit::Audit {
        let audit = super::audit::audit(&self.bare, "main").unwrap();
        assert!(audit.clean(), "{audit:?}");
        audit
    }

    pub(crate) fn clone(&self, name: &str, lease: Duration) -> Replica {
        let path = self.dir.path().join(name);
        super::setup::clone(&self.bare, &path).unwrap();
        Replica::open(&path, "origin", "main", name, lease).unwrap()
    }
}

fn assign(r: &mut Replica, id: &str, agent: &str) {
    r.queue(Op::new(
        id,
        format!("work/inbox/{id}.yaml"),
        format!("work/assigned/{agent}/{id}.yaml"),
        None,
    ));
}

fn finish(r: &mut Replica, id: &str, agent: &str) {
    r.queue(Op::new(
        id,
        format!("work/assigned/{agent}/{id}.yaml"),
        format!("work/done/{id}.yaml"),
        Some(Outcome::Finished),
    ));
}

#[test]
fn two_contenders_one_owner() {
    let remote = Remote::new(20);
    let lease = Duration::from_secs(30);
    let (mut a, mut b) = remote.pair(lease);
    let now = Instant::now();
    a.fetch(now).unwrap();
    b.fetch(now).unwrap();
    let mut wins = 0;
    for i in 0..20 {
        let id = format!("J-{i}");
        // Both saw the ref absent; only one push may create it.
        let ra = a.claim(&id, "x", 1).unwrap();
        let rb = b.claim(&id, "y", 1).unwrap();
        assert!(
            (ra == Claimed::Won) != (rb == Claimed::Won),
            "{id}: {ra:?} {rb:?}"
        );
        wins += 1;
    }
    assert_eq!(wins, 20);
    assert_eq!(a.stats.claims_won + b.stats.claims_won, 20);
    let audit = remote.clean_audit();
    assert_eq!(audit.claims, 20);
}

#[test]
fn the_owner_finishes_once_and_the_board_follows() {
    let remote = Remote::new(3);
    let lease = Duration::from_secs(30);
    let (mut a, mut b) = remote.pair(lease);
    let now = Instant::now();
    a.fetch(now).unwrap();
    b.fetch(now).unwrap();
    assert_eq!(a.claim("J-0", "x", 1).unwrap(), Claimed::Won);
    assign(&mut a, "J-0", "x");
    assert_eq!(b.claim("J-1", "y", 1).unwrap(), Claimed::Won);
    assign(&mut b, "J-1", "y");
    // Concurrent pushes to one branch: the second replays on the first.
    assert_eq!(a.push_pending(now).unwrap().landed, vec!["J-0"]);
    assert_eq!(b.push_pending(now).unwrap().landed, vec!["J-1"]);
    finish(&mut a, "J-0", "x");
    finish(&mut b, "J-1", "y");
    a.push_pending(now).unwrap();
    b.push_pending(now).unwrap();
    a.fetch(now).unwrap();
    // The board on the remote has both moves; J-2 is the one card left to claim.
    assert_eq!(a.eligible(), vec!["J-2"]);
    let files = git(&remote.bare, &["ls-tree", "-r", "--name-only", "main"]);
    assert!(files.contains("work/done/J-0.yaml") && files.contains("work/done/J-1.yaml"));
    assert!(!files.contains(".yaml\nwork/assigned/") && !files.contains("work/assigned/x/"));
    let audit = remote.clean_audit();
    assert_eq!(audit.done, 2);
    // Every commit pushed names its host.
    let log = git(&remote.bare, &["log", "--format=%B", "main"]);
    assert!(log.contains("Pas-Host: a") && log.contains("Pas-Host: b"));
}

#[test]
fn a_paused_owner_loses_its_finish_after_a_takeover() {
    let remote = Remote::new(1);
    let lease = Duration::from_millis(300);
    let (mut a, mut b) = remote.pair(lease);
    let t0 = Instant::now();
    a.fetch(t0).unwrap();
    assert_eq!(a.claim("J-0", "x", 1).unwrap(), Claimed::Won);
    assign(&mut a, "J-0", "x");
    a.push_pending(t0).unwrap();
    // a is paused from here on: no renewal. b watches the same claim commit.
    b.fetch(t0).unwrap();
    assert!(
        b.take_over_expired(t0 + lease).is_empty(),
        "not before lease + grace"
    );
    b.fetch(t0 + lease).unwrap();
    let taken = b.take_over_expired(t0 + lease + b.grace);
    assert_eq!(taken, vec!["J-0"]);
    b.push_pending(t0).unwrap();
    // The card is back in the inbox on the remote, and b may claim it.
    b.fetch(t0).unwrap();
    assert_eq!(b.eligible(), vec!["J-0"]);
    assert_eq!(b.claim("J-0", "y", 1).unwrap(), Claimed::Won);
    // a resumes and tries to finish: refused as a whole, nothing of it lands.
    finish(&mut a, "J-0", "x");
    let pushed = a.push_pending(t0).unwrap();
    assert_eq!(pushed.refused, vec!["J-0"]);
    assert!(pushed.landed.is_empty());
    assert!(!a.holds("J-0"));
    // b finishes; the card is done once.
    assign(&mut b, "J-0", "y");
    finish(&mut b, "J-0", "y");
    b.push_pending(t0).unwrap();
    let audit = remote.clean_audit();
    assert_eq!(audit.done, 1);
}

#[test]
fn renewals_keep_a_claim_and_a_lost_one_is_reported() {
    let remote = Remote::new(2);
    let lease = Duration::from_millis(300);
    let (mut a, mut b) = remote.pair(lease);
    let t0 = Instant::now();
    a.fetch(t0).unwrap();
    a.claim("J-0", "x", 1).unwrap();
    b.fetch(t0).unwrap();
    // a renews at a third of the lease: b sees a new commit and starts over.
    assert!(a.renew_due(Instant::now() + lease / 3).unwrap().is_empty());
    b.fetch(t0 + lease).unwrap();
    assert!(b.take_over_expired(t0 + lease + b.grace).is_empty());
    // Now a stops; b takes over; a's next renewal finds the claim gone.
    let t1 = t0 + lease * 4;
    b.fetch(t1).unwrap();
    assert_eq!(b.take_over_expired(t1 + lease + b.grace), vec!["J-0"]);
    b.push_pending(t1).unwrap();
    assert_eq!(a.renew_due(t1).unwrap(), vec!["J-0"]);
    assert!(a.held().is_empty());
}

#[test]
fn an_unreachable_remote_queues_finishes_until_it_is_back() {
    let remote = Remote::new(1);
    let mut a = remote.clone("a", Duration::from_secs(30));
    let now = Instant::now();
    a.fetch(now).unwrap();
    a.claim("J-0", "x", 1).unwrap();
    assign(&mut a, "J-0", "x");
    finish(&mut a, "J-0", "x");
    let away = remote.dir.path().join("away.git");
    std::fs::rename(&remote.bare, &away).unwrap();
    let err = a.push_pending(now).unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    assert!(!a.stats.reachable);
    assert!(a.fetch(now).unwrap_err().is_unreachable());
    assert_eq!(a.pending(), 2);
    std::fs::rename(&away, &remote.bare).unwrap();
    a.fetch(now).unwrap();
    assert_eq!(a.push_pending(now).unwrap().landed.len(), 2);
    assert!(a.stats.reachable);
    let audit = super::audit::audit(&remote.bare, "main").unwrap();
    assert_eq!((audit.done, audit.clean()), (1, true));
}

#[test]
fn finished_claims_are_pruned_and_a_card_is_not_claimed_again() {
    let remote = Remote::new(3);
    let mut a = remote.clone("a", Duration::from_secs(30));
    let t0 = Instant::now();
    a.fetch(t0).unwrap();
    for i in 0..3 {
        let id = format!("J-{i}");
        a.claim(&id, "x", 1).unwrap();
        assign(&mut a, &id, "x");
        finish(&mut a, &id, "x");
    }
    a.push_pending(t0).unwrap();
    a.fetch(t0).unwrap();
    assert!(a.eligible().is_empty());
    assert_eq!(a.prune(Duration::from_secs(60), 2, t0).unwrap(), 0);
    // Never before ten leases, whatever was asked.
    let at = |s| t0 + Duration::from_secs(s);
    assert_eq!(a.prune(Duration::from_secs(60), 2, at(299)).unwrap(), 0);
    assert_eq!(a.prune(Duration::from_secs(60), 2, at(301)).unwrap(), 3);
    let left = git(&remote.bare, &["for-each-ref", "refs/pas/claims/"]);
    assert_eq!(left.trim(), "");
    a.fetch(t0).unwrap();
    assert!(
        a.eligible().is_empty(),
        "done cards stay done without their claims"
    );
}

#[test]
fn a_stale_list_never_claims_a_finished_card() {
    let remote = Remote::new(1);
    let lease = Duration::from_secs(30);
    let (mut a, mut b) = remote.pair(lease);
    let now = Instant::now();
    a.fetch(now).unwrap();
    b.fetch(now).unwrap();
    let stale = b.eligible();
    assert_eq!(stale, vec!["J-0"]);
    a.claim("J-0", "x", 1).unwrap();
    assign(&mut a, "J-0", "x");
    finish(&mut a, "J-0", "x");
    a.push_pending(now).unwrap();
    // b learns of the claims (not of the board) and still holds its old list: no claim.
    b.fetch(now).unwrap();
    assert_eq!(b.claim(&stale[0], "y", 1).unwrap(), Claimed::Lost);
    assert_eq!(b.stats.claims_won, 0);
}
