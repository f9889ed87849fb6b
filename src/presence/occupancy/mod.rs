//! A live occupancy mirror: who is on each channel (with state, when
//! asked), kept right from one event stream and here_now snapshots, in
//! one bounded call per iteration of the caller's loop ([`Occupancy`]).
//!
//! How it stays right:
//!
//! - **Start without a gap.** The event stream's handshake comes first
//!   (its cursor marks where events are taken from), then here_now, paged
//!   with `limit`/`offset` past 1,000 occupants. Every event after the
//!   cursor is applied, so a change between the subscribe and the here_now
//!   is not lost.
//! - **Every event.** join, leave, timeout, state-change, and interval
//!   deltas. Each event's `occupancy` is a check: when it differs from
//!   the mirror, the channel is re-synced. `here_now_refresh: true`
//!   re-syncs the channel too.
//! - **Re-sync after any gap**: a failed event request (the stream
//!   resumes, but the service may not have kept everything), a cursor the
//!   server moved back, an event that could not be decoded. The service
//!   caches here_now answers for about 3 s, so a re-sync waits
//!   [`resync_delay`](OccupancyBuilder::resync_delay) (3 s) after what
//!   prompted it before it fetches. The first snapshot is fetched at once
//!   and confirmed by a second one that delay later (the first may have
//!   come from the cache, older than the subscription).
//! - **Never starved.** A re-sync that waits or runs is not pushed back,
//!   nor its here_now aborted, by a reason that comes after it (reasons
//!   more often than the delay would starve it). Such a reason goes to one
//!   follow-up re-sync that runs once the current one is installed, at the
//!   latest reason's time plus the delay (at once if that has passed): the
//!   current snapshot may predate the new reason (the cache), so it is not
//!   merged into it (reasons within 100 ms of a waiting re-sync's first,
//!   such as those of one batch of events, join it, moving its fetch that
//!   much at most). Every reason is thus served within the delay (and
//!   100 ms) of itself or of the end of the re-sync before it.
//! - **Back under the cap, listed again.** An event that brings a
//!   counts-only channel back under the cap asks for a re-sync like any
//!   other reason, unless a waiting one that fetches no sooner than a
//!   delay after the event covers the channel already. A snapshot that
//!   predates the event (a slow answer, the cache) may put the channel
//!   over the cap again: the follow-up, fetched a delay after the event,
//!   lists it; the event, applied again over that snapshot, asks again if
//!   nothing pending serves it. A follow-up asked only for this is
//!   dropped when the snapshot before it already listed its channels. A
//!   channel already counts-only that a snapshot finds past the cap again
//!   reports [`Change::CountChanged`], not [`Change::CountsOnly`].
//! - **URLs that fit.** A re-sync's channels (and groups) are split into
//!   here_now requests naming at most 8 KB of encoded names each. A 414
//!   (the server's URL limit is below ours) splits the request in two and
//!   sends the halves; one naming a single channel or group cannot be
//!   split: that re-sync is given up and the error returned once, not
//!   retried (the next reason asks again).
//! - **Bounded.** Past [`max_occupants_per_channel`](OccupancyBuilder::max_occupants_per_channel)
//!   a channel keeps its count only ([`Change::CountsOnly`]) until it is
//!   back under the cap. The cap is decided on a snapshot's own users (not
//!   on those it is about to sweep) or on an event's `occupancy`. An
//!   occupant costs about 90 bytes once synced (a 12-byte id, no state;
//!   BENCHMARKS.md); while a channel is re-synced it holds its old set and
//!   the snapshot's (each at most the cap) until the sweep. A channel's
//!   table is shrunk to twice its entries once under a quarter full (one
//!   pass over the entries left, paid for by the removals that emptied
//!   it). Each call takes in at most one here_now page and at most 512
//!   events (256, plus those already received when a snapshot completes);
//!   a re-sync keeps at most 4,096 events to apply again over its snapshot
//!   (past that it starts over).
//! - **The change feed matches the reads.** Applying each `Joined` /
//!   `Left` / `TimedOut` to a set gives [`Occupancy::occupants`]: a channel
//!   that goes counts-only reports each user it held `Left` (from events
//!   or from a snapshot), and back under the cap its users come back as
//!   `Joined`.
//!
//! Ambiguities, and how they are resolved:
//!
//! - **A user in both `join` and `leave` (or `timeout`) of one interval.**
//!   The lists carry no order, but presence alternates (only a present
//!   user can leave, only an absent one can join): joins minus leaves and
//!   timeouts above 0 means present at the end of the interval, below 0
//!   absent, 0 as before the interval. The event's `occupancy` checks the
//!   result.
//! - **An event older than the snapshot** (published before the here_now
//!   answer, delivered after). Events are assignments (present, absent,
//!   this state) delivered in order, so applying one the snapshot already
//!   reflects changes nothing, and one the snapshot has overtaken is
//!   overtaken again by the later events that follow it. Events that
//!   arrive while a channel is re-synced are applied at once and again
//!   over the snapshot. Their `occupancy` is not checked then, nor for
//!   1 s after the snapshot (one still under way when the here_now answer
//!   came would differ from it with nothing wrong); the first event after
//!   that checks the count again. A gap or refresh while a re-sync runs
//!   does not start it over: its snapshot and kept events are installed
//!   (they may be wrong about what the gap lost, until the follow-up), and
//!   a re-sync that takes in a new reason (and so fetches a delay after
//!   it) drops the events kept so far, so nothing from before a gap is
//!   replayed over a later snapshot (it could undo what came after it
//!   unseen; the snapshot reflects them). A re-sync that kept more than
//!   4,096 events starts over, dropping them too.
//! - **The same user on two channels through a group.** Occupants are
//!   kept per channel (the event's channel, never the group it came
//!   through): two entries, each with its own state; leaving one keeps the
//!   other. A channel reached both by name and through a group is one
//!   channel; an event delivered through both is applied twice, and the
//!   second time changes nothing.
//!
//! Channel groups: the service sends nothing when a group's channel list
//! changes. A channel added to a group shows up with its next event (whose
//! `occupancy` check then re-syncs it); call [`Occupancy::resync`] after
//! changing a group, to pick up an addition with no activity yet or drop
//! a removed channel.

