//! Endpoint dispatch: request in, (status, JSON body) out. Bodies have the
//! 2025 server's form: compact, keys in alphabetical order.

use super::http::HttpRequest;
use super::shared::Shared;
use super::store::{json_list, json_str, Store};
use crate::encode::decode_bytes;
use crate::json::{Cursor, Kind};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

type Reply = (u16, String);

/// `{"error":1,"message":…,"service":"Presence","status":N}`.
pub(crate) fn error_body(status: u16, message: &str) -> String {
    let mut b = String::from("{\"error\":1,\"message\":");
    json_str(&mut b, message);
    b.push_str(&format!(",\"service\":\"Presence\",\"status\":{status}}}"));
    b
}

/// The body for a request refused before routing. An over-long request
/// head is refused by PubNub's front end, not the presence service:
/// `414` with the `Balancer` body recorded in
/// `tests/fixtures/recorded/error_414_balancer_01.json` (docs/PROTOCOL.md
/// §2), key order and trailing newline included.
pub(crate) fn bad_request_body(status: u16, message: &str) -> String {
    if status == 414 {
        return BALANCER_414.to_string();
    }
    error_body(status, message)
}

const BALANCER_414: &str =
    "{\"status\":414,\"service\":\"Balancer\",\"error\":true,\"message\":\"Request URI Too Long\"}\n";

fn error(status: u16, message: &str) -> Reply {
    (status, error_body(status, message))
}

const OK_ACK: &str = r#"{"message":"OK","service":"Presence","status":200}"#;

fn decode_segment(s: &str) -> Option<String> {
    String::from_utf8(decode_bytes(s.as_bytes(), false)?).ok()
}

/// A channel path segment: names joined by a raw `,`; `,` alone = none.
fn names(segment: &str) -> Option<Vec<String>> {
    if segment == "," {
        return Some(Vec::new());
    }
    segment
        .split(',')
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect()
}

