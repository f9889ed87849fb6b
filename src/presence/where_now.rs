//! `where_now`: which channels a user is on.

use crate::client::PubNub;
use crate::envelope;
use crate::error::{Error, Result};
use crate::json::string_list;
use crate::request::{self, Request};
use std::borrow::Cow;

/// The result of `where_now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhereNowResult<'a> {
    /// The channels the user is present on (in arbitrary order).
    pub channels: Vec<Cow<'a, str>>,
}

impl WhereNowResult<'_> {
    /// Converts into a result that owns all its data.
    pub fn into_owned(self) -> WhereNowResult<'static> {
        WhereNowResult {
            channels: self
                .channels
                .into_iter()
                .map(|c| Cow::Owned(c.into_owned()))
                .collect(),
        }
    }
}

/// Builder for `where_now`, from [`PubNub::where_now`].
#[must_use = "a builder does nothing until execute()"]
#[derive(Debug)]
pub struct WhereNowBuilder<'p> {
    pubnub: &'p PubNub,
    user_id: Option<String>,
}

impl<'p> WhereNowBuilder<'p> {
    pub(crate) fn new(pubnub: &'p PubNub) -> Self {
        WhereNowBuilder {
            pubnub,
            user_id: None,
        }
    }

    /// The user to look up (default: the client's user id).
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Builds the request without sending it.
    pub fn request(&self) -> Result<Request> {
        let config = self.pubnub.config();
        let user_id = self.user_id.as_deref().unwrap_or(config.user_id());
        request::check_user_id("user_id", user_id)?;
        let mut path = request::presence_path(config);
        request::push_uuid_segment(&mut path, user_id);
        Ok(request::finish(
            config,
            request::base_query(path, config, &[]),
        ))
    }

    /// Sends the request and decodes the answer.
    pub fn execute(self) -> Result<WhereNowResult<'static>> {
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
