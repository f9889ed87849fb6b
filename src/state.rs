//! User state: how it is represented and how it is serialized.
//!
//! PubNub's docs give state the type `serde_json::Value`, or `Vec<u8>` of
//! JSON "if you're not using the default serde serialization framework".
//! This crate follows that switch:
//!
//! | feature `serde` | [`State`] is | state setters accept |
//! |---|---|---|
//! | off (default) | [`State<'a>`](State): the exact JSON text of the value, borrowed from the response body; `Debug` and `Display` print that text | `miniserde::Serialize`, or JSON text (`set_presence_state_json`) |
//! | on | `serde_json::Value` | `serde::Serialize`, or JSON text |
//!
//! A user without state has the state `null` ([`State::is_null`], or
//! `Value::Null`).
//!
//! These docs (and docs.rs) show the crate without `serde`. With it,
//! `pubnub_presence::State<'a>` is a type alias for `serde_json::Value`
//! (the lifetime is unused), so the methods of the [`State`] struct below
//! (`from_json`, `as_str`, `is_null`, `deserialize`, …) are not there:
//! use `Value`'s own (`state["mood"]`, `state.is_null()`,
//! `serde_json::from_value`), and [`Serialize`] is `serde::Serialize`.
//!
//! # What setters accept
//!
//! Every state setter ([`PubNub::set_presence_state`] and its `_json`
//! form, [`HeartbeatBuilder::state`] / `state_json`,
//! [`Heartbeater::set_state`] / `set_state_json`) checks the state before
//! anything is sent, with the reason in the [`ErrorKind::Input`] error:
//! valid JSON text (a lone surrogate escape such as `"\ud83d"`, which
//! JavaScript writes for a string cut mid-emoji, is valid), a JSON object,
//! at most 128 levels deep (127 for `Heartbeater`, which sends each
//! channel's state inside a map), and with `serde` readable as a
//! `serde_json::Value` (no number beyond `f64` such as `1e400`, at most
//! 127 levels), so that no state set through this crate makes a later
//! `here_now` or `get_presence_state` fail.
//!
//! # Reading states other clients set
//!
//! Without `serde` a state is its JSON text, whatever it holds. With
//! `serde`, lone surrogate escapes are read as U+FFFD (as in names), and a
//! state `serde_json` cannot hold (set by another client: a number beyond
//! `f64`, deep nesting) is given as a `Value::String` holding its exact
//! JSON text, so one user's state does not fail the whole result. A real
//! state is an object or `null`, so `state.is_string()` tells such a state
//! apart.
//!
//! [`PubNub::set_presence_state`]: crate::PubNub::set_presence_state
//! [`HeartbeatBuilder::state`]: crate::presence::heartbeat::HeartbeatBuilder::state
//! [`Heartbeater::set_state`]: crate::Heartbeater::set_state
//! [`ErrorKind::Input`]: crate::ErrorKind::Input

use crate::error::{Error, Result};
use std::borrow::Cow;
#[cfg(not(feature = "serde"))]
use std::fmt;

/// A user's presence state, as decoded from a response: the JSON text of
/// the value, exactly as the server sent it.
///
/// Without the `serde` feature (this type): borrowed from the response
/// body where possible, so a decoded result allocates nothing per state.
/// `Debug` and `Display` print the JSON text; [`State::as_str`] and
/// [`State::as_bytes`] give it (the body was checked to be UTF-8);
/// [`State::deserialize`] turns it into your own `miniserde` type.
/// Equality compares the text, not the value (`{"a":1}` ≠ `{"a": 1}`).
///
/// With the `serde` feature, `State` is instead a type alias for
/// `serde_json::Value`, as PubNub's docs describe, and the methods below
/// are not there (these docs are built without `serde`; see the
/// [module docs](crate::state)).
///
/// ```
/// # #[cfg(not(feature = "serde"))] {
/// use pubnub_presence::State;
/// let state = State::from_json(r#"{"mood":"happy","battery":87}"#)?;
/// assert_eq!(state.as_str(), r#"{"mood":"happy","battery":87}"#);
/// assert_eq!(format!("{state:?}"), r#"{"mood":"happy","battery":87}"#);
/// assert!(!state.is_null());
///
/// #[derive(miniserde::Deserialize)]
/// struct Device { battery: u8 }
/// assert_eq!(state.deserialize::<Device>()?.battery, 87);
/// # }
/// # Ok::<(), pubnub_presence::Error>(())
/// ```
#[cfg(not(feature = "serde"))]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct State<'a>(Cow<'a, str>);

