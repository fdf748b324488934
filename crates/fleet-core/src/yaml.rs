//! A YAML tree that remembers where every node was written.
//!
//! serde-based YAML readers stop at the first problem and forget positions;
//! the roster check must report *every* problem with its line and column.
//! This module builds a small tree from yaml-rust2's marked events; the roster
//! (and the node config) walk it and collect errors as they go.

use std::collections::HashMap;
use std::fmt;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in a YAML text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Self {
        // yaml-rust2 reports 1-based lines and 0-based columns.
        Pos { line: m.line(), col: m.col() + 1 }
    }
}

/// A node of the tree, with the position where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar as written; `quoted` is true for '...' and "..." and block scalars,
    /// which are always strings.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    /// Keys in document order.
    Map(Vec<(Node, Node)>),
}

/// A YAML syntax error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl Node {
    /// The kind of node, for messages ("expected a map, found a list").
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Scalar { .. } if self.is_null() => "nothing",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// True for `~`, `null`, or an empty plain scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, quoted: false }
            if text.is_empty() || text == "~" || text == "null" || text == "Null" || text == "NULL")
    }

    /// The scalar text, if this is a non-null scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } if !self.is_null() => Some(text),
            _ => None,
        }
    }

    /// A YAML 1.2 core-schema boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match &self.value {
            Value::Scalar { text, quoted: false } => match text.as_str() {
                "true" | "True" | "TRUE" => Some(true),
                "false" | "False" | "FALSE" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// A plain integer scalar, if this is one.
    pub fn as_u64(&self) -> Option<u64> {
        match &self.value {
            Value::Scalar { text, quoted: false } => text.parse().ok(),
            _ => None,
        }
    }
}

/// The most nodes one document may build, each alias counted with the full
/// size of what it stands for, and each anchored node once more (the copy
/// kept for its aliases). A real roster has a few hundred; without this a few
/// hundred bytes of nested aliases ("billion laughs") build gigabytes.
pub const MAX_NODES: usize = 100_000;
/// The most scalar text one document may build, aliases counted in full and
/// anchored text once more (its kept copy): a long string inside many nested
/// anchored collections is a copy per anchor.
pub const MAX_TEXT_BYTES: usize = 4 * 1024 * 1024;
/// The deepest nesting of collections (aliases counted with their own depth):
/// the tree is walked, cloned and dropped recursively.
pub const MAX_DEPTH: usize = 64;

/// Parse one YAML document. An empty text yields a null scalar.
///
/// Aliases are expanded (the tree is a plain tree), within [`MAX_NODES`],
/// [`MAX_TEXT_BYTES`] and [`MAX_DEPTH`]: past them the document is refused with
/// the position of the alias, anchor or collection that went over.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    Ok(build(text)?
        .root
        .unwrap_or(Node { pos: Pos { line: 1, col: 1 }, value: Value::Scalar { text: String::new(), quoted: false } }))
}

/// Run the builder over `text` (its counters are what the budget saw).
fn build(text: &str) -> Result<Builder, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    // Events one by one (yaml-rust2's `load` recurses once per nesting level,
    // which a long `- - - - ...` line turns into a stack overflow).
    loop {
        let (ev, mark) = parser
            .next_token()
            .map_err(|e| SyntaxError { pos: (*e.marker()).into(), message: e.info().to_string() })?;
        if matches!(ev, Event::StreamEnd | Event::DocumentEnd) {
            break;
        }
        builder.on_event(ev, mark);
        if let Some(err) = builder.error.take() {
            return Err(err);
        }
    }
    Ok(builder)
}

/// What a spend is for, for the message.
#[derive(Clone, Copy)]
enum Spend {
    /// A node as written.
    Build,
    /// The copy an alias stands for.
    Alias,
    /// The copy kept for an anchor's aliases.
    Anchor,
}

/// A node kept for its aliases, with what it costs to copy.
struct Anchored {
    node: Node,
    nodes: usize,
    bytes: usize,
    height: usize,
}

/// An open collection: where the counters stood when it opened, and the
/// height of its tallest child so far.
struct Open {
    anchor: usize,
    nodes_at_start: usize,
    bytes_at_start: usize,
    child_height: usize,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Node>,
    /// For each open map: the key waiting for its value.
    pending_keys: Vec<Option<Node>>,
    anchors: HashMap<usize, Anchored>,
    /// One for each open collection.
    open: Vec<Open>,
    root: Option<Node>,
    error: Option<SyntaxError>,
    /// Nodes and scalar bytes of the tree built so far (alias copies included).
    nodes: usize,
    bytes: usize,
    /// Nodes and scalar bytes of the copies kept in `anchors`: counted against
    /// the same limits, never into an anchor's own size.
    kept_nodes: usize,
    kept_bytes: usize,
}

