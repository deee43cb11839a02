//! A small allocation-free JSON reader for order-entry responses.
//!
//! The venues answer an order request with one small JSON object (a few hundred bytes to a few
//! KiB) of which the gateway needs a handful of fields. [`Obj::get`] finds a member by scanning
//! the object text and returns its value as a borrowed [`Value`]: strings are returned raw (the
//! bytes between the quotes, escapes left as they are, which is right for the ids, decimals and
//! enum names read here), numbers as their text, objects and arrays as nested views. Nothing is
//! copied or allocated; each lookup rescans the object, which on bodies this size costs less than
//! building an index would.
//!
//! The reader is lenient where leniency cannot change a value it returns (it does not check that
//! a number is well formed until asked to convert it), and strict about structure: a body whose
//! brackets or strings do not close yields `None`, never a wrong field.

/// A JSON value, borrowed from the response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// A string: the bytes between the quotes, escapes not decoded.
    Str(&'a [u8]),
    /// A number, as written.
    Num(&'a [u8]),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// An object.
    Obj(Obj<'a>),
    /// An array.
    Arr(Arr<'a>),
}

impl<'a> Value<'a> {
    /// The text of a string or a number (venues send decimals either way).
    pub fn text(&self) -> Option<&'a [u8]> {
        match *self {
            Value::Str(s) | Value::Num(s) => Some(s),
            _ => None,
        }
    }

    /// A string or number as a signed integer.
    pub fn as_i64(&self) -> Option<i64> {
        parse_i64(self.text()?)
    }

    /// A string or number as an unsigned integer.
    pub fn as_u64(&self) -> Option<u64> {
        parse_u64(self.text()?)
    }

    /// The object, if this is one.
    pub fn as_obj(&self) -> Option<Obj<'a>> {
        match *self {
            Value::Obj(o) => Some(o),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_arr(&self) -> Option<Arr<'a>> {
        match *self {
            Value::Arr(a) => Some(a),
            _ => None,
        }
    }
}

/// A JSON object: its text from `{` to `}` inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Obj<'a>(&'a [u8]);

/// A JSON array: its text from `[` to `]` inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arr<'a>(&'a [u8]);

impl<'a> Obj<'a> {
    /// The object that makes up `body` (surrounding whitespace allowed), or `None` if the body
    /// is not one well-delimited object.
    pub fn parse(body: &'a [u8]) -> Option<Obj<'a>> {
        let start = skip_ws(body, 0);
        if body.get(start) != Some(&b'{') {
            return None;
        }
        let end = skip_value(body, start)?;
        if skip_ws(body, end) != body.len() {
            return None;
        }
        Some(Obj(&body[start..end]))
    }

    /// The value of member `key` (the first one, if a key repeats).
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.members().find(|(k, _)| *k == key.as_bytes()).map(|(_, v)| v)
    }

    /// The text of a string or number member.
    pub fn text(&self, key: &str) -> Option<&'a [u8]> {
        self.get(key)?.text()
    }

    /// A string or number member as a signed integer.
    pub fn i64(&self, key: &str) -> Option<i64> {
        self.get(key)?.as_i64()
    }

    /// A string or number member as an unsigned integer.
    pub fn u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    /// The members in order, as (raw key, value). Iteration stops at the first malformed member.
    pub fn members(&self) -> Members<'a> {
        Members { text: self.0, at: 1 }
    }
}

impl<'a> Arr<'a> {
    /// The elements in order. Iteration stops at the first malformed element.
    pub fn iter(&self) -> Elements<'a> {
        Elements { text: self.0, at: 1 }
    }
}

/// Iterator over an object's members.
#[derive(Debug)]
pub struct Members<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a [u8], Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let t = self.text;
        let mut i = skip_ws(t, self.at);
        if t.get(i) == Some(&b',') {
            i = skip_ws(t, i + 1);
        }
        if t.get(i) != Some(&b'"') {
            self.at = t.len();
            return None;
        }
        let key_end = skip_string(t, i)?;
        let key = &t[i + 1..key_end - 1];
        let colon = skip_ws(t, key_end);
        if t.get(colon) != Some(&b':') {
            self.at = t.len();
            return None;
        }
        let v = skip_ws(t, colon + 1);
        let (value, end) = value_at(t, v)?;
        self.at = end;
        Some((key, value))
    }
}

