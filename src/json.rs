//! A compact, non-recursive JSON cursor for response bodies.
//!
//! The decoders walk the shapes they expect with [`Cursor`]'s small helpers
//! (`begin_object`/`next_key`, `begin_array`/`next_element`, `parse_str`,
//! `parse_u32`, `skip_value`). Anything they do not need is skipped by
//! [`Cursor::skip_value`], which uses an explicit bit stack instead of
//! recursion, so hostile nesting can never overflow the call stack.
//!
//! - Strings are borrowed from the body unless they contain a `\` escape;
//!   only then is a `String` allocated for the unescaped text.
//! - All escapes are handled, `\uXXXX` surrogate pairs decoded. A lone
//!   surrogate escape (`"\ud83d"` without its pair: valid JSON text by
//!   RFC 8259's grammar, and what JavaScript's `JSON.stringify` writes for
//!   a string cut in the middle of an emoji) is accepted: a parsed string
//!   ([`Cursor::parse_str`]: names, user ids) gets U+FFFD (`�`) in its
//!   place, and a skipped value (a user's state) keeps its text as is. Raw
//!   control characters, malformed escapes and invalid UTF-8 are rejected
//!   with the byte offset.
//! - Numbers that do not fit the requested integer type are rejected, not
//!   wrapped.
//! - A skipped value may nest at most [`MAX_DEPTH`] levels.

use crate::error::{Error, Result};
use std::borrow::Cow;

/// How deeply a skipped value (e.g. a user's state) may nest: 128 levels.
/// (`serde_json` reads at most 127: with the `serde` feature the state
/// setters check that too, see [`crate::state`].)
pub const MAX_DEPTH: usize = 128;

/// The decode error's reason past [`MAX_DEPTH`].
pub(crate) const TOO_DEEP: &str = "nesting deeper than 128 levels";

/// Bytes that end the fast scan of a string: `"`, `\` and control chars.
static STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// A fixed-size stack of container kinds (1 = object, 0 = array).
struct BitStack {
    bits: [u64; MAX_DEPTH / 64],
    len: usize,
}

impl BitStack {
    fn new() -> Self {
        BitStack {
            bits: [0; MAX_DEPTH / 64],
            len: 0,
        }
    }
    fn push(&mut self, is_object: bool) -> bool {
        let (word, bit) = (self.len / 64, self.len % 64);
        let Some(w) = self.bits.get_mut(word) else {
            return false;
        };
        if is_object {
            *w |= 1 << bit;
        } else {
            *w &= !(1 << bit);
        }
        self.len += 1;
        true
    }
    fn top_is_object(&self) -> Option<bool> {
        let i = self.len.checked_sub(1)?;
        self.bits.get(i / 64).map(|w| (w >> (i % 64)) & 1 == 1)
    }
    fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
    }
}

/// The kind of the next value, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `{`
    Object,
    /// `[`
    Array,
    /// `"`
    String,
    /// `-` or a digit
    Number,
    /// `true` / `false`
    Bool,
    /// `null`
    Null,
}

