//! The idle device loop over TLS: a device stays present (heartbeats) and
//! watches events on a quiet channel, polling with a 1 s budget, for
//! `IDLE_SECONDS` (default 60). Through a counting TLS proxy (test CA) in front of
//! the local presence server it reports connections (= TLS handshakes),
//! bytes on the wire, the loop thread's CPU time and its peak heap.
//!
//!     cargo bench --bench idle_loop --features emulator
//!     IDLE_SECONDS=10 cargo bench --bench idle_loop --features emulator
//!
//! Built with `--cfg legacy` it drives the loop the way the README did
//! before the device loop (`PresenceEvents::poll(1 s)` and
//! `Heartbeater::tick`), which compiles against the crate before it too.
#![allow(unexpected_cfgs)]

#[path = "support/alloc.rs"]
mod alloc;

use pubnub_presence::emulator::{Options, Server};
use pubnub_presence::{Heartbeater, PubNub};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static A: alloc::Counting = alloc::Counting;

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// Copies bytes one way, counting them.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                BYTES.fetch_add(n as u64, Ordering::Relaxed);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// A TCP proxy that counts connections and bytes, in front of a TLS
/// terminator in front of the emulator.
fn counting_tls_front(backend: String, config: Arc<rustls::ServerConfig>) -> u16 {
    // TLS terminator: decrypts and forwards to the emulator.
    let tls = TcpListener::bind("127.0.0.1:0").unwrap();
    let tls_port = tls.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in tls.incoming().flatten() {
            let (config, backend) = (config.clone(), backend.clone());
            std::thread::spawn(move || {
                let mut conn = rustls::ServerConnection::new(config).unwrap();
                let mut sock = s;
                let mut up = TcpStream::connect(&backend).unwrap();
                up.set_nonblocking(true).unwrap();
                sock.set_read_timeout(Some(Duration::from_millis(5)))
                    .unwrap();
                let mut buf = [0u8; 16 * 1024];
                loop {
                    // client -> emulator
                    match conn.read_tls(&mut sock) {
                        Ok(0) => return,
                        Ok(_) => {
                            if conn.process_new_packets().is_err() {
                                return;
                            }
                            while let Ok(n) = conn.reader().read(&mut buf) {
                                if n == 0 || up.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                    // emulator -> client
                    match up.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            let _ = conn.writer().write_all(&buf[..n]);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                    while conn.wants_write() {
                        if conn.write_tls(&mut sock).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    // Counting TCP proxy in front of the terminator: the wire as the
    // device sees it.
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = front.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in front.incoming().flatten() {
            CONNECTIONS.fetch_add(1, Ordering::Relaxed);
            let up = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
            let (a, b) = (s.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || pump(s, up));
            std::thread::spawn(move || pump(b, a));
        }
    });
    port
}

/// CPU time of this thread (user + system), from /proc.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ = 100 on Linux
}

fn main() {
    let seconds: u64 = std::env::var("IDLE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let emulator = Server::start_with("127.0.0.1:0", Options::default()).unwrap();
    let backend = emulator.origin().trim_start_matches("http://").to_string();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    // The ring provider, as the client uses (src/conn.rs); deprecated
    // since rustls 0.23.48 for lack of post-quantum key exchange.
    #[allow(deprecated)]
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let port = counting_tls_front(backend, Arc::new(config));

    let pubnub = PubNub::builder()
        .subscribe_key("demo")
        .user_id("sensor-9")
        .origin(format!("https://localhost:{port}"))
        .root_certificate_pem(ca.pem())
        .presence_timeout(20) // a heartbeat every 9 s
        .build()
        .unwrap();
    let cpu0 = thread_cpu();
    let ((), stats) = alloc::measure(|| {
        let mut online = Heartbeater::new(&pubnub);
        online.join(vec!["plant-floor".into()]).unwrap();
        online
            .set_state_json("plant-floor", r#"{"battery":87}"#)
            .unwrap();
        let events = pubnub
            .presence_events()
            .channels(vec!["lobby".into()])
            .open()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(seconds);
        run(online, events, end);
    });
    let cpu = thread_cpu().saturating_sub(cpu0);
    println!(
        "mode {}: {seconds} s idle, poll budget 1 s: connections (TLS handshakes) {}, bytes on the wire {}, loop CPU {} ms, peak heap {} B, allocations {}",
        if cfg!(legacy) { "before (poll + tick)" } else { "after (PresenceLoop)" },
        CONNECTIONS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
        cpu.as_millis(),
        stats.peak,
        stats.allocs,
    );
}

#[cfg(not(legacy))]
fn run(online: Heartbeater, events: pubnub_presence::PresenceEvents, end: Instant) {
    let mut device = pubnub_presence::PresenceLoop::new(online, Some(events));
    while Instant::now() < end {
        if let Err(e) = device.poll(Duration::from_secs(1)) {
            eprintln!("{e}");
        }
    }
}

#[cfg(legacy)]
fn run(mut online: Heartbeater, mut events: pubnub_presence::PresenceEvents, end: Instant) {
    while Instant::now() < end {
        if let Err(e) = online.tick(Instant::now()) {
            eprintln!("{e}");
        }
        if let Err(e) = events.poll(Duration::from_secs(1)) {
            eprintln!("{e}");
        }
    }
}
