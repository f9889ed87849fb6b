//! The event stream against a scripted loopback server (duplicates, a
//! dropped long-poll), and the heartbeat schedule driven by an injected clock.

mod common;

use common::{client, ok_json, Reply, Server};
use pubnub_presence::{Error, ErrorKind, Heartbeater, PresenceEvent, PubNub};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn join(tt: u64, user: &str) -> String {
    format!(
        r#"{{"a":"2","f":0,"p":{{"t":"{tt}","r":1}},"k":"k","c":"room-pnpres","d":{{"action":"join","uuid":"{user}","timestamp":1,"occupancy":1}},"b":"room-pnpres"}}"#
    )
}

fn batch(next: u64, msgs: &[String]) -> Reply {
    ok_json(&format!(
        r#"{{"t":{{"t":"{next}","r":7}},"m":[{}]}}"#,
        msgs.join(",")
    ))
}

fn user_of(e: &PresenceEvent<'_>) -> String {
    match e {
        PresenceEvent::Join(u) => u.user_id.to_string(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn subscribe_requests_and_duplicates_yielded_once() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let s = Server::start(move |_| match n2.fetch_add(1, Ordering::SeqCst) {
        0 => batch(100, &[]),
        // The same event delivered in two consecutive responses (as in the
        // 2016 recording), then a new one in the same response as a repeat.
        1 => batch(200, &[join(150, "a")]),
        2 => batch(300, &[join(150, "a"), join(250, "b")]),
        _ => Reply::Delay(Duration::from_secs(5), Box::new(batch(300, &[]))),
    });
    let p = client(&s.origin);
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .channel_groups(vec!["g".into()])
        .open()
        .unwrap();
    // The handshake's empty batch is taken in and the next long-poll sent
    // within the same wait.
    assert_eq!(
        user_of(&ev.poll(Duration::from_secs(2)).unwrap().unwrap()),
        "a"
    );
    assert_eq!(user_of(&ev.next_event().unwrap()), "b");
    let t = s.targets();
    assert_eq!(
        t[0],
        "/v2/subscribe/sub-key/room-pnpres/0?uuid=me&pnsdk=PubNub-Rust-Presence%2F0.1.0&channel-group=g-pnpres&tt=0"
    );
    assert!(t[1].ends_with("&tt=100&tr=7"), "{}", t[1]);
    assert!(t[2].ends_with("&tt=200&tr=7"), "{}", t[2]);
    assert_eq!(ev.cursor().t, 300);
    // Nothing more within a short wait: poll returns None, the cursor stays.
    assert!(ev.poll(Duration::from_millis(200)).unwrap().is_none());
    assert_eq!(ev.cursor().t, 300);
}

#[test]
fn dropped_long_poll_resumes_from_the_cursor() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let s = Server::start(move |_| match n2.fetch_add(1, Ordering::SeqCst) {
        0 => batch(100, &[]),
        1 => batch(200, &[join(150, "a")]),
        2 => Reply::Close, // connection dropped mid-poll
        3 => Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"t\":".to_vec()), // reset mid-body
        4 => batch(300, &[join(250, "b")]),
        _ => Reply::Delay(Duration::from_secs(5), Box::new(batch(300, &[]))),
    });
    let p = client(&s.origin);
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    let got: Vec<String> = (0..2).map(|_| user_of(&ev.next_event().unwrap())).collect();
    assert_eq!(got, ["a", "b"], "nothing lost, nothing repeated");
    let t = s.targets();
    // Both failed polls and the retry asked for the same cursor.
    for target in &t[2..5] {
        assert!(target.ends_with("&tt=200&tr=7"), "{target}");
    }
    // The close of a kept connection before any answer is taken for an
    // idle close and the request sent again at once; the reset mid-body
    // is a failure, followed by a 0.5 s backoff (both with the same
    // cursor, above; the backoff schedule itself is checked in virtual
    // time in `sim_rules.rs`).
}

#[test]
fn server_errors_end_next_event() {
    let s = Server::start(|_| {
        Reply::Json(
            403,
            r#"{"message":"Forbidden","payload":{"channels":["room-pnpres"]},"error":true,"service":"Access Manager","status":403}"#.into(),
        )
    });
    let p = client(&s.origin);
    let mut ev = p
        .presence_events()
        .channels(vec!["room".into()])
        .open()
        .unwrap();
    match ev.next_event().map_err(Error::into_kind) {
        Err(ErrorKind::Server(e)) => assert_eq!(e.channels, ["room-pnpres"]),
        other => panic!("{other:?}"),
    }
}

