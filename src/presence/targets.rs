//! What the builders share: the channels, channel groups and user a call
//! addresses ([`Targets`]), their checks and their encoding, and one macro
//! for the setters ([`target_setters!`]).
//!
//! A builder holds a `targets: Targets` field, lists its setters with
//! their own docs, and builds its URL with one call (a sketch: these items
//! are private, so it is not a doctest):
//!
//! ```text
//! pub struct LeaveBuilder<'p> {
//!     pubnub: &'p PubNub,
//!     targets: Targets,
//! }
//! impl LeaveBuilder<'_> {
//!     target_setters! {
//!         /// Channels to leave (this or `channel_groups` is required).
//!         channels;
//!         /// Channel groups to leave.
//!         channel_groups;
//!     }
//!     pub fn request(&self) -> Result<Request> {
//!         let config = self.pubnub.config();
//!         let url = self.targets.channel_url(config, "/leave")?;
//!         request::finish(config, url)
//!     }
//! }
//! ```
//!
//! The rules about names themselves (non-empty, no `,`) live in
//! [`crate::request::check_names`], which the heartbeat schedule uses too.

use crate::config::Config;
use crate::error::Result;
use crate::request;

/// The channels, channel groups and (for the calls that take one) user id
/// a call addresses: owns the lists, checks them and writes them into the
/// URL. `pub(crate)` for every builder, the event stream's included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Targets {
    /// Channel names, unencoded.
    pub(crate) channels: Vec<String>,
    /// Channel group names, unencoded.
    pub(crate) groups: Vec<String>,
    /// The user the call is about; `None` means the client's user id.
    pub(crate) user_id: Option<String>,
}

impl Targets {
    /// Checks the protocol's rule "either channels or channel groups is
    /// required" and every name (non-empty, no `,`).
    pub(crate) fn check(&self) -> Result<()> {
        request::check_targets(&self.channels, &self.groups)
    }

    /// The user id to send: the one set, else the client's; checked.
    pub(crate) fn user_id<'c>(&'c self, config: &'c Config) -> Result<&'c str> {
        let user_id = self.user_id.as_deref().unwrap_or(config.user_id());
        request::check_user_id("user_id", user_id)?;
        Ok(user_id)
    }

    /// The one channel named when exactly one channel and no group is
    /// given (the request the service answers in its single-channel shape).
    pub(crate) fn single_channel(&self) -> Option<&str> {
        match (self.channels.as_slice(), self.groups.is_empty()) {
            ([one], true) => Some(one.as_str()),
            _ => None,
        }
    }

    /// The channel names joined with `,`, unencoded (as results echo them).
    pub(crate) fn joined_channels(&self) -> String {
        // NOTE(size): a loop of `push_str`, smaller than `[String]::join`.
        let mut out = String::new();
        for (i, name) in self.channels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(name);
        }
        out
    }

    /// Checks the targets and starts the URL
    /// `{origin}/v2/presence/sub-key/{sub}/channel/{channels|,}{suffix}?{base query}`,
    /// with `channel-group` in the query when groups are given. The caller
    /// appends its own parameters and calls [`request::finish`].
    pub(crate) fn channel_url(&self, config: &Config, suffix: &str) -> Result<String> {
        self.url(config, false, suffix)
    }

    /// [`Targets::channel_url`] with the user segment:
    /// `…/channel/{channels|,}/uuid/{user}{suffix}?…`.
    pub(crate) fn channel_user_url(&self, config: &Config, suffix: &str) -> Result<String> {
        self.url(config, true, suffix)
    }

    /// `{origin}/v2/presence/sub-key/{sub}/uuid/{user}?{base query}`, for
    /// calls about a user rather than channels (where_now).
    pub(crate) fn user_url(&self, config: &Config) -> Result<String> {
        let user_id = self.user_id(config)?;
        let mut path = request::presence_path(config);
        request::push_uuid_segment(&mut path, user_id);
        Ok(request::base_query(path, config, &[]))
    }

    fn url(&self, config: &Config, with_user: bool, suffix: &str) -> Result<String> {
        self.check()?;
        let mut path = request::channel_path(config, &self.channels);
        if with_user {
            request::push_uuid_segment(&mut path, self.user_id(config)?);
        }
        path.push_str(suffix);
        Ok(request::base_query(path, config, &self.groups))
    }
}

