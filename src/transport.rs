//! The HTTP rules every connection shares, on headers and bytes (no
//! sockets): the response head (status, `Content-Length`, `Retry-After`)
//! and body caps, the request URL, the PEM roots of a custom certificate
//! authority, and the response type. The connections themselves are in
//! `conn` (one kept HTTP/1.1 or TLS connection) and `pool` (ordinary
//! calls).

use crate::config::DEFAULT_MAX_RESPONSE_SIZE;
use crate::error::{Error, Result, TransportErrorKind};
use std::io::Read;
use std::time::Duration;
use ureq_proto::http::{self, Uri};

/// How long a long-poll subscribe may take: the server holds it up to 280 s
/// (docs/PROTOCOL.md §5), so the read timeout must be longer.
pub const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(310);

/// A response: status and body bytes.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body, at most the configured cap.
    pub body: Vec<u8>,
    /// The `Retry-After` header, in seconds, when present.
    pub retry_after: Option<Duration>,
}

impl Response {
    /// The error this response's status reports (decoded from the body),
    /// `None` for a 2xx.
    pub(crate) fn error(&self) -> Option<Error> {
        crate::envelope::status_error(self.status, &self.body)
    }
}

/// The largest buffer reserved up front from a declared `Content-Length`:
/// a server that declares more (under a large cap) and sends less must not
/// make the client reserve it.
const MAX_PREALLOCATION: usize = 64 * 1024;

/// What the client takes from a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    /// `Retry-After` in seconds (saturated), the first one when repeated.
    pub retry_after: Option<Duration>,
    /// A `Content-Length` that parsed and fits a `usize`.
    pub declared: Option<usize>,
}

/// Reads `Retry-After` and `Content-Length` from response headers, and
/// fails when the declared length is over `cap`. Any header bytes are
/// accepted: unparsable values count as absent.
pub(crate) fn read_head(headers: &http::HeaderMap, cap: usize) -> Result<Head> {
    // One walk over the headers (no hashed look-ups), keeping the first
    // value of each name, as `HeaderMap::get` would.
    let (mut retry_after, mut length) = (None, None);
    for (name, value) in headers {
        let slot = if name == http::header::RETRY_AFTER {
            &mut retry_after
        } else if name == http::header::CONTENT_LENGTH {
            &mut length
        } else {
            continue;
        };
        if slot.is_none() {
            *slot = Some(value.to_str().ok());
        }
    }
    let retry_after = retry_after
        .flatten()
        .and_then(crate::retry::parse_retry_after);
    let declared = length
        .flatten()
        .and_then(|v| crate::json::digits_u64(v.trim()))
        // Larger than memory can hold: certainly over the cap.
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if declared.is_some_and(|n| n > cap) {
        return Err(too_large(cap));
    }
    Ok(Head {
        retry_after,
        declared,
    })
}

/// The buffer for a body of `declared` bytes (when the head says) under a
/// cap of `cap`: the declared length reserved in one allocation instead of
/// doubling from 8, but never more than [`MAX_PREALLOCATION`].
pub(crate) fn body_buffer(declared: Option<usize>, cap: usize) -> Vec<u8> {
    Vec::with_capacity(declared.unwrap_or(1024).min(cap).min(MAX_PREALLOCATION))
}

/// Reads a body of at most `cap` bytes (for fuzzing the code after the
/// parser; the connection reads its bodies itself).
pub(crate) fn read_body(reader: impl Read, declared: Option<usize>, cap: usize) -> Result<Vec<u8>> {
    let mut body = body_buffer(declared, cap);
    // One byte past the cap tells "exactly the cap" from "over it"; a cap
    // of usize::MAX saturates instead of wrapping to 0.
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(limit)
        .read_to_end(&mut body)
        .map_err(|e| Error::transport(TransportErrorKind::Io, e.to_string()))?;
    if body.len() > cap {
        return Err(too_large(cap));
    }
    Ok(body)
}

