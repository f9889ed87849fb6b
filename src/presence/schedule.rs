//! Staying present without a runtime: the heartbeat schedule as a sans-IO
//! engine ([`HeartbeatSchedule`]), the same schedule driven by the
//! caller's own loop on a kept connection ([`Heartbeater`]), the device
//! loop that keeps a user present and watches events in one bounded call
//! ([`PresenceLoop`]), and an optional helper that runs the schedule on
//! one background thread ([`HeartbeatThread`]).
//!
//! Everything here waits at most the budget its caller gives: a heartbeat
//! that cannot complete in time stays in flight on its kept connection and
//! is finished by a later call; a failed one is reported once and tried
//! again after a backoff (0.5 s doubling to 30 s, never beyond a quarter
//! of the heartbeat interval), not at every call.

use crate::backoff::Backoff;
use crate::client::PubNub;
use crate::clock::{deadline_after, earliest};
use crate::driver::Lane;
use crate::engine::{Engine, Step, Transmit};
use crate::error::{Error, Result};
use crate::presence::events::{PresenceEvent, PresenceEvents};
use crate::presence::link::{FailureLog, Link, LinkState};
use crate::request::Request;
use crate::state;
use crate::transport::Response;
use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a failed request is logged.
const FAILURE_LOG: FailureLog = FailureLog {
    target: "pubnub_presence::heartbeat",
    message: "heartbeat failed, next attempt in",
};

/// Where a [`HeartbeatSchedule`] stands (see the state graph in its
/// docs), from [`HeartbeatSchedule::phase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Nothing to send on its own: nothing is joined, or automatic
    /// heartbeats are off (interval 0).
    Idle,
    /// The next heartbeat is due at this instant, one interval after the
    /// previous one was due.
    Scheduled(Instant),
    /// A heartbeat is due now: the next [`poll`](Engine::poll) sends it.
    Due,
    /// A heartbeat is in flight.
    InFlight {
        /// When it was due (the next is due one interval after this).
        due: Instant,
        /// When it was sent, moved on by a suspend: it is ended with a
        /// timeout at `sent` + [`HeartbeatSchedule::in_flight_bound`].
        sent: Instant,
    },
    /// The last heartbeat failed: the next attempt goes out at this
    /// instant (0.5 s doubling, at most a quarter of the interval, or the
    /// server's `Retry-After` within that).
    BackingOff(Instant),
}

/// The heartbeat in flight.
#[derive(Debug, Clone, Copy)]
struct Flight {
    /// The instant it was due: the next is due one interval after it.
    due: Instant,
    /// When it was sent: it is ended once it has been in flight for
    /// [`HeartbeatSchedule::in_flight_bound`]. A suspend moves this on.
    sent_at: Instant,
    /// The last poll while it was in flight: a gap longer than the bound
    /// since (the device or the caller did not run: a suspend) moves the
    /// bound on by the gap, so what arrived meanwhile is read before the
    /// bound applies again, from the resume.
    polled_at: Instant,
    /// The bound had passed at the last poll, which asked for one more
    /// read of what arrived: the next poll past the bound ends it.
    overdue: bool,
}

/// The heartbeat schedule as a sans-IO engine: what is joined, the
/// per-channel state, when the next heartbeat is due, the one in flight
/// and its bound, the backoff and the link state, with no socket and no
/// clock. [`Heartbeater`] is this engine pumped over one kept connection;
/// a program with its own IO makes one with [`HeartbeatSchedule::new`]
/// and drives it through [`Engine`] (see [`crate::engine`]).
///
/// ```text
///              join / join_groups / set_state: a change
///   Idle ───────────────────────────────────────────────▶ Due ◀──────────┐
///   (nothing joined,                                       │             │
///    or interval 0)                poll: Send(heartbeat    │             │
///     ▲                             with every state)      ▼             │
///     │ forget: nothing           ┌─────────────────── InFlight ───────▶─┤
///     │ joined any more           │ 2xx                    │   2xx, but  │
///     │                           ▼                        │   a change  │
///     │              Scheduled(due + interval)             │   came      │
///     │              (drift-free: counted from the         │   meanwhile │
///     │               previous due instant) ── at it ──────┼──────────▶──┤
///     │                                                    │             │
///     │         handle_failure, an error status, a bad     │             │
///     │         body, or the in-flight bound (poll: Err)   ▼             │
///     │                                               BackingOff ──▶─────┘
///     │                                        (0.5 s doubling, at  at its
///     │                                         most interval / 4)  instant
/// ```
///
/// The in-flight bound ([`in_flight_bound`](HeartbeatSchedule::in_flight_bound):
/// `request_timeout`, or the interval if shorter) holds however the server
/// trickles bytes or repeats 1xx heads: past it, [`poll`](Engine::poll)
/// returns a timeout error (after one more read of what arrived) and the
/// driver drops the request. A poll later than its previous one by more
/// than the bound, or a driver's wait that overran by far
/// ([`Engine::resumed`]: the device was suspended in it), moves the bound
/// on by that much, so what arrived meanwhile is read before it applies
/// again, from the resume.
///
/// The schedule does not drift: the next heartbeat is due one interval
/// after the previous one was due, however long the request took. A
/// change of what is joined or of a state makes a heartbeat due at once
/// (from `Scheduled`; from `BackingOff`, at the backoff's end, at most a
/// quarter of the interval: a loop that changes its state on every turn
/// during an outage does not send a heartbeat each time, and
/// [`restart`](HeartbeatSchedule::restart), which `PresenceLoop` calls
/// when its event stream is answered again, ends the backoff at once);
/// while one is in flight, the next is due as soon as that one ends.
/// [`forget`](HeartbeatSchedule::forget) (a leave was acknowledged) ends
/// the one in flight, which still names what was left.
///
/// ```
/// use pubnub_presence::engine::{Engine, Step};
/// use pubnub_presence::presence::schedule::{HeartbeatSchedule, Phase};
/// use pubnub_presence::{PubNub, Response};
/// use std::time::{Duration, Instant};
/// # fn main() -> Result<(), pubnub_presence::Error> {
/// let pubnub = PubNub::builder()
///     .subscribe_key("demo")
///     .user_id("own-io")
///     .heartbeat_interval(60)
///     .origin("http://127.0.0.1:9")
///     .build()?;
/// let mut schedule = HeartbeatSchedule::new(&pubnub);
/// schedule.join(vec!["lobby".into()])?;
/// schedule.set_state_json("lobby", r#"{"battery":87}"#)?;
/// let t0 = Instant::now(); // any instant: the engine never reads the clock
/// let Step::Send(t) = schedule.poll(t0, false)? else { unreachable!() };
/// let url = pubnub.url_for(t.request)?; // send it with your own IO, then:
/// # let _ = url;
/// let t1 = t0 + Duration::from_millis(80);
/// let ok = br#"{"status":200,"message":"OK","service":"Presence"}"#;
/// schedule.handle_response(t1, Response { status: 200, body: ok.to_vec(), retry_after: None })?;
/// assert!(schedule.is_present(t1));
/// // The next one is due an interval after this one was.
/// let next = t0 + Duration::from_secs(60);
/// assert_eq!(schedule.phase(t1), Phase::Scheduled(next));
/// assert!(matches!(schedule.poll(t1, false)?, Step::Wait(Some(at)) if at == next));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct HeartbeatSchedule {
    /// The client, for its configuration and the request builders.
    pubnub: PubNub,
    channels: Vec<String>,
    groups: Vec<String>,
    state: BTreeMap<String, String>,
    interval: Option<Duration>,
    next_due: Option<Instant>,
    /// The heartbeat in flight.
    flight: Option<Flight>,
    /// Joined channels or state changed while a heartbeat was in flight.
    changed: bool,
    backoff: Backoff,
    last_success: Option<Instant>,
    link: Link,
    /// The run of failures (since when) whose backoff a
    /// [`restart`](HeartbeatSchedule::restart) already ended: once per run.
    restarted: Option<Instant>,
}

impl HeartbeatSchedule {
    /// A schedule using the client's `heartbeat_interval` (0 = never due on
    /// its own), with nothing joined.
    pub fn new(pubnub: &PubNub) -> Self {
        let secs = pubnub.config().heartbeat_interval();
        HeartbeatSchedule {
            pubnub: pubnub.clone(),
            channels: Vec::new(),
            groups: Vec::new(),
            state: BTreeMap::new(),
            interval: (secs > 0).then(|| Duration::from_secs(u64::from(secs))),
            next_due: None,
            flight: None,
            changed: false,
            backoff: Backoff::default(),
            last_success: None,
            link: Link::new("heartbeats"),
            restarted: None,
        }
    }

