//! Ordinary calls: each GET goes over a kept connection ([`Conn`], the
//! same HTTP/1.1 and TLS code as the event stream's), taken from a small
//! pool of idle ones and put back after a complete response, so calls
//! reuse a connection (keep-alive) and concurrent calls from clones of the
//! client do not wait for each other.
//!
//! Bounds: the connect timeout (TCP and TLS handshakes); the request
//! timeout as a silence bound (the longest wait for the next byte while
//! sending or receiving: a body that keeps arriving is not cut); the call's
//! retry deadline (an absolute instant: every attempt, connect included, is
//! cut when it passes, whatever phase it is in; without one, an attempt
//! ends by the connect timeout plus three request timeouts); a request's
//! own timeout (long-polls) replaces the request timeout as the silence
//! bound, and ends the request by it plus the request timeout; the response
//! head (8 KiB) and body (`max_response_size`) caps. A connection that
//! fails or breaks a bound is dropped. A reused idle connection that the
//! server closed before answering is replaced and the request sent again,
//! once (`Conn`).

use crate::config::Config;
use crate::conn::{Conn, Endpoint};
use crate::error::{Error, Result, TransportErrorKind};
use crate::transport::Response;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use ureq_proto::http::Uri;

/// Idle connections kept for ordinary calls (each holds a socket and, for
/// `https`, a TLS session).
const MAX_IDLE: usize = 2;

/// Cheap to clone: clones share the endpoint and the idle connections.
#[derive(Clone)]
pub(crate) struct Transport(Arc<Shared>);

struct Shared {
    /// Where to connect and the TLS settings, for the ordinary calls and
    /// the kept connections of the event stream and the device loop.
    endpoint: Endpoint,
    /// Connections that completed a response and may take the next one.
    /// The lock is held only to take or put one, never during I/O.
    idle: Mutex<Vec<Conn>>,
    request_timeout: Duration,
    connect_timeout: Duration,
}

impl Transport {
    pub(crate) fn new(config: &Config) -> Result<Self> {
        Ok(Transport(Arc::new(Shared {
            endpoint: Endpoint::new(config)?,
            idle: Mutex::new(Vec::new()),
            request_timeout: config.request_timeout,
            connect_timeout: config.connect_timeout,
        })))
    }

    /// The endpoint, for a kept connection of its own.
    pub(crate) fn endpoint(&self) -> Endpoint {
        self.0.endpoint.clone()
    }

    /// Sends a GET of `uri`; returns the status and body. The request
    /// timeout (or `timeout`, when given: a long-poll's) bounds the wait for
    /// each next byte; the whole request ends by `ends` (the call's retry
    /// deadline), connect included, whatever phase it is in, and by
    /// `timeout` plus the request timeout; with neither, by the connect
    /// timeout plus three request timeouts.
    pub(crate) fn get(
        &self,
        uri: Uri,
        timeout: Option<Duration>,
        ends: Option<Instant>,
    ) -> Result<Response> {
        let shared = &*self.0;
        let idle = || shared.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let pooled = idle().pop();
        let mut conn = pooled.unwrap_or_else(|| Conn::new(shared.endpoint.clone()));
        let silence = timeout.unwrap_or(shared.request_timeout);
        // A deadline too far to count is no deadline.
        let own = match timeout {
            Some(t) => t.checked_add(shared.request_timeout),
            None if ends.is_none() => shared
                .request_timeout
                .checked_mul(3)
                .and_then(|t| t.checked_add(shared.connect_timeout)),
            None => None,
        }
        .and_then(|t| crate::clock::now().checked_add(t));
        let deadline = crate::clock::earliest(own, ends);
        conn.start_uri(uri, silence, None)?;
        // On an error or a timeout the connection is dropped here.
        let resp = conn.drive(deadline)?.ok_or_else(|| {
            let why = if ends.is_some() && deadline == ends {
                "the call's retry deadline passed during the request"
            } else {
                "the request timed out"
            };
            Error::transport(TransportErrorKind::Timeout, why)
        })?;
        if conn.is_open() {
            let mut idle = idle();
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        Ok(resp)
    }
}
