//! Heartbeat files: one JSON object per line in `work/heartbeats/<agent>.jsonl`.
//!
//! Agents append; pas only reads. The daemon keeps a [`Tail`] per file and reads only the
//! bytes appended since its last look, so a beat costs the same whether the file holds ten
//! lines or ten million. A last line without its newline is a write in progress and is left
//! for the next look; a line that is not a valid beat is reported and skipped, and never
//! takes the good lines around it with it.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::intake::{self, FileKind};
use serde::{Deserialize, Serialize};

/// What an agent says it is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BeatStatus {
    Idle,
    Running,
    Blocked,
    Error,
}

/// One heartbeat line (SPEC section 4). Keys pas does not know are allowed and ignored.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Beat {
    pub ts: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BeatStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctx_used: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctx_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_mb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The registration epoch the agent holds; a beat naming an older one is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

impl Beat {
    /// Parses one line; the error says what is wrong with it.
    pub fn parse(line: &str) -> Result<Beat, String> {
        let beat: Beat = serde_json::from_str(line).map_err(|e| {
            let text = e.to_string();
            // serde_json appends " at line 1 column N": keep the column, drop the line.
            match text.rsplit_once(" at line 1 column ") {
                Some((what, col)) => format!("{what} (column {col})"),
                None => text,
            }
        })?;
        if beat.progress.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
            return Err("progress must be between 0 and 1".into());
        }
        for (name, v) in [("cpu", beat.cpu), ("mem_mb", beat.mem_mb)] {
            if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                return Err(format!("{name} must be a number of at least 0"));
            }
        }
        if !crate::card::sane_date(beat.ts) {
            return Err(format!("ts {} is outside the years 2000 to 9999", beat.ts));
        }
        if beat.epoch.is_some_and(|e| e > crate::card::MAX_EPOCH) {
            return Err(format!("epoch must be at most {}", crate::card::MAX_EPOCH));
        }
        Ok(beat)
    }

    /// `ctx_used / ctx_limit`, the limit from the beat or else `default_limit`.
    pub fn ctx_ratio(&self, default_limit: Option<u64>) -> Option<f64> {
        let used = self.ctx_used?;
        let limit = self.ctx_limit.or(default_limit).filter(|l| *l > 0)?;
        Some(used as f64 / limit as f64)
    }
}

/// One line of a heartbeat file as the tail read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Beat(Beat),
    /// A line that is not a beat: its byte offset in the file and why.
    Bad {
        offset: u64,
        reason: String,
    },
}

/// Where pas has read a heartbeat file up to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tail {
    /// Bytes before this offset have been taken in (it always sits after a newline).
    pub offset: u64,
    /// The file's inode; a different one means the file was replaced, so read it anew.
    ino: u64,
}

/// Bytes read per look at most; a writer far ahead is caught up over several looks.
const MAX_READ: u64 = 4 << 20;

impl Tail {
    /// A tail that starts at the end of the file as it is now, with the last good beat
    /// before that end (found by reading only the file's last bytes).
    pub fn at_end(path: &Path) -> (Tail, Option<Beat>) {
        let Ok((mut f, meta)) = intake::open_noatime(path, FileKind::Heartbeat) else {
            return (Tail::default(), None);
        };
        let len = meta.len();
        let tail = Tail {
            offset: len,
            ino: meta.ino(),
        };
        let mut window = 16 * 1024u64;
        loop {
            let start = len.saturating_sub(window);
            let mut buf = Vec::new();
            if f.seek(SeekFrom::Start(start)).is_err()
                || (&mut f).take(len - start).read_to_end(&mut buf).is_err()
            {
                return (tail, None);
            }
            let text = String::from_utf8_lossy(&buf);
            let mut lines: Vec<&str> = text.split('\n').collect();
            if start > 0 {
                lines.remove(0); // may be cut
            }
            let found = lines.iter().rev().find_map(|l| Beat::parse(l).ok());
            if found.is_some() || start == 0 || window >= 1 << 20 {
                // A torn last line is not counted; the tail starts after the last newline.
                let end = buf
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(start, |i| start + i as u64 + 1);
                return (
                    Tail {
                        offset: end,
                        ..tail
                    },
                    found,
                );
            }
            window *= 8;
        }
    }

