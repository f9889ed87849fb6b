//! The live roster of channels, refreshing in place in a terminal: who is
//! on each channel (with state), kept by the occupancy mirror.
//!
//! ```text
//! cargo run --example watch --features emulator -- lobby kitchen
//! cargo run --example watch --features emulator -- --group house --seconds 30
//! ```
//!
//! Arguments: channel names; `--group NAME` (repeatable) for channel
//! groups; `--seconds N` to stop after N seconds (default: until Ctrl-C).
//!
//! With no keys in the environment it starts the local presence server
//! in-process, with a few simulated visitors who come and go, change
//! state and time out, so there is something to watch. With
//! `PUBNUB_SUBSCRIBE_KEY` (and optionally `PUBNUB_PUBLISH_KEY`,
//! `PUBNUB_SECRET_KEY`, `PUBNUB_ORIGIN`, `PUBNUB_AUTH_KEY`) it watches that
//! service instead. Not a terminal (a pipe, a file): one roster per change.

use pubnub_presence::emulator::{Options, Server, ServerHandle};
use pubnub_presence::state::state_json;
use pubnub_presence::{Change, Occupancy, PubNub};
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

struct Args {
    channels: Vec<String>,
    groups: Vec<String>,
    seconds: Option<u64>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        channels: Vec::new(),
        groups: Vec::new(),
        seconds: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--group" => a.groups.push(it.next().ok_or("--group needs a name")?),
            "--seconds" => {
                let n = it.next().ok_or("--seconds needs a number")?;
                a.seconds = Some(n.parse().map_err(|_| format!("not a number: {n}"))?);
            }
            "-h" | "--help" => {
                return Err("usage: watch [CHANNEL...] [--group GROUP]... [--seconds N]".into())
            }
            _ => a.channels.push(arg),
        }
    }
    if a.channels.is_empty() && a.groups.is_empty() {
        a.channels = vec!["lobby".into(), "kitchen".into()];
    }
    Ok(a)
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// The client: real PubNub with keys in the environment, else the local
/// presence server (returned, so it lives as long as the watch).
fn connect(user: &str) -> Result<(PubNub, Option<ServerHandle>), Box<dyn std::error::Error>> {
    let mut b = PubNub::builder().user_id(user);
    let server = match env("PUBNUB_SUBSCRIBE_KEY") {
        Some(key) => {
            b = b.subscribe_key(key);
            if let Some(o) = env("PUBNUB_ORIGIN") {
                b = b.origin(o);
            }
            if let Some(k) = env("PUBNUB_PUBLISH_KEY") {
                b = b.publish_key(k);
            }
            if let Some(k) = env("PUBNUB_AUTH_KEY") {
                b = b.auth_key(k);
            }
            if let Some(k) = env("PUBNUB_SECRET_KEY") {
                b = b.secret_key(k);
            }
            None
        }
        None => {
            let server = Server::start_with(
                "127.0.0.1:0",
                Options {
                    long_poll_hold: Duration::from_secs(5),
                    ..Options::default()
                },
            )?;
            b = b.subscribe_key("demo").origin(server.origin());
            Some(server)
        }
    };
    Ok((b.build()?, server))
}

