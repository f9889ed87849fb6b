//! The sans-IO request: one URL (origin, path, query), ready for any HTTP stack.

use crate::config::Config;
use crate::encode::{self, encode_names_into, PATH_SEGMENT, QUERY_VALUE};
use crate::error::{Error, Result};

/// Version string sent as `pnsdk`.
pub const PNSDK: &str = concat!("PubNub-Rust-Presence/", env!("CARGO_PKG_VERSION"));

/// The longest request URL this crate sends: 32 KiB (32,768 bytes), origin
/// and percent-encoded path and query included (and the signature, with a
/// secret key).
///
/// A longer request fails before anything is sent, with
/// [`ErrorKind::Input`](crate::ErrorKind::Input) naming the argument that
/// takes the most room (`"channels"`, `"channel_groups"`, `"state"`,
/// `"user_id"`, …), the length and this cap: from the builder's
/// `request()` and `execute()`, from [`crate::Heartbeater`]'s `join` and
/// `set_state` (so the schedule never holds a heartbeat it cannot send),
/// and from the event stream's `open()`. Below the cap the server's own
/// limit applies: PubNub's front end answers an over-long URL with HTTP
/// 414 (`{"service":"Balancer","message":"Request URI Too Long",…}`), an
/// [`ErrorKind::Server`](crate::ErrorKind::Server) error that is not
/// retried. Split long channel lists over several calls, or use a channel
/// group.
pub const MAX_URL_LEN: usize = 32 * 1024;

/// What signing adds to a URL, at most: `&timestamp=` and 20 digits,
/// `&signature=v2.` and 43 base64 characters (a SHA-256 HMAC).
#[cfg(feature = "tls")]
const SIGNATURE_LEN: usize = "&timestamp=".len() + 20 + "&signature=v2.".len() + 43;

/// A presence request as pure data: an HTTP GET of [`Request::url`].
///
/// Every builder's `request()` returns one without touching the network, so
/// the crate can be used with any HTTP client: send it, then give the body
/// to the matching function in [`crate::decode`]. The URL is built against
/// the client's configured origin; [`Request::path`] and
/// [`Request::query`] give the parts for another origin.
///
/// NOTE(allocations): origin, path and query live in one string, built in
/// one pass and handed to the HTTP stack without a copy: one allocation per
/// request instead of four (path, query, joined URL, the stack's copy).
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    url: String,
    path_at: usize,
    query_at: usize,
    /// A timeout for this request that replaces the client's request
    /// timeout (long-poll subscribe); `None` for ordinary calls.
    pub timeout: Option<std::time::Duration>,
}

impl Request {
    /// The full URL: origin, percent-encoded path, `?` and query.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The percent-encoded path, starting with `/`.
    pub fn path(&self) -> &str {
        self.url
            .get(self.path_at..self.query_at)
            .unwrap_or_default()
    }

    /// The percent-encoded query string, without the leading `?`.
    pub fn query(&self) -> &str {
        self.url.get(self.query_at + 1..).unwrap_or_default()
    }

    /// The URL, consumed.
    pub fn into_url(self) -> String {
        self.url
    }

    /// Appends `key=value` (value percent-encoded) to the query.
    #[cfg(any(feature = "tls", test))]
    pub(crate) fn push_param(&mut self, key: &str, value: &str) {
        if self.query_at == self.url.len() {
            self.url.push('?');
            self.url.push_str(key);
            self.url.push('=');
            encode::encode_into(&mut self.url, value, encode::QUERY_VALUE);
        } else {
            encode::push_param(&mut self.url, key, value);
        }
    }
}

