//! The HTTP client of the crate: a kept connection that carries one GET
//! at a time and is driven in slices: each [`Conn::drive`] does what it
//! can before the caller's deadline and returns, keeping the socket, the
//! TLS session and the half-read response for the next call.
//!
//! This is what lets a single-threaded loop wait on a long-poll for 100 ms
//! at a time without abandoning it (a blocking HTTP call drops its
//! connection when a read times out). The ordinary calls use it too: a
//! connection from the pool of idle ones (`pool`), driven by the driver
//! (`driver::Lane`) for the call engine ([`crate::call::Call`]). The
//! pieces:
//!
//! - Names: resolved by `dns` (`/etc/hosts`, then DNS over UDP driven by
//!   the same calls, with the last good addresses kept and used while
//!   lookups fail; see that module), so a lookup is bounded by the call's
//!   deadline like a connect.
//! - TCP: a non-blocking connect (`socket2`), after which a blocking write
//!   with the socket's write timeout set to the remaining budget waits at
//!   most that long for the connection (Linux returns `EAGAIN` and the
//!   connect goes on in the kernel), so a connect survives short polls.
//! - TLS: rustls' `ClientConnection`, driven with `read_tls` /
//!   `process_new_packets` / `write_tls`; a timed-out socket read leaves
//!   its state intact.
//! - HTTP/1.1: ureq-proto's sans-IO client (`Call`), fed whatever bytes
//!   have arrived; "not complete yet" is a normal answer. The request head
//!   is written into a buffer sized for it (no fixed output buffer, so a
//!   long request line is not refused).
//!
//! Bounds: the connect timeout (TCP and TLS handshake), TLS verification
//! with the bundled or configured roots, a response head of at most 8 KiB
//! (interim `1xx` heads count toward it, and at most
//! [`MAX_INTERIM`] of them are taken), the body cap (a larger declared or
//! received body drops the connection), and two bounds on time:
//!
//! - a silence bound, `request_timeout` (or the long-poll's timeout): the
//!   longest wait for the next byte while sending or receiving; a body
//!   that keeps arriving is not cut;
//! - a total bound: an ordinary call ends by the retry policy's deadline
//!   (the call engine's bound, given as the drive's deadline; without
//!   one, an attempt by `connect_timeout` + 3 × `request_timeout`), a
//!   kept connection's request (long-poll, heartbeat, here_now page) by
//!   its silence bound plus `request_timeout` (for the long-poll:
//!   `long_poll_timeout` + `request_timeout`).
//!
//! Breaking one drops the connection. A bound is applied only after one
//! more look, without waiting, at what has arrived: a process stopped and
//! resumed (the clock jumped past the bound) reads the answer that came
//! meanwhile instead of failing it, and the silence bound runs from the
//! resume. A write is one system call bounded by what is left of the
//! caller's wait, so a slow link cannot hold a poll past its budget; the
//! rest of the request goes out in the next call.
//!
//! Dead connections: every socket has TCP keepalive (first probe after
//! [`KEEPALIVE_IDLE`](crate::sock::KEEPALIVE_IDLE) of quiet, then every [`KEEPALIVE_INTERVAL`](crate::sock::KEEPALIVE_INTERVAL),
//! [`KEEPALIVE_PROBES`](crate::sock::KEEPALIVE_PROBES) unanswered probes end it) and, on Linux,
//! `TCP_USER_TIMEOUT` ([`USER_TIMEOUT`](crate::sock::USER_TIMEOUT): data unacknowledged that long ends
//! it): a kept connection whose path died silently (a NAT that forgot it, a
//! server gone without a reset) fails in about 35 s with a retryable error,
//! even while a long-poll waits for minutes without a byte.
//!
//! An idle connection is reused only when nothing is left unread after
//! the response (our buffer, the TLS session's decrypted bytes, the
//! socket: a response to nothing, e.g. a 408 before closing, must not be
//! taken for the next answer); otherwise it is closed. A reused one that
//! fails before any byte of the answer is replaced and the request sent
//! again, once.

use crate::clock;
use crate::config::Config;
use crate::error::{Error, Result, TransportErrorKind as K};
use crate::request::PNSDK;
use crate::sock::Sock;
use crate::transport::Response;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use ureq_proto::client::state::{RecvBody, RecvResponse};
use ureq_proto::client::{Call, RecvBodyResult, RecvResponseResult, SendRequestResult};
use ureq_proto::http;

const MAX_HEAD: usize = 8 * 1024;
/// Interim (`1xx`) heads taken before the response's own head; one more is
/// a protocol error (an endless stream of `100 Continue` is not an answer).
pub(crate) const MAX_INTERIM: u8 = 4;
/// How long before a deadline a wait stops relying on the socket timeout
/// (which the kernel rounds up to scheduler ticks).
const TICK_GUARD: Duration = Duration::from_millis(20);
/// The sleep between non-blocking looks within `TICK_GUARD` of a deadline.
const FINE_STEP: Duration = Duration::from_millis(2);
const READ_CHUNK: usize = 4 * 1024;

/// What the kept connections of one client share: where to connect and
/// the TLS settings (built once).
#[derive(Clone)]
pub(crate) struct Endpoint {
    /// For TLS's server name (the resolver keeps its own copy).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    host: String,
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    /// The silence bound of ordinary calls, and what a kept connection's
    /// request may take beyond its own silence bound in all.
    request_timeout: Duration,
    max_body: usize,
    /// The host's addresses, shared by all connections of the client.
    resolver: crate::dns::Resolver,
}

impl Endpoint {
    pub(crate) fn new(config: &Config) -> Result<Self> {
        let bad = || Error::input("origin", "the origin is not a valid http(s) url");
        let uri: http::Uri = config.origin.parse().map_err(|_| bad())?;
        let secure = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let host = uri.host().ok_or_else(bad)?;
        // `[::1]` in a URL, `::1` for the resolver and for SNI.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_string();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        #[cfg(not(feature = "tls"))]
        if secure {
            return Err(Error::input(
                "origin",
                "https needs the `tls` feature of pubnub-presence",
            ));
        }
        Ok(Endpoint {
            resolver: crate::dns::Resolver::new(&host, port, config.connect_timeout),
            host,
            #[cfg(feature = "tls")]
            tls: if secure {
                Some(std::sync::Arc::new(tls_config(config)?))
            } else {
                None
            },
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            max_body: config.max_response_size,
        })
    }
}

