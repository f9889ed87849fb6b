//! The sans-IO engine: the stateful parts of the device loop as state
//! machines that never touch a socket and never read the clock.
//!
//! Each engine is fed the current instant and the outcome of the request
//! it asked for, and says what to do next. The crate's own driver (one
//! kept connection per engine, in the private `driver` module) pumps
//! them behind the blocking API ([`PresenceEvents`](crate::PresenceEvents),
//! [`Heartbeater`](crate::Heartbeater),
//! [`PresenceLoop`](crate::PresenceLoop), [`Occupancy`](crate::Occupancy),
//! every `execute()`); a program with IO of its own (its own sockets, an
//! async runtime, an embedded network stack) drives the same engines
//! through this interface, and gets the same behaviour: the same cursor
//! handling, duplicate filter, backoff, heartbeat schedule and bounds.
//!
//! # The contract
//!
//! An engine has at most one request in flight. The driver calls
//! [`Engine::poll`] with the current instant and whether that request is
//! still in flight, and does what the [`Step`] says:
//!
//! ```text
//!            poll(now, in_flight)
//!   ┌───────────────┼────────────────────┬──────────────────────┐
//!   ▼               ▼                    ▼                      ▼
//! Send(t)        Wait(Some(at))       Wait(None)             Err(e)
//! sign and send  call poll again at   call poll again when   drop the request
//! t.request      `at`, or as soon as  the response is in     in flight (and its
//! (drop the one  the response is in   (or the caller asks)   connection); return
//! in flight, if                                              `e` to the caller
//! any, first)
//!   │
//!   ▼ the response, or the transport failure
//! handle_response(now, response) -> Result<()>  (Err: counted, backed off)
//! handle_failure(now, error)     -> Error         (counted, backed off)
//! ```
//!
//! `in_flight` speaks of the request the engine last asked for: `false`
//! after a `Send` with no outcome handed back means the driver dropped
//! it, and the engine takes it as lost (the event stream, the heartbeat
//! and the mirror send it again at once; a call counts a failed attempt);
//! `true` when the engine asked for nothing is ignored. So a request your
//! IO gave up on (its own timeout, a cancelled task) must be reported
//! with `handle_failure`, which backs off, not just dropped. An answer
//! handed in with nothing in flight (late, to a dropped request) is
//! ignored.
//!
//! Bounds: the IO's own (how long without a byte, how long in all) come
//! with the request ([`Transmit::silence`], [`Transmit::total`]); the
//! driver applies them and hands a timeout to `handle_failure`. A bound
//! of the engine's own (the heartbeat's in-flight bound, a call's retry
//! deadline) is ended by the engine itself: `poll` returns `Err` (a
//! timeout) and the driver drops the connection. Every error is counted
//! and backed off by the engine before it is returned, so a loop that
//! logs errors and polls again never hammers the server.
//!
//! Outputs (events, changes, a call's answer) are taken out with each
//! engine's own method; an engine may wait (`Wait(None)`) until they
//! are, rather than let them pile up.
//!
//! # The engines
//!
//! - [`EventStream`](crate::presence::events::EventStream): the subscribe
//!   long-poll, its cursor, the duplicate filter and the backoff; events
//!   come out of `poll_event`.
//! - [`HeartbeatSchedule`](crate::presence::schedule::HeartbeatSchedule):
//!   what is joined and its per-channel state, the drift-free heartbeat
//!   schedule, the heartbeat in flight and its bound (suspends
//!   included), the backoff (at most a quarter of the interval) and
//!   whether the user is still present; its [`Phase`](crate::presence::schedule::Phase)
//!   says where it stands.
//! - [`Call`](crate::call::Call): one ordinary call (every `execute()`,
//!   [`PubNub::send`](crate::PubNub::send)): its attempts, the retry
//!   policy's delays, `Retry-After` and deadline, and the bound of the
//!   attempt in flight; the answer comes out of `take_response`.
//! - [`Mirror`](crate::presence::occupancy::Mirror): the occupancy
//!   mirror's roster, re-sync schedule and here_now paging; events go in
//!   by `handle_event`, changes come out of `take_changes`.
//!
//! Time is only ever an argument: a test runs any engine in virtual time
//! by passing made-up instants, and the crate's simulator runs the whole
//! device loop that way from a seed.

use crate::error::{Error, Result};
use crate::request::Request;
use crate::transport::Response;
use std::time::{Duration, Instant};

/// A request an engine wants sent.
#[derive(Debug)]
#[non_exhaustive]
pub struct Transmit {
    /// The request, not yet signed: sign it when it goes out
    /// ([`PubNub::url_for`](crate::PubNub::url_for)), since a signature
    /// carries the time it was made.
    pub request: Request,
    /// How long the request may go without a byte moving before it is a
    /// timeout (the silence bound: `request_timeout`, or the long-poll's
    /// hold time).
    pub silence: Duration,
    /// How long the whole exchange may take, from when the request can
    /// go out (after the name lookup and the connect, which have bounds
    /// of their own), however the server trickles bytes: past it, a
    /// timeout. `None`: the engine bounds the request itself.
    pub total: Option<Duration>,
    /// Send it on a new connection: the kept one may be dead on a path
    /// that dropped it silently.
    pub fresh: bool,
}

/// What an engine wants done next (see the [module docs](self)).
#[derive(Debug)]
#[non_exhaustive]
pub enum Step {
    /// Send this request. A request of the engine's still in flight is
    /// abandoned first (with its connection).
    Send(Transmit),
    /// Nothing to send: read what arrives for the request in flight, if
    /// any, and call [`Engine::poll`] again at this instant (`None`: only
    /// when a response is in, or when the caller asks).
    Wait(Option<Instant>),
}

/// One state machine of the sans-IO engine, as its driver sees it.
pub trait Engine {
    /// What to do at `now`; `in_flight` says whether the request the
    /// engine last asked for is still unanswered. `Err`: the engine ended
    /// that request (its bound passed) or could not build the next one;
    /// the failure is counted and backed off, the driver drops the
    /// request in flight and returns the error.
    fn poll(&mut self, now: Instant, in_flight: bool) -> Result<Step>;

    /// The response to the request in flight, whatever its status.
    /// `Err` when it reports a failure (a non-2xx status, a body that
    /// does not decode), counted and backed off.
    fn handle_response(&mut self, now: Instant, response: Response) -> Result<()>;

    /// The request in flight failed without a response (connect, name
    /// lookup, reset, timeout): counted and backed off; returned.
    fn handle_failure(&mut self, now: Instant, error: Error) -> Error;

    /// The driver's wait for the request in flight overran the instant
    /// it was to end at by `overrun` (far more than a slow machine does:
    /// the device or the process was suspended in it). An engine that
    /// bounds its request in flight moves that bound on, so what arrived
    /// meanwhile is read before the bound applies, from the resume. By
    /// default nothing.
    fn resumed(&mut self, now: Instant, overrun: Duration) {
        let _ = (now, overrun);
    }
}
