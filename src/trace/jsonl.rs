//! Agents' spans: `work/traces/<trace_id>.jsonl`, one JSON object per line, appended.
//!
//! Read like heartbeats: one thread with its own inotify watch on the folder, each file
//! read from where the last look stopped, only complete lines. Every open goes through
//! `intake` (no links, no FIFOs, no hard links). A line over 1 MiB, a malformed line, an
//! unknown kind, a file that is not `<trace_id>.jsonl`: each is skipped with a
//! `trace.rejected` event naming the file and line and why, and reading goes on.
//!
//! Offsets live in memory: after a restart every file is read again from the start, which
//! is harmless because a span line is an upsert (the same line twice is one span).

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::intake::{self, FileKind, MAX_SPAN_LINE_BYTES};

use super::Tracer;
use crate::span::Update;

/// Bytes read per look at most; a writer far ahead is caught up over several looks.
const MAX_READ: usize = 4 << 20;

/// How long changes are gathered before they are read: a line reaches the dashboard
/// within this, and a busy writer costs a few wakeups per tick whatever its rate.
pub const TICK: Duration = Duration::from_millis(20);

/// Where pas has read one trace file up to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tail {
    /// Bytes before this have been taken in (always just after a newline, or inside a
    /// line being skipped).
    pub offset: u64,
    ino: u64,
    /// Lines taken in, for reasons that name a line.
    pub line: u64,
    /// Inside a line too long to keep: skip up to its newline.
    skipping: bool,
    /// The refusal last said for this file, so it is said once, not every look.
    refused: Option<String>,
}

/// One look's yield: spans and the reasons lines were skipped (`line number, reason`).
#[derive(Debug, Default)]
pub struct Read {
    pub spans: Vec<Update>,
    pub bad: Vec<(u64, String)>,
}

/// The trace id a file name stands for, if it is `<32 hex>.jsonl`.
pub fn trace_of(name: &str) -> Option<&str> {
    name.strip_suffix(".jsonl")
        .filter(|t| crate::span::valid_trace_id(t))
}

impl Tail {
    /// Reads the complete lines appended to `path` (trace `trace`) since the last look.
    pub fn read_new(&mut self, path: &Path, trace: &str) -> Result<Read, intake::Refused> {
        let (f, meta) = intake::open_noatime(path, FileKind::Trace)?;
        if meta.ino() != self.ino || meta.len() < self.offset {
            // Replaced or truncated: read it from the start.
            *self = Tail {
                ino: meta.ino(),
                ..Tail::default()
            };
        }
        let mut out = Read::default();
        while meta.len() > self.offset {
            let want = (meta.len() - self.offset).min(MAX_READ as u64) as usize;
            let mut buf = vec![0u8; want];
            let got = f.read_at(&mut buf, self.offset)?;
            buf.truncate(got);
            if got == 0 {
                break;
            }
            let mut at = 0usize;
            if self.skipping {
                match buf.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        self.skipping = false;
                        at = i + 1;
                    }
                    None => {
                        self.offset += got as u64;
                        continue;
                    }
                }
            }
            let Some(last_nl) = buf.iter().rposition(|b| *b == b'\n').filter(|i| *i >= at) else {
                if buf.len() - at > MAX_SPAN_LINE_BYTES {
                    // No end in sight and already too long: skip the rest of this line.
                    self.line += 1;
                    out.bad.push((self.line, too_long(buf.len() - at)));
                    self.skipping = true;
                    self.offset += got as u64;
                    continue;
                }
                self.offset += at as u64;
                break; // a line still being written
            };
            for raw in buf[at..last_nl].split(|b| *b == b'\n') {
                self.line += 1;
                if raw.len() > MAX_SPAN_LINE_BYTES {
                    out.bad.push((self.line, too_long(raw.len())));
                    continue;
                }
                let text = String::from_utf8_lossy(raw);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                match crate::span::parse_line(text, trace) {
                    Ok(u) => out.spans.push(u),
                    Err(e) => out.bad.push((self.line, e)),
                }
            }
            self.offset += last_nl as u64 + 1;
        }
        Ok(out)
    }
}

fn too_long(n: usize) -> String {
    format!("line of at least {n} bytes, over the {MAX_SPAN_LINE_BYTES} byte limit for a span")
}

/// The ingest: a tail per file, and where spans and refusals go.
pub struct Ingest {
    dir: PathBuf,
    tracer: Tracer,
    tails: HashMap<OsString, Tail>,
}

impl Ingest {
    /// An ingest of the trace files in `dir`, none read yet.
    pub fn new(dir: &Path, tracer: Tracer) -> Ingest {
        Ingest {
            dir: dir.to_path_buf(),
            tracer,
            tails: HashMap::new(),
        }
    }

    /// Reads what is new in the file `name`; spans go to the tracer, refusals are said.
    pub fn look(&mut self, name: &OsString) {
        let path = self.dir.join(name);
        let shown = format!("work/traces/{}", name.to_string_lossy());
        let Some(trace) = name.to_str().and_then(trace_of).map(str::to_string) else {
            let tail = self.tails.entry(name.clone()).or_default();
            let why = "not a trace file: span lines go in work/traces/<trace_id>.jsonl (32 lowercase hex digits)";
            if tail.refused.as_deref() != Some(why) && !name.to_string_lossy().starts_with('.') {
                tail.refused = Some(why.into());
                self.tracer.reject(&shown, why);
            }
            return;
        };
        let tail = self.tails.entry(name.clone()).or_default();
        match tail.read_new(&path, &trace) {
            Ok(read) => {
                tail.refused = None;
                for (line, why) in read.bad {
                    self.tracer.reject(&format!("{shown} line {line}"), &why);
                }
                let spans = read
                    .spans
                    .into_iter()
                    .map(|u| (u.span, !u.complete))
                    .collect();
                self.tracer.record_many(spans);
            }
            Err(intake::Refused::Missing) => {
                self.tails.remove(name);
            }
            Err(e) => {
                let why = e.to_string();
                if tail.refused.as_deref() != Some(why.as_str()) {
                    tail.refused = Some(why.clone());
                    self.tracer.reject(&shown, &why);
                }
            }
        }
    }

