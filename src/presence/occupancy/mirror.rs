//! The occupancy mirror's sans-IO engine ([`Mirror`]): the roster, the
//! re-sync schedule and the here_now paging, with no socket and no clock.
//! [`Occupancy`](super::Occupancy) is this engine pumped over one kept
//! here_now connection, fed by the event stream of its device loop.

use super::change::{Change, Occupant, Resync, Scope};
use super::roster::Roster;
use crate::backoff::Backoff;
use crate::client::PubNub;
use crate::engine::{Engine, Step, Transmit};
use crate::error::{Error, ErrorKind, Result};
use crate::presence::events::PresenceEvent;
use crate::presence::here_now;
use crate::presence::link::{FailureLog, Link, LinkState};
use crate::request::Request;
use crate::state::State;
use crate::transport::Response;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How a failed request is logged.
const FAILURE_LOG: FailureLog = FailureLog {
    target: "pubnub_presence::mirror",
    message: "here_now for a re-sync failed, next in",
};

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
    /// Every page is in: the snapshot waits to be installed.
    complete: bool,
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
    fn new(reason: Resync, not_before: Instant, now: Instant) -> Sync {
        Sync {
            scope: reason.scope(),
            under_cap_only: matches!(reason, Resync::UnderCap { .. }),
            reason,
            not_before,
            due: not_before,
            attempt: 0,
            fetch: None,
            replay: Vec::new(),
            started: now,
        }
    }
}

/// What a [`Mirror`] is doing (see its state graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// The first snapshot waits for the event stream's handshake
    /// ([`Mirror::set_subscribed`]): events are applied from its cursor
    /// on, so nothing between the two is lost.
    Handshake,
    /// No re-sync pending or running. The first snapshot's confirmation
    /// may be scheduled ([`Mirror::wake_at`]).
    Idle,
    /// A re-sync, or its next page, waits for its instant: the re-sync
    /// delay after what prompted it (the service's here_now cache), the
    /// backoff after a failure, or none (the next
    /// [`poll`](Engine::poll) sends it).
    Waiting,
    /// A here_now page is in flight.
    InFlight,
    /// Every page is in: the snapshot waits to be installed
    /// ([`Mirror::install`], or the next [`poll`](Engine::poll)).
    Complete,
}

/// How a mirror is set up (from its builder).
#[derive(Debug)]
pub(super) struct Options {
    pub(super) include_state: bool,
    pub(super) max_occupants: usize,
    pub(super) page_size: u32,
    pub(super) resync_delay: Duration,
}

