//! A local presence server (feature `emulator`): the Presence REST protocol
//! with real semantics, for offline development and tests. std only.
//!
//! ```
//! use pubnub_presence::{emulator::Server, PubNub};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::start("127.0.0.1:0")?;
//! let pubnub = PubNub::builder()
//!     .subscribe_key("demo")
//!     .user_id("device-1")
//!     .origin(server.origin())
//!     .build()?;
//! pubnub.heartbeat().channels(vec!["lobby".into()]).execute()?;
//! let here = pubnub.here_now().channels(vec!["lobby".into()]).execute()?;
//! assert_eq!(here.total_occupancy, 1);
//! # Ok(()) }
//! ```
//!
//! What it does:
//! - a user is present on a channel from its first heartbeat (or subscribe
//!   to a non-`-pnpres` channel) until it leaves or its presence timeout
//!   passes without a heartbeat; expiry emits a `timeout` event;
//! - join, leave, timeout and state-change events with occupancy and
//!   timestamps; above [`Options::announce_max`] users a channel gets
//!   `interval` events with join/leave/timeout deltas instead;
//! - state is kept per channel and user and dropped on leave or timeout;
//! - here_now (both shapes), where_now, set/get state (both shapes),
//!   heartbeat, leave, subscribe v2 long-poll, channel-group registration;
//! - `sub-key` and `sub_key` path spellings; Access Manager style 403s when
//!   [`Options::auth_keys`] is set;
//! - a controllable clock ([`ServerHandle::advance`]) so tests need not sleep;
//! - the service's quirks a client must cope with, on demand: the here_now
//!   answer cache ([`Options::here_now_cache`]), `here_now_refresh` past a
//!   delta size ([`Options::interval_delta_limit`]), slow answers
//!   ([`Options::here_now_delay`]) and dropped connections
//!   ([`ServerHandle::drop_connections`]);
//! - bounded resources: request head size (an over-long head gets the
//!   front end's `414` `{"service":"Balancer",…}`, docs/PROTOCOL.md §2),
//!   connections, long-poll waiters, stored presence and state entries
//!   ([`Options::max_entries`]), keysets ([`Options::max_keysets`]), name
//!   lengths ([`Options::max_name_length`]) and the event log
//!   ([`Options::event_log`]); a
//!   channel or keyset left empty is dropped at once, and the periodic
//!   sweep touches only the expiries and intervals that are due;
//!   malformed requests get a 4xx and never stop the server.
//!
//! - with [`Options::secret_key`] (and the `tls` feature), signature v2
//!   checks: unsigned or badly signed requests get a 403.
//!
//! [`FaultProxy`] goes between a client under test and the server to
//! inject network faults (refused connections, stalls, resets in the
//! middle of a response, a network cut), as `examples/chaos` does.
//!
//! Not emulated: wildcard subscriptions, messages other than presence
//! events, timestamp skew limits. Event retention differs: a subscriber
//! resuming from an old cursor gets everything still among the last
//! 10,000 events (all keysets together), however old; PubNub keeps about
//! 100 messages per channel for up to 20 minutes.

mod fault;
pub(crate) mod http;
pub(crate) mod routes;
pub(crate) mod store;

pub use fault::{Fault, FaultProxy};

use std::io::{self, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Server settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Above this many users on a channel, per-user join/leave/timeout
    /// events become interval deltas (PubNub's default is 20).
    pub announce_max: usize,
    /// Seconds between interval events on busy channels (default 10).
    pub interval_secs: u64,
    /// How long a subscribe long-poll is held with no events (default 280 s).
    pub long_poll_hold: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Long-polls waiting at once; more are answered 503.
    pub max_waiters: usize,
    /// Presence and state entries (one per channel and user) kept at most,
    /// so memory stays bounded; requests that would add more get a 503.
    pub max_entries: usize,
    /// Keysets (subscribe keys) held at once (default 10,000); a request
    /// that would add a keyset past it gets a 503. A keyset is held while
    /// it has a present user, a stored state or a channel group, and is
    /// dropped as soon as it has none.
    pub max_keysets: usize,
    /// When non-empty, requests must carry one of these as `auth`.
    pub auth_keys: Vec<String>,
    /// When set, every request must carry a valid signature v2 made with
    /// this secret key (and [`Options::publish_key`]); others get a 403.
    /// Needs the `tls` feature (HMAC from ring); without it `start` fails.
    pub secret_key: Option<String>,
    /// The publish key signatures are computed with.
    pub publish_key: String,
    /// How often expiry and intervals are checked (real time, default
    /// 100 ms). Each check costs what is due, not what is stored.
    pub sweep_every: Duration,
    /// Interval deltas (the `join`, `leave` and `timeout` lists) longer
    /// than this many bytes are dropped and the interval event says
    /// `"here_now_refresh":true` instead, as the service does past about
    /// 30 KB (the default, 30,720). Lower it to force a refresh in tests.
    pub interval_delta_limit: usize,
    /// here_now answers are cached this long (server clock) per request
    /// (path, groups, `disable_uuids`, `state`, `limit`, `offset`), as
    /// the service caches them for 3 s. Default zero: no cache.
    pub here_now_cache: Duration,
    /// Each here_now answer is held this long after it was computed
    /// before it is sent, as over a slow network (default zero). For
    /// tests of what happens between a snapshot and its arrival.
    pub here_now_delay: Duration,
    /// The longest user id, channel name or channel group name accepted,
    /// in characters (default 92, the limit PubNub's API limits page gives
    /// for user and channel ids). A request naming a longer one gets a 400
    /// and changes nothing, so what one stored entry holds is bounded.
    pub max_name_length: usize,
    /// Presence events kept for subscribers that fall behind (default
    /// 10,000; the oldest is dropped first; at least 1 is kept).
    pub event_log: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            announce_max: 20,
            interval_secs: 10,
            long_poll_hold: Duration::from_secs(280),
            max_connections: 256,
            max_waiters: 128,
            max_entries: 1_000_000,
            max_keysets: 10_000,
            auth_keys: Vec::new(),
            secret_key: None,
            publish_key: String::new(),
            sweep_every: Duration::from_millis(100),
            interval_delta_limit: 30 * 1024,
            here_now_cache: Duration::ZERO,
            here_now_delay: Duration::ZERO,
            max_name_length: 92,
            event_log: 10_000,
        }
    }
}

