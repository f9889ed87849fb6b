//! The clock, the sleeps and the jitter source of the client, in one
//! place. Normally the real monotonic clock; with the `sim` feature, a
//! simulation installed on the current thread ([`crate::sim`]) replaces
//! them with its virtual time and its seeded random numbers, so a whole
//! run of the device loop replays from a seed. Nothing here imports other
//! modules of the crate but the simulator seam (`seam`), which imports
//! nothing of ours.

use std::time::{Duration, Instant};

/// The current instant (virtual under a simulation on this thread).
#[inline]
pub(crate) fn now() -> Instant {
    #[cfg(feature = "sim")]
    if let Some(w) = crate::seam::current() {
        return w.now();
    }
    Instant::now()
}

/// Sleeps `d` (in a simulation: lets virtual time pass).
pub(crate) fn sleep(d: Duration) {
    #[cfg(feature = "sim")]
    if let Some(w) = crate::seam::current() {
        return w.sleep(d);
    }
    std::thread::sleep(d);
}

/// A small non-cryptographic random number (xorshift over the clock and a
/// counter; seeded under a simulation): jitter needs spread, not secrecy.
pub(crate) fn random_u64() -> u64 {
    #[cfg(feature = "sim")]
    if let Some(w) = crate::seam::current() {
        return w.random();
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into());
    let mut x = COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ nanos;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// Sleeps until `until`, or until `deadline` if that comes first;
/// whether `until` was reached.
pub(crate) fn sleep_until(until: Instant, deadline: Option<Instant>) -> bool {
    let now = crate::clock::now();
    match deadline {
        Some(d) if d < until => {
            crate::clock::sleep(d.saturating_duration_since(now));
            false
        }
        _ => {
            crate::clock::sleep(until.saturating_duration_since(now));
            true
        }
    }
}

/// `now + timeout`, or `None` ("no deadline") when that overflows.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    crate::clock::now().checked_add(timeout)
}

/// The earlier of two deadlines, where `None` is "no deadline".
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