/// The occupancy mirror's sans-IO engine: the roster, the re-sync
/// schedule (reasons, the re-sync delay, the 100 ms window that gathers a
/// burst, follow-ups, the events kept to apply again over a snapshot),
/// the here_now paging (split on URL length or a 414, fetched again when
/// the occupants moved under it) and its backoff, with no socket and no
/// clock: every instant is an argument. The rules it keeps are those of
/// the [module docs](super).
///
/// [`Occupancy`](super::Occupancy) is this engine pumped over one kept
/// here_now connection, fed by its device loop's event stream. A program
/// with its own IO gets one from
/// [`OccupancyBuilder::engine`](super::OccupancyBuilder::engine), runs an
/// [`EventStream`](crate::presence::events::EventStream) beside it, and:
///
/// - feeds it the stream: [`set_subscribed`](Mirror::set_subscribed)
///   once the stream's cursor is set (its handshake),
///   [`handle_event`](Mirror::handle_event) for each event,
///   [`handle_gaps`](Mirror::handle_gaps) with the stream's gap count;
/// - drives its here_now requests through [`Engine`] (see
///   [`crate::engine`]): `poll` says `Send` (a here_now page) or
///   `Wait(until)`; the answer goes to `handle_response`, a transport
///   failure to `handle_failure`. When [`in_flight`](Mirror::in_flight)
///   turns false while a request of the mirror is still out (a re-sync
///   started over), drop that request;
/// - once a snapshot is [`Complete`](Phase::Complete), feeds it the
///   events already received, then calls [`install`](Mirror::install)
///   (the next `poll` installs it too);
/// - takes the changes out with [`take_changes`](Mirror::take_changes)
///   after each step (they are kept until then).
///
/// ```text
///   Handshake ── set_subscribed ──┐
///                                 ▼
///   Idle ── a reason ───────▶ Waiting ◀──────────────────────────────────┐
///   (an event's count,        (not_before: the reason + the re-sync       │
///    a gap, a refresh,         delay, at most 100 ms more for a burst;    │
///    resync(), the first       or the backoff: 0.5 s doubling to 30 s,    │
///    snapshot's check a        or Retry-After)                            │
///    delay after it)             │ poll, when due: Send (a here_now page) │
///    ▲                           ▼                                        │
///    │                        InFlight ── failure: backoff ───────────────┤
///    │                           │ ────── a page, more to come; or a 414: │
///    │                           │        split in two (due at once) ─────┤
///    │                           │ ────── the last page, but occupants    │
///    │                           │        moved under the paging (fewer   │
///    │                           │        than 3 attempts): again, a      │
///    │                           │        delay later ────────────────────┤
///    │                           ▼ the last page                          │
///    │                        Complete                                    │
///    │                           │ install: kept events applied again,    │
///    │                           │ occupants it did not confirm dropped   │
///    └───── no follow-up ────────┴───── a follow-up (reasons that came ───┘
///                                       while it ran)
///
///   In any phase of a re-sync: more than 4,096 events kept start it over a
///   delay later (Waiting); a 414 that cannot be split, or an input error,
///   gives it up (its follow-up runs, or Idle).
/// ```
///
/// ```
/// use pubnub_presence::engine::{Engine, Step};
/// use pubnub_presence::presence::occupancy::Phase;
/// use pubnub_presence::{Change, PubNub, Response};
/// use std::time::{Duration, Instant};
/// # fn main() -> Result<(), pubnub_presence::Error> {
/// let pubnub = PubNub::builder()
///     .subscribe_key("demo")
///     .user_id("own-io")
///     .origin("http://127.0.0.1:9")
///     .build()?;
/// let t0 = Instant::now();
/// let mut mirror = pubnub.occupancy().channels(vec!["lobby".into()]).engine(t0)?;
/// assert_eq!(mirror.phase(), Phase::Handshake);
/// // The event stream made its handshake: the first snapshot goes out.
/// mirror.set_subscribed(true);
/// let Step::Send(t) = mirror.poll(t0, false)? else { unreachable!() };
/// let url = pubnub.url_for(t.request)?; // send it with your own IO, then:
/// # let _ = url;
/// let body = br#"{"status":200,"message":"OK","service":"Presence","uuids":["ann"],"occupancy":1}"#;
/// mirror.handle_response(t0, Response { status: 200, body: body.to_vec(), retry_after: None })?;
/// assert_eq!(mirror.phase(), Phase::Complete);
/// mirror.install(t0); // after the events received meanwhile
/// let changes = mirror.take_changes();
/// assert_eq!(changes[0], Change::Joined { channel: "lobby".into(), user_id: "ann".into() });
/// assert!(mirror.is_present("lobby", "ann"));
/// // The first snapshot is confirmed by a second one, a re-sync delay later.
/// let Step::Wait(Some(at)) = mirror.poll(t0, false)? else { unreachable!() };
/// assert_eq!(at, t0 + Duration::from_secs(3));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Mirror {
    pubnub: PubNub,
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
    backoff: Backoff,
    /// The channels of the last snapshot, and until when their events may
    /// still predate it (their occupancy is not checked until then).
    settling: Option<(Scope, Instant)>,
    /// The event stream's gap and cursor-reset counts last seen.
    gaps: u64,
    resets: u64,
    resyncs: u64,
    /// The here_now connection's state.
    link: Link,
    /// The event stream has its cursor (its handshake is done).
    subscribed: bool,
    /// The next request goes out on a new connection.
    fresh: bool,
    /// here_now pages taken in.
    pages: u64,
    /// Changes not yet taken out.
    changes: Vec<Change>,
}

impl Mirror {
    /// A mirror of these channels and groups whose first snapshot is due
    /// at `now` (once the event stream has its cursor).
    pub(super) fn new(
        pubnub: PubNub,
        channels: Vec<String>,
        groups: Vec<String>,
        options: &Options,
        now: Instant,
    ) -> Mirror {
        Mirror {
            pubnub,
            roster: Roster::new(&channels, options.max_occupants, options.include_state),
            channels,
            groups,
            include_state: options.include_state,
            page_size: options.page_size,
            resync_delay: options.resync_delay,
            sync: Some(Sync::new(Resync::Start, now, now)),
            next: None,
            started: false,
            confirm_at: None,
            backoff: Backoff::default(),
            settling: None,
            gaps: 0,
            resets: 0,
            resyncs: 0,
            link: Link::new("mirror here_now"),
            subscribed: false,
            fresh: false,
            pages: 0,
            changes: Vec::new(),
        }
    }

