//! A small JSON reader and string escaper, enough for `cargo metadata` and criterion's
//! `estimates.json`/`benchmark.json`. Kept here so xtask needs no dependencies.

use std::iter::Peekable;
use std::str::Chars;

use crate::cmd::{Error, Result};

/// A parsed JSON value. Numbers are `f64`, objects keep their key order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Self>),
    Object(Vec<(String, Self)>),
}

impl Value {
    /// The member `key` of an object; `None` for a missing key or a non-object.
    pub(crate) fn get(&self, key: &str) -> Option<&Self> {
        match self {
            Self::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(n) => Some(*n),
            _ => None,
        }
    }

    pub(crate) fn as_array(&self) -> &[Self] {
        match self {
            Self::Array(items) => items,
            _ => &[],
        }
    }
}

impl Value {
    /// The value as JSON text, one member per line at the top two levels (readable diffs of
    /// `docs/benchmarks.json`), compact below.
    pub(crate) fn to_json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out
    }

    fn write(&self, out: &mut String, depth: usize) {
        let (open, close, items): (char, char, Vec<(Option<&str>, &Self)>) = match self {
            Self::Null => return out.push_str("null"),
            Self::Bool(b) => return out.push_str(if *b { "true" } else { "false" }),
            Self::Number(n) if n.is_finite() => return out.push_str(&format!("{n}")),
            Self::Number(_) => return out.push_str("null"),
            Self::String(s) => return out.push_str(&quote(s)),
            Self::Array(items) => ('[', ']', items.iter().map(|v| (None, v)).collect()),
            Self::Object(members) => (
                '{',
                '}',
                members.iter().map(|(k, v)| (Some(k.as_str()), v)).collect(),
            ),
        };
        let pretty = depth < 2 && !items.is_empty();
        let indent = |out: &mut String, depth: usize| {
            out.push('\n');
            out.push_str(&"  ".repeat(depth));
        };
        out.push(open);
        for (index, (key, value)) in items.iter().enumerate() {
            if index > 0 {
                out.push_str(if pretty { "," } else { ", " });
            }
            if pretty {
                indent(out, depth.saturating_add(1));
            }
            if let Some(key) = key {
                out.push_str(&quote(key));
                out.push_str(": ");
            }
            value.write(out, depth.saturating_add(1));
        }
        if pretty {
            indent(out, depth);
        }
        out.push(close);
    }
}