mod change;
mod roster;

pub use change::{Change, Occupant, Resync};

use crate::backoff::Backoff;
use crate::client::PubNub;
use crate::clock::{deadline_after, earliest};
use crate::conn::Conn;
use crate::error::{Error, ErrorKind, Result};
use crate::presence::events::{PresenceEvent, PresenceEvents};
use crate::presence::here_now;
use crate::presence::link::{FailureLog, Link, LinkState};
use crate::presence::schedule::{Heartbeater, PresenceLoop};
use crate::presence::targets::{target_setters, Targets};
use crate::state::State;
use change::Scope;
use roster::Roster;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How a failed request is logged.
const FAILURE_LOG: FailureLog = FailureLog {
    target: "pubnub_presence::mirror",
    message: "here_now for a re-sync failed, next in",
};

/// Events handled per call at most.
const MAX_EVENTS_PER_POLL: usize = 256;
/// Events kept for replay while a re-sync runs; past it the re-sync
/// starts over (its snapshot, taken later, then covers what was dropped).
const MAX_REPLAY: usize = 4096;
/// How long after a snapshot an event may still be one published before
/// it (its delivery was under way while the here_now answer came): the
/// occupancy of such events is not checked, since it would differ from
/// the snapshot's without anything being wrong. The next event after
/// this window checks again (occupancy is a count, not a delta).
const SETTLE: Duration = Duration::from_secs(1);
/// Snapshot attempts when the channel moved under the paging.
const MAX_ATTEMPTS: u32 = 3;
/// How often the handshake is looked at before the first snapshot.
const HANDSHAKE_SLICE: Duration = Duration::from_millis(10);
/// How long a here_now page is driven at a time while a heartbeat's
/// answer is awaited.
const HEARTBEAT_SLICE: Duration = Duration::from_millis(50);

/// Percent-encoded bytes of channel and group names in one here_now
/// request at most (a quarter of [`crate::request::MAX_URL_LEN`]): a
/// re-sync of more names is split into several requests.
const BATCH_NAMES_LEN: usize = 8 * 1024;

/// How much later than its first reason's a waiting re-sync may fetch, to
/// take in the reasons that come with that one (the events of one batch,
/// a burst) rather than leave them to a follow-up.
const GATHER: Duration = Duration::from_millis(100);

/// The names of one here_now request: channels and groups.
type Batch = (Vec<String>, Vec<String>);

/// A snapshot being paged in.
#[derive(Debug, Default)]
struct Fetch {
    /// The first-page requests still to send, last first.
    batches: Vec<Batch>,
    /// The names of the current request's first page.
    batch: Batch,
    offset: u32,
    /// The channels of the next page, by name; empty for the first page
    /// (the mirror's channels and groups, or the scope's channels).
    next: Vec<String>,
    /// Each channel's occupancy on the first page, and the users received.
    counts: BTreeMap<String, (u32, u32)>,
    /// A later page reported another occupancy: the set moved under the
    /// paging, which may have skipped someone.
    moved: bool,
    in_flight: bool,
    pages: u32,
    /// The channel of a page requested for one channel and no group.
    flat: Option<String>,
}

impl Fetch {
    fn new(mut batches: Vec<Batch>) -> Fetch {
        batches.reverse();
        let batch = batches.pop().unwrap_or_default();
        Fetch {
            batches,
            batch,
            ..Fetch::default()
        }
    }

    /// Splits the current request in two (its URL was too long); `false`
    /// when it names one channel or group only.
    fn split(&mut self) -> bool {
        let (chs, grps) = &mut self.batch;
        let second = if chs.len() > 1 {
            (chs.split_off(chs.len() / 2), Vec::new())
        } else if grps.len() > 1 {
            (Vec::new(), grps.split_off(grps.len() / 2))
        } else if !chs.is_empty() && !grps.is_empty() {
            (Vec::new(), std::mem::take(grps))
        } else {
            return false;
        };
        self.batches.push(second);
        true
    }
}

/// The here_now requests for these channels and groups: each names at
/// most [`BATCH_NAMES_LEN`] encoded bytes (a name longer than that alone),
/// channels first, then groups, in their own requests once they do not
/// all fit in one.
fn batches(channels: &[String], groups: &[String]) -> Vec<Batch> {
    let len = |name: &String| {
        let mut s = String::new();
        crate::encode::encode_into(&mut s, name, crate::encode::PATH_SEGMENT);
        s.len().saturating_add(1)
    };
    let total = channels
        .iter()
        .chain(groups)
        .map(len)
        .fold(0, usize::saturating_add);
    if total <= BATCH_NAMES_LEN {
        return vec![(channels.to_vec(), groups.to_vec())];
    }
    let mut out: Vec<Batch> = Vec::new();
    let mut push = |name: &String, group: bool, used: &mut usize| {
        let l = len(name);
        let fresh = match out.last() {
            Some((c, g)) => {
                *used > 0 && used.saturating_add(l) > BATCH_NAMES_LEN
                    || (group && !c.is_empty())
                    || (!group && !g.is_empty())
            }
            None => true,
        };
        if fresh {
            out.push((Vec::new(), Vec::new()));
            *used = 0;
        }
        *used = used.saturating_add(l);
        if let Some((c, g)) = out.last_mut() {
            if group { g } else { c }.push(name.clone());
        }
    };
    let mut used = 0;
    for c in channels {
        push(c, false, &mut used);
    }
    for g in groups {
        push(g, true, &mut used);
    }
    out
}

