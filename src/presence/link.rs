//! What a kept connection is doing ([`LinkState`]), for a device that
//! shows "online" / "offline" without keeping its own record of errors.
//!
//! [`PresenceEvents`](crate::PresenceEvents),
//! [`Heartbeater`](crate::Heartbeater), [`PresenceLoop`](crate::PresenceLoop)
//! and [`Occupancy`](crate::Occupancy) each answer `link_state()` at any
//! time, between calls too: a `poll` during a backoff returns `Ok(None)`
//! while the state says `Reconnecting`, with the last error and when the
//! next attempt goes out. Each transition is logged once (at `info`,
//! target `pubnub_presence::link`), not once per call.

use crate::backoff::Backoff;
use crate::error::Error;
use crate::retry::Why;
use std::time::{Duration, Instant};

/// How a link's failed requests are logged (at `warn`).
pub(crate) struct FailureLog {
    /// The `log` target.
    pub target: &'static str,
    /// What failed and what comes next, the delay and why follow:
    /// `"heartbeat failed, next attempt in"`.
    pub message: &'static str,
}

/// What a kept connection is doing, as of the last request that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkState {
    /// No request has ended yet: nothing was needed so far, or the first
    /// one (connect, TLS handshake, request) is under way.
    Connecting,
    /// The last request was answered.
    Connected {
        /// When the first answer after the last failure (or the very
        /// first answer) came.
        since: Instant,
    },
    /// The last request failed: a connection that could not be opened or
    /// died, a timeout, an error status, a body that could not be read.
    /// The next attempt goes out after a backoff.
    Reconnecting {
        /// When the first failure of this run of failures happened.
        since: Instant,
        /// Failed attempts in a row.
        failures: u32,
        /// The last failure.
        last_error: Error,
        /// When the next attempt may go out (`None`: at the next call).
        next_attempt: Option<Instant>,
    },
}

impl LinkState {
    /// Whether the last request was answered.
    pub fn is_connected(&self) -> bool {
        matches!(self, LinkState::Connected { .. })
    }

    /// How bad the state is, to combine the links of one loop: a failing
    /// link outweighs one still connecting, which outweighs a working one.
    fn rank(&self) -> u8 {
        match self {
            LinkState::Connected { .. } => 0,
            LinkState::Connecting => 1,
            LinkState::Reconnecting { .. } => 2,
        }
    }

    /// The worse of two states (of two failing links, the one failing
    /// longer; of two working ones, the one connected more recently).
    pub(crate) fn worse(self, other: LinkState) -> LinkState {
        let later = |a: &LinkState, b: &LinkState| match (a, b) {
            (LinkState::Connected { since: x }, LinkState::Connected { since: y }) => y > x,
            (
                LinkState::Reconnecting { since: x, .. },
                LinkState::Reconnecting { since: y, .. },
            ) => y < x,
            _ => false,
        };
        if other.rank() > self.rank() || (other.rank() == self.rank() && later(&self, &other)) {
            other
        } else {
            self
        }
    }
}

/// The link state of one kept connection, with its transitions logged.
#[derive(Debug)]
pub(crate) struct Link {
    state: LinkState,
    /// What the connection is for, in the log lines.
    what: &'static str,
}

