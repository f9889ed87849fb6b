//! `set_presence_state` and `get_presence_state`: per-user key/value state.

use crate::client::PubNub;
use crate::encode::push_param;
use crate::envelope;
use crate::error::{Error, Result};
use crate::json::count_members;
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

impl SetStateResult<'_> {
    /// Converts into a result that owns all its data.
    pub fn into_owned(self) -> SetStateResult<'static> {
        SetStateResult {
            channel: Cow::Owned(self.channel.into_owned()),
            state: state::into_owned(self.state),
        }
    }
}

/// The result of `get_presence_state`.
#[derive(Debug, Clone, PartialEq)]
pub struct GetStateResult<'a> {
    /// One entry per channel.
    pub state: Vec<GetStateInfo<'a>>,
}

/// The user's state on one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct GetStateInfo<'a> {
    /// The channel name.
    pub channel_name: Cow<'a, str>,
    /// The state (`{}` when none is set on a single channel).
    pub state: State<'a>,
}

impl GetStateResult<'_> {
    /// Converts into a result that owns all its data.
    pub fn into_owned(self) -> GetStateResult<'static> {
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
}

/// Builder for `set_presence_state`, from [`PubNub::set_presence_state`].
#[must_use = "a builder does nothing until execute()"]
#[derive(Debug)]
pub struct SetStateBuilder<'p> {
    pubnub: &'p PubNub,
    state: Result<String>,
    channels: Vec<String>,
    channel_groups: Vec<String>,
    user_id: Option<String>,
}

impl<'p> SetStateBuilder<'p> {
    pub(crate) fn new<T: state::Serialize + ?Sized>(pubnub: &'p PubNub, state: &T) -> Self {
        SetStateBuilder {
            pubnub,
            state: state::to_json_object(state, "state"),
            channels: Vec::new(),
            channel_groups: Vec::new(),
            user_id: None,
        }
    }
    /// Channels to set state on (this or `channel_groups` is required).
    pub fn channels(mut self, channels: Vec<String>) -> Self {
        self.channels = channels;
        self
    }
    /// Channel groups to set state on.
    pub fn channel_groups(mut self, groups: Vec<String>) -> Self {
        self.channel_groups = groups;
        self
    }
    /// The user to set state for (default: the client's user id).
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Builds the request without sending it.
    pub fn request(&self) -> Result<Request> {
        let json = self.state.as_ref().map_err(Clone::clone)?;
        request::check_targets(&self.channels, &self.channel_groups)?;
        let config = self.pubnub.config();
        let user_id = self.user_id.as_deref().unwrap_or(config.user_id());
        request::check_user_id("user_id", user_id)?;
        let mut path = request::channel_path(config, &self.channels);
        request::push_uuid_segment(&mut path, user_id);
        path.push_str("/data");
        let mut query = request::base_query(path, config, &self.channel_groups);
        push_param(&mut query, "state", json);
        Ok(request::finish(config, query))
    }

    /// Sends the request and decodes the answer.
    pub fn execute(self) -> Result<SetStateResult<'static>> {
        let req = self.request()?;
        let mut channel = String::new();
        for (i, name) in self.channels.iter().enumerate() {
            if i > 0 {
                channel.push(',');
            }
            channel.push_str(name);
        }
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
    channels: Vec<String>,
    channel_groups: Vec<String>,
    user_id: Option<String>,
}

impl<'p> GetStateBuilder<'p> {
    pub(crate) fn new(pubnub: &'p PubNub) -> Self {
        GetStateBuilder {
            pubnub,
            channels: Vec::new(),
            channel_groups: Vec::new(),
            user_id: None,
        }
    }
    /// Channels to get state of (this or `channel_groups` is required).
    pub fn channels(mut self, channels: Vec<String>) -> Self {
        self.channels = channels;
        self
    }
    /// Channel groups to get state of.
    pub fn channel_groups(mut self, groups: Vec<String>) -> Self {
        self.channel_groups = groups;
        self
    }
    /// The user to get state for (default: the client's user id).
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Builds the request without sending it.
    pub fn request(&self) -> Result<Request> {
        request::check_targets(&self.channels, &self.channel_groups)?;
        let config = self.pubnub.config();
        let user_id = self.user_id.as_deref().unwrap_or(config.user_id());
        request::check_user_id("user_id", user_id)?;
        let mut path = request::channel_path(config, &self.channels);
        request::push_uuid_segment(&mut path, user_id);
        Ok(request::finish(
            config,
            request::base_query(path, config, &self.channel_groups),
        ))
    }

    /// Sends the request and decodes the answer.
    pub fn execute(self) -> Result<GetStateResult<'static>> {
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
        state: state::from_raw(payload.raw, payload.offset)?,
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
                state: state::from_raw(payload.raw, payload.offset)?,
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
            c.skip_ws();
            let at = c.offset();
            let raw = c.skip_value()?;
            infos.push(GetStateInfo {
                channel_name,
                state: state::from_raw(raw, at)?,
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
    }
}
