//! The client against a server that answers with arbitrary status lines,
//! headers (`Retry-After` of any text or size, `Content-Length` lies,
//! chunk sizes, duplicate headers) and bodies: no panic, and every call
//! ends within its deadline with a typed result (issue 12).
//!
//! Loopback only; the case count and timeouts are small so `cargo test`
//! stays fast.

mod common;

use common::{Reply, Server};
use proptest::prelude::*;
use pubnub_presence::{ErrorKind, PubNub, RetryPolicy};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_millis(600);

fn printable(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(0x20u8..0x7f, 0..max)
        .prop_map(|b| String::from_utf8(b).unwrap_or_default())
}

fn digits(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(b'0'..=b'9', min..max)
        .prop_map(|b| String::from_utf8(b).unwrap_or_default())
}

fn retry_after() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        (0u64..3).prop_map(|n| n.to_string()),
        digits(15, 40),
        printable(30),
        Just("18446744073709551615".to_string()),
        Just("-1".to_string()),
        Just("Wed, 21 Oct 2015 07:28:00 GMT".to_string()),
    ]
}

fn content_length() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..400).prop_map(|n| n.to_string()),
        digits(18, 30),
        Just(u64::MAX.to_string()),
        printable(12),
        Just("-1".to_string()),
    ]
}

fn status_line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop_oneof![Just(200u16), Just(429), Just(500), Just(503), Just(403), 100u16..1000]
            .prop_map(|c| format!("HTTP/1.1 {c} X")),
        1 => Just("HTTP/1.0 200 OK".to_string()),
        1 => printable(40),
        1 => (0u32..100_000).prop_map(|c| format!("HTTP/1.1 {c} Too Big")),
    ]
}

fn header() -> impl Strategy<Value = Vec<u8>> {
    let line = |s: String| s.into_bytes();
    prop_oneof![
        3 => retry_after().prop_map(move |v| line(format!("Retry-After: {v}"))),
        3 => content_length().prop_map(move |v| line(format!("Content-Length: {v}"))),
        1 => Just(b"Transfer-Encoding: chunked".to_vec()),
        1 => Just(b"Connection: keep-alive".to_vec()),
        1 => Just(b"Content-Encoding: gzip".to_vec()),
        1 => (proptest::collection::vec(prop_oneof![b'a'..=b'z', Just(b'-')], 1..12), printable(40))
            .prop_map(|(k, v)| [k.as_slice(), b": ", v.as_bytes()].concat()),
        // Raw bytes in a value (obs-text, NUL), never a line break.
        1 => proptest::collection::vec(any::<u8>().prop_filter("no line breaks", |b| *b != b'\r' && *b != b'\n'), 0..40)
            .prop_map(|v| [b"X-Bytes: ".as_slice(), &v].concat()),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 0..200),
        1 => Just(br#"{"status":200,"message":"OK","payload":{"channels":["a"]},"service":"Presence"}"#.to_vec()),
        2 => (any::<u16>(), printable(20)).prop_map(|(s, m)| format!(r#"{{"status":{s},"error":1,"message":"{m}","service":"Presence"}}"#).into_bytes()),
        1 => Just(br#"{"status":414,"service":"Balancer","error":true,"message":"Request URI Too Long"}"#.to_vec()),
    ]
}

/// How the body goes on the wire.
#[derive(Debug, Clone)]
enum Framing {
    Plain,
    /// Chunks with these declared sizes (hex text, possibly lying).
    Chunked(Vec<String>),
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        2 => Just(Framing::Plain),
        1 => proptest::collection::vec(
            prop_oneof![
                (0usize..64).prop_map(|n| format!("{n:x}")),
                Just("ffffffffffffffffffff".to_string()),
                Just("7fffffffffffffff".to_string()),
                printable(6),
            ],
            0..4
        )
        .prop_map(Framing::Chunked),
    ]
}

fn response(status: String, headers: Vec<Vec<u8>>, body: Vec<u8>, framing: Framing) -> Vec<u8> {
    let mut out = status.into_bytes();
    out.extend_from_slice(b"\r\n");
    for h in headers {
        out.extend_from_slice(&h);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    match framing {
        Framing::Plain => out.extend_from_slice(&body),
        Framing::Chunked(sizes) => {
            let mut rest = body.as_slice();
            for size in sizes {
                out.extend_from_slice(size.as_bytes());
                out.extend_from_slice(b"\r\n");
                let n = usize::from_str_radix(&size, 16)
                    .unwrap_or(0)
                    .min(rest.len());
                let (chunk, tail) = rest.split_at(n);
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
                rest = tail;
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
    out
}

fn hostile_client(origin: &str) -> PubNub {
    PubNub::builder()
        .subscribe_key("k")
        .user_id("u")
        .origin(origin)
        .connect_timeout(Duration::from_millis(300))
        .request_timeout(Duration::from_millis(300))
        .max_response_size(256)
        .retry_policy(RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(10),
            deadline: Some(DEADLINE),
        })
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_answer_ends_in_time_with_a_typed_result(
        status in status_line(),
        headers in proptest::collection::vec(header(), 0..6),
        body in body(),
        framing in framing(),
    ) {
        // One server for all cases; the case's response is swapped in.
        static SERVER: std::sync::OnceLock<(Server, Arc<Mutex<Vec<u8>>>)> = std::sync::OnceLock::new();
        let (server, current) = SERVER.get_or_init(|| {
            let current = Arc::new(Mutex::new(Vec::new()));
            let c = current.clone();
            (Server::start(move |_| Reply::Raw(c.lock().unwrap().clone())), current)
        });
        *current.lock().unwrap() = response(status, headers, body, framing);
        let client = hostile_client(&server.origin);
        let before = server.targets().len();
        let outcome = client.where_now().execute();
        // The call returned (when, against the deadline, is checked in
        // virtual time in `sim_rules.rs`), within its attempts.
        let attempts = server.targets().len() - before;
        prop_assert!((1..=2).contains(&attempts), "{attempts} attempts: {outcome:?}");
        match outcome {
            Ok(w) => prop_assert_eq!(w.channels, vec!["a".to_string()]),
            Err(e) => {
                let typed = matches!(
                    e.kind(),
                    ErrorKind::Server(_) | ErrorKind::Transport { .. } | ErrorKind::Decode { .. }
                );
                prop_assert!(typed, "{e:?}");
                // The message never shows a raw control byte.
                prop_assert!(!e.to_string().contains('\0'));
            }
        }
    }
}
