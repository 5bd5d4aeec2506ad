//! Where a JSON pointer points in YAML text: serde_yaml keeps no spans, so schema errors
//! (which name the offending node by its JSON pointer) are placed by reading the text again.
//!
//! [`Doc`] walks block-style YAML by indentation (`key:` entries and `- ` items) and flow
//! collections (`[...]`, `{...}`, hence JSON too) by brackets and commas. It is a best-effort
//! finder, not a parser: a segment it cannot find yields the deepest node found so far.

/// The unescaped segments of a JSON pointer; `None` when it does not start with `/`.
pub(super) fn segments(pointer: &str) -> Option<impl Iterator<Item = String> + '_> {
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~")),
    )
}

/// Map a JSON pointer like `/requires/0` or `/pas/history/2/at` to the 1-based (line, column)
/// of that node in block-style YAML text (flow collections and JSON work too). Best effort:
/// a segment that cannot be found yields the deepest node found so far; `None` when the text
/// is empty or the pointer is malformed. A value on its key's line is reported at the value;
/// a block value at its key.
pub fn locate(yaml_text: &str, pointer: &str) -> Option<(usize, usize)> {
    let doc = Doc::new(yaml_text);
    doc.find(pointer).map(|(node, _)| doc.pos(node.report))
}

/// A node found in the text: byte offsets of its content, of where to report it, of its key.
#[derive(Clone, Copy)]
pub(super) struct Node {
    at: Option<usize>,
    pub(super) report: usize,
    pub(super) key: Option<usize>,
}

fn node(at: Option<usize>, report: usize, key: Option<usize>) -> Node {
    Node { at, report, key }
}

