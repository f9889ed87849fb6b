//! The device loop on real networks (issue 19): a server that answers
//! long-polls at once with nothing new is backed off, outages are
//! reported and said by `link_state()`, a long-poll stuck on a dead
//! connection is restarted when the heartbeats come back, and a
//! long-poll that never completes is given up at its total bound.

mod common;

use common::{ok_json, Reply, Server};
use pubnub_presence::{Heartbeater, LinkState, PresenceEvent, PresenceLoop, PubNub};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn client(origin: &str, request_timeout: Duration) -> PubNub {
    PubNub::builder()
        .subscribe_key("sub-key")
        .user_id("me")
        .origin(origin)
        .request_timeout(request_timeout)
        .build()
        .unwrap()
}

/// How many requests a stream backed off from 0.5 s doubling can send
/// in `elapsed`: the handshake, then one at 0, 0.5, 1.5, 3.5, 7.5 s…
/// The backoff is a least wait, so a loaded machine only sends fewer.
fn backed_off_at_most(elapsed: Duration) -> usize {
    let (mut at, mut wait, mut n) = (Duration::ZERO, Duration::from_millis(500), 1);
    while at <= elapsed {
        n += 1;
        at += wait;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
    n
}

/// A server answering every long-poll at once with an empty batch at the
/// same cursor got 47,774 requests in 10 s: it is backed off now, and
/// every poll is still `Ok(None)` (no error: the server answers).
#[test]
fn empty_batches_answered_at_once_are_backed_off() {
    let server = common::empty_batches_at_once(100);
    let pubnub = client(&server.origin, Duration::from_secs(5));
    let mut events = pubnub
        .presence_events()
        .channels(vec!["lobby".into()])
        .open()
        .unwrap();
    let started = Instant::now();
    for _ in 0..30 {
        assert_eq!(events.poll(Duration::from_millis(100)).unwrap(), None);
    }
    let elapsed = started.elapsed();
    let seen = server.subscribes();
    assert!(seen >= 2, "the handshake and a long-poll: {seen}");
    // An answer read a second or more after its request counts as held
    // (on a machine so loaded that loopback takes that long): then at
    // most one request a second.
    let allowed = backed_off_at_most(elapsed).max(elapsed.as_secs() as usize + 2);
    assert!(seen <= allowed, "{seen} subscribe requests in {elapsed:?}");
    assert!(
        events.link_state().is_connected(),
        "{:?}",
        events.link_state()
    );
    assert_eq!(events.gaps(), 0, "backing off an idle server is not a gap");
}

/// A failure is returned once; a poll during the backoff is `Ok(None)`,
/// and `link_state()` says `Reconnecting` with the error and the next
/// attempt; back to `Connected` once the server answers.
#[test]
fn link_state_says_reconnecting_during_a_backoff() {
    let down = Arc::new(AtomicBool::new(true));
    let is_down = down.clone();
    let server = Server::start(move |target| {
        if is_down.load(Ordering::SeqCst) {
            return Reply::Json(503, r#"{"error":true,"status":503,"message":"x"}"#.into());
        }
        if target.contains("tt=0") {
            return ok_json(&common::empty_batch(100));
        }
        Reply::Delay(
            Duration::from_secs(2),
            Box::new(ok_json(&common::empty_batch(100))),
        )
    });
    let pubnub = client(&server.origin, Duration::from_secs(5));
    let mut events = pubnub
        .presence_events()
        .channels(vec!["lobby".into()])
        .open()
        .unwrap();
    assert_eq!(events.link_state(), LinkState::Connecting);
    let end = Instant::now() + Duration::from_secs(10);
    let e = loop {
        match events.poll(Duration::from_millis(100)) {
            Err(e) => break e,
            Ok(None) if Instant::now() < end => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(e.status(), Some(503));
    match events.link_state() {
        LinkState::Reconnecting {
            failures,
            last_error,
            next_attempt,
            ..
        } => {
            assert_eq!(failures, 1);
            assert_eq!(last_error, e);
            assert!(next_attempt.is_some());
        }
        other => panic!("{other:?}"),
    }
    // During the backoff (0.5 s) a poll is `Ok(None)`; the state still
    // says why (a poll after the backoff fails again: still reconnecting).
    if let Ok(got) = events.poll(Duration::from_millis(10)) {
        assert_eq!(got, None);
    }
    assert!(
        matches!(events.link_state(), LinkState::Reconnecting { .. }),
        "{:?}",
        events.link_state()
    );
    down.store(false, Ordering::SeqCst);
    let end = Instant::now() + Duration::from_secs(20);
    while !events.link_state().is_connected() && Instant::now() < end {
        let _ = events.poll(Duration::from_millis(100));
    }
    assert!(
        events.link_state().is_connected(),
        "{:?}",
        events.link_state()
    );
}

/// The long-poll sits on a connection the server never answers (a path
/// that dropped it silently) while heartbeats fail; once a heartbeat is
/// answered again, the long-poll is sent again from its cursor at once,
/// and its event arrives (before the fix: only after its 60 s silence
/// bound). Heartbeats fail until the first long-poll is in, so the
/// order does not depend on timing.
#[test]
fn heartbeats_back_restart_a_stuck_long_poll() {
    let long_polls = Arc::new(AtomicUsize::new(0));
    let polls = long_polls.clone();
    // Heartbeats fail until the first long-poll is in and two have failed
    // (on a loaded machine the first heartbeat can reach the server after
    // the long-poll: it must fail all the same).
    let failed_heartbeats = Arc::new(AtomicUsize::new(0));
    let server = Server::start(move |target| {
        if target.contains("/v2/subscribe/") {
            if target.contains("tt=0") {
                return ok_json(&common::empty_batch(100));
            }
            return match polls.fetch_add(1, Ordering::SeqCst) {
                // Never answered (the connection is dead to the client).
                0 => Reply::Delay(Duration::from_secs(120), Box::new(Reply::Close)),
                _ => ok_json(
                    r#"{"t":{"t":"101","r":1},"m":[{"p":{"t":"101"},"c":"lobby-pnpres","d":{"action":"join","uuid":"bob","occupancy":2,"timestamp":1}}]}"#,
                ),
            };
        }
        if target.contains("/heartbeat")
            && (polls.load(Ordering::SeqCst) == 0 || failed_heartbeats.load(Ordering::SeqCst) < 2)
        {
            failed_heartbeats.fetch_add(1, Ordering::SeqCst);
            return Reply::Json(503, r#"{"error":true,"status":503,"message":"x"}"#.into());
        }
        ok_json(r#"{"status":200,"message":"OK","service":"Presence"}"#)
    });
    let pubnub = client(&server.origin, Duration::from_secs(5));
    let mut online = Heartbeater::new(&pubnub);
    online.join(vec!["lobby".into()]).unwrap();
    let events = pubnub
        .presence_events()
        .channels(vec!["lobby".into()])
        .long_poll_timeout(Duration::from_secs(60))
        .open()
        .unwrap();
    let mut device = PresenceLoop::new(online, Some(events));
    let mut errors = 0;
    let mut got = None;
    let end = Instant::now() + Duration::from_secs(30);
    while got.is_none() && Instant::now() < end {
        match device.poll(Duration::from_millis(100)) {
            Ok(Some(e)) => got = Some(e),
            Ok(None) => {}
            Err(_) => errors += 1,
        }
    }
    match got {
        Some(PresenceEvent::Join(e)) => assert_eq!(e.user_id, "bob"),
        other => panic!("{other:?} after {errors} errors"),
    }
    assert!(errors >= 1, "the failed heartbeats were reported");
    assert_eq!(long_polls.load(Ordering::SeqCst), 2);
    assert!(device.heartbeater().is_present(Instant::now()));
    assert!(
        device.link_state().is_connected(),
        "{:?}",
        device.link_state()
    );
}

/// A long-poll answer that trickles in (a byte every 100 ms, so the
/// silence bound never trips) is given up at `long_poll_timeout` +
/// `request_timeout` in all: the outage is reported as a retryable
/// timeout, not an endless run of `Ok(None)`.
#[test]
fn a_trickling_long_poll_is_reported_at_its_total_bound() {
    let server = Server::start(move |target| {
        if target.contains("tt=0") {
            return ok_json(&common::empty_batch(100));
        }
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        head.extend(std::iter::repeat_n(b'x', 400));
        Reply::Trickle(head, Duration::from_millis(100))
    });
    let pubnub = client(&server.origin, Duration::from_secs(1));
    let mut events = pubnub
        .presence_events()
        .channels(vec!["lobby".into()])
        .long_poll_timeout(Duration::from_secs(1))
        .open()
        .unwrap();
    // The trickle lasts 40 s; the bound is 2 s.
    let end = Instant::now() + Duration::from_secs(30);
    let error = loop {
        match events.poll(Duration::from_millis(100)) {
            Err(e) => break e,
            Ok(_) if Instant::now() < end => {}
            Ok(_) => panic!("no error while the answer trickled"),
        }
    };
    assert!(error.is_retryable(), "{error}");
    assert!(
        matches!(events.link_state(), LinkState::Reconnecting { .. }),
        "{:?}",
        events.link_state()
    );
}

/// The mirror's here_now sits on a connection the server never answers
/// while heartbeats fail; once a heartbeat is answered again, the page
/// is sent again at once on a new connection (before the fix: only after
/// its 30 s silence bound), and `link_state()` shows the here_now side.
#[test]
fn heartbeats_back_resend_a_stuck_here_now() {
    let here_nows = Arc::new(AtomicUsize::new(0));
    let count = here_nows.clone();
    // As above: heartbeats fail until the here_now is in and two failed.
    let failed_heartbeats = Arc::new(AtomicUsize::new(0));
    let server = Server::start(move |target| {
        if target.contains("/v2/subscribe/") {
            if target.contains("tt=0") {
                return ok_json(&common::empty_batch(100));
            }
            return Reply::Delay(
                Duration::from_secs(120),
                Box::new(ok_json(&common::empty_batch(100))),
            );
        }
        if target.contains("/heartbeat") {
            if count.load(Ordering::SeqCst) == 0 || failed_heartbeats.load(Ordering::SeqCst) < 2 {
                failed_heartbeats.fetch_add(1, Ordering::SeqCst);
                return Reply::Json(503, r#"{"error":true,"status":503,"message":"x"}"#.into());
            }
            return ok_json(r#"{"status":200,"message":"OK","service":"Presence"}"#);
        }
        match count.fetch_add(1, Ordering::SeqCst) {
            0 => Reply::Delay(Duration::from_secs(120), Box::new(Reply::Close)),
            _ => ok_json(
                r#"{"message":"OK","occupancy":1,"service":"Presence","status":200,"uuids":["x"]}"#,
            ),
        }
    });
    let pubnub = client(&server.origin, Duration::from_secs(30));
    let mut online = Heartbeater::new(&pubnub);
    online.join(vec!["lobby".into()]).unwrap();
    let mut m = pubnub
        .occupancy()
        .channels(vec!["lobby".into()])
        .heartbeater(online)
        .resync_delay(Duration::ZERO)
        .open()
        .unwrap();
    let mut errors = 0;
    let end = Instant::now() + Duration::from_secs(20);
    while !m.is_synced() && Instant::now() < end {
        if m.poll(Duration::from_millis(100)).is_err() {
            errors += 1;
        }
    }
    assert!(m.is_present("lobby", "x"), "{errors} errors");
    // The stuck one, the one sent again, and the re-sync for the
    // long-poll's new connection (a gap to the mirror).
    assert!(here_nows.load(Ordering::SeqCst) >= 2);
    assert!(m.link_state().is_connected(), "{:?}", m.link_state());
}
