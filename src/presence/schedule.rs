//! Staying present without a runtime: a heartbeat schedule driven by the
//! caller's own loop ([`Heartbeater`]), the device loop that keeps a user
//! present and watches events in one bounded call ([`PresenceLoop`]), and
//! an optional helper that runs the schedule on one background thread
//! ([`HeartbeatThread`]).
//!
//! Everything here waits at most the budget its caller gives: a heartbeat
//! that cannot complete in time stays in flight on its kept connection and
//! is finished by a later call; a failed one is reported once and tried
//! again after a backoff (0.5 s doubling to 30 s, never beyond the
//! heartbeat interval), not at every call.

use crate::backoff::Backoff;
use crate::client::PubNub;
use crate::clock::{deadline_after, earliest};
use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::presence::events::{PresenceEvent, PresenceEvents};
use crate::presence::link::{FailureLog, Link, LinkState};
use crate::state;
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

/// Keeps a user present on channels and groups: holds what was joined and
/// the per-channel state, knows when the next heartbeat is due, and sends
/// it (state included, every time).
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
    pubnub: PubNub,
    channels: Vec<String>,
    groups: Vec<String>,
    state: BTreeMap<String, String>,
    interval: Option<Duration>,
    next_due: Option<Instant>,
    conn: Option<Conn>,
    /// The heartbeat in flight on `conn`, and the instant it was due.
    in_flight: Option<Instant>,
    /// When the heartbeat in flight was sent: it is abandoned once it has
    /// been in flight for [`Heartbeater::in_flight_bound`].
    sent_at: Option<Instant>,
    /// The last call that drove the heartbeat in flight: a gap longer than
    /// the bound since (the device or the caller did not run: a suspend)
    /// moves the bound on by the gap, so what arrived meanwhile is read
    /// before the bound applies again, from the resume.
    polled_at: Option<Instant>,
    /// Joined channels or state changed while a heartbeat was in flight.
    changed: bool,
    backoff: Backoff,
    last_success: Option<Instant>,
    link: Link,
}

impl Heartbeater {
    /// A schedule using the client's `heartbeat_interval` (0 = never due on
    /// its own; [`Heartbeater::heartbeat_now`] still works).
    pub fn new(pubnub: &PubNub) -> Self {
        let secs = pubnub.config().heartbeat_interval();
        Heartbeater {
            pubnub: pubnub.clone(),
            channels: Vec::new(),
            groups: Vec::new(),
            state: BTreeMap::new(),
            interval: (secs > 0).then(|| Duration::from_secs(u64::from(secs))),
            next_due: None,
            conn: None,
            in_flight: None,
            sent_at: None,
            polled_at: None,
            changed: false,
            backoff: Backoff::default(),
            last_success: None,
            link: Link::new("heartbeats"),
        }
    }

    /// Adds channels; when any is new, the next heartbeat is due at once.
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
    /// once. Fails, joining none of them, as [`Heartbeater::join`] does.
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
    /// sent at once, the same state again sends nothing. Takes the value or
    /// a reference to it, like
    /// [`PubNub::set_presence_state`](crate::PubNub::set_presence_state).
    ///
    /// Fails, keeping the state set before, when the value does not
    /// serialize to a JSON object of at most 127 levels (each heartbeat
    /// sends it inside the map of per-channel states; see
    /// [`crate::state`]), or when the heartbeat would no longer fit in
    /// [`MAX_URL_LEN`](crate::request::MAX_URL_LEN).
    pub fn set_state<T: state::Serialize>(&mut self, channel: &str, value: T) -> Result<()> {
        let json = state::to_json_object(&value, "state", state::MAX_CHANNEL_STATE_DEPTH)?;
        self.put_state(channel, json)
    }

