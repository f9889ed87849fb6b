//! Every call against a loopback server: the exact request target it sends
//! and what it decodes.

mod common;

use common::{client, ok_json, Reply, Server};
use pubnub_presence::{Error, ErrorKind, PubNub, TransportErrorKind};
use std::sync::atomic::Ordering;

const SDK: &str = "pnsdk=PubNub-Rust-Presence%2F0.1.0";
const ODD: &str = "a/b?c#d%e+f g-é😀";
const ODD_PATH: &str = "a%2Fb%3Fc%23d%25e%2Bf%20g-%C3%A9%F0%9F%98%80";

#[test]
fn here_now_single_channel_flat() {
    let s = Server::start(|_| {
        ok_json(
            r#"{"message":"OK","occupancy":2,"service":"Presence","status":200,"uuids":[{"state":{"mood":"ok"},"uuid":"Kim"},{"uuid":"Glen"}]}"#,
        )
    });
    let p = client(&s.origin);
    let r = p
        .here_now()
        .channels(vec![ODD.into()])
        .include_state(true)
        .execute()
        .unwrap();
    assert_eq!(
        s.last_target(),
        format!("/v2/presence/sub-key/sub-key/channel/{ODD_PATH}?uuid=me&{SDK}&disable_uuids=0&state=1&limit=1000")
    );
    assert_eq!((r.total_channels, r.total_occupancy), (1, 2));
    let c = &r.channels[0];
    assert_eq!(c.name, ODD);
    assert_eq!(c.occupants[0].user_id, "Kim");
    assert_eq!(
        pubnub_presence::state::state_json(&c.occupants[0].state),
        r#"{"mood":"ok"}"#
    );
    assert_eq!(
        pubnub_presence::state::state_json(&c.occupants[1].state),
        "null"
    );
}

#[test]
fn here_now_groups_and_paging() {
    let s = Server::start(|_| {
        ok_json(
            r#"{"message":"OK","payload":{"channels":{"c1":{"occupancy":7}},"total_channels":1,"total_occupancy":7},"service":"Presence","status":200}"#,
        )
    });
    let p = client(&s.origin);
    let r = p
        .here_now()
        .channel_groups(vec!["g 1".into(), "g2".into()])
        .include_user_ids(false)
        .limit(10)
        .offset(20)
        .execute()
        .unwrap();
    assert_eq!(
        s.last_target(),
        format!("/v2/presence/sub-key/sub-key/channel/,?uuid=me&{SDK}&channel-group=g%201%2Cg2&disable_uuids=1&state=0&limit=10&offset=20")
    );
    assert_eq!(r.channels[0].occupancy, 7);
    assert!(r.channels[0].occupants.is_empty());

    p.global_here_now().include_state(true).execute().unwrap();
    assert_eq!(
        s.last_target(),
        format!("/v2/presence/sub-key/sub-key?uuid=me&{SDK}&disable_uuids=0&state=1")
    );
}

