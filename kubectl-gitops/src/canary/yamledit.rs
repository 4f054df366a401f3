//! Surgical edits of one YAML document's text: find a node by its path and
//! replace, insert or remove exactly its bytes, so that every other byte of
//! the file (comments, key order, quoting, the other routes and documents)
//! stays as the person wrote it.
//!
//! serde-saphyr gives values without positions, so this reads the same text
//! with its event parser (granit-parser, already in the tree through
//! serde-saphyr) into a small tree of nodes with byte ranges. Each edit is
//! one parse, one change; the caller parses again after each, so no offset
//! is ever carried across an edit.

use std::{iter::Peekable, ops::Range};

use anyhow::{Result, anyhow, bail};
use granit_parser::{Event, Parser, StructureStyle};

/// One node of a document, with where its text is.
#[derive(Debug, Clone)]
pub enum Node {
    Scalar {
        value: String,
        /// The scalar's text, quotes included.
        range: Range<usize>,
        /// Where its anchor (`&name`) is, when it has one: aliases
        /// elsewhere share it.
        anchored: Option<usize>,
    },
    Seq {
        items: Vec<Node>,
        range: Range<usize>,
        flow: bool,
        anchored: Option<usize>,
    },
    Map {
        entries: Vec<(Node, Node)>,
        range: Range<usize>,
        flow: bool,
        anchored: Option<usize>,
    },
    /// An alias (`*name`): never edited through.
    Alias { range: Range<usize> },
}

