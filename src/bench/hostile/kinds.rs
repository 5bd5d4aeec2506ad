//! The kinds of hostile file `pas bench hostile` plants, and how each is made: every type
//! of non-regular file, links of both kinds to places inside and outside, sizes around the
//! caps, sparse giants, nesting and alias bombs, numbers at their edges, forged `pas:`
//! blocks and bad encodings.

use std::path::{Path, PathBuf};

/// Where a planted file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Folder {
    /// A state folder: inbox, done, failed, or the probe's assigned folder.
    Cards,
    Registry,
    Heartbeats,
    Definitions,
}

/// One kind of hostile file: its name, which folders it belongs in, and how to make it.
pub(super) struct Kind {
    pub(super) name: &'static str,
    pub(super) folders: &'static [Folder],
    pub(super) make: fn(&Plant) -> std::io::Result<()>,
}

/// What a kind's maker gets: where to put the file and what lies outside.
pub(super) struct Plant<'a> {
    pub(super) path: PathBuf,
    pub(super) outside: &'a Path,
    pub(super) inside_card: &'a Path,
}

const ANY: &[Folder] = &[
    Folder::Cards,
    Folder::Registry,
    Folder::Heartbeats,
    Folder::Definitions,
];
const CARDS: &[Folder] = &[Folder::Cards];
const REGS: &[Folder] = &[Folder::Registry];
const BEATS: &[Folder] = &[Folder::Heartbeats];
const DEFS: &[Folder] = &[Folder::Definitions];

fn write(p: &Plant, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(&p.path, bytes)
}

fn text(p: &Plant, s: &str) -> std::io::Result<()> {
    write(p, s.as_bytes())
}

pub(super) fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path; mknod only creates the node.
    if unsafe { libc::mknod(c.as_ptr(), mode, dev) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn fifo(p: &Plant) -> std::io::Result<()> {
    mknod(&p.path, libc::S_IFIFO | 0o600, 0)
}

fn socket(p: &Plant) -> std::io::Result<()> {
    // The socket's node stays on disk after the listener closes.
    std::os::unix::net::UnixListener::bind(&p.path).map(drop)
}

fn char_device(p: &Plant) -> std::io::Result<()> {
    // /dev/null's numbers; without the right to make devices, a FIFO stands in.
    mknod(&p.path, libc::S_IFCHR | 0o600, libc::makedev(1, 3)).or_else(|_| fifo(p))
}

fn folder_named_like_a_file(p: &Plant) -> std::io::Result<()> {
    std::fs::create_dir(&p.path)
}

fn folder_holding_a_card(p: &Plant) -> std::io::Result<()> {
    std::fs::create_dir(&p.path)?;
    std::fs::write(p.path.join("inner.yaml"), "title: inside a folder\n")
}

fn link_to(p: &Plant, target: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, &p.path)
}

fn sparse(p: &Plant, len: u64) -> std::io::Result<()> {
    std::fs::File::create(&p.path)?.set_len(len)
}

fn card_of(len: usize) -> Vec<u8> {
    let mut b = b"title: padded\ndescription: \"".to_vec();
    let pad = len.saturating_sub(b.len() + 2);
    b.extend(std::iter::repeat_n(b'x', pad));
    b.extend_from_slice(b"\"\n");
    b
}

fn tower(depth: usize) -> String {
    format!("x: {}1{}\n", "[".repeat(depth), "]".repeat(depth))
}

fn block_tower(depth: usize) -> String {
    let mut s = String::from("title: deep\nx:\n");
    for i in 1..depth {
        s.push_str(&" ".repeat(i));
        s.push_str("a:\n");
    }
    s
}

