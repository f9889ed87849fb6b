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
//! These rules are kept by a sans-IO engine, [`Mirror`] (no socket, no
//! clock: its state graph and interface are in its docs);
//! [`Occupancy`] pumps it over one kept here_now connection and feeds it
//! the events of its device loop.
//!
//! Channel groups: the service sends nothing when a group's channel list
//! changes. A channel added to a group shows up with its next event (whose
//! `occupancy` check then re-syncs it); call [`Occupancy::resync`] after
//! changing a group, to pick up an addition with no activity yet or drop
//! a removed channel.

mod change;
mod mirror;
mod roster;

pub use change::{Change, Occupant, Resync};
pub use mirror::{Mirror, Phase};

use crate::client::PubNub;
use crate::clock::{deadline_after, earliest};
use crate::driver::Lane;
use crate::error::{Error, Result};
use crate::presence::events::{PresenceEvent, PresenceEvents};
use crate::presence::here_now;
use crate::presence::link::LinkState;
use crate::presence::schedule::{Heartbeater, PresenceLoop};
use crate::presence::targets::{target_setters, Targets};
use crate::state::State;
use mirror::Options;
use std::time::{Duration, Instant};

/// Events handled per call at most.
const MAX_EVENTS_PER_POLL: usize = 256;
/// How often the handshake is looked at before the first snapshot.
const HANDSHAKE_SLICE: Duration = Duration::from_millis(10);
/// How long a here_now page is driven at a time while a heartbeat's
/// answer is awaited.
const HEARTBEAT_SLICE: Duration = Duration::from_millis(50);

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
    /// The sans-IO engine: roster, re-sync schedule, here_now paging.
    mirror: Mirror,
    /// The here_now connection.
    lane: Lane,
    deferred: Option<Error>,
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
        self.check()?;
        let events: PresenceEvents = self
            .pubnub
            .presence_events()
            .channels(self.targets.channels.clone())
            .channel_groups(self.targets.groups.clone())
            .long_poll_timeout(self.long_poll_timeout)
            .open()?;
        let pubnub = self.pubnub.clone();
        let (mirror, given) = self.into_mirror(crate::clock::now());
        let heartbeater = given.unwrap_or_else(|| Heartbeater::new(&pubnub));
        Ok(Occupancy {
            pubnub,
            device: PresenceLoop::new(heartbeater, Some(events)),
            mirror,
            lane: Lane::default(),
            deferred: None,
            recoveries: 0,
        })
    }

    /// Checks the arguments and returns the mirror's sans-IO engine, its
    /// first snapshot due at `now` (once the event stream has its
    /// cursor), for a program that does its own IO: see [`Mirror`]. The
    /// event stream ([`PresenceEventsBuilder::engine`](crate::presence::events::PresenceEventsBuilder::engine))
    /// and the heartbeats are the program's to run beside it:
    /// [`heartbeater`](OccupancyBuilder::heartbeater) and
    /// [`long_poll_timeout`](OccupancyBuilder::long_poll_timeout) are not
    /// used.
    pub fn engine(self, now: Instant) -> Result<Mirror> {
        self.check()?;
        Ok(self.into_mirror(now).0)
    }

    fn check(&self) -> Result<()> {
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
        crate::config::check_duration("resync_delay", self.resync_delay, true)
    }

    /// The engine, and the heartbeat schedule given.
    fn into_mirror(self, now: Instant) -> (Mirror, Option<Heartbeater>) {
        let Targets {
            channels, groups, ..
        } = self.targets;
        let options = Options {
            include_state: self.include_state,
            max_occupants: self.max_occupants,
            page_size: self.page_size,
            resync_delay: self.resync_delay,
        };
        let mirror = Mirror::new(self.pubnub.clone(), channels, groups, &options, now);
        (mirror, self.heartbeater)
    }
}

