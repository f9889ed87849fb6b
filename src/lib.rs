//! A blocking, minimal-dependency client for the PubNub Presence API, built
//! for small Linux devices and single-threaded tools.
//!
//! Presence is who is online, and where: a device announces itself on
//! channels by heartbeats, may attach a small JSON state to itself there,
//! and is gone when it leaves or stops heartbeating for its presence
//! timeout. Others ask who is on a channel, or watch joins and leaves as
//! they happen. This crate does all of that over plain blocking HTTP/1.1,
//! with no async runtime and no OpenSSL.
//!
//! # The calls
//!
//! A [`PubNub`] client (from [`PubNub::builder`]: subscribe key, user id,
//! options) makes one blocking call per builder, ended by `execute()`:
//!
//! - [`PubNub::here_now`]: who and how many are on channels or groups
//!   (and [`PubNub::global_here_now`] for the whole keyset);
//! - [`PubNub::where_now`]: which channels a user is on;
//! - [`PubNub::set_presence_state`] / [`PubNub::set_presence_state_json`]
//!   and [`PubNub::get_presence_state`]: a user's state per channel
//!   (see [`state`]);
//! - [`PubNub::heartbeat`]: be present on channels (with state) for the
//!   presence timeout, and [`PubNub::leave`]: stop being present.
//!
//! ```no_run
//! use pubnub_presence::PubNub;
//! # fn main() -> Result<(), pubnub_presence::Error> {
//! let pubnub = PubNub::builder()
//!     .subscribe_key("demo")
//!     .user_id("device-42")
//!     .build()?;
//! let here = pubnub
//!     .here_now()
//!     .channels(vec!["lobby".into()])
//!     .include_state(true)
//!     .execute()?;
//! println!("{} users online", here.total_occupancy);
//! # Ok(()) }
//! ```
//!
//! # Staying present and watching: the device loop
//!
//! - [`PubNub::presence_events`] opens a [`PresenceEvents`] stream: joins,
//!   leaves, timeouts, state changes and interval counts
//!   ([`PresenceEvent`]) from a subscribe long-poll that resumes from its
//!   cursor after a failure.
//! - A [`Heartbeater`] keeps the device present on the channels it joins,
//!   with per-channel state, heartbeating every `presence_timeout / 2 - 1`
//!   seconds ([`HeartbeatThread`] runs it on a thread of its own).
//! - A [`PresenceLoop`] drives both from your own loop: each `poll(budget)`
//!   sends what is due, returns the next event or `Ok(None)`, never waits
//!   longer than the budget, and leaves whatever is in flight (the
//!   long-poll, a connect, a TLS handshake) to the next call. No thread is
//!   spawned.
//!
//! ```no_run
//! use pubnub_presence::{Heartbeater, PresenceEvent, PresenceLoop, PubNub};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), pubnub_presence::Error> {
//! let pubnub = PubNub::builder().subscribe_key("demo").user_id("sensor-9").build()?;
//! let mut online = Heartbeater::new(&pubnub);
//! online.join(vec!["plant-floor".into()])?;
//! online.set_state_json("plant-floor", r#"{"battery":87}"#)?;
//! let events = pubnub.presence_events().channels(vec!["plant-floor".into()]).open()?;
//! let mut device = PresenceLoop::new(online, Some(events));
//! loop {
//!     // ... the device's own work ...
//!     match device.poll(Duration::from_millis(500)) {
//!         Ok(Some(PresenceEvent::Join(e))) => println!("{} joined {}", e.user_id, e.channel),
//!         Ok(Some(other)) => println!("{other:?}"),
//!         Ok(None) => {}                                  // nothing new within the budget
//!         Err(e) if e.is_retryable() => eprintln!("{e}"), // backed off; tried again
//!         Err(e) => return Err(e),                        // will not clear by itself
//!     }
//! }
//! # }
//! ```
//!
//! # The live roster: the occupancy mirror
//!
//! [`PubNub::occupancy`] opens an [`Occupancy`]: who is on each channel (and
//! their state), kept right as users come and go. It combines here_now with
//! the event stream, pages past 1,000 occupants, applies interval deltas and
//! re-syncs after gaps; each `poll(budget)` returns what changed
//! ([`Change`]: joined, left, timed out, state changed, ...).
//!
//! # Examples and the offline server
//!
//! The repository's examples run offline against the local presence server
//! (feature `emulator`): `presence` (the calls, the event stream and the
//! mirror, start to finish) and `watch` (a live roster in the terminal),
//! both also against PubNub with `PUBNUB_SUBSCRIBE_KEY` set;
//! `presence-server` (the local server alone, for clients in any
//! language); `soak` and `chaos` (long runs, under faults). Run one with
//! `cargo run --example presence --features emulator`.
//!
//! The `emulator` module is that server: PubNub's presence semantics
//! (heartbeats, timeouts, state, groups, events, Access Manager and signing
//! checks, a clock tests can advance) on a loopback port, plus a
//! fault-injecting proxy (`emulator::FaultProxy`) for tests of what a
//! client does when the network fails.
//!
//! The protocol facts the crate relies on (endpoints, response shapes,
//! quirks, timing) are written down in `docs/PROTOCOL.md`, in the
//! repository and the package; the docs cite it as "docs/PROTOCOL.md §N".
//!
//! # Design
//!
//! - **Blocking, no runtime.** One small HTTP/1.1 client of its own:
//!   ureq's sans-IO protocol core (`ureq-proto`) driven over std sockets
//!   and rustls sessions the crate owns, so a long-poll stays in flight
//!   across short polls (a blocking HTTP agent would own the socket for
//!   the whole call). Kept-alive connections, small buffers.
//! - **Bounded.** `request_timeout` bounds silence (the longest wait for
//!   the next byte), the retry policy's deadline bounds each call as a
//!   whole (30 s by default), and the long-poll ends within
//!   `long_poll_timeout` + `request_timeout`: see
//!   [`PubNubBuilder::request_timeout`].
//! - **Sans-IO core.** Each builder's `request()` returns the URL (path
//!   and query available apart) without sending anything; [`decode`]
//!   turns response bytes into results. The stateful parts (the event
//!   stream, the heartbeat schedule, the occupancy mirror, a call's
//!   retries) are state machines fed the time and the responses, with no
//!   socket and no clock of their own ([`engine`]): the blocking types are
//!   these engines pumped by one driver, and a program with its own IO can
//!   drive them itself. Only the connection code touches the network.
//! - **Compact parser.** A non-recursive JSON cursor that borrows
//!   strings from the body; results borrow too (`HereNowResult<'a>`) and
//!   `into_owned()` detaches them. `execute()` returns the owned form, named
//!   without a lifetime: [`HereNow`], [`WhereNow`], [`SetState`],
//!   [`GetState`].
//! - **One error type**, [`Error`]: input errors before any byte is sent
//!   (a request URL over [`request::MAX_URL_LEN`], 32 KiB, is one),
//!   server errors with status, message, service and Access Manager lists,
//!   transport errors by kind, decode errors with the byte offset.
//!
//! # Crate features
//!
//! | feature | default | what it does | cost |
//! |---|---|---|---|
//! | `tls` | yes | `https://` origins through rustls (ring) with Mozilla's roots; request signing (HMAC from ring) | +11 crates (16 → 27), ≈ +1 MB stripped (rustls, ring and the roots; BENCHMARKS.md) |
//! | `serde` | no | state is `serde_json::Value`, setters take `serde::Serialize` | +4 crates (`serde`, `serde_core`, `serde_json`, `memchr`) |
//! | `emulator` | no | the local presence server, for offline tests, and a fault-injecting proxy for it | no extra crates; not linked unless used |
//!
//! Crate counts leave this crate out and count each package once: the
//! normal dependencies that `cargo tree --locked -e normal --prefix none`
//! lists on x86_64 Linux, `(*)` repeats removed (no build- or
//! dev-dependencies; miniserde's derive crates are counted).
//!
//! Without `tls` only `http://` origins work: an `https://` origin, the
//! default [`DEFAULT_ORIGIN`] included, is an error at `build()`, so set one
//! with `.origin("http://…")`.
//!
//! TLS uses rustls' ring provider (small, and it cross-builds with a C
//! compiler alone). A program that needs post-quantum key exchange, which
//! ring lacks, installs another provider before `build()` (for example
//! `rustls::crypto::aws_lc_rs::default_provider().install_default()`, with
//! rustls' `aws_lc_rs` feature): the client uses the process-wide provider
//! when there is one.
//!
//! # User state
//!
//! See [`state`]: by default a [`State`] holding the JSON text (borrowed
//! from the body; `Debug` prints the JSON). With the `serde` feature,
//! `State<'a>` is instead a type alias for `serde_json::Value`, as PubNub's
//! docs describe; these docs (and docs.rs) are built without `serde`, so
//! they show the default `State` and its methods. Setters take a value (or
//! a reference) that serializes to a JSON object, or JSON text
//! ([`PubNub::set_presence_state_json`]), checked before anything is sent
//! (see [`state`] for the rules and for states other clients set).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[doc(hidden)]
#[path = "internal.rs"]
pub mod __internal;
mod backoff;
pub mod call;
mod client;
mod clock;
mod config;
mod conn;
pub mod decode;
mod dns;
mod driver;
#[cfg(feature = "emulator")]
pub mod emulator;
mod encode;
pub mod engine;
mod envelope;
mod error;
mod json;
mod num;
mod pool;
pub mod presence;
pub mod request;
pub mod retry;
#[cfg(feature = "sim")]
mod seam;
#[cfg(feature = "tls")]
pub mod sign;
#[cfg(feature = "sim")]
pub mod sim;
mod sock;
pub mod state;
mod transport;

pub use client::PubNub;
pub use config::{
    Config, PubNubBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_SIZE, DEFAULT_ORIGIN,
    DEFAULT_PRESENCE_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, MAX_DURATION, MAX_PRESENCE_TIMEOUT,
    MIN_PRESENCE_TIMEOUT,
};
pub use error::{Error, ErrorKind, Result, ServerError, TransportErrorKind};
pub use presence::events::{IntervalEvent, PresenceEvent, PresenceEvents, SkippedEvent, UserEvent};
pub use presence::here_now::{HereNow, HereNowChannel, HereNowResult, HereNowUser};
pub use presence::link::LinkState;
pub use presence::occupancy::{Change, Occupancy, Occupant, Resync};
pub use presence::schedule::{HeartbeatThread, Heartbeater, PresenceLoop};
pub use presence::user_state::{GetState, GetStateInfo, GetStateResult, SetState, SetStateResult};
pub use presence::where_now::{WhereNow, WhereNowResult};
pub use request::Request;
pub use retry::RetryPolicy;
pub use state::State;
pub use transport::Response;

/// The README's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
