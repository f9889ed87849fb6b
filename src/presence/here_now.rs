//! `here_now`: who, and how many, are on channels; and `global_here_now`.
//!
//! The service answers in two shapes (docs/PROTOCOL.md §2): a *flat* one with
//! top-level `occupancy`/`uuids` when exactly one channel and no group was
//! asked for, and a *payload* one (`payload.channels`, `total_channels`,
//! `total_occupancy`) otherwise. Both decode into [`HereNowResult`]; a flat
//! body takes its channel name from the request.

use crate::client::PubNub;
use crate::encode::push_param;
use crate::envelope;
use crate::error::{Error, Result, TransportErrorKind};
use crate::json::{count_elements, Cursor, Kind};
use crate::num::itoa;
use crate::presence::targets::{target_setters, Targets};
use crate::request::{self, Request};
use crate::state::{self, State};
use std::borrow::Cow;

/// The result of `here_now` and `global_here_now`.
///
/// Borrowed from the response body where possible (the sans-IO
/// [`decode`] and `execute_with`); `execute()` returns the owned form,
/// [`HereNow`]. Iterating a result goes through its channels, as in
/// PubNub's docs: `response.iter().for_each(|channel| …)`, or
/// `for channel in &response`.
#[derive(Debug, Clone, PartialEq)]
pub struct HereNowResult<'a> {
    /// Number of channels in the result.
    pub total_channels: u32,
    /// Number of users on all the channels together.
    pub total_occupancy: u32,
    /// One entry per channel (in the server's order, which is arbitrary).
    pub channels: Vec<HereNowChannel<'a>>,
}

/// A [`HereNowResult`] that owns all its data: what `execute()` returns,
/// to keep in a struct or return from a function without a lifetime.
pub type HereNow = HereNowResult<'static>;

/// One channel of a [`HereNowResult`].
#[derive(Debug, Clone, PartialEq)]
pub struct HereNowChannel<'a> {
    /// Channel name (`name.to_string()` or `name.into_owned()` gives a
    /// `String`; `&*name` or `name == "lobby"` work as is).
    pub name: Cow<'a, str>,
    /// Number of users on the channel (right even when occupants are not
    /// requested).
    pub occupancy: u32,
    /// The users, empty with `include_user_ids(false)`.
    pub occupants: Vec<HereNowUser<'a>>,
}

/// One user of a [`HereNowChannel`].
#[derive(Debug, Clone, PartialEq)]
pub struct HereNowUser<'a> {
    /// The user's id (`to_string()` or `into_owned()` gives a `String`).
    pub user_id: Cow<'a, str>,
    /// The user's state on this channel; `null` when none is set or state
    /// was not requested. See [`State`].
    pub state: State<'a>,
}