fn list_param(req: &HttpRequest, key: &str) -> Vec<String> {
    req.param(key)
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The request's targets: explicit channels and groups.
struct Targets {
    channels: Vec<String>,
    groups: Vec<String>,
}

impl Targets {
    /// Explicit channels plus the channels of every group, deduplicated.
    fn expand(&self, store: &Store, sub: &str) -> BTreeSet<String> {
        let mut all: BTreeSet<String> = self.channels.iter().cloned().collect();
        for g in &self.groups {
            all.extend(store.group_channels(sub, g));
        }
        all
    }
}

fn forbidden(t: &Targets) -> Reply {
    let mut b = String::from("{\"error\":true,\"message\":\"Forbidden\",\"payload\":{");
    let mut first = true;
    if !t.groups.is_empty() {
        b.push_str("\"channel-groups\":");
        let prefixed: Vec<String> = t.groups.iter().map(|g| format!(":{g}")).collect();
        json_list(&mut b, &prefixed);
        first = false;
    }
    if !t.channels.is_empty() || t.groups.is_empty() {
        if !first {
            b.push(',');
        }
        b.push_str("\"channels\":");
        json_list(&mut b, &t.channels);
    }
    b.push_str("},\"service\":\"Access Manager\",\"status\":403}\n");
    (403, b)
}

pub(crate) fn handle(shared: &Shared, req: &HttpRequest) -> Reply {
    let segs: Vec<&str> = req.path.split('/').skip(1).collect();
    let no_targets = Targets {
        channels: Vec::new(),
        groups: Vec::new(),
    };
    match segs.as_slice() {
        ["time", "0"] => {
            let now = shared.clock.now_ms();
            let tt = shared
                .store
                .lock()
                .map(|s| s.current_timetoken(now))
                .unwrap_or(0);
            (200, format!("[{tt}]"))
        }
        ["v2", "presence", "sub-key" | "sub_key", sub, rest @ ..] => {
            let Some(sub) = decode_segment(sub) else {
                return error(400, "Invalid subscribe key");
            };
            match rest {
                [] => with_auth(shared, req, &no_targets, || {
                    cached_here_now(shared, req, &sub, || here_now(shared, req, &sub, None))
                }),
                ["uuid", user] => {
                    let Some(user) = decode_segment(user) else {
                        return error(400, "Invalid uuid");
                    };
                    with_auth(shared, req, &no_targets, || {
                        too_long(shared, req, &no_targets, Some(&user))
                            .unwrap_or_else(|| where_now(shared, &sub, &user))
                    })
                }
                ["channel", chs, tail @ ..] => {
                    let Some(channels) = names(chs) else {
                        return error(400, "Invalid channel name");
                    };
                    let t = Targets {
                        channels,
                        groups: list_param(req, "channel-group"),
                    };
                    if t.channels.is_empty() && t.groups.is_empty() {
                        return error(400, "No channels or channel groups specified.");
                    }
                    match tail {
                        [] => with_auth(shared, req, &t, || {
                            cached_here_now(shared, req, &sub, || {
                                here_now(shared, req, &sub, Some(&t))
                            })
                        }),
                        ["heartbeat"] => {
                            with_auth(shared, req, &t, || heartbeat(shared, req, &sub, &t))
                        }
                        ["leave"] => with_auth(shared, req, &t, || leave(shared, req, &sub, &t)),
                        ["uuid", user, rest @ ..] if matches!(rest, [] | ["data"]) => {
                            let Some(user) = decode_segment(user) else {
                                return error(400, "Invalid uuid");
                            };
                            let data = !rest.is_empty();
                            with_auth(shared, req, &t, || {
                                too_long(shared, req, &t, Some(&user)).unwrap_or_else(|| {
                                    if data {
                                        set_state(shared, req, &sub, &user, &t)
                                    } else {
                                        get_state(shared, &sub, &user, &t)
                                    }
                                })
                            })
                        }
                        _ => not_found(req),
                    }
                }
                _ => not_found(req),
            }
        }
        ["v2", "subscribe", sub, chs, "0"] => {
            let (Some(sub), Some(channels)) = (decode_segment(sub), names(chs)) else {
                return error(400, "Invalid subscribe request");
            };
            let t = Targets {
                channels,
                groups: list_param(req, "channel-group"),
            };
            if t.channels.is_empty() && t.groups.is_empty() {
                return error(400, "No channels or channel groups specified.");
            }
            with_auth(shared, req, &t, || subscribe(shared, req, &sub, &t))
        }
        ["v1", "channel-registration", "sub-key" | "sub_key", sub, "channel-group", group, tail @ ..] =>
        {
            let (Some(sub), Some(group)) = (decode_segment(sub), decode_segment(group)) else {
                return error(400, "Invalid channel group request");
            };
            let t = Targets {
                channels: Vec::new(),
                groups: vec![group.clone()],
            };
            with_auth(shared, req, &t, || {
                channel_group(shared, req, &sub, &group, tail)
            })
        }
        _ => not_found(req),
    }
}

fn not_found(req: &HttpRequest) -> Reply {
    let mut b = String::from("{\"error\":1,\"message\":");
    json_str(&mut b, &format!("Not found: '{}'", req.path));
    b.push_str(",\"service\":\"Presence\",\"status\":404}");
    (404, b)
}

/// Checks `signature` against the secret key, when one is configured.
fn signature_ok(shared: &Shared, req: &HttpRequest) -> bool {
    let Some(_secret) = &shared.options.secret_key else {
        return true;
    };
    #[cfg(feature = "tls")]
    {
        let (Some(sig), Some(_)) = (req.param("signature"), req.param("timestamp")) else {
            return false;
        };
        let want =
            crate::sign::signature_v2(_secret, &shared.options.publish_key, &req.path, &req.query);
        // Not constant-time: this is a local test server.
        sig == want
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = req;
        false
    }
}

fn with_auth(shared: &Shared, req: &HttpRequest, t: &Targets, f: impl FnOnce() -> Reply) -> Reply {
    if !signature_ok(shared, req) {
        let mut b =
            String::from("{\"error\":true,\"message\":\"Signature does not match\",\"payload\":{");
        let (_, body) = forbidden(t);
        // Reuse the payload lists of the Access Manager body.
        if let Some(rest) = body.split_once("\"payload\":{").map(|x| x.1) {
            b.push_str(rest);
        }
        return (403, b);
    }
    let keys = &shared.options.auth_keys;
    if !keys.is_empty() {
        let auth = req.param("auth").unwrap_or_default();
        if !keys.contains(&auth) {
            return forbidden(t);
        }
    }
    if req.param("uuid").filter(|u| !u.is_empty()).is_none() {
        return error(400, "uuid is required");
    }
    if let Some(reply) = too_long(shared, req, t, None) {
        return reply;
    }
    f()
}

/// A 400 when a user id (the `uuid` parameter or `user`, from the path),
/// a channel or a channel group named by the request (channels added to
/// a group included) is longer than [`super::Options::max_name_length`]
/// characters: what one stored entry or event holds stays bounded. (The
/// service's answer to an over-long name is not recorded; this is a
/// Presence-style 400.)
fn too_long(shared: &Shared, req: &HttpRequest, t: &Targets, user: Option<&str>) -> Option<Reply> {
    let max = shared.options.max_name_length;
    let long = |name: &str| name.chars().nth(max).is_some();
    let uuid = req.param("uuid");
    if uuid.iter().map(String::as_str).chain(user).any(long) {
        return Some(error(400, "Invalid uuid: too long"));
    }
    let added = list_param(req, "add");
    if t.channels.iter().chain(&added).any(|c| long(c)) {
        return Some(error(400, "Invalid channel name: too long"));
    }
    if t.groups.iter().any(|g| long(g)) {
        return Some(error(400, "Invalid channel group name: too long"));
    }
    None
}

fn user_of(req: &HttpRequest) -> String {
    req.param("uuid").unwrap_or_default()
}

fn flag(req: &HttpRequest, key: &str) -> bool {
    req.param(key).is_some_and(|v| v == "1" || v == "true")
}

fn here_now(shared: &Shared, req: &HttpRequest, sub: &str, targets: Option<&Targets>) -> Reply {
    let with_uuids = !flag(req, "disable_uuids");
    let with_state = flag(req, "state");
    let limit = match req.param("limit") {
        None => 1000,
        Some(v) => match v.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return error(400, "Invalid limit"),
        },
    };
    let offset = match req.param("offset") {
        None => 0,
        Some(v) => match v.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return error(400, "Invalid offset"),
        },
    };
    let Ok(store) = shared.store.lock() else {
        return error(500, "Internal error");
    };
    let uuids = |channel: &str| -> String {
        let mut b = String::from("[");
        let users = store.occupants(sub, channel);
        for (i, u) in users.iter().skip(offset).take(limit).enumerate() {
            if i > 0 {
                b.push(',');
            }
            if with_state {
                b.push('{');
                if let Some(s) = store.state_of(sub, channel, u) {
                    b.push_str("\"state\":");
                    b.push_str(s);
                    b.push(',');
                }
                b.push_str("\"uuid\":");
                json_str(&mut b, u);
                b.push('}');
            } else {
                json_str(&mut b, u);
            }
        }
        b.push(']');
        b
    };
    // Flat shape: exactly one channel and no group.
    if let Some(t) = targets {
        if let ([channel], true) = (t.channels.as_slice(), t.groups.is_empty()) {
            let occupancy = store.occupants(sub, channel).len();
            let mut b = format!("{{\"message\":\"OK\",\"occupancy\":{occupancy},\"service\":\"Presence\",\"status\":200");
            if with_uuids {
                b.push_str(",\"uuids\":");
                b.push_str(&uuids(channel));
            }
            b.push('}');
            return (200, b);
        }
    }
    let channels: Vec<String> = match targets {
        Some(t) => t.expand(&store, sub).into_iter().collect(),
        None => store.occupied_channels(sub).into_iter().cloned().collect(),
    };
    let mut b = String::from("{\"message\":\"OK\",\"payload\":{\"channels\":{");
    let (mut total_channels, mut total_occupancy) = (0, 0);
    for channel in &channels {
        let occupancy = store.occupants(sub, channel).len();
        if occupancy == 0 {
            continue;
        }
        if total_channels > 0 {
            b.push(',');
        }
        total_channels += 1;
        total_occupancy += occupancy;
        json_str(&mut b, channel);
        b.push_str(&format!(":{{\"occupancy\":{occupancy}"));
        if with_uuids {
            b.push_str(",\"uuids\":");
            b.push_str(&uuids(channel));
        }
        b.push('}');
    }
    b.push_str(&format!(
        "}},\"total_channels\":{total_channels},\"total_occupancy\":{total_occupancy}}},\"service\":\"Presence\",\"status\":200}}"
    ));
    (200, b)
}