impl Node {
    /// Where the node's text is. For a block collection: from its first
    /// child to the end of its last one.
    pub fn range(&self) -> Range<usize> {
        match self {
            Node::Scalar { range, .. }
            | Node::Seq { range, .. }
            | Node::Map { range, .. }
            | Node::Alias { range } => range.clone(),
        }
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map { entries, .. } => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The items of a sequence (none for anything else).
    pub fn items(&self) -> &[Node] {
        match self {
            Node::Seq { items, .. } => items,
            _ => &[],
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// Where the first anchor (`&name`) or alias (`*name`) in this node is,
    /// itself included: text shared with other nodes, which an edit made
    /// here would change there too.
    pub fn shared(&self) -> Option<usize> {
        match self {
            Node::Alias { range } => Some(range.start),
            Node::Scalar { anchored, .. } => *anchored,
            Node::Seq {
                items, anchored, ..
            } => anchored.or_else(|| items.iter().find_map(Node::shared)),
            Node::Map {
                entries, anchored, ..
            } => anchored.or_else(|| {
                entries
                    .iter()
                    .find_map(|(k, v)| k.shared().or_else(|| v.shared()))
            }),
        }
    }
}

/// The line break `text` uses: `\r\n` when its first line ends so, else `\n`.
pub fn newline(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if i > 0 && text.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// The 1-based line of byte `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// The document in `text` (one YAML document; comments and markers around
/// it are fine) as a node tree; `None` for an empty document.
pub fn parse(text: &str) -> Result<Option<Node>> {
    let mut events: Vec<Located> = Vec::new();
    let options = granit_parser::options! { emit_anchor_events: true };
    for next in Parser::new_from_str_with_options(text, options) {
        let (event, span) = next.map_err(|e| anyhow!("{e}"))?;
        let range = span
            .byte_range()
            .ok_or_else(|| anyhow!("the YAML parser gave no byte offsets"))?;
        match event {
            Event::StreamEnd => break,
            // right after the node it anchors: where the `&name` is
            Event::Anchor(..) => {
                if let Some(last) = events.last_mut() {
                    last.anchor = Some(range.start);
                }
            }
            Event::StreamStart
            | Event::DocumentStart(..)
            | Event::DocumentEnd
            | Event::Comment(..) => {}
            event => events.push(Located {
                event,
                range,
                anchor: None,
            }),
        }
    }
    let mut iter = events.into_iter().peekable();
    if iter.peek().is_none() {
        return Ok(None);
    }
    let node = build(&mut iter, 0)?;
    if iter.peek().is_some() {
        bail!("the text holds more than one YAML document");
    }
    Ok(Some(node))
}

/// A parser event, where its text is, and where its anchor is, if any.
struct Located<'a> {
    event: Event<'a>,
    range: Range<usize>,
    anchor: Option<usize>,
}

/// Nesting limit while building; the loader refuses deeper documents anyway.
const MAX_DEPTH: usize = 256;

fn build<'a, I>(iter: &mut Peekable<I>, depth: usize) -> Result<Node>
where
    I: Iterator<Item = Located<'a>>,
{
    if depth > MAX_DEPTH {
        bail!("the document nests deeper than {MAX_DEPTH} levels");
    }
    let Some(Located {
        event,
        range,
        anchor,
    }) = iter.next()
    else {
        bail!("the document ends in the middle of a node");
    };
    match event {
        Event::Scalar(value, ..) => Ok(Node::Scalar {
            value: value.into_owned(),
            range,
            anchored: anchor,
        }),
        Event::Alias(_) | Event::UnresolvedAlias(_) => Ok(Node::Alias { range }),
        Event::SequenceStart(style, ..) => {
            let flow = style == StructureStyle::Flow;
            let mut items = Vec::new();
            let end = loop {
                match iter.peek() {
                    Some(Located {
                        event: Event::SequenceEnd,
                        range: r,
                        ..
                    }) => {
                        let r = r.clone();
                        iter.next();
                        break r.end;
                    }
                    Some(_) => items.push(build(iter, depth + 1)?),
                    None => bail!("the document ends inside a sequence"),
                }
            };
            let range = collection_range(flow, range, end, items.iter());
            Ok(Node::Seq {
                items,
                range,
                flow,
                anchored: anchor,
            })
        }
        Event::MappingStart(style, ..) => {
            let flow = style == StructureStyle::Flow;
            let mut entries = Vec::new();
            let end = loop {
                match iter.peek() {
                    Some(Located {
                        event: Event::MappingEnd,
                        range: r,
                        ..
                    }) => {
                        let r = r.clone();
                        iter.next();
                        break r.end;
                    }
                    Some(_) => {
                        let key = build(iter, depth + 1)?;
                        let value = build(iter, depth + 1)?;
                        entries.push((key, value));
                    }
                    None => bail!("the document ends inside a mapping"),
                }
            };
            let range =
                collection_range(flow, range, end, entries.iter().flat_map(|(k, v)| [k, v]));
            Ok(Node::Map {
                entries,
                range,
                flow,
                anchored: anchor,
            })
        }
        _ => bail!("unexpected YAML event {event:?}"),
    }
}

/// A flow collection spans its brackets; a block one, its children (the
/// parser's end event of a block collection sits at the next token, which
/// may be lines further down, past comments).
fn collection_range<'n>(
    flow: bool,
    start: Range<usize>,
    end: usize,
    children: impl Iterator<Item = &'n Node>,
) -> Range<usize> {
    if flow {
        return start.start..end;
    }
    let mut range = start.start..start.start;
    for child in children {
        let r = child.range();
        range.start = range.start.min(r.start);
        range.end = range.end.max(r.end);
    }
    range
}

/// Follow `path` (map keys, and `[i]` as a number for sequence items).
pub fn find<'n>(root: &'n Node, path: &[Step<'_>]) -> Option<&'n Node> {
    let mut node = root;
    for step in path {
        node = match step {
            Step::Key(k) => node.get(k)?,
            Step::Index(i) => node.items().get(*i)?,
        };
    }
    Some(node)
}

/// One step of a path into a document.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `text` with `range` replaced by `with`.
pub fn splice(text: &str, range: Range<usize>, with: &str) -> String {
    let mut out = String::with_capacity(text.len() + with.len());
    out.push_str(&text[..range.start]);
    out.push_str(with);
    out.push_str(&text[range.end..]);
    out
}

fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |i| i + 1)
}

/// The end of the line holding `at`, before its line break (`\n` or `\r\n`).
fn line_end(text: &str, at: usize) -> usize {
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    if end > at && text.as_bytes()[end - 1] == b'\r' {
        end - 1
    } else {
        end
    }
}

/// The column of `at` when only spaces (and a sequence's `- `) precede it
/// on its line: the indentation of a block mapping's keys.
fn key_column(text: &str, at: usize) -> Result<usize> {
    let head = &text[line_start(text, at)..at];
    if head.chars().all(|c| c == ' ' || c == '-') {
        Ok(head.chars().count())
    } else {
        bail!("cannot tell the indentation of the mapping (tabs or text before its first key)")
    }
}

/// `text` with `key: value` added as the last entry of `map`. `value` is
/// YAML text for one line, or a nested block starting with a newline whose
/// lines are indented relative to `key`.
pub fn insert_entry(text: &str, map: &Node, key: &str, value: &Value) -> Result<String> {
    let Node::Map {
        entries,
        range,
        flow,
        ..
    } = map
    else {
        bail!("not a mapping");
    };
    if *flow {
        // `{a: 1}` -> `{a: 1, key: value}`; `{}` -> `{key: value}`.
        let close = range.end - 1;
        let sep = if entries.is_empty() { "" } else { ", " };
        return Ok(splice(
            text,
            close..close,
            &format!("{sep}{key}: {}", value.flow()),
        ));
    }
    let Some((first, _)) = entries.first() else {
        bail!("cannot add to an empty block mapping");
    };
    let indent = key_column(text, first.range().start)?;
    let end = range.end;
    let pad = " ".repeat(indent);
    let nl = newline(text);
    let line = match value {
        Value::Scalar(v) => format!("{pad}{key}: {v}"),
        Value::Map(entries) => {
            // nested one level deeper, by the step the document indents by
            let step = indent_step(text);
            let mut out = format!("{pad}{key}:");
            for (k, v) in entries {
                out.push_str(&format!("{nl}{pad}{step}{k}: {v}"));
            }
            out
        }
    };
    if end > 0 && text.as_bytes()[end - 1] == b'\n' {
        // The last value was a block scalar that took its newline along.
        Ok(splice(text, end..end, &format!("{line}{nl}")))
    } else {
        let at = line_end(text, end);
        Ok(splice(text, at..at, &format!("{nl}{line}")))
    }
}

/// A value to insert: a scalar's text, or a mapping of scalars' texts.
#[derive(Debug, Clone)]
pub enum Value {
    Scalar(String),
    Map(Vec<(String, String)>),
}

impl Value {
    /// In flow style: `1`, `{a: 1, b: 2}`.
    fn flow(&self) -> String {
        match self {
            Value::Scalar(v) => v.clone(),
            Value::Map(entries) => {
                let inner: Vec<String> = entries.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", inner.join(", "))
            }
        }
    }
}

/// The indentation step of the document: the smallest indentation of a
/// line that has one (two spaces when none does).
fn indent_step(text: &str) -> String {
    let step = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| l.len() - l.trim_start_matches(' ').len())
        .filter(|n| *n > 0)
        .min()
        .unwrap_or(2);
    " ".repeat(step)
}

