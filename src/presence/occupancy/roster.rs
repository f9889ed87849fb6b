//! The mirror's data, with no IO: who is on each channel (with state), how
//! an event or a here_now page changes it, and what each change is. The
//! driver (`super`) decides when to fetch and when to check.
//!
//! Memory per occupant (64-bit, without `serde`): one hash-map slot (the
//! user id as `Box<str>`, 16 bytes; its state, 24 bytes, `null` costing
//! nothing more; a generation stamp, 4 bytes, padded to 48), plus the id's
//! own bytes and the map's spare capacity: under 1/8 of the slots after a
//! sync, and at most 3/4 of them (4 slots per occupant, beyond 64 slots)
//! as the channel empties, when the map is shrunk. BENCHMARKS.md has the
//! measured figure.

use super::change::Scope;
use super::{Change, Resync};
use crate::presence::events::{IntervalEvent, PresenceEvent, UserEvent};
use crate::presence::here_now::HereNowUser;
use crate::state::{self, State};
use std::collections::{BTreeMap, HashMap};

/// One occupant's record.
#[derive(Debug)]
struct Entry {
    state: State<'static>,
    /// The roster's generation when this entry was last confirmed (by a
    /// here_now page or a join); a re-sync's sweep drops the entries of a
    /// re-synced channel it did not confirm.
    gen: u32,
}

/// One channel.
#[derive(Debug, Default)]
pub(crate) struct Room {
    occupants: HashMap<Box<str>, Entry>,
    /// Past the cap: the service's count, with no identities kept.
    counts_only: Option<u32>,
    /// Named when the mirror was opened: kept while empty.
    named: bool,
    /// The generation of the last snapshot page that listed the channel.
    seen: u32,
    /// Users listed for the channel by the snapshot of generation `seen`
    /// so far: the cap is decided on these, not on the entries held
    /// while the snapshot runs (which include those it will sweep).
    listed: u32,
}

impl Room {
    /// Occupants: those listed, or the count of a counts-only channel.
    pub(crate) fn occupancy(&self) -> u32 {
        match self.counts_only {
            Some(n) => n,
            None => u32::try_from(self.occupants.len()).unwrap_or(u32::MAX),
        }
    }

    pub(crate) fn is_counts_only(&self) -> bool {
        self.counts_only.is_some()
    }

    pub(crate) fn contains(&self, user_id: &str) -> bool {
        self.occupants.contains_key(user_id)
    }

    pub(crate) fn state(&self, user_id: &str) -> Option<&State<'static>> {
        self.occupants.get(user_id).map(|e| &e.state)
    }

    pub(crate) fn occupants(&self) -> impl Iterator<Item = (&str, &State<'static>)> {
        self.occupants.iter().map(|(k, e)| (&**k, &e.state))
    }

    fn is_empty(&self) -> bool {
        self.occupants.is_empty() && self.counts_only.is_none()
    }

    /// Gives memory back once the map is much emptier than its capacity
    /// (under a quarter): its table is rebuilt at twice the entries, so
    /// the work (one pass over the entries left) is paid for by the
    /// removals that emptied it.
    fn shrink(&mut self) {
        let (len, cap) = (self.occupants.len(), self.occupants.capacity());
        if cap > MIN_SHRINK && len < cap / 4 {
            self.occupants.shrink_to(len.saturating_mul(2));
        }
    }
}

/// Tables this small are never shrunk.
const MIN_SHRINK: usize = 64;

/// Every mirrored channel.
#[derive(Debug)]
pub(crate) struct Roster {
    rooms: BTreeMap<String, Room>,
    /// Occupants tracked per channel at most.
    cap: usize,
    with_state: bool,
    gen: u32,
}

fn change(kind: fn(String, String) -> Change, channel: &str, user_id: &str) -> Change {
    kind(channel.to_string(), user_id.to_string())
}