    /// Adds channels; when any is new, the next heartbeat is due at once
    /// (after a running backoff: see the type's docs).
    ///
    /// Fails, joining none of them, when a name is empty or contains `,`,
    /// or when the heartbeat would no longer fit in
    /// [`MAX_URL_LEN`](crate::request::MAX_URL_LEN).
    pub fn join(&mut self, channels: Vec<String>) -> Result<()> {
        crate::request::check_names("channels", &channels)?;
        let before = self.channels.len();
        if add_new(&mut self.channels, channels) {
            if let Err(e) = self.check_fits() {
                self.channels.truncate(before);
                return Err(e);
            }
            self.due_now();
        }
        Ok(())
    }

    /// Adds channel groups; when any is new, the next heartbeat is due at
    /// once. Fails, joining none of them, as [`HeartbeatSchedule::join`]
    /// does.
    pub fn join_groups(&mut self, groups: Vec<String>) -> Result<()> {
        crate::request::check_names("channel_groups", &groups)?;
        let before = self.groups.len();
        if add_new(&mut self.groups, groups) {
            if let Err(e) = self.check_fits() {
                self.groups.truncate(before);
                return Err(e);
            }
            self.due_now();
        }
        Ok(())
    }

    /// Sets the state sent for `channel` with every heartbeat; a change is
    /// sent at once (after a running backoff), the same state again sends
    /// nothing. Fails as
    /// [`Heartbeater::set_state`] does.
    pub fn set_state<T: state::Serialize>(&mut self, channel: &str, value: T) -> Result<()> {
        let json = state::to_json_object(&value, "state", state::MAX_CHANNEL_STATE_DEPTH)?;
        self.put_state(channel, json)
    }

    /// Sets the state for `channel` from JSON text (one object); a change
    /// is sent at once (after a running backoff), the same text again sends
    /// nothing. Fails as
    /// [`Heartbeater::set_state`] does.
    pub fn set_state_json(&mut self, channel: &str, json: impl Into<String>) -> Result<()> {
        let json = json.into();
        state::check_json_object(&json, "state", state::MAX_CHANNEL_STATE_DEPTH)?;
        self.put_state(channel, json)
    }

    fn put_state(&mut self, channel: &str, json: String) -> Result<()> {
        if self.state.get(channel) == Some(&json) {
            return Ok(());
        }
        let before = self.state.insert(channel.to_string(), json);
        if let Err(e) = self.check_fits() {
            match before {
                Some(json) => self.state.insert(channel.to_string(), json),
                None => self.state.remove(channel),
            };
            return Err(e);
        }
        self.due_now();
        Ok(())
    }

    /// Checks that the heartbeat for what is joined, with every state, can
    /// be sent: `join` and `set_state` keep this true, so a schedule never
    /// holds a heartbeat that fails before it is sent.
    fn check_fits(&self) -> Result<()> {
        if self.channels.is_empty() && self.groups.is_empty() {
            return Ok(());
        }
        self.heartbeat_call().request().map(drop)
    }

    /// The next heartbeat is due now; one in flight (which carries the old
    /// list or state) is finished first, and the new one sent as soon as
    /// it ends. A backoff that runs is waited out (at most a quarter of
    /// the interval): a loop that sets its state on every turn during an
    /// outage does not send a heartbeat each time.
    fn due_now(&mut self) {
        self.next_due = None;
        self.changed = self.flight.is_some();
    }

    /// Stops heartbeating some channels and groups (and forgets the
    /// states of those channels): call it once a `leave` for them was
    /// acknowledged. A heartbeat in flight still names them: it is
    /// forgotten, and its driver should drop it (as [`Heartbeater`] does).
    pub fn forget(&mut self, channels: &[String], groups: &[String]) {
        self.channels.retain(|c| !channels.contains(c));
        self.groups.retain(|g| !groups.contains(g));
        for c in channels {
            self.state.remove(c);
        }
        self.flight = None;
        if self.channels.is_empty() && self.groups.is_empty() {
            self.next_due = None;
        }
    }

    /// The driver dropped the heartbeat in flight without its answer (its
    /// connection was needed for something else): it is forgotten without
    /// counting a failure, and sent again when due. A
    /// [`poll`](Engine::poll) that says nothing is in flight does the
    /// same.
    pub fn abandon(&mut self) {
        self.flight = None;
    }

    /// The channels currently joined.
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// The channel groups currently joined.
    pub fn channel_groups(&self) -> &[String] {
        &self.groups
    }

    /// When the last heartbeat succeeded.
    pub fn last_success(&self) -> Option<Instant> {
        self.last_success
    }

    /// What the heartbeats' connection is doing: see [`LinkState`]
    /// (`Connecting` until a heartbeat has ended; while backing off after
    /// a failure, `Reconnecting` with the error and the next attempt).
    pub fn link_state(&self) -> LinkState {
        self.link.state_with(self.backoff.until())
    }

    /// Until when the user is present on the server as far as this
    /// schedule knows: the last heartbeat that succeeded plus the
    /// client's `presence_timeout` (the server times a user out after
    /// that long without a heartbeat). `None` before the first success.
    pub fn present_until(&self) -> Option<Instant> {
        let timeout = Duration::from_secs(u64::from(self.pubnub.config().presence_timeout()));
        self.last_success.and_then(|at| at.checked_add(timeout))
    }

    /// Whether the user is present on the server as far as this schedule
    /// knows at `now` (see [`HeartbeatSchedule::present_until`]).
    pub fn is_present(&self, now: Instant) -> bool {
        self.present_until().is_some_and(|until| now < until)
    }

    /// Since when heartbeats have been failing, if the last one failed.
    pub(crate) fn failing_since(&self) -> Option<Instant> {
        self.link.down_since()
    }

    /// The path works again: another connection to the service (the
    /// event stream's) was answered at `answered`, after the heartbeats
    /// began failing. The backoff that runs ends now, so the heartbeat
    /// (with any change of what is joined or of a state) goes out at once
    /// instead of up to a quarter of the interval later. Once per run of
    /// failures (an endpoint that keeps failing while the path works is
    /// backed off as before). Whether it ended one.
    pub fn restart(&mut self, answered: Instant) -> bool {
        let Some(since) = self.link.down_since() else {
            return false;
        };
        if answered < since || self.restarted == Some(since) || self.backoff.until().is_none() {
            return false;
        }
        self.restarted = Some(since);
        self.backoff.retry_at(None);
        log::info!(target: "pubnub_presence::heartbeat",
            "the service answers again: heartbeating now instead of after the backoff");
        true
    }

    /// Whether a heartbeat has ended (succeeded or failed) so far.
    pub(crate) fn link_used(&self) -> bool {
        self.link.used()
    }

    /// Whether a heartbeat is in flight.
    pub fn in_flight(&self) -> bool {
        self.flight.is_some()
    }

