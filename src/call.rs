//! One ordinary call (here_now, where_now, the state calls, heartbeat,
//! leave, [`PubNub::send`]) as a sans-IO engine, [`Call`]: its attempts,
//! the client's [`RetryPolicy`] and the bound of each attempt, with no
//! socket and no clock; and the blocking driver behind every `execute()`,
//! which pumps that engine over a pooled kept connection.
//!
//! Bounds of an attempt: the connect timeout (TCP and TLS handshakes) and
//! the request timeout as a silence bound (the longest wait for the next
//! byte while sending or receiving: a body that keeps arriving is not cut)
//! are the connection's; the engine ends the attempt in flight at the
//! call's retry deadline (an absolute instant: every attempt, name lookup
//! and connect included, is cut when it passes, whatever phase it is in;
//! without a deadline, an attempt ends by the connect timeout plus three
//! request timeouts). A request's own timeout (long-polls) replaces the
//! request timeout as the silence bound and ends the attempt by it plus the
//! request timeout; such a request gets one attempt and no retry deadline.
//! The response head (8 KiB) and body (`max_response_size`) caps are the
//! connection's. A connection that fails or breaks a bound is dropped. A
//! reused idle connection that the server closed before answering is
//! replaced and the request sent again, once (by the connection, within
//! the same attempt).
//!
//! Retries ([`crate::retry`]): a transport failure, a 5xx or 429 status,
//! or a 2xx whose body the caller's check finds to report a 5xx or 429
//! (PubNub sends `{"status":503,"error":1,…}` with HTTP 200) is retried
//! after the policy's delay (jittered from the seed the engine was given)
//! or the server's `Retry-After`, within `max_attempts` and the deadline.
//! Each retry is logged at `warn`, a retryable failure not retried at
//! `debug` (target `pubnub_presence::retry`), with statuses and error
//! kinds only. The final error carries the number of attempts.

use crate::client::PubNub;
use crate::config::Config;
use crate::driver::Lane;
use crate::engine::{Engine, Step, Transmit};
use crate::error::{Error, Result, TransportErrorKind};
use crate::request::Request;
use crate::retry::{self, RetryPolicy};
use crate::transport::Response;
use std::fmt;
use std::time::{Duration, Instant};

/// The sans-IO engine of one ordinary call: sends the request, retries it
/// by the client's [`RetryPolicy`], and ends each attempt at its bound
/// (see the [module docs](self)). Every `execute()` and [`PubNub::send`]
/// is this engine pumped over a pooled connection; a program with its own
/// IO drives it through [`Engine`] (see [`crate::engine`]) and takes the
/// answer with [`Call::take_response`].
///
/// ```text
///   Ready
///     │ poll: Send (the first attempt, at once)
///     ▼
///  InFlight ─── handle_response: a 2xx that the check passes ──▶ Answered
///   ▲  │                                                    (take_response)
///   │  │ handle_failure, an error status, a 2xx whose body
///   │  │ reports a 5xx or 429, poll past the attempt's bound
///   │  ▼
///   │  retry::decide ── Stop: not retryable, attempts ─────────▶ Failed
///   │  │                used up, past the deadline        (the error, with
///   │  │ Retry: the policy's delay, or Retry-After         the attempts)
///   │  ▼
///   └─ BackingOff
///      poll at the delay's end: Send (the next attempt)
/// ```
///
/// Every error is returned once, by the call that saw it: a failed attempt
/// that is retried too (the engine then waits), so [`Call::is_done`] tells
/// the last one from the others.
///
/// ```
/// use pubnub_presence::call::Call;
/// use pubnub_presence::engine::{Engine, Step};
/// use pubnub_presence::{PubNub, Response};
/// use std::time::Duration;
/// # fn main() -> Result<(), pubnub_presence::Error> {
/// let pubnub = PubNub::builder()
///     .subscribe_key("demo")
///     .user_id("own-io")
///     .origin("http://127.0.0.1:9")
///     .build()?;
/// let request = pubnub.where_now().request()?;
/// let mut call = Call::new(pubnub.config(), request, 42);
/// let t0 = std::time::Instant::now();
/// let Step::Send(t) = call.poll(t0, false)? else { unreachable!() };
/// let url = pubnub.url_for(t.request)?; // send it with your own IO
/// # let _ = url;
/// // The server is busy: the call backs off (Retry-After: 1 s)...
/// let busy = Response { status: 503, body: b"{}".to_vec(), retry_after: Some(Duration::from_secs(1)) };
/// assert!(call.handle_response(t0, busy).is_err());
/// assert!(!call.is_done());
/// let at = t0 + Duration::from_secs(1);
/// assert!(matches!(call.poll(t0, false)?, Step::Wait(Some(w)) if w == at));
/// // ...and sends the request again when the second has passed.
/// let Step::Send(_) = call.poll(at, false)? else { unreachable!() };
/// let body = br#"{"status":200,"message":"OK","payload":{"channels":[]},"service":"Presence"}"#;
/// call.handle_response(at, Response { status: 200, body: body.to_vec(), retry_after: None })?;
/// assert!(call.is_done());
/// let answer = call.take_response().expect("answered");
/// assert_eq!(answer.status, 200);
/// # Ok(()) }
/// ```
pub struct Call<'a> {
    /// The request; each attempt sends a copy (signed as it goes out).
    request: Request,
    policy: RetryPolicy,
    /// The silence bound of each attempt.
    silence: Duration,
    /// How long one attempt may take in all, besides the call's deadline
    /// (`None`: no such bound, or one too far to count).
    attempt_span: Option<Duration>,
    phase: Phase,
    /// Attempts made so far.
    attempt: u32,
    /// When the first attempt went out: the retry deadline runs from here.
    started: Option<Instant>,
    /// The jitter's random sequence (from the seed given to `new`).
    random: u64,
    /// Sees each 2xx response before it is taken as the answer.
    check: Option<Check<'a>>,
    response: Option<Response>,
}

