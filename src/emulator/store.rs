//! Who is where: presence, state, expiry and the event log, with the
//! service's semantics (docs/PROTOCOL.md §1, §5, §6).
//!
//! Memory is bounded: presence and state entries are capped
//! (`max_entries`), keysets are capped (`max_keysets`), the event log is
//! capped (`event_log`; names are capped by the routes), and a channel or
//! keyset left with nothing in it is dropped at once. Expiry and interval
//! times sit in ordered indexes, so a sweep costs what is due, not a walk
//! of everything stored.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Tunables, from [`super::Options`].
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub announce_max: usize,
    pub interval_secs: u64,
    /// Presence and state entries (channel × user) kept at most.
    pub max_entries: usize,
    /// Keysets (subscribe keys) kept at most.
    pub max_keysets: usize,
    /// Interval delta bytes past which `here_now_refresh` is sent instead.
    pub interval_delta_limit: usize,
    /// Events kept for subscribers that fall behind (at least 1).
    pub event_log: usize,
}

#[derive(Debug, Default)]
struct Deltas {
    join: Vec<String>,
    leave: Vec<String>,
    timeout: Vec<String>,
}

#[derive(Debug, Default)]
struct Channel {
    /// user id → expiry (clock ms).
    users: BTreeMap<String, u64>,
    /// user id → state JSON object text.
    states: BTreeMap<String, String>,
    deltas: Deltas,
    last_interval_ms: u64,
    /// When the next interval event is due, if one is scheduled (the same
    /// instant is in `Store::intervals_due`).
    interval_due: Option<u64>,
}

impl Channel {
    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.states.is_empty() && !has_deltas(&self.deltas)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Keyset {
    channels: BTreeMap<String, Channel>,
    pub groups: BTreeMap<String, BTreeSet<String>>,
}

impl Keyset {
    fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.groups.is_empty()
    }
}

/// (keyset, channel, user).
type UserKey = (String, String, String);

/// One presence event as the subscribe endpoint delivers it.
#[derive(Debug, Clone)]
pub(crate) struct StoredEvent {
    pub sub: String,
    pub channel: String,
    pub timetoken: u64,
    /// The `d` payload, JSON text.
    pub payload: String,
    /// The `u` metadata (`pn_action`, `pn_uuid`, …), JSON text.
    pub meta: String,
}

#[derive(Debug)]
pub(crate) struct Store {
    pub settings: Settings,
    keysets: HashMap<String, Keyset>,
    pub events: VecDeque<StoredEvent>,
    last_timetoken: u64,
    /// Presence plus state entries held, against `settings.max_entries`.
    entries: usize,
    /// (expiry ms, keyset, channel, user) of every present user: the sweep
    /// pops what is due instead of walking every user.
    expiries: BTreeSet<(u64, UserKey)>,
    /// (due ms, keyset, channel) of every scheduled interval event.
    intervals_due: BTreeSet<(u64, String, String)>,
}

/// Appends `s` as a JSON string literal.
pub(crate) fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a JSON array of strings.
pub(crate) fn json_list<'a>(out: &mut String, items: impl IntoIterator<Item = &'a String>) {
    out.push('[');
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, s);
    }
    out.push(']');
}

impl Store {
    pub fn new(settings: Settings) -> Self {
        Store {
            settings,
            keysets: HashMap::new(),
            events: VecDeque::new(),
            last_timetoken: 0,
            entries: 0,
            expiries: BTreeSet::new(),
            intervals_due: BTreeSet::new(),
        }
    }

    /// The keyset `sub`, created if needed (even past the keyset cap: for
    /// the server's owner, e.g. `ServerHandle::add_to_group`).
    pub fn keyset(&mut self, sub: &str) -> &mut Keyset {
        self.keysets.entry(sub.to_string()).or_default()
    }

    /// The keyset `sub`, created only while under `max_keysets`.
    fn keyset_capped(&mut self, sub: &str) -> Option<&mut Keyset> {
        if !self.keysets.contains_key(sub) && self.keysets.len() >= self.settings.max_keysets {
            return None;
        }
        Some(self.keyset(sub))
    }

    /// Keysets held (for tests of the memory bound).
    pub fn keyset_count(&self) -> usize {
        self.keysets.len()
    }

    /// Presence plus state entries held.
    pub fn entry_count(&self) -> usize {
        self.entries
    }

