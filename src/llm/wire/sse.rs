//! An incremental parser of server-sent events over the byte chunks a response body
//! arrives in.
//!
//! Chunks split wherever the network pleases: in the middle of a line, of a UTF-8
//! character, or between the `\r` and `\n` of a line ending. The parser keeps the
//! unfinished tail and only ever decodes whole lines, following the WHATWG rules that
//! matter to LLM providers: `\n`, `\r\n` and `\r` end lines, `:` starts a comment, `data:`
//! lines of one event join with `\n`, a blank line dispatches, an event without data is
//! dropped. `id` and `retry` are ignored (nobody reconnects an LLM stream).

/// Most bytes one line or one event's data may hold; beyond it the stream is garbage.
const MAX_EVENT_BYTES: usize = 16 << 20;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field; empty when the event had none (the default "message").
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// The event stream broke the size limit (no line end or dispatch in sight).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an SSE event is larger than {MAX_EVENT_BYTES} bytes")]
pub struct TooLarge;

/// Parser state between chunks.
#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes not yet ending in a line terminator.
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no line end (so a long line is scanned once).
    scanned: usize,
    event: String,
    data: String,
    has_data: bool,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one chunk; every event it completes is appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), TooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        let mut i = self.scanned;
        while i < self.buf.len() {
            let b = self.buf[i];
            if b != b'\n' && b != b'\r' {
                i += 1;
                continue;
            }
            // A `\r` last in the buffer may be the first half of `\r\n`: wait for more.
            if b == b'\r' && i + 1 == self.buf.len() {
                break;
            }
            let end = i;
            i += if b == b'\r' && self.buf[i + 1] == b'\n' {
                2
            } else {
                1
            };
            let line = String::from_utf8_lossy(&self.buf[start..end]).into_owned();
            start = i;
            self.line(&line, out);
        }
        self.buf.drain(..start);
        self.scanned = i - start;
        if self.buf.len() > MAX_EVENT_BYTES || self.data.len() > MAX_EVENT_BYTES {
            return Err(TooLarge);
        }
        Ok(())
    }

    /// The body ended: a last line without its terminator, and an event without its blank
    /// line, still count. (The standard drops them; servers that omit the final blank
    /// line after `[DONE]` are common enough to be lenient.)
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        if !self.buf.is_empty() {
            let mut tail = std::mem::take(&mut self.buf);
            self.scanned = 0;
            if tail.last() == Some(&b'\r') {
                tail.pop();
            }
            let line = String::from_utf8_lossy(&tail).into_owned();
            self.line(&line, out);
        }
        self.line("", out);
    }

    fn line(&mut self, line: &str, out: &mut Vec<Event>) {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if self.has_data {
                self.has_data = false;
                let mut data = std::mem::take(&mut self.data);
                data.pop(); // the `\n` after the last data line
                out.push(Event { event, data });
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => self.event = value.to_owned(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str) -> Event {
        Event {
            event: event.into(),
            data: data.into(),
        }
    }

    fn parse_in_chunks(input: &[u8], size: usize) -> Vec<Event> {
        let mut p = Parser::new();
        let mut out = Vec::new();
        for chunk in input.chunks(size) {
            p.push(chunk, &mut out).unwrap();
        }
        p.finish(&mut out);
        out
    }

    #[test]
    fn frames_split_anywhere_parse_the_same() {
        let input = "event: message_start\r\ndata: {\"a\":1}\r\n\r\n: keep-alive comment\n\ndata: caf\u{e9} \u{1f600}\ndata:second line\n\nevent: ping\n\ndata: [DONE]\r\r".as_bytes();
        let want = vec![
            ev("message_start", "{\"a\":1}"),
            ev("", "caf\u{e9} \u{1f600}\nsecond line"),
            ev("", "[DONE]"),
        ];
        for size in 1..=input.len() {
            assert_eq!(parse_in_chunks(input, size), want, "chunk size {size}");
        }
    }

    #[test]
    fn cr_lf_split_between_chunks_is_one_line_end() {
        let mut p = Parser::new();
        let mut out = Vec::new();
        p.push(b"data: x\r", &mut out).unwrap();
        p.push(b"\n\r", &mut out).unwrap();
        assert!(
            out.is_empty(),
            "the event is not dispatched before its blank line"
        );
        p.push(b"\ndata: y\n\n", &mut out).unwrap();
        assert_eq!(out, vec![ev("", "x"), ev("", "y")]);
    }

    #[test]
    fn an_event_without_data_is_dropped_and_its_name_forgotten() {
        let out = parse_in_chunks(b"event: ping\n\ndata: 1\n\n", 64);
        assert_eq!(out, vec![ev("", "1")]);
        let out = parse_in_chunks(b"id: 7\nretry: 10\ndata\n\n", 64);
        assert_eq!(out, vec![ev("", "")], "a bare `data` field is empty data");
    }

    #[test]
    fn the_last_event_counts_without_its_blank_line() {
        assert_eq!(parse_in_chunks(b"data: [DONE]", 5), vec![ev("", "[DONE]")]);
        assert_eq!(
            parse_in_chunks(b"data: [DONE]\n", 5),
            vec![ev("", "[DONE]")]
        );
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut p = Parser::new();
        let mut out = Vec::new();
        let big = vec![b'x'; MAX_EVENT_BYTES / 4 + 1];
        let mut result = Ok(());
        for _ in 0..4 {
            result = p.push(&big, &mut out);
        }
        assert_eq!(result, Err(TooLarge));
    }
}
