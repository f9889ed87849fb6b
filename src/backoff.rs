//! The wait after failures: exponential backoff, shared by the event
//! stream, the heartbeat schedule and the occupancy mirror. Imports
//! nothing of ours; time comes in as an argument.

use std::time::{Duration, Instant};

/// The longest wait between attempts after failures, and the longest
/// `Retry-After` honoured.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Exponential backoff after failures: 0.5 s doubling to 30 s. Every
/// failure, of any kind, waits before the next request, so a loop that
/// logs errors and polls again never hammers the server.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    pub(crate) failures: u32,
    /// No request before this instant.
    pub(crate) until: Option<Instant>,
}

impl Backoff {
    fn delay(&self) -> Duration {
        let ms = 500u64.saturating_mul(1 << self.failures.min(6));
        Duration::from_millis(ms).min(MAX_BACKOFF)
    }

    /// Records a failure at `now`; a server's `Retry-After` lengthens the
    /// wait (up to 30 s).
    pub(crate) fn fail(&mut self, now: Instant, retry_after: Option<Duration>) -> Duration {
        let wait = self
            .delay()
            .max(retry_after.unwrap_or_default().min(MAX_BACKOFF));
        self.failures = self.failures.saturating_add(1);
        self.until = now.checked_add(wait);
        wait
    }

    /// When the next attempt may go out, as last set.
    pub(crate) fn until(&self) -> Option<Instant> {
        self.until
    }

    /// Sets when the next attempt may go out.
    pub(crate) fn retry_at(&mut self, at: Option<Instant>) {
        self.until = at;
    }

    pub(crate) fn succeed(&mut self) {
        self.failures = 0;
        self.until = None;
    }

    /// When the next attempt may go out, if later than now.
    pub(crate) fn waiting(&self, now: Instant) -> Option<Instant> {
        self.until.filter(|u| *u > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_caps() {
        let mut b = Backoff::default();
        assert_eq!(b.delay(), Duration::from_millis(500));
        b.failures = 3;
        assert_eq!(b.delay(), Duration::from_millis(4000));
        b.failures = 100;
        assert_eq!(b.delay(), Duration::from_secs(30));
    }
}