impl<'a> HereNowResult<'a> {
    /// Converts into a result that owns all its data.
    pub fn into_owned(self) -> HereNow {
        HereNowResult {
            total_channels: self.total_channels,
            total_occupancy: self.total_occupancy,
            channels: self
                .channels
                .into_iter()
                .map(|c| HereNowChannel {
                    name: Cow::Owned(c.name.into_owned()),
                    occupancy: c.occupancy,
                    occupants: c
                        .occupants
                        .into_iter()
                        .map(|u| HereNowUser {
                            user_id: Cow::Owned(u.user_id.into_owned()),
                            state: state::into_owned(u.state),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// The channels, in the server's order: the same as
    /// `self.channels.iter()`.
    pub fn iter(&self) -> std::slice::Iter<'_, HereNowChannel<'a>> {
        self.channels.iter()
    }
}

impl<'a> IntoIterator for HereNowResult<'a> {
    type Item = HereNowChannel<'a>;
    type IntoIter = std::vec::IntoIter<HereNowChannel<'a>>;
    /// The channels, moved out of the result.
    fn into_iter(self) -> Self::IntoIter {
        self.channels.into_iter()
    }
}

impl<'r, 'a> IntoIterator for &'r HereNowResult<'a> {
    type Item = &'r HereNowChannel<'a>;
    type IntoIter = std::slice::Iter<'r, HereNowChannel<'a>>;
    /// The channels, borrowed.
    fn into_iter(self) -> Self::IntoIter {
        self.channels.iter()
    }
}

impl PubNub {
    /// Who, and how many, are on the given channels or channel groups.
    ///
    /// ```no_run
    /// # let pubnub = pubnub_presence::PubNub::builder().subscribe_key("demo").user_id("me").build()?;
    /// let response = pubnub
    ///     .here_now()
    ///     .channels(vec!["lobby".into()])
    ///     .include_state(true)
    ///     .execute()?;
    /// response.iter().for_each(|channel| {
    ///     println!("{}: {} online", channel.name, channel.occupancy);
    ///     for user in &channel.occupants {
    ///         println!("  {} {:?}", user.user_id, user.state);
    ///     }
    /// });
    /// # Ok::<(), pubnub_presence::Error>(())
    /// ```
    pub fn here_now(&self) -> HereNowBuilder<'_> {
        HereNowBuilder {
            pubnub: self,
            targets: Targets::default(),
            include_state: false,
            include_user_ids: true,
            limit: DEFAULT_LIMIT,
            offset: 0,
        }
    }

    /// Who is on every occupied channel of the keyset
    /// (`/v2/presence/sub-key/{sub}`). Not in PubNub's Rust docs; kept
    /// separate so a `here_now` without channels is an error, never an
    /// accidental keyset-wide query.
    pub fn global_here_now(&self) -> GlobalHereNowBuilder<'_> {
        GlobalHereNowBuilder {
            pubnub: self,
            include_state: false,
            include_user_ids: true,
        }
    }
}

/// Builder for `here_now`, from [`PubNub::here_now`].
#[must_use = "a builder does nothing until execute()"]
#[derive(Debug)]
pub struct HereNowBuilder<'p> {
    pubnub: &'p PubNub,
    targets: Targets,
    include_state: bool,
    include_user_ids: bool,
    limit: u32,
    offset: u32,
}

/// The service's (and every SDK's) default page size.
pub const DEFAULT_LIMIT: u32 = 1000;

impl HereNowBuilder<'_> {
    target_setters! {
        /// The channels to get the details of (this or `channel_groups` is required).
        channels;
        /// The channel groups to get the details of.
        channel_groups;
    }
    /// Include each user's state (default `false`).
    pub fn include_state(mut self, include: bool) -> Self {
        self.include_state = include;
        self
    }
    /// Include the user ids (default `true`); occupancy is right either way.
    pub fn include_user_ids(mut self, include: bool) -> Self {
        self.include_user_ids = include;
        self
    }
    /// At most this many users per channel (default 1000).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }
    /// Skip this many users per channel (default 0).
    pub fn offset(mut self, offset: u32) -> Self {
        self.offset = offset;
        self
    }

    /// Builds the request without sending it.
    pub fn request(&self) -> Result<Request> {
        let config = self.pubnub.config();
        let mut query = self.targets.channel_url(config, "")?;
        push_flags(&mut query, self.include_state, self.include_user_ids);
        push_param(&mut query, "limit", itoa(self.limit).as_str());
        if self.offset > 0 {
            push_param(&mut query, "offset", itoa(self.offset).as_str());
        }
        request::finish(config, query)
    }

    /// Sends the request and decodes the answer.
    pub fn execute(mut self) -> Result<HereNow> {
        let req = self.request()?;
        // The one channel's name moves into the result (no copy); it is
        // taken only by a successful decode, so a retried attempt keeps it.
        let mut flat = match self.targets.single_channel() {
            Some(_) => self.targets.channels.pop().map(Cow::Owned),
            None => None,
        };
        self.pubnub.execute(req, |body| {
            decode_named(body, &mut flat).map(HereNowResult::into_owned)
        })
    }

    /// Sends the request and hands the *borrowed* result to `f`: no
    /// allocation per occupant (user ids and states stay slices of the
    /// response body). For small devices that only scan the answer.
    ///
    /// ```no_run
    /// # let pubnub = pubnub_presence::PubNub::builder().subscribe_key("demo").user_id("me").build()?;
    /// let online = pubnub
    ///     .here_now()
    ///     .channels(vec!["lobby".into()])
    ///     .execute_with(|here| here.iter().any(|c| c.occupants.iter().any(|u| u.user_id == "boss")))?;
    /// # Ok::<(), pubnub_presence::Error>(())
    /// ```
    pub fn execute_with<R>(self, f: impl FnOnce(&HereNowResult<'_>) -> R) -> Result<R> {
        let req = self.request()?;
        let flat = self.targets.single_channel();
        let mut f = Some(f);
        self.pubnub
            .execute(req, |body| {
                let result = decode(body, flat)?;
                // Called once: the first successful decode ends the call.
                Ok(f.take().map(|f| f(&result)))
            })?
            .ok_or_else(|| Error::transport(TransportErrorKind::Io, "no response was decoded"))
    }
}

/// Builder for `global_here_now`, from [`PubNub::global_here_now`].
#[must_use = "a builder does nothing until execute()"]
#[derive(Debug)]
pub struct GlobalHereNowBuilder<'p> {
    pubnub: &'p PubNub,
    include_state: bool,
    include_user_ids: bool,
}

impl GlobalHereNowBuilder<'_> {
    /// Include each user's state (default `false`).
    pub fn include_state(mut self, include: bool) -> Self {
        self.include_state = include;
        self
    }
    /// Include the user ids (default `true`).
    pub fn include_user_ids(mut self, include: bool) -> Self {
        self.include_user_ids = include;
        self
    }
    /// Builds the request without sending it.
    pub fn request(&self) -> Result<Request> {
        let config = self.pubnub.config();
        let path = request::presence_path(config);
        let mut query = request::base_query(path, config, &[]);
        push_flags(&mut query, self.include_state, self.include_user_ids);
        request::finish(config, query)
    }
    /// Sends the request and decodes the answer.
    pub fn execute(self) -> Result<HereNow> {
        let req = self.request()?;
        self.pubnub.execute(req, |body| {
            decode(body, None).map(HereNowResult::into_owned)
        })
    }
}

fn push_flags(query: &mut String, include_state: bool, include_user_ids: bool) {
    push_param(
        query,
        "disable_uuids",
        if include_user_ids { "0" } else { "1" },
    );
    push_param(query, "state", if include_state { "1" } else { "0" });
}

/// Decodes a here_now or global here_now body.
///
/// `flat_channel` names the channel of a flat-shaped answer (the one channel
/// the request named); a flat body without it is a decode error.
///
/// Allocations: one `Vec` for the channels and one per channel for its
/// occupants, each sized once; strings are borrowed unless escaped. With the
/// `serde` feature each state becomes a `serde_json::Value`.
pub fn decode<'a>(body: &'a [u8], flat_channel: Option<&'a str>) -> Result<HereNowResult<'a>> {
    decode_named(body, &mut flat_channel.map(Cow::Borrowed))
}

/// [`decode`], with the flat channel's name given as a `Cow` so `execute`
/// can move the request's own `String` into the result instead of copying.
fn decode_named<'a, 'n: 'a>(
    body: &'a [u8],
    flat_channel: &mut Option<Cow<'n, str>>,
) -> Result<HereNowResult<'a>> {
    let mut payload = None;
    let mut occupancy = None;
    let mut users = None;
    envelope::parse_with(body, |key, c| {
        match key {
            "payload" => payload = Some(decode_payload(c)?),
            "occupancy" => occupancy = Some((c.offset(), c.parse_u32()?)),
            "uuids" => users = Some(decode_users(c, occupancy.map(|(_, n)| n))?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if let Some(result) = payload {
        return Ok(result);
    }
    let Some((at, occupancy)) = occupancy else {
        return Err(Error::decode(
            0,
            "here_now body has neither payload nor occupancy",
        ));
    };
    let Some(name) = flat_channel.take() else {
        return Err(Error::decode(
            at,
            "single-channel here_now body for a request without exactly one channel",
        ));
    };
    Ok(HereNowResult {
        total_channels: 1,
        total_occupancy: occupancy,
        channels: vec![HereNowChannel {
            name,
            occupancy,
            occupants: users.unwrap_or_default(),
        }],
    })
}

fn decode_payload<'a>(c: &mut Cursor<'a>) -> Result<HereNowResult<'a>> {
    c.begin_object()?;
    let mut result = HereNowResult {
        total_channels: 0,
        total_occupancy: 0,
        channels: Vec::new(),
    };
    let mut first = true;
    while let Some(key) = c.next_key(&mut first)? {
        match &*key {
            "channels" => result.channels = decode_channels(c)?,
            "total_channels" => result.total_channels = c.parse_u32()?,
            "total_occupancy" => result.total_occupancy = c.parse_u32()?,
            _ => {
                c.skip_value()?;
            }
        }
    }
    Ok(result)
}

fn decode_channels<'a>(c: &mut Cursor<'a>) -> Result<Vec<HereNowChannel<'a>>> {
    if c.peek_kind()? == Kind::Array {
        // Tolerate `[]` for an empty map (some JSON encoders write an empty
        // map as an empty array); any other array is an error.
        let start = c.offset();
        if c.skip_value()? == "[]" {
            return Ok(Vec::new());
        }
        return Err(Error::decode(start, "expected an object of channels"));
    }
    // Grows by doubling: a few allocations, at most one per channel.
    let mut channels = Vec::new();
    c.begin_object()?;
    let mut first = true;
    while let Some(name) = c.next_key(&mut first)? {
        let mut channel = HereNowChannel {
            name,
            occupancy: 0,
            occupants: Vec::new(),
        };
        let mut occupancy = None;
        c.begin_object()?;
        let mut first_field = true;
        while let Some(key) = c.next_key(&mut first_field)? {
            match &*key {
                "occupancy" => {
                    let n = c.parse_u32()?;
                    occupancy = Some(n);
                    channel.occupancy = n;
                }
                "uuids" => channel.occupants = decode_users(c, occupancy)?,
                _ => {
                    c.skip_value()?;
                }
            }
        }
        channels.push(channel);
    }
    Ok(channels)
}