/// A re-sync, pending or running.
#[derive(Debug)]
struct Sync {
    scope: Scope,
    reason: Resync,
    not_before: Instant,
    /// The `not_before` of the first reason (or of the last start-over):
    /// `not_before` never goes past it by more than [`GATHER`].
    due: Instant,
    attempt: u32,
    fetch: Option<Fetch>,
    /// Events of the scope since the re-sync was asked for, applied again
    /// over the snapshot.
    replay: Vec<PresenceEvent<'static>>,
    started: Instant,
    /// Every reason taken in is "back under the cap": any snapshot serves
    /// it, so a follow-up whose channels are all listed again by the time
    /// it would run is dropped.
    under_cap_only: bool,
}

impl Sync {
    fn new(reason: Resync, not_before: Instant) -> Sync {
        Sync {
            scope: reason.scope(),
            under_cap_only: matches!(reason, Resync::UnderCap { .. }),
            reason,
            not_before,
            due: not_before,
            attempt: 0,
            fetch: None,
            replay: Vec::new(),
            started: crate::clock::now(),
        }
    }
}

/// A live mirror of who is on channels and channel groups, kept right from
/// one event stream and here_now snapshots. See the [module docs](self)
/// for how, and for the ambiguities it resolves.
///
/// Created by [`PubNub::occupancy`]. Driven by [`poll`](Occupancy::poll),
/// one call per iteration of the caller's loop, never blocking longer
/// than its budget (a first DNS lookup excepted), and returning what
/// changed. Given a [`Heartbeater`]
/// ([`OccupancyBuilder::heartbeater`]), the same call keeps the device
/// present too: it is the device loop ([`PresenceLoop`]) with a mirror on
/// its events, so heartbeats and the mirror run in one call per
/// iteration. Kept connections: one for events, one for here_now (opened
/// at the first snapshot), one for heartbeats (when something is joined).
///
/// ```no_run
/// use pubnub_presence::{Change, PubNub};
/// use std::time::Duration;
/// # fn main() -> Result<(), pubnub_presence::Error> {
/// let pubnub = PubNub::builder().subscribe_key("demo").user_id("lobby-screen").build()?;
/// let mut lobby = pubnub
///     .occupancy()
///     .channels(vec!["lobby".into()])
///     .include_state(true)
///     .open()?;
/// loop {
///     match lobby.poll(Duration::from_millis(500)) {
///         Ok(changes) => {
///             for change in &changes {
///                 println!("{change}");
///             }
///             if !changes.is_empty() {
///                 println!("{} in the lobby", lobby.occupancy("lobby"));
///             }
///         }
///         Err(e) => eprintln!("{e} (tried again after a backoff)"),
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Occupancy {
    pubnub: PubNub,
    device: PresenceLoop,
    channels: Vec<String>,
    groups: Vec<String>,
    include_state: bool,
    page_size: u32,
    resync_delay: Duration,
    roster: Roster,
    sync: Option<Sync>,
    /// A re-sync asked for while `sync` runs or waits, for what `sync`'s
    /// snapshot may not reflect: it runs once `sync` is installed. Only
    /// with `sync`.
    next: Option<Sync>,
    /// The first snapshot is in.
    started: bool,
    /// When the first snapshot is confirmed.
    confirm_at: Option<Instant>,
    conn: Option<Conn>,
    backoff: Backoff,
    /// The channels of the last snapshot, and until when their events may
    /// still predate it (their occupancy is not checked until then).
    settling: Option<(Scope, Instant)>,
    /// The event stream's gap and cursor-reset counts last seen.
    gaps: u64,
    resets: u64,
    deferred: Option<Error>,
    resyncs: u64,
    /// The here_now connection's state.
    link: Link,
    /// The device loop's heartbeat recoveries last seen.
    recoveries: u64,
}

impl PubNub {
    /// A live occupancy mirror of channels and/or channel groups: see
    /// [`Occupancy`].
    pub fn occupancy(&self) -> OccupancyBuilder<'_> {
        OccupancyBuilder {
            pubnub: self,
            targets: Targets::default(),
            include_state: false,
            max_occupants: DEFAULT_MAX_OCCUPANTS,
            page_size: here_now::DEFAULT_LIMIT,
            resync_delay: DEFAULT_RESYNC_DELAY,
            heartbeater: None,
            long_poll_timeout: crate::transport::LONG_POLL_TIMEOUT,
        }
    }
}

/// Occupants tracked per channel by default; past it a channel keeps its
/// count only.
pub const DEFAULT_MAX_OCCUPANTS: usize = 10_000;

/// How long a re-sync waits by default after what prompted it: the
/// service caches here_now answers for 3 s (docs/PROTOCOL.md §6).
pub const DEFAULT_RESYNC_DELAY: Duration = Duration::from_secs(3);

/// Builder for an occupancy mirror, from [`PubNub::occupancy`].
#[must_use = "a builder does nothing until open()"]
#[derive(Debug)]
pub struct OccupancyBuilder<'p> {
    pubnub: &'p PubNub,
    targets: Targets,
    include_state: bool,
    max_occupants: usize,
    page_size: u32,
    resync_delay: Duration,
    heartbeater: Option<Heartbeater>,
    long_poll_timeout: Duration,
}