/// A user's presence state, as decoded from a response.
///
/// With the `serde` feature: a `serde_json::Value`, as PubNub's docs
/// describe (the lifetime is unused). Without it, a type of this crate
/// holding the JSON text. See the [module docs](crate::state).
#[cfg(feature = "serde")]
pub type State<'a> = serde_json::Value;

#[cfg(not(feature = "serde"))]
impl<'a> State<'a> {
    /// The state `null`: what a user without state has.
    pub const fn null() -> State<'static> {
        State(Cow::Borrowed("null"))
    }

    /// A state from JSON text, checked to be exactly one JSON value
    /// (borrowed, not copied). For building results by hand, e.g. in tests.
    pub fn from_json(json: &'a str) -> Result<Self> {
        crate::json::validate(json.as_bytes())?;
        Ok(State(Cow::Borrowed(json.trim())))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JSON text as bytes (what PubNub's docs call the `Vec<u8>` form).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether the state is JSON `null` (no state set, or not requested).
    pub fn is_null(&self) -> bool {
        self.as_str() == "null"
    }

    /// Deserializes the state into your own type with `miniserde` (for
    /// `serde` types, turn on the `serde` feature: state is then a
    /// `serde_json::Value`). A state that does not fit `T` is a decode
    /// error.
    pub fn deserialize<T: miniserde::Deserialize>(&self) -> Result<T> {
        miniserde::json::from_str(self.as_str())
            .map_err(|_| Error::decode(0, "state does not match the requested type"))
    }

    /// Converts into a state that owns its text.
    pub fn into_owned(self) -> State<'static> {
        // "No state" is the common case: keep it static, no allocation.
        if self.is_null() {
            return State::null();
        }
        State(Cow::Owned(self.0.into_owned()))
    }

    /// The JSON text as an owned `String` (copied only if borrowed).
    pub fn into_string(self) -> String {
        self.0.into_owned()
    }

    /// The JSON text as owned bytes: PubNub's documented `Vec<u8>` form.
    pub fn into_bytes(self) -> Vec<u8> {
        self.into_string().into_bytes()
    }
}

#[cfg(not(feature = "serde"))]
impl Default for State<'_> {
    /// `null`.
    fn default() -> Self {
        State::null()
    }
}

#[cfg(not(feature = "serde"))]
impl fmt::Debug for State<'_> {
    /// The JSON text, as is: `{"mood":"happy"}`, not a list of bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(not(feature = "serde"))]
impl fmt::Display for State<'_> {
    /// The JSON text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(not(feature = "serde"))]
impl AsRef<str> for State<'_> {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(not(feature = "serde"))]
impl AsRef<[u8]> for State<'_> {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(not(feature = "serde"))]
impl PartialEq<str> for State<'_> {
    /// Compares the JSON text.
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

#[cfg(not(feature = "serde"))]
impl PartialEq<&str> for State<'_> {
    /// Compares the JSON text.
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The bound on user state passed to setters (`miniserde::Serialize`
/// without the `serde` feature, `serde::Serialize` with it). Both crates
/// implement it for `&T`, so setters taking a value also take a reference.
#[cfg(not(feature = "serde"))]
pub trait Serialize: miniserde::Serialize {}
#[cfg(not(feature = "serde"))]
impl<T: miniserde::Serialize + ?Sized> Serialize for T {}

/// The bound on user state passed to setters (`miniserde::Serialize`
/// without the `serde` feature, `serde::Serialize` with it). Both crates
/// implement it for `&T`, so setters taking a value also take a reference.
#[cfg(feature = "serde")]
pub trait Serialize: serde::Serialize {}
#[cfg(feature = "serde")]
impl<T: serde::Serialize + ?Sized> Serialize for T {}

/// The state of "no state": JSON `null`.
pub fn null_state<'a>() -> State<'a> {
    #[cfg(not(feature = "serde"))]
    {
        State::null()
    }
    #[cfg(feature = "serde")]
    {
        serde_json::Value::Null
    }
}

/// Turns the raw text of a JSON value (already validated by the parser)
/// into a [`State`].
///
/// Without `serde`: the text itself, borrowed. With `serde`: the text as
/// `serde_json` reads it, each lone surrogate escape first replaced by
/// `\ufffd` (`serde_json` rejects them; the names of a result get U+FFFD
/// the same way). A state `serde_json` still cannot hold (a number beyond
/// `f64`, such as `1e400`; nesting of 128 levels) becomes a
/// `Value::String` of its exact JSON text, so that one user's state does
/// not fail the whole result: presence state is a JSON object (or `null`),
/// so a string state is always such a one, and nothing is lost.
pub(crate) fn from_raw(raw: &str) -> State<'_> {
    #[cfg(not(feature = "serde"))]
    {
        State(Cow::Borrowed(raw))
    }
    #[cfg(feature = "serde")]
    {
        serde_value(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_string()))
    }
}

