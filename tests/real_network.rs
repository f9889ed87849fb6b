//! The bounds of a request on real (loopback) sockets: a server that stops
//! answering, a response that never ends (a trickle, an endless stream of
//! interim heads), and a slow body that keeps arriving (not cut). The
//! socket options (TCP keepalive), a write past a poll's budget and a
//! clock jump are unit tests of `src/conn.rs`; stale bytes over TLS are in
//! `tests/tls.rs`. No test asserts a wall-clock duration: the loops below
//! only stop a test that would otherwise never end.

mod common;

use common::{ok_json, Reply, Server};
use pubnub_presence::{Error, ErrorKind, PubNub, RetryPolicy, TransportErrorKind};
use std::time::Duration;

const WHERE_NOW_OK: &str =
    r#"{"status":200,"message":"OK","payload":{"channels":["a"]},"service":"Presence"}"#;

const HANDSHAKE: &str = r#"{"t":{"t":"100","r":1},"m":[]}"#;

fn client(origin: &str, request_timeout: Duration, retry: RetryPolicy) -> PubNub {
    PubNub::builder()
        .subscribe_key("k")
        .user_id("u")
        .origin(origin)
        .request_timeout(request_timeout)
        .retry_policy(retry)
        .build()
        .unwrap()
}

fn transport_kind(e: &Error) -> Option<TransportErrorKind> {
    match e.kind() {
        ErrorKind::Transport { kind, .. } => Some(*kind),
        _ => None,
    }
}

/// Polls an event stream (handshake answered, long-polls by `long_poll`)
/// until it returns an error.
fn first_stream_error(long_poll: fn() -> Reply) -> Error {
    let s = Server::start(move |target| match target.contains("tt=0") {
        true => ok_json(HANDSHAKE),
        false => long_poll(),
    });
    let p = client(&s.origin, Duration::from_millis(300), RetryPolicy::none());
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .long_poll_timeout(Duration::from_millis(300))
        .open()
        .unwrap();
    for _ in 0..600 {
        if let Err(e) = ev.poll(Duration::from_millis(100)) {
            return e;
        }
    }
    panic!("the stream never reported an error");
}

/// A server that accepts, reads the request and never answers: the call
/// ends with a retryable timeout (its silence bound), for an ordinary call
/// and for the event stream's long-poll.
#[test]
fn a_server_that_stops_answering_ends_the_call_retryably() {
    let s = Server::start(|_| Reply::Silent);
    let p = client(&s.origin, Duration::from_millis(300), RetryPolicy::none());
    let e = p.where_now().execute().unwrap_err();
    assert_eq!(
        transport_kind(&e),
        Some(TransportErrorKind::Timeout),
        "{e:?}"
    );
    assert!(e.is_retryable());

    let e = first_stream_error(|| Reply::Silent);
    assert_eq!(
        transport_kind(&e),
        Some(TransportErrorKind::Timeout),
        "{e:?}"
    );
    assert!(e.is_retryable());
}

/// A long-poll answer that trickles forever, a byte every 20 ms (well
/// within the 300 ms silence bound), chunked or close-delimited, ends with
/// a timeout at its total bound (`long_poll_timeout` + `request_timeout`);
/// it used to hold the stream for as long as the server went on.
#[test]
fn a_long_poll_answer_that_never_ends_is_cut_at_its_total_bound() {
    fn chunked() -> Reply {
        Reply::Endless(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            b"1\r\n \r\n".to_vec(),
            Duration::from_millis(20),
        )
    }
    fn close_delimited() -> Reply {
        Reply::Endless(
            b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
            b" ".to_vec(),
            Duration::from_millis(20),
        )
    }
    for long_poll in [chunked as fn() -> Reply, close_delimited] {
        let e = first_stream_error(long_poll);
        assert_eq!(
            transport_kind(&e),
            Some(TransportErrorKind::Timeout),
            "{e:?}"
        );
        assert!(e.to_string().contains("total bound"), "{e}");
        assert!(e.is_retryable());
    }
}

/// An ordinary call's trickle ends at the call's deadline (the retry
/// policy's), not when the server stops.
#[test]
fn an_ordinary_answer_that_never_ends_is_cut_at_the_call_deadline() {
    let s = Server::start(|_| {
        Reply::Endless(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            b"1\r\n \r\n".to_vec(),
            Duration::from_millis(20),
        )
    });
    let retry = RetryPolicy {
        deadline: Some(Duration::from_millis(800)),
        ..RetryPolicy::none()
    };
    let p = client(&s.origin, Duration::from_millis(300), retry);
    let e = p.where_now().execute().unwrap_err();
    assert_eq!(
        transport_kind(&e),
        Some(TransportErrorKind::Timeout),
        "{e:?}"
    );
}