impl OccupancyBuilder<'_> {
    target_setters! {
        /// Channels to mirror (this or `channel_groups` is required).
        channels;
        /// Channel groups to mirror: every channel in them.
        channel_groups;
    }

    /// Keep each occupant's state (default `false`): here_now asks for
    /// it, state-change events update it. Users who join a channel above
    /// the announce threshold come in interval deltas, which carry no
    /// state: the channel is then re-synced to learn it (one here_now of
    /// that channel after such an interval).
    pub fn include_state(mut self, include: bool) -> Self {
        self.include_state = include;
        self
    }

    /// Occupants tracked per channel at most (default 10,000). Past it the
    /// channel keeps its count only, reported as [`Change::CountsOnly`],
    /// until it is back under the cap. `open()` refuses 0.
    pub fn max_occupants_per_channel(mut self, max: usize) -> Self {
        self.max_occupants = max;
        self
    }

    /// Occupants per here_now page (`limit`, default and most 1,000).
    /// `open()` refuses 0 and more than 1,000 (the service's largest page).
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = size;
        self
    }

    /// How long a re-sync waits after what prompted it before it fetches
    /// (default 3 s, the service's here_now cache). Lower it only against
    /// a server without that cache, such as the local presence server.
    /// Zero is accepted (re-sync at once); `open()` refuses more than
    /// [`MAX_DURATION`](crate::MAX_DURATION) (one day).
    pub fn resync_delay(mut self, delay: Duration) -> Self {
        self.resync_delay = delay;
        self
    }

    /// Runs this heartbeat schedule in the same calls: the mirror's
    /// [`poll`](Occupancy::poll) then keeps the device present too, as
    /// [`PresenceLoop`] does. Reach it with [`Occupancy::heartbeater`].
    pub fn heartbeater(mut self, heartbeater: Heartbeater) -> Self {
        self.heartbeater = Some(heartbeater);
        self
    }

    /// The event stream's silence bound (see
    /// [`PresenceEventsBuilder::long_poll_timeout`](crate::presence::events::PresenceEventsBuilder::long_poll_timeout),
    /// and the same bounds, checked by `open()`).
    pub fn long_poll_timeout(mut self, timeout: Duration) -> Self {
        self.long_poll_timeout = timeout;
        self
    }

    /// Checks the arguments and returns the mirror. Nothing is sent until
    /// the first `poll`.
    pub fn open(self) -> Result<Occupancy> {
        self.targets.check()?;
        if self.max_occupants == 0 {
            return Err(crate::Error::input(
                "max_occupants_per_channel",
                "must be at least 1",
            ));
        }
        if self.page_size == 0 || self.page_size > here_now::DEFAULT_LIMIT {
            return Err(crate::Error::input(
                "page_size",
                "must be from 1 to 1,000 (the service's largest here_now page)",
            ));
        }
        crate::config::check_duration("resync_delay", self.resync_delay, true)?;
        let Targets {
            channels, groups, ..
        } = self.targets;
        let events: PresenceEvents = self
            .pubnub
            .presence_events()
            .channels(channels.clone())
            .channel_groups(groups.clone())
            .long_poll_timeout(self.long_poll_timeout)
            .open()?;
        let heartbeater = self
            .heartbeater
            .unwrap_or_else(|| Heartbeater::new(self.pubnub));
        let now = crate::clock::now();
        Ok(Occupancy {
            pubnub: self.pubnub.clone(),
            device: PresenceLoop::new(heartbeater, Some(events)),
            roster: Roster::new(&channels, self.max_occupants, self.include_state),
            channels,
            groups,
            include_state: self.include_state,
            page_size: self.page_size,
            resync_delay: self.resync_delay,
            sync: Some(Sync::new(Resync::Start, now)),
            next: None,
            started: false,
            confirm_at: None,
            settling: None,
            conn: None,
            backoff: Backoff::default(),
            gaps: 0,
            resets: 0,
            deferred: None,
            resyncs: 0,
            link: Link::new("mirror here_now"),
            recoveries: 0,
        })
    }
}

