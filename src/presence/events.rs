//! Presence events: who joined, left, timed out or changed state, decoded
//! from subscribe v2 long-poll responses on `-pnpres` channels
//! (docs/PROTOCOL.md §5), and a blocking stream over them.

use crate::backoff::Backoff;
use crate::client::PubNub;
use crate::clock::deadline_after;
use crate::driver::Lane;
use crate::encode::{encode_names_into, push_param};
use crate::engine::{Engine, Step, Transmit};
use crate::envelope::{self, Field};
use crate::error::{Error, ErrorKind, Result};
use crate::json::{digits_u64, string_list, Cursor, Kind};
use crate::num::itoa;
use crate::presence::link::{FailureLog, Link, LinkState};
use crate::presence::targets::{target_setters, Targets};
use crate::request::{self, Request};
use crate::state::{self, State};
use crate::transport::Response;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a failed request is logged.
const FAILURE_LOG: FailureLog = FailureLog {
    target: "pubnub_presence::events",
    message: "event stream request failed, next in",
};

const PNPRES: &str = "-pnpres";

/// A presence event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PresenceEvent<'a> {
    /// A user joined a channel.
    Join(UserEvent<'a>),
    /// A user left a channel.
    Leave(UserEvent<'a>),
    /// A user's presence timed out (no heartbeat within its timeout).
    Timeout(UserEvent<'a>),
    /// A user changed their state on a channel (`state` holds the new state).
    StateChange(UserEvent<'a>),
    /// Above the announce threshold the server sends periodic occupancy
    /// with join/leave/timeout deltas instead of per-user events.
    Interval(IntervalEvent<'a>),
    /// An event that could not be decoded (e.g. state nested deeper than
    /// the parser allows, or a field of the wrong type). The stream moves
    /// past it and delivers the rest of its batch; it is reported rather
    /// than dropped, so nothing is lost silently.
    Skipped(SkippedEvent<'a>),
    /// An action this crate does not know; skipped by the stream's
    /// consumers at will, never an error.
    Unknown {
        /// The channel (without `-pnpres`).
        channel: Cow<'a, str>,
        /// The `action` as sent.
        action: Cow<'a, str>,
    },
}

/// The fields of a join, leave, timeout or state-change event.
#[derive(Debug, Clone, PartialEq)]
pub struct UserEvent<'a> {
    /// The channel (without `-pnpres`).
    pub channel: Cow<'a, str>,
    /// The subscription that matched, when it differs from the channel
    /// (a channel group or wildcard, without `-pnpres`).
    pub subscription: Option<Cow<'a, str>>,
    /// The user the event is about.
    pub user_id: Cow<'a, str>,
    /// Users on the channel after the event.
    pub occupancy: u32,
    /// Unix seconds.
    pub timestamp: u64,
    /// Unix milliseconds, sent by servers since about 2024.
    pub precise_timestamp: Option<u64>,
    /// The user's state (`data`), when the event carries it.
    pub state: Option<State<'a>>,
}

/// An undecodable event, see [`PresenceEvent::Skipped`].
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedEvent<'a> {
    /// The channel (without `-pnpres`), when it could be read.
    pub channel: Option<Cow<'a, str>>,
    /// The publish timetoken, 0 when it could not be read.
    pub timetoken: u64,
    /// What was wrong, with the byte offset in the response body.
    pub reason: String,
}

/// The fields of an interval event.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalEvent<'a> {
    /// The channel (without `-pnpres`).
    pub channel: Cow<'a, str>,
    /// The subscription that matched, when it differs from the channel.
    pub subscription: Option<Cow<'a, str>>,
    /// Users on the channel.
    pub occupancy: u32,
    /// Unix seconds.
    pub timestamp: u64,
    /// Users who joined since the last interval.
    pub join: Vec<Cow<'a, str>>,
    /// Users who left since the last interval.
    pub leave: Vec<Cow<'a, str>>,
    /// Users who timed out since the last interval.
    pub timeout: Vec<Cow<'a, str>>,
    /// The deltas were too large to send: call here_now to refresh.
    pub here_now_refresh: bool,
}

fn owned(s: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(s.into_owned())
}

pub(crate) fn owned_list(v: Vec<Cow<'_, str>>) -> Vec<Cow<'static, str>> {
    v.into_iter().map(owned).collect()
}

impl UserEvent<'_> {
    fn into_owned(self) -> UserEvent<'static> {
        UserEvent {
            channel: owned(self.channel),
            subscription: self.subscription.map(owned),
            user_id: owned(self.user_id),
            occupancy: self.occupancy,
            timestamp: self.timestamp,
            precise_timestamp: self.precise_timestamp,
            state: self.state.map(state::into_owned),
        }
    }
}

impl PresenceEvent<'_> {
    /// Converts into an event that owns all its data.
    pub fn into_owned(self) -> PresenceEvent<'static> {
        match self {
            PresenceEvent::Join(e) => PresenceEvent::Join(e.into_owned()),
            PresenceEvent::Leave(e) => PresenceEvent::Leave(e.into_owned()),
            PresenceEvent::Timeout(e) => PresenceEvent::Timeout(e.into_owned()),
            PresenceEvent::StateChange(e) => PresenceEvent::StateChange(e.into_owned()),
            PresenceEvent::Interval(e) => PresenceEvent::Interval(IntervalEvent {
                channel: owned(e.channel),
                subscription: e.subscription.map(owned),
                occupancy: e.occupancy,
                timestamp: e.timestamp,
                join: owned_list(e.join),
                leave: owned_list(e.leave),
                timeout: owned_list(e.timeout),
                here_now_refresh: e.here_now_refresh,
            }),
            PresenceEvent::Skipped(e) => PresenceEvent::Skipped(SkippedEvent {
                channel: e.channel.map(owned),
                timetoken: e.timetoken,
                reason: e.reason,
            }),
            PresenceEvent::Unknown { channel, action } => PresenceEvent::Unknown {
                channel: owned(channel),
                action: owned(action),
            },
        }
    }

    /// The channel the event is about (without `-pnpres`; empty for a
    /// skipped event whose channel could not be read).
    pub fn channel(&self) -> &str {
        match self {
            PresenceEvent::Join(e)
            | PresenceEvent::Leave(e)
            | PresenceEvent::Timeout(e)
            | PresenceEvent::StateChange(e) => &e.channel,
            PresenceEvent::Interval(e) => &e.channel,
            PresenceEvent::Skipped(e) => e.channel.as_deref().unwrap_or(""),
            PresenceEvent::Unknown { channel, .. } => channel,
        }
    }
}

/// The subscribe cursor: timetoken and region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timetoken {
    /// The timetoken (`t.t`), 0 before the handshake.
    pub t: u64,
    /// The region (`t.r`).
    pub r: u32,
}

/// One event with the timetoken it was published at.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedEvent<'a> {
    /// The publish timetoken (`p.t`), used to drop duplicates.
    pub timetoken: u64,
    /// An FNV-1a hash of the channel, the subscription and the raw event
    /// payload (`d`): with the timetoken, what identifies a redelivered
    /// event.
    pub payload_hash: u64,
    /// The event.
    pub event: PresenceEvent<'a>,
}

/// A decoded subscribe response.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBatch<'a> {
    /// The cursor to poll from next.
    pub next: Timetoken,
    /// The presence events in this response, in order. Messages on
    /// channels that are not `-pnpres` are left out.
    pub events: Vec<ReceivedEvent<'a>>,
}

