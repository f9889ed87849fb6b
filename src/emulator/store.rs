//! Who is where: presence, state, expiry and the event log, with the
//! service's semantics (PROTOCOL.md §1, §5, §6).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// How many events are kept for subscribers that fall behind.
const EVENT_LOG: usize = 10_000;

/// Tunables, from [`super::Options`].
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub announce_max: usize,
    pub interval_secs: u64,
    /// Presence and state entries (channel × user) kept at most.
    pub max_entries: usize,
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
}

#[derive(Debug, Default)]
pub(crate) struct Keyset {
    channels: BTreeMap<String, Channel>,
    pub groups: BTreeMap<String, BTreeSet<String>>,
}

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
        }
    }

    pub fn keyset(&mut self, sub: &str) -> &mut Keyset {
        self.keysets.entry(sub.to_string()).or_default()
    }

    pub fn keyset_ref(&self, sub: &str) -> Option<&Keyset> {
        self.keysets.get(sub)
    }

    /// A strictly increasing timetoken (100 ns units) at clock time `now_ms`.
    pub fn next_timetoken(&mut self, now_ms: u64) -> u64 {
        let t = (now_ms.saturating_mul(10_000)).max(self.last_timetoken + 1);
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
        if self.events.len() == EVENT_LOG {
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
            return;
        }
        let mut d = String::with_capacity(128);
        d.push_str("{\"action\":");
        json_str(&mut d, action);
        d.push_str(",\"uuid\":");
        json_str(&mut d, user);
        d.push_str(&format!(
            ",\"timestamp\":{},\"precise_timestamp\":{now_ms},\"occupancy\":{occupancy}",
            now_ms / 1000
        ));
        if let Some(data) = data {
            d.push_str(",\"data\":");
            d.push_str(data);
        }
        d.push('}');
        // Since about 2019 the service mirrors the event in `u` (PROTOCOL.md §5).
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
        let ch = self
            .keyset(sub)
            .channels
            .entry(channel.to_string())
            .or_default();
        let joined = ch.users.insert(user.to_string(), expires).is_none();
        if joined {
            let state = ch.states.get(user).cloned();
            self.entries += 1;
            self.announce(sub, channel, "join", user, state.as_deref(), now_ms);
        }
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
        let was_present = ch.users.remove(user).is_some();
        self.entries = self
            .entries
            .saturating_sub(usize::from(had_state) + usize::from(was_present));
        if was_present {
            self.announce(sub, channel, action, user, None, now_ms);
        }
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
        let ch = self
            .keyset(sub)
            .channels
            .entry(channel.to_string())
            .or_default();
        let changed = ch.states.get(user).map(String::as_str) != Some(json);
        let present = ch.users.contains_key(user);
        if ch
            .states
            .insert(user.to_string(), json.to_string())
            .is_none()
        {
            self.entries += 1;
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
    pub fn sweep(&mut self, now_ms: u64) {
        let mut expired = Vec::new();
        for (sub, ks) in &self.keysets {
            for (name, ch) in &ks.channels {
                for (user, &exp) in &ch.users {
                    if exp <= now_ms {
                        expired.push((sub.clone(), name.clone(), user.clone()));
                    }
                }
            }
        }
        for (sub, channel, user) in expired {
            self.remove(&sub, &channel, &user, "timeout", now_ms);
        }
        self.intervals(now_ms);
        // Forget channels with nobody and no state.
        for ks in self.keysets.values_mut() {
            ks.channels.retain(|_, c| {
                !c.users.is_empty() || !c.states.is_empty() || has_deltas(&c.deltas)
            });
        }
    }

    fn intervals(&mut self, now_ms: u64) {
        let every = self.settings.interval_secs.saturating_mul(1000).max(1);
        let announce_max = self.settings.announce_max;
        let mut due = Vec::new();
        for (sub, ks) in &mut self.keysets {
            for (name, ch) in &mut ks.channels {
                let busy = ch.users.len() > announce_max || has_deltas(&ch.deltas);
                if busy && now_ms.saturating_sub(ch.last_interval_ms) >= every {
                    ch.last_interval_ms = now_ms;
                    let deltas = std::mem::take(&mut ch.deltas);
                    due.push((sub.clone(), name.clone(), ch.users.len(), deltas));
                }
            }
        }
        for (sub, channel, occupancy, deltas) in due {
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
            if lists.len() > 30 * 1024 {
                d.push_str(",\"here_now_refresh\":true");
            } else {
                d.push_str(&lists);
            }
            d.push('}');
            let mut u = String::from("{\"pn_action\":\"interval\",\"pn_channel\":");
            json_str(&mut u, &channel);
            u.push_str(&format!(
                ",\"pn_ispresence\":1,\"pn_occupancy\":{occupancy},\"pn_timestamp\":{}}}",
                now_ms / 1000
            ));
            self.push_event(&sub, &channel, d, u, now_ms);
        }
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
}
