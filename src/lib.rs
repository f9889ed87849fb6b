//! A blocking, minimal-dependency client for the PubNub Presence API.
//!
//! Presence tells who is online on which channel: who and how many are on
//! a channel ([`PubNub::here_now`]), which channels a user is on
//! ([`PubNub::where_now`]), and per-user state
//! ([`PubNub::set_presence_state`], [`PubNub::get_presence_state`]).
//! The API follows PubNub's documented Rust builder style:
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
//! For a roster that stays right as users come and go (here_now plus the
//! event stream, gaps, interval deltas and paging handled),
//! [`PubNub::occupancy`] opens a live mirror ([`Occupancy`]), driven by one
//! bounded call per iteration of your loop.
//!
//! # Design
//!
//! - **Blocking, no runtime.** One small HTTP/1.1 client of its own
//!   (ureq-proto's sans-IO protocol core over std sockets and rustls),
//!   kept-alive connections, small buffers. Built for small Linux devices
//!   and single-threaded tools.
//! - **Sans-IO core.** Each builder's `request()` returns the URL (path
//!   and query available apart) without sending anything; [`decode`] turns response bytes into
//!   results. Only the connection code (the `conn` and `pool` modules)
//!   touches the network.
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
//! | `tls` | yes | `https://` origins through rustls (ring) with Mozilla's roots; request signing (HMAC from ring) | +11 crates (19 → 30), ≈ +1 MB stripped (the rustls + ring + roots baseline; BENCHMARKS.md) |
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
mod client;
mod clock;
mod config;
mod conn;
pub mod decode;
#[cfg(feature = "emulator")]
pub mod emulator;
mod encode;
mod envelope;
mod error;
mod json;
mod num;
mod pool;
pub mod presence;
pub mod request;
pub mod retry;
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
