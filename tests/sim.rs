//! The device loop in the deterministic network simulator (feature
//! `sim`): named scenarios for the conditions devices live in, and a
//! randomized search over scenarios and seeds. Everything runs in virtual
//! time: nothing here sleeps or reads the wall clock.
//!
//! A failing run prints its seed; replay it with
//! `SIM_SEED=<seed> cargo test --all-features --test sim replay -- --nocapture`.
//! A longer search: `SIM_RUNS=20000 cargo test --release --all-features --test sim search -- --nocapture`.

use pubnub_presence::sim::{Action, Fault, Sim, SimConfig};
use pubnub_presence::{Heartbeater, PresenceEvent, PresenceLoop, PubNub};
use std::collections::BTreeSet;
use std::time::Duration;

const SUB: &str = "demo";
const CHANNEL: &str = "lobby";
const DEVICE: &str = "device";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A scenario: the network, what goes wrong, what others do.
#[derive(Debug, Clone)]
struct Scenario {
    name: String,
    cfg: SimConfig,
    faults: Vec<Fault>,
    /// Other users: (name, joins at, leaves at).
    others: Vec<(String, Duration, Option<Duration>)>,
    /// How long the device loop runs.
    length: Duration,
    /// The loop's budget per call.
    budget: Duration,
    presence_timeout: u32,
}

impl Scenario {
    fn new(name: &str, seed: u64) -> Scenario {
        Scenario {
            name: name.to_string(),
            cfg: SimConfig {
                seed,
                ..SimConfig::default()
            },
            faults: Vec::new(),
            others: vec![
                ("ann".into(), secs(5), Some(secs(100))),
                ("bob".into(), secs(20), None),
                ("cat".into(), secs(60), Some(secs(200))),
            ],
            length: std::env::var("SIM_LEN")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(secs(300), secs),
            budget: Duration::from_millis(100),
            presence_timeout: 60,
        }
    }

