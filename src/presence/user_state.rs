//! `set_presence_state` and `get_presence_state`: per-user key/value state.

use crate::client::PubNub;
use crate::encode::push_param;
use crate::envelope;
use crate::error::{Error, Result};
use crate::json::count_members;
use crate::presence::targets::{target_setters, Targets};
use crate::request::{self, Request};
use crate::state::{self, State};
use std::borrow::Cow;

/// The result of `set_presence_state`.
#[derive(Debug, Clone, PartialEq)]
pub struct SetStateResult<'a> {
    /// The channels the state was set on, comma-separated as requested
    /// (empty when only channel groups were given).
    pub channel: Cow<'a, str>,
    /// The state as the server stored it.
    pub state: State<'a>,
}

/// A [`SetStateResult`] that owns all its data: what `execute()` returns.
pub type SetState = SetStateResult<'static>;

impl SetStateResult<'_> {
    /// Converts into a result that owns all its data.
    pub fn into_owned(self) -> SetState {
        SetStateResult {
            channel: Cow::Owned(self.channel.into_owned()),
            state: state::into_owned(self.state),
        }
    }
}

/// The result of `get_presence_state`.
///
/// Iterating it goes through the per-channel entries.
#[derive(Debug, Clone, PartialEq)]
pub struct GetStateResult<'a> {
    /// One entry per channel.
    pub state: Vec<GetStateInfo<'a>>,
}

/// A [`GetStateResult`] that owns all its data: what `execute()` returns.
pub type GetState = GetStateResult<'static>;

/// The user's state on one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct GetStateInfo<'a> {
    /// The channel name (`to_string()` or `into_owned()` gives a `String`).
    pub channel_name: Cow<'a, str>,
    /// The state (`{}` when none is set on a single channel).
    pub state: State<'a>,
}

impl<'a> GetStateResult<'a> {
    /// Converts into a result that owns all its data.
    pub fn into_owned(self) -> GetState {
        GetStateResult {
            state: self
                .state
                .into_iter()
                .map(|i| GetStateInfo {
                    channel_name: Cow::Owned(i.channel_name.into_owned()),
                    state: state::into_owned(i.state),
                })
                .collect(),
        }
    }

    /// The per-channel entries: the same as `self.state.iter()`.
    pub fn iter(&self) -> std::slice::Iter<'_, GetStateInfo<'a>> {
        self.state.iter()
    }
}

impl<'a> IntoIterator for GetStateResult<'a> {
    type Item = GetStateInfo<'a>;
    type IntoIter = std::vec::IntoIter<GetStateInfo<'a>>;
    /// The per-channel entries, moved out of the result.
    fn into_iter(self) -> Self::IntoIter {
        self.state.into_iter()
    }
}

impl<'r, 'a> IntoIterator for &'r GetStateResult<'a> {
    type Item = &'r GetStateInfo<'a>;
    type IntoIter = std::slice::Iter<'r, GetStateInfo<'a>>;
    /// The per-channel entries, borrowed.
    fn into_iter(self) -> Self::IntoIter {
        self.state.iter()
    }
}

