//! A loopback TCP proxy that injects network faults between a client and
//! a server ([`FaultProxy`]), for soak and chaos tests of code that must
//! ride out a bad network. std and `socket2` only (already a dependency).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How often idle pumps and the accept loop look at the fault and the
/// stop flag.
const TICK: Duration = Duration::from_millis(20);
/// Connections waiting to be accepted (held there during a stall).
const BACKLOG: i32 = 128;
/// A connect to the upstream server that takes longer fails the client's
/// connection (loopback: a healthy server answers at once).
const UPSTREAM_CONNECT: Duration = Duration::from_secs(2);
/// A write that cannot go on for this long ends the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A fault the proxy applies until it is changed
/// ([`FaultProxy::set`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// No fault: bytes flow both ways.
    None,
    /// The server is down: open connections are reset when the fault
    /// starts and new ones are refused (the listening socket stops
    /// listening, so a connect fails at once with "connection refused").
    Refuse,
    /// Nothing moves: no byte is forwarded either way on open connections
    /// and new connections wait unaccepted in the backlog. When the fault
    /// ends, everything held flows on (a slow or congested path, not a
    /// broken one).
    Stall,
    /// Every response is cut: from each chunk the server sends, the
    /// response head and part of the body (never all of it) are
    /// forwarded, then the client's connection is reset. Requests still
    /// reach the server (a heartbeat counts, its answer is lost).
    ResetMidBody,
    /// The network is gone: nothing is forwarded on open connections,
    /// new connections are accepted (the loopback handshake cannot be
    /// dropped) but never reach the server and never get a byte back.
    /// When the fault ends, every connection that lived through it is
    /// reset, as by a router that lost its state.
    Cut,
}

impl Fault {
    fn code(self) -> u8 {
        match self {
            Fault::None => 0,
            Fault::Refuse => 1,
            Fault::Stall => 2,
            Fault::ResetMidBody => 3,
            Fault::Cut => 4,
        }
    }

    fn from_code(code: u8) -> Fault {
        match code {
            1 => Fault::Refuse,
            2 => Fault::Stall,
            3 => Fault::ResetMidBody,
            4 => Fault::Cut,
            _ => Fault::None,
        }
    }

    /// Whether no byte may move.
    fn holds(self) -> bool {
        matches!(self, Fault::Stall | Fault::Cut)
    }
}

/// One proxied connection: the client's socket and the server's.
struct Link {
    client: TcpStream,
    /// `None` for a connection accepted during a cut (it never reaches
    /// the server).
    upstream: Option<TcpStream>,
    /// Both pumps stop; the sockets close when the last pump lets go.
    dead: AtomicBool,
}

impl Link {
    /// Ends the connection; with `reset`, the client gets a TCP reset
    /// (linger 0) instead of an orderly close.
    fn kill(&self, reset: bool) {
        if reset {
            let _ = socket2::SockRef::from(&self.client).set_linger(Some(Duration::ZERO));
        }
        self.dead.store(true, Ordering::SeqCst);
        if let Some(u) = &self.upstream {
            let _ = u.shutdown(Shutdown::Both);
        }
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }
}

struct Shared {
    upstream: SocketAddr,
    listener: socket2::Socket,
    fault: AtomicU8,
    /// Serializes fault changes (the listener and the resets go with them).
    changing: Mutex<()>,
    links: Mutex<Vec<Weak<Link>>>,
    /// Links held by the accept loop during a cut (no pump runs for them).
    held: Mutex<Vec<Arc<Link>>>,
    stop: AtomicBool,
    accepted: AtomicU64,
    resets: AtomicU64,
}

impl Shared {
    fn fault(&self) -> Fault {
        Fault::from_code(self.fault.load(Ordering::SeqCst))
    }