/// The text of item `index` of a block sequence, from the start of its `-`
/// line to the end of its last line, newline included.
fn block_item_lines(text: &str, item: &Node) -> Result<Range<usize>> {
    let start = item.range().start;
    let head = &text[line_start(text, start)..start];
    if !head.trim_start().starts_with('-') || !head.chars().all(|c| c == ' ' || c == '-') {
        bail!("a sequence item whose `-` is not on its first line");
    }
    let end = item.range().end;
    let end = if end > 0 && text.as_bytes()[end - 1] == b'\n' {
        end
    } else {
        text[end..].find('\n').map_or(text.len(), |i| end + i + 1)
    };
    Ok(line_start(text, start)..end)
}

/// `text` with item `index` of `seq` written twice, the copy right after it.
pub fn duplicate_item(text: &str, seq: &Node, index: usize) -> Result<String> {
    let Node::Seq { items, flow, .. } = seq else {
        bail!("not a sequence");
    };
    let item = items.get(index).ok_or_else(|| anyhow!("no item {index}"))?;
    if *flow {
        let r = item.range();
        let copy = format!(", {}", &text[r.clone()]);
        return Ok(splice(text, r.end..r.end, &copy));
    }
    let lines = block_item_lines(text, item)?;
    let mut copy = text[lines.clone()].to_string();
    if !copy.ends_with('\n') {
        copy.insert_str(0, newline(text));
    }
    Ok(splice(text, lines.end..lines.end, &copy))
}

/// `text` without item `index` of `seq`.
pub fn remove_item(text: &str, seq: &Node, index: usize) -> Result<String> {
    let Node::Seq { items, flow, .. } = seq else {
        bail!("not a sequence");
    };
    if items.len() < 2 {
        bail!("refusing to remove the only item of a sequence");
    }
    let item = items.get(index).ok_or_else(|| anyhow!("no item {index}"))?;
    if *flow {
        // Take the comma on one side along.
        let range = match items.get(index + 1) {
            Some(next) => item.range().start..next.range().start,
            None => items[index - 1].range().end..item.range().end,
        };
        return Ok(splice(text, range, ""));
    }
    let lines = block_item_lines(text, item)?;
    Ok(splice(text, lines, ""))
}