/// `raw` (valid JSON text) as a `serde_json::Value`, lone surrogate escapes
/// read as U+FFFD.
#[cfg(feature = "serde")]
fn serde_value(raw: &str) -> serde_json::Result<serde_json::Value> {
    serde_json::from_str(&crate::json::replace_lone_surrogates(raw))
}

/// Converts a decoded state into one that owns its text.
pub(crate) fn into_owned(state: State<'_>) -> State<'static> {
    #[cfg(not(feature = "serde"))]
    {
        state.into_owned()
    }
    #[cfg(feature = "serde")]
    {
        state
    }
}

/// How deeply a state given to a setter may nest: [`json::MAX_DEPTH`]
/// (128) levels, the most this crate reads back.
///
/// [`json::MAX_DEPTH`]: crate::json::MAX_DEPTH
pub(crate) const MAX_STATE_DEPTH: usize = crate::json::MAX_DEPTH;

/// How deeply a state given to `Heartbeater` may nest: one level less than
/// [`MAX_STATE_DEPTH`], because each heartbeat sends it inside the map of
/// per-channel states.
pub(crate) const MAX_CHANNEL_STATE_DEPTH: usize = MAX_STATE_DEPTH - 1;

/// Serializes `value` to compact JSON and checks it like JSON text given to
/// a setter ([`check_json_object`]). `argument` names the setter.
pub(crate) fn to_json_object<T: Serialize + ?Sized>(
    value: &T,
    argument: &'static str,
    max_depth: usize,
) -> Result<String> {
    #[cfg(not(feature = "serde"))]
    let json = miniserde::json::to_string(value);
    #[cfg(feature = "serde")]
    let json = serde_json::to_string(value).map_err(|e| {
        Error::input(
            argument,
            format!("state could not be serialized to json: {e}"),
        )
    })?;
    // The likely mistake: JSON text passed where a value was expected.
    if json.starts_with('"') {
        return Err(Error::input(
            argument,
            "state must serialize to a json object, not a string (json text goes to the `_json` form of the setter)",
        ));
    }
    check_json_object(&json, argument, max_depth)?;
    Ok(json)
}

/// Checks state given as JSON text, the one place where every setter's
/// rules live, each failure with its own reason:
/// - valid JSON text (RFC 8259; a lone surrogate escape is valid);
/// - one JSON object, the only form presence state takes;
/// - nesting at most `max_depth` levels;
/// - with `serde`: readable as a `serde_json::Value` the way the decoders
///   read it (no number beyond `f64`, such as `1e400`; at most 127
///   levels), so that no state this crate sends fails a later read.
pub(crate) fn check_json_object(
    json: &str,
    argument: &'static str,
    max_depth: usize,
) -> Result<()> {
    let mut c = crate::json::Cursor::new(json);
    let kind = c.peek_kind();
    if let Err(e) = c.skip_value().and_then(|_| c.finish()) {
        let reason = match e.into_kind() {
            crate::ErrorKind::Decode { reason, .. } if reason == crate::json::TOO_DEEP => {
                format!("state nests deeper than {max_depth} levels")
            }
            crate::ErrorKind::Decode { offset, reason } => {
                format!("state is not valid json: {reason} at byte {offset}")
            }
            other => format!("state is not valid json: {other}"),
        };
        return Err(Error::input(argument, reason));
    }
    let what = match kind {
        Ok(crate::json::Kind::Object) => None,
        Ok(crate::json::Kind::Array) => Some("an array"),
        Ok(crate::json::Kind::String) => Some("a string"),
        Ok(crate::json::Kind::Number) => Some("a number"),
        Ok(crate::json::Kind::Bool) => Some("a boolean"),
        Ok(crate::json::Kind::Null) => Some("null"),
        Err(_) => Some("empty"),
    };
    if let Some(what) = what {
        return Err(Error::input(
            argument,
            format!("state must be a json object, not {what}"),
        ));
    }
    if max_depth < MAX_STATE_DEPTH && crate::json::nesting_depth(json) > max_depth {
        return Err(Error::input(
            argument,
            format!(
                "state nests deeper than {max_depth} levels (a heartbeat sends it inside its map of per-channel states)"
            ),
        ));
    }
    #[cfg(feature = "serde")]
    if let Err(e) = serde_value(json) {
        return Err(Error::input(
            argument,
            format!("state could not be read back as a serde_json::Value: {e}"),
        ));
    }
    Ok(())
}

/// The JSON text of a state value: [`State::as_str`] without `serde`
/// (borrowed), `Value::to_string` with it.
pub fn state_json<'s>(state: &'s State<'_>) -> Cow<'s, str> {
    #[cfg(not(feature = "serde"))]
    {
        Cow::Borrowed(state.as_str())
    }
    #[cfg(feature = "serde")]
    {
        Cow::Owned(state.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "serde"))]
    #[test]
    fn only_objects() {
        use miniserde::json::{Number, Object, Value};
        let mut obj = Object::new();
        obj.insert("mood".into(), Value::String("happy".into()));
        assert_eq!(
            to_json_object(&obj, "state", MAX_STATE_DEPTH).unwrap(),
            r#"{"mood":"happy"}"#
        );
        // By value and through a reference alike.
        assert_eq!(
            to_json_object(&&obj, "state", MAX_STATE_DEPTH).unwrap(),
            r#"{"mood":"happy"}"#
        );
        let not_objects: Vec<(Value, &str)> = vec![
            (Value::Null, "null"),
            (Value::Bool(true), "a boolean"),
            (Value::Number(Number::U64(1)), "a number"),
            (Value::Array(Default::default()), "an array"),
        ];
        for (v, what) in not_objects {
            assert_eq!(
                to_json_object(&v, "state", MAX_STATE_DEPTH).unwrap_err(),
                Error::input("state", format!("state must be a json object, not {what}"))
            );
        }
        let text = to_json_object(r#"{"mood":"happy"}"#, "state", MAX_STATE_DEPTH).unwrap_err();
        assert!(text.to_string().contains("`_json` form"), "{text}");
        assert!(null_state().is_null());
    }

    /// The reason of the input error `check_json_object` gives, or `None`.
    fn reason_for(json: &str, max_depth: usize) -> Option<String> {
        match check_json_object(json, "state", max_depth).map_err(Error::into_kind) {
            Ok(()) => None,
            Err(crate::ErrorKind::Input { argument, reason }) => {
                assert_eq!(argument, "state");
                Some(reason.into_owned())
            }
            Err(other) => panic!("{json}: {other:?}"),
        }
    }

    #[test]
    fn json_text_checks_give_the_real_reason() {
        let deep = |n: usize| "{\"a\":".repeat(n) + "1" + &"}".repeat(n);
        let cases: Vec<(String, Option<&str>)> = vec![
            (r#"{"mood":"happy"}"#.into(), None),
            // A lone surrogate escape is valid JSON text (RFC 8259 §7).
            (r#"{"name":"abc\ud83d"}"#.into(), None),
            (r#"{"a":"\ud800"}"#.into(), None),
            (
                "[1]".into(),
                Some("state must be a json object, not an array"),
            ),
            (
                "\"\\ud800\"".into(),
                Some("state must be a json object, not a string"),
            ),
            ("null".into(), Some("state must be a json object, not null")),
            (
                "{".into(),
                Some("state is not valid json: expected an object key at byte 1"),
            ),
            (
                "".into(),
                Some("state is not valid json: unexpected end of body at byte 0"),
            ),
            (
                "{} {}".into(),
                Some("state is not valid json: trailing bytes after the json value at byte 3"),
            ),
            (
                r#"{"a":"\x"}"#.into(),
                Some("state is not valid json: invalid escape at byte 7"),
            ),
            (deep(129), Some("state nests deeper than 128 levels")),
        ];
        for (json, want) in cases {
            assert_eq!(
                reason_for(&json, MAX_STATE_DEPTH).as_deref(),
                want,
                "{json}"
            );
        }
        // Heartbeater: one level less, with the reason.
        let at_limit = deep(MAX_CHANNEL_STATE_DEPTH);
        assert_eq!(reason_for(&at_limit, MAX_CHANNEL_STATE_DEPTH), None);
        let over = reason_for(&deep(MAX_CHANNEL_STATE_DEPTH + 1), MAX_CHANNEL_STATE_DEPTH).unwrap();
        assert!(
            over.starts_with("state nests deeper than 127 levels (a heartbeat"),
            "{over}"
        );
        // Without serde 128 levels are accepted (this crate reads them back);
        // serde_json reads at most 127.
        #[cfg(not(feature = "serde"))]
        assert_eq!(reason_for(&deep(128), MAX_STATE_DEPTH), None);
        #[cfg(feature = "serde")]
        assert!(reason_for(&deep(128), MAX_STATE_DEPTH)
            .unwrap()
            .contains("recursion limit exceeded"));
    }

    #[test]
    fn numbers_beyond_f64() {
        // Valid JSON text; serde_json cannot hold it (so with serde no later
        // read of the channel's state could decode it).
        let reason = reason_for(r#"{"n":1e400}"#, MAX_STATE_DEPTH);
        #[cfg(not(feature = "serde"))]
        assert_eq!(reason, None);
        #[cfg(feature = "serde")]
        assert_eq!(
            reason.as_deref(),
            Some("state could not be read back as a serde_json::Value: number out of range at line 1 column 10")
        );
    }

    #[cfg(not(feature = "serde"))]
    #[test]
    fn state_shows_json_text() {
        let body = r#"{"mood":"happy","n":[1,2]}"#;
        let s = from_raw(body);
        assert!(matches!(s.0, Cow::Borrowed(_)));
        assert_eq!(format!("{s:?}"), body);
        assert_eq!(s.to_string(), body);
        assert_eq!(s.as_bytes(), body.as_bytes());
        assert_eq!(s, body);
        assert!(!s.is_null());
        let owned = s.clone().into_owned();
        assert_eq!(owned, s);
        assert_eq!(owned.clone().into_bytes(), body.as_bytes());
        assert_eq!(state_json(&owned), body);
        // null stays static when owned.
        assert!(matches!(
            from_raw("null").into_owned().0,
            Cow::Borrowed("null")
        ));
        assert_eq!(State::default(), State::null());

        #[derive(miniserde::Deserialize, Debug, PartialEq)]
        struct Mood {
            mood: String,
            n: Vec<u8>,
        }
        assert_eq!(
            s.deserialize::<Mood>().unwrap(),
            Mood {
                mood: "happy".into(),
                n: vec![1, 2]
            }
        );
        #[derive(miniserde::Deserialize, Debug)]
        struct Other {
            #[allow(dead_code)]
            battery: u8,
        }
        assert!(matches!(
            s.deserialize::<Other>().map_err(Error::into_kind),
            Err(crate::ErrorKind::Decode { .. })
        ));

        assert_eq!(State::from_json(" {\"a\":1} ").unwrap(), r#"{"a":1}"#);
        assert!(State::from_json("null").unwrap().is_null());
        for bad in ["", "{", "1 2", "{\"a\":}"] {
            assert!(State::from_json(bad).is_err(), "{bad}");
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn only_objects() {
        let v = serde_json::json!({"mood": "happy"});
        assert_eq!(
            to_json_object(&v, "state", MAX_STATE_DEPTH).unwrap(),
            r#"{"mood":"happy"}"#
        );
        for v in [
            serde_json::json!(null),
            serde_json::json!([1]),
            serde_json::json!("x"),
        ] {
            assert!(to_json_object(&v, "state", MAX_STATE_DEPTH).is_err());
        }
        assert_eq!(null_state(), serde_json::Value::Null);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_reads_what_it_can_and_keeps_the_rest_as_text() {
        use serde_json::{json, Value};
        // Lone surrogates: U+FFFD, as in names.
        assert_eq!(
            from_raw(r#"{"name":"abc\ud83d","x":"\ud83d\ude00"}"#),
            json!({"name": "abc\u{fffd}", "x": "😀"})
        );
        // Beyond serde_json: the exact JSON text, as a string.
        for raw in [
            r#"{"n":1e400}"#.to_string(),
            "[".repeat(128) + &"]".repeat(128),
        ] {
            assert_eq!(from_raw(&raw), Value::String(raw.clone()));
        }
        assert_eq!(from_raw("null"), Value::Null);
    }
}
