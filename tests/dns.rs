//! Name resolution on real sockets: a DNS responder on 127.0.0.1 (named by
//! `PUBNUB_PRESENCE_RESOLV_CONF`, set once for this test binary) that
//! answers, stays silent or answers NXDOMAIN, per name; what the client
//! does with each. Assertions are on outcomes and on the queries the
//! responder saw, never on durations.
#![cfg(target_os = "linux")]

use pubnub_presence::{
    ErrorKind, HeartbeatThread, Heartbeater, PubNub, RetryPolicy, TransportErrorKind,
};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// An A record 127.0.0.1 (and no AAAA).
    Answer,
    Silent,
    NxDomain,
}

struct Responder {
    modes: Mutex<HashMap<String, Mode>>,
    /// Queries seen, by name.
    seen: Mutex<HashMap<String, usize>>,
}

impl Responder {
    fn set(&self, name: &str, mode: Mode) {
        self.modes.lock().unwrap().insert(name.into(), mode);
    }
    fn seen(&self, name: &str) -> usize {
        self.seen.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

/// The question's name (uncompressed, as queries are) and where it ends.
fn question(q: &[u8]) -> Option<(String, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(at)? as usize;
        if len == 0 {
            return Some((labels.join("."), at + 1));
        }
        labels.push(String::from_utf8_lossy(q.get(at + 1..at + 1 + len)?).to_lowercase());
        at += 1 + len;
    }
}

fn answer(q: &[u8], mode: Mode) -> Option<Vec<u8>> {
    let (_, end) = question(q)?;
    let qtype = u16::from_be_bytes([*q.get(end)?, *q.get(end + 1)?]);
    let mut out = q.get(..end + 4)?.to_vec();
    out[2] = 0x81; // QR, RD
    out[3] = 0x80; // RA, NOERROR
    match mode {
        Mode::Silent => return None,
        Mode::NxDomain => out[3] |= 3,
        Mode::Answer if qtype == 1 => {
            out[7] = 1;
            // Owner: a pointer to the question's name; A, IN, TTL 600.
            out.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 2, 0x58, 0, 4, 127, 0, 0, 1]);
        }
        Mode::Answer => {} // NODATA for AAAA
    }
    Some(out)
}

/// Starts the responder and points the crate at it, once per binary.
fn responder() -> &'static Responder {
    static R: OnceLock<&'static Responder> = OnceLock::new();
    R.get_or_init(|| {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let r: &'static Responder = Box::leak(Box::new(Responder {
            modes: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
        }));
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let q = &buf[..n];
                let Some((name, _)) = question(q) else {
                    continue;
                };
                *r.seen.lock().unwrap().entry(name.clone()).or_default() += 1;
                let mode = r.modes.lock().unwrap().get(&name).copied();
                if let Some(reply) = mode.and_then(|m| answer(q, m)) {
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        let path =
            std::env::temp_dir().join(format!("pubnub-dns-test-{}.conf", std::process::id()));
        std::fs::write(
            &path,
            format!("nameserver {addr}\noptions timeout:1 attempts:1\n"),
        )
        .unwrap();
        std::env::set_var("PUBNUB_PRESENCE_RESOLV_CONF", &path);
        r
    })
}

const ACK: &str = r#"{"status":200,"message":"OK","payload":{"channels":[]},"service":"Presence"}"#;

/// An HTTP server on `addr` answering every request with [`ACK`] and
/// closing the connection (so each request connects anew).
fn serve(addr: SocketAddr) {
    let listener = TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ACK}",
                ACK.len()
            );
        }
    });
}

/// A loopback port nobody listens on (yet).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn client(host: &str, port: u16) -> PubNub {
    PubNub::builder()
        .subscribe_key("k")
        .user_id("u")
        .origin(format!("http://{host}:{port}"))
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap()
}

fn transport_kind(e: &pubnub_presence::Error) -> Option<TransportErrorKind> {
    match e.kind() {
        ErrorKind::Transport { kind, .. } => Some(*kind),
        _ => None,
    }
}

#[test]
fn a_silent_name_server_makes_polls_end_in_budget_with_a_retryable_error() {
    let r = responder();
    r.set("silent.test", Mode::Silent);
    let pubnub = client("silent.test", free_port());
    let mut hb = Heartbeater::new(&pubnub);
    hb.join(vec!["c".into()]).unwrap();
    // The lookup (one try of 1 s) is carried across polls of 50 ms.
    let mut pending = 0;
    let err = loop {
        match hb.poll(Duration::from_millis(50)) {
            Ok(false) => pending += 1,
            Ok(true) => panic!("a heartbeat without an address"),
            Err(e) => break e,
        }
        assert!(pending < 10_000, "the lookup never ended");
    };
    assert!(
        pending >= 2,
        "the lookup was not carried across polls ({pending})"
    );
    assert_eq!(transport_kind(&err), Some(TransportErrorKind::Dns), "{err}");
    assert!(err.is_retryable(), "{err}");
    // One try: an A and an AAAA query.
    assert_eq!(r.seen("silent.test"), 2);

    // An ordinary call: the same, retryable.
    let err = pubnub.where_now().execute().unwrap_err();
    assert_eq!(transport_kind(&err), Some(TransportErrorKind::Dns), "{err}");
    assert!(err.is_retryable());
}