/// Iterator over an array's elements.
#[derive(Debug)]
pub struct Elements<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let t = self.text;
        let mut i = skip_ws(t, self.at);
        if t.get(i) == Some(&b',') {
            i = skip_ws(t, i + 1);
        }
        match t.get(i) {
            None | Some(b']') => {
                self.at = t.len();
                None
            }
            Some(_) => {
                let (value, end) = value_at(t, i)?;
                self.at = end;
                Some(value)
            }
        }
    }
}

/// The value starting at `i` and the offset just past it.
fn value_at(t: &[u8], i: usize) -> Option<(Value<'_>, usize)> {
    let end = skip_value(t, i)?;
    let raw = &t[i..end];
    let value = match raw.first()? {
        b'"' => Value::Str(&raw[1..raw.len() - 1]),
        b'{' => Value::Obj(Obj(raw)),
        b'[' => Value::Arr(Arr(raw)),
        b't' if raw == b"true" => Value::Bool(true),
        b'f' if raw == b"false" => Value::Bool(false),
        b'n' if raw == b"null" => Value::Null,
        b'-' | b'0'..=b'9' => Value::Num(raw),
        _ => return None,
    };
    Some((value, end))
}

fn skip_ws(t: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\r' | b'\n') = t.get(i) {
        i += 1;
    }
    i
}

/// Offset just past the string starting with the quote at `i`.
fn skip_string(t: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match *t.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// Offset just past the value starting at `i`.
fn skip_value(t: &[u8], i: usize) -> Option<usize> {
    match *t.get(i)? {
        b'"' => skip_string(t, i),
        b'{' | b'[' => {
            // Brackets nest; strings may contain brackets, so they are skipped whole.
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *t.get(j)? {
                    b'"' => {
                        j = skip_string(t, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(&b) = t.get(j) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                    break;
                }
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// A decimal integer with an optional leading `-`.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    match s {
        [b'-', rest @ ..] => parse_u64(rest).and_then(|v| 0i64.checked_sub_unsigned(v)),
        _ => parse_u64(s).and_then(|v| i64::try_from(v).ok()),
    }
}

/// A decimal integer without sign.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_binance_full_response() {
        let body = br#"{"symbol":"BTCUSDT","orderId":28,"orderListId":-1,"clientOrderId":"mx-7",
            "status":"FILLED","fills":[{"price":"4000.00000000","qty":"1.00000000","commission":"4.00000000",
            "commissionAsset":"USDT","tradeId":56},{"price":"3999.5","qty":"2","commission":"0","commissionAsset":"BNB","tradeId":57}]}"#;
        let o = Obj::parse(body).unwrap();
        assert_eq!(o.u64("orderId"), Some(28));
        assert_eq!(o.i64("orderListId"), Some(-1));
        assert_eq!(o.text("status"), Some(&b"FILLED"[..]));
        let fills: Vec<_> = o.get("fills").unwrap().as_arr().unwrap().iter().collect();
        assert_eq!(fills.len(), 2);
        assert_eq!(fills[1].as_obj().unwrap().text("commissionAsset"), Some(&b"BNB"[..]));
        assert_eq!(o.get("missing"), None);
    }

    #[test]
    fn nested_keys_do_not_shadow_top_level_ones() {
        let o = Obj::parse(br#"{"result":{"retCode":5,"s":"a}\"b"},"retCode":0, "list":[] }"#).unwrap();
        assert_eq!(o.i64("retCode"), Some(0));
        assert_eq!(
            o.get("result").unwrap().as_obj().unwrap().text("s"),
            Some(&br#"a}\"b"#[..])
        );
        assert_eq!(o.get("list").unwrap().as_arr().unwrap().iter().count(), 0);
    }

    #[test]
    fn malformed_bodies_give_nothing() {
        assert!(Obj::parse(b"{\"a\":\"x}").is_none());
        assert!(Obj::parse(b"[1]").is_none());
        assert!(Obj::parse(b"{\"a\":1} trailing").is_none());
        assert!(Obj::parse(b"").is_none());
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
    }
}
