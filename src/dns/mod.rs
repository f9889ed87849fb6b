//! Name resolution that never blocks a call past its budget.
//!
//! std's resolver (`ToSocketAddrs`, `getaddrinfo`) blocks until the system
//! gives up: about 10 s per lookup when the uplink and the name servers go
//! away together, inside a `poll(100 ms)`. So names are resolved here, the
//! way PubNub's C SDK does it on devices:
//!
//! 1. An IP literal (`http://10.0.0.7:8090`, `http://[::1]`) is used as it
//!    is: no lookup at all.
//! 2. `/etc/hosts` is read first (`localhost` and local names keep
//!    working); a name found there is used as the file says.
//! 3. Otherwise DNS over UDP: an `A` and an `AAAA` query for the name, to
//!    the `nameserver`s of `/etc/resolv.conf` (at most 3; `options
//!    timeout:`/`attempts:` are honoured within 1–30 s and 1–5, defaults
//!    5 s and 2). Try *k* goes to server *k* mod *n* and waits
//!    `min(timeout, 1 s × 2^round)`; an answer from any server asked is
//!    taken; SERVFAIL, REFUSED, or a send that fails at once (no route)
//!    moves on to the next try at once. The whole lookup is bounded by the
//!    connect timeout (by 2 s when last good addresses are there to fall
//!    back on). The lookup is a state carried across calls ([`Resolving`]):
//!    a call whose budget ends sends what is due, waits what it may, and
//!    leaves the rest to the next call, like a connect in progress. Answers
//!    are matched on the source address, the query id (random) and the
//!    question; anything else is ignored. CNAME chains inside the answer
//!    are followed (at most 8 links). Addresses are ordered IPv4 first,
//!    then alternating, at most 4.
//! 4. The system resolver only where DNS over UDP cannot stand for it: no
//!    readable resolv.conf or no `nameserver` line in it, a name with
//!    fewer dots than `options ndots:` (search domains are not applied
//!    here), or a `.local` name (mDNS). Then a lookup blocks as long as the
//!    system's resolver does (glibc: `timeout` × `attempts` × servers),
//!    whatever the call's budget.
//!
//! Caching (one cache per client, shared by its clones and all its kept
//! connections): the last good addresses are kept for the answer's TTL,
//! held within 30 s–1 h (a name from `/etc/hosts` for 30 s). A name is
//! looked up again when that expires, and after a request failed to
//! connect to every address (it may have moved): at most once per
//! reconnect, so at most once per backoff step of the caller, and while
//! one connection looks the name up the others use the last good
//! addresses. While lookups fail, in any way (NXDOMAIN included), the
//! last good addresses are used, and a failed lookup is not repeated for
//! 30 s. A connection already open is never touched by a lookup.
//!
//! Errors, when no address was ever found: a lookup that timed out, or got
//! only server failures, is [`crate::TransportErrorKind::Dns`] (retryable:
//! an outage); a name the servers say does not exist (NXDOMAIN), or that
//! has no address, is [`crate::TransportErrorKind::NameNotFound`] (not
//! retryable for an ordinary call; the event stream and the heartbeats
//! still try again after their backoff: captive portals and half-started
//! networks answer NXDOMAIN for a while).
//!
//! `PUBNUB_PRESENCE_RESOLV_CONF`, when set as a client is built, names the
//! file read instead of `/etc/resolv.conf` (for tests, and devices that
//! keep it elsewhere); as an extension, a `nameserver` there may carry a
//! port (`nameserver 127.0.0.1:5353`).
//!
//! NOTE(size): the packet code is our own (about 230 lines: one query
//! builder, one response parser for A/AAAA/CNAME) rather than the
//! `simple-dns` crate (0.13, plus `bitflags`). Measured with the size
//! profile (opt-level z, lto, panic abort, stripped) on a harness that
//! builds an A query and reads the addresses and TTL of an answer,
//! following CNAMEs: over the same harness without DNS code, `simple-dns`
//! added 59,832 bytes, this module's packet code 4,432. The whole resolver
//! (driver, state machine, files, cache, and the std code they link) adds
//! 17,520 bytes to the no-TLS footprint example (26,416 before a size
//! pass that reads the files with plain loops and byte scans; see
//! BENCHMARKS.md).

mod conf;
mod lookup;
mod wire;

use crate::clock;
use crate::error::{Error, Result, TransportErrorKind as K};
use crate::sock::Udp;
use conf::{hosts_lookup, order, parse_resolv_conf, read_capped};
use lookup::{Lookup, Outcome};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use wire::{parse, TYPE_A, TYPE_AAAA};