/// A position in a JSON document held in memory.
///
/// The whole document is checked to be UTF-8 once, up front
/// ([`Cursor::from_bytes`]); strings are then sliced out of it by byte
/// offsets at quote positions, which are always char boundaries, so no
/// string is validated twice.
#[derive(Clone)]
pub struct Cursor<'a> {
    text: &'a str,
    // NOTE(size): the bytes come from `text` (`buf()`), not a second
    // field: a smaller cursor to copy.
    pos: usize,
    /// Added to every reported offset, for cursors over a slice of a body.
    base: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `text`.
    pub fn new(text: &'a str) -> Self {
        Self::with_base(text, 0)
    }

    /// A cursor at the start of `buf`, which must be UTF-8 (as JSON is);
    /// otherwise a decode error at the first bad byte.
    pub fn from_bytes(buf: &'a [u8]) -> Result<Self> {
        match std::str::from_utf8(buf) {
            Ok(text) => Ok(Self::new(text)),
            Err(e) => Err(Error::decode(e.valid_up_to(), "invalid utf-8")),
        }
    }

    /// A cursor over `text` that reports offsets as if it began at `base`
    /// (saturating at `usize::MAX`: any base is accepted).
    pub fn with_base(text: &'a str, base: usize) -> Self {
        Cursor { text, pos: 0, base }
    }

    /// The text from this cursor's position to `later`'s (same document).
    pub fn text_between(&self, later: &Cursor<'a>) -> &'a str {
        self.text.get(self.pos..later.pos).unwrap_or_default()
    }

    /// The text from byte `start` to the current position.
    fn since(&self, start: usize) -> &'a str {
        self.text.get(start..self.pos).unwrap_or_default()
    }

    /// The current offset (including the base).
    pub fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    /// Bytes left after the current position.
    pub fn remaining(&self) -> usize {
        self.buf().len().saturating_sub(self.pos)
    }

    /// A decode error at the current position.
    #[inline(never)]
    pub fn err(&self, reason: &'static str) -> Error {
        Error::decode(self.offset(), reason)
    }

    /// The document's bytes.
    #[inline]
    fn buf(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.buf().get(self.pos).copied()
    }

    #[inline]
    fn bump(&mut self) {
        self.pos += 1;
    }

    /// Skips JSON whitespace.
    #[inline]
    pub fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.bump();
        }
    }

    /// Skips whitespace and consumes `byte`, or fails with `reason`.
    fn consume(&mut self, byte: u8, reason: &'static str) -> Result<()> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.bump();
            Ok(())
        } else {
            Err(self.err(reason))
        }
    }

    /// The kind of the next value, after whitespace.
    pub fn peek_kind(&mut self) -> Result<Kind> {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => Ok(Kind::Object),
            Some(b'[') => Ok(Kind::Array),
            Some(b'"') => Ok(Kind::String),
            Some(b'-' | b'0'..=b'9') => Ok(Kind::Number),
            Some(b't' | b'f') => Ok(Kind::Bool),
            Some(b'n') => Ok(Kind::Null),
            Some(_) => Err(self.err("expected a json value")),
            None => Err(self.err("unexpected end of body")),
        }
    }

    /// Consumes `{`. Follow with [`Cursor::next_key`] until it returns `None`.
    pub fn begin_object(&mut self) -> Result<()> {
        self.consume(b'{', "expected an object")
    }

    /// The next key of the object (its `:` consumed), or `None` after the
    /// closing `}`. `first` must start `true` for each object.
    pub fn next_key(&mut self, first: &mut bool) -> Result<Option<Cow<'a, str>>> {
        self.skip_ws();
        match self.peek() {
            Some(b'}') => {
                self.bump();
                return Ok(None);
            }
            Some(b',') if !*first => {
                self.bump();
                self.skip_ws();
            }
            _ if *first => {}
            _ => return Err(self.err("expected ',' or '}'")),
        }
        *first = false;
        if self.peek() != Some(b'"') {
            return Err(self.err("expected an object key"));
        }
        let key = self.parse_str()?;
        self.consume(b':', "expected ':'")?;
        Ok(Some(key))
    }

    /// Consumes `[`. Follow with [`Cursor::next_element`] until it returns `false`.
    pub fn begin_array(&mut self) -> Result<()> {
        self.consume(b'[', "expected an array")
    }

    /// Whether another element follows (its `,` consumed), or `false` after
    /// the closing `]`. `first` must start `true` for each array.
    pub fn next_element(&mut self, first: &mut bool) -> Result<bool> {
        self.skip_ws();
        match self.peek() {
            Some(b']') => {
                self.bump();
                Ok(false)
            }
            Some(b',') if !*first => {
                self.bump();
                Ok(true)
            }
            Some(_) if *first => {
                *first = false;
                Ok(true)
            }
            None => Err(self.err("unexpected end of body")),
            _ => Err(self.err("expected ',' or ']'")),
        }
    }

    /// Parses a string, borrowing it unless it contains escapes.
    pub fn parse_str(&mut self) -> Result<Cow<'a, str>> {
        self.consume(b'"', "expected a string")?;
        let start = self.pos;
        let has_escape = self.scan_str_body()?;
        // scan_str_body leaves pos just after the closing quote.
        let text = self.text.get(start..self.pos - 1).unwrap_or_default();
        if !has_escape {
            return Ok(Cow::Borrowed(text));
        }
        unescape(text.as_bytes(), self.base.saturating_add(start)).map(Cow::Owned)
    }

    /// Moves past the body of a string whose opening quote is consumed,
    /// checking escapes and control characters. Returns whether it saw `\`.
    fn scan_str_body(&mut self) -> Result<bool> {
        let mut has_escape = false;
        loop {
            // Fast path: run to the next stop byte.
            let rest = self.buf().get(self.pos..).unwrap_or_default();
            let n = rest
                .iter()
                .position(|&b| STRING_STOP[usize::from(b)])
                .ok_or_else(|| {
                    Error::decode(
                        self.base.saturating_add(self.buf().len()),
                        "unterminated string",
                    )
                })?;
            self.pos += n;
            match self.peek() {
                Some(b'"') => {
                    self.bump();
                    return Ok(has_escape);
                }
                Some(b'\\') => {
                    has_escape = true;
                    self.bump();
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.bump(),
                        Some(b'u') => {
                            self.bump();
                            for _ in 0..4 {
                                match self.peek() {
                                    Some(b) if b.is_ascii_hexdigit() => self.bump(),
                                    _ => return Err(self.err("invalid \\u escape")),
                                }
                            }
                        }
                        _ => return Err(self.err("invalid escape")),
                    }
                }
                _ => return Err(self.err("control character in string")),
            }
        }
    }

    /// Parses an unsigned integer that must fit in `u32`.
    pub fn parse_u32(&mut self) -> Result<u32> {
        let at = self.offset();
        let v = self.parse_u64()?;
        u32::try_from(v).map_err(|_| Error::decode(at, "number does not fit in u32"))
    }

    /// Parses an unsigned integer that must fit in `u64`. A fraction or
    /// exponent is an error: the protocol's counts and timestamps are integers.
    pub fn parse_u64(&mut self) -> Result<u64> {
        self.skip_ws();
        let start = self.pos;
        let mut v: u64 = 0;
        while let Some(b @ b'0'..=b'9') = self.peek() {
            if self.pos > start && v == 0 {
                return Err(self.err("leading zero in number"));
            }
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                .ok_or_else(|| {
                    Error::decode(self.base.saturating_add(start), "number overflows u64")
                })?;
            self.bump();
        }
        if self.pos == start {
            return Err(self.err("expected an unsigned integer"));
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return Err(self.err("expected an unsigned integer"));
        }
        Ok(v)
    }

    /// Parses `true` or `false`.
    pub fn parse_bool(&mut self) -> Result<bool> {
        self.skip_ws();
        if self.eat_literal(b"true") {
            Ok(true)
        } else if self.eat_literal(b"false") {
            Ok(false)
        } else {
            Err(self.err("expected true or false"))
        }
    }

    fn eat_literal(&mut self, lit: &[u8]) -> bool {
        if self.buf().get(self.pos..self.pos + lit.len()) == Some(lit) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn scan_number(&mut self) -> Result<()> {
        // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
        if self.peek() == Some(b'-') {
            self.bump();
        }
        match self.peek() {
            Some(b'0') => self.bump(),
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = self.peek() {
                    self.bump();
                }
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.bump();
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.bump();
            if let Some(b'+' | b'-') = self.peek() {
                self.bump();
            }
            self.digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) -> Result<()> {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.bump();
        }
        if self.pos == start {
            Err(self.err("invalid number"))
        } else {
            Ok(())
        }
    }

    fn scan_string_checked(&mut self) -> Result<()> {
        // Opening quote already peeked. Escapes are checked to be
        // well-formed; a lone surrogate escape is kept (module docs).
        self.bump();
        self.scan_str_body().map(drop)
    }

    /// Validates and skips one value of any kind, returning its raw text.
    /// Never recurses; fails past [`MAX_DEPTH`] levels of nesting.
    pub fn skip_value(&mut self) -> Result<&'a str> {
        self.skip_ws();
        let start = self.pos;
        let mut stack = BitStack::new();
        'value: loop {
            self.skip_ws();
            match self.peek() {
                Some(b'{') => {
                    if !stack.push(true) {
                        return Err(self.err(TOO_DEEP));
                    }
                    self.bump();
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.bump();
                        stack.pop();
                    } else {
                        self.skip_key()?;
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    if !stack.push(false) {
                        return Err(self.err(TOO_DEEP));
                    }
                    self.bump();
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.bump();
                        stack.pop();
                    } else {
                        continue 'value;
                    }
                }
                Some(b'"') => self.scan_string_checked()?,
                Some(b'-' | b'0'..=b'9') => self.scan_number()?,
                Some(b't') if self.eat_literal(b"true") => {}
                Some(b'f') if self.eat_literal(b"false") => {}
                Some(b'n') if self.eat_literal(b"null") => {}
                None => return Err(self.err("unexpected end of body")),
                Some(_) => return Err(self.err("expected a json value")),
            }
            // After a complete value: close containers or move to the next item.
            loop {
                let Some(is_object) = stack.top_is_object() else {
                    return Ok(self.since(start));
                };
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.bump();
                        if is_object {
                            self.skip_ws();
                            self.skip_key()?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if is_object => {
                        self.bump();
                        stack.pop();
                    }
                    Some(b']') if !is_object => {
                        self.bump();
                        stack.pop();
                    }
                    None => return Err(self.err("unexpected end of body")),
                    _ if is_object => return Err(self.err("expected ',' or '}'")),
                    _ => return Err(self.err("expected ',' or ']'")),
                }
            }
        }
    }

    /// Skips one value whatever its nesting, returning its raw text:
    /// tokens are checked (strings, numbers, literals) but brackets are
    /// only counted, not matched by kind. For finding where an element of
    /// a batch ends, so that one element too deep (or malformed) for
    /// [`Cursor::skip_value`] can be skipped alone; the element is then
    /// decoded strictly. Never recurses.
    pub fn skip_value_deep(&mut self) -> Result<&'a str> {
        self.skip_ws();
        let start = self.pos;
        let mut depth: usize = 0;
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'{' | b'[') => {
                    depth = depth.saturating_add(1);
                    self.bump();
                    continue;
                }
                Some(b'}' | b']') if depth > 0 => {
                    depth -= 1;
                    self.bump();
                }
                Some(b',' | b':') if depth > 0 => {
                    self.bump();
                    continue;
                }
                Some(b'"') => self.scan_string_checked()?,
                Some(b'-' | b'0'..=b'9') => self.scan_number()?,
                Some(b't') if self.eat_literal(b"true") => {}
                Some(b'f') if self.eat_literal(b"false") => {}
                Some(b'n') if self.eat_literal(b"null") => {}
                None => return Err(self.err("unexpected end of body")),
                Some(_) => return Err(self.err("expected a json value")),
            }
            if depth == 0 {
                return Ok(self.since(start));
            }
        }
    }

    fn skip_key(&mut self) -> Result<()> {
        if self.peek() != Some(b'"') {
            return Err(self.err("expected an object key"));
        }
        self.scan_string_checked()?;
        self.consume(b':', "expected ':'")
    }

    /// Checks that only whitespace follows.
    pub fn finish(&mut self) -> Result<()> {
        self.skip_ws();
        if self.pos < self.buf().len() {
            Err(self.err("trailing bytes after the json value"))
        } else {
            Ok(())
        }
    }
}