fn hb_server(fail: Arc<AtomicUsize>) -> Server {
    Server::start(move |t| {
        if fail.load(Ordering::SeqCst) > 0 {
            fail.fetch_sub(1, Ordering::SeqCst);
            return Reply::Json(500, "{}".into());
        }
        if t.contains("/leave?") {
            ok_json(r#"{"status": 200, "action": "leave", "message": "OK", "service": "Presence"}"#)
        } else {
            ok_json(r#"{"status": 200, "message": "OK", "service": "Presence"}"#)
        }
    })
}

#[test]
fn heartbeat_schedule_with_an_injected_clock() {
    let fail = Arc::new(AtomicUsize::new(0));
    let s = hb_server(fail.clone());
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("dev")
        .origin(&s.origin)
        .presence_timeout(60) // interval 29 s
        .retry_policy(pubnub_presence::RetryPolicy::none())
        .build()
        .unwrap();
    let mut hb = Heartbeater::new(&p);
    let t0 = Instant::now();
    assert_eq!(hb.next_due(t0), None, "nothing joined");
    assert!(!hb.tick(t0).unwrap());
    hb.join(vec!["a".into()]).unwrap();
    hb.join_groups(vec!["g".into()]).unwrap();
    hb.set_state_json("a", r#"{"k":1}"#).unwrap();
    assert!(hb.tick(t0).unwrap(), "first tick sends at once");
    assert_eq!(hb.next_due(t0), Some(t0 + Duration::from_secs(29)));
    assert!(!hb.tick(t0 + Duration::from_secs(28)).unwrap());
    assert!(hb.tick(t0 + Duration::from_secs(29)).unwrap());
    // A failure is reported and retried at the next tick.
    fail.store(1, Ordering::SeqCst);
    let t2 = t0 + Duration::from_secs(58);
    assert!(hb.tick(t2).is_err());
    assert!(hb.tick(t2 + Duration::from_secs(1)).unwrap());
    let targets = s.targets();
    assert_eq!(targets.len(), 4);
    let state = "state=%7B%22a%22%3A%7B%22k%22%3A1%7D%7D";
    for t in &targets {
        assert!(
            t.starts_with("/v2/presence/sub-key/k/channel/a/heartbeat?"),
            "{t}"
        );
        assert!(
            t.contains("channel-group=g") && t.contains("heartbeat=60") && t.contains(state),
            "{t}"
        );
    }
    hb.leave().unwrap();
    assert!(s
        .last_target()
        .starts_with("/v2/presence/sub-key/k/channel/a/leave?"));
    assert_eq!(hb.next_due(t2), None);
    assert!(hb.set_state_json("a", "[1]").is_err());
    assert!(hb.join(vec!["x,y".into()]).is_err());
}

#[test]
fn interval_zero_sends_nothing_on_its_own() {
    let s = hb_server(Arc::new(AtomicUsize::new(0)));
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("dev")
        .origin(&s.origin)
        .heartbeat_interval(0)
        .build()
        .unwrap();
    let mut hb = Heartbeater::new(&p);
    hb.join(vec!["a".into()]).unwrap();
    let t0 = Instant::now();
    assert_eq!(hb.next_due(t0), None);
    for secs in [0, 100, 10_000] {
        assert!(!hb.tick(t0 + Duration::from_secs(secs)).unwrap());
    }
    assert!(s.targets().is_empty());
    // An explicit heartbeat still works.
    hb.heartbeat_now(t0).unwrap();
    assert_eq!(s.targets().len(), 1);
    assert_eq!(hb.next_due(t0), None);
}

#[test]
fn heartbeat_thread_leaves_on_drop() {
    let s = hb_server(Arc::new(AtomicUsize::new(0)));
    let p = client(&s.origin);
    let mut hb = Heartbeater::new(&p);
    hb.join(vec!["a".into()]).unwrap();
    let thread = pubnub_presence::HeartbeatThread::spawn(hb).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.targets().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(thread.last_error().is_none());
    drop(thread);
    let t = s.targets();
    assert!(t[0].contains("/heartbeat?"), "{t:?}");
    assert!(t.last().unwrap().contains("/leave?"), "{t:?}");
}
