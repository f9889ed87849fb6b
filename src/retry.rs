//! Retrying idempotent presence requests.
//!
//! Presence calls are GETs, so a failed one can be sent again. Retried:
//! connection failures, timeouts, resets (I/O errors), name lookups that
//! got no answer (DNS), HTTP 5xx and 429. Never retried: other 4xx, TLS
//! failures, a name that does not exist, oversized or malformed bodies.
//! A 2xx whose body reports a 5xx or 429 (docs/PROTOCOL.md §2: the service
//! sends `{"status":503,"error":1,…}` with HTTP 200) is retried like that
//! status. Delays grow exponentially with jitter, a server's `Retry-After`
//! wins (capped at `max_delay` when no deadline is set), and a total
//! deadline bounds the whole call: a retry that would end past it is not
//! made, so a `Retry-After` longer than what is left of the deadline ends
//! the call with the server's error at once. Every duration here saturates:
//! no header value and no policy can overflow it.
//!
//! The rules are here, as pure functions of their inputs (the jitter
//! comes in as a number); the call that follows them, attempt after
//! attempt, is the sans-IO engine [`Call`](crate::call::Call).
//!
//! Each retry is logged at `warn` (target `pubnub_presence::retry`) with
//! the attempt, why it failed and the delay; a retryable failure that is
//! not retried (attempts used up, deadline) is logged at `debug`. Records
//! carry statuses and transport error kinds only: never the URL, keys,
//! tokens, signatures, or the server's message text.

use crate::error::{Error, ErrorKind};
use std::fmt;
use std::time::Duration;

/// The `log` target of the retry records.
pub(crate) const LOG_TARGET: &str = "pubnub_presence::retry";

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
    /// A bound on the whole call, attempts and delays together: an attempt
    /// still running when it passes is cut there (connect, send, head or
    /// body), so the call ends by it. `None`: see
    /// [`crate::PubNubBuilder::request_timeout`] for what bounds a call then.
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
    /// that many devices restarting together do not retry in step. The
    /// jitter comes from `random` (any value: the caller's random number),
    /// so the delay is a pure function of its inputs.
    pub(crate) fn delay(&self, attempt: u32, random: u64) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let full = exp.min(self.max_delay);
        let half = full / 2;
        let span = u64::try_from((full - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = if span == 0 { 0 } else { random % span };
        half + Duration::from_nanos(jitter)
    }
}

pub(crate) use crate::clock::random_u64;
pub(crate) use crate::error::is_retryable;

/// The next number of a splitmix64 sequence whose state is `state`: the
/// jitter of one call's retries from the one seed it was given, so the
/// call engine stays a pure function of its inputs.
pub(crate) fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Sleep this long, then try again.
    Retry(Duration),
    /// Return the error; `Some` says why a retryable error was not retried.
    Stop(Option<StopReason>),
}

/// Why a retryable failure ends the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// `max_attempts` were made.
    Attempts(u32),
    /// The server's `Retry-After` is longer than what is left of the deadline.
    RetryAfterPastDeadline {
        retry_after: Duration,
        left: Duration,
    },
    /// The next backoff delay would end past the deadline.
    DelayPastDeadline { delay: Duration, left: Duration },
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            StopReason::Attempts(n) => write!(f, "all {n} attempts made"),
            StopReason::RetryAfterPastDeadline { retry_after, left } => write!(
                f,
                "Retry-After of {} s is longer than the {} ms left of the deadline",
                retry_after.as_secs(),
                left.as_millis()
            ),
            StopReason::DelayPastDeadline { delay, left } => write!(
                f,
                "a {} ms delay would pass the deadline ({} ms left)",
                delay.as_millis(),
                left.as_millis()
            ),
        }
    }
}

/// Decides whether attempt number `attempt` (from 1), which failed with
/// `err` after `elapsed` of the call, is followed by another; `random`
/// jitters the backoff delay ([`RetryPolicy::delay`]). Pure and total: no
/// input overflows or panics.
pub(crate) fn decide(
    policy: &RetryPolicy,
    attempt: u32,
    err: &Error,
    retry_after: Option<Duration>,
    elapsed: Duration,
    random: u64,
) -> Decision {
    if !is_retryable(err) {
        return Decision::Stop(None);
    }
    if attempt >= policy.max_attempts {
        return Decision::Stop(Some(StopReason::Attempts(attempt)));
    }
    let Some(deadline) = policy.deadline else {
        // Without a deadline a server's Retry-After is capped at max_delay,
        // so a device never sleeps for hours on one header.
        let delay = match retry_after {
            Some(r) => r.min(policy.max_delay),
            None => policy.delay(attempt, random),
        };
        return Decision::Retry(delay);
    };
    let left = deadline.saturating_sub(elapsed);
    match retry_after {
        Some(r) if r >= left => Decision::Stop(Some(StopReason::RetryAfterPastDeadline {
            retry_after: r,
            left,
        })),
        Some(r) => Decision::Retry(r),
        None => {
            let delay = policy.delay(attempt, random);
            if delay >= left {
                Decision::Stop(Some(StopReason::DelayPastDeadline { delay, left }))
            } else {
                Decision::Retry(delay)
            }
        }
    }
}

