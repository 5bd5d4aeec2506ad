//! A run's output log, `telemetry/runs/<id>.log` (git-ignored with the rest of
//! `telemetry/`): stdout and stderr as they come, capped. The first half of the cap goes
//! to the file as it arrives (so `pas logs` shows a live run); past it, only the last half
//! is kept in memory and written after a line that says how much was cut, when the run
//! ends. A process that floods its output costs a bounded file and bounded memory.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The log of one run.
pub struct RunLog {
    file: Option<File>,
    path: PathBuf,
    head_left: u64,
    tail: VecDeque<u8>,
    tail_cap: usize,
    cut: u64,
}

impl RunLog {
    /// Opens (appending: a card's later attempts follow its earlier ones) the log at
    /// `path`, keeping at most `cap` bytes of this run. A log that cannot be opened is
    /// warned about once; the run goes on without it.
    pub fn open(path: &Path, cap: u64, header: &str) -> RunLog {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(
                |e| tracing::warn!(log = %path.display(), error = %e, "cannot open the run's log"),
            )
            .ok();
        let mut log = RunLog {
            file,
            path: path.to_path_buf(),
            head_left: cap / 2,
            tail: VecDeque::new(),
            tail_cap: usize::try_from(cap / 2).unwrap_or(usize::MAX),
            cut: 0,
        };
        log.note(header);
        log
    }

    /// A line of pas's own (a header, why the run ended), never cut.
    pub fn note(&mut self, line: &str) {
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "[pas] {line}");
        }
    }

    /// Output of the process.
    pub fn write(&mut self, mut bytes: &[u8]) {
        if self.head_left > 0 {
            let n = bytes
                .len()
                .min(usize::try_from(self.head_left).unwrap_or(usize::MAX));
            if let Some(f) = &mut self.file {
                let _ = f.write_all(&bytes[..n]);
            }
            self.head_left -= n as u64;
            bytes = &bytes[n..];
        }
        if bytes.is_empty() {
            return;
        }
        self.tail.extend(bytes);
        let over = self.tail.len().saturating_sub(self.tail_cap);
        if over > 0 {
            self.tail.drain(..over);
            self.cut += over as u64;
        }
    }

    /// Writes the kept tail (after a line saying what was cut) and closes the file.
    pub fn close(&mut self) {
        let tail: Vec<u8> = self.tail.drain(..).collect();
        if let Some(f) = &mut self.file {
            if self.cut > 0 {
                let _ = writeln!(f, "\n[pas] ... {} bytes of output cut here ...", self.cut);
            }
            let _ = f.write_all(&tail);
        }
        self.file = None;
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The last `n` lines of `text` (at most `max_bytes`, cut at a character boundary).
pub fn last_lines(text: &str, n: usize, max_bytes: usize) -> String {
    let trimmed = text.trim_end();
    let start = trimmed
        .char_indices()
        .rev()
        .filter(|(_, c)| *c == '\n')
        .nth(n.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    let mut s = &trimmed[start..];
    if s.len() > max_bytes {
        let mut cut = s.len() - max_bytes;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s = &s[cut..];
    }
    s.to_string()
}

/// Recent output kept in memory for a run's result or error: the last bytes seen.
#[derive(Debug, Default)]
pub struct Recent {
    buf: VecDeque<u8>,
}

/// Bytes of recent output kept for a card's `result` or `error`.
const RECENT: usize = 16 * 1024;

impl Recent {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend(bytes);
        let over = self.buf.len().saturating_sub(RECENT);
        self.buf.drain(..over);
    }

    /// The last `n` lines.
    pub fn lines(&self, n: usize) -> String {
        let bytes: Vec<u8> = self.buf.iter().copied().collect();
        last_lines(&String::from_utf8_lossy(&bytes), n, 4096)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_keeps_head_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        let mut log = RunLog::open(&p, 1000, "start");
        for i in 0..10_000 {
            log.write(format!("line {i}\n").as_bytes());
        }
        log.close();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.len() < 1200, "{}", text.len());
        assert!(text.contains("line 0\n") && text.contains("line 9999\n"));
        assert!(text.contains("bytes of output cut here"));
    }

    #[test]
    fn last_lines_counts_lines() {
        assert_eq!(last_lines("a\nb\nc\n", 2, 100), "b\nc");
        assert_eq!(last_lines("abc", 5, 2), "bc");
    }
}
