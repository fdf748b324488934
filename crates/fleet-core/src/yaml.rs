//! A YAML tree that remembers where every node was written.
//!
//! serde-based YAML readers stop at the first problem and forget positions;
//! the roster check must report *every* problem with its line and column.
//! This module builds a small tree from yaml-rust2's marked events; the roster
//! (and the node config) walk it and collect errors as they go.

use std::collections::HashMap;
use std::fmt;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
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

/// Parse one YAML document. An empty text yields a null scalar.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut builder, false)
        .map_err(|e| SyntaxError { pos: (*e.marker()).into(), message: e.info().to_string() })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder
        .root
        .unwrap_or(Node { pos: Pos { line: 1, col: 1 }, value: Value::Scalar { text: String::new(), quoted: false } }))
}

#[derive(Default)]
struct Builder {
    stack: Vec<Node>,
    /// For each open map: the key waiting for its value.
    pending_keys: Vec<Option<Node>>,
    anchors: HashMap<usize, Node>,
    /// Anchor ids of the open collections, to record them when they close.
    open_anchors: Vec<usize>,
    root: Option<Node>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn push_value(&mut self, node: Node) {
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
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from(mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let quoted = style != TScalarStyle::Plain;
                let node = Node { pos, value: Value::Scalar { text, quoted } };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node);
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(mut node) => {
                    node.pos = pos;
                    self.push_value(node);
                }
                None => {
                    self.error.get_or_insert(SyntaxError { pos, message: "unknown alias".into() });
                }
            },
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Node { pos, value: Value::Seq(Vec::new()) });
                self.open_anchors.push(anchor);
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Node { pos, value: Value::Map(Vec::new()) });
                self.pending_keys.push(None);
                self.open_anchors.push(anchor);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = self.stack.pop().expect("balanced collection events");
                if matches!(node.value, Value::Map(_)) {
                    self.pending_keys.pop();
                }
                let anchor = self.open_anchors.pop().unwrap_or(0);
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node);
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
}