/// What sees a 2xx response before it is taken as a call's answer
/// ([`Call::check_with`]).
type Check<'a> = &'a mut dyn FnMut(&Response) -> Result<()>;

/// Where a [`Call`] is (see its state graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing sent yet: the first attempt goes out at the first poll.
    Ready,
    /// An attempt is in flight; the engine ends it at `bound` (`None`: no
    /// bound of the engine's; the connection's still apply), reporting
    /// `cut` as the timeout's detail.
    InFlight {
        bound: Option<Instant>,
        cut: &'static str,
    },
    /// A retryable failure: the next attempt goes out at `until`.
    BackingOff { until: Instant },
    /// A 2xx passed the check: the answer waits in `response`.
    Answered,
    /// The call ended with an error (returned once).
    Failed,
}

impl fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("phase", &self.phase)
            .field("attempt", &self.attempt)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<'a> Call<'a> {
    /// A call of `request` with the bounds and the retry policy of
    /// `config` (the client's [`PubNub::config`]). A request with its own
    /// timeout (a long-poll) gets one attempt and no retry deadline: that
    /// timeout bounds it alone. `seed` seeds the jitter of the retry
    /// delays (any number: a random one, so that many devices restarting
    /// together do not retry in step); the engine is a pure function of
    /// it, the instants and the responses it is given.
    pub fn new(config: &Config, request: Request, seed: u64) -> Self {
        let request_timeout = config.request_timeout();
        let timeout = request.timeout;
        let policy = match timeout {
            Some(_) => RetryPolicy {
                deadline: None,
                ..RetryPolicy::none()
            },
            None => config.retry_policy(),
        };
        // A bound too far to count is no bound.
        let attempt_span = match timeout {
            Some(t) => t.checked_add(request_timeout),
            None if policy.deadline.is_none() => request_timeout
                .checked_mul(3)
                .and_then(|t| t.checked_add(config.connect_timeout())),
            // The deadline bounds each attempt.
            None => None,
        };
        Call {
            request,
            policy,
            silence: timeout.unwrap_or(request_timeout),
            attempt_span,
            phase: Phase::Ready,
            attempt: 0,
            started: None,
            random: seed,
            check: None,
            response: None,
        }
    }

    /// Has `check` see every 2xx response before it is taken as the
    /// answer (the builders' `execute()` decodes the body there): its
    /// error ends the call, or, when it is a retryable server error (a 5xx
    /// or 429 reported in the body of a 2xx), is retried like a response
    /// with that status. Without a check every 2xx is the answer.
    ///
    /// NOTE(size): a trait object, so the engine is compiled once, not
    /// once per result type.
    #[must_use]
    pub fn check_with(mut self, check: Check<'a>) -> Self {
        self.check = Some(check);
        self
    }

    /// Whether the call ended: answered ([`Call::take_response`]) or
    /// failed (its error was returned).
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Answered | Phase::Failed)
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The answer, once the call has one (taken once).
    pub fn take_response(&mut self) -> Option<Response> {
        self.response.take()
    }

    /// Sends the next attempt at `now`.
    fn send(&mut self, now: Instant) -> Step {
        let started = *self.started.get_or_insert(now);
        self.attempt = self.attempt.saturating_add(1);
        // The whole attempt ends by the call's deadline (connect included,
        // whatever phase it is in) and by its own span; a deadline too far
        // to count is no deadline.
        let ends = self.policy.deadline.and_then(|d| started.checked_add(d));
        let own = self.attempt_span.and_then(|s| now.checked_add(s));
        let bound = crate::clock::earliest(own, ends);
        let cut = if ends.is_some() && bound == ends {
            "the call's retry deadline passed during the request"
        } else {
            "the request timed out"
        };
        self.phase = Phase::InFlight { bound, cut };
        Step::Send(Transmit {
            request: self.request.clone(),
            silence: self.silence,
            // The attempt's bound is the engine's (it covers the name
            // lookup and the connect too).
            total: None,
            fresh: false,
        })
    }

    /// The attempt in flight failed with `err` at `now` (`in_body`: a
    /// status found in the body of a 2xx): backs off for the next one, or
    /// ends the call. Returns the error: as it is when retried, with the
    /// attempt count when final.
    fn failed(
        &mut self,
        now: Instant,
        err: Error,
        retry_after: Option<Duration>,
        in_body: bool,
    ) -> Error {
        let attempt = self.attempt;
        let elapsed = self
            .started
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        let random = retry::next_random(&mut self.random);
        let why = retry::Why {
            error: &err,
            in_body,
            retry_after,
        };
        match retry::decide(&self.policy, attempt, &err, retry_after, elapsed, random) {
            retry::Decision::Retry(delay) => {
                // A delay too long to count (an absurd policy) is never
                // over: the call ends instead of waiting for ever.
                if let Some(until) = now.checked_add(delay) {
                    log::warn!(
                        target: retry::LOG_TARGET,
                        "attempt {attempt} of {} failed ({why}); retrying in {} ms",
                        self.policy.max_attempts,
                        delay.as_millis()
                    );
                    self.phase = Phase::BackingOff { until };
                    return err;
                }
            }
            retry::Decision::Stop(reason) => {
                if let Some(reason) = reason {
                    log::debug!(
                        target: retry::LOG_TARGET,
                        "attempt {attempt} failed ({why}); not retried: {reason}"
                    );
                }
            }
        }
        self.phase = Phase::Failed;
        retry::with_attempts(err, attempt)
    }
}