/// Decodes a subscribe v2 response body into presence events. An element
/// that cannot be decoded becomes a [`PresenceEvent::Skipped`] in its
/// place; the others are decoded. The body as a whole must be well-formed
/// JSON of the subscribe shape (`t`, `m`), or it is an error (also when it
/// breaks off after its cursor).
pub fn decode(body: &[u8]) -> Result<EventBatch<'_>> {
    let text =
        std::str::from_utf8(body).map_err(|e| Error::decode(e.valid_up_to(), "invalid utf-8"))?;
    let mut items = Items::read(text)?;
    let next = items.next;
    let mut events = Vec::new();
    while let Some(e) = items.next_event(text) {
        events.push(e);
    }
    match items.broken {
        Some(e) => Err(e),
        None => Ok(EventBatch { next, events }),
    }
}

/// The elements of a subscribe response's `m`, walked one at a time, so
/// that a stream decodes each event only when it is asked for, from the
/// body it keeps (no batch of owned events up front).
#[derive(Debug, Default)]
struct Items {
    /// The batch's cursor (`t`).
    next: Timetoken,
    /// Where the walk goes on: the offset of `m`'s `[`, then of what
    /// follows the last element read.
    pos: usize,
    opened: bool,
    first: bool,
    done: bool,
    /// Whether `m` held any element.
    any: bool,
    /// Why the body could not be read past some point, after `t` was: the
    /// body is malformed as a whole (not one bad element of a well-formed
    /// array), an error once its elements before the break are walked.
    broken: Option<Error>,
}

impl Items {
    /// Reads `t` and finds `m`. A body that breaks off after `t` keeps its
    /// cursor and the break (in `broken`): the stream delivers the
    /// elements before the break, then fails with the break (and backs
    /// off), and never asks for the same broken batch again.
    fn read(text: &str) -> Result<Items> {
        let mut next = None;
        let mut items = None;
        let parsed = envelope::parse_with(text.as_bytes(), |key, c| {
            match key {
                "t" => next = Some(decode_timetoken(c)?),
                "m" => {
                    items = Some(c.offset());
                    c.skip_value_deep()?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        });
        let broken = match (parsed, next) {
            (Ok(_), Some(_)) => None,
            (Ok(_), None) => return Err(Error::decode(0, "subscribe body has no cursor 't'")),
            (Err(e), Some(_)) if !matches!(e.kind(), ErrorKind::Server(_)) => Some(e),
            (Err(e), _) => return Err(e),
        };
        Ok(Items {
            next: next.unwrap_or_default(),
            done: items.is_none(),
            pos: items.unwrap_or(0),
            first: true,
            broken,
            ..Items::default()
        })
    }

    /// The span of the next element of `m`.
    fn next_span(&mut self, text: &str) -> Result<Option<(usize, usize)>> {
        let mut c = Cursor::with_base(text.get(self.pos..).unwrap_or_default(), self.pos);
        if !self.opened {
            c.begin_array()?;
            self.opened = true;
        }
        if !c.next_element(&mut self.first)? {
            return Ok(None);
        }
        c.skip_ws();
        self.any = true;
        let at = c.offset();
        let raw = c.skip_value_deep()?;
        self.pos = c.offset();
        Ok(Some((at, at + raw.len())))
    }

    /// The next presence event (or skipped event) of the batch; `None` at
    /// the end (or at a break, kept in `broken`). Messages that are not
    /// presence events are passed over.
    fn next_event<'a>(&mut self, text: &'a str) -> Option<ReceivedEvent<'a>> {
        while !self.done {
            match self.next_span(text) {
                Ok(Some((at, end))) => {
                    if let Some(e) = decode_element(text.get(at..end).unwrap_or_default(), at) {
                        return Some(e);
                    }
                }
                Ok(None) => self.done = true,
                Err(e) => {
                    self.done = true;
                    self.broken.get_or_insert(e);
                }
            }
        }
        None
    }
}

fn parse_tt(c: &mut Cursor<'_>) -> Result<u64> {
    // Timetokens are strings of digits ("17302026156815862"); accept numbers too.
    match c.peek_kind()? {
        Kind::String => {
            let at = c.offset();
            let s = c.parse_str()?;
            digits_u64(&s).ok_or_else(|| Error::decode(at, "timetoken is not a u64 number"))
        }
        _ => c.parse_u64(),
    }
}

fn decode_timetoken(c: &mut Cursor<'_>) -> Result<Timetoken> {
    let mut tt = Timetoken::default();
    c.begin_object()?;
    let mut first = true;
    while let Some(key) = c.next_key(&mut first)? {
        match &*key {
            "t" => tt.t = parse_tt(c)?,
            "r" => tt.r = c.parse_u32()?,
            _ => {
                c.skip_value()?;
            }
        }
    }
    Ok(tt)
}

fn strip_pnpres(name: Cow<'_, str>) -> Option<Cow<'_, str>> {
    match name {
        Cow::Borrowed(s) => s.strip_suffix(PNPRES).map(Cow::Borrowed),
        Cow::Owned(s) => s.strip_suffix(PNPRES).map(|s| Cow::Owned(s.to_string())),
    }
}

/// The fields of one element of `m` that matter here.
#[derive(Default)]
struct MessageFields<'a> {
    channel: Option<Cow<'a, str>>,
    subscription: Option<Cow<'a, str>>,
    timetoken: u64,
    payload: Option<Field<'a>>,
    kind_other: bool,
}

// NOTE(size): the fields are read into a struct by a function of their own,
// so the many `?` exits drop one struct (one call) instead of each inlining
// the drops of every live `Cow` and `Vec`. This kept the event decoder
// several KB smaller in the size-profile build.
#[inline(never)]
fn read_message<'a>(c: &mut Cursor<'a>, m: &mut MessageFields<'a>) -> Result<()> {
    c.begin_object()?;
    let mut first = true;
    while let Some(key) = c.next_key(&mut first)? {
        match &*key {
            "c" => m.channel = Some(c.parse_str()?),
            "b" => m.subscription = Some(c.parse_str()?),
            "p" => {
                c.begin_object()?;
                let mut f = true;
                while let Some(k) = c.next_key(&mut f)? {
                    if k == "t" {
                        m.timetoken = parse_tt(c)?;
                    } else {
                        c.skip_value()?;
                    }
                }
            }
            "e" => {
                // Absent or 0 for presence and messages; anything else is
                // a signal, object, action or file event.
                m.kind_other = c.skip_value()? != "0";
            }
            "d" => {
                c.skip_ws();
                let offset = c.offset();
                // Found at any depth here; a payload too deep to decode is
                // then reported as skipped, with its channel.
                m.payload = Some(Field {
                    raw: c.skip_value_deep()?,
                    offset,
                });
            }
            _ => {
                c.skip_value()?;
            }
        }
    }
    Ok(())
}

/// Decodes one element of `m` (its text, at `offset` in the body);
/// `None` for a message that is not a presence event, a
/// [`PresenceEvent::Skipped`] for one that cannot be decoded.
fn decode_element(raw: &str, offset: usize) -> Option<ReceivedEvent<'_>> {
    let mut m = MessageFields::default();
    let read = read_message(&mut Cursor::with_base(raw, offset), &mut m);
    // Only presence events are ours to judge: other messages on the
    // subscription (chat, signals, objects) are passed over silently.
    if m.kind_other || m.channel.as_deref().is_some_and(|c| !c.ends_with(PNPRES)) {
        return None;
    }
    let channel = m.channel.clone().and_then(strip_pnpres);
    let subscription = m.subscription.clone().and_then(strip_pnpres);
    // The channel and subscription are part of what identifies an event:
    // the same join on two channels in the same 100 ns is two events.
    let mut hash = fnv1a(FNV_START, channel.as_deref().unwrap_or("").as_bytes());
    hash = fnv1a(hash, &[0xff]);
    hash = fnv1a(hash, subscription.as_deref().unwrap_or("").as_bytes());
    hash = fnv1a(hash, &[0xff]);
    hash = fnv1a(hash, m.payload.map_or("", |p| p.raw).as_bytes());
    let timetoken = m.timetoken;
    let event = match read.and_then(|()| build_event(m, offset)) {
        Ok(Some(event)) => event,
        Ok(None) => return None,
        Err(e) => PresenceEvent::Skipped(SkippedEvent {
            channel,
            timetoken,
            reason: e.to_string(),
        }),
    };
    Some(ReceivedEvent {
        timetoken,
        payload_hash: hash,
        event,
    })
}

