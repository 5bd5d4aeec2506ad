//! One way in for every file an agent can write.
//!
//! Cards, registrations, heartbeats, agent definitions, `pas.yaml` and the reason files in
//! `work/rejected/` are all written by someone pas does not trust, and whatever stands at
//! their path may be no file at all: a FIFO (opening it blocks until a writer comes), a
//! device, a socket, a folder, a symbolic link to anywhere, a hard link to a file outside the
//! workspace (whose inode pas would then write into), or a sparse file of 64 GiB that costs
//! nothing to make and everything to read. So every read starts here: the path is opened
//! with `O_NOFOLLOW | O_NONBLOCK` (a link is refused by the kernel, a FIFO does not block),
//! the open file is `fstat`ed (what was checked is what is read, with no race between a
//! `stat` and an `open`), it must be a regular file with one link and no larger than its
//! kind's cap, and it is read up to that cap only.
//!
//! A YAML text then passes [`yaml_guard`] before any parser sees it: nesting beyond a depth
//! and alias expansion without bound are refused, as cards always were.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The kinds of file pas reads, each with its own size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A job card in any state folder.
    Card,
    /// `work/registry/<agent>.yaml`.
    Registration,
    /// `agents/<name>.md`: front matter and the agent's instructions.
    Definition,
    /// `pas.yaml`.
    Config,
    /// `work/heartbeats/<agent>.jsonl`: only the tail is read, so no cap on the whole file;
    /// a single line is capped instead ([`MAX_LINE_BYTES`]).
    Heartbeat,
    /// A `.reason.txt` beside a rejected file (pas writes them; anyone could replace one).
    Reason,
    /// A file in `work/rejected/` as the git worker stages it.
    Rejected,
    /// pas's own small state files under `work/` (the daemon lock's holder).
    Marker,
    /// A heartbeat file read whole by `pas validate` (the daemon only reads tails).
    BeatLog,
    /// `work/traces/<trace_id>.jsonl`: read incrementally like heartbeats, so no cap on
    /// the whole file; a line is capped at [`MAX_SPAN_LINE_BYTES`].
    Trace,
}

/// Longest span line pas takes in (a span may carry a whole conversation).
pub const MAX_SPAN_LINE_BYTES: usize = 1 << 20;

/// Longest line of a heartbeat file pas takes in; a longer one is skipped as bad.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

impl FileKind {
    /// The largest file of this kind pas reads (bytes).
    pub fn cap(self) -> u64 {
        match self {
            FileKind::Card
            | FileKind::Definition
            | FileKind::Config
            | FileKind::Rejected
            | FileKind::BeatLog => 1 << 20,
            FileKind::Registration | FileKind::Reason | FileKind::Marker => 64 << 10,
            FileKind::Heartbeat | FileKind::Trace => u64::MAX,
        }
    }

    /// What a person calls this kind of file, for reasons.
    pub fn noun(self) -> &'static str {
        match self {
            FileKind::Card => "cards",
            FileKind::Registration => "registrations",
            FileKind::Definition => "agent definitions",
            FileKind::Config => "pas.yaml",
            FileKind::Heartbeat => "heartbeat files",
            FileKind::Reason => "reason files",
            FileKind::Rejected => "rejected files pas commits",
            FileKind::Marker => "pas's marker files",
            FileKind::BeatLog => "heartbeat files pas validate reads",
            FileKind::Trace => "trace files",
        }
    }
}

/// Why a file was not read. The text is what goes into a `.reason.txt`.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("no such file")]
    Missing,
    #[error("symbolic link: pas never follows links (write a regular file)")]
    Link,
    #[error("{0}, not a regular file")]
    NotRegular(&'static str),
    #[error("hard link ({0} names for one file): pas never reads or writes through a hard link")]
    HardLink(u64),
    #[error("file is {len} bytes, over the {} limit for {}", human(*cap), kind.noun())]
    TooBig { len: u64, cap: u64, kind: FileKind },
    #[error("binary data: NUL byte at offset {0}")]
    Nul(usize),
    #[error("binary data: not UTF-8 at offset {0}")]
    NotUtf8(usize),
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
}

impl From<Refused> for io::Error {
    /// For callers that speak `io::Error`: a missing file stays `NotFound`.
    fn from(r: Refused) -> io::Error {
        match r {
            Refused::Missing => io::Error::from(io::ErrorKind::NotFound),
            Refused::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        }
    }
}

