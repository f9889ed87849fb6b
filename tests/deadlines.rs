//! Deadlines that hold whatever phase a request is in: an ordinary call
//! ends by its retry deadline, on loopback, before the server has sent
//! its answer. When it ends, and that a poll keeps its budget when a TCP
//! connect completes during it, is checked in virtual time in
//! `sim_rules.rs` and measured on real sockets by `benches/timings.rs`.

mod common;

use common::{Reply, Server};
use pubnub_presence::{ErrorKind, PubNub, RetryPolicy, TransportErrorKind};
use std::time::Duration;

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
    let r = p.where_now().execute();
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
    // The call gave up while the server was still sending the body (4 s
    // of it): the trickle never completed, and there was one attempt (no
    // time left for another).
    assert_eq!(s.answered(), 0);
    assert_eq!(s.targets().len(), 1);
}
