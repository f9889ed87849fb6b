//! Every response body recorded from real PubNub servers decodes as its
//! `INDEX.md` says.
//!
//! The bodies are in `tests/fixtures/recorded/` (45 bodies; `INDEX.md`
//! there names each one's source, request and recording date), in the
//! repository and in the published package. A missing or unreadable body is
//! a failure, never a skip.
//!
//! Expected values are computed from each body with `serde_json` as an
//! independent oracle, plus hand-checked facts from the index.

use pubnub_presence::__internal::encode;
use pubnub_presence::{decode, PresenceEvent, State};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

struct Fixture {
    name: String,
    status: u16,
    url: String,
    body: Vec<u8>,
}

/// The recorded corpus, shipped with the crate.
fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recorded")
}

fn fixtures() -> Vec<Fixture> {
    let dir = fixture_dir();
    let index = std::fs::read_to_string(dir.join("INDEX.md"))
        .unwrap_or_else(|e| panic!("recorded fixtures not readable at {}: {e}", dir.display()));
    let mut out = Vec::new();
    for line in index.lines() {
        let cols: Vec<&str> = line.split(" | ").collect();
        if cols.len() < 6 || !cols[0].starts_with("| `") {
            continue;
        }
        let name = cols[0]
            .trim_start_matches("| `")
            .trim_end_matches('`')
            .to_string();
        let status: u16 = cols[1].trim().parse().expect("status column");
        let url = cols[4].trim().trim_matches('`').to_string();
        let body = std::fs::read(dir.join(&name)).expect("fixture body");
        out.push(Fixture {
            name,
            status,
            url,
            body,
        });
    }
    assert_eq!(out.len(), 45, "INDEX.md should list 45 bodies");
    out
}

/// The path's channel segment and whether a channel-group is in the query.
fn request_channels(url: &str) -> (Vec<String>, bool) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let seg = path
        .split("/channel/")
        .nth(1)
        .map(|rest| rest.split('/').next().unwrap_or(""))
        .unwrap_or("");
    let channels = if seg.is_empty() || seg == "," {
        vec![]
    } else {
        seg.split(',')
            .map(|s| encode::decode(s).expect("fixture url decodes"))
            .collect()
    };
    (channels, query.contains("channel-group="))
}

fn state_value(s: &State<'_>) -> Value {
    serde_json::from_str(&pubnub_presence::state::state_json(s)).expect("state is json")
}