impl Refused {
    /// Whether the file may still be changing into something readable (only an I/O error
    /// or a file over its cap while still being written could be; a link, a FIFO or a
    /// hard link never turns into a card by waiting).
    pub fn may_settle(&self) -> bool {
        matches!(
            self,
            Refused::TooBig { .. } | Refused::Nul(_) | Refused::NotUtf8(_) | Refused::Io(_)
        )
    }
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// What a non-regular file is, in words.
fn what(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a file"
    }
}

/// Checks metadata (from `lstat` or `fstat`) against the rules for `kind`.
pub fn check(meta: &Metadata, kind: FileKind) -> Result<(), Refused> {
    if meta.file_type().is_symlink() {
        return Err(Refused::Link);
    }
    if !meta.is_file() {
        return Err(Refused::NotRegular(what(meta)));
    }
    if meta.nlink() > 1 {
        return Err(Refused::HardLink(meta.nlink()));
    }
    if meta.len() > kind.cap() {
        return Err(Refused::TooBig {
            len: meta.len(),
            cap: kind.cap(),
            kind,
        });
    }
    Ok(())
}

/// Opens `path` for reading without following a link or blocking on a FIFO, and checks the
/// open file (its `fstat`) against the rules for `kind`.
pub fn open(path: &Path, kind: FileKind) -> Result<(File, Metadata), Refused> {
    open_flags(path, kind, 0)
}

/// [`open`] without updating the file's access time where the kernel allows it: a
/// heartbeat file is read a thousand times a second with a thousand agents, and each
/// access-time update is a write to its inode. Files of another user refuse `O_NOATIME`;
/// they are opened plainly.
pub fn open_noatime(path: &Path, kind: FileKind) -> Result<(File, Metadata), Refused> {
    match open_flags(path, kind, libc::O_NOATIME) {
        Err(Refused::Io(e)) if e.raw_os_error() == Some(libc::EPERM) => open(path, kind),
        other => other,
    }
}

fn open_flags(path: &Path, kind: FileKind, extra: i32) -> Result<(File, Metadata), Refused> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | extra)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => Refused::Link,
            Some(libc::ENOENT) => Refused::Missing,
            // A socket cannot be opened at all; a device may refuse; say what it is.
            Some(libc::ENXIO | libc::EOPNOTSUPP | libc::ENODEV) => {
                match std::fs::symlink_metadata(path) {
                    Ok(m) => Refused::NotRegular(what(&m)),
                    Err(_) => Refused::Io(e),
                }
            }
            _ => Refused::Io(e),
        })?;
    let meta = file.metadata()?;
    check(&meta, kind)?;
    Ok((file, meta))
}

/// Reads the whole file at `path` as `kind` (at most its cap, whatever the file claims).
pub fn read(path: &Path, kind: FileKind) -> Result<Vec<u8>, Refused> {
    let (file, meta) = open(path, kind)?;
    read_open(file, &meta, kind)
}

/// Reads an already opened and checked file, at most its kind's cap. A file that grew past
/// the cap since its `fstat` is refused rather than read on.
pub fn read_open(file: File, meta: &Metadata, kind: FileKind) -> Result<Vec<u8>, Refused> {
    let cap = kind.cap();
    let mut bytes = Vec::with_capacity(meta.len().min(cap) as usize);
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(Refused::TooBig {
            len: bytes.len() as u64,
            cap,
            kind,
        });
    }
    Ok(bytes)
}

/// Reads the file at `path` as UTF-8 text with no NUL byte.
pub fn read_text(path: &Path, kind: FileKind) -> Result<String, Refused> {
    let bytes = read(path, kind)?;
    text(bytes)
}

/// The bytes as text: no NUL byte, valid UTF-8.
pub fn text(bytes: Vec<u8>) -> Result<String, Refused> {
    if let Some(pos) = bytes.iter().position(|&b| b == 0) {
        return Err(Refused::Nul(pos));
    }
    String::from_utf8(bytes).map_err(|e| Refused::NotUtf8(e.utf8_error().valid_up_to()))
}

