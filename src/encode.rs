//! Hand-written percent-encoding, one byte set per URL context.
//!
//! Each set is a 128-bit mask of the ASCII bytes that are written as they
//! are; every other byte (all non-ASCII bytes included) becomes `%XX` with
//! upper-case hex digits.
//!
//! Names are encoded one at a time and joined afterwards, so a `,` inside a
//! name can never be confused with the `,` that separates names. (The
//! builders reject names containing `,` anyway, because PubNub's service
//! splits on the decoded comma.)

use std::borrow::Cow;

/// A set of ASCII bytes that are written unescaped.
#[derive(Clone, Copy, Debug)]
pub struct ByteSet(u128);

impl ByteSet {
    const fn alnum() -> u128 {
        let mut m = 0u128;
        let mut b = b'0';
        while b <= b'9' {
            m |= 1 << b;
            b += 1;
        }
        b = b'A';
        while b <= b'Z' {
            m |= 1 << b;
            b += 1;
        }
        b = b'a';
        while b <= b'z' {
            m |= 1 << b;
            b += 1;
        }
        m
    }

    /// Whether `byte` is written as it is.
    #[inline]
    pub const fn keeps(&self, byte: u8) -> bool {
        byte < 128 && (self.0 >> byte) & 1 == 1
    }
}

/// Path segments (sub key, channel names, user ids): RFC 3986 *unreserved*
/// characters `A-Z a-z 0-9 - _ . ~` are kept; everything else, including
/// `/ ? # % + , ;` and space, is escaped. This is what PubNub's Python SDK
/// sends (`quote(s, safe="~")`).
pub const PATH_SEGMENT: ByteSet =
    ByteSet(ByteSet::alnum() | 1 << b'-' | 1 << b'_' | 1 << b'.' | 1 << b'~');

/// Query values: only `A-Z a-z 0-9 - _ .` are kept (`~` is escaped too).
/// This is exactly the canonical form that PubNub's signature v2 uses
/// (docs/PROTOCOL.md §3), so the query string we send is the one we sign.
pub const QUERY_VALUE: ByteSet = ByteSet(ByteSet::alnum() | 1 << b'-' | 1 << b'_' | 1 << b'.');

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `input` to `out`, percent-encoding every byte outside `set`.
pub fn encode_into(out: &mut String, input: &str, set: ByteSet) {
    let bytes = input.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !set.keeps(b) {
            // Everything between `start` and `i` is kept ASCII, hence a char boundary.
            out.push_str(input.get(start..i).unwrap_or_default());
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
            start = i + 1;
        }
    }
    out.push_str(input.get(start..).unwrap_or_default());
}

/// Percent-encodes `input`, borrowing it when nothing needs escaping.
pub fn encode(input: &str, set: ByteSet) -> Cow<'_, str> {
    if input.bytes().all(|b| set.keeps(b)) {
        Cow::Borrowed(input)
    } else {
        let mut out = String::with_capacity(input.len().saturating_mul(3));
        encode_into(&mut out, input, set);
        Cow::Owned(out)
    }
}

/// Appends each name encoded as a path segment, joined with a raw `,`.
/// An empty list is written as a single `,`, which is how the protocol
/// addresses "channel groups only" (docs/PROTOCOL.md §1).
pub fn encode_names_into<S: AsRef<str>>(out: &mut String, names: &[S]) {
    if names.is_empty() {
        out.push(',');
        return;
    }
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        encode_into(out, name.as_ref(), PATH_SEGMENT);
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes (and, if `plus_as_space`, `+` as a space).
/// Returns `None` on a truncated or non-hex escape.
pub fn decode_bytes(input: &[u8], plus_as_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'%' => {
                let hi = hex_val(*input.get(i + 1)?)?;
                let lo = hex_val(*input.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Decodes a percent-encoded UTF-8 string; `None` if an escape is bad or
/// the result is not UTF-8.
pub fn decode(input: &str) -> Option<String> {
    String::from_utf8(decode_bytes(input.as_bytes(), false)?).ok()
}

/// Appends `&key=value` (or `key=value` on an empty query), encoding `value`.
pub(crate) fn push_param(query: &mut String, key: &str, value: &str) {
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str(key);
    query.push('=');
    encode_into(query, value, QUERY_VALUE);
}

/// Appends `&key=` followed by the names joined with `,` (sent as `%2C`, as
/// PubNub's JS SDK does).
pub(crate) fn push_list_param<S: AsRef<str>>(query: &mut String, key: &str, names: &[S]) {
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str(key);
    query.push('=');
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            query.push_str("%2C");
        }
        encode_into(query, name.as_ref(), QUERY_VALUE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value: which are kept in each context, and that the escape
    /// is always `%` + two upper-case hex digits.
    #[test]
    fn all_256_bytes() {
        for b in 0u8..=255 {
            let path_keep = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
            let query_keep = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
            assert_eq!(PATH_SEGMENT.keeps(b), path_keep, "path byte {b:#04x}");
            assert_eq!(QUERY_VALUE.keeps(b), query_keep, "query byte {b:#04x}");
            if b < 128 {
                let s = char::from(b).to_string();
                let mut out = String::new();
                encode_into(&mut out, &s, PATH_SEGMENT);
                if path_keep {
                    assert_eq!(out, s);
                } else {
                    assert_eq!(out, format!("%{b:02X}"));
                }
                assert_eq!(decode(&out).as_deref(), Some(s.as_str()));
            }
            // Non-ASCII bytes never appear alone in a &str; check them as raw bytes.
            let raw = decode_bytes(format!("%{b:02X}").as_bytes(), false);
            assert_eq!(raw, Some(vec![b]));
        }
    }

    #[test]
    fn table() {
        let cases = [
            ("lobby", PATH_SEGMENT, "lobby"),
            ("a b", PATH_SEGMENT, "a%20b"),
            ("a/b?c#d%e+f", PATH_SEGMENT, "a%2Fb%3Fc%23d%25e%2Bf"),
            ("é😀", PATH_SEGMENT, "%C3%A9%F0%9F%98%80"),
            ("~x", PATH_SEGMENT, "~x"),
            ("~x", QUERY_VALUE, "%7Ex"),
            ("{\"a\":1}", QUERY_VALUE, "%7B%22a%22%3A1%7D"),
            ("!*'()[]", QUERY_VALUE, "%21%2A%27%28%29%5B%5D"),
        ];
        for (input, set, want) in cases {
            assert_eq!(encode(input, set), want, "{input}");
        }
        assert!(matches!(encode("plain", QUERY_VALUE), Cow::Borrowed(_)));
    }

    #[test]
    fn names_and_lists() {
        let mut p = String::new();
        encode_names_into::<&str>(&mut p, &[]);
        assert_eq!(p, ",");
        p.clear();
        encode_names_into(&mut p, &["a b", "c/d"]);
        assert_eq!(p, "a%20b,c%2Fd");
        let mut q = String::new();
        push_param(&mut q, "uuid", "me");
        push_list_param(&mut q, "channel-group", &["g1", "g 2"]);
        assert_eq!(q, "uuid=me&channel-group=g1%2Cg%202");
    }

    #[test]
    fn bad_escapes() {
        for bad in ["%", "%4", "%G0", "a%zz"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
        assert_eq!(decode("%FF"), None, "not utf-8");
        assert_eq!(decode_bytes(b"a+b", true), Some(b"a b".to_vec()));
    }
}
