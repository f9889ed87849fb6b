//! The only module that does I/O: one `ureq` agent, reused across calls.

use crate::config::Config;
use crate::error::{Error, Result, TransportErrorKind};
use crate::request::PNSDK;
use std::io::Read;
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
    max_response_size: usize,
}

impl Transport {
    pub(crate) fn new(config: &Config) -> Result<Self> {
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
            .timeout_connect(Some(config.connect_timeout))
            // NOTE(allocations): ureq's whole-call timer (`timeout_global`)
            // costs 5 allocations per request; per-phase timers cost none.
            // The request timeout therefore bounds each phase (sending,
            // waiting for the response head, reading the body), and the
            // retry policy's deadline bounds the whole call.
            .timeout_send_request(Some(config.request_timeout))
            .timeout_recv_response(Some(config.request_timeout))
            .timeout_recv_body(Some(config.request_timeout))
            .input_buffer_size(INPUT_BUFFER)
            .output_buffer_size(OUTPUT_BUFFER)
            .max_response_header_size(MAX_HEADER_SIZE)
            .max_idle_connections(2)
            .max_idle_connections_per_host(2);
        #[cfg(feature = "tls")]
        let builder = builder.tls_config(tls_config(config)?);
        #[cfg(not(feature = "tls"))]
        let _ = &config.root_certificate_pem;
        Ok(Transport {
            agent: builder.build().new_agent(),
            max_response_size: config.max_response_size,
        })
    }

    /// Sends a GET of `uri`, with `timeout` (when given) replacing the
    /// configured per-phase timeouts; returns the status and body.
    pub(crate) fn get(&self, uri: Uri, timeout: Option<Duration>) -> Result<Response> {
        let resp = match timeout {
            // A per-request config is a copy of the agent's: only pay for
            // it when this request needs its own timeout.
            Some(t) => self
                .agent
                .get(uri)
                .config()
                .timeout_send_request(Some(t))
                .timeout_recv_response(Some(t))
                .timeout_recv_body(Some(t))
                .timeout_global(Some(t))
                .build()
                .call(),
            None => self.agent.get(uri).call(),
        }
        .map_err(map_error)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(ureq::http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::retry::parse_retry_after);
        let cap = self.max_response_size;
        let declared = resp
            .headers()
            .get(ureq::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::json::digits_u64)
            .and_then(|n| usize::try_from(n).ok());
        if declared.is_some_and(|n| n > cap) {
            // Dropping the response drops the connection unread.
            return Err(too_large(cap));
        }
        // One allocation of the declared size instead of doubling from 8.
        let mut body = Vec::with_capacity(declared.unwrap_or(1024).min(cap));
        let mut reader = resp.into_body().into_reader().take(cap as u64 + 1);
        reader
            .read_to_end(&mut body)
            .map_err(|e| map_error(io_to_ureq(e)))?;
        if body.len() > cap {
            return Err(too_large(cap));
        }
        Ok(Response {
            status,
            body,
            retry_after,
        })
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
    use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
    let mut builder = TlsConfig::builder();
    if let Some(pem) = &config.root_certificate_pem {
        let mut certs = Vec::new();
        for item in parse_pem(pem) {
            match item {
                Ok(PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(_) => {
                    return Err(Error::input(
                        "root_certificate_pem",
                        "the root certificate is not valid PEM",
                    ))
                }
            }
        }
        if certs.is_empty() {
            return Err(Error::input(
                "root_certificate_pem",
                "the PEM holds no certificate",
            ));
        }
        builder = builder.root_certs(RootCerts::new_with_certs(&certs));
    }
    Ok(builder.build())
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