fn build_event(m: MessageFields<'_>, start: usize) -> Result<Option<PresenceEvent<'_>>> {
    let channel = m
        .channel
        .ok_or_else(|| Error::decode(start, "message without channel 'c'"))?;
    let Some(channel) = strip_pnpres(channel) else {
        return Ok(None);
    };
    let payload = m
        .payload
        .ok_or_else(|| Error::decode(start, "presence message without 'd'"))?;
    if payload.cursor().peek_kind()? != Kind::Object {
        return Ok(None);
    }
    let subscription = m
        .subscription
        .and_then(strip_pnpres)
        .filter(|s| *s != channel);
    decode_payload(payload, channel, subscription).map(Some)
}

/// The fields of a presence payload (`d`).
#[derive(Default)]
struct PayloadFields<'a> {
    action: Option<Cow<'a, str>>,
    user_id: Option<Cow<'a, str>>,
    occupancy: u32,
    timestamp: u64,
    precise_timestamp: Option<u64>,
    data: Option<State<'a>>,
    join: Vec<Cow<'a, str>>,
    leave: Vec<Cow<'a, str>>,
    timeout: Vec<Cow<'a, str>>,
    here_now_refresh: bool,
}

#[inline(never)]
fn read_payload<'a>(c: &mut Cursor<'a>, p: &mut PayloadFields<'a>) -> Result<()> {
    c.begin_object()?;
    let mut first = true;
    while let Some(key) = c.next_key(&mut first)? {
        match &*key {
            "action" => p.action = Some(c.parse_str()?),
            "uuid" => p.user_id = Some(c.parse_str()?),
            "occupancy" => p.occupancy = c.parse_u32()?,
            "timestamp" => p.timestamp = c.parse_u64()?,
            "precise_timestamp" => p.precise_timestamp = Some(c.parse_u64()?),
            "data" => {
                p.data = Some(state::from_raw(c.skip_value()?));
            }
            "join" => p.join = string_list(c)?,
            "leave" => p.leave = string_list(c)?,
            "timeout" => p.timeout = string_list(c)?,
            "here_now_refresh" => p.here_now_refresh = c.parse_bool()?,
            _ => {
                c.skip_value()?;
            }
        }
    }
    Ok(())
}

fn decode_payload<'a>(
    payload: Field<'a>,
    channel: Cow<'a, str>,
    subscription: Option<Cow<'a, str>>,
) -> Result<PresenceEvent<'a>> {
    let mut p = PayloadFields::default();
    read_payload(&mut payload.cursor(), &mut p)?;
    let action = p
        .action
        .ok_or_else(|| Error::decode(payload.offset, "presence event without action"))?;
    let wrap: fn(UserEvent<'a>) -> PresenceEvent<'a> = match &*action {
        "join" => PresenceEvent::Join,
        "leave" => PresenceEvent::Leave,
        "timeout" => PresenceEvent::Timeout,
        "state-change" => PresenceEvent::StateChange,
        "interval" => {
            return Ok(PresenceEvent::Interval(IntervalEvent {
                channel,
                subscription,
                occupancy: p.occupancy,
                timestamp: p.timestamp,
                join: p.join,
                leave: p.leave,
                timeout: p.timeout,
                here_now_refresh: p.here_now_refresh,
            }))
        }
        _ => return Ok(PresenceEvent::Unknown { channel, action }),
    };
    let user_id = p
        .user_id
        .ok_or_else(|| Error::decode(payload.offset, "presence event without uuid"))?;
    Ok(wrap(UserEvent {
        channel,
        subscription,
        user_id,
        occupancy: p.occupancy,
        timestamp: p.timestamp,
        precise_timestamp: p.precise_timestamp,
        state: p.data,
    }))
}

impl PubNub {
    /// A stream of join, leave, timeout, state-change and interval events
    /// on channels or groups, over one kept connection.
    pub fn presence_events(&self) -> PresenceEventsBuilder<'_> {
        PresenceEventsBuilder {
            pubnub: self,
            targets: Targets::default(),
            long_poll_timeout: crate::transport::LONG_POLL_TIMEOUT,
        }
    }
}

/// Builder for a presence event stream, from [`PubNub::presence_events`].
#[must_use = "a builder does nothing until open()"]
#[derive(Debug)]
pub struct PresenceEventsBuilder<'p> {
    pubnub: &'p PubNub,
    targets: Targets,
    long_poll_timeout: Duration,
}

impl<'p> PresenceEventsBuilder<'p> {
    target_setters! {
        /// Channels to watch (their `-pnpres` twins are subscribed).
        channels;
        /// Channel groups to watch (their `-pnpres` twins are subscribed).
        channel_groups;
    }

    /// How long the stream waits without a byte from the server before it
    /// drops the connection and resumes from its cursor on a new one
    /// (default 310 s: the server answers a long-poll within 280 s). A
    /// long-poll also ends within this plus the client's `request_timeout`
    /// in all, even if bytes keep trickling in. The
    /// handshake (`tt=0`), which the service answers at once, is held to
    /// the client's `request_timeout` instead. `open()` refuses zero and
    /// anything over [`MAX_DURATION`](crate::MAX_DURATION) (one day).
    pub fn long_poll_timeout(mut self, timeout: Duration) -> Self {
        self.long_poll_timeout = timeout;
        self
    }

    /// Checks the arguments and returns the stream. No request is sent
    /// until the first `next_event` or `poll`. A subscribe URL over
    /// [`request::MAX_URL_LEN`] (with the longest cursor) is an input
    /// error here.
    pub fn open(self) -> Result<PresenceEvents> {
        let pubnub = self.pubnub.clone();
        Ok(PresenceEvents {
            engine: self.engine()?,
            pubnub,
            lane: Lane::default(),
        })
    }

    /// Checks the arguments like [`open`](Self::open) and returns the
    /// stream's sans-IO engine, for a program that does its own IO: see
    /// [`EventStream`].
    pub fn engine(self) -> Result<EventStream> {
        self.targets.check()?;
        crate::config::check_duration("long_poll_timeout", self.long_poll_timeout, false)?;
        let Targets {
            mut channels,
            mut groups,
            ..
        } = self.targets;
        // In place: no second vector (and no collect code) per list.
        for name in channels.iter_mut().chain(&mut groups) {
            name.push_str(PNPRES);
        }
        let events = EventStream {
            pubnub: self.pubnub.clone(),
            channels,
            groups,
            cursor: Timetoken::default(),
            long_poll_timeout: self.long_poll_timeout,
            in_flight: false,
            fresh: false,
            batch: None,
            pending: VecDeque::new(),
            seen: Vec::new(),
            backoff: Backoff::default(),
            failures: 0,
            resets: 0,
            sent_at: None,
            idle_backoff: false,
            answered_at: None,
            link: Link::new("event stream"),
        };
        // The cursor only grows the URL by its digits: the longest one
        // bounds every request the stream will make.
        let longest = Timetoken {
            t: u64::MAX,
            r: u32::MAX,
        };
        request::check_url_len(self.pubnub.config(), &events.url_at(longest))?;
        Ok(events)
    }
}

/// How many recent events are remembered to drop duplicates.
const SEEN_CAPACITY: usize = 256;