/// The server's clock: real time plus an offset tests can advance, or
/// (a simulation's server) only the offset, set by the simulator.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    pub(crate) offset_ms: AtomicU64,
    pub(crate) virtual_only: bool,
}

impl Clock {
    pub(crate) fn now_ms(&self) -> u64 {
        if self.virtual_only {
            return self.offset_ms.load(Ordering::SeqCst);
        }
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        real.saturating_add(self.offset_ms.load(Ordering::SeqCst))
    }
}

pub(crate) struct Shared {
    pub store: Mutex<store::Store>,
    pub changed: Condvar,
    pub clock: Clock,
    pub options: Options,
    pub waiters: AtomicUsize,
    pub stop: AtomicBool,
    connections: AtomicUsize,
    open: Mutex<Vec<(u64, TcpStream)>>,
    served: AtomicU64,
    /// here_now answers by request, with the clock time they expire.
    pub here_now_cache: Mutex<routes::HereNowCache>,
    /// here_now requests answered (computed or from the cache).
    pub here_now_calls: AtomicU64,
}

impl Shared {
    /// A server state without sockets or threads (the simulator's, the
    /// fuzzer's), on a virtual clock when `virtual_clock`.
    pub(crate) fn detached(options: Options, virtual_clock: bool) -> Shared {
        Shared {
            store: Mutex::new(store::Store::new(store::Settings {
                announce_max: options.announce_max,
                interval_secs: options.interval_secs,
                max_entries: options.max_entries,
                max_keysets: options.max_keysets,
                interval_delta_limit: options.interval_delta_limit,
                event_log: options.event_log,
            })),
            changed: Condvar::new(),
            clock: Clock {
                offset_ms: AtomicU64::new(0),
                virtual_only: virtual_clock,
            },
            options,
            waiters: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            open: Mutex::new(Vec::new()),
            served: AtomicU64::new(0),
            here_now_cache: Mutex::default(),
            here_now_calls: AtomicU64::new(0),
        }
    }

    /// Runs expiry and interval checks and wakes long-polls.
    pub(crate) fn sweep(&self) {
        let now = self.clock.now_ms();
        if let Ok(mut s) = self.store.lock() {
            let before = s.events.len();
            let last = s.events.back().map(|e| e.timetoken);
            s.sweep(now);
            if s.events.len() != before || s.events.back().map(|e| e.timetoken) != last {
                self.changed.notify_all();
            }
        }
    }
}

/// Parses one request head from `bytes` and, if it is a request, routes it
/// against a fresh server state. For fuzzing the emulator's request path;
/// not part of the stable API.
#[doc(hidden)]
pub fn fuzz_request(bytes: &[u8]) {
    // A fresh state per input: runs stay independent and memory bounded.
    // Long-polls answer at once so the fuzzer never blocks.
    let shared = Shared::detached(
        Options {
            announce_max: 2,
            max_entries: 1000,
            max_keysets: 100,
            long_poll_hold: Duration::ZERO,
            ..Options::default()
        },
        false,
    );
    if let http::Incoming::Request(req) = http::read_request(&mut std::io::Cursor::new(bytes)) {
        let _ = routes::handle(&shared, &req);
        shared.sweep();
    }
}

/// Starts servers. See the [module docs](self).
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Starts a server on `addr` (e.g. `"127.0.0.1:0"` for any free port)
    /// with default [`Options`].
    pub fn start(addr: impl ToSocketAddrs) -> io::Result<ServerHandle> {
        Self::start_with(addr, Options::default())
    }

    /// Starts a server with the given options.
    pub fn start_with(addr: impl ToSocketAddrs, options: Options) -> io::Result<ServerHandle> {
        if options.secret_key.is_some() && !cfg!(feature = "tls") {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "signature checks need the `tls` feature",
            ));
        }
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared::detached(options, false));
        let accept = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("presence-emulator-accept".into())
                .spawn(move || accept_loop(&listener, &shared))?
        };
        let sweeper = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("presence-emulator-sweep".into())
                .spawn(move || sweep_loop(&shared))?
        };
        Ok(ServerHandle {
            addr: local,
            origin: format!("http://{local}"),
            shared,
            threads: vec![accept, sweeper],
        })
    }
}

