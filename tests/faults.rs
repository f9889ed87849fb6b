//! Fault injection: one test per fault a device meets in the field, each
//! asserting the typed outcome and that the call returns within its
//! deadline. Loopback only. (A reset in the middle of an event long-poll is
//! in `tests/lifecycle.rs`: `dropped_long_poll_resumes_from_the_cursor`.)

mod common;

use common::{ok_json, Reply, Server};
use pubnub_presence::{Error, ErrorKind, PubNub, RetryPolicy, TransportErrorKind};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Tracks the peak of live heap bytes across the whole test process.
struct Peak;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.dealloc(p, l)
    }
}
#[global_allocator]
static GLOBAL: Peak = Peak;

const WHERE_NOW_OK: &str =
    r#"{"status":200,"message":"OK","payload":{"channels":["a"]},"service":"Presence"}"#;

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        deadline: Some(Duration::from_secs(5)),
    }
}

fn client_with(origin: &str, retry: RetryPolicy, timeout: Duration) -> PubNub {
    PubNub::builder()
        .subscribe_key("k")
        .user_id("u")
        .origin(origin)
        .request_timeout(timeout)
        .retry_policy(retry)
        .build()
        .unwrap()
}

/// Runs where_now against a server answering with `replies` in turn (the
/// last one repeats); returns the outcome and the requests made.
fn run(
    replies: Vec<fn() -> Reply>,
    retry: RetryPolicy,
    timeout: Duration,
) -> (Result<Vec<String>, Error>, usize) {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let s = Server::start(move |_| {
        let i = n2.fetch_add(1, Ordering::SeqCst);
        replies[i.min(replies.len() - 1)]()
    });
    let p = client_with(&s.origin, retry, timeout);
    let r = p
        .where_now()
        .execute()
        .map(|w| w.channels.iter().map(|c| c.to_string()).collect());
    (r, n.load(Ordering::SeqCst))
}

fn transport_kind(r: &Result<Vec<String>, Error>) -> Option<TransportErrorKind> {
    match r.as_ref().map_err(Error::kind) {
        Err(ErrorKind::Transport { kind, .. }) => Some(*kind),
        _ => None,
    }
}