/// A kept response body whose events are decoded one at a time.
struct Batch {
    body: String,
    items: Items,
    /// The response moved the cursor.
    moved: bool,
    /// An event of it was delivered (not a duplicate).
    delivered: bool,
    /// It came sooner than [`MIN_HOLD`] after its request was sent.
    quick: bool,
}

/// A response that comes this soon after its request was not held by the
/// server: empty at the same cursor, it is backed off (a server that does
/// not hold long-polls would otherwise be asked thousands of times a
/// second). The service holds a long-poll up to 280 s when nothing happens.
pub(crate) const MIN_HOLD: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("bytes", &self.body.len())
            .field("at", &self.items.pos)
            .finish()
    }
}

/// A stream of presence events over subscribe long-polling, on one kept
/// connection.
///
/// Created by [`PubNub::presence_events`]. Each request resumes from the
/// last cursor; events already delivered (same publish timetoken, channel
/// and payload) are not delivered again.
///
/// - [`poll(timeout)`](PresenceEvents::poll) waits at most `timeout` and
///   leaves the long-poll in flight when nothing came: the next `poll`
///   goes on reading the same response on the same connection (and a
///   connect or TLS handshake in progress goes on too). No thread is
///   spawned; a wait of 100 ms costs no reconnect.
/// - [`next_event`](PresenceEvents::next_event) blocks until an event, and
///   retries what may clear by itself (connection failures, timeouts,
///   resets, 5xx, 429) with backoff.
///
/// Errors: every failure is returned once, by the call in which it
/// happened (an outage is an error, never `Ok(None)`), and is followed by
/// a backoff (0.5 s doubling to 30 s, or the server's `Retry-After`)
/// before the next request; a `poll` during a backoff waits (at most its
/// timeout) and returns `Ok(None)`. [`crate::Error::is_retryable`] tells
/// whether a failure may clear by itself. An event that cannot be decoded
/// is delivered as [`PresenceEvent::Skipped`] and the stream moves on; a
/// body malformed as a whole (e.g. one that breaks off after its cursor)
/// is a decode error, returned once after the events before the break,
/// and the stream moves on from its cursor after the backoff. A response
/// that holds elements but brings nothing new at the same cursor (content
/// already delivered or skipped, repeated by the server) is backed off
/// too, without an error, and so is an empty one answered sooner than
/// 1 s at the same cursor (a server that does not hold long-polls: it
/// would otherwise be asked thousands of times a second; logged once per
/// run). An empty answer after the server held the long-poll is the
/// ordinary end of an idle long-poll: the next goes out at once.
///
/// Outages: a long-poll unanswered for `long_poll_timeout` plus the
/// client's `request_timeout` in all (however the server trickles bytes)
/// is dropped and reported as a timeout, so an outage is an error within
/// that time at most, never an endless run of `Ok(None)`.
/// [`link_state`](PresenceEvents::link_state) says at any time whether
/// the stream is connected or backing off, with the last error.
///
/// ```no_run
/// # use pubnub_presence::{PubNub, presence::events::PresenceEvent};
/// # fn main() -> Result<(), pubnub_presence::Error> {
/// # let pubnub = PubNub::builder().subscribe_key("demo").user_id("watcher").build()?;
/// let mut events = pubnub.presence_events().channels(vec!["lobby".into()]).open()?;
/// loop {
///     match events.next_event()? {
///         PresenceEvent::Join(e) => println!("{} joined {}", e.user_id, e.channel),
///         PresenceEvent::Leave(e) => println!("{} left {}", e.user_id, e.channel),
///         other => println!("{other:?}"),
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct PresenceEvents {
    /// The client, for the driver (signing, the endpoint).
    pubnub: PubNub,
    engine: EventStream,
    lane: Lane,
}

/// The event stream's sans-IO engine: the subscribe long-poll's cursor,
/// the duplicate filter, the backoff and the link state, with no socket
/// and no clock. [`PresenceEvents`] is this engine pumped over one kept
/// connection; a program with its own IO gets one from
/// [`PresenceEventsBuilder::engine`] and drives it through
/// [`Engine`] (see [`crate::engine`]), taking
/// events out with [`EventStream::poll_event`].
///
/// ```text
///             poll: Send(subscribe at the cursor)
///   Ready ─────────────────────────────────────────▶ InFlight
///    ▲  ▲                                               │  │
///    │  │ backoff over        handle_failure, an error  │  │ handle_response
///    │  └──── BackingOff ◀──── status, a bad body ──────┘  │ (a good body)
///    │        (0.5 s doubling    ▲                         ▼
///    │         to 30 s, or       │ nothing new, answered  Batch: events
///    │         Retry-After)      └──── at once ─────────── taken out one at
///    │                                                     a time by poll_event
///    └──── progress (cursor moved, new events, or a held ──┘
///          long-poll that ended idle): the next goes out at once
/// ```
///
/// [`EventStream::phase`] names where it stands ([`Phase`]). Take the
/// events of an answer out ([`poll_event`](EventStream::poll_event) until
/// it returns `Ok(None)`) before the next request: until then
/// [`poll`](Engine::poll) waits (`Wait(None)`), since whether the answer
/// was progress, which decides the backoff, is known only at its end.
/// [`EventStream::restart`] (the path works again after an outage) sends
/// the next request at once, on a new connection.
///
/// ```
/// use pubnub_presence::engine::{Engine, Step};
/// use pubnub_presence::{PubNub, Response};
/// # fn main() -> Result<(), pubnub_presence::Error> {
/// let pubnub = PubNub::builder()
///     .subscribe_key("demo")
///     .user_id("own-io")
///     .origin("http://127.0.0.1:9")
///     .build()?;
/// let mut stream = pubnub.presence_events().channels(vec!["lobby".into()]).engine()?;
/// let now = std::time::Instant::now();
/// let Step::Send(t) = stream.poll(now, false)? else { unreachable!() };
/// let url = pubnub.url_for(t.request)?; // send it with your own IO, then:
/// # let _ = url;
/// let body = br#"{"t":{"t":"17000000000000000","r":1},"m":[{"a":"1","f":0,"p":{"t":"17000000000000000","r":1},
///   "k":"demo","c":"lobby-pnpres","d":{"action":"join","uuid":"ann","timestamp":1700000000,"occupancy":1}}]}"#;
/// stream.handle_response(now, Response { status: 200, body: body.to_vec(), retry_after: None })?;
/// let event = stream.poll_event(now)?.expect("one join");
/// println!("{event:?}");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EventStream {
    pubnub: PubNub,
    /// The request it asked for has no outcome yet.
    in_flight: bool,
    channels: Vec<String>,
    groups: Vec<String>,
    cursor: Timetoken,
    long_poll_timeout: Duration,
    /// The next request goes out at once, on a new connection.
    fresh: bool,
    batch: Option<Batch>,
    pending: VecDeque<PresenceEvent<'static>>,
    seen: Vec<(u64, u64)>,
    backoff: Backoff,
    /// Failed requests.
    failures: u64,
    /// Responses whose cursor was behind the request's.
    resets: u64,
    /// When the request in flight (or the last one) was sent.
    sent_at: Option<Instant>,
    /// Backing off a server that answers at once with nothing new (logged
    /// once per run).
    idle_backoff: bool,
    /// When the last response was taken in.
    answered_at: Option<Instant>,
    link: Link,
}

/// Where an [`EventStream`] stands (see the state graph in its docs),
/// from [`EventStream::phase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Nothing in flight and no backoff: the next
    /// [`poll`](Engine::poll) sends the subscribe at the cursor (a
    /// [`restart`](EventStream::restart) also lands here).
    Ready,
    /// The subscribe is in flight (the handshake, or a long-poll the
    /// server holds until something happens).
    InFlight,
    /// A response came in and has events not yet taken out
    /// ([`EventStream::poll_event`]).
    Batch,
    /// The last request failed, or answered at once with nothing new: the
    /// next goes out at this instant (0.5 s doubling to 30 s, or the
    /// server's `Retry-After`).
    BackingOff(Instant),
}

