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
/// With the `serde` feature, `State` is `serde_json::Value`, as PubNub's
/// docs describe.
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
/// describe. (Without it, a type of this crate holding the JSON text.)
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
/// into a [`State`]. `offset` is where the value starts in the body.
#[cfg_attr(not(feature = "serde"), allow(clippy::unnecessary_wraps))]
pub(crate) fn from_raw(raw: &str, offset: usize) -> Result<State<'_>> {
    #[cfg(not(feature = "serde"))]
    {
        let _ = offset;
        Ok(State(Cow::Borrowed(raw)))
    }
    #[cfg(feature = "serde")]
    {
        serde_json::from_str(raw).map_err(|_| Error::decode(offset, "state is not valid json"))
    }
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

/// Serializes `value` to compact JSON, requiring a JSON object (the
/// protocol's rule for presence state). `argument` names the setter.
pub(crate) fn to_json_object<T: Serialize + ?Sized>(
    value: &T,
    argument: &'static str,
) -> Result<String> {
    #[cfg(not(feature = "serde"))]
    let json = miniserde::json::to_string(value);
    #[cfg(feature = "serde")]
    let json = serde_json::to_string(value)
        .map_err(|_| Error::input(argument, "state could not be serialized to json"))?;
    match json.as_bytes().first() {
        Some(b'{') => Ok(json),
        // The likely mistake: JSON text passed where a value was expected.
        Some(b'"') => Err(Error::input(
            argument,
            "state must serialize to a json object, not a string (json text goes to the `_json` form of the setter)",
        )),
        _ => Err(Error::input(
            argument,
            "state must serialize to a json object",
        )),
    }
}

/// Checks that `json` is a JSON object, the only form presence state takes.
pub(crate) fn check_json_object(json: &str, argument: &'static str) -> Result<()> {
    if crate::json::is_object(json) {
        Ok(())
    } else {
        Err(Error::input(argument, "state must be a json object"))
    }
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
            to_json_object(&obj, "state").unwrap(),
            r#"{"mood":"happy"}"#
        );
        // By value and through a reference alike.
        assert_eq!(
            to_json_object(&&obj, "state").unwrap(),
            r#"{"mood":"happy"}"#
        );
        let not_objects: Vec<Value> = vec![
            Value::Null,
            Value::Bool(true),
            Value::Number(Number::U64(1)),
            Value::Array(Default::default()),
        ];
        for v in not_objects {
            assert_eq!(
                to_json_object(&v, "state").unwrap_err(),
                Error::input("state", "state must serialize to a json object")
            );
        }
        let text = to_json_object(r#"{"mood":"happy"}"#, "state").unwrap_err();
        assert!(text.to_string().contains("`_json` form"), "{text}");
        assert!(null_state().is_null());
    }

    #[cfg(not(feature = "serde"))]
    #[test]
    fn state_shows_json_text() {
        let body = r#"{"mood":"happy","n":[1,2]}"#;
        let s = from_raw(body, 0).unwrap();
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
            from_raw("null", 0).unwrap().into_owned().0,
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
        assert_eq!(to_json_object(&v, "state").unwrap(), r#"{"mood":"happy"}"#);
        for v in [
            serde_json::json!(null),
            serde_json::json!([1]),
            serde_json::json!("x"),
        ] {
            assert!(to_json_object(&v, "state").is_err());
        }
        assert_eq!(null_state(), serde_json::Value::Null);
    }
}
