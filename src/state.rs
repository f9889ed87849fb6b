//! User state: how it is represented and how it is serialized.
//!
//! PubNub's docs give state the type `serde_json::Value`, or `Vec<u8>` of
//! JSON "if you're not using the default serde serialization framework".
//! This crate follows that switch:
//!
//! | feature `serde` | [`State`] is | state setters accept |
//! |---|---|---|
//! | off (default) | `Cow<'a, [u8]>`: the exact JSON bytes of the value, borrowed from the response body | `miniserde::Serialize` |
//! | on | `serde_json::Value` | `serde::Serialize` |
//!
//! A user without state has the state `null` (the bytes `null`, or
//! `Value::Null`).

use crate::error::{Error, Result};
#[cfg(not(feature = "serde"))]
use std::borrow::Cow;

/// A user's presence state, as decoded from a response.
///
/// Without the `serde` feature: the raw JSON bytes of the value, borrowed
/// from the response body where possible (`Cow::Borrowed`).
#[cfg(not(feature = "serde"))]
pub type State<'a> = Cow<'a, [u8]>;

/// A user's presence state, as decoded from a response.
///
/// With the `serde` feature: a `serde_json::Value`.
#[cfg(feature = "serde")]
pub type State<'a> = serde_json::Value;

/// The bound on user state passed to setters (`miniserde::Serialize`
/// without the `serde` feature, `serde::Serialize` with it).
#[cfg(not(feature = "serde"))]
pub trait Serialize: miniserde::Serialize {}
#[cfg(not(feature = "serde"))]
impl<T: miniserde::Serialize + ?Sized> Serialize for T {}

/// The bound on user state passed to setters (`miniserde::Serialize`
/// without the `serde` feature, `serde::Serialize` with it).
#[cfg(feature = "serde")]
pub trait Serialize: serde::Serialize {}
#[cfg(feature = "serde")]
impl<T: serde::Serialize + ?Sized> Serialize for T {}

/// The state of "no state": JSON `null`.
pub fn null_state<'a>() -> State<'a> {
    #[cfg(not(feature = "serde"))]
    {
        Cow::Borrowed(b"null")
    }
    #[cfg(feature = "serde")]
    {
        serde_json::Value::Null
    }
}

/// Turns the raw bytes of a JSON value (already validated by the parser)
/// into a [`State`]. `offset` is where the value starts in the body.
#[cfg_attr(not(feature = "serde"), allow(clippy::unnecessary_wraps))]
pub(crate) fn from_raw(raw: &str, offset: usize) -> Result<State<'_>> {
    #[cfg(not(feature = "serde"))]
    {
        let _ = offset;
        Ok(Cow::Borrowed(raw.as_bytes()))
    }
    #[cfg(feature = "serde")]
    {
        serde_json::from_str(raw).map_err(|_| Error::decode(offset, "state is not valid json"))
    }
}

/// Converts a decoded state into one that owns its bytes.
pub(crate) fn into_owned(state: State<'_>) -> State<'static> {
    #[cfg(not(feature = "serde"))]
    {
        // "No state" is the common case: keep it static, no allocation.
        if *state == *b"null" {
            return null_state();
        }
        Cow::Owned(state.into_owned())
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
    if json.as_bytes().first() != Some(&b'{') {
        return Err(Error::input(
            argument,
            "state must serialize to a json object",
        ));
    }
    Ok(json)
}

/// Checks that `json` is a JSON object, the only form presence state takes.
pub(crate) fn check_json_object(json: &str, argument: &'static str) -> Result<()> {
    if crate::json::is_object(json) {
        Ok(())
    } else {
        Err(Error::input(argument, "state must be a json object"))
    }
}

/// The JSON text of a state value: its raw bytes without `serde`,
/// `Value::to_string` with it.
pub fn state_json<'s>(state: &'s State<'_>) -> std::borrow::Cow<'s, str> {
    #[cfg(not(feature = "serde"))]
    {
        String::from_utf8_lossy(state)
    }
    #[cfg(feature = "serde")]
    {
        std::borrow::Cow::Owned(state.to_string())
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
        let not_objects: Vec<Value> = vec![
            Value::Null,
            Value::Bool(true),
            Value::Number(Number::U64(1)),
            Value::String("x".into()),
            Value::Array(Default::default()),
        ];
        for v in not_objects {
            assert_eq!(
                to_json_object(&v, "state").unwrap_err(),
                Error::input("state", "state must serialize to a json object")
            );
        }
        assert_eq!(&*null_state(), b"null");
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
