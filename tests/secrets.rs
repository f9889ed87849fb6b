//! Secret key, auth key and token never appear in `Debug`, in error
//! messages, in this crate's log records (retries), or in what the HTTP
//! stack (ureq-proto) logs at `Debug` level (the level a device would ship
//! with). At `Trace` level ureq-proto prints the raw request bytes; that
//! level is for debugging on a bench, and the README says so.

mod common;

use common::{ok_json, Reply, Server};
use pubnub_presence::{PubNub, RetryPolicy};
use std::sync::Mutex;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;
impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Debug
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            LINES
                .lock()
                .unwrap()
                .push(format!("{} {} {}", r.target(), r.level(), r.args()));
        }
    }
    fn flush(&self) {}
}

/// "target LEVEL message" as "LEVEL target message", for readable asserts.
fn logged_with_level(lines: &[&String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            let (target, level, rest) = (parts.next()?, parts.next()?, parts.next()?);
            Some(format!("{level} {target} {rest}"))
        })
        .collect()
}
static LOGGER: Capture = Capture;

const SECRETS: [&str; 3] = ["AUTHTOKEN-zz9", "SECRETKEY-qq7", "PUBKEY-pp5"];
/// Not a secret (request paths show it), but this
/// crate's own records leave it out as well: they carry no URL at all.
const SUBSCRIBE_KEY: &str = "SUBKEY-ss3";