#[cfg(feature = "tls")]
fn tls_config(config: &Config) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.root_certificate_pem {
        Some(pem) => {
            let bad = |reason| Error::input("root_certificate_pem", reason);
            let ders = crate::transport::pem_certificates(pem)
                .ok_or_else(|| bad("the root certificate is not valid PEM"))?;
            if ders.is_empty() {
                return Err(bad("the PEM holds no certificate"));
            }
            for der in ders {
                roots
                    .add(rustls::pki_types::CertificateDer::from(der))
                    .map_err(|_| bad("the root certificate is not a valid certificate"))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // The program's process-wide provider when it installed one, else
    // ring. NOTE(crypto): ring it is by default, for bytes and for the
    // cross-builds: rustls' other provider, aws-lc-rs, needs cmake and a C
    // toolchain per ARM target and is larger. rustls 0.23.48 deprecates the
    // ring provider because it has no post-quantum key exchange; a program
    // that needs that installs a provider that has it before `build()`,
    // e.g. with rustls' `aws_lc_rs` feature:
    // `rustls::crypto::aws_lc_rs::default_provider().install_default()`.
    let provider = match rustls::crypto::CryptoProvider::get_default() {
        Some(installed) => std::sync::Arc::clone(installed),
        // Deprecated since rustls 0.23.48 ("no support for post-quantum
        // algorithms"); kept on purpose, see above.
        #[allow(deprecated)]
        None => std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| Error::transport(K::Tls, "no usable tls protocol version"))?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// A socket and, for `https`, its TLS session.
struct Wire {
    /// The TCP and TLS handshakes were seen done (the phase bound runs
    /// from then on, the connect timeout before).
    ready: bool,
    /// Decrypted response bytes not yet consumed by the parser; kept with
    /// the connection, so a reused one reads into the same buffer.
    input: Vec<u8>,
    sock: Sock,
    #[cfg(feature = "tls")]
    tls: Option<rustls::ClientConnection>,
    /// TCP established (a write went through).
    connected: bool,
    /// When the connect started: the connect timeout runs from here until
    /// the TCP and TLS handshakes are done.
    opened: Instant,
    /// Whether the connection already carried a whole response: a reused
    /// connection that closes before answering was closed by the server
    /// while idle, and the request is sent again on a fresh one.
    reused: bool,
    /// The socket's blocking mode and timeouts as last set, to skip
    /// repeated system calls.
    timeout_set: Option<Option<Duration>>,
    /// Bytes moved (written, or read: TLS bytes that made no plaintext
    /// yet too) since the drive loop last looked: the silence bound
    /// restarts.
    moved: bool,
}

impl Wire {
    fn handshaking(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return !self.connected || tls.is_handshaking();
        }
        !self.connected
    }

    /// Sets how long the next socket operation may block: `None` = until
    /// done, zero = not at all.
    fn set_wait(&mut self, wait: Option<Duration>) -> io::Result<()> {
        if self.timeout_set == Some(wait) {
            return Ok(());
        }
        self.sock.set_wait(wait)?;
        self.timeout_set = Some(wait);
        Ok(())
    }

    /// Whether an idle connection is no longer usable: anything is left
    /// unread (our buffer, the TLS session's decrypted bytes, the socket),
    /// or the server closed or reset it. Bytes nobody asked for (a response
    /// to nothing, e.g. a 408 before closing, or the tail of a response
    /// read with the one before) must not be taken for the next answer.
    fn dirty(&mut self) -> bool {
        let mut dirty = !self.input.is_empty();
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            // Records already read but not yet taken: decrypted bytes, or
            // the peer's close_notify.
            dirty |= !matches!(tls.process_new_packets(),
                Ok(io) if io.plaintext_bytes_to_read() == 0 && !io.peer_has_closed());
        }
        dirty |= self.sock.stale();
        if dirty {
            log::debug!(target: "pubnub_presence::conn", "closed by the server, or bytes after the response: not reused");
        }
        dirty
    }

    /// Writes what is pending (the TLS session's records, or `out` for
    /// plain HTTP) in one system call, which blocks at most the socket's
    /// timeout: the drive loop checks its deadline between writes, so a
    /// socket taking a few bytes at a time cannot hold it past its budget.
    /// `Ok(false)` when not all of it went out yet.
    fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            if !out.is_empty() {
                // rustls buffers plaintext until the handshake is done.
                tls.writer().write_all(out)?;
                out.clear();
            }
            if tls.wants_write() {
                match tls.write_tls(&mut self.sock) {
                    Ok(n) => {
                        self.connected = true;
                        self.moved |= n > 0;
                    }
                    Err(e) if would_block(&e) => return Ok(false),
                    Err(e) => return Err(e),
                }
            }
            return Ok(!tls.wants_write());
        }
        if out.is_empty() {
            return Ok(true);
        }
        match self.sock.write(out) {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                self.connected = true;
                self.moved = true;
                out.drain(..n.min(out.len()));
                Ok(out.is_empty())
            }
            Err(e) if would_block(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads what has arrived into `input`: `Ok(0)` at the end of the
    /// stream, `WouldBlock` when nothing came before the socket's timeout.
    fn fill(&mut self) -> io::Result<usize> {
        let mut into = std::mem::take(&mut self.input);
        let at = into.len();
        into.resize(at + READ_CHUNK, 0);
        let got = self.read_some(into.get_mut(at..).unwrap_or_default());
        let n = *got.as_ref().unwrap_or(&0);
        into.truncate(at + n);
        self.input = into;
        self.moved |= n > 0;
        got
    }

    /// For TLS: at most one socket read per call (each read may wait the
    /// whole socket timeout, so looping here would overrun the caller's
    /// deadline while a record trickles in); `WouldBlock` when it brought
    /// no plaintext yet, with `moved` set if it brought bytes.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            let mut read_socket = true;
            loop {
                match tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // TCP closed without close_notify: the end, for us.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
                // Handshake replies (and key updates) go out first: one
                // write (each may block the socket's timeout); the rest
                // with the next flush.
                if tls.wants_write() {
                    tls.write_tls(&mut self.sock)?;
                }
                if !read_socket {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                read_socket = false;
                if tls.read_tls(&mut self.sock)? == 0 {
                    return Ok(0);
                }
                self.moved = true;
                tls.process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            }
        }
        self.sock.read(buf)
    }
}