#[test]
fn connection_refused_is_retried_then_reported() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = client_with(
        &format!("http://127.0.0.1:{port}"),
        fast_retries(),
        Duration::from_secs(2),
    );
    let e = p.where_now().execute().unwrap_err();
    match e.kind() {
        ErrorKind::Transport { kind, detail } => {
            assert_eq!(*kind, TransportErrorKind::Connect);
            assert!(detail.ends_with("(after 3 attempts)"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reset_before_the_status_line() {
    let (r, n) = run(
        vec![|| Reply::Close],
        fast_retries(),
        Duration::from_secs(2),
    );
    assert!(
        matches!(
            transport_kind(&r),
            Some(TransportErrorKind::Io | TransportErrorKind::Protocol)
        ),
        "{r:?}"
    );
    assert_eq!(n, 3, "retried");
}

#[test]
fn reset_in_the_middle_of_a_chunked_body() {
    let (r, _) = run(
        vec![|| {
            Reply::Raw(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n{\"payload\":"
                    .to_vec(),
            )
        }],
        RetryPolicy::none(),
        Duration::from_secs(2),
    );
    assert!(
        matches!(
            transport_kind(&r),
            Some(TransportErrorKind::Io | TransportErrorKind::Protocol)
        ),
        "{r:?}"
    );
}

#[test]
fn body_shorter_than_content_length() {
    let (r, _) = run(
        vec![|| {
            Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"payload\":{}}".to_vec())
        }],
        RetryPolicy::none(),
        Duration::from_secs(2),
    );
    assert!(
        matches!(
            transport_kind(&r),
            Some(TransportErrorKind::Io | TransportErrorKind::Protocol)
        ),
        "{r:?}"
    );
}

#[test]
fn broken_chunked_encoding() {
    let (r, _) = run(
        vec![|| {
            Reply::Raw(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
                    .to_vec(),
            )
        }],
        RetryPolicy::none(),
        Duration::from_secs(2),
    );
    assert!(
        matches!(
            transport_kind(&r),
            Some(TransportErrorKind::Io | TransportErrorKind::Protocol)
        ),
        "{r:?}"
    );
}

#[test]
fn headers_slower_than_the_timeout() {
    let (r, _) = run(
        vec![|| Reply::Delay(Duration::from_secs(3), Box::new(ok_json(WHERE_NOW_OK)))],
        RetryPolicy::none(),
        Duration::from_millis(300),
    );
    assert_eq!(
        transport_kind(&r),
        Some(TransportErrorKind::Timeout),
        "{r:?}"
    );
}

/// A body that keeps arriving is not cut by the request timeout (a
/// silence bound), but the call ends by its deadline.
#[test]
fn body_trickling_past_the_deadline() {
    let (r, _) = run(
        vec![|| {
            let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec();
            bytes.extend_from_slice(&[b' '; 100]);
            Reply::Trickle(bytes, Duration::from_millis(30))
        }],
        RetryPolicy {
            deadline: Some(Duration::from_millis(1000)),
            ..RetryPolicy::none()
        },
        Duration::from_millis(500),
    );
    assert_eq!(
        transport_kind(&r),
        Some(TransportErrorKind::Timeout),
        "{r:?}"
    );
}

#[test]
fn whole_call_deadline_bounds_retries() {
    let policy = RetryPolicy {
        max_attempts: 10,
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_millis(200),
        deadline: Some(Duration::from_millis(700)),
    };
    let (r, n) = run(
        vec![|| Reply::Json(503, "{}".into())],
        policy,
        Duration::from_secs(5),
    );
    assert_eq!(r.unwrap_err().status(), Some(503));
    assert!(n < 10, "stopped by the deadline after {n} attempts");
    // Fewer than ten attempts: the 0.7 s deadline stopped the retries
    // (when the call returns, against its deadline: `sim_rules.rs`).
}

/// An attempt that would outlive the call's deadline is cut at it, even when
/// the per-phase request timeout is longer.
#[test]
fn an_attempt_is_cut_at_the_deadline() {
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(50),
        deadline: Some(Duration::from_millis(800)),
    };
    let (r, _) = run(
        vec![|| Reply::Delay(Duration::from_secs(4), Box::new(ok_json("{}")))],
        policy,
        Duration::from_secs(5),
    );
    assert_eq!(
        transport_kind(&r),
        Some(TransportErrorKind::Timeout),
        "{r:?}"
    );
}

#[test]
fn a_500_then_a_200_is_retried_to_success() {
    let (r, n) = run(
        vec![|| Reply::Json(500, "<html>oops</html>".into()), || {
            ok_json(WHERE_NOW_OK)
        }],
        fast_retries(),
        Duration::from_secs(2),
    );
    assert_eq!(r.unwrap(), ["a"]);
    assert_eq!(n, 2);
}

#[test]
fn a_429_with_retry_after_is_honoured() {
    let (r, n) = run(
        vec![
            || {
                Reply::Raw(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec())
            },
            || ok_json(WHERE_NOW_OK),
        ],
        fast_retries(),
        Duration::from_secs(2),
    );
    assert_eq!(r.unwrap(), ["a"]);
    assert_eq!(n, 2);
    // That the retry waited for the server's Retry-After (1 s), not the
    // policy's 10 ms, is checked in virtual time (tests/sim_rules.rs,
    // `retry_after_is_waited_out`) and measured in benches/timings.rs.
}

#[test]
fn other_4xx_are_not_retried() {
    let (r, n) = run(
        vec![|| {
            Reply::Json(400, r#"{"status":400,"error":1,"message":"Invalid JSON specified.","service":"Presence"}"#.into())
        }],
        fast_retries(),
        Duration::from_secs(2),
    );
    let e = r.unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert_eq!(n, 1);
    assert!(e.to_string().contains("Invalid JSON specified."));
}

#[test]
fn captive_portal_html_with_200() {
    let (r, n) = run(
        vec![|| ok_json("<!DOCTYPE html><html><body>Sign in to Hotel WiFi</body></html>")],
        fast_retries(),
        Duration::from_secs(2),
    );
    assert_eq!(
        r.unwrap_err().into_kind(),
        ErrorKind::Decode {
            offset: 0,
            reason: "expected an object"
        }
    );
    assert_eq!(n, 1, "a decode error is not retried");
}

const UNAVAILABLE_IN_200: &str =
    r#"{"status": 503, "message": "Service Unavailable", "error": 1, "service": "Presence"}"#;

/// docs/PROTOCOL.md §2: the service may send a 503 in the body of an HTTP 200.
/// The README says 5xx are retried; so is this one.
#[test]
fn error_json_with_200_is_retried_like_a_503() {
    let (r, n) = run(
        vec![|| ok_json(UNAVAILABLE_IN_200), || ok_json(WHERE_NOW_OK)],
        fast_retries(),
        Duration::from_secs(2),
    );
    assert_eq!(r.unwrap(), ["a"]);
    assert_eq!(n, 2, "retried once");

    // Always failing: the server's error, after every attempt.
    let (r, n) = run(
        vec![|| ok_json(UNAVAILABLE_IN_200)],
        fast_retries(),
        Duration::from_secs(2),
    );
    let Some(e) = r.as_ref().err().and_then(Error::server) else {
        panic!("{r:?}")
    };
    assert_eq!(
        (e.status, e.message.as_str(), e.service.as_str(), e.attempts),
        (503, "Service Unavailable", "Presence", 3)
    );
    assert_eq!(n, 3);

    // A 4xx in a 200 body is not retried.
    let (r, n) = run(
        vec![|| ok_json(r#"{"status":400,"error":1,"message":"x","service":"Presence"}"#)],
        fast_retries(),
        Duration::from_secs(2),
    );
    assert_eq!(r.unwrap_err().status(), Some(400));
    assert_eq!(n, 1);
}

/// A `Retry-After` of u64::MAX seconds used to overflow `elapsed + delay`
/// and panic ("overflow when adding durations"); a Retry-After longer than
/// what is left of the deadline now ends the call with the server's error
/// at once.
#[test]
fn a_huge_retry_after_ends_the_call_at_once() {
    for value in [
        "18446744073709551615",
        "99999999999999999999999999999",
        "31",
    ] {
        let head = format!(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {value}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        let s = Server::start(move |_| Reply::Raw(head.clone().into_bytes()));
        // The default policy: 3 attempts, a 30 s deadline.
        let p = client_with(&s.origin, RetryPolicy::default(), Duration::from_secs(2));
        let e = p.where_now().execute().unwrap_err();
        // That it ends at once (not after sleeping the Retry-After or up
        // to the deadline) is checked in virtual time: tests/sim_rules.rs,
        // `a_retry_after_past_the_deadline_ends_the_call_at_once`.
        let server = e.server().unwrap_or_else(|| panic!("{value}: {e:?}"));
        assert_eq!((server.status, server.attempts), (503, 1), "{value}");
        assert_eq!(s.targets().len(), 1, "{value}");
    }
}

/// Extreme user settings (timeouts, caps, retry policy) never overflow:
/// the largest that `build()` accepts work, and `Duration::MAX` is refused
/// there.
#[test]
fn extreme_settings_do_not_overflow() {
    let s = Server::start(|_| ok_json(WHERE_NOW_OK));
    let extreme = |d: Duration| {
        PubNub::builder()
            .subscribe_key("k")
            .user_id("u")
            .origin(&s.origin)
            .max_response_size(usize::MAX)
            .connect_timeout(d)
            .request_timeout(d)
            .retry_policy(RetryPolicy {
                max_attempts: u32::MAX,
                base_delay: d,
                max_delay: d,
                deadline: Some(d),
            })
            .build()
    };
    let e = extreme(Duration::MAX).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Input { .. }), "{e:?}");
    let p = extreme(pubnub_presence::MAX_DURATION).unwrap();
    assert_eq!(p.where_now().execute().unwrap().channels, ["a"]);
    // A huge declared length under a huge cap: no huge reservation, a typed
    // error when the body falls short.
    let s = Server::start(|_| {
        Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\n{}".to_vec())
    });
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("u")
        .origin(&s.origin)
        .max_response_size(usize::MAX)
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let e = p.where_now().execute().unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Transport { .. }), "{e:?}");
}

#[test]
fn body_over_the_cap_keeps_memory_bounded() {
    let s = Server::start(|_| Reply::ChunkedRepeat(vec![b' '; 64 * 1024], 160)); // 10 MiB
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("u")
        .origin(&s.origin)
        .max_response_size(64 * 1024)
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let e = p.where_now().execute().unwrap_err();
    let grew = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Transport {
                kind: TransportErrorKind::BodyTooLarge,
                ..
            }
        ),
        "{e:?}"
    );
    // The cap is 64 KiB; everything in the process (server thread included)
    // stayed far below the 10 MiB that was offered.
    assert!(grew < 1024 * 1024, "heap grew by {grew} bytes");

    // A declared Content-Length over the cap is refused before reading.
    let s = Server::start(|_| {
        Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n{".to_vec())
    });
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("u")
        .origin(&s.origin)
        .max_response_size(64 * 1024)
        .build()
        .unwrap();
    let e = p.where_now().execute().unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Transport {
                kind: TransportErrorKind::BodyTooLarge,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn invalid_utf8_inside_a_json_string() {
    let (r, _) = run(
        vec![|| {
            Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 28\r\n\r\n{\"payload\":{\"channels\":[\"\xff\"]}}".to_vec())
        }],
        RetryPolicy::none(),
        Duration::from_secs(2),
    );
    assert_eq!(
        r.unwrap_err().into_kind(),
        ErrorKind::Decode {
            offset: 25,
            reason: "invalid utf-8"
        }
    );
}

#[test]
fn garbage_status_line() {
    let (r, n) = run(
        vec![|| Reply::Raw(b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec())],
        fast_retries(),
        Duration::from_secs(2),
    );
    assert_eq!(
        transport_kind(&r),
        Some(TransportErrorKind::Protocol),
        "{r:?}"
    );
    assert_eq!(n, 1, "a protocol error is not retried");
}
