//! The emulator's bodies have the same key sets and value types as bodies
//! recorded from real PubNub servers for the same kind of request.
//!
//! Recorded bodies are read from `tests/fixtures/recorded/` (shipped with
//! the crate); a missing one is a failure, as in `tests/recorded.rs`.
#![cfg(feature = "emulator")]

use pubnub_presence::emulator::{Options, Server, ServerHandle};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/recorded")
        .join(name);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("recorded fixture {} not readable: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

/// Sends a GET and returns the status line and the raw body.
fn get_raw(server: &ServerHandle, target: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer (and close) before reading an over-long head.
    let _ = write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8(out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status_line = head.lines().next().unwrap_or_default().to_string();
    (status_line, body.to_string())
}

fn get(server: &ServerHandle, target: &str) -> Value {
    let (_, body) = get_raw(server, target);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{target}: {e}: {body}"))
}

/// A type signature of a JSON value. Maps keyed by channel names and user
/// state contents vary by test data, so they are reduced to one entry and
/// to the word "state".
fn sig(v: &Value, path: &str) -> String {
    let opaque = [
        "/payload/channels/*/state-map",
        "/state",
        "/d/data",
        "/m/*/d/data",
    ];
    if opaque.iter().any(|o| path.ends_with(o)) {
        return "state".into();
    }
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(a) => match a.first() {
            Some(x) => format!("[{}]", sig(x, &format!("{path}/*"))),
            None => "[]".into(),
        },
        Value::Object(o) => {
            // payload.channels of here_now / get state: a map keyed by channel.
            if path.ends_with("/payload/channels") {
                return match o.values().next() {
                    Some(x) => format!("{{*:{}}}", sig(x, &format!("{path}/*"))),
                    None => "{}".into(),
                };
            }
            let mut keys: Vec<_> = o.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", sig(&o[k.as_str()], &format!("{path}/{k}"))))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
    }
}

/// State bodies: the payload itself is user data.
fn sig_state(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(p) = v.get_mut("payload") {
        if let Some(chs) = p.get_mut("channels").and_then(Value::as_object_mut) {
            for s in chs.values_mut() {
                *s = Value::String("state".into());
            }
        } else {
            *p = Value::String("state".into());
        }
    }
    sig(&v, "")
}

#[test]
fn bodies_match_recorded_shapes() {
    let server = Server::start_with(
        "127.0.0.1:0",
        Options {
            long_poll_hold: Duration::from_secs(2),
            ..Options::default()
        },
    )
    .unwrap();
    server.add_to_group(
        "demo",
        "test-channel-group",
        &["test-channel1", "test-channel2"],
    );
    let q = "pnsdk=x&uuid=Kim";
    // Kim and Glen on test-channel1 with state; Earline on test-channel2.
    let hb = |user: &str, ch: &str| {
        get(
            &server,
            &format!("/v2/presence/sub-key/demo/channel/{ch}/heartbeat?uuid={user}&heartbeat=300&state=%7B%22{ch}%22%3A%7B%22s%22%3A%5B%22v%22%5D%7D%7D"),
        )
    };
    let hb_body = hb("Kim", "test-channel1");
    hb("Glen", "test-channel1");
    hb("Earline", "test-channel2");
    // A subscriber handshake, then the join of a newcomer.
    let hs = get(
        &server,
        &format!("/v2/subscribe/demo/test-channel1,test-channel1-pnpres/0?{q}&tt=0"),
    );
    let tt = hs["t"]["t"].as_str().unwrap().to_string();
    get(
        &server,
        "/v2/presence/sub-key/demo/channel/test-channel1/heartbeat?uuid=serhii&heartbeat=300",
    );
    let sub = get(
        &server,
        &format!("/v2/subscribe/demo/test-channel1,test-channel1-pnpres/0?{q}&tt={tt}&tr=1"),
    );

    let cases: Vec<(&str, Value, bool)> = vec![
        ("herenow_single_uuids_02.json", get(&server, &format!("/v2/presence/sub-key/demo/channel/test-channel1?{q}&disable_uuids=0&state=0&limit=1000")), false),
        ("herenow_single_state_01.json", get(&server, &format!("/v2/presence/sub-key/demo/channel/test-channel1?{q}&disable_uuids=0&state=1")), false),
        ("herenow_single_disable_uuids_01.json", get(&server, &format!("/v2/presence/sub-key/demo/channel/test-channel1?{q}&disable_uuids=1")), false),
        ("herenow_cg_uuids_01.json", get(&server, &format!("/v2/presence/sub-key/demo/channel/,?{q}&channel-group=test-channel-group&state=0")), false),
        ("herenow_cg_state_01.json", get(&server, &format!("/v2/presence/sub-key/demo/channel/,?{q}&channel-group=test-channel-group&state=1")), false),
        ("herenow_global_state_01.json", get(&server, &format!("/v2/presence/sub_key/demo?{q}&state=1")), false),
        ("herenow_global_disable_uuids_01.json", get(&server, &format!("/v2/presence/sub-key/demo?{q}&disable_uuids=1")), false),
        ("wherenow_multi_01.json", get(&server, &format!("/v2/presence/sub-key/demo/uuid/Kim?{q}")), false),
        ("setstate_single_01.json", get(&server, &format!("/v2/presence/sub-key/demo/channel/test-channel1/uuid/Kim/data?{q}&state=%7B%22count%22%3A5%7D")), true),
        ("getstate_single_01.json", get(&server, &format!("/v2/presence/sub-key/demo/channel/test-channel1/uuid/Kim?{q}")), true),
        ("getstate_multi_01.json", get(&server, &format!("/v2/presence/sub-key/demo/channel/test-channel1,test-channel2/uuid/Kim?{q}")), true),
        ("getstate_cg_01.json", get(&server, &format!("/v2/presence/sub-key/demo/channel/,/uuid/Earline?{q}&channel-group=test-channel-group")), true),
        ("heartbeat_cg_01.json", hb_body, false),
        ("sub_presence_two_events_2025_01.json", sub, false),
        ("leave_02.json", get(&server, &format!("/v2/presence/sub_key/demo/channel/test-channel1/leave?{q}")), false),
    ];
    let mut compared = 0;
    let mut cases = cases;
    // A timeout, as the 2025 service sends it: `"data":{}` included.
    get(
        &server,
        "/v2/presence/sub-key/demo/channel/test-channel1/heartbeat?uuid=david&heartbeat=20",
    );
    let hs = get(
        &server,
        &format!("/v2/subscribe/demo/test-channel1,test-channel1-pnpres/0?{q}&tt=0"),
    );
    let tt = hs["t"]["t"].as_str().unwrap().to_string();
    server.advance(Duration::from_secs(21));
    let timeout = get(
        &server,
        &format!("/v2/subscribe/demo/test-channel1,test-channel1-pnpres/0?{q}&tt={tt}&tr=1"),
    );
    assert_eq!(timeout["m"][0]["d"]["action"], "timeout", "{timeout}");
    assert_eq!(
        timeout["m"][0]["d"]["data"],
        serde_json::json!({}),
        "{timeout}"
    );
    cases.push(("sub_presence_timeout_2025_01.json", timeout, false));
    for (name, ours, is_state) in cases {
        let recorded = fixture(name);
        let (a, b) = if is_state {
            (sig_state(&ours), sig_state(&recorded))
        } else {
            (sig(&ours, ""), sig(&recorded, ""))
        };
        assert_eq!(a, b, "{name}\nours:     {ours}\nrecorded: {recorded}");
        compared += 1;
    }
    println!("compared {compared} body shapes");
}

/// An over-long request head gets what PubNub's front end sends for a
/// too-long URL (docs/PROTOCOL.md §2): 414 with the Balancer's body, byte for
/// byte as recorded.
#[test]
fn over_long_head_gets_the_front_ends_414() {
    let server = Server::start("127.0.0.1:0").unwrap();
    let target = format!(
        "/v2/presence/sub-key/demo/channel/{}/heartbeat?uuid=u",
        "c".repeat(20_000)
    );
    let (status_line, body) = get_raw(&server, &target);
    assert!(status_line.starts_with("HTTP/1.1 414 "), "{status_line}");
    let ours: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ours["service"], "Balancer");
    assert_eq!(ours["status"], 414);
    let recorded = fixture("error_414_balancer_01.json");
    assert_eq!(ours, recorded);
    assert_eq!(sig(&ours, ""), sig(&recorded, ""));
}
