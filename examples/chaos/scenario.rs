//! The chaos scenario, shared by `examples/chaos` (minutes-long faults,
//! 30 minutes) and `tests/chaos.rs` (second-long faults, about 20 s).
//!
//! - The local presence server, and a [`FaultProxy`] in front of it that
//!   refuses connections, stalls, resets responses mid-body and cuts the
//!   network, on a schedule ([`Plan::faults`]).
//! - The device under test (`device.rs`): a `PresenceLoop` through the
//!   proxy, heartbeating on two channels with state (one of them watched)
//!   and watching three channels for events, polling with a small budget.
//! - Other clients, straight to the server: short-lived users who join a
//!   watched channel and then leave, change state then leave, or stop
//!   heartbeating and time out; each has a user id of its own.
//! - The ground truth: a subscriber straight to the server (no faults)
//!   records every event published on the watched channels.
//!
//! Checks (`report.rs`): the device got every event the truth got, once;
//! after each fault, the device's presence (with its state) came back
//! within one heartbeat interval; every poll returned within its budget
//! plus a margin; the device's memory stayed flat.
//!
//! Retention: PubNub keeps about 100 messages per channel for up to
//! 20 minutes for subscribers that resume from a cursor; the emulator keeps
//! the last 10,000 events. The plans keep every outage under both (a few
//! minutes, a few dozen events per channel) and the report gives the most
//! events one channel received during one fault, so the "nothing lost"
//! claim stays within what the service guarantees.

use crate::device::{
    identity, names, DeviceConfig, DeviceMsg, Spawn, Stats, DEVICE_CHANNELS, DEVICE_ID, KEY,
    WATCHED,
};
use crate::report::{FaultRecord, Report};
use pubnub_presence::emulator::{Fault, FaultProxy, Options, Server, ServerHandle};
use pubnub_presence::{Error, PubNub};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Presence timeout of the other clients (the service's minimum).
const CHURN_TIMEOUT_S: u32 = 20;

/// The scenario's settings.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How long the scenario runs before its drain: the faults in turn,
    /// at least once each, no fault started that would end later, then
    /// the network fine until the time is up.
    pub duration: Duration,
    /// The faults in turn (repeated), each followed by [`Plan::clear`].
    pub faults: Vec<(Fault, Duration)>,
    /// Network fine between two faults (longer while the device's
    /// presence or its events are not back yet, up to a limit).
    pub clear: Duration,
    /// Before the first fault; memory is taken as "after warm-up" then.
    pub warm_up: Duration,
    pub device_presence_timeout: u32,
    pub device_heartbeat_interval: u32,
    pub budget: Duration,
    pub state_every: Duration,
    pub stats_every: Duration,
    /// Mean time between two new users of the other clients.
    pub churn_every: Duration,
    /// How long a leaving user stays, at least and at most.
    pub dwell: (Duration, Duration),
    /// Advance the server's clock past every presence timeout in the
    /// middle of each cut (and at the end), instead of waiting in real
    /// time for users to time out: the short test's way to see timeouts,
    /// the device's own included.
    pub jump_clock: bool,
    /// Tolerance on "within one heartbeat interval" (the heartbeat's own
    /// round trip, the check's polling, a loaded machine).
    pub margin: Duration,
    /// Tolerance on "every poll returns within its budget" (a loaded
    /// machine may not run the thread at once).
    pub poll_margin: Duration,
    pub seed: u64,
    /// Print each fault's record as it ends.
    pub progress: bool,
}

impl Plan {
    /// The `cargo test` version: second-long faults (each kind once), the
    /// server's clock jumped past every presence timeout during the cut,
    /// about 20 s.
    pub fn short(seed: u64) -> Plan {
        Plan {
            duration: Duration::ZERO,
            faults: vec![
                (Fault::Refuse, Duration::from_millis(1500)),
                (Fault::Stall, Duration::from_millis(1500)),
                (Fault::ResetMidBody, Duration::from_millis(1500)),
                (Fault::Cut, Duration::from_secs(3)),
            ],
            clear: Duration::from_millis(1500),
            warm_up: Duration::from_secs(1),
            device_presence_timeout: 20,
            device_heartbeat_interval: 2,
            budget: Duration::from_millis(50),
            state_every: Duration::from_secs(2),
            stats_every: Duration::from_millis(500),
            churn_every: Duration::from_millis(300),
            dwell: (Duration::from_millis(300), Duration::from_secs(3)),
            jump_clock: true,
            margin: Duration::from_secs(2),
            poll_margin: Duration::from_millis(500),
            seed,
            progress: false,
        }
    }

