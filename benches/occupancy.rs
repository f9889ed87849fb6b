//! The occupancy mirror: memory per occupant and time per applied event
//! on a 10,000-occupant channel, and the heap of a whole device loop
//! (heartbeats + mirror) against the same loop without the mirror.
//!
//!     cargo bench --bench occupancy --features emulator
//!     LOOP_SECONDS=10 cargo bench --bench occupancy --features emulator
//!
//! Against the local presence server over plain HTTP (loopback). Heap is
//! counted on the mirror's thread only (benches/support/alloc.rs): the
//! server's threads are not counted. Timings are printed, never asserted.
//! Results go in BENCHMARKS.md.

#[path = "support/alloc.rs"]
mod alloc;

use pubnub_presence::__internal::apply_event;
use pubnub_presence::emulator::{Options, Server, ServerHandle};
use pubnub_presence::{Heartbeater, Occupancy, PresenceEvent, PresenceLoop, PubNub, UserEvent};
use std::borrow::Cow;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

#[global_allocator]
static A: alloc::Counting = alloc::Counting;

const OCCUPANTS: usize = 10_000;

/// `count` users heartbeat onto `channel` (one raw keep-alive connection);
/// with `state`, each sets `{"battery":NN}` too.
fn crowd(server: &ServerHandle, channel: &str, count: usize, state: bool) {
    let stream = std::net::TcpStream::connect(server.local_addr()).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    for i in 0..count {
        let state = if state {
            format!(
                "&state=%7B%22{channel}%22%3A%7B%22battery%22%3A{}%7D%7D",
                i % 100
            )
        } else {
            String::new()
        };
        let request = format!(
            "GET /v2/presence/sub-key/demo/channel/{channel}/heartbeat?uuid=device-{i:05}&heartbeat=300{state} HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        out.write_all(request.as_bytes()).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
    }
    // The joins' interval events go out now, before any mirror starts.
    server.advance(Duration::from_secs(11));
}

fn client(server: &ServerHandle, user: &str) -> PubNub {
    PubNub::builder()
        .subscribe_key("demo")
        .user_id(user)
        .origin(server.origin())
        .presence_timeout(300)
        .build()
        .unwrap()
}

/// Opens a mirror of `channel` and polls it until its first snapshot is
/// in; returns it with the heap it holds and its peak while syncing.
fn synced(pubnub: &PubNub, channel: &str, state: bool) -> (Occupancy, usize, alloc::Stats) {
    let ((m, live), stats) = alloc::measure(|| {
        let mut m = pubnub
            .occupancy()
            .channels(vec![channel.into()])
            .include_state(state)
            .max_occupants_per_channel(2 * OCCUPANTS)
            .resync_delay(Duration::ZERO)
            .open()
            .unwrap();
        while !m.is_synced() {
            // Each page's changes come back; dropped here, as a UI would
            // after using them.
            black_box(m.poll(Duration::from_millis(100)).unwrap());
        }
        let live = alloc::live();
        (m, live)
    });
    (m, live, stats)
}

fn user_event(channel: &str, user: String, occupancy: u32) -> UserEvent<'static> {
    UserEvent {
        channel: Cow::Owned(channel.to_string()),
        subscription: None,
        user_id: Cow::Owned(user),
        occupancy,
        timestamp: 1_730_202_615,
        precise_timestamp: Some(1_730_202_615_678),
        state: None,
    }
}

/// Mean time and allocations per applied event: leave then join again of
/// each user in turn (the channel stays at 10,000).
fn apply_per_event(m: &mut Occupancy, channel: &str) -> (Duration, f64, f64) {
    let n = OCCUPANTS as u32;
    let events: Vec<PresenceEvent<'static>> = (0..4_000)
        .flat_map(|i| {
            let user = format!("device-{:05}", i % OCCUPANTS);
            [
                PresenceEvent::Leave(user_event(channel, user.clone(), n - 1)),
                PresenceEvent::Join(user_event(channel, user, n)),
            ]
        })
        .collect();
    let count = events.len();
    let t = Instant::now();
    let (changes, stats) = alloc::measure(|| {
        let mut changes = 0;
        for e in events {
            changes += apply_event(m, e).len();
        }
        changes
    });
    let elapsed = t.elapsed();
    assert_eq!(changes, count, "each event changes one occupant");
    (
        elapsed / count as u32,
        stats.allocs as f64 / count as f64,
        stats.bytes as f64 / count as f64,
    )
}

/// Mean time per interval event with 100 joins and 100 leaves.
fn apply_per_interval(m: &mut Occupancy, channel: &str) -> Duration {
    let n = OCCUPANTS as u32;
    let rounds = 100;
    let t = Instant::now();
    for r in 0..rounds {
        let ids = |from: usize| -> Vec<Cow<'static, str>> {
            (from..from + 100)
                .map(|i| Cow::Owned(format!("device-{:05}", i % OCCUPANTS)))
                .collect()
        };
        let leave = ids(r * 100);
        let out = PresenceEvent::Interval(pubnub_presence::IntervalEvent {
            channel: Cow::Owned(channel.to_string()),
            subscription: None,
            occupancy: n - 100,
            timestamp: 0,
            join: Vec::new(),
            leave: leave.clone(),
            timeout: Vec::new(),
            here_now_refresh: false,
        });
        black_box(apply_event(m, out));
        let back = PresenceEvent::Interval(pubnub_presence::IntervalEvent {
            channel: Cow::Owned(channel.to_string()),
            subscription: None,
            occupancy: n,
            timestamp: 0,
            join: leave,
            leave: Vec::new(),
            timeout: Vec::new(),
            here_now_refresh: false,
        });
        black_box(apply_event(m, back));
    }
    t.elapsed() / (2 * rounds as u32)
}

