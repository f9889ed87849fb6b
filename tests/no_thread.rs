//! The event stream and the device loop spawn no thread: the number of
//! this process's threads (`/proc/self/task`) stays the same across many
//! short polls. A test binary of its own, so no other test's threads come
//! and go while it counts.
#![cfg(target_os = "linux")]

mod common;

use common::{ok_json, Reply, Server};
use pubnub_presence::{Heartbeater, PresenceLoop, PubNub};
use std::time::Duration;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn polling_spawns_no_thread() {
    // The shared loopback server (one thread per connection): the
    // handshake and heartbeats answered at once, long-polls held.
    let server = Server::start(|target| {
        if target.contains("/subscribe/") && !target.contains("tt=0") {
            Reply::Silent
        } else if target.contains("/subscribe/") {
            ok_json(r#"{"t":{"t":"1","r":1},"m":[]}"#)
        } else {
            ok_json(r#"{"status":200,"message":"OK","service":"Presence"}"#)
        }
    });
    let origin = server.origin.clone();
    let p = PubNub::builder()
        .subscribe_key("k")
        .user_id("me")
        .origin(&origin)
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
    // Both connections open (and their server threads started).
    for _ in 0..5 {
        device.poll(Duration::from_millis(50)).unwrap();
    }
    assert!(device.heartbeater().last_success().is_some());
    let before = threads();
    for _ in 0..30 {
        assert!(device.poll(Duration::from_millis(20)).unwrap().is_none());
    }
    assert_eq!(threads(), before, "no thread created by 30 polls");
    assert_eq!(device.events().unwrap().connections_opened(), 1);
}