impl PubNub {
    /// Sets the user's state, which must serialize to a JSON object
    /// (`miniserde::Serialize`, or `serde::Serialize` with the `serde`
    /// feature). Takes the value or a reference to it. Anything else fails
    /// before a request is sent; JSON text goes to
    /// [`PubNub::set_presence_state_json`].
    ///
    /// With the `serde` feature, as PubNub's docs write it:
    ///
    /// ```no_run
    /// # #[cfg(feature = "serde")] {
    /// use serde_json::json;
    /// # let pubnub = pubnub_presence::PubNub::builder().subscribe_key("demo").user_id("me").build()?;
    /// pubnub
    ///     .set_presence_state(json!({ "is_doing": "Nothing... Just hanging around..." }))
    ///     .channels(vec!["lobby".into(), "announce".into()])
    ///     .execute()?;
    /// # }
    /// # Ok::<(), pubnub_presence::Error>(())
    /// ```
    pub fn set_presence_state<T: state::Serialize>(&self, state: T) -> SetStateBuilder<'_> {
        SetStateBuilder::new(
            self,
            state::to_json_object(&state, "state", state::MAX_STATE_DEPTH),
        )
    }

    /// Sets the user's state from JSON text, which must be one JSON object
    /// (checked before a request is sent). Works with any features.
    ///
    /// ```no_run
    /// # let pubnub = pubnub_presence::PubNub::builder().subscribe_key("demo").user_id("me").build()?;
    /// pubnub
    ///     .set_presence_state_json(r#"{"is_doing":"Nothing... Just hanging around..."}"#)
    ///     .channels(vec!["lobby".into()])
    ///     .execute()?;
    /// # Ok::<(), pubnub_presence::Error>(())
    /// ```
    pub fn set_presence_state_json(&self, json: impl Into<String>) -> SetStateBuilder<'_> {
        let json = json.into();
        let checked =
            state::check_json_object(&json, "state", state::MAX_STATE_DEPTH).map(|()| json);
        SetStateBuilder::new(self, checked)
    }

    /// Gets the user's state on channels or channel groups.
    ///
    /// ```no_run
    /// # let pubnub = pubnub_presence::PubNub::builder().subscribe_key("demo").user_id("me").build()?;
    /// let response = pubnub
    ///     .get_presence_state()
    ///     .channels(vec!["lobby".into()])
    ///     .user_id("device-7")
    ///     .execute()?;
    /// for info in &response {
    ///     println!("{}: {:?}", info.channel_name, info.state);
    /// }
    /// # Ok::<(), pubnub_presence::Error>(())
    /// ```
    pub fn get_presence_state(&self) -> GetStateBuilder<'_> {
        GetStateBuilder {
            pubnub: self,
            targets: Targets::default(),
        }
    }
}

/// Builder for `set_presence_state`, from [`PubNub::set_presence_state`]
/// or [`PubNub::set_presence_state_json`].
#[must_use = "a builder does nothing until execute()"]
#[derive(Debug)]
pub struct SetStateBuilder<'p> {
    pubnub: &'p PubNub,
    /// The state as a JSON object, or why it is not one.
    state: Result<String>,
    targets: Targets,
}

impl<'p> SetStateBuilder<'p> {
    fn new(pubnub: &'p PubNub, state: Result<String>) -> Self {
        SetStateBuilder {
            pubnub,
            state,
            targets: Targets::default(),
        }
    }

    target_setters! {
        /// Channels to set state on (this or `channel_groups` is required).
        channels;
        /// Channel groups to set state on.
        channel_groups;
        /// The user to set state for (default: the client's user id).
        user_id;
    }

    /// Builds the request without sending it.
    pub fn request(&self) -> Result<Request> {
        let json = self.state.as_ref().map_err(Clone::clone)?;
        let config = self.pubnub.config();
        let mut query = self.targets.channel_user_url(config, "/data")?;
        push_param(&mut query, "state", json);
        request::finish(config, query)
    }

    /// Sends the request and decodes the answer.
    pub fn execute(self) -> Result<SetState> {
        let req = self.request()?;
        let channel = self.targets.joined_channels();
        self.pubnub.execute(req, |body| {
            decode_set(body, &channel).map(SetStateResult::into_owned)
        })
    }
}

/// Builder for `get_presence_state`, from [`PubNub::get_presence_state`].
#[must_use = "a builder does nothing until execute()"]
#[derive(Debug)]
pub struct GetStateBuilder<'p> {
    pubnub: &'p PubNub,
    targets: Targets,
}

impl GetStateBuilder<'_> {
    target_setters! {
        /// Channels to get state of (this or `channel_groups` is required).
        channels;
        /// Channel groups to get state of.
        channel_groups;
        /// The user to get state for (default: the client's user id).
        user_id;
    }

    /// Builds the request without sending it.
    pub fn request(&self) -> Result<Request> {
        let config = self.pubnub.config();
        request::finish(config, self.targets.channel_user_url(config, "")?)
    }

    /// Sends the request and decodes the answer.
    pub fn execute(self) -> Result<GetState> {
        let req = self.request()?;
        self.pubnub
            .execute(req, |body| decode_get(body).map(GetStateResult::into_owned))
    }
}

