//! The event stream and the device loop spawn no thread: the number of
//! this process's threads (`/proc/self/task`) stays the same across many
//! short polls. A test binary of its own, so no other test's threads come
//! and go while it counts.
#![cfg(target_os = "linux")]

use pubnub_presence::{Heartbeater, PresenceLoop, PubNub};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn polling_spawns_no_thread() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    // One server thread per connection, each answering the handshake and
    // heartbeats at once and holding long-polls.
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut h = String::new();
                    while reader.read_line(&mut h).unwrap_or(0) > 0 && h != "\r\n" {
                        h.clear();
                    }
                    let body = if line.contains("/subscribe/") && !line.contains("tt=0") {
                        std::thread::sleep(Duration::from_secs(60));
                        return;
                    } else if line.contains("/subscribe/") {
                        r#"{"t":{"t":"1","r":1},"m":[]}"#
                    } else {
                        r#"{"status":200,"message":"OK","service":"Presence"}"#
                    };
                    let msg = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = out.write_all(msg.as_bytes());
                }
            });
        }
    });
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