/// The TTL of an answer, held within these bounds.
const TTL_FLOOR: Duration = Duration::from_secs(30);
const TTL_CEILING: Duration = Duration::from_secs(3600);
/// A failed lookup is not repeated sooner while the last good addresses
/// serve.
const RETRY_GAP: Duration = Duration::from_secs(30);
/// The bound of a lookup that has last good addresses to fall back on.
const REFRESH_LIMIT: Duration = Duration::from_secs(2);
/// How long a wait stops relying on the socket timeout before its end
/// (the kernel rounds it up to scheduler ticks; see `conn.rs`).
const TICK_GUARD: Duration = Duration::from_millis(20);
const FINE_STEP: Duration = Duration::from_millis(2);
/// With sockets of both families open, the longest wait on one of them.
const SLICE: Duration = Duration::from_millis(50);
const HOSTS: &str = "/etc/hosts";
const RESOLV_CONF: &str = "/etc/resolv.conf";

// ---------------------------------------------------------------------
// The driver: UDP sockets and the clock.

/// A lookup in progress and its sockets (one per address family, bound
/// to an ephemeral port).
pub(crate) struct Resolving {
    lookup: Lookup,
    v4: Option<Udp>,
    v6: Option<Udp>,
    /// The family of the last send: the socket waited on.
    last_v6: bool,
}

impl Resolving {
    /// Sends the unanswered queries to `server`, from the socket of its
    /// family (bound on first use).
    fn send(&mut self, server: SocketAddr) -> io::Result<()> {
        let v6 = server.is_ipv6();
        self.last_v6 = v6;
        let slot = if v6 { &mut self.v6 } else { &mut self.v4 };
        let sock = match slot {
            Some(s) => s,
            None => slot.insert(Udp::bind(v6)?),
        };
        for p in self.lookup.pending() {
            sock.send_to(p, server)?;
        }
        Ok(())
    }

    /// Takes what has arrived on either socket, without waiting.
    fn read_ready(&mut self) {
        for sock in [&self.v4, &self.v6].into_iter().flatten() {
            // A bounded number, so a flood cannot hold the call.
            for _ in 0..64 {
                if !take(&mut self.lookup, sock, Duration::ZERO) {
                    break;
                }
            }
        }
    }

    /// Waits for a packet until `until` at the latest.
    fn wait(&mut self, until: Instant) {
        let now = clock::now();
        let left = until.saturating_duration_since(now);
        let both = self.v4.is_some() && self.v6.is_some();
        let sock = match (self.last_v6, &self.v4, &self.v6) {
            (true, _, Some(s)) | (false, Some(s), _) => Some(s),
            (_, Some(s), None) | (_, None, Some(s)) => Some(s),
            (_, None, None) => None,
        };
        let (Some(sock), true) = (sock, left > TICK_GUARD) else {
            // The last stretch in fine steps (socket timeouts are rounded
            // up to scheduler ticks), or nothing to wait on.
            clock::sleep(left.min(if left > TICK_GUARD { SLICE } else { FINE_STEP }));
            return;
        };
        let mut wait = left.saturating_sub(TICK_GUARD);
        if both {
            wait = wait.min(SLICE);
        }
        take(&mut self.lookup, sock, wait.max(Duration::from_millis(1)));
    }

    /// Drives the lookup until it ends or `deadline` passes (`None`: until
    /// it ends, which its own bound ensures). `None`: still under way.
    fn drive(&mut self, deadline: Option<Instant>) -> Option<Outcome> {
        loop {
            let now = clock::now();
            while let Some(server) = self.lookup.due(now) {
                if let Err(e) = self.send(server) {
                    // NOTE(size): no address in the record (its Display is ~2 KB).
                    log::debug!(target: "pubnub_presence::dns", "a query was not sent: {e}");
                    self.lookup.send_failed(now);
                }
            }
            self.read_ready();
            let now = clock::now();
            if let Some(outcome) = self.lookup.outcome(now) {
                return Some(outcome);
            }
            let until = match deadline {
                Some(d) if now >= d => return None,
                Some(d) => d.min(self.lookup.next_timeout()),
                None => self.lookup.next_timeout(),
            };
            self.wait(until);
        }
    }
}

