//! The only module that does I/O: one `ureq` agent, reused across calls.

use crate::config::{Config, DEFAULT_MAX_RESPONSE_SIZE};
use crate::error::{Error, Result, TransportErrorKind};
use crate::request::PNSDK;
use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use ureq::http::Uri;

/// How long a long-poll subscribe may take: the server holds it up to 280 s
/// (PROTOCOL.md §5), so the read timeout must be longer.
pub const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(310);

// NOTE(buffers): ureq defaults to 128 KiB input and output buffers per
// connection. Presence requests are a few hundred bytes and responses are
// read through the body reader, so small buffers keep a call's heap low.
const INPUT_BUFFER: usize = 8 * 1024;
const OUTPUT_BUFFER: usize = 2 * 1024;
const MAX_HEADER_SIZE: usize = 8 * 1024;

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

#[derive(Clone)]
pub(crate) struct Transport {
    agent: ureq::Agent,
    /// The agent for requests with their own timeout (long-polls, an
    /// attempt cut short by the retry deadline), kept while that timeout
    /// stays the same, so a poll loop reuses its connection.
    ///
    /// NOTE(size): a second agent instead of ureq's per-request config,
    /// whose copy-and-override code cost about 2 KB in the footprint build.
    timed: Arc<Mutex<Option<(Duration, ureq::Agent)>>>,
    setup: Arc<Setup>,
    max_response_size: usize,
    /// Where kept connections go, and their TLS settings: built on first
    /// use (a client that never opens a stream never builds a second root
    /// store).
    endpoint: Arc<std::sync::OnceLock<crate::conn::Endpoint>>,
}

/// What building an agent needs.
struct Setup {
    connect_timeout: Duration,
    request_timeout: Duration,
    #[cfg(feature = "tls")]
    tls: ureq::tls::TlsConfig,
}

/// An agent whose phases (send, response head, body) are each bounded by
/// `timeout`, and the whole request too when `timeout` is given.
#[inline(never)]
fn agent(setup: &Setup, timeout: Option<Duration>) -> ureq::Agent {
    let phase = Some(timeout.unwrap_or(setup.request_timeout));
    // A long-poll loop needs one idle connection; keep the second pool
    // from holding more (each idle connection keeps its buffers).
    let idle = if timeout.is_some() { 1 } else { 2 };
    let builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // A redirect from a presence origin is a captive portal or a
        // misconfiguration; report it instead of following it.
        .max_redirects(0)
        .user_agent(PNSDK)
        .accept_encoding("identity")
        // NOTE(allocations): ureq copies each automatic header value per
        // request; `Accept: */*` says nothing, so it is not sent.
        .accept("")
        .timeout_connect(Some(setup.connect_timeout))
        // NOTE(allocations): ureq's whole-call timer (`timeout_global`)
        // costs 5 allocations per request; per-phase timers cost none.
        // The request timeout therefore bounds each phase (sending,
        // waiting for the response head, reading the body), and the
        // retry policy's deadline bounds the whole call. Only requests
        // with their own timeout pay for the whole-call timer.
        .timeout_send_request(phase)
        .timeout_recv_response(phase)
        .timeout_recv_body(phase)
        .timeout_global(timeout)
        .input_buffer_size(INPUT_BUFFER)
        .output_buffer_size(OUTPUT_BUFFER)
        .max_response_header_size(MAX_HEADER_SIZE)
        .max_idle_connections(idle)
        .max_idle_connections_per_host(idle);
    #[cfg(feature = "tls")]
    let builder = builder.tls_config(setup.tls.clone());
    builder.build().new_agent()
}

impl Transport {
    pub(crate) fn new(config: &Config) -> Result<Self> {
        #[cfg(not(feature = "tls"))]
        let _ = &config.root_certificate_pem;
        let setup = Setup {
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            #[cfg(feature = "tls")]
            tls: tls_config(config)?,
        };
        Ok(Transport {
            agent: agent(&setup, None),
            timed: Arc::new(Mutex::new(None)),
            setup: Arc::new(setup),
            max_response_size: config.max_response_size,
            endpoint: Arc::new(std::sync::OnceLock::new()),
        })
    }

