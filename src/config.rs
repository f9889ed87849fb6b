//! Client configuration and its builder.

use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use std::fmt;
use std::time::Duration;

/// The default origin: PubNub's presence front end.
pub const DEFAULT_ORIGIN: &str = "https://ps.pndsn.com";
/// Default connect timeout: TCP connect and TLS handshake together (see
/// [`PubNubBuilder::connect_timeout`]).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default request timeout: the longest silence, i.e. wait for the next
/// byte, while a request is sent or its response received (see
/// [`PubNubBuilder::request_timeout`]). A call as a whole is bounded by the
/// retry policy's deadline instead.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on a response body: 1 MiB.
pub const DEFAULT_MAX_RESPONSE_SIZE: usize = 1 << 20;
/// Default presence timeout in seconds (every PubNub SDK uses 300).
pub const DEFAULT_PRESENCE_TIMEOUT: u32 = 300;
/// The smallest presence timeout the service honours (docs/PROTOCOL.md §6).
pub const MIN_PRESENCE_TIMEOUT: u32 = 20;
/// The largest presence timeout `build()` accepts, in seconds: one day.
/// A device silent for longer is gone; a larger value is a mistake
/// (e.g. milliseconds given as seconds).
pub const MAX_PRESENCE_TIMEOUT: u32 = 86_400;
/// The longest duration any option accepts (timeouts, delays, the retry
/// deadline): one day. Longer is a mistake, not a wait; refusing it at
/// `build()` (or `open()`) also keeps every `Instant + duration` in range.
pub const MAX_DURATION: Duration = Duration::from_secs(86_400);

/// Refuses a duration that cannot work: zero (unless `zero_ok`) or more
/// than [`MAX_DURATION`].
// NOTE(size): one out-of-line copy for every option checked.
#[inline(never)]
pub(crate) fn check_duration(argument: &'static str, value: Duration, zero_ok: bool) -> Result<()> {
    if value.is_zero() && !zero_ok {
        return Err(Error::input(argument, "must be more than zero"));
    }
    if value > MAX_DURATION {
        return Err(Error::input(argument, "must be at most one day (86,400 s)"));
    }
    Ok(())
}

/// Refuses a presence timeout outside
/// [`MIN_PRESENCE_TIMEOUT`]`..=`[`MAX_PRESENCE_TIMEOUT`] seconds.
pub(crate) fn check_presence_timeout(seconds: u32) -> Result<()> {
    if seconds < MIN_PRESENCE_TIMEOUT {
        return Err(Error::input(
            "presence_timeout",
            "the presence timeout must be at least 20 seconds",
        ));
    }
    if seconds > MAX_PRESENCE_TIMEOUT {
        return Err(Error::input(
            "presence_timeout",
            "the presence timeout must be at most one day (86,400 seconds)",
        ));
    }
    Ok(())
}

/// Everything a request needs to be built: keys, identity, origin and limits.
///
/// `Debug` prints whether keys are set, never their values.
#[derive(Clone)]
pub struct Config {
    pub(crate) subscribe_key: String,
    pub(crate) publish_key: Option<String>,
    pub(crate) user_id: String,
    pub(crate) origin: String,
    pub(crate) auth_key: Option<String>,
    pub(crate) secret_key: Option<String>,
    pub(crate) retry: RetryPolicy,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_response_size: usize,
    pub(crate) root_certificate_pem: Option<Vec<u8>>,
    pub(crate) presence_timeout: u32,
    pub(crate) heartbeat_interval: u32,
}

impl Config {
    /// The subscribe key requests are made against.
    pub fn subscribe_key(&self) -> &str {
        &self.subscribe_key
    }
    /// The user id sent as `uuid` on every request.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }
    /// The origin, e.g. `https://ps.pndsn.com`.
    pub fn origin(&self) -> &str {
        &self.origin
    }
    /// The presence timeout in seconds (sent as `heartbeat=`).
    pub fn presence_timeout(&self) -> u32 {
        self.presence_timeout
    }
    /// Seconds between automatic heartbeats; 0 means none.
    pub fn heartbeat_interval(&self) -> u32 {
        self.heartbeat_interval
    }
    /// The cap on a response body, in bytes.
    pub fn max_response_size(&self) -> usize {
        self.max_response_size
    }
    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
    /// The timeout of each phase of a request (send, response head, body).
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }
    /// How failed requests are retried.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "<set>" } else { "<none>" };
        f.debug_struct("Config")
            .field("subscribe_key", &"<set>")
            .field("publish_key", &set(&self.publish_key))
            .field("auth_key", &set(&self.auth_key))
            .field("secret_key", &set(&self.secret_key))
            .field("retry", &self.retry)
            .field("user_id", &self.user_id)
            .field("origin", &self.origin)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_response_size", &self.max_response_size)
            .field("root_certificate", &self.root_certificate_pem.is_some())
            .field("presence_timeout", &self.presence_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .finish()
    }
}

