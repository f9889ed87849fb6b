//! PubNub's documented Rust usage for here_now, where_now, set state and
//! get state (PRESENCE_API_DOCS.txt), with the `serde` feature, run against
//! the local presence server. Apart from building the client and dropping
//! `.await`, the calls are written as the docs write them.
#![cfg(all(feature = "serde", feature = "emulator"))]

use pubnub_presence::emulator::Server;
use pubnub_presence::{GetState, HereNow, PubNub, SetState, WhereNow};
use serde_json::json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn client(origin: &str, user_id: &str) -> Result<PubNub> {
    Ok(PubNub::builder()
        .subscribe_key("demo")
        .user_id(user_id)
        .origin(origin)
        .build()?)
}

/// Owned results in signatures, without lifetimes.
fn who_is_in_the_lobby(pubnub: &PubNub) -> pubnub_presence::Result<HereNow> {
    pubnub
        .here_now()
        .channels(["lobby".into()].to_vec())
        .include_state(true)
        .include_user_ids(true)
        .execute()
}

struct Snapshot {
    here: HereNow,
    where_now: WhereNow,
    set: SetState,
    got: GetState,
}

#[test]
fn documented_usage_with_serde_state() -> Result<()> {
    let server = Server::start("127.0.0.1:0")?;
    let pubnub = client(server.origin(), "user_id")?;
    let other = client(server.origin(), "other")?;
    // PubNub's SDK is present through its subscribe loop; here a heartbeat.
    pubnub
        .heartbeat()
        .channels(vec!["lobby".into(), "announce".into()])
        .execute()?;
    other.heartbeat().channels(vec!["lobby".into()]).execute()?;

    // Set State, as documented: the state by value, from `json!`.
    let set = pubnub
        .set_presence_state(json!({ "is_doing": "Nothing... Just hanging around..." }))
        .channels(["lobby".into(), "announce".into()].to_vec())
        .user_id("user_id")
        .execute()?;
    assert_eq!(set.channel, "lobby,announce");
    assert_eq!(
        set.state,
        json!({ "is_doing": "Nothing... Just hanging around..." })
    );
    // A reference keeps working.
    let mood = json!({ "mood": "calm" });
    other
        .set_presence_state(&mood)
        .channels(vec!["lobby".into()])
        .execute()?;

    // Here Now, as documented: iterate the response itself.
    let response = who_is_in_the_lobby(&pubnub)?;
    let mut seen = Vec::new();
    response.iter().for_each(|channel| {
        assert_eq!(channel.name, "lobby");
        assert_eq!(channel.occupancy, 2);
        channel.occupants.iter().for_each(|occupant| {
            seen.push((occupant.user_id.to_string(), occupant.state.clone()));
        });
    });
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            ("other".to_string(), json!({ "mood": "calm" })),
            (
                "user_id".to_string(),
                json!({ "is_doing": "Nothing... Just hanging around..." })
            ),
        ]
    );
    assert_eq!((response.total_channels, response.total_occupancy), (1, 2));
    // `for channel in &response` and by value too.
    assert_eq!((&response).into_iter().count(), 1);
    let names: Vec<String> = response
        .clone()
        .into_iter()
        .map(|c| c.name.into_owned())
        .collect();
    assert_eq!(names, ["lobby"]);

    // Where Now, as documented.
    let where_now = other.where_now().user_id("user_id").execute()?;
    let mut channels = where_now.clone().into_channels();
    channels.sort();
    assert_eq!(channels, ["announce", "lobby"]);

    // Get State, as documented.
    let got = other
        .get_presence_state()
        .channels(["lobby".into(), "announce".into()].to_vec())
        .user_id("user_id")
        .execute()?;
    let mut states: Vec<(String, serde_json::Value)> = got
        .iter()
        .map(|info| (info.channel_name.to_string(), info.state.clone()))
        .collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    let doing = json!({ "is_doing": "Nothing... Just hanging around..." });
    assert_eq!(
        states,
        [
            ("announce".to_string(), doing.clone()),
            ("lobby".to_string(), doing.clone())
        ]
    );
    let got_one = pubnub
        .get_presence_state()
        .channels(vec!["lobby".into()])
        .execute()?;
    assert_eq!(got_one.state.len(), 1);
    assert_eq!(got_one.state[0].channel_name, "lobby");
    assert_eq!(got_one.state[0].state["is_doing"], doing["is_doing"]);

    // The owned results can be kept in a struct as they are.
    let snapshot = Snapshot {
        here: response,
        where_now,
        set,
        got,
    };
    assert_eq!(snapshot.here.channels.len(), 1);
    assert_eq!(snapshot.where_now.channels.len(), 2);
    assert_eq!(snapshot.set.state, doing);
    assert_eq!(snapshot.got.state.len(), 2);

    // Channel groups, as documented (`channel_groups(Vec<String>)`).
    server.add_to_group("demo", "house", &["lobby"]);
    let by_group = pubnub
        .here_now()
        .channel_groups(["house".into()].to_vec())
        .include_state(true)
        .execute()?;
    assert_eq!(by_group.total_occupancy, 2);
    let from_group = pubnub
        .get_presence_state()
        .channel_groups(vec!["house".into()])
        .execute()?;
    assert_eq!(from_group.state[0].channel_name, "lobby");
    assert_eq!(from_group.state[0].state, doing);

    // JSON text, with the serde feature too; a non-object is refused
    // before anything is sent.
    let set = pubnub
        .set_presence_state_json(r#"{"is_doing":"reading"}"#)
        .channels(vec!["lobby".into()])
        .execute()?;
    assert_eq!(set.state, json!({ "is_doing": "reading" }));
    assert!(pubnub
        .set_presence_state(json!(["not", "an", "object"]))
        .channels(vec!["lobby".into()])
        .execute()
        .is_err());
    Ok(())
}