/// Runs the response handling that follows the HTTP parser on bytes laid
/// out as `status (2 bytes, big endian) | header lines | \n\n | body`:
/// head reading, the size cap, the error from a non-2xx body, and the retry
/// decision for it. For fuzzing; not part of the stable API.
#[doc(hidden)]
pub fn fuzz_response(data: &[u8]) {
    use crate::retry::{decide, RetryPolicy};
    let (status, rest) = match data {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => return,
    };
    let split = rest.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i + 2..).unwrap_or_default(),
        ),
        None => (rest, &[][..]),
    };
    let mut headers = http::HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (
            line.get(..colon).unwrap_or_default(),
            line.get(colon + 1..).unwrap_or_default(),
        );
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    }
    // A cap from the input too, so tiny and huge caps are both covered.
    let cap = match status % 3 {
        0 => 16,
        1 => DEFAULT_MAX_RESPONSE_SIZE,
        _ => usize::MAX,
    };
    let Ok(head) = read_head(&headers, cap) else {
        return;
    };
    let Ok(body) = read_body(body, head.declared, cap) else {
        return;
    };
    let response = Response {
        status,
        body,
        retry_after: head.retry_after,
    };
    if let Some(err) = response.error() {
        let policy = RetryPolicy::default();
        for elapsed in [Duration::ZERO, Duration::from_secs(29), Duration::MAX] {
            let _ = decide(
                &policy,
                1,
                &err,
                head.retry_after,
                elapsed,
                u64::from(status),
            );
        }
        let _ = decide(
            &RetryPolicy {
                deadline: None,
                ..policy
            },
            1,
            &err,
            head.retry_after,
            Duration::ZERO,
            0,
        );
    }
}

/// Parses a request URL. Taking the `String` by value lets the parsed URL
/// keep its bytes instead of copying them.
pub(crate) fn parse_uri(url: String) -> Result<Uri> {
    Uri::try_from(url).map_err(|_| Error::input("origin", "the request url is not valid"))
}

pub(crate) fn too_large(cap: usize) -> Error {
    Error::transport(
        TransportErrorKind::BodyTooLarge,
        format!("the body exceeds the {cap}-byte cap"),
    )
}

/// The DER bodies of the `CERTIFICATE` blocks of a PEM text, in order;
/// other blocks are skipped. `None` for an unterminated block or bad
/// base64.
///
/// NOTE(size): a few hundred bytes of code; the PEM reader of ureq
/// (`ureq::tls::parse_pem`) cost about 3 KB in the footprint build.
#[cfg(feature = "tls")]
pub(crate) fn pem_certificates(pem: &[u8]) -> Option<Vec<Vec<u8>>> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let mut certs = Vec::new();
    let mut rest = pem;
    while let Some(start) = find(rest, BEGIN) {
        let body = rest.get(start + BEGIN.len()..)?;
        let end = find(body, END)?;
        certs.push(base64_decode(body.get(..end)?)?);
        rest = body.get(end + END.len()..)?;
    }
    Some(certs)
}

