//! The device under test of the chaos soak: a `PresenceLoop` through the
//! fault proxy, heartbeating on two channels with state (one of them
//! watched) and watching three channels for events, polling with a small
//! budget; and what it reports to the scenario. Shared by
//! `examples/chaos` (as a child process) and `tests/chaos.rs` (as a
//! thread).

use pubnub_presence::{Error, ErrorKind, Heartbeater, PresenceEvent, PresenceLoop, PubNub};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

pub const KEY: &str = "chaos";
pub const DEVICE_ID: &str = "chaos-device";
/// Watched for events by the device and the truth.
pub const WATCHED: [&str; 3] = ["chaos-w0", "chaos-w1", "chaos-w2"];
/// The device heartbeats here: one watched channel, one not.
pub const DEVICE_CHANNELS: [&str; 2] = ["chaos-w0", "chaos-home"];

/// What the device is told.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// The proxy's origin.
    pub origin: String,
    pub presence_timeout: u32,
    pub heartbeat_interval: u32,
    /// The budget of each `PresenceLoop::poll`.
    pub budget: Duration,
    /// How often the device changes its state on the watched channel.
    pub state_every: Duration,
    /// How often it reports its figures.
    pub stats_every: Duration,
}

/// What the device reports, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceMsg {
    /// Its event stream has a cursor and it has joined its channels.
    Ready,
    /// An event delivered by the loop, as an [`identity`].
    Event(String),
    /// A failure returned by the loop (its kind, no details).
    Error(String),
    /// A heartbeat was answered.
    Beat,
    /// Its figures so far.
    Stats(Stats),
}

/// The device's figures.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stats {
    pub polls: u64,
    /// The slowest poll, wall clock.
    pub max_poll: Duration,
    /// Of that poll, the time the thread was ready but waiting for a CPU
    /// (a loaded machine, not the library).
    pub max_poll_cpu_wait: Duration,
    /// The slowest poll without its wait for a CPU: what the library
    /// spent (blocked or running).
    pub max_poll_own: Duration,
    /// The process's resident set size, bytes (in the test: the whole
    /// test process, server and all).
    pub rss: u64,
    /// Of it, the pages not backed by files (heap, stacks): RSS also
    /// grows when code runs for the first time, e.g. a fault's path.
    pub rss_anon: u64,
    /// Live heap bytes the device allocated: the child process's (example)
    /// or the device thread's (test).
    pub heap: u64,
    /// Connections the event stream opened.
    pub event_connections: u64,
}

/// An event as a line of text that tells it apart from every other event
/// of a run: action, channel, user, the server's millisecond timestamp,
/// occupancy and state.
pub fn identity(e: &PresenceEvent<'_>) -> String {
    match e {
        PresenceEvent::Join(u)
        | PresenceEvent::Leave(u)
        | PresenceEvent::Timeout(u)
        | PresenceEvent::StateChange(u) => {
            let action = match e {
                PresenceEvent::Join(_) => "join",
                PresenceEvent::Leave(_) => "leave",
                PresenceEvent::Timeout(_) => "timeout",
                _ => "state-change",
            };
            let state = u.state.as_ref().map(|s| s.to_string()).unwrap_or_default();
            format!(
                "{action} {} {} {} {} {state}",
                u.channel,
                u.user_id,
                u.precise_timestamp.unwrap_or(u.timestamp),
                u.occupancy
            )
        }
        PresenceEvent::Interval(i) => format!(
            "interval {} {} {} {:?} {:?} {:?} {}",
            i.channel, i.timestamp, i.occupancy, i.join, i.leave, i.timeout, i.here_now_refresh
        ),
        PresenceEvent::Skipped(s) => format!("skipped {} {}", e.channel(), s.timetoken),
        other => format!("other {}", other.channel()),
    }
    .replace('\n', " ")
}

/// A failure's kind, without server text.
pub fn kind(e: &Error) -> String {
    match e.kind() {
        ErrorKind::Input { .. } => "input".into(),
        ErrorKind::Server(s) => format!("server-{}", s.status),
        ErrorKind::Transport { kind, .. } => format!("transport-{kind:?}"),
        ErrorKind::Decode { .. } => "decode".into(),
        _ => "other".into(),
    }
}