/// Simulated visitors on the local server: every ~0.7 s one joins,
/// leaves, changes state, or (now and then) goes silent and times out.
fn visitors(
    server: &ServerHandle,
    channels: &[String],
    stop: &AtomicBool,
) -> Result<(), pubnub_presence::Error> {
    const NAMES: [&str; 8] = [
        "ada", "grace", "linus", "barbara", "ken", "margaret", "dennis", "radia",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        // xorshift: enough to look random; n > 0.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let clients: Vec<PubNub> = NAMES
        .iter()
        .map(|n| {
            PubNub::builder()
                .subscribe_key("demo")
                .user_id(*n)
                .origin(server.origin())
                .presence_timeout(60)
                .build()
        })
        .collect::<Result<_, _>>()?;
    let mut here: Vec<(usize, usize)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(700));
        let (who, ch) = (next(NAMES.len()), next(channels.len()));
        let channel = vec![channels[ch].clone()];
        match next(10) {
            0..=3 => {
                clients[who].heartbeat().channels(channel).execute()?;
                here.push((who, ch));
            }
            4..=5 => {
                clients[who].leave().channels(channel).execute()?;
                here.retain(|p| *p != (who, ch));
            }
            6..=8 => {
                let mood = ["happy", "busy", "away"][next(3)];
                clients[who]
                    .set_presence_state_json(format!(r#"{{"mood":"{mood}"}}"#))
                    .channels(channel)
                    .execute()?;
            }
            _ => {
                // Everyone else heartbeats; `who` goes silent and times out.
                here.retain(|(w, _)| *w != who);
                for (w, c) in &here {
                    clients[*w]
                        .heartbeat()
                        .channels(vec![channels[*c].clone()])
                        .execute()?;
                }
                server.advance(Duration::from_secs(61));
            }
        }
    }
    Ok(())
}

fn render(m: &Occupancy, recent: &VecDeque<String>, started: Instant, terminal: bool) {
    let mut out = String::new();
    if terminal {
        // Home, clear screen: the roster is redrawn in place.
        out.push_str("\x1b[H\x1b[2J");
    }
    let status = if m.is_synced() { "synced" } else { "syncing" };
    out.push_str(&format!(
        "occupancy mirror: {status}, {} re-syncs, {:.0} s\n\n",
        m.resyncs(),
        started.elapsed().as_secs_f64()
    ));
    for channel in m.channels() {
        let counts = if m.is_counts_only(channel) {
            ", counts only"
        } else {
            ""
        };
        out.push_str(&format!("{channel} ({}{counts})\n", m.occupancy(channel)));
        let mut occupants: Vec<_> = m.occupants(channel).collect();
        occupants.sort_by(|a, b| a.user_id.cmp(b.user_id));
        for o in occupants {
            let state = if o.state.is_null() {
                String::new()
            } else {
                state_json(o.state).into_owned()
            };
            let line = format!("  {:<12} {state}", o.user_id);
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out.push_str("\nrecent:\n");
    for line in recent {
        out.push_str(&format!("  {line}\n"));
    }
    if !terminal {
        out.push_str("----\n");
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let user = format!("watch-{}", std::process::id());
    let (pubnub, server) = connect(&user)?;
    let mut mirror = pubnub
        .occupancy()
        .channels(args.channels.clone())
        .channel_groups(args.groups.clone())
        .include_state(true)
        .open()?;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        if let Some(server) = &server {
            // The local server knows no group unless told: each group
            // holds the channels given, or `lobby`.
            let mut channels = args.channels.clone();
            if channels.is_empty() {
                channels.push("lobby".into());
            }
            let names: Vec<&str> = channels.iter().map(String::as_str).collect();
            for g in &args.groups {
                server.add_to_group("demo", g, &names);
            }
            let stop = &stop;
            s.spawn(move || {
                if let Err(e) = visitors(server, &channels, stop) {
                    eprintln!("visitors stopped: {e}");
                }
            });
        }
        watch(&mut mirror, args.seconds);
        stop.store(true, Ordering::Relaxed);
    });
    Ok(())
}

/// Polls the mirror and redraws the roster until `seconds` pass.
fn watch(mirror: &mut Occupancy, seconds: Option<u64>) {
    let terminal = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut recent: VecDeque<String> = VecDeque::new();
    let mut drawn = Instant::now();
    render(mirror, &recent, started, terminal);
    while seconds.is_none_or(|s| started.elapsed() < Duration::from_secs(s)) {
        // One bounded call per iteration; what changed comes back.
        let changed = match mirror.poll(Duration::from_millis(250)) {
            Ok(changes) => {
                recent.extend(changes.iter().map(Change::to_string));
                !changes.is_empty()
            }
            Err(e) => {
                recent.push_back(format!("error (retried after a backoff): {e}"));
                true
            }
        };
        while recent.len() > 8 {
            recent.pop_front();
        }
        // Redraw on a change, and each second in a terminal (the clock).
        if changed || (terminal && drawn.elapsed() >= Duration::from_secs(1)) {
            render(mirror, &recent, started, terminal);
            drawn = Instant::now();
        }
    }
}
