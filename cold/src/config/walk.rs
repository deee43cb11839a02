//! The validating walker's toolkit: key paths, mapping views that notice unknown and missing
//! keys, and typed readers for every scalar kind the schema uses.
//!
//! Each reader takes a [`Node`] and its key path, and either returns the typed value or records
//! one [`Problem`] and returns `None`, so that a walk always continues and reports *every*
//! problem in the file, not just the first.
//! Decimal readers go from the file's text straight to an exact integer ([`Money`]); no value
//! passes through a binary float.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use maxx_hot::num::{DecimalError, Money, ONE};
use maxx_hot::records::Factor;

use super::Problem;
use super::raw::{Node, parse_tree};

/// Appends a mapping key to a path (`risk` + `daily_drawdown_pct`).
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Appends a list index to a path (`symbols` + 1 = `symbols[1]`).
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// An inclusive or exclusive bound of a decimal range.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Bound {
    /// The bound itself is allowed.
    Incl(i64),
    /// The bound itself is refused.
    Excl(i64),
    /// No bound on this side.
    Open,
}

/// The admissible range of a decimal value, in whole units (bounds are integers in this schema).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Range {
    pub(crate) lo: Bound,
    pub(crate) hi: Bound,
}

impl Range {
    /// `[lo, hi]`.
    pub(crate) const fn closed(lo: i64, hi: i64) -> Self {
        Self {
            lo: Bound::Incl(lo),
            hi: Bound::Incl(hi),
        }
    }
    /// `(lo, hi]`.
    pub(crate) const fn above_upto(lo: i64, hi: i64) -> Self {
        Self {
            lo: Bound::Excl(lo),
            hi: Bound::Incl(hi),
        }
    }
    /// `[lo, hi)`.
    pub(crate) const fn from_below(lo: i64, hi: i64) -> Self {
        Self {
            lo: Bound::Incl(lo),
            hi: Bound::Excl(hi),
        }
    }
    /// `(0, ∞)`.
    pub(crate) const POSITIVE: Self = Self {
        lo: Bound::Excl(0),
        hi: Bound::Open,
    };

    fn contains(self, v: Money) -> bool {
        let raw = i128::from(v.raw());
        let scaled = |b: i64| i128::from(b) * i128::from(ONE);
        let lo_ok = match self.lo {
            Bound::Incl(b) => raw >= scaled(b),
            Bound::Excl(b) => raw > scaled(b),
            Bound::Open => true,
        };
        let hi_ok = match self.hi {
            Bound::Incl(b) => raw <= scaled(b),
            Bound::Excl(b) => raw < scaled(b),
            Bound::Open => true,
        };
        lo_ok && hi_ok
    }

    /// "a number between 0 and 100", "a number greater than 0 and at most 100", ...
    pub(crate) fn describe(self) -> String {
        match (self.lo, self.hi) {
            (Bound::Incl(a), Bound::Incl(b)) => format!("a number between {a} and {b}"),
            (Bound::Excl(a), Bound::Incl(b)) => {
                format!("a number greater than {a} and at most {b}")
            }
            (Bound::Incl(a), Bound::Excl(b)) => format!("a number at least {a} and below {b}"),
            (Bound::Excl(a), Bound::Excl(b)) => format!("a number strictly between {a} and {b}"),
            (Bound::Incl(a), Bound::Open) => format!("a number >= {a}"),
            (Bound::Excl(a), Bound::Open) => format!("a number > {a}"),
            (Bound::Open, Bound::Incl(b)) => format!("a number <= {b}"),
            (Bound::Open, Bound::Excl(b)) => format!("a number < {b}"),
            (Bound::Open, Bound::Open) => "a decimal number".to_owned(),
        }
    }
}

/// Collects problems while the schema is walked.
#[derive(Debug, Default)]
pub(crate) struct Walker {
    pub(crate) problems: Vec<Problem>,
}

