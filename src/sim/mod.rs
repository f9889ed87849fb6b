//! A deterministic network simulator (feature `sim`; test support, not a
//! stable API).
//!
//! It runs the client's own code (the kept connections, the event stream,
//! the heartbeat schedule, the mirror, the ordinary calls' retries) against
//! the local presence server's logic over a simulated network, in virtual
//! time, from one seed: latency and jitter, loss (as TCP retransmission
//! delays), bandwidth, small send buffers, outages that refuse or
//! blackhole connections, DNS failures and slow lookups, half-open
//! connections (the server forgets them, nothing reaches the client),
//! resets, a server restart, responses that trickle, endless `100
//! Continue` heads, stray bytes after a response, and the device
//! suspended and resumed. The same seed replays the same run.
//!
//! How it hooks in: the client reads the clock, sleeps, draws jitter,
//! looks up names and opens sockets only through two small seams (the
//! crate's `clock` and `sock` modules). [`Sim::enter`] installs the
//! simulation on the current thread; from then on those seams answer from
//! the simulation: `now()` is the virtual clock, a sleep or a blocking
//! read lets virtual time pass (the network and the server run meanwhile),
//! and sockets are simulated links to the simulated server. No thread and
//! no real socket is involved, so thousands of runs take seconds. Threads
//! the client starts itself (`HeartbeatThread`) do not see the simulation.
//!
//! ```
//! use pubnub_presence::sim::{Sim, SimConfig};
//! use pubnub_presence::PubNub;
//! use std::time::Duration;
//!
//! let sim = Sim::new(SimConfig { seed: 7, ..SimConfig::default() });
//! let _on = sim.enter();
//! let pubnub = PubNub::builder()
//!     .subscribe_key("demo")
//!     .user_id("device")
//!     .origin(Sim::ORIGIN)
//!     .build()
//!     .unwrap();
//! pubnub.heartbeat().channels(vec!["lobby".into()]).execute().unwrap();
//! assert_eq!(sim.occupants("demo", "lobby"), vec!["device".to_string()]);
//! // A minute passes without heartbeats: the server times the device out.
//! sim.run_for(Duration::from_secs(400));
//! assert!(sim.occupants("demo", "lobby").is_empty());
//! ```

use crate::emulator::http::{read_request, write_response, HttpRequest, Incoming};
use crate::emulator::routes;
use crate::emulator::{Options, Shared};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The simulated server's address.
const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
/// The Unix time (ms) at which every simulation starts, so server
/// timetokens are the same from run to run.
const EPOCH_MS: u64 = 1_765_000_000_000;
/// How often the server runs its expiry sweep (virtual time).
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// The largest segment the network carries at once.
const SEGMENT: usize = 1460;
/// What the system resolver blocks for when no name server answers
/// (glibc: 5 s timeout, 2 attempts).
const RESOLVER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a kept socket with TCP keepalive may go unanswered before
/// the kernel gives up on it (idle + interval x count as the client sets
/// them; see `Sock::keepalive`).
const KEEPALIVE_DEAD: Duration = Duration::from_secs(35);
/// What a system call that finds nothing to do costs in virtual time
/// (so a loop that polls a socket without waiting still sees the clock
/// move, as it would on a real machine).
const SYSCALL_COST: Duration = Duration::from_micros(20);
/// SYN retransmissions give up after about this long.
const SYN_GIVE_UP: Duration = Duration::from_secs(127);

/// The simulation's settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Replays the run: every random choice of the network, the faults'
    /// jitter and the client's own jitter come from it.
    pub seed: u64,
    /// One-way latency.
    pub latency: Duration,
    /// Up to this much is added to each segment's latency (order kept).
    pub jitter: Duration,
    /// Segments lost, in percent; a lost segment arrives after a
    /// retransmission timeout (TCP is reliable), doubling per loss.
    pub loss_percent: u32,
    /// Bytes per second each way per connection (`None`: unlimited).
    pub bandwidth: Option<u64>,
    /// The client's socket send buffer, in bytes.
    pub send_buffer: usize,
    /// How long the server holds a long-poll with nothing to send.
    pub hold: Duration,
    /// The server's settings (its `long_poll_hold` is replaced by
    /// [`SimConfig::hold`]; `here_now_delay` is ignored: use latency).
    pub server: Options,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            loss_percent: 0,
            bandwidth: None,
            send_buffer: 64 * 1024,
            hold: Duration::from_secs(280),
            server: Options::default(),
        }
    }
}

/// Something that goes wrong, at a virtual time (from the start of the
/// simulation).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Fault {
    /// The path to the server is down from `from` to `to`: segments wait
    /// (TCP retransmits them once it is back), new connections hang (or,
    /// with `refuse`, are refused at once), and with `dns` name lookups
    /// fail too (the resolver is gone with the uplink).
    Outage {
        /// Start.
        from: Duration,
        /// End.
        to: Duration,
        /// Connects are refused (host unreachable) instead of hanging.
        refuse: bool,
        /// Name lookups fail during the outage.
        dns: bool,
    },
    /// At `at` the server (or a NAT on the way) forgets every open
    /// connection without telling the client: the client's next segment,
    /// or keepalive probe, is answered with a reset.
    Forget {
        /// When.
        at: Duration,
    },
    /// At `at` the server resets every open connection.
    Reset {
        /// When.
        at: Duration,
    },
    /// At `at` the server restarts: connections reset, presence, state
    /// and the event log lost (cursors from before mean nothing).
    Restart {
        /// When.
        at: Duration,
    },
    /// Name lookups between `from` and `to` take `delay`.
    SlowDns {
        /// Start.
        from: Duration,
        /// End.
        to: Duration,
        /// How long each lookup takes.
        delay: Duration,
    },
    /// Answers to requests whose path contains `path`, begun between
    /// `from` and `to`, arrive one byte per `every`.
    Trickle {
        /// Start.
        from: Duration,
        /// End.
        to: Duration,
        /// A part of the request path (`"/subscribe/"`, `"/heartbeat"`).
        path: &'static str,
        /// The pause between bytes.
        every: Duration,
    },
    /// Requests whose path contains `path`, begun between `from` and
    /// `to`, get `100 Continue` heads every 500 ms and never an answer.
    EndlessContinue {
        /// Start.
        from: Duration,
        /// End.
        to: Duration,
        /// A part of the request path.
        path: &'static str,
    },
    /// Answers to requests whose path contains `path`, begun between
    /// `from` and `to`, are followed in the same segment by a second,
    /// unsolicited response.
    ExtraResponse {
        /// Start.
        from: Duration,
        /// End.
        to: Duration,
        /// A part of the request path.
        path: &'static str,
    },
    /// Long-polls begun between `from` and `to` are answered at once with
    /// an empty batch at the same cursor (a server that does not hold).
    EmptyBatches {
        /// Start.
        from: Duration,
        /// End.
        to: Duration,
    },
    /// Long-polls begun between `from` and `to` are answered as if asked
    /// from a cursor `by` earlier: the server sends again events the
    /// client already has (a replica that lags behind), which the
    /// client's duplicate filter must drop.
    Rewind {
        /// Start.
        from: Duration,
        /// End.
        to: Duration,
        /// How far back.
        by: Duration,
    },
    /// Requests whose path contains `path`, begun between `from` and
    /// `to`, get these bytes as their answer instead of the server's (a
    /// status the local server never sends, say a 429 with `Retry-After`).
    Raw {
        /// Start.
        from: Duration,
        /// End.
        to: Duration,
        /// A part of the request path.
        path: &'static str,
        /// The whole response, head and body.
        bytes: &'static [u8],
    },
    /// The device is suspended from `at` for `span`: the network and the
    /// server go on, the client does not run; on resume its clock has
    /// jumped.
    Suspend {
        /// When.
        at: Duration,
        /// How long.
        span: Duration,
    },
}

