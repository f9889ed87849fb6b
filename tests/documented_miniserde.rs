//! The documented calls (here_now, where_now, set state, get state) with
//! the default serializer, miniserde, and with JSON text state, run against
//! the local presence server. Needs the `emulator` feature and not `serde`:
//! `cargo test --features emulator --test documented_miniserde` (in
//! `.ci/run`).
#![cfg(all(feature = "emulator", not(feature = "serde")))]

use miniserde::{Deserialize, Serialize};
use pubnub_presence::emulator::Server;
use pubnub_presence::{GetState, HereNow, PubNub, State};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn client(origin: &str, user_id: &str) -> Result<PubNub> {
    Ok(PubNub::builder()
        .subscribe_key("demo")
        .user_id(user_id)
        .origin(origin)
        .build()?)
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Doing {
    is_doing: String,
}

/// Owned results in signatures, without lifetimes.
fn lobby(pubnub: &PubNub) -> pubnub_presence::Result<HereNow> {
    pubnub
        .here_now()
        .channels(["lobby".into()].to_vec())
        .include_state(true)
        .include_user_ids(true)
        .execute()
}

#[test]
fn documented_usage_with_miniserde_and_json_text_state() -> Result<()> {
    let server = Server::start("127.0.0.1:0")?;
    let pubnub = client(server.origin(), "user_id")?;
    let other = client(server.origin(), "other")?;
    pubnub
        .heartbeat()
        .channels(vec!["lobby".into(), "announce".into()])
        .execute()?;
    other.heartbeat().channels(vec!["lobby".into()]).execute()?;

    // A miniserde type, by value.
    let set = pubnub
        .set_presence_state(Doing {
            is_doing: "Nothing... Just hanging around...".into(),
        })
        .channels(["lobby".into(), "announce".into()].to_vec())
        .user_id("user_id")
        .execute()?;
    assert_eq!(set.channel, "lobby,announce");
    assert_eq!(
        set.state.as_str(),
        r#"{"is_doing":"Nothing... Just hanging around..."}"#
    );
    assert_eq!(
        set.state.deserialize::<Doing>()?,
        Doing {
            is_doing: "Nothing... Just hanging around...".into()
        }
    );

    // JSON text.
    let set = other
        .set_presence_state_json(r#"{"mood":"calm","battery":87}"#)
        .channels(vec!["lobby".into()])
        .execute()?;
    assert_eq!(set.state, r#"{"mood":"calm","battery":87}"#);

    // Here Now: iterate the response itself; state prints as JSON.
    let response = lobby(&pubnub)?;
    let mut seen = Vec::new();
    response.iter().for_each(|channel| {
        assert_eq!(channel.name, "lobby");
        channel.occupants.iter().for_each(|occupant| {
            seen.push((
                occupant.user_id.to_string(),
                format!("{:?}", occupant.state),
            ));
        });
    });
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "other".to_string(),
                r#"{"mood":"calm","battery":87}"#.to_string()
            ),
            (
                "user_id".to_string(),
                r#"{"is_doing":"Nothing... Just hanging around..."}"#.to_string()
            ),
        ]
    );
    let debug = format!("{response:?}");
    assert!(
        debug.contains(r#"state: {"is_doing":"Nothing... Just hanging around..."}"#),
        "{debug}"
    );
    assert!(!debug.contains("[123,"), "{debug}");

    // Without include_state, state is null.
    let plain = pubnub.here_now().channels(vec!["lobby".into()]).execute()?;
    assert!(plain
        .iter()
        .flat_map(|c| &c.occupants)
        .all(|u| u.state.is_null()));

    // Where Now.
    let mut channels = other
        .where_now()
        .user_id("user_id")
        .execute()?
        .into_channels();
    channels.sort();
    assert_eq!(channels, ["announce", "lobby"]);

    // Get State: a result kept by its owned name.
    let got: GetState = other
        .get_presence_state()
        .channels(["lobby".into(), "announce".into()].to_vec())
        .user_id("user_id")
        .execute()?;
    let mut states: Vec<(String, Doing)> = Vec::new();
    for info in &got {
        states.push((info.channel_name.to_string(), info.state.deserialize()?));
    }
    states.sort_by(|a, b| a.0.cmp(&b.0));
    let doing = || Doing {
        is_doing: "Nothing... Just hanging around...".into(),
    };
    assert_eq!(
        states,
        [
            ("announce".to_string(), doing()),
            ("lobby".to_string(), doing())
        ]
    );
    // A state read back can be set again as JSON text.
    let copied: State<'static> = got.state[0].state.clone();
    let again = other
        .set_presence_state_json(copied.as_str())
        .channels(vec!["lobby".into()])
        .execute()?;
    assert_eq!(again.state.deserialize::<Doing>()?, doing());

    // Text given to the value form is refused, pointing at the `_json` form.
    let e = pubnub
        .set_presence_state(r#"{"a":1}"#)
        .channels(vec!["lobby".into()])
        .execute()
        .unwrap_err();
    assert!(e.to_string().contains("`_json` form"), "{e}");
    Ok(())
}