/// `uuids`: an array of strings, or of `{"uuid": …, "state": …}` objects.
///
/// The `Vec` is sized once: from the occupancy when it came first (capped
/// by what the rest of the body could hold, so a hostile count cannot make
/// us allocate), else by counting the elements first.
fn decode_users<'a>(c: &mut Cursor<'a>, occupancy: Option<u32>) -> Result<Vec<HereNowUser<'a>>> {
    let capacity = match occupancy {
        // The smallest occupant, `"x"`, takes 3 bytes plus a comma.
        Some(n) => usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(c.remaining() / 4 + 1),
        None => count_elements(c)?,
    };
    let mut users = Vec::with_capacity(capacity);
    c.begin_array()?;
    let mut first = true;
    while c.next_element(&mut first)? {
        match c.peek_kind()? {
            Kind::String => users.push(HereNowUser {
                user_id: c.parse_str()?,
                state: state::null_state(),
            }),
            Kind::Object => {
                let start = c.offset();
                let mut user_id = None;
                let mut user_state = state::null_state();
                c.begin_object()?;
                let mut first_field = true;
                while let Some(key) = c.next_key(&mut first_field)? {
                    match &*key {
                        "uuid" => user_id = Some(c.parse_str()?),
                        "state" => {
                            user_state = state::from_raw(c.skip_value()?);
                        }
                        _ => {
                            c.skip_value()?;
                        }
                    }
                }
                let user_id =
                    user_id.ok_or_else(|| Error::decode(start, "occupant without uuid"))?;
                users.push(HereNowUser {
                    user_id,
                    state: user_state,
                });
            }
            _ => return Err(c.err("expected an occupant (string or object)")),
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(json: &str) -> State<'static> {
        #[cfg(not(feature = "serde"))]
        {
            State::from_json(json).unwrap().into_owned()
        }
        #[cfg(feature = "serde")]
        {
            serde_json::from_str(json).unwrap()
        }
    }

    fn user(id: &str, state: &str) -> HereNowUser<'static> {
        HereNowUser {
            user_id: Cow::Owned(id.into()),
            state: st(state),
        }
    }

    #[test]
    fn flat_shapes() {
        let cases: [(&str, u32, Vec<HereNowUser<'static>>); 4] = [
            (
                r#"{"status": 200, "message": "OK", "service": "Presence", "uuids": ["u1"], "occupancy": 1}"#,
                1,
                vec![user("u1", "null")],
            ),
            (
                r#"{"message":"OK","occupancy":2,"service":"Presence","status":200,"uuids":[{"state":{"a":[1]},"uuid":"Kim"},{"uuid":"Glen"}]}"#,
                2,
                vec![user("Kim", r#"{"a":[1]}"#), user("Glen", "null")],
            ),
            (
                r#"{"message":"OK","occupancy":3,"service":"Presence","status":200}"#,
                3,
                vec![],
            ),
            (
                r#"{"status": 200, "message": "OK", "occupancy": 0, "uuids": [], "service": "Presence"}"#,
                0,
                vec![],
            ),
        ];
        for (body, occ, users) in cases {
            let r = decode(body.as_bytes(), Some("ch")).unwrap();
            assert_eq!(r.total_channels, 1);
            assert_eq!(r.total_occupancy, occ);
            assert_eq!(r.channels.len(), 1);
            assert_eq!(r.channels[0].name, "ch");
            assert_eq!(r.channels[0].occupancy, occ);
            assert_eq!(r.channels[0].occupants, users, "{body}");
        }
        assert!(decode(br#"{"status":200,"occupancy":1}"#, None).is_err());
    }

    #[test]
    fn payload_shape() {
        let body = br#"{"status": 200, "message": "OK", "payload": {"channels": {"c2": {"uuids": ["a\u00e9"], "occupancy": 1}, "c1": {"occupancy": 4}}, "total_channels": 2, "total_occupancy": 5}, "service": "Presence"}"#;
        let r = decode(body, Some("ignored")).unwrap();
        assert_eq!((r.total_channels, r.total_occupancy), (2, 5));
        assert_eq!(r.channels[0].name, "c2");
        assert_eq!(r.channels[0].occupants, vec![user("aé", "null")]);
        assert_eq!(r.channels[1].name, "c1");
        assert_eq!(r.channels[1].occupancy, 4);
        assert!(r.channels[1].occupants.is_empty());
        let owned = r.clone().into_owned();
        assert_eq!(owned, r);
    }

    #[test]
    fn borrowed_strings() {
        let body = br#"{"occupancy":1,"uuids":[{"uuid":"u","state":{"k":1}}]}"#;
        let r = decode(body, Some("ch")).unwrap();
        assert!(matches!(
            r.channels[0].occupants[0].user_id,
            Cow::Borrowed(_)
        ));
        #[cfg(not(feature = "serde"))]
        {
            let state = r.channels[0].occupants[0].state.as_str();
            assert_eq!(state, r#"{"k":1}"#);
            // A slice of the body, not a copy.
            assert!(body.as_ptr_range().contains(&state.as_ptr()));
        }
    }

    #[test]
    fn iterates_channels() {
        let body = br#"{"payload":{"channels":{"a":{"occupancy":1,"uuids":["u"]},"b":{"occupancy":2}},"total_channels":2,"total_occupancy":3}}"#;
        let r = decode(body, None).unwrap();
        let names: Vec<&str> = r.iter().map(|c| c.name.as_ref()).collect();
        assert_eq!(names, ["a", "b"]);
        let mut total = 0;
        for channel in &r {
            total += channel.occupancy;
        }
        assert_eq!(total, r.total_occupancy);
        let owned: HereNow = r.into_owned();
        let names: Vec<String> = owned.into_iter().map(|c| c.name.into_owned()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn debug_shows_state_as_json() {
        let body = br#"{"occupancy":2,"uuids":[{"uuid":"u","state":{"mood":"happy"}},"v"]}"#;
        let r = decode(body, Some("ch")).unwrap();
        let debug = format!("{r:?}");
        #[cfg(not(feature = "serde"))]
        {
            assert!(
                debug.contains(r#"user_id: "u", state: {"mood":"happy"} }"#),
                "{debug}"
            );
            assert!(debug.contains(r#"user_id: "v", state: null }"#), "{debug}");
        }
        #[cfg(feature = "serde")]
        assert!(debug.contains(r#"String("happy")"#), "{debug}");
        assert!(!debug.contains("[123"), "{debug}");
    }

    /// What JavaScript's `JSON.stringify` writes for a string cut in the
    /// middle of an emoji: a lone surrogate escape. One such occupant must
    /// not fail the whole result.
    #[test]
    fn lone_surrogates_do_not_sink_the_result() {
        let body = br#"{"occupancy":2,"uuids":[{"uuid":"dev\ud83d","state":{"name":"abc\ud83d"}},{"uuid":"ok","state":{"n":1}}]}"#;
        let r = decode(body, Some("ch")).unwrap();
        let users = &r.channels[0].occupants;
        // Names and user ids: U+FFFD in place of the lone surrogate.
        assert_eq!(users[0].user_id, "dev\u{fffd}");
        assert_eq!(users[1].user_id, "ok");
        // State without serde: the JSON text as sent.
        #[cfg(not(feature = "serde"))]
        assert_eq!(users[0].state, r#"{"name":"abc\ud83d"}"#);
        // With serde: read as serde_json would read `\ufffd`.
        #[cfg(feature = "serde")]
        assert_eq!(users[0].state, serde_json::json!({"name": "abc\u{fffd}"}));
        assert_eq!(users[1].state, st(r#"{"n":1}"#));
    }

    /// A state serde_json cannot hold (a number beyond f64, set by another
    /// client) does not fail the result either.
    #[test]
    fn a_state_beyond_serde_json_does_not_sink_the_result() {
        let body = br#"{"payload":{"channels":{"c":{"occupancy":2,"uuids":[{"uuid":"big","state":{"n":1e400}},{"uuid":"ok","state":{"n":1}}]}},"total_channels":1,"total_occupancy":2}}"#;
        let r = decode(body, None).unwrap();
        let users = &r.channels[0].occupants;
        #[cfg(not(feature = "serde"))]
        assert_eq!(users[0].state, r#"{"n":1e400}"#);
        // With serde: its exact JSON text, as a string (a real state is an
        // object), instead of an error for the whole call.
        #[cfg(feature = "serde")]
        assert_eq!(
            users[0].state,
            serde_json::Value::String(r#"{"n":1e400}"#.into())
        );
        assert_eq!(users[1].state, st(r#"{"n":1}"#));
    }

    #[test]
    fn bad_bodies() {
        let cases = [
            (&br#"{"occupancy":-1}"#[..], "expected an unsigned integer"),
            (br#"{"occupancy":4294967296}"#, "number does not fit in u32"),
            (
                br#"{"occupancy":1,"uuids":[1]}"#,
                "expected an occupant (string or object)",
            ),
            (
                br#"{"occupancy":1,"uuids":[{"state":{}}]}"#,
                "occupant without uuid",
            ),
            (
                br#"{"status":200}"#,
                "here_now body has neither payload nor occupancy",
            ),
            (
                br#"{"payload":{"channels":{"a":[]}}}"#,
                "expected an object",
            ),
        ];
        for (body, reason) in cases {
            match decode(body, Some("c")).map_err(Error::into_kind) {
                Err(crate::ErrorKind::Decode { reason: r, .. }) => assert_eq!(r, reason),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }
}
