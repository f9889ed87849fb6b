//! The main job: a handful of devices come online with state, we look at who
//! is where, round-trip some state, and watch presence events while devices
//! leave and one times out. Two views of the same happenings, printed as two
//! blocks, each in the order it happened: the raw events of a dashboard's
//! stream, then the changes an occupancy mirror of the rooms (on a lobby
//! screen, with its own stream) made from them.
//!
//! ```text
//! cargo run --example presence --features emulator
//! ```
//!
//! With no keys in the environment it starts the local presence server
//! in-process. With `PUBNUB_SUBSCRIBE_KEY` (and optionally
//! `PUBNUB_PUBLISH_KEY`, `PUBNUB_SECRET_KEY`, `PUBNUB_ORIGIN`,
//! `PUBNUB_AUTH_KEY`) it talks to that
//! service instead; the timeout then takes real time (presence timeout 20 s).

use pubnub_presence::emulator::{Options, Server, ServerHandle};
use pubnub_presence::state::state_json;
use pubnub_presence::{Change, Heartbeater, Occupancy, PresenceEvent, PresenceLoop, PubNub};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const DEVICES: [(&str, &[&str], &str); 4] = [
    (
        "thermostat",
        &["living-room", "kitchen"],
        r#"{"temp_c":21.5,"mode":"heat"}"#,
    ),
    ("doorbell", &["hallway"], r#"{"battery":87}"#),
    (
        "camera",
        &["hallway", "living-room"],
        r#"{"recording":false}"#,
    ),
    ("speaker", &["kitchen"], r#"{"volume":4}"#),
];
const WATCHED: [&str; 3] = ["living-room", "kitchen", "hallway"];

struct Target {
    origin: Option<String>,
    subscribe_key: String,
    publish_key: Option<String>,
    auth_key: Option<String>,
    secret_key: Option<String>,
    emulator: Option<ServerHandle>,
}

fn target() -> Result<Target, Box<dyn std::error::Error>> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(subscribe_key) = env("PUBNUB_SUBSCRIBE_KEY") {
        return Ok(Target {
            origin: env("PUBNUB_ORIGIN"),
            subscribe_key,
            publish_key: env("PUBNUB_PUBLISH_KEY"),
            auth_key: env("PUBNUB_AUTH_KEY"),
            secret_key: env("PUBNUB_SECRET_KEY"),
            emulator: None,
        });
    }
    let server = Server::start_with(
        "127.0.0.1:0",
        Options {
            long_poll_hold: Duration::from_secs(5),
            ..Options::default()
        },
    )?;
    Ok(Target {
        origin: Some(server.origin().to_string()),
        subscribe_key: "demo".into(),
        publish_key: Some("demo".into()),
        auth_key: None,
        secret_key: None,
        emulator: Some(server),
    })
}

fn client(t: &Target, user: &str, presence_timeout: u32) -> Result<PubNub, pubnub_presence::Error> {
    let mut b = PubNub::builder()
        .subscribe_key(&t.subscribe_key)
        .user_id(user)
        .presence_timeout(presence_timeout);
    if let Some(o) = &t.origin {
        b = b.origin(o);
    }
    if let Some(k) = &t.publish_key {
        b = b.publish_key(k);
    }
    if let Some(k) = &t.auth_key {
        b = b.auth_key(k);
    }
    if let Some(k) = &t.secret_key {
        // Signing needs the `tls` feature (on by default); without it
        // build() says so.
        b = b.secret_key(k);
    }
    b.build()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn describe(e: &PresenceEvent<'_>) -> String {
    match e {
        PresenceEvent::Join(u) => format!(
            "join      {:<12} {:<12} occupancy {}",
            u.channel, u.user_id, u.occupancy
        ),
        PresenceEvent::Leave(u) => format!(
            "leave     {:<12} {:<12} occupancy {}",
            u.channel, u.user_id, u.occupancy
        ),
        PresenceEvent::Timeout(u) => format!(
            "timeout   {:<12} {:<12} occupancy {}",
            u.channel, u.user_id, u.occupancy
        ),
        PresenceEvent::StateChange(u) => format!(
            "state     {:<12} {:<12} {}",
            u.channel,
            u.user_id,
            u.state
                .as_ref()
                .map(|s| state_json(s).into_owned())
                .unwrap_or_default()
        ),
        PresenceEvent::Interval(i) => {
            format!("interval  {:<12} occupancy {}", i.channel, i.occupancy)
        }
        other => format!("other     {}", other.channel()),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let t = target()?;
    match &t.emulator {
        Some(s) => println!("Using the local presence server at {}", s.origin()),
        None => println!(
            "Using PubNub at {}",
            t.origin
                .as_deref()
                .unwrap_or(pubnub_presence::DEFAULT_ORIGIN)
        ),
    }
    let mut calls = 0u32;
    let mut tally: BTreeMap<&'static str, u32> = BTreeMap::new();

    // The dashboard runs the device loop: it stays present on its own
    // channel (heartbeats with state) and watches the rooms' presence
    // events, in one bounded call per iteration. Events come over one kept
    // connection, heartbeats over a second.
    let watcher = client(&t, "dashboard", 300)?;
    let mut online = Heartbeater::new(&watcher);
    online.join(names(&["control-room"]))?;
    online.set_state_json("control-room", r#"{"screens":2}"#)?;
    let events = watcher.presence_events().channels(names(&WATCHED)).open()?;
    let mut dashboard = PresenceLoop::new(online, Some(events));
    // The first call sends the heartbeat and the subscribe handshake.
    dashboard.poll(Duration::from_millis(300))?;
    calls += 2;

    // A lobby screen keeps an occupancy mirror of the rooms: who is in
    // each, with state, from its own event stream and here_now snapshots.
    let screen = client(&t, "lobby-screen", 300)?;
    let mut rooms = screen
        .occupancy()
        .channels(names(&WATCHED))
        .include_state(true)
        .open()?;
    // Its first calls: the handshake, then the first snapshot.
    while rooms.resyncs() == 0 {
        rooms.poll(Duration::from_millis(100))?;
    }
    calls += 2;

    // Devices come online with state. The camera uses a short timeout and
    // will stop heartbeating.
    let mut devices = Vec::new();
    for (user, channels, state) in DEVICES {
        let timeout = if user == "camera" { 20 } else { 300 };
        let pn = client(&t, user, timeout)?;
        let per_channel: Vec<String> = channels
            .iter()
            .map(|c| format!("\"{c}\":{state}"))
            .collect();
        pn.heartbeat()
            .channels(names(channels))
            .state_json(format!("{{{}}}", per_channel.join(",")))
            .execute()?;
        calls += 1;
        devices.push(pn);
    }
    println!("\n{} devices online. here_now with state:", devices.len());
    let here = watcher
        .here_now()
        .channels(names(&WATCHED))
        .include_state(true)
        .execute()?;
    calls += 1;
    println!("{:<12} {:>9}  {:<12} state", "channel", "occupancy", "user");
    let mut channels = here.channels.clone();
    channels.sort_by(|a, b| a.name.cmp(&b.name));
    for c in &channels {
        for (i, u) in c.occupants.iter().enumerate() {
            let (name, occ) = if i == 0 {
                (c.name.as_ref(), c.occupancy.to_string())
            } else {
                ("", String::new())
            };
            println!(
                "{name:<12} {occ:>9}  {:<12} {}",
                u.user_id,
                state_json(&u.state)
            );
        }
    }
    // total_occupancy counts presences (a user on a channel): a device on
    // two rooms counts twice.
    let devices_seen: BTreeSet<&str> = here
        .channels
        .iter()
        .flat_map(|c| c.occupants.iter().map(|u| u.user_id.as_ref()))
        .collect();
    println!(
        "total: {} presences, {} devices, {} channels",
        here.total_occupancy,
        devices_seen.len(),
        here.total_channels
    );

    let mut where_camera = watcher.where_now().user_id("camera").execute()?.channels;
    calls += 1;
    where_camera.sort();
    println!("\nwhere_now(camera): {}", where_camera.join(", "));

    // State round trip for the doorbell: set, then read back. A map
    // serializes with miniserde (default) and with serde (feature `serde`).
    let doorbell = &devices[1];
    let new_state: BTreeMap<String, u32> =
        [("battery".to_string(), 86), ("rings".to_string(), 3)].into();
    let set = doorbell
        .set_presence_state(&new_state)
        .channels(names(&["hallway"]))
        .execute()?;
    calls += 1;
    println!(
        "set_presence_state(doorbell, {}): {}",
        set.channel,
        state_json(&set.state)
    );
    let got = watcher
        .get_presence_state()
        .channels(names(&["hallway"]))
        .user_id("doorbell")
        .execute()?;
    calls += 1;
    for info in &got.state {
        println!(
            "get_presence_state(doorbell, {}): {}",
            info.channel_name,
            state_json(&info.state)
        );
    }

    // Two devices leave; the camera goes silent and times out.
    devices[0].leave().channels(names(DEVICES[0].1)).execute()?;
    devices[1].leave().channels(names(DEVICES[1].1)).execute()?;
    calls += 2;
    let timeout_deadline = match &t.emulator {
        Some(server) => {
            println!("\n(the camera stops heartbeating; advancing the server clock 21 s)");
            server.advance(Duration::from_secs(21));
            Instant::now() + Duration::from_secs(6)
        }
        None => {
            println!("\n(the camera stops heartbeating; waiting up to 40 s for its timeout)");
            Instant::now() + Duration::from_secs(40)
        }
    };

    // Both views are gathered until each has seen the camera go (on its
    // two rooms), then printed one after the other: the two streams are
    // polled in turn, so lines interleaved as they arrive would mix their
    // orders differently on every run.
    let mut raw = Vec::new();
    let mut mirrored_changes = Vec::new();
    let mut camera_timeouts = 0;
    let mut camera_gone_from_mirror = 0;
    let camera_listed = |m: &Occupancy| WATCHED.iter().any(|c| m.is_present(c, "camera"));
    while Instant::now() < timeout_deadline
        && (camera_timeouts < 2 || camera_gone_from_mirror < 2 || camera_listed(&rooms))
    {
        // The mirror: one bounded call, what changed comes back.
        for change in rooms.poll(Duration::from_millis(100))? {
            if matches!(&change,
                Change::TimedOut { user_id, .. } | Change::Left { user_id, .. } if user_id == "camera")
            {
                camera_gone_from_mirror += 1;
            }
            mirrored_changes.push(change.to_string());
        }
        // Waits at most 250 ms; the long-poll stays in flight between calls.
        let Some(e) = dashboard.poll(Duration::from_millis(250))? else {
            continue;
        };
        raw.push(describe(&e));
        let kind = match &e {
            PresenceEvent::Join(_) => "join",
            PresenceEvent::Leave(_) => "leave",
            PresenceEvent::Timeout(u) => {
                if u.user_id == "camera" {
                    camera_timeouts += 1;
                }
                "timeout"
            }
            PresenceEvent::StateChange(_) => "state-change",
            PresenceEvent::Interval(_) => "interval",
            _ => "other",
        };
        *tally.entry(kind).or_default() += 1;
    }

    println!("\nPresence events, as the dashboard's stream delivered them:");
    for line in &raw {
        println!("  {line}");
    }
    println!("\nThe lobby screen's mirror: the changes it made, in order:");
    for line in &mirrored_changes {
        println!("  {line}");
    }

    let after = watcher.here_now().channels(names(&WATCHED)).execute()?;
    calls += 1;
    let mut left: Vec<String> = after
        .channels
        .iter()
        .flat_map(|c| {
            c.occupants
                .iter()
                .map(move |u| format!("{}@{}", u.user_id, c.name))
        })
        .collect();
    left.sort();

    // The mirror's view, beside the here_now it should equal.
    println!("\nThe mirror (lobby screen), against here_now:");
    let mut mirrored = BTreeSet::new();
    for room in rooms.channels() {
        let mut users: Vec<String> = rooms
            .occupants(room)
            .map(|o| format!("{} {}", o.user_id, state_json(o.state)))
            .collect();
        users.sort();
        let line = format!(
            "  {room:<12} {:>2}  {}",
            rooms.occupancy(room),
            users.join(", ")
        );
        println!("{}", line.trim_end());
        mirrored.extend(
            rooms
                .occupants(room)
                .map(|o| format!("{}@{room}", o.user_id)),
        );
    }
    let agrees = mirrored == left.iter().cloned().collect::<BTreeSet<_>>();
    println!(
        "  mirror and here_now agree: {} (snapshots taken: {})",
        if agrees { "yes" } else { "no" },
        rooms.resyncs()
    );

    let stream_connections = dashboard.events().map_or(0, |e| e.connections_opened());
    println!("\nSummary");
    println!("  calls made:      {calls} (plus the event stream's long-polls)");
    println!("  event stream:    {stream_connections} connection(s) opened");
    let tally_text: Vec<String> = tally.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!("  events seen:     {}", tally_text.join(", "));
    println!(
        "  still online:    {}",
        if left.is_empty() {
            "nobody".into()
        } else {
            left.join(", ")
        }
    );
    println!(
        "  elapsed:         {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if camera_timeouts == 0 {
        return Err("the camera's timeout event did not arrive".into());
    }
    if !agrees {
        return Err("the occupancy mirror does not agree with here_now".into());
    }
    Ok(())
}
