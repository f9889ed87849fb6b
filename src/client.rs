//! The client: configuration plus a small pool of reusable connections.

use crate::config::{Config, PubNubBuilder};
use crate::error::{Error, Result, TransportErrorKind};
use crate::pool::Transport;
use crate::request::Request;
use crate::retry::{self, RetryPolicy};
use crate::transport::Response;
use std::fmt;
use std::time::{Duration, Instant};
#[cfg(feature = "tls")]
use std::time::{SystemTime, UNIX_EPOCH};

/// A PubNub Presence client.
///
/// Cheap to clone: clones share the connection pool. Every call is a
/// builder ending in `execute()`, which blocks until the answer is decoded.
///
/// ```no_run
/// use pubnub_presence::PubNub;
/// # fn main() -> Result<(), pubnub_presence::Error> {
/// let pubnub = PubNub::builder()
///     .subscribe_key("demo")
///     .user_id("device-42")
///     .build()?;
/// let here = pubnub
///     .here_now()
///     .channels(vec!["lobby".into()])
///     .include_state(true)
///     .execute()?;
/// for channel in &here.channels {
///     println!("{}: {} online", channel.name, channel.occupancy);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PubNub {
    config: Config,
    transport: Transport,
}

impl fmt::Debug for PubNub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PubNub")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PubNub {
    /// Starts configuring a client.
    pub fn builder() -> PubNubBuilder {
        PubNubBuilder::default()
    }

    pub(crate) fn from_config(config: Config) -> Result<Self> {
        let transport = Transport::new(&config)?;
        Ok(PubNub { config, transport })
    }

    /// The client's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sends a request built by one of the builders and returns the raw
    /// response if its HTTP status is 2xx; any other status becomes
    /// [`crate::ErrorKind::Server`]. Signs the request when a secret key is
    /// configured, and retries by the client's [`RetryPolicy`] (except
    /// long-polls, which carry their own timeout). Takes the request by
    /// value: its URL goes to the HTTP stack without a copy.
    ///
    /// A 2xx is returned as it is: a body that reports an error (PubNub
    /// sometimes sends `{"status":503,"error":1,…}` with HTTP 200) is found
    /// by the decoder. The builders' `execute()` decodes each attempt and
    /// retries such a body like the status it carries.
    pub fn send(&self, request: Request) -> Result<Response> {
        self.run(request, &mut |_| Ok(()))
    }

    /// Sends `request` and decodes each 2xx body with `decode`; a body
    /// reporting a retryable server error (5xx or 429, docs/PROTOCOL.md §2) is
    /// retried like an HTTP response with that status.
    pub(crate) fn execute<R>(
        &self,
        request: Request,
        mut decode: impl FnMut(&[u8]) -> Result<R>,
    ) -> Result<R> {
        let mut out = None;
        self.run(request, &mut |resp| {
            out = Some(decode(&resp.body)?);
            Ok(())
        })?;
        // `run` returns Ok only after `accept` stored a result.
        out.ok_or_else(|| Error::transport(TransportErrorKind::Io, "no response was decoded"))
    }

    /// The retry loop. `accept` sees every 2xx response; its error ends the
    /// call, or is retried when it is a retryable server error.
    ///
    /// NOTE(size): `accept` is a trait object so the loop is compiled once,
    /// not once per result type.
    fn run(
        &self,
        request: Request,
        accept: &mut dyn FnMut(&Response) -> Result<()>,
    ) -> Result<Response> {
        let timeout = request.timeout;
        // A request with its own timeout (a long-poll) is bounded by that
        // alone: one attempt, no retry deadline to cut it.
        let policy = match timeout {
            Some(_) => RetryPolicy {
                deadline: None,
                ..RetryPolicy::none()
            },
            None => self.config.retry,
        };
        let target = Target::new(&self.config, request)?;
        let started = crate::clock::now();
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            let (err, retry_after, in_body) =
                match self.send_once(&target, timeout, policy.deadline, started) {
                    Ok(resp) => match accept(&resp) {
                        Ok(()) => return Ok(resp),
                        Err(e) if e.server().is_some() && retry::is_retryable(&e) => {
                            (e, resp.retry_after, true)
                        }
                        Err(e) => return Err(retry::with_attempts(e, attempt)),
                    },
                    Err((e, retry_after)) => (e, retry_after, false),
                };
            let why = retry::Why {
                error: &err,
                in_body,
                retry_after,
            };
            match retry::decide(&policy, attempt, &err, retry_after, started.elapsed()) {
                retry::Decision::Retry(delay) => {
                    log::warn!(
                        target: retry::LOG_TARGET,
                        "attempt {attempt} of {} failed ({why}); retrying in {} ms",
                        policy.max_attempts,
                        delay.as_millis()
                    );
                    crate::clock::sleep(delay);
                }
                retry::Decision::Stop(reason) => {
                    if let Some(reason) = reason {
                        log::debug!(
                            target: retry::LOG_TARGET,
                            "attempt {attempt} failed ({why}); not retried: {reason}"
                        );
                    }
                    return Err(retry::with_attempts(err, attempt));
                }
            }
        }
    }

    fn send_once(
        &self,
        target: &Target,
        timeout: Option<Duration>,
        deadline: Option<Duration>,
        started: Instant,
    ) -> std::result::Result<Response, (Error, Option<Duration>)> {
        // The whole attempt (connect, send, head, body) ends by the call's
        // deadline; the silence bound still applies within it. A deadline
        // too far to count is no deadline.
        let ends = deadline.and_then(|d| started.checked_add(d));
        let uri = target.uri(&self.config).map_err(|e| (e, None))?;
        let resp = self
            .transport
            .get(uri, timeout, ends)
            .map_err(|e| (e, None))?;
        if let Some(e) = resp.error() {
            return Err((e, resp.retry_after));
        }
        Ok(resp)
    }

    /// Where kept connections (event stream, device loop) connect.
    pub(crate) fn endpoint(&self) -> crate::conn::Endpoint {
        self.transport.endpoint()
    }

    /// The URL to send for `request` now: signed with the current time
    /// when a secret key is configured (sans-IO: sign a request an
    /// [`engine`](crate::engine) asks for as it goes out).
    pub fn url_for(&self, request: Request) -> Result<String> {
        #[cfg(feature = "tls")]
        if let Some(secret) = self.config.secret_key.as_deref() {
            let mut signed = request;
            sign_now(&mut signed, &self.config, secret);
            return Ok(signed.into_url());
        }
        Ok(request.into_url())
    }

    // Each call's constructor (`here_now`, `where_now`, the state calls,
    // `heartbeat`, `leave`, `presence_events`) lives in that call's file
    // under `presence/`, so this file does not depend on them.
}

