//! Limits on what a request carries, each failing with its own reason and
//! before anything is sent: the URL length cap (`request::MAX_URL_LEN`),
//! the server's 414 below it, and the checks on user state (valid JSON
//! text, an object, depth, and with `serde` readable by serde_json). And
//! states other clients set that this crate must read without failing the
//! whole result: lone surrogate escapes (JavaScript's `JSON.stringify` of a
//! string cut mid-emoji) and, with `serde`, numbers beyond `f64`.

mod common;

use common::{Reply, Server};
use pubnub_presence::request::MAX_URL_LEN;
use pubnub_presence::{Error, ErrorKind, Heartbeater, PubNub, RetryPolicy};
use std::time::Duration;

fn client(origin: &str) -> PubNub {
    PubNub::builder()
        .subscribe_key("demo")
        .user_id("me")
        .origin(origin)
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
            deadline: Some(Duration::from_secs(5)),
        })
        .build()
        .unwrap()
}

/// The input error's argument and reason.
fn input(result: Result<(), Error>) -> (&'static str, String) {
    match result.map_err(Error::into_kind) {
        Err(ErrorKind::Input { argument, reason }) => (argument, reason.into_owned()),
        other => panic!("expected an input error, got {other:?}"),
    }
}

fn names(prefix: &str, n: usize, len: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}{i}-{}", "x".repeat(len)))
        .collect()
}