    /// When the next heartbeat is due: `None` when nothing is joined or
    /// automatic heartbeats are off; a past instant means "now". After a
    /// failure, the retry's instant (backoff).
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        // Interval 0: no automatic heartbeats at all, not even on join (as
        // PubNub's presence engine behaves with `heartbeatInterval: 0`).
        self.interval?;
        if self.channels.is_empty() && self.groups.is_empty() {
            return None;
        }
        let due = self.next_due.unwrap_or(now);
        Some(match self.backoff.waiting(now) {
            Some(retry) => retry.max(due),
            None => due,
        })
    }

    /// Where the schedule stands at `now`: see [`Phase`].
    pub fn phase(&self, now: Instant) -> Phase {
        if let Some(f) = &self.flight {
            return Phase::InFlight {
                due: f.due,
                sent: f.sent_at,
            };
        }
        match self.next_due(now) {
            None => Phase::Idle,
            Some(at) if at <= now => Phase::Due,
            Some(at) if self.backoff.waiting(now).is_some() => Phase::BackingOff(at),
            Some(at) => Phase::Scheduled(at),
        }
    }

    /// How long a heartbeat may be in flight in all (not only without a
    /// byte moving): the client's `request_timeout`, or the heartbeat
    /// interval if that is shorter (a heartbeat older than one interval is
    /// late anyway). Past it, [`poll`](Engine::poll) ends it with a
    /// timeout error (counted and backed off) and the heartbeat is tried
    /// again after the backoff.
    pub fn in_flight_bound(&self) -> Duration {
        let timeout = self.pubnub.config().request_timeout;
        self.interval.map_or(timeout, |i| timeout.min(i))
    }

    /// The instant a heartbeat sent at `now` counts as due: the schedule's
    /// due instant, or `now` when nothing was scheduled.
    pub(crate) fn due_at(&self, now: Instant) -> Instant {
        self.next_due.unwrap_or(now).min(now)
    }

    /// Sends the heartbeat that is due: the request, and the flight.
    fn send(&mut self, now: Instant) -> Result<Step> {
        let request = match self.heartbeat_call().request() {
            Ok(request) => request,
            Err(e) => return Err(self.failed(e, now)),
        };
        self.flight = Some(Flight {
            due: self.due_at(now),
            sent_at: now,
            polled_at: now,
            overdue: false,
        });
        self.changed = false;
        let timeout = self.pubnub.config().request_timeout;
        Ok(Step::Send(Transmit {
            request,
            silence: timeout,
            // The engine's own in-flight bound is the tighter.
            total: timeout.checked_mul(2),
            fresh: false,
        }))
    }

    /// The heartbeat in flight at `now`: wait for its answer until its
    /// bound, then end it with a timeout.
    fn poll_in_flight(&mut self, now: Instant) -> Result<Step> {
        let bound = self.in_flight_bound();
        let Some(f) = self.flight.as_mut() else {
            return Ok(Step::Wait(None));
        };
        let gap = now.saturating_duration_since(f.polled_at);
        // A gap since the last poll longer than the bound: the device (or
        // the caller) was suspended. The bound runs again from the resume
        // (a wait the driver saw overrun comes in by `resumed`).
        if gap > bound {
            f.move_on(gap);
        }
        f.polled_at = now;
        // However the server trickles bytes (or repeats 1xx heads), a
        // heartbeat is not in flight longer than its bound.
        let give_up = f.sent_at.checked_add(bound);
        match give_up {
            // What arrived is read once more before the bound applies.
            Some(g) if now >= g && !std::mem::replace(&mut f.overdue, true) => {
                Ok(Step::Wait(Some(g)))
            }
            Some(g) if now >= g => {
                self.flight = None;
                let e = Error::transport(
                    crate::TransportErrorKind::Timeout,
                    "heartbeat did not complete within its bound (request_timeout, at most the heartbeat interval)",
                );
                Err(self.failed(e, now))
            }
            _ => Ok(Step::Wait(give_up)),
        }
    }

    /// The heartbeat for everything joined, with the per-channel states.
    pub(crate) fn heartbeat_call(&self) -> crate::presence::heartbeat::HeartbeatBuilder<'_> {
        let hb = self
            .pubnub
            .heartbeat()
            .channels(self.channels.clone())
            .channel_groups(self.groups.clone());
        if self.state.is_empty() {
            return hb;
        }
        // Each piece was validated when set; the map of them is valid.
        hb.state_checked(self.state_map())
    }

    /// Of the given channels and groups, those joined; `None` if none is.
    pub(crate) fn joined(
        &self,
        channels: Vec<String>,
        groups: Vec<String>,
    ) -> Option<(Vec<String>, Vec<String>)> {
        let channels: Vec<String> = channels
            .into_iter()
            .filter(|c| self.channels.contains(c))
            .collect();
        let groups: Vec<String> = groups
            .into_iter()
            .filter(|g| self.groups.contains(g))
            .collect();
        (!channels.is_empty() || !groups.is_empty()).then_some((channels, groups))
    }

    /// A heartbeat that was due at `due` succeeded at `now`.
    pub(crate) fn succeeded(&mut self, due: Instant, now: Instant) {
        self.backoff.succeed();
        self.last_success = Some(now);
        self.link.up(now);
        let interval = self.interval.unwrap_or(Duration::ZERO);
        // Drift-free: one interval after the previous due instant, unless
        // that is already past (the schedule fell behind by a whole
        // interval, e.g. after an outage).
        let next = due.checked_add(interval).unwrap_or(now);
        self.next_due = if self.changed {
            // The list or a state changed while this one was in flight:
            // send the new one now.
            None
        } else if next > now {
            Some(next)
        } else {
            Some(now.checked_add(interval).unwrap_or(now))
        };
    }

    /// A heartbeat failed at `now`: counted, backed off, logged; returned.
    pub(crate) fn failed(&mut self, e: Error, now: Instant) -> Error {
        self.failed_after(e, now, None)
    }

    fn failed_after(&mut self, e: Error, now: Instant, retry_after: Option<Duration>) -> Error {
        // Presence must not lapse: after a cut, the next attempt comes
        // within a quarter of the interval (7.25 s for a 60 s presence
        // timeout; 30 s, the backoff's own cap, for the default 300 s).
        // A cut that starts just after a heartbeat and is shorter than
        // the timeout less an interval and that quarter (and the few
        // seconds a connect and an answer take) keeps the device present.
        let cap = self.interval.map(|i| i / 4);
        self.link
            .failed(&mut self.backoff, now, &e, retry_after, cap, &FAILURE_LOG);
        e
    }

    /// `{"ch1":{…},"ch2":{…}}` from the per-channel states.
    fn state_map(&self) -> String {
        let mut out = String::from("{");
        for (i, (channel, json)) in self.state.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&miniserde::json::to_string(channel));
            out.push(':');
            out.push_str(json);
        }
        out.push('}');
        out
    }
}

impl Engine for HeartbeatSchedule {
    /// Sends the heartbeat when it is due; with one in flight, waits for
    /// its answer until the in-flight bound, then ends it (`Err`, a
    /// timeout). `in_flight` false while the engine has one in flight: the
    /// driver lost it (as [`HeartbeatSchedule::abandon`]). Otherwise waits
    /// until the next heartbeat is due (`Wait(None)`: nothing will be due
    /// until something is joined).
    fn poll(&mut self, now: Instant, in_flight: bool) -> Result<Step> {
        if !in_flight && self.flight.take().is_some() {
            log::debug!(target: "pubnub_presence::heartbeat",
                "the heartbeat in flight was dropped without an answer: sent again when due");
        }
        match self.phase(now) {
            Phase::InFlight { .. } => self.poll_in_flight(now),
            Phase::Due => self.send(now),
            Phase::Scheduled(at) | Phase::BackingOff(at) => Ok(Step::Wait(Some(at))),
            Phase::Idle => Ok(Step::Wait(None)),
        }
    }

    /// The heartbeat's answer: a 2xx acknowledgement schedules the next
    /// one an interval after this one was due; anything else is a failure,
    /// backed off (a server's `Retry-After` within the cap). An answer
    /// with no heartbeat in flight (one forgotten or abandoned) is
    /// ignored.
    fn handle_response(&mut self, now: Instant, response: Response) -> Result<()> {
        let Some(flight) = self.flight.take() else {
            return Ok(());
        };
        let result = match response.error() {
            None => crate::envelope::decode_ack(&response.body),
            Some(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.succeeded(flight.due, now);
                Ok(())
            }
            Err(e) => Err(self.failed_after(e, now, response.retry_after)),
        }
    }

    fn handle_failure(&mut self, now: Instant, error: Error) -> Error {
        self.flight = None;
        self.failed(error, now)
    }

    /// The driver's wait overran by far (the device was suspended in it):
    /// the heartbeat in flight gets its bound again from the resume, and
    /// what arrived is read before it applies.
    fn resumed(&mut self, now: Instant, overrun: Duration) {
        if let Some(f) = self.flight.as_mut() {
            f.move_on(overrun);
            f.polled_at = now;
        }
    }
}

impl Flight {
    /// The device (or the caller) did not run for `by`: the bound moves on
    /// by that much.
    fn move_on(&mut self, by: Duration) {
        self.sent_at = self.sent_at.checked_add(by).unwrap_or(self.sent_at);
        self.overdue = false;
        log::debug!(target: "pubnub_presence::heartbeat",
            "suspended for {} ms: the heartbeat in flight gets its bound again from the resume",
            by.as_millis());
    }
}

