//! The one IO driver: a kept connection that pumps one engine
//! ([`crate::engine::Engine`]). The event stream, the heartbeat schedule
//! and the occupancy mirror each own a [`Lane`]; `PresenceLoop` composes
//! them. This is the only place their requests meet a connection, the
//! only place their time is read ([`crate::clock`]) and slept.

use crate::client::PubNub;
use crate::clock;
use crate::conn::Conn;
use crate::engine::{Engine, Step};
use crate::error::Result;
use std::time::{Duration, Instant};

/// A wait overrun by more than this was a suspension of the device (or a
/// stopped process), not a slow answer: the engine is told
/// ([`Engine::resumed`]).
const SUSPENDED: Duration = Duration::from_secs(1);

/// One kept connection, driven for one engine.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    conn: Option<Conn>,
    /// The engine bounds each of its requests in all itself (an ordinary
    /// call's attempt bound, which covers the name lookup and the connect
    /// too): requests start without the kept connection's total bound
    /// (silence bound + `request_timeout` from the end of the handshakes),
    /// only with the silence and connect bounds.
    engine_bounds: bool,
}

impl Lane {
    /// A lane on `conn` (a pooled connection of the ordinary calls) for an
    /// engine that bounds each of its requests in all itself
    /// ([`Call`](crate::call::Call)): ordinary calls are driven here too.
    pub(crate) fn pooled(conn: Conn) -> Self {
        Lane {
            conn: Some(conn),
            engine_bounds: true,
        }
    }

    /// The connection, to go back to the pool.
    pub(crate) fn into_conn(self) -> Option<Conn> {
        self.conn
    }

    /// Whether a request is in flight.
    pub(crate) fn busy(&self) -> bool {
        self.conn.as_ref().is_some_and(Conn::busy)
    }

    /// Whether the connection is open or a request in flight.
    pub(crate) fn in_use(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.busy() || c.is_open())
    }

    /// Drops the request in flight and the connection.
    pub(crate) fn abort(&mut self) {
        if let Some(conn) = &mut self.conn {
            conn.abort();
        }
    }

    /// Connections opened so far.
    pub(crate) fn connects(&self) -> u64 {
        self.conn.as_ref().map_or(0, |c| c.connects)
    }

    /// Pumps `engine` until `deadline` (`None`: until it has taken a
    /// response): sends what it asks for, reads the answer of what is in
    /// flight, sleeps while it waits. `Ok(true)` as soon as the engine
    /// took a response; `Ok(false)` at the
    /// deadline, or when the engine has nothing to do and no deadline was
    /// given. A failure, counted and backed off by the engine, is
    /// returned once.
    pub(crate) fn pump(
        &mut self,
        pubnub: &PubNub,
        engine: &mut dyn Engine,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        loop {
            let now = clock::now();
            let step = match engine.poll(now, self.busy()) {
                Ok(step) => step,
                Err(e) => {
                    if self.busy() {
                        self.abort();
                    }
                    return Err(e);
                }
            };
            let wake = match step {
                Step::Send(t) => {
                    if t.fresh || self.busy() {
                        self.abort();
                    }
                    // Signed now, with the time it goes out.
                    let engine_bounds = self.engine_bounds;
                    let started = pubnub.url_for(t.request).and_then(|url| {
                        let conn = self
                            .conn
                            .get_or_insert_with(|| Conn::new(pubnub.endpoint()));
                        conn.start_bounded(url, t.silence, !engine_bounds)
                    });
                    if let Err(e) = started {
                        return Err(engine.handle_failure(now, e));
                    }
                    continue;
                }
                Step::Wait(wake) => wake,
            };
            let until = clock::earliest(deadline, wake);
            let conn = match self.conn.as_mut() {
                Some(conn) if conn.busy() => conn,
                _ => {
                    // Nothing in flight: wait for the engine's next
                    // instant, or the deadline.
                    match (wake, deadline) {
                        (None, _) => return Ok(false),
                        (Some(w), d) => {
                            if !clock::sleep_until(w, d) {
                                return Ok(false);
                            }
                        }
                    }
                    continue;
                }
            };
            match conn.drive(until) {
                Ok(Some(resp)) => return engine.handle_response(clock::now(), resp).map(|()| true),
                Ok(None) => {
                    let now = clock::now();
                    let over = until.map_or(Duration::ZERO, |u| now.saturating_duration_since(u));
                    if over > SUSPENDED {
                        engine.resumed(now, over);
                    }
                    if deadline.is_some_and(|d| now >= d) {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(engine.handle_failure(clock::now(), e)),
            }
        }
    }
}
