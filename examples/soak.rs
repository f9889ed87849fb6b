//! Soak test: the local presence server with 1,000 simulated users
//! heartbeating (in a child process), and one client doing here_now,
//! get/set state and the event stream in a loop. Reports the client's RSS
//! at start and end (it must stay flat) and error counts.
//!
//! ```text
//! cargo run --release --example soak --features emulator -- --seconds 600
//! ```

use pubnub_presence::emulator::{Options, Server};
use pubnub_presence::{Error, ErrorKind, PubNub};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const USERS: usize = 1000;
const CHANNELS: usize = 10;
const TIMEOUT_S: u64 = 60;

fn rss_kib() -> u64 {
    // /proc/self/statm: size resident ... in pages.
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4
}

/// The child: the server plus the simulated users, until stdin closes.
fn serve() {
    let server = Server::start_with(
        "127.0.0.1:0",
        Options {
            max_connections: 64,
            long_poll_hold: Duration::from_secs(20),
            ..Options::default()
        },
    )
    .expect("start the presence server");
    println!("{}", server.origin());
    let addr = server.local_addr();
    for worker in 0..4 {
        std::thread::spawn(move || {
            let mut stream: Option<TcpStream> = None;
            loop {
                let started = Instant::now();
                for i in (worker..USERS).step_by(4) {
                    let target = format!(
                        "/v2/presence/sub-key/demo/channel/soak-{}/heartbeat?uuid=user-{i}&heartbeat={TIMEOUT_S}",
                        i % CHANNELS
                    );
                    if stream.is_none() {
                        stream = TcpStream::connect(addr).ok();
                    }
                    let ok = stream.as_mut().is_some_and(|s| {
                        write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").is_ok()
                            && read_response(s)
                    });
                    if !ok {
                        stream = None;
                    }
                }
                // Every user heartbeats twice per timeout.
                let period = Duration::from_secs(TIMEOUT_S / 2);
                std::thread::sleep(period.saturating_sub(started.elapsed()));
            }
        });
    }
    // Exit when the parent goes away.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

fn read_response(s: &mut TcpStream) -> bool {
    let mut reader = BufReader::new(s);
    let mut len = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).is_ok()
}

fn kind(e: &Error) -> String {
    match e.kind() {
        ErrorKind::Input { .. } => "input".into(),
        ErrorKind::Server(s) => format!("server {}", s.status),
        ErrorKind::Transport { kind, .. } => format!("transport {kind:?}"),
        ErrorKind::Decode { .. } => "decode".into(),
        _ => "other".into(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut seconds = 60u64;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--serve" => {
                serve();
                return Ok(());
            }
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(60),
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut origin = String::new();
    BufReader::new(child.stdout.take().ok_or("no child stdout")?).read_line(&mut origin)?;
    let origin = origin.trim().to_string();
    println!("server {origin}, {USERS} users on {CHANNELS} channels, running {seconds} s");

    let pubnub = PubNub::builder()
        .subscribe_key("demo")
        .user_id("soak-client")
        .origin(&origin)
        .build()?;
    let channels: Vec<String> = (0..CHANNELS).map(|i| format!("soak-{i}")).collect();
    let mut events = pubnub.presence_events().channels(channels.clone()).open()?;
    // Let every user join once before measuring.
    std::thread::sleep(Duration::from_secs(5));

    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let (mut calls, mut seen_events, mut last_occupancy) = (0u64, 0u64, 0u32);
    let mut rss_start = None;
    let mut rss_max = 0;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut i = 0u64;
    while Instant::now() < deadline {
        i += 1;
        let mut note = |r: Result<(), Error>| {
            calls += 1;
            if let Err(e) = r {
                *errors.entry(kind(&e)).or_default() += 1;
            }
        };
        note(
            pubnub
                .here_now()
                .channels(channels.clone())
                .include_state(true)
                .execute()
                .map(|h| last_occupancy = h.total_occupancy),
        );
        note(
            pubnub
                .heartbeat()
                .channels(vec!["soak-0".into()])
                .state_json(format!("{{\"soak-0\":{{\"i\":{}}}}}", i % 100))
                .execute(),
        );
        note(
            pubnub
                .get_presence_state()
                .channels(vec!["soak-0".into()])
                .execute()
                .map(drop),
        );
        match events.poll(Duration::from_millis(200)) {
            Ok(Some(_)) => seen_events += 1,
            Ok(None) => {}
            Err(e) => *errors.entry(format!("events {}", kind(&e))).or_default() += 1,
        }
        // Drain what is queued without waiting.
        while let Ok(Some(_)) = events.poll(Duration::from_millis(1)) {
            seen_events += 1;
        }
        let rss = rss_kib();
        if rss_start.is_none() && started.elapsed() > Duration::from_secs(10) {
            rss_start = Some(rss);
        }
        rss_max = rss_max.max(rss);
    }
    let rss_end = rss_kib();
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "calls:           {calls} ({:.0}/s)",
        calls as f64 / seconds as f64
    );
    println!("events seen:     {seen_events}");
    println!("last occupancy:  {last_occupancy}");
    println!(
        "client RSS KiB:  start {} (after 10 s), end {rss_end}, max {rss_max}",
        rss_start.unwrap_or(rss_end)
    );
    println!(
        "errors:          {}",
        if errors.is_empty() {
            "none".to_string()
        } else {
            format!("{errors:?}")
        }
    );
    Ok(())
}