/// Every kind of hostile file the bench plants.
#[rustfmt::skip]
pub(super) const KINDS: &[Kind] = &[
    // Not regular files.
    Kind { name: "fifo", folders: ANY, make: fifo },
    Kind { name: "socket", folders: ANY, make: socket },
    Kind { name: "char-device", folders: ANY, make: char_device },
    Kind { name: "folder", folders: ANY, make: folder_named_like_a_file },
    Kind { name: "folder-with-card", folders: CARDS, make: folder_holding_a_card },
    Kind { name: "link-dev-null", folders: ANY, make: |p| link_to(p, Path::new("/dev/null")) },
    // Links of both kinds, to places inside and outside.
    Kind { name: "link-outside-file", folders: ANY, make: |p| link_to(p, &p.outside.join("secret.yaml")) },
    Kind { name: "link-outside-fifo", folders: ANY, make: |p| link_to(p, &p.outside.join("fifo.yaml")) },
    Kind { name: "link-outside-folder", folders: ANY, make: |p| link_to(p, p.outside) },
    Kind { name: "link-inside-card", folders: ANY, make: |p| link_to(p, p.inside_card) },
    Kind { name: "link-dangling", folders: ANY, make: |p| link_to(p, &p.outside.join("nothing-here")) },
    Kind { name: "link-loop", folders: ANY, make: |p| link_to(p, &p.path) },
    Kind { name: "hardlink-outside", folders: ANY, make: |p| std::fs::hard_link(p.outside.join("secret.yaml"), &p.path) },
    Kind { name: "hardlink-inside", folders: ANY, make: |p| std::fs::hard_link(p.inside_card, &p.path) },
    // Sizes around the caps.
    Kind { name: "card-at-cap", folders: CARDS, make: |p| write(p, &card_of(1 << 20)) },
    Kind { name: "card-over-cap", folders: CARDS, make: |p| write(p, &card_of((1 << 20) + 1)) },
    Kind { name: "reg-at-cap", folders: REGS, make: |p| write(p, format!("labels: {{note: \"{}\"}}\n", "y".repeat((64 << 10) - 20)).as_bytes()) },
    Kind { name: "reg-over-cap", folders: REGS, make: |p| write(p, format!("labels: {{note: \"{}\"}}\n", "y".repeat(64 << 10)).as_bytes()) },
    Kind { name: "sparse-64g", folders: ANY, make: |p| sparse(p, 64 << 30) },
    Kind { name: "sparse-1g", folders: ANY, make: |p| sparse(p, 1 << 30) },
    Kind { name: "empty", folders: ANY, make: |p| write(p, b"") },
    // Nesting and alias bombs.
    Kind { name: "flow-tower", folders: &[Folder::Cards, Folder::Registry], make: |p| text(p, &format!("title: t\n{}", tower(5000))) },
    Kind { name: "block-tower", folders: &[Folder::Cards, Folder::Registry], make: |p| text(p, &block_tower(300)) },
    Kind { name: "alias-bomb", folders: &[Folder::Cards, Folder::Registry], make: |p| text(p, &format!("{}title: bomb\n", crate::fuzzing::alias_bomb())) },
    Kind { name: "def-tower", folders: DEFS, make: |p| text(p, &format!("---\n{}---\nbody\n", tower(5000))) },
    Kind { name: "def-bomb", folders: DEFS, make: |p| text(p, &format!("---\n{}---\nbody\n", crate::fuzzing::alias_bomb())) },
    // Numbers in cards at 0, -1, the maximum and one past it.
    Kind { name: "timeout-0", folders: CARDS, make: |p| text(p, "title: t\ntimeout_s: 0\n") },
    Kind { name: "timeout-neg", folders: CARDS, make: |p| text(p, "title: t\ntimeout_s: -1\n") },
    Kind { name: "timeout-1e13", folders: CARDS, make: |p| text(p, "title: t\ntimeout_s: 1e13\n") },
    Kind { name: "timeout-max-plus", folders: CARDS, make: |p| text(p, "title: t\ntimeout_s: 31536001\n") },
    Kind { name: "timeout-nan", folders: CARDS, make: |p| text(p, "title: t\ntimeout_s: .nan\n") },
    Kind { name: "timeout-inf", folders: CARDS, make: |p| text(p, "title: t\ntimeout_s: .inf\n") },
    Kind { name: "attempts-0", folders: CARDS, make: |p| text(p, "title: t\nmax_attempts: 0\n") },
    Kind { name: "attempts-neg", folders: CARDS, make: |p| text(p, "title: t\nmax_attempts: -1\n") },
    Kind { name: "attempts-u32-plus", folders: CARDS, make: |p| text(p, "title: t\nmax_attempts: 4294967296\n") },
    Kind { name: "attempts-max-plus", folders: CARDS, make: |p| text(p, "title: t\nmax_attempts: 1000001\n") },
    Kind { name: "cpu-neg", folders: CARDS, make: |p| text(p, "title: t\nresources: {cpu: -1}\n") },
    Kind { name: "cpu-huge", folders: CARDS, make: |p| text(p, "title: t\nresources: {cpu: 1e300}\n") },
    Kind { name: "mem-u64-max", folders: CARDS, make: |p| text(p, "title: t\nresources: {mem_mb: 18446744073709551615}\n") },
    Kind { name: "mem-u64-plus", folders: CARDS, make: |p| text(p, "title: t\nresources: {mem_mb: 18446744073709551616}\n") },
    Kind { name: "gpu-neg", folders: CARDS, make: |p| text(p, "title: t\nresources: {gpu: -1}\n") },
    Kind { name: "pas-attempts-max", folders: CARDS, make: |p| text(p, "title: t\npas: {state: inbox, attempts: 4294967295}\n") },
    Kind { name: "pas-attempts-neg", folders: CARDS, make: |p| text(p, "title: t\npas: {state: inbox, attempts: -1}\n") },
    Kind { name: "pas-epoch-max", folders: CARDS, make: |p| text(p, "title: t\npas: {state: inbox, epoch: 18446744073709551615}\n") },
    Kind { name: "pas-epoch-2p53-plus", folders: CARDS, make: |p| text(p, "title: t\npas: {state: inbox, epoch: 9007199254740993}\n") },
    Kind { name: "pas-assigned-far-future", folders: CARDS, make: |p| text(p, "title: t\npas: {state: assigned, assigned_to: probe, assigned_at: '9999-12-31T23:59:59.999Z'}\n") },
    Kind { name: "pas-assigned-year-1", folders: CARDS, make: |p| text(p, "title: t\npas: {state: assigned, assigned_to: probe, assigned_at: '0001-01-01T00:00:00Z'}\n") },
    Kind { name: "pas-assigned-year-99999", folders: CARDS, make: |p| text(p, "title: t\npas: {assigned_at: '+99999-01-01T00:00:00Z'}\n") },
    Kind { name: "pas-history-bad-date", folders: CARDS, make: |p| text(p, "title: t\npas: {history: [{at: '1000-01-01T00:00:00Z', from: new, to: inbox}]}\n") },
    Kind { name: "pas-forged-done", folders: CARDS, make: |p| text(p, "title: t\nresult: forged\npas: {state: done, assigned_to: probe, attempts: 0, epoch: 999, history: [{at: '2020-01-01T00:00:00Z', from: new, to: done, by: probe}]}\n") },
    Kind { name: "pas-forged-assignee", folders: CARDS, make: |p| text(p, "title: t\npas: {state: assigned, assigned_to: 'bad name!', attempts: 0}\n") },
    // Numbers in registrations.
    Kind { name: "reg-epoch-max", folders: REGS, make: |p| text(p, "epoch: 18446744073709551615\n") },
    Kind { name: "reg-epoch-neg", folders: REGS, make: |p| text(p, "epoch: -1\n") },
    Kind { name: "reg-slots-max", folders: REGS, make: |p| text(p, "max_concurrent: 4294967295\n") },
    Kind { name: "reg-interval-huge", folders: REGS, make: |p| text(p, "heartbeat_interval_s: 1e300\n") },
    Kind { name: "reg-interval-nan", folders: REGS, make: |p| text(p, "heartbeat_interval_s: .nan\n") },
    Kind { name: "reg-registered-far", folders: REGS, make: |p| text(p, "registered_at: '9999-12-31T23:59:59Z'\n") },
    Kind { name: "def-slots-max", folders: DEFS, make: |p| text(p, "---\nmax_concurrent: 4294967295\nctx_limit: 18446744073709551615\nheartbeat_interval_s: -1\n---\n") },
    // Heartbeat lines.
    Kind { name: "beat-epoch-max", folders: BEATS, make: |p| text(p, "{\"ts\":\"2026-01-01T00:00:00Z\",\"epoch\":18446744073709551615}\n") },
    Kind { name: "beat-ts-far", folders: BEATS, make: |p| text(p, "{\"ts\":\"9999-12-31T23:59:59Z\"}\n{\"ts\":\"0001-01-01T00:00:00Z\"}\n") },
    Kind { name: "beat-ctx-max", folders: BEATS, make: |p| text(p, "{\"ts\":\"2026-01-01T00:00:00Z\",\"ctx_used\":18446744073709551615,\"ctx_limit\":0}\n") },
    Kind { name: "beat-cpu-inf", folders: BEATS, make: |p| text(p, "{\"ts\":\"2026-01-01T00:00:00Z\",\"cpu\":1e309,\"progress\":-1}\n") },
    Kind { name: "beat-long-line", folders: BEATS, make: |p| text(p, &format!("{{\"ts\":\"2026-01-01T00:00:00Z\",\"note\":\"{}\"}}\n", "n".repeat(100 << 10))) },
    Kind { name: "beat-binary", folders: BEATS, make: |p| write(p, b"\xff\xfe\x00{\"ts\":\n\x00\x00\n") },
    // Encodings.
    Kind { name: "bad-utf8", folders: ANY, make: |p| write(p, b"title: \xff\xfe bad\n") },
    Kind { name: "nul-byte", folders: ANY, make: |p| write(p, b"title: a\0b\n") },
    Kind { name: "bom-crlf", folders: CARDS, make: |p| write(p, b"\xef\xbb\xbftitle: bom\r\npriority: low\r\n") },
    Kind { name: "control-chars", folders: ANY, make: |p| write(p, b"title: bell \x07 esc \x1b\n") },
    Kind { name: "not-a-mapping", folders: &[Folder::Cards, Folder::Registry], make: |p| text(p, "- a\n- list\n") },
];