/// Reads `path` as `kind` when it is there: `Ok(None)` when there is no such file.
pub fn read_text_if_present(path: &Path, kind: FileKind) -> Result<Option<String>, Refused> {
    match read_text(path, kind) {
        Ok(t) => Ok(Some(t)),
        Err(Refused::Missing) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Why a YAML text was refused before parsing, and on which line (1-based) if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlRefused {
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// The guards every YAML text pas parses passes first: flow nesting beyond
/// [`crate::yaml_depth::MAX_FLOW_DEPTH`] is refused by a linear scan (serde_yaml's own limit
/// applies only after a read that is quadratic in the depth), and a text with anchors and
/// aliases, or one the scan finds deep, is expanded once as a plain value so serde_yaml's
/// recursion and expansion limits judge it (a typed parse that skips unknown keys has none).
pub fn yaml_guard(text: &str) -> Result<(), YamlRefused> {
    let deep = crate::yaml_depth::scan(text);
    if let Some(line) = deep.too_deep {
        return Err(YamlRefused {
            message: format!(
                "YAML nested more than {} levels deep",
                crate::yaml_depth::MAX_FLOW_DEPTH
            ),
            line: Some(line),
            column: None,
        });
    }
    if (text.contains('&') && text.contains('*')) || deep.maybe {
        if let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(text) {
            let loc = e.location();
            let mut message = e.to_string();
            // serde_yaml appends " at line L column C"; the location is reported apart.
            if let Some(i) = message.find(" at line ") {
                message.truncate(i);
            }
            return Err(YamlRefused {
                message,
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    fn mkfifo(path: &Path) {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn every_kind_of_non_file_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo.yaml");
        mkfifo(&fifo);
        assert!(matches!(
            read(&fifo, FileKind::Registration),
            Err(Refused::NotRegular("a FIFO"))
        ));
        let sock_path = d.path().join("sock.yaml");
        let _sock = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
        let e = read(&sock_path, FileKind::Card).unwrap_err();
        assert!(matches!(e, Refused::NotRegular("a socket")), "{e}");
        let dir = d.path().join("dir.yaml");
        std::fs::create_dir(&dir).unwrap();
        assert!(matches!(
            read(&dir, FileKind::Card),
            Err(Refused::NotRegular("a folder"))
        ));
        assert!(matches!(
            read(Path::new("/dev/null"), FileKind::Card),
            Err(Refused::NotRegular("a character device"))
        ));
        assert!(matches!(
            read(&d.path().join("none"), FileKind::Card),
            Err(Refused::Missing)
        ));
    }

    #[test]
    fn links_of_both_kinds_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, "token: x\n").unwrap();
        let soft = d.path().join("soft.yaml");
        std::os::unix::fs::symlink(&secret, &soft).unwrap();
        assert!(matches!(read(&soft, FileKind::Card), Err(Refused::Link)));
        let hard = d.path().join("hard.yaml");
        std::fs::hard_link(&secret, &hard).unwrap();
        let e = read(&hard, FileKind::Card).unwrap_err();
        assert!(matches!(e, Refused::HardLink(2)), "{e}");
        assert!(e.to_string().contains("hard link"));
    }

    #[test]
    fn a_sparse_giant_is_refused_by_its_size_not_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("giant.yaml");
        let f = File::create(&p).unwrap();
        f.set_len(64 << 30).unwrap(); // 64 GiB of holes: free to make
        let e = read(&p, FileKind::Card).unwrap_err();
        assert_eq!(
            e.to_string(),
            "file is 68719476736 bytes, over the 1 MiB limit for cards"
        );
        // Sizes around the cap: the cap itself is read, one byte more is not.
        std::fs::write(&p, vec![b'a'; 64 << 10]).unwrap();
        assert_eq!(read(&p, FileKind::Registration).unwrap().len(), 64 << 10);
        std::fs::write(&p, vec![b'a'; (64 << 10) + 1]).unwrap();
        assert!(matches!(
            read(&p, FileKind::Registration),
            Err(Refused::TooBig { .. })
        ));
    }

    #[test]
    fn text_refuses_nul_and_bad_utf8_with_the_offset() {
        assert_eq!(
            text(b"ab\0c".to_vec()).unwrap_err().to_string(),
            "binary data: NUL byte at offset 2"
        );
        assert_eq!(
            text(b"ab\xffc".to_vec()).unwrap_err().to_string(),
            "binary data: not UTF-8 at offset 2"
        );
    }

    #[test]
    fn yaml_guard_refuses_towers_and_bombs_and_passes_plain_text() {
        assert!(yaml_guard("name: x\ncapabilities: [a, b]\n").is_ok());
        let tower = format!("a: {}1{}\n", "[".repeat(5000), "]".repeat(5000));
        let e = yaml_guard(&tower).unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(yaml_guard(&crate::fuzzing::alias_bomb()).is_err());
    }
}
