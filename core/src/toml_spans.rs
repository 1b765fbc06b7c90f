//! Where every key and value of a TOML document is, so that an error can name the dotted
//! field it points at (`methods[1].overrides.epochs`, never the value `1`) and a check on a
//! field can name the line it is on.

use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::ops::Range;

/// The spans of a parsed TOML document.
#[derive(Debug)]
pub(crate) struct SpanTree {
    root: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    key: Key,
    value: Located,
}

/// A key and where it is, when toml knows (it does for every key parsed from the text).
#[derive(Debug)]
struct Key {
    name: String,
    span: Option<Range<usize>>,
}

/// A value and where it is, when toml knows: a table that only a dotted header creates (`b`
/// of `[a.b.c]` without a `[a.b]` of its own) has no span.
#[derive(Debug)]
struct Located {
    node: Node,
    span: Option<Range<usize>>,
}

#[derive(Debug)]
enum Node {
    Table(Vec<Entry>),
    Array(Vec<Located>),
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
    /// The spans of `text`; `None` when it is not valid TOML.
    pub(crate) fn parse(text: &str) -> Option<SpanTree> {
        match toml::from_str::<Located>(text).ok()?.node {
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
    /// present ancestor; `None` when not even its first part is present. A quoted key may
    /// hold dots (`"network.dropout" = 0.5` under `set`): at each level the shortest run of
    /// parts that names a key is taken.
    pub(crate) fn span_of(&self, field: &str) -> Option<Range<usize>> {
        let parts: Vec<&str> = field.split('.').collect();
        let mut found = None;
        let mut table = Some(&self.root);
        let mut next = 0;
        while next < parts.len() {
            let Some((end, entry, indices)) = table.and_then(|entries| {
                (next + 1..=parts.len()).find_map(|end| {
                    let joined = parts[next..end].join(".");
                    let (name, indices) = split_indices(&joined);
                    let entry = entries.iter().find(|e| e.key.name == name)?;
                    Some((end, entry, indices))
                })
            }) else {
                break;
            };
            next = end;
            found = entry.key.span.clone().or(found);
            let mut node = &entry.value.node;
            for index in indices {
                match node {
                    Node::Array(items) if index < items.len() => {
                        found = items[index].span.clone().or(found);
                        node = &items[index].node;
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
        if let Some(inner) = find_in_node(&entry.value.node, span) {
            return Some(format!("{}{inner}", entry.key.name));
        }
        let covering =
            |outer: &Option<Range<usize>>| outer.as_ref().is_some_and(|o| covers(o, span));
        (covering(&entry.key.span) || covering(&entry.value.span)).then(|| entry.key.name.clone())
    })
}

/// The path below `node` (starting with `.` or `[`) that covers `span`.
fn find_in_node(node: &Node, span: &Range<usize>) -> Option<String> {
    match node {
        Node::Table(entries) => find_in_table(entries, span).map(|path| format!(".{path}")),
        Node::Array(items) => {
            items.iter().enumerate().find_map(|(index, item)| {
                match find_in_node(&item.node, span) {
                    Some(inner) => Some(format!("[{index}]{inner}")),
                    None => item
                        .span
                        .as_ref()
                        .is_some_and(|outer| covers(outer, span))
                        .then(|| format!("[{index}]")),
                }
            })
        }
        Node::Leaf => None,
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `Spanned`'s own request: toml answers it with the key's span where it knows one,
        // and with the plain key where it does not (which `Spanned<String>` refuses).
        use serde_spanned::__unstable::{END_FIELD, NAME, START_FIELD, VALUE_FIELD};
        deserializer.deserialize_struct(NAME, &[START_FIELD, END_FIELD, VALUE_FIELD], KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a TOML key")
    }

    fn visit_str<E>(self, name: &str) -> Result<Key, E> {
        Ok(Key {
            name: name.to_string(),
            span: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        use serde_spanned::__unstable::{END_FIELD, START_FIELD};
        let (mut start, mut end, mut name) = (None, None, None);
        while let Some(field) = map.next_key::<String>()? {
            match field.as_str() {
                START_FIELD => start = Some(map.next_value::<usize>()?),
                END_FIELD => end = Some(map.next_value::<usize>()?),
                _ => name = Some(map.next_value::<String>()?),
            }
        }
        Ok(Key {
            name: name.ok_or_else(|| A::Error::missing_field("key"))?,
            span: start.zip(end).map(|(start, end)| start..end),
        })
    }
}

impl<'de> Deserialize<'de> for Located {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde_spanned::__unstable::{END_FIELD, NAME, START_FIELD, VALUE_FIELD};
        deserializer.deserialize_struct(
            NAME,
            &[START_FIELD, END_FIELD, VALUE_FIELD],
            LocatedVisitor,
        )
    }
}

/// A value as toml answers `Spanned`'s request: a map of its start, end and value where it
/// knows the span, the value itself where it does not.
struct LocatedVisitor;

impl LocatedVisitor {
    fn unlocated<E>(node: Node) -> Result<Located, E> {
        Ok(Located { node, span: None })
    }
}

impl<'de> Visitor<'de> for LocatedVisitor {
    type Value = Located;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a TOML value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Located, E> {
        Self::unlocated(Node::Leaf)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Located, E> {
        Self::unlocated(Node::Leaf)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Located, E> {
        Self::unlocated(Node::Leaf)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Located, E> {
        Self::unlocated(Node::Leaf)
    }

    fn visit_str<E>(self, _: &str) -> Result<Located, E> {
        Self::unlocated(Node::Leaf)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Located, A::Error> {
        Self::unlocated(NodeVisitor.visit_seq(seq)?)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Located, A::Error> {
        use serde_spanned::__unstable::{END_FIELD, START_FIELD, VALUE_FIELD};
        let Some(first) = map.next_key::<Key>()? else {
            return Self::unlocated(Node::Table(Vec::new()));
        };
        if ![START_FIELD, END_FIELD, VALUE_FIELD].contains(&first.name.as_str()) {
            // A table without a span: `first` is its first key.
            let mut entries = vec![Entry {
                key: first,
                value: map.next_value::<Located>()?,
            }];
            while let Some(key) = map.next_key::<Key>()? {
                let value = map.next_value::<Located>()?;
                entries.push(Entry { key, value });
            }
            return Self::unlocated(Node::Table(entries));
        }
        let (mut start, mut end, mut node) = (None, None, None);
        let mut field = Some(first);
        while let Some(key) = field {
            match key.name.as_str() {
                START_FIELD => start = Some(map.next_value::<usize>()?),
                END_FIELD => end = Some(map.next_value::<usize>()?),
                _ => node = Some(map.next_value::<Node>()?),
            }
            field = map.next_key::<Key>()?;
        }
        Ok(Located {
            node: node.ok_or_else(|| A::Error::missing_field(VALUE_FIELD))?,
            span: start.zip(end).map(|(start, end)| start..end),
        })
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
        while let Some(item) = seq.next_element::<Located>()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value::<Located>()?;
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
        // A table that only a dotted header creates (`run`) has no span of its own: its fields
        // are still found, and a missing one falls back to the nearest key (in the header).
        let dotted = "version = 1\n\n[evaluation]\nseeds = 1\n\n[evaluation.run.set]\nepochs = 0\n\
                      \"network.dropout\" = 1.5\n";
        let tree = SpanTree::parse(dotted).unwrap();
        let line_of = |field: &str| line_column(dotted, tree.span_of(field).unwrap().start).0;
        assert_eq!(line_of("evaluation.run.set.epochs"), 7);
        assert_eq!(line_of("evaluation.run.set.network.dropout"), 8);
        assert_eq!(line_of("evaluation.run.set.layers"), 6);
        assert_eq!(line_of("evaluation.run.layers"), 6);
        assert_eq!(line_of("evaluation.layers"), 3);
        let at = dotted.find("0\n").unwrap();
        assert_eq!(
            tree.field_at(&(at..at + 1)).unwrap(),
            "evaluation.run.set.epochs"
        );
        assert!(SpanTree::parse("a = [").is_none());
        // A datetime (no grid or config field is one) leaves the rest of the file located.
        let dated = "when = 1979-05-27\nepochs = 0\n";
        let tree = SpanTree::parse(dated).unwrap();
        assert_eq!(
            line_column(dated, tree.span_of("epochs").unwrap().start).0,
            2
        );
    }
}