/// The driving part: the engine ([`Mirror`]) pumped on the here_now
/// lane (`driver::Lane`), fed by the device loop's events. The only place here that
/// reads the clock.
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
        let mut paged = false;
        let mut events = 0;
        loop {
            let now = crate::clock::now();
            if !paged {
                match self.drive_sync(now, deadline) {
                    Ok(p) => paged = p,
                    Err(e) => return self.fail(e),
                }
            }
            let done = self.mirror.has_changes() || deadline.is_some_and(|d| now >= d);
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
                    self.on_event(&event);
                    events += 1;
                    if events >= MAX_EVENTS_PER_POLL {
                        return Ok(self.mirror.take_changes());
                    }
                }
                Ok(None) if done => return Ok(self.mirror.take_changes()),
                Ok(None) => {
                    if deadline.is_some_and(|d| crate::clock::now() >= d)
                        && !self.mirror.has_changes()
                    {
                        return Ok(Vec::new());
                    }
                }
                Err(e) => return self.fail(e),
            }
        }
    }

    /// Heartbeats were answered again after failing (the device loop has
    /// restarted the long-poll): a here_now page in flight may sit on a
    /// connection the outage killed silently, so it is sent again at once
    /// on a new one, and the backoff after here_now failures is over
    /// ([`Mirror::restart`]).
    fn after_recovery(&mut self) {
        let seen = self.device.recoveries();
        if seen == self.recoveries {
            return;
        }
        self.recoveries = seen;
        self.mirror.restart();
        self.lane.abort();
    }

    /// What the mirror's connections are doing, taken together: the worse
    /// of the device loop's ([`PresenceLoop::link_state`]: events, and
    /// heartbeats once one is sent) and the here_now connection's (once a
    /// snapshot page has ended). See [`LinkState`].
    pub fn link_state(&self) -> LinkState {
        let state = self.device.link_state();
        if self.mirror.link_used() {
            state.worse(self.mirror.link_state())
        } else {
            state
        }
    }

    /// A failure: returned now, or by the next call when changes were
    /// made (they must reach the caller).
    fn fail(&mut self, e: Error) -> Result<Vec<Change>> {
        if self.mirror.has_changes() {
            self.deferred = Some(e);
            Ok(self.mirror.take_changes())
        } else {
            Err(e)
        }
    }

    /// When the snapshot work wants the loop back (`None`: not before the
    /// deadline).
    fn wake_at(&mut self, now: Instant, paged: bool) -> Option<Instant> {
        self.observe_handshake();
        match self.mirror.phase() {
            Phase::Idle => self.mirror.wake_at(now),
            _ if paged => None,
            Phase::Handshake => now.checked_add(HANDSHAKE_SLICE),
            _ => self.mirror.wake_at(now),
        }
    }

    /// Tells the engine whether the event stream has its cursor.
    fn observe_handshake(&mut self) {
        let cursor = self.device.events().map_or(0, |e| e.cursor().t);
        self.mirror.set_subscribed(cursor != 0);
    }

    /// A failed event request, a reconnect or a cursor moved back: a
    /// re-sync.
    fn look_for_gaps(&mut self) {
        let (gaps, resets) = self
            .device
            .events()
            .map_or((0, 0), |e| (e.gaps(), e.cursor_resets()));
        self.mirror.handle_gaps(crate::clock::now(), gaps, resets);
    }

    /// An event into the engine; a here_now request it abandoned (the
    /// re-sync started over) is dropped with its connection.
    fn on_event(&mut self, event: &PresenceEvent<'_>) {
        self.mirror.handle_event(crate::clock::now(), event);
        if self.lane.busy() && !self.mirror.in_flight() {
            self.lane.abort();
        }
    }

    /// Re-syncs every channel: after changing a channel group's channels
    /// (the service sends nothing then), or whenever the caller wants to
    /// be sure. Runs in later calls of [`poll`](Occupancy::poll), after
    /// the re-sync delay.
    pub fn resync(&mut self) {
        self.mirror.resync(crate::clock::now());
    }

    /// The snapshot work that is due: sends or reads one here_now page
    /// (the engine pumped on the lane), and installs a complete snapshot.
    /// `Ok(true)` when a page was taken in.
    fn drive_sync(&mut self, now: Instant, deadline: Option<Instant>) -> Result<bool> {
        self.observe_handshake();
        let due = self.mirror.wake_at(now).is_some_and(|at| at <= now);
        if !due && !self.lane.busy() {
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
        let pages = self.mirror.pages();
        self.lane.pump(&self.pubnub, &mut self.mirror, limit)?;
        if self.mirror.phase() == Phase::Complete {
            self.install();
        }
        Ok(self.mirror.pages() != pages)
    }

    /// Ends a re-sync: takes in the events that have already arrived (they
    /// may predate the snapshot), then installs the snapshot
    /// ([`Mirror::install`]: the re-sync's events applied again over it,
    /// whoever it did not confirm dropped).
    fn install(&mut self) {
        for _ in 0..MAX_EVENTS_PER_POLL {
            match self.device.poll_until(Some(crate::clock::now())) {
                Ok(Some(event)) => self.on_event(&event),
                Ok(None) => break,
                Err(e) => {
                    self.look_for_gaps();
                    self.deferred.get_or_insert(e);
                    break;
                }
            }
        }
        self.mirror.install(crate::clock::now());
    }
}

/// Reading the mirror.
impl Occupancy {
    /// Every channel the mirror knows: those named when it was opened
    /// (also when empty), and the channels of its groups that have
    /// someone on them, in name order.
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.mirror.channels()
    }

    /// Users on `channel` (0 for a channel the mirror does not know); for
    /// a counts-only channel, the service's count.
    pub fn occupancy(&self, channel: &str) -> u32 {
        self.mirror.occupancy(channel)
    }

    /// The occupants of `channel` with their state, in no particular
    /// order. None for a channel the mirror does not know, or a
    /// counts-only one ([`Occupancy::is_counts_only`]).
    pub fn occupants(&self, channel: &str) -> impl Iterator<Item = Occupant<'_>> {
        self.mirror.occupants(channel)
    }

    /// Whether the mirror lists `user_id` on `channel` (never on a
    /// counts-only channel: see [`Occupancy::is_counts_only`]).
    pub fn is_present(&self, channel: &str, user_id: &str) -> bool {
        self.mirror.is_present(channel, user_id)
    }

    /// The state of `user_id` on `channel` (`null` when none is set or
    /// state is not kept); `None` when the mirror does not list the user
    /// there.
    pub fn state(&self, channel: &str, user_id: &str) -> Option<&State<'static>> {
        self.mirror.state(channel, user_id)
    }

    /// Whether `channel` is past the cap on tracked occupants: its count
    /// is kept, its users are not.
    pub fn is_counts_only(&self, channel: &str) -> bool {
        self.mirror.is_counts_only(channel)
    }

    /// Whether the mirror has its first snapshot, confirmed, and no
    /// re-sync is pending or running.
    pub fn is_synced(&self) -> bool {
        self.mirror.is_synced()
    }

    /// Re-syncs completed so far (the first snapshot included).
    pub fn resyncs(&self) -> u64 {
        self.mirror.resyncs()
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
        self.on_event(&event);
        self.mirror.take_changes()
    }
}