    /// Drops `channel` when nothing is left in it, then `sub` when it has
    /// no channel and no group left.
    fn prune(&mut self, sub: &str, channel: &str) {
        let Some(ks) = self.keysets.get_mut(sub) else {
            return;
        };
        if let Some(ch) = ks.channels.get(channel).filter(|c| c.is_empty()) {
            if let Some(due) = ch.interval_due {
                self.intervals_due
                    .remove(&(due, sub.to_string(), channel.to_string()));
            }
            ks.channels.remove(channel);
        }
        if ks.is_empty() {
            self.keysets.remove(sub);
        }
    }

    /// Schedules the next interval event of a busy channel (above the
    /// announce threshold, or holding deltas) if none is scheduled.
    fn schedule_interval(&mut self, sub: &str, channel: &str) {
        let every = self.settings.interval_secs.saturating_mul(1000).max(1);
        let announce_max = self.settings.announce_max;
        let Some(ch) = self
            .keysets
            .get_mut(sub)
            .and_then(|k| k.channels.get_mut(channel))
        else {
            return;
        };
        let busy = ch.users.len() > announce_max || has_deltas(&ch.deltas);
        if busy && ch.interval_due.is_none() {
            let due = ch.last_interval_ms.saturating_add(every);
            ch.interval_due = Some(due);
            self.intervals_due
                .insert((due, sub.to_string(), channel.to_string()));
        }
    }

    /// Removes a whole channel group; the keyset goes too when it is left
    /// empty. Never creates a keyset.
    pub fn remove_group(&mut self, sub: &str, group: &str) {
        if let Some(ks) = self.keysets.get_mut(sub) {
            ks.groups.remove(group);
            if ks.is_empty() {
                self.keysets.remove(sub);
            }
        }
    }