/// Keeps a user present on channels and groups: holds what was joined and
/// the per-channel state, knows when the next heartbeat is due, and sends
/// it (state included, every time). The schedule is a
/// [`HeartbeatSchedule`] (the sans-IO engine) pumped over a kept
/// connection of its own.
///
/// Two ways to drive it:
/// - [`poll(budget)`](Heartbeater::poll): on a kept connection of its own,
///   never blocking longer than `budget`; what is not done stays in flight
///   for the next call. For single-threaded loops (see [`PresenceLoop`]).
/// - [`tick(now)`](Heartbeater::tick): a blocking heartbeat through the
///   client's ordinary calls (with its retry policy), time passed in, so a
///   test can drive the schedule with its own clock.
///
/// The schedule does not drift: the next heartbeat is due one interval
/// after the previous one was due, however long the request took.
///
/// ```no_run
/// # use pubnub_presence::{PubNub, presence::schedule::Heartbeater};
/// # use std::time::Duration;
/// # fn main() -> Result<(), pubnub_presence::Error> {
/// let pubnub = PubNub::builder().subscribe_key("demo").user_id("device-42").build()?;
/// let mut online = Heartbeater::new(&pubnub);
/// online.join(vec!["lobby".into()])?;
/// online.set_state_json("lobby", r#"{"battery":87}"#)?;
/// loop {
///     // ... the device's own work ...
///     if let Err(e) = online.poll(Duration::from_millis(100)) {
///         eprintln!("heartbeat failed, tried again after a backoff: {e}");
///     }
///     std::thread::sleep(Duration::from_secs(1));
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Heartbeater {
    /// The client, for the driver (signing, the endpoint) and the
    /// blocking calls.
    pubnub: PubNub,
    engine: HeartbeatSchedule,
    lane: Lane,
}

impl Heartbeater {
    /// A schedule using the client's `heartbeat_interval` (0 = never due on
    /// its own; [`Heartbeater::heartbeat_now`] still works).
    pub fn new(pubnub: &PubNub) -> Self {
        Heartbeater {
            pubnub: pubnub.clone(),
            engine: HeartbeatSchedule::new(pubnub),
            lane: Lane::default(),
        }
    }

    /// Adds channels; when any is new, the next heartbeat is due at once
    /// (after a running backoff: see the type's docs).
    ///
    /// Fails, joining none of them, when a name is empty or contains `,`,
    /// or when the heartbeat would no longer fit in
    /// [`MAX_URL_LEN`](crate::request::MAX_URL_LEN).
    pub fn join(&mut self, channels: Vec<String>) -> Result<()> {
        self.engine.join(channels)
    }

    /// Adds channel groups; when any is new, the next heartbeat is due at
    /// once. Fails, joining none of them, as [`Heartbeater::join`] does.
    pub fn join_groups(&mut self, groups: Vec<String>) -> Result<()> {
        self.engine.join_groups(groups)
    }

    /// Sets the state sent for `channel` with every heartbeat; a change is
    /// sent at once (after a running backoff), the same state again sends
    /// nothing. Takes the value or
    /// a reference to it, like
    /// [`PubNub::set_presence_state`](crate::PubNub::set_presence_state).
    ///
    /// Fails, keeping the state set before, when the value does not
    /// serialize to a JSON object of at most 127 levels (each heartbeat
    /// sends it inside the map of per-channel states; see
    /// [`crate::state`]), or when the heartbeat would no longer fit in
    /// [`MAX_URL_LEN`](crate::request::MAX_URL_LEN).
    pub fn set_state<T: state::Serialize>(&mut self, channel: &str, value: T) -> Result<()> {
        self.engine.set_state(channel, value)
    }

    /// Sets the state for `channel` from JSON text (one object); a change
    /// is sent at once (after a running backoff), the same text again sends
    /// nothing. Fails as
    /// [`Heartbeater::set_state`] does.
    pub fn set_state_json(&mut self, channel: &str, json: impl Into<String>) -> Result<()> {
        self.engine.set_state_json(channel, json)
    }

    /// The channels currently joined.
    pub fn channels(&self) -> &[String] {
        self.engine.channels()
    }

    /// The channel groups currently joined.
    pub fn channel_groups(&self) -> &[String] {
        self.engine.channel_groups()
    }

    /// When the last heartbeat succeeded.
    pub fn last_success(&self) -> Option<Instant> {
        self.engine.last_success()
    }

    /// What the heartbeat's connection is doing: see [`LinkState`]
    /// (`Connecting` until a heartbeat has ended; while backing off after
    /// a failure, `Reconnecting` with the error and the next attempt).
    pub fn link_state(&self) -> LinkState {
        self.engine.link_state()
    }

    /// Until when the user is present on the server as far as this
    /// schedule knows: the last heartbeat that succeeded plus the
    /// client's `presence_timeout` (the server times a user out after
    /// that long without a heartbeat). `None` before the first success.
    pub fn present_until(&self) -> Option<Instant> {
        self.engine.present_until()
    }

    /// Whether the user is present on the server as far as this schedule
    /// knows at `now` (see [`Heartbeater::present_until`]).
    pub fn is_present(&self, now: Instant) -> bool {
        self.engine.is_present(now)
    }

    /// Since when heartbeats have been failing, if the last one failed.
    pub(crate) fn failing_since(&self) -> Option<Instant> {
        self.engine.failing_since()
    }

    /// Whether a heartbeat has ended (succeeded or failed) so far.
    pub(crate) fn link_used(&self) -> bool {
        self.engine.link_used()
    }

    /// Whether a heartbeat is in flight on the kept connection.
    pub fn in_flight(&self) -> bool {
        self.engine.in_flight()
    }

