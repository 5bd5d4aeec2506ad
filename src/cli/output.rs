//! Printing: aligned tables on a terminal, plain aligned text when piped, JSON on request.

use std::io::{IsTerminal, Write};

use comfy_table::{presets, ContentArrangement, Table};

/// Where command output goes and how it looks.
pub struct Out {
    tty: bool,
    /// Set: output is kept here instead of printed (`pas mcp`, whose stdout is the
    /// protocol, runs the very same commands and returns what they would print).
    captured: Option<std::cell::RefCell<String>>,
}

impl Out {
    /// Standard output, styled when it is a terminal.
    pub fn stdout() -> Out {
        Out {
            tty: std::io::stdout().is_terminal(),
            captured: None,
        }
    }

    /// Output kept in memory as plain text; [`Out::take`] returns it.
    pub fn capture() -> Out {
        Out {
            tty: false,
            captured: Some(Default::default()),
        }
    }

    /// What a capturing `Out` kept (empty for standard output).
    pub fn take(&self) -> String {
        self.captured.as_ref().map(|c| c.take()).unwrap_or_default()
    }

    /// Writes one line to wherever output goes.
    fn write_line(&self, line: &str) {
        match &self.captured {
            Some(c) => {
                let mut c = c.borrow_mut();
                c.push_str(line);
                c.push('\n');
            }
            None => {
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
        }
    }

    /// A table with these headers, in the style of the output.
    pub fn table(&self, headers: &[&str]) -> Table {
        let mut t = Table::new();
        if self.tty {
            t.load_preset(presets::UTF8_HORIZONTAL_ONLY)
                .set_content_arrangement(ContentArrangement::Dynamic);
        } else {
            t.load_preset(presets::NOTHING)
                .force_no_tty()
                .set_content_arrangement(ContentArrangement::Disabled);
        }
        t.set_header(headers.iter().map(|h| h.to_string()));
        t
    }

    /// Prints a table (trailing spaces trimmed, so piped text diffs cleanly).
    pub fn print_table(&self, t: &Table) {
        let text = t.to_string();
        for line in text.lines() {
            let line = if self.tty { line } else { line.trim_end() };
            self.write_line(line.strip_prefix(' ').filter(|_| !self.tty).unwrap_or(line));
        }
    }

    /// Prints a line.
    pub fn line(&self, s: impl AsRef<str>) {
        self.write_line(s.as_ref());
    }

    /// Says why nothing was done (to stderr, so a script reading stdout sees no result;
    /// a capturing `Out` keeps it as the text).
    pub fn note(&self, s: impl AsRef<str>) {
        match &self.captured {
            Some(_) => self.write_line(s.as_ref()),
            None => eprintln!("{}", s.as_ref()),
        }
    }

    /// Prints pretty JSON.
    pub fn json(&self, v: &serde_json::Value) {
        let text = serde_json::to_string_pretty(v).unwrap_or_default();
        self.line(text);
    }
}