/// Why an attempt failed, for a log record: the status (and where it came
/// from) or the transport error, never a URL or the server's message text
/// (a 404's message echoes the path, which holds the subscribe key).
pub(crate) struct Why<'a> {
    pub error: &'a Error,
    /// The status came from the body of a 2xx.
    pub in_body: bool,
    pub retry_after: Option<Duration>,
}

impl fmt::Display for Why<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.error.kind() {
            ErrorKind::Server(s) => {
                write!(f, "server error {}", s.status)?;
                if self.in_body {
                    f.write_str(" in the body of a 2xx")?;
                }
            }
            ErrorKind::Transport { .. } => fmt::Display::fmt(self.error, f)?,
            ErrorKind::Decode { offset, reason } => {
                write!(f, "malformed body at byte {offset}: {reason}")?;
            }
            _ => f.write_str("request failed")?,
        }
        if let Some(r) = self.retry_after {
            write!(f, ", Retry-After {} s", r.as_secs())?;
        }
        Ok(())
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
/// used by PubNub's front end and is ignored). A number too large for a
/// `u64` saturates: it is still a request to wait longer than any deadline.
/// Public for the fuzz targets (`__internal`); not part of the API.
#[doc(hidden)]
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let digits = value.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = crate::json::digits_u64(digits).unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ServerError, TransportErrorKind};

    #[test]
    fn delays_grow_capped_and_jittered() {
        let p = RetryPolicy::default();
        for (attempt, full) in [(1, 500), (2, 1000), (3, 2000), (6, 10_000), (40, 10_000)] {
            let mut rng = u64::from(attempt);
            for _ in 0..50 {
                let d = p.delay(attempt, next_random(&mut rng));
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
            t(TransportErrorKind::Dns),
        ];
        let no = [
            server(400),
            server(403),
            server(404),
            t(TransportErrorKind::Tls),
            t(TransportErrorKind::BodyTooLarge),
            t(TransportErrorKind::Protocol),
            t(TransportErrorKind::NameNotFound),
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

    #[test]
    fn retry_after_saturates() {
        assert_eq!(
            parse_retry_after("18446744073709551615"),
            Some(Duration::from_secs(u64::MAX))
        );
        // Past u64: still "longer than any deadline", not ignored.
        assert_eq!(
            parse_retry_after("99999999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", " ", "-1", "1.5", "+3", "0x10", "１"] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn decisions_at_the_edges() {
        let unavailable = Error::from_server(ServerError {
            status: 503,
            ..ServerError::default()
        });
        let p = RetryPolicy::default();
        let huge = Some(Duration::from_secs(u64::MAX));
        // A Retry-After past the deadline ends the call at once.
        assert!(matches!(
            decide(&p, 1, &unavailable, huge, Duration::ZERO, 7),
            Decision::Stop(Some(StopReason::RetryAfterPastDeadline { .. }))
        ));
        assert_eq!(
            decide(
                &p,
                1,
                &unavailable,
                Some(Duration::from_secs(2)),
                Duration::ZERO,
                7
            ),
            Decision::Retry(Duration::from_secs(2))
        );
        // Elapsed past the deadline (or absurd) never underflows.
        assert!(matches!(
            decide(&p, 1, &unavailable, None, Duration::MAX, 7),
            Decision::Stop(Some(StopReason::DelayPastDeadline { .. }))
        ));
        // Without a deadline the header is capped at max_delay.
        let open = RetryPolicy {
            deadline: None,
            ..p
        };
        assert_eq!(
            decide(&open, 1, &unavailable, huge, Duration::MAX, 7),
            Decision::Retry(p.max_delay)
        );
        // Extreme policies: no overflow anywhere.
        let extreme = RetryPolicy {
            max_attempts: u32::MAX,
            base_delay: Duration::MAX,
            max_delay: Duration::MAX,
            deadline: Some(Duration::MAX),
        };
        for attempt in [1, 2, 64, u32::MAX - 1] {
            let _ = extreme.delay(attempt, u64::MAX);
            let _ = decide(&extreme, attempt, &unavailable, huge, Duration::MAX, 7);
            let _ = decide(&extreme, attempt, &unavailable, None, Duration::ZERO, 7);
        }
        assert_eq!(
            decide(&p, 3, &unavailable, None, Duration::ZERO, 7),
            Decision::Stop(Some(StopReason::Attempts(3)))
        );
        assert_eq!(
            decide(&p, 1, &Error::decode(0, "x"), None, Duration::ZERO, 7),
            Decision::Stop(None)
        );
    }

    #[test]
    fn why_names_the_status_never_the_message() {
        let e = Error::from_server(ServerError {
            status: 503,
            message: "Not found: '/v2/presence/sub-key/SUBKEY/...'".into(),
            service: "Presence".into(),
            ..ServerError::default()
        });
        let why = Why {
            error: &e,
            in_body: true,
            retry_after: Some(Duration::from_secs(2)),
        }
        .to_string();
        assert_eq!(
            why,
            "server error 503 in the body of a 2xx, Retry-After 2 s"
        );
    }
}