/// Builds a [`PubNub`](crate::PubNub) client. Obtain one with
/// [`PubNub::builder`](crate::PubNub::builder).
///
/// ```
/// use pubnub_presence::PubNub;
/// # fn main() -> Result<(), pubnub_presence::Error> {
/// let pubnub = PubNub::builder()
///     .subscribe_key("demo")
///     .publish_key("demo")
///     .user_id("device-42")
///     .origin("http://127.0.0.1:8090")
///     .build()?;
/// assert_eq!(pubnub.config().user_id(), "device-42");
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Clone, Default)]
pub struct PubNubBuilder {
    subscribe_key: Option<String>,
    publish_key: Option<String>,
    user_id: Option<String>,
    origin: Option<String>,
    auth_key: Option<String>,
    secret_key: Option<String>,
    retry: Option<RetryPolicy>,
    connect_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    max_response_size: Option<usize>,
    root_certificate_pem: Option<Vec<u8>>,
    presence_timeout: Option<u32>,
    heartbeat_interval: Option<u32>,
}

impl fmt::Debug for PubNubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PubNubBuilder")
            .field("user_id", &self.user_id)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl PubNubBuilder {
    /// The subscribe key (required).
    pub fn subscribe_key(mut self, key: impl Into<String>) -> Self {
        self.subscribe_key = Some(key.into());
        self
    }
    /// The publish key (optional; used by request signing).
    pub fn publish_key(mut self, key: impl Into<String>) -> Self {
        self.publish_key = Some(key.into());
        self
    }
    /// This client's user id, sent as `uuid` (required, non-empty).
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }
    /// The origin, `https://ps.pndsn.com` by default; `http://127.0.0.1:PORT`
    /// for a local server. `https://` needs the `tls` feature.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }
    /// An Access Manager auth key or token, sent as `auth`.
    pub fn auth_key(mut self, auth: impl Into<String>) -> Self {
        self.auth_key = Some(auth.into());
        self
    }
    /// A secret key: every request is then signed (signature v2, see
    /// `pubnub_presence::sign`). Needs the `tls` feature, which brings the HMAC.
    pub fn secret_key(mut self, secret: impl Into<String>) -> Self {
        self.secret_key = Some(secret.into());
        self
    }
    /// How failed requests are retried (default: [`RetryPolicy::default`];
    /// [`RetryPolicy::none`] switches retries off). The event stream's
    /// long-polls are not retried by this policy: the stream resumes on its own.
    ///
    /// `build()` refuses (an `Input` error naming `retry_policy` and the
    /// field) a `max_attempts` of 0, a `deadline` of zero, and a
    /// `base_delay`, `max_delay` or `deadline` over [`MAX_DURATION`] (one
    /// day). Zero delays are accepted: retries then follow at once.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }
    /// Timeout for establishing a connection (default 5 s): the TCP connect
    /// and, for `https://`, the TLS handshake, counted from the start of the
    /// connect. A connect that times out goes on to the server's next
    /// address. Like every bound, it is cut short by the call's deadline
    /// (see [`PubNubBuilder::request_timeout`]).
    ///
    /// `build()` refuses zero and anything over [`MAX_DURATION`] (one day).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }
    /// The silence bound of a request (default 10 s): the longest wait for
    /// the next byte while sending the request or receiving the response
    /// (its head, then its body). Every byte that moves starts the wait
    /// again, so a response that keeps arriving is not cut, however slow
    /// the link; a connection silent for longer is dropped and the attempt
    /// fails with a timeout (retried under the retry policy).
    ///
    /// What bounds an ordinary call as a whole is the retry policy's
    /// deadline ([`RetryPolicy::deadline`], 30 s by default, kept by
    /// [`RetryPolicy::none`]): attempts and the delays between them
    /// together, and an attempt still running when it passes is cut there,
    /// so the call ends by it. With `deadline: None` only the silence
    /// bounds remain.
    ///
    /// The event stream's long-poll is held to its own silence bound,
    /// `long_poll_timeout` (310 s; the server answers within about 280 s),
    /// and ends within `long_poll_timeout` + `request_timeout` in all; its
    /// handshake (`tt=0`), answered at once, is held to this bound. A
    /// heartbeat's or a mirror page's total bound is at most twice this.
    ///
    /// `build()` refuses zero and anything over [`MAX_DURATION`] (one day).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }
    /// The largest response body accepted (default 1 MiB); a larger body is
    /// an error and its connection is dropped. `build()` refuses 0. No
    /// upper bound: memory grows with the body received, not with the cap.
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_response_size = Some(bytes);
        self
    }
    /// A root certificate (PEM) to trust, for private deployments and tests.
    ///
    /// NOTE(trust): when set, the PEM's certificates **replace** the bundled
    /// Mozilla roots (the rustls configuration takes one root store), so the client
    /// trusts only that authority, which is what a private deployment wants.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificate_pem = Some(pem.into());
        self
    }
    /// Presence timeout in seconds, sent as `heartbeat=` (default 300).
    /// `build()` refuses less than [`MIN_PRESENCE_TIMEOUT`] (20) and more
    /// than [`MAX_PRESENCE_TIMEOUT`] (86,400, one day).
    pub fn presence_timeout(mut self, seconds: u32) -> Self {
        self.presence_timeout = Some(seconds);
        self
    }
    /// Seconds between automatic heartbeats (default `presence_timeout / 2 - 1`;
    /// 0 means no automatic heartbeats). `build()` refuses an interval not
    /// below the presence timeout: presence would lapse between heartbeats.
    pub fn heartbeat_interval(mut self, seconds: u32) -> Self {
        self.heartbeat_interval = Some(seconds);
        self
    }

    /// Checks the configuration; `build()` (next to the client it creates,
    /// in `client.rs`) turns it into a [`PubNub`](crate::PubNub).
    pub(crate) fn into_config(self) -> Result<Config> {
        let subscribe_key = self
            .subscribe_key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| Error::input("subscribe_key", "a subscribe key is required"))?;
        let user_id = self
            .user_id
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Error::input("user_id", "a non-empty user id is required"))?;
        let given = self.origin.is_some();
        let origin = self
            .origin
            .unwrap_or_else(|| DEFAULT_ORIGIN.to_string())
            .trim_end_matches('/')
            .to_string();
        check_origin(&origin, given)?;
        let presence_timeout = self.presence_timeout.unwrap_or(DEFAULT_PRESENCE_TIMEOUT);
        check_presence_timeout(presence_timeout)?;
        let heartbeat_interval = self.heartbeat_interval.unwrap_or(presence_timeout / 2 - 1);
        if heartbeat_interval >= presence_timeout {
            return Err(Error::input(
                "heartbeat_interval",
                "the heartbeat interval must be shorter than the presence timeout",
            ));
        }
        let max_response_size = self.max_response_size.unwrap_or(DEFAULT_MAX_RESPONSE_SIZE);
        if max_response_size == 0 {
            return Err(Error::input("max_response_size", "must be at least 1 byte"));
        }
        let secret_key = self.secret_key.filter(|k| !k.is_empty());
        if secret_key.is_some() && !cfg!(feature = "tls") {
            return Err(Error::input(
                "secret_key",
                "request signing needs the `tls` feature (it provides HMAC-SHA256)",
            ));
        }
        let connect_timeout = self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        check_duration("connect_timeout", connect_timeout, false)?;
        let request_timeout = self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        check_duration("request_timeout", request_timeout, false)?;
        let retry = self.retry.unwrap_or_default();
        let too_long = |d: Duration| d > MAX_DURATION;
        let fault = if retry.max_attempts == 0 {
            "max_attempts must be at least 1"
        } else if too_long(retry.base_delay) {
            "base_delay must be at most one day (86,400 s)"
        } else if too_long(retry.max_delay) {
            "max_delay must be at most one day (86,400 s)"
        } else if retry.deadline.is_some_and(|d| d.is_zero() || too_long(d)) {
            "deadline must be more than zero and at most one day (86,400 s)"
        } else {
            ""
        };
        if !fault.is_empty() {
            return Err(Error::input("retry_policy", fault));
        }
        let config = Config {
            subscribe_key,
            publish_key: self.publish_key.filter(|k| !k.is_empty()),
            user_id,
            origin,
            auth_key: self.auth_key.filter(|k| !k.is_empty()),
            secret_key,
            retry,
            connect_timeout,
            request_timeout,
            max_response_size,
            root_certificate_pem: self.root_certificate_pem,
            presence_timeout,
            heartbeat_interval,
        };
        Ok(config)
    }
}