    /// The endpoint for kept connections, built once.
    pub(crate) fn endpoint(&self, config: &Config) -> Result<crate::conn::Endpoint> {
        if let Some(e) = self.endpoint.get() {
            return Ok(e.clone());
        }
        let e = crate::conn::Endpoint::new(config)?;
        Ok(self.endpoint.get_or_init(|| e).clone())
    }

    fn timed_agent(&self, timeout: Duration) -> ureq::Agent {
        let mut slot = self.timed.lock().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some((t, a)) if *t == timeout => a.clone(),
            _ => {
                let a = agent(&self.setup, Some(timeout));
                *slot = Some((timeout, a.clone()));
                a
            }
        }
    }

    /// Sends a GET of `uri`, with `timeout` (when given) replacing the
    /// configured per-phase timeouts; returns the status and body.
    pub(crate) fn get(&self, uri: Uri, timeout: Option<Duration>) -> Result<Response> {
        let resp = match timeout {
            None => self.agent.get(uri).call(),
            Some(t) => self.timed_agent(t).get(uri).call(),
        }
        .map_err(map_error)?;
        let status = resp.status().as_u16();
        let head = read_head(resp.headers(), self.max_response_size)?;
        // Dropping the response on an error drops the connection unread.
        let body = read_body(
            resp.into_body().into_reader(),
            head.declared,
            self.max_response_size,
        )
        .map_err(|e| match e {
            BodyError::Io(io) => map_error(io_to_ureq(io)),
            BodyError::TooLarge(cap) => too_large(cap),
        })?;
        Ok(Response {
            status,
            body,
            retry_after: head.retry_after,
        })
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
pub(crate) fn read_head(headers: &ureq::http::HeaderMap, cap: usize) -> Result<Head> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &ureq::http::HeaderValue| v.to_str().ok())
    };
    let retry_after =
        text(ureq::http::header::RETRY_AFTER).and_then(crate::retry::parse_retry_after);
    let declared = text(ureq::http::header::CONTENT_LENGTH)
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

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    Io(std::io::Error),
    /// Over the cap (in bytes).
    TooLarge(usize),
}

/// Reads a body of at most `cap` bytes, reserving the declared length
/// (bounded) in one allocation instead of doubling from 8.
pub(crate) fn read_body(
    reader: impl Read,
    declared: Option<usize>,
    cap: usize,
) -> std::result::Result<Vec<u8>, BodyError> {
    let reserve = declared.unwrap_or(1024).min(cap).min(MAX_PREALLOCATION);
    let mut body = Vec::with_capacity(reserve);
    // One byte past the cap tells "exactly the cap" from "over it"; a cap
    // of usize::MAX saturates instead of wrapping to 0.
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(limit)
        .read_to_end(&mut body)
        .map_err(BodyError::Io)?;
    if body.len() > cap {
        return Err(BodyError::TooLarge(cap));
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
    let mut headers = ureq::http::HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (
            line.get(..colon).unwrap_or_default(),
            line.get(colon + 1..).unwrap_or_default(),
        );
        if let (Ok(n), Ok(v)) = (
            ureq::http::HeaderName::from_bytes(name),
            ureq::http::HeaderValue::from_bytes(value),
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
    if !(200..300).contains(&status) {
        let err = crate::envelope::error_from_response(status, &body);
        let policy = RetryPolicy::default();
        for elapsed in [Duration::ZERO, Duration::from_secs(29), Duration::MAX] {
            let _ = decide(&policy, 1, &err, head.retry_after, elapsed);
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
        );
    }
}

/// Parses a request URL. Taking the `String` by value lets the parsed URL
/// keep its bytes instead of copying them.
pub(crate) fn parse_uri(url: String) -> Result<Uri> {
    Uri::try_from(url).map_err(|_| Error::input("origin", "the request url is not valid"))
}

fn too_large(cap: usize) -> Error {
    Error::transport(
        TransportErrorKind::BodyTooLarge,
        format!("the body exceeds the {cap}-byte cap"),
    )
}

/// The body reader reports ureq errors wrapped in `io::Error`; unwrap them
/// so timeouts and protocol errors keep their kind.
fn io_to_ureq(e: std::io::Error) -> ureq::Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
    {
        Some(_) => match e.into_inner().map(|b| b.downcast::<ureq::Error>()) {
            Some(Ok(u)) => *u,
            _ => ureq::Error::Io(std::io::Error::other("body read failed")),
        },
        None => ureq::Error::Io(e),
    }
}

#[cfg(feature = "tls")]
fn tls_config(config: &Config) -> Result<ureq::tls::TlsConfig> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let mut builder = TlsConfig::builder();
    if let Some(pem) = &config.root_certificate_pem {
        let bad = |reason| Error::input("root_certificate_pem", reason);
        let ders =
            pem_certificates(pem).ok_or_else(|| bad("the root certificate is not valid PEM"))?;
        if ders.is_empty() {
            return Err(bad("the PEM holds no certificate"));
        }
        let certs: Vec<Certificate<'static>> = ders
            .iter()
            .map(|der| Certificate::from_der(der).to_owned())
            .collect();
        builder = builder.root_certs(RootCerts::new_with_certs(&certs));
    }
    Ok(builder.build())
}