    /// Adds and removes channels of a group, bounded like the service:
    /// `max_channels` per group, `max_groups` per keyset, and the keyset
    /// cap. A group left empty is dropped (and its keyset when empty).
    pub fn edit_group(
        &mut self,
        sub: &str,
        group: &str,
        add: Vec<String>,
        remove: &[String],
        max_groups: usize,
        max_channels: usize,
    ) -> Result<(), &'static str> {
        if add.is_empty() && !self.keysets.contains_key(sub) {
            // Only removals from a keyset that does not exist: nothing to do.
            return Ok(());
        }
        let Some(ks) = self.keyset_capped(sub) else {
            return Err("Maximum number of keysets reached");
        };
        let outcome = if !ks.groups.contains_key(group) && ks.groups.len() >= max_groups {
            Err("Maximum number of channel groups reached")
        } else {
            let g = ks.groups.entry(group.to_string()).or_default();
            for r in remove {
                g.remove(r);
            }
            let new = add.iter().filter(|c| !g.contains(*c)).count();
            if g.len().saturating_add(new) > max_channels {
                Err("Maximum number of channels in a channel group reached")
            } else {
                g.extend(add);
                Ok(())
            }
        };
        if ks.groups.get(group).is_some_and(BTreeSet::is_empty) {
            ks.groups.remove(group);
        }
        if ks.is_empty() {
            self.keysets.remove(sub);
        }
        outcome
    }

    pub fn keyset_ref(&self, sub: &str) -> Option<&Keyset> {
        self.keysets.get(sub)
    }

    /// A strictly increasing timetoken (100 ns units) at clock time `now_ms`.
    pub fn next_timetoken(&mut self, now_ms: u64) -> u64 {
        // Saturates at u64::MAX (a clock advanced by centuries) instead of
        // overflowing; below that, strictly increasing.
        let t = (now_ms.saturating_mul(10_000)).max(self.last_timetoken.saturating_add(1));
        self.last_timetoken = t;
        t
    }

    /// The last timetoken issued.
    pub fn last_issued(&self) -> u64 {
        self.last_timetoken
    }

    /// The current timetoken without advancing it.
    pub fn current_timetoken(&self, now_ms: u64) -> u64 {
        now_ms.saturating_mul(10_000).max(self.last_timetoken)
    }

    fn push_event(&mut self, sub: &str, channel: &str, payload: String, meta: String, now_ms: u64) {
        let timetoken = self.next_timetoken(now_ms);
        while self.events.len() >= self.settings.event_log.max(1) {
            self.events.pop_front();
        }
        self.events.push_back(StoredEvent {
            sub: sub.to_string(),
            channel: channel.to_string(),
            timetoken,
            payload,
            meta,
        });
    }

    /// A user event, or a delta for the next interval when the channel is
    /// above the announce threshold.
    fn announce(
        &mut self,
        sub: &str,
        channel: &str,
        action: &str,
        user: &str,
        data: Option<&str>,
        now_ms: u64,
    ) {
        let announce_max = self.settings.announce_max;
        let Some(ch) = self.keyset(sub).channels.get_mut(channel) else {
            return;
        };
        let occupancy = ch.users.len();
        if occupancy > announce_max && action != "state-change" {
            let list = match action {
                "join" => &mut ch.deltas.join,
                "leave" => &mut ch.deltas.leave,
                _ => &mut ch.deltas.timeout,
            };
            list.push(user.to_string());
            self.schedule_interval(sub, channel);
            return;
        }
        let mut d = String::with_capacity(128);
        d.push_str("{\"action\":");
        json_str(&mut d, action);
        d.push_str(",\"uuid\":");
        json_str(&mut d, user);
        d.push_str(&format!(
            ",\"timestamp\":{},\"precise_timestamp\":{now_ms}",
            now_ms / 1000
        ));
        // Key order as recorded: `data` before `occupancy`. The 2025 service
        // sends `"data":{}` on timeout events (sub_presence_timeout_2025_01).
        match (data, action) {
            (Some(data), _) => {
                d.push_str(",\"data\":");
                d.push_str(data);
            }
            (None, "timeout") => d.push_str(",\"data\":{}"),
            (None, _) => {}
        }
        d.push_str(&format!(",\"occupancy\":{occupancy}}}"));
        // Since about 2019 the service mirrors the event in `u` (docs/PROTOCOL.md §5).
        let mut u = String::with_capacity(160);
        u.push_str("{\"pn_action\":");
        json_str(&mut u, action);
        u.push_str(",\"pn_channel\":");
        json_str(&mut u, channel);
        u.push_str(&format!(
            ",\"pn_ispresence\":1,\"pn_occupancy\":{occupancy},\"pn_precise_timestamp\":{now_ms},\"pn_timestamp\":{},\"pn_uuid\":",
            now_ms / 1000
        ));
        json_str(&mut u, user);
        u.push('}');
        self.push_event(sub, channel, d, u, now_ms);
    }

    /// Whether `user` has a presence (`state == false`) or state entry on
    /// `channel`.
    fn has_entry(&self, sub: &str, channel: &str, user: &str, state: bool) -> bool {
        self.keyset_ref(sub)
            .and_then(|k| k.channels.get(channel))
            .is_some_and(|c| {
                if state {
                    c.states.contains_key(user)
                } else {
                    c.users.contains_key(user)
                }
            })
    }

    /// Whether a new entry fits under the cap.
    fn room(&self) -> bool {
        self.entries < self.settings.max_entries
    }

    /// Marks `user` present on `channel` until `now + timeout`; a join event
    /// if it was not present. `false` when the store is full.
    pub fn heartbeat(
        &mut self,
        sub: &str,
        channel: &str,
        user: &str,
        timeout_s: u64,
        now_ms: u64,
    ) -> bool {
        if !self.room() && !self.has_entry(sub, channel, user, false) {
            return false;
        }
        let expires = now_ms.saturating_add(timeout_s.saturating_mul(1000));
        let Some(ks) = self.keyset_capped(sub) else {
            return false;
        };
        let ch = ks.channels.entry(channel.to_string()).or_default();
        let previous = ch.users.insert(user.to_string(), expires);
        let state = previous.is_none().then(|| ch.states.get(user).cloned());
        let key = (sub.to_string(), channel.to_string(), user.to_string());
        if let Some(old) = previous {
            let key = (old, key);
            self.expiries.remove(&key);
            self.expiries.insert((expires, key.1));
        } else {
            self.expiries.insert((expires, key));
        }
        if let Some(state) = state {
            self.entries = self.entries.saturating_add(1);
            self.announce(sub, channel, "join", user, state.as_deref(), now_ms);
        }
        self.schedule_interval(sub, channel);
        true
    }

    /// Removes `user` from `channel` (leave or timeout) and drops its state.
    pub fn remove(&mut self, sub: &str, channel: &str, user: &str, action: &str, now_ms: u64) {
        // Never create a keyset just to remove from it.
        let Some(ch) = self
            .keysets
            .get_mut(sub)
            .and_then(|k| k.channels.get_mut(channel))
        else {
            return;
        };
        let had_state = ch.states.remove(user).is_some();
        let expiry = ch.users.remove(user);
        let was_present = expiry.is_some();
        self.entries = self
            .entries
            .saturating_sub(usize::from(had_state) + usize::from(was_present));
        if let Some(exp) = expiry {
            self.expiries.remove(&(
                exp,
                (sub.to_string(), channel.to_string(), user.to_string()),
            ));
            self.announce(sub, channel, action, user, None, now_ms);
        }
        self.prune(sub, channel);
    }

    /// Stores state; a state-change event when the user is present. `false`
    /// when the store is full.
    pub fn set_state(
        &mut self,
        sub: &str,
        channel: &str,
        user: &str,
        json: &str,
        now_ms: u64,
    ) -> bool {
        if !self.room() && !self.has_entry(sub, channel, user, true) {
            return false;
        }
        let Some(ks) = self.keyset_capped(sub) else {
            return false;
        };
        let ch = ks.channels.entry(channel.to_string()).or_default();
        let changed = ch.states.get(user).map(String::as_str) != Some(json);
        let present = ch.users.contains_key(user);
        if ch
            .states
            .insert(user.to_string(), json.to_string())
            .is_none()
        {
            self.entries = self.entries.saturating_add(1);
        }
        if changed && present {
            self.announce(sub, channel, "state-change", user, Some(json), now_ms);
        }
        true
    }

    pub fn state_of(&self, sub: &str, channel: &str, user: &str) -> Option<&str> {
        self.keyset_ref(sub)?
            .channels
            .get(channel)?
            .states
            .get(user)
            .map(String::as_str)
    }

    /// Expires users whose timeout passed and emits due interval events.
    /// Costs O((expired + due) · log n): only what is due is touched.
    pub fn sweep(&mut self, now_ms: u64) {
        while self.expiries.first().is_some_and(|(exp, _)| *exp <= now_ms) {
            let Some((_, (sub, channel, user))) = self.expiries.pop_first() else {
                break;
            };
            self.remove(&sub, &channel, &user, "timeout", now_ms);
        }
        self.intervals(now_ms);
    }

    fn intervals(&mut self, now_ms: u64) {
        let announce_max = self.settings.announce_max;
        while self
            .intervals_due
            .first()
            .is_some_and(|(due, _, _)| *due <= now_ms)
        {
            let Some((_, sub, channel)) = self.intervals_due.pop_first() else {
                break;
            };
            let Some(ch) = self
                .keysets
                .get_mut(&sub)
                .and_then(|k| k.channels.get_mut(&channel))
            else {
                continue;
            };
            ch.interval_due = None;
            if !(ch.users.len() > announce_max || has_deltas(&ch.deltas)) {
                self.prune(&sub, &channel);
                continue;
            }
            ch.last_interval_ms = now_ms;
            let deltas = std::mem::take(&mut ch.deltas);
            let occupancy = ch.users.len();
            self.emit_interval(&sub, &channel, occupancy, &deltas, now_ms);
            // Still above the threshold: the next one in `interval_secs`.
            self.schedule_interval(&sub, &channel);
            self.prune(&sub, &channel);
        }
    }

    fn emit_interval(
        &mut self,
        sub: &str,
        channel: &str,
        occupancy: usize,
        deltas: &Deltas,
        now_ms: u64,
    ) {
        let mut d = format!(
            "{{\"action\":\"interval\",\"timestamp\":{},\"occupancy\":{occupancy}",
            now_ms / 1000
        );
        let mut lists = String::new();
        for (key, list) in [
            ("join", &deltas.join),
            ("leave", &deltas.leave),
            ("timeout", &deltas.timeout),
        ] {
            if !list.is_empty() {
                lists.push_str(&format!(",\"{key}\":"));
                json_list(&mut lists, list);
            }
        }
        // The service drops the arrays past ~30 KB and asks for a here_now.
        if lists.len() > self.settings.interval_delta_limit {
            d.push_str(",\"here_now_refresh\":true");
        } else {
            d.push_str(&lists);
        }
        d.push('}');
        let mut u = String::from("{\"pn_action\":\"interval\",\"pn_channel\":");
        json_str(&mut u, channel);
        u.push_str(&format!(
            ",\"pn_ispresence\":1,\"pn_occupancy\":{occupancy},\"pn_timestamp\":{}}}",
            now_ms / 1000
        ));
        self.push_event(sub, channel, d, u, now_ms);
    }

    /// Present users of a channel, sorted by id.
    pub fn occupants(&self, sub: &str, channel: &str) -> Vec<&String> {
        self.keyset_ref(sub)
            .and_then(|k| k.channels.get(channel))
            .map(|c| c.users.keys().collect())
            .unwrap_or_default()
    }

    /// Every channel with someone present.
    pub fn occupied_channels(&self, sub: &str) -> Vec<&String> {
        self.keyset_ref(sub)
            .map(|k| {
                k.channels
                    .iter()
                    .filter(|(_, c)| !c.users.is_empty())
                    .map(|(n, _)| n)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Channels where `user` is present.
    pub fn where_now(&self, sub: &str, user: &str) -> Vec<&String> {
        self.keyset_ref(sub)
            .map(|k| {
                k.channels
                    .iter()
                    .filter(|(_, c)| c.users.contains_key(user))
                    .map(|(n, _)| n)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The channels of a group (empty if unknown).
    pub fn group_channels(&self, sub: &str, group: &str) -> Vec<String> {
        self.keyset_ref(sub)
            .and_then(|k| k.groups.get(group))
            .map(|g| g.iter().cloned().collect())
            .unwrap_or_default()
    }
}

fn has_deltas(d: &Deltas) -> bool {
    !(d.join.is_empty() && d.leave.is_empty() && d.timeout.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(announce_max: usize) -> Store {
        Store::new(Settings {
            announce_max,
            interval_secs: 10,
            max_entries: 100,
            max_keysets: 100,
            interval_delta_limit: 30 * 1024,
            event_log: 10_000,
        })
    }

    fn actions(s: &Store) -> Vec<String> {
        s.events
            .iter()
            .map(|e| {
                let a = e.payload.split('"').nth(3).unwrap_or("").to_string();
                format!("{}:{a}", e.channel)
            })
            .collect()
    }

    #[test]
    fn join_state_leave_timeout() {
        let mut s = store(20);
        s.heartbeat("k", "c", "a", 60, 1_000);
        s.heartbeat("k", "c", "a", 60, 2_000); // refresh: no event
        s.set_state("k", "c", "a", r#"{"x":1}"#, 3_000);
        s.set_state("k", "c", "a", r#"{"x":1}"#, 3_500); // unchanged: no event
        s.heartbeat("k", "c", "b", 30, 4_000);
        s.remove("k", "c", "a", "leave", 5_000);
        assert_eq!(s.state_of("k", "c", "a"), None, "state dropped on leave");
        s.sweep(4_000 + 30_000);
        assert_eq!(
            actions(&s),
            ["c:join", "c:state-change", "c:join", "c:leave", "c:timeout"]
        );
        assert!(s.occupants("k", "c").is_empty());
        let tts: Vec<u64> = s.events.iter().map(|e| e.timetoken).collect();
        assert!(tts.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn interval_above_threshold() {
        let mut s = store(2);
        for u in ["a", "b", "c", "d"] {
            s.heartbeat("k", "c", u, 60, 1_000);
        }
        // a, b announced; c, d go to the interval deltas.
        assert_eq!(actions(&s), ["c:join", "c:join"]);
        s.sweep(20_000);
        let last = &s.events.back().unwrap().payload;
        assert!(last.contains("\"action\":\"interval\""), "{last}");
        assert!(last.contains("\"occupancy\":4"), "{last}");
        assert!(last.contains("\"join\":[\"c\",\"d\"]"), "{last}");
    }

    #[test]
    fn entries_are_capped_and_counted_back() {
        let mut s = store(20);
        s.settings.max_entries = 3;
        assert!(s.heartbeat("k", "c", "a", 60, 0));
        assert!(s.set_state("k", "c", "a", "{}", 0));
        assert!(s.heartbeat("k", "c", "b", 60, 0));
        assert!(!s.heartbeat("k", "c", "x", 60, 0), "full");
        assert!(!s.set_state("k", "c", "b", "{}", 0), "full");
        assert!(
            s.heartbeat("k", "c", "a", 60, 1),
            "refreshing an entry is fine"
        );
        assert!(
            s.set_state("k", "c", "a", "{\"v\":1}", 1),
            "replacing state is fine"
        );
        s.remove("k", "c", "a", "leave", 2); // frees presence and state
        assert!(s.heartbeat("k", "c", "x", 60, 3));
        assert!(s.set_state("k", "c", "x", "{}", 3));
        s.sweep(1_000_000); // everyone times out
        assert_eq!(s.entries, 0);
    }

    #[test]
    fn the_event_log_keeps_its_configured_size() {
        let mut s = store(20);
        s.settings.event_log = 3;
        for user in ["a", "b", "c", "d", "e"] {
            assert!(s.heartbeat("k", "c", user, 60, 0));
        }
        assert_eq!(actions(&s), ["c:join", "c:join", "c:join"]);
        assert_eq!(s.events.len(), 3);
        // Zero still keeps the latest event, for the waiting long-polls.
        s.settings.event_log = 0;
        assert!(s.heartbeat("k", "c", "f", 60, 0));
        assert_eq!(s.events.len(), 1);
    }
}