#[test]
fn secrets_stay_out_of_debug_errors_and_logs() {
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    let ok = Server::start(|_| ok_json(r#"{"payload":{"channels":["a"]}}"#));
    let forbidden = Server::start(|_| {
        Reply::Json(403, r#"{"message":"Forbidden","payload":{"channels":["a"]},"error":true,"service":"Access Manager","status":403}"#.into())
    });
    let dead = Server::start(|_| Reply::Close);
    // The subscribe handshake works, everything else is refused: the
    // occupancy mirror's here_now fails (and is logged).
    let no_here_now = Server::start(|target| {
        if target.contains("/v2/subscribe/") && target.contains("tt=0") {
            return ok_json(r#"{"t":{"t":"5","r":1},"m":[]}"#);
        }
        Reply::Json(403, r#"{"message":"Forbidden","payload":{"channels":["a"]},"error":true,"service":"Access Manager","status":403}"#.into())
    });
    // Retried answers, so the retry records are written: a 503 with a
    // Retry-After (honoured, then the attempts run out), a 503 in a 200
    // body (whose message echoes the path, as a 404's does), and a
    // Retry-After past the deadline (not retried).
    // The bodies echo the request path (never the query, which a server
    // would not echo either), so a record that copied the server's text
    // would show the subscribe key.
    let path = |target: &str| target.split('?').next().unwrap_or_default().to_string();
    let unavailable = Server::start(move |target| {
        let target = path(target);
        Reply::Raw(format!(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{target}",
            target.len()
        ).into_bytes())
    });
    let in_body = Server::start(move |target| {
        let target = path(target);
        common::ok_json(&format!(
            r#"{{"status":503,"error":1,"message":"{target}","service":"Presence"}}"#
        ))
    });
    let far = Server::start(|_| {
        Reply::Raw(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 99999999999\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec())
    });
    let retried = [&unavailable.origin, &in_body.origin, &far.origin];
    let mut texts = Vec::new();
    for origin in [
        &ok.origin,
        &forbidden.origin,
        &dead.origin,
        &no_here_now.origin,
    ]
    .into_iter()
    .chain(retried)
    {
        let policy = if retried.contains(&origin) {
            RetryPolicy {
                max_attempts: 2,
                base_delay: std::time::Duration::from_millis(5),
                max_delay: std::time::Duration::from_millis(10),
                deadline: Some(std::time::Duration::from_secs(5)),
            }
        } else {
            RetryPolicy::none()
        };
        let b = PubNub::builder()
            .subscribe_key(SUBSCRIBE_KEY)
            .publish_key(SECRETS[2])
            .auth_key(SECRETS[0])
            .user_id("me")
            .origin(origin)
            .retry_policy(policy);
        #[cfg(feature = "tls")]
        let b = b.secret_key(SECRETS[1]);
        let p = b.build().unwrap();
        texts.push(format!("{p:?} {:?}", p.config()));
        let req = p.where_now().request().unwrap();
        texts.push(format!("{req:?}"));
        match p.where_now().execute() {
            Ok(r) => texts.push(format!("{r:?}")),
            Err(e) => texts.push(format!("{e} {e:?}")),
        }
        let mut events = p
            .presence_events()
            .channels(vec!["a".into()])
            .open()
            .unwrap();
        texts.push(format!("{events:?}"));
        if let Err(e) = events.poll(std::time::Duration::from_millis(200)) {
            texts.push(format!("{e} {e:?}"));
        }
        // The heartbeat schedule on its kept connection, and its records.
        let mut hb = pubnub_presence::Heartbeater::new(&p);
        hb.join(vec!["a".into()]).unwrap();
        texts.push(format!("{hb:?}"));
        if let Err(e) = hb.poll(std::time::Duration::from_millis(300)) {
            texts.push(format!("{e} {e:?}"));
        }
        // The occupancy mirror, its changes, failures and records.
        let mut mirror = p
            .occupancy()
            .channels(vec!["a".into()])
            .resync_delay(std::time::Duration::ZERO)
            .open()
            .unwrap();
        for _ in 0..3 {
            match mirror.poll(std::time::Duration::from_millis(100)) {
                Ok(changes) => texts.push(format!("{changes:?}")),
                Err(e) => texts.push(format!("{e} {e:?}")),
            }
        }
        texts.push(format!("{mirror:?}"));
    }
    // The secrets did go over the wire (so the test is not vacuous)...
    assert!(ok.targets().iter().any(|t| t.contains(SECRETS[0])));
    // ...but nowhere else.
    let logged = LINES.lock().unwrap().clone();
    assert!(
        logged.iter().any(|l| l.starts_with("ureq")),
        "the HTTP stack's debug log was captured: {logged:?}"
    );
    // This crate's retry records were captured too: each retry (warn) and
    // each retryable failure that was not retried (debug).
    let retry: Vec<&String> = logged
        .iter()
        .filter(|l| l.starts_with("pubnub_presence::retry "))
        .collect();
    for want in [
        "WARN pubnub_presence::retry attempt 1 of 2 failed (server error 503, Retry-After 0 s); retrying in 0 ms",
        "DEBUG pubnub_presence::retry attempt 2 failed (server error 503, Retry-After 0 s); not retried: all 2 attempts made",
        "WARN pubnub_presence::retry attempt 1 of 2 failed (server error 503 in the body of a 2xx); retrying in",
        "DEBUG pubnub_presence::retry attempt 1 failed (server error 429, Retry-After 99999999999 s); not retried: Retry-After of 99999999999 s is longer than the",
    ] {
        assert!(
            logged_with_level(&retry).iter().any(|l| l.starts_with(want)),
            "{want}\nin {retry:#?}"
        );
    }
    for l in &retry {
        assert!(!l.contains(SUBSCRIBE_KEY) && !l.contains("/v2/"), "{l}");
    }
    // The event stream's and the heartbeat's failure records, too.
    for target in [
        "pubnub_presence::events ",
        "pubnub_presence::heartbeat ",
        "pubnub_presence::mirror ",
    ] {
        let records: Vec<&String> = logged.iter().filter(|l| l.starts_with(target)).collect();
        assert!(
            records.iter().any(|l| l.contains("server error 403")),
            "{target}: {records:#?}"
        );
        for l in &records {
            assert!(!l.contains(SUBSCRIBE_KEY) && !l.contains("/v2/"), "{l}");
        }
    }
    texts.extend(logged);
    assert!(texts.len() > 10);
    for t in &texts {
        for s in SECRETS {
            assert!(!t.contains(s), "{s} leaked in: {t}");
        }
    }
}
