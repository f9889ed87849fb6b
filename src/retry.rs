//! Retrying idempotent presence requests.
//!
//! Presence calls are GETs, so a failed one can be sent again. Retried:
//! connection failures, timeouts, resets (I/O errors), HTTP 5xx and 429.
//! Never retried: other 4xx, TLS failures, oversized or malformed bodies.
//! Delays grow exponentially with jitter, a server's `Retry-After` wins
//! (capped at `max_delay` when no deadline is set), and a total deadline
//! bounds the whole call: a retry that would end past it is not made.

use crate::error::{Error, ErrorKind, TransportErrorKind};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How a client retries failed requests. `RetryPolicy::default()`: 3
/// attempts, 0.5 s base delay doubling up to 10 s, 30 s total deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retries).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// The longest delay between attempts.
    pub max_delay: Duration,
    /// A bound on the whole call, attempts and delays together.
    pub deadline: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            deadline: Some(Duration::from_secs(30)),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The delay before attempt `attempt + 1` (attempt counts from 1):
    /// `base * 2^(attempt-1)`, capped, then jittered into its upper half so
    /// that many devices restarting together do not retry in step.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let full = exp.min(self.max_delay);
        let half = full / 2;
        let span = u64::try_from((full - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = if span == 0 { 0 } else { random_u64() % span };
        half + Duration::from_nanos(jitter)
    }
}

/// A small non-cryptographic random number (xorshift over the clock and a
/// counter): jitter needs spread, not secrecy.
fn random_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
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

/// Whether an error is worth another attempt.
pub(crate) fn is_retryable(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::Transport { kind, .. } => matches!(
            kind,
            TransportErrorKind::Connect | TransportErrorKind::Timeout | TransportErrorKind::Io
        ),
        ErrorKind::Server(s) => s.status >= 500 || s.status == 429,
        _ => false,
    }
}

/// Records how many attempts were made in the final error.
pub(crate) fn with_attempts(e: Error, attempts: u32) -> Error {
    if attempts <= 1 {
        return e;
    }
    let mut e = e;
    match e.kind_mut() {
        ErrorKind::Server(s) => s.attempts = attempts,
        ErrorKind::Transport { detail, .. } => {
            *detail = format!("{detail} (after {attempts} attempts)").into();
        }
        _ => {}
    }
    e
}

/// Parses a `Retry-After` value in seconds (the HTTP-date form is not
/// used by PubNub's front end and is ignored).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    crate::json::digits_u64(value.trim()).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ServerError;

    #[test]
    fn delays_grow_capped_and_jittered() {
        let p = RetryPolicy::default();
        for (attempt, full) in [(1, 500), (2, 1000), (3, 2000), (6, 10_000), (40, 10_000)] {
            for _ in 0..50 {
                let d = p.delay(attempt);
                assert!(d >= Duration::from_millis(full / 2), "{attempt}: {d:?}");
                assert!(d <= Duration::from_millis(full), "{attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn what_is_retried() {
        let server = |status| {
            Error::from_server(ServerError {
                status,
                ..ServerError::default()
            })
        };
        let t = |kind| Error::transport(kind, "x");
        let yes = [
            server(500),
            server(503),
            server(429),
            t(TransportErrorKind::Connect),
            t(TransportErrorKind::Timeout),
            t(TransportErrorKind::Io),
        ];
        let no = [
            server(400),
            server(403),
            server(404),
            t(TransportErrorKind::Tls),
            t(TransportErrorKind::BodyTooLarge),
            t(TransportErrorKind::Protocol),
            t(TransportErrorKind::Dns),
            Error::decode(0, "x"),
            Error::input("channels", "x"),
        ];
        assert!(yes.iter().all(is_retryable));
        assert!(!no.iter().any(is_retryable));
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        match with_attempts(server(503), 3).into_kind() {
            ErrorKind::Server(s) => assert_eq!(s.attempts, 3),
            e => panic!("{e:?}"),
        }
        assert_eq!(
            with_attempts(t(TransportErrorKind::Timeout), 2).to_string(),
            "timed out: x (after 2 attempts)"
        );
    }
}