#[test]
fn where_now_and_state() {
    let s = Server::start(|t| {
        if t.contains("/data?") {
            ok_json(
                r#"{"status": 200, "message": "OK", "payload": {"mood": "happy"}, "service": "Presence"}"#,
            )
        } else if t.contains("/uuid/") && t.contains("/channel/") {
            ok_json(
                r#"{"status": 200, "message": "OK", "payload": {"channels": {"a": {"n": 1}, "b": {}}}, "service": "Presence", "uuid": "me"}"#,
            )
        } else {
            ok_json(
                r#"{"status": 200, "message": "OK", "payload": {"channels": ["x", "y"]}, "service": "Presence"}"#,
            )
        }
    });
    let p = client(&s.origin);
    let w = p.where_now().user_id(ODD).execute().unwrap();
    assert_eq!(
        s.last_target(),
        format!("/v2/presence/sub-key/sub-key/uuid/{ODD_PATH}?uuid=me&{SDK}")
    );
    assert_eq!(w.channels, ["x", "y"]);
    p.where_now().execute().unwrap();
    assert_eq!(
        s.last_target(),
        format!("/v2/presence/sub-key/sub-key/uuid/me?uuid=me&{SDK}")
    );

    #[cfg(not(feature = "serde"))]
    let state = {
        let mut o = miniserde::json::Object::new();
        o.insert(
            "mood".into(),
            miniserde::json::Value::String("happy".into()),
        );
        o
    };
    #[cfg(feature = "serde")]
    let state = serde_json::json!({"mood": "happy"});
    let r = p
        .set_presence_state(&state)
        .channels(vec!["a".into(), "b".into()])
        .channel_groups(vec!["g".into()])
        .execute()
        .unwrap();
    assert_eq!(
        s.last_target(),
        format!("/v2/presence/sub-key/sub-key/channel/a,b/uuid/me/data?uuid=me&{SDK}&channel-group=g&state=%7B%22mood%22%3A%22happy%22%7D")
    );
    assert_eq!(r.channel, "a,b");

    let g = p
        .get_presence_state()
        .channels(vec!["a".into(), "b".into()])
        .user_id("other")
        .execute()
        .unwrap();
    assert_eq!(
        s.last_target(),
        format!("/v2/presence/sub-key/sub-key/channel/a,b/uuid/other?uuid=me&{SDK}")
    );
    assert_eq!(g.state.len(), 2);
    assert_eq!(g.state[0].channel_name, "a");
}

