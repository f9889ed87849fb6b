//! The server state shared by the listener, its connection threads and
//! the request handlers (`routes`): settings, the store, the clock, the
//! here_now answer cache. Imports nothing of the emulator but the store.

use super::store;
use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Cached here_now answers: request key → (clock ms it expires, answer).
pub(crate) type HereNowCache = HashMap<String, (u64, (u16, String))>;

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
    pub(crate) connections: AtomicUsize,
    pub(crate) open: Mutex<Vec<(u64, TcpStream)>>,
    pub(crate) served: AtomicU64,
    /// here_now answers by request, with the clock time they expire.
    pub here_now_cache: Mutex<HereNowCache>,
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