impl PresenceEvents {
    /// The cursor the next request starts from.
    pub fn cursor(&self) -> Timetoken {
        self.engine.cursor
    }

    /// How many times the stream may have missed events: each failed
    /// request and each connection opened again (the stream resumes from
    /// its cursor, but the service may no longer hold everything since),
    /// and each response whose cursor is behind the one it was asked from
    /// (a cursor the server reset). A consumer that keeps derived state
    /// (the occupancy mirror) compares this count between calls and
    /// re-syncs when it moved; one outage may count more than once.
    pub fn gaps(&self) -> u64 {
        self.engine
            .gaps()
            .saturating_add(self.connections_opened().saturating_sub(1))
    }

    /// What the stream's kept connection is doing: see [`LinkState`].
    /// A `poll` during a backoff returns `Ok(None)`; this says
    /// `Reconnecting`, with the last error and the next attempt.
    pub fn link_state(&self) -> LinkState {
        self.engine.link_state()
    }

    /// The path is known to work again: see [`EventStream::restart`].
    pub(crate) fn restart(&mut self, since: Instant) {
        if self.engine.restart(since) && self.lane.in_use() {
            log::info!(target: "pubnub_presence::events",
                "the service answers again: restarting the long-poll from cursor {} on a new connection",
                self.engine.cursor.t);
        }
    }

    /// When the stream last took an answer in.
    pub(crate) fn answered_at(&self) -> Option<Instant> {
        self.engine.answered_at
    }

    /// How many responses had a cursor behind the one they were asked
    /// from (counted in [`PresenceEvents::gaps`] too).
    pub fn cursor_resets(&self) -> u64 {
        self.engine.resets
    }

    /// How many connections the stream has opened so far: 1 while the
    /// kept connection holds.
    pub fn connections_opened(&self) -> u64 {
        self.lane.connects()
    }

    /// The subscribe request for the current cursor (sans-IO). Its length
    /// was checked against [`request::MAX_URL_LEN`] by `open()`, for any
    /// cursor.
    pub fn request(&self) -> Request {
        self.engine.request()
    }

    /// Feeds a decoded batch into the stream: advances the cursor and queues
    /// events not seen before. Public for sans-IO use.
    pub fn accept(&mut self, batch: EventBatch<'_>) {
        self.engine.accept(batch);
    }

    /// Waits at most `timeout` for the next event: `Ok(None)` when none
    /// came (the request stays in flight for the next call). Errors are
    /// returned by the call in which they happen, then backed off; see
    /// the type's docs. For single-threaded loops: the call never blocks
    /// much longer than `timeout`, a name lookup included (it goes on in
    /// the next call; only a name left to the system resolver can block
    /// longer, see the README).
    pub fn poll(&mut self, timeout: Duration) -> Result<Option<PresenceEvent<'static>>> {
        self.wait(deadline_after(timeout))
    }

    /// Blocks until the next event. Failures that may clear by themselves
    /// ([`crate::Error::is_retryable`]: connection failures, timeouts,
    /// resets, name lookups without an answer, 5xx, 429) are retried from
    /// the same cursor after the backoff; the others (TLS verification, a
    /// name that does not exist, body too large, other 4xx, a malformed
    /// body) are returned.
    pub fn next_event(&mut self) -> Result<PresenceEvent<'static>> {
        loop {
            match self.wait(None) {
                Ok(Some(e)) => return Ok(e),
                Ok(None) => {}
                Err(e) if e.is_retryable() => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The engine pumped on the kept connection until an event is there
    /// or `deadline` passes.
    pub(crate) fn wait(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<PresenceEvent<'static>>> {
        loop {
            if let Some(e) = self.engine.poll_event(crate::clock::now())? {
                return Ok(Some(e));
            }
            if !self.lane.pump(&self.pubnub, &mut self.engine, deadline)? {
                return Ok(None);
            }
        }
    }
}

impl EventStream {
    /// The cursor the next request starts from.
    pub fn cursor(&self) -> Timetoken {
        self.cursor
    }

    /// Where the stream stands at `now`.
    pub fn phase(&self, now: Instant) -> Phase {
        if !self.pending.is_empty() || self.batch.is_some() {
            return Phase::Batch;
        }
        if self.in_flight && !self.fresh {
            return Phase::InFlight;
        }
        match self.backoff.waiting(now) {
            Some(until) => Phase::BackingOff(until),
            None => Phase::Ready,
        }
    }

    /// Failed requests and responses whose cursor went back: the times
    /// the stream may have missed events (a driver adds the connections
    /// it opened again; see [`PresenceEvents::gaps`]).
    pub fn gaps(&self) -> u64 {
        self.failures.saturating_add(self.resets)
    }

    /// Connected, connecting, or backing off with the last error and the
    /// next attempt: see [`LinkState`].
    pub fn link_state(&self) -> LinkState {
        self.link.state_with(self.backoff.until)
    }

    /// The path is known to work again: another connection to the
    /// service, failing since `since`, was just answered. Unless the
    /// stream had an answer since then, the long-poll in flight (or the
    /// kept connection) may be dead on a path that dropped it silently:
    /// the next [`poll`](Engine::poll) sends the request again at once, on
    /// a new connection. Whether it does.
    pub fn restart(&mut self, since: Instant) -> bool {
        if self.answered_at.is_some_and(|at| at >= since) {
            return false;
        }
        self.fresh = true;
        self.backoff.retry_at(None);
        true
    }

    /// Takes a response's cursor; one behind the current cursor is a gap.
    fn take_cursor(&mut self, next: Timetoken) {
        if next.t < self.cursor.t {
            self.resets = self.resets.saturating_add(1);
            log::warn!(target: "pubnub_presence::events",
                "the server moved the cursor back from {} to {}: events may have been missed",
                self.cursor.t, next.t);
        }
        self.cursor = next;
    }

    /// The subscribe request for the current cursor. Its length was
    /// checked against [`request::MAX_URL_LEN`] by `open()`, for any
    /// cursor.
    pub fn request(&self) -> Request {
        let config = self.pubnub.config();
        let mut req = request::finish_unchecked(config, self.url_at(self.cursor));
        req.timeout = Some(self.silence_bound());
        req
    }

    /// How long the next request may go without a byte from the server:
    /// the handshake (`tt=0`), which the service answers at once, is held
    /// to the client's `request_timeout`; a long-poll to
    /// `long_poll_timeout`.
    fn silence_bound(&self) -> Duration {
        match self.cursor.t {
            0 => self.pubnub.config().request_timeout,
            _ => self.long_poll_timeout,
        }
    }

    /// The subscribe URL for `cursor`.
    fn url_at(&self, cursor: Timetoken) -> String {
        let config = self.pubnub.config();
        let mut path = request::start(config, "/v2/subscribe/");
        path.push('/');
        encode_names_into(&mut path, &self.channels);
        path.push_str("/0");
        let mut query = request::base_query(path, config, &self.groups);
        push_param(&mut query, "tt", crate::num::itoa64(cursor.t).as_str());
        if cursor.t != 0 {
            push_param(&mut query, "tr", itoa(cursor.r).as_str());
        }
        query
    }

    /// Feeds a decoded batch into the stream: advances the cursor and
    /// queues events not seen before.
    pub fn accept(&mut self, batch: EventBatch<'_>) {
        self.take_cursor(batch.next);
        for e in batch.events {
            if remember(&mut self.seen, (e.timetoken, e.payload_hash)) {
                self.pending.push_back(e.event.into_owned());
            }
        }
    }

    /// The next new event of what came in, decoded now; `Ok(None)` when
    /// there is none (poll the engine). A body malformed as a whole is an
    /// error here, once, after the events before its break (counted and
    /// backed off).
    // NOTE(size): out of line: inlined into the caller's loop (and from
    // there into `main`) it cost 416 B more in the footprint example.
    #[inline(never)]
    pub fn poll_event(&mut self, now: Instant) -> Result<Option<PresenceEvent<'static>>> {
        if let Some(e) = self.pending.pop_front() {
            return Ok(Some(e));
        }
        self.next_from_batch(now)
            .map_err(|e| self.failed(now, e, None))
    }

    /// Counts a failure and backs off; returns it.
    fn failed(&mut self, now: Instant, e: Error, retry_after: Option<Duration>) -> Error {
        self.failures = self.failures.saturating_add(1);
        if std::mem::take(&mut self.idle_backoff) {
            // The backoff grew on answers that came at once with nothing
            // new (not failures): a real failure starts its own from 0.5 s.
            self.backoff.succeed();
        }
        self.link
            .failed(&mut self.backoff, now, &e, retry_after, None, &FAILURE_LOG);
        e
    }

    /// Takes a response in (any status): the error it reports, or its
    /// batch, kept for [`EventStream::poll_event`].
    fn take(
        &mut self,
        now: Instant,
        resp: Response,
    ) -> std::result::Result<(), (Error, Option<Duration>)> {
        // Answered sooner than a long-poll is held: if it brings nothing
        // new at the same cursor, the server is not holding requests.
        let quick = self
            .sent_at
            .is_some_and(|at| now.saturating_duration_since(at) < MIN_HOLD);
        if let Some(e) = resp.error() {
            return Err((e, resp.retry_after));
        }
        let body = String::from_utf8(resp.body).map_err(|e| {
            (
                Error::decode(e.utf8_error().valid_up_to(), "invalid utf-8"),
                None,
            )
        })?;
        let items = Items::read(&body).map_err(|e| (e, resp.retry_after))?;
        self.link.up(now);
        self.answered_at = Some(now);
        let moved = items.next != self.cursor;
        self.take_cursor(items.next);
        self.batch = Some(Batch {
            body,
            items,
            moved,
            delivered: false,
            quick,
        });
        Ok(())
    }

    /// The next new event of the kept batch, decoded now. When the batch
    /// is used up: the break of a body malformed as a whole, as an error;
    /// otherwise the backoff is reset if the response was progress (moved
    /// the cursor or delivered something new), and lengthened if it held
    /// elements but brought nothing new at the same cursor (a server
    /// repeating undecodable or already delivered content is not asked
    /// again at once). An empty response at the same cursor is a long-poll
    /// that ended idle when the server held it (at least [`MIN_HOLD`]):
    /// the next request goes out at once; answered sooner, the server is
    /// not holding requests, and the next one is backed off too (logged
    /// once per run of such answers).
    fn next_from_batch(&mut self, now: Instant) -> Result<Option<PresenceEvent<'static>>> {
        let Some(batch) = self.batch.as_mut() else {
            return Ok(None);
        };
        while let Some(e) = batch.items.next_event(&batch.body) {
            if !remember(&mut self.seen, (e.timetoken, e.payload_hash)) {
                continue;
            }
            batch.delivered = true;
            if let PresenceEvent::Skipped(s) = &e.event {
                log::warn!(target: "pubnub_presence::events",
                    "skipped an undecodable event on channel {:?} at timetoken {}: {}",
                    s.channel.as_deref().unwrap_or("?"), s.timetoken, s.reason);
            }
            return Ok(Some(e.event.into_owned()));
        }
        let Some(Batch {
            items,
            moved,
            delivered,
            quick,
            ..
        }) = self.batch.take()
        else {
            return Ok(None);
        };
        if let Some(e) = items.broken {
            return Err(e);
        }
        if moved || delivered || !(quick || items.any) {
            self.backoff.succeed();
            self.idle_backoff = false;
        } else if items.any {
            let wait = self.backoff.fail(now, None);
            log::warn!(target: "pubnub_presence::events",
                "the response repeated cursor {} and brought nothing new, next request in {} ms",
                self.cursor.t, wait.as_millis());
        } else {
            let wait = self.backoff.fail(now, None);
            if !std::mem::replace(&mut self.idle_backoff, true) {
                log::warn!(target: "pubnub_presence::events",
                    "the server answered at once with nothing new at cursor {} (a long-poll is held until something happens): backing off, next request in {} ms (0.5 s doubling to 30 s; not logged again until it holds or moves)",
                    self.cursor.t, wait.as_millis());
            } else {
                log::debug!(target: "pubnub_presence::events",
                    "answered at once with nothing new again, next request in {} ms", wait.as_millis());
            }
        }
        Ok(None)
    }
}