/// How long the next socket operation may block before `until`, and
/// whether the rest is to be waited out in fine steps (see `drive_inner`).
fn split_wait(until: Option<Instant>, now: Instant) -> (Option<Duration>, bool) {
    match until.map(|u| u.saturating_duration_since(now)) {
        Some(w) if w > TICK_GUARD => (Some(w.saturating_sub(TICK_GUARD)), false),
        Some(w) if w >= Duration::from_millis(1) => (Some(Duration::ZERO), true),
        Some(_) => (Some(Duration::ZERO), false),
        None => (None, false),
    }
}

/// A socket wait that ended without data: not an error. On Unix a socket
/// timeout is `EAGAIN`; `ETIMEDOUT` there is the kernel giving up on the
/// connection (keepalive or `TCP_USER_TIMEOUT`): an error.
fn would_block(e: &io::Error) -> bool {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => true,
        io::ErrorKind::TimedOut => cfg!(not(unix)),
        _ => false,
    }
}

/// The response being received.
enum Recv {
    Head(Call<RecvResponse>),
    Body(Call<RecvBody>),
}

impl Exchange {
    /// What the silence bound interrupted.
    fn timed_out(&self) -> &'static str {
        match self.sent {
            false => "timed out sending the request",
            true => "no data from the server in time",
        }
    }
}

/// One request in flight.
struct Exchange {
    /// The URL, kept to send again on a fresh connection when a reused one
    /// turns out to be closed.
    uri: http::Uri,
    /// Request bytes not yet handed to the socket (or to TLS).
    out: Vec<u8>,
    /// `None` only while being advanced.
    recv: Option<Recv>,
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
    /// Whether any byte of the response arrived.
    answered: bool,
    /// Whether the request was already sent again once.
    resent: bool,
    /// Addresses tried for this request after the first one failed.
    addr_tries: usize,
    /// The request was handed to the socket whole: waiting for (or
    /// reading) the response.
    sent: bool,
    /// When the request must have ended, whatever moves (`None`: no total
    /// bound, or one too far to count).
    total: Option<Instant>,
    /// A total bound still to start (`total` set from it once the
    /// connection is ready to carry the request).
    span: Option<Duration>,
    /// Bytes of response heads so far, interim ones included.
    head_bytes: usize,
    /// Interim (`1xx`) heads taken.
    interims: u8,
    /// Bytes that looks past the total bound may have read (each reads at
    /// most [`READ_CHUNK`]): what had arrived by then is still taken, but
    /// a server that keeps sending is not followed further than a
    /// response can be long.
    late: usize,
}

/// A kept connection for one purpose (the event stream's long-poll, the
/// device loop's heartbeats, an idle connection of the ordinary calls'
/// pool). See the module docs.
pub(crate) struct Conn {
    endpoint: Endpoint,
    /// The addresses to connect to (from the endpoint's resolver, at most
    /// 4), the one to connect to first; reused for
    /// reconnects until the resolver's entry expires. A failed connect goes
    /// on to the next address, as long as the request has not tried them
    /// all.
    addrs: Vec<SocketAddr>,
    /// Connects to every address failed since they were taken: ask the
    /// resolver again (it looks the name up at most once per reconnect,
    /// and keeps the last good addresses while lookups fail).
    stale_addr: bool,
    /// A lookup in progress, carried across calls.
    lookup: Option<Box<crate::dns::Resolving>>,
    wire: Option<Wire>,
    exchange: Option<Exchange>,
    /// The silence bound: how long the request may go without a byte
    /// moving.
    bound: Duration,
    /// Where `bound` runs from: the last byte that moved (or the end of
    /// the handshakes, or the start of the request).
    last_io: Instant,
    /// Connections opened, for logs and tests.
    pub(crate) connects: u64,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("connected", &self.wire.is_some())
            .field("in_flight", &self.exchange.is_some())
            .finish_non_exhaustive()
    }
}

