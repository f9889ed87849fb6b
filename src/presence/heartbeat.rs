//! `heartbeat` (stay present, optionally with state) and `leave`.

use crate::client::PubNub;
use crate::encode::push_param;
use crate::envelope::decode_ack;
use crate::error::Result;
use crate::num::itoa;
use crate::presence::targets::{target_setters, Targets};
use crate::request::{self, Request};
use crate::state;

impl PubNub {
    /// Announces presence on channels or groups (with optional per-channel
    /// state) for the presence timeout. See also
    /// [`crate::presence::schedule::Heartbeater`] for a schedule.
    pub fn heartbeat(&self) -> HeartbeatBuilder<'_> {
        HeartbeatBuilder {
            pubnub: self,
            targets: Targets::default(),
            state: None,
            presence_timeout: None,
        }
    }

    /// Leaves channels or groups now, instead of timing out.
    pub fn leave(&self) -> LeaveBuilder<'_> {
        LeaveBuilder {
            pubnub: self,
            targets: Targets::default(),
        }
    }
}

/// Builder for `heartbeat`, from [`PubNub::heartbeat`].
#[must_use = "a builder does nothing until execute()"]
#[derive(Debug)]
pub struct HeartbeatBuilder<'p> {
    pubnub: &'p PubNub,
    targets: Targets,
    state: Option<Result<String>>,
    presence_timeout: Option<u32>,
}

impl HeartbeatBuilder<'_> {
    target_setters! {
        /// Channels to be present on (this or `channel_groups` is required).
        channels;
        /// Channel groups to be present on.
        channel_groups;
    }
    /// Per-channel state: a value that serializes to a JSON object keyed
    /// by channel, e.g. `{"lobby": {"mood": "happy"}}`, sent as `state=`.
    /// Takes the value or a reference to it, like
    /// [`PubNub::set_presence_state`]; checked as described in
    /// [`crate::state`] (an error is returned by `request()`/`execute()`).
    pub fn state<T: state::Serialize>(mut self, per_channel: T) -> Self {
        self.state = Some(state::to_json_object(
            &per_channel,
            "state",
            state::MAX_STATE_DEPTH,
        ));
        self
    }
    /// The state as JSON text: one object keyed by channel (checked the
    /// same way).
    pub fn state_json(mut self, json: impl Into<String>) -> Self {
        let json = json.into();
        self.state =
            Some(state::check_json_object(&json, "state", state::MAX_STATE_DEPTH).map(|()| json));
        self
    }

    /// State already known to be a JSON object (built by `Heartbeater`
    /// from validated pieces): not parsed again on every heartbeat.
    pub(crate) fn state_checked(mut self, json: String) -> Self {
        self.state = Some(Ok(json));
        self
    }
    /// The presence timeout to ask for, in seconds (default: the client's,
    /// 300). Sent as `heartbeat=`. Less than
    /// [`MIN_PRESENCE_TIMEOUT`](crate::MIN_PRESENCE_TIMEOUT) (20) or more than
    /// [`MAX_PRESENCE_TIMEOUT`](crate::MAX_PRESENCE_TIMEOUT) (86,400) is an
    /// input error, before anything is sent.
    pub fn presence_timeout(mut self, seconds: u32) -> Self {
        self.presence_timeout = Some(seconds);
        self
    }

    /// Builds the request without sending it.
    pub fn request(&self) -> Result<Request> {
        let config = self.pubnub.config();
        let mut query = self.targets.channel_url(config, "/heartbeat")?;
        let timeout = self.presence_timeout.unwrap_or(config.presence_timeout());
        crate::config::check_presence_timeout(timeout)?;
        push_param(&mut query, "heartbeat", itoa(timeout).as_str());
        if let Some(state) = &self.state {
            let json = state.as_ref().map_err(Clone::clone)?;
            push_param(&mut query, "state", json);
        }
        request::finish(config, query)
    }

    /// Sends the heartbeat.
    pub fn execute(self) -> Result<()> {
        let req = self.request()?;
        self.pubnub.execute(req, decode_ack)
    }
}

/// Builder for `leave`, from [`PubNub::leave`].
#[must_use = "a builder does nothing until execute()"]
#[derive(Debug)]
pub struct LeaveBuilder<'p> {
    pubnub: &'p PubNub,
    targets: Targets,
}