fn check_here_now(f: &Fixture) {
    let (channels, has_group) = request_channels(&f.url);
    let flat = match (channels.as_slice(), has_group) {
        ([one], false) => Some(one.as_str()),
        _ => None,
    };
    let got = decode::here_now(&f.body, flat).unwrap_or_else(|e| panic!("{}: {e}", f.name));
    let v: Value = serde_json::from_slice(&f.body).unwrap();
    // The oracle: channel -> (occupancy, [(uuid, state)]).
    let mut want: BTreeMap<String, (u64, Vec<(String, Value)>)> = BTreeMap::new();
    let users = |uuids: Option<&Value>| -> Vec<(String, Value)> {
        uuids
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|u| match u {
                        Value::String(s) => (s.clone(), Value::Null),
                        o => (
                            o["uuid"].as_str().unwrap().to_string(),
                            o.get("state").cloned().unwrap_or(Value::Null),
                        ),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(chs) = v.pointer("/payload/channels").and_then(Value::as_object) {
        for (name, c) in chs {
            want.insert(
                name.clone(),
                (c["occupancy"].as_u64().unwrap(), users(c.get("uuids"))),
            );
        }
        assert_eq!(
            u64::from(got.total_channels),
            v["payload"]["total_channels"].as_u64().unwrap()
        );
        assert_eq!(
            u64::from(got.total_occupancy),
            v["payload"]["total_occupancy"].as_u64().unwrap()
        );
    } else {
        want.insert(
            flat.unwrap().to_string(),
            (v["occupancy"].as_u64().unwrap(), users(v.get("uuids"))),
        );
        assert_eq!(got.total_channels, 1);
    }
    let mut have = BTreeMap::new();
    for c in &got.channels {
        let users = c
            .occupants
            .iter()
            .map(|u| (u.user_id.to_string(), state_value(&u.state)))
            .collect();
        have.insert(c.name.to_string(), (u64::from(c.occupancy), users));
    }
    assert_eq!(have, want, "{}", f.name);
}

fn check_events(f: &Fixture) {
    let got = decode::events(&f.body).unwrap_or_else(|e| panic!("{}: {e}", f.name));
    let v: Value = serde_json::from_slice(&f.body).unwrap();
    assert_eq!(
        got.next.t.to_string(),
        v["t"]["t"].as_str().unwrap(),
        "{}",
        f.name
    );
    let msgs = v["m"].as_array().unwrap();
    assert_eq!(got.events.len(), msgs.len(), "{}", f.name);
    for (e, m) in got.events.iter().zip(msgs) {
        let d = &m["d"];
        assert_eq!(e.timetoken.to_string(), m["p"]["t"].as_str().unwrap());
        let channel = m["c"].as_str().unwrap().trim_end_matches("-pnpres");
        assert_eq!(e.event.channel(), channel);
        let action = d["action"].as_str().unwrap();
        match &e.event {
            PresenceEvent::Join(u)
            | PresenceEvent::Leave(u)
            | PresenceEvent::Timeout(u)
            | PresenceEvent::StateChange(u) => {
                let kind = match &e.event {
                    PresenceEvent::Join(_) => "join",
                    PresenceEvent::Leave(_) => "leave",
                    PresenceEvent::Timeout(_) => "timeout",
                    _ => "state-change",
                };
                assert_eq!(kind, action, "{}", f.name);
                assert_eq!(u.user_id, d["uuid"].as_str().unwrap());
                assert_eq!(u64::from(u.occupancy), d["occupancy"].as_u64().unwrap());
                assert_eq!(u.timestamp, d["timestamp"].as_u64().unwrap());
                assert_eq!(u.precise_timestamp, d["precise_timestamp"].as_u64());
                assert_eq!(u.state.as_ref().map(state_value), d.get("data").cloned());
                let b = m
                    .get("b")
                    .and_then(Value::as_str)
                    .map(|b| b.trim_end_matches("-pnpres"));
                assert_eq!(
                    u.subscription.as_deref(),
                    b.filter(|b| *b != channel),
                    "{}",
                    f.name
                );
            }
            PresenceEvent::Interval(i) => {
                assert_eq!(action, "interval");
                assert_eq!(u64::from(i.occupancy), d["occupancy"].as_u64().unwrap());
                let list = |k: &str| -> Vec<String> {
                    d.get(k)
                        .and_then(Value::as_array)
                        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                        .unwrap_or_default()
                };
                let strs = |v: &[std::borrow::Cow<'_, str>]| -> Vec<String> {
                    v.iter().map(|s| s.to_string()).collect()
                };
                assert_eq!(strs(&i.join), list("join"));
                assert_eq!(strs(&i.leave), list("leave"));
                assert_eq!(strs(&i.timeout), list("timeout"));
            }
            other => panic!("{}: unexpected {other:?}", f.name),
        }
    }
}

#[test]
fn every_recorded_body_decodes() {
    let all = fixtures();
    let mut checked = 0;
    for f in &all {
        let n = f.name.as_str();
        if f.status >= 400 {
            let e = decode::error(f.status, &f.body);
            let Some(s) = e.server() else {
                panic!("{n}: {e:?}")
            };
            let v: Value = serde_json::from_slice(&f.body).unwrap();
            assert_eq!(s.status, f.status, "{n}");
            assert_eq!(s.message, v["message"].as_str().unwrap(), "{n}");
            assert_eq!(s.service, v["service"].as_str().unwrap(), "{n}");
            let list = |k: &str| -> Vec<String> {
                v.pointer(&format!("/payload/{k}"))
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default()
            };
            assert_eq!(s.channels, list("channels"), "{n}");
            assert_eq!(s.channel_groups, list("channel-groups"), "{n}");
        } else if n.starts_with("herenow_") {
            check_here_now(f);
        } else if n.starts_with("wherenow_") {
            let got = decode::where_now(&f.body).unwrap();
            let v: Value = serde_json::from_slice(&f.body).unwrap();
            let want: Vec<&str> = v["payload"]["channels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect();
            assert_eq!(got.channels, want, "{n}");
        } else if n.starts_with("setstate_") {
            let got = decode::set_state(&f.body, "x").unwrap();
            let v: Value = serde_json::from_slice(&f.body).unwrap();
            assert_eq!(state_value(&got.state), v["payload"], "{n}");
        } else if n.starts_with("getstate_") {
            let got = decode::get_state(&f.body).unwrap();
            let v: Value = serde_json::from_slice(&f.body).unwrap();
            let mut want = BTreeMap::new();
            if let Some(ch) = v.get("channel") {
                want.insert(ch.as_str().unwrap().to_string(), v["payload"].clone());
            } else {
                for (k, s) in v["payload"]["channels"].as_object().unwrap() {
                    want.insert(k.clone(), s.clone());
                }
            }
            let have: BTreeMap<_, _> = got
                .state
                .iter()
                .map(|i| (i.channel_name.to_string(), state_value(&i.state)))
                .collect();
            assert_eq!(have, want, "{n}");
        } else if n.starts_with("heartbeat_") || n.starts_with("leave_") {
            decode::ack(&f.body).unwrap_or_else(|e| panic!("{n}: {e}"));
        } else if n.contains("sub_presence_") {
            check_events(f);
        } else {
            panic!("no check for {n}");
        }
        checked += 1;
    }
    assert_eq!(checked, 45);
}

#[test]
fn hand_checked_facts() {
    let all = fixtures();
    let get = |name: &str| all.iter().find(|f| f.name == name).unwrap();
    // The Ruby cassette's channel name round-trips through our decoder.
    let f = get("herenow_single_empty_01.json");
    let (ch, _) = request_channels(&f.url);
    assert_eq!(ch, ["a!@#$%^&*()ŻÓŁ[]{}\"\"<>??~`Z"]);
    let r = decode::here_now(&f.body, Some(&ch[0])).unwrap();
    assert_eq!((r.total_occupancy, r.channels[0].occupants.len()), (0, 0));
    // One channel plus a group still answers in the payload shape.
    let f = get("herenow_channel_plus_cg_01.json");
    let r = decode::here_now(&f.body, None).unwrap();
    assert_eq!(r.channels[0].name, "demo");
    // disable_uuids=1: occupancy right, occupants empty.
    let f = get("herenow_single_disable_uuids_01.json");
    let r = decode::here_now(&f.body, Some("test-channel1")).unwrap();
    assert_eq!(r.channels[0].occupancy, 3);
    assert!(r.channels[0].occupants.is_empty());
    // The unicode escapes of the special-characters state decode.
    let f = get("setstate_special_chars_01.json");
    let r = decode::set_state(&f.body, "x").unwrap();
    assert_eq!(
        state_value(&r.state)["something"],
        "a!@#$%^&*()ŻÓŁ[]{}\"\"<>??~`Z"
    );
    // A 200 with the 400 body is also an error (body status wins).
    let f = get("curated_setstate_400_no_state_01.json");
    assert_eq!(
        decode::set_state(&f.body, "x").unwrap_err().status(),
        Some(400)
    );
}