impl Conn {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Conn {
            endpoint,
            addrs: Vec::new(),
            stale_addr: false,
            lookup: None,
            wire: None,
            exchange: None,
            bound: Duration::from_secs(310),
            last_io: clock::now(),
            connects: 0,
        }
    }

    /// Whether a request is in flight.
    pub(crate) fn busy(&self) -> bool {
        self.exchange.is_some()
    }

    /// Drops the request in flight and the connection.
    pub(crate) fn abort(&mut self) {
        self.exchange = None;
        self.wire = None;
        self.lookup = None;
    }

    /// Whether the connection is open (a complete response left it
    /// usable for the next request).
    pub(crate) fn is_open(&self) -> bool {
        self.wire.is_some()
    }

    /// Starts a GET of `url` (its origin must be the endpoint's). `silence`
    /// bounds how long the request may go without a byte moving; the
    /// request ends, whatever moves, by `silence` plus the client's
    /// `request_timeout` (for a long-poll: `long_poll_timeout` +
    /// `request_timeout`).
    #[cfg(test)]
    pub(crate) fn start(&mut self, url: String, silence: Duration) -> Result<()> {
        self.start_bounded(url, silence, true)
    }

    /// [`Conn::start`]; without `total`, the request has no total bound of
    /// the connection's (its caller bounds it), only the silence and
    /// connect bounds.
    pub(crate) fn start_bounded(
        &mut self,
        url: String,
        silence: Duration,
        total: bool,
    ) -> Result<()> {
        let span = match total {
            true => silence.checked_add(self.endpoint.request_timeout),
            false => None,
        };
        self.start_uri(crate::transport::parse_uri(url)?, silence, None)?;
        if let Some(ex) = self.exchange.as_mut() {
            // Counted from when the request can go out: a name lookup and
            // a connect have their own bounds, and a device suspended
            // before then starts the count on resume.
            ex.span = span;
        }
        Ok(())
    }

    /// Starts a GET of `uri`: `silence` bounds the time without a byte
    /// moving, `total` (when given) the whole request.
    pub(crate) fn start_uri(
        &mut self,
        uri: http::Uri,
        silence: Duration,
        total: Option<Instant>,
    ) -> Result<()> {
        if self.wire.as_mut().is_some_and(Wire::dirty) {
            self.wire = None;
        }
        let (out, call) = begin(&uri)?;
        self.exchange = Some(Exchange {
            uri,
            out,
            recv: Some(Recv::Head(call)),
            status: 0,
            retry_after: None,
            body: Vec::new(),
            answered: false,
            resent: false,
            addr_tries: 0,
            sent: false,
            total,
            span: None,
            head_bytes: 0,
            interims: 0,
            late: 0,
        });
        self.bound = silence;
        self.last_io = clock::now();
        Ok(())
    }

    /// Drives the request in flight until it completes or `deadline`
    /// passes (`None`: until it completes). `Ok(None)`: still in flight.
    /// On an error the request ends and the connection is dropped.
    pub(crate) fn drive(&mut self, deadline: Option<Instant>) -> Result<Option<Response>> {
        if self.exchange.is_none() {
            return Err(Error::transport(K::Protocol, "no request in flight"));
        }
        match self.drive_inner(deadline) {
            Ok(Some(resp)) => Ok(Some(resp)),
            Ok(None) => Ok(None),
            Err(e) => {
                self.abort();
                Err(e)
            }
        }
    }

    fn drive_inner(&mut self, deadline: Option<Instant>) -> Result<Option<Response>> {
        // A bound passed, and the look without waiting at what arrived
        // meanwhile (the process may have been stopped past the bound, the
        // answer waiting in the socket) brought nothing yet: it applies.
        let mut looked = false;
        loop {
            // A lookup under way when the deadline passes goes on next call.
            if self.wire.is_none() && !self.resolve(deadline)? {
                return Ok(None);
            }
            let now = clock::now();
            if self.wire.is_none() {
                looked = false;
                if let Err(e) = self.open(now) {
                    // No route to this address, say: try the next one.
                    if !self.addrs.is_empty() && self.next_addr() {
                        continue;
                    }
                    return Err(e);
                }
            }
            let max_late = self.endpoint.max_body.saturating_add(MAX_HEAD);
            let (Some(wire), Some(ex)) = (self.wire.as_mut(), self.exchange.as_mut()) else {
                return Err(Error::transport(K::Protocol, "no request in flight"));
            };
            let handshaking = wire.handshaking();
            if !handshaking && !wire.ready {
                // The handshakes are done: the silence bound starts now.
                wire.ready = true;
                self.last_io = now;
            }
            if !handshaking {
                if let Some(span) = ex.span.take() {
                    ex.total = now.checked_add(span);
                }
            }
            // The nearest of: the connect timeout (while handshaking) or the
            // silence bound, and the total bound. `None`: a bound too far
            // to count (a duration near `Duration::MAX`).
            let own = if handshaking {
                wire.opened.checked_add(self.endpoint.connect_timeout)
            } else {
                self.last_io.checked_add(self.bound)
            };
            let limit = clock::earliest(own, ex.total);
            let late = ex.total.is_some_and(|t| now >= t);
            if limit.is_some_and(|l| now >= l) {
                if looked || ex.late > max_late {
                    let why = if late {
                        "the response did not end within its total bound"
                    } else if handshaking {
                        // A connect that timed out: try the next address, or
                        // look the name up again next time (it may have moved).
                        if !wire.connected && self.next_addr() {
                            continue;
                        }
                        self.stale_addr = true;
                        "connect timed out"
                    } else {
                        ex.timed_out()
                    };
                    return Err(Error::transport(K::Timeout, why));
                }
                looked = true;
                if late {
                    ex.late = ex.late.saturating_add(READ_CHUNK);
                }
            }
            let until = clock::earliest(deadline, limit);
            // The kernel counts a socket timeout in scheduler ticks and
            // rounds it up (a 5 ms timeout blocked ~15 ms with HZ=250, up to
            // two ticks more), so the socket waits until `TICK_GUARD`
            // before `until`, and the rest is waited out non-blocking in
            // sleeps of `FINE_STEP` (precise timers), so that a wait ends
            // within about a step of its deadline. A wait under a
            // millisecond rounds to "don't block": a zero socket timeout
            // would mean "block forever". A look past a bound does not wait.
            let (wait, mut fine) = match looked {
                true => (Some(Duration::ZERO), false),
                false => split_wait(until, now),
            };
            let nap = || {
                if let Some(u) = until {
                    clock::sleep(FINE_STEP.min(u.saturating_duration_since(clock::now())));
                }
            };
            wire.set_wait(wait).map_err(|e| io_error(e, false))?;

            let flushed = match wire.flush(&mut ex.out) {
                Ok(f) => f,
                Err(e) => {
                    let connect = !wire.connected;
                    if connect {
                        if self.next_addr() {
                            continue;
                        }
                    } else if !dead(&e) && self.resend()? {
                        continue;
                    }
                    return Err(io_error(e, connect));
                }
            };
            if std::mem::take(&mut wire.moved) {
                // Bytes went out: the silence bound restarts.
                self.last_io = clock::now();
                looked = false;
            }
            if handshaking && !wire.handshaking() {
                // Connected: compute the wait again with the silence bound.
                continue;
            }
            if !flushed {
                // Not all sent yet: at most one write per turn, each bounded
                // by what is left of the wait, so a slow socket cannot hold
                // the call past its deadline; the rest goes out next turn
                // (or in the next call).
                if looked {
                    continue; // the bound applies
                }
                if deadline.is_some_and(|d| clock::now() >= d) {
                    return Ok(None);
                }
                if fine {
                    nap();
                }
                continue;
            }
            // The flush may have blocked (on a TCP connect completing, say,
            // while TLS still has its handshake ahead): the read below may
            // wait only what is left, not the whole wait again.
            let later = clock::now();
            if !looked && later.saturating_duration_since(now) >= Duration::from_millis(1) {
                let (wait, f) = split_wait(until, later);
                fine = f;
                wire.set_wait(wait).map_err(|e| io_error(e, false))?;
            }
            if !ex.sent && !handshaking {
                // The request went out whole: waiting for the response.
                ex.sent = true;
                self.last_io = clock::now();
            }
            let got = wire.fill();
            if std::mem::take(&mut wire.moved) {
                // Bytes came in: the silence bound restarts.
                self.last_io = clock::now();
                looked = false;
            }
            match got {
                Ok(0) => {
                    if let Some(resp) = self.at_end()? {
                        return Ok(Some(resp));
                    }
                }
                Ok(_) => {
                    if let Some(resp) = self.parse()? {
                        return Ok(Some(resp));
                    }
                }
                Err(e) if would_block(&e) => {
                    if looked {
                        continue; // the bound applies
                    }
                    if deadline.is_some_and(|d| clock::now() >= d) {
                        return Ok(None);
                    }
                    if fine {
                        nap();
                    }
                }
                Err(e) => {
                    let connect = !wire.connected;
                    // A reset (rather than a clean close) of a kept
                    // connection before any answer: an idle close too.
                    if !connect && !dead(&e) && self.resend()? {
                        continue;
                    }
                    return Err(io_error(e, connect));
                }
            }
        }
    }

    /// Before a connect: takes the addresses from the resolver when there
    /// are none yet, they expired, or connects to all of them failed.
    /// `Ok(false)`: a lookup is still under way at `deadline`.
    fn resolve(&mut self, deadline: Option<Instant>) -> Result<bool> {
        let resolver = &self.endpoint.resolver;
        if !self.addrs.is_empty() && !self.stale_addr && !resolver.expired(clock::now()) {
            return Ok(true);
        }
        let Some(addrs) = resolver.resolve(&mut self.lookup, self.stale_addr, deadline)? else {
            return Ok(false);
        };
        self.stale_addr = false;
        // The same set keeps this connection's order (the address that
        // worked first).
        if addrs.len() != self.addrs.len() || addrs.iter().any(|a| !self.addrs.contains(a)) {
            self.addrs = addrs;
        }
        Ok(true)
    }

    /// Starts a non-blocking connect to the first address.
    fn open(&mut self, now: Instant) -> Result<()> {
        let addr = *self
            .addrs
            .first()
            .ok_or_else(|| Error::transport(K::NameNotFound, "the name has no address"))?;
        let sock = Sock::connect(addr).map_err(|e| io_error(e, true))?;
        #[cfg(feature = "tls")]
        let tls = match &self.endpoint.tls {
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(self.endpoint.host.clone())
                    .map_err(|_| Error::input("origin", "the host is not a valid tls name"))?;
                Some(
                    rustls::ClientConnection::new(config.clone(), name)
                        .map_err(|e| Error::transport(K::Tls, e.to_string()))?,
                )
            }
            None => None,
        };
        self.connects += 1;
        if self.connects > 1 {
            log::debug!(target: "pubnub_presence::conn", "connecting again (connection {})", self.connects);
        }
        self.wire = Some(Wire {
            ready: false,
            input: Vec::new(),
            sock,
            #[cfg(feature = "tls")]
            tls,
            connected: false,
            opened: now,
            reused: false,
            // Non-blocking as created.
            timeout_set: Some(Some(Duration::ZERO)),
            moved: false,
        });
        self.last_io = now;
        Ok(())
    }

    /// After a failed connect: drops the connection and moves on to the
    /// next address of the lookup (`true`: connect again), unless this
    /// request tried them all (then the resolver is asked again before the
    /// next connect).
    fn next_addr(&mut self) -> bool {
        self.wire = None;
        let addrs = self.addrs.len();
        let more = self.exchange.as_mut().is_some_and(|ex| {
            ex.addr_tries += 1;
            ex.addr_tries < addrs
        });
        if more {
            self.addrs.rotate_left(1);
            log::debug!(target: "pubnub_presence::conn", "connect failed; trying the next address");
        } else {
            self.stale_addr = true;
            self.endpoint.resolver.connect_failed();
        }
        more
    }

    /// The stream ended: a complete close-delimited body, a reused
    /// connection closed while idle (sent again once on a fresh one), or
    /// an error.
    fn at_end(&mut self) -> Result<Option<Response>> {
        let Some(ex) = self.exchange.as_mut() else {
            return Err(Error::transport(K::Protocol, "no request in flight"));
        };
        if let Some(Recv::Body(call)) = &ex.recv {
            if call.body_mode() == ureq_proto::BodyMode::CloseDelimited {
                self.wire = None;
                return Ok(self.finish());
            }
        }
        if self.resend()? {
            return Ok(None);
        }
        Err(Error::transport(
            K::Io,
            "the server closed the connection before the response ended",
        ))
    }

    /// When the kept connection was reused and failed before any byte of
    /// the answer (closed or reset by the server while idle), sends the
    /// request again on a new connection, once: `Ok(true)`.
    fn resend(&mut self) -> Result<bool> {
        let reused = self.wire.as_ref().is_some_and(|w| w.reused);
        let Some(ex) = self.exchange.as_mut() else {
            return Ok(false);
        };
        if ex.answered || !reused || ex.resent {
            return Ok(false);
        }
        log::debug!(target: "pubnub_presence::conn", "kept connection was closed by the server; sending on a new one");
        ex.resent = true;
        ex.sent = false;
        let (out, call) = begin(&ex.uri)?;
        ex.out = out;
        ex.recv = Some(Recv::Head(call));
        self.wire = None;
        Ok(true)
    }

    /// Feeds the received bytes to the HTTP parser.
    // NOTE(size): out of line, 0.5 KB less than inlined into `drive`.
    #[inline(never)]
    fn parse(&mut self) -> Result<Option<Response>> {
        let max_body = self.endpoint.max_body;
        let (Some(ex), Some(wire)) = (self.exchange.as_mut(), self.wire.as_mut()) else {
            return Err(Error::transport(K::Protocol, "no request in flight"));
        };
        let input = &mut wire.input;
        ex.answered = true;
        loop {
            match ex.recv.take() {
                Some(Recv::Head(mut call)) => {
                    let (used, resp) = call.try_response(input, false).map_err(proto)?;
                    input.drain(..used.min(input.len()));
                    // Interim heads count toward the cap, and the part of a
                    // head not complete yet too.
                    ex.head_bytes = ex.head_bytes.saturating_add(used);
                    let pending = if resp.is_none() { input.len() } else { 0 };
                    if ex.head_bytes.saturating_add(pending) > MAX_HEAD {
                        return Err(Error::transport(
                            K::Protocol,
                            "the response head is larger than 8 KiB",
                        ));
                    }
                    let Some(resp) = resp else {
                        ex.recv = Some(Recv::Head(call));
                        if used > 0 {
                            // A 1xx was consumed.
                            ex.interims = ex.interims.saturating_add(1);
                            if ex.interims > MAX_INTERIM {
                                return Err(Error::transport(
                                    K::Protocol,
                                    "more than 4 interim (1xx) responses before the answer",
                                ));
                            }
                            continue;
                        }
                        return Ok(None);
                    };
                    ex.status = resp.status().as_u16();
                    let head = crate::transport::read_head(resp.headers(), max_body)?;
                    ex.retry_after = head.retry_after;
                    ex.body = crate::transport::body_buffer(head.declared, max_body);
                    // The body phase starts.
                    self.last_io = clock::now();
                    match call.proceed() {
                        Some(RecvResponseResult::RecvBody(b)) => ex.recv = Some(Recv::Body(b)),
                        Some(RecvResponseResult::Redirect(c)) => {
                            return Ok(self.cleanup(c.proceed().must_close_connection()))
                        }
                        Some(RecvResponseResult::Cleanup(c)) => {
                            return Ok(self.cleanup(c.must_close_connection()))
                        }
                        None => return Err(Error::transport(K::Protocol, "bad response head")),
                    }
                }
                Some(Recv::Body(mut call)) => {
                    let mut chunk = [0u8; 1024];
                    loop {
                        let (used, n) = call.read(input, &mut chunk).map_err(proto)?;
                        input.drain(..used.min(input.len()));
                        if ex.body.len().saturating_add(n) > max_body {
                            return Err(crate::transport::too_large(max_body));
                        }
                        ex.body
                            .extend_from_slice(chunk.get(..n).unwrap_or_default());
                        if used == 0 && n == 0 {
                            break;
                        }
                    }
                    // What the parser left is a chunk-size or trailer line
                    // not ended yet: a longer one is not HTTP.
                    if input.len() > MAX_HEAD {
                        return Err(Error::transport(
                            K::Protocol,
                            "a chunk-size or trailer line longer than 8 KiB",
                        ));
                    }
                    let close_delimited = call.body_mode() == ureq_proto::BodyMode::CloseDelimited;
                    if close_delimited || !call.can_proceed() {
                        ex.recv = Some(Recv::Body(call));
                        return Ok(None);
                    }
                    let close = match call.proceed() {
                        Some(RecvBodyResult::Cleanup(c)) => c.must_close_connection(),
                        Some(RecvBodyResult::Redirect(r)) => r.proceed().must_close_connection(),
                        None => true,
                    };
                    return Ok(self.cleanup(close));
                }
                None => return Err(Error::transport(K::Protocol, "no request in flight")),
            }
        }
    }

    /// The response is complete: keep the connection unless told to close
    /// or anything is left unread (see [`Wire::dirty`]).
    fn cleanup(&mut self, close: bool) -> Option<Response> {
        let leftover = !close && self.wire.as_mut().is_some_and(Wire::dirty);
        if close || leftover {
            self.wire = None;
        } else if let Some(w) = self.wire.as_mut() {
            w.reused = true;
        }
        self.finish()
    }

    fn finish(&mut self) -> Option<Response> {
        self.exchange.take().map(|ex| Response {
            status: ex.status,
            body: ex.body,
            retry_after: ex.retry_after,
        })
    }
}