    /// When the next heartbeat is due: `None` when nothing is joined or
    /// automatic heartbeats are off; a past instant means "now". After a
    /// failure, the retry's instant (backoff).
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        self.engine.next_due(now)
    }

    /// Sends a heartbeat if one is due at `now`, blocking (with the
    /// client's retry policy). Returns whether one was sent. A failure is
    /// returned and the heartbeat tried again after a backoff.
    pub fn tick(&mut self, now: Instant) -> Result<bool> {
        match self.next_due(now) {
            Some(due) if due <= now => {
                self.heartbeat_now(now)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Sends a heartbeat now, whatever the schedule (blocking, with the
    /// client's retry policy).
    pub fn heartbeat_now(&mut self, now: Instant) -> Result<()> {
        let due = self.engine.due_at(now);
        match self.engine.heartbeat_call().execute() {
            Ok(()) => {
                self.engine.succeeded(due, now);
                Ok(())
            }
            Err(e) => Err(self.engine.failed(e, now)),
        }
    }

    /// Drives the heartbeat schedule on the kept connection for at most
    /// `budget`: sends a due heartbeat, or goes on with the one in flight.
    /// `Ok(true)` when a heartbeat completed in this call. A failure is
    /// returned once; the heartbeat is tried again after a backoff. A
    /// heartbeat in flight longer than [`Heartbeater::in_flight_bound`]
    /// in all (a server trickling its answer, or sending 1xx heads without
    /// end) is abandoned with a timeout error.
    pub fn poll(&mut self, budget: Duration) -> Result<bool> {
        self.poll_until(deadline_after(budget))
    }

    /// [`Heartbeater::poll`] up to an instant. Returns `Ok(false)` at
    /// once when nothing is due and nothing is in flight: it never waits
    /// for the next due instant.
    pub(crate) fn poll_until(&mut self, deadline: Option<Instant>) -> Result<bool> {
        let now = crate::clock::now();
        match self.engine.phase(now) {
            Phase::Due | Phase::InFlight { .. } => {}
            Phase::Idle | Phase::Scheduled(_) | Phase::BackingOff(_) => return Ok(false),
        }
        self.lane.pump(&self.pubnub, &mut self.engine, deadline)
    }

    /// How long a heartbeat sent by [`Heartbeater::poll`] may be in flight
    /// in all (not only without a byte moving): the client's
    /// `request_timeout`, or the heartbeat interval if that is shorter (a
    /// heartbeat older than one interval is late anyway). Past it, the
    /// connection is dropped, the failure returned once and the heartbeat
    /// tried again after the backoff.
    pub fn in_flight_bound(&self) -> Duration {
        self.engine.in_flight_bound()
    }

    /// Sends `leave` for some channels and groups (blocking, with the
    /// client's retry policy), and stops heartbeating them. On failure
    /// nothing is forgotten: they stay joined (and their state kept), so
    /// the call can be made again.
    pub fn leave_channels(&mut self, channels: Vec<String>, groups: Vec<String>) -> Result<()> {
        let Some((channels, groups)) = self.engine.joined(channels, groups) else {
            return Ok(());
        };
        self.pubnub
            .leave()
            .channels(channels.clone())
            .channel_groups(groups.clone())
            .execute()?;
        self.forget(&channels, &groups);
        Ok(())
    }

    fn forget(&mut self, channels: &[String], groups: &[String]) {
        self.engine.forget(channels, groups);
        // A heartbeat in flight still names them: abandon it.
        self.lane.abort();
    }

    /// Sends `leave` for everything joined and forgets it (and its state).
    /// On failure everything stays joined.
    pub fn leave(&mut self) -> Result<()> {
        let (channels, groups) = (self.channels().to_vec(), self.channel_groups().to_vec());
        self.leave_channels(channels, groups)
    }

    /// Sends `leave` for everything joined on the kept connection, waiting
    /// at most `timeout`, once (no retries); forgets it when that worked.
    pub fn leave_within(&mut self, timeout: Duration) -> Result<()> {
        let (channels, groups) = (self.channels().to_vec(), self.channel_groups().to_vec());
        self.leave_channels_within(channels, groups, timeout)
    }

    /// Like [`Heartbeater::leave_channels`], on the kept connection,
    /// waiting at most `timeout`, once (no retries).
    pub fn leave_channels_within(
        &mut self,
        channels: Vec<String>,
        groups: Vec<String>,
        timeout: Duration,
    ) -> Result<()> {
        let Some((channels, groups)) = self.engine.joined(channels, groups) else {
            return Ok(());
        };
        let deadline = deadline_after(timeout);
        let request = self
            .pubnub
            .leave()
            .channels(channels.clone())
            .channel_groups(groups.clone())
            .request()?;
        // The leave takes the kept connection: a heartbeat in flight on it
        // is dropped.
        self.engine.abandon();
        let mut leave = LeaveOnce {
            request: Some(request),
            silence: timeout,
        };
        if !self.lane.pump(&self.pubnub, &mut leave, deadline)? {
            self.lane.abort();
            return Err(Error::transport(
                crate::TransportErrorKind::Timeout,
                "leave did not complete in time",
            ));
        }
        self.forget(&channels, &groups);
        Ok(())
    }
}

/// One `leave` on the heartbeat's kept connection, sent once, with no
/// retry and no backoff: what [`Heartbeater::leave_channels_within`]
/// pumps. The caller's deadline is its only bound.
#[derive(Debug)]
struct LeaveOnce {
    /// The leave, until it is sent.
    request: Option<Request>,
    /// How long it may go without a byte moving.
    silence: Duration,
}

impl Engine for LeaveOnce {
    fn poll(&mut self, _now: Instant, _in_flight: bool) -> Result<Step> {
        Ok(match self.request.take() {
            Some(request) => Step::Send(Transmit {
                request,
                silence: self.silence,
                total: self.silence.checked_mul(2),
                fresh: false,
            }),
            None => Step::Wait(None),
        })
    }

    fn handle_response(&mut self, _now: Instant, response: Response) -> Result<()> {
        if let Some(e) = response.error() {
            return Err(e);
        }
        crate::envelope::decode_ack(&response.body)
    }

    fn handle_failure(&mut self, _now: Instant, error: Error) -> Error {
        error
    }
}

/// Adds the names not there yet; whether any was added.
fn add_new(list: &mut Vec<String>, names: Vec<String>) -> bool {
    let mut added = false;
    for n in names {
        if !list.contains(&n) {
            list.push(n);
            added = true;
        }
    }
    added
}

/// The device loop: stays present (heartbeats with per-channel state) and
/// watches presence events, in one call per iteration of the caller's own
/// loop that never blocks longer than the budget it is given, even while
/// the network is down.
///
/// Events come over one kept connection (a long-poll left in flight
/// between calls); heartbeats over a second one. A heartbeat that cannot
/// complete within a call stays in flight; a failed one is returned once
/// and tried again after a backoff. When a heartbeat is answered again
/// after failures, the long-poll (which may sit on a connection the
/// outage killed silently) is sent again from its cursor at once, so
/// events resume with the path; none is lost or delivered twice.
/// [`link_state`](PresenceLoop::link_state) says at any time whether the
/// loop is connected or backing off, and why.
///
/// ```no_run
/// use pubnub_presence::{Heartbeater, PresenceEvent, PresenceLoop, PubNub};
/// use std::time::Duration;
///
/// # fn main() -> Result<(), pubnub_presence::Error> {
/// let pubnub = PubNub::builder().subscribe_key("demo").user_id("sensor-9").build()?;
/// let mut online = Heartbeater::new(&pubnub);
/// online.join(vec!["plant-floor".into()])?;
/// online.set_state_json("plant-floor", r#"{"battery":87}"#)?;
/// let events = pubnub.presence_events().channels(vec!["plant-floor".into()]).open()?;
/// let mut device = PresenceLoop::new(online, Some(events));
/// loop {
///     // ... the device's own work ...
///     match device.poll(Duration::from_millis(500)) {
///         Ok(Some(PresenceEvent::Join(e))) => println!("{} joined {}", e.user_id, e.channel),
///         Ok(Some(other)) => println!("{other:?}"),
///         Ok(None) => {} // nothing new within the budget
///         Err(e) => eprintln!("{e} (retried after a backoff)"),
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct PresenceLoop {
    heartbeater: Heartbeater,
    events: Option<PresenceEvents>,
    /// A heartbeat failure met after an event was already in hand: the
    /// next call returns it.
    deferred: Option<Error>,
    /// Heartbeats answered again after failing.
    recoveries: u64,
}

impl PresenceLoop {
    /// A loop over a heartbeat schedule and, optionally, an event stream.
    pub fn new(heartbeater: Heartbeater, events: Option<PresenceEvents>) -> Self {
        PresenceLoop {
            heartbeater,
            events,
            deferred: None,
            recoveries: 0,
        }
    }

    /// What the loop's connections are doing, taken together: the worse
    /// of the event stream's and the heartbeats' [`LinkState`] (a failing
    /// one outweighs one connecting, which outweighs a working one).
    /// Heartbeats count once one is sent. Each side's own state:
    /// [`Heartbeater::link_state`], [`PresenceEvents::link_state`]. The
    /// heartbeats' [`Heartbeater::is_present`] says whether the device is
    /// still present on the server as far as it knows.
    pub fn link_state(&self) -> LinkState {
        let hb = (self.heartbeater.link_used() || self.heartbeater.in_flight())
            .then(|| self.heartbeater.link_state());
        let ev = self.events.as_ref().map(PresenceEvents::link_state);
        match (hb, ev) {
            (Some(a), Some(b)) => a.worse(b),
            (a, b) => a.or(b).unwrap_or(LinkState::Connecting),
        }
    }

    /// How many times heartbeats were answered again after failing (each
    /// time, the long-poll was restarted from its cursor).
    pub(crate) fn recoveries(&self) -> u64 {
        self.recoveries
    }

    /// Drives the heartbeats until `deadline`. When one is answered after
    /// failures, the path is back: the long-poll, which may sit on a
    /// connection the outage killed silently (no FIN, no RST: it would
    /// wait out its silence bound), is restarted from its cursor at once.
    fn heartbeat(&mut self, deadline: Option<Instant>) -> Result<bool> {
        // The other way round too: the event stream answered since the
        // heartbeats began failing, so the path is back: a heartbeat
        // backing off (maybe holding a change of state) goes now.
        if let Some(at) = self.events.as_ref().and_then(PresenceEvents::answered_at) {
            self.heartbeater.engine.restart(at);
        }
        let failing = self.heartbeater.failing_since();
        let done = self.heartbeater.poll_until(deadline);
        if let (Some(since), Ok(true)) = (failing, &done) {
            self.recoveries = self.recoveries.saturating_add(1);
            if let Some(events) = &mut self.events {
                events.restart(since);
            }
        }
        done
    }

    /// The heartbeat schedule: join, leave some channels, set state while
    /// the loop runs.
    pub fn heartbeater(&mut self) -> &mut Heartbeater {
        &mut self.heartbeater
    }

    /// The event stream, if any.
    pub fn events(&mut self) -> Option<&mut PresenceEvents> {
        self.events.as_mut()
    }

    /// One iteration: a heartbeat when due (or the one in flight carried
    /// on), then events, for at most `budget` in all. `Ok(Some(event))` as
    /// soon as one is there, `Ok(None)` when nothing came within the
    /// budget, `Err` for a failure of either (each failure once; both
    /// sides back off on their own).
    pub fn poll(&mut self, budget: Duration) -> Result<Option<PresenceEvent<'static>>> {
        self.poll_until(deadline_after(budget))
    }

    /// [`PresenceLoop::poll`] up to an instant (`None`: no deadline); the
    /// occupancy mirror drives the loop with it.
    pub(crate) fn poll_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<PresenceEvent<'static>>> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        loop {
            let now = crate::clock::now();
            // Without waiting: send what is due, read what has arrived.
            self.heartbeat(Some(now))?;
            // Wait no longer than until the next heartbeat is due (or, with
            // one in flight, a short slice so its answer is read), so a long
            // budget never starves the schedule.
            let hb_at = if self.heartbeater.in_flight() {
                now.checked_add(HEARTBEAT_SLICE)
            } else {
                self.heartbeater.next_due(now)
            };
            let until = earliest(deadline, hb_at);
            let got = match &mut self.events {
                Some(events) => events.wait(until)?,
                None => {
                    match until {
                        Some(u) => crate::clock::sleep(u.saturating_duration_since(now)),
                        // Nothing will ever be due and no deadline: block,
                        // as asked, without spinning.
                        None => crate::clock::sleep(Duration::from_secs(3600)),
                    }
                    None
                }
            };
            if got.is_some() {
                // The heartbeat's answer may have come while events were
                // awaited; a failure waits for the next call.
                if let Err(e) = self.heartbeat(Some(crate::clock::now())) {
                    self.deferred = Some(e);
                }
                return Ok(got);
            }
            if deadline.is_some_and(|d| crate::clock::now() >= d) {
                self.heartbeat(Some(crate::clock::now()))?;
                return Ok(None);
            }
        }
    }
}