impl Builder {
    fn push_value(&mut self, node: Node, height: usize) {
        if let Some(o) = self.open.last_mut() {
            o.child_height = o.child_height.max(height);
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Node { value: Value::Seq(items), .. }) => items.push(node),
            Some(Node { value: Value::Map(entries), .. }) => {
                let slot = self.pending_keys.last_mut().expect("a map has a key slot");
                match slot.take() {
                    None => *slot = Some(node),
                    Some(key) => entries.push((key, node)),
                }
            }
            Some(_) => unreachable!("only collections are pushed on the stack"),
        }
    }

    /// Count `nodes` more nodes, `bytes` more text and a subtree of `height`
    /// below the open collections; false (and the error) when over a limit.
    fn spend(&mut self, pos: Pos, nodes: usize, bytes: usize, height: usize, why: Spend) -> bool {
        if let Spend::Anchor = why {
            self.kept_nodes = self.kept_nodes.saturating_add(nodes);
            self.kept_bytes = self.kept_bytes.saturating_add(bytes);
        } else {
            self.nodes = self.nodes.saturating_add(nodes);
            self.bytes = self.bytes.saturating_add(bytes);
        }
        let what = match why {
            Spend::Build => "this document is",
            Spend::Alias => "aliases expand this document",
            Spend::Anchor => "with the copies its anchors keep, this document is",
        };
        let message = if self.nodes.saturating_add(self.kept_nodes) > MAX_NODES {
            format!("{what} past {MAX_NODES} nodes: write it out with fewer aliases (or fewer entries)")
        } else if self.bytes.saturating_add(self.kept_bytes) > MAX_TEXT_BYTES {
            format!("{what} past {} MiB of text: write it out with fewer anchors and aliases", MAX_TEXT_BYTES >> 20)
        } else if self.stack.len() + height > MAX_DEPTH {
            format!("{what} nested deeper than {MAX_DEPTH} levels")
        } else {
            return true;
        };
        self.error.get_or_insert(SyntaxError { pos, message });
        false
    }

    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from(mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                if !self.spend(pos, 1, text.len(), 1, Spend::Build) {
                    return;
                }
                let quoted = style != TScalarStyle::Plain;
                let bytes = text.len();
                let node = Node { pos, value: Value::Scalar { text, quoted } };
                if anchor > 0 {
                    if !self.spend(pos, 1, bytes, 0, Spend::Anchor) {
                        return;
                    }
                    self.anchors.insert(anchor, Anchored { node: node.clone(), nodes: 1, bytes, height: 1 });
                }
                self.push_value(node, 1);
            }
            Event::Alias(id) => {
                let Some(a) = self.anchors.get(&id) else {
                    self.error.get_or_insert(SyntaxError { pos, message: "unknown alias".into() });
                    return;
                };
                let (nodes, bytes, height) = (a.nodes, a.bytes, a.height);
                if !self.spend(pos, nodes, bytes, height, Spend::Alias) {
                    return;
                }
                let mut node = self.anchors[&id].node.clone();
                node.pos = pos;
                self.push_value(node, height);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if !self.spend(pos, 1, 0, 1, Spend::Build) {
                    return;
                }
                let map = matches!(ev, Event::MappingStart(..));
                self.stack.push(Node { pos, value: if map { Value::Map(Vec::new()) } else { Value::Seq(Vec::new()) } });
                if map {
                    self.pending_keys.push(None);
                }
                self.open.push(Open {
                    anchor,
                    nodes_at_start: self.nodes - 1,
                    bytes_at_start: self.bytes,
                    child_height: 0,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = self.stack.pop().expect("balanced collection events");
                if matches!(node.value, Value::Map(_)) {
                    self.pending_keys.pop();
                }
                let open = self.open.pop().expect("balanced collection events");
                let height = open.child_height + 1;
                if open.anchor > 0 {
                    let (nodes, bytes) = (self.nodes - open.nodes_at_start, self.bytes - open.bytes_at_start);
                    // The copy below is as large as the subtree: charge it first.
                    if !self.spend(node.pos, nodes, bytes, 0, Spend::Anchor) {
                        return;
                    }
                    self.anchors.insert(open.anchor, Anchored { node: node.clone(), nodes, bytes, height });
                }
                self.push_value(node, height);
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(n: &Node) -> &str {
        n.as_str().unwrap()
    }

    #[test]
    fn positions_are_one_based_line_and_column() {
        let doc = parse("a: 1\nb:\n  c: [x, y]\n").unwrap();
        let Value::Map(entries) = &doc.value else { panic!("map") };
        assert_eq!(scalar(&entries[0].0), "a");
        assert_eq!(entries[0].0.pos, Pos { line: 1, col: 1 });
        let Value::Map(inner) = &entries[1].1.value else { panic!("inner map") };
        assert_eq!(inner[0].0.pos, Pos { line: 3, col: 3 });
        let Value::Seq(items) = &inner[0].1.value else { panic!("seq") };
        assert_eq!(scalar(&items[1]), "y");
        assert_eq!(items[1].pos, Pos { line: 3, col: 10 });
    }

    #[test]
    fn quoted_scalars_are_strings_and_nulls_are_recognised() {
        let doc = parse("a: 'true'\nb: true\nc:\nd: ~\n").unwrap();
        let Value::Map(e) = &doc.value else { panic!() };
        assert_eq!(e[0].1.as_bool(), None);
        assert_eq!(e[1].1.as_bool(), Some(true));
        assert!(e[2].1.is_null());
        assert!(e[3].1.is_null());
    }

    #[test]
    fn aliases_resolve_to_their_anchor() {
        let doc = parse("base: &b {x: 1}\nother: *b\n").unwrap();
        let Value::Map(e) = &doc.value else { panic!() };
        assert_eq!(e[0].1.value, e[1].1.value);
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn empty_text_is_null() {
        assert!(parse("").unwrap().is_null());
    }

    /// Nine levels of ten aliases each: 10^9 scalars if expanded.
    pub(crate) fn billion_laughs() -> String {
        let mut t = String::from(
            "a0: &a0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n",
        );
        for i in 1..=9 {
            let p = i - 1;
            t.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        t
    }

    #[test]
    fn alias_expansion_is_bounded_and_the_error_is_positioned() {
        let text = billion_laughs();
        assert!(text.len() < 1024, "a few hundred bytes: {}", text.len());
        let start = std::time::Instant::now();
        let err = parse(&text).unwrap_err();
        assert!(start.elapsed() < std::time::Duration::from_secs(2), "{:?}", start.elapsed());
        assert!(err.message.contains("aliases expand this document past"), "{err:?}");
        // a_k builds 10^(k+1) lols (and its lists): MAX_NODES is passed in a4, on one of its aliases.
        assert_eq!(err.pos.line, 5, "{err:?}");
        assert!(err.pos.col > 1, "{err:?}");
        // Within the budget aliases still work.
        let small: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert!(parse(&small).is_ok());
    }

    #[test]
    fn a_long_text_alias_counts_its_bytes() {
        let big = "x".repeat(1 << 20);
        let text = format!("a: &a \"{big}\"\nb: [*a, *a, *a, *a, *a]\n");
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("MiB of text"), "{err:?}");
        assert_eq!(err.pos.line, 2);
    }

    /// Nodes and scalar bytes of a tree.
    fn size(n: &Node) -> (usize, usize) {
        match &n.value {
            Value::Scalar { text, .. } => (1, text.len()),
            Value::Seq(items) => items.iter().map(size).fold((1, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
            Value::Map(entries) => {
                entries.iter().flat_map(|(k, v)| [size(k), size(v)]).fold((1, 0), |a, b| (a.0 + b.0, a.1 + b.1))
            }
        }
    }

    /// What the builder holds (the tree and every copy kept for aliases)
    /// against what its budget counted.
    fn held_and_counted(text: &str) -> ((usize, usize), (usize, usize)) {
        let b = build(text).unwrap();
        let tree = b.root.as_ref().map_or((0, 0), size);
        let kept = b.anchors.values().map(|a| size(&a.node)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        ((tree.0 + kept.0, tree.1 + kept.1), (b.nodes + b.kept_nodes, b.bytes + b.kept_bytes))
    }

    #[test]
    fn the_budget_counts_the_copies_anchors_keep() {
        // A long string inside nested anchored lists: each anchor kept a copy
        // of it, uncounted (62 MiB held for a 1 MiB roster).
        let big = "x".repeat((1 << 20) - 4096);
        let depth = 62; // a map, 62 lists and the string: 64 levels
        let open: String = (0..depth).map(|i| format!("&a{i} [")).collect();
        let text = format!("k: {open}\"{big}\"{}\n", "]".repeat(depth));
        assert!(text.len() < 1 << 20, "within the roster limit: {}", text.len());
        let err = parse(&text).unwrap_err();
        assert!(
            err.message.contains("with the copies its anchors keep") && err.message.contains("MiB of text"),
            "{err:?}"
        );
        // The 4th anchored list from the inside is the one that goes over 4 MiB.
        let fourth = text.find(&format!("&a{} [", depth - 4)).unwrap();
        let bracket = fourth + format!("&a{} ", depth - 4).len();
        assert_eq!(err.pos, Pos { line: 1, col: bracket + 1 }, "{err:?}");

        // Within the budget, the counters match what is held, copies included.
        let small = format!("k: {open}\"{}\"{}\nl: *a0\nm: *a30\nn: *a61\n", "y".repeat(1000), "]".repeat(depth));
        let (held, counted) = held_and_counted(&small);
        assert_eq!(held, counted);
        assert!(counted.1 > 63 * 1000, "{counted:?}");
    }

    #[test]
    fn nesting_is_bounded_without_overflowing_the_stack() {
        // yaml-rust2's own loader recursed once per level: this overflowed the stack.
        let deep = "- ".repeat(200_000) + "x\n";
        let err = parse(&deep).unwrap_err();
        assert!(err.message.contains("nested deeper than 64"), "{err:?}");
        assert_eq!(err.pos, Pos { line: 1, col: 2 * MAX_DEPTH + 1 });
        let ok = "- ".repeat(MAX_DEPTH - 1) + "x\n";
        assert!(parse(&ok).is_ok());
        // Depth through aliases: each alias is as deep as what it names.
        let mut chain = String::from("a0: &a0 [[[[[[[[[[x]]]]]]]]]]\n");
        for i in 1..10 {
            chain.push_str(&format!("a{i}: &a{i} [[[[[[[[[[*a{}]]]]]]]]]]\n", i - 1));
        }
        let err = parse(&chain).unwrap_err();
        assert!(err.message.contains("nested deeper"), "{err:?}");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        const TOKENS: &[&str] = &[
            "a",
            "b: ",
            ": ",
            "- ",
            "[",
            "]",
            "{",
            "}",
            ", ",
            "&x ",
            "*x",
            "&y ",
            "*y",
            "'s'",
            "\"d\\n\"",
            "|\n  x",
            ">\n  y",
            "\n",
            "\n  ",
            "\n    ",
            "# c",
            "---\n",
            "...\n",
            "? ",
            "!!str ",
            "~",
            "null",
            "true",
            "1",
            "\t",
            "%YAML 1.2\n",
        ];

        fn check(text: &str) -> Result<(), TestCaseError> {
            // YAML's line breaks: \n, \r\n and a lone \r.
            let lines = text.replace("\r\n", "\n").replace('\r', "\n").split('\n').count().max(1);
            match parse(text) {
                Ok(node) => prop_assert!(node.pos.line >= 1 && node.pos.col >= 1),
                Err(e) => {
                    prop_assert!(e.pos.line >= 1 && e.pos.line <= lines + 1, "{e:?} in {text:?}");
                    prop_assert!(e.pos.col >= 1, "{e:?} in {text:?}");
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_text_parses_or_fails_with_a_position(text in any::<String>()) {
                check(&text)?;
            }

            #[test]
            fn yaml_shaped_token_soup(tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..64)) {
                check(&tokens.concat())?;
            }

            /// Anchors in anchors, aliases of aliases: the budget counts all that is held.
            #[test]
            fn the_counters_match_what_is_held(width in 1usize..5, depth in 1usize..6, nest in 0usize..4) {
                let mut text = String::from("a0: &a0 [x, {k: &s0 vv}]\n");
                for i in 1..depth {
                    let items = vec![format!("*a{}", i - 1); width].join(", ");
                    let wrap: String = (0..nest).map(|j| format!("&n{i}x{j} [")).collect();
                    text.push_str(&format!("a{i}: &a{i} [{wrap}{items}, *s0{}]\n", "]".repeat(nest)));
                }
                let (held, counted) = held_and_counted(&text);
                prop_assert_eq!(held, counted, "{}", text);
            }

            /// Aliases of aliases, any shape: never more than the budget.
            #[test]
            fn alias_chains_stay_within_the_budget(width in 1usize..12, depth in 1usize..12) {
                let mut text = String::from("a0: &a0 [x]\n");
                for i in 1..depth {
                    let items = vec![format!("*a{}", i - 1); width].join(", ");
                    text.push_str(&format!("a{i}: &a{i} [{items}]\n"));
                }
                check(&text)?;
            }
        }
    }
}