impl LeaveBuilder<'_> {
    target_setters! {
        /// Channels to leave (this or `channel_groups` is required).
        channels;
        /// Channel groups to leave.
        channel_groups;
    }
    /// Builds the request without sending it.
    pub fn request(&self) -> Result<Request> {
        let config = self.pubnub.config();
        request::finish(config, self.targets.channel_url(config, "/leave")?)
    }
    /// Sends the leave.
    pub fn execute(self) -> Result<()> {
        let req = self.request()?;
        self.pubnub.execute(req, decode_ack)
    }
}

#[cfg(test)]
mod tests {
    use crate::PubNub;

    fn pn() -> PubNub {
        PubNub::builder()
            .subscribe_key("sub")
            .user_id("me")
            .origin("http://127.0.0.1:1")
            .build()
            .unwrap()
    }

    #[test]
    fn heartbeat_requests() {
        let p = pn();
        let r = p
            .heartbeat()
            .channels(vec!["a b".into(), "c".into()])
            .channel_groups(vec!["g".into()])
            .state_json(r#"{"a b":{"k":1}}"#)
            .presence_timeout(60)
            .request()
            .unwrap();
        assert_eq!(
            r.path(),
            "/v2/presence/sub-key/sub/channel/a%20b,c/heartbeat"
        );
        assert_eq!(
            r.query(),
            "uuid=me&pnsdk=PubNub-Rust-Presence%2F0.1.0&channel-group=g&heartbeat=60&state=%7B%22a%20b%22%3A%7B%22k%22%3A1%7D%7D"
        );
        let r = p
            .heartbeat()
            .channel_groups(vec!["g".into()])
            .request()
            .unwrap();
        assert_eq!(r.path(), "/v2/presence/sub-key/sub/channel/,/heartbeat");
        assert!(r.query().ends_with("&heartbeat=300"));
        assert!(p.heartbeat().request().is_err());
        assert!(p
            .heartbeat()
            .channels(vec!["a".into()])
            .state_json("[1]")
            .request()
            .is_err());
        assert!(p
            .heartbeat()
            .channels(vec!["a".into()])
            .state_json("{")
            .request()
            .is_err());
        assert!(p
            .heartbeat()
            .channels(vec!["a".into()])
            .presence_timeout(5)
            .request()
            .is_err());
        assert!(p
            .heartbeat()
            .channels(vec!["a".into()])
            .presence_timeout(u32::MAX)
            .request()
            .is_err());
    }

    #[test]
    fn heartbeat_state_by_value_by_reference_and_as_text() {
        let p = pn();
        #[cfg(not(feature = "serde"))]
        let value = {
            let mut mood = miniserde::json::Object::new();
            mood.insert("k".into(), miniserde::json::Value::String("v".into()));
            let mut o = miniserde::json::Object::new();
            o.insert("a".into(), miniserde::json::Value::Object(mood));
            o
        };
        #[cfg(feature = "serde")]
        let value = serde_json::json!({"a": {"k": "v"}});
        let hb = || p.heartbeat().channels(vec!["a".into()]);
        let by_ref = hb().state(&value).request().unwrap();
        let by_value = hb().state(value).request().unwrap();
        let as_text = hb().state_json(r#"{"a":{"k":"v"}}"#).request().unwrap();
        assert_eq!(by_ref, by_value);
        assert_eq!(by_ref, as_text);
        assert!(by_ref
            .query()
            .ends_with("&state=%7B%22a%22%3A%7B%22k%22%3A%22v%22%7D%7D"));
    }

    #[test]
    fn leave_requests() {
        let p = pn();
        let r = p.leave().channels(vec!["x".into()]).request().unwrap();
        assert_eq!(r.path(), "/v2/presence/sub-key/sub/channel/x/leave");
        let r = p
            .leave()
            .channel_groups(vec!["g1".into(), "g2".into()])
            .request()
            .unwrap();
        assert_eq!(r.path(), "/v2/presence/sub-key/sub/channel/,/leave");
        assert!(r.query().ends_with("&channel-group=g1%2Cg2"));
        assert!(p.leave().channels(vec!["a,b".into()]).request().is_err());
    }
}