fn hex4(raw: &[u8], at: usize) -> Option<u16> {
    raw.get(at..at + 4)?.iter().try_fold(0u16, |acc, &b| {
        let digit = char::from(b).to_digit(16)?;
        Some(acc << 4 | digit as u16)
    })
}

/// The low surrogate escaped right after the `\uXXXX` escape at `at`, if
/// one is there.
fn low_surrogate_after(raw: &[u8], at: usize) -> Option<u16> {
    if raw.get(at + 6..at + 8) != Some(b"\\u") {
        return None;
    }
    hex4(raw, at + 8).filter(|lo| (0xDC00..=0xDFFF).contains(lo))
}

/// The JSON text `raw` (already validated) with every lone surrogate
/// escape replaced by `\ufffd`, for parsers that reject them
/// (`serde_json`). Same length; borrowed when there is none.
#[cfg(any(feature = "serde", test))]
pub(crate) fn replace_lone_surrogates(raw: &str) -> Cow<'_, str> {
    let bytes = raw.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while let Some(n) = bytes
        .get(i..)
        .and_then(|r| r.iter().position(|&b| b == b'\\'))
    {
        i += n;
        if bytes.get(i + 1) != Some(&b'u') {
            // `\x`: skip both bytes, so `\\u` is not taken for an escape.
            i += 2;
            continue;
        }
        match hex4(bytes, i + 2) {
            Some(0xD800..=0xDBFF) if low_surrogate_after(bytes, i).is_some() => i += 12,
            Some(0xD800..=0xDFFF) => {
                let copy = out.get_or_insert_with(|| bytes.to_vec());
                if let Some(digits) = copy.get_mut(i + 2..i + 6) {
                    digits.copy_from_slice(b"fffd");
                }
                i += 6;
            }
            _ => i += 6,
        }
    }
    match out.map(String::from_utf8) {
        // ASCII hex digits replaced by ASCII: still UTF-8.
        Some(Ok(s)) => Cow::Owned(s),
        _ => Cow::Borrowed(raw),
    }
}