/// An object from `(key, value)` pairs.
pub(crate) fn object<K: Into<String>>(members: impl IntoIterator<Item = (K, Value)>) -> Value {
    Value::Object(members.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

/// Parses one JSON document.
pub(crate) fn parse(text: &str) -> Result<Value> {
    let mut parser = Parser {
        chars: text.chars().peekable(),
        depth: 0,
    };
    let value = parser.value()?;
    parser.skip_ws();
    match parser.chars.next() {
        None => Ok(value),
        Some(c) => Err(Error::msg(format!("JSON: trailing `{c}`"))),
    }
}

/// `s` as a JSON string literal, quotes included.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len().saturating_add(2));
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Nesting deeper than this is rejected rather than recursed into.
const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    chars: Peekable<Chars<'a>>,
    depth: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
    }

    fn expect(&mut self, want: char) -> Result {
        match self.chars.next() {
            Some(c) if c == want => Ok(()),
            Some(c) => Err(Error::msg(format!("JSON: expected `{want}`, found `{c}`"))),
            None => Err(Error::msg(format!(
                "JSON: expected `{want}`, found the end"
            ))),
        }
    }

    fn value(&mut self) -> Result<Value> {
        self.skip_ws();
        match self.chars.peek().copied() {
            Some('{') => self.nested(Self::object),
            Some('[') => self.nested(Self::array),
            Some('"') => self.string().map(Value::String),
            Some('t') => self.word("true", Value::Bool(true)),
            Some('f') => self.word("false", Value::Bool(false)),
            Some('n') => self.word("null", Value::Null),
            Some(c) if c == '-' || c.is_ascii_digit() => self.number(),
            Some(c) => Err(Error::msg(format!("JSON: unexpected `{c}`"))),
            None => Err(Error::msg("JSON: unexpected end")),
        }
    }

    fn nested(&mut self, parse: fn(&mut Self) -> Result<Value>) -> Result<Value> {
        if self.depth >= MAX_DEPTH {
            return Err(Error::msg("JSON: nested too deeply"));
        }
        self.depth = self.depth.saturating_add(1);
        let value = parse(self);
        self.depth = self.depth.saturating_sub(1);
        value
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value> {
        for want in word.chars() {
            self.expect(want)?;
        }
        Ok(value)
    }

    fn number(&mut self) -> Result<Value> {
        let mut text = String::new();
        while let Some(c) = self
            .chars
            .next_if(|c| c.is_ascii_digit() || "+-.eE".contains(*c))
        {
            text.push(c);
        }
        text.parse::<f64>()
            .map(Value::Number)
            .map_err(|_| Error::msg(format!("JSON: bad number `{text}`")))
    }

    fn string(&mut self) -> Result<String> {
        self.expect('"')?;
        let mut out = String::new();
        loop {
            match self.chars.next() {
                Some('"') => return Ok(out),
                Some('\\') => match self.chars.next() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('/') => out.push('/'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some('u') => self.unicode_escape(&mut out)?,
                    _ => return Err(Error::msg("JSON: bad escape")),
                },
                Some(c) => out.push(c),
                None => return Err(Error::msg("JSON: unterminated string")),
            }
        }
    }

    /// After `\u`: one UTF-16 unit, or a surrogate pair written as two escapes.
    fn unicode_escape(&mut self, out: &mut String) -> Result {
        let first = self.hex4()?;
        let mut units = vec![first];
        if (0xD800..0xDC00).contains(&first) {
            self.expect('\\')?;
            self.expect('u')?;
            units.push(self.hex4()?);
        }
        for c in char::decode_utf16(units) {
            out.push(c.map_err(|_| Error::msg("JSON: bad \\u escape"))?);
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u16> {
        let digits: String = (0..4).filter_map(|_| self.chars.next()).collect();
        u16::from_str_radix(&digits, 16).map_err(|_| Error::msg("JSON: bad \\u escape"))
    }

    fn array(&mut self) -> Result<Value> {
        self.expect('[')?;
        let mut items = Vec::new();
        self.skip_ws();
        if self.chars.next_if_eq(&']').is_some() {
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_ws();
            match self.chars.next() {
                Some(',') => {}
                Some(']') => return Ok(Value::Array(items)),
                _ => return Err(Error::msg("JSON: expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self) -> Result<Value> {
        self.expect('{')?;
        let mut members = Vec::new();
        self.skip_ws();
        if self.chars.next_if_eq(&'}').is_some() {
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws();
            let key = self.string()?;
            self.skip_ws();
            self.expect(':')?;
            members.push((key, self.value()?));
            self.skip_ws();
            match self.chars.next() {
                Some(',') => {}
                Some('}') => return Ok(Value::Object(members)),
                _ => return Err(Error::msg("JSON: expected `,` or `}`")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_criterion_estimates() {
        let text = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,
            "lower_bound":1.5e3,"upper_bound":1600.25},"point_estimate":1550.0,
            "standard_error":-2.5E-1},"median":{"point_estimate":1540.5},"slope":null,
            "ok":[true,false,[]],"s":"a\"\\\/\n\u00e9\ud83d\ude00"}"#;
        let v = parse(text).unwrap();
        let median = v.get("median").and_then(|m| m.get("point_estimate"));
        assert_eq!(median.and_then(Value::as_f64), Some(1540.5));
        assert_eq!(v.get("slope"), Some(&Value::Null));
        assert_eq!(
            v.get("s").and_then(Value::as_str),
            Some("a\"\\/\n\u{e9}\u{1F600}")
        );
        assert_eq!(v.get("ok").map(Value::as_array).map(<[_]>::len), Some(3));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "\"abc",
            "tru",
            "1 2",
            "\"\\ud800\"",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&"[".repeat(10_000)).is_err());
    }

    #[test]
    fn writes_what_it_parses() {
        let text = r#"{"a": [1, 2.5, {"b": null, "c": [true, false]}], "d": "x\"y", "e": {}}"#;
        let value = parse(text).unwrap();
        let written = value.to_json();
        assert_eq!(parse(&written).unwrap(), value);
        assert!(
            written.starts_with("{\n  \"a\": [\n    1,\n    2.5,\n    {\"b\": null"),
            "{written}"
        );
        assert_eq!(Value::Number(f64::NAN).to_json(), "null");
        assert_eq!(
            object([("k", Value::Number(3.0))]).to_json(),
            "{\n  \"k\": 3\n}"
        );
    }

    #[test]
    fn quote_round_trips() {
        let s = "tab\there \"quoted\" back\\slash \u{1} é";
        assert_eq!(parse(&quote(s)).unwrap(), Value::String(s.to_owned()));
    }
}