impl Fault {
    /// Whether the fault is in force at `now` for a request to `req_path`
    /// (faults without a path: for any request).
    fn covers(&self, now: Duration, req_path: &str) -> bool {
        match self {
            Fault::Trickle { from, to, path, .. }
            | Fault::EndlessContinue { from, to, path }
            | Fault::ExtraResponse { from, to, path }
            | Fault::Raw { from, to, path, .. } => {
                *from <= now && now < *to && req_path.contains(path)
            }
            Fault::EmptyBatches { from, to }
            | Fault::Rewind { from, to, .. }
            | Fault::SlowDns { from, to, .. }
            | Fault::Outage { from, to, .. } => *from <= now && now < *to,
            _ => false,
        }
    }
}

/// What other users do, at a virtual time (straight into the server's
/// state, not over the network).
#[derive(Debug, Clone)]
pub enum Action {
    /// `user` heartbeats `channels` with presence timeout `timeout` (s).
    Heartbeat {
        /// Keyset.
        sub: String,
        /// Who.
        user: String,
        /// Where.
        channels: Vec<String>,
        /// Presence timeout in seconds.
        timeout: u64,
    },
    /// `user` leaves `channels`.
    Leave {
        /// Keyset.
        sub: String,
        /// Who.
        user: String,
        /// Where.
        channels: Vec<String>,
    },
    /// `user` sets its state on `channel`.
    SetState {
        /// Keyset.
        sub: String,
        /// Who.
        user: String,
        /// Where.
        channel: String,
        /// A JSON object.
        json: String,
    },
}

/// One presence event in the server's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    /// The channel (without `-pnpres`).
    pub channel: String,
    /// Its timetoken.
    pub timetoken: u64,
    /// `join`, `leave`, `timeout`, `state-change` or `interval`.
    pub action: String,
    /// The user (empty for interval events).
    pub uuid: String,
    /// The payload's `timestamp` (Unix seconds).
    pub timestamp: u64,
    /// The payload's `occupancy`.
    pub occupancy: u32,
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Served {
    /// When the whole request had arrived.
    pub at: Duration,
    /// The connection it came on.
    pub link: u64,
    /// The request path (still percent-encoded).
    pub path: String,
    /// The user it names (`uuid`), if any.
    pub uuid: String,
}

/// A segment on its way, arriving at `at`.
#[derive(Debug)]
struct Segment {
    at: Duration,
    bytes: Vec<u8>,
}

/// What the server is doing on a connection.
#[derive(Debug)]
enum Busy {
    /// Reading the next request.
    Idle,
    /// A long-poll with nothing to send yet, answered by `until`.
    Hold { req: HttpRequest, until: Duration },
    /// Sending `100 Continue` heads forever, the next one at `next`.
    Continue { next: Duration },
    /// Trickling `bytes` one per `every`; the next at `next`.
    Trickle {
        bytes: VecDeque<u8>,
        every: Duration,
        next: Duration,
        close: bool,
    },
    /// The server closed the connection after answering.
    Closed,
}

/// One simulated TCP connection.
#[derive(Debug)]
struct Link {
    /// When the connect completes (`None`: it never will).
    established: Option<Duration>,
    /// When a refused connect is reported.
    refused: Option<Duration>,
    /// Client to server.
    up: VecDeque<Segment>,
    server_in: Vec<u8>,
    /// Server to client.
    down: VecDeque<Segment>,
    client_in: VecDeque<u8>,
    /// The server's FIN reaches the client at this time.
    fin: Option<Duration>,
    /// A reset reaches the client at this time.
    rst: Option<Duration>,
    /// The server no longer knows the connection (half-open).
    forgotten: bool,
    busy: Busy,
    /// The client's socket timeout for the next read or write.
    wait: Option<Duration>,
    /// When each direction's link is free again (bandwidth).
    up_free: Duration,
    down_free: Duration,
    /// Last time the client saw a byte or an acknowledgement.
    last_heard: Duration,
    /// Keepalive was turned on by the client.
    keepalive: bool,
    /// A pending request carries an extra unsolicited answer.
    extra: bool,
}

/// The simulated world: clock, network, server, faults, other users.
struct World {
    cfg: SimConfig,
    base: Instant,
    now: Duration,
    rng: u64,
    server: Shared,
    links: BTreeMap<u64, Link>,
    next_link: u64,
    faults: Vec<Fault>,
    actions: Vec<(Duration, Action)>,
    next_sweep: Duration,
    served: Vec<Served>,
    lookups: u64,
    /// When the client opened each connection.
    connect_log: Vec<Duration>,
    /// Bytes the server wrote to the clients (all connections).
    bytes_down: u64,
    /// Something went wrong with the simulation itself (a client that
    /// blocks forever with nothing scheduled, say).
    trouble: Vec<String>,
    /// The event log as the holds last saw it, and whether it changed
    /// in this step.
    log_mark: (usize, u64),
    log_dirty: bool,
    /// Datagrams on their way to each simulated UDP socket:
    /// (arrival, bytes, from).
    udp: BTreeMap<u64, VecDeque<(Duration, Vec<u8>, SocketAddr)>>,
    next_udp: u64,
    /// Steps taken (the simulator's own cost).
    steps: u64,
    /// The time of the last step, and whether something changed since
    /// that needs another step at the same instant.
    stepped_at: Option<Duration>,
    dirty: bool,
}