impl Engine for EventStream {
    /// Sends the subscribe at the cursor when nothing is in flight and no
    /// backoff runs; a [`restart`](EventStream::restart) sends it again at
    /// once on a new connection. The long-poll's own bounds (silence, and
    /// `long_poll_timeout` + `request_timeout` in all) are the
    /// connection's: the stream sets no timer of its own.
    fn poll(&mut self, now: Instant, in_flight: bool) -> Result<Step> {
        // `in_flight` speaks of the request this engine asked for: with
        // none asked for, there is none (and one dropped by the driver
        // without an outcome is sent again).
        let in_flight = in_flight && self.in_flight;
        self.in_flight = in_flight;
        if in_flight && !self.fresh {
            return Ok(Step::Wait(None));
        }
        if self.batch.is_some() {
            // The answer before is not taken out yet: the next request
            // waits for it (its events would be overwritten, and whether
            // it was progress, which decides the backoff, is known only
            // at its end). A restart waits for it too.
            return Ok(Step::Wait(None));
        }
        if let Some(until) = self.backoff.waiting(now) {
            return Ok(Step::Wait(Some(until)));
        }
        let fresh = std::mem::take(&mut self.fresh);
        self.sent_at = Some(now);
        self.in_flight = true;
        let silence = self.silence_bound();
        Ok(Step::Send(Transmit {
            request: self.request(),
            silence,
            // However the server trickles bytes, the long-poll ends within
            // `long_poll_timeout` + `request_timeout` (the outage is
            // reported: the server answers within 280 s).
            total: silence.checked_add(self.pubnub.config().request_timeout),
            fresh,
        }))
    }

    /// An answer with no request of the stream's in flight (a late
    /// answer to one the driver dropped) is ignored: it could move the
    /// cursor back.
    fn handle_response(&mut self, now: Instant, response: Response) -> Result<()> {
        if !std::mem::take(&mut self.in_flight) {
            return Ok(());
        }
        self.take(now, response)
            .map_err(|(e, retry_after)| self.failed(now, e, retry_after))
    }

    fn handle_failure(&mut self, now: Instant, error: Error) -> Error {
        self.in_flight = false;
        self.failed(now, error, None)
    }
}

/// Records `key` among the recent events; `false` if it was there already.
///
/// NOTE(size): a `Vec` whose oldest key is removed from the front (a 4 KB
/// move per new event once full), smaller in code than a second
/// `VecDeque` type.
fn remember(seen: &mut Vec<(u64, u64)>, key: (u64, u64)) -> bool {
    if seen.contains(&key) {
        return false;
    }
    if seen.len() >= SEEN_CAPACITY {
        seen.remove(0);
    }
    seen.push(key);
    true
}