impl Engine for Call<'_> {
    /// The first attempt at once; the next one when a backoff is over;
    /// while one is in flight, the instant its bound passes, and past it
    /// `Err` (a timeout, counted like any failure: retried or final).
    /// Once the call is done: `Wait(None)`.
    fn poll(&mut self, now: Instant, in_flight: bool) -> Result<Step> {
        match self.phase {
            Phase::Ready => Ok(self.send(now)),
            Phase::BackingOff { until } if now >= until => Ok(self.send(now)),
            Phase::BackingOff { until } => Ok(Step::Wait(Some(until))),
            Phase::InFlight { .. } if !in_flight => {
                // The driver dropped the attempt without an outcome: it
                // failed, and is retried (or not) like any other failure.
                let e = Error::transport(
                    TransportErrorKind::Io,
                    "the request was dropped without an answer",
                );
                Err(self.failed(now, e, None, false))
            }
            Phase::InFlight { bound, cut } => match bound {
                Some(b) if now >= b => {
                    let e = Error::transport(TransportErrorKind::Timeout, cut);
                    Err(self.failed(now, e, None, false))
                }
                _ => Ok(Step::Wait(bound)),
            },
            Phase::Answered | Phase::Failed => Ok(Step::Wait(None)),
        }
    }

    /// A non-2xx status is a failed attempt (its error decoded from the
    /// body, its `Retry-After` honoured); a 2xx goes through the check.
    /// A response when no attempt is in flight is ignored.
    fn handle_response(&mut self, now: Instant, response: Response) -> Result<()> {
        if !matches!(self.phase, Phase::InFlight { .. }) {
            return Ok(());
        }
        if let Some(e) = response.error() {
            return Err(self.failed(now, e, response.retry_after, false));
        }
        let checked = match self.check.as_mut() {
            Some(check) => check(&response),
            None => Ok(()),
        };
        match checked {
            Ok(()) => {
                self.phase = Phase::Answered;
                self.response = Some(response);
                Ok(())
            }
            Err(e) if e.server().is_some() && retry::is_retryable(&e) => {
                Err(self.failed(now, e, response.retry_after, true))
            }
            Err(e) => {
                self.phase = Phase::Failed;
                Err(retry::with_attempts(e, self.attempt))
            }
        }
    }

    /// A transport failure of the attempt in flight (or a request that
    /// could not be sent): retried when retryable. Returned as it is when
    /// no attempt is in flight.
    fn handle_failure(&mut self, now: Instant, error: Error) -> Error {
        match self.phase {
            Phase::InFlight { .. } => self.failed(now, error, None, false),
            _ => error,
        }
    }
}