#[test]
fn heartbeat_and_leave() {
    let s =
        Server::start(|_| ok_json(r#"{"status": 200, "message": "OK", "service": "Presence"}"#));
    let p = client(&s.origin);
    p.heartbeat().channels(vec!["c".into()]).execute().unwrap();
    assert_eq!(
        s.last_target(),
        format!("/v2/presence/sub-key/sub-key/channel/c/heartbeat?uuid=me&{SDK}&heartbeat=300")
    );
    p.leave()
        .channel_groups(vec!["g".into()])
        .execute()
        .unwrap();
    assert_eq!(
        s.last_target(),
        format!("/v2/presence/sub-key/sub-key/channel/,/leave?uuid=me&{SDK}&channel-group=g")
    );
}

#[test]
fn input_errors_send_nothing() {
    let s = Server::start(|_| ok_json("{}"));
    let p = client(&s.origin);
    let cases: Vec<(Result<(), Error>, &str)> = vec![
        (p.here_now().execute().map(drop), "channels"),
        (
            p.here_now().channels(vec!["".into()]).execute().map(drop),
            "channels",
        ),
        (
            p.here_now()
                .channels(vec!["a,b".into()])
                .execute()
                .map(drop),
            "channels",
        ),
        (
            p.here_now()
                .channel_groups(vec!["x,y".into()])
                .execute()
                .map(drop),
            "channel_groups",
        ),
        (p.get_presence_state().execute().map(drop), "channels"),
        (p.where_now().user_id("").execute().map(drop), "user_id"),
        (p.leave().execute(), "channels"),
        (p.heartbeat().execute(), "channels"),
    ];
    #[cfg(not(feature = "serde"))]
    let not_object = p
        .set_presence_state(vec![1u32, 2])
        .channels(vec!["a".into()])
        .execute()
        .map(drop);
    #[cfg(feature = "serde")]
    let not_object = p
        .set_presence_state(serde_json::json!([1, 2]))
        .channels(vec!["a".into()])
        .execute()
        .map(drop);
    for (result, arg) in cases.into_iter().chain([(not_object, "state")]) {
        match result.map_err(Error::into_kind) {
            Err(ErrorKind::Input { argument, .. }) => assert_eq!(argument, arg),
            other => panic!("{arg}: {other:?}"),
        }
    }
    assert!(s.targets().is_empty(), "no request may be sent");
}

#[test]
fn access_manager_403() {
    let s = Server::start(|_| {
        Reply::Json(
            403,
            "{\"message\":\"Forbidden\",\"payload\":{\"channels\":[\"demo\"],\"channel-groups\":[\":cg\"]},\"error\":true,\"service\":\"Access Manager\",\"status\":403}\n".into(),
        )
    });
    let p = client(&s.origin);
    let e = p
        .leave()
        .channels(vec!["demo".into()])
        .execute()
        .unwrap_err();
    let Some(e) = e.server() else { panic!("{e:?}") };
    assert_eq!(e.status, 403);
    assert_eq!(e.message, "Forbidden");
    assert_eq!(e.service, "Access Manager");
    assert_eq!(e.channels, ["demo"]);
    assert_eq!(e.channel_groups, [":cg"]);
}

#[test]
fn error_in_a_200_body() {
    let s = Server::start(|_| {
        ok_json(
            r#"{"status": 503, "message": "Service Unavailable", "error": 1, "service": "Presence"}"#,
        )
    });
    // Retried like an HTTP 503 (tests/faults.rs); one attempt here.
    let p = PubNub::builder()
        .subscribe_key("sub-key")
        .user_id("me")
        .origin(&s.origin)
        .retry_policy(pubnub_presence::RetryPolicy::none())
        .build()
        .unwrap();
    let e = p.where_now().execute().unwrap_err();
    assert_eq!(e.status(), Some(503));
}

#[test]
fn keep_alive_reuses_one_connection() {
    let s = Server::start(|_| ok_json(r#"{"payload":{"channels":[]}}"#));
    let p = client(&s.origin);
    for _ in 0..5 {
        p.where_now().execute().unwrap();
    }
    assert_eq!(s.targets().len(), 5);
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn body_over_the_cap() {
    let big = format!(r#"{{"payload":{{"channels":["{}"]}}}}"#, "x".repeat(5000));
    let s = Server::start(move |_| ok_json(&big));
    let p = PubNub::builder()
        .subscribe_key("s")
        .user_id("me")
        .origin(&s.origin)
        .max_response_size(4096)
        .build()
        .unwrap();
    match p.where_now().execute().map_err(Error::into_kind) {
        Err(ErrorKind::Transport {
            kind: TransportErrorKind::BodyTooLarge,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn refused_and_timeout() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let p = PubNub::builder()
        .subscribe_key("s")
        .user_id("me")
        .origin(format!("http://127.0.0.1:{port}"))
        .retry_policy(pubnub_presence::RetryPolicy::none())
        .build()
        .unwrap();
    match p.where_now().execute().map_err(Error::into_kind) {
        Err(ErrorKind::Transport {
            kind: TransportErrorKind::Connect,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let s = Server::start(|_| {
        Reply::Delay(std::time::Duration::from_secs(10), Box::new(ok_json("{}")))
    });
    let p = PubNub::builder()
        .subscribe_key("s")
        .user_id("me")
        .origin(&s.origin)
        .request_timeout(std::time::Duration::from_millis(300))
        .retry_policy(pubnub_presence::RetryPolicy::none())
        .build()
        .unwrap();
    match p.where_now().execute().map_err(Error::into_kind) {
        Err(ErrorKind::Transport {
            kind: TransportErrorKind::Timeout,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // It returned before the server answered (10 s later).
    assert_eq!(s.answered(), 0);
    assert_eq!(s.targets().len(), 1);
}

#[test]
fn html_captive_portal_is_a_decode_error() {
    let s = Server::start(|_| ok_json("<html><body>Please log in</body></html>"));
    let p = client(&s.origin);
    assert_eq!(
        p.where_now().execute().unwrap_err().into_kind(),
        ErrorKind::Decode {
            offset: 0,
            reason: "expected an object"
        }
    );
}

#[test]
fn secrets_stay_out_of_errors_and_debug() {
    let s = Server::start(|_| Reply::Close);
    let p = PubNub::builder()
        .subscribe_key("sub-c-SECRETSUB")
        .publish_key("pub-c-SECRETPUB")
        .auth_key("SECRETAUTH")
        .user_id("me")
        .origin(&s.origin)
        .build()
        .unwrap();
    let e = p.where_now().execute().unwrap_err();
    let texts = [format!("{e}"), format!("{e:?}"), format!("{p:?}")];
    for t in texts {
        for secret in ["SECRETPUB", "SECRETAUTH"] {
            assert!(!t.contains(secret), "{t}");
        }
    }
}

/// A client signing with secret "sec" and publish key "pub".
#[cfg(feature = "tls")]
fn signing_client(origin: &str, retry: pubnub_presence::RetryPolicy) -> PubNub {
    PubNub::builder()
        .subscribe_key("sub")
        .publish_key("pub")
        .secret_key("sec")
        .user_id("me")
        .origin(origin)
        .retry_policy(retry)
        .build()
        .unwrap()
}

/// Checks one request target's signature (exactly one `timestamp` and one
/// `signature`, the signature valid for the rest); returns the signed part.
#[cfg(feature = "tls")]
fn check_signature(target: &str) -> String {
    let (path, query) = target.split_once('?').unwrap();
    assert_eq!(query.matches("timestamp=").count(), 1, "{query}");
    assert_eq!(query.matches("signature=").count(), 1, "{query}");
    let (signed_part, sig) = query.split_once("&signature=").unwrap();
    assert_eq!(
        sig,
        pubnub_presence::sign::signature_v2("sec", "pub", path, signed_part)
    );
    signed_part.to_string()
}

#[cfg(feature = "tls")]
#[test]
fn signed_request_carries_timestamp_and_signature() {
    let s = Server::start(|_| ok_json(r#"{"payload":{"channels":[]}}"#));
    let p = signing_client(&s.origin, Default::default());
    p.where_now().execute().unwrap();
    let signed_part = check_signature(&s.last_target());
    assert!(
        signed_part.starts_with(&format!("uuid=me&{SDK}&timestamp=")),
        "{signed_part}"
    );
    let ts: u64 = signed_part.rsplit('=').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts) < 60);
    assert!(!format!("{p:?}").contains("sec\""));
}

/// A retried signed request is signed afresh per attempt from the unsigned
/// request: each attempt carries exactly one timestamp and one valid
/// signature.
#[cfg(feature = "tls")]
#[test]
fn signed_request_is_signed_once_per_attempt() {
    let n = std::sync::atomic::AtomicUsize::new(0);
    let s = Server::start(move |_| {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::Json(503, "{}".into())
        } else {
            ok_json(r#"{"payload":{"channels":[]}}"#)
        }
    });
    let retry = pubnub_presence::RetryPolicy {
        base_delay: std::time::Duration::from_millis(1),
        ..Default::default()
    };
    signing_client(&s.origin, retry)
        .where_now()
        .execute()
        .unwrap();
    let targets = s.targets();
    assert_eq!(targets.len(), 2, "{targets:?}");
    for target in targets {
        check_signature(&target);
    }
}

#[test]
fn client_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<PubNub>();
    send_sync::<pubnub_presence::Error>();
    send_sync::<pubnub_presence::HereNowResult<'static>>();
    send::<pubnub_presence::PresenceEvents>();
    send::<pubnub_presence::Heartbeater>();
    send::<pubnub_presence::HeartbeatThread>();
}

/// A request line over 2 KiB goes out whole (ureq's 2 KiB output buffer,
/// used by the ordinary calls before, failed such requests with a
/// Protocol error), up to a head near the 8 KiB a server commonly accepts;
/// on the ordinary calls and on the event stream's kept connection.
#[test]
fn request_lines_over_2_kib_are_sent_whole() {
    let s =
        Server::start(|_| ok_json(r#"{"status": 200, "message": "OK", "service": "Presence"}"#));
    let p = client(&s.origin);
    for n in [100, 240] {
        // 30-byte names: a request line of about 3 KiB, then about 7.5 KiB.
        let names: Vec<String> = (0..n).map(|i| format!("channel-{i:0>22}")).collect();
        p.leave().channels(names.clone()).execute().unwrap();
        let target = s.last_target();
        assert!(target.len() > 2 * 1024 * n / 100, "{}", target.len());
        assert!(target.contains(&names.join(",")), "{target}");
    }
    assert!(s.last_target().len() > 7 * 1024);
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
    let names: Vec<String> = (0..200).map(|i| format!("room-{i:0>25}")).collect();
    let mut ev = p.presence_events().channels(names).open().unwrap();
    let _ = ev.poll(std::time::Duration::from_millis(300));
    let target = s.last_target();
    assert!(target.starts_with("/v2/subscribe/"), "{target}");
    assert!(target.len() > 6 * 1024, "{}", target.len());
}

/// Calls from several threads at once each get a connection (none waits
/// for another's I/O); afterwards at most two idle connections are kept
/// and reused.
#[test]
fn concurrent_calls_do_not_wait_for_each_other() {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::time::Duration;
    // The first four requests are answered only once all four have
    // arrived (or after 10 s): calls that waited for each other would
    // never all be in the server at once.
    let (arrived, together) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, t) = (arrived.clone(), together.clone());
    let s = Server::start(move |_| {
        if a.fetch_add(1, Ordering::SeqCst) < 4
            && common::wait_until(Duration::from_secs(10), || a.load(Ordering::SeqCst) >= 4)
        {
            t.fetch_add(1, Ordering::SeqCst);
        }
        ok_json(r#"{"payload":{"channels":[]}}"#)
    });
    let p = client(&s.origin);
    let parallel = |n: usize| {
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || p.where_now().execute().map(drop))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
    };
    parallel(4);
    // All four were in the server together (one after the other, the
    // first would have waited 10 s alone, and the others after it).
    assert_eq!(together.load(Ordering::SeqCst), 4);
    assert_eq!(s.connections.load(Ordering::SeqCst), 4);
    // Two idle connections were kept: two calls at once reuse them...
    parallel(2);
    assert_eq!(s.connections.load(Ordering::SeqCst), 4);
    // ...a third needs a new one.
    parallel(3);
    assert_eq!(s.connections.load(Ordering::SeqCst), 5);
    assert_eq!(s.targets().len(), 9);
}

/// A kept connection the server closed while idle (its answer looked
/// keep-alive): the next call sends its request again on a new connection,
/// once, with no error and no retry.
#[test]
fn an_idle_connection_closed_by_the_server_is_replaced() {
    let s = Server::start(|_| {
        Reply::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 27\r\n\r\n{\"payload\":{\"channels\":[]}}"
                .to_vec(),
        )
    });
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("me")
        .origin(&s.origin)
        .retry_policy(pubnub_presence::RetryPolicy::none())
        .build()
        .unwrap();
    for _ in 0..3 {
        p.where_now().execute().unwrap();
    }
    assert_eq!(s.targets().len(), 3);
    assert_eq!(s.connections.load(Ordering::SeqCst), 3);
}

/// Bytes a server sends on an idle kept connection (here a 408 before it
/// closes) are not taken for the answer to the next request: that request
/// goes out on a new connection.
#[test]
fn unsolicited_bytes_on_an_idle_connection_are_not_an_answer() {
    use std::io::{BufRead, BufReader, Write};
    use std::time::Duration;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            seen.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let body = r#"{"payload":{"channels":[]}}"#;
                let ok = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(ok.as_bytes());
                std::thread::sleep(Duration::from_millis(100));
                let _ = stream.write_all(
                    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("me")
        .origin(&origin)
        .retry_policy(pubnub_presence::RetryPolicy::none())
        .build()
        .unwrap();
    p.where_now().execute().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    p.where_now().execute().unwrap();
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}
