//! End-to-end: every client call against the local presence server.
#![cfg(feature = "emulator")]

use pubnub_presence::emulator::{Options, Server, ServerHandle};
use pubnub_presence::state::state_json;
use pubnub_presence::{PresenceEvent, PubNub};
use std::io::{Read, Write};
use std::time::Duration;

fn client(server: &ServerHandle, user: &str) -> PubNub {
    PubNub::builder()
        .subscribe_key("demo")
        .user_id(user)
        .origin(server.origin())
        .build()
        .unwrap()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn presence_calls_end_to_end() {
    let server = Server::start("127.0.0.1:0").unwrap();
    let alice = client(&server, "alice");
    let bob = client(&server, "bob");
    alice
        .heartbeat()
        .channels(names(&["lobby", "kitchen"]))
        .state_json(r#"{"lobby":{"mood":"happy"}}"#)
        .execute()
        .unwrap();
    bob.heartbeat()
        .channels(names(&["lobby"]))
        .execute()
        .unwrap();

    // Flat shape, with state.
    let here = alice
        .here_now()
        .channels(names(&["lobby"]))
        .include_state(true)
        .execute()
        .unwrap();
    assert_eq!(here.total_occupancy, 2);
    let lobby = &here.channels[0];
    assert_eq!(lobby.name, "lobby");
    let users: Vec<(&str, String)> = lobby
        .occupants
        .iter()
        .map(|u| (u.user_id.as_ref(), state_json(&u.state).into_owned()))
        .collect();
    assert_eq!(
        users,
        [
            ("alice", r#"{"mood":"happy"}"#.to_string()),
            ("bob", "null".to_string())
        ]
    );

    // Payload shape, without user ids.
    let here = alice
        .here_now()
        .channels(names(&["lobby", "kitchen", "empty"]))
        .include_user_ids(false)
        .execute()
        .unwrap();
    assert_eq!((here.total_channels, here.total_occupancy), (2, 3));
    assert!(here.channels.iter().all(|c| c.occupants.is_empty()));

    // Groups.
    server.add_to_group("demo", "house", &["kitchen", "garage"]);
    let here = alice
        .here_now()
        .channel_groups(names(&["house"]))
        .execute()
        .unwrap();
    assert_eq!(here.channels.len(), 1);
    assert_eq!(here.channels[0].name, "kitchen");
    assert_eq!(here.channels[0].occupants[0].user_id, "alice");

    // Global.
    let global = bob.global_here_now().execute().unwrap();
    assert_eq!(global.total_channels, 2);

    // where_now.
    let mut chans = alice.where_now().execute().unwrap().channels;
    chans.sort();
    assert_eq!(chans, ["kitchen", "lobby"]);
    assert_eq!(
        bob.where_now()
            .user_id("alice")
            .execute()
            .unwrap()
            .channels
            .len(),
        2
    );

    // State round trip, both shapes.
    #[cfg(not(feature = "serde"))]
    let state = {
        let mut o = miniserde::json::Object::new();
        o.insert(
            "battery".into(),
            miniserde::json::Value::Number(miniserde::json::Number::U64(87)),
        );
        o
    };
    #[cfg(feature = "serde")]
    let state = serde_json::json!({"battery": 87});
    let set = bob
        .set_presence_state(&state)
        .channels(names(&["lobby"]))
        .execute()
        .unwrap();
    assert_eq!(state_json(&set.state), r#"{"battery":87}"#);
    let got = alice
        .get_presence_state()
        .channels(names(&["lobby"]))
        .user_id("bob")
        .execute()
        .unwrap();
    assert_eq!(got.state.len(), 1);
    assert_eq!(state_json(&got.state[0].state), r#"{"battery":87}"#);
    let got = bob
        .get_presence_state()
        .channels(names(&["lobby", "kitchen"]))
        .execute()
        .unwrap();
    assert_eq!(got.state.len(), 2);

    // Leave drops presence and state.
    bob.leave().channels(names(&["lobby"])).execute().unwrap();
    let here = alice
        .here_now()
        .channels(names(&["lobby"]))
        .execute()
        .unwrap();
    assert_eq!(here.total_occupancy, 1);
    let got = bob
        .get_presence_state()
        .channels(names(&["lobby"]))
        .execute()
        .unwrap();
    assert_eq!(state_json(&got.state[0].state), "{}");

    // Expiry with the test clock: alice's default timeout is 300 s.
    server.advance(Duration::from_secs(299));
    assert_eq!(alice.where_now().execute().unwrap().channels.len(), 2);
    server.advance(Duration::from_secs(2));
    assert!(alice.where_now().execute().unwrap().channels.is_empty());
}

#[test]
fn events_in_order_join_state_leave_timeout() {
    let server = Server::start_with(
        "127.0.0.1:0",
        Options {
            long_poll_hold: Duration::from_secs(2),
            ..Options::default()
        },
    )
    .unwrap();
    let watcher = client(&server, "watcher");
    let device = client(&server, "device");
    let other = PubNub::builder()
        .subscribe_key("demo")
        .user_id("other")
        .origin(server.origin())
        .presence_timeout(20)
        .build()
        .unwrap();
    let mut events = watcher
        .presence_events()
        .channels(names(&["room"]))
        .open()
        .unwrap();
    // Handshake: nothing yet.
    assert!(events.poll(Duration::from_millis(500)).unwrap().is_none());

    device
        .heartbeat()
        .channels(names(&["room"]))
        .execute()
        .unwrap();
    device
        .heartbeat()
        .channels(names(&["room"]))
        .state_json(r#"{"room":{"t":21}}"#)
        .execute()
        .unwrap();
    device.leave().channels(names(&["room"])).execute().unwrap();
    other
        .heartbeat()
        .channels(names(&["room"]))
        .execute()
        .unwrap();
    server.advance(Duration::from_secs(21));

    let mut seen = Vec::new();
    while seen.len() < 5 {
        let e = events
            .poll(Duration::from_secs(3))
            .unwrap()
            .expect("an event within the hold");
        seen.push(e);
    }
    let summary: Vec<String> = seen
        .iter()
        .map(|e| match e {
            PresenceEvent::Join(u) => format!("join {} {}", u.user_id, u.occupancy),
            PresenceEvent::Leave(u) => format!("leave {} {}", u.user_id, u.occupancy),
            PresenceEvent::Timeout(u) => format!("timeout {} {}", u.user_id, u.occupancy),
            PresenceEvent::StateChange(u) => format!(
                "state {} {}",
                u.user_id,
                u.state
                    .as_ref()
                    .map(|s| state_json(s).into_owned())
                    .unwrap_or_default()
            ),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "join device 1",
            r#"state device {"t":21}"#,
            "leave device 0",
            "join other 1",
            "timeout other 0"
        ]
    );
}

#[test]
fn events_through_a_group_name_the_subscription() {
    let server = Server::start("127.0.0.1:0").unwrap();
    server.add_to_group("demo", "house", &["kitchen"]);
    let watcher = client(&server, "w");
    let mut events = watcher
        .presence_events()
        .channel_groups(names(&["house"]))
        .open()
        .unwrap();
    assert!(events.poll(Duration::from_millis(300)).unwrap().is_none());
    client(&server, "cook")
        .heartbeat()
        .channels(names(&["kitchen"]))
        .execute()
        .unwrap();
    match events.poll(Duration::from_secs(3)).unwrap() {
        Some(PresenceEvent::Join(u)) => {
            assert_eq!(u.channel, "kitchen");
            assert_eq!(u.subscription.as_deref(), Some("house"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn interval_events_above_the_announce_threshold() {
    let server = Server::start_with(
        "127.0.0.1:0",
        Options {
            announce_max: 2,
            interval_secs: 10,
            ..Options::default()
        },
    )
    .unwrap();
    let watcher = client(&server, "w");
    let mut events = watcher
        .presence_events()
        .channels(names(&["busy"]))
        .open()
        .unwrap();
    assert!(events.poll(Duration::from_millis(300)).unwrap().is_none());
    for u in ["a", "b", "c", "d"] {
        client(&server, u)
            .heartbeat()
            .channels(names(&["busy"]))
            .execute()
            .unwrap();
    }
    server.advance(Duration::from_secs(11));
    let mut got = Vec::new();
    while got.len() < 3 {
        got.push(events.poll(Duration::from_secs(3)).unwrap().expect("event"));
    }
    match &got[2] {
        PresenceEvent::Interval(i) => {
            assert_eq!(i.occupancy, 4);
            assert_eq!(i.join, ["c", "d"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn access_control_and_errors() {
    let server = Server::start_with(
        "127.0.0.1:0",
        Options {
            auth_keys: vec!["good".into()],
            ..Options::default()
        },
    )
    .unwrap();
    let bad = PubNub::builder()
        .subscribe_key("demo")
        .user_id("u")
        .origin(server.origin())
        .auth_key("bad")
        .build()
        .unwrap();
    let e = bad
        .here_now()
        .channels(names(&["a"]))
        .channel_groups(names(&["g"]))
        .execute()
        .unwrap_err();
    let Some(e) = e.server() else { panic!("{e:?}") };
    assert_eq!((e.status, e.service.as_str()), (403, "Access Manager"));
    assert_eq!(e.channels, ["a"]);
    assert_eq!(e.channel_groups, [":g"]);
    let good = PubNub::builder()
        .subscribe_key("demo")
        .user_id("u")
        .origin(server.origin())
        .auth_key("good")
        .build()
        .unwrap();
    good.heartbeat().channels(names(&["a"])).execute().unwrap();
}

/// Sends raw bytes, returns the status code of the answer.
fn raw(server: &ServerHandle, bytes: &[u8]) -> u16 {
    let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn bad_requests_get_http_errors_and_the_server_keeps_serving() {
    let server = Server::start("127.0.0.1:0").unwrap();
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let cases: [(&[u8], u16); 6] = [
        (b"garbage\r\n\r\n", 400),
        // An over-long head: the front end's 414 (docs/PROTOCOL.md §2).
        (huge.as_bytes(), 414),
        (b"POST /time/0 HTTP/1.1\r\n\r\n", 405),
        (b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n", 404),
        (
            b"GET /v2/presence/sub-key/demo/channel/a/uuid/u/data?uuid=u&state=%7Bnope HTTP/1.1\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /v2/presence/sub-key/demo/channel/a/uuid/u/data?uuid=u&state=%5B1%5D HTTP/1.1\r\nConnection: close\r\n\r\n",
            400,
        ),
    ];
    for (req, want) in cases {
        assert_eq!(
            raw(&server, req),
            want,
            "{}",
            String::from_utf8_lossy(&req[..20.min(req.len())])
        );
    }
    // Still serving.
    let c = client(&server, "u");
    c.heartbeat().channels(names(&["a"])).execute().unwrap();
    assert_eq!(c.where_now().execute().unwrap().channels, ["a"]);
    // The client sees the 400 body as a server error.
    let e = c
        .heartbeat()
        .channels(names(&["a"]))
        .state_json(r#"{"a":{"x":1}}"#)
        .execute();
    assert!(e.is_ok());
}

#[test]
fn sub_key_underscore_spelling() {
    let server = Server::start("127.0.0.1:0").unwrap();
    assert_eq!(
        raw(
            &server,
            b"GET /v2/presence/sub_key/demo/channel/a/leave?uuid=u HTTP/1.1\r\nConnection: close\r\n\r\n"
        ),
        200
    );
}

#[cfg(feature = "tls")]
#[test]
fn signed_requests_verify_and_bad_ones_are_refused() {
    use pubnub_presence::{Error, ErrorKind};
    let server = Server::start_with(
        "127.0.0.1:0",
        Options {
            secret_key: Some("sec-c-test".into()),
            publish_key: "pub-c-test".into(),
            ..Options::default()
        },
    )
    .unwrap();
    let make = |secret: Option<&str>| {
        let b = PubNub::builder()
            .subscribe_key("demo")
            .publish_key("pub-c-test")
            .user_id("signed user")
            .origin(server.origin());
        match secret {
            Some(s) => b.secret_key(s),
            None => b,
        }
        .build()
        .unwrap()
    };
    let good = make(Some("sec-c-test"));
    good.heartbeat()
        .channels(names(&["a b", "é"]))
        .channel_groups(names(&["g"]))
        .state_json(r#"{"a b":{"x":"~!*'()"}}"#)
        .execute()
        .unwrap();
    assert_eq!(good.where_now().execute().unwrap().channels.len(), 2);
    for bad in [make(Some("wrong")), make(None)] {
        match bad.where_now().execute().map_err(Error::into_kind) {
            Err(ErrorKind::Server(e)) => {
                assert_eq!(e.status, 403);
                assert_eq!(e.message, "Signature does not match");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn connection_and_long_poll_caps() {
    // No long-poll slots at all: a subscribe with a cursor is refused at once.
    let server = Server::start_with(
        "127.0.0.1:0",
        Options {
            max_connections: 1,
            max_waiters: 0,
            ..Options::default()
        },
    )
    .unwrap();
    let addr = server.local_addr();
    let open = || {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    let mut first = open();
    first
        .write_all(b"GET /v2/subscribe/demo/a-pnpres/0?uuid=u&tt=1 HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let n = first.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    // Answered, not held as a long-poll (the read would time out at 5 s).
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    // That answer proves the first connection is counted (it stays open,
    // kept alive); a second connection is over the cap: 503, then closed.
    let mut second = open();
    let mut out = String::new();
    second.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(out.contains("Too many connections"), "{out}");
    // The first connection still works.
    first
        .write_all(
            b"GET /v2/presence/sub-key/demo/uuid/u?uuid=u HTTP/1.1\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut out = String::new();
    first.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

mod routing_properties {
    use proptest::prelude::*;
    use pubnub_presence::emulator::fuzz_request;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Any request line and query reach the router without a panic.
        #[test]
        fn router_never_panics(
            path in "(/[a-z_\\-%0-9,.~]{0,12}){0,9}",
            query in "[a-z_\\-=&%0-9A-F{}\\[\\]\":,]{0,60}",
        ) {
            let req = format!("GET {path}?{query} HTTP/1.1\r\n\r\n");
            fuzz_request(req.as_bytes());
            let presence = format!("GET /v2/presence/sub-key/k{path}?uuid=u&{query} HTTP/1.1\r\n\r\n");
            fuzz_request(presence.as_bytes());
            let subscribe = format!("GET /v2/subscribe/k/a-pnpres/0?uuid=u&tt=1&{query} HTTP/1.1\r\n\r\n");
            fuzz_request(subscribe.as_bytes());
        }

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            fuzz_request(&bytes);
        }
    }
}

#[test]
fn a_full_presence_store_answers_503_and_recovers() {
    let server = Server::start_with(
        "127.0.0.1:0",
        Options {
            max_entries: 2,
            ..Options::default()
        },
    )
    .unwrap();
    let quick = |user: &str| {
        PubNub::builder()
            .subscribe_key("demo")
            .user_id(user)
            .origin(server.origin())
            .retry_policy(pubnub_presence::RetryPolicy::none())
            .build()
            .unwrap()
    };
    let (a, b, c) = (quick("a"), quick("b"), quick("c"));
    a.heartbeat().channels(names(&["x"])).execute().unwrap();
    b.heartbeat().channels(names(&["x"])).execute().unwrap();
    let e = c.heartbeat().channels(names(&["x"])).execute().unwrap_err();
    assert_eq!(e.status(), Some(503));
    // Refreshing an existing presence still works; a leave makes room.
    a.heartbeat().channels(names(&["x"])).execute().unwrap();
    b.leave().channels(names(&["x"])).execute().unwrap();
    c.heartbeat().channels(names(&["x"])).execute().unwrap();
    let here = a.here_now().channels(names(&["x"])).execute().unwrap();
    assert_eq!(here.total_occupancy, 2);
}

#[test]
fn channel_groups_are_capped() {
    let server = Server::start("127.0.0.1:0").unwrap();
    let add = |from: usize, to: usize| {
        let list: Vec<String> = (from..to).map(|i| format!("c{i:04}")).collect();
        let req = format!(
            "GET /v1/channel-registration/sub-key/demo/channel-group/g?add={}&uuid=u HTTP/1.1\r\nConnection: close\r\n\r\n",
            list.join(",")
        );
        raw(&server, req.as_bytes())
    };
    assert_eq!(add(0, 1000), 200);
    assert_eq!(add(1000, 2000), 200);
    assert_eq!(add(0, 10), 200, "re-adding members adds nothing");
    assert_eq!(add(2000, 2001), 400, "the 2,001st channel is refused");
}

/// One keep-alive connection for many raw requests: returns each status.
struct Conn(std::io::BufReader<std::net::TcpStream>);

impl Conn {
    fn open(server: &ServerHandle) -> Conn {
        let s = std::net::TcpStream::connect(server.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Conn(std::io::BufReader::new(s))
    }

    fn get(&mut self, target: &str) -> u16 {
        use std::io::BufRead;
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        self.0.get_mut().write_all(req.as_bytes()).unwrap();
        let mut status = String::new();
        self.0.read_line(&mut status).unwrap();
        let mut length = 0;
        loop {
            let mut h = String::new();
            self.0.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.0.read_exact(&mut body).unwrap();
        status.split(' ').nth(1).unwrap().parse().unwrap()
    }
}

/// Issue 12: 100,000 heartbeats to one-off keys grew the server by about
/// 2.4 KB per dead keyset, because keysets were never freed. Now a keyset
/// goes with its last user, and a channel-group removal on an unknown
/// keyset creates nothing.
#[test]
fn one_off_keysets_that_time_out_leave_nothing_stored() {
    let server = Server::start("127.0.0.1:0").unwrap();
    let mut conn = Conn::open(&server);
    const N: usize = 2_000;
    for i in 0..N {
        let hb = format!(
            "/v2/presence/sub-key/one-off-{i}/channel/c{i}/heartbeat?uuid=u{i}&heartbeat=300"
        );
        assert_eq!(conn.get(&hb), 200);
        let rm =
            format!("/v1/channel-registration/sub-key/ghost-{i}/channel-group/g/remove?uuid=u");
        assert_eq!(conn.get(&rm), 200);
    }
    assert_eq!(server.keysets_stored(), N);
    assert_eq!(server.entries_stored(), N);
    server.advance(Duration::from_secs(301));
    assert_eq!(
        server.keysets_stored(),
        0,
        "every keyset went with its user"
    );
    assert_eq!(server.entries_stored(), 0);
    // A group emptied by its last removal goes too, and its keyset with it.
    let base = "/v1/channel-registration/sub-key/g-only/channel-group/g";
    assert_eq!(conn.get(&format!("{base}?add=a,b&uuid=u")), 200);
    assert_eq!(server.keysets_stored(), 1);
    assert_eq!(conn.get(&format!("{base}?remove=a,b&uuid=u")), 200);
    assert_eq!(server.keysets_stored(), 0);
}

#[test]
fn keysets_are_capped() {
    let server = Server::start_with(
        "127.0.0.1:0",
        Options {
            max_keysets: 3,
            ..Options::default()
        },
    )
    .unwrap();
    let mut conn = Conn::open(&server);
    let hb = |k: &str| format!("/v2/presence/sub-key/{k}/channel/c/heartbeat?uuid=u");
    for k in ["k1", "k2", "k3"] {
        assert_eq!(conn.get(&hb(k)), 200);
    }
    assert_eq!(conn.get(&hb("k4")), 503, "a fourth keyset is refused");
    assert_eq!(
        conn.get("/v2/presence/sub-key/k4/channel/c/uuid/u/data?uuid=u&state=%7B%7D"),
        503
    );
    assert_eq!(
        conn.get("/v1/channel-registration/sub-key/k4/channel-group/g?add=c&uuid=u"),
        503
    );
    assert_eq!(conn.get(&hb("k1")), 200, "an existing keyset still works");
    assert_eq!(
        conn.get("/v2/presence/sub-key/k1/channel/c/leave?uuid=u"),
        200
    );
    assert_eq!(conn.get(&hb("k4")), 200, "a leave made room");
    assert_eq!(server.keysets_stored(), 3);
}

/// Settings at the edges of their types (user input) neither overflow nor
/// hang: a clock advanced past u64 milliseconds, a hold longer than
/// `Instant` can add, and a sweep interval of `Duration::MAX`.
#[test]
fn extreme_clock_and_options_do_not_overflow() {
    let server = Server::start_with(
        "127.0.0.1:0",
        Options {
            long_poll_hold: Duration::MAX,
            sweep_every: Duration::MAX,
            interval_secs: u64::MAX,
            ..Options::default()
        },
    )
    .unwrap();
    let c = client(&server, "u");
    c.heartbeat().channels(names(&["a"])).execute().unwrap();
    let mut events = c.presence_events().channels(names(&["a"])).open().unwrap();
    // The handshake: takes the cursor before the clock jumps.
    assert!(events.poll(Duration::from_millis(500)).unwrap().is_none());
    server.advance(Duration::MAX);
    server.advance(Duration::MAX);
    c.heartbeat().channels(names(&["a"])).execute().unwrap();
    // The timeout and the re-join are there; nothing wrapped or panicked.
    let first = events.poll(Duration::from_secs(5)).unwrap();
    assert!(first.is_some(), "{first:?}");
    // Stopping returns (a hang would hang the test).
    server.stop();
}

/// Names are capped (`Options::max_name_length`, 92 by default): an
/// over-long user id, channel or group gets a 400 and stores nothing, so
/// what an entry holds is bounded (before, 3.9 KB names cost ~25 KB each).
#[test]
fn over_long_names_are_refused_and_store_nothing() {
    let server = Server::start("127.0.0.1:0").unwrap();
    let ok = "u".repeat(92);
    let long = "x".repeat(93);
    let get = |target: String| {
        let req = format!("GET {target} HTTP/1.1\r\nConnection: close\r\n\r\n");
        raw(&server, req.as_bytes())
    };
    let hb = |ch: &str, uuid: &str| {
        format!("/v2/presence/sub-key/demo/channel/{ch}/heartbeat?uuid={uuid}")
    };
    assert_eq!(get(hb(&ok, &ok)), 200);
    assert_eq!(server.entries_stored(), 1);
    for target in [
        hb(&long, "u"),
        hb("c", &long),
        format!("/v2/presence/sub-key/demo/channel/c/uuid/{long}/data?uuid=u&state=%7B%7D"),
        format!("/v2/presence/sub-key/demo/channel/,/heartbeat?uuid=u&channel-group={long}"),
        format!("/v1/channel-registration/sub-key/demo/channel-group/{long}?uuid=u&add=c"),
        format!("/v1/channel-registration/sub-key/demo/channel-group/g?uuid=u&add={long}"),
        format!("/v2/subscribe/demo/{long}/0?uuid=u&tt=0"),
    ] {
        assert_eq!(get(target.clone()), 400, "{target}");
    }
    assert_eq!(server.entries_stored(), 1);
    // Multi-byte characters count as one each.
    assert_eq!(get(hb(&"%C3%A9".repeat(92), "u")), 200);
    assert_eq!(server.entries_stored(), 2);
    // The cap is an option.
    let roomy = Server::start_with(
        "127.0.0.1:0",
        Options {
            max_name_length: 200,
            ..Options::default()
        },
    )
    .unwrap();
    let c = client(&roomy, &long);
    c.heartbeat()
        .channels(vec![long.clone()])
        .execute()
        .unwrap();
    assert_eq!(roomy.entries_stored(), 1);
}
