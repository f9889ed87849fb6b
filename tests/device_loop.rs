//! The device loop (issue 10): the event stream's long-poll kept across
//! short polls on one connection (plain and TLS), bounded waits, a stream
//! that skips what it cannot decode and reports failures instead of
//! hiding them, and heartbeats that back off, stop quickly and do not
//! drift. Each test runs against the shared loopback server
//! (`tests/common`) that counts the connections it accepts. The rules
//! with a clock in them (budgets, bounds, backoff schedules) are checked
//! in virtual time in `sim_rules.rs` and measured in `benches/timings.rs`;
//! here only outcomes are asserted, never a duration.

use pubnub_presence::{
    Error, ErrorKind, HeartbeatThread, Heartbeater, PresenceEvent, PresenceEvents, PresenceLoop,
    PubNub, RetryPolicy, TransportErrorKind,
};
mod common;

use common::{wait_until, Reply, Server};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for something that must happen: generous, so
/// that it only runs out when the thing never happens, however loaded the
/// machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn join(tt: u64, channel: &str, user: &str) -> String {
    format!(
        r#"{{"p":{{"t":"{tt}","r":1}},"c":"{channel}-pnpres","d":{{"action":"join","uuid":"{user}","timestamp":1,"occupancy":1}}}}"#
    )
}

fn batch(next: u64, msgs: &[String]) -> String {
    format!(r#"{{"t":{{"t":"{next}","r":7}},"m":[{}]}}"#, msgs.join(","))
}

fn user_of(e: &PresenceEvent<'_>) -> String {
    match e {
        PresenceEvent::Join(u) => u.user_id.to_string(),
        other => panic!("{other:?}"),
    }
}

/// A long-poll that answers the handshake at once, then waits for what
/// the test queues: an event batch, or a close.
#[derive(Clone, Default)]
struct Feed {
    queue: Arc<Mutex<Vec<Reply>>>,
}

impl Feed {
    fn push(&self, r: Reply) {
        self.queue.lock().unwrap().push(r);
    }

    fn handler(&self) -> impl Fn(&str) -> Reply + Send + Sync + 'static {
        let queue = self.queue.clone();
        move |target: &str| {
            if target.contains("tt=0") {
                return Reply::Json(200, batch(100, &[]));
            }
            if !target.contains("/subscribe/") {
                return ack();
            }
            let until = Instant::now() + PATIENCE;
            while Instant::now() < until {
                if let Some(r) = {
                    let mut q = queue.lock().unwrap();
                    (!q.is_empty()).then(|| q.remove(0))
                } {
                    return r;
                }
                thread::sleep(Duration::from_millis(5));
            }
            Reply::Json(200, batch(100, &[]))
        }
    }
}

fn client(origin: &str) -> PubNub {
    PubNub::builder()
        .subscribe_key("k")
        .user_id("me")
        .origin(origin)
        .build()
        .unwrap()
}

#[test]
fn short_polls_keep_one_connection_and_resume_after_a_close() {
    let feed = Feed::default();
    let s = Server::start(feed.handler());
    let p = client(&s.origin);
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    for _ in 0..50 {
        assert!(ev.poll(Duration::from_millis(100)).unwrap().is_none());
    }
    assert_eq!(s.connections(), 1, "50 short polls, one connection");
    assert_eq!(ev.connections_opened(), 1);
    // Only two requests: the handshake and the long-poll still in flight.
    assert_eq!(s.targets().len(), 2);

    feed.push(Reply::Json(200, batch(200, &[join(150, "room", "a")])));
    let got = ev.poll(Duration::from_secs(2)).unwrap().expect("the event");
    assert_eq!(user_of(&got), "a");
    assert_eq!(s.connections(), 1, "delivered on the same connection");

    // The server drops the connection under the next long-poll: the stream
    // reconnects and asks from the same cursor; nothing is lost.
    feed.push(Reply::Close);
    feed.push(Reply::Json(200, batch(300, &[join(250, "room", "b")])));
    let mut got = None;
    wait_until(PATIENCE, || {
        got = ev.poll(Duration::from_millis(100)).unwrap_or(None);
        got.is_some()
    });
    assert_eq!(user_of(&got.expect("the event after the reconnect")), "b");
    assert_eq!(s.connections(), 2);
    let t = s.targets();
    assert!(t[2].ends_with("&tt=200&tr=7"), "{t:?}");
    assert!(
        t[3].ends_with("&tt=200&tr=7"),
        "same cursor after the close: {t:?}"
    );
}