/// How long the loop waits on events at a time while a heartbeat's answer
/// is awaited.
const HEARTBEAT_SLICE: Duration = Duration::from_millis(50);

/// What a running [`HeartbeatThread`] is asked to do.
enum Command {
    Join(Vec<String>),
    JoinGroups(Vec<String>),
    Leave(Vec<String>, Vec<String>),
    SetState(String, String),
}

/// How long the thread waits at most between looks at its commands.
const THREAD_SLICE: Duration = Duration::from_millis(100);
/// How long the thread's final `leave` may take.
const THREAD_LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs a [`Heartbeater`] on one background thread, and sends `leave` when
/// dropped (or on [`HeartbeatThread::stop`]).
///
/// The thread drives the heartbeat on its kept connection in slices of
/// 100 ms, so it takes commands ([`join`](HeartbeatThread::join),
/// [`leave_channels`](HeartbeatThread::leave_channels),
/// [`set_state_json`](HeartbeatThread::set_state_json)) while running
/// (a change of state is sent at once, with no `leave` first) and stops
/// within about 100 ms plus 2 s: the final `leave` gets 2 s, or, when
/// stop is asked while a [`leave_channels`](HeartbeatThread::leave_channels)
/// is running, what is left of that leave's 2 s.
#[derive(Debug)]
pub struct HeartbeatThread {
    commands: Option<mpsc::Sender<Option<Command>>>,
    /// Set before the stop message, so that commands queued ahead of it
    /// are dropped instead of delaying the stop (the final leave covers
    /// every channel still joined).
    stopping: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<JoinHandle<Result<()>>>,
    last_error: Arc<Mutex<Option<Error>>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl HeartbeatThread {
    /// Starts heartbeating. Failures are kept for
    /// [`HeartbeatThread::last_error`] and tried again after a backoff.
    pub fn spawn(mut heartbeater: Heartbeater) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Option<Command>>();
        let last_error = Arc::new(Mutex::new(None));
        let errors = Arc::clone(&last_error);
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_flag = Arc::clone(&stopping);
        let handle = std::thread::Builder::new()
            .name("pubnub-heartbeat".into())
            .spawn(move || {
                // The final leave's budget: one 2 s window, shared with a
                // `Leave` command that was running when stop was asked.
                let mut leave_budget = THREAD_LEAVE_TIMEOUT;
                loop {
                    let now = crate::clock::now();
                    let wait = if heartbeater.in_flight() {
                        Duration::ZERO
                    } else {
                        heartbeater
                            .next_due(now)
                            .map_or(Duration::from_secs(3600), |d| {
                                d.saturating_duration_since(now)
                            })
                    };
                    if stop_flag.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    match rx.recv_timeout(wait) {
                        Ok(Some(_)) if stop_flag.load(std::sync::atomic::Ordering::SeqCst) => break,
                        Ok(Some(cmd)) => {
                            let result = match cmd {
                                Command::Join(c) => heartbeater.join(c),
                                Command::JoinGroups(g) => heartbeater.join_groups(g),
                                Command::Leave(c, g) => {
                                    let started = crate::clock::now();
                                    let r = heartbeater.leave_channels_within(
                                        c,
                                        g,
                                        THREAD_LEAVE_TIMEOUT,
                                    );
                                    if stop_flag.load(std::sync::atomic::Ordering::SeqCst) {
                                        // Stop was asked while this leave
                                        // ran: the final one gets what is
                                        // left of its window.
                                        leave_budget = THREAD_LEAVE_TIMEOUT.saturating_sub(
                                            crate::clock::now().saturating_duration_since(started),
                                        );
                                    }
                                    r
                                }
                                Command::SetState(c, json) => heartbeater.set_state_json(&c, json),
                            };
                            if let Err(e) = result {
                                store(&errors, e);
                            }
                            continue;
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(None) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                    if let Err(e) = heartbeater.poll(THREAD_SLICE) {
                        store(&errors, e);
                    }
                }
                let joined =
                    !heartbeater.channels().is_empty() || !heartbeater.channel_groups().is_empty();
                if leave_budget.is_zero() && joined {
                    return Err(Error::transport(
                        crate::TransportErrorKind::Timeout,
                        "stopped during a leave that used up the 2 s window: no final leave sent",
                    ));
                }
                heartbeater.leave_within(leave_budget)
            })?;
        Ok(HeartbeatThread {
            commands: Some(tx),
            stopping,
            handle: Some(handle),
            last_error,
        })
    }

    fn send(&self, cmd: Command) {
        if let Some(tx) = &self.commands {
            let _ = tx.send(Some(cmd));
        }
    }

    /// Joins more channels while running (a heartbeat goes out at once,
    /// or when a running backoff ends).
    pub fn join(&self, channels: Vec<String>) {
        self.send(Command::Join(channels));
    }

    /// Joins more channel groups while running.
    pub fn join_groups(&self, groups: Vec<String>) {
        self.send(Command::JoinGroups(groups));
    }

    /// Leaves some channels and groups while running (the others stay).
    pub fn leave_channels(&self, channels: Vec<String>, groups: Vec<String>) {
        self.send(Command::Leave(channels, groups));
    }

    /// Sets the state for a channel while running; a change is sent with
    /// one heartbeat at once, and no `leave`.
    pub fn set_state_json(&self, channel: &str, json: impl Into<String>) {
        self.send(Command::SetState(channel.to_string(), json.into()));
    }

    /// The most recent failure, if any (taken: a second call returns
    /// `None` until the next failure).
    pub fn last_error(&self) -> Option<Error> {
        self.last_error.lock().ok().and_then(|mut e| e.take())
    }

    /// Stops the thread and returns the result of its `leave`.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(tx) = self.commands.take() {
            let _ = tx.send(None);
        }
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::transport(
                crate::TransportErrorKind::Io,
                "the heartbeat thread panicked",
            )),
            None => Ok(()),
        }
    }
}

fn store(slot: &Mutex<Option<Error>>, e: Error) {
    if let Ok(mut s) = slot.lock() {
        *s = Some(e);
    }
}

impl Drop for HeartbeatThread {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    //! The schedule driven by hand in virtual time: made-up instants,
    //! hand-made responses, no socket and no sleep.
    use super::*;
    use crate::{ErrorKind, PubNubBuilder, TransportErrorKind};