fn lock(w: &Mutex<World>) -> MutexGuard<'_, World> {
    w.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A simulation; see the [module docs](self).
#[derive(Clone)]
pub struct Sim {
    world: Arc<Mutex<World>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = lock(&self.world);
        f.debug_struct("Sim")
            .field("seed", &w.cfg.seed)
            .field("now", &w.now)
            .finish_non_exhaustive()
    }
}

/// While alive, the simulation answers the client's clock, sleeps and
/// sockets on this thread.
pub struct Entered {
    previous: Option<crate::seam::Installed>,
}

impl std::fmt::Debug for Entered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entered").finish_non_exhaustive()
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        crate::seam::install(self.previous.take());
    }
}

impl Sim {
    /// The origin to give the client: a name the simulation resolves.
    pub const ORIGIN: &'static str = "http://presence.sim";
    /// The same server by its address: no name lookup.
    pub const ORIGIN_IP: &'static str = "http://10.0.0.1";
    /// The host name of [`Sim::ORIGIN`].
    pub const HOST: &'static str = "presence.sim";

    /// A new simulation at virtual time zero.
    pub fn new(cfg: SimConfig) -> Sim {
        let mut options = cfg.server.clone();
        options.long_poll_hold = Duration::ZERO;
        options.here_now_delay = Duration::ZERO;
        let server = Shared::detached(options, true);
        server.clock.offset_ms.store(EPOCH_MS, Ordering::SeqCst);
        let rng = cfg.seed ^ 0x5DEE_CE66_D1CE_4E5B;
        Sim {
            world: Arc::new(Mutex::new(World {
                cfg,
                base: Instant::now(),
                now: Duration::ZERO,
                rng,
                server,
                links: BTreeMap::new(),
                next_link: 1,
                faults: Vec::new(),
                actions: Vec::new(),
                next_sweep: SWEEP_EVERY,
                served: Vec::new(),
                lookups: 0,
                connect_log: Vec::new(),
                bytes_down: 0,
                trouble: Vec::new(),
                log_mark: (0, 0),
                log_dirty: false,
                udp: BTreeMap::new(),
                next_udp: 1,
                steps: 0,
                stepped_at: None,
                dirty: true,
            })),
        }
    }

    /// Installs the simulation on this thread until the guard drops.
    pub fn enter(&self) -> Entered {
        let world: crate::seam::Installed = Arc::new(Installed(Arc::clone(&self.world)));
        let previous = crate::seam::install(Some(world));
        Entered { previous }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        lock(&self.world).cfg.seed
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        lock(&self.world).now
    }

    /// The virtual clock as the client sees it.
    pub fn instant(&self) -> Instant {
        let w = lock(&self.world);
        w.base + w.now
    }

    /// Lets `span` of virtual time pass with the client idle.
    pub fn run_for(&self, span: Duration) {
        let mut w = lock(&self.world);
        let until = w.now.saturating_add(span);
        w.advance_to(until);
    }

    /// Schedules a fault.
    pub fn fault(&self, fault: Fault) {
        let mut w = lock(&self.world);
        w.faults.push(fault);
        w.dirty = true;
    }

    /// Schedules what another user does at `at`.
    pub fn act(&self, at: Duration, action: Action) {
        let mut w = lock(&self.world);
        let i = w.actions.partition_point(|(t, _)| *t <= at);
        w.actions.insert(i, (at, action));
        w.dirty = true;
    }

    /// Users present on `channel` of keyset `sub` now, sorted.
    pub fn occupants(&self, sub: &str, channel: &str) -> Vec<String> {
        let w = lock(&self.world);
        let store = w
            .server
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<String> = store.occupants(sub, channel).into_iter().cloned().collect();
        v.sort();
        v
    }

    /// Every presence event of keyset `sub` in the server's log.
    pub fn events(&self, sub: &str) -> Vec<LoggedEvent> {
        let w = lock(&self.world);
        let store = w
            .server
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        store
            .events
            .iter()
            .filter(|e| e.sub == sub)
            .map(|e| LoggedEvent {
                channel: e.channel.clone(),
                timetoken: e.timetoken,
                action: field(&e.meta, "pn_action")
                    .or_else(|| field(&e.payload, "action"))
                    .unwrap_or_default(),
                uuid: field(&e.payload, "uuid").unwrap_or_default(),
                timestamp: number(&e.payload, "timestamp").unwrap_or(0),
                occupancy: number(&e.payload, "occupancy")
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0),
            })
            .collect()
    }

    /// The requests the server received, in order.
    pub fn served(&self) -> Vec<Served> {
        lock(&self.world).served.clone()
    }

    /// Steps the simulator took (its own cost, for benchmarks).
    pub fn steps(&self) -> u64 {
        lock(&self.world).steps
    }

    /// Name lookups the client made.
    pub fn lookups(&self) -> u64 {
        lock(&self.world).lookups
    }

    /// Connections the client opened.
    pub fn connections(&self) -> u64 {
        lock(&self.world).next_link.saturating_sub(1)
    }

    /// Connections the client opened (tried to open) from `from` until
    /// `to`.
    pub fn connects_between(&self, from: Duration, to: Duration) -> usize {
        lock(&self.world)
            .connect_log
            .iter()
            .filter(|t| **t >= from && **t < to)
            .count()
    }

    /// Connections open now (not closed by either side).
    pub fn open_connections(&self) -> usize {
        let w = lock(&self.world);
        w.links
            .values()
            .filter(|l| l.rst.is_none() && l.fin.is_none() && l.refused.is_none())
            .count()
    }

    /// Problems of the simulation itself (a client blocked forever with
    /// nothing scheduled): a test fails when this is not empty.
    pub fn trouble(&self) -> Vec<String> {
        lock(&self.world).trouble.clone()
    }

    /// How much of `from..to` the device spent suspended.
    pub fn suspended_within(&self, from: Duration, to: Duration) -> Duration {
        let w = lock(&self.world);
        w.faults
            .iter()
            .map(|f| match f {
                Fault::Suspend { at, span } => {
                    let end = at.saturating_add(*span);
                    end.min(to).saturating_sub((*at).max(from))
                }
                _ => Duration::ZERO,
            })
            .fold(Duration::ZERO, Duration::saturating_add)
    }

    /// Whether the path to the server is down at `at` (an outage).
    pub fn path_down(&self, at: Duration) -> bool {
        lock(&self.world).outage_at(at).is_some()
    }
}