/// The error of a call that ended without a decoded answer (never, with
/// this driver).
///
/// NOTE(size): one out-of-line copy, not one per result type of `execute`.
#[inline(never)]
fn undecoded() -> Error {
    Error::transport(TransportErrorKind::Io, "no response was decoded")
}

impl PubNub {
    /// Sends a request built by one of the builders and returns the raw
    /// response if its HTTP status is 2xx; any other status becomes
    /// [`crate::ErrorKind::Server`]. Signs the request when a secret key is
    /// configured, and retries by the client's [`RetryPolicy`] (except
    /// long-polls, which carry their own timeout). Takes the request by
    /// value: its URL goes to the HTTP stack without a copy.
    ///
    /// A 2xx is returned as it is: a body that reports an error (PubNub
    /// sometimes sends `{"status":503,"error":1,…}` with HTTP 200) is found
    /// by the decoder. The builders' `execute()` decodes each attempt and
    /// retries such a body like the status it carries.
    pub fn send(&self, request: Request) -> Result<Response> {
        self.run(request, &mut |_| Ok(()))
    }

    /// Sends `request` and decodes each 2xx body with `decode`; a body
    /// reporting a retryable server error (5xx or 429, docs/PROTOCOL.md §2) is
    /// retried like an HTTP response with that status.
    pub(crate) fn execute<R>(
        &self,
        request: Request,
        mut decode: impl FnMut(&[u8]) -> Result<R>,
    ) -> Result<R> {
        let mut out = None;
        self.run(request, &mut |resp| {
            out = Some(decode(&resp.body)?);
            Ok(())
        })?;
        // `run` returns Ok only after `accept` stored a result.
        out.ok_or_else(undecoded)
    }