/// A running server; stopped when dropped.
pub struct ServerHandle {
    addr: SocketAddr,
    origin: String,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// `http://127.0.0.1:PORT`, for [`crate::PubNubBuilder::origin`].
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Moves the server's clock forward (expiry, timestamps, intervals),
    /// then runs the expiry check at once. The clock saturates: it never
    /// wraps back, however far it is advanced.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .shared
            .clock
            .offset_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| {
                Some(o.saturating_add(ms))
            });
        self.shared.sweep();
    }

    /// Keysets held now (see [`Options::max_keysets`]); 0 once every user
    /// has left or timed out and no state or channel group remains.
    pub fn keysets_stored(&self) -> usize {
        self.shared.store.lock().map_or(0, |s| s.keyset_count())
    }

    /// Presence plus state entries held now (see [`Options::max_entries`]).
    pub fn entries_stored(&self) -> usize {
        self.shared.store.lock().map_or(0, |s| s.entry_count())
    }

    /// Adds channels to a channel group of keyset `sub_key`.
    pub fn add_to_group(&self, sub_key: &str, group: &str, channels: &[&str]) {
        if let Ok(mut s) = self.shared.store.lock() {
            let g = s
                .keyset(sub_key)
                .groups
                .entry(group.to_string())
                .or_default();
            g.extend(channels.iter().map(|c| c.to_string()));
        }
    }

    /// Requests answered so far.
    pub fn requests_served(&self) -> u64 {
        self.shared.served.load(Ordering::SeqCst)
    }

    /// here_now requests answered so far, counted once the answer is
    /// computed (or taken from the cache), before
    /// [`Options::here_now_delay`].
    pub fn here_now_calls(&self) -> u64 {
        self.shared.here_now_calls.load(Ordering::SeqCst)
    }

    /// Removes channels from a channel group of keyset `sub_key` (the
    /// group goes when left empty). The service sends no event for it.
    pub fn remove_from_group(&self, sub_key: &str, group: &str, channels: &[&str]) {
        if let Ok(mut s) = self.shared.store.lock() {
            let remove: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
            let _ = s.edit_group(sub_key, group, Vec::new(), &remove, usize::MAX, usize::MAX);
        }
    }

    /// Closes every open connection at once, as a network failure would
    /// (a long-poll in flight ends without an answer). The server goes on
    /// accepting new ones.
    pub fn drop_connections(&self) {
        if let Ok(open) = self.shared.open.lock() {
            for (_, s) in open.iter() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Stops accepting, closes open connections and joins the threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.shared.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.changed.notify_all();
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Ok(open) = self.shared.open.lock() {
            for (_, s) in open.iter() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Sweeps every `sweep_every`, sleeping in slices of at most 100 ms so a
/// stop is seen promptly whatever the setting (and `Duration::ZERO` does
/// not spin).
fn sweep_loop(shared: &Shared) {
    const SLICE: Duration = Duration::from_millis(100);
    let every = shared.options.sweep_every.max(Duration::from_millis(1));
    while !shared.stop.load(Ordering::SeqCst) {
        shared.sweep();
        let mut left = every;
        while !left.is_zero() && !shared.stop.load(Ordering::SeqCst) {
            let nap = left.min(SLICE);
            thread::sleep(nap);
            left = left.saturating_sub(nap);
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut stream) = stream else { continue };
        http::configure(&stream);
        if shared.connections.load(Ordering::SeqCst) >= shared.options.max_connections {
            let _ = http::write_response(
                &mut stream,
                503,
                &routes::error_body(503, "Too many connections"),
                true,
            );
            continue;
        }
        next_id += 1;
        let id = next_id;
        if let (Ok(mut open), Ok(clone)) = (shared.open.lock(), stream.try_clone()) {
            open.push((id, clone));
        }
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let shared2 = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("presence-emulator-conn".into())
            .spawn(move || {
                serve_connection(stream, &shared2);
                shared2.connections.fetch_sub(1, Ordering::SeqCst);
                if let Ok(mut open) = shared2.open.lock() {
                    open.retain(|(i, _)| *i != id);
                }
            });
        if spawned.is_err() {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(4096, stream);
    while !shared.stop.load(Ordering::SeqCst) {
        match http::read_request(&mut reader) {
            http::Incoming::Closed => return,
            http::Incoming::Bad(status, why) => {
                let _ = http::write_response(
                    &mut out,
                    status,
                    &routes::bad_request_body(status, why),
                    true,
                );
                return;
            }
            http::Incoming::Request(req) => {
                let (status, body) = routes::handle(shared, &req);
                shared.served.fetch_add(1, Ordering::SeqCst);
                if http::write_response(&mut out, status, &body, req.close).is_err() || req.close {
                    return;
                }
            }
        }
    }
}