/// Checks the origin; `given` tells whether it was set or is the default
/// (which an error without `tls` then names, with the fix).
fn check_origin(origin: &str, given: bool) -> Result<()> {
    let rest = if let Some(rest) = origin.strip_prefix("http://") {
        rest
    } else if let Some(rest) = origin.strip_prefix("https://") {
        if !cfg!(feature = "tls") {
            return Err(Error::input(
                "origin",
                if given {
                    "https:// origins need the `tls` feature: enable it, or use an http:// origin"
                } else {
                    "the default origin, https://ps.pndsn.com, needs the `tls` feature: enable it, \
                     or set an http:// origin with `.origin(\"http://…\")`"
                },
            ));
        }
        rest
    } else {
        return Err(Error::input(
            "origin",
            "the origin must start with http:// or https://",
        ));
    };
    // NOTE(size): a byte scan, not `contains([..])` (a char-set searcher).
    if rest.is_empty() || rest.bytes().any(|b| matches!(b, b'/' | b'?' | b'#' | b' ')) {
        return Err(Error::input(
            "origin",
            "the origin must be scheme://host[:port] with no path",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PubNub;

    fn base() -> PubNubBuilder {
        PubNub::builder()
            .subscribe_key("sub")
            .user_id("me")
            .origin("http://127.0.0.1:1")
    }

    #[test]
    fn defaults() {
        let p = base().build().unwrap();
        let c = p.config();
        assert_eq!(c.presence_timeout(), 300);
        assert_eq!(c.heartbeat_interval(), 149);
        assert_eq!(c.max_response_size(), 1 << 20);
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.request_timeout, Duration::from_secs(10));
    }

    #[test]
    fn rejects() {
        let cases: Vec<(PubNubBuilder, &str)> = vec![
            (PubNub::builder().user_id("me"), "subscribe_key"),
            (PubNub::builder().subscribe_key("s"), "user_id"),
            (base().user_id(""), "user_id"),
            (base().origin("ftp://x"), "origin"),
            (base().origin("http://"), "origin"),
            (base().origin("http://h/path"), "origin"),
            (base().presence_timeout(19), "presence_timeout"),
            (base().presence_timeout(86_401), "presence_timeout"),
            (base().connect_timeout(Duration::ZERO), "connect_timeout"),
            (base().connect_timeout(Duration::MAX), "connect_timeout"),
            (base().request_timeout(Duration::ZERO), "request_timeout"),
            (
                base().request_timeout(MAX_DURATION + Duration::from_nanos(1)),
                "request_timeout",
            ),
            (
                base().retry_policy(RetryPolicy {
                    deadline: Some(Duration::ZERO),
                    ..RetryPolicy::default()
                }),
                "retry_policy",
            ),
            (
                base().retry_policy(RetryPolicy {
                    base_delay: Duration::MAX,
                    ..RetryPolicy::default()
                }),
                "retry_policy",
            ),
            (
                base().presence_timeout(30).heartbeat_interval(30),
                "heartbeat_interval",
            ),
            (base().max_response_size(0), "max_response_size"),
            (
                base().retry_policy(RetryPolicy {
                    max_attempts: 0,
                    ..RetryPolicy::default()
                }),
                "retry_policy",
            ),
        ];
        for (b, arg) in cases {
            match b.build().map_err(Error::into_kind) {
                Err(crate::ErrorKind::Input { argument, .. }) => assert_eq!(argument, arg),
                other => panic!("{arg}: {other:?}"),
            }
        }
        #[cfg(not(feature = "tls"))]
        {
            assert!(matches!(
                base()
                    .origin("https://ps.pndsn.com")
                    .build()
                    .map_err(Error::into_kind),
                Err(crate::ErrorKind::Input {
                    argument: "origin",
                    ..
                })
            ));
            // Without an origin set, the error says the default is https
            // and how to fix it.
            let e = PubNub::builder()
                .subscribe_key("sub")
                .user_id("me")
                .build()
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                "invalid origin: the default origin, https://ps.pndsn.com, needs the `tls` feature: \
                 enable it, or set an http:// origin with `.origin(\"http://…\")`"
            );
        }
        #[cfg(feature = "tls")]
        assert!(base().origin("https://ps.pndsn.com").build().is_ok());
    }

    #[test]
    fn debug_hides_keys() {
        let p = base()
            .subscribe_key("sub-secret-1")
            .publish_key("pub-secret-2")
            .auth_key("auth-secret-3");
        #[cfg(feature = "tls")]
        let p = p.secret_key("sec-secret-4");
        let p = p.build().unwrap();
        let dbg = format!("{p:?} {:?}", p.config());
        for secret in [
            "sub-secret-1",
            "pub-secret-2",
            "auth-secret-3",
            "sec-secret-4",
        ] {
            assert!(!dbg.contains(secret), "{dbg}");
        }
        assert!(dbg.contains("me"));
    }
}