    /// The long version: faults of 15 s to 3 minutes (cuts of 2 and 3
    /// minutes), in real time (users time out by themselves after 20 s;
    /// so does the device during a long fault), for `duration`.
    pub fn long(duration: Duration, seed: u64) -> Plan {
        let s = Duration::from_secs;
        Plan {
            duration,
            faults: vec![
                (Fault::Refuse, s(20)),
                (Fault::Stall, s(30)),
                (Fault::ResetMidBody, s(30)),
                (Fault::Cut, s(120)),
                (Fault::Refuse, s(45)),
                (Fault::Stall, s(15)),
                (Fault::ResetMidBody, s(60)),
                (Fault::Cut, s(180)),
            ],
            clear: s(45),
            warm_up: s(20),
            device_presence_timeout: 20,
            device_heartbeat_interval: 9,
            budget: Duration::from_millis(100),
            state_every: s(30),
            stats_every: s(10),
            churn_every: Duration::from_millis(2500),
            // Under the 20 s presence timeout: leavers leave, not time out.
            dwell: (s(2), s(15)),
            jump_clock: false,
            margin: s(2),
            poll_margin: Duration::from_millis(500),
            seed,
            progress: false,
        }
    }
}

/// A small deterministic generator (xorshift64*), so a run can be
/// repeated from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis() as u64;
        lo + Duration::from_millis(self.below(span + 1))
    }
}

/// Events as seen by the truth and by the device.
#[derive(Default)]
struct Seen {
    truth: Vec<(Instant, String)>,
    truth_errors: usize,
    truth_ready: bool,
    device: Vec<(Instant, String)>,
    device_ready: bool,
    device_errors: BTreeMap<String, usize>,
    beats: Vec<Instant>,
    stats: Vec<(Instant, Stats)>,
}

impl Seen {
    fn take_in(&mut self, msg: DeviceMsg) {
        let now = Instant::now();
        match msg {
            DeviceMsg::Ready => self.device_ready = true,
            // Copied here, so that the test's count of the device
            // thread's live heap does not include what is kept.
            DeviceMsg::Event(e) => self.device.push((now, e.as_str().to_owned())),
            DeviceMsg::Error(k) => {
                *self.device_errors.entry(k.as_str().to_owned()).or_insert(0) += 1
            }
            DeviceMsg::Beat => self.beats.push(now),
            DeviceMsg::Stats(st) => self.stats.push((now, st)),
        }
    }
}

/// What the other clients did.
#[derive(Default)]
struct Churn {
    joined: Vec<(String, String)>,
    left: Vec<(String, String)>,
    timing_out: Vec<(Instant, String, String)>,
    state_changes: usize,
}

/// A user of the other clients: who, where, and what it does next.
struct User {
    client: PubNub,
    id: String,
    channel: String,
    /// When it leaves (`None`: it stops heartbeating and times out).
    leave_at: Option<Instant>,
    state_at: Option<Instant>,
}

fn churn_loop(
    origin: &str,
    plan: &Plan,
    stop: &AtomicBool,
    log: &Mutex<Churn>,
) -> Result<(), Error> {
    let mut rng = Rng(plan.seed | 1);
    let mut users: Vec<User> = Vec::new();
    let mut n = 0u64;
    let mut next_user = Instant::now();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let now = Instant::now();
        let mut i = 0;
        while i < users.len() {
            let u = &mut users[i];
            if u.state_at.is_some_and(|t| stopping || now >= t) {
                u.state_at = None;
                u.client
                    .set_presence_state_json(format!(r#"{{"mood":"{}"}}"#, u.id))
                    .channels(vec![u.channel.clone()])
                    .execute()?;
                if let Ok(mut c) = log.lock() {
                    c.state_changes += 1;
                }
            }
            if u.leave_at.is_some_and(|t| stopping || now >= t) {
                u.client
                    .leave()
                    .channels(vec![u.channel.clone()])
                    .execute()?;
                if let Ok(mut c) = log.lock() {
                    c.left.push((u.id.clone(), u.channel.clone()));
                }
                users.swap_remove(i);
                continue;
            }
            i += 1;
        }
        if stopping {
            return Ok(());
        }
        if now >= next_user {
            n += 1;
            let id = format!("churn-{n}");
            let channel = WATCHED[rng.below(WATCHED.len() as u64) as usize].to_string();
            let client = PubNub::builder()
                .subscribe_key(KEY)
                .user_id(&id)
                .origin(origin)
                .presence_timeout(CHURN_TIMEOUT_S)
                .build()?;
            client
                .heartbeat()
                .channels(vec![channel.clone()])
                .execute()?;
            let roll = rng.below(10);
            let dwell = rng.between(plan.dwell.0, plan.dwell.1);
            if let Ok(mut c) = log.lock() {
                c.joined.push((id.clone(), channel.clone()));
                if roll == 9 {
                    c.timing_out.push((now, id.clone(), channel.clone()));
                }
            }
            if roll < 9 {
                users.push(User {
                    client,
                    id,
                    channel,
                    leave_at: Some(now + dwell),
                    state_at: (roll >= 6).then(|| now + dwell / 2),
                });
            }
            let mean = plan.churn_every;
            next_user = now + rng.between(mean / 2, mean + mean / 2);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn truth_loop(origin: &str, stop: &AtomicBool, seen: &Mutex<Seen>) -> Result<(), Error> {
    let pubnub = PubNub::builder()
        .subscribe_key(KEY)
        .user_id("chaos-truth")
        .origin(origin)
        .build()?;
    let mut events = pubnub.presence_events().channels(names(&WATCHED)).open()?;
    while !stop.load(Ordering::SeqCst) {
        let got = events.poll(Duration::from_millis(100));
        let ready = events.cursor().t != 0;
        if let Ok(mut s) = seen.lock() {
            s.truth_ready = ready;
            match got {
                Ok(Some(e)) => s.truth.push((Instant::now(), identity(&e))),
                Ok(None) => {}
                Err(_) => s.truth_errors += 1,
            }
        }
    }
    Ok(())
}

fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    done()
}

fn counts<'a>(items: impl Iterator<Item = &'a String>) -> BTreeMap<&'a str, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i.as_str()).or_insert(0) += 1;
    }
    m
}