/// Cached answers kept at most; past it the expired ones go, then all.
const HERE_NOW_CACHE_ENTRIES: usize = 1024;

/// here_now through the answer cache ([`super::Options::here_now_cache`]),
/// then held for [`super::Options::here_now_delay`].
fn cached_here_now(
    shared: &Shared,
    req: &HttpRequest,
    sub: &str,
    compute: impl FnOnce() -> Reply,
) -> Reply {
    let ttl = u64::try_from(shared.options.here_now_cache.as_millis()).unwrap_or(u64::MAX);
    let reply = if ttl == 0 {
        compute()
    } else {
        // What selects the answer; never the user, the SDK or a signature.
        let mut key = format!("{sub}\n{}", req.path);
        for p in ["channel-group", "disable_uuids", "state", "limit", "offset"] {
            key.push('\n');
            key.push_str(&req.param(p).unwrap_or_default());
        }
        let now = shared.clock.now_ms();
        let hit = shared.here_now_cache.lock().ok().and_then(|c| {
            c.get(&key)
                .filter(|(expires, _)| *expires > now)
                .map(|(_, r)| r.clone())
        });
        match hit {
            Some(reply) => reply,
            None => {
                let reply = compute();
                if reply.0 == 200 {
                    if let Ok(mut cache) = shared.here_now_cache.lock() {
                        if cache.len() >= HERE_NOW_CACHE_ENTRIES {
                            cache.retain(|_, (expires, _)| *expires > now);
                        }
                        if cache.len() >= HERE_NOW_CACHE_ENTRIES {
                            cache.clear();
                        }
                        cache.insert(key, (now.saturating_add(ttl), reply.clone()));
                    }
                }
                reply
            }
        }
    };
    shared.here_now_calls.fetch_add(1, Ordering::SeqCst);
    let hold = shared.options.here_now_delay;
    if !hold.is_zero() {
        std::thread::sleep(hold);
    }
    reply
}