impl Occupancy {
    /// One iteration: heartbeats when given one, events, and the
    /// snapshot work that is due, for at most `budget`. Returns what
    /// changed, as soon as something did (after taking in what has already
    /// arrived), or an empty list when nothing did within the budget.
    ///
    /// Each failure (events, here_now, heartbeat) is returned once, by
    /// the call in which it happened, or by the next one when changes
    /// were already made; each side backs off on its own. A failed event
    /// request also schedules a re-sync.
    pub fn poll(&mut self, budget: Duration) -> Result<Vec<Change>> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        let deadline = deadline_after(budget);
        let mut out = Vec::new();
        let mut paged = false;
        let mut events = 0;
        loop {
            let now = crate::clock::now();
            if !paged {
                match self.drive_sync(now, deadline, &mut out) {
                    Ok(p) => paged = p,
                    Err(e) => return self.fail(e, out),
                }
            }
            let done = !out.is_empty() || deadline.is_some_and(|d| now >= d);
            let until = if done {
                Some(now)
            } else {
                earliest(deadline, self.wake_at(now, paged))
            };
            let got = self.device.poll_until(until);
            self.look_for_gaps();
            self.after_recovery();
            match got {
                Ok(Some(event)) => {
                    self.on_event(event, &mut out);
                    events += 1;
                    if events >= MAX_EVENTS_PER_POLL {
                        return Ok(out);
                    }
                }
                Ok(None) if done => return Ok(out),
                Ok(None) => {
                    if deadline.is_some_and(|d| crate::clock::now() >= d) && out.is_empty() {
                        return Ok(out);
                    }
                }
                Err(e) => return self.fail(e, out),
            }
        }
    }

    /// Heartbeats were answered again after failing (the device loop has
    /// restarted the long-poll): a here_now page in flight may sit on a
    /// connection the outage killed silently, so it is sent again at once
    /// on a new one, and the backoff after here_now failures is over.
    fn after_recovery(&mut self) {
        let seen = self.device.recoveries();
        if seen == self.recoveries {
            return;
        }
        self.recoveries = seen;
        if let Some(fetch) = self.sync.as_mut().and_then(|s| s.fetch.as_mut()) {
            if fetch.in_flight {
                log::info!(target: "pubnub_presence::mirror",
                    "the service answers again: sending the here_now page in flight again on a new connection");
                fetch.in_flight = false;
            }
        }
        if let Some(c) = &mut self.conn {
            c.abort();
        }
        self.backoff.retry_at(None);
    }

    /// What the mirror's connections are doing, taken together: the worse
    /// of the device loop's ([`PresenceLoop::link_state`]: events, and
    /// heartbeats once one is sent) and the here_now connection's (once a
    /// snapshot page has ended). See [`LinkState`].
    pub fn link_state(&self) -> LinkState {
        let state = self.device.link_state();
        if self.link.used() {
            state.worse(self.link.state_with(self.backoff.until()))
        } else {
            state
        }
    }

    /// A failure: returned now, or by the next call when changes were
    /// made (they must reach the caller).
    fn fail(&mut self, e: Error, out: Vec<Change>) -> Result<Vec<Change>> {
        if out.is_empty() {
            Err(e)
        } else {
            self.deferred = Some(e);
            Ok(out)
        }
    }

    /// When the snapshot work wants the loop back (`None`: not before the
    /// deadline).
    fn wake_at(&mut self, now: Instant, paged: bool) -> Option<Instant> {
        let handshake = self.cursor() == 0;
        let Some(sync) = &self.sync else {
            return self.confirm_at;
        };
        if paged {
            return None;
        }
        if handshake {
            return now.checked_add(HANDSHAKE_SLICE);
        }
        let at = sync.not_before;
        Some(match self.backoff.waiting(now) {
            Some(retry) => retry.max(at),
            None => at,
        })
    }

    fn cursor(&mut self) -> u64 {
        self.device.events().map_or(0, |e| e.cursor().t)
    }

    /// A failed event request, a reconnect or a cursor moved back: a
    /// re-sync.
    fn look_for_gaps(&mut self) {
        let (gaps, resets) = self
            .device
            .events()
            .map_or((0, 0), |e| (e.gaps(), e.cursor_resets()));
        if gaps == self.gaps {
            return;
        }
        let reason = if resets != self.resets {
            Resync::CursorReset
        } else {
            Resync::Reconnect
        };
        (self.gaps, self.resets) = (gaps, resets);
        self.schedule(reason);
    }

    fn on_event(&mut self, event: PresenceEvent<'static>, out: &mut Vec<Change>) {
        match &event {
            PresenceEvent::Skipped(s) => {
                let reason = Resync::Skipped {
                    channel: s.channel.as_deref().map(str::to_string),
                };
                self.schedule(reason);
                return;
            }
            PresenceEvent::Unknown { channel, action } => {
                log::debug!(target: "pubnub_presence::mirror",
                    "ignored an event with the unknown action {action:?} on {channel:?}");
                return;
            }
            _ => {}
        }
        let channel = event.channel();
        let in_sync = self
            .sync
            .as_ref()
            .is_some_and(|s| s.scope.contains(channel));
        let in_next = self
            .next
            .as_ref()
            .is_some_and(|s| s.scope.contains(channel));
        let syncing = in_sync || in_next;
        // Just after a snapshot, an event may still be one published
        // before it: its occupancy is not checked.
        let settling = self
            .settling
            .as_ref()
            .is_some_and(|(scope, until)| crate::clock::now() < *until && scope.contains(channel));
        let wanted = self.roster.apply(&event, !(syncing || settling), out);
        if in_next {
            if let Some(next) = &mut self.next {
                keep(next, &event, &mut self.conn, self.resync_delay);
            }
        }
        if in_sync {
            if let Some(sync) = &mut self.sync {
                keep(sync, &event, &mut self.conn, self.resync_delay);
            }
        }
        if let Some(reason) = wanted {
            self.schedule(reason);
        }
    }

    /// Asks for a re-sync, `resync_delay` from now (the service's here_now
    /// cache). A re-sync already waiting or running is never pushed back
    /// nor aborted by a new reason (reasons arriving more often than the
    /// delay would starve it): the new reason is added to the follow-up
    /// re-sync (`next`), which runs once the current one is installed, at
    /// the latest reason's time plus the delay or at once when that has
    /// passed. A reason within [`GATHER`] of the waiting re-sync's first
    /// (the same batch of events) joins it, moving its fetch by that much
    /// at most. "Back under the cap" is served by any snapshot fetched a
    /// delay after it or later (one fetched sooner may come from the
    /// cache, from before the event, and put the channel over the cap
    /// again): it is not asked again while a waiting re-sync that fetches
    /// no sooner covers its channel, and otherwise goes the way of the
    /// other reasons (to the follow-up while a re-sync runs). A follow-up
    /// asked only for that is dropped when its turn comes if its channels
    /// are listed again by then.
    fn schedule(&mut self, reason: Resync) {
        let not_before = crate::clock::now()
            .checked_add(self.resync_delay)
            .unwrap_or_else(crate::clock::now);
        self.schedule_at(reason, not_before);
    }

    fn schedule_at(&mut self, reason: Resync, not_before: Instant) {
        let scope = reason.scope();
        let any_snapshot = matches!(reason, Resync::UnderCap { .. });
        if any_snapshot
            && [&self.sync, &self.next].iter().any(|s| {
                s.as_ref().is_some_and(|s| {
                    s.fetch.is_none() && s.not_before >= not_before && s.scope.covers(&scope)
                })
            })
        {
            return;
        }
        log::info!(target: "pubnub_presence::mirror", "re-sync needed: {reason}");
        let merge = |sync: &mut Sync, scope: Scope| {
            sync.scope.merge(scope);
            sync.not_before = sync.not_before.max(not_before);
            sync.under_cap_only &= any_snapshot;
            if !any_snapshot {
                // The snapshot now comes a delay after this reason: it
                // reflects the events kept so far, and replaying them
                // could undo what the reason says was lost.
                sync.replay = Vec::new();
            }
        };
        match &mut self.sync {
            None => self.sync = Some(Sync::new(reason, not_before)),
            Some(sync)
                if sync.fetch.is_none()
                    && sync
                        .due
                        .checked_add(GATHER)
                        .is_some_and(|t| not_before <= t) =>
            {
                merge(sync, scope);
            }
            Some(_) => match &mut self.next {
                None => self.next = Some(Sync::new(reason, not_before)),
                // Bounded: reasons come here only while `sync` runs or
                // waits, so this is at most its end plus the delay.
                Some(next) => merge(next, scope),
            },
        }
    }

    /// The follow-up re-sync becomes the current one, unless it was asked
    /// only to list channels back under the cap again and none of its
    /// channels keeps its count only any more (the snapshot just
    /// installed listed them).
    fn promote(&mut self) {
        self.sync = self.next.take();
        if self
            .sync
            .as_ref()
            .is_some_and(|s| s.under_cap_only && !self.roster.counts_only_in(&s.scope))
        {
            log::debug!(target: "pubnub_presence::mirror",
                "the follow-up re-sync for channels back under the cap is not needed: they are listed");
            self.sync = None;
        }
    }

    /// Re-syncs every channel: after changing a channel group's channels
    /// (the service sends nothing then), or whenever the caller wants to
    /// be sure. Runs in later calls of [`poll`](Occupancy::poll), after
    /// the re-sync delay.
    pub fn resync(&mut self) {
        self.schedule(Resync::Requested);
    }

    /// The snapshot work that is due: starts, sends or reads one here_now
    /// page. `Ok(true)` when a page was taken in.
    fn drive_sync(
        &mut self,
        now: Instant,
        deadline: Option<Instant>,
        out: &mut Vec<Change>,
    ) -> Result<bool> {
        if self.sync.is_none() {
            match self.confirm_at {
                Some(at) if at <= now => {
                    self.confirm_at = None;
                    self.schedule_at(Resync::StartCheck, now);
                }
                _ => return Ok(false),
            }
        }
        // The first snapshot waits for the handshake: events are applied
        // from its cursor on, so nothing between the two is lost.
        if self.cursor() == 0 {
            return Ok(false);
        }
        // A here_now page never holds up a heartbeat that is due.
        let heartbeat = {
            let hb = self.device.heartbeater();
            if hb.in_flight() {
                now.checked_add(HEARTBEAT_SLICE)
            } else {
                hb.next_due(now)
            }
        };
        let limit = earliest(deadline, heartbeat);
        let taken = match self.page(now, limit) {
            Ok(None) => return Ok(false),
            Ok(Some(body)) => self.take_page(&body, out).map_err(|e| (e, None)),
            Err(e) => Err(e),
        };
        match taken {
            Ok(()) => {
                self.backoff.succeed();
                self.link.up(crate::clock::now());
                Ok(true)
            }
            Err((e, _))
                if e.status() == Some(414) || matches!(e.kind(), ErrorKind::Input { .. }) =>
            {
                // The same request would fail the same way: not retried.
                log::error!(target: "pubnub_presence::mirror",
                    "here_now for a re-sync cannot be sent, giving the re-sync up: {e}");
                // Nothing is in flight: the request was refused or never sent.
                self.promote();
                Err(e)
            }
            Err((e, retry_after)) => {
                let now = crate::clock::now();
                self.link
                    .failed(&mut self.backoff, now, &e, retry_after, None, &FAILURE_LOG);
                Err(e)
            }
        }
    }

    /// Sends the snapshot's next page when due, and drives it until
    /// `limit`: the response body when it came.
    fn page(
        &mut self,
        now: Instant,
        limit: Option<Instant>,
    ) -> std::result::Result<Option<Vec<u8>>, (Error, Option<Duration>)> {
        let Occupancy {
            pubnub,
            sync,
            conn,
            roster,
            channels,
            groups,
            backoff,
            include_state,
            page_size,
            ..
        } = self;
        let Some(sync) = sync.as_mut() else {
            return Ok(None);
        };
        if now < sync.not_before || backoff.waiting(now).is_some() {
            return Ok(None);
        }
        if sync.fetch.is_none() {
            roster.next_generation();
            sync.attempt = sync.attempt.saturating_add(1);
            let list = match &sync.scope {
                Scope::All => batches(channels, groups),
                Scope::Channels(set) => {
                    let set: Vec<String> = set.iter().cloned().collect();
                    batches(&set, &[])
                }
            };
            sync.fetch = Some(Fetch::new(list));
        }
        let Some(fetch) = sync.fetch.as_mut() else {
            return Ok(None);
        };
        if !fetch.in_flight {
            let url = loop {
                let (chs, grps) = if fetch.offset > 0 {
                    (fetch.next.clone(), Vec::new())
                } else {
                    fetch.batch.clone()
                };
                // One channel and no group: the service answers in the flat
                // shape, which does not name the channel.
                fetch.flat = match (chs.as_slice(), grps.is_empty()) {
                    ([one], true) => Some(one.clone()),
                    _ => None,
                };
                let url = pubnub
                    .here_now()
                    .channels(chs)
                    .channel_groups(grps)
                    .include_state(*include_state)
                    .limit(*page_size)
                    .offset(fetch.offset)
                    .request()
                    .and_then(|r| pubnub.url_for(r));
                match url {
                    Ok(url) => break url,
                    // Too long (a long state? names over the cap): in two.
                    Err(_) if fetch.offset == 0 && fetch.split() => {}
                    Err(e) => return Err((e, None)),
                }
            };
            let c = match conn {
                Some(c) => c,
                None => conn.insert(Conn::new(pubnub.endpoint())),
            };
            c.start(url, pubnub.config().request_timeout)
                .map_err(|e| (e, None))?;
            fetch.in_flight = true;
        }
        let Some(c) = conn.as_mut() else {
            return Ok(None);
        };
        let resp = match c.drive(limit) {
            Ok(None) => return Ok(None),
            Ok(Some(resp)) => resp,
            Err(e) => {
                fetch.in_flight = false;
                return Err((e, None));
            }
        };
        fetch.in_flight = false;
        // 414: the front end's limit on the URL is below ours. The same
        // request would fail again: split it, or give up (drive_sync).
        if resp.status == 414 && fetch.offset == 0 && fetch.split() {
            log::warn!(target: "pubnub_presence::mirror",
                "here_now URL too long for the server (414): splitting the request");
            return Ok(None);
        }
        if let Some(e) = resp.error() {
            return Err((e, resp.retry_after));
        }
        Ok(Some(resp.body))
    }

    /// Takes in one here_now page; after the last one, checks the
    /// snapshot and installs it.
    fn take_page(&mut self, body: &[u8], out: &mut Vec<Change>) -> Result<()> {
        let Occupancy {
            sync,
            roster,
            page_size,
            resync_delay,
            conn,
            ..
        } = self;
        let Some(sync) = sync.as_mut() else {
            return Ok(());
        };
        let Some(fetch) = sync.fetch.as_mut() else {
            return Ok(());
        };
        let result = here_now::decode(body, fetch.flat.as_deref())?;
        let first = fetch.offset == 0;
        let end = fetch.offset.saturating_add(*page_size);
        let mut next = Vec::new();
        for channel in result.channels {
            let (name, occupancy) = (channel.name, channel.occupancy);
            let got = u32::try_from(channel.occupants.len()).unwrap_or(u32::MAX);
            if first {
                // Listed by an earlier request of this snapshot too (a
                // channel named and in a group): that one pages it.
                if fetch.counts.contains_key(&*name) {
                    continue;
                }
                fetch.counts.insert(name.to_string(), (occupancy, 0));
            }
            let tracked = roster.load(&name, occupancy, channel.occupants, first, out);
            match fetch.counts.get_mut(&*name) {
                Some(count) if tracked => {
                    fetch.moved |= count.0 != occupancy;
                    count.1 = count.1.saturating_add(got);
                }
                // Counts only: no more pages, nothing to compare.
                Some(_) => {
                    fetch.counts.remove(&*name);
                }
                None => fetch.moved = true,
            }
            if tracked && got > 0 && occupancy > end {
                next.push(name.into_owned());
            }
        }
        fetch.pages = fetch.pages.saturating_add(1);
        if !next.is_empty() {
            fetch.offset = end;
            fetch.next = next;
            return Ok(());
        }
        if let Some(batch) = fetch.batches.pop() {
            fetch.batch = batch;
            fetch.offset = 0;
            fetch.next = Vec::new();
            return Ok(());
        }
        // Every page read. Someone joining or leaving between two pages
        // shifts the others across a page boundary (skipped or listed
        // twice): the occupancy then differs between pages, or from the
        // users received. Fetch again (up to 3 attempts in all).
        let moved = fetch.moved || fetch.counts.values().any(|(occ, got)| occ != got);
        if moved {
            if sync.attempt < MAX_ATTEMPTS {
                log::info!(target: "pubnub_presence::mirror",
                    "occupants moved while here_now was paged ({} pages): fetching again",
                    fetch.pages);
                let not_before = crate::clock::now()
                    .checked_add(*resync_delay)
                    .unwrap_or_else(crate::clock::now);
                restart(sync, conn, not_before);
                return Ok(());
            }
            log::warn!(target: "pubnub_presence::mirror",
                "occupants kept moving while here_now was paged ({} attempts): keeping the last snapshot; the next occupancy check re-syncs it",
                sync.attempt);
        }
        self.install(out);
        Ok(())
    }

    /// Ends a re-sync: takes in the events that have already arrived (they
    /// may predate the snapshot), applies the re-sync's events again over
    /// the snapshot, and drops whoever the snapshot did not confirm.
    fn install(&mut self, out: &mut Vec<Change>) {
        for _ in 0..MAX_EVENTS_PER_POLL {
            match self.device.poll_until(Some(crate::clock::now())) {
                Ok(Some(event)) => self.on_event(event, out),
                Ok(None) => break,
                Err(e) => {
                    self.look_for_gaps();
                    self.deferred.get_or_insert(e);
                    break;
                }
            }
        }
        // One of those events (too many to keep) started the re-sync over.
        if self.sync.as_ref().is_some_and(|s| s.fetch.is_none()) {
            return;
        }
        let Some(sync) = self.sync.take() else {
            return;
        };
        let replayed = sync.replay.len();
        let mut under_cap = Vec::new();
        for event in &sync.replay {
            // Already applied once: what it asked for was asked then,
            // except "back under the cap", which the snapshot may have
            // undone (it can predate the event: a slow answer, the cache).
            if let Some(Resync::UnderCap { channel }) = self.roster.apply(event, false, out) {
                under_cap.push(channel);
            }
        }
        self.roster.sweep(&sync.scope, out);
        self.promote();
        for channel in under_cap {
            if self.is_counts_only(&channel) {
                // The event asked already, a delay after which the
                // follow-up fetches: one fetching from now on serves it.
                self.schedule_at(Resync::UnderCap { channel }, crate::clock::now());
            }
        }
        self.resyncs = self.resyncs.saturating_add(1);
        self.settling = crate::clock::now()
            .checked_add(SETTLE)
            .map(|until| (sync.scope.clone(), until));
        let pages = sync.fetch.as_ref().map_or(0, |f| f.pages);
        log::info!(target: "pubnub_presence::mirror",
            "re-synced ({}): {} pages, {replayed} events replayed, {} ms",
            sync.reason, pages, sync.started.elapsed().as_millis());
        if !self.started {
            self.started = true;
            // The first answer may have come from the service's cache,
            // older than the subscription: confirm it once the window passed.
            if !self.resync_delay.is_zero() {
                self.confirm_at = crate::clock::now().checked_add(self.resync_delay);
            }
        }
        out.push(Change::Resynced(sync.reason));
    }
}

