//! The simulator seam (feature `sim`): the contract through which a
//! simulation installed on the current thread stands in for the clock,
//! the name lookups and the sockets. `clock` and `sock` call through it;
//! the simulator (`sim`) implements it and installs itself here. This
//! file imports nothing of ours, so the library never imports the
//! simulator: the simulator sits on top and the import graph has no
//! circle.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A simulated world: virtual time, seeded randomness, a network.
pub(crate) trait World {
    /// The virtual instant.
    fn now(&self) -> Instant;
    /// Lets `d` of virtual time pass.
    fn sleep(&self, d: Duration);
    /// A seeded random number.
    fn random(&self) -> u64;
    /// Looks a name up the way the system resolver would.
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
    /// The resolver configuration (`resolv.conf` text).
    fn resolv_conf(&self) -> String;
    /// Opens a TCP-like connection.
    fn connect(&self, addr: SocketAddr) -> io::Result<Box<dyn Stream + Send>>;
    /// Opens a UDP-like socket.
    fn udp(&self) -> Box<dyn Datagram + Send>;
}

/// A simulated stream socket.
pub(crate) trait Stream {
    /// How long a read or write may wait (`None`: without end; zero: not
    /// at all).
    fn set_wait(&self, wait: Option<Duration>);
    /// TCP keepalive is on.
    fn set_keepalive(&self);
    /// Bytes are waiting, or the peer closed.
    fn stale(&self) -> bool;
    /// Reads like a socket.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes like a socket.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
}

/// A simulated datagram socket.
pub(crate) trait Datagram {
    /// Sends one datagram.
    fn send_to(&self, packet: &[u8], to: SocketAddr) -> io::Result<usize>;
    /// Receives one datagram, waiting at most `wait`.
    fn recv_from(&self, buf: &mut [u8], wait: Duration) -> io::Result<(usize, SocketAddr)>;
}

/// The world installed on a thread.
pub(crate) type Installed = Arc<dyn World + Send + Sync>;

thread_local! {
    static CURRENT: RefCell<Option<Installed>> = const { RefCell::new(None) };
}

/// The simulation installed on this thread, if any.
pub(crate) fn current() -> Option<Installed> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Installs `world` on this thread (or none); returns the one before.
pub(crate) fn install(world: Option<Installed>) -> Option<Installed> {
    CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), world))
}