    /// What the mirror is doing: see the state graph in the type's docs.
    pub fn phase(&self) -> Phase {
        let Some(sync) = &self.sync else {
            return Phase::Idle;
        };
        match &sync.fetch {
            Some(f) if f.complete => Phase::Complete,
            Some(f) if f.in_flight => Phase::InFlight,
            _ if !self.subscribed => Phase::Handshake,
            _ => Phase::Waiting,
        }
    }

    /// Whether the event stream has made its handshake (its cursor is
    /// set, not 0): the first snapshot waits for it, since events are
    /// applied from that cursor on.
    pub fn set_subscribed(&mut self, subscribed: bool) {
        self.subscribed = subscribed;
    }

    /// The event stream's count of the times it may have missed events
    /// (failed requests, connections opened again: see
    /// [`PresenceEvents::gaps`](crate::PresenceEvents::gaps)) and of
    /// cursors the server moved back, at `now`: when the first moved
    /// since the last call, a re-sync (a cursor reset, or a reconnect).
    pub fn handle_gaps(&mut self, now: Instant, gaps: u64, cursor_resets: u64) {
        if gaps == self.gaps {
            return;
        }
        let reason = if cursor_resets != self.resets {
            Resync::CursorReset
        } else {
            Resync::Reconnect
        };
        (self.gaps, self.resets) = (gaps, cursor_resets);
        self.schedule(reason, now);
    }