/// Whether the device has every event the truth had by `upto`.
fn caught_up(s: &Seen, upto: Instant) -> bool {
    let device = counts(s.device.iter().map(|(_, e)| e));
    let truth = counts(s.truth.iter().filter(|(t, _)| *t <= upto).map(|(_, e)| e));
    truth
        .iter()
        .all(|(e, n)| device.get(e).copied().unwrap_or(0) >= *n)
}

/// Whether here_now (straight to the server) shows the device on every
/// one of its channels with a state.
fn device_present(observer: &PubNub) -> bool {
    let Ok(here) = observer
        .here_now()
        .channels(names(&DEVICE_CHANNELS))
        .include_state(true)
        .execute()
    else {
        return false;
    };
    DEVICE_CHANNELS.iter().all(|ch| {
        here.channels.iter().any(|c| {
            c.name == *ch
                && c.occupants
                    .iter()
                    .any(|u| u.user_id == DEVICE_ID && u.state.to_string().contains("chaos"))
        })
    })
}

/// What the checks look at while the scenario runs.
struct Rig {
    server: ServerHandle,
    proxy: FaultProxy,
    /// A client straight to the server, for here_now.
    observer: PubNub,
    seen: Arc<Mutex<Seen>>,
    interval: Duration,
    /// A clock jump that times out every user who stopped heartbeating.
    jump: Duration,
}

/// How long to wait at most for presence and events after a fault: the
/// event stream backs off up to 30 s, and a long-poll may be at its start.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

type Failed = Box<dyn std::error::Error>;

