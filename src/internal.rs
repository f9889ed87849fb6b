//! Internals that are public only so the crate's own tests, fuzz targets
//! and benches can reach them (as rustls gathers its fuzz and bench hooks
//! in one `internal` module): not part of the API, hidden from the docs,
//! changed without notice. Nothing in the library imports this module.

/// The JSON cursor (`Cursor`, `validate`, …), for property tests and the
/// fuzz targets.
pub mod json {
    pub use crate::json::*;
}

/// The percent-encoding sets and writers, for property tests.
pub mod encode {
    pub use crate::encode::*;
}

pub use crate::dns::fuzz_dns;
pub use crate::retry::parse_retry_after;
pub use crate::transport::fuzz_response;

/// Applies one event to `occupancy` as if the stream had delivered it,
/// with no IO: the mirror's cost per event, for the benches.
pub fn apply_event(
    occupancy: &mut crate::Occupancy,
    event: crate::PresenceEvent<'static>,
) -> Vec<crate::Change> {
    occupancy.apply_event(event)
}