    /// Looks at every file of the folder.
    pub fn look_all(&mut self) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let names: Vec<OsString> = rd.flatten().map(|e| e.file_name()).collect();
        for n in names {
            self.look(&n);
        }
    }
}

/// The ingest thread, stopped by [`Ingesting::stop`].
pub struct Ingesting {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Ingesting {
    /// Stops the thread after one last look at every file, so the lines agents appended
    /// just before pas stopped are recorded while the database writer still runs, and
    /// returns once it has stopped.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes a thread waiting on the watch: a hidden name, which the ingest ignores.
        let wake = self.dir.join(format!(".wake-{}", std::process::id()));
        if std::fs::write(&wake, b"").is_ok() {
            let _ = std::fs::remove_file(&wake);
        }
        if self.thread.join().is_err() {
            tracing::error!("the span ingest thread panicked");
        }
    }
}

/// Starts the ingest thread over `dir` (created if missing): everything there now, then
/// each change within a [`TICK`].
pub fn start(dir: &Path, tracer: Tracer) -> std::io::Result<Ingesting> {
    use inotify::{EventMask, Inotify, WatchMask};
    std::fs::create_dir_all(dir)?;
    let mut ino = Inotify::init()?;
    ino.watches().add(
        dir,
        WatchMask::MODIFY | WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::CREATE,
    )?;
    let mut ingest = Ingest::new(dir, tracer);
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
        .name("pas-traces".into())
        .spawn(move || {
            ingest.look_all();
            let mut buf = vec![0u8; 64 * 1024];
            let mut names: BTreeSet<OsString> = BTreeSet::new();
            loop {
                // A stop whose wake-up the drain below took (the flag is set before the
                // wake-up is written) is seen here, before the thread blocks again.
                if stopping.load(Ordering::Relaxed) {
                    return ingest.look_all();
                }
                let mut overflow = false;
                let mut take = |events: inotify::Events<'_>, names: &mut BTreeSet<OsString>| {
                    for e in events {
                        if e.mask.contains(EventMask::Q_OVERFLOW) {
                            overflow = true;
                        } else if let Some(n) = e.name {
                            names.insert(n.to_os_string());
                        }
                    }
                };
                match ino.read_events_blocking(&mut buf) {
                    Ok(events) => take(events, &mut names),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot watch work/traces/: polling it every second instead");
                        while !stopping.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_secs(1));
                            ingest.look_all();
                        }
                        return ingest.look_all();
                    }
                }
                if stopping.load(Ordering::Relaxed) {
                    return ingest.look_all();
                }
                std::thread::sleep(TICK);
                while let Ok(events) = ino.read_events(&mut buf) {
                    take(events, &mut names);
                }
                if overflow {
                    ingest.look_all();
                    names.clear();
                }
                for n in std::mem::take(&mut names) {
                    ingest.look(&n);
                }
            }
        })?;
    Ok(Ingesting {
        dir: dir.to_path_buf(),
        stop,
        thread,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const T: &str = "0af7651916cd43dd8448eb211c80319c";

    fn append(p: &Path, s: &[u8]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap();
        f.write_all(s).unwrap();
    }

    #[test]
    fn reads_only_complete_new_lines_and_names_bad_ones() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(format!("{T}.jsonl"));
        append(&p, br#"{"span_id":"b7ad6b7169203331","name":"plan","kind":"step","start":"2026-01-01T00:00:00Z"}
garbage
{"span_id":"b7ad6b7169203332","kind":"wizard","name":"x","start":"2026-01-01T00:00:00Z"}
{"span_id":"b7ad6b71692033"#);
        let mut t = Tail::default();
        let r = t.read_new(&p, T).unwrap();
        assert_eq!(r.spans.len(), 1);
        assert!(r.spans[0].complete);
        assert_eq!(r.bad.len(), 2);
        assert_eq!(r.bad[0].0, 2);
        assert!(
            r.bad[1].1.contains("unknown kind \"wizard\""),
            "{:?}",
            r.bad
        );
        append(
            &p,
            br#"33","end":"2026-01-01T00:00:01Z","status":"ok"}
"#,
        );
        let r = t.read_new(&p, T).unwrap();
        assert_eq!(r.spans.len(), 1);
        assert!(!r.spans[0].complete, "an update names only what changed");
        assert_eq!(t.line, 4);
    }

    #[test]
    fn a_line_over_a_mebibyte_is_skipped_and_the_next_is_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(format!("{T}.jsonl"));
        let mut big = vec![b'x'; 5 << 20];
        big.push(b'\n');
        append(&p, &big);
        append(&p, br#"{"span_id":"b7ad6b7169203331","name":"after","kind":"tool","start":"2026-01-01T00:00:00Z"}
"#);
        let mut t = Tail::default();
        let r = t.read_new(&p, T).unwrap();
        assert_eq!(r.bad.len(), 1, "{:?}", r.bad);
        assert!(r.bad[0].1.contains("byte limit"));
        assert_eq!(r.spans.len(), 1);
        assert_eq!(r.spans[0].span.name, "after");
    }

    #[test]
    fn a_fifo_and_a_link_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join(format!("{T}.jsonl"));
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let e = Tail::default().read_new(&fifo, T).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let link = d.path().join("1af7651916cd43dd8448eb211c80319c.jsonl");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        let e = Tail::default().read_new(&link, T).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }
}
