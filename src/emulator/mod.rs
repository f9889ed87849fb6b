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
mod shared;
pub(crate) mod store;

pub use fault::{Fault, FaultProxy};
pub use shared::Options;
pub(crate) use shared::Shared;

use std::io::{self, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

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