impl PubNubBuilder {
    /// Checks the configuration and creates the client. No I/O happens here.
    pub fn build(self) -> Result<PubNub> {
        PubNub::from_config(self.into_config()?)
    }
}

/// What each attempt sends: a parsed URL reused as is, or (with a secret
/// key) the request, signed afresh with the current time per attempt.
enum Target {
    Plain(ureq_proto::http::Uri),
    #[cfg(feature = "tls")]
    Signed(Request),
}

impl Target {
    fn new(config: &Config, request: Request) -> Result<Self> {
        #[cfg(feature = "tls")]
        if config.secret_key.is_some() {
            return Ok(Target::Signed(request));
        }
        let _ = config;
        crate::transport::parse_uri(request.into_url()).map(Target::Plain)
    }

    fn uri(&self, config: &Config) -> Result<ureq_proto::http::Uri> {
        #[cfg(not(feature = "tls"))]
        let _ = config;
        match self {
            // A clone shares the parsed URL's bytes: no allocation.
            Target::Plain(uri) => Ok(uri.clone()),
            #[cfg(feature = "tls")]
            Target::Signed(request) => {
                let mut signed = request.clone();
                let secret = config.secret_key.as_deref().unwrap_or_default();
                sign_now(&mut signed, config, secret);
                crate::transport::parse_uri(signed.into_url())
            }
        }
    }
}

/// Signs `request` (signature v2) with the current Unix time.
#[cfg(feature = "tls")]
fn sign_now(request: &mut Request, config: &Config, secret: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let publish_key = config.publish_key.as_deref().unwrap_or("");
    crate::sign::sign(request, secret, publish_key, now);
}