/// Interim (`1xx`) heads are taken, a few of them: they count toward the
/// 8 KiB head cap, and a fifth (or an endless stream of them) is a
/// protocol error, not a wait without end.
#[test]
fn interim_heads_count_toward_the_cap_and_are_limited() {
    let with_interims = |n: usize, extra_header: usize| {
        let interim = format!(
            "HTTP/1.1 103 Early Hints\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(extra_header)
        );
        let mut raw = interim.repeat(n).into_bytes();
        raw.extend_from_slice(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{WHERE_NOW_OK}",
                WHERE_NOW_OK.len()
            )
            .as_bytes(),
        );
        let s = Server::start(move |_| Reply::Raw(raw.clone()));
        client(&s.origin, Duration::from_secs(2), RetryPolicy::none())
            .where_now()
            .execute()
    };
    assert_eq!(with_interims(4, 1).unwrap().channels, ["a"]);
    let e = with_interims(5, 1).unwrap_err();
    assert_eq!(
        transport_kind(&e),
        Some(TransportErrorKind::Protocol),
        "{e:?}"
    );
    // Three heads of 3 KB: each under the cap, together over it.
    let e = with_interims(3, 3000).unwrap_err();
    assert_eq!(
        transport_kind(&e),
        Some(TransportErrorKind::Protocol),
        "{e:?}"
    );
    assert!(e.to_string().contains("8 KiB"), "{e}");

    let s = Server::start(|_| {
        Reply::Endless(
            Vec::new(),
            b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
            Duration::from_millis(1),
        )
    });
    let e = client(&s.origin, Duration::from_secs(2), RetryPolicy::none())
        .where_now()
        .execute()
        .unwrap_err();
    assert_eq!(
        transport_kind(&e),
        Some(TransportErrorKind::Protocol),
        "{e:?}"
    );
}

/// A slow link: the answer takes far longer than `request_timeout` in all
/// but never goes quiet that long, so it is not cut (it used to be, at
/// the per-phase bound, and the retry started the download again).
#[test]
fn a_body_that_keeps_arriving_is_not_cut() {
    let s = Server::start(|_| {
        let mut bytes = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            WHERE_NOW_OK.len()
        )
        .into_bytes();
        bytes.extend_from_slice(WHERE_NOW_OK.as_bytes());
        // About 120 bytes at one per 10 ms: over a second in all.
        Reply::Trickle(bytes, Duration::from_millis(10))
    });
    let p = client(&s.origin, Duration::from_millis(300), RetryPolicy::none());
    assert_eq!(p.where_now().execute().unwrap().channels, ["a"]);
}

/// A path that dies silently while a long-poll waits (the server's
/// packets dropped past its own interface: no FIN, no RST, no ACK of the
/// keepalive probes): TCP keepalive notices it, and the stream reports a
/// retryable error long before the 310 s long-poll timeout. Needs two
/// network namespaces and a server in the other one: run by
/// `benches/dead_path.sh` (as root), which sets `DEAD_PATH_ORIGIN` (the
/// server) and `DEAD_PATH_CUT` (the command that drops its packets).
#[test]
#[ignore = "needs two network namespaces: run by benches/dead_path.sh"]
fn a_dead_path_is_noticed_by_keepalive() {
    let origin = std::env::var("DEAD_PATH_ORIGIN").expect("DEAD_PATH_ORIGIN");
    let cut = std::env::var("DEAD_PATH_CUT").expect("DEAD_PATH_CUT");
    let p = client(&origin, Duration::from_secs(2), RetryPolicy::none());
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    // The handshake, then the long-poll in flight.
    for _ in 0..10 {
        assert!(ev.poll(Duration::from_millis(100)).unwrap().is_none());
    }
    let ok = std::process::Command::new("sh")
        .args(["-c", &cut])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{cut}");
    let started = std::time::Instant::now();
    let e = loop {
        match ev.poll(Duration::from_secs(1)) {
            Err(e) => break e,
            Ok(got) => assert!(got.is_none()),
        }
        // Only so that the test ends: the long-poll alone would wait 310 s.
        assert!(
            started.elapsed() < Duration::from_secs(200),
            "no error while the path was dead"
        );
    };
    eprintln!("dead path reported after {:?}: {e}", started.elapsed());
    assert!(e.is_retryable(), "{e:?}");
}