    /// Reads the complete lines appended since the last call.
    pub fn read_new(&mut self, path: &Path) -> std::io::Result<Vec<Line>> {
        let (f, meta) = intake::open_noatime(path, FileKind::Heartbeat)?;
        if meta.ino() != self.ino || meta.len() < self.offset {
            // Replaced or truncated (rotated): read it from the start.
            self.ino = meta.ino();
            self.offset = 0;
        }
        if meta.len() == self.offset {
            return Ok(Vec::new());
        }
        // One read of exactly what was appended (read_to_end would probe for more).
        let want = (meta.len() - self.offset).min(MAX_READ) as usize;
        let mut buf = vec![0u8; want];
        let got = std::os::unix::fs::FileExt::read_at(&f, &mut buf, self.offset)?;
        buf.truncate(got);
        let Some(last_nl) = buf.iter().rposition(|b| *b == b'\n') else {
            if buf.len() as u64 == MAX_READ {
                // No newline in 4 MiB: not a beat being written but garbage; skip it.
                let offset = self.offset;
                self.offset += MAX_READ;
                return Ok(vec![Line::Bad {
                    offset,
                    reason: format!("no end of line in {MAX_READ} bytes"),
                }]);
            }
            return Ok(Vec::new()); // one line, still being written
        };
        let mut lines = Vec::new();
        let mut at = self.offset;
        for raw in buf[..last_nl].split(|b| *b == b'\n') {
            let line_offset = at;
            at += raw.len() as u64 + 1;
            if raw.len() > intake::MAX_LINE_BYTES {
                lines.push(Line::Bad {
                    offset: line_offset,
                    reason: format!(
                        "line of {} bytes, over the {} byte limit for a beat",
                        raw.len(),
                        intake::MAX_LINE_BYTES
                    ),
                });
                continue;
            }
            let text = String::from_utf8_lossy(raw);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            lines.extend(parse_with_recovery(text, line_offset));
        }
        self.offset += last_nl as u64 + 1;
        Ok(lines)
    }
}