    /// Applies one event of the stream, received at `now`: the changes it
    /// makes go to [`take_changes`](Mirror::take_changes), the re-sync it
    /// calls for (a count that differs, `here_now_refresh`, an event that
    /// could not be decoded, back under the cap) is scheduled, and an
    /// event of a re-sync's channels is kept to apply again over its
    /// snapshot.
    pub fn handle_event(&mut self, now: Instant, event: &PresenceEvent<'_>) {
        match event {
            PresenceEvent::Skipped(s) => {
                let reason = Resync::Skipped {
                    channel: s.channel.as_deref().map(str::to_string),
                };
                self.schedule(reason, now);
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
            .is_some_and(|(scope, until)| now < *until && scope.contains(channel));
        let wanted = self
            .roster
            .apply(event, !(syncing || settling), &mut self.changes);
        if in_next || in_sync {
            // One copy the mirror owns, cloned again only when both keep it.
            let mut owned = Some(event.clone().into_owned());
            let delay = self.resync_delay;
            if in_next {
                if let Some(next) = &mut self.next {
                    let e = if in_sync { owned.clone() } else { owned.take() };
                    if let Some(e) = e {
                        keep(next, e, now, delay);
                    }
                }
            }
            if let (Some(sync), Some(e)) = (&mut self.sync, owned) {
                if in_sync {
                    keep(sync, e, now, delay);
                }
            }
        }
        if let Some(reason) = wanted {
            self.schedule(reason, now);
        }
    }

    /// Re-syncs every channel, a re-sync delay after `now`: after changing
    /// a channel group's channels (the service sends nothing then), or
    /// whenever the caller wants to be sure.
    pub fn resync(&mut self, now: Instant) {
        self.schedule(Resync::Requested, now);
    }

    /// The path to the service is known to work again (another connection
    /// was just answered after failing): a here_now page in flight may sit
    /// on a connection the outage killed silently, so it is sent again at
    /// once on a new one (the next `Send` says `fresh`), and the backoff
    /// after here_now failures is over.
    pub fn restart(&mut self) {
        if let Some(fetch) = self.sync.as_mut().and_then(|s| s.fetch.as_mut()) {
            if fetch.in_flight {
                log::info!(target: "pubnub_presence::mirror",
                    "the service answers again: sending the here_now page in flight again on a new connection");
                fetch.in_flight = false;
            }
        }
        self.fresh = true;
        self.backoff.retry_at(None);
    }

    /// Whether the mirror awaits the answer to a here_now request it
    /// asked for. A request of the mirror's still out when this is false
    /// was abandoned (the re-sync started over): drop it.
    pub fn in_flight(&self) -> bool {
        self.fetch().is_some_and(|f| f.in_flight)
    }

    /// When the mirror next has a request to send, nothing being in
    /// flight: a re-sync's `not_before` or the end of the backoff
    /// (whichever is later), the first snapshot's confirmation; `None`
    /// when nothing is pending, or during the handshake.
    pub fn wake_at(&self, now: Instant) -> Option<Instant> {
        let Some(sync) = &self.sync else {
            return self.confirm_at;
        };
        if sync.fetch.as_ref().is_some_and(|f| f.complete) {
            // Installed by the next poll.
            return Some(now);
        }
        if !self.subscribed {
            return None;
        }
        let at = sync.not_before;
        Some(match self.backoff.waiting(now) {
            Some(retry) => retry.max(at),
            None => at,
        })
    }

    /// here_now pages taken in so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Whether changes wait to be taken out.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The changes made since the last call, in the order they happened.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// The here_now connection's state: connected, connecting, or backing
    /// off with the last error and the next attempt (see [`LinkState`]).
    pub fn link_state(&self) -> LinkState {
        self.link.state_with(self.backoff.until())
    }

    /// Whether a here_now request has ended yet.
    pub(crate) fn link_used(&self) -> bool {
        self.link.used()
    }

    fn fetch(&self) -> Option<&Fetch> {
        self.sync.as_ref().and_then(|s| s.fetch.as_ref())
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
    fn schedule(&mut self, reason: Resync, now: Instant) {
        let not_before = now.checked_add(self.resync_delay).unwrap_or(now);
        self.schedule_at(reason, not_before, now);
    }

    fn schedule_at(&mut self, reason: Resync, not_before: Instant, now: Instant) {
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
            None => self.sync = Some(Sync::new(reason, not_before, now)),
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
                None => self.next = Some(Sync::new(reason, not_before, now)),
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

    /// A failure of the here_now request at `now`: one that would fail
    /// the same way again (a URL too long for the server that cannot be
    /// split, an input error) gives the re-sync up, not retried (the next
    /// reason asks again); any other is backed off. Returned.
    fn fail(&mut self, now: Instant, e: Error, retry_after: Option<Duration>) -> Error {
        if e.status() == Some(414) || matches!(e.kind(), ErrorKind::Input { .. }) {
            log::error!(target: "pubnub_presence::mirror",
                "here_now for a re-sync cannot be sent, giving the re-sync up: {e}");
            // Nothing is in flight: the request was refused or never sent.
            self.promote();
            return e;
        }
        self.link
            .failed(&mut self.backoff, now, &e, retry_after, None, &FAILURE_LOG);
        e
    }

    /// The snapshot's next here_now request (starting the snapshot when
    /// it has not started): `Ok(None)` when no re-sync is pending.
    fn next_request(&mut self) -> Result<Option<Request>> {
        let Mirror {
            pubnub,
            sync,
            roster,
            channels,
            groups,
            include_state,
            page_size,
            ..
        } = self;
        let Some(sync) = sync.as_mut() else {
            return Ok(None);
        };
        let fetch = match &mut sync.fetch {
            Some(fetch) => fetch,
            None => {
                roster.next_generation();
                sync.attempt = sync.attempt.saturating_add(1);
                let list = match &sync.scope {
                    Scope::All => batches(channels, groups),
                    Scope::Channels(set) => {
                        let set: Vec<String> = set.iter().cloned().collect();
                        batches(&set, &[])
                    }
                };
                sync.fetch.insert(Fetch::new(list))
            }
        };
        loop {
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
            let request = pubnub
                .here_now()
                .channels(chs)
                .channel_groups(grps)
                .include_state(*include_state)
                .limit(*page_size)
                .offset(fetch.offset)
                .request();
            match request {
                Ok(request) => {
                    fetch.in_flight = true;
                    return Ok(Some(request));
                }
                // Too long (a long state? names over the cap): in two.
                Err(_) if fetch.offset == 0 && fetch.split() => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes in one here_now page; after the last one, checks the
    /// snapshot: complete (to install), or fetched again.
    fn take_page(&mut self, now: Instant, body: &[u8]) -> Result<()> {
        let Mirror {
            sync,
            roster,
            page_size,
            resync_delay,
            changes,
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
            let tracked = roster.load(&name, occupancy, channel.occupants, first, changes);
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
                let not_before = now.checked_add(*resync_delay).unwrap_or(now);
                restart(sync, not_before);
                return Ok(());
            }
            log::warn!(target: "pubnub_presence::mirror",
                "occupants kept moving while here_now was paged ({} attempts): keeping the last snapshot; the next occupancy check re-syncs it",
                sync.attempt);
        }
        fetch.complete = true;
        Ok(())
    }

    /// Installs a [`Complete`](Phase::Complete) snapshot at `now` (does
    /// nothing in another phase): applies the re-sync's events again over
    /// it, drops whoever it did not confirm, and starts the follow-up
    /// re-sync, if any. Feed it the events that have already arrived
    /// first ([`handle_event`](Mirror::handle_event)): they may predate
    /// the snapshot. One of them may start the re-sync over (too many
    /// events kept): then nothing is installed.
    pub fn install(&mut self, now: Instant) {
        if self.phase() != Phase::Complete {
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
            if let Some(Resync::UnderCap { channel }) =
                self.roster.apply(event, false, &mut self.changes)
            {
                under_cap.push(channel);
            }
        }
        self.roster.sweep(&sync.scope, &mut self.changes);
        self.promote();
        for channel in under_cap {
            if self.is_counts_only(&channel) {
                // The event asked already, a delay after which the
                // follow-up fetches: one fetching from now on serves it.
                self.schedule_at(Resync::UnderCap { channel }, now, now);
            }
        }
        self.resyncs = self.resyncs.saturating_add(1);
        self.settling = now
            .checked_add(SETTLE)
            .map(|until| (sync.scope.clone(), until));
        let pages = sync.fetch.as_ref().map_or(0, |f| f.pages);
        log::info!(target: "pubnub_presence::mirror",
            "re-synced ({}): {} pages, {replayed} events replayed, {} ms",
            sync.reason, pages, now.saturating_duration_since(sync.started).as_millis());
        if !self.started {
            self.started = true;
            // The first answer may have come from the service's cache,
            // older than the subscription: confirm it once the window passed.
            if !self.resync_delay.is_zero() {
                self.confirm_at = now.checked_add(self.resync_delay);
            }
        }
        self.changes.push(Change::Resynced(sync.reason));
    }
}

/// Keeps an event of a re-sync's scope to apply again over its snapshot;
/// past [`MAX_REPLAY`] the re-sync starts over.
fn keep(sync: &mut Sync, event: PresenceEvent<'static>, now: Instant, delay: Duration) {
    if sync.replay.len() < MAX_REPLAY {
        sync.replay.push(event);
        return;
    }
    log::warn!(target: "pubnub_presence::mirror",
        "more than {MAX_REPLAY} events while re-syncing: starting the re-sync over");
    let not_before = now.checked_add(delay).unwrap_or(now);
    sync.attempt = 0;
    restart(sync, not_before);
}

/// Abandons a snapshot attempt (and its request in flight: the mirror no
/// longer awaits it, [`Mirror::in_flight`]); the re-sync starts over at
/// `not_before`, from what prompted it now. The events kept for replay
/// go: the new snapshot, taken after the delay, reflects them, and
/// replaying them could undo what came after them unseen (the lost deltas
/// of a `here_now_refresh`, a gap).
fn restart(sync: &mut Sync, not_before: Instant) {
    sync.replay = Vec::new();
    sync.fetch = None;
    sync.not_before = not_before;
    sync.due = not_before;
}

impl Engine for Mirror {
    /// Installs a complete snapshot; then, when a re-sync is due (its
    /// `not_before` and the backoff passed, the first snapshot's
    /// confirmation reached, the stream subscribed), sends its next
    /// here_now page; otherwise waits (until [`Mirror::wake_at`]). A page
    /// in flight is bounded by the connection (`request_timeout` of
    /// silence): the mirror sets no timer of its own. `Err`: the request
    /// could not be built (a re-sync given up).
    fn poll(&mut self, now: Instant, in_flight: bool) -> Result<Step> {
        self.install(now);
        if self.sync.is_none() {
            match self.confirm_at {
                Some(at) if at <= now => {
                    self.confirm_at = None;
                    self.schedule_at(Resync::StartCheck, now, now);
                }
                at => return Ok(Step::Wait(at)),
            }
        }
        if !self.subscribed {
            return Ok(Step::Wait(None));
        }
        if self.in_flight() {
            if in_flight {
                return Ok(Step::Wait(None));
            }
            // Dropped by the driver: sent again.
            if let Some(f) = self.sync.as_mut().and_then(|s| s.fetch.as_mut()) {
                f.in_flight = false;
            }
        }
        if let Some(at) = self.wake_at(now).filter(|at| *at > now) {
            return Ok(Step::Wait(Some(at)));
        }
        match self.next_request() {
            Ok(Some(request)) => Ok(Step::Send(Transmit {
                request,
                silence: self.pubnub.config().request_timeout,
                total: self.pubnub.config().request_timeout.checked_mul(2),
                fresh: std::mem::take(&mut self.fresh),
            })),
            Ok(None) => Ok(Step::Wait(self.wake_at(now))),
            Err(e) => Err(self.fail(now, e, None)),
        }
    }

    /// Takes a here_now page in: the next page is due at once, or the
    /// snapshot is [`Complete`](Phase::Complete) (or fetched again: the
    /// occupants moved under the paging). A 414 splits the request in two
    /// (its halves are due at once). `Err`: an error status or a body
    /// that does not decode, backed off (a 414 that cannot be split gives
    /// the re-sync up).
    fn handle_response(&mut self, now: Instant, response: Response) -> Result<()> {
        let Some(fetch) = self
            .sync
            .as_mut()
            .and_then(|s| s.fetch.as_mut())
            .filter(|f| f.in_flight)
        else {
            log::debug!(target: "pubnub_presence::mirror",
                "ignored the answer to an abandoned here_now request");
            return Ok(());
        };
        fetch.in_flight = false;
        // 414: the front end's limit on the URL is below ours. The same
        // request would fail again: split it, or give up (fail).
        if response.status == 414 && fetch.offset == 0 && fetch.split() {
            log::warn!(target: "pubnub_presence::mirror",
                "here_now URL too long for the server (414): splitting the request");
            return Ok(());
        }
        if let Some(e) = response.error() {
            return Err(self.fail(now, e, response.retry_after));
        }
        match self.take_page(now, &response.body) {
            Ok(()) => {
                self.pages = self.pages.saturating_add(1);
                self.backoff.succeed();
                self.link.up(now);
                Ok(())
            }
            Err(e) => Err(self.fail(now, e, None)),
        }
    }

    fn handle_failure(&mut self, now: Instant, error: Error) -> Error {
        if let Some(f) = self.sync.as_mut().and_then(|s| s.fetch.as_mut()) {
            f.in_flight = false;
        }
        self.fail(now, error, None)
    }
}

/// Reading the mirror.
impl Mirror {
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
    /// counts-only one ([`Mirror::is_counts_only`]).
    pub fn occupants(&self, channel: &str) -> impl Iterator<Item = Occupant<'_>> {
        self.roster
            .room(channel)
            .into_iter()
            .flat_map(|r| r.occupants())
            .map(|(user_id, state)| Occupant { user_id, state })
    }

    /// Whether the mirror lists `user_id` on `channel` (never on a
    /// counts-only channel: see [`Mirror::is_counts_only`]).
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::events::UserEvent;
    use crate::TransportErrorKind;
    use std::borrow::Cow;

    fn pubnub() -> PubNub {
        PubNub::builder()
            .subscribe_key("demo")
            .user_id("engine-test")
            .origin("http://127.0.0.1:9")
            .build()
            .expect("client")
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ok(body: &str) -> Response {
        Response {
            status: 200,
            body: body.as_bytes().to_vec(),
            retry_after: None,
        }
    }

    /// A one-channel here_now answer (the flat shape).
    fn flat(occupancy: u32, users: &[&str]) -> Response {
        let users: Vec<String> = users.iter().map(|u| format!("{u:?}")).collect();
        ok(&format!(
            r#"{{"status":200,"message":"OK","service":"Presence","uuids":[{}],"occupancy":{occupancy}}}"#,
            users.join(",")
        ))
    }

    fn join(channel: &str, user: &str, occupancy: u32) -> PresenceEvent<'static> {
        PresenceEvent::Join(UserEvent {
            channel: Cow::Owned(channel.into()),
            subscription: None,
            user_id: Cow::Owned(user.into()),
            occupancy,
            timestamp: 1_700_000_000,
            precise_timestamp: None,
            state: None,
        })
    }

    /// The request of a `Send` step.
    fn sent(step: Result<Step>) -> Transmit {
        match step {
            Ok(Step::Send(t)) => t,
            other => panic!("expected a Send, got {other:?}"),
        }
    }

    fn waits(step: Result<Step>) -> Option<Instant> {
        match step {
            Ok(Step::Wait(at)) => at,
            other => panic!("expected a Wait, got {other:?}"),
        }
    }

    fn mirror(channels: &[&str], page_size: u32, t0: Instant) -> Mirror {
        let channels = channels.iter().map(|c| c.to_string()).collect();
        pubnub()
            .occupancy()
            .channels(channels)
            .page_size(page_size)
            .engine(t0)
            .expect("engine")
    }

    /// A mirror of `lobby` synced with `users` at `t0 + 3 s` (its first
    /// snapshot confirmed).
    fn synced(users: &[&str], t0: Instant) -> Mirror {
        let mut m = mirror(&["lobby"], 1000, t0);
        m.set_subscribed(true);
        let n = u32::try_from(users.len()).expect("few");
        for t in [t0, t0 + secs(3)] {
            sent(m.poll(t, false));
            m.handle_response(t, flat(n, users)).expect("page");
            m.install(t);
        }
        assert!(m.is_synced());
        m.take_changes();
        m
    }

    #[test]
    fn first_snapshot_waits_for_the_handshake_and_is_confirmed() {
        let t0 = Instant::now();
        let mut m = mirror(&["lobby"], 1000, t0);
        assert_eq!(m.phase(), Phase::Handshake);
        assert_eq!(waits(m.poll(t0, false)), None);
        m.set_subscribed(true);
        assert_eq!(m.phase(), Phase::Waiting);
        let t = sent(m.poll(t0, false));
        assert!(!t.fresh);
        let url = t.request.url().to_string();
        assert!(url.contains("/channel/lobby"), "{url}");
        assert!(url.contains("limit=1000"), "{url}");
        assert_eq!(m.phase(), Phase::InFlight);
        assert_eq!(waits(m.poll(t0, true)), None);
        m.handle_response(t0, flat(1, &["ann"])).expect("page");
        assert_eq!(m.phase(), Phase::Complete);
        // The events already received go in before the install.
        m.handle_event(t0, &join("lobby", "bob", 2));
        m.install(t0);
        assert_eq!(
            m.take_changes(),
            [
                Change::Joined {
                    channel: "lobby".into(),
                    user_id: "ann".into()
                },
                Change::Joined {
                    channel: "lobby".into(),
                    user_id: "bob".into()
                },
                Change::Resynced(Resync::Start),
            ]
        );
        assert!(!m.is_synced(), "the first snapshot is confirmed later");
        assert_eq!(m.phase(), Phase::Idle);
        assert_eq!(waits(m.poll(t0 + secs(1), false)), Some(t0 + secs(3)));
        sent(m.poll(t0 + secs(3), false));
        m.handle_response(t0 + secs(3), flat(2, &["ann", "bob"]))
            .expect("page");
        m.install(t0 + secs(3));
        assert_eq!(m.take_changes(), [Change::Resynced(Resync::StartCheck)]);
        assert!(m.is_synced());
        assert_eq!(m.resyncs(), 2);
        assert_eq!(waits(m.poll(t0 + secs(60), false)), None);
        assert!(m.link_state().is_connected());
    }

    #[test]
    fn reasons_wait_the_delay_gather_and_follow_up() {
        let t0 = Instant::now();
        let t = t0 + secs(10);
        let mut m = synced(&["ann"], t0);
        // A count that differs: a re-sync a delay later.
        m.handle_event(t, &join("lobby", "bob", 5));
        assert_eq!(m.phase(), Phase::Waiting);
        assert_eq!(waits(m.poll(t, false)), Some(t + secs(3)));
        // Another within 100 ms joins it, moving it that much.
        let t1 = t + Duration::from_millis(50);
        m.handle_gaps(t1, 1, 0);
        assert_eq!(waits(m.poll(t1, false)), Some(t1 + secs(3)));
        // One later than that is not merged: it waits for a follow-up,
        // and the waiting re-sync is not pushed back.
        let t2 = t + Duration::from_millis(500);
        m.handle_gaps(t2, 2, 0);
        assert_eq!(waits(m.poll(t2, false)), Some(t1 + secs(3)));
        let t3 = t1 + secs(3);
        sent(m.poll(t3, false));
        // Events of the scope while it runs are kept (not checked).
        m.handle_event(t3, &join("lobby", "carol", 9));
        m.handle_response(t3, flat(2, &["ann", "bob"]))
            .expect("page");
        m.install(t3);
        let changes = m.take_changes();
        assert!(changes.contains(&Change::Joined {
            channel: "lobby".into(),
            user_id: "carol".into()
        }));
        assert!(m.is_present("lobby", "carol"), "replayed over the snapshot");
        assert!(matches!(
            changes.last(),
            Some(Change::Resynced(Resync::Mismatch { .. }))
        ));
        // The follow-up: a delay after its reason.
        assert_eq!(m.phase(), Phase::Waiting);
        assert_eq!(waits(m.poll(t3, false)), Some(t2 + secs(3)));
        sent(m.poll(t2 + secs(3), false));
    }

    #[test]
    fn failures_back_off() {
        let t0 = Instant::now();
        let mut m = mirror(&["lobby"], 1000, t0);
        m.set_subscribed(true);
        sent(m.poll(t0, false));
        let e = m.handle_failure(t0, Error::transport(TransportErrorKind::Timeout, "x"));
        assert!(e.is_retryable());
        assert_eq!(m.phase(), Phase::Waiting);
        assert!(!m.link_state().is_connected());
        let half = t0 + Duration::from_millis(500);
        assert_eq!(waits(m.poll(t0, false)), Some(half));
        sent(m.poll(half, false));
        let busy = Response {
            status: 503,
            body: Vec::new(),
            retry_after: Some(secs(2)),
        };
        assert!(m.handle_response(half, busy).is_err());
        assert_eq!(waits(m.poll(half, false)), Some(half + secs(2)));
        // The path works again: at once, on a new connection.
        m.restart();
        let t = sent(m.poll(half, false));
        assert!(t.fresh);
        m.handle_response(half, flat(0, &[])).expect("page");
        assert!(m.link_state().is_connected());
    }

    #[test]
    fn restart_sends_the_page_in_flight_again() {
        let t0 = Instant::now();
        let mut m = mirror(&["lobby"], 1000, t0);
        m.set_subscribed(true);
        sent(m.poll(t0, false));
        assert!(m.in_flight());
        m.restart();
        assert!(!m.in_flight());
        assert!(sent(m.poll(t0, true)).fresh);
        m.handle_response(t0, flat(1, &["ann"])).expect("page");
        assert_eq!(m.phase(), Phase::Complete);
        // An answer to a request the mirror no longer awaits is ignored.
        m.handle_response(t0, flat(5, &["x"])).expect("ignored");
        m.install(t0);
        assert!(m.is_present("lobby", "ann"));
        assert!(!m.is_present("lobby", "x"));
    }

    #[test]
    fn pages_in_and_fetched_again_when_the_set_moved() {
        let t0 = Instant::now();
        let mut m = mirror(&["lobby"], 2, t0);
        m.set_subscribed(true);
        let url = sent(m.poll(t0, false)).request.url().to_string();
        assert!(url.contains("limit=2") && !url.contains("offset"), "{url}");
        m.handle_response(t0, flat(3, &["a", "b"])).expect("page");
        assert_eq!((m.phase(), m.pages()), (Phase::Waiting, 1));
        let url = sent(m.poll(t0, false)).request.url().to_string();
        assert!(url.contains("offset=2"), "{url}");
        // The second page says 4: someone joined under the paging.
        m.handle_response(t0, flat(4, &["c"])).expect("page");
        assert_eq!(m.phase(), Phase::Waiting);
        assert_eq!(waits(m.poll(t0, false)), Some(t0 + secs(3)));
        let t1 = t0 + secs(3);
        sent(m.poll(t1, false));
        m.handle_response(t1, flat(3, &["a", "b"])).expect("page");
        sent(m.poll(t1, false));
        m.handle_response(t1, flat(3, &["c"])).expect("page");
        assert_eq!(m.phase(), Phase::Complete);
        m.install(t1);
        assert_eq!(m.occupants("lobby").count(), 3);
    }

    #[test]
    fn a_414_splits_then_gives_the_resync_up() {
        let t0 = Instant::now();
        let mut m = mirror(&["a", "b"], 1000, t0);
        m.set_subscribed(true);
        let url = sent(m.poll(t0, false)).request.url().to_string();
        assert!(url.contains("/channel/a,b"), "{url}");
        let too_long = || Response {
            status: 414,
            body: Vec::new(),
            retry_after: None,
        };
        m.handle_response(t0, too_long()).expect("split");
        let url = sent(m.poll(t0, false)).request.url().to_string();
        assert!(url.contains("/channel/a?"), "{url}");
        let e = m.handle_response(t0, too_long()).expect_err("one name");
        assert_eq!(e.status(), Some(414));
        assert_eq!(m.phase(), Phase::Idle, "given up, not retried");
        // The next reason asks again.
        m.resync(t0);
        assert_eq!(waits(m.poll(t0, false)), Some(t0 + secs(3)));
    }

    #[test]
    fn too_many_events_start_the_resync_over() {
        let t0 = Instant::now();
        let mut m = mirror(&["lobby"], 1000, t0);
        m.set_subscribed(true);
        sent(m.poll(t0, false));
        let t1 = t0 + secs(1);
        for i in 0..=MAX_REPLAY {
            m.handle_event(t1, &join("lobby", &format!("u{i}"), 1));
        }
        assert!(!m.in_flight(), "the page in flight is abandoned");
        assert_eq!(m.phase(), Phase::Waiting);
        assert_eq!(waits(m.poll(t1, true)), Some(t1 + secs(3)));
    }

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