#[test]
fn a_name_that_does_not_exist_is_not_retryable() {
    let r = responder();
    r.set("nx.test", Mode::NxDomain);
    let pubnub = client("nx.test", free_port());
    let err = pubnub.where_now().execute().unwrap_err();
    assert_eq!(
        transport_kind(&err),
        Some(TransportErrorKind::NameNotFound),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(r.seen("nx.test") <= 2);
    // A retrying policy does not retry it either.
    let seen = r.seen("nx.test");
    let retrying = PubNub::builder()
        .subscribe_key("k")
        .user_id("u")
        .origin(format!("http://nx.test:{}", free_port()))
        .build()
        .unwrap();
    assert!(retrying.where_now().execute().is_err());
    // One lookup is an A and an AAAA query, each perhaps sent again once
    // when its answer is slow (a loaded machine); retrying the call (three
    // attempts by default) would be at least two lookups more.
    assert!(r.seen("nx.test") <= seen + 4);

    // The device loop's heartbeats still try again after their backoff:
    // the name is looked up again and, once it exists, used.
    let port = free_port();
    serve(SocketAddr::from(([127, 0, 0, 1], port)));
    r.set("late.test", Mode::NxDomain);
    let pubnub = client("late.test", port);
    let mut hb = Heartbeater::new(&pubnub);
    hb.join(vec!["c".into()]).unwrap();
    let err = loop {
        match hb.poll(Duration::from_millis(50)) {
            Ok(false) => {}
            Ok(true) => panic!("a heartbeat without an address"),
            Err(e) => break e,
        }
    };
    assert_eq!(transport_kind(&err), Some(TransportErrorKind::NameNotFound));
    r.set("late.test", Mode::Answer);
    // A poll during the backoff returns at once: a safety bound on the
    // loop, not an assertion on time.
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while !hb.poll(Duration::from_millis(50)).unwrap_or(false) {
        assert!(std::time::Instant::now() < give_up, "never recovered");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(r.seen("late.test") >= 4);
}

#[test]
fn the_last_good_address_is_used_while_the_name_server_is_silent() {
    let r = responder();
    r.set("flaky.test", Mode::Answer);
    let port = free_port();
    let pubnub = client("flaky.test", port);
    // Looked up (A and AAAA); nothing listens yet: a connect failure,
    // which makes the next connect look the name up again.
    let err = pubnub.where_now().execute().unwrap_err();
    assert_eq!(
        transport_kind(&err),
        Some(TransportErrorKind::Connect),
        "{err}"
    );
    assert_eq!(r.seen("flaky.test"), 2);

    // The name server goes silent; the server comes up.
    r.set("flaky.test", Mode::Silent);
    serve(SocketAddr::from(([127, 0, 0, 1], port)));
    let mut hb = Heartbeater::new(&pubnub);
    hb.join(vec!["c".into()]).unwrap();
    // The lookup gets no answer across several polls, none of which fails:
    // the last good address is used, and the heartbeat goes through.
    let mut pending = 0;
    loop {
        match hb.poll(Duration::from_millis(50)) {
            Ok(true) => break,
            Ok(false) => pending += 1,
            Err(e) => panic!("{e}"),
        }
        assert!(pending < 10_000, "never completed");
    }
    assert!(pending >= 2, "{pending}");
    assert_eq!(r.seen("flaky.test"), 4);

    // A failed lookup is not repeated soon: more calls, each on a new
    // connection, ask the name server nothing.
    for _ in 0..3 {
        pubnub.where_now().execute().unwrap();
    }
    assert_eq!(r.seen("flaky.test"), 4);
}

#[test]
fn ip_literals_and_hosts_file_names_skip_dns() {
    let r = responder();
    let port = free_port();
    serve(SocketAddr::from(([127, 0, 0, 1], port)));
    client("127.0.0.1", port).where_now().execute().unwrap();
    // `localhost` is in /etc/hosts on any Linux; the responder would not
    // know it.
    let before = r.seen("localhost");
    client("localhost", port).where_now().execute().unwrap();
    assert_eq!(r.seen("localhost"), before);
}

#[test]
fn the_final_leave_of_a_heartbeat_thread_ends_with_a_silent_name_server() {
    let r = responder();
    r.set("stop.test", Mode::Silent);
    let pubnub = client("stop.test", free_port());
    let mut hb = Heartbeater::new(&pubnub);
    hb.join(vec!["c".into()]).unwrap();
    let thread = HeartbeatThread::spawn(hb).unwrap();
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while r.seen("stop.test") < 2 {
        assert!(std::time::Instant::now() < give_up, "no lookup");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The leave's own lookup gets no answer either: the leave fails (a
    // lookup without an answer, or the leave's 2 s window), it does not
    // wait for the system resolver.
    let err = thread.stop().unwrap_err();
    let kind = transport_kind(&err);
    assert!(
        matches!(
            kind,
            Some(TransportErrorKind::Dns | TransportErrorKind::Timeout)
        ),
        "{err}"
    );
    assert!(
        r.seen("stop.test") >= 4,
        "the leave did not look the name up"
    );
}
