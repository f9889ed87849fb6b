//! Deadlines that hold whatever phase a request is in: an ordinary call
//! ends by its retry deadline, and a poll by its budget when a TCP connect
//! completes during it. Loopback only.

mod common;

use common::{Reply, Server};
use pubnub_presence::{ErrorKind, PubNub, RetryPolicy, TransportErrorKind};
use std::time::{Duration, Instant};

/// The retry deadline bounds the whole call, not only the attempts that
/// start with less than a request timeout left: a server that answers the
/// head late and then stalls the body (each phase within the request
/// timeout, the two together past the deadline) is cut at the deadline.
#[test]
fn an_attempt_ends_at_the_call_deadline_across_phases() {
    let s = Server::start(|_| {
        let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[b' '; 2000]);
        // The head after 0.5 s, then the body at a byte per 2 ms (4 s).
        Reply::Delay(
            Duration::from_millis(500),
            Box::new(Reply::Trickle(bytes, Duration::from_millis(2))),
        )
    });
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("u")
        .origin(&s.origin)
        .request_timeout(Duration::from_secs(1))
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            deadline: Some(Duration::from_millis(1100)),
        })
        .build()
        .unwrap();
    let started = Instant::now();
    let r = p.where_now().execute();
    let took = started.elapsed();
    assert!(
        matches!(
            r.as_ref().map_err(|e| e.kind()),
            Err(ErrorKind::Transport {
                kind: TransportErrorKind::Timeout,
                ..
            })
        ),
        "{r:?}"
    );
    // Before the fix the attempt ran head (0.6 s) + body phase (1 s): 1.6 s.
    assert!(took < Duration::from_millis(1400), "{took:?}");
    assert!(took >= Duration::from_millis(1050), "{took:?}");
}

/// Over TLS, a poll during which the TCP connect completes ends within its
/// budget: the wait left after the connect is recomputed before reading
/// (before the fix the read waited the whole budget again: 1.5 s → 2.5 s).
#[cfg(feature = "tls")]
#[test]
fn a_connect_completing_during_a_poll_keeps_the_budget() {
    use socket2::{Domain, SockAddr, Socket, Type};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    // A listener whose accept queue is full: further SYNs are dropped and
    // the client's connect waits for its SYN retransmit (about 1 s).
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    sock.bind(&SockAddr::from(any)).unwrap();
    sock.listen(0).unwrap();
    let listener: TcpListener = sock.into();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(s);
        }
    }
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("u")
        .origin(format!("https://127.0.0.1:{}", addr.port()))
        .build()
        .unwrap();
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    // Room in the queue at 0.5 s: the retransmitted SYN gets in at ~1 s,
    // in the middle of the poll; the TLS handshake then never answers.
    let (done, wait_done) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let accepted = listener.accept();
        let _ = wait_done.recv_timeout(Duration::from_secs(5));
        drop((accepted, listener, fillers));
    });
    let budget = Duration::from_millis(1500);
    let started = Instant::now();
    let _ = ev.poll(budget);
    let took = started.elapsed();
    assert!(took >= budget, "{took:?}");
    assert!(took < Duration::from_millis(2000), "{took:?}");
    drop(ev);
    let _ = done.send(());
    let _ = holder.join();
}