/// Decodes standard base64 (`+/`, `=` padding), ignoring ASCII whitespace.
#[cfg(feature = "tls")]
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits, mut pad) = (0u32, 0u32, 0usize);
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pad += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        if pad > 0 {
            return None; // data after padding
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // Leftover bits must be the zero padding of a final partial group.
    if pad > 2 || bits >= 6 || acc & ((1 << bits) - 1) != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod head_tests {
    use super::*;
    use ureq_proto::http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn content_length_edges() {
        let cases: [(&str, usize, Option<Option<usize>>); 7] = [
            ("10", 10, Some(Some(10))),
            ("11", 10, None),
            // Past u64 or usize: over any cap, never a wrap to a small number.
            ("99999999999999999999999999", usize::MAX, Some(None)),
            ("18446744073709551615", usize::MAX, Some(Some(usize::MAX))),
            ("18446744073709551615", 1 << 20, None),
            ("-1", 10, Some(None)),
            (" 7 ", 10, Some(Some(7))),
        ];
        for (value, cap, want) in cases {
            let got = read_head(&headers(&[("content-length", value)]), cap)
                .ok()
                .map(|h| h.declared);
            assert_eq!(got, want, "{value} cap {cap}");
        }
        // Duplicate Retry-After: the first counts; text is ignored.
        let h = read_head(
            &headers(&[
                ("retry-after", "3"),
                ("retry-after", "999"),
                ("content-length", "0"),
            ]),
            10,
        )
        .unwrap();
        assert_eq!(h.retry_after, Some(Duration::from_secs(3)));
        // As with `HeaderMap::get`: a first value that is not text hides a
        // later one, and other headers in between change nothing.
        let mut h = headers(&[("content-length", "5"), ("x-a", "1")]);
        h.append("retry-after", HeaderValue::from_bytes(b"\xff").unwrap());
        h.append("retry-after", HeaderValue::from_static("4"));
        h.append("content-length", HeaderValue::from_static("6"));
        let head = read_head(&h, 10).unwrap();
        assert_eq!(head.retry_after, None);
        assert_eq!(head.declared, Some(5));
    }

    #[test]
    fn body_cap_edges() {
        // A cap of usize::MAX saturates instead of wrapping to "read nothing".
        assert_eq!(read_body(&b"abc"[..], None, usize::MAX).unwrap(), b"abc");
        // A declared length near usize::MAX reserves a bounded buffer.
        let body = read_body(&b"{}"[..], Some(usize::MAX), usize::MAX).unwrap();
        assert!(body.capacity() <= MAX_PREALLOCATION);
        assert!(matches!(
            read_body(&b"abcd"[..], None, 3).map_err(Error::into_kind),
            Err(crate::ErrorKind::Transport {
                kind: TransportErrorKind::BodyTooLarge,
                ..
            })
        ));
        assert_eq!(read_body(&b"abc"[..], Some(3), 3).unwrap(), b"abc");
    }

    #[test]
    fn fuzz_entry_handles_edges() {
        for data in [
            &b""[..],
            b"\x01\xf7retry-after: 18446744073709551615\ncontent-length: 5\n\n{\"a\":1",
            b"\x01\xf4retry-after: 99999999999999999999999\n\n<html>",
            b"\x00\xc8content-length: 99999999999999999999\n\n{}",
            b"\xff\xff\n\n",
        ] {
            fuzz_response(data);
        }
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;

    /// Standard base64 with padding, wrapped at `width` characters.
    fn encode(bytes: &[u8], width: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        let mut wrapped = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && i % width == 0 {
                wrapped.push_str("\r\n");
            }
            wrapped.push(c);
        }
        wrapped
    }

    proptest::proptest! {
        #[test]
        fn base64_round_trip(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200), width in 4usize..80) {
            proptest::prop_assert_eq!(base64_decode(encode(&bytes, width).as_bytes()), Some(bytes));
        }

        #[test]
        fn pem_never_panics(text in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut pem = b"x-----BEGIN CERTIFICATE-----".to_vec();
            pem.extend_from_slice(&text);
            let _ = pem_certificates(&pem);
            let _ = base64_decode(&text);
        }
    }

    #[test]
    fn pem_blocks() {
        let pem = format!(
            "junk\n-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n\
             -----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n\
             -----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            encode(b"first der", 64),
            encode(b"second", 64)
        );
        assert_eq!(
            pem_certificates(pem.as_bytes()),
            Some(vec![b"first der".to_vec(), b"second".to_vec()])
        );
        assert_eq!(pem_certificates(b"no blocks here"), Some(vec![]));
        for bad in [
            &b"-----BEGIN CERTIFICATE-----\nAAAA\n"[..],
            b"-----BEGIN CERTIFICATE-----\nA!AA\n-----END CERTIFICATE-----",
            b"-----BEGIN CERTIFICATE-----\nAAAAA\n-----END CERTIFICATE-----",
            b"-----BEGIN CERTIFICATE-----\nAA==AA\n-----END CERTIFICATE-----",
            b"-----BEGIN CERTIFICATE-----\nAB==\n-----END CERTIFICATE-----",
        ] {
            assert_eq!(
                pem_certificates(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