/// The DER bodies of the `CERTIFICATE` blocks of a PEM text, in order;
/// other blocks are skipped. `None` for an unterminated block or bad
/// base64.
///
/// NOTE(size): a few hundred bytes of code; the PEM reader that
/// `ureq::tls::parse_pem` brings in cost about 3 KB in the footprint build.
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

/// Whether an I/O error carries a rustls error (a failed handshake or
/// certificate check surfaces this way).
fn is_tls_failure(io: &std::io::Error) -> bool {
    #[cfg(feature = "tls")]
    {
        io.get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = io;
        false
    }
}

/// Maps ureq's error to ours. Never includes the URL: its query carries
/// `auth` and `signature`.
fn map_error(e: ureq::Error) -> Error {
    use std::io::ErrorKind;
    use TransportErrorKind as K;
    match e {
        ureq::Error::Timeout(t) => Error::transport(K::Timeout, t.to_string()),
        ureq::Error::HostNotFound => Error::transport(K::Dns, "host not found"),
        ureq::Error::ConnectionFailed => Error::transport(K::Connect, "connection failed"),
        ureq::Error::BodyExceedsLimit(n) => Error::transport(
            K::BodyTooLarge,
            format!("the body exceeds the {n}-byte cap"),
        ),
        ureq::Error::Io(io) => {
            let kind = match io.kind() {
                ErrorKind::ConnectionRefused => K::Connect,
                ErrorKind::TimedOut | ErrorKind::WouldBlock => K::Timeout,
                _ if is_tls_failure(&io) => K::Tls,
                _ => K::Io,
            };
            let detail = match io.get_ref() {
                // rustls errors travel inside io::Error; their text names the cause
                // (unknown issuer, name mismatch, expired) and holds no secrets.
                Some(inner) => inner.to_string(),
                None => io.kind().to_string(),
            };
            Error::transport(kind, detail)
        }
        ureq::Error::Tls(msg) => Error::transport(K::Tls, msg),
        #[cfg(feature = "tls")]
        ureq::Error::Rustls(e) => Error::transport(K::Tls, e.to_string()),
        #[cfg(feature = "tls")]
        ureq::Error::Pem(_) => Error::transport(K::Tls, "invalid pem"),
        ureq::Error::Protocol(p) => Error::transport(K::Protocol, p.to_string()),
        ureq::Error::BadUri(_) => Error::input("origin", "the request url is not valid"),
        ureq::Error::StatusCode(code) => Error::transport(K::Protocol, format!("status {code}")),
        _ => Error::transport(K::Io, "request failed"),
    }
}

#[cfg(test)]
mod head_tests {
    use super::*;
    use ureq::http::{HeaderMap, HeaderValue};

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
    }

    #[test]
    fn body_cap_edges() {
        // A cap of usize::MAX saturates instead of wrapping to "read nothing".
        assert_eq!(read_body(&b"abc"[..], None, usize::MAX).unwrap(), b"abc");
        // A declared length near usize::MAX reserves a bounded buffer.
        let body = read_body(&b"{}"[..], Some(usize::MAX), usize::MAX).unwrap();
        assert!(body.capacity() <= MAX_PREALLOCATION);
        assert!(matches!(
            read_body(&b"abcd"[..], None, 3),
            Err(BodyError::TooLarge(3))
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
