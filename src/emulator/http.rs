//! A tiny HTTP/1.1 server: GET requests, keep-alive, bounded head size
//! and connection count. Bodies are ignored; answers carry Content-Length.

use crate::encode::decode_bytes;
use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The largest request head (request line + headers) accepted.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Idle time after which a kept-alive connection is closed.
const IDLE: Duration = Duration::from_secs(30);

/// A parsed request.
#[derive(Debug)]
pub(crate) struct HttpRequest {
    /// Raw path, still percent-encoded.
    pub path: String,
    /// Raw query, still percent-encoded.
    pub query: String,
    pub close: bool,
}

impl HttpRequest {
    /// The decoded value of query parameter `key` (last one wins).
    pub fn param(&self, key: &str) -> Option<String> {
        let mut found = None;
        for pair in self.query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k == key {
                found = decode_bytes(v.as_bytes(), false).and_then(|b| String::from_utf8(b).ok());
            }
        }
        found
    }
}

/// The outcome of reading one request.
pub(crate) enum Incoming {
    Request(HttpRequest),
    /// A request that cannot be served: answer with this status and close.
    Bad(u16, &'static str),
    /// The peer closed or went idle.
    Closed,
}

pub(crate) fn read_request<R: BufRead>(reader: &mut R) -> Incoming {
    let mut head = Vec::with_capacity(512);
    // Read lines until the blank line, never more than MAX_HEAD bytes.
    loop {
        let before = head.len();
        // `before` never exceeds MAX_HEAD here (checked below each read).
        let limit = u64::try_from(MAX_HEAD.saturating_add(1).saturating_sub(before)).unwrap_or(0);
        match reader.by_ref().take(limit).read_until(b'\n', &mut head) {
            Ok(0) => {
                return if before == 0 {
                    Incoming::Closed
                } else {
                    Incoming::Bad(400, "truncated request")
                }
            }
            Ok(_) => {}
            Err(_) => return Incoming::Closed,
        }
        if head.len() > MAX_HEAD {
            // PubNub's front end answers an over-long head with 414
            // (docs/PROTOCOL.md §2); the body is the Balancer's. The rest of the
            // head is read first (up to a bound), so closing the connection
            // does not reset it under the answer.
            drain_head(reader, MAX_DRAIN);
            return Incoming::Bad(414, "Request URI Too Long");
        }
        let line = head.get(before..).unwrap_or_default();
        if line == b"\r\n" || line == b"\n" {
            if before == 0 {
                // Tolerate a stray blank line between requests.
                head.clear();
                continue;
            }
            break;
        }
        if !line.ends_with(b"\n") {
            return Incoming::Closed;
        }
    }
    let Ok(text) = std::str::from_utf8(&head) else {
        return Incoming::Bad(400, "request head is not utf-8");
    };
    let mut lines = text.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Incoming::Bad(400, "malformed request line");
    };
    if !version.starts_with("HTTP/1.") {
        return Incoming::Bad(400, "unsupported http version");
    }
    if method != "GET" {
        return Incoming::Bad(405, "only GET is supported");
    }
    if !target.starts_with('/') {
        return Incoming::Bad(400, "malformed request target");
    }
    let mut close = version == "HTTP/1.0";
    let mut content_length = 0usize;
    for h in lines {
        let Some((name, value)) = h.split_once(':') else {
            if h.is_empty() {
                continue;
            }
            return Incoming::Bad(400, "malformed header");
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) if n <= MAX_HEAD => content_length = n,
                _ => return Incoming::Bad(413, "request body too large"),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Incoming::Bad(400, "request bodies are not supported");
        }
    }
    if content_length > 0 {
        let mut sink = vec![0u8; content_length];
        if reader.read_exact(&mut sink).is_err() {
            return Incoming::Closed;
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Incoming::Request(HttpRequest {
        path: path.to_string(),
        query: query.to_string(),
        close,
    })
}

/// How much of an over-long head is read and dropped before answering.
const MAX_DRAIN: usize = 64 * 1024;

/// Reads and drops lines until the blank line ending a head, at most
/// `budget` bytes.
fn drain_head<R: BufRead>(reader: &mut R, budget: usize) {
    let mut line = Vec::with_capacity(256);
    let mut left = budget;
    while left > 0 {
        line.clear();
        let limit = u64::try_from(left).unwrap_or(u64::MAX);
        match reader.by_ref().take(limit).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
        if line == b"\r\n" || line == b"\n" {
            return;
        }
        // Bound the buffer: only the end of a line matters.
        line.truncate(0);
    }
}

pub(crate) fn write_response(
    out: &mut impl Write,
    status: u16,
    body: &str,
    close: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        414 => "Request-URI Too Long",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/javascript; charset=\"UTF-8\"\r\nContent-Length: {}\r\nConnection: {}\r\nAccess-Control-Allow-Origin: *\r\n\r\n",
        body.len(),
        if close { "close" } else { "keep-alive" }
    );
    let mut buf = Vec::with_capacity(head.len() + body.len());
    buf.extend_from_slice(head.as_bytes());
    buf.extend_from_slice(body.as_bytes());
    out.write_all(&buf)?;
    out.flush()
}

pub(crate) fn configure(stream: &TcpStream) {
    let _ = stream.set_read_timeout(Some(IDLE));
    let _ = stream.set_write_timeout(Some(IDLE));
    let _ = stream.set_nodelay(true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(bytes: &[u8]) -> Incoming {
        read_request(&mut std::io::Cursor::new(bytes))
    }

    #[test]
    fn requests_table() {
        let ok =
            parse(b"GET /v2/presence/sub-key/k/uuid/u?uuid=u&a=%20b HTTP/1.1\r\nHost: x\r\n\r\n");
        let Incoming::Request(r) = ok else {
            panic!("not parsed")
        };
        assert_eq!(r.path, "/v2/presence/sub-key/k/uuid/u");
        assert_eq!(r.param("a").as_deref(), Some(" b"));
        assert!(!r.close);
        let cases: [(&[u8], Option<u16>); 7] = [
            (b"", None),
            (b"GET / HTTP/1.1\r\n", Some(400)),
            (b"garbage\r\n\r\n", Some(400)),
            (b"PUT / HTTP/1.1\r\n\r\n", Some(405)),
            (b"GET / SPDY/3\r\n\r\n", Some(400)),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
                Some(413),
            ),
            (
                b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Some(400),
            ),
        ];
        for (bytes, want) in cases {
            let got = match parse(bytes) {
                Incoming::Bad(status, _) => Some(status),
                Incoming::Closed => None,
                Incoming::Request(_) => Some(200),
            };
            assert_eq!(got, want, "{}", String::from_utf8_lossy(bytes));
        }
        let huge = [
            b"GET / HTTP/1.1\r\nX: ".as_slice(),
            &[b'a'; MAX_HEAD],
            b"\r\n\r\n",
        ]
        .concat();
        assert!(matches!(parse(&huge), Incoming::Bad(414, _)));
        let long_line = [b"GET /".as_slice(), &[b'a'; MAX_HEAD], b" HTTP/1.1\r\n\r\n"].concat();
        assert!(matches!(parse(&long_line), Incoming::Bad(414, _)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_on_mutated_requests(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6)
        ) {
            let mut req = b"GET /v2/subscribe/k/a-pnpres/0?uuid=u&tt=1&channel-group=g%2Ch HTTP/1.1\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}".to_vec();
            for (at, byte) in edits {
                let i = at.index(req.len());
                req[i] = byte;
            }
            if let Incoming::Request(r) = parse(&req) {
                let _ = r.param("uuid");
            }
        }
    }
}