fn where_now(shared: &Shared, sub: &str, user: &str) -> Reply {
    let Ok(store) = shared.store.lock() else {
        return error(500, "Internal error");
    };
    let mut b = String::from("{\"message\":\"OK\",\"payload\":{\"channels\":");
    json_list(&mut b, store.where_now(sub, user));
    b.push_str("},\"service\":\"Presence\",\"status\":200}");
    (200, b)
}

fn set_state(shared: &Shared, req: &HttpRequest, sub: &str, user: &str, t: &Targets) -> Reply {
    let Some(state) = req.param("state").filter(|s| !s.is_empty()) else {
        return error(400, "No state specified.");
    };
    if !crate::json::is_object(&state) {
        return error(400, "Invalid JSON specified.");
    }
    let now = shared.clock.now_ms();
    let Ok(mut store) = shared.store.lock() else {
        return error(500, "Internal error");
    };
    let mut fits = true;
    for channel in t.expand(&store, sub) {
        fits &= store.set_state(sub, &channel, user, &state, now);
    }
    shared.changed.notify_all();
    if !fits {
        return error(503, "Presence store full");
    }
    (
        200,
        format!(
            "{{\"message\":\"OK\",\"payload\":{state},\"service\":\"Presence\",\"status\":200}}"
        ),
    )
}

fn get_state(shared: &Shared, sub: &str, user: &str, t: &Targets) -> Reply {
    let Ok(store) = shared.store.lock() else {
        return error(500, "Internal error");
    };
    if let ([channel], true) = (t.channels.as_slice(), t.groups.is_empty()) {
        let state = store.state_of(sub, channel, user).unwrap_or("{}");
        let mut b = String::from("{\"channel\":");
        json_str(&mut b, channel);
        b.push_str(&format!(",\"message\":\"OK\",\"payload\":{state},\"service\":\"Presence\",\"status\":200,\"uuid\":"));
        json_str(&mut b, user);
        b.push('}');
        return (200, b);
    }
    let mut b = String::from("{\"message\":\"OK\",\"payload\":{\"channels\":{");
    let mut first = true;
    for channel in t.expand(&store, sub) {
        let state = store.state_of(sub, &channel, user);
        if state.is_none() && !t.channels.contains(&channel) {
            continue;
        }
        if !first {
            b.push(',');
        }
        first = false;
        json_str(&mut b, &channel);
        b.push(':');
        b.push_str(state.unwrap_or("{}"));
    }
    b.push_str("}},\"service\":\"Presence\",\"status\":200,\"uuid\":");
    json_str(&mut b, user);
    b.push('}');
    (200, b)
}

