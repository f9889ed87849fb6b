//! What the mirror reports: each change ([`Change`]), why it re-synced
//! ([`Resync`]), and one occupant as read back ([`Occupant`]).

use crate::state::State;
use std::collections::BTreeSet;
use std::fmt;

/// What changed in the mirror: what [`Occupancy::poll`](super::Occupancy::poll) returns, in the
/// order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A user is on the channel now.
    Joined {
        /// The channel.
        channel: String,
        /// The user.
        user_id: String,
    },
    /// A user left the channel (a leave event, an interval's `leave`, or
    /// gone from a re-sync's snapshot).
    Left {
        /// The channel.
        channel: String,
        /// The user.
        user_id: String,
    },
    /// A user's presence on the channel timed out.
    TimedOut {
        /// The channel.
        channel: String,
        /// The user.
        user_id: String,
    },
    /// A user's state on the channel changed ([`Occupancy::state`](super::Occupancy::state) has
    /// the new one). Only with `include_state(true)`.
    StateChanged {
        /// The channel.
        channel: String,
        /// The user.
        user_id: String,
    },
    /// The count of a counts-only channel changed.
    CountChanged {
        /// The channel.
        channel: String,
        /// Users on it now.
        occupancy: u32,
    },
    /// The channel has more occupants than the cap: the mirror keeps its
    /// count only (no user ids, no state) until it is back under the cap.
    CountsOnly {
        /// The channel.
        channel: String,
        /// Users on it.
        occupancy: u32,
    },
    /// A re-sync completed: a here_now snapshot replaced what events had
    /// built. The changes it made (joined, left, state changed) came
    /// before this entry. The reason is the one that started it (others
    /// that came while it ran widened it).
    Resynced(Resync),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Joined { channel, user_id } => write!(f, "{user_id} joined {channel}"),
            Change::Left { channel, user_id } => write!(f, "{user_id} left {channel}"),
            Change::TimedOut { channel, user_id } => write!(f, "{user_id} timed out on {channel}"),
            Change::StateChanged { channel, user_id } => {
                write!(f, "{user_id} changed state on {channel}")
            }
            Change::CountChanged { channel, occupancy } => {
                write!(f, "{channel} has {occupancy} users (counts only)")
            }
            Change::CountsOnly { channel, occupancy } => write!(
                f,
                "{channel} has {occupancy} users, past the cap: counts only"
            ),
            Change::Resynced(why) => write!(f, "re-synced ({why})"),
        }
    }
}

/// Why the mirror re-synced (or is about to): see [`Change::Resynced`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resync {
    /// The first snapshot.
    Start,
    /// The first snapshot confirmed once the here_now cache window passed.
    StartCheck,
    /// An event request failed, or its connection was opened again:
    /// events may have been missed.
    Reconnect,
    /// The server moved the event stream's cursor back.
    CursorReset,
    /// An event could not be decoded.
    Skipped {
        /// Its channel, when it could be read (else everything re-syncs).
        channel: Option<String>,
    },
    /// An interval event said `here_now_refresh: true`.
    HereNowRefresh {
        /// The channel.
        channel: String,
    },
    /// An event's `occupancy` differed from the mirror's count.
    Mismatch {
        /// The channel.
        channel: String,
        /// The mirror's count.
        mirrored: u32,
        /// The event's count.
        occupancy: u32,
    },
    /// Users joined through an interval event, which carries no state
    /// (only with `include_state(true)`).
    IntervalState {
        /// The channel.
        channel: String,
    },
    /// A counts-only channel is back under the cap.
    UnderCap {
        /// The channel.
        channel: String,
    },
    /// [`Occupancy::resync`](super::Occupancy::resync) was called.
    Requested,
}

impl Resync {
    /// What the re-sync covers.
    pub(super) fn scope(&self) -> Scope {
        match self {
            Resync::Skipped {
                channel: Some(channel),
            }
            | Resync::HereNowRefresh { channel }
            | Resync::Mismatch { channel, .. }
            | Resync::IntervalState { channel }
            | Resync::UnderCap { channel } => Scope::one(channel),
            _ => Scope::All,
        }
    }
}

impl fmt::Display for Resync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resync::Start => f.write_str("first snapshot"),
            Resync::StartCheck => f.write_str("first snapshot confirmed after the cache window"),
            Resync::Reconnect => f.write_str("the event stream reconnected"),
            Resync::CursorReset => f.write_str("the server moved the event cursor back"),
            Resync::Skipped { channel: Some(c) } => write!(f, "an undecodable event on {c:?}"),
            Resync::Skipped { channel: None } => f.write_str("an undecodable event"),
            Resync::HereNowRefresh { channel } => write!(f, "here_now_refresh on {channel:?}"),
            Resync::Mismatch {
                channel,
                mirrored,
                occupancy,
            } => write!(
                f,
                "occupancy {occupancy} on {channel:?}, the mirror had {mirrored}"
            ),
            Resync::IntervalState { channel } => {
                write!(f, "users joined {channel:?} in an interval, state unknown")
            }
            Resync::UnderCap { channel } => write!(f, "{channel:?} is back under the cap"),
            Resync::Requested => f.write_str("requested"),
        }
    }
}

/// One occupant of a mirrored channel, from [`Occupancy::occupants`](super::Occupancy::occupants).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Occupant<'a> {
    /// The user.
    pub user_id: &'a str,
    /// The user's state on the channel; `null` when none is set or state
    /// is not kept (`include_state(false)`).
    pub state: &'a State<'static>,
}

/// What a re-sync covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every channel and group of the mirror.
    All,
    /// These channels only (by name, even when reached through a group).
    Channels(BTreeSet<String>),
}

impl Scope {
    pub(crate) fn one(channel: &str) -> Scope {
        Scope::Channels(BTreeSet::from([channel.to_string()]))
    }

    pub(crate) fn contains(&self, channel: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Channels(set) => set.contains(channel),
        }
    }

    /// Whether every channel of `other` is in this scope.
    pub(crate) fn covers(&self, other: &Scope) -> bool {
        match (self, other) {
            (Scope::All, _) => true,
            (Scope::Channels(_), Scope::All) => false,
            (Scope::Channels(a), Scope::Channels(b)) => b.is_subset(a),
        }
    }

    pub(crate) fn merge(&mut self, other: Scope) {
        match (&mut *self, other) {
            (Scope::All, _) => {}
            (_, Scope::All) => *self = Scope::All,
            (Scope::Channels(a), Scope::Channels(b)) => a.extend(b),
        }
    }
}