/// How deeply the (already validated) JSON text nests: 0 for a scalar, 1
/// for `{}` or `[1]`, and so on. Never recurses.
pub(crate) fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth = depth.saturating_add(1);
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Unescapes the body of a string already checked by `scan_str_body` and
/// known to be UTF-8. `base` is the body offset of `raw[0]`.
fn unescape(raw: &[u8], base: usize) -> Result<String> {
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        // Copy the run up to the next backslash in one go.
        let run_end = raw
            .get(i..)
            .and_then(|r| r.iter().position(|&b| b == b'\\'))
            .map_or(raw.len(), |n| i + n);
        out.extend_from_slice(raw.get(i..run_end).unwrap_or_default());
        i = run_end;
        if i >= raw.len() {
            break;
        }
        let esc = raw.get(i + 1).copied();
        let simple = match esc {
            Some(b'"') => Some(b'"'),
            Some(b'\\') => Some(b'\\'),
            Some(b'/') => Some(b'/'),
            Some(b'b') => Some(0x08),
            Some(b'f') => Some(0x0C),
            Some(b'n') => Some(b'\n'),
            Some(b'r') => Some(b'\r'),
            Some(b't') => Some(b'\t'),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        let unit = hex4(raw, i + 2)
            .ok_or_else(|| Error::decode(base.saturating_add(i), "invalid \\u escape"))?;
        let ch = match (unit, low_surrogate_after(raw, i)) {
            (0xD800..=0xDBFF, Some(lo)) => {
                let c = 0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(lo) - 0xDC00);
                i += 12;
                char::from_u32(c)
            }
            // A lone surrogate (a high one without its low one, or a low
            // one alone): U+FFFD, as `String::from_utf16_lossy` does.
            (0xD800..=0xDFFF, _) => {
                i += 6;
                Some(char::REPLACEMENT_CHARACTER)
            }
            (u, _) => {
                i += 6;
                char::from_u32(u32::from(u))
            }
        };
        let ch = ch.ok_or_else(|| Error::decode(base.saturating_add(i), "invalid \\u escape"))?;
        let mut tmp = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
    }
    // Valid UTF-8 runs plus encoded chars are valid UTF-8.
    String::from_utf8(out).map_err(|_| Error::decode(base, "invalid utf-8 in string"))
}