/// Runs the scenario and returns its figures.
pub fn run(plan: &Plan, spawn: Spawn<'_>) -> Result<Report, Failed> {
    let server = Server::start_with("127.0.0.1:0", Options::default())?;
    let proxy = FaultProxy::start(server.local_addr())?;
    let origin = server.origin().to_string();
    let observer = PubNub::builder()
        .subscribe_key(KEY)
        .user_id("chaos-observer")
        .origin(&origin)
        .build()?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop_truth = Arc::new(AtomicBool::new(false));
    let truth = {
        let (origin, stop, seen) = (origin.clone(), stop_truth.clone(), seen.clone());
        thread::spawn(move || truth_loop(&origin, &stop, &seen))
    };
    if !wait_for(Duration::from_secs(10), || {
        seen.lock().is_ok_and(|s| s.truth_ready)
    }) {
        return Err("the truth subscriber did not start".into());
    }

    // The device, and a thread taking in what it reports.
    let (tx, rx) = mpsc::channel();
    let device = spawn(
        &DeviceConfig {
            origin: proxy.origin().to_string(),
            presence_timeout: plan.device_presence_timeout,
            heartbeat_interval: plan.device_heartbeat_interval,
            budget: plan.budget,
            state_every: plan.state_every,
            stats_every: plan.stats_every,
        },
        tx,
    );
    let intake = {
        let seen = seen.clone();
        thread::spawn(move || {
            for msg in rx {
                let Ok(mut s) = seen.lock() else { return };
                s.take_in(msg);
            }
        })
    };
    if !wait_for(Duration::from_secs(10), || {
        seen.lock().is_ok_and(|s| s.device_ready)
    }) {
        return Err("the device did not start".into());
    }
    let started = Instant::now();
    let churn_log = Arc::new(Mutex::new(Churn::default()));
    let stop_churn = Arc::new(AtomicBool::new(false));
    let churn = {
        let (origin, plan, stop, log) = (
            origin.clone(),
            plan.clone(),
            stop_churn.clone(),
            churn_log.clone(),
        );
        thread::spawn(move || churn_loop(&origin, &plan, &stop, &log))
    };
    thread::sleep(plan.warm_up);
    let warm = Instant::now();

    let rig = Rig {
        server,
        proxy,
        observer,
        seen,
        interval: Duration::from_secs(u64::from(plan.device_heartbeat_interval)),
        jump: Duration::from_secs(u64::from(plan.device_presence_timeout.max(CHURN_TIMEOUT_S)) + 1),
    };
    let mut records = Vec::new();
    let deadline = started + plan.duration;
    'schedule: loop {
        for &(fault, length) in &plan.faults {
            let one_round = records.len() >= plan.faults.len();
            if one_round && Instant::now() + length + plan.clear > deadline {
                break 'schedule;
            }
            let record = one_fault(&rig, plan, fault, length)?;
            if plan.progress {
                println!("{}", record.line());
            }
            records.push(record);
        }
    }

    // The rest of the time with the network fine (the other clients go on).
    thread::sleep(deadline.saturating_duration_since(Instant::now()));

    // Drain: the device stops changing its state, the other clients stop
    // (those leaving leave now), every user still timing out times out,
    // and the device gets it all.
    device.quiet();
    stop_churn.store(true, Ordering::SeqCst);
    churn.join().map_err(|_| "the churn thread panicked")??;
    let last_timing_out = churn_log
        .lock()
        .ok()
        .and_then(|c| c.timing_out.last().map(|(t, _, _)| *t));
    drain(&rig, plan, last_timing_out);
    device.stop();
    let _ = intake.join();
    stop_truth.store(true, Ordering::SeqCst);
    truth.join().map_err(|_| "the truth thread panicked")??;

    let seen = rig.seen.lock().map_err(|_| "poisoned")?;
    let churn = churn_log.lock().map_err(|_| "poisoned")?;
    let mut report = tally(plan, &seen, &churn, records, warm);
    report.ran_for = started.elapsed();
    report.proxy_connections = rig.proxy.connections_accepted();
    report.proxy_resets = rig.proxy.connections_reset();
    Ok(report)
}

/// One fault, then the network back: how long until the device is present
/// again and has every event, and what happened during the fault.
fn one_fault(
    rig: &Rig,
    plan: &Plan,
    fault: Fault,
    length: Duration,
) -> Result<FaultRecord, Failed> {
    let from = Instant::now();
    rig.proxy.set(fault)?;
    if fault == Fault::Cut && plan.jump_clock {
        thread::sleep(length / 3);
        rig.server.advance(rig.jump);
    }
    thread::sleep(length.saturating_sub(from.elapsed()));
    rig.proxy.set(Fault::None)?;
    let back = Instant::now();

    // Presence: the first answered heartbeat after the network is back,
    // which here_now must then show (if it does not at once, the time it
    // does).
    let mut restored_after = None;
    let mut first_look = true;
    wait_for(rig.interval + plan.margin + SETTLE_LIMIT, || {
        let beat = rig
            .seen
            .lock()
            .ok()
            .and_then(|s| s.beats.iter().copied().find(|b| *b >= back));
        let Some(beat) = beat else { return false };
        let at = if first_look { beat } else { Instant::now() };
        first_look = false;
        let present = device_present(&rig.observer);
        if present {
            restored_after = Some(at.duration_since(back));
        }
        present
    });
    let mut caught_up_after = None;
    wait_for(SETTLE_LIMIT, || {
        let done = rig.seen.lock().is_ok_and(|s| caught_up(&s, back));
        if done {
            caught_up_after = Some(back.elapsed());
        }
        done
    });
    let s = rig.seen.lock().map_err(|_| "poisoned")?;
    let during: Vec<&String> = s
        .truth
        .iter()
        .filter(|(t, _)| *t >= from && *t < back)
        .map(|(_, e)| e)
        .collect();
    let most_on_one_channel = WATCHED
        .iter()
        .map(|ch| {
            during
                .iter()
                .filter(|e| e.split(' ').nth(1) == Some(ch))
                .count()
        })
        .max()
        .unwrap_or(0);
    let record = FaultRecord {
        fault,
        length,
        window: (from, back),
        restored_after,
        caught_up_after,
        events_during: during.len(),
        most_on_one_channel,
        memory_after: s
            .stats
            .last()
            .map_or((0, 0, 0), |(_, st)| (st.rss, st.rss_anon, st.heap)),
    };
    drop(s);
    thread::sleep(plan.clear.saturating_sub(back.elapsed()));
    Ok(record)
}

