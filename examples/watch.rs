//! The live roster of channels, refreshing in place in a terminal: who is
//! on each channel (with state), kept by the occupancy mirror.
//!
//! ```text
//! cargo run --example watch --features emulator -- lobby kitchen
//! cargo run --example watch --features emulator -- --group house --seconds 30
//! ```
//!
//! Arguments: channel names, listed in the order given; `--group NAME`
//! (repeatable) for channel groups, whose channels follow; `--seconds N`
//! to stop after N seconds (default: until `q` or Ctrl-C); `--help`.
//!
//! With no keys in the environment it starts the local presence server
//! in-process, with a few simulated visitors who come and go, change
//! state and time out, so there is something to watch. With
//! `PUBNUB_SUBSCRIBE_KEY` (and optionally `PUBNUB_PUBLISH_KEY`,
//! `PUBNUB_SECRET_KEY`, `PUBNUB_ORIGIN`, `PUBNUB_AUTH_KEY`) it watches that
//! service instead.
//!
//! In a terminal the roster is redrawn in place on the alternate screen, so
//! no frame lands in the scrollback, and the screen is given back on every
//! way out (`q`, Ctrl-C, the end of `--seconds`, an error). Not a terminal
//! (a pipe, a file): one roster per change.

use pubnub_presence::emulator::{Options, Server, ServerHandle};
use pubnub_presence::state::state_json;
use pubnub_presence::{Change, Occupancy, PubNub};
use std::collections::VecDeque;
use std::io::{IsTerminal, Read, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: watch [CHANNEL...] [--group GROUP]... [--seconds N]

Shows who is on each channel (with state), kept by the occupancy mirror.
  CHANNEL        a channel to watch, listed in the order given
                 (default: lobby kitchen, unless a group is given)
  --group GROUP  a channel group to watch (repeatable)
  --seconds N    stop after N seconds (default: until q or Ctrl-C)
  -h, --help     print this and exit

With PUBNUB_SUBSCRIBE_KEY set (and optionally PUBNUB_PUBLISH_KEY,
PUBNUB_SECRET_KEY, PUBNUB_ORIGIN, PUBNUB_AUTH_KEY) it watches that service;
else the local presence server, in-process, with simulated visitors.";

struct Args {
    channels: Vec<String>,
    groups: Vec<String>,
    seconds: Option<u64>,
}

/// What the command line asks for: a watch, or the usage.
enum Parsed {
    Watch(Args),
    Help,
}

fn args() -> Result<Parsed, String> {
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
            "-h" | "--help" => return Ok(Parsed::Help),
            _ if arg.starts_with('-') => return Err(format!("unknown option: {arg}")),
            _ => {
                if !a.channels.contains(&arg) {
                    a.channels.push(arg);
                }
            }
        }
    }
    if a.channels.is_empty() && a.groups.is_empty() {
        a.channels = vec!["lobby".into(), "kitchen".into()];
    }
    Ok(Parsed::Watch(a))
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

/// The visitors' presence timeout, in seconds.
const VISITOR_TIMEOUT: u64 = 60;

/// Simulated visitors on the local server: every ~0.7 s one joins,
/// leaves, changes state, or (now and then) goes silent and times out.
/// Everyone present heartbeats well within the timeout, so only the one
/// who goes silent times out.
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
                .presence_timeout(VISITOR_TIMEOUT as u32)
                .build()
        })
        .collect::<Result<_, _>>()?;
    // Who is present where: (visitor, channel), each pair once.
    let mut here: Vec<(usize, usize)> = Vec::new();
    // Everyone present heartbeats every 20 s of real time (a third of the
    // timeout), as a device would.
    let mut heartbeat_at = Instant::now() + Duration::from_secs(20);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(700));
        if Instant::now() >= heartbeat_at {
            heartbeat_all(&clients, channels, &here)?;
            heartbeat_at = Instant::now() + Duration::from_secs(20);
        }
        let (who, ch) = (next(NAMES.len()), next(channels.len()));
        let channel = vec![channels[ch].clone()];
        match next(10) {
            0..=3 => {
                clients[who].heartbeat().channels(channel).execute()?;
                if !here.contains(&(who, ch)) {
                    here.push((who, ch));
                }
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
            _ if here.is_empty() => {}
            _ => {
                // Everyone else heartbeats; `who` (someone present) goes
                // silent and times out. The server's clock moves past the
                // timeout in two steps, each shorter than it, with the
                // others heartbeating before each: only `who` lapses.
                let (who, _) = here[next(here.len())];
                here.retain(|(w, _)| *w != who);
                for _ in 0..2 {
                    heartbeat_all(&clients, channels, &here)?;
                    server.advance(Duration::from_secs(VISITOR_TIMEOUT / 2 + 1));
                }
                heartbeat_at = Instant::now() + Duration::from_secs(20);
            }
        }
    }
    Ok(())
}

/// One heartbeat per visitor present, for all of its channels.
fn heartbeat_all(
    clients: &[PubNub],
    channels: &[String],
    here: &[(usize, usize)],
) -> Result<(), pubnub_presence::Error> {
    for (w, client) in clients.iter().enumerate() {
        let on: Vec<String> = here
            .iter()
            .filter(|(v, _)| *v == w)
            .map(|(_, c)| channels[*c].clone())
            .collect();
        if !on.is_empty() {
            client.heartbeat().channels(on).execute()?;
        }
    }
    Ok(())
}