/// YAML text cut into lines, for the indentation-based search of [`locate()`].
pub(super) struct Doc<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Doc<'a> {
    pub(super) fn new(text: &'a str) -> Doc<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Doc { text, starts }
    }

    fn line(&self, i: usize) -> &'a str {
        let end = self.starts.get(i + 1).map_or(self.text.len(), |&e| e - 1);
        let line = &self.text[self.starts[i]..end.max(self.starts[i])];
        line.strip_suffix('\r').unwrap_or(line)
    }

    fn line_of(&self, offset: usize) -> usize {
        self.starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1)
    }

    pub(super) fn pos(&self, offset: usize) -> (usize, usize) {
        let line = self.line_of(offset);
        let col = self.text[self.starts[line]..offset].chars().count() + 1;
        (line + 1, col)
    }

    /// The indentation of line `i`, or `None` for a blank or comment line.
    fn indent(&self, i: usize) -> Option<usize> {
        let line = self.line(i);
        let body = line.trim_start_matches(' ');
        (!body.is_empty() && !body.starts_with('#')).then_some(line.len() - body.len())
    }

    /// The first content line after line `i` (skipping the `---` document marker).
    fn next_content(&self, i: usize) -> Option<(usize, usize)> {
        (i..self.starts.len())
            .filter(|&l| self.line(l).trim_end() != "---")
            .find_map(|l| self.indent(l).map(|ind| (l, ind)))
    }

    pub(super) fn find(&self, pointer: &str) -> Option<(Node, bool)> {
        let (l, ind) = self.next_content(0)?;
        let at = self.starts[l] + ind;
        let mut node = node(Some(at), at, None);
        if pointer.is_empty() {
            return Some((node, true));
        }
        for seg in segments(pointer)? {
            match self.child(node, &seg) {
                Some(child) => node = child,
                None => return Some((node, false)),
            }
        }
        Some((node, true))
    }

    fn child(&self, parent: Node, seg: &str) -> Option<Node> {
        let at = parent.at?;
        match self.text.as_bytes().get(at)? {
            b'[' | b'{' => {
                let items = flow_items(self.text, at);
                let item = match seg.parse::<usize>() {
                    Ok(n) if self.text.as_bytes()[at] == b'[' => items.get(n),
                    _ => items.iter().find(|it| it.0.as_deref() == Some(seg)),
                }?;
                let key = item.0.as_ref().map(|_| item.1);
                Some(node(Some(item.2), item.2, key))
            }
            _ if is_dash(&self.text[at..]) => self.seq_child(at, seg.parse().ok()?),
            _ => self.map_child(at, seg),
        }
    }

    /// The entries of the block collection whose first entry is at `at`: that one and the
    /// lines below at its column (`dash`: only `- ` lines; else none of them).
    fn entries(&self, at: usize, dash: bool) -> Vec<usize> {
        let first = self.line_of(at);
        let col = at - self.starts[first];
        let mut out = vec![at];
        for l in first + 1..self.starts.len() {
            match self.indent(l) {
                Some(ind) if ind < col => break,
                Some(ind) if ind == col => {
                    let here = self.starts[l] + col;
                    if is_dash(&self.text[here..]) == dash {
                        out.push(here);
                    } else if dash {
                        break;
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The node of a value that starts at `from` (after `key:` or `-`) on the same line,
    /// or on the lines below when that line has nothing more.
    fn value(&self, from: usize, owner: usize, key: Option<usize>) -> Node {
        let line = self.line_of(owner);
        let end = self.starts[line] + self.line(line).len();
        let rest = &self.text[from.min(end)..end];
        let v = from + (rest.len() - rest.trim_start().len());
        if v < end && !self.text[v..].starts_with('#') {
            return node(Some(v), v, key);
        }
        let col = owner - self.starts[line];
        let below = self.next_content(line + 1).filter(|&(l, ind)| {
            ind > col || (ind == col && key.is_some() && is_dash(&self.line(l)[ind..]))
        });
        let at = below.map(|(l, ind)| self.starts[l] + ind);
        node(at, owner, key)
    }

    fn seq_child(&self, at: usize, index: usize) -> Option<Node> {
        let item = *self.entries(at, true).get(index)?;
        Some(self.value(item + 1, item, None))
    }

    fn map_child(&self, at: usize, seg: &str) -> Option<Node> {
        self.entries(at, false).into_iter().find_map(|e| {
            let line = self.line_of(e);
            let end = self.starts[line] + self.line(line).len();
            let (key, after) = block_key(&self.text[e..end])?;
            (key == seg).then(|| self.value(e + after, e, Some(e)))
        })
    }
}

fn is_dash(s: &str) -> bool {
    s == "-" || s.starts_with("- ") || s.starts_with("-\n") || s.starts_with("-\r")
}

/// The key at the start of a block mapping entry, and the offset just after its colon.
fn block_key(s: &str) -> Option<(String, usize)> {
    let (key, rest) = match s.as_bytes().first()? {
        b'"' | b'\'' => {
            let close = skip_quoted(s.as_bytes(), 0);
            (unquote(&s[..close]), &s[close..])
        }
        b'[' | b'{' | b'#' | b'|' | b'>' => return None,
        _ => {
            let colon = s
                .match_indices(':')
                .map(|(i, _)| i)
                .find(|&i| s[i + 1..].is_empty() || s[i + 1..].starts_with([' ', '\t']))?;
            (s[..colon].trim_end().to_string(), &s[colon..])
        }
    };
    let trimmed = rest.trim_start_matches([' ', '\t']);
    trimmed
        .starts_with(':')
        .then(|| (key, s.len() - trimmed.len() + 1))
}

/// The index just past the quoted scalar that opens at `open` (JSON/YAML escapes).
fn skip_quoted(b: &[u8], open: usize) -> usize {
    let quote = b[open];
    let mut i = open + 1;
    while i < b.len() {
        match b[i] {
            b'\\' if quote == b'"' => i += 1,
            b'\'' if quote == b'\'' && b.get(i + 1) == Some(&b'\'') => i += 1,
            c if c == quote => return i + 1,
            _ => {}
        }
        i += 1;
    }
    b.len()
}

fn unquote(s: &str) -> String {
    if s.starts_with('"') {
        serde_json::from_str(s).unwrap_or_else(|_| s.trim_matches('"').to_string())
    } else if let Some(inner) = s.strip_prefix('\'') {
        inner.strip_suffix('\'').unwrap_or(inner).replace("''", "'")
    } else {
        s.to_string()
    }
}

/// The items of the flow collection opening at `open`: (key, item start, value start).
fn flow_items(text: &str, open: usize) -> Vec<(Option<String>, usize, usize)> {
    let b = text.as_bytes();
    let is_map = b[open] == b'{';
    let skip_ws = |mut i: usize| {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'#') {
            if b[i] == b'#' {
                i = text[i..].find('\n').map_or(b.len(), |n| i + n);
            } else {
                i += 1;
            }
        }
        i
    };
    let mut items = Vec::new();
    let mut i = skip_ws(open + 1);
    while i < b.len() && b[i] != b']' && b[i] != b'}' {
        let (start, mut key, mut value, mut depth, mut prev) = (i, None, i, 0usize, b'[');
        while i < b.len() {
            let c = b[i];
            match c {
                b'"' | b'\'' if b"[{,:".contains(&prev) => {
                    i = skip_quoted(b, i);
                    prev = c;
                    continue;
                }
                b'[' | b'{' => depth += 1,
                b']' | b'}' if depth == 0 => break,
                b']' | b'}' => depth -= 1,
                b',' if depth == 0 => break,
                b':' if depth == 0 && is_map && key.is_none() => {
                    let next = b.get(i + 1).copied().unwrap_or(b' ');
                    if prev == b'"' || prev == b'\'' || b" \t\r\n,]}".contains(&next) {
                        key = Some(unquote(text[start..i].trim()));
                        value = skip_ws(i + 1);
                    }
                }
                _ => {}
            }
            if !c.is_ascii_whitespace() {
                prev = c;
            }
            i += 1;
        }
        items.push((key, start, value));
        if b.get(i) == Some(&b',') {
            i += 1;
        }
        i = skip_ws(i);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::super::tests::CARD;
    use super::*;

    #[test]
    fn locate_nested_nodes_and_list_items() {
        #[rustfmt::skip]
        let cases = [
            ("", (1, 1)), ("/priority", (5, 11)), ("/requires/1", (4, 18)), ("/nope", (1, 1)),
            ("/resources/mem_mb", (6, 31)), ("/pas", (10, 1)), ("/pas/history", (15, 3)),
            ("/pas/history/0", (16, 7)), ("/pas/history/0/at", (16, 11)),
            ("/pas/history/0/reason", (20, 15)),
            ("/pas/history/7/at", (15, 3)), // no item 7: falls back to the parent
        ];
        for (pointer, at) in cases {
            assert_eq!(locate(CARD, pointer), Some(at), "{pointer}");
        }
        let seq = "list:\n- a\n- b:\n    c: 1\n  'd': x # note\nafter: 2\n";
        assert_eq!(locate(seq, "/list/1/d"), Some((5, 8)));
        assert_eq!(locate(seq, "/list/1/b/c"), Some((4, 8)));
        assert_eq!(locate(seq, "/after"), Some((6, 8)));
        let json = "{\n  \"a\": {\"b\": [1, {\"c\": \"x,y\"}]},\n  \"é\": 2\n}";
        assert_eq!(locate(json, "/a/b/1/c"), Some((2, 24)));
        assert_eq!(locate(json, "/é"), Some((3, 8)));
        assert_eq!(locate("", "/a"), None);
        assert_eq!(locate("a: 1", "no-slash"), None);
    }
}