/// Decodes a set-state body: `payload` is the stored state. `channel` is
/// the requested channel list, echoed into the result.
pub fn decode_set<'a>(body: &'a [u8], channel: &'a str) -> Result<SetStateResult<'a>> {
    let env = envelope::parse::<0>(body, [])?;
    let payload = env
        .payload
        .ok_or_else(|| Error::decode(0, "set state body has no payload"))?;
    Ok(SetStateResult {
        channel: Cow::Borrowed(channel),
        state: state::from_raw(payload.raw),
    })
}

/// Decodes a get-state body, in either shape: single channel (`payload` is
/// the state, top-level `channel` names it) or several channels / groups
/// (`payload.channels` maps channel to state, no top-level `channel`).
pub fn decode_get(body: &[u8]) -> Result<GetStateResult<'_>> {
    let env = envelope::parse(body, ["channel"])?;
    let payload = env
        .payload
        .ok_or_else(|| Error::decode(0, "get state body has no payload"))?;
    let [channel] = env.extra;
    if let Some(channel) = channel {
        return Ok(GetStateResult {
            state: vec![GetStateInfo {
                channel_name: channel.cursor().parse_str()?,
                state: state::from_raw(payload.raw),
            }],
        });
    }
    let mut c = payload.cursor();
    c.begin_object()?;
    let mut first = true;
    let mut result = None;
    while let Some(key) = c.next_key(&mut first)? {
        if key != "channels" {
            c.skip_value()?;
            continue;
        }
        let mut infos = Vec::with_capacity(count_members(&c)?);
        c.begin_object()?;
        let mut first_channel = true;
        while let Some(channel_name) = c.next_key(&mut first_channel)? {
            let raw = c.skip_value()?;
            infos.push(GetStateInfo {
                channel_name,
                state: state::from_raw(raw),
            });
        }
        result = Some(infos);
    }
    let state = result.ok_or_else(|| {
        Error::decode(
            payload.offset,
            "get state body has neither channel nor payload.channels",
        )
    })?;
    Ok(GetStateResult { state })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &State<'_>) -> String {
        state::state_json(s).into_owned()
    }

    #[test]
    fn set_bodies() {
        let r = decode_set(
            br#"{"status": 200, "message": "OK", "payload": {"count": 5, "name": "Alex"}, "service": "Presence"}"#,
            "a,b",
        )
        .unwrap();
        assert_eq!(r.channel, "a,b");
        #[cfg(not(feature = "serde"))]
        assert_eq!(json(&r.state), r#"{"count": 5, "name": "Alex"}"#);
        #[cfg(feature = "serde")]
        assert_eq!(json(&r.state), r#"{"count":5,"name":"Alex"}"#);
        assert!(decode_set(br#"{"status":200}"#, "a").is_err());
    }

    #[test]
    fn get_bodies() {
        let single = br#"{"status": 200, "uuid": "u", "service": "Presence", "message": "OK", "payload": {}, "channel": "demo"}"#;
        let r = decode_get(single).unwrap();
        assert_eq!(r.state.len(), 1);
        assert_eq!(r.state[0].channel_name, "demo");
        assert_eq!(json(&r.state[0].state), "{}");

        // A single-channel state that itself has a "channels" key stays whole.
        let tricky = br#"{"payload":{"channels":{"x":1}},"channel":"c","uuid":"u"}"#;
        let r = decode_get(tricky).unwrap();
        assert_eq!(r.state[0].channel_name, "c");

        let multi = br#"{"status": 200, "message": "OK", "payload": {"channels": {"c1": {"n": 1}, "c2": {"n": 2}}}, "service": "Presence", "uuid": "u"}"#;
        let r = decode_get(multi).unwrap();
        let names: Vec<_> = r.state.iter().map(|i| i.channel_name.as_ref()).collect();
        assert_eq!(names, ["c1", "c2"]);
        #[cfg(not(feature = "serde"))]
        assert_eq!(json(&r.state[1].state), r#"{"n": 2}"#);

        assert!(decode_get(br#"{"payload":{}}"#).is_err());

        let r = decode_get(multi).unwrap();
        let names: Vec<&str> = (&r).into_iter().map(|i| &*i.channel_name).collect();
        assert_eq!(names, ["c1", "c2"]);
        assert_eq!(r.iter().count(), 2);
        let owned: GetState = r.into_owned();
        let names: Vec<String> = owned
            .into_iter()
            .map(|i| i.channel_name.into_owned())
            .collect();
        assert_eq!(names, ["c1", "c2"]);
    }

    fn pn() -> PubNub {
        PubNub::builder()
            .subscribe_key("sub")
            .user_id("me")
            .origin("http://127.0.0.1:1")
            .build()
            .unwrap()
    }

    #[test]
    fn set_state_by_value_by_reference_and_as_text() {
        let p = pn();
        let want = "state=%7B%22mood%22%3A%22happy%22%7D";
        #[cfg(not(feature = "serde"))]
        let value = {
            let mut o = miniserde::json::Object::new();
            o.insert(
                "mood".into(),
                miniserde::json::Value::String("happy".into()),
            );
            o
        };
        #[cfg(feature = "serde")]
        let value = serde_json::json!({"mood": "happy"});
        let by_ref = p
            .set_presence_state(&value)
            .channels(vec!["a".into(), "b".into()])
            .request()
            .unwrap();
        let by_value = p
            .set_presence_state(value)
            .channels(vec!["a".into(), "b".into()])
            .request()
            .unwrap();
        let as_text = p
            .set_presence_state_json(r#"{"mood":"happy"}"#)
            .channels(vec!["a".into(), "b".into()])
            .request()
            .unwrap();
        assert_eq!(by_ref, by_value);
        assert_eq!(by_ref, as_text);
        assert_eq!(
            by_ref.path(),
            "/v2/presence/sub-key/sub/channel/a,b/uuid/me/data"
        );
        assert!(by_ref.query().ends_with(want), "{}", by_ref.query());

        let r = p
            .set_presence_state_json("{}")
            .channel_groups(vec!["g".into()])
            .user_id("u 2")
            .request()
            .unwrap();
        assert_eq!(
            r.path(),
            "/v2/presence/sub-key/sub/channel/,/uuid/u%202/data"
        );

        for bad in ["[1]", "{", "\"text\"", ""] {
            match p
                .set_presence_state_json(bad)
                .channels(vec!["a".into()])
                .request()
                .map_err(Error::into_kind)
            {
                Err(crate::ErrorKind::Input { argument, .. }) => assert_eq!(argument, "state"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        // JSON text given to the value form is a string, not an object:
        // the error points to the `_json` form.
        let e = p
            .set_presence_state(r#"{"mood":"happy"}"#)
            .channels(vec!["a".into()])
            .request()
            .unwrap_err();
        assert!(e.to_string().contains("`_json` form"), "{e}");
        // The state is checked before the targets.
        assert!(p.set_presence_state_json("{}").request().is_err());
    }

    #[test]
    fn get_state_requests() {
        let p = pn();
        let r = p
            .get_presence_state()
            .channels(vec!["a".into()])
            .channel_groups(vec!["g".into()])
            .user_id("other")
            .request()
            .unwrap();
        assert_eq!(r.path(), "/v2/presence/sub-key/sub/channel/a/uuid/other");
        assert!(r.query().ends_with("&channel-group=g"), "{}", r.query());
        assert!(p.get_presence_state().request().is_err());
        assert!(p
            .get_presence_state()
            .channels(vec!["a".into()])
            .user_id("")
            .request()
            .is_err());
    }

    #[test]
    fn debug_shows_state_as_json() {
        let r = decode_set(br#"{"status":200,"payload":{"k":"v"}}"#, "c").unwrap();
        let debug = format!("{r:?}");
        #[cfg(not(feature = "serde"))]
        assert_eq!(
            debug,
            r#"SetStateResult { channel: "c", state: {"k":"v"} }"#
        );
        #[cfg(feature = "serde")]
        assert!(debug.contains(r#"String("v")"#), "{debug}");
        let g = decode_get(br#"{"payload":{"channels":{"c1":{"n":1}}}}"#).unwrap();
        let debug = format!("{g:?}");
        #[cfg(not(feature = "serde"))]
        assert_eq!(
            debug,
            r#"GetStateResult { state: [GetStateInfo { channel_name: "c1", state: {"n":1} }] }"#
        );
        #[cfg(feature = "serde")]
        assert!(debug.contains(r#""n": Number(1)"#), "{debug}");
    }
}
