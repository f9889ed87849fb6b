//! The sockets under the kept connections: a TCP stream, or (feature
//! `sim`) a connection of the network simulator installed on the current
//! thread (through `crate::seam`). The connection code reads, writes, waits and
//! looks up names only through here, so a simulation can run it in
//! virtual time.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

/// Quiet time before the first TCP keepalive probe.
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// Time between keepalive probes.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered probes that end the connection (15 + 4 × 5 = 35 s).
pub(crate) const KEEPALIVE_PROBES: u32 = 4;
/// Linux `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged
/// (and, with keepalive, how long probes may go unanswered) before the
/// kernel ends the connection.
pub(crate) const USER_TIMEOUT: Duration = Duration::from_secs(35);
/// A connected (or connecting) stream socket.
pub(crate) enum Sock {
    /// A real TCP socket.
    Tcp(TcpStream),
    /// A simulated one.
    #[cfg(feature = "sim")]
    Sim(Box<dyn crate::seam::Stream + Send>),
}

/// TCP keepalive and, on Linux, `TCP_USER_TIMEOUT` (see the module docs):
/// a dead path is noticed in about 35 s. A failure to set them is logged,
/// not fatal (the connection still works, with the system's defaults).
fn keep_alive(sock: &socket2::Socket) {
    let params = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    #[cfg(any(
        target_os = "android",
        target_os = "freebsd",
        target_os = "ios",
        target_os = "linux",
        target_os = "macos",
        target_os = "netbsd",
    ))]
    let params = params.with_retries(KEEPALIVE_PROBES);
    let set = sock.set_tcp_keepalive(&params);
    #[cfg(any(target_os = "android", target_os = "linux"))]
    let set = set.and_then(|()| sock.set_tcp_user_timeout(Some(USER_TIMEOUT)));
    if let Err(e) = set {
        log::debug!(target: "pubnub_presence::conn", "tcp keepalive not set: {e}");
    }
}

/// Sets how long the next read (and, with `write`, write) on `sock` may
/// block: `None` = until done, zero = not at all (non-blocking).
///
/// NOTE(size): through socket2, whose timeout setter is one function for
/// both directions and both socket kinds (std's `set_read_timeout`,
/// `set_write_timeout` and `set_nonblocking` are a copy per socket type
/// and direction). The same values reach the kernel: a wait under 1 µs is
/// 1 µs, as std rounds it (a zero `timeval` would mean "block forever").
fn set_wait(sock: socket2::SockRef<'_>, wait: Option<Duration>, write: bool) -> io::Result<()> {
    match wait {
        Some(d) if d.is_zero() => sock.set_nonblocking(true),
        _ => {
            let wait = wait.map(|d| d.max(Duration::from_micros(1)));
            sock.set_nonblocking(false)?;
            sock.set_read_timeout(wait)?;
            if write {
                sock.set_write_timeout(wait)?;
            }
            Ok(())
        }
    }
}

/// Resolves `host` (blocking, through the system resolver; or the
/// simulation's names).
pub(crate) fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    #[cfg(feature = "sim")]
    if let Some(w) = crate::seam::current() {
        return w.resolve(host, port);
    }
    Ok((host, port).to_socket_addrs()?.collect())
}

/// The resolver configuration to use instead of the system's: the
/// simulation's name server, under a simulation; otherwise `None`.
pub(crate) fn resolv_conf_override() -> Option<String> {
    #[cfg(feature = "sim")]
    if let Some(w) = crate::seam::current() {
        return Some(w.resolv_conf());
    }
    None
}

impl Sock {
    /// Starts a non-blocking connect to `addr`.
    pub(crate) fn connect(addr: SocketAddr) -> io::Result<Sock> {
        #[cfg(feature = "sim")]
        if let Some(w) = crate::seam::current() {
            return w.connect(addr).map(|s| {
                s.set_keepalive();
                Sock::Sim(s)
            });
        }
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        sock.set_nonblocking(true)?;
        match sock.connect(&addr.into()) {
            Ok(()) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::EINPROGRESS)
                    || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let _ = sock.set_tcp_nodelay(true);
        keep_alive(&sock);
        Ok(Sock::Tcp(sock.into()))
    }

    /// Sets how long the next read or write may block: `None` = until
    /// done, zero = not at all.
    pub(crate) fn set_wait(&self, wait: Option<Duration>) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => set_wait(socket2::SockRef::from(s), wait, true),
            #[cfg(feature = "sim")]
            Sock::Sim(s) => {
                s.set_wait(wait);
                Ok(())
            }
        }
    }

    /// Whether an idle connection has something to say: bytes nobody
    /// asked for, a close or a reset (one non-blocking peek).
    pub(crate) fn stale(&self) -> bool {
        match self {
            Sock::Tcp(s) => {
                let mut byte = [std::mem::MaybeUninit::new(0u8)];
                let peek = socket2::SockRef::from(s)
                    .recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT);
                !matches!(peek, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            #[cfg(feature = "sim")]
            Sock::Sim(s) => s.stale(),
        }
    }
}

#[cfg(test)]
impl Sock {
    /// The TCP socket, for tests that set or read its options.
    pub(crate) fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Sock::Tcp(s) => Some(s),
            #[cfg(feature = "sim")]
            Sock::Sim(_) => None,
        }
    }
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            #[cfg(feature = "sim")]
            Sock::Sim(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            #[cfg(feature = "sim")]
            Sock::Sim(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A UDP socket for name lookups: a real one, or the simulation's.
pub(crate) enum Udp {
    /// A real socket.
    Real(UdpSocket),
    /// A simulated one.
    #[cfg(feature = "sim")]
    Sim(Box<dyn crate::seam::Datagram + Send>),
}

impl Udp {
    /// A socket of the family (IPv6 or IPv4) bound to an ephemeral port.
    pub(crate) fn bind(v6: bool) -> io::Result<Udp> {
        #[cfg(feature = "sim")]
        if let Some(w) = crate::seam::current() {
            return Ok(Udp::Sim(w.udp()));
        }
        let any: SocketAddr = if v6 {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        UdpSocket::bind(any).map(Udp::Real)
    }

    /// Sends one datagram.
    pub(crate) fn send_to(&self, packet: &[u8], to: SocketAddr) -> io::Result<usize> {
        match self {
            Udp::Real(s) => s.send_to(packet, to),
            #[cfg(feature = "sim")]
            Udp::Sim(s) => s.send_to(packet, to),
        }
    }

    /// Receives one datagram, waiting at most `wait` (zero: not at all).
    pub(crate) fn recv_from(
        &self,
        buf: &mut [u8],
        wait: Duration,
    ) -> io::Result<(usize, SocketAddr)> {
        match self {
            Udp::Real(s) => {
                set_wait(socket2::SockRef::from(s), Some(wait), false)?;
                s.recv_from(buf)
            }
            #[cfg(feature = "sim")]
            Udp::Sim(s) => s.recv_from(buf, wait),
        }
    }
}
