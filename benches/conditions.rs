//! The device loop under the network conditions devices live in, in the
//! deterministic simulator (virtual time, so the numbers are exact and the
//! same on every machine): worst poll, time until the outage is reported,
//! time until events flow again, events lost or duplicated, requests per
//! minute during the fault. The table in BENCHMARKS.md comes from
//! `cargo bench --all-features --bench conditions`.

use pubnub_presence::sim::{Action, Fault, Sim, SimConfig};
use pubnub_presence::{Heartbeater, PresenceEvent, PresenceLoop, PubNub};
use std::collections::BTreeSet;
use std::time::Duration;

const SUB: &str = "demo";
const CHANNEL: &str = "lobby";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

struct Row {
    name: &'static str,
    worst_poll: Duration,
    reported_after: Option<Duration>,
    recovered_after: Option<Duration>,
    lost: usize,
    duplicated: usize,
    requests_per_minute: f64,
}

fn run(name: &'static str, cfg: SimConfig, fault: Fault, from: Duration, to: Duration) -> Row {
    let sim = Sim::new(cfg);
    sim.fault(fault);
    // Another user joins and leaves every 20 s, so events keep coming.
    let mut t = secs(5);
    let mut i = 0;
    while t < secs(400) {
        let user = format!("user-{i}");
        sim.act(
            t,
            Action::Heartbeat {
                sub: SUB.into(),
                user: user.clone(),
                channels: vec![CHANNEL.into()],
                timeout: 60,
            },
        );
        sim.act(
            t + secs(10),
            Action::Leave {
                sub: SUB.into(),
                user,
                channels: vec![CHANNEL.into()],
            },
        );
        t += secs(20);
        i += 1;
    }
    let _on = sim.enter();
    let pubnub = PubNub::builder()
        .subscribe_key(SUB)
        .user_id("device")
        .origin(Sim::ORIGIN)
        .presence_timeout(60)
        .build()
        .expect("client");
    let mut online = Heartbeater::new(&pubnub);
    online.join(vec![CHANNEL.into()]).expect("join");
    let events = pubnub
        .presence_events()
        .channels(vec![CHANNEL.into()])
        .open()
        .expect("open");
    let mut device = PresenceLoop::new(online, Some(events));
    let mut row = Row {
        name,
        worst_poll: Duration::ZERO,
        reported_after: None,
        recovered_after: None,
        lost: 0,
        duplicated: 0,
        requests_per_minute: 0.0,
    };
    let mut seen = BTreeSet::new();
    let mut start = None;
    while sim.now() < secs(400) {
        let t0 = sim.now();
        let got = device.poll(Duration::from_millis(100));
        let took = (sim.now() - t0).saturating_sub(sim.suspended_within(t0, sim.now()));
        row.worst_poll = row.worst_poll.max(took);
        if start.is_none() {
            start = device.events().map(|e| e.cursor().t).filter(|t| *t != 0);
        }
        match got {
            Ok(Some(PresenceEvent::Join(u) | PresenceEvent::Leave(u))) => {
                if !seen.insert((u.user_id.to_string(), u.timestamp, u.occupancy)) {
                    row.duplicated += 1;
                }
                if t0 >= to && row.recovered_after.is_none() {
                    row.recovered_after = Some(t0 - to);
                }
            }
            Ok(_) => {}
            Err(_) => {
                if t0 >= from && row.reported_after.is_none() {
                    row.reported_after = Some(t0 - from);
                }
            }
        }
        if sim.now() - t0 < Duration::from_millis(1) {
            sim.run_for(Duration::from_millis(1));
        }
    }
    let log = sim.events(SUB);
    let start = start.unwrap_or(0);
    for e in log.iter().filter(|e| {
        e.timetoken > start
            && e.uuid != "device"
            && (e.action == "join" || e.action == "leave")
            && e.timestamp < 1_765_000_000 + 370
    }) {
        if !seen.contains(&(e.uuid.clone(), e.timestamp, e.occupancy)) {
            row.lost += 1;
        }
    }
    // What the device tried: requests that reached the server, and
    // connections it opened (most requests in an outage never arrive).
    let during = sim
        .served()
        .iter()
        .filter(|r| r.uuid == "device" && r.at >= from && r.at < to)
        .count()
        + sim.connects_between(from, to);
    let minutes = (to - from).as_secs_f64() / 60.0;
    row.requests_per_minute = if minutes > 0.0 {
        during as f64 / minutes
    } else {
        0.0
    };
    row
}

fn main() {
    let plain = SimConfig::default();
    let cellular = SimConfig {
        latency: Duration::from_millis(300),
        jitter: Duration::from_millis(50),
        loss_percent: 5,
        bandwidth: Some(8_000),
        ..SimConfig::default()
    };
    let rows = [
        run(
            "outage, DNS gone too (120 s)",
            plain.clone(),
            Fault::Outage {
                from: secs(60),
                to: secs(180),
                refuse: false,
                dns: true,
            },
            secs(60),
            secs(180),
        ),
        run(
            "outage, connects refused (120 s)",
            plain.clone(),
            Fault::Outage {
                from: secs(60),
                to: secs(180),
                refuse: true,
                dns: false,
            },
            secs(60),
            secs(180),
        ),
        run(
            "half-open: server forgets connections",
            plain.clone(),
            Fault::Forget { at: secs(60) },
            secs(60),
            secs(60),
        ),
        run(
            "slow lossy link (300 ms, 5 %, 64 kbit/s) + 60 s blackhole",
            cellular,
            Fault::Outage {
                from: secs(60),
                to: secs(120),
                refuse: false,
                dns: false,
            },
            secs(60),
            secs(120),
        ),
        run(
            "suspend 60 s",
            plain.clone(),
            Fault::Suspend {
                at: secs(60),
                span: secs(60),
            },
            secs(60),
            secs(120),
        ),
        run(
            "empty batches at once (60 s)",
            plain.clone(),
            Fault::EmptyBatches {
                from: secs(60),
                to: secs(120),
            },
            secs(60),
            secs(120),
        ),
    ];
    println!("| condition | worst poll (100 ms budget) | reported after | events again after | lost | duplicated | requests + connects /min during |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let opt = |d: Option<Duration>| {
            d.map_or("-".to_string(), |d| format!("{:.1} s", d.as_secs_f64()))
        };
        println!(
            "| {} | {:.1} ms | {} | {} | {} | {} | {:.1} |",
            r.name,
            r.worst_poll.as_secs_f64() * 1000.0,
            opt(r.reported_after),
            opt(r.recovered_after),
            r.lost,
            r.duplicated,
            r.requests_per_minute
        );
    }
}