/// Receives one packet on `sock`, waiting at most `wait` (zero: not at
/// all), for the lookup; whether one came.
fn take(lookup: &mut Lookup, sock: &Udp, wait: Duration) -> bool {
    let mut buf = [0u8; 1500];
    match sock.recv_from(&mut buf, wait) {
        Ok((n, from)) => {
            lookup.handle(from, buf.get(..n).unwrap_or_default(), clock::now());
            true
        }
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------
// The resolver of one client: the name, the cache, the lookups.

#[derive(Default)]
struct Cached {
    addrs: Vec<SocketAddr>,
    expires: Option<Instant>,
    failed_at: Option<Instant>,
    /// A request failed to connect to every address since the last lookup.
    stale: bool,
    /// When a connection started a lookup that has not ended yet: the
    /// others use the last good addresses meanwhile.
    looking_since: Option<Instant>,
}

struct Shared {
    host: String,
    port: u16,
    /// The host is an IP literal: no lookup.
    literal: Option<IpAddr>,
    resolv_conf: String,
    /// The bound of a lookup without last good addresses.
    limit: Duration,
    cache: Mutex<Cached>,
}

/// Resolves the origin's host for the kept connections of one client;
/// clones share the cache. See the module docs.
#[derive(Clone)]
pub(crate) struct Resolver(Arc<Shared>);

impl Resolver {
    pub(crate) fn new(host: &str, port: u16, limit: Duration) -> Self {
        let resolv_conf = std::env::var("PUBNUB_PRESENCE_RESOLV_CONF")
            .unwrap_or_else(|_| RESOLV_CONF.to_string());
        Resolver(Arc::new(Shared {
            host: host.to_string(),
            port,
            literal: host.parse().ok(),
            resolv_conf,
            limit,
            cache: Mutex::new(Cached::default()),
        }))
    }

    fn cache(&self) -> MutexGuard<'_, Cached> {
        self.0.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request failed to connect to every address: the next connect of
    /// any connection looks the name up again (within the rules above).
    pub(crate) fn connect_failed(&self) {
        if self.0.literal.is_none() {
            self.cache().stale = true;
        }
    }

    /// Whether addresses taken earlier are due to be looked up again.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.0.literal.is_none() && self.cache().expires.is_none_or(|e| now >= e)
    }

    /// The addresses to connect to: the cached ones, or those of a lookup
    /// started now or carried in `pending` (driven until `deadline`;
    /// `Ok(None)` while under way). `stale`: connects to every address
    /// failed since they were taken.
    // NOTE(size): out of line, 0.5 KB less than inlined into `Conn::drive`.
    #[inline(never)]
    pub(crate) fn resolve(
        &self,
        pending: &mut Option<Box<Resolving>>,
        stale: bool,
        deadline: Option<Instant>,
    ) -> Result<Option<Vec<SocketAddr>>> {
        let shared = &*self.0;
        if let Some(ip) = shared.literal {
            return Ok(Some(vec![SocketAddr::new(ip, shared.port)]));
        }
        let outcome = match pending {
            Some(p) => match p.drive(deadline) {
                Some(o) => o,
                None => return Ok(None),
            },
            None => {
                let now = clock::now();
                let have = {
                    let mut c = self.cache();
                    let fresh = !stale && !c.stale && c.expires.is_some_and(|e| now < e);
                    let resting = c
                        .failed_at
                        .is_some_and(|t| now.saturating_duration_since(t) < RETRY_GAP);
                    let elsewhere = c
                        .looking_since
                        .is_some_and(|t| now.saturating_duration_since(t) < REFRESH_LIMIT);
                    if !c.addrs.is_empty() && (fresh || resting || elsewhere) {
                        return Ok(Some(c.addrs.clone()));
                    }
                    // One lookup for the connections that saw the failure.
                    c.stale = false;
                    c.looking_since = Some(now);
                    !c.addrs.is_empty()
                };
                let limit = match have {
                    true => shared.limit.min(REFRESH_LIMIT),
                    false => shared.limit,
                };
                match self.start(now, limit) {
                    Ok(outcome) => outcome,
                    Err(mut lookup) => match lookup.drive(deadline) {
                        Some(o) => o,
                        None => {
                            *pending = Some(lookup);
                            return Ok(None);
                        }
                    },
                }
            }
        };
        *pending = None;
        self.settle(outcome).map(Some)
    }

    /// Starts a lookup: `Ok` with the outcome when it needs no waiting
    /// (`/etc/hosts`, the system resolver), `Err` with the DNS lookup to
    /// drive.
    fn start(&self, now: Instant, limit: Duration) -> std::result::Result<Outcome, Box<Resolving>> {
        let host = self.0.host.as_str();
        if let Some(text) = crate::sock::resolv_conf_override() {
            // The simulation's name server; no /etc/hosts.
            let c = parse_resolv_conf(&text);
            return match Lookup::new(host, &c, limit, now, crate::retry::random_u64()) {
                Some(lookup) => Err(Box::new(Resolving {
                    lookup,
                    v4: None,
                    v6: None,
                    last_v6: false,
                })),
                None => Ok(Outcome::NotFound("the host name cannot be looked up")),
            };
        }
        let hosted = read_capped(HOSTS)
            .map(|t| hosts_lookup(&t, host))
            .unwrap_or_default();
        if !hosted.is_empty() {
            return Ok(Outcome::Found {
                addrs: hosted,
                ttl: 0,
            });
        }
        let conf = read_capped(&self.0.resolv_conf).map(|t| parse_resolv_conf(&t));
        // NOTE(size): on bytes (str patterns link a searcher per kind).
        let mut name = host.as_bytes();
        while let [rest @ .., b'.'] = name {
            name = rest;
        }
        let dots = name.iter().filter(|&&b| b == b'.').count();
        let local = name
            .get(name.len().saturating_sub(6)..)
            .is_some_and(|end| end.eq_ignore_ascii_case(b".local"));
        let why = match &conf {
            Err(_) => "no readable resolv.conf",
            Ok(c) if c.servers.is_empty() => "no name server in resolv.conf",
            Ok(c) if dots < c.ndots => "a name with fewer dots than ndots",
            Ok(_) if local => "a .local name",
            Ok(c) => {
                let Some(lookup) = Lookup::new(host, c, limit, now, crate::retry::random_u64())
                else {
                    return Ok(Outcome::NotFound("the host name cannot be looked up"));
                };
                log::debug!(target: "pubnub_presence::dns",
                    "looking up {host} ({} name servers)", c.servers.len());
                return Err(Box::new(Resolving {
                    lookup,
                    v4: None,
                    v6: None,
                    last_v6: false,
                }));
            }
        };
        log::debug!(target: "pubnub_presence::dns",
            "looking up {host} with the system resolver ({why}): this may block");
        Ok(self.system())
    }

    /// The system resolver (blocking), for where DNS over UDP cannot do.
    fn system(&self) -> Outcome {
        match crate::sock::resolve(&self.0.host, self.0.port) {
            Ok(addrs) => Outcome::Found {
                addrs: order(addrs.into_iter().map(|a| a.ip()).collect()),
                ttl: 0,
            },
            // glibc's EAI_NONAME and EAI_NODATA; anything else (EAI_AGAIN,
            // EAI_FAIL, …) may clear.
            Err(e) => {
                // NOTE(size): a byte search, not `str::contains` (its
                // two-way searcher is 1.5 KB, linked for this one use).
                let text = e.to_string();
                let has = |n: &[u8]| text.as_bytes().windows(n.len()).any(|w| w == n);
                if has(b"not known") || has(b"No address associated") {
                    Outcome::NotFound("the system resolver does not know the name")
                } else {
                    Outcome::Failed("the system resolver failed")
                }
            }
        }
    }

    /// Records how a lookup ended; the addresses to use, or the error.
    fn settle(&self, outcome: Outcome) -> Result<Vec<SocketAddr>> {
        let shared = &*self.0;
        let now = clock::now();
        let mut c = self.cache();
        c.looking_since = None;
        let (kind, why) = match outcome {
            Outcome::Found { addrs, ttl } => {
                let ttl = Duration::from_secs(u64::from(ttl)).clamp(TTL_FLOOR, TTL_CEILING);
                c.addrs = addrs
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, shared.port))
                    .collect();
                c.expires = now.checked_add(ttl);
                c.failed_at = None;
                log::debug!(target: "pubnub_presence::dns",
                    "{}: {} addresses, kept {} s", shared.host, c.addrs.len(), ttl.as_secs());
                return Ok(c.addrs.clone());
            }
            Outcome::NotFound(why) => (K::NameNotFound, why),
            Outcome::Failed(why) => (K::Dns, why),
        };
        c.failed_at = Some(now);
        if c.addrs.is_empty() {
            return Err(Error::transport(kind, why));
        }
        log::warn!(target: "pubnub_presence::dns",
            "lookup of {} failed ({why}); using the last good addresses, not looked up again for {} s",
            shared.host, RETRY_GAP.as_secs());
        Ok(c.addrs.clone())
    }
}

/// For the fuzz target: the response parser over arbitrary bytes.
#[doc(hidden)]
pub fn fuzz_dns(data: &[u8]) {
    let _ = parse(data, 0x1234, b"ps.pndsn.com", TYPE_A);
    let _ = parse(data, 0x1234, b"ps.pndsn.com", TYPE_AAAA);
    if let Some(text) = data.get(2..).and_then(|t| std::str::from_utf8(t).ok()) {
        let _ = parse_resolv_conf(text);
        let _ = hosts_lookup(text, "ps.pndsn.com");
    }
}