impl std::fmt::Debug for Request {
    // The query carries `auth` and `signature`: show the path only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("path", &self.path())
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

/// Starts a URL: the origin, `prefix` and the encoded subscribe key.
pub(crate) fn start(config: &Config, prefix: &str) -> String {
    // One allocation sized for a typical request (origin, path, query).
    let mut url = String::with_capacity(config.origin.len().saturating_add(256));
    url.push_str(&config.origin);
    url.push_str(prefix);
    encode::encode_into(&mut url, &config.subscribe_key, PATH_SEGMENT);
    url
}

/// Starts `{origin}/v2/presence/sub-key/{sub}`.
pub(crate) fn presence_path(config: &Config) -> String {
    start(config, "/v2/presence/sub-key/")
}

/// `{origin}/v2/presence/sub-key/{sub}/channel/{chs|,}`.
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

/// Ends the path and starts the query with the parameters every request
/// carries: `uuid`, `pnsdk`, and `auth` when configured; then
/// `channel-group` when groups are given. Later parameters are appended
/// with [`encode::push_param`].
pub(crate) fn base_query(mut url: String, config: &Config, groups: &[String]) -> String {
    url.push_str("?uuid=");
    encode::encode_into(&mut url, &config.user_id, QUERY_VALUE);
    encode::push_param(&mut url, "pnsdk", PNSDK);
    if let Some(auth) = &config.auth_key {
        encode::push_param(&mut url, "auth", auth);
    }
    if !groups.is_empty() {
        encode::push_list_param(&mut url, "channel-group", groups);
    }
    url
}

/// Wraps a URL built by [`start`] (and [`base_query`]) into a request,
/// checking its length against [`MAX_URL_LEN`].
pub(crate) fn finish(config: &Config, url: String) -> Result<Request> {
    check_url_len(config, &url)?;
    Ok(finish_unchecked(config, url))
}

/// [`finish`] for a URL whose length is already known to be in bounds.
pub(crate) fn finish_unchecked(config: &Config, url: String) -> Request {
    // The origin holds no `?` (checked at build) and the path is
    // percent-encoded, so the first `?` starts the query.
    let query_at = url.bytes().position(|b| b == b'?').unwrap_or(url.len());
    Request {
        path_at: config.origin.len().min(query_at),
        query_at,
        url,
        timeout: None,
    }
}

/// The one check of a request URL's length (see [`MAX_URL_LEN`]): `url`
/// as built, plus the signature when a secret key will sign it.
pub(crate) fn check_url_len(config: &Config, url: &str) -> Result<()> {
    #[cfg(feature = "tls")]
    let signature = if config.secret_key.is_some() {
        SIGNATURE_LEN
    } else {
        0
    };
    #[cfg(not(feature = "tls"))]
    let signature = 0;
    let len = url.len().saturating_add(signature);
    if len <= MAX_URL_LEN {
        return Ok(());
    }
    let (argument, part) = largest_part(config, url);
    let advice = match argument {
        "state" => "make the state smaller",
        "channels" | "channel_groups" => {
            "split the names over several calls, or use a channel group"
        }
        _ => "shorten it",
    };
    Err(Error::input(
        argument,
        format!(
            "the request url would be {len} bytes ({argument}: {part} of them, percent-encoded), \
             over the cap of {MAX_URL_LEN} bytes; {advice}"
        ),
    ))
}

/// The argument whose encoded text takes the most room in `url`, and its
/// length. Names are percent-encoded, so `/`, `&` and `=` inside them
/// never split a part.
fn largest_part(config: &Config, url: &str) -> (&'static str, usize) {
    let origin = config.origin.len().min(url.len());
    let rest = url.get(origin..).unwrap_or_default();
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut best = ("origin", origin);
    let mut consider = |argument: &'static str, len: usize| {
        if len > best.1 {
            best = (argument, len);
        }
    };
    // `/v2/presence/sub-key/{sub}/channel/{channels}/uuid/{user}/…` and
    // `/v2/subscribe/{sub}/{channels}/0`: each argument follows its label.
    let mut label = "";
    for (i, segment) in path.split('/').enumerate() {
        let argument = match (label, i) {
            // The subscribe path's channels follow its subscribe key.
            (_, 4) if path.starts_with("/v2/subscribe/") => "channels",
            ("sub-key" | "subscribe", _) => "subscribe_key",
            ("channel", _) => "channels",
            ("uuid", _) => "user_id",
            _ => "",
        };
        if !argument.is_empty() {
            consider(argument, segment.len());
        }
        label = segment;
    }
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let argument = match key {
            "state" => "state",
            "channel-group" => "channel_groups",
            "uuid" => "user_id",
            "auth" => "auth_key",
            _ => continue,
        };
        consider(argument, value.len());
    }
    best
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
            match check_targets(&ch, &gr).map_err(Error::into_kind) {
                Err(crate::ErrorKind::Input { argument, .. }) => assert_eq!(argument, arg),
                other => panic!("{ch:?} {gr:?}: {other:?}"),
            }
        }
    }

    fn config_with(user_id: &str, auth: &str) -> Config {
        crate::PubNub::builder()
            .subscribe_key("s")
            .user_id(user_id)
            .auth_key(auth)
            .origin("http://h:1")
            .build()
            .unwrap()
            .config()
            .clone()
    }

    /// The input error's argument and reason, or `None` when the URL fits.
    fn over_cap(config: &Config, url: &str) -> Option<(&'static str, String)> {
        match check_url_len(config, url).map_err(Error::into_kind) {
            Ok(()) => None,
            Err(crate::ErrorKind::Input { argument, reason }) => Some((argument, reason.into())),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn url_cap_is_exact_and_names_the_largest_part() {
        let c = config_with("me", "a");
        let origin = "http://h:1";
        // Exactly at the cap fits; one byte more does not.
        let path = "/v2/presence/sub-key/s/channel/";
        let fill = |n: usize| format!("{origin}{path}{}?uuid=me", "c".repeat(n));
        let at_cap = MAX_URL_LEN - fill(0).len();
        assert_eq!(fill(at_cap).len(), MAX_URL_LEN);
        assert_eq!(over_cap(&c, &fill(at_cap)), None);
        let (argument, reason) = over_cap(&c, &fill(at_cap + 1)).unwrap();
        assert_eq!(argument, "channels");
        assert_eq!(
            reason,
            format!(
                "the request url would be 32769 bytes (channels: {} of them, percent-encoded), \
                 over the cap of 32768 bytes; split the names over several calls, or use a channel group",
                at_cap + 1
            )
        );

        let big = "x".repeat(MAX_URL_LEN);
        let cases = [
            (
                format!("{origin}{path}a/uuid/u/data?uuid=me&state={big}"),
                "state",
            ),
            (
                format!("{origin}{path}a/uuid/{big}/data?uuid=me&state=%7B%7D"),
                "user_id",
            ),
            (
                format!("{origin}{path}{big},b/uuid/u/data?uuid=me&state=%7B%7D"),
                "channels",
            ),
            (
                format!("{origin}{path},/heartbeat?uuid=me&channel-group={big}"),
                "channel_groups",
            ),
            (
                format!("{origin}/v2/subscribe/s/{big}/0?uuid=me&tt=0"),
                "channels",
            ),
            (
                format!("{origin}/v2/presence/sub-key/{big}?uuid=me"),
                "subscribe_key",
            ),
            (
                format!("{origin}/v2/presence/sub-key/s?uuid={big}&pnsdk=x"),
                "user_id",
            ),
            (
                format!("{origin}/v2/presence/sub-key/s?uuid=me&auth={big}"),
                "auth_key",
            ),
        ];
        for (url, want) in &cases {
            let (argument, reason) = over_cap(&c, url).unwrap();
            assert_eq!(argument, *want, "{reason}");
            assert!(reason.contains("over the cap of 32768 bytes"), "{reason}");
        }
        let (_, reason) = over_cap(&c, &cases[0].0).unwrap();
        assert!(reason.ends_with("; make the state smaller"), "{reason}");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn url_cap_counts_the_signature() {
        let signing = crate::PubNub::builder()
            .subscribe_key("s")
            .user_id("me")
            .secret_key("sec")
            .origin("http://h:1")
            .build()
            .unwrap()
            .config()
            .clone();
        let url = |n: usize| {
            format!(
                "http://h:1/v2/presence/sub-key/s/channel/{}?uuid=me",
                "c".repeat(n)
            )
        };
        let fits = MAX_URL_LEN - SIGNATURE_LEN - url(0).len();
        assert_eq!(over_cap(&signing, &url(fits)), None);
        assert!(over_cap(&signing, &url(fits + 1)).is_some());
        // The longest signature there can be fits in the room kept for it.
        let mut r = finish(&signing, url(fits)).unwrap();
        crate::sign::sign(&mut r, "sec", "", u64::MAX);
        assert_eq!(r.url().len(), MAX_URL_LEN);
    }

    #[test]
    fn url_parts_and_debug() {
        let config = crate::PubNub::builder()
            .subscribe_key("s")
            .user_id("u")
            .auth_key("secret")
            .origin("http://h:1/")
            .build()
            .unwrap()
            .config()
            .clone();
        let mut r = finish(&config, base_query(presence_path(&config), &config, &[])).unwrap();
        assert_eq!(
            r.url(),
            format!(
                "http://h:1/v2/presence/sub-key/s?uuid=u&pnsdk={}&auth=secret",
                PNSDK.replace('/', "%2F")
            )
        );
        assert_eq!(r.path(), "/v2/presence/sub-key/s");
        assert!(r.query().starts_with("uuid=u&pnsdk="));
        r.push_param("x", "a b");
        assert!(r.url().ends_with("&auth=secret&x=a%20b"), "{}", r.url());
        assert!(!format!("{r:?}").contains("secret"));
        // A URL without a query: the first parameter opens it.
        let mut bare = finish(&config, presence_path(&config)).unwrap();
        assert_eq!(bare.query(), "");
        assert_eq!(bare.path(), "/v2/presence/sub-key/s");
        bare.push_param("k", "v");
        assert_eq!(bare.url(), "http://h:1/v2/presence/sub-key/s?k=v");
        assert_eq!(bare.query(), "k=v");
        assert_eq!(bare.clone().into_url(), bare.url());
    }
}