/// `value` as a scalar written like `original` (a scalar's text): in the
/// same quotes, or plain when it was plain and `value` reads back as the
/// same string.
pub fn scalar_like(original: &str, value: &str) -> String {
    let plain = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !matches!(
            value.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    match original.chars().next() {
        Some('"') => serde_json::to_string(value).expect("a string serializes"),
        Some('\'') => single_quoted(value),
        _ if plain => value.to_string(),
        _ => single_quoted(value),
    }
}

/// A string as a YAML single-quoted scalar (`'` doubled), which keeps any
/// JSON text as it is.
pub fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn root(text: &str) -> Node {
        parse(text).unwrap().unwrap()
    }

    #[test]
    fn ranges_cover_scalars_and_block_collections() {
        let text = "a:\n  b: 1 # one\n  c: 'x'\nd: [1, 2]\n";
        let r = root(text);
        let b = find(&r, &[Step::Key("a"), Step::Key("b")]).unwrap();
        assert_eq!(&text[b.range()], "1");
        let c = find(&r, &[Step::Key("a"), Step::Key("c")]).unwrap();
        assert_eq!(&text[c.range()], "'x'");
        assert_eq!(&text[r.get("a").unwrap().range()], "b: 1 # one\n  c: 'x'");
        assert_eq!(&text[r.get("d").unwrap().range()], "[1, 2]");
    }

    #[test]
    fn inserts_an_entry_at_the_mapping_indentation() {
        let text = "m:\n  - x: 1 # keep\n    y: 2\n  - z: 3\nafter: 1\n";
        let r = root(text);
        let item = find(&r, &[Step::Key("m"), Step::Index(0)]).unwrap();
        let out = insert_entry(text, item, "w", &Value::Scalar("9".into())).unwrap();
        assert_eq!(
            out,
            "m:\n  - x: 1 # keep\n    y: 2\n    w: 9\n  - z: 3\nafter: 1\n"
        );
        let flow = "m: {a: 1}\n";
        let r = root(flow);
        assert_eq!(
            insert_entry(flow, r.get("m").unwrap(), "b", &Value::Scalar("2".into())).unwrap(),
            "m: {a: 1, b: 2}\n"
        );
        let nested = Value::Map(vec![("k".into(), "'v'".into())]);
        assert_eq!(
            insert_entry(flow, r.get("m").unwrap(), "b", &nested).unwrap(),
            "m: {a: 1, b: {k: 'v'}}\n"
        );
        // CRLF and a four-space document keep their line breaks and step
        let crlf = "m:\r\n    a: 1\r\nz: 2\r\n";
        let r = root(crlf);
        assert_eq!(
            insert_entry(crlf, r.get("m").unwrap(), "b", &nested).unwrap(),
            "m:\r\n    a: 1\r\n    b:\r\n        k: 'v'\r\nz: 2\r\n"
        );
    }

    #[test]
    fn duplicates_and_removes_block_items() {
        let text = "s:\n# above\n- a: 1\n  b: 2\n- c: 3\n";
        let r = root(text);
        let seq = r.get("s").unwrap();
        let twice = duplicate_item(text, seq, 0).unwrap();
        assert_eq!(
            twice,
            "s:\n# above\n- a: 1\n  b: 2\n- a: 1\n  b: 2\n- c: 3\n"
        );
        let r = root(&twice);
        let once = remove_item(&twice, r.get("s").unwrap(), 2).unwrap();
        assert_eq!(once, "s:\n# above\n- a: 1\n  b: 2\n- a: 1\n  b: 2\n");
    }

    #[test]
    fn crlf_items_are_copied_and_removed_whole() {
        let text = "s:\r\n- a: 1\r\n  b: 2\r\n- c: 3\r\n";
        let r = root(text);
        let twice = duplicate_item(text, r.get("s").unwrap(), 1).unwrap();
        assert_eq!(twice, "s:\r\n- a: 1\r\n  b: 2\r\n- c: 3\r\n- c: 3\r\n");
        let r = root(&twice);
        assert_eq!(
            remove_item(&twice, r.get("s").unwrap(), 0).unwrap(),
            "s:\r\n- c: 3\r\n- c: 3\r\n"
        );
    }

    #[test]
    fn anchors_and_aliases_are_found() {
        let text = "a: &x {b: 1}\nc: *x\nd: [1, &y 2]\ne: {f: 1}\n";
        let r = root(text);
        assert_eq!(r.get("a").unwrap().shared(), Some(3)); // &x
        assert_eq!(r.get("c").unwrap().shared(), Some(16)); // *x
        assert_eq!(r.get("d").unwrap().shared(), Some(26)); // &y
        assert_eq!(r.get("e").unwrap().shared(), None);
        assert_eq!(line_of(text, 16), 2);
    }

    #[test]
    fn flow_items() {
        let text = "s: [{a: 1}, {b: 2}]\n";
        let r = root(text);
        let seq = r.get("s").unwrap();
        assert_eq!(
            duplicate_item(text, seq, 1).unwrap(),
            "s: [{a: 1}, {b: 2}, {b: 2}]\n"
        );
        assert_eq!(remove_item(text, seq, 0).unwrap(), "s: [{b: 2}]\n");
        assert_eq!(remove_item(text, seq, 1).unwrap(), "s: [{a: 1}]\n");
    }

    #[test]
    fn single_quotes_json() {
        assert_eq!(single_quoted(r#"{"a":"it's"}"#), r#"'{"a":"it''s"}'"#);
    }
}
