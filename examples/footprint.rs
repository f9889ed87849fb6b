//! Makes every presence call once: the program whose stripped size
//! `benches/footprint.sh` reports. Point it at a presence server:
//!
//! ```text
//! cargo run --example presence-server --features emulator &
//! cargo run --example footprint -- http://127.0.0.1:8090
//! ```

use pubnub_presence::PubNub;
use std::time::Duration;

fn main() -> Result<(), pubnub_presence::Error> {
    let origin = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8090".to_string());
    let pn = PubNub::builder()
        .subscribe_key("demo")
        .user_id("footprint")
        .origin(origin)
        .build()?;
    let ch = vec!["lobby".to_string()];
    pn.heartbeat()
        .channels(ch.clone())
        .state_json(r#"{"lobby":{"a":1}}"#)
        .execute()?;
    let here = pn
        .here_now()
        .channels(ch.clone())
        .include_state(true)
        .execute()?;
    let global = pn.global_here_now().execute()?;
    let wher = pn.where_now().execute()?;
    // A map serializes with both miniserde and serde. Built by insert:
    // `BTreeMap::from([..])` would add std's stable sort (about 2 KB) to a
    // number that is meant to show this crate's cost.
    let mut state = std::collections::BTreeMap::new();
    state.insert("b", 1u32);
    let set = pn
        .set_presence_state(&state)
        .channels(ch.clone())
        .execute()?;
    let got = pn.get_presence_state().channels(ch.clone()).execute()?;
    let mut events = pn.presence_events().channels(ch.clone()).open()?;
    let _ = events.poll(Duration::from_millis(100))?;
    pn.leave().channels(ch).execute()?;
    println!(
        "{} {} {} {} {}",
        here.total_occupancy,
        global.total_channels,
        wher.channels.len(),
        set.channel,
        got.state.len()
    );
    Ok(())
}