    /// The driver of an ordinary call: the [`Call`] engine pumped over a
    /// connection from the pool (put back afterwards when a complete
    /// response left it open). `accept` sees every 2xx response; its error
    /// ends the call, or is retried when it is a retryable server error.
    ///
    /// NOTE(size): `accept` is a trait object so the loop is compiled once,
    /// not once per result type.
    fn run(
        &self,
        request: Request,
        accept: &mut dyn FnMut(&Response) -> Result<()>,
    ) -> Result<Response> {
        // The jitter's seed: the one random number of the call.
        let seed = crate::clock::random_u64();
        let mut call = Call::new(self.config(), request, seed).check_with(accept);
        let mut lane = Lane::pooled(self.pool().take());
        let result = loop {
            let pumped = lane.pump(self, &mut call, None);
            // Until the call is done, an error is a failed attempt that is
            // retried: the engine waits out its delay in the next pump.
            // (`Ok` without an answer: never, with this driver.)
            if call.is_done() || pumped.is_ok() {
                break pumped.and_then(|_| {
                    call.take_response().ok_or_else(|| {
                        Error::transport(TransportErrorKind::Io, "no response was taken")
                    })
                });
            }
        };
        self.pool().put(lane.into_conn());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn config(build: impl FnOnce(crate::PubNubBuilder) -> crate::PubNubBuilder) -> Config {
        build(
            PubNub::builder()
                .subscribe_key("demo")
                .user_id("device")
                .origin("http://127.0.0.1:9"),
        )
        .build()
        .unwrap()
        .config()
        .clone()
    }

    fn policy(max_attempts: u32, deadline: Option<Duration>) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(100),
            deadline,
        }
    }

    fn request(config: &Config) -> Request {
        let url = format!("{}/v2/presence/sub-key/demo/uuid/device", config.origin());
        crate::request::finish(config, url).unwrap()
    }

    fn reply(status: u16, body: &str, retry_after: Option<u64>) -> Response {
        Response {
            status,
            body: body.as_bytes().to_vec(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sent(step: Result<Step>) -> Transmit {
        match step {
            Ok(Step::Send(t)) => t,
            other => panic!("expected a send, got {other:?}"),
        }
    }

    fn waits(step: Result<Step>) -> Option<Instant> {
        match step {
            Ok(Step::Wait(at)) => at,
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    fn timeout_detail(e: &Error) -> String {
        match e.kind() {
            ErrorKind::Transport {
                kind: TransportErrorKind::Timeout,
                ..
            } => e.to_string(),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[test]
    fn first_attempt_at_once_then_answered() {
        let c = config(|b| b.request_timeout(Duration::from_secs(2)));
        let mut call = Call::new(&c, request(&c), 1);
        let t0 = Instant::now();
        let t = sent(call.poll(t0, false));
        assert_eq!(t.silence, Duration::from_secs(2));
        assert!(!t.fresh);
        // In flight: wait for the answer until the default 30 s deadline.
        assert_eq!(
            waits(call.poll(t0, true)),
            Some(t0 + Duration::from_secs(30))
        );
        call.handle_response(t0 + ms(5), reply(200, "{}", None))
            .unwrap();
        assert!(call.is_done());
        assert_eq!(call.attempts(), 1);
        assert_eq!(call.take_response().map(|r| r.status), Some(200));
        assert_eq!(call.take_response().map(|r| r.status), None);
        assert_eq!(waits(call.poll(t0 + ms(6), false)), None);
    }

    #[test]
    fn retries_with_jittered_delays_then_gives_up_with_the_count() {
        let c = config(|b| b.retry_policy(policy(3, None)));
        let mut call = Call::new(&c, request(&c), 7);
        let mut now = Instant::now();
        for attempt in 1..=3u32 {
            sent(call.poll(now, false));
            let e = call.handle_failure(
                now,
                Error::transport(TransportErrorKind::Connect, "refused"),
            );
            if attempt < 3 {
                assert!(!call.is_done(), "{attempt}");
                assert!(!e.to_string().contains("attempts"), "{e}");
                let at = waits(call.poll(now, false)).unwrap();
                // Half the delay at least, the whole at most.
                let wait = at - now;
                assert!(wait >= ms(50) && wait <= ms(100), "{wait:?}");
                // Not before its time.
                assert!(waits(call.poll(at - ms(1), false)).is_some());
                now = at;
            } else {
                assert!(call.is_done());
                assert!(e.to_string().contains("(after 3 attempts)"), "{e}");
            }
        }
        assert_eq!(call.attempts(), 3);
        assert_eq!(waits(call.poll(now, false)), None);
    }

    #[test]
    fn jitter_replays_from_the_seed() {
        let c = config(|b| b.retry_policy(policy(5, None)));
        let run = |seed| {
            let mut call = Call::new(&c, request(&c), seed);
            let t0 = Instant::now();
            let mut now = t0;
            let mut waits_seen = Vec::new();
            for _ in 0..4 {
                sent(call.poll(now, false));
                call.handle_failure(now, Error::transport(TransportErrorKind::Io, "reset"));
                let at = waits(call.poll(now, false)).unwrap();
                waits_seen.push(at - now);
                now = at;
            }
            waits_seen
        };
        assert_eq!(run(11), run(11));
        assert_ne!(run(11), run(12));
    }

    #[test]
    fn the_attempt_in_flight_ends_at_the_deadline() {
        let c = config(|b| b.retry_policy(policy(3, Some(ms(1100)))));
        let mut call = Call::new(&c, request(&c), 3);
        let t0 = Instant::now();
        sent(call.poll(t0, false));
        let bound = waits(call.poll(t0 + ms(10), true)).unwrap();
        assert_eq!(bound, t0 + ms(1100));
        // Not before...
        assert!(waits(call.poll(bound - ms(1), true)).is_some());
        // ...at it: a timeout, not retried (nothing is left of the deadline).
        let e = call.poll(bound, true).unwrap_err();
        assert!(
            timeout_detail(&e).contains("the call's retry deadline passed during the request"),
            "{e}"
        );
        assert!(call.is_done());
    }

    #[test]
    fn a_retry_is_cut_by_the_deadline_counted_from_the_first_attempt() {
        let c = config(|b| b.retry_policy(policy(3, Some(ms(1000)))));
        let mut call = Call::new(&c, request(&c), 3);
        let t0 = Instant::now();
        sent(call.poll(t0, false));
        call.handle_response(t0 + ms(200), reply(503, "{}", None))
            .unwrap_err();
        let at = waits(call.poll(t0 + ms(200), false)).unwrap();
        sent(call.poll(at, false));
        assert_eq!(waits(call.poll(at, true)), Some(t0 + ms(1000)));
        // A delay longer than what is left ends the call at once.
        let e = call.handle_failure(t0 + ms(950), Error::transport(TransportErrorKind::Io, "x"));
        assert!(call.is_done());
        assert!(e.to_string().contains("(after 2 attempts)"), "{e}");
    }

    #[test]
    fn without_a_deadline_an_attempt_has_its_own_bound() {
        let c = config(|b| {
            b.retry_policy(policy(2, None))
                .connect_timeout(Duration::from_secs(1))
                .request_timeout(Duration::from_secs(2))
        });
        let mut call = Call::new(&c, request(&c), 5);
        let t0 = Instant::now();
        sent(call.poll(t0, false));
        // connect_timeout + 3 x request_timeout.
        let bound = waits(call.poll(t0, true)).unwrap();
        assert_eq!(bound, t0 + Duration::from_secs(7));
        let e = call.poll(bound, true).unwrap_err();
        assert!(timeout_detail(&e).contains("the request timed out"), "{e}");
        // Retried: timeouts are.
        assert!(!call.is_done());
        let at = waits(call.poll(bound, false)).unwrap();
        sent(call.poll(at, false));
        assert_eq!(
            waits(call.poll(at, true)),
            Some(at + Duration::from_secs(7))
        );
    }

    #[test]
    fn a_long_poll_gets_one_attempt_bounded_by_its_timeout() {
        let c = config(|b| b.request_timeout(Duration::from_secs(2)));
        let mut req = request(&c);
        req.timeout = Some(Duration::from_secs(300));
        let mut call = Call::new(&c, req, 5);
        let t0 = Instant::now();
        let t = sent(call.poll(t0, false));
        assert_eq!(t.silence, Duration::from_secs(300));
        // No retry deadline: its own timeout plus the request timeout.
        assert_eq!(
            waits(call.poll(t0, true)),
            Some(t0 + Duration::from_secs(302))
        );
        let e = call.handle_failure(t0 + ms(1), Error::transport(TransportErrorKind::Io, "x"));
        assert!(call.is_done());
        assert_eq!(
            e.to_string(),
            Error::transport(TransportErrorKind::Io, "x").to_string()
        );
    }

    #[test]
    fn retry_after_wins_and_past_the_deadline_ends_the_call() {
        let c = config(|b| b.retry_policy(policy(3, Some(Duration::from_secs(5)))));
        let mut call = Call::new(&c, request(&c), 9);
        let t0 = Instant::now();
        sent(call.poll(t0, false));
        call.handle_response(t0, reply(429, "{}", Some(1)))
            .unwrap_err();
        assert_eq!(
            waits(call.poll(t0, false)),
            Some(t0 + Duration::from_secs(1))
        );
        sent(call.poll(t0 + Duration::from_secs(1), false));
        let e = call
            .handle_response(t0 + Duration::from_secs(1), reply(503, "{}", Some(60)))
            .unwrap_err();
        assert!(call.is_done());
        match e.kind() {
            ErrorKind::Server(s) => assert_eq!((s.status, s.attempts), (503, 2)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_check_decides_on_a_2xx() {
        let c = config(|b| b.retry_policy(policy(3, None)));
        let mut seen = 0;
        let mut check = |r: &Response| -> Result<()> {
            seen += 1;
            // The first 2xx reports a 503 in its body, the second a 400.
            crate::envelope::status_error(if seen == 1 { 503 } else { 400 }, &r.body)
                .map_or(Ok(()), Err)
        };
        let mut call = Call::new(&c, request(&c), 2).check_with(&mut check);
        let t0 = Instant::now();
        sent(call.poll(t0, false));
        call.handle_response(t0, reply(200, "{}", None))
            .unwrap_err();
        assert!(!call.is_done());
        let at = waits(call.poll(t0, false)).unwrap();
        sent(call.poll(at, false));
        let e = call
            .handle_response(at, reply(200, "{}", None))
            .unwrap_err();
        assert!(call.is_done());
        assert!(call.take_response().is_none());
        match e.kind() {
            ErrorKind::Server(s) => assert_eq!((s.status, s.attempts), (400, 2)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn not_retried_and_stray_inputs() {
        let c = config(|b| b);
        let mut call = Call::new(&c, request(&c), 2);
        let t0 = Instant::now();
        // Nothing in flight yet: a stray response or failure changes nothing.
        call.handle_response(t0, reply(200, "{}", None)).unwrap();
        let e = call.handle_failure(t0, Error::transport(TransportErrorKind::Io, "x"));
        assert_eq!(
            e.to_string(),
            Error::transport(TransportErrorKind::Io, "x").to_string()
        );
        assert!(!call.is_done());
        sent(call.poll(t0, false));
        let e = call
            .handle_response(t0, reply(403, "{}", None))
            .unwrap_err();
        assert!(call.is_done());
        match e.kind() {
            ErrorKind::Server(s) => assert_eq!((s.status, s.attempts), (403, 1)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn absurd_policies_never_overflow() {
        // Past what the builder accepts: the engine alone must not overflow.
        let mut c = config(|b| b);
        c.retry = RetryPolicy {
            max_attempts: u32::MAX,
            base_delay: Duration::MAX,
            max_delay: Duration::MAX,
            deadline: Some(Duration::MAX),
        };
        let mut call = Call::new(&c, request(&c), u64::MAX);
        let t0 = Instant::now();
        sent(call.poll(t0, false));
        // A deadline too far to count is no bound.
        assert_eq!(waits(call.poll(t0, true)), None);
        let e = call
            .handle_response(t0, reply(503, "{}", Some(u64::MAX)))
            .unwrap_err();
        // Retry-After of u64::MAX seconds: too long to wait for ever.
        assert!(call.is_done(), "{e}");
    }

    /// A driver that dropped the attempt without an outcome (polls with
    /// `in_flight` false) gets a failure at once, and the retry after the
    /// policy's delay: no endless wait on a past instant.
    #[test]
    fn an_attempt_the_driver_dropped_is_a_failure() {
        let secs = Duration::from_secs;
        let config = config(|b| b.retry_policy(policy(3, Some(secs(30)))));
        let req = PubNub::from_config(config.clone())
            .unwrap()
            .where_now()
            .request()
            .unwrap();
        let mut call = Call::new(&config, req, 7);
        let t0 = Instant::now();
        assert!(matches!(call.poll(t0, false), Ok(Step::Send(_))));
        let e = call.poll(t0 + secs(1), false).unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
        assert!(
            matches!(call.poll(t0 + secs(1), false), Ok(Step::Wait(Some(at))) if at > t0 + secs(1))
        );
        assert!(!call.is_done());
    }
}