    /// When the network is quiet again: the end of the last fault.
    fn settled_at(&self) -> Duration {
        self.faults
            .iter()
            .map(|f| match f {
                Fault::Outage { to, .. }
                | Fault::SlowDns { to, .. }
                | Fault::Trickle { to, .. }
                | Fault::EndlessContinue { to, .. }
                | Fault::ExtraResponse { to, .. } => *to,
                Fault::Forget { at } | Fault::Reset { at } | Fault::Restart { at } => *at,
                Fault::Suspend { at, span } => at.saturating_add(*span),
            })
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// The longest stretch the device could not reach the server.
    fn longest_cut(&self) -> Duration {
        self.faults
            .iter()
            .map(|f| match f {
                Fault::Outage { from, to, .. } => to.saturating_sub(*from),
                Fault::Suspend { span, .. } => *span,
                Fault::EndlessContinue { from, to, .. } | Fault::Trickle { from, to, .. } => {
                    to.saturating_sub(*from)
                }
                _ => Duration::ZERO,
            })
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

/// What a run saw.
#[derive(Debug, Default)]
struct Outcome {
    /// Broken properties, each with the virtual time.
    broken: Vec<String>,
    events: usize,
    errors: usize,
    requests: usize,
    steps: u64,
}

/// The properties every step of every scenario must keep.
mod bounds {
    use std::time::Duration;
    /// A call may overrun its budget by this much (virtual time: no
    /// scheduler noise, only the last wait's rounding).
    pub const POLL_SLACK: Duration = Duration::from_millis(5);
    /// Requests of the device in any one second of virtual time.
    pub const MAX_REQUESTS_PER_SECOND: usize = 12;
}

fn run(s: &Scenario) -> Outcome {
    let sim = Sim::new(s.cfg.clone());
    for f in &s.faults {
        sim.fault(f.clone());
    }
    for (user, join, leave) in &s.others {
        // Each other user heartbeats every 20 s (presence timeout 60 s)
        // from `join` until `leave`.
        let end = leave.unwrap_or(s.length.saturating_add(secs(600)));
        let mut t = *join;
        while t < end {
            sim.act(
                t,
                Action::Heartbeat {
                    sub: SUB.into(),
                    user: user.clone(),
                    channels: vec![CHANNEL.into()],
                    timeout: 60,
                },
            );
            t += secs(20);
        }
        if let Some(leave) = leave {
            sim.act(
                *leave,
                Action::Leave {
                    sub: SUB.into(),
                    user: user.clone(),
                    channels: vec![CHANNEL.into()],
                },
            );
        }
    }
    let _on = sim.enter();
    let mut out = Outcome::default();
    let pubnub = match PubNub::builder()
        .subscribe_key(SUB)
        .user_id(DEVICE)
        .origin(Sim::ORIGIN)
        .presence_timeout(s.presence_timeout)
        .build()
    {
        Ok(p) => p,
        Err(e) => {
            out.broken.push(format!("build: {e}"));
            return out;
        }
    };
    let mut online = Heartbeater::new(&pubnub);
    if let Err(e) = online.join(vec![CHANNEL.into()]) {
        out.broken.push(format!("join: {e}"));
        return out;
    }
    let events = match pubnub
        .presence_events()
        .channels(vec![CHANNEL.into()])
        .open()
    {
        Ok(e) => e,
        Err(e) => {
            out.broken.push(format!("open: {e}"));
            return out;
        }
    };
    let mut device = PresenceLoop::new(online, Some(events));
    let mut seen: BTreeSet<Key> = BTreeSet::new();
    let mut start_cursor: Option<u64> = None;
    let mut restarted = false;
    while sim.now() < s.length {
        let t0 = sim.now();
        let got = device.poll(s.budget);
        let took = sim.now().saturating_sub(t0);
        if took > s.budget + bounds::POLL_SLACK {
            out.broken.push(format!(
                "t={t0:?}: poll({:?}) took {took:?} (returned {})",
                s.budget,
                match &got {
                    Ok(Some(_)) => "an event".to_string(),
                    Ok(None) => "nothing".to_string(),
                    Err(e) => format!("error: {e}"),
                }
            ));
        }
        if start_cursor.is_none() {
            let c = device.events().map_or(0, |e| e.cursor().t);
            if c != 0 {
                start_cursor = Some(c);
            }
        }
        match got {
            Ok(Some(event)) => {
                out.events += 1;
                let key = describe(&event);
                if key.2 != 0 && !seen.insert(key.clone()) {
                    out.broken
                        .push(format!("t={t0:?}: {key:?} delivered twice"));
                }
            }
            Ok(None) => {}
            Err(_) => out.errors += 1,
        }
        if took < Duration::from_millis(1) {
            // The device's own work between calls.
            sim.run_for(Duration::from_millis(1));
        }
        if s.faults
            .iter()
            .any(|f| matches!(f, Fault::Restart { at } if *at <= sim.now()))
        {
            restarted = true;
        }
    }
    // Requests per second.
    let served = sim.served();
    out.requests = served.len();
    let mine: Vec<Duration> = served
        .iter()
        .filter(|r| r.uuid == DEVICE)
        .map(|r| r.at)
        .collect();
    let mut j = 0;
    for i in 0..mine.len() {
        while mine[i].saturating_sub(mine[j]) >= secs(1) {
            j += 1;
        }
        if i + 1 - j > bounds::MAX_REQUESTS_PER_SECOND {
            out.broken.push(format!(
                "t={:?}: {} requests within one second",
                mine[j],
                i + 1 - j
            ));
            break;
        }
    }
    // Nothing lost: every event the server logged on the channel after the
    // stream's first cursor, up to a little before the end (so the last
    // long-poll had time to bring it), was delivered.
    let log = sim.events(SUB);
    if let (Some(start), false) = (start_cursor, restarted) {
        let horizon = s.length.saturating_sub(secs(30));
        let settled = s.settled_at();
        if settled < horizon {
            let cutoff_tt = tt_at(horizon);
            for e in log
                .iter()
                .filter(|e| e.channel == CHANNEL && e.timetoken > start && e.timetoken < cutoff_tt)
            {
                let key = (e.action.clone(), e.uuid.clone(), e.timestamp, e.occupancy);
                if !seen.contains(&key) {
                    out.broken.push(format!("{key:?} was never delivered"));
                }
            }
        }
    }
    // Present: the server timed the device out only if the device could
    // not reach it for about a presence timeout.
    let cut = s.longest_cut();
    let timeouts = log
        .iter()
        .filter(|e| e.uuid == DEVICE && e.action == "timeout")
        .count();
    let allowed_cut = secs(u64::from(s.presence_timeout)) / 2;
    if timeouts > 0 && cut < allowed_cut {
        out.broken.push(format!(
            "the server timed the device out {timeouts} time(s) though it was never cut off for {allowed_cut:?} (longest {cut:?})"
        ));
    }
    out.broken.extend(sim.trouble());
    out.steps = sim.steps();
    out
}

/// The server's timetoken at a virtual time (the simulation starts its
/// server clock at a fixed Unix time).
fn tt_at(t: Duration) -> u64 {
    (1_765_000_000_000u64 + u64::try_from(t.as_millis()).unwrap_or(0)) * 10_000
}

/// An event's identity: action, user, timestamp, occupancy.
type Key = (String, String, u64, u32);

fn describe(e: &PresenceEvent<'_>) -> Key {
    let user = |a: &str, u: &pubnub_presence::UserEvent<'_>| {
        (
            a.to_string(),
            u.user_id.to_string(),
            u.timestamp,
            u.occupancy,
        )
    };
    match e {
        PresenceEvent::Join(u) => user("join", u),
        PresenceEvent::Leave(u) => user("leave", u),
        PresenceEvent::Timeout(u) => user("timeout", u),
        PresenceEvent::StateChange(u) => user("state-change", u),
        PresenceEvent::Interval(i) => ("interval".into(), String::new(), i.timestamp, i.occupancy),
        other => (format!("{other:?}"), String::new(), 0, 0),
    }
}

fn check(s: &Scenario) -> Outcome {
    let out = run(s);
    assert!(
        out.broken.is_empty(),
        "scenario {} (seed {}) broke {} propert{}:\n  {}\nreplay: SIM_SEED={} cargo test --all-features --test sim replay -- --nocapture",
        s.name,
        s.cfg.seed,
        out.broken.len(),
        if out.broken.len() == 1 { "y" } else { "ies" },
        out.broken.iter().take(12).cloned().collect::<Vec<_>>().join("\n  "),
        s.cfg.seed,
    );
    out
}

#[test]
fn clean_network() {
    let out = check(&Scenario::new("clean", 1));
    assert!(out.events >= 6, "{out:?}");
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let mut s = Scenario::new("replay", 99);
    s.cfg.jitter = Duration::from_millis(40);
    s.cfg.loss_percent = 5;
    let a = run(&s);
    let b = run(&s);
    assert_eq!(
        (a.events, a.errors, a.requests),
        (b.events, b.errors, b.requests)
    );
}