/// The request head for a GET of `uri`, and the call that parses its
/// response.
fn begin(uri: &http::Uri) -> Result<(Vec<u8>, Call<RecvResponse>)> {
    // A constant value: no copy per request.
    const AGENT: http::HeaderValue = http::HeaderValue::from_static(PNSDK);
    // A GET (the default method); built in place, without the builder's
    // fallible steps (the URL is parsed and the header constant).
    let mut req = http::Request::new(());
    *req.uri_mut() = uri.clone();
    req.headers_mut().append(http::header::USER_AGENT, AGENT);
    let mut call = Call::new(req).map_err(proto)?.proceed();
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len());
    let mut out = vec![0u8; target.saturating_add(256)];
    let mut used = 0;
    while !call.can_proceed() {
        let n = call
            .write(out.get_mut(used..).unwrap_or_default())
            .map_err(proto)?;
        if n == 0 {
            let grown = out.len().saturating_mul(2);
            out.resize(grown, 0);
        }
        used += n;
    }
    out.truncate(used);
    match call.proceed().map_err(proto)? {
        Some(SendRequestResult::RecvResponse(c)) => Ok((out, c)),
        _ => Err(Error::transport(K::Protocol, "unexpected request state")),
    }
}

fn proto(e: ureq_proto::Error) -> Error {
    Error::transport(K::Protocol, e.to_string())
}

