//! The presence calls, one file per call family: each holds its builder,
//! its request builder, its decoder, its result types and the
//! [`PubNub`](crate::PubNub) method that starts it. Each call's file
//! depends on the client, not the reverse; what the builders share
//! (channels, groups, user id, their checks and encoding) lives in one
//! private module, `targets`.

pub mod events;
pub mod heartbeat;
pub mod here_now;
pub mod link;
pub mod occupancy;
pub mod schedule;
pub(crate) mod targets;
pub mod user_state;
pub mod where_now;
