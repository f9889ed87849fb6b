//! The client: configuration plus one reusable connection.

use crate::config::{Config, PubNubBuilder};
use crate::envelope;
use crate::error::Result;
use crate::presence::events::PresenceEventsBuilder;
use crate::presence::heartbeat::{HeartbeatBuilder, LeaveBuilder};
use crate::presence::here_now::{GlobalHereNowBuilder, HereNowBuilder};
use crate::presence::user_state::{GetStateBuilder, SetStateBuilder};
use crate::presence::where_now::WhereNowBuilder;
use crate::request::Request;
use crate::state;
use crate::transport::{Response, Transport};
use std::fmt;

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
    /// [`crate::Error::Server`].
    pub fn send(&self, request: &Request) -> Result<Response> {
        let resp = self.transport.get(&self.config.origin, request)?;
        if !(200..300).contains(&resp.status) {
            return Err(envelope::error_from_response(resp.status, &resp.body));
        }
        Ok(resp)
    }

    /// Who, and how many, are on the given channels or channel groups.
    pub fn here_now(&self) -> HereNowBuilder<'_> {
        HereNowBuilder::new(self)
    }

    /// Who is on every occupied channel of the keyset
    /// (`/v2/presence/sub-key/{sub}`). Not in PubNub's Rust docs; kept
    /// separate so a `here_now` without channels is an error, never an
    /// accidental keyset-wide query.
    pub fn global_here_now(&self) -> GlobalHereNowBuilder<'_> {
        GlobalHereNowBuilder::new(self)
    }

    /// Which channels a user is on.
    pub fn where_now(&self) -> WhereNowBuilder<'_> {
        WhereNowBuilder::new(self)
    }

    /// Sets the user's state, which must serialize to a JSON object
    /// (`miniserde::Serialize`, or `serde::Serialize` with the `serde`
    /// feature). Anything else fails before a request is sent.
    pub fn set_presence_state<T: state::Serialize + ?Sized>(
        &self,
        state: &T,
    ) -> SetStateBuilder<'_> {
        SetStateBuilder::new(self, state)
    }

    /// Gets the user's state on channels or channel groups.
    pub fn get_presence_state(&self) -> GetStateBuilder<'_> {
        GetStateBuilder::new(self)
    }

    /// Announces presence on channels or groups (with optional per-channel
    /// state) for the presence timeout. See also
    /// [`crate::presence::schedule::Heartbeater`] for a schedule.
    pub fn heartbeat(&self) -> HeartbeatBuilder<'_> {
        HeartbeatBuilder::new(self)
    }

    /// Leaves channels or groups now, instead of timing out.
    pub fn leave(&self) -> LeaveBuilder<'_> {
        LeaveBuilder::new(self)
    }

    /// A blocking stream of join, leave, timeout, state-change and interval
    /// events on channels or groups.
    pub fn presence_events(&self) -> PresenceEventsBuilder<'_> {
        PresenceEventsBuilder::new(self)
    }
}
