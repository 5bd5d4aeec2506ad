//! How deeply a YAML text nests, found by a linear scan before any parser sees it.
//!
//! serde_yaml reads a document's whole event stream before its recursion limit applies,
//! and that read is quadratic in the depth (minutes for a 1 MiB bracket tower), while a
//! typed parse that skips unknown keys has no limit at all. Cards are checked here first.

/// Flow nesting beyond this is refused before any YAML parser sees it.
pub const MAX_FLOW_DEPTH: usize = 128;

/// What a cheap scan says about a text's nesting.
#[derive(Debug, Default)]
pub struct Depth {
    /// Deep enough that serde_yaml's recursion limit should judge it (a Value parse).
    pub maybe: bool,
    /// Flow brackets nested beyond [`MAX_FLOW_DEPTH`], first on this line (1-based).
    pub too_deep: Option<usize>,
}

/// Scans `text` for deep nesting: flow brackets opened more than 32 deep, or lines
/// indented more than 128 columns. Linear, so the common card pays nothing; quoted text
/// and comments are skipped roughly (a false alarm only costs one more parse).
pub fn scan(text: &str) -> Depth {
    let mut out = Depth::default();
    let mut line = 1usize;
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut at_line_start = true;
    let mut indent = 0usize;
    let mut comment = false;
    for &b in text.as_bytes() {
        if b == b'\n' {
            at_line_start = true;
            indent = 0;
            comment = false;
            line += 1;
            continue;
        }
        if at_line_start {
            if b == b' ' {
                indent += 1;
                out.maybe |= indent > 128;
                continue;
            }
            at_line_start = false;
        }
        if comment {
            continue;
        }
        match (quote, b) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'#') => comment = true,
            (None, b'[' | b'{') => {
                depth += 1;
                out.maybe |= depth > 32;
                if depth > MAX_FLOW_DEPTH {
                    out.too_deep = Some(line);
                    return out;
                }
            }
            (None, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    out
}
