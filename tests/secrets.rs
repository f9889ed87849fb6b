//! Secret key, auth key and token never appear in `Debug`, in error
//! messages, or in what the HTTP stack logs at `Debug` level (the level a
//! device would ship with). At `Trace` level ureq prints the raw request;
//! that level is for debugging on a bench, and the README says so.

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
                .push(format!("{} {}", r.target(), r.args()));
        }
    }
    fn flush(&self) {}
}
static LOGGER: Capture = Capture;

const SECRETS: [&str; 3] = ["AUTHTOKEN-zz9", "SECRETKEY-qq7", "PUBKEY-pp5"];

#[test]
fn secrets_stay_out_of_debug_errors_and_logs() {
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    let ok = Server::start(|_| ok_json(r#"{"payload":{"channels":["a"]}}"#));
    let forbidden = Server::start(|_| {
        Reply::Json(403, r#"{"message":"Forbidden","payload":{"channels":["a"]},"error":true,"service":"Access Manager","status":403}"#.into())
    });
    let dead = Server::start(|_| Reply::Close);
    let mut texts = Vec::new();
    for origin in [&ok.origin, &forbidden.origin, &dead.origin] {
        let b = PubNub::builder()
            .subscribe_key("sub")
            .publish_key(SECRETS[2])
            .auth_key(SECRETS[0])
            .user_id("me")
            .origin(origin)
            .retry_policy(RetryPolicy::none());
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
    }
    // The secrets did go over the wire (so the test is not vacuous)...
    assert!(ok.targets().iter().any(|t| t.contains(SECRETS[0])));
    // ...but nowhere else.
    let logged = LINES.lock().unwrap().clone();
    assert!(
        logged.iter().any(|l| l.starts_with("ureq")),
        "the HTTP stack's debug log was captured: {logged:?}"
    );
    texts.extend(logged);
    assert!(texts.len() > 10);
    for t in &texts {
        for s in SECRETS {
            assert!(!t.contains(s), "{s} leaked in: {t}");
        }
    }
}
