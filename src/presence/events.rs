//! Presence events: who joined, left, timed out or changed state, decoded
//! from subscribe v2 long-poll responses on `-pnpres` channels
//! (PROTOCOL.md §5), and a blocking stream over them.

use crate::client::PubNub;
use crate::encode::{encode_names_into, push_param};
use crate::envelope::{self, Field};
use crate::error::{Error, ErrorKind, Result, TransportErrorKind};
use crate::json::{digits_u64, string_list, Cursor, Kind};
use crate::presence::here_now::itoa;
use crate::request::{self, Request};
use crate::state::{self, State};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::Duration;

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

fn owned_list(v: Vec<Cow<'_, str>>) -> Vec<Cow<'static, str>> {
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
            PresenceEvent::Unknown { channel, action } => PresenceEvent::Unknown {
                channel: owned(channel),
                action: owned(action),
            },
        }
    }

    /// The channel the event is about (without `-pnpres`).
    pub fn channel(&self) -> &str {
        match self {
            PresenceEvent::Join(e)
            | PresenceEvent::Leave(e)
            | PresenceEvent::Timeout(e)
            | PresenceEvent::StateChange(e) => &e.channel,
            PresenceEvent::Interval(e) => &e.channel,
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
    /// An FNV-1a hash of the raw event payload (`d`): with the timetoken,
    /// what identifies a redelivered event.
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

/// Decodes a subscribe v2 response body into presence events.
pub fn decode(body: &[u8]) -> Result<EventBatch<'_>> {
    let mut next = None;
    let mut events = Vec::new();
    envelope::parse_with(body, |key, c| {
        match key {
            "t" => next = Some(decode_timetoken(c)?),
            "m" => {
                c.begin_array()?;
                let mut first = true;
                while c.next_element(&mut first)? {
                    if let Some(e) = decode_message(c)? {
                        events.push(e);
                    }
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let next = next.ok_or_else(|| Error::decode(0, "subscribe body has no cursor 't'"))?;
    Ok(EventBatch { next, events })
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
                m.payload = Some(Field {
                    raw: c.skip_value()?,
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

/// Decodes one element of `m`; `None` for a message that is not a
/// presence event.
fn decode_message<'a>(c: &mut Cursor<'a>) -> Result<Option<ReceivedEvent<'a>>> {
    let start = c.offset();
    let mut m = MessageFields::default();
    read_message(c, &mut m)?;
    let channel = m
        .channel
        .ok_or_else(|| Error::decode(start, "message without channel 'c'"))?;
    let Some(channel) = strip_pnpres(channel) else {
        return Ok(None);
    };
    if m.kind_other {
        return Ok(None);
    }
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
    let payload_hash = fnv1a(payload.raw.as_bytes());
    let event = decode_payload(payload, channel, subscription)?;
    Ok(Some(ReceivedEvent {
        timetoken: m.timetoken,
        payload_hash,
        event,
    }))
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
                c.skip_ws();
                let at = c.offset();
                p.data = Some(state::from_raw(c.skip_value()?, at)?);
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

/// Builder for a presence event stream, from [`PubNub::presence_events`].
#[must_use = "a builder does nothing until open()"]
#[derive(Debug)]
pub struct PresenceEventsBuilder<'p> {
    pubnub: &'p PubNub,
    channels: Vec<String>,
    channel_groups: Vec<String>,
}

impl<'p> PresenceEventsBuilder<'p> {
    pub(crate) fn new(pubnub: &'p PubNub) -> Self {
        PresenceEventsBuilder {
            pubnub,
            channels: Vec::new(),
            channel_groups: Vec::new(),
        }
    }
    /// Channels to watch (their `-pnpres` twins are subscribed).
    pub fn channels(mut self, channels: Vec<String>) -> Self {
        self.channels = channels;
        self
    }
    /// Channel groups to watch (their `-pnpres` twins are subscribed).
    pub fn channel_groups(mut self, groups: Vec<String>) -> Self {
        self.channel_groups = groups;
        self
    }
    /// Checks the arguments and returns the stream. No request is sent
    /// until the first `next_event` or `poll`.
    pub fn open(mut self) -> Result<PresenceEvents> {
        request::check_targets(&self.channels, &self.channel_groups)?;
        // In place: no second vector (and no collect code) per list.
        for name in self.channels.iter_mut().chain(&mut self.channel_groups) {
            name.push_str(PNPRES);
        }
        Ok(PresenceEvents {
            pubnub: self.pubnub.clone(),
            channels: self.channels,
            groups: self.channel_groups,
            cursor: Timetoken::default(),
            pending: VecDeque::new(),
            seen: VecDeque::new(),
            backoff: Backoff::default(),
        })
    }
}

/// How many recent events are remembered to drop duplicates.
const SEEN_CAPACITY: usize = 256;

/// Exponential backoff between reconnects: 0.5 s doubling to 30 s.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn delay(&self) -> Duration {
        let ms = 500u64.saturating_mul(1 << self.failures.min(6));
        Duration::from_millis(ms.min(30_000))
    }
}

/// A blocking stream of presence events over subscribe long-polling.
///
/// Created by [`PubNub::presence_events`]. Each poll resumes from the last
/// cursor; events already delivered (same publish timetoken and payload) are
/// not delivered again.
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
    pubnub: PubNub,
    channels: Vec<String>,
    groups: Vec<String>,
    cursor: Timetoken,
    pending: VecDeque<PresenceEvent<'static>>,
    seen: VecDeque<(u64, u64)>,
    backoff: Backoff,
}

impl PresenceEvents {
    /// The cursor the next poll starts from.
    pub fn cursor(&self) -> Timetoken {
        self.cursor
    }

    /// The subscribe request for the current cursor (sans-IO).
    pub fn request(&self) -> Request {
        let config = self.pubnub.config();
        let mut path = request::start(config, "/v2/subscribe/");
        path.push('/');
        encode_names_into(&mut path, &self.channels);
        path.push_str("/0");
        let mut query = request::base_query(path, config, &self.groups);
        push_param(
            &mut query,
            "tt",
            crate::presence::here_now::itoa64(self.cursor.t).as_str(),
        );
        if self.cursor.t != 0 {
            push_param(&mut query, "tr", itoa(self.cursor.r).as_str());
        }
        let mut req = request::finish(config, query);
        req.timeout = Some(crate::transport::LONG_POLL_TIMEOUT);
        req
    }

    /// Feeds a decoded batch into the stream: advances the cursor and queues
    /// events not seen before. Public for sans-IO use.
    pub fn accept(&mut self, batch: EventBatch<'_>) {
        self.cursor = batch.next;
        for e in batch.events {
            let key = (e.timetoken, e.payload_hash);
            if self.seen.contains(&key) {
                continue;
            }
            if self.seen.len() == SEEN_CAPACITY {
                self.seen.pop_front();
            }
            self.seen.push_back(key);
            self.pending.push_back(e.event.into_owned());
        }
    }

    fn poll_once(&mut self, timeout: Option<Duration>) -> Result<()> {
        let mut req = self.request();
        if let Some(t) = timeout {
            req.timeout = Some(t);
        }
        let resp = self.pubnub.send(req)?;
        let batch = decode(&resp.body)?;
        self.accept(batch);
        Ok(())
    }

    /// Waits at most `timeout` for the next event: `Ok(None)` when none
    /// came. A long-poll cut short is simply re-issued from the same cursor,
    /// so nothing is lost. For single-threaded loops.
    ///
    /// NOTE(cost): a wait that ends empty abandons the request, and with it
    /// the connection (a blocking client cannot keep a request in flight
    /// across calls), so the next poll connects again (a TLS handshake with
    /// `https://`). Prefer waits of seconds to tens of seconds, or
    /// [`PresenceEvents::next_event`] on a thread of its own.
    pub fn poll(&mut self, timeout: Duration) -> Result<Option<PresenceEvent<'static>>> {
        if let Some(e) = self.pending.pop_front() {
            return Ok(Some(e));
        }
        match self.poll_once(Some(timeout)) {
            Ok(()) => {
                self.backoff.failures = 0;
                Ok(self.pending.pop_front())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Transport {
                        kind: TransportErrorKind::Timeout,
                        ..
                    }
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Blocks until the next event. Transport errors (connection lost,
    /// reset, timeout) are retried from the same cursor with exponential
    /// backoff (0.5 s doubling to 30 s); server and decode errors are
    /// returned.
    pub fn next_event(&mut self) -> Result<PresenceEvent<'static>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(e);
            }
            match self.poll_once(None) {
                Ok(()) => self.backoff.failures = 0,
                Err(e) if matches!(e.kind(), ErrorKind::Transport { .. }) => {
                    std::thread::sleep(self.backoff.delay());
                    self.backoff.failures = self.backoff.failures.saturating_add(1);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Iterator for PresenceEvents {
    type Item = Result<PresenceEvent<'static>>;
    /// Never returns `None`: the stream is endless.
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_event())
    }
}

/// FNV-1a over the payload bytes: cheap, allocation-free, and stable, so
/// the same timetoken with a different payload (two events published in the
/// same 100 ns) is not taken for a duplicate.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
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
            br#"{"t":{"t":"1"},"m":[{"c":"a-pnpres","d":{"uuid":"u"}}]}"#,
            br#"{"t":{"t":"1"},"m":[{"c":"a-pnpres","d":{"action":"join"}}]}"#,
            br#"{"t":{"t":"1"},"m":[{"d":{"action":"join"}}]}"#,
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