/// Validates that `buf` holds exactly one JSON value (plus whitespace).
pub fn validate(buf: &[u8]) -> Result<()> {
    let mut c = Cursor::from_bytes(buf)?;
    c.skip_value()?;
    c.finish()
}

/// Parses an array of strings, borrowing each unless it has escapes.
pub fn string_list<'a>(c: &mut Cursor<'a>) -> Result<Vec<Cow<'a, str>>> {
    let mut out = Vec::with_capacity(count_elements(c)?);
    c.begin_array()?;
    let mut first = true;
    while c.next_element(&mut first)? {
        out.push(c.parse_str()?);
    }
    Ok(out)
}

/// Parses decimal digits (and nothing else) into a `u64`.
pub fn digits_u64(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| {
        let d = char::from(b).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// Whether `text` is exactly one JSON object (plus whitespace).
pub fn is_object(text: &str) -> bool {
    let mut c = Cursor::new(text);
    matches!(c.peek_kind(), Ok(Kind::Object)) && c.skip_value().is_ok() && c.finish().is_ok()
}

/// Counts the elements of the array that starts at the cursor, without
/// moving it. Used to size a `Vec` once instead of growing it per element.
pub fn count_elements(c: &Cursor<'_>) -> Result<usize> {
    let mut probe = c.clone();
    probe.begin_array()?;
    let mut n = 0;
    let mut first = true;
    while probe.next_element(&mut first)? {
        probe.skip_value()?;
        n += 1;
    }
    Ok(n)
}

/// Counts the members of the object that starts at the cursor, without
/// moving it.
pub fn count_members(c: &Cursor<'_>) -> Result<usize> {
    let mut probe = c.clone();
    probe.begin_object()?;
    let mut n = 0;
    let mut first = true;
    while probe.next_key(&mut first)?.is_some() {
        probe.skip_value()?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str_of(json: &str) -> Result<Cow<'_, str>> {
        let mut c = Cursor::new(json);
        let s = c.parse_str()?;
        c.finish()?;
        Ok(s)
    }

    #[test]
    fn strings() {
        let ok = [
            (r#""abc""#, "abc", true),
            (r#""a\"b""#, "a\"b", false),
            (r#""\\\/\b\f\n\r\t""#, "\\/\u{8}\u{c}\n\r\t", false),
            (r#""\u00e9""#, "é", false),
            (r#""\ud83d\ude00""#, "😀", false),
            (r#""é😀""#, "é😀", true),
            (r#""\u017b\u00d3\u0141""#, "ŻÓŁ", false),
            // Lone surrogates (valid JSON text, RFC 8259 §7): U+FFFD each.
            (r#""abc\ud83d""#, "abc\u{fffd}", false),
            (r#""\ude00""#, "\u{fffd}", false),
            (r#""\ud83dx\ude00""#, "\u{fffd}x\u{fffd}", false),
            (r#""\ud83d\u0041""#, "\u{fffd}A", false),
            (r#""\ud83d\ud83d\ude00""#, "\u{fffd}😀", false),
            (r#""\ude00\ud83d""#, "\u{fffd}\u{fffd}", false),
        ];
        for (json, want, borrowed) in ok {
            let got = str_of(json).unwrap();
            assert_eq!(got, want, "{json}");
            assert_eq!(matches!(got, Cow::Borrowed(_)), borrowed, "{json}");
        }
        let bad = [
            ("\"a\u{1}\"", 2, "control character in string"),
            (r#""\x""#, 2, "invalid escape"),
            (r#""\u12""#, 5, "invalid \\u escape"),
            (r#""abc"#, 4, "unterminated string"),
        ];
        for (json, offset, reason) in bad {
            assert_eq!(
                str_of(json).unwrap_err(),
                Error::decode(offset, reason),
                "{json}"
            );
        }
        assert_eq!(
            Cursor::from_bytes(b"\"a\xff\"").err(),
            Some(Error::decode(2, "invalid utf-8"))
        );
    }

    #[test]
    fn numbers() {
        let cases: [(&str, Result<u32>); 8] = [
            ("0", Ok(0)),
            ("42", Ok(42)),
            ("4294967295", Ok(u32::MAX)),
            (
                "4294967296",
                Err(Error::decode(0, "number does not fit in u32")),
            ),
            (
                "99999999999999999999",
                Err(Error::decode(0, "number overflows u64")),
            ),
            ("01", Err(Error::decode(1, "leading zero in number"))),
            ("-1", Err(Error::decode(0, "expected an unsigned integer"))),
            ("1.5", Err(Error::decode(1, "expected an unsigned integer"))),
        ];
        for (json, want) in cases {
            assert_eq!(Cursor::new(json).parse_u32(), want, "{json}");
        }
    }

    #[test]
    fn skip_values() {
        let ok = [
            "null",
            "true",
            "false",
            "-0.5e+10",
            "[]",
            "{}",
            r#"{"a":[1,{"b":null}],"c":"\ud83d\ude00"}"#,
            " [ 1 , [ ] , { } ] ",
            // A lone surrogate escape is kept as it is in a skipped value.
            r#"{"name":"abc\ud83d"}"#,
            r#"["\ude00","\ud800x"]"#,
        ];
        for json in ok {
            let mut c = Cursor::new(json);
            let raw = c.skip_value().unwrap();
            assert_eq!(raw, json.trim(), "{json}");
            c.finish().unwrap();
        }
        let bad = [
            "[1,]",
            "{\"a\"}",
            "{\"a\":1,}",
            "[1 2]",
            "{1:2}",
            "01x",
            "tru",
            "[",
            "{\"a\":1]",
            "-",
            "1.",
            "1e",
            "\"\\ud80\"",
        ];
        for json in bad {
            assert!(validate(json.as_bytes()).is_err(), "{json}");
        }
    }

    #[test]
    fn lone_surrogates_replaced_in_text() {
        let cases = [
            (r#"{"n":"abc\ud83d"}"#, r#"{"n":"abc\ufffd"}"#),
            (
                r#"{"n":"\ude00\ud83d\ude00\uD800"}"#,
                r#"{"n":"\ufffd\ud83d\ude00\ufffd"}"#,
            ),
            (r#"{"n":"\ud83d\u0041"}"#, r#"{"n":"\ufffd\u0041"}"#),
            // An escaped backslash followed by `u` is not an escape.
            (r#"{"n":"\\ud800"}"#, r#"{"n":"\\ud800"}"#),
            (r#"{"\ud800":1}"#, r#"{"\ufffd":1}"#),
        ];
        for (text, want) in cases {
            assert_eq!(replace_lone_surrogates(text), want, "{text}");
        }
        let clean = r#"{"n":"\ud83d\ude00 \" \\"}"#;
        assert!(matches!(replace_lone_surrogates(clean), Cow::Borrowed(_)));
    }

    #[test]
    fn depth_of_text() {
        for (text, depth) in [
            ("1", 0),
            ("{}", 1),
            (r#"{"a":[1,{"b":[]}]}"#, 4),
            (r#"{"a":"[[[{{"}"#, 1),
            (r#"{"a\"[":["\\",[]]}"#, 3),
        ] {
            assert_eq!(nesting_depth(text), depth, "{text}");
        }
        let deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert_eq!(nesting_depth(&deep), MAX_DEPTH);
    }

    #[test]
    fn objects_only() {
        for yes in ["{}", " {\"a\":[1]} ", "{\"k\":{\"n\":null}}"] {
            assert!(is_object(yes), "{yes}");
        }
        for no in ["", "[]", "1", "\"{}\"", "{", "{} {}", "{\"a\":}", "null"] {
            assert!(!is_object(no), "{no}");
        }
    }

    #[test]
    fn depth_limit() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        validate(ok.as_bytes()).unwrap();
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(
            validate(deep.as_bytes()).unwrap_err(),
            Error::decode(MAX_DEPTH, "nesting deeper than 128 levels")
        );
        let hostile = "{\"a\":".repeat(100_000);
        assert!(validate(hostile.as_bytes()).is_err());
    }

    #[test]
    fn skip_value_deep_finds_the_end_at_any_depth() {
        let deep = "[".repeat(10_000) + "\"x\"" + &"]".repeat(10_000);
        let body = format!("{deep} , 1");
        let mut c = Cursor::new(&body);
        assert_eq!(c.skip_value_deep().unwrap(), deep);
        assert_eq!(c.offset(), deep.len());
        for (text, end) in [
            ("1,2", 1),
            ("{\"a\":[1,{}]}]", 12),
            ("\"s\" x", 3),
            ("null]", 4),
        ] {
            let mut c = Cursor::new(text);
            assert_eq!(c.skip_value_deep().unwrap().len(), end, "{text}");
        }
        for bad in ["[1,", "{\"a\":\"b", "]", "[tru]", "[\"\\x\"]", ""] {
            assert!(Cursor::new(bad).skip_value_deep().is_err(), "{bad}");
        }
    }

    #[test]
    fn objects_and_arrays() {
        let body = r#"{"a": [1, 2, 3], "b": {"c": "d"}, "e": []}"#;
        let mut c = Cursor::new(body);
        c.begin_object().unwrap();
        let mut first = true;
        let mut keys = vec![];
        while let Some(k) = c.next_key(&mut first).unwrap() {
            if k == "a" {
                assert_eq!(count_elements(&c).unwrap(), 3);
            }
            if k == "b" {
                assert_eq!(count_members(&c).unwrap(), 1);
            }
            keys.push(k.into_owned());
            c.skip_value().unwrap();
        }
        c.finish().unwrap();
        assert_eq!(keys, ["a", "b", "e"]);
    }

    #[test]
    fn offsets_saturate_at_any_base() {
        let mut c = Cursor::with_base("  \"\\ud80\"", usize::MAX - 1);
        assert_eq!(c.offset(), usize::MAX - 1);
        c.skip_ws();
        assert_eq!(c.offset(), usize::MAX);
        match c.parse_str().unwrap_err().into_kind() {
            crate::ErrorKind::Decode { offset, .. } => assert_eq!(offset, usize::MAX),
            other => panic!("{other:?}"),
        }
        let mut n = Cursor::with_base("99999999999999999999", usize::MAX);
        assert!(n.parse_u64().is_err());
    }
}
