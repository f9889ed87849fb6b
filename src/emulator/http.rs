//! A tiny HTTP/1.1 server: GET requests, keep-alive, bounded head size
//! and connection count. Bodies are ignored; answers carry Content-Length.

use crate::encode::decode_bytes;
use std::io::{self, BufRead, BufReader, Read, Write};
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

pub(crate) fn read_request(reader: &mut BufReader<TcpStream>) -> Incoming {
    let mut head = Vec::with_capacity(512);
    // Read lines until the blank line, never more than MAX_HEAD bytes.
    loop {
        let before = head.len();
        let limit = (MAX_HEAD + 1 - before) as u64;
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
            return Incoming::Bad(431, "request head too large");
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

pub(crate) fn write_response(
    out: &mut TcpStream,
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
        431 => "Request Header Fields Too Large",
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