/// A device loop for `seconds` on a channel where visitors come and go
/// (one join or leave every 200 ms from another thread): with the mirror
/// (heartbeats in the same call), or the plain device loop.
fn whole_loop(server: &ServerHandle, seconds: u64, mirror: bool) -> (alloc::Stats, usize, u64) {
    let channel = if mirror { "floor-m" } else { "floor-p" };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let pubnub = client(server, "sensor-9");
    std::thread::scope(|s| {
        s.spawn(|| {
            let visitors: Vec<PubNub> = (0..10).map(|i| client(server, &format!("v{i}"))).collect();
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let v = &visitors[i % 10];
                if (i / 10) % 2 == 0 {
                    let _ = v.heartbeat().channels(vec![channel.into()]).execute();
                } else {
                    let _ = v.leave().channels(vec![channel.into()]).execute();
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let ((live, changes), stats) = alloc::measure(|| {
            let mut online = Heartbeater::new(&pubnub);
            online.join(vec![channel.into()]).unwrap();
            online.set_state_json(channel, r#"{"battery":87}"#).unwrap();
            let end = Instant::now() + Duration::from_secs(seconds);
            let mut changes = 0u64;
            if mirror {
                let mut m = pubnub
                    .occupancy()
                    .channels(vec![channel.into()])
                    .include_state(true)
                    .heartbeater(online)
                    .open()
                    .unwrap();
                while Instant::now() < end {
                    match m.poll(Duration::from_secs(1)) {
                        Ok(c) => changes += c.len() as u64,
                        Err(e) => eprintln!("{e}"),
                    }
                }
                (alloc::live(), changes)
            } else {
                let events = pubnub
                    .presence_events()
                    .channels(vec![channel.into()])
                    .open()
                    .unwrap();
                let mut device = PresenceLoop::new(online, Some(events));
                while Instant::now() < end {
                    match device.poll(Duration::from_secs(1)) {
                        Ok(Some(_)) => changes += 1,
                        Ok(None) => {}
                        Err(e) => eprintln!("{e}"),
                    }
                }
                (alloc::live(), changes)
            }
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (stats, live, changes)
    })
}

fn main() {
    let seconds: u64 = std::env::var("LOOP_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let server = Server::start_with("127.0.0.1:0", Options::default()).unwrap();
    crowd(&server, "crowd", OCCUPANTS, false);
    crowd(&server, "crowd-state", OCCUPANTS, true);
    let pubnub = client(&server, "bench");

    println!("| mirror of one channel | heap held | per occupant | peak while syncing | allocations to sync |");
    println!("|---|---:|---:|---:|---:|");
    let (empty, empty_live, _) = synced(&pubnub, "nobody-here", false);
    drop(empty);
    println!("| empty channel | {empty_live} B | | | |");
    for (channel, state) in [("crowd", false), ("crowd-state", true)] {
        let (m, live, stats) = synced(&pubnub, channel, state);
        assert_eq!(m.occupancy(channel), OCCUPANTS as u32);
        println!(
            "| {OCCUPANTS} occupants{} | {live} B | {:.1} B | {} B | {} |",
            if state {
                ", state `{\"battery\":NN}`"
            } else {
                ", no state"
            },
            (live - empty_live) as f64 / OCCUPANTS as f64,
            stats.peak,
            stats.allocs,
        );
    }

    let (mut m, _, _) = synced(&pubnub, "crowd", false);
    let (per_event, allocs, bytes) = apply_per_event(&mut m, "crowd");
    let per_interval = apply_per_interval(&mut m, "crowd");
    assert_eq!(m.occupancy("crowd"), OCCUPANTS as u32);
    println!();
    println!(
        "| applying to a {OCCUPANTS}-occupant channel | time | allocations | bytes allocated |"
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| one join or leave event | {} ns | {allocs:.1} | {bytes:.0} |",
        per_event.as_nanos()
    );
    println!(
        "| one interval event, 100 ids in its deltas | {} µs | | |",
        per_interval.as_micros()
    );

    println!();
    println!("| device loop, {seconds} s, poll budget 1 s, visitors joining or leaving every 200 ms | peak heap | heap held at the end | allocations | events / changes |");
    println!("|---|---:|---:|---:|---:|");
    for mirror in [false, true] {
        let (stats, live, changes) = whole_loop(&server, seconds, mirror);
        println!(
            "| {} | {} B | {live} B | {} | {changes} |",
            if mirror {
                "heartbeats + occupancy mirror (`Occupancy` with a `Heartbeater`)"
            } else {
                "heartbeats + raw events (`PresenceLoop`)"
            },
            stats.peak,
            stats.allocs,
        );
    }
}