/// Waits until every user still timing out has timed out, then until no
/// event has come for a while and the device has every event.
fn drain(rig: &Rig, plan: &Plan, last_timing_out: Option<Instant>) {
    if plan.jump_clock {
        rig.server.advance(rig.jump);
    } else if let Some(t) = last_timing_out {
        let until = t + Duration::from_secs(u64::from(CHURN_TIMEOUT_S) + 2);
        thread::sleep(until.saturating_duration_since(Instant::now()));
    }
    let quiet = rig.interval + Duration::from_secs(2);
    let mut last_count = usize::MAX;
    let mut quiet_since = Instant::now();
    wait_for(SETTLE_LIMIT, || {
        let Ok(s) = rig.seen.lock() else { return true };
        if s.truth.len() != last_count {
            last_count = s.truth.len();
            quiet_since = Instant::now();
        }
        quiet_since.elapsed() >= quiet && caught_up(&s, Instant::now())
    });
}

/// Compares what the device got with the truth, and the truth with what
/// the other clients did.
fn tally(plan: &Plan, s: &Seen, c: &Churn, faults: Vec<FaultRecord>, warm: Instant) -> Report {
    let truth_counts = counts(s.truth.iter().map(|(_, e)| e));
    let device_counts = counts(s.device.iter().map(|(_, e)| e));
    let mut report = Report {
        published: s.truth.len(),
        published_during_faults: s
            .truth
            .iter()
            .filter(|(t, _)| faults.iter().any(|f| *t >= f.window.0 && *t < f.window.1))
            .count(),
        faults,
        delivered: s.device.len(),
        truth_errors: s.truth_errors,
        device_errors: s.device_errors.clone(),
        heartbeat_interval: Duration::from_secs(u64::from(plan.device_heartbeat_interval)),
        budget: plan.budget,
        margin: plan.margin,
        poll_margin: plan.poll_margin,
        churn: [
            c.joined.len(),
            c.left.len(),
            c.timing_out.len(),
            c.state_changes,
        ],
        ..Report::default()
    };
    for (e, n) in &truth_counts {
        let got = device_counts.get(e).copied().unwrap_or(0);
        for _ in got..*n {
            report.lost.push(e.to_string());
        }
        if *n > 1 {
            // The truth drops duplicates too: the same line twice is a
            // bug there.
            report.duplicated.push(format!("(truth) {e}"));
        }
    }
    for (e, n) in &device_counts {
        match truth_counts.get(e) {
            None => report.unexpected.push(e.to_string()),
            Some(t) if n > t => report.duplicated.push(e.to_string()),
            _ => {}
        }
    }
    let device = format!(" {DEVICE_ID} ");
    report.device_timeouts = s
        .truth
        .iter()
        .filter(|(_, e)| e.starts_with("timeout ") && e.contains(&device))
        .count();
    // Every action of the other clients must be in the truth.
    let has = |action: &str, user: &str, ch: &str| {
        let prefix = format!("{action} {ch} {user} ");
        s.truth.iter().any(|(_, e)| e.starts_with(&prefix))
    };
    let missing = &mut report.churn_missing_from_truth;
    for (user, ch) in &c.joined {
        if !has("join", user, ch) {
            missing.push(format!("join {user}"));
        }
    }
    for (user, ch) in &c.left {
        // A jump of the clock during a cut times out users who meant to
        // leave after it.
        let timed_out = plan.jump_clock && has("timeout", user, ch);
        if !has("leave", user, ch) && !timed_out {
            missing.push(format!("leave {user}"));
        }
    }
    for (_, user, ch) in &c.timing_out {
        if !has("timeout", user, ch) {
            missing.push(format!("timeout {user}"));
        }
    }
    let after_warm = s.stats.iter().find(|(t, _)| *t >= warm).map(|(_, st)| *st);
    report.stats_end = s.stats.last().map(|(_, st)| *st).unwrap_or_default();
    report.stats_after_warm_up = after_warm.unwrap_or(report.stats_end);
    report.max_memory = (
        s.stats.iter().map(|(_, st)| st.rss).max().unwrap_or(0),
        s.stats.iter().map(|(_, st)| st.heap).max().unwrap_or(0),
    );
    report
}