    fn live_links(&self) -> Vec<Arc<Link>> {
        match self.links.lock() {
            Ok(mut links) => {
                links.retain(|l| l.strong_count() > 0);
                links.iter().filter_map(Weak::upgrade).collect()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Resets every open connection (and those held during a cut), and
    /// waits (a little) until their pumps let go: the reset goes out when
    /// the socket is closed.
    fn reset_all(&self) {
        let mut all = self.live_links();
        if let Ok(mut held) = self.held.lock() {
            all.append(&mut held);
        }
        for link in all.iter().filter(|l| !l.is_dead()) {
            link.kill(true);
            self.resets.fetch_add(1, Ordering::SeqCst);
        }
        let killed: Vec<Weak<Link>> = all.iter().map(Arc::downgrade).collect();
        drop(all);
        let until = std::time::Instant::now() + TICK * 10;
        while killed.iter().any(|l| l.strong_count() > 0) && std::time::Instant::now() < until {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A TCP proxy on `127.0.0.1` in front of a server, injecting a
/// [`Fault`] chosen at run time. Stopped when dropped.
///
/// Put it between a client under test and the local presence server
/// ([`super::Server`]), point the client's origin at
/// [`FaultProxy::origin`], and change the fault on a schedule; other
/// clients can talk to the server directly, unaffected.
///
/// ```
/// use pubnub_presence::emulator::{Fault, FaultProxy, Server};
/// use pubnub_presence::PubNub;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Server::start("127.0.0.1:0")?;
/// let proxy = FaultProxy::start(server.local_addr())?;
/// let device = PubNub::builder()
///     .subscribe_key("demo")
///     .user_id("device-1")
///     .origin(proxy.origin())
///     .build()?;
/// proxy.set(Fault::Refuse);
/// assert!(device.where_now().execute().is_err());
/// proxy.set(Fault::None);
/// assert!(device.where_now().execute().is_ok());
/// # Ok(()) }
/// ```
///
/// Two threads per open connection (one per direction) and one accepting;
/// every thread ends within about 20 ms of its connection closing or the
/// proxy stopping.
pub struct FaultProxy {
    addr: SocketAddr,
    origin: String,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("origin", &self.origin)
            .field("fault", &self.shared.fault())
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Starts a proxy on a free port of `127.0.0.1` forwarding to
    /// `upstream`, with no fault.
    pub fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        // Bound to an explicit port (found through port 0), so that the
        // port stays reserved while the socket stops listening during
        // `Fault::Refuse` (Linux keeps an explicit bind across the
        // shutdown of a listener; an automatic one is released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        listener.set_reuse_address(true)?;
        listener.bind(&addr.into())?;
        listener.listen(BACKLOG)?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            upstream,
            listener,
            fault: AtomicU8::new(Fault::None.code()),
            changing: Mutex::new(()),
            links: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            resets: AtomicU64::new(0),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("fault-proxy-accept".into())
                .spawn(move || accept_loop(&shared))?
        };
        Ok(FaultProxy {
            addr,
            origin: format!("http://{addr}"),
            shared,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:PORT`, for [`crate::PubNubBuilder::origin`].
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The proxy's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The fault now in force.
    pub fn fault(&self) -> Fault {
        self.shared.fault()
    }

    /// Changes the fault; in force when this returns (a refusal, the
    /// resets of [`Fault::Refuse`] and of the end of a [`Fault::Cut`]
    /// included). An error only if the listening socket cannot be
    /// stopped or restarted.
    pub fn set(&self, fault: Fault) -> io::Result<()> {
        let shared = &self.shared;
        let _changing = shared.changing.lock().unwrap_or_else(|p| p.into_inner());
        let old = shared.fault();
        if old == fault {
            return Ok(());
        }
        if old == Fault::Refuse {
            shared.listener.listen(BACKLOG)?;
        }
        if fault == Fault::Refuse {
            // Stops listening: connects are refused and what waits in
            // the backlog is reset.
            shared.listener.shutdown(Shutdown::Read)?;
        }
        shared.fault.store(fault.code(), Ordering::SeqCst);
        if old == Fault::Cut || fault == Fault::Refuse {
            shared.reset_all();
        }
        Ok(())
    }

    /// Connections accepted so far (each one a connection the client
    /// opened, whatever became of it).
    pub fn connections_accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections reset by a fault so far (by [`Fault::Refuse`], in the
    /// middle of a response by [`Fault::ResetMidBody`], or at the end of a
    /// [`Fault::Cut`]).
    pub fn connections_reset(&self) -> u64 {
        self.shared.resets.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        let held = self.shared.held.lock().map_or(0, |h| h.len());
        self.shared.live_links().len() + held
    }

    /// Stops accepting and closes every connection.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for link in self.shared.live_links() {
            link.kill(false);
        }
        if let Ok(mut held) = self.shared.held.lock() {
            held.clear();
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let fault = shared.fault();
        if matches!(fault, Fault::Stall | Fault::Refuse) {
            // A stall leaves new connections in the backlog; a refusal
            // has none to accept.
            thread::sleep(TICK);
            continue;
        }
        let client = match shared.listener.accept() {
            Ok((s, _)) => TcpStream::from(s),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(_) => {
                thread::sleep(TICK);
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if client.set_nonblocking(false).is_err() {
            continue;
        }
        let _ = client.set_nodelay(true);
        {
            // Under the lock of fault changes, so that the end of a cut
            // cannot miss a connection held for it.
            let _changing = shared.changing.lock().unwrap_or_else(|p| p.into_inner());
            if shared.fault() == Fault::Cut {
                // The network is gone: the connection never reaches the
                // server; it is reset when the cut ends.
                let link = Arc::new(Link {
                    client,
                    upstream: None,
                    dead: AtomicBool::new(false),
                });
                if let Ok(mut held) = shared.held.lock() {
                    held.push(link);
                }
                continue;
            }
        }
        let upstream = match TcpStream::connect_timeout(&shared.upstream, UPSTREAM_CONNECT) {
            Ok(u) => u,
            Err(_) => {
                let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
                continue;
            }
        };
        let _ = upstream.set_nodelay(true);
        let link = Arc::new(Link {
            client,
            upstream: Some(upstream),
            dead: AtomicBool::new(false),
        });
        {
            // Registered under the lock: a fault that starts now finds it
            // (a cut holds it and resets it at its end).
            let _changing = shared.changing.lock().unwrap_or_else(|p| p.into_inner());
            if shared.fault() == Fault::Refuse {
                // The server went down while this one was being opened.
                link.kill(true);
                shared.resets.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            if let Ok(mut links) = shared.links.lock() {
                links.push(Arc::downgrade(&link));
            }
        }
        for downstream in [false, true] {
            let (pumped, shared) = (Arc::clone(&link), Arc::clone(shared));
            let spawned = thread::Builder::new()
                .name("fault-proxy-pump".into())
                .spawn(move || pump(&pumped, &shared, downstream));
            if spawned.is_err() {
                link.kill(true);
            }
        }
    }
}

/// Moves bytes one way until either side closes, the link is killed or
/// the proxy stops: client to server, or (`downstream`) server to client.
fn pump(link: &Link, shared: &Shared, downstream: bool) {
    let Some(upstream) = &link.upstream else {
        return;
    };
    let (mut src, mut dst) = if downstream {
        (upstream, &link.client)
    } else {
        (&link.client, upstream)
    };
    if src.set_read_timeout(Some(TICK)).is_err()
        || dst.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
    {
        link.kill(true);
        return;
    }
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !wait_while_held(link, shared) {
            return;
        }
        let n = match src.read(&mut buf) {
            Ok(0) => {
                if link.is_dead() {
                    // Killed (the server side was shut to wake this
                    // pump): no orderly close may precede the reset.
                    return;
                }
                if downstream {
                    // The server closed: pass the close on; the client
                    // closes its side next, which ends the other pump.
                    let _ = dst.shutdown(Shutdown::Write);
                } else {
                    // The client closed: nothing more will be asked.
                    link.kill(false);
                }
                return;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                // A reset from one side is passed on as a reset.
                link.kill(true);
                return;
            }
        };
        // A fault may have started while reading: what was read waits.
        if !wait_while_held(link, shared) {
            return;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        let cut = (downstream && shared.fault() == Fault::ResetMidBody).then(|| cut_point(chunk));
        let send = match cut {
            Some(Some(at)) => chunk.get(..at).unwrap_or_default(),
            _ => chunk,
        };
        if dst.write_all(send).and_then(|()| dst.flush()).is_err() {
            link.kill(true);
            return;
        }
        if let Some(Some(_)) = cut {
            shared.resets.fetch_add(1, Ordering::SeqCst);
            link.kill(true);
            return;
        }
    }
}

/// Waits while the fault lets no byte move; `false` when the link died or
/// the proxy stopped meanwhile.
fn wait_while_held(link: &Link, shared: &Shared) -> bool {
    loop {
        if link.is_dead() || shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        if !shared.fault().holds() {
            return true;
        }
        thread::sleep(TICK);
    }
}

/// Where to cut a chunk of a response: `None` when the chunk is exactly a
/// response head (forwarded whole; the cut falls in the body that
/// follows), else how many bytes to forward, fewer than the chunk: the
/// head plus half of the body bytes after it, or half the chunk when no
/// head ends in it.
fn cut_point(chunk: &[u8]) -> Option<usize> {
    let head_end = chunk
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    match head_end {
        Some(end) if end == chunk.len() => None,
        Some(end) => Some(end + (chunk.len() - end) / 2),
        None => Some(chunk.len() / 2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    #[test]
    fn cut_points() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(cut_point(head), None);
        let whole = [head.as_slice(), b"abcd"].concat();
        assert_eq!(cut_point(&whole), Some(head.len() + 2));
        let one = [head.as_slice(), b"a"].concat();
        assert_eq!(cut_point(&one), Some(head.len()));
        assert_eq!(cut_point(b"body"), Some(2));
        assert_eq!(cut_point(b"x"), Some(0));
        assert_eq!(cut_point(b""), Some(0));
    }

    /// An echo server that answers each line with an HTTP-like response.
    fn echo() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { break };
                thread::spawn(move || {
                    let mut out = s.try_clone().unwrap();
                    let mut r = std::io::BufReader::new(s);
                    let mut line = String::new();
                    while r.read_line(&mut line).unwrap_or(0) > 0 {
                        let body = line.trim();
                        let msg = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if out.write_all(msg.as_bytes()).is_err() {
                            return;
                        }
                        line.clear();
                    }
                });
            }
        });
        addr
    }

    fn ask(s: &mut TcpStream, body: &str) -> io::Result<String> {
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        s.write_all(format!("{body}\n").as_bytes())?;
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        let want = format!("\r\n\r\n{body}");
        while !String::from_utf8_lossy(&got).ends_with(&want) {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            got.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&got).into_owned())
    }

    #[test]
    fn every_fault_then_recovery() {
        let proxy = FaultProxy::start(echo()).unwrap();
        let addr = proxy.local_addr();
        let mut s = TcpStream::connect(addr).unwrap();
        assert!(ask(&mut s, "one").is_ok());

        // Refuse: the open connection is reset, a new one refused.
        proxy.set(Fault::Refuse).unwrap();
        assert!(ask(&mut s, "two").is_err());
        let e = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        proxy.set(Fault::None).unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        assert!(ask(&mut s, "three").is_ok());

        // Stall: nothing comes back until it ends, then the answer does.
        proxy.set(Fault::Stall).unwrap();
        s.write_all(b"four\n").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        assert!(s.read(&mut buf).is_err(), "nothing while stalled");
        proxy.set(Fault::None).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).ends_with("four") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }

        // Reset mid-body: the head and part of the body, then a reset.
        proxy.set(Fault::ResetMidBody).unwrap();
        let before = proxy.connections_reset();
        let e = ask(&mut s, "abcdefgh").unwrap_err();
        assert_ne!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert_eq!(proxy.connections_reset(), before + 1);
        proxy.set(Fault::None).unwrap();

        // Cut: silence, connections accepted but dead, all reset at the end.
        let mut s = TcpStream::connect(addr).unwrap();
        assert!(ask(&mut s, "five").is_ok());
        proxy.set(Fault::Cut).unwrap();
        let mut during = TcpStream::connect(addr).unwrap();
        during
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        during.write_all(b"six\n").unwrap();
        assert!(during.read(&mut buf).is_err(), "nothing during a cut");
        proxy.set(Fault::None).unwrap();
        during
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        // Reset (or closed) at the end of the cut, not left to time out.
        let r = during.read(&mut buf);
        assert!(
            r.as_ref().is_ok_and(|n| *n == 0)
                || r.as_ref().is_err_and(|e| !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )),
            "reset at the end: {r:?}"
        );
        assert!(ask(&mut s, "seven").is_err(), "the open one too");
        let mut s = TcpStream::connect(addr).unwrap();
        assert!(ask(&mut s, "eight").is_ok());
        assert!(proxy.connections_accepted() >= 5);
        drop(s);
        proxy.stop();
    }
}