/// The roster, as text: the channels named on the command line in that
/// order, then any other the mirror knows (from groups), in name order.
fn render(m: &Occupancy, order: &[String], recent: &VecDeque<String>, started: Instant) -> String {
    let mut out = String::new();
    let status = if m.is_synced() { "synced" } else { "syncing" };
    out.push_str(&format!(
        "occupancy mirror: {status}, {} re-syncs, {:.0} s\n\n",
        m.resyncs(),
        started.elapsed().as_secs_f64()
    ));
    let others = m.channels().filter(|c| !order.iter().any(|o| o == c));
    for channel in order.iter().map(String::as_str).chain(others) {
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
    out
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(Parsed::Watch(args)) => args,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("watch: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The screen is back by now: the error stays readable.
            eprintln!("watch: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let user = format!("watch-{}", std::process::id());
    let (pubnub, server) = connect(&user)?;
    let mut mirror = pubnub
        .occupancy()
        .channels(args.channels.clone())
        .channel_groups(args.groups.clone())
        .include_state(true)
        .open()?;
    let stop = AtomicBool::new(false);
    let failed: Mutex<Option<pubnub_presence::Error>> = Mutex::new(None);
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
            let (stop, failed) = (&stop, &failed);
            s.spawn(move || {
                if let Err(e) = visitors(server, &channels, stop) {
                    if let Ok(mut f) = failed.lock() {
                        *f = Some(e);
                    }
                }
            });
        }
        watch(&mut mirror, args, &failed);
        stop.store(true, Ordering::Relaxed);
    });
    match failed.into_inner().ok().flatten() {
        Some(e) => Err(format!("the simulated visitors stopped: {e}").into()),
        None => Ok(()),
    }
}

/// Polls the mirror and redraws the roster until `--seconds` pass, the
/// user quits (`q`, Ctrl-C), or the simulation fails.
fn watch(mirror: &mut Occupancy, args: &Args, failed: &Mutex<Option<pubnub_presence::Error>>) {
    let terminal = std::io::stdout().is_terminal();
    // Restores the terminal when dropped, on every way out of here.
    let screen = terminal.then(Screen::enter);
    let quit_keys = screen.as_ref().is_some_and(|s| s.keys);
    let started = Instant::now();
    let mut recent: VecDeque<String> = VecDeque::new();
    let mut drawn = Instant::now();
    let draw = |m: &Occupancy, recent: &VecDeque<String>| {
        let mut text = render(m, &args.channels, recent, started);
        if terminal {
            if quit_keys {
                text.push_str("\nq or Ctrl-C: quit\n");
            }
            // Home; each line clears its rest; then clear what is below.
            let body = text.replace('\n', "\x1b[K\n");
            text = format!("\x1b[H{body}\x1b[J");
        } else {
            text.push_str("----\n");
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    };
    draw(mirror, &recent);
    while args
        .seconds
        .is_none_or(|s| started.elapsed() < Duration::from_secs(s))
        && !QUIT.load(Ordering::Relaxed)
        && failed.lock().is_ok_and(|f| f.is_none())
    {
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
            draw(mirror, &recent);
            drawn = Instant::now();
        }
    }
    drop(screen);
}

/// Set when the user asks to quit (`q`, Ctrl-C, Ctrl-D, `Ctrl-\`).
static QUIT: AtomicBool = AtomicBool::new(false);

/// The terminal while the roster is shown: the alternate screen, so that
/// redraws never reach the scrollback, and keys read one at a time without
/// echo. Dropping it gives the terminal back as it was, on every way out
/// (the end, an error, a panic that unwinds).
///
/// NOTE(Ctrl-C): catching SIGINT takes unsafe code or a signal crate.
/// Instead the terminal stops turning Ctrl-C into a signal while the
/// roster is shown (`stty -isig`), and a thread reads it as a byte.
/// Without `stty`, or with stdin not a terminal, Ctrl-C still ends the
/// program, at once, without giving the main screen back (`tput rmcup`
/// does). While the roster is shown Ctrl-Z does not suspend it, and a
/// signal such as SIGTERM ends it without the reset (`reset` does it).
struct Screen {
    /// The terminal's settings before (`stty -g`), to restore.
    saved: Option<String>,
    /// Keys are read: `q` and Ctrl-C quit.
    keys: bool,
}

impl Screen {
    fn enter() -> Screen {
        let saved = std::io::stdin()
            .is_terminal()
            .then(|| stty(&["-g"]))
            .flatten();
        let keys = saved.is_some()
            && stty(&["-isig", "-icanon", "-echo", "min", "1", "time", "0"]).is_some();
        if keys {
            std::thread::spawn(read_keys);
        }
        // Alternate screen, cursor hidden.
        print!("\x1b[?1049h\x1b[?25l");
        let _ = std::io::stdout().flush();
        Screen { saved, keys }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        // Cursor shown, main screen back.
        print!("\x1b[?25h\x1b[?1049l");
        let _ = std::io::stdout().flush();
        if let Some(saved) = &self.saved {
            let _ = stty(&[saved]);
        }
    }
}

/// Runs `stty` on this terminal; its output, if it succeeded.
fn stty(args: &[&str]) -> Option<String> {
    let out = Command::new("stty")
        .args(args)
        .stdin(Stdio::inherit())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Reads keys until one asks to quit: `q`, Ctrl-C, Ctrl-D or `Ctrl-\`.
fn read_keys() {
    let mut stdin = std::io::stdin().lock();
    let mut key = [0u8; 1];
    while let Ok(1) = stdin.read(&mut key) {
        if matches!(key, [b'q' | b'Q' | 0x03 | 0x04 | 0x1c]) {
            QUIT.store(true, Ordering::Relaxed);
            return;
        }
    }
}
