//! Stage one of config loading: YAML text to a plain [`Node`] tree that keeps numbers exact.
//!
//! `serde_yaml_ng::Value` turns a number such as `61837.63` into an `f64`, which would put a
//! binary float between the file and an exact [`maxx_hot::num::Money`].
//! To keep the file's own digits we parse twice: the first pass builds a `Value` (and reports
//! syntax errors with their line and column); the second pass walks the same document again,
//! guided by the shape the first pass found, and asks the deserializer for the *text* of every
//! scalar that the first pass resolved to a number.
//! The result is a [`Node`] tree in which a number is the exact string written in the file.

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_yaml_ng::{Mapping, Value};

use super::Problem;

/// One YAML node, with numbers kept as written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    /// `null`, `~` or an empty value.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An unquoted number, exactly as written in the file (`0.4`, `61837.63`, `1e3`).
    Number(String),
    /// A string: quoted, or plain text that YAML does not read as null, bool or number.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order (duplicate keys are a syntax error in stage one).
    Map(Vec<(Node, Node)>),
    /// A value with an explicit YAML tag (`!foo bar`); never valid in maxx config.
    Tagged(String),
}

impl Node {
    /// How the value is shown in an error message: scalars as written, containers by kind.
    pub(crate) fn describe(&self) -> String {
        match self {
            Node::Null => "null".to_owned(),
            Node::Bool(b) => b.to_string(),
            Node::Number(n) => n.clone(),
            Node::Str(s) => format!("{s:?}"),
            Node::Seq(_) => "a list".to_owned(),
            Node::Map(_) => "a mapping".to_owned(),
            Node::Tagged(tag) => format!("a value tagged {tag}"),
        }
    }

    /// The text of a scalar used as a mapping key, or `None` for a key that is not a scalar.
    pub(crate) fn key_text(&self) -> Option<String> {
        match self {
            Node::Null => Some("null".to_owned()),
            Node::Bool(b) => Some(b.to_string()),
            Node::Number(n) => Some(n.clone()),
            Node::Str(s) => Some(s.clone()),
            Node::Seq(_) | Node::Map(_) | Node::Tagged(_) => None,
        }
    }
}

/// Parses YAML text into a [`Node`] tree, or returns the one syntax problem with its location.
pub(crate) fn parse_tree(text: &str) -> Result<Node, Problem> {
    let shape: Value = serde_yaml_ng::from_str(text).map_err(|e| syntax_problem(&e))?;
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    Shaped(&shape).deserialize(deserializer).map_err(|e| syntax_problem(&e))
}

/// A YAML error as one problem whose path is its `line L column C`.
fn syntax_problem(err: &serde_yaml_ng::Error) -> Problem {
    let text = err.to_string();
    match err.location() {
        Some(at) => {
            let place = format!("line {} column {}", at.line(), at.column());
            // The library repeats the location inside its message; say it once, in the path.
            let message = text.replacen(&format!(" at {place}"), "", 1);
            Problem {
                path: place,
                message: format!("invalid YAML: {message}"),
            }
        }
        None => Problem {
            path: "(yaml)".to_owned(),
            message: format!("invalid YAML: {text}"),
        },
    }
}

/// Deserializes the node whose shape stage one found to be `self.0`.
struct Shaped<'v>(&'v Value);

impl<'de> DeserializeSeed<'de> for Shaped<'_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        match self.0 {
            // The deserializer hands out the raw scalar text when asked for a string.
            Value::Number(_) => String::deserialize(d).map(Node::Number),
            Value::Sequence(items) => d.deserialize_seq(SeqShape(items)),
            Value::Mapping(map) => d.deserialize_map(MapShape(map)),
            // Everything else is already exact in the first pass; consume it the same way.
            Value::Null | Value::Bool(_) | Value::String(_) | Value::Tagged(_) => {
                Value::deserialize(d).map(|v| simple(&v))
            }
        }
    }
}

/// Converts a scalar or tagged `Value` (never a number or container) to a [`Node`].
fn simple(value: &Value) -> Node {
    match value {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Bool(*b),
        Value::String(s) => Node::Str(s.clone()),
        Value::Tagged(t) => Node::Tagged(t.tag.to_string()),
        // Not reached through `Shaped`, which routes these elsewhere; kept total for safety.
        Value::Number(n) => Node::Number(n.to_string()),
        Value::Sequence(_) => Node::Seq(Vec::new()),
        Value::Mapping(_) => Node::Map(Vec::new()),
    }
}

struct SeqShape<'v>(&'v [Value]);

impl<'de> Visitor<'de> for SeqShape<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut out = Vec::with_capacity(self.0.len());
        for item in self.0 {
            match seq.next_element_seed(Shaped(item))? {
                Some(node) => out.push(node),
                None => break,
            }
        }
        Ok(Node::Seq(out))
    }
}

struct MapShape<'v>(&'v Mapping);

impl<'de> Visitor<'de> for MapShape<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut out = Vec::with_capacity(self.0.len());
        for (key, value) in self.0 {
            match map.next_key_seed(Shaped(key))? {
                Some(k) => out.push((k, map.next_value_seed(Shaped(value))?)),
                None => break,
            }
        }
        Ok(Node::Map(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_digits() {
        let tree = parse_tree("a: 61837.63\nb: [0.1, 12345678901.12345678]\nc: '7'\nd: ~\n").unwrap();
        let Node::Map(entries) = tree else { panic!("not a map") };
        assert_eq!(entries[0], (Node::Str("a".into()), Node::Number("61837.63".into())));
        assert_eq!(
            entries[1].1,
            Node::Seq(vec![
                Node::Number("0.1".into()),
                Node::Number("12345678901.12345678".into())
            ])
        );
        assert_eq!(entries[2].1, Node::Str("7".into()));
        assert_eq!(entries[3].1, Node::Null);
    }

    #[test]
    fn anchors_and_numeric_keys_survive_the_second_pass() {
        let tree = parse_tree("x: &p {1: 2.50}\ny: *p\n").unwrap();
        let Node::Map(entries) = tree else { panic!("not a map") };
        let inner = Node::Map(vec![(Node::Number("1".into()), Node::Number("2.50".into()))]);
        assert_eq!(entries[0].1, inner);
        assert_eq!(entries[1].1, inner);
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let p = parse_tree("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(p.path.starts_with("line "), "{p:?}");
        assert!(p.message.starts_with("invalid YAML: "), "{p:?}");
        let dup = parse_tree("a: 1\na: 2\n").unwrap_err();
        assert!(dup.message.contains("duplicate"), "{dup:?}");
    }
}