impl Link {
    pub(crate) fn new(what: &'static str) -> Link {
        Link {
            state: LinkState::Connecting,
            what,
        }
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> &LinkState {
        &self.state
    }

    /// The state, with the next attempt of a failing link as the backoff
    /// now stands (`until`: it may have been cut short since the failure).
    pub(crate) fn state_with(&self, until: Option<Instant>) -> LinkState {
        let mut state = self.state.clone();
        if let LinkState::Reconnecting { next_attempt, .. } = &mut state {
            *next_attempt = until;
        }
        state
    }

    /// Since when the link has been failing, if it is.
    pub(crate) fn down_since(&self) -> Option<Instant> {
        match self.state {
            LinkState::Reconnecting { since, .. } => Some(since),
            _ => None,
        }
    }

    /// Whether a request has ended since the link was made (any state but
    /// `Connecting`).
    pub(crate) fn used(&self) -> bool {
        !matches!(self.state, LinkState::Connecting)
    }

    /// A request was answered at `now`.
    pub(crate) fn up(&mut self, now: Instant) {
        match &self.state {
            LinkState::Connected { .. } => {}
            LinkState::Reconnecting {
                since, failures, ..
            } => {
                log::info!(target: "pubnub_presence::link",
                    "{}: connected again after {failures} failed attempts over {} ms",
                    self.what, now.saturating_duration_since(*since).as_millis());
                self.state = LinkState::Connected { since: now };
            }
            LinkState::Connecting => {
                log::info!(target: "pubnub_presence::link", "{}: connected", self.what);
                self.state = LinkState::Connected { since: now };
            }
        }
    }

    /// A request failed at `now`: backs off (a server's `Retry-After`
    /// lengthens the wait, `cap` shortens it), marks the link down until
    /// the next attempt and logs why; returns the wait. The one failure →
    /// backoff → log rule of the event stream, the heartbeats and the
    /// mirror.
    pub(crate) fn failed(
        &mut self,
        backoff: &mut Backoff,
        now: Instant,
        e: &Error,
        retry_after: Option<Duration>,
        cap: Option<Duration>,
        log: &FailureLog,
    ) -> Duration {
        let mut wait = backoff.fail(now, retry_after);
        if let Some(i) = cap {
            if wait > i {
                wait = i;
                backoff.retry_at(now.checked_add(i));
            }
        }
        self.down(now, e, backoff.until());
        let why = Why {
            error: e,
            in_body: false,
            retry_after,
        };
        log::warn!(target: log.target, "{} {} ms: {why}", log.message, wait.as_millis());
        wait
    }

    /// A request failed at `now`; the next goes out at `next_attempt`.
    pub(crate) fn down(&mut self, now: Instant, error: &Error, next_attempt: Option<Instant>) {
        match &mut self.state {
            LinkState::Reconnecting {
                failures,
                last_error,
                next_attempt: next,
                ..
            } => {
                *failures = failures.saturating_add(1);
                last_error.clone_from(error);
                *next = next_attempt;
            }
            _ => {
                log::info!(target: "pubnub_presence::link",
                    "{}: reconnecting (backoff) after: {error}", self.what);
                self.state = LinkState::Reconnecting {
                    since: now,
                    failures: 1,
                    last_error: error.clone(),
                    next_attempt,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TransportErrorKind;
    use std::time::Duration;

    #[test]
    fn transitions_and_combining() {
        let t0 = crate::clock::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut l = Link::new("test");
        assert_eq!(l.state(), &LinkState::Connecting);
        assert!(!l.used());
        let e = Error::transport(TransportErrorKind::Timeout, "x");
        l.down(t0, &e, Some(t1));
        l.down(t1, &e, None);
        match l.state() {
            LinkState::Reconnecting {
                since,
                failures,
                next_attempt,
                ..
            } => assert_eq!((*since, *failures, *next_attempt), (t0, 2, None)),
            other => panic!("{other:?}"),
        }
        assert_eq!(l.down_since(), Some(t0));
        assert!(matches!(
            l.state_with(Some(t1)),
            LinkState::Reconnecting { next_attempt: Some(t), .. } if t == t1
        ));
        l.up(t1);
        assert_eq!(l.state(), &LinkState::Connected { since: t1 });
        l.up(t1 + Duration::from_secs(5));
        assert_eq!(l.state(), &LinkState::Connected { since: t1 });
        let down = LinkState::Reconnecting {
            since: t1,
            failures: 1,
            last_error: e,
            next_attempt: None,
        };
        let up = LinkState::Connected { since: t0 };
        assert_eq!(up.clone().worse(down.clone()), down);
        assert_eq!(down.clone().worse(LinkState::Connecting), down);
        assert_eq!(
            up.clone().worse(LinkState::Connecting),
            LinkState::Connecting
        );
        let later = LinkState::Connected { since: t1 };
        assert_eq!(up.worse(later.clone()), later);
    }
}