/// Keeps an event of a re-sync's scope to apply again over its snapshot;
/// past [`MAX_REPLAY`] the re-sync starts over.
fn keep(sync: &mut Sync, event: &PresenceEvent<'static>, conn: &mut Option<Conn>, delay: Duration) {
    if sync.replay.len() < MAX_REPLAY {
        sync.replay.push(event.clone());
        return;
    }
    log::warn!(target: "pubnub_presence::mirror",
        "more than {MAX_REPLAY} events while re-syncing: starting the re-sync over");
    let not_before = crate::clock::now()
        .checked_add(delay)
        .unwrap_or_else(crate::clock::now);
    sync.attempt = 0;
    restart(sync, conn, not_before);
}

/// Abandons a snapshot attempt (and its request in flight); the re-sync
/// starts over at `not_before`, from what prompted it now. The events
/// kept for replay go: the new snapshot, taken after the delay, reflects
/// them, and replaying them could undo what came after them unseen (the
/// lost deltas of a `here_now_refresh`, a gap).
fn restart(sync: &mut Sync, conn: &mut Option<Conn>, not_before: Instant) {
    sync.replay = Vec::new();
    if sync.fetch.as_ref().is_some_and(|f| f.in_flight) {
        if let Some(c) = conn {
            c.abort();
        }
    }
    sync.fetch = None;
    sync.not_before = not_before;
    sync.due = not_before;
}