/// Maps a socket or TLS error; `connecting`: before TCP was established.
fn io_error(e: io::Error, connecting: bool) -> Error {
    #[cfg(feature = "tls")]
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return Error::transport(K::Tls, tls.to_string());
    }
    if connecting {
        return Error::transport(K::Connect, e.to_string());
    }
    if dead(&e) {
        return Error::transport(
            K::Timeout,
            format!("the connection died (no acknowledgment): {e}"),
        );
    }
    Error::from(e)
}

/// The kernel gave up on an established connection (keepalive probes or
/// sent data unacknowledged): the path is dead, not an idle connection the
/// server closed, so the request is not sent again on a new one at once
/// (the error is reported; the caller's backoff decides).
fn dead(e: &io::Error) -> bool {
    cfg!(unix) && e.kind() == io::ErrorKind::TimedOut
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    /// A port nobody listens on.
    fn dead_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    #[test]
    fn a_failed_connect_goes_on_to_the_next_address() {
        let live = TcpListener::bind("127.0.0.1:0").unwrap();
        let live_addr = live.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in live.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
            }
        });
        let origin = format!("http://{live_addr}");
        let pubnub = crate::PubNub::builder()
            .subscribe_key("k")
            .user_id("u")
            .origin(&origin)
            .build()
            .unwrap();
        let dead = dead_port();
        // Refused on IPv6 loopback, or failing at once where there is none;
        // refused on IPv4; then the server.
        let tried = [
            format!("[::1]:{dead}").parse().unwrap(),
            format!("127.0.0.1:{dead}").parse().unwrap(),
            live_addr,
        ];
        let mut conn = Conn::new(pubnub.endpoint());
        conn.addrs = tried.to_vec();
        conn.start(format!("{origin}/time/0"), Duration::from_secs(5))
            .unwrap();
        let resp = conn.drive(None).unwrap().unwrap();
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"{}"[..]));
        // The address that worked is tried first from now on.
        assert_eq!(conn.addrs.first(), Some(&live_addr));

        // Every address refused: the request fails with the connect error,
        // after trying each once.
        let mut conn = Conn::new(pubnub.endpoint());
        conn.addrs = tried[..2].to_vec();
        conn.start(format!("{origin}/time/0"), Duration::from_secs(5))
            .unwrap();
        match conn.drive(None).map_err(Error::into_kind) {
            Err(crate::ErrorKind::Transport { kind, .. }) => assert_eq!(kind, K::Connect),
            other => panic!("{other:?}"),
        }
        assert!(conn.stale_addr);
    }

    fn client(origin: &str, request_timeout: Duration) -> crate::PubNub {
        crate::PubNub::builder()
            .subscribe_key("k")
            .user_id("u")
            .origin(origin)
            .request_timeout(request_timeout)
            .build()
            .unwrap()
    }

    /// Reads one request head from `stream`; its length in bytes.
    fn read_head(stream: &mut std::net::TcpStream) -> usize {
        let mut reader = BufReader::new(stream);
        let (mut line, mut n) = (String::new(), 0);
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return n,
                Ok(k) => n += k,
            }
            if line == "\r\n" {
                return n;
            }
        }
    }

    /// Every kept socket probes a quiet connection (keepalive) and, on
    /// Linux, gives up on unacknowledged data (TCP_USER_TIMEOUT): read
    /// back from the connected socket.
    #[test]
    fn kept_sockets_have_short_keepalive() {
        use crate::sock::{KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES, USER_TIMEOUT};
        let live = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", live.local_addr().unwrap());
        let pubnub = client(&origin, Duration::from_secs(5));
        let mut conn = Conn::new(pubnub.endpoint());
        conn.start(format!("{origin}/time/0"), Duration::from_secs(5))
            .unwrap();
        conn.addrs = vec![live.local_addr().unwrap()];
        assert!(conn.resolve(None).unwrap());
        conn.open(clock::now()).unwrap();
        let _accepted = live.accept().unwrap();
        let sock = socket2::SockRef::from(conn.wire.as_ref().unwrap().sock.tcp().unwrap());
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), KEEPALIVE_PROBES);
        #[cfg(target_os = "linux")]
        assert_eq!(sock.tcp_user_timeout().unwrap(), Some(USER_TIMEOUT));
    }

    /// A request larger than the socket takes at once, to a server
    /// draining it slowly: a poll returns at its deadline with the request
    /// partly written (not blocking on until the whole request is out),
    /// and the next polls finish it.
    #[test]
    fn a_partly_written_request_resumes_in_the_next_poll() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        // A small receive window on the server's side...
        let listener = small_window_listener();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let (got, fast) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (got2, fast2) = (got.clone(), fast.clone());
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 512];
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                if !fast2.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
                got2.store(head.len(), Ordering::SeqCst);
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
            std::thread::sleep(Duration::from_secs(1));
        });
        let pubnub = client(&origin, Duration::from_secs(5));
        let mut conn = Conn::new(pubnub.endpoint());
        let url = format!("{origin}/time/0?pad={}", "x".repeat(60 * 1024));
        conn.start(url, Duration::from_secs(5)).unwrap();
        let request_len = conn.exchange.as_ref().unwrap().out.len();
        assert!(conn.resolve(None).unwrap());
        conn.open(clock::now()).unwrap();
        // ...and a small send buffer on the client's (loopback grows it to
        // megabytes otherwise).
        socket2::SockRef::from(conn.wire.as_ref().unwrap().sock.tcp().unwrap())
            .set_send_buffer_size(4096)
            .unwrap();
        let poll =
            |conn: &mut Conn| conn.drive(clock::now().checked_add(Duration::from_millis(100)));
        assert!(poll(&mut conn).unwrap().is_none());
        // The poll returned with the request not all written (the server
        // reads half a kilobyte every 5 ms: 0.6 s for the whole; the write
        // loop used to go on while each write made progress).
        let unsent = conn.exchange.as_ref().unwrap().out.len();
        assert!(
            unsent > 0,
            "the poll waited until the whole request was written"
        );
        assert!(got.load(Ordering::SeqCst) < request_len);
        fast.store(true, Ordering::SeqCst);
        let mut polls = 0;
        let resp = loop {
            polls += 1;
            assert!(polls < 200, "the request never completed");
            if let Some(resp) = poll(&mut conn).unwrap() {
                break resp;
            }
        };
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"{}"[..]));
        assert_eq!(got.load(Ordering::SeqCst), request_len);
    }

    /// A listener whose accepted sockets have a small receive buffer.
    fn small_window_listener() -> TcpListener {
        let listener = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        listener.set_recv_buffer_size(4096).unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        listener.bind(&any.into()).unwrap();
        listener.listen(1).unwrap();
        listener.into()
    }

    /// The same over TLS: a poll returns at its deadline with the request's
    /// records partly written (rustls still holding some), and the next
    /// polls finish it.
    #[cfg(feature = "tls")]
    #[test]
    // rustls 0.23.48 deprecates ring's provider (no post-quantum key
    // exchange); a test server needs none.
    #[allow(deprecated)]
    fn a_partly_written_tls_request_resumes_in_the_next_poll() {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        let listener = small_window_listener();
        let port = listener.local_addr().unwrap().port();
        let fast = Arc::new(AtomicBool::new(false));
        let fast2 = fast.clone();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut tls = rustls::ServerConnection::new(Arc::new(config)).unwrap();
            while tls.is_handshaking() {
                if tls.complete_io(&mut s).is_err() {
                    return;
                }
            }
            // Then the records, read off the socket as they come (half a
            // kilobyte every 5 ms until `fast`), decrypted once `fast`.
            let (mut buf, mut raw, mut head) = ([0u8; 512], Vec::new(), Vec::new());
            while !head.ends_with(b"\r\n\r\n") {
                let fast = fast2.load(Ordering::SeqCst);
                if !fast {
                    std::thread::sleep(Duration::from_millis(5));
                }
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
                if fast {
                    let mut rest = &raw[..];
                    while !rest.is_empty() {
                        tls.read_tls(&mut rest).unwrap();
                        tls.process_new_packets().unwrap();
                        let _ = tls.reader().read_to_end(&mut head);
                    }
                    raw.clear();
                }
            }
            let _ = tls
                .writer()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
            while tls.wants_write() {
                if tls.write_tls(&mut s).is_err() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        });
        let origin = format!("https://127.0.0.1:{port}");
        let pubnub = crate::PubNub::builder()
            .subscribe_key("k")
            .user_id("u")
            .origin(&origin)
            .root_certificate_pem(ca.pem())
            .build()
            .unwrap();
        let mut conn = Conn::new(pubnub.endpoint());
        let url = format!("{origin}/time/0?pad={}", "x".repeat(60 * 1024));
        conn.start(url, Duration::from_secs(5)).unwrap();
        assert!(conn.resolve(None).unwrap());
        conn.open(clock::now()).unwrap();
        socket2::SockRef::from(conn.wire.as_ref().unwrap().sock.tcp().unwrap())
            .set_send_buffer_size(4096)
            .unwrap();
        let poll =
            |conn: &mut Conn| conn.drive(clock::now().checked_add(Duration::from_millis(100)));
        // Polls through the handshake; the two after it each return with
        // records still to write (the server reads half a kilobyte every
        // 5 ms: 0.6 s for the whole; the write loop used to go on while
        // each write made progress).
        let (mut polls, mut after) = (0, 0);
        while after < 2 {
            polls += 1;
            assert!(polls < 100, "the handshake never completed");
            assert!(poll(&mut conn).unwrap().is_none());
            let tls = conn.wire.as_ref().unwrap().tls.as_ref().unwrap();
            if !tls.is_handshaking() {
                after += 1;
                assert!(
                    tls.wants_write(),
                    "the poll waited until the whole request was written"
                );
            }
        }
        fast.store(true, Ordering::SeqCst);
        let resp = loop {
            polls += 1;
            assert!(polls < 300, "the request never completed");
            if let Some(resp) = poll(&mut conn).unwrap() {
                break resp;
            }
        };
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"{}"[..]));
    }

    /// A server that answers a request when told to; each connection
    /// answers one request.
    fn answering_server(
        go: std::sync::mpsc::Receiver<()>,
    ) -> (String, std::sync::mpsc::Receiver<&'static str>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            read_head(&mut s);
            let _ = tx.send("request");
            if go.recv().is_ok() {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
                let _ = tx.send("answered");
            }
            std::thread::sleep(Duration::from_secs(2));
        });
        (origin, rx)
    }

    /// Suspend and resume: the answer arrived while the process was not
    /// running, and the clock passed the silence and total bounds. The
    /// answer waiting in the socket is taken, not failed as "no data in
    /// time"; with nothing waiting, the bound applies.
    #[test]
    fn an_answer_that_came_during_a_clock_jump_is_taken() {
        let bound = Duration::from_millis(50);
        for answered in [true, false] {
            let (go, go_rx) = std::sync::mpsc::channel();
            let (origin, events) = answering_server(go_rx);
            // Silence bound 50 ms, total bound 100 ms.
            let pubnub = client(&origin, bound);
            let mut conn = Conn::new(pubnub.endpoint());
            conn.start(format!("{origin}/time/0"), bound).unwrap();
            let soon = || clock::now().checked_add(Duration::from_millis(10));
            assert!(conn.drive(soon()).unwrap().is_none());
            assert_eq!(events.recv_timeout(Duration::from_secs(5)), Ok("request"));
            if answered {
                go.send(()).unwrap();
                assert_eq!(events.recv_timeout(Duration::from_secs(5)), Ok("answered"));
            }
            // "Stopped" past both bounds.
            std::thread::sleep(bound * 4);
            let got = conn.drive(soon());
            if answered {
                let resp = got.unwrap().unwrap();
                assert_eq!((resp.status, resp.body.as_slice()), (200, &b"{}"[..]));
            } else {
                match got.map_err(Error::into_kind) {
                    Err(crate::ErrorKind::Transport { kind, .. }) => assert_eq!(kind, K::Timeout),
                    other => panic!("{other:?}"),
                }
            }
        }
    }
}
