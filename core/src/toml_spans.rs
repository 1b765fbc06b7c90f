//! Where every key and value of a TOML document is, so that an error can name the dotted
//! field it points at (`methods[1].overrides.epochs`, never the value `1`) and a check on a
//! field can name the line it is on.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// The spans of a parsed TOML document.
#[derive(Debug)]
pub(crate) struct SpanTree {
    root: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    key: Spanned<String>,
    value: Spanned<Node>,
}

#[derive(Debug)]
enum Node {
    Table(Vec<Entry>),
    Array(Vec<Spanned<Node>>),
    Leaf,
}

/// 1-based line and column of byte `offset` of `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

impl SpanTree {
    /// The spans of `text`; `None` when it is not valid TOML, or holds a datetime (toml hands
    /// those over with an unspanned key; no grid or config field is a datetime, so such a file
    /// fails anyway, only without a field name).
    pub(crate) fn parse(text: &str) -> Option<SpanTree> {
        match toml::from_str::<Spanned<Node>>(text).ok()?.into_inner() {
            Node::Table(root) => Some(SpanTree { root }),
            _ => None,
        }
    }

    /// The dotted path of the innermost key or value that covers all of `span`; `None` when
    /// no single one does (a missing field of the document, say).
    pub(crate) fn field_at(&self, span: &Range<usize>) -> Option<String> {
        find_in_table(&self.root, span)
    }

    /// The span of the key of `field` (`a.b[2].c`); when `field` is absent, of its nearest
    /// present ancestor; `None` when not even its first part is present.
    pub(crate) fn span_of(&self, field: &str) -> Option<Range<usize>> {
        let mut found = None;
        let mut table = Some(&self.root);
        for part in field.split('.') {
            let (name, indices) = split_indices(part);
            let Some(entry) =
                table.and_then(|entries| entries.iter().find(|e| e.key.get_ref() == name))
            else {
                break;
            };
            found = Some(entry.key.span());
            let mut node = entry.value.get_ref();
            for index in indices {
                match node {
                    Node::Array(items) if index < items.len() => {
                        found = Some(items[index].span());
                        node = items[index].get_ref();
                    }
                    _ => return found,
                }
            }
            table = match node {
                Node::Table(entries) => Some(entries),
                _ => None,
            };
        }
        found
    }
}

/// `methods[1][2]` -> (`methods`, [1, 2]); a malformed index ends the list.
fn split_indices(part: &str) -> (&str, Vec<usize>) {
    let Some((name, rest)) = part.split_once('[') else {
        return (part, Vec::new());
    };
    let indices = rest
        .split('[')
        .map_while(|index| index.strip_suffix(']').and_then(|i| i.parse().ok()))
        .collect();
    (name, indices)
}

/// Whether `outer` covers all of `inner`.
fn covers(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

fn find_in_table(entries: &[Entry], span: &Range<usize>) -> Option<String> {
    entries.iter().find_map(|entry| {
        if let Some(inner) = find_in_node(entry.value.get_ref(), span) {
            return Some(format!("{}{inner}", entry.key.get_ref()));
        }
        (covers(&entry.key.span(), span) || covers(&entry.value.span(), span))
            .then(|| entry.key.get_ref().clone())
    })
}

/// The path below `node` (starting with `.` or `[`) that covers `span`.
fn find_in_node(node: &Node, span: &Range<usize>) -> Option<String> {
    match node {
        Node::Table(entries) => find_in_table(entries, span).map(|path| format!(".{path}")),
        Node::Array(items) => {
            items.iter().enumerate().find_map(|(index, item)| {
                match find_in_node(item.get_ref(), span) {
                    Some(inner) => Some(format!("[{index}]{inner}")),
                    None => covers(&item.span(), span).then(|| format!("[{index}]")),
                }
            })
        }
        Node::Leaf => None,
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a TOML value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push(Entry { key, value });
        }
        Ok(Node::Table(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "version = 1\nseeds = [101, 4294967296]\n\n[search]\nepochs = -1\n\n\
                        [[methods]]\npreset = \"darts\"\n\n[[methods]]\npreset = \"pr\"\n\
                        overrides = { rho = 0.2, epochs = 60 }\n";

    fn span_of(needle: &str) -> Range<usize> {
        let start = TEXT.find(needle).unwrap();
        start..start + needle.len()
    }

    #[test]
    fn a_span_names_the_field_not_the_value() {
        let tree = SpanTree::parse(TEXT).unwrap();
        assert_eq!(tree.field_at(&span_of("-1")).unwrap(), "search.epochs");
        assert_eq!(tree.field_at(&span_of("4294967296")).unwrap(), "seeds[1]");
        assert_eq!(
            tree.field_at(&span_of("60")).unwrap(),
            "methods[1].overrides.epochs"
        );
        assert_eq!(
            tree.field_at(&span_of("\"pr\"")).unwrap(),
            "methods[1].preset"
        );
        assert_eq!(tree.field_at(&span_of("version")).unwrap(), "version");
        assert_eq!(tree.field_at(&(0..TEXT.len())), None);
    }

    #[test]
    fn a_field_is_found_by_its_path_or_its_nearest_ancestor() {
        let tree = SpanTree::parse(TEXT).unwrap();
        let line_of = |field: &str| line_column(TEXT, tree.span_of(field).unwrap().start).0;
        assert_eq!(line_of("search.epochs"), 5);
        assert_eq!(line_of("methods[1].preset"), 11);
        assert_eq!(line_of("methods[1].overrides.rho"), 12);
        assert_eq!(line_of("seeds[1]"), 2);
        assert_eq!(line_of("search.layers"), 4);
        assert!(tree.span_of("evaluation.seeds").is_none());
        assert!(SpanTree::parse("a = [").is_none());
        assert!(SpanTree::parse("when = 1979-05-27").is_none());
    }
}