/// The undecodable event in the middle of a batch is reported in its
/// place, the two good ones delivered, and the next request moves on.
#[test]
fn an_undecodable_event_is_skipped_and_the_cursor_advances() {
    let feed = Feed::default();
    let s = Server::start(feed.handler());
    let p = client(&s.origin);
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    let deep = "[".repeat(300) + &"]".repeat(300);
    let bad = format!(
        r#"{{"p":{{"t":"160","r":1}},"c":"room-pnpres","d":{{"action":"state-change","uuid":"x","data":{{"s":{deep}}}}}}}"#
    );
    feed.push(Reply::Json(
        200,
        batch(200, &[join(150, "room", "a"), bad, join(170, "room", "b")]),
    ));
    let mut got = Vec::new();
    while got.len() < 3 {
        match ev.poll(Duration::from_secs(2)).unwrap() {
            Some(e) => got.push(e),
            None => panic!("events expected, got {got:?}"),
        }
    }
    assert_eq!(user_of(&got[0]), "a");
    match &got[1] {
        PresenceEvent::Skipped(s) => {
            assert_eq!(s.channel.as_deref(), Some("room"));
            assert_eq!(s.timetoken, 160);
            assert!(s.reason.contains("nesting"), "{}", s.reason);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(user_of(&got[2]), "b");
    assert_eq!(ev.cursor().t, 200);
    assert!(ev.poll(Duration::from_millis(300)).unwrap().is_none());
    let t = s.targets();
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(t[2].ends_with("&tt=200&tr=7"), "moved on: {t:?}");
}

/// What `polls` calls of `poll(100 ms)` returned (at least 3 s when
/// nothing comes: a backed-off stream sends a handful of requests in
/// that time, however slow the machine; an unchecked one, one per poll
/// or more).
fn poll_times(
    ev: &mut pubnub_presence::PresenceEvents,
    polls: usize,
) -> Vec<Result<PresenceEvent<'static>, Error>> {
    let mut got = Vec::new();
    for _ in 0..polls {
        match ev.poll(Duration::from_millis(100)) {
            Ok(None) => {}
            Ok(Some(e)) => got.push(Ok(e)),
            Err(e) => got.push(Err(e)),
        }
    }
    got
}

/// A 200 whose body breaks off after its cursor is a decode error that is
/// backed off (it was a skipped event, deduplicated when repeated, and the
/// stream asked again at once: thousands of requests a second).
#[test]
fn a_body_broken_after_its_cursor_is_an_error_and_backed_off() {
    let s = Server::start(|_| {
        Reply::Json(200, r#"{"t":{"t":"17000000000000000","r":1},"m":[{"#.into())
    });
    let p = client(&s.origin);
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    match ev.next_event().map_err(Error::into_kind) {
        Err(ErrorKind::Decode { .. }) => {}
        other => panic!("{other:?}"),
    }
    let got = poll_times(&mut ev, 30);
    let requests = s.targets().len();
    // 0, 0.5, 1.5, 3.5 s ... (backoff 0.5 s doubling): a handful in the
    // 3 s or more that 30 polls take, not one per poll.
    assert!(requests <= 8, "{requests} requests in 30 polls");
    assert!(
        got.iter()
            .all(|r| matches!(r, Err(e) if matches!(e.kind(), ErrorKind::Decode { .. }))),
        "{got:?}"
    );
    assert!(!got.is_empty() && got.len() < requests, "{got:?}");
}

/// A server repeating the same cursor (here the largest timetoken) with an
/// undecodable element: the element is reported once, and the repeats,
/// which bring nothing new, are backed off.
#[test]
fn a_repeated_cursor_with_nothing_new_is_backed_off() {
    let deep = "[".repeat(300) + &"]".repeat(300);
    let bad = format!(
        r#"{{"p":{{"t":"160","r":1}},"c":"room-pnpres","d":{{"action":"state-change","uuid":"x","data":{{"s":{deep}}}}}}}"#
    );
    let body = format!(r#"{{"t":{{"t":"{}","r":1}},"m":[{bad}]}}"#, u64::MAX);
    let s = Server::start(move |_| Reply::Json(200, body.clone()));
    let p = client(&s.origin);
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    let got = poll_times(&mut ev, 30);
    let requests = s.targets().len();
    assert!(requests <= 8, "{requests} requests in 30 polls");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(matches!(&got[0], Ok(PresenceEvent::Skipped(_))), "{got:?}");
}

#[test]
fn oversized_bodies_and_silent_servers_are_errors() {
    let s = Server::start(|t| {
        if t.contains("tt=0") {
            Reply::Json(
                200,
                format!(r#"{{"t":{{"t":"1"}},"m":[],"pad":"{}"}}"#, "x".repeat(5000)),
            )
        } else {
            Reply::Silent
        }
    });
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("me")
        .origin(&s.origin)
        .max_response_size(1000)
        .build()
        .unwrap();
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    match ev.poll(Duration::from_secs(2)).map_err(Error::into_kind) {
        Err(ErrorKind::Transport {
            kind: TransportErrorKind::BodyTooLarge,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // Not retried by next_event: it will not clear (one more request at
    // most, answered the same way, and the error returned).
    let before = s.targets().len();
    let e = ev.next_event().unwrap_err();
    assert!(!e.is_retryable());
    assert!(s.targets().len() <= before + 1, "{:?}", s.targets());

    // A server that answers the handshake and never the long-poll is cut
    // at the long-poll bound.
    let s = Server::start(|t: &str| {
        if t.contains("tt=0") {
            Reply::Json(200, batch(100, &[]))
        } else {
            Reply::Silent
        }
    });
    let p = client(&s.origin);
    let ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .long_poll_timeout(Duration::from_millis(400))
        .open()
        .unwrap();
    silent_bound(ev);

    // A server that accepts the handshake (`tt=0`, answered at once by the
    // service) and never answers is cut at the client's request timeout,
    // not at the long-poll bound.
    let s = Server::start(|_| Reply::Silent);
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("me")
        .origin(&s.origin)
        .request_timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .long_poll_timeout(Duration::from_secs(60))
        .open()
        .unwrap();
    assert_eq!(
        ev.request().timeout,
        Some(Duration::from_millis(400)),
        "the handshake's request carries the request timeout"
    );
    silent_bound(ev);
}

/// Polls until the stream fails, which must be a timeout (the bound
/// cut it, 400 ms here; the 60 s one would not within `PATIENCE`). When
/// it is cut is checked in virtual time (`sim_rules.rs`).
fn silent_bound(mut ev: PresenceEvents) {
    let mut err = None;
    wait_until(PATIENCE, || {
        if let Err(e) = ev.poll(Duration::from_millis(100)) {
            err = Some(e);
        }
        err.is_some()
    });
    match err.map(Error::into_kind) {
        Some(ErrorKind::Transport {
            kind: TransportErrorKind::Timeout,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn outages_and_permanent_errors_are_reported_not_hidden() {
    // Nothing listens: an error, not Ok(None).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = client(&format!("http://127.0.0.1:{port}"));
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    match ev
        .poll(Duration::from_millis(500))
        .map_err(Error::into_kind)
    {
        Err(ErrorKind::Transport {
            kind: TransportErrorKind::Connect,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // During the backoff that follows, a poll waits and says nothing new;
    // the next attempt fails again and says so. 20 polls take 2 s or more:
    // at least one retry (after 0.5 s), and a handful at most, not one
    // per poll (the schedule itself: `sim_rules.rs`).
    let mut errors = 0;
    for _ in 0..20 {
        if ev.poll(Duration::from_millis(100)).is_err() {
            errors += 1;
        }
    }
    assert!(
        (1..=5).contains(&errors),
        "backed off: {errors} failures in 20 polls"
    );

    // A name that does not exist: NameNotFound, returned by next_event
    // (a lookup without an answer would be retried). The name server is a
    // local one answering NXDOMAIN to everything, so the test does not
    // depend on the machine's; the other tests use IP literals, which are
    // never looked up.
    let ns = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let conf = std::env::temp_dir().join(format!("device-loop-nx-{}.conf", std::process::id()));
    std::fs::write(&conf, format!("nameserver {}\n", ns.local_addr().unwrap())).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = ns.recv_from(&mut buf) {
            let mut reply = buf[..n].to_vec();
            reply[2] = 0x81; // a response, recursion desired
            reply[3] = 0x83; // recursion available, NXDOMAIN
            let _ = ns.send_to(&reply, from);
        }
    });
    std::env::set_var("PUBNUB_PRESENCE_RESOLV_CONF", &conf);
    let p = client("http://does-not-exist.invalid");
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    match ev.next_event().map_err(Error::into_kind) {
        Err(ErrorKind::Transport {
            kind: TransportErrorKind::NameNotFound,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }

    // A 403 comes back from next_event; a loop that goes on anyway is
    // backed off instead of hammering the server.
    let s = Server::start(|_| {
        Reply::Json(
            403,
            r#"{"message":"Forbidden","error":true,"service":"Access Manager","status":403}"#
                .into(),
        )
    });
    let p = client(&s.origin);
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    assert_eq!(ev.next_event().unwrap_err().status(), Some(403));
    for _ in 0..20 {
        let _ = ev.poll(Duration::from_millis(50));
    }
    // 20 polls take 1 s or more: 0, 0.5, 1.5 s ... a handful of requests,
    // not one per poll.
    assert!(
        s.targets().len() <= 8,
        "{} requests in 20 polls",
        s.targets().len()
    );
}

/// The loop against a server that accepts and never answers: calls
/// return, failures are reported, and heartbeats and handshakes back off
/// instead of going out once per call (the budget and the schedule in
/// virtual time: `sim_rules.rs`).
#[test]
fn the_loop_stays_within_its_budget_while_the_server_is_silent() {
    let s = Server::start(|_| Reply::Silent);
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("me")
        .origin(&s.origin)
        .request_timeout(Duration::from_millis(300))
        .heartbeat_interval(5)
        .build()
        .unwrap();
    let mut hb = Heartbeater::new(&p);
    hb.join(vec!["room".into()]).unwrap();
    let events = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    let mut device = PresenceLoop::new(hb, Some(events));
    let budget = Duration::from_millis(100);
    let mut failures = 0;
    let mut poll = |device: &mut PresenceLoop| match device.poll(budget) {
        Ok(Some(e)) => panic!("{e:?}"),
        Ok(None) => {}
        Err(e) => {
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::Transport {
                        kind: TransportErrorKind::Timeout,
                        ..
                    }
                ),
                "{e:?}"
            );
            failures += 1;
        }
    };
    // Both requests cut at the 300 ms timeout and sent again.
    let retried = wait_until(PATIENCE, || {
        poll(&mut device);
        s.count("/heartbeat") >= 2 && s.count("/subscribe/") >= 2
    });
    assert!(retried, "{:?}", s.targets());
    // 40 more calls (4 s or more): the backoff (1, 2, 4 s ...) lets a
    // handful of attempts through, not one per call.
    let (beats, handshakes) = (s.count("/heartbeat"), s.count("/subscribe/"));
    for _ in 0..40 {
        poll(&mut device);
    }
    assert!(failures >= 2, "{failures}");
    let beats = s.count("/heartbeat") - beats;
    assert!(beats <= 6, "{beats} heartbeats in 40 calls");
    // The handshake (`tt=0`) is held to the request timeout too, and
    // backs off the same way.
    let handshakes = s.count("/subscribe/") - handshakes;
    assert!(handshakes <= 6, "{handshakes} handshakes in 40 calls");
}

fn ack() -> Reply {
    Reply::Json(
        200,
        r#"{"status":200,"message":"OK","service":"Presence"}"#.into(),
    )
}

/// A heartbeat whose answer trickles in (a byte every 50 ms, so the
/// silence bound never trips) is abandoned once it has been in flight for
/// `request_timeout`, the failure returned once, and it is sent again
/// after the backoff (it stayed in flight for the whole answer before).
#[test]
fn a_trickling_heartbeat_is_abandoned_at_its_bound() {
    let s = Server::start(|_| {
        Reply::TrickleJson(
            r#"{"status":200,"message":"OK","service":"Presence"}"#.into(),
            Duration::from_millis(50),
        )
    });
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("me")
        .origin(&s.origin)
        .request_timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let mut hb = Heartbeater::new(&p);
    hb.join(vec!["room".into()]).unwrap();
    assert_eq!(hb.in_flight_bound(), Duration::from_millis(400));
    let mut errors = Vec::new();
    // Until it is sent again (when: `sim_rules.rs`).
    wait_until(PATIENCE, || {
        if let Err(e) = hb.poll(Duration::from_millis(100)) {
            errors.push(e);
        }
        s.count("/heartbeat") >= 2
    });
    let first = errors.first().expect("the heartbeat timed out");
    assert!(
        matches!(
            first.kind(),
            ErrorKind::Transport {
                kind: TransportErrorKind::Timeout,
                ..
            }
        ),
        "{first:?}"
    );
    // Sent at 0, abandoned at 0.4 s, sent again after the 0.5 s backoff:
    // one failure returned before the second heartbeat went out (two if
    // the second was abandoned in the same call, on a slow machine).
    assert_eq!(s.count("/heartbeat"), 2);
    assert!(errors.len() <= 2, "{errors:?}");
}

#[test]
fn heartbeat_thread_stops_quickly_against_a_silent_server() {
    let s = Server::start(|_| Reply::Silent);
    let p = client(&s.origin);
    let mut hb = Heartbeater::new(&p);
    hb.join(vec!["room".into()]).unwrap();
    let thread = HeartbeatThread::spawn(hb).unwrap();
    assert!(wait_until(PATIENCE, || s.count("/heartbeat") >= 1));
    // `stop` returns (how long it takes: `benches/timings.rs`) with the
    // leave that the server never answered as its error.
    let result = thread.stop();
    assert!(result.is_err(), "the leave could not complete");
    assert!(s.targets().iter().any(|t| t.contains("/leave?")));
}

/// The heartbeat thread keeps heartbeating against a server that takes
/// 600 ms to answer each one (that the schedule does not drift by it is
/// checked in virtual time: `sim_rules.rs`).
#[test]
fn heartbeat_thread_keeps_going_with_slow_responses() {
    let s = Server::start(|_| {
        thread::sleep(Duration::from_millis(600));
        ack()
    });
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("me")
        .origin(&s.origin)
        .heartbeat_interval(1)
        .build()
        .unwrap();
    let mut hb = Heartbeater::new(&p);
    hb.join(vec!["room".into()]).unwrap();
    let thread = HeartbeatThread::spawn(hb).unwrap();
    assert!(wait_until(PATIENCE, || s.count("/heartbeat") >= 4));
    assert!(thread.last_error().is_none(), "{:?}", thread.last_error());
    drop(thread);
    assert!(s.count("/leave?") >= 1, "{:?}", s.targets());
}

#[test]
fn state_change_while_running_sends_one_heartbeat_and_no_leave() {
    let s = Server::start(|_| ack());
    let p = client(&s.origin); // interval 149 s
    let mut hb = Heartbeater::new(&p);
    hb.join(vec!["room".into()]).unwrap();
    let thread = HeartbeatThread::spawn(hb).unwrap();
    let wait_for = |n: usize| {
        wait_until(PATIENCE, || s.count("/heartbeat") >= n);
    };
    wait_for(1);
    thread.set_state_json("room", r#"{"mood":"busy"}"#);
    wait_for(2);
    // The same state again, and a join of a channel already joined: nothing.
    thread.set_state_json("room", r#"{"mood":"busy"}"#);
    thread.join(vec!["room".into()]);
    thread::sleep(Duration::from_millis(500));
    let t = s.targets();
    assert_eq!(s.times("/heartbeat").len(), 2, "{t:?}");
    assert!(
        t[1].contains("state=%7B%22room%22%3A%7B%22mood%22%3A%22busy%22%7D%7D"),
        "{t:?}"
    );
    assert!(!t.iter().any(|t| t.contains("/leave")), "{t:?}");
    assert_eq!(s.connections(), 1);
    // Leaving one channel while running: a leave for it, the thread goes on.
    thread.join(vec!["hall".into()]);
    wait_for(3);
    thread.leave_channels(vec!["room".into()], vec![]);
    wait_until(PATIENCE, || s.count("/leave") >= 1);
    let leave = s
        .targets()
        .into_iter()
        .find(|t| t.contains("/leave"))
        .unwrap();
    assert!(leave.contains("/channel/room/leave"), "{leave}");
    assert!(thread.last_error().is_none());
    thread.stop().unwrap();
    assert!(s.targets().last().unwrap().contains("/channel/hall/leave"));
}

#[test]
fn heartbeater_leave_keeps_what_it_could_not_leave() {
    let fail = Arc::new(AtomicBool::new(true));
    let f = fail.clone();
    let s = Server::start(move |t| {
        if t.contains("/leave") && f.load(Ordering::SeqCst) {
            Reply::Json(
                403,
                r#"{"status":403,"error":true,"message":"Forbidden"}"#.into(),
            )
        } else {
            ack()
        }
    });
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("me")
        .origin(&s.origin)
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let mut hb = Heartbeater::new(&p);
    hb.join(vec!["a".into(), "b".into()]).unwrap();
    hb.set_state_json("a", r#"{"x":1}"#).unwrap();
    assert!(hb.leave_channels(vec!["a".into()], vec![]).is_err());
    assert_eq!(hb.channels(), ["a", "b"]);
    fail.store(false, Ordering::SeqCst);
    hb.leave_channels(vec!["a".into()], vec![]).unwrap();
    assert_eq!(hb.channels(), ["b"]);
    // The next heartbeat names only what is still joined.
    assert!(hb.poll(Duration::from_secs(2)).unwrap());
    let last = s.targets().pop().unwrap();
    assert!(
        last.contains("/channel/b/heartbeat") && !last.contains("state="),
        "{last}"
    );
}

#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::io::Read;

    /// A CA, and a server config for `localhost` signed by it.
    fn setup() -> (String, Arc<rustls::ServerConfig>) {
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
        (ca.pem(), Arc::new(config))
    }

    #[test]
    fn one_handshake_across_short_polls_and_a_trickled_response() {
        let (ca, config) = setup();
        let feed = Feed::default();
        let s = Server::start_with(Some(config), feed.handler());
        let p = PubNub::builder()
            .subscribe_key("k")
            .user_id("me")
            .origin(&s.origin)
            .root_certificate_pem(ca)
            .build()
            .unwrap();
        let mut ev = p
            .presence_events()
            .channels(vec!["room".into()])
            .open()
            .unwrap();
        for _ in 0..50 {
            assert!(ev.poll(Duration::from_millis(100)).unwrap().is_none());
        }
        assert_eq!(s.connections(), 1, "one TLS handshake");
        // A response that arrives a byte every 10 ms, read across 30 ms polls.
        feed.push(Reply::TrickleJson(
            batch(200, &[join(150, "room", "slow")]),
            Duration::from_millis(10),
        ));
        let mut polls = 0;
        let got = loop {
            polls += 1;
            if let Some(e) = ev.poll(Duration::from_millis(30)).unwrap() {
                break e;
            }
            assert!(polls < 500);
        };
        assert_eq!(user_of(&got), "slow");
        assert!(polls > 20, "assembled across {polls} polls");
        assert_eq!(s.connections(), 1);
        // Heartbeats over TLS on the loop's second connection.
        let mut hb = Heartbeater::new(&p);
        hb.join(vec!["room".into()]).unwrap();
        let mut device = PresenceLoop::new(hb, Some(ev));
        feed.push(Reply::Json(200, batch(300, &[join(250, "room", "x")])));
        let mut seen = None;
        wait_until(PATIENCE, || {
            if let Some(e) = device.poll(Duration::from_millis(50)).unwrap() {
                seen = Some(e);
            }
            seen.is_some() && device.heartbeater().last_success().is_some()
        });
        assert_eq!(user_of(&seen.unwrap()), "x");
        assert!(device.heartbeater().last_success().is_some());
        assert_eq!(s.connections(), 2, "events + heartbeats");
    }

    /// A TCP relay in front of `port` that, once `slow` is set, passes
    /// the server's bytes on one at a time, `pause` apart: a TLS record
    /// then trickles in over many socket reads.
    fn slow_relay(port: u16, slow: Arc<AtomicBool>, pause: Duration) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let relay = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                    break;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                });
                let (mut s_in, mut c_out) = (server, client);
                let slow = slow.clone();
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = match s_in.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        for chunk in
                            buf[..n].chunks(if slow.load(Ordering::SeqCst) { 1 } else { n })
                        {
                            if c_out.write_all(chunk).is_err() {
                                return;
                            }
                            if slow.load(Ordering::SeqCst) {
                                thread::sleep(pause);
                            }
                        }
                    }
                });
            }
        });
        relay
    }

    /// One TLS record arriving a byte every 10 ms is assembled across
    /// many 30 ms polls on one connection (that each poll keeps its
    /// budget: in virtual time in `sim.rs`, measured in
    /// `benches/timings.rs`).
    #[test]
    fn a_tls_record_trickling_in_does_not_overrun_the_budget() {
        let (ca, config) = setup();
        let feed = Feed::default();
        let s = Server::start_with(Some(config), feed.handler());
        let port: u16 = s.origin.rsplit(':').next().unwrap().parse().unwrap();
        let slow = Arc::new(AtomicBool::new(false));
        let relay = slow_relay(port, slow.clone(), Duration::from_millis(10));
        let p = PubNub::builder()
            .subscribe_key("k")
            .user_id("me")
            .origin(format!("https://localhost:{relay}"))
            .root_certificate_pem(ca)
            .build()
            .unwrap();
        let mut ev = p
            .presence_events()
            .channels(vec!["room".into()])
            .open()
            .unwrap();
        for _ in 0..5 {
            assert!(ev.poll(Duration::from_millis(100)).unwrap().is_none());
        }
        slow.store(true, Ordering::SeqCst);
        // The whole response goes out in one write: one TLS record of a
        // few hundred bytes, a few seconds in coming.
        feed.push(Reply::Json(200, batch(200, &[join(150, "room", "slow")])));
        let budget = Duration::from_millis(30);
        let mut polls = 0;
        let got = loop {
            polls += 1;
            if let Some(e) = ev.poll(budget).unwrap() {
                break e;
            }
            assert!(polls < 20_000, "never assembled");
        };
        assert_eq!(user_of(&got), "slow");
        assert!(polls > 20, "assembled across {polls} polls");
        assert_eq!(ev.connections_opened(), 1);
    }

    #[test]
    fn unknown_issuer_is_returned_not_retried() {
        let (_, config) = setup();
        let s = Server::start_with(Some(config), |_| ack());
        let p = client(&s.origin); // bundled roots: the test CA is unknown
        let mut ev = p
            .presence_events()
            .channels(vec!["room".into()])
            .open()
            .unwrap();
        match ev.next_event().map_err(Error::into_kind) {
            Err(ErrorKind::Transport {
                kind: TransportErrorKind::Tls,
                detail,
            }) => assert!(detail.contains("UnknownIssuer"), "{detail}"),
            other => panic!("{other:?}"),
        }
    }
}

/// A long budget on a quiet channel does not starve the heartbeats (that
/// the call also ends at its budget: `sim_rules.rs`).
#[test]
fn a_long_loop_budget_keeps_heartbeating() {
    let feed = Feed::default();
    let s = Server::start(feed.handler());
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("me")
        .origin(&s.origin)
        .heartbeat_interval(1)
        .build()
        .unwrap();
    let mut hb = Heartbeater::new(&p);
    hb.join(vec!["room".into()]).unwrap();
    let events = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    let mut device = PresenceLoop::new(hb, Some(events));
    assert!(device.poll(Duration::from_millis(3500)).unwrap().is_none());
    let beats = s.times("/heartbeat").len();
    assert!(beats >= 3, "{beats} heartbeats in one 3.5 s call");
}

/// A kept connection reset (not closed) by the server while idle: the
/// request goes out again on a new connection, with no error.
#[test]
fn a_reset_kept_connection_is_not_an_error() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let n2 = n2.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut h = String::new();
                    while reader.read_line(&mut h).unwrap_or(0) > 0 && h != "\r\n" {
                        h.clear();
                    }
                    let body = match n2.fetch_add(1, Ordering::SeqCst) {
                        0 => batch(100, &[]),
                        1 => batch(200, &[join(150, "room", "a")]),
                        // Leave the next request unread and close: the
                        // kernel answers the client with a reset.
                        2 => {
                            thread::sleep(Duration::from_millis(50));
                            drop(reader);
                            return;
                        }
                        _ => batch(300, &[join(250, "room", "b")]),
                    };
                    let msg = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(msg.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let p = client(&origin);
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    let mut got = Vec::new();
    wait_until(PATIENCE, || {
        match ev.poll(Duration::from_millis(100)) {
            Ok(Some(e)) => got.push(user_of(&e)),
            Ok(None) => {}
            Err(e) => panic!("reported as an error: {e}"),
        }
        got.len() >= 2
    });
    assert_eq!(got, ["a", "b"]);
}

/// A response head over 8 KiB that arrives in one piece is refused like
/// one that arrives in parts.
#[test]
fn a_response_head_over_8_kib_in_one_write_is_refused() {
    let s = Server::start(|t| {
        let body = if t.contains("tt=0") {
            batch(100, &[])
        } else {
            batch(200, &[join(150, "room", "a")])
        };
        Reply::Raw(
            format!(
                "HTTP/1.1 200 OK\r\nX-Pad: {}\r\nContent-Length: {}\r\n\r\n{body}",
                "p".repeat(9000),
                body.len()
            )
            .into_bytes(),
        )
    });
    let p = client(&s.origin);
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    match ev.poll(Duration::from_secs(2)).map_err(Error::into_kind) {
        Err(ErrorKind::Transport {
            kind: TransportErrorKind::Protocol,
            detail,
        }) => assert!(detail.contains("8 KiB"), "{detail}"),
        other => panic!("{other:?}"),
    }
}

/// Commands queued behind a slow one do not delay `stop`: they are
/// dropped, and the final leave covers what is still joined.
#[test]
fn heartbeat_thread_stop_does_not_wait_for_queued_commands() {
    let s = Server::start(|_| Reply::Silent);
    let p = client(&s.origin);
    let mut hb = Heartbeater::new(&p);
    hb.join((0..20).map(|i| format!("room{i}")).collect())
        .unwrap();
    let thread = HeartbeatThread::spawn(hb).unwrap();
    // Each leave of one channel may take its 2 s against this server.
    for i in 0..20 {
        thread.leave_channels(vec![format!("room{i}")], vec![]);
        thread.set_state_json(&format!("room{i}"), r#"{"a":1}"#);
    }
    assert!(wait_until(PATIENCE, || s.count("/leave?") >= 1));
    // `stop` drops the queued commands: the leave in progress and the
    // final leave, not 20 more (how long it takes: `benches/timings.rs`).
    let _ = thread.stop();
    let leaves = s.targets().iter().filter(|t| t.contains("/leave?")).count();
    assert!(leaves <= 2, "{leaves} leaves sent");
}
