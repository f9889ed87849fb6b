//! A whole `here_now` call over plain-HTTP loopback with keep-alive:
//! allocations, bytes allocated and peak heap per call, and calls per
//! second; and the same for the first call (connection setup).
//!
//!     cargo bench --bench whole_call
//!
//! The server runs on another thread of this process; only the client
//! thread's allocations are counted.

#[path = "support/alloc.rs"]
mod alloc;
#[path = "support/bodies.rs"]
mod bodies;

use pubnub_presence::PubNub;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Instant;

#[global_allocator]
static A: alloc::Counting = alloc::Counting;

fn serve(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let body = body.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let mut w = stream;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/javascript; charset=\"UTF-8\"\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let mut resp = head.into_bytes();
                resp.extend_from_slice(&body);
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" && w.write_all(&resp).is_err() {
                        return;
                    }
                }
            });
        }
    });
    origin
}

fn main() {
    let n = std::env::var("OCCUPANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let body = bodies::here_now(n, true);
    let origin = serve(body.clone());
    let pubnub = PubNub::builder()
        .subscribe_key("demo")
        .user_id("bench")
        .origin(origin)
        .build()
        .unwrap();
    let call = || {
        pubnub
            .here_now()
            .channels(vec!["lobby".to_string()])
            .include_state(true)
            .execute()
            .unwrap()
    };
    let (r, first) = alloc::measure(call);
    assert_eq!(r.total_occupancy as usize, n);
    let calls = 2_000;
    let (mut allocs, mut bytes, mut peak) = (0, 0, 0);
    for _ in 0..calls {
        let (_, s) = alloc::measure(call);
        allocs += s.allocs;
        bytes += s.bytes;
        peak = peak.max(s.peak);
    }
    // The same call, handing the borrowed result to a closure.
    let call_with = || {
        pubnub
            .here_now()
            .channels(vec!["lobby".to_string()])
            .include_state(true)
            .execute_with(|r| r.total_occupancy)
            .unwrap()
    };
    let (mut with_allocs, mut with_peak) = (0, 0);
    for _ in 0..calls {
        let (_, s) = alloc::measure(call_with);
        with_allocs += s.allocs;
        with_peak = with_peak.max(s.peak);
    }
    let t = Instant::now();
    for _ in 0..calls {
        std::hint::black_box(call());
    }
    let per_sec = calls as f64 / t.elapsed().as_secs_f64();
    // Where a steady-state call's allocations go.
    let channels = vec!["lobby".to_string()];
    let (b, s_builder) = alloc::measure(|| {
        pubnub
            .here_now()
            .channels(channels.clone())
            .include_state(true)
    });
    let (req, s_req) = alloc::measure(|| b.request().unwrap());
    let (resp, s_send) = alloc::measure(|| pubnub.send(req).unwrap());
    let (_, s_dec) = alloc::measure(|| {
        pubnub_presence::decode::here_now(&resp.body, Some("lobby"))
            .unwrap()
            .into_owned()
    });
    println!(
        "here_now over loopback, {n} occupants with state, body {} bytes",
        body.len()
    );
    println!("| call | allocations | bytes allocated | peak heap | calls/s |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| first (connect) | {} | {} | {} | – |",
        first.allocs, first.bytes, first.peak
    );
    println!(
        "| steady state (mean of {calls}; peak = max) | {:.1} | {:.0} | {} | {:.0} |",
        allocs as f64 / calls as f64,
        bytes as f64 / calls as f64,
        peak,
        per_sec
    );
    println!(
        "| steady state, `execute_with` (borrowed result) | {:.1} | – | {} | – |",
        with_allocs as f64 / calls as f64,
        with_peak
    );
    println!();
    println!("| part of a steady-state call | allocations | bytes |");
    println!("|---|---:|---:|");
    println!(
        "| builder (incl. the caller's channel Vec clone) | {} | {} |",
        s_builder.allocs, s_builder.bytes
    );
    println!(
        "| request(): the URL (origin, path, query) | {} | {} |",
        s_req.allocs, s_req.bytes
    );
    println!(
        "| send(): parse URL, round trip (own HTTP client), body | {} | {} |",
        s_send.allocs, s_send.bytes
    );
    println!(
        "| decode + into_owned (public decoder; `execute()` moves the flat channel name, 1 fewer) | {} | {} |",
        s_dec.allocs, s_dec.bytes
    );
}
