//! The sans-IO request: a path and a query string, ready for any HTTP stack.

use crate::config::Config;
use crate::encode::{self, encode_names_into, PATH_SEGMENT};
use crate::error::{Error, Result};

/// Version string sent as `pnsdk`.
pub const PNSDK: &str = concat!("PubNub-Rust-Presence/", env!("CARGO_PKG_VERSION"));

/// A presence request as pure data: an HTTP GET of `origin + path + "?" + query`.
///
/// Every builder's `request()` returns one without touching the network, so
/// the crate can be used with any HTTP client: send it, then give the body
/// to the matching function in [`crate::decode`].
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// The percent-encoded path, starting with `/`.
    pub path: String,
    /// The percent-encoded query string, without the leading `?`.
    pub query: String,
    /// A timeout for this request that replaces the client's request
    /// timeout (long-poll subscribe); `None` for ordinary calls.
    pub timeout: Option<std::time::Duration>,
}

impl Request {
    /// The full URL of this request against `origin` (e.g. `https://ps.pndsn.com`).
    pub fn url(&self, origin: &str) -> String {
        let origin = origin.trim_end_matches('/');
        let mut url = String::with_capacity(origin.len() + self.path.len() + self.query.len() + 1);
        url.push_str(origin);
        url.push_str(&self.path);
        if !self.query.is_empty() {
            url.push('?');
            url.push_str(&self.query);
        }
        url
    }
}

impl std::fmt::Debug for Request {
    // The query carries `auth` and `signature`: show the path only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("path", &self.path)
            .field("query", &"<redacted>")
            .finish()
    }
}

/// Checks a list of channel or group names: each must be non-empty and
/// free of `,` (the service splits on the decoded comma, so `a,b` would
/// silently address two channels).
pub(crate) fn check_names(argument: &'static str, names: &[String]) -> Result<()> {
    for name in names {
        if name.is_empty() {
            return Err(Error::input(argument, "names must not be empty"));
        }
        if name.contains(',') {
            return Err(Error::input(
                argument,
                format!("name {name:?} contains ',', which would address several channels"),
            ));
        }
    }
    Ok(())
}

/// Checks the "either channels or channel groups is required" rule and
/// every name.
pub(crate) fn check_targets(channels: &[String], groups: &[String]) -> Result<()> {
    if channels.is_empty() && groups.is_empty() {
        return Err(Error::input(
            "channels",
            "either channels or channel_groups is required",
        ));
    }
    check_names("channels", channels)?;
    check_names("channel_groups", groups)
}

/// Checks a user id argument.
pub(crate) fn check_user_id(argument: &'static str, user_id: &str) -> Result<()> {
    if user_id.is_empty() {
        Err(Error::input(argument, "user id must not be empty"))
    } else {
        Ok(())
    }
}

/// Starts `/v2/presence/sub-key/{sub}`.
pub(crate) fn presence_path(config: &Config) -> String {
    let mut path = String::with_capacity(96);
    path.push_str("/v2/presence/sub-key/");
    encode::encode_into(&mut path, &config.subscribe_key, PATH_SEGMENT);
    path
}

/// `/v2/presence/sub-key/{sub}/channel/{chs|,}`.
pub(crate) fn channel_path(config: &Config, channels: &[String]) -> String {
    let mut path = presence_path(config);
    path.push_str("/channel/");
    encode_names_into(&mut path, channels);
    path
}

/// Appends `/uuid/{user_id}`.
pub(crate) fn push_uuid_segment(path: &mut String, user_id: &str) {
    path.push_str("/uuid/");
    encode::encode_into(path, user_id, PATH_SEGMENT);
}

/// The query parameters every request carries: `uuid`, `pnsdk`, and `auth`
/// when configured; then `channel-group` when groups are given.
pub(crate) fn base_query(config: &Config, groups: &[String]) -> String {
    let mut q = String::with_capacity(128);
    encode::push_param(&mut q, "uuid", &config.user_id);
    encode::push_param(&mut q, "pnsdk", PNSDK);
    if let Some(auth) = &config.auth_key {
        encode::push_param(&mut q, "auth", auth);
    }
    if !groups.is_empty() {
        encode::push_list_param(&mut q, "channel-group", groups);
    }
    q
}

pub(crate) fn finish(path: String, query: String) -> Request {
    Request {
        path,
        query,
        timeout: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_targets(&s(&["a"]), &[]).is_ok());
        assert!(check_targets(&[], &s(&["g"])).is_ok());
        let cases = [
            (s(&[]), s(&[]), "channels"),
            (s(&[""]), s(&[]), "channels"),
            (s(&["a,b"]), s(&[]), "channels"),
            (s(&["a"]), s(&[""]), "channel_groups"),
            (s(&[]), s(&["g,h"]), "channel_groups"),
        ];
        for (ch, gr, arg) in cases {
            match check_targets(&ch, &gr) {
                Err(Error::Input { argument, .. }) => assert_eq!(argument, arg),
                other => panic!("{ch:?} {gr:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn url_and_debug() {
        let r = finish("/p".into(), "auth=secret".into());
        assert_eq!(r.url("http://h:1/"), "http://h:1/p?auth=secret");
        assert!(!format!("{r:?}").contains("secret"));
        assert_eq!(
            finish("/p".into(), String::new()).url("http://h"),
            "http://h/p"
        );
    }
}