fn joined(channel: String, user_id: String) -> Change {
    Change::Joined { channel, user_id }
}
fn left(channel: String, user_id: String) -> Change {
    Change::Left { channel, user_id }
}
fn timed_out(channel: String, user_id: String) -> Change {
    Change::TimedOut { channel, user_id }
}
fn state_changed(channel: String, user_id: String) -> Change {
    Change::StateChanged { channel, user_id }
}

impl Roster {
    pub(crate) fn new(named: &[String], cap: usize, with_state: bool) -> Roster {
        let rooms = named
            .iter()
            .map(|n| {
                let room = Room {
                    named: true,
                    ..Room::default()
                };
                (n.clone(), room)
            })
            .collect();
        Roster {
            rooms,
            cap,
            with_state,
            gen: 0,
        }
    }

    pub(crate) fn room(&self, channel: &str) -> Option<&Room> {
        self.rooms.get(channel)
    }

    pub(crate) fn channels(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// The channel's room, added if new (a `String` is made only then).
    /// Never `None`; an `Option` so no caller needs an `expect`.
    fn room_mut(&mut self, channel: &str) -> Option<&mut Room> {
        if !self.rooms.contains_key(channel) {
            self.rooms.insert(channel.to_string(), Room::default());
        }
        self.rooms.get_mut(channel)
    }

    /// Drops a channel that holds nothing and was not named.
    fn prune(&mut self, channel: &str) {
        if self
            .rooms
            .get(channel)
            .is_some_and(|r| r.is_empty() && !r.named)
        {
            self.rooms.remove(channel);
        }
    }

    /// Starts a snapshot attempt: entries it confirms get a new stamp.
    pub(crate) fn next_generation(&mut self) {
        self.gen = self.gen.wrapping_add(1);
    }

    /// Applies one event. `check`: compare the event's `occupancy` with
    /// the mirror (off while the channel is being re-synced, when the
    /// mirror is known to lag). Returns the re-sync the event calls for.
    pub(crate) fn apply(
        &mut self,
        event: &PresenceEvent<'_>,
        check: bool,
        out: &mut Vec<Change>,
    ) -> Option<Resync> {
        let (channel, occupancy, wanted) = match event {
            PresenceEvent::Join(e) => (&e.channel, e.occupancy, self.join(e, out)),
            PresenceEvent::Leave(e) => (&e.channel, e.occupancy, self.remove(e, left, out)),
            PresenceEvent::Timeout(e) => (&e.channel, e.occupancy, self.remove(e, timed_out, out)),
            PresenceEvent::StateChange(e) => (&e.channel, e.occupancy, self.state_change(e, out)),
            PresenceEvent::Interval(e) => (&e.channel, e.occupancy, self.interval(e, out)),
            _ => return None,
        };
        let room = self.rooms.get(&**channel);
        let mirrored = room.map_or(0, Room::occupancy);
        let wanted = wanted.or_else(|| match room.and_then(|r| r.counts_only) {
            // Back under the cap: a snapshot brings the identities back.
            Some(_) if occupancy as usize <= self.cap => Some(Resync::UnderCap {
                channel: channel.to_string(),
            }),
            _ if check && mirrored != occupancy => Some(Resync::Mismatch {
                channel: channel.to_string(),
                mirrored,
                occupancy,
            }),
            _ => None,
        });
        self.prune(channel);
        wanted
    }

    /// Sets a counts-only channel's count; `true` when the channel is
    /// counts-only.
    fn counted(&mut self, channel: &str, occupancy: u32, out: &mut Vec<Change>) -> bool {
        let Some(room) = self.room_mut(channel) else {
            return false;
        };
        match &mut room.counts_only {
            Some(n) => {
                if *n != occupancy {
                    *n = occupancy;
                    out.push(Change::CountChanged {
                        channel: channel.to_string(),
                        occupancy,
                    });
                }
                true
            }
            None => false,
        }
    }

    /// A channel past the cap keeps its count only: when it holds more
    /// entries than the cap and the service's count (`occupancy`) is past
    /// it too. Entries past the cap with a count under it are ones a
    /// re-sync is about to sweep (or the occupancy check re-syncs): they
    /// are kept up to twice the cap, the bound on memory. Each user
    /// dropped is reported `Left`, so the change feed keeps matching the
    /// reads.
    fn overflow(&mut self, channel: &str, occupancy: u32, out: &mut Vec<Change>) {
        let cap = self.cap;
        let Some(room) = self.room_mut(channel) else {
            return;
        };
        let len = room.occupants.len();
        let past = len > cap && (occupancy as usize > cap || len > cap.saturating_mul(2));
        if !past || room.counts_only.is_some() {
            return;
        }
        let occupancy = occupancy.max(u32::try_from(cap).unwrap_or(u32::MAX).saturating_add(1));
        for user in room.occupants.keys() {
            out.push(change(left, channel, user));
        }
        // A new map, so the memory goes back at once.
        room.occupants = HashMap::new();
        room.counts_only = Some(occupancy);
        log::warn!(target: "pubnub_presence::mirror",
            "channel {channel:?} has {occupancy} occupants, past the cap of {cap}: keeping its count only");
        out.push(Change::CountsOnly {
            channel: channel.to_string(),
            occupancy,
        });
    }

    /// Marks `user_id` present (with `state`, when given and kept).
    fn upsert(
        &mut self,
        channel: &str,
        user_id: &str,
        state: Option<State<'static>>,
        out: &mut Vec<Change>,
    ) {
        let gen = self.gen;
        let state = state.filter(|_| self.with_state);
        let Some(room) = self.room_mut(channel) else {
            return;
        };
        match room.occupants.get_mut(user_id) {
            Some(entry) => {
                entry.gen = gen;
                if let Some(s) = state {
                    if entry.state != s {
                        entry.state = s;
                        out.push(change(state_changed, channel, user_id));
                    }
                }
            }
            None => {
                let entry = Entry {
                    state: state.unwrap_or_else(state::null_state),
                    gen,
                };
                room.occupants.insert(Box::from(user_id), entry);
                out.push(change(joined, channel, user_id));
            }
        }
    }

    fn join(&mut self, e: &UserEvent<'_>, out: &mut Vec<Change>) -> Option<Resync> {
        if self.counted(&e.channel, e.occupancy, out) {
            return None;
        }
        let state = e.state.clone().map(state::into_owned);
        self.upsert(&e.channel, &e.user_id, state, out);
        self.overflow(&e.channel, e.occupancy, out);
        None
    }

    fn remove(
        &mut self,
        e: &UserEvent<'_>,
        kind: fn(String, String) -> Change,
        out: &mut Vec<Change>,
    ) -> Option<Resync> {
        if self.counted(&e.channel, e.occupancy, out) {
            return None;
        }
        let room = self.room_mut(&e.channel)?;
        if room.occupants.remove(&*e.user_id).is_some() {
            out.push(change(kind, &e.channel, &e.user_id));
            room.shrink();
        }
        None
    }

    fn state_change(&mut self, e: &UserEvent<'_>, out: &mut Vec<Change>) -> Option<Resync> {
        if !self.with_state || self.counted(&e.channel, e.occupancy, out) {
            return None;
        }
        // A state change for a user the mirror does not list changes
        // nothing here: it is older than the snapshot (the user has left
        // since), or a join was missed, which the occupancy check catches.
        let room = self.room_mut(&e.channel)?;
        if let Some(entry) = room.occupants.get_mut(&*e.user_id) {
            let new = match &e.state {
                Some(s) => state::into_owned(s.clone()),
                None => state::null_state(),
            };
            if entry.state != new {
                entry.state = new;
                out.push(change(state_changed, &e.channel, &e.user_id));
            }
        }
        None
    }

    /// An interval's deltas. A user may be in more than one list of one
    /// interval (joined and left again within it), and the lists carry no
    /// order. Presence alternates (a user who is present can only leave,
    /// one who is absent can only join), so the number of joins minus the
    /// number of leaves and timeouts says how the interval ended: above 0
    /// present, below 0 absent, 0 as it was before the interval.
    fn interval(&mut self, e: &IntervalEvent<'_>, out: &mut Vec<Change>) -> Option<Resync> {
        if e.here_now_refresh {
            return Some(Resync::HereNowRefresh {
                channel: e.channel.to_string(),
            });
        }
        if self.counted(&e.channel, e.occupancy, out) {
            return None;
        }
        // user → (joins minus leaves, timed out). Sorted: changes come out
        // in a stable order.
        let mut net: BTreeMap<&str, (i64, bool)> = BTreeMap::new();
        for u in &e.join {
            let n = net.entry(u).or_default();
            n.0 = n.0.saturating_add(1);
        }
        for u in &e.leave {
            let n = net.entry(u).or_default();
            n.0 = n.0.saturating_sub(1);
        }
        for u in &e.timeout {
            let n = net.entry(u).or_default();
            n.0 = n.0.saturating_sub(1);
            n.1 = true;
        }
        let mut rejoined = false;
        for (user, (n, timed)) in net {
            if n > 0 {
                self.upsert(&e.channel, user, None, out);
                rejoined = true;
            } else if n < 0 {
                let Some(room) = self.room_mut(&e.channel) else {
                    continue;
                };
                if room.occupants.remove(user).is_some() {
                    let kind = if timed { timed_out } else { left };
                    out.push(change(kind, &e.channel, user));
                    room.shrink();
                }
            } else if self.room(&e.channel).is_some_and(|r| r.contains(user)) {
                // Left and came back: the state set before is gone.
                rejoined = true;
            }
        }
        self.overflow(&e.channel, e.occupancy, out);
        // Interval deltas carry no state: with state kept, a snapshot of
        // the channel brings the state of whoever joined through one.
        (self.with_state && rejoined).then(|| Resync::IntervalState {
            channel: e.channel.to_string(),
        })
    }

    /// Loads one channel of a here_now page: its occupancy (the service's
    /// count) and the occupants the page lists. `first`: the first page
    /// of this snapshot attempt. Returns `false` when the channel is (now)
    /// counts-only, so no further page is needed.
    pub(crate) fn load(
        &mut self,
        channel: &str,
        occupancy: u32,
        users: Vec<HereNowUser<'_>>,
        first: bool,
        out: &mut Vec<Change>,
    ) -> bool {
        let (gen, cap) = (self.gen, self.cap);
        let Some(room) = self.room_mut(channel) else {
            return false;
        };
        room.seen = gen;
        if first {
            if occupancy as usize > cap {
                match room.counts_only {
                    None => {
                        for user in room.occupants.keys() {
                            out.push(change(left, channel, user));
                        }
                        log::warn!(target: "pubnub_presence::mirror",
                            "channel {channel:?} has {occupancy} occupants, past the cap of {cap}: keeping its count only");
                        out.push(Change::CountsOnly {
                            channel: channel.to_string(),
                            occupancy,
                        });
                    }
                    // Counts-only already: only its count can change.
                    Some(n) if n != occupancy => out.push(Change::CountChanged {
                        channel: channel.to_string(),
                        occupancy,
                    }),
                    Some(_) => {}
                }
                room.occupants = HashMap::new();
                room.counts_only = Some(occupancy);
                return false;
            }
            room.counts_only = None;
            room.listed = 0;
            // Sized once for the whole channel (never past the cap): no
            // rehash, and no old and new table held at once, page by page.
            let want = (occupancy as usize).saturating_sub(room.occupants.len());
            room.occupants.reserve(want);
        } else if room.counts_only.is_some() {
            return false;
        }
        let got = u32::try_from(users.len()).unwrap_or(u32::MAX);
        room.listed = room.listed.saturating_add(got);
        // The cap is decided on the snapshot's own users: the entries it
        // will sweep (at most the cap) are not counted.
        let listed = room.listed;
        for u in users {
            let state = state::into_owned(u.state);
            self.upsert(channel, &u.user_id, Some(state), out);
        }
        if listed as usize > cap {
            // More users listed than the count said (the channel grew
            // under the paging): the count is the users listed.
            self.overflow(channel, occupancy.max(listed), out);
        }
        self.room(channel).is_some_and(|r| !r.is_counts_only())
    }

    /// Whether a channel of `scope` keeps its count only.
    pub(crate) fn counts_only_in(&self, scope: &Scope) -> bool {
        self.rooms
            .iter()
            .any(|(name, room)| room.is_counts_only() && scope.contains(name))
    }

    /// Ends a snapshot: in the channels of `scope`, drops whoever the
    /// snapshot (or a join since it began) did not confirm, and resets a
    /// counts-only channel the snapshot did not list.
    pub(crate) fn sweep(&mut self, scope: &Scope, out: &mut Vec<Change>) {
        let gen = self.gen;
        let mut empty = Vec::new();
        for (name, room) in &mut self.rooms {
            if !scope.contains(name) {
                continue;
            }
            if room.seen != gen && room.counts_only.take().is_some() {
                out.push(Change::CountChanged {
                    channel: name.clone(),
                    occupancy: 0,
                });
            }
            room.occupants.retain(|user, e| {
                let keep = e.gen == gen;
                if !keep {
                    out.push(change(left, name, user));
                }
                keep
            });
            room.shrink();
            if room.is_empty() && !room.named {
                empty.push(name.clone());
            }
        }
        for name in empty {
            self.rooms.remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use std::collections::BTreeSet;

    fn user(channel: &str, user: &str, occupancy: u32) -> UserEvent<'static> {
        UserEvent {
            channel: Cow::Owned(channel.into()),
            subscription: None,
            user_id: Cow::Owned(user.into()),
            occupancy,
            timestamp: 0,
            precise_timestamp: None,
            state: None,
        }
    }

    fn interval(
        channel: &str,
        occupancy: u32,
        join: &[&str],
        leave: &[&str],
        timeout: &[&str],
    ) -> PresenceEvent<'static> {
        let list = |l: &[&str]| l.iter().map(|s| Cow::Owned(s.to_string())).collect();
        PresenceEvent::Interval(IntervalEvent {
            channel: Cow::Owned(channel.into()),
            subscription: None,
            occupancy,
            timestamp: 0,
            join: list(join),
            leave: list(leave),
            timeout: list(timeout),
            here_now_refresh: false,
        })
    }

    fn users(r: &Roster, channel: &str) -> Vec<String> {
        let mut v: Vec<String> = r
            .room(channel)
            .map(|room| room.occupants().map(|(u, _)| u.to_string()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn joins_leaves_and_checks() {
        let mut r = Roster::new(&["a".into()], 100, false);
        let mut out = Vec::new();
        assert_eq!(
            r.apply(&PresenceEvent::Join(user("a", "u1", 1)), true, &mut out),
            None
        );
        assert_eq!(out, [change(joined, "a", "u1")]);
        out.clear();
        // The same join again (redelivered, or older than the snapshot):
        // nothing changes.
        assert_eq!(
            r.apply(&PresenceEvent::Join(user("a", "u1", 1)), true, &mut out),
            None
        );
        assert!(out.is_empty());
        // A join whose occupancy says someone else is there too.
        assert_eq!(
            r.apply(&PresenceEvent::Join(user("a", "u2", 3)), true, &mut out),
            Some(Resync::Mismatch {
                channel: "a".into(),
                mirrored: 2,
                occupancy: 3
            })
        );
        // Unchecked (a re-sync is running): no complaint.
        assert_eq!(
            r.apply(&PresenceEvent::Timeout(user("a", "u2", 0)), false, &mut out),
            None
        );
        assert_eq!(out.last(), Some(&change(timed_out, "a", "u2")));
        r.apply(&PresenceEvent::Leave(user("a", "u1", 0)), true, &mut out);
        assert!(users(&r, "a").is_empty());
        // A named channel stays when empty; a group's channel goes.
        assert!(r.room("a").is_some());
        r.apply(&PresenceEvent::Join(user("g1", "u", 1)), true, &mut out);
        r.apply(&PresenceEvent::Leave(user("g1", "u", 0)), true, &mut out);
        assert!(r.room("g1").is_none());
    }

    /// A user in both `join` and `leave` of one interval: presence as it
    /// was before the interval; more joins than leaves: present.
    #[test]
    fn interval_join_and_leave_of_one_user() {
        let mut r = Roster::new(&[], 100, false);
        let mut out = Vec::new();
        r.apply(&PresenceEvent::Join(user("c", "stays", 1)), true, &mut out);
        out.clear();
        let e = interval("c", 1, &["stays", "visitor"], &["visitor", "stays"], &[]);
        assert_eq!(r.apply(&e, true, &mut out), None);
        assert_eq!(users(&r, "c"), ["stays"]);
        assert!(out.is_empty(), "{out:?}");
        let e = interval("c", 2, &["back", "back"], &[], &["back"]);
        assert_eq!(r.apply(&e, true, &mut out), None);
        assert_eq!(users(&r, "c"), ["back", "stays"]);
        assert_eq!(out, [change(joined, "c", "back")]);
        out.clear();
        let e = interval("c", 1, &[], &[], &["back"]);
        r.apply(&e, true, &mut out);
        assert_eq!(out, [change(timed_out, "c", "back")]);
        // A refresh asks for a snapshot and applies nothing.
        let mut refresh = interval("c", 9, &["x"], &[], &[]);
        if let PresenceEvent::Interval(i) = &mut refresh {
            i.here_now_refresh = true;
        }
        assert_eq!(
            r.apply(&refresh, true, &mut out),
            Some(Resync::HereNowRefresh {
                channel: "c".into()
            })
        );
        assert_eq!(users(&r, "c"), ["stays"]);
    }

    /// With state kept, users who joined through an interval have a state
    /// the event does not carry: a snapshot of the channel is asked for.
    #[test]
    fn interval_joins_ask_for_state() {
        let mut r = Roster::new(&[], 100, true);
        let mut out = Vec::new();
        let e = interval("c", 1, &["u"], &[], &[]);
        assert_eq!(
            r.apply(&e, true, &mut out),
            Some(Resync::IntervalState {
                channel: "c".into()
            })
        );
        let e = interval("c", 0, &[], &["u"], &[]);
        assert_eq!(r.apply(&e, true, &mut out), None);
    }

    /// The same user on two channels (reached through one group) is two
    /// entries: leaving one keeps the other.
    #[test]
    fn same_user_on_two_channels() {
        let mut r = Roster::new(&[], 100, true);
        let mut out = Vec::new();
        let mut j = user("c1", "u", 1);
        j.subscription = Some(Cow::Borrowed("g"));
        r.apply(&PresenceEvent::Join(j.clone()), true, &mut out);
        j.channel = Cow::Borrowed("c2");
        r.apply(&PresenceEvent::Join(j), true, &mut out);
        let mut l = user("c1", "u", 0);
        l.subscription = Some(Cow::Borrowed("g"));
        r.apply(&PresenceEvent::Leave(l), true, &mut out);
        assert!(users(&r, "c1").is_empty());
        assert_eq!(users(&r, "c2"), ["u"]);
    }

    #[test]
    fn cap_keeps_counts_only_then_asks_back() {
        let mut r = Roster::new(&[], 2, false);
        let mut out = Vec::new();
        for (i, u) in ["a", "b", "c"].iter().enumerate() {
            r.apply(
                &PresenceEvent::Join(user("c", u, i as u32 + 1)),
                true,
                &mut out,
            );
        }
        assert_eq!(
            out.last(),
            Some(&Change::CountsOnly {
                channel: "c".into(),
                occupancy: 3
            })
        );
        let room = r.room("c").unwrap();
        assert!(room.is_counts_only());
        assert_eq!(room.occupancy(), 3);
        assert_eq!(room.occupants().count(), 0);
        out.clear();
        assert_eq!(
            r.apply(&PresenceEvent::Join(user("c", "d", 4)), true, &mut out),
            None
        );
        assert_eq!(
            out,
            [Change::CountChanged {
                channel: "c".into(),
                occupancy: 4
            }]
        );
        r.apply(&PresenceEvent::Leave(user("c", "d", 3)), true, &mut out);
        assert_eq!(
            r.apply(&PresenceEvent::Leave(user("c", "a", 2)), true, &mut out),
            Some(Resync::UnderCap {
                channel: "c".into()
            })
        );
    }

    #[test]
    fn snapshot_pages_and_sweep() {
        let mut r = Roster::new(&["a".into()], 100, true);
        let mut out = Vec::new();
        r.apply(&PresenceEvent::Join(user("a", "gone", 1)), true, &mut out);
        r.apply(&PresenceEvent::Join(user("a", "kept", 2)), true, &mut out);
        r.apply(&PresenceEvent::Join(user("b", "x", 1)), true, &mut out);
        out.clear();
        r.next_generation();
        let page = |ids: &[&str]| -> Vec<HereNowUser<'static>> {
            ids.iter()
                .map(|u| HereNowUser {
                    user_id: Cow::Owned(u.to_string()),
                    state: state::null_state(),
                })
                .collect()
        };
        assert!(r.load("a", 3, page(&["kept", "new"]), true, &mut out));
        // A join while the snapshot runs is confirmed too.
        r.apply(&PresenceEvent::Join(user("a", "late", 3)), false, &mut out);
        assert!(r.load("a", 3, page(&[]), false, &mut out));
        r.sweep(&Scope::one("a"), &mut out);
        assert_eq!(users(&r, "a"), ["kept", "late", "new"]);
        assert_eq!(users(&r, "b"), ["x"], "outside the scope");
        assert!(out.contains(&change(left, "a", "gone")));
        assert!(out.contains(&change(joined, "a", "new")));
        // A snapshot of everything that does not list `b` empties it.
        r.next_generation();
        r.load("a", 3, page(&["kept", "late", "new"]), true, &mut out);
        r.sweep(&Scope::All, &mut out);
        assert!(r.room("b").is_none());
        // Past the cap on the first page: counts only.
        let mut small = Roster::new(&[], 1, false);
        small.next_generation();
        assert!(!small.load("a", 5, page(&["x"]), true, &mut out));
        assert_eq!(small.room("a").unwrap().occupancy(), 5);
    }

    /// A snapshot past the cap for a channel already counts-only reports
    /// its new count, not `CountsOnly` again.
    #[test]
    fn counts_only_again_is_a_count_change() {
        let mut r = Roster::new(&["a".into()], 2, false);
        let mut out = Vec::new();
        r.next_generation();
        assert!(!r.load("a", 3, Vec::new(), true, &mut out));
        assert!(matches!(
            out.as_slice(),
            [Change::CountsOnly { occupancy: 3, .. }]
        ));
        out.clear();
        r.next_generation();
        assert!(!r.load("a", 3, Vec::new(), true, &mut out));
        assert!(out.is_empty(), "{out:?}");
        assert!(!r.load("a", 4, Vec::new(), true, &mut out));
        assert_eq!(
            out,
            [Change::CountChanged {
                channel: "a".into(),
                occupancy: 4
            }]
        );
        assert!(r.counts_only_in(&Scope::All) && !r.counts_only_in(&Scope::one("b")));
    }

    /// A snapshot that swaps one user for another at the cap: decided on
    /// the snapshot's own users (3), not on old plus new (4).
    #[test]
    fn cap_is_decided_on_the_snapshot_alone() {
        let mut r = Roster::new(&["a".into()], 3, false);
        let mut out = Vec::new();
        let page = |ids: &[&str]| -> Vec<HereNowUser<'static>> {
            ids.iter()
                .map(|u| HereNowUser {
                    user_id: Cow::Owned(u.to_string()),
                    state: state::null_state(),
                })
                .collect()
        };
        r.next_generation();
        assert!(r.load("a", 3, page(&["x", "y", "z"]), true, &mut out));
        r.sweep(&Scope::All, &mut out);
        out.clear();
        r.next_generation();
        assert!(r.load("a", 3, page(&["x", "y", "new"]), true, &mut out));
        r.sweep(&Scope::All, &mut out);
        assert!(!r.room("a").unwrap().is_counts_only(), "{out:?}");
        assert_eq!(users(&r, "a"), ["new", "x", "y"]);
        assert_eq!(out, [change(joined, "a", "new"), change(left, "a", "z")]);
        // Over two pages: the users listed count, not those held.
        r.next_generation();
        assert!(r.load("a", 3, page(&["p", "q"]), true, &mut out));
        assert!(r.load("a", 3, page(&["s"]), false, &mut out));
        r.sweep(&Scope::All, &mut out);
        assert_eq!(users(&r, "a"), ["p", "q", "s"]);
        // A snapshot that lists more than the cap: counts only.
        r.next_generation();
        assert!(r.load("a", 3, page(&["p", "q"]), true, &mut out));
        assert!(!r.load("a", 4, page(&["s", "t"]), false, &mut out));
        assert_eq!(r.room("a").unwrap().occupancy(), 4);
    }

    /// Going counts-only on events reports each dropped user `Left`:
    /// applying the feed to a set gives what the reads give.
    #[test]
    fn overflow_reports_who_is_dropped() {
        let mut r = Roster::new(&[], 2, false);
        let mut out = Vec::new();
        for (i, u) in ["a", "b", "c"].iter().enumerate() {
            r.apply(
                &PresenceEvent::Join(user("c", u, i as u32 + 1)),
                true,
                &mut out,
            );
        }
        let mut set = BTreeSet::new();
        for c in &out {
            match c {
                Change::Joined { user_id, .. } => assert!(set.insert(user_id.clone()), "{out:?}"),
                Change::Left { user_id, .. } => assert!(set.remove(user_id), "{out:?}"),
                _ => {}
            }
        }
        assert!(set.is_empty(), "{out:?}");
        assert!(r.room("c").unwrap().is_counts_only());
        assert_eq!(r.room("c").unwrap().occupancy(), 3);
    }

    /// A channel that empties gives its table's memory back.
    #[test]
    fn emptied_channel_shrinks() {
        let mut r = Roster::new(&["a".into()], 10_000, false);
        let mut out = Vec::new();
        for i in 0..2000u32 {
            let u = format!("u{i}");
            r.apply(&PresenceEvent::Join(user("a", &u, i + 1)), true, &mut out);
        }
        let full = r.room("a").unwrap().occupants.capacity();
        assert!(full >= 2000);
        for i in 10..2000u32 {
            let u = format!("u{i}");
            r.apply(&PresenceEvent::Leave(user("a", &u, 0)), false, &mut out);
        }
        let room = r.room("a").unwrap();
        assert_eq!(room.occupants.len(), 10);
        assert!(
            room.occupants.capacity() <= MIN_SHRINK * 2,
            "{} of {full}",
            room.occupants.capacity()
        );
    }

    #[test]
    fn scope_merges() {
        let mut s = Scope::one("a");
        s.merge(Scope::one("b"));
        assert!(s.contains("a") && s.contains("b") && !s.contains("c"));
        s.merge(Scope::All);
        assert_eq!(s, Scope::All);
        s.merge(Scope::one("x"));
        assert_eq!(s, Scope::All);
    }
}