/// The setters of a builder with a `targets: Targets` field, each with the
/// docs written above its name: any of `channels;`, `channel_groups;`,
/// `user_id;`, in that order. Used inside the builder's `impl` block.
macro_rules! target_setters {
    ($(#[$doc:meta])* channels; $($rest:tt)*) => {
        $(#[$doc])*
        pub fn channels(mut self, channels: Vec<String>) -> Self {
            self.targets.channels = channels;
            self
        }
        $crate::presence::targets::target_setters!($($rest)*);
    };
    ($(#[$doc:meta])* channel_groups; $($rest:tt)*) => {
        $(#[$doc])*
        pub fn channel_groups(mut self, channel_groups: Vec<String>) -> Self {
            self.targets.groups = channel_groups;
            self
        }
        $crate::presence::targets::target_setters!($($rest)*);
    };
    ($(#[$doc:meta])* user_id;) => {
        $(#[$doc])*
        pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
            self.targets.user_id = Some(user_id.into());
            self
        }
    };
    () => {};
}
pub(crate) use target_setters;

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::PubNub::builder()
            .subscribe_key("sub")
            .user_id("me")
            .origin("http://h:1")
            .build()
            .unwrap()
            .config()
            .clone()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn urls() {
        let c = config();
        let t = Targets {
            channels: names(&["a b", "c"]),
            groups: names(&["g"]),
            user_id: Some("u/1".into()),
        };
        let q = "uuid=me&pnsdk=PubNub-Rust-Presence%2F0.1.0";
        assert_eq!(
            t.channel_url(&c, "/leave").unwrap(),
            format!("http://h:1/v2/presence/sub-key/sub/channel/a%20b,c/leave?{q}&channel-group=g")
        );
        assert_eq!(
            t.channel_user_url(&c, "/data").unwrap(),
            format!("http://h:1/v2/presence/sub-key/sub/channel/a%20b,c/uuid/u%2F1/data?{q}&channel-group=g")
        );
        assert_eq!(
            t.user_url(&c).unwrap(),
            format!("http://h:1/v2/presence/sub-key/sub/uuid/u%2F1?{q}")
        );
        assert_eq!(t.joined_channels(), "a b,c");
        assert_eq!(t.single_channel(), None);

        let groups_only = Targets {
            groups: names(&["g"]),
            ..Targets::default()
        };
        assert_eq!(
            groups_only.channel_user_url(&c, "").unwrap(),
            format!("http://h:1/v2/presence/sub-key/sub/channel/,/uuid/me?{q}&channel-group=g")
        );
        let one = Targets {
            channels: names(&["x"]),
            ..Targets::default()
        };
        assert_eq!(one.single_channel(), Some("x"));
    }

    #[test]
    fn checks() {
        let c = config();
        let cases = [
            (Targets::default(), "channels"),
            (
                Targets {
                    channels: names(&["a,b"]),
                    ..Targets::default()
                },
                "channels",
            ),
            (
                Targets {
                    groups: names(&[""]),
                    ..Targets::default()
                },
                "channel_groups",
            ),
            (
                Targets {
                    channels: names(&["a"]),
                    user_id: Some(String::new()),
                    ..Targets::default()
                },
                "user_id",
            ),
        ];
        for (t, arg) in cases {
            match t.channel_user_url(&c, "").map_err(crate::Error::into_kind) {
                Err(crate::ErrorKind::Input { argument, .. }) => assert_eq!(argument, arg),
                other => panic!("{t:?}: {other:?}"),
            }
        }
        // Without the user segment the user id is not looked at.
        let t = Targets {
            channels: names(&["a"]),
            user_id: Some(String::new()),
            ..Targets::default()
        };
        assert!(t.channel_url(&c, "").is_ok());
        assert!(t.user_url(&c).is_err());
    }
}