/// A string field `"name":"value"` of a small JSON object (the server's
/// own output, so a plain search is enough).
fn field(json: &str, name: &str) -> Option<String> {
    let key = format!("\"{name}\":\"");
    let start = json.find(&key)? + key.len();
    let rest = json.get(start..)?;
    let end = rest.find('"')?;
    rest.get(..end).map(str::to_string)
}

/// A number field `"name":123` of a small JSON object.
fn number(json: &str, name: &str) -> Option<u64> {
    let key = format!("\"{name}\":");
    let start = json.find(&key)? + key.len();
    let digits: String = json
        .get(start..)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

impl World {
    fn random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn jitter(&mut self) -> Duration {
        let max = u64::try_from(self.cfg.jitter.as_micros()).unwrap_or(u64::MAX);
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.random() % max.saturating_add(1))
    }

    /// How long a name lookup takes now (`SlowDns`), if slowed.
    fn slow_dns(&self) -> Option<Duration> {
        self.faults.iter().find_map(|f| match f {
            Fault::SlowDns { delay, .. } if f.covers(self.now, "") => Some(*delay),
            _ => None,
        })
    }

    /// The outage in force at `at`: (end, refuse, dns).
    fn outage_at(&self, at: Duration) -> Option<(Duration, bool, bool)> {
        self.faults.iter().find_map(|f| match f {
            Fault::Outage {
                from,
                to,
                refuse,
                dns,
            } if *from <= at && at < *to => Some((*to, *refuse, *dns)),
            _ => None,
        })
    }

    fn suspended_until(&self, at: Duration) -> Option<Duration> {
        self.faults.iter().find_map(|f| match f {
            Fault::Suspend { at: s, span } if *s <= at && at < s.saturating_add(*span) => {
                Some(s.saturating_add(*span))
            }
            _ => None,
        })
    }

    /// When a segment sent at `sent` (after the link is free) arrives:
    /// latency, jitter, losses, an outage on the way.
    fn arrival(
        &mut self,
        sent: Duration,
        len: usize,
        free: &mut Duration,
        last: Duration,
    ) -> Duration {
        let start = sent.max(*free);
        let wire = match self.cfg.bandwidth {
            Some(bw) if bw > 0 => {
                let micros = u64::try_from(len)
                    .unwrap_or(u64::MAX)
                    .saturating_mul(1_000_000)
                    / bw;
                Duration::from_micros(micros)
            }
            _ => Duration::ZERO,
        };
        *free = start.saturating_add(wire);
        let mut at = free
            .saturating_add(self.cfg.latency)
            .saturating_add(self.jitter());
        let mut rto = Duration::from_millis(300);
        while self.cfg.loss_percent > 0 && self.random() % 100 < u64::from(self.cfg.loss_percent) {
            at = at.saturating_add(rto);
            rto = rto.saturating_mul(2).min(Duration::from_secs(30));
        }
        // Held back while the path is down; retransmitted once it is up.
        if let Some((end, ..)) = self.outage_at(at) {
            at = end.saturating_add(self.cfg.latency);
        }
        let at = at.max(last);
        if at <= self.now {
            self.dirty = true;
        }
        at
    }

    /// The next time something happens in the world, at or after now.
    fn next_event(&self) -> Option<Duration> {
        let mut next: Option<Duration> = Some(self.next_sweep);
        let mut consider = |t: Duration| {
            next = Some(next.map_or(t, |n| n.min(t)));
        };
        for l in self.links.values() {
            if let Some(s) = l.up.front() {
                consider(s.at);
            }
            if let Some(s) = l.down.front() {
                consider(s.at);
            }
            for t in [l.established, l.refused, l.fin, l.rst]
                .into_iter()
                .flatten()
            {
                if t > self.now {
                    consider(t);
                }
            }
            match &l.busy {
                Busy::Hold { until, .. } => consider(*until),
                Busy::Continue { next } | Busy::Trickle { next, .. } => consider(*next),
                _ => {}
            }
        }
        if let Some((t, _)) = self.actions.first() {
            consider(*t);
        }
        for q in self.udp.values() {
            // A datagram already there waits for its reader.
            if let Some((t, ..)) = q.front().filter(|(t, ..)| *t > self.now) {
                consider(*t);
            }
        }
        for f in &self.faults {
            let times: &[Duration] = match f {
                Fault::Forget { at } | Fault::Reset { at } | Fault::Restart { at } => &[*at][..],
                _ => &[],
            };
            for t in times {
                if *t > self.now {
                    consider(*t);
                }
            }
        }
        next.map(|t| t.max(self.now))
    }

    /// Runs the world until `until`.
    fn advance_to(&mut self, until: Duration) {
        let mut guard = 0u64;
        loop {
            self.step();
            let next = self.next_event().filter(|t| *t <= until);
            match next {
                Some(t) if t > self.now => self.now = t,
                Some(_) => {
                    // Something is due now and the step did not take it:
                    // move on by a microsecond rather than spin.
                    guard += 1;
                    if guard > 10_000 {
                        self.now = self.now.saturating_add(Duration::from_micros(1));
                        guard = 0;
                    }
                    if self.now >= until {
                        break;
                    }
                    continue;
                }
                None => {
                    if until > self.now {
                        self.now = until;
                        self.step();
                    }
                    break;
                }
            }
        }
    }

    fn set_server_clock(&self) {
        let ms = u64::try_from(self.now.as_millis()).unwrap_or(u64::MAX);
        self.server
            .clock
            .offset_ms
            .store(EPOCH_MS.saturating_add(ms), Ordering::SeqCst);
    }

    /// Does everything due at `now`.
    fn step(&mut self) {
        if self.stepped_at == Some(self.now) && !self.dirty {
            return;
        }
        self.stepped_at = Some(self.now);
        self.dirty = false;
        self.steps = self.steps.saturating_add(1);
        self.set_server_clock();
        let now = self.now;
        // Faults that happen at an instant.
        let instant_faults: Vec<Fault> = self
            .faults
            .iter()
            .filter(|f| match f {
                Fault::Forget { at } | Fault::Reset { at } | Fault::Restart { at } => *at == now,
                _ => false,
            })
            .cloned()
            .collect();
        for f in instant_faults {
            // Mark as done by moving its time out of reach.
            for g in self.faults.iter_mut() {
                if let Fault::Forget { at } | Fault::Reset { at } | Fault::Restart { at } = g {
                    if *at == now {
                        *at = Duration::MAX;
                    }
                }
            }
            match f {
                Fault::Forget { .. } => {
                    for l in self.links.values_mut() {
                        l.forgotten = true;
                        l.busy = Busy::Closed;
                        l.server_in.clear();
                        l.down.clear();
                    }
                }
                Fault::Reset { .. } | Fault::Restart { .. } => {
                    let at = now.saturating_add(self.cfg.latency);
                    for l in self.links.values_mut() {
                        if l.fin.is_none() && l.rst.is_none() {
                            l.rst = Some(at);
                        }
                        l.busy = Busy::Closed;
                        l.server_in.clear();
                    }
                    if matches!(f, Fault::Restart { .. }) {
                        let mut options = self.cfg.server.clone();
                        options.long_poll_hold = Duration::ZERO;
                        options.here_now_delay = Duration::ZERO;
                        self.server = Shared::detached(options, true);
                        self.set_server_clock();
                        self.log_mark = (0, 0);
                    }
                }
                _ => {}
            }
        }
        // Other users.
        while self.actions.first().is_some_and(|(t, _)| *t <= now) {
            let (_, action) = self.actions.remove(0);
            self.apply(action);
        }
        if now >= self.next_sweep {
            self.server.sweep();
            self.next_sweep = now.saturating_add(SWEEP_EVERY);
        }
        self.log_dirty = self.log_changed();
        let ids: Vec<u64> = self.links.keys().copied().collect();
        for id in ids {
            self.step_link(id);
        }
    }

    fn apply(&mut self, action: Action) {
        let now_ms = self.server.clock.now_ms();
        let mut store = self
            .server
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match action {
            Action::Heartbeat {
                sub,
                user,
                channels,
                timeout,
            } => {
                for c in channels {
                    store.heartbeat(&sub, &c, &user, timeout.max(20), now_ms);
                }
            }
            Action::Leave {
                sub,
                user,
                channels,
            } => {
                for c in channels {
                    store.remove(&sub, &c, &user, "leave", now_ms);
                }
            }
            Action::SetState {
                sub,
                user,
                channel,
                json,
            } => {
                store.set_state(&sub, &channel, &user, &json, now_ms);
            }
        }
    }

    /// Moves what arrived on one link and lets the server work on it.
    fn step_link(&mut self, id: u64) {
        let now = self.now;
        let latency = self.cfg.latency;
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        // Client to server.
        while link.up.front().is_some_and(|s| s.at <= now) {
            if let Some(seg) = link.up.pop_front() {
                if link.forgotten || matches!(link.busy, Busy::Closed) {
                    // Nobody knows this connection any more: a reset.
                    if link.forgotten && link.rst.is_none() {
                        link.rst = Some(now.saturating_add(latency));
                    }
                } else {
                    link.server_in.extend_from_slice(&seg.bytes);
                }
            }
        }
        // Server to client.
        while link.down.front().is_some_and(|s| s.at <= now) {
            if let Some(seg) = link.down.pop_front() {
                link.client_in.extend(seg.bytes);
                link.last_heard = now;
            }
        }
        // The server's work.
        let busy = std::mem::replace(&mut link.busy, Busy::Idle);
        let next = match busy {
            Busy::Idle => self.serve_next(id),
            Busy::Hold { req, until } => {
                if self.log_dirty || now >= until {
                    self.answer(id, &req, Some(until))
                } else {
                    Busy::Hold { req, until }
                }
            }
            Busy::Continue { next } if now >= next => {
                self.send(id, b"HTTP/1.1 100 Continue\r\n\r\n".to_vec());
                Busy::Continue {
                    next: now.saturating_add(Duration::from_millis(500)),
                }
            }
            Busy::Trickle {
                mut bytes,
                every,
                next,
                close,
            } if now >= next => match bytes.pop_front() {
                Some(b) => {
                    self.send(id, vec![b]);
                    if bytes.is_empty() {
                        self.after_answer(id, close)
                    } else {
                        Busy::Trickle {
                            bytes,
                            every,
                            next: now.saturating_add(every),
                            close,
                        }
                    }
                }
                None => self.after_answer(id, close),
            },
            other => other,
        };
        if let Some(link) = self.links.get_mut(&id) {
            if !matches!(link.busy, Busy::Closed) || matches!(next, Busy::Closed) {
                link.busy = next;
            }
        }
    }

    /// Whether the event log changed since the holds last looked.
    fn log_changed(&mut self) -> bool {
        let store = self
            .server
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mark = (
            store.events.len(),
            store.events.back().map_or(0, |e| e.timetoken),
        );
        drop(store);
        if mark != self.log_mark {
            self.log_mark = mark;
            true
        } else {
            false
        }
    }

    /// Reads the next complete request on link `id`, if any, and starts
    /// answering it.
    fn serve_next(&mut self, id: u64) -> Busy {
        let Some(link) = self.links.get_mut(&id) else {
            return Busy::Closed;
        };
        let Some(end) = link
            .server_in
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
        else {
            if link.server_in.len() > crate::emulator::http::MAX_HEAD {
                let mut out = Vec::new();
                let _ = write_response(
                    &mut out,
                    414,
                    &routes::error_body(414, "URI too long"),
                    true,
                );
                self.send(id, out);
                return self.after_answer(id, true);
            }
            return Busy::Idle;
        };
        let head: Vec<u8> = link.server_in.drain(..end).collect();
        match read_request(&mut io::Cursor::new(head)) {
            Incoming::Request(req) => {
                self.served.push(Served {
                    at: self.now,
                    link: id,
                    path: req.path.clone(),
                    uuid: req.param("uuid").unwrap_or_default(),
                });
                let now = self.now;
                let on = |f: &Fault| f.covers(now, &req.path);
                if self
                    .faults
                    .iter()
                    .any(|f| matches!(f, Fault::EndlessContinue { .. }) && on(f))
                {
                    return Busy::Continue { next: now };
                }
                let extra = self
                    .faults
                    .iter()
                    .any(|f| matches!(f, Fault::ExtraResponse { .. }) && on(f));
                if let Some(l) = self.links.get_mut(&id) {
                    l.extra = extra;
                }
                self.answer(id, &req, None)
            }
            Incoming::Bad(status, why) => {
                let mut out = Vec::new();
                let _ = write_response(
                    &mut out,
                    status,
                    &routes::bad_request_body(status, why),
                    true,
                );
                self.send(id, out);
                self.after_answer(id, true)
            }
            Incoming::Closed => Busy::Idle,
        }
    }

    /// Answers `req` on link `id`, or holds it (a long-poll with nothing
    /// new) until `held` (a new hold when `None`), then answers anyway.
    fn answer(&mut self, id: u64, req: &HttpRequest, held: Option<Duration>) -> Busy {
        let final_answer = held.is_some_and(|u| self.now >= u);
        let now = self.now;
        let on = |f: &Fault| f.covers(now, &req.path);
        // A fault that answers instead of the server leaves its state alone.
        let raw = self.faults.iter().find_map(|f| match f {
            Fault::Raw { bytes, .. } if on(f) => Some(*bytes),
            _ => None,
        });
        if let Some(bytes) = raw {
            self.send(id, bytes.to_vec());
            return self.after_answer(id, true);
        }
        let long_poll = req.path.contains("/subscribe/")
            && req.param("tt").is_some_and(|t| !t.is_empty() && t != "0");
        let empty_at_once = long_poll
            && self
                .faults
                .iter()
                .any(|f| matches!(f, Fault::EmptyBatches { .. }) && on(f));
        if empty_at_once {
            let tt = req.param("tt").unwrap_or_default();
            let body = format!("{{\"m\":[],\"t\":{{\"r\":1,\"t\":\"{tt}\"}}}}");
            let mut out = Vec::new();
            let _ = write_response(&mut out, 200, &body, req.close);
            self.send(id, out);
            return self.after_answer(id, req.close);
        }
        let rewind = self.faults.iter().find_map(|f| match f {
            Fault::Rewind { by, .. } if long_poll && on(f) => Some(*by),
            _ => None,
        });
        let rewound;
        let req = match rewind {
            Some(by) => {
                rewound = rewind_cursor(req, by);
                &rewound
            }
            None => req,
        };
        let (status, body) = routes::handle(&self.server, req);
        if long_poll && status == 200 && body.starts_with("{\"m\":[]") && !final_answer {
            let until = held.unwrap_or_else(|| self.now.saturating_add(self.cfg.hold));
            return Busy::Hold {
                req: HttpRequest {
                    path: req.path.clone(),
                    query: req.query.clone(),
                    close: req.close,
                },
                until,
            };
        }
        let mut out = Vec::new();
        let _ = write_response(&mut out, status, &body, req.close);
        let extra = self.links.get(&id).is_some_and(|l| l.extra);
        if extra {
            let _ = write_response(
                &mut out,
                200,
                "{\"status\":200,\"message\":\"stray\"}",
                false,
            );
        }
        let trickle = self.faults.iter().find_map(|f| match f {
            Fault::Trickle { every, .. } if on(f) => Some(*every),
            _ => None,
        });
        if let Some(every) = trickle {
            return Busy::Trickle {
                bytes: out.into(),
                every,
                next: now,
                close: req.close,
            };
        }
        self.send(id, out);
        self.after_answer(id, req.close)
    }

    fn after_answer(&mut self, id: u64, close: bool) -> Busy {
        if close {
            let at = self
                .links
                .get(&id)
                .and_then(|l| l.down.back().map(|s| s.at))
                .unwrap_or(self.now)
                .max(self.now.saturating_add(self.cfg.latency));
            if let Some(l) = self.links.get_mut(&id) {
                l.fin = Some(at);
            }
            Busy::Closed
        } else {
            Busy::Idle
        }
    }

    /// The server sends `bytes` on link `id`.
    fn send(&mut self, id: u64, bytes: Vec<u8>) {
        let now = self.now;
        self.bytes_down = self
            .bytes_down
            .saturating_add(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
        let Some(link) = self.links.get(&id) else {
            return;
        };
        let mut free = link.down_free;
        let mut last = link.down.back().map_or(Duration::ZERO, |s| s.at);
        let mut segs = Vec::new();
        for chunk in bytes.chunks(SEGMENT) {
            let at = self.arrival(now, chunk.len(), &mut free, last);
            last = at;
            segs.push(Segment {
                at,
                bytes: chunk.to_vec(),
            });
        }
        if let Some(link) = self.links.get_mut(&id) {
            link.down_free = free;
            link.down.extend(segs);
        }
    }

    /// The client opens a connection.
    fn connect(&mut self, addr: SocketAddr) -> io::Result<u64> {
        let now = self.now;
        let id = self.next_link;
        self.next_link = self.next_link.saturating_add(1);
        self.connect_log.push(now);
        let rtt = self.cfg.latency.saturating_mul(2);
        let (established, refused) = if addr.ip() != SERVER_IP {
            (None, Some(now.saturating_add(rtt)))
        } else {
            match self.outage_at(now) {
                Some((_, true, _)) => (None, Some(now.saturating_add(rtt))),
                Some((end, false, _)) if end.saturating_sub(now) < SYN_GIVE_UP => {
                    (Some(end.saturating_add(rtt)), None)
                }
                Some(_) => (None, None),
                None => (
                    Some(now.saturating_add(rtt).saturating_add(self.jitter())),
                    None,
                ),
            }
        };
        self.links.insert(
            id,
            Link {
                established,
                refused,
                up: VecDeque::new(),
                server_in: Vec::new(),
                down: VecDeque::new(),
                client_in: VecDeque::new(),
                fin: None,
                rst: None,
                forgotten: false,
                busy: Busy::Idle,
                wait: Some(Duration::ZERO),
                up_free: now,
                down_free: now,
                last_heard: now,
                keepalive: false,
                extra: false,
            },
        );
        Ok(id)
    }

    /// How long the client may block now, from its socket timeout:
    /// `Some(t)` = until `t`; `None` = until something happens.
    fn wait_until(&self, id: u64) -> Option<Option<Duration>> {
        let wait = self.links.get(&id)?.wait;
        Some(wait.map(|w| self.now.saturating_add(w)))
    }

    /// Blocks the client until `until` or the next event (and through a
    /// suspension). `false`: nothing can ever happen (a deadlock).
    fn block(&mut self, until: Option<Duration>) -> bool {
        let next = self.next_event();
        let target = match (next, until) {
            (Some(n), Some(u)) => n.min(u),
            (n, u) => match n.or(u) {
                Some(t) => t,
                None => return false,
            },
        };
        let target = target.max(self.now);
        if target == self.now {
            self.step();
            // Nothing moved at this instant: take a microsecond.
            self.advance_to(self.now.saturating_add(Duration::from_micros(1)));
        } else {
            self.advance_to(target);
        }
        if let Some(end) = self.suspended_until(self.now) {
            self.advance_to(end);
        }
        true
    }

    /// Whether a kept connection with keepalive is dead by now (the path
    /// down, or the peer gone, for longer than the keepalive allows).
    fn keepalive_dead(&self, link: &Link) -> bool {
        if !link.keepalive {
            return false;
        }
        let silent = self.now.saturating_sub(link.last_heard);
        if silent < KEEPALIVE_DEAD {
            return false;
        }
        let since = self.now.saturating_sub(KEEPALIVE_DEAD);
        // Probes went unanswered over the whole window: the path was down
        // at every probe, or the server forgot the connection (a probe
        // would be answered with a reset instead: see `read`).
        self.outage_at(since).is_some() && self.outage_at(self.now).is_some()
    }

    fn read(&mut self, id: u64, buf: &mut [u8]) -> io::Result<usize> {
        let until = self.wait_until(id).unwrap_or(Some(self.now));
        loop {
            self.step();
            let dead = self.links.get(&id).is_some_and(|l| self.keepalive_dead(l));
            let now = self.now;
            let Some(link) = self.links.get_mut(&id) else {
                return Err(io::ErrorKind::NotConnected.into());
            };
            if link.refused.is_some_and(|t| t <= now) {
                return Err(io::ErrorKind::ConnectionRefused.into());
            }
            if !link.client_in.is_empty() {
                let n = buf.len().min(link.client_in.len());
                for (slot, b) in buf.iter_mut().zip(link.client_in.drain(..n)) {
                    *slot = b;
                }
                return Ok(n);
            }
            if link.rst.is_some_and(|t| t <= now) {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            if link.fin.is_some_and(|t| t <= now) && link.down.is_empty() {
                return Ok(0);
            }
            // A keepalive probe on a forgotten connection: reset.
            if link.keepalive
                && link.forgotten
                && now.saturating_sub(link.last_heard) >= Duration::from_secs(15)
                && link.rst.is_none()
            {
                link.rst = Some(now.saturating_add(self.cfg.latency.saturating_mul(2)));
            }
            if dead {
                return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
            }
            if until.is_some_and(|u| now >= u) {
                self.advance_to(now.saturating_add(SYSCALL_COST));
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if !self.block(until) {
                self.trouble.push(format!(
                    "t={:?}: a read blocks forever with nothing scheduled",
                    self.now
                ));
                return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
            }
        }
    }

    fn write(&mut self, id: u64, buf: &[u8]) -> io::Result<usize> {
        let until = self.wait_until(id).unwrap_or(Some(self.now));
        loop {
            self.step();
            let now = self.now;
            let capacity = self.cfg.send_buffer.max(1);
            let Some(link) = self.links.get(&id) else {
                return Err(io::ErrorKind::NotConnected.into());
            };
            if link.refused.is_some_and(|t| t <= now) {
                return Err(io::ErrorKind::ConnectionRefused.into());
            }
            if link.rst.is_some_and(|t| t <= now) {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            let connected = link.established.is_some_and(|t| t <= now);
            let queued: usize = link.up.iter().map(|s| s.bytes.len()).sum();
            let room = capacity.saturating_sub(queued);
            if connected && room > 0 {
                let n = room.min(buf.len());
                let mut free = link.up_free;
                let mut last = link.up.back().map_or(Duration::ZERO, |s| s.at);
                let mut segs = Vec::new();
                for chunk in buf.get(..n).unwrap_or_default().chunks(SEGMENT) {
                    let at = self.arrival(now, chunk.len(), &mut free, last);
                    last = at;
                    segs.push(Segment {
                        at,
                        bytes: chunk.to_vec(),
                    });
                }
                let path_up = self.outage_at(now).is_none();
                if let Some(link) = self.links.get_mut(&id) {
                    link.up_free = free;
                    link.up.extend(segs);
                    if !link.forgotten && path_up {
                        link.last_heard = now;
                    }
                }
                return Ok(n);
            }
            if until.is_some_and(|u| now >= u) {
                self.advance_to(now.saturating_add(SYSCALL_COST));
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if !self.block(until) {
                self.trouble.push(format!(
                    "t={:?}: a write blocks forever with nothing scheduled",
                    self.now
                ));
                return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
            }
        }
    }

    fn stale(&mut self, id: u64) -> bool {
        self.step();
        let now = self.now;
        self.links.get(&id).is_none_or(|l| {
            !l.client_in.is_empty()
                || l.rst.is_some_and(|t| t <= now)
                || l.fin.is_some_and(|t| t <= now)
        })
    }

    fn close(&mut self, id: u64) {
        // The server sees the FIN and drops the connection (a long-poll
        // it was holding goes with it).
        self.links.remove(&id);
        self.dirty = true;
    }

    /// The network's name server answers a query sent by socket `id`
    /// (dropped during an outage that takes DNS; late under `SlowDns`).
    fn dns_query(&mut self, id: u64, packet: &[u8], to: SocketAddr) {
        self.lookups = self.lookups.saturating_add(1);
        if let Some((_, _, true)) = self.outage_at(self.now) {
            return;
        }
        let Some(answer) = dns_answer(packet) else {
            return;
        };
        let slow = self.slow_dns();
        let at = self
            .now
            .saturating_add(self.cfg.latency.saturating_mul(2))
            .saturating_add(slow.unwrap_or_default());
        if let Some(q) = self.udp.get_mut(&id) {
            q.push_back((at, answer, to));
        }
    }

    fn udp_recv(
        &mut self,
        id: u64,
        buf: &mut [u8],
        wait: Duration,
    ) -> io::Result<(usize, SocketAddr)> {
        let until = self.now.saturating_add(wait);
        loop {
            self.step();
            let now = self.now;
            let q = self.udp.entry(id).or_default();
            if q.front().is_some_and(|(t, ..)| *t <= now) {
                if let Some((_, bytes, from)) = q.pop_front() {
                    let n = bytes.len().min(buf.len());
                    for (slot, b) in buf.iter_mut().zip(bytes) {
                        *slot = b;
                    }
                    return Ok((n, from));
                }
            }
            if now >= until {
                self.advance_to(now.saturating_add(SYSCALL_COST));
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if !self.block(Some(until)) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
    }

    fn resolve(&mut self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        self.lookups = self.lookups.saturating_add(1);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let slow = self.slow_dns();
        if let Some((_, _, true)) = self.outage_at(self.now) {
            // The system resolver waits for servers that do not answer.
            let until = self.now.saturating_add(RESOLVER_TIMEOUT);
            self.advance_to(until);
            return Err(io::Error::other("Temporary failure in name resolution"));
        }
        if let Some(delay) = slow {
            let until = self.now.saturating_add(delay);
            self.advance_to(until);
        }
        if host == Sim::HOST {
            Ok(vec![SocketAddr::new(SERVER_IP, port)])
        } else {
            Err(io::Error::other("Name or service not known"))
        }
    }
}

/// The simulated name server's answer to a query: `presence.sim` has one
/// IPv4 address and no IPv6 one; other names do not exist.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    // The question: labels up to the root, then type and class.
    let mut at = 12usize;
    let mut name = String::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at = at.checked_add(1)?;
        if len == 0 {
            break;
        }
        let label = query.get(at..at.checked_add(len)?)?;
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&String::from_utf8_lossy(label));
        at = at.checked_add(len)?;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = query.get(12..at.checked_add(4)?)?;
    let known = name.eq_ignore_ascii_case(Sim::HOST);
    let a = known && qtype == 1;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(header.get(..2)?);
    out.extend_from_slice(if known { &[0x81, 0x80] } else { &[0x81, 0x83] });
    out.extend_from_slice(&[0, 1, 0, u8::from(a), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if a {
        out.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0x01, 0x2C, 0, 4, 10, 0, 0, 1]);
    }
    Some(out)
}

/// `req` with its cursor (`tt`) moved `by` back (timetokens count 100 ns).
fn rewind_cursor(req: &HttpRequest, by: Duration) -> HttpRequest {
    let back = u64::try_from(by.as_nanos() / 100).unwrap_or(u64::MAX);
    let query = req
        .query
        .split('&')
        .map(
            |kv| match kv.strip_prefix("tt=").and_then(|t| t.parse::<u64>().ok()) {
                Some(t) => format!("tt={}", t.saturating_sub(back).max(1)),
                None => kv.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("&");
    HttpRequest {
        path: req.path.clone(),
        query,
        close: req.close,
    }
}

/// A simulated UDP socket (see [`crate::sock`]).
pub(crate) struct SimUdp {
    world: Arc<Mutex<World>>,
    id: u64,
}

impl crate::seam::Datagram for SimUdp {
    fn send_to(&self, packet: &[u8], to: SocketAddr) -> io::Result<usize> {
        lock(&self.world).dns_query(self.id, packet, to);
        Ok(packet.len())
    }

    fn recv_from(&self, buf: &mut [u8], wait: Duration) -> io::Result<(usize, SocketAddr)> {
        lock(&self.world).udp_recv(self.id, buf, wait)
    }
}

impl Drop for SimUdp {
    fn drop(&mut self) {
        lock(&self.world).udp.remove(&self.id);
    }
}

/// A simulated socket (see [`crate::sock`]).
pub(crate) struct SimSock {
    world: Arc<Mutex<World>>,
    id: u64,
}

impl crate::seam::Stream for SimSock {
    fn set_wait(&self, wait: Option<Duration>) {
        if let Some(l) = lock(&self.world).links.get_mut(&self.id) {
            l.wait = wait;
        }
    }

    fn set_keepalive(&self) {
        if let Some(l) = lock(&self.world).links.get_mut(&self.id) {
            l.keepalive = true;
        }
    }

    fn stale(&self) -> bool {
        lock(&self.world).stale(self.id)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        lock(&self.world).read(self.id, buf)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.world).write(self.id, buf)
    }
}

impl Drop for SimSock {
    fn drop(&mut self) {
        lock(&self.world).close(self.id);
    }
}

/// What the crate's `clock` and `sock` seams ask.
/// The simulation as the crate's seam sees it (`crate::seam`): what the
/// `clock` and `sock` modules ask, answered from the world.
struct Installed(Arc<Mutex<World>>);

impl crate::seam::World for Installed {
    fn now(&self) -> Instant {
        let w = lock(&self.0);
        w.base + w.now
    }

    fn sleep(&self, d: Duration) {
        let mut w = lock(&self.0);
        let until = w.now.saturating_add(d);
        w.advance_to(until);
        if let Some(end) = w.suspended_until(w.now) {
            w.advance_to(end);
        }
    }

    fn random(&self) -> u64 {
        lock(&self.0).random()
    }

    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        lock(&self.0).resolve(host, port)
    }

    fn udp(&self) -> Box<dyn crate::seam::Datagram + Send> {
        let world = Arc::clone(&self.0);
        let id = {
            let mut w = lock(&world);
            let id = w.next_udp;
            w.next_udp = w.next_udp.saturating_add(1);
            w.udp.insert(id, Default::default());
            id
        };
        Box::new(SimUdp { world, id })
    }

    /// The resolver configuration under a simulation: its name server.
    fn resolv_conf(&self) -> String {
        "nameserver 10.0.0.53\noptions timeout:2 attempts:2\n".to_string()
    }

    fn connect(&self, addr: SocketAddr) -> io::Result<Box<dyn crate::seam::Stream + Send>> {
        let world = Arc::clone(&self.0);
        let id = lock(&world).connect(addr)?;
        Ok(Box::new(SimSock { world, id }))
    }
}

// Keep the import used when the module docs' example is the only user.
#[allow(dead_code)]
type Unused = RefCell<()>;
