//! The connections of ordinary calls: a small pool of idle kept
//! connections ([`Conn`], the same HTTP/1.1 and TLS code as the event
//! stream's). A call takes one (or a new one), the driver pumps the call's
//! engine on it (`call` module: [`Call`](crate::call::Call) and the
//! driver's `Lane`), and the call puts it back after a complete response,
//! so calls reuse a connection (keep-alive) and concurrent calls from
//! clones of the client do not wait for each other. Nothing here drives a
//! connection: the bounds of each attempt are the call engine's.

use crate::config::Config;
use crate::conn::{Conn, Endpoint};
use crate::error::Result;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Idle connections kept for ordinary calls (each holds a socket and, for
/// `https`, a TLS session).
const MAX_IDLE: usize = 2;

/// Cheap to clone: clones share the endpoint and the idle connections.
/// `Send + Sync`: `HeartbeatThread` calls through it from its thread.
#[derive(Clone)]
pub(crate) struct Transport(Arc<Shared>);

struct Shared {
    /// Where to connect and the TLS settings, for the ordinary calls and
    /// the kept connections of the event stream and the device loop.
    endpoint: Endpoint,
    /// Connections that completed a response and may take the next one.
    /// The lock is held only to take or put one, never during I/O.
    idle: Mutex<Vec<Conn>>,
}

impl Transport {
    pub(crate) fn new(config: &Config) -> Result<Self> {
        Ok(Transport(Arc::new(Shared {
            endpoint: Endpoint::new(config)?,
            idle: Mutex::new(Vec::new()),
        })))
    }

    /// The endpoint, for a kept connection of its own.
    pub(crate) fn endpoint(&self) -> Endpoint {
        self.0.endpoint.clone()
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Conn>> {
        self.0.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection for a call: the idle one put back last, or a new one
    /// (not connected yet: it connects when the call's first request
    /// starts).
    pub(crate) fn take(&self) -> Conn {
        let pooled = self.idle().pop();
        pooled.unwrap_or_else(|| Conn::new(self.endpoint()))
    }

    /// Puts a call's connection back for the next call: only one that is
    /// open with no request in flight (a complete response left it
    /// usable), and only up to [`MAX_IDLE`]; any other is dropped (and
    /// closed) here. One left with unread bytes is found out and replaced
    /// when the next request starts on it (`Conn`).
    pub(crate) fn put(&self, conn: Option<Conn>) {
        let Some(conn) = conn else { return };
        if !conn.is_open() || conn.busy() {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}
