//! The presence calls, one file per call family: each holds its builder,
//! its request builder, its decoder and its result types.

pub mod events;
pub mod heartbeat;
pub mod here_now;
pub mod schedule;
pub mod user_state;
pub mod where_now;