impl Walker {
    /// Records one problem at `path`.
    pub(crate) fn report(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Records "must be {what}, got {value}".
    pub(crate) fn expected(&mut self, path: &str, what: &str, got: &Node) {
        self.report(path, format!("must be {what}, got {}", got.describe()));
    }

    /// `true` or `false`.
    pub(crate) fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match node {
            Node::Bool(b) => Some(*b),
            other => {
                self.expected(path, "true or false", other);
                None
            }
        }
    }

    /// A non-empty string.
    pub(crate) fn string<'n>(&mut self, node: &'n Node, path: &str, what: &str) -> Option<&'n str> {
        match node {
            Node::Str(s) if !s.is_empty() => Some(s),
            other => {
                self.expected(path, what, other);
                None
            }
        }
    }

    /// `null`, or a non-empty string.
    pub(crate) fn opt_string<'n>(&mut self, node: &'n Node, path: &str, what: &str) -> Option<Option<&'n str>> {
        match node {
            Node::Null => Some(None),
            other => self.string(other, path, what).map(Some),
        }
    }

    /// `null`, or a non-empty filesystem path.
    pub(crate) fn opt_path(&mut self, node: &Node, path: &str) -> Option<Option<PathBuf>> {
        self.opt_string(node, path, "a path or null")
            .map(|p| p.map(PathBuf::from))
    }

    /// An unquoted integer in `[min, max]`, written in plain decimal digits.
    pub(crate) fn int(&mut self, node: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
        let what = if max == u64::MAX {
            format!("an integer >= {min}")
        } else {
            format!("an integer between {min} and {max}")
        };
        match node {
            Node::Number(text) => match text.parse::<u64>() {
                Ok(v) if (min..=max).contains(&v) => Some(v),
                _ => {
                    self.expected(path, &what, node);
                    None
                }
            },
            other => {
                self.expected(path, &what, other);
                None
            }
        }
    }

    /// A positive whole number of milliseconds.
    pub(crate) fn millis(&mut self, node: &Node, path: &str) -> Option<Duration> {
        self.int(node, path, 1, u64::MAX).map(Duration::from_millis)
    }

    /// A positive whole number of seconds.
    pub(crate) fn secs(&mut self, node: &Node, path: &str) -> Option<Duration> {
        self.int(node, path, 1, u64::MAX).map(Duration::from_secs)
    }

    /// An exact decimal within `range`, written as a YAML number or a quoted string.
    ///
    /// The value is carried as [`Money`] (i64 units of 10^-8) only because that is the exact
    /// signed decimal type at hand; callers convert it to the type the field means.
    pub(crate) fn decimal(&mut self, node: &Node, path: &str, range: Range) -> Option<Money> {
        let what = range.describe();
        let text = match node {
            Node::Number(t) | Node::Str(t) => t,
            other => {
                self.expected(path, &what, other);
                return None;
            }
        };
        match text.parse::<Money>() {
            Ok(v) if range.contains(v) => Some(v),
            Ok(_) => {
                self.expected(path, &what, node);
                None
            }
            Err(e @ (DecimalError::TooPrecise | DecimalError::Overflow)) => {
                self.report(path, format!("must be {what}, got {} ({e})", node.describe()));
                None
            }
            Err(_) => {
                self.expected(path, &what, node);
                None
            }
        }
    }

    /// A deterministic fixed-point factor within `range`, parsed from the decimal text.
    ///
    /// The range is checked on the exact decimal; the conversion to binary fixed point then
    /// rounds to the nearest 2^-32, which is what every consumer of a [`Factor`] computes with.
    pub(crate) fn factor(&mut self, node: &Node, path: &str, range: Range) -> Option<Factor> {
        let exact = self.decimal(node, path, range)?;
        to_factor(exact).or_else(|| {
            self.report(
                path,
                format!("{} does not fit a 32.32 fixed-point factor", node.describe()),
            );
            None
        })
    }

    /// A socket address such as `127.0.0.1:8080` or `[::1]:9100`.
    pub(crate) fn socket_addr(&mut self, node: &Node, path: &str) -> Option<SocketAddr> {
        const WHAT: &str = "an IP:port socket address such as \"127.0.0.1:8080\"";
        match node {
            Node::Str(s) => s.parse().ok().or_else(|| {
                self.expected(path, WHAT, node);
                None
            }),
            other => {
                self.expected(path, WHAT, other);
                None
            }
        }
    }

    /// One of a closed set of names, parsed by `from_name`.
    pub(crate) fn name<T>(
        &mut self,
        node: &Node,
        path: &str,
        choices: &[&str],
        from_name: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let found = match node {
            Node::Str(s) => from_name(s),
            _ => None,
        };
        if found.is_none() {
            self.expected(path, &format!("one of {}", choices.join(", ")), node);
        }
        found
    }

    /// A list.
    pub(crate) fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match node {
            Node::Seq(items) => Some(items),
            other => {
                self.expected(path, "a list", other);
                None
            }
        }
    }
}