    fn client(build: impl FnOnce(PubNubBuilder) -> PubNubBuilder) -> PubNub {
        build(
            PubNub::builder()
                .subscribe_key("k")
                .user_id("u")
                .origin("http://127.0.0.1:9"),
        )
        .build()
        .unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ack() -> Response {
        Response {
            status: 200,
            body: br#"{"status":200,"message":"OK","service":"Presence"}"#.to_vec(),
            retry_after: None,
        }
    }

    fn joined(build: impl FnOnce(PubNubBuilder) -> PubNubBuilder) -> HeartbeatSchedule {
        let mut s = HeartbeatSchedule::new(&client(build));
        s.join(vec!["lobby".into()]).unwrap();
        s
    }

    /// The heartbeat `poll` sends at `now`, with nothing in flight.
    fn send(s: &mut HeartbeatSchedule, now: Instant) -> Transmit {
        match s.poll(now, false) {
            Ok(Step::Send(t)) => t,
            other => panic!("expected a heartbeat to send: {other:?}"),
        }
    }

    fn wait(s: &mut HeartbeatSchedule, now: Instant, in_flight: bool) -> Option<Instant> {
        match s.poll(now, in_flight) {
            Ok(Step::Wait(at)) => at,
            other => panic!("expected a wait: {other:?}"),
        }
    }

    fn is_timeout(e: &Error) -> bool {
        matches!(
            e.kind(),
            ErrorKind::Transport {
                kind: TransportErrorKind::Timeout,
                ..
            }
        )
    }

    /// Due at once on join; the next one an interval after the previous
    /// was due, however late its answer came (no drift).
    #[test]
    fn due_on_join_then_every_interval_without_drift() {
        let t0 = Instant::now();
        let mut s = HeartbeatSchedule::new(&client(|b| b.heartbeat_interval(60)));
        assert_eq!(s.phase(t0), Phase::Idle);
        assert_eq!(wait(&mut s, t0, false), None);
        s.join(vec!["lobby".into()]).unwrap();
        assert_eq!(s.phase(t0), Phase::Due);
        let t = send(&mut s, t0);
        assert!(
            t.request.path().contains("/heartbeat"),
            "{}",
            t.request.url()
        );
        assert!(!t.fresh);
        assert_eq!(t.silence, secs(10));
        assert_eq!(s.phase(t0), Phase::InFlight { due: t0, sent: t0 });
        assert_eq!(s.in_flight_bound(), secs(10));
        assert_eq!(wait(&mut s, t0 + secs(1), true), Some(t0 + secs(10)));
        assert!(!s.is_present(t0 + secs(1)));
        s.handle_response(t0 + secs(3), ack()).unwrap();
        assert_eq!(s.last_success(), Some(t0 + secs(3)));
        assert_eq!(s.present_until(), Some(t0 + secs(303)));
        assert!(s.is_present(t0 + secs(302)) && !s.is_present(t0 + secs(303)));
        assert!(s.link_state().is_connected());
        assert_eq!(s.phase(t0 + secs(3)), Phase::Scheduled(t0 + secs(60)));
        assert_eq!(wait(&mut s, t0 + secs(3), false), Some(t0 + secs(60)));
        // Sent late (the loop came back 2 s after it was due) and answered
        // slowly: the next is still due at 120 s.
        send(&mut s, t0 + secs(62));
        // Its bound counts from its own sending, not from the last poll
        // of the heartbeat before it (a minute ago).
        assert_eq!(wait(&mut s, t0 + secs(63), true), Some(t0 + secs(72)));
        s.handle_response(t0 + secs(65), ack()).unwrap();
        assert_eq!(s.next_due(t0 + secs(65)), Some(t0 + secs(120)));
        // An outage longer than an interval: counted from the answer.
        send(&mut s, t0 + secs(250));
        s.handle_response(t0 + secs(251), ack()).unwrap();
        assert_eq!(s.next_due(t0 + secs(251)), Some(t0 + secs(311)));
    }

    /// A heartbeat unanswered at its bound gets one more read of what
    /// arrived, then is ended with a timeout, counted and backed off; the
    /// retry goes out after the backoff.
    #[test]
    fn the_in_flight_bound_ends_a_heartbeat_after_one_more_read() {
        let t0 = Instant::now();
        let mut s = joined(|b| b.request_timeout(secs(2)).heartbeat_interval(60));
        assert_eq!(s.in_flight_bound(), secs(2));
        send(&mut s, t0);
        assert_eq!(wait(&mut s, t0 + ms(500), true), Some(t0 + secs(2)));
        // The bound passed: read what arrived once more.
        assert_eq!(wait(&mut s, t0 + secs(2), true), Some(t0 + secs(2)));
        let at = t0 + secs(2) + ms(10);
        let e = s.poll(at, true).unwrap_err();
        assert!(is_timeout(&e), "{e:?}");
        assert!(!s.in_flight());
        assert_eq!(s.failing_since(), Some(at));
        assert_eq!(s.phase(at), Phase::BackingOff(at + ms(500)));
        match s.link_state() {
            LinkState::Reconnecting {
                failures,
                next_attempt,
                ..
            } => assert_eq!((failures, next_attempt), (1, Some(at + ms(500)))),
            other => panic!("{other:?}"),
        }
        // Nothing goes out during the backoff.
        assert_eq!(wait(&mut s, at + ms(100), false), Some(at + ms(500)));
        let retry = at + ms(500);
        send(&mut s, retry);
        s.handle_response(retry + ms(50), ack()).unwrap();
        assert_eq!(s.failing_since(), None);
        assert_eq!(s.phase(retry + ms(50)), Phase::Scheduled(retry + secs(60)));
    }

    /// The bound is the interval when that is shorter than
    /// `request_timeout`; polls before it only wait, and an answer just in
    /// time succeeds.
    #[test]
    fn the_bound_is_set_by_the_interval_when_shorter() {
        let t0 = Instant::now();
        let mut s = joined(|b| b.heartbeat_interval(1));
        assert_eq!(s.in_flight_bound(), secs(1));
        send(&mut s, t0);
        for i in 1..10 {
            assert_eq!(wait(&mut s, t0 + ms(i * 100), true), Some(t0 + secs(1)));
        }
        s.handle_response(t0 + ms(990), ack()).unwrap();
        assert_eq!(s.phase(t0 + ms(990)), Phase::Scheduled(t0 + secs(1)));
    }

    /// A poll later than the previous one by more than the bound, or a
    /// wait the driver saw overrun (`resumed`), is a suspend: the bound
    /// moves on by that much, and what arrived is read before it applies
    /// again. A caller that merely polls seldom gets no such grace.
    #[test]
    fn a_suspend_moves_the_bound_on() {
        let t0 = Instant::now();
        // A gap longer than the bound (2 s) since the last poll.
        let mut s = joined(|b| b.request_timeout(secs(2)).heartbeat_interval(60));
        send(&mut s, t0);
        assert_eq!(wait(&mut s, t0 + ms(100), true), Some(t0 + secs(2)));
        let resume = t0 + secs(7);
        // Moved on by the 6.9 s gap: sent "at" 6.9 s, bound at 8.9 s.
        assert_eq!(wait(&mut s, resume, true), Some(t0 + ms(8900)));
        assert_eq!(
            s.phase(resume),
            Phase::InFlight {
                due: t0,
                sent: t0 + ms(6900)
            }
        );
        s.handle_response(resume + ms(20), ack()).unwrap();
        assert_eq!(s.failing_since(), None);

        // A wait the driver saw overrun by 2 s, with a gap shorter than
        // the bound (10 s).
        let mut s = joined(|b| b.heartbeat_interval(60));
        send(&mut s, t0);
        assert_eq!(wait(&mut s, t0 + secs(9), true), Some(t0 + secs(10)));
        let resume = t0 + secs(12);
        s.resumed(resume, secs(2));
        // Moved on by the 2 s overrun: the bound is now, and what arrived
        // is read once before it applies.
        assert_eq!(wait(&mut s, resume, true), Some(resume));
        let e = s.poll(resume + ms(10), true).unwrap_err();
        assert!(is_timeout(&e), "{e:?}");

        // Overrun by less than 1 s: no suspend, the bound holds.
        let mut s = joined(|b| b.heartbeat_interval(60));
        send(&mut s, t0);
        assert_eq!(wait(&mut s, t0 + secs(5), true), Some(t0 + secs(10)));
        assert_eq!(wait(&mut s, t0 + ms(10_500), true), Some(t0 + secs(10)));
        assert!(s.poll(t0 + ms(10_600), true).is_err());

        // A caller that polls every 5 s, no suspend: past the bound, one
        // more read, then the timeout.
        let mut s = joined(|b| b.heartbeat_interval(60));
        send(&mut s, t0);
        assert_eq!(wait(&mut s, t0 + secs(5), true), Some(t0 + secs(10)));
        assert_eq!(wait(&mut s, t0 + secs(15), true), Some(t0 + secs(10)));
        let e = s.poll(t0 + secs(20), true).unwrap_err();
        assert!(is_timeout(&e), "{e:?}");
    }

    /// A change of what is joined or of a state while a heartbeat is in
    /// flight: that one is finished, and the next is sent as soon as it
    /// ends, with the change.
    #[test]
    fn a_change_in_flight_is_sent_next() {
        let t0 = Instant::now();
        let mut s = joined(|b| b.heartbeat_interval(60));
        let first = send(&mut s, t0);
        assert!(!first.request.url().contains("state="));
        s.set_state_json("lobby", r#"{"mood":"ok"}"#).unwrap();
        assert!(s.in_flight(), "the one in flight is finished first");
        assert_eq!(wait(&mut s, t0 + ms(10), true), Some(t0 + secs(10)));
        s.handle_response(t0 + ms(50), ack()).unwrap();
        assert_eq!(s.phase(t0 + ms(50)), Phase::Due);
        let second = send(&mut s, t0 + ms(50));
        assert!(
            second.request.url().contains("state="),
            "{}",
            second.request.url()
        );
        // The same state again sends nothing.
        s.handle_response(t0 + ms(90), ack()).unwrap();
        s.set_state_json("lobby", r#"{"mood":"ok"}"#).unwrap();
        assert_eq!(
            s.phase(t0 + ms(90)),
            Phase::Scheduled(t0 + ms(50) + secs(60))
        );
    }

    /// After a failure, the next attempt comes within a quarter of the
    /// interval, whatever the backoff or the server's `Retry-After` says.
    #[test]
    fn the_backoff_is_capped_at_a_quarter_of_the_interval() {
        let t0 = Instant::now();
        let mut s = joined(|b| b.heartbeat_interval(1));
        send(&mut s, t0);
        let busy = Response {
            status: 503,
            body: b"busy".to_vec(),
            retry_after: Some(secs(20)),
        };
        let e = s.handle_response(t0 + ms(10), busy).unwrap_err();
        assert_eq!(e.status(), Some(503));
        assert_eq!(s.phase(t0 + ms(10)), Phase::BackingOff(t0 + ms(260)));
        // Without a cap (interval 60 s: 15 s) the Retry-After is honoured.
        let mut s = joined(|b| b.heartbeat_interval(60));
        send(&mut s, t0);
        let busy = Response {
            status: 429,
            body: Vec::new(),
            retry_after: Some(secs(12)),
        };
        assert!(s.handle_response(t0, busy).is_err());
        assert_eq!(s.phase(t0), Phase::BackingOff(t0 + secs(12)));
        // A join (a change) waits the backoff out: changes on every turn
        // of a loop during an outage do not send a heartbeat each.
        s.join(vec!["hall".into()]).unwrap();
        s.set_state_json("hall", r#"{"n":1}"#).unwrap();
        assert_eq!(s.phase(t0 + ms(1)), Phase::BackingOff(t0 + secs(12)));
        assert!(
            matches!(s.poll(t0 + ms(1), false), Ok(Step::Wait(Some(at))) if at == t0 + secs(12))
        );
        assert_eq!(s.phase(t0 + secs(12)), Phase::Due);
    }

    /// The path works again (another connection answered after the
    /// failures began): the backoff ends at once, once per run of
    /// failures; an answer from before the run changes nothing.
    #[test]
    fn a_restart_ends_the_backoff_once_per_run() {
        let t0 = Instant::now();
        let mut s = joined(|b| b.heartbeat_interval(60));
        send(&mut s, t0);
        let cut = || Error::transport(TransportErrorKind::Io, "connection reset");
        let _ = s.handle_failure(t0 + ms(10), cut());
        assert!(matches!(s.phase(t0 + ms(20)), Phase::BackingOff(_)));
        assert!(!s.restart(t0), "answered before the failures began");
        assert!(s.restart(t0 + ms(15)));
        assert_eq!(s.phase(t0 + ms(20)), Phase::Due);
        send(&mut s, t0 + ms(20));
        let _ = s.handle_failure(t0 + ms(30), cut());
        assert!(!s.restart(t0 + ms(40)), "once per run");
        assert!(matches!(s.phase(t0 + ms(40)), Phase::BackingOff(_)));
    }

    /// A failed request (no answer) is counted and backed off; a body that
    /// is not an acknowledgement is a failure too.
    #[test]
    fn failures_are_counted_and_backed_off() {
        let t0 = Instant::now();
        let mut s = joined(|b| b.heartbeat_interval(60));
        send(&mut s, t0);
        let cut = Error::transport(TransportErrorKind::Io, "connection reset");
        let e = s.handle_failure(t0 + ms(5), cut);
        assert!(e.is_retryable());
        assert!(!s.in_flight());
        assert_eq!(s.phase(t0 + ms(5)), Phase::BackingOff(t0 + ms(505)));
        send(&mut s, t0 + ms(505));
        let garbled = Response {
            status: 200,
            body: b"{\"status\":".to_vec(),
            retry_after: None,
        };
        assert!(s.handle_response(t0 + ms(600), garbled).is_err());
        // The second failure in a row waits 1 s.
        assert_eq!(s.phase(t0 + ms(600)), Phase::BackingOff(t0 + ms(1600)));
        assert_eq!(s.failing_since(), Some(t0 + ms(5)));
    }

    /// Leaving forgets the channels and the heartbeat in flight (which
    /// still names them); a request the driver lost is sent again; an
    /// answer with nothing in flight changes nothing.
    #[test]
    fn forget_abandon_and_a_lost_request() {
        let t0 = Instant::now();
        let mut s = joined(|b| b.heartbeat_interval(60));
        s.join(vec!["hall".into()]).unwrap();
        s.set_state_json("lobby", "{}").unwrap();
        send(&mut s, t0);
        s.forget(&["lobby".into()], &[]);
        assert!(!s.in_flight());
        assert_eq!(s.channels(), ["hall"]);
        // The driver still holds the old request: the new one replaces it.
        let again = match s.poll(t0 + ms(1), true) {
            Ok(Step::Send(t)) => t,
            other => panic!("{other:?}"),
        };
        assert!(
            !again.request.url().contains("lobby"),
            "{}",
            again.request.url()
        );
        // The driver lost it: sent again at once, still due.
        assert!(s.in_flight());
        send(&mut s, t0 + ms(2));
        s.abandon();
        assert_eq!(s.phase(t0 + ms(3)), Phase::Due);
        send(&mut s, t0 + ms(3));
        s.forget(&["hall".into()], &[]);
        assert_eq!(s.phase(t0 + ms(4)), Phase::Idle);
        assert_eq!(wait(&mut s, t0 + ms(4), true), None);
        s.handle_response(t0 + ms(5), ack()).unwrap();
        assert_eq!(s.last_success(), None);
        assert!(!s.link_used());
    }

    /// Interval 0: never due on its own, even on join; the in-flight bound
    /// is the request timeout.
    #[test]
    fn interval_zero_is_never_due() {
        let t0 = Instant::now();
        let mut s = joined(|b| b.heartbeat_interval(0));
        assert_eq!(s.next_due(t0), None);
        assert_eq!(s.phase(t0), Phase::Idle);
        assert_eq!(wait(&mut s, t0, false), None);
        assert_eq!(s.in_flight_bound(), secs(10));
    }

    /// The one-shot leave: sent once, then waits; its answer's status
    /// decides.
    #[test]
    fn the_leave_is_sent_once() {
        let t0 = Instant::now();
        let p = client(|b| b);
        let mut leave = LeaveOnce {
            request: Some(p.leave().channels(vec!["a".into()]).request().unwrap()),
            silence: secs(2),
        };
        match leave.poll(t0, false) {
            Ok(Step::Send(t)) => {
                assert!(t.request.path().contains("/leave"));
                assert_eq!(t.silence, secs(2));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(leave.poll(t0, true), Ok(Step::Wait(None))));
        assert!(leave.handle_response(t0, ack()).is_ok());
        let denied = Response {
            status: 403,
            body: br#"{"status":403,"error":true,"message":"Forbidden"}"#.to_vec(),
            retry_after: None,
        };
        assert_eq!(
            leave.handle_response(t0, denied).unwrap_err().status(),
            Some(403)
        );
    }
}