/// The presence timeout a request asks for: `heartbeat=` seconds (300 when
/// absent or empty, at least 20).
fn timeout_of(req: &HttpRequest) -> Result<u64, Reply> {
    match req.param("heartbeat").filter(|v| !v.is_empty()) {
        None => Ok(300),
        Some(v) => v
            .parse::<u64>()
            .map(|s| s.max(20))
            .map_err(|_| error(400, "Invalid heartbeat value")),
    }
}

/// `state={"ch":{…},…}` → (channel, state JSON) pairs.
fn state_map(req: &HttpRequest) -> Result<Vec<(String, String)>, Reply> {
    let Some(text) = req.param("state").filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    let invalid = || error(400, "Invalid JSON specified.");
    if crate::json::validate(text.as_bytes()).is_err() {
        return Err(invalid());
    }
    let mut c = Cursor::new(&text);
    let mut out = Vec::new();
    c.begin_object().map_err(|_| invalid())?;
    let mut first = true;
    while let Some(key) = c.next_key(&mut first).map_err(|_| invalid())? {
        let kind = c.peek_kind().map_err(|_| invalid())?;
        let raw = c.skip_value().map_err(|_| invalid())?;
        if kind == Kind::Object {
            out.push((key.into_owned(), raw.to_string()));
        }
    }
    Ok(out)
}

fn heartbeat(shared: &Shared, req: &HttpRequest, sub: &str, t: &Targets) -> Reply {
    let timeout = match timeout_of(req) {
        Ok(t) => t,
        Err(reply) => return reply,
    };
    let states = match state_map(req) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let user = user_of(req);
    let now = shared.clock.now_ms();
    let Ok(mut store) = shared.store.lock() else {
        return error(500, "Internal error");
    };
    let channels = t.expand(&store, sub);
    // State first: a join then carries it as `data`, and a user already
    // present gets a state-change only when the state really changed.
    let mut fits = true;
    for (channel, state) in states {
        if channels.contains(&channel) {
            fits &= store.set_state(sub, &channel, &user, &state, now);
        }
    }
    for channel in &channels {
        fits &= store.heartbeat(sub, channel, &user, timeout, now);
    }
    shared.changed.notify_all();
    if !fits {
        return error(503, "Presence store full");
    }
    (200, OK_ACK.to_string())
}

fn leave(shared: &Shared, req: &HttpRequest, sub: &str, t: &Targets) -> Reply {
    let user = user_of(req);
    let now = shared.clock.now_ms();
    let Ok(mut store) = shared.store.lock() else {
        return error(500, "Internal error");
    };
    for channel in t.expand(&store, sub) {
        store.remove(sub, &channel, &user, "leave", now);
    }
    shared.changed.notify_all();
    (
        200,
        r#"{"action":"leave","message":"OK","service":"Presence","status":200}"#.to_string(),
    )
}

/// Releases a long-poll waiter slot when dropped.
struct WaiterSlot<'a>(&'a Shared);
impl Drop for WaiterSlot<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