pub fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The device: runs the loop until `stop`, reporting through `out`,
/// changing its state now and then until `quiet`. `memory` measures
/// [`Stats::rss`], [`Stats::rss_anon`] and [`Stats::heap`].
pub fn run_device(
    cfg: &DeviceConfig,
    stop: &AtomicBool,
    quiet: &AtomicBool,
    memory: &dyn Fn() -> (u64, u64, u64),
    out: &mut dyn FnMut(DeviceMsg),
) -> Result<(), Error> {
    let pubnub = PubNub::builder()
        .subscribe_key(KEY)
        .user_id(DEVICE_ID)
        .origin(&cfg.origin)
        .presence_timeout(cfg.presence_timeout)
        .heartbeat_interval(cfg.heartbeat_interval)
        .build()?;
    let events = pubnub.presence_events().channels(names(&WATCHED)).open()?;
    // Nothing joined until the stream has its cursor: the device's own
    // join is then among the events it must get.
    let mut device = PresenceLoop::new(Heartbeater::new(&pubnub), Some(events));
    let mut stats = Stats::default();
    let mut ready = false;
    let mut last_beat = None;
    let mut state_n = 0u64;
    let mut next_state = Instant::now();
    let mut next_stats = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let (t, waited) = (Instant::now(), waited_for_cpu());
        let got = device.poll(cfg.budget);
        let (took, waited) = (t.elapsed(), waited_for_cpu().saturating_sub(waited));
        stats.polls += 1;
        if took > stats.max_poll {
            stats.max_poll = took;
            stats.max_poll_cpu_wait = waited;
        }
        stats.max_poll_own = stats.max_poll_own.max(took.saturating_sub(waited));
        match got {
            Ok(Some(e)) => out(DeviceMsg::Event(identity(&e))),
            Ok(None) => {}
            Err(e) => out(DeviceMsg::Error(kind(&e))),
        }
        let now = Instant::now();
        if !ready && device.events().is_some_and(|e| e.cursor().t != 0) {
            ready = true;
            let hb = device.heartbeater();
            hb.join(names(&DEVICE_CHANNELS))?;
            hb.set_state_json("chaos-home", r#"{"device":"chaos","room":"home"}"#)?;
            out(DeviceMsg::Ready);
        }
        if ready && now >= next_state && !quiet.load(Ordering::SeqCst) {
            // A new state on the watched channel: a state-change event.
            state_n += 1;
            let json = format!(r#"{{"device":"chaos","n":{state_n}}}"#);
            device
                .heartbeater()
                .set_state_json(DEVICE_CHANNELS[0], &json)?;
            next_state = now + cfg.state_every;
        }
        let beat = device.heartbeater().last_success();
        if beat != last_beat {
            last_beat = beat;
            out(DeviceMsg::Beat);
        }
        if now >= next_stats {
            (stats.rss, stats.rss_anon, stats.heap) = memory();
            stats.event_connections = device.events().map_or(0, |e| e.connections_opened());
            out(DeviceMsg::Stats(stats));
            next_stats = now + cfg.stats_every;
        }
    }
    (stats.rss, stats.rss_anon, stats.heap) = memory();
    stats.event_connections = device.events().map_or(0, |e| e.connections_opened());
    out(DeviceMsg::Stats(stats));
    Ok(())
}

/// The process's resident set size and the part of it not backed by
/// files, in bytes (`/proc/self/statm`: resident and shared pages, Linux,
/// 4 KiB pages); zeros where unknown.
pub fn rss() -> (u64, u64) {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: Vec<u64> = statm
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    match pages[..] {
        [_, resident, shared, ..] => (resident * 4096, resident.saturating_sub(shared) * 4096),
        _ => (0, 0),
    }
}

/// How long this thread has been ready to run but waiting for a CPU
/// (`/proc/thread-self/schedstat`, Linux); zero where unknown.
fn waited_for_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// A running device (a thread or a child process).
pub trait Device {
    /// No more state changes (so that the events come to an end).
    fn quiet(&self);
    /// Stops it; its last message is its final [`DeviceMsg::Stats`].
    fn stop(self: Box<Self>);
}

/// Starts a device that reports through the sender.
pub type Spawn<'a> = &'a dyn Fn(&DeviceConfig, Sender<DeviceMsg>) -> Box<dyn Device>;
