//! The only module that does I/O: one `ureq` agent, reused across calls.

use crate::config::Config;
use crate::error::{Error, Result, TransportErrorKind};
use crate::request::{Request, PNSDK};
use std::time::Duration;

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
            .timeout_connect(Some(config.connect_timeout))
            .timeout_global(Some(config.request_timeout))
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

    /// Sends `request` as a GET to `origin`; returns the status and body.
    pub(crate) fn get(&self, origin: &str, request: &Request) -> Result<Response> {
        let url = request.url(origin);
        let mut req = self.agent.get(&url).config();
        if let Some(t) = request.timeout {
            req = req.timeout_global(Some(t));
        }
        let resp = req.build().call().map_err(map_error)?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .with_config()
            .limit(self.max_response_size as u64)
            .read_to_vec()
            .map_err(map_error)?;
        Ok(Response { status, body })
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
                ErrorKind::InvalidData => K::Tls,
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
