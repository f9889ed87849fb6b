//! Makes every presence call once: the program whose stripped size
//! `benches/footprint.sh` reports. Point it at a presence server:
//!
//! ```text
//! cargo run --example presence-server --features emulator &
//! cargo run --example footprint -- http://127.0.0.1:8090
//! ```
//!
//! Each call sits between `// [name]` and `// [/name]` markers and prints
//! its own result, so `benches/footprint_calls.sh` can build the program
//! without one call and report what that call costs.
//!
//! A failure is printed with `Display` (`{e}`) and exits with status 1,
//! as the baseline it is measured against (`benches/baseline-proto`)
//! prints its errors: a `main` returning `Result` would print it with
//! `Debug`, linking the derived `Debug` impls of the error types into the
//! comparison (2,040 B without TLS, 920 B with it; BENCHMARKS.md,
//! Footprint).

use pubnub_presence::PubNub;

fn main() {
    if let Err(e) = run() {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), pubnub_presence::Error> {
    let origin = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8090".to_string());
    let pn = PubNub::builder()
        .subscribe_key("demo")
        .user_id("footprint")
        .origin(origin)
        .build()?;
    let ch = vec!["lobby".to_string()];
    // [heartbeat]
    pn.heartbeat()
        .channels(ch.clone())
        .state_json(r#"{"lobby":{"a":1}}"#)
        .execute()?;
    // [/heartbeat]
    // [here_now]
    let here = pn
        .here_now()
        .channels(ch.clone())
        .include_state(true)
        .execute()?;
    let global = pn.global_here_now().execute()?;
    println!("{} {}", here.total_occupancy, global.total_channels);
    // [/here_now]
    let wher = pn.where_now().execute()?;
    println!("{}", wher.channels.len());
    // [set_state]
    // A map serializes with both miniserde and serde. Built by insert:
    // `BTreeMap::from([..])` would add std's stable sort (about 2 KB) to a
    // number that is meant to show this crate's cost.
    let mut state = std::collections::BTreeMap::new();
    state.insert("b", 1u32);
    let set = pn
        .set_presence_state(&state)
        .channels(ch.clone())
        .execute()?;
    println!("{}", set.channel);
    // [/set_state]
    // [get_state]
    let got = pn.get_presence_state().channels(ch.clone()).execute()?;
    println!("{}", got.state.len());
    // [/get_state]
    // [events]
    let mut events = pn.presence_events().channels(ch.clone()).open()?;
    let _ = events.poll(std::time::Duration::from_millis(100))?;
    // [/events]
    pn.leave().channels(ch).execute()?;
    Ok(())
}