/// Parses a line; when it does not parse but ends in a whole beat (a writer died mid-line
/// and the next beat was appended to the torn piece), the torn part is reported and the
/// beat after it kept.
fn parse_with_recovery(text: &str, offset: u64) -> Vec<Line> {
    match Beat::parse(text) {
        Ok(b) => vec![Line::Beat(b)],
        Err(reason) => {
            let rescued = text
                .match_indices('{')
                .skip(1)
                .find_map(|(i, _)| Beat::parse(&text[i..]).ok().map(|b| (i, b)));
            match rescued {
                Some((i, b)) => vec![
                    Line::Bad {
                        offset,
                        reason: format!("a torn line ({} bytes) before the next beat", i),
                    },
                    Line::Beat(b),
                ],
                None => vec![Line::Bad { offset, reason }],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn beats(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| match l {
                Line::Beat(b) => b.note.clone().unwrap_or_default(),
                Line::Bad { reason, .. } => format!("bad: {reason}"),
            })
            .collect()
    }

    #[test]
    fn reads_only_what_was_appended_and_waits_for_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        append(&p, "{\"ts\":\"2026-01-01T00:00:00Z\",\"note\":\"one\"}\n");
        let mut t = Tail::default();
        assert_eq!(beats(&t.read_new(&p).unwrap()), ["one"]);
        assert!(t.read_new(&p).unwrap().is_empty());
        append(&p, "{\"ts\":\"2026-01-01T00:00:01Z\",\"no");
        assert!(
            t.read_new(&p).unwrap().is_empty(),
            "a torn line is not judged"
        );
        append(&p, "te\":\"two\"}\n");
        assert_eq!(beats(&t.read_new(&p).unwrap()), ["two"]);
    }

    #[test]
    fn bad_lines_are_reported_and_the_good_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        append(
            &p,
            "{\"ts\":\"2026-01-01T00:00:00Z\",\"note\":\"a\"}\nnot json\n{\"status\":\"idle\"}\n{\"ts\":\"2026-01-01T00:00:00Z\",\"progress\":2}\n{\"ts\":\"2026-01-01T00:00:02Z\",\"status\":\"asleep\"}\n{\"ts\":\"2026-01-01T00:00:03Z\",\"note\":\"b\",\"extra\":1}\n",
        );
        let lines = Tail::default().read_new(&p).unwrap();
        let got = beats(&lines);
        assert_eq!(got.len(), 6, "{got:?}");
        assert_eq!(got[0], "a");
        assert!(got[1].starts_with("bad: expected"), "{got:?}");
        assert!(got[2].contains("missing field `ts`"), "{got:?}");
        assert!(got[3].contains("progress"), "{got:?}");
        assert!(got[4].contains("unknown variant `asleep`"), "{got:?}");
        assert_eq!(got[5], "b");
        assert!(
            matches!(lines[1], Line::Bad { offset, .. } if offset == 41),
            "{lines:?}"
        );
    }

    #[test]
    fn a_beat_appended_to_a_torn_line_is_rescued() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        append(
            &p,
            "{\"ts\":\"2026-01-01T00:00:00Z\",\"no{\"ts\":\"2026-01-01T00:00:01Z\",\"note\":\"after\"}\n",
        );
        let got = beats(&Tail::default().read_new(&p).unwrap());
        assert_eq!(got.len(), 2);
        assert!(got[0].contains("torn line"), "{got:?}");
        assert_eq!(got[1], "after");
    }

    #[test]
    fn truncated_or_replaced_files_are_read_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        append(
            &p,
            "{\"ts\":\"2026-01-01T00:00:00Z\",\"note\":\"long first line\"}\n",
        );
        let mut t = Tail::default();
        t.read_new(&p).unwrap();
        std::fs::write(&p, "{\"ts\":\"2026-01-01T00:00:09Z\",\"note\":\"new\"}\n").unwrap();
        assert_eq!(beats(&t.read_new(&p).unwrap()), ["new"]);
        let q = dir.path().join("b.jsonl");
        std::fs::write(
            &q,
            "{\"ts\":\"2026-01-01T00:00:10Z\",\"note\":\"replaced\"}\n",
        )
        .unwrap();
        std::fs::rename(&q, &p).unwrap();
        assert_eq!(beats(&t.read_new(&p).unwrap()), ["replaced"]);
    }

    #[test]
    fn at_end_finds_the_last_good_beat_without_reading_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        let mut text = String::new();
        for i in 0..5000 {
            text.push_str(&format!(
                "{{\"ts\":\"2026-01-01T00:00:00Z\",\"note\":\"n{i}\"}}\n"
            ));
        }
        text.push_str("garbage\n{\"ts\":\"2026-01-0"); // a bad line, then a torn one
        append(&p, &text);
        let (mut t, last) = Tail::at_end(&p);
        assert_eq!(last.unwrap().note.as_deref(), Some("n4999"));
        append(&p, "1T00:00:00Z\",\"note\":\"done\"}\n");
        assert_eq!(beats(&t.read_new(&p).unwrap()), ["done"]);
        assert_eq!(Tail::at_end(&dir.path().join("none.jsonl")).1, None);
    }

    #[test]
    fn ratio_uses_the_beat_limit_first() {
        let b = Beat::parse("{\"ts\":\"2026-01-01T00:00:00Z\",\"ctx_used\":60}").unwrap();
        assert_eq!(b.ctx_ratio(Some(100)), Some(0.6));
        assert_eq!(b.ctx_ratio(None), None);
        let b = Beat::parse("{\"ts\":\"2026-01-01T00:00:00Z\",\"ctx_used\":60,\"ctx_limit\":200}")
            .unwrap();
        assert_eq!(b.ctx_ratio(Some(100)), Some(0.3));
    }
}
