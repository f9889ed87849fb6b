//! `where_now`: which channels a user is on.

use crate::client::PubNub;
use crate::envelope;
use crate::error::{Error, Result};
use crate::json::string_list;
use crate::presence::targets::{target_setters, Targets};
use crate::request::{self, Request};
use std::borrow::Cow;

/// The result of `where_now`.
///
/// Iterating it goes through the channel names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhereNowResult<'a> {
    /// The channels the user is present on (in arbitrary order).
    pub channels: Vec<Cow<'a, str>>,
}

/// A [`WhereNowResult`] that owns all its data: what `execute()` returns.
pub type WhereNow = WhereNowResult<'static>;

impl<'a> WhereNowResult<'a> {
    /// Converts into a result that owns all its data.
    pub fn into_owned(self) -> WhereNow {
        WhereNowResult {
            channels: crate::presence::events::owned_list(self.channels),
        }
    }

    /// The channel names as `String`s, PubNub's documented
    /// `Vec<String>` (no copy for names the result already owns).
    pub fn into_channels(self) -> Vec<String> {
        self.channels.into_iter().map(Cow::into_owned).collect()
    }

    /// The channel names: the same as `self.channels.iter()`.
    pub fn iter(&self) -> std::slice::Iter<'_, Cow<'a, str>> {
        self.channels.iter()
    }
}

impl<'a> IntoIterator for WhereNowResult<'a> {
    type Item = Cow<'a, str>;
    type IntoIter = std::vec::IntoIter<Cow<'a, str>>;
    /// The channel names, moved out of the result.
    fn into_iter(self) -> Self::IntoIter {
        self.channels.into_iter()
    }
}

impl<'r, 'a> IntoIterator for &'r WhereNowResult<'a> {
    type Item = &'r Cow<'a, str>;
    type IntoIter = std::slice::Iter<'r, Cow<'a, str>>;
    /// The channel names, borrowed.
    fn into_iter(self) -> Self::IntoIter {
        self.channels.iter()
    }
}

impl PubNub {
    /// Which channels a user is on (by default the client's own user).
    ///
    /// ```no_run
    /// # let pubnub = pubnub_presence::PubNub::builder().subscribe_key("demo").user_id("me").build()?;
    /// let response = pubnub.where_now().user_id("device-7").execute()?;
    /// println!("device-7 is on {:?}", response.channels);
    /// # Ok::<(), pubnub_presence::Error>(())
    /// ```
    pub fn where_now(&self) -> WhereNowBuilder<'_> {
        WhereNowBuilder {
            pubnub: self,
            targets: Targets::default(),
        }
    }
}

/// Builder for `where_now`, from [`PubNub::where_now`].
#[must_use = "a builder does nothing until execute()"]
#[derive(Debug)]
pub struct WhereNowBuilder<'p> {
    pubnub: &'p PubNub,
    /// Only its user id is used.
    targets: Targets,
}

impl WhereNowBuilder<'_> {
    target_setters! {
        /// The user to look up (default: the client's user id).
        user_id;
    }

    /// Builds the request without sending it.
    pub fn request(&self) -> Result<Request> {
        let config = self.pubnub.config();
        request::finish(config, self.targets.user_url(config)?)
    }

    /// Sends the request and decodes the answer.
    pub fn execute(self) -> Result<WhereNow> {
        let req = self.request()?;
        self.pubnub
            .execute(req, |body| decode(body).map(WhereNowResult::into_owned))
    }
}

/// Decodes a where_now body: `payload.channels`, an array of names.
pub fn decode(body: &[u8]) -> Result<WhereNowResult<'_>> {
    let env = envelope::parse::<0>(body, [])?;
    let payload = env
        .payload
        .ok_or_else(|| Error::decode(0, "where_now body has no payload"))?;
    let mut c = payload.cursor();
    c.begin_object()?;
    let mut channels = None;
    let mut first = true;
    while let Some(key) = c.next_key(&mut first)? {
        if key == "channels" {
            channels = Some(string_list(&mut c)?);
        } else {
            c.skip_value()?;
        }
    }
    let channels =
        channels.ok_or_else(|| Error::decode(payload.offset, "payload has no channels"))?;
    Ok(WhereNowResult { channels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let cases: [(&str, &[&str]); 3] = [
            (
                r#"{"status": 200, "message": "OK", "payload": {"channels": ["a"]}, "service": "Presence"}"#,
                &["a"],
            ),
            (
                r#"{"message":"OK","payload":{"channels":["c1","c3","c2"]},"service":"Presence","status":200}"#,
                &["c1", "c3", "c2"],
            ),
            (r#"{"payload": {"channels": []}}"#, &[]),
        ];
        for (body, want) in cases {
            let r = decode(body.as_bytes()).unwrap();
            assert_eq!(r.channels, want, "{body}");
            assert_eq!(r.iter().count(), want.len());
            assert_eq!((&r).into_iter().count(), want.len());
            let owned: WhereNow = r.into_owned();
            assert_eq!(owned.clone().into_channels(), want);
            assert_eq!(owned.into_iter().collect::<Vec<_>>(), want);
        }
        for bad in [
            r#"{"status":200}"#,
            r#"{"payload":{}}"#,
            r#"{"payload":{"channels":[1]}}"#,
        ] {
            assert!(
                matches!(
                    decode(bad.as_bytes()).map_err(Error::into_kind),
                    Err(crate::ErrorKind::Decode { .. })
                ),
                "{bad}"
            );
        }
    }
}
