//! The client: configuration plus a small pool of reusable connections.

use crate::config::{Config, PubNubBuilder};
use crate::error::Result;
use crate::pool::Transport;
use crate::request::Request;
use std::fmt;
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
    /// NOTE(size): shared, so a clone (the event stream, the device loop
    /// and the heartbeat thread each keep one) copies no strings: 576 B
    /// less in the footprint example than cloning the configuration field
    /// by field.
    config: std::sync::Arc<Config>,
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
        Ok(PubNub {
            config: std::sync::Arc::new(config),
            transport,
        })
    }

    /// The client's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where kept connections (event stream, device loop) connect.
    pub(crate) fn endpoint(&self) -> crate::conn::Endpoint {
        self.transport.endpoint()
    }

    /// The idle connections of the ordinary calls.
    pub(crate) fn pool(&self) -> &Transport {
        &self.transport
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
    // under `presence/`, and `send` with the retry loop in `call.rs` (the
    // call engine and its driver), so this file does not depend on them.
}

impl PubNubBuilder {
    /// Checks the configuration and creates the client. No I/O happens here.
    pub fn build(self) -> Result<PubNub> {
        PubNub::from_config(self.into_config()?)
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