/// Reading the mirror.
impl Occupancy {
    /// Every channel the mirror knows: those named when it was opened
    /// (also when empty), and the channels of its groups that have
    /// someone on them, in name order.
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.roster.channels()
    }

    /// Users on `channel` (0 for a channel the mirror does not know); for
    /// a counts-only channel, the service's count.
    pub fn occupancy(&self, channel: &str) -> u32 {
        self.roster.room(channel).map_or(0, |r| r.occupancy())
    }

    /// The occupants of `channel` with their state, in no particular
    /// order. None for a channel the mirror does not know, or a
    /// counts-only one ([`Occupancy::is_counts_only`]).
    pub fn occupants(&self, channel: &str) -> impl Iterator<Item = Occupant<'_>> {
        self.roster
            .room(channel)
            .into_iter()
            .flat_map(|r| r.occupants())
            .map(|(user_id, state)| Occupant { user_id, state })
    }

    /// Whether the mirror lists `user_id` on `channel` (never on a
    /// counts-only channel: see [`Occupancy::is_counts_only`]).
    pub fn is_present(&self, channel: &str, user_id: &str) -> bool {
        self.roster
            .room(channel)
            .is_some_and(|r| r.contains(user_id))
    }

    /// The state of `user_id` on `channel` (`null` when none is set or
    /// state is not kept); `None` when the mirror does not list the user
    /// there.
    pub fn state(&self, channel: &str, user_id: &str) -> Option<&State<'static>> {
        self.roster.room(channel).and_then(|r| r.state(user_id))
    }

    /// Whether `channel` is past the cap on tracked occupants: its count
    /// is kept, its users are not.
    pub fn is_counts_only(&self, channel: &str) -> bool {
        self.roster
            .room(channel)
            .is_some_and(|r| r.is_counts_only())
    }

    /// Whether the mirror has its first snapshot, confirmed, and no
    /// re-sync is pending or running.
    pub fn is_synced(&self) -> bool {
        self.started && self.sync.is_none() && self.confirm_at.is_none()
    }

    /// Re-syncs completed so far (the first snapshot included).
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// The heartbeat schedule run in the same calls (one that joins
    /// nothing when none was given): join, leave, set state while the
    /// mirror runs.
    pub fn heartbeater(&mut self) -> &mut Heartbeater {
        self.device.heartbeater()
    }

    /// Applies one event as if the stream had delivered it, with no IO.
    /// For benches, through `__internal::apply_event`.
    pub(crate) fn apply_event(&mut self, event: PresenceEvent<'static>) -> Vec<Change> {
        let mut out = Vec::new();
        self.on_event(event, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_fit_and_split() {
        let few = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            batches(&few, &["g".into()]),
            [(few.clone(), vec!["g".into()])]
        );
        // 300 names of 40 bytes (12 KB encoded): two requests of channels,
        // one of groups, each within the bound.
        let many: Vec<String> = (0..300)
            .map(|i| format!("{i:05}-{}", "c".repeat(34)))
            .collect();
        let out = batches(&many, &["g".into()]);
        assert_eq!(out.len(), 3, "{}", out.len());
        assert_eq!(out.iter().map(|(c, _)| c.len()).sum::<usize>(), 300);
        assert!(out.iter().all(|(c, _)| c.len() * 41 <= BATCH_NAMES_LEN));
        assert_eq!(out[2], (Vec::new(), vec!["g".to_string()]));
        // A 414: halves, down to one name.
        let mut f = Fetch::new(vec![(few.clone(), vec!["g".into()])]);
        assert!(f.split());
        assert_eq!(f.batch, (vec!["a".into()], vec!["g".into()]));
        assert!(f.split());
        assert_eq!(f.batch, (vec!["a".into()], vec![]));
        assert!(!f.split());
        assert_eq!(f.batches.len(), 2);
    }
}