/// Converts an exact decimal to a [`Factor`], rounding to the nearest 2^-32.
pub(crate) fn to_factor(exact: Money) -> Option<Factor> {
    exact.to_string().parse::<Factor>().ok()
}

/// A mapping being read key by key; whatever is not taken by the end is an unknown key.
#[derive(Debug)]
pub(crate) struct Fields<'n> {
    path: String,
    entries: Vec<(String, &'n Node, bool)>,
}

impl<'n> Fields<'n> {
    /// Opens `node` as a mapping, or records that it is not one.
    ///
    /// Keys that are not scalars are reported here and left out.
    pub(crate) fn open(w: &mut Walker, node: &'n Node, path: &str) -> Option<Self> {
        let Node::Map(pairs) = node else {
            w.expected(path, "a mapping", node);
            return None;
        };
        let mut entries = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            match key.key_text() {
                Some(k) => entries.push((k, value, false)),
                None => w.report(
                    path,
                    format!("mapping keys must be plain names, got {}", key.describe()),
                ),
            }
        }
        Some(Self {
            path: path.to_owned(),
            entries,
        })
    }

    /// The path of one of its keys.
    pub(crate) fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Takes the value of `key`, if present, marking the key as known.
    pub(crate) fn take(&mut self, key: &str) -> Option<&'n Node> {
        let entry = self.entries.iter_mut().find(|(k, _, _)| k == key)?;
        entry.2 = true;
        Some(entry.1)
    }

    /// Reads a key that must be present.
    pub(crate) fn required<T>(
        &mut self,
        w: &mut Walker,
        key: &str,
        read: impl FnOnce(&mut Walker, &'n Node, &str) -> Option<T>,
    ) -> Option<T> {
        let path = self.key_path(key);
        match self.take(key) {
            Some(node) => read(w, node, &path),
            None => {
                w.report(&path, "missing required key");
                None
            }
        }
    }

    /// Reads a key that may be absent, in which case `default_yaml` is read instead, through
    /// the same reader: defaults are written in YAML and validated like the file itself.
    pub(crate) fn defaulted<T>(
        &mut self,
        w: &mut Walker,
        key: &str,
        default_yaml: &str,
        read: impl FnOnce(&mut Walker, &Node, &str) -> Option<T>,
    ) -> Option<T> {
        let path = self.key_path(key);
        match self.take(key) {
            Some(node) => read(w, node, &path),
            None => match parse_tree(default_yaml) {
                Ok(node) => read(w, &node, &path),
                Err(p) => {
                    w.report(
                        &path,
                        format!("internal error: the built-in default is invalid: {}", p.message),
                    );
                    None
                }
            },
        }
    }

    /// All entries not yet taken, as `(key, path, value)`, for mappings whose keys are data
    /// (venues, symbols, stage names); taking them marks them known.
    pub(crate) fn rest(&mut self) -> Vec<(String, String, &'n Node)> {
        let mut out = Vec::new();
        for (key, node, taken) in &mut self.entries {
            if !*taken {
                *taken = true;
                out.push((key.clone(), join(&self.path, key), *node));
            }
        }
        out
    }

    /// Reports every key that no reader took.
    pub(crate) fn finish(self, w: &mut Walker) {
        for (key, _, taken) in self.entries {
            if !taken {
                w.report(&join(&self.path, &key), "unknown key");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(t: &str) -> Node {
        Node::Number(t.to_owned())
    }

    #[test]
    fn decimals_are_exact_and_ranged() {
        let mut w = Walker::default();
        let pct = Range::above_upto(0, 100);
        assert_eq!(
            w.decimal(&num("61837.63"), "p", Range::POSITIVE).unwrap().to_string(),
            "61837.63"
        );
        assert_eq!(
            w.decimal(&Node::Str("0.5".into()), "p", pct).unwrap().to_string(),
            "0.5"
        );
        assert!(w.problems.is_empty());
        assert!(w.decimal(&num("0"), "a", pct).is_none());
        assert!(w.decimal(&num("100.00000001"), "b", pct).is_none());
        assert!(w.decimal(&Node::Str("abc".into()), "c", pct).is_none());
        assert!(w.decimal(&num("1e3"), "d", pct).is_none());
        assert!(w.decimal(&num("0.000000001"), "e", pct).is_none());
        assert_eq!(
            w.problems[0].message,
            "must be a number greater than 0 and at most 100, got 0"
        );
        assert_eq!(
            w.problems[2].message,
            "must be a number greater than 0 and at most 100, got \"abc\""
        );
        assert!(
            w.problems[4].message.contains("more than 8 decimals"),
            "{:?}",
            w.problems[4]
        );
        assert_eq!(w.problems.len(), 5);
    }

    #[test]
    fn integers_are_plain_digits() {
        let mut w = Walker::default();
        assert_eq!(w.int(&num("500"), "a", 1, u64::MAX), Some(500));
        assert_eq!(w.int(&num("0"), "b", 1, u64::MAX), None);
        assert_eq!(w.int(&num("0x10"), "c", 0, u64::MAX), None);
        assert_eq!(w.int(&num("1.5"), "d", 0, u64::MAX), None);
        assert_eq!(w.int(&Node::Str("5".into()), "e", 0, u64::MAX), None);
        assert_eq!(w.int(&num("-1"), "f", 0, 10), None);
        let paths: Vec<_> = w.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["b", "c", "d", "e", "f"]);
    }

    #[test]
    fn factors_round_to_nearest() {
        let mut w = Walker::default();
        let f = w.factor(&num("0.5"), "f", Range::closed(0, 1)).unwrap();
        assert_eq!(f, Factor::from_num(0.5));
        let tenth = w.factor(&num("0.1"), "f", Range::closed(0, 1)).unwrap();
        assert_eq!(tenth, "0.1".parse::<Factor>().unwrap());
    }

    #[test]
    fn fields_report_unknown_and_missing_keys() {
        let node = Node::Map(vec![
            (Node::Str("a".into()), num("1")),
            (Node::Str("zz".into()), num("2")),
        ]);
        let mut w = Walker::default();
        let mut f = Fields::open(&mut w, &node, "sec").unwrap();
        assert_eq!(f.required(&mut w, "a", |w, n, p| w.int(n, p, 0, 9)), Some(1));
        assert_eq!(f.required(&mut w, "b", |w, n, p| w.int(n, p, 0, 9)), None);
        assert_eq!(f.defaulted(&mut w, "c", "7", |w, n, p| w.int(n, p, 0, 9)), Some(7));
        f.finish(&mut w);
        let got: Vec<_> = w
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        assert_eq!(got, ["sec.b: missing required key", "sec.zz: unknown key"]);
    }
}
