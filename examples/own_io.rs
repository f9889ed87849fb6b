//! The sans-IO engine driven by a program's own IO: the heartbeat
//! schedule and the event stream, with no connection of the crate's.
//! Here the "own IO" is the simplest there is (one blocking
//! `std::net::TcpStream` per request, `Connection: close`); an async
//! runtime or an embedded network stack plugs in the same way: ask the
//! engine what to send (`poll`), send it, hand the answer back
//! (`handle_response` / `handle_failure`), take events out.
//!
//! ```text
//! cargo run --example own_io --features emulator
//! ```
//!
//! It starts the local presence server in-process, keeps `device` present
//! with a `HeartbeatSchedule`, has another user join, and prints the join
//! that its `EventStream` receives.

use pubnub_presence::emulator::Server;
use pubnub_presence::engine::{Engine, Step};
use pubnub_presence::presence::events::EventStream;
use pubnub_presence::presence::schedule::HeartbeatSchedule;
use pubnub_presence::{Error, PresenceEvent, PubNub, Response};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One GET over a new TCP connection, read to the end: the whole of this
/// program's HTTP client. `url` is `http://host:port/path?query`;
/// `silence` bounds each wait for bytes, `total` the whole exchange.
fn get(url: &str, silence: Duration, total: Option<Duration>) -> std::io::Result<Response> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("http only"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let ends = total.and_then(|t| Instant::now().checked_add(t));
    let mut sock = TcpStream::connect(host)?;
    sock.set_read_timeout(Some(silence))?;
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match sock.read(&mut chunk)? {
            0 => break,
            n => raw.extend_from_slice(&chunk[..n]),
        }
        if ends.is_some_and(|e| Instant::now() >= e) {
            let why = "the answer did not end within its total bound";
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, why));
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let retry_after = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        let secs = value.trim().parse().ok()?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| Duration::from_secs(secs))
    });
    Ok(Response {
        status,
        body: raw[split + 4..].to_vec(),
        retry_after,
    })
}

/// Pumps one engine once: what it asks for is sent and answered before
/// this returns (blocking IO: nothing stays in flight between calls).
/// Returns when the engine wants to be called again.
fn pump(pubnub: &PubNub, engine: &mut dyn Engine) -> Result<Option<Instant>, Error> {
    match engine.poll(Instant::now(), false)? {
        Step::Wait(at) => Ok(at),
        Step::Send(t) => {
            // Signed (when a secret key is set) as it goes out.
            let url = pubnub.url_for(t.request)?;
            match get(&url, t.silence, t.total) {
                Ok(resp) => engine.handle_response(Instant::now(), resp)?,
                Err(e) => {
                    let e = Error::from(e);
                    return Err(engine.handle_failure(Instant::now(), e));
                }
            }
            Ok(Some(Instant::now()))
        }
        // A step this program does not know (the enum may grow): ask again.
        _ => Ok(Some(Instant::now())),
    }
}

pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::start("127.0.0.1:0")?;
    let client = |user: &str| {
        PubNub::builder()
            .subscribe_key("demo")
            .user_id(user)
            .origin(server.origin())
            .build()
    };
    let pubnub = client("device")?;

    let mut presence = HeartbeatSchedule::new(&pubnub);
    presence.join(vec!["lobby".into()])?;
    presence.set_state_json("lobby", r#"{"mood":"curious"}"#)?;
    // A short long-poll: the local server answers within it anyway.
    let mut events: EventStream = pubnub
        .presence_events()
        .channels(vec!["lobby".into()])
        .long_poll_timeout(Duration::from_secs(5))
        .engine()?;

    // The heartbeat, then the stream's handshake (its cursor).
    pump(&pubnub, &mut presence)?;
    println!("device present: {}", presence.is_present(Instant::now()));
    pump(&pubnub, &mut events)?;

    // Someone else joins; the next long-poll brings it.
    client("visitor")?
        .heartbeat()
        .channels(vec!["lobby".into()])
        .execute()?;
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        while let Some(event) = events.poll_event(Instant::now())? {
            if let PresenceEvent::Join(j) = &event {
                println!("{} joined {}", j.user_id, j.channel);
                if j.user_id == "visitor" {
                    return Ok(());
                }
            }
        }
        // A heartbeat when due; then the long-poll.
        pump(&pubnub, &mut presence)?;
        if let Some(at) = pump(&pubnub, &mut events)? {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
        }
    }
    Err("no join within 60 s".into())
}