impl Iterator for PresenceEvents {
    type Item = Result<PresenceEvent<'static>>;
    /// Never returns `None`: the stream is endless.
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_event())
    }
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over bytes, continuing from `h`: cheap, allocation-free and
/// stable, so the same timetoken with a different payload (two events
/// published in the same 100 ns) is not taken for a duplicate.
fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_2024_via_group() {
        let body = br#"{"t":{"t":"17302026156815862","r":41},"m":[{"a":"2","f":0,"p":{"t":"17302026156815862","r":43},"k":"sub","c":"ch-pnpres","u":{"pn_action":"join"},"d":{"action":"join","uuid":"bob","timestamp":1730202615,"precise_timestamp":1730202615678,"occupancy":2},"b":"grp-pnpres"}]}"#;
        let b = decode(body).unwrap();
        assert_eq!(
            b.next,
            Timetoken {
                t: 17302026156815862,
                r: 41
            }
        );
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.events[0].timetoken, 17302026156815862);
        match &b.events[0].event {
            PresenceEvent::Join(e) => {
                assert_eq!(e.channel, "ch");
                assert_eq!(e.subscription.as_deref(), Some("grp"));
                assert_eq!(e.user_id, "bob");
                assert_eq!(e.occupancy, 2);
                assert_eq!(e.timestamp, 1730202615);
                assert_eq!(e.precise_timestamp, Some(1730202615678));
                assert!(e.state.is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn interval_and_unknown_and_foreign() {
        let body = br#"{"t":{"t":"2","r":1},"m":[
            {"p":{"t":"1"},"c":"x-pnpres","b":"x-pnpres","d":{"action":"interval","timestamp":5,"occupancy":3,"join":["a"],"timeout":["b"],"here_now_refresh":true}},
            {"p":{"t":"1"},"c":"x-pnpres","d":{"action":"dance","uuid":"z"}},
            {"p":{"t":"1"},"c":"x","d":{"text":"a chat message"}},
            {"p":{"t":"1"},"c":"x-pnpres","e":1,"d":{"action":"join"}}
        ]}"#;
        let b = decode(body).unwrap();
        assert_eq!(b.events.len(), 2);
        match &b.events[0].event {
            PresenceEvent::Interval(i) => {
                assert_eq!(i.channel, "x");
                assert_eq!(i.subscription, None);
                assert_eq!((i.occupancy, i.timestamp), (3, 5));
                assert_eq!(i.join, ["a"]);
                assert!(i.leave.is_empty());
                assert_eq!(i.timeout, ["b"]);
                assert!(i.here_now_refresh);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&b.events[1].event, PresenceEvent::Unknown { action, .. } if action == "dance")
        );
    }

    #[test]
    fn bad_batches() {
        for bad in [
            &br#"{"m":[]}"#[..],
            br#"{"t":{"t":"x1"},"m":[]}"#,
            br#"{"t":"#,
        ] {
            assert!(
                matches!(
                    decode(bad).map_err(Error::into_kind),
                    Err(ErrorKind::Decode { .. })
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            decode(br#"{"status":403,"error":true,"message":"Forbidden","payload":{"channels":["a-pnpres"]}}"#).map_err(Error::into_kind),
            Err(ErrorKind::Server(_))
        ));
    }

    /// One undecodable element is reported in its place; the others of
    /// the batch are decoded.
    #[test]
    fn bad_elements_are_skipped_in_place() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        let body = format!(
            r#"{{"t":{{"t":"9","r":1}},"m":[
            {{"p":{{"t":"1"}},"c":"a-pnpres","d":{{"action":"join","uuid":"u1","occupancy":1}}}},
            {{"p":{{"t":"2"}},"c":"a-pnpres","d":{{"uuid":"no-action"}}}},
            {{"p":{{"t":"3"}},"c":"b-pnpres","d":{{"action":"state-change","uuid":"u2","data":{{"x":{deep}}}}}}},
            {{"p":{{"t":"4"}},"d":{{"action":"join"}}}},
            {{"p":{{"t":"5"}},"c":"a-pnpres","d":{{"action":"leave","uuid":"u1","occupancy":0}}}}
        ]}}"#
        );
        let b = decode(body.as_bytes()).unwrap();
        assert_eq!(b.next.t, 9);
        let tts: Vec<u64> = b.events.iter().map(|e| e.timetoken).collect();
        assert_eq!(tts, [1, 2, 3, 4, 5]);
        assert!(matches!(&b.events[0].event, PresenceEvent::Join(e) if e.user_id == "u1"));
        assert!(matches!(&b.events[4].event, PresenceEvent::Leave(e) if e.user_id == "u1"));
        for (i, channel) in [(1, Some("a")), (2, Some("b")), (3, None)] {
            match &b.events[i].event {
                PresenceEvent::Skipped(s) => {
                    assert_eq!(s.channel.as_deref(), channel);
                    assert_eq!(s.timetoken, b.events[i].timetoken);
                    assert!(!s.reason.is_empty());
                }
                other => panic!("{i}: {other:?}"),
            }
        }
        // A body that breaks off after its cursor is malformed as a whole:
        // an error, not a skipped event.
        for broken in [
            &br#"{"t":{"t":"7","r":2},"m":[{"p":{"t":"1"},"c":"a-pnpres","d":{"action":"join","uuid":"u"#[..],
            br#"{"t":{"t":"17000000000000000","r":1},"m":[{"#,
        ] {
            assert!(matches!(
                decode(broken).map_err(Error::into_kind),
                Err(ErrorKind::Decode { .. })
            ));
        }
    }

    /// The same payload at the same timetoken on two channels is two
    /// events.
    #[test]
    fn dedup_key_includes_the_channel() {
        let body = br#"{"t":{"t":"2","r":1},"m":[
            {"p":{"t":"1"},"c":"a-pnpres","d":{"action":"join","uuid":"u","occupancy":1,"timestamp":5}},
            {"p":{"t":"1"},"c":"b-pnpres","d":{"action":"join","uuid":"u","occupancy":1,"timestamp":5}},
            {"p":{"t":"1"},"c":"a-pnpres","b":"g-pnpres","d":{"action":"join","uuid":"u","occupancy":1,"timestamp":5}}
        ]}"#;
        let b = decode(body).unwrap();
        let keys: std::collections::HashSet<_> = b
            .events
            .iter()
            .map(|e| (e.timetoken, e.payload_hash))
            .collect();
        assert_eq!(keys.len(), 3);
        let again = decode(body).unwrap();
        assert_eq!(again.events[0].payload_hash, b.events[0].payload_hash);
    }

    /// An empty answer at the same cursor: after the server held the
    /// long-poll, the next request goes out at once; answered at once, it
    /// is backed off (0.5 s, doubling), and a moved cursor resets that.
    #[test]
    fn empty_batches_are_backed_off_only_when_answered_at_once() {
        let pubnub = PubNub::builder()
            .subscribe_key("k")
            .user_id("u")
            .origin("http://127.0.0.1:9")
            .build()
            .unwrap();
        let mut ev = pubnub
            .presence_events()
            .channels(vec!["c".into()])
            .engine()
            .unwrap();
        ev.cursor = Timetoken { t: 5, r: 1 };
        let answer = |ev: &mut EventStream, t: u64, quick: bool| {
            let body = format!(r#"{{"t":{{"t":"{t}","r":1}},"m":[]}}"#);
            let items = Items::read(&body).unwrap();
            ev.batch = Some(Batch {
                moved: items.next != ev.cursor,
                body,
                items,
                delivered: false,
                quick,
            });
            ev.cursor.t = t;
            let now = crate::clock::now();
            assert_eq!(ev.next_from_batch(now).unwrap(), None);
            ev.backoff.waiting(now).is_some()
        };
        assert!(!answer(&mut ev, 5, false), "held: no wait");
        assert!(answer(&mut ev, 5, true), "at once: backed off");
        assert_eq!(ev.backoff.failures, 1);
        assert!(answer(&mut ev, 5, true));
        assert_eq!(ev.backoff.failures, 2);
        assert!(!answer(&mut ev, 6, true), "a moved cursor is progress");
        assert_eq!(ev.backoff.failures, 0);
        assert_eq!(ev.gaps(), 0);
    }

    /// The engine in virtual time, by its phases: the handshake goes out,
    /// its answer is a batch, a failure backs off (0.5 s, then 1 s), a
    /// restart sends at once on a new connection.
    #[test]
    fn the_engine_walks_its_phases() {
        use crate::engine::{Engine, Step};
        let pubnub = PubNub::builder()
            .subscribe_key("k")
            .user_id("u")
            .origin("http://127.0.0.1:9")
            .build()
            .unwrap();
        let mut ev = pubnub
            .presence_events()
            .channels(vec!["c".into()])
            .engine()
            .unwrap();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(ev.phase(t0), Phase::Ready);
        let Ok(Step::Send(t)) = ev.poll(t0, false) else {
            panic!("no send")
        };
        assert!(!t.fresh);
        assert!(t.request.url().contains("tt=0"), "{}", t.request.url());
        assert_eq!(ev.phase(t0), Phase::InFlight);
        assert!(matches!(ev.poll(t0 + ms(10), true), Ok(Step::Wait(None))));
        let body = br#"{"t":{"t":"17","r":1},"m":[{"a":"1","f":0,"p":{"t":"17","r":1},"k":"k","c":"c-pnpres","d":{"action":"join","uuid":"ann","timestamp":1,"occupancy":1}}]}"#;
        let ok = |b: &[u8]| crate::transport::Response {
            status: 200,
            body: b.to_vec(),
            retry_after: None,
        };
        ev.handle_response(t0 + ms(20), ok(body)).unwrap();
        assert_eq!(ev.phase(t0 + ms(20)), Phase::Batch);
        assert!(ev.poll_event(t0 + ms(20)).unwrap().is_some());
        assert_eq!(ev.poll_event(t0 + ms(20)).unwrap(), None);
        assert_eq!(ev.cursor().t, 17);
        // The cursor moved: the long-poll goes out at once.
        let Ok(Step::Send(t)) = ev.poll(t0 + ms(20), false) else {
            panic!("no long-poll")
        };
        assert!(t.request.url().contains("tt=17"), "{}", t.request.url());
        // A 503: backed off 0.5 s, then 1 s; the failures count as gaps.
        let e = ev.handle_response(
            t0 + ms(30),
            crate::transport::Response {
                status: 503,
                body: b"{}".to_vec(),
                retry_after: None,
            },
        );
        assert!(e.is_err());
        assert_eq!(ev.phase(t0 + ms(30)), Phase::BackingOff(t0 + ms(530)));
        assert!(
            matches!(ev.poll(t0 + ms(100), false), Ok(Step::Wait(Some(at))) if at == t0 + ms(530))
        );
        let Ok(Step::Send(_)) = ev.poll(t0 + ms(530), false) else {
            panic!("no retry")
        };
        let _ = ev.handle_failure(
            t0 + ms(600),
            Error::transport(crate::TransportErrorKind::Io, "reset"),
        );
        assert_eq!(ev.phase(t0 + ms(600)), Phase::BackingOff(t0 + ms(1600)));
        assert_eq!(ev.gaps(), 2);
        // The path works again: at once, on a new connection.
        assert!(ev.restart(t0 + ms(700)));
        assert_eq!(ev.phase(t0 + ms(700)), Phase::Ready);
        let Ok(Step::Send(t)) = ev.poll(t0 + ms(700), false) else {
            panic!("no restart")
        };
        assert!(t.fresh);
    }

    /// The engine used by a driver of one's own, the wrong way round: an
    /// answer with nothing asked for is ignored; `poll` waits while an
    /// answer is not taken out (so a server
    /// answering at once with nothing new is backed off all the same);
    /// `in_flight` with nothing asked for is ignored; the request's
    /// timeout is the stream's long-poll timeout.
    #[test]
    fn the_engine_keeps_order_with_a_careless_driver() {
        use crate::engine::{Engine, Step};
        let pubnub = PubNub::builder()
            .subscribe_key("k")
            .user_id("u")
            .origin("http://127.0.0.1:9")
            .build()
            .unwrap();
        let mut ev = pubnub
            .presence_events()
            .channels(vec!["c".into()])
            .long_poll_timeout(Duration::from_secs(20))
            .engine()
            .unwrap();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let join = |t: u64, who: &str| {
            crate::transport::Response {
                status: 200,
                body: format!(r#"{{"t":{{"t":"{t}","r":1}},"m":[{{"a":"1","f":0,"p":{{"t":"{t}","r":1}},"k":"k","c":"c-pnpres","d":{{"action":"join","uuid":"{who}","timestamp":1,"occupancy":1}}}}]}}"#).into_bytes(),
                retry_after: None,
            }
        };
        // Told a request is in flight before it asked for one: it sends.
        let Ok(Step::Send(t)) = ev.poll(t0, true) else {
            panic!("no send")
        };
        // The handshake: held to request_timeout, over within twice that.
        assert_eq!(t.total, pubnub.config().request_timeout.checked_mul(2));
        ev.handle_response(t0 + ms(10), join(100, "ann")).unwrap();
        assert!(
            matches!(ev.poll(t0 + ms(10), false), Ok(Step::Wait(None))),
            "waits for the batch to be taken out"
        );
        // An answer with nothing asked for (late, to a dropped request) is
        // ignored: the batch and the cursor stay.
        ev.handle_response(t0 + ms(20), join(50, "old")).unwrap();
        let mut who = Vec::new();
        while let Some(e) = ev.poll_event(t0 + ms(20)).unwrap() {
            if let PresenceEvent::Join(j) = e {
                who.push(j.user_id.to_string());
            }
        }
        assert_eq!(who, ["ann"]);
        assert_eq!((ev.cursor().t, ev.gaps()), (100, 0));
        // A restart while an answer waits to be taken out, then a backoff:
        // the next request still goes on a new connection.
        assert!(ev.restart(t0 + ms(20)));
        // The long-poll's timeout is the stream's.
        assert_eq!(ev.request().timeout, Some(Duration::from_secs(20)));
        // Empty answers at once at the same cursor: backed off even when
        // the driver polls before taking the answer out.
        let empty = || crate::transport::Response {
            status: 200,
            body: br#"{"t":{"t":"200","r":1},"m":[]}"#.to_vec(),
            retry_after: None,
        };
        let mut sends = 0;
        let mut now = t0 + ms(30);
        while now < t0 + ms(1030) {
            if let Ok(Step::Send(t)) = ev.poll(now, false) {
                assert_eq!(t.fresh, sends == 0, "the restart's request is fresh");
                sends += 1;
                ev.handle_response(now, empty()).unwrap();
            }
            let _ = ev.poll(now, false);
            let _ = ev.poll_event(now);
            now += ms(1);
        }
        // The first moved the cursor (progress, the next at once); then
        // 0.5 s, then 1 s.
        assert!(sends <= 3, "{sends} requests in one second");
        // A restart while a quick empty answer waits to be taken out: the
        // backoff its end starts is waited, and the request after it still
        // goes out on a new connection.
        let now = loop {
            if let Ok(Step::Send(_)) = ev.poll(now, false) {
                break now;
            }
            now += ms(1);
        };
        ev.handle_response(now, empty()).unwrap();
        assert!(ev.restart(now + ms(1)));
        assert_eq!(ev.poll_event(now + ms(1)).unwrap(), None);
        let Ok(Step::Wait(Some(until))) = ev.poll(now + ms(1), false) else {
            panic!("no backoff")
        };
        let Ok(Step::Send(t)) = ev.poll(until, false) else {
            panic!("no request after the backoff")
        };
        assert!(t.fresh);
    }
}