fn subscribe(shared: &Shared, req: &HttpRequest, sub: &str, t: &Targets) -> Reply {
    const PNPRES: &str = "-pnpres";
    let tt: u64 = match req.param("tt").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => match v.parse() {
            Ok(n) => n,
            Err(_) => return error(400, "Invalid timetoken"),
        },
    };
    let timeout = match timeout_of(req) {
        Ok(t) => t,
        Err(reply) => return reply,
    };
    let user = user_of(req);
    let watch_channels: Vec<&str> = t
        .channels
        .iter()
        .filter_map(|c| c.strip_suffix(PNPRES))
        .collect();
    let watch_groups: Vec<&str> = t
        .groups
        .iter()
        .filter_map(|g| g.strip_suffix(PNPRES))
        .collect();
    // Subscribing to a plain channel or group makes the user present.
    let join = Targets {
        channels: t
            .channels
            .iter()
            .filter(|c| !c.ends_with(PNPRES))
            .cloned()
            .collect(),
        groups: t
            .groups
            .iter()
            .filter(|g| !g.ends_with(PNPRES))
            .cloned()
            .collect(),
    };
    let now = shared.clock.now_ms();
    let Ok(mut store) = shared.store.lock() else {
        return error(500, "Internal error");
    };
    if !(join.channels.is_empty() && join.groups.is_empty()) {
        let mut fits = true;
        for channel in join.expand(&store, sub) {
            fits &= store.heartbeat(sub, &channel, &user, timeout, now);
        }
        if !fits {
            shared.changed.notify_all();
            return error(503, "Presence store full");
        }
        shared.changed.notify_all();
    }
    if tt == 0 {
        // Reserve a timetoken: every later event gets a larger one.
        let current = store.next_timetoken(now);
        return (
            200,
            format!("{{\"m\":[],\"t\":{{\"r\":1,\"t\":\"{current}\"}}}}"),
        );
    }
    if shared.waiters.fetch_add(1, Ordering::SeqCst) >= shared.options.max_waiters {
        shared.waiters.fetch_sub(1, Ordering::SeqCst);
        return error(503, "Too many long-poll requests");
    }
    let _slot = WaiterSlot(shared);
    // A hold too long for the clock (Options are user input) waits until
    // the server stops instead of overflowing.
    let deadline = Instant::now().checked_add(shared.options.long_poll_hold);
    loop {
        // Group membership can change while we wait: read it once per round.
        let groups: Vec<(&str, Vec<String>)> = watch_groups
            .iter()
            .map(|g| (*g, store.group_channels(sub, g)))
            .collect();
        let mut m = String::from("[");
        let mut count = 0;
        let mut last = tt;
        for e in store
            .events
            .iter()
            .filter(|e| e.sub == sub && e.timetoken > tt)
        {
            let via = if watch_channels.contains(&e.channel.as_str()) {
                Some(format!("{}{PNPRES}", e.channel))
            } else {
                groups
                    .iter()
                    .find(|(_, chans)| chans.contains(&e.channel))
                    .map(|(g, _)| format!("{g}{PNPRES}"))
            };
            let Some(via) = via else { continue };
            if count > 0 {
                m.push(',');
            }
            count += 1;
            last = e.timetoken;
            m.push_str("{\"a\":\"1\",\"b\":");
            json_str(&mut m, &via);
            m.push_str(",\"c\":");
            json_str(&mut m, &format!("{}{PNPRES}", e.channel));
            m.push_str(&format!(",\"d\":{},\"f\":0,\"k\":", e.payload));
            json_str(&mut m, sub);
            m.push_str(&format!(
                ",\"p\":{{\"r\":1,\"t\":\"{}\"}},\"u\":{}}}",
                e.timetoken, e.meta
            ));
            if count == 100 {
                break;
            }
        }
        m.push(']');
        let left = deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        });
        if count > 0 || left.is_zero() || shared.stop.load(Ordering::SeqCst) {
            // The cursor is the last timetoken issued, never the clock: an
            // event created after this answer always gets a larger one.
            let next = if count == 100 {
                last
            } else {
                store.last_issued().max(tt)
            };
            return (
                200,
                format!("{{\"m\":{m},\"t\":{{\"r\":1,\"t\":\"{next}\"}}}}"),
            );
        }
        store = match shared
            .changed
            .wait_timeout(store, left.min(Duration::from_millis(250)))
        {
            Ok((guard, _)) => guard,
            Err(_) => return error(500, "Internal error"),
        };
    }
}

fn channel_group(
    shared: &Shared,
    req: &HttpRequest,
    sub: &str,
    group: &str,
    tail: &[&str],
) -> Reply {
    const DONE: &str =
        r#"{"error":false,"message":"OK","service":"channel-registry","status":200}"#;
    let Ok(mut store) = shared.store.lock() else {
        return error(500, "Internal error");
    };
    match tail {
        ["remove"] => {
            store.remove_group(sub, group);
            (200, DONE.to_string())
        }
        [] => {
            let add = list_param(req, "add");
            let remove = list_param(req, "remove");
            if add.is_empty() && remove.is_empty() {
                let mut b = String::from("{\"error\":false,\"payload\":{\"channels\":");
                json_list(&mut b, &store.group_channels(sub, group));
                b.push_str(",\"group\":");
                json_str(&mut b, group);
                b.push_str("},\"service\":\"channel-registry\",\"status\":200}");
                return (200, b);
            }
            // Bounded like the service: 2,000 channels per group, and here
            // also 10,000 groups per keyset.
            const MAX_GROUP_CHANNELS: usize = 2_000;
            const MAX_GROUPS: usize = 10_000;
            match store.edit_group(sub, group, add, &remove, MAX_GROUPS, MAX_GROUP_CHANNELS) {
                Ok(()) => (200, DONE.to_string()),
                Err(why @ "Maximum number of keysets reached") => error(503, why),
                Err(why) => error(400, why),
            }
        }
        _ => not_found(req),
    }
}