/// JSON text of `{"k":"<n bytes>"}`.
fn big_state(n: usize) -> String {
    format!(r#"{{"k":"{}"}}"#, "v".repeat(n))
}

#[test]
fn urls_over_the_cap_are_input_errors_and_nothing_is_sent() {
    let s = Server::start(|_| common::ok_json("{}"));
    let p = client(&s.origin);
    let one_huge = vec!["c".repeat(100_000)];
    let many = names("channel-", 400, 100); // ~42 KB of names
    let cases: Vec<(Result<(), Error>, &str)> = vec![
        (
            p.here_now().channels(one_huge.clone()).execute().map(drop),
            "channels",
        ),
        (
            p.here_now().channels(many.clone()).execute().map(drop),
            "channels",
        ),
        (
            p.here_now()
                .channels(vec!["a".into()])
                .channel_groups(many.clone())
                .execute()
                .map(drop),
            "channel_groups",
        ),
        (
            p.where_now()
                .user_id("u".repeat(40_000))
                .execute()
                .map(drop),
            "user_id",
        ),
        (
            p.set_presence_state_json(big_state(40_000))
                .channels(vec!["a".into()])
                .execute()
                .map(drop),
            "state",
        ),
        (
            // State in the query, but the channels take more room.
            p.set_presence_state_json(big_state(1_000))
                .channels(one_huge.clone())
                .execute()
                .map(drop),
            "channels",
        ),
        (
            p.get_presence_state()
                .channels(many.clone())
                .execute()
                .map(drop),
            "channels",
        ),
        (p.heartbeat().channels(many.clone()).execute(), "channels"),
        (
            p.heartbeat()
                .channels(vec!["a".into()])
                .state_json(format!(r#"{{"a":{}}}"#, big_state(40_000)))
                .execute(),
            "state",
        ),
        (
            p.leave().channel_groups(many.clone()).execute(),
            "channel_groups",
        ),
        (
            p.presence_events()
                .channels(one_huge.clone())
                .open()
                .map(drop),
            "channels",
        ),
    ];
    for (i, (result, want)) in cases.into_iter().enumerate() {
        let (argument, reason) = input(result);
        assert_eq!(argument, want, "case {i}: {reason}");
        assert!(
            reason.starts_with("the request url would be ")
                && reason.contains("over the cap of 32768 bytes"),
            "case {i}: {reason}"
        );
    }
    // The client's own user id, too long for any call.
    let long_user = PubNub::builder()
        .subscribe_key("demo")
        .user_id("u".repeat(40_000))
        .origin(&s.origin)
        .build()
        .unwrap();
    let (argument, _) = input(long_user.global_here_now().execute().map(drop));
    assert_eq!(argument, "user_id");
    assert!(s.targets().is_empty(), "no request may be sent");
}

#[test]
fn the_request_at_the_cap_is_built_one_byte_more_is_not() {
    let p = client("http://127.0.0.1:1");
    let url_for = |name: String| {
        p.leave()
            .channels(vec![name])
            .request()
            .map(|r| r.url().len())
    };
    let base = url_for("c".into()).unwrap() - 1;
    assert_eq!(
        url_for("c".repeat(MAX_URL_LEN - base)).unwrap(),
        MAX_URL_LEN
    );
    let (argument, reason) = input(url_for("c".repeat(MAX_URL_LEN - base + 1)).map(drop));
    assert_eq!(argument, "channels");
    assert!(
        reason.starts_with("the request url would be 32769 bytes"),
        "{reason}"
    );
}

#[test]
fn heartbeater_refuses_what_would_make_its_heartbeat_too_long() {
    let s =
        Server::start(|_| common::ok_json(r#"{"status":200,"message":"OK","service":"Presence"}"#));
    let p = client(&s.origin);
    let mut hb = Heartbeater::new(&p);
    hb.join(vec!["lobby".into()]).unwrap();
    // Too many channels: none of them is joined.
    let (argument, _) = input(hb.join(names("ch-", 400, 100)));
    assert_eq!(argument, "channels");
    assert_eq!(hb.channels(), ["lobby"]);
    let (argument, _) = input(hb.join_groups(names("g-", 400, 100)));
    assert_eq!(argument, "channel_groups");
    assert!(hb.channel_groups().is_empty());
    // A state too large: the one set before stays.
    hb.set_state_json("lobby", r#"{"n":1}"#).unwrap();
    let (argument, _) = input(hb.set_state_json("lobby", big_state(40_000)));
    assert_eq!(argument, "state");
    // The heartbeat still goes out, with the state set before.
    assert!(hb.tick(std::time::Instant::now()).unwrap());
    let sent = s.last_target();
    assert!(
        sent.contains("&state=%7B%22lobby%22%3A%7B%22n%22%3A1%7D%7D"),
        "{sent}"
    );
}

/// PubNub's front end answers an over-long URL with 414 and the Balancer's
/// body (docs/PROTOCOL.md §2), and closes the connection.
fn balancer_414() -> Reply {
    let body = "{\"status\":414,\"service\":\"Balancer\",\"error\":true,\"message\":\"Request URI Too Long\"}\n";
    Reply::Raw(
        format!(
            "HTTP/1.1 414 Request-URI Too Long\r\nServer: openresty\r\nContent-Type: text/javascript; charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

#[test]
fn a_414_is_a_clear_server_error_and_is_not_retried() {
    let s = Server::start(|_| balancer_414());
    let p = client(&s.origin);
    let e = p
        .here_now()
        .channels(vec!["lobby".into()])
        .execute()
        .unwrap_err();
    let server = e.server().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(server.status, 414);
    assert_eq!(server.service, "Balancer");
    assert_eq!(server.message, "Request URI Too Long");
    assert_eq!(server.attempts, 1);
    assert!(!e.is_retryable());
    assert_eq!(
        e.to_string(),
        "server error 414 from Balancer: Request URI Too Long"
    );
    assert_eq!(s.targets().len(), 1, "a 414 is not retried");
}

#[cfg(feature = "emulator")]
mod against_the_emulator {
    use super::*;
    use pubnub_presence::__internal::encode::{encode, QUERY_VALUE};
    use pubnub_presence::emulator::Server;
    use std::io::{Read, Write};

    fn client(server: &pubnub_presence::emulator::ServerHandle, user: &str) -> PubNub {
        PubNub::builder()
            .subscribe_key("demo")
            .user_id(user)
            .origin(server.origin())
            .build()
            .unwrap()
    }

    /// Sets `user`'s state on `channel` with a raw request, as another
    /// client (a JavaScript one, say) would: no check of ours on the way.
    fn set_state_raw(
        server: &pubnub_presence::emulator::ServerHandle,
        channel: &str,
        user: &str,
        json: &str,
    ) {
        let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let req = format!(
            "GET /v2/presence/sub-key/demo/channel/{channel}/uuid/{user}/data?uuid={user}&state={} HTTP/1.1\r\nConnection: close\r\n\r\n",
            encode(json, QUERY_VALUE)
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    }

    /// Under the cap, over the server's own limit (the emulator's, like
    /// PubNub's front end, is 8 KiB of request head): the 414, through a
    /// kept connection (the heartbeat schedule's).
    #[test]
    fn a_url_over_the_servers_limit_gets_its_414() {
        let server = Server::start("127.0.0.1:0").unwrap();
        let p = client(&server, "me");
        let mut hb = Heartbeater::new(&p);
        hb.join(names("ch-", 100, 100)).unwrap(); // ~10 KB of names
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let e = loop {
            match hb.poll(Duration::from_millis(100)) {
                Err(e) => break e,
                Ok(_) => assert!(std::time::Instant::now() < deadline, "no answer"),
            }
        };
        let s = e.server().unwrap_or_else(|| panic!("{e:?}"));
        assert_eq!((s.status, s.service.as_str()), (414, "Balancer"));
        assert!(!e.is_retryable());
    }

    /// The same through `execute()` (a URL of ~10 KB reaches the server:
    /// no output buffer below the 32 KiB cap cuts it).
    #[test]
    fn a_url_over_the_servers_limit_gets_its_414_through_execute() {
        let server = Server::start("127.0.0.1:0").unwrap();
        let p = client(&server, "me");
        let e = p
            .here_now()
            .channels(names("ch-", 100, 100))
            .execute()
            .unwrap_err();
        let s = e.server().unwrap_or_else(|| panic!("{e:?}"));
        assert_eq!(
            (s.status, s.service.as_str(), s.attempts),
            (414, "Balancer", 1)
        );
    }

    /// One occupant whose state holds a lone surrogate escape (what
    /// `JSON.stringify` writes for "abc" plus half an emoji) does not fail
    /// here_now or get_presence_state for everyone; and this crate accepts
    /// such a state too (valid JSON text).
    #[test]
    fn a_lone_surrogate_in_one_users_state_sinks_nothing() {
        let server = Server::start("127.0.0.1:0").unwrap();
        let me = client(&server, "me");
        let js = client(&server, "js");
        for p in [&me, &js] {
            p.heartbeat()
                .channels(vec!["lobby".into()])
                .execute()
                .unwrap();
        }
        set_state_raw(&server, "lobby", "js", r#"{"name":"abc\ud83d"}"#);
        let set = me
            .set_presence_state_json(r#"{"name":"\ude00xyz"}"#)
            .channels(vec!["lobby".into()])
            .execute()
            .unwrap();
        let here = me
            .here_now()
            .channels(vec!["lobby".into()])
            .include_state(true)
            .execute()
            .unwrap();
        let mut users: Vec<(String, String)> = here
            .iter()
            .flat_map(|c| &c.occupants)
            .map(|u| (u.user_id.to_string(), u.state.to_string()))
            .collect();
        users.sort();
        let js_state = me
            .get_presence_state()
            .channels(vec!["lobby".into()])
            .user_id("js")
            .execute()
            .unwrap();
        #[cfg(not(feature = "serde"))]
        {
            // The state is its JSON text, as the server holds it.
            assert_eq!(set.state, r#"{"name":"\ude00xyz"}"#);
            assert_eq!(
                users,
                [
                    ("js".to_string(), r#"{"name":"abc\ud83d"}"#.to_string()),
                    ("me".to_string(), r#"{"name":"\ude00xyz"}"#.to_string()),
                ]
            );
            assert_eq!(js_state.state[0].state, r#"{"name":"abc\ud83d"}"#);
        }
        #[cfg(feature = "serde")]
        {
            // serde_json: each lone surrogate read as U+FFFD.
            assert_eq!(set.state, serde_json::json!({"name": "\u{fffd}xyz"}));
            assert_eq!(
                users,
                [
                    ("js".to_string(), r#"{"name":"abc�"}"#.to_string()),
                    ("me".to_string(), r#"{"name":"�xyz"}"#.to_string()),
                ]
            );
            assert_eq!(
                js_state.state[0].state,
                serde_json::json!({"name": "abc\u{fffd}"})
            );
        }
    }

    /// A state serde_json cannot hold: refused by the setters with `serde`
    /// (nothing sent); set by another client, it does not fail the reads.
    #[test]
    fn a_number_beyond_f64_in_one_users_state_sinks_nothing() {
        let server = Server::start("127.0.0.1:0").unwrap();
        let me = client(&server, "me");
        let other = client(&server, "other");
        for p in [&me, &other] {
            p.heartbeat()
                .channels(vec!["lobby".into()])
                .execute()
                .unwrap();
        }
        me.set_presence_state_json(r#"{"n":1}"#)
            .channels(vec!["lobby".into()])
            .execute()
            .unwrap();
        let served = server.requests_served();
        let ours = me
            .set_presence_state_json(r#"{"n":1e400}"#)
            .channels(vec!["lobby".into()])
            .execute();
        #[cfg(feature = "serde")]
        {
            let (argument, reason) = input(ours.map(drop));
            assert_eq!(argument, "state");
            assert_eq!(
                reason,
                "state could not be read back as a serde_json::Value: number out of range at line 1 column 10"
            );
            assert_eq!(server.requests_served(), served, "nothing sent");
            // Through a heartbeat, too.
            let (argument, _) = input(
                me.heartbeat()
                    .channels(vec!["lobby".into()])
                    .state_json(r#"{"lobby":{"n":1e400}}"#)
                    .execute(),
            );
            assert_eq!(argument, "state");
            me.set_presence_state_json(r#"{"n":1}"#)
                .channels(vec!["lobby".into()])
                .execute()
                .unwrap();
        }
        #[cfg(not(feature = "serde"))]
        {
            // Without serde the text is kept as it is: nothing to refuse.
            assert_eq!(ours.unwrap().state, r#"{"n":1e400}"#);
            assert!(server.requests_served() > served);
            me.set_presence_state_json(r#"{"n":1}"#)
                .channels(vec!["lobby".into()])
                .execute()
                .unwrap();
        }
        set_state_raw(&server, "lobby", "other", r#"{"n":1e400}"#);
        let here = me
            .here_now()
            .channels(vec!["lobby".into()])
            .include_state(true)
            .execute()
            .unwrap();
        let mut users: Vec<(String, String)> = here
            .iter()
            .flat_map(|c| &c.occupants)
            .map(|u| (u.user_id.to_string(), format!("{:?}", u.state)))
            .collect();
        users.sort();
        let got = me
            .get_presence_state()
            .channels(vec!["lobby".into()])
            .user_id("other")
            .execute()
            .unwrap();
        #[cfg(not(feature = "serde"))]
        {
            assert_eq!(
                users,
                [
                    ("me".to_string(), r#"{"n":1}"#.to_string()),
                    ("other".to_string(), r#"{"n":1e400}"#.to_string()),
                ]
            );
            assert_eq!(got.state[0].state, r#"{"n":1e400}"#);
        }
        #[cfg(feature = "serde")]
        {
            // The state serde_json cannot hold: its exact JSON text, as a
            // string; the others as values.
            let raw = serde_json::Value::String(r#"{"n":1e400}"#.into());
            assert_eq!(
                users,
                [
                    (
                        "me".to_string(),
                        format!("{:?}", serde_json::json!({"n": 1}))
                    ),
                    ("other".to_string(), format!("{raw:?}")),
                ]
            );
            assert_eq!(got.state[0].state, raw);
        }
    }

    /// Heartbeater sends each channel's state inside a map: a state may
    /// nest 127 levels there, and one more is refused with that reason.
    #[test]
    fn heartbeater_states_nest_one_level_less() {
        let server = Server::start("127.0.0.1:0").unwrap();
        let me = client(&server, "me");
        // An object nesting `n` levels (arrays inside: short in a URL).
        let deep = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        let mut hb = Heartbeater::new(&me);
        hb.join(vec!["lobby".into()]).unwrap();
        let (argument, reason) = input(hb.set_state_json("lobby", deep(128)));
        assert_eq!(argument, "state");
        assert!(
            reason.starts_with("state nests deeper than 127 levels"),
            "{reason}"
        );
        hb.set_state_json("lobby", deep(127)).unwrap();
        hb.heartbeat_now(std::time::Instant::now()).unwrap();
        let got = me
            .get_presence_state()
            .channels(vec!["lobby".into()])
            .execute()
            .unwrap();
        #[cfg(not(feature = "serde"))]
        assert_eq!(got.state[0].state.as_str(), deep(127));
        #[cfg(feature = "serde")]
        assert_eq!(got.state[0].state.to_string(), deep(127));
        // The real reason for JSON text that is not valid, or too deep for
        // any setter.
        let (_, reason) = input(
            me.set_presence_state_json(deep(129))
                .channels(vec!["lobby".into()])
                .request()
                .map(drop),
        );
        assert_eq!(reason, "state nests deeper than 128 levels");
        let (_, reason) = input(
            me.set_presence_state_json(r#"{"a":1,}"#)
                .channels(vec!["lobby".into()])
                .request()
                .map(drop),
        );
        assert_eq!(
            reason,
            "state is not valid json: expected an object key at byte 7"
        );
    }

    /// `heartbeat().state(..)` and `Heartbeater::set_state(..)` take the
    /// state by value, like `set_presence_state`; a reference still works.
    #[test]
    fn state_setters_take_values_and_references() {
        let server = Server::start("127.0.0.1:0").unwrap();
        let me = client(&server, "me");
        #[cfg(not(feature = "serde"))]
        let state = |mood: &str| {
            let mut o = miniserde::json::Object::new();
            o.insert("mood".into(), miniserde::json::Value::String(mood.into()));
            o
        };
        #[cfg(feature = "serde")]
        let state = |mood: &str| serde_json::json!({ "mood": mood });
        let per_channel = |mood: &str| {
            #[cfg(not(feature = "serde"))]
            {
                let mut o = miniserde::json::Object::new();
                o.insert("lobby".into(), miniserde::json::Value::Object(state(mood)));
                o
            }
            #[cfg(feature = "serde")]
            {
                serde_json::json!({ "lobby": state(mood) })
            }
        };
        let mood = || {
            let got = me
                .get_presence_state()
                .channels(vec!["lobby".into()])
                .execute()
                .unwrap();
            got.state[0].state.to_string()
        };
        let hb = || me.heartbeat().channels(vec!["lobby".into()]);
        hb().state(per_channel("by value")).execute().unwrap();
        assert_eq!(mood(), r#"{"mood":"by value"}"#);
        let value = per_channel("by reference");
        hb().state(&value).execute().unwrap();
        assert_eq!(mood(), r#"{"mood":"by reference"}"#);

        let mut schedule = Heartbeater::new(&me);
        schedule.join(vec!["lobby".into()]).unwrap();
        schedule.set_state("lobby", state("scheduled")).unwrap();
        schedule.heartbeat_now(std::time::Instant::now()).unwrap();
        assert_eq!(mood(), r#"{"mood":"scheduled"}"#);
        let value = state("scheduled by reference");
        schedule.set_state("lobby", &value).unwrap();
        schedule.heartbeat_now(std::time::Instant::now()).unwrap();
        assert_eq!(mood(), r#"{"mood":"scheduled by reference"}"#);
    }
}