    /// Sets the state for `channel` from JSON text (one object); a change
    /// is sent at once, the same text again sends nothing. Fails as
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
    /// list or state) is abandoned on the kept connection's next use.
    fn due_now(&mut self) {
        self.next_due = None;
        self.changed = self.in_flight.is_some();
        self.backoff.succeed();
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

    /// What the heartbeat's connection is doing: see [`LinkState`]
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
    /// knows at `now` (see [`Heartbeater::present_until`]).
    pub fn is_present(&self, now: Instant) -> bool {
        self.present_until().is_some_and(|until| now < until)
    }

    /// Since when heartbeats have been failing, if the last one failed.
    pub(crate) fn failing_since(&self) -> Option<Instant> {
        self.link.down_since()
    }

    /// Whether a heartbeat has ended (succeeded or failed) so far.
    pub(crate) fn link_used(&self) -> bool {
        self.link.used()
    }

    /// Whether a heartbeat is in flight on the kept connection.
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
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
        let due = self.next_due.unwrap_or(now).min(now);
        match self.heartbeat_call().execute() {
            Ok(()) => {
                self.succeeded(due, now);
                Ok(())
            }
            Err(e) => Err(self.failed(e, now)),
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

    pub(crate) fn poll_until(&mut self, deadline: Option<Instant>) -> Result<bool> {
        let now = crate::clock::now();
        let due = match self.in_flight {
            Some(due) => due,
            None => match self.next_due(now) {
                Some(due) if due <= now => {
                    let due = self.next_due.unwrap_or(now).min(now);
                    if let Err(e) = self.start(due) {
                        return Err(self.failed(e, now));
                    }
                    due
                }
                _ => return Ok(false),
            },
        };
        if let (Some(last), Some(sent)) = (self.polled_at, self.sent_at) {
            let gap = now.saturating_duration_since(last);
            if gap > self.in_flight_bound() {
                self.sent_at = sent.checked_add(gap).or(Some(sent));
            }
        }
        self.polled_at = Some(now);
        // However the server trickles bytes (or repeats 1xx heads), a
        // heartbeat is not in flight longer than its bound.
        let give_up = self
            .sent_at
            .and_then(|at| at.checked_add(self.in_flight_bound()));
        let until = earliest(deadline, give_up);
        let Some(conn) = self.conn.as_mut() else {
            return Ok(false);
        };
        match conn.drive(until) {
            Ok(None)
                if until.is_some_and(|u| {
                    crate::clock::now().saturating_duration_since(u) > SUSPENDED
                }) =>
            {
                // The call overran its wait by far: the device was
                // suspended in it. The bound runs again from the resume.
                let now = crate::clock::now();
                let over = until.map_or(Duration::ZERO, |u| now.saturating_duration_since(u));
                self.sent_at = self.sent_at.map(|t| t.checked_add(over).unwrap_or(t));
                self.polled_at = Some(now);
                Ok(false)
            }
            Ok(None) => match give_up {
                Some(g) if crate::clock::now() >= g => {
                    conn.abort();
                    self.in_flight = None;
                    self.sent_at = None;
                    let e = Error::transport(
                        crate::TransportErrorKind::Timeout,
                        "heartbeat did not complete within its bound (request_timeout, at most the heartbeat interval)",
                    );
                    Err(self.failed(e, crate::clock::now()))
                }
                _ => Ok(false),
            },
            Ok(Some(resp)) => {
                self.in_flight = None;
                self.sent_at = None;
                let result = match resp.error() {
                    None => crate::envelope::decode_ack(&resp.body),
                    Some(e) => Err(e),
                };
                let now = crate::clock::now();
                match result {
                    Ok(()) => {
                        self.succeeded(due, now);
                        Ok(true)
                    }
                    Err(e) => Err(self.failed_after(e, now, resp.retry_after)),
                }
            }
            Err(e) => {
                self.in_flight = None;
                self.sent_at = None;
                Err(self.failed(e, crate::clock::now()))
            }
        }
    }

    /// How long a heartbeat sent by [`Heartbeater::poll`] may be in flight
    /// in all (not only without a byte moving): the client's
    /// `request_timeout`, or the heartbeat interval if that is shorter (a
    /// heartbeat older than one interval is late anyway). Past it, the
    /// connection is dropped, the failure returned once and the heartbeat
    /// tried again after the backoff.
    pub fn in_flight_bound(&self) -> Duration {
        let timeout = self.pubnub.config().request_timeout;
        self.interval.map_or(timeout, |i| timeout.min(i))
    }

    /// Starts the heartbeat request on the kept connection.
    fn start(&mut self, due: Instant) -> Result<()> {
        let url = self.pubnub.url_for(self.heartbeat_call().request()?)?;
        let timeout = self.pubnub.config().request_timeout;
        self.idle_conn()?.start(url, timeout)?;
        self.in_flight = Some(due);
        self.sent_at = Some(crate::clock::now());
        self.changed = false;
        Ok(())
    }

    /// The heartbeat for everything joined, with the per-channel states.
    fn heartbeat_call(&self) -> crate::presence::heartbeat::HeartbeatBuilder<'_> {
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

    /// The kept connection, opened on first use, with nothing in flight (a
    /// request in flight is abandoned).
    fn idle_conn(&mut self) -> Result<&mut Conn> {
        if self.conn.is_none() {
            self.conn = Some(Conn::new(self.pubnub.endpoint()));
        }
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| Error::input("heartbeat", "no connection"))?;
        if conn.busy() {
            conn.abort();
        }
        Ok(conn)
    }

    /// Of the given channels and groups, those joined; `None` if none is.
    fn joined(
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

    fn succeeded(&mut self, due: Instant, now: Instant) {
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

    fn failed(&mut self, e: Error, now: Instant) -> Error {
        self.failed_after(e, now, None)
    }

    fn failed_after(&mut self, e: Error, now: Instant, retry_after: Option<Duration>) -> Error {
        // Presence must not lapse: after a cut, the next attempt comes
        // within a quarter of the interval (7 s for a 60 s presence
        // timeout; the 30 s cap for the default 300 s), so a cut shorter
        // than the timeout less the interval and that keeps the device
        // present.
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

    /// Sends `leave` for some channels and groups (blocking, with the
    /// client's retry policy), and stops heartbeating them. On failure
    /// nothing is forgotten: they stay joined (and their state kept), so
    /// the call can be made again.
    pub fn leave_channels(&mut self, channels: Vec<String>, groups: Vec<String>) -> Result<()> {
        let Some((channels, groups)) = self.joined(channels, groups) else {
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
        self.channels.retain(|c| !channels.contains(c));
        self.groups.retain(|g| !groups.contains(g));
        for c in channels {
            self.state.remove(c);
        }
        // A heartbeat in flight still names them: abandon it.
        if let Some(conn) = &mut self.conn {
            conn.abort();
        }
        self.in_flight = None;
        self.sent_at = None;
        if self.channels.is_empty() && self.groups.is_empty() {
            self.next_due = None;
        }
    }

    /// Sends `leave` for everything joined and forgets it (and its state).
    /// On failure everything stays joined.
    pub fn leave(&mut self) -> Result<()> {
        let (channels, groups) = (self.channels.clone(), self.groups.clone());
        self.leave_channels(channels, groups)
    }

    /// Sends `leave` for everything joined on the kept connection, waiting
    /// at most `timeout`, once (no retries); forgets it when that worked.
    pub fn leave_within(&mut self, timeout: Duration) -> Result<()> {
        let (channels, groups) = (self.channels.clone(), self.groups.clone());
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
        let Some((channels, groups)) = self.joined(channels, groups) else {
            return Ok(());
        };
        let deadline = deadline_after(timeout);
        let req = self
            .pubnub
            .leave()
            .channels(channels.clone())
            .channel_groups(groups.clone())
            .request()?;
        let url = self.pubnub.url_for(req)?;
        self.in_flight = None;
        self.sent_at = None;
        let conn = self.idle_conn()?;
        conn.start(url, timeout)?;
        let Some(resp) = conn.drive(deadline)? else {
            conn.abort();
            return Err(Error::transport(
                crate::TransportErrorKind::Timeout,
                "leave did not complete in time",
            ));
        };
        if let Some(e) = resp.error() {
            return Err(e);
        }
        crate::envelope::decode_ack(&resp.body)?;
        self.forget(&channels, &groups);
        Ok(())
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

/// A wait overrun by more than this was a suspension of the device (or a
/// stopped process), not a slow answer.
const SUSPENDED: Duration = Duration::from_secs(1);

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
                                        leave_budget =
                                            THREAD_LEAVE_TIMEOUT.saturating_sub(started.elapsed());
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

    /// Joins more channels while running (a heartbeat goes out at once).
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
