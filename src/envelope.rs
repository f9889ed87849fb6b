//! The top level of a presence response body: `status`, `error`,
//! `message`, `service`, `payload` and a few call-specific keys, and the
//! rules that turn it into a [`ServerError`].
//!
//! Servers order keys differently (insertion order until 2024,
//! alphabetical since 2025), so the top level is read in one pass that
//! records where each wanted value lies; the decoders then parse those
//! slices in whatever order they need.

#[cfg(test)]
use crate::error::ErrorKind;
use crate::error::{Error, Result, ServerError};
use crate::json::{Cursor, Kind};

/// A value found at the top level: its raw bytes and their body offset.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field<'a> {
    pub raw: &'a str,
    pub offset: usize,
}

impl<'a> Field<'a> {
    pub fn cursor(&self) -> Cursor<'a> {
        Cursor::with_base(self.raw, self.offset)
    }
}

/// The common fields, plus `N` call-specific ones in `extra`.
pub(crate) struct Envelope<'a, const N: usize> {
    pub status: Option<Field<'a>>,
    pub error: Option<Field<'a>>,
    pub message: Option<Field<'a>>,
    pub service: Option<Field<'a>>,
    pub payload: Option<Field<'a>>,
    pub extra: [Option<Field<'a>>; N],
}

/// Reads the top-level object of `body`, keeping the common fields and the
/// ones named in `keys` as raw slices, and fails with the server error the
/// body reports, if any. The whole body is validated on the way.
pub(crate) fn parse<'a, const N: usize>(
    body: &'a [u8],
    keys: [&str; N],
) -> Result<Envelope<'a, N>> {
    parse_at(body, keys, 200)
}

/// [`parse`] for a response whose HTTP status was `http_status`.
fn parse_at<'a, const N: usize>(
    body: &'a [u8],
    keys: [&str; N],
    http_status: u16,
) -> Result<Envelope<'a, N>> {
    let mut extra = [None; N];
    let env = parse_inner(body, http_status, &mut |key, c| {
        let Some(slot) = keys
            .iter()
            .position(|want| *want == key)
            .and_then(|i| extra.get_mut(i))
        else {
            return Ok(false);
        };
        let offset = c.offset();
        *slot = Some(Field {
            raw: c.skip_value()?,
            offset,
        });
        Ok(true)
    })?;
    Ok(Envelope {
        status: env.status,
        error: env.error,
        message: env.message,
        service: env.service,
        payload: env.payload,
        extra,
    })
}

/// The text between two positions of cursors over the same document.
fn probe_text<'a>(from: &Cursor<'a>, to: &Cursor<'a>) -> &'a str {
    from.text_between(to)
}

/// Reads the top-level object of `body` in one pass, handing every value
/// other than `status`/`error`/`message`/`service` to `f`, which may decode
/// it in place (returning `true`) or leave it (`false`, it is skipped).
///
/// The server-error check runs first: an error `f` met while decoding is
/// only reported when the body does not say it is a server error (a 403's
/// `payload` is not a here_now payload).
pub(crate) fn parse_with<'a>(
    body: &'a [u8],
    mut f: impl FnMut(&str, &mut Cursor<'a>) -> Result<bool>,
) -> Result<Envelope<'a, 0>> {
    parse_inner(body, 200, &mut f)
}

/// One copy of the top-level loop for every decoder: the handler is a
/// trait object, not a generic, so it is not duplicated per caller.
fn parse_inner<'a>(
    body: &'a [u8],
    http_status: u16,
    f: &mut dyn FnMut(&str, &mut Cursor<'a>) -> Result<bool>,
) -> Result<Envelope<'a, 0>> {
    let mut env = Envelope {
        status: None,
        error: None,
        message: None,
        service: None,
        payload: None,
        extra: [],
    };
    let mut deferred = None;
    let mut c = Cursor::from_bytes(body)?;
    c.begin_object()?;
    let mut first = true;
    while let Some(key) = c.next_key(&mut first)? {
        c.skip_ws();
        let offset = c.offset();
        let common = matches!(&*key, "status" | "error" | "message" | "service");
        if !common && deferred.is_none() {
            let mut probe = c.clone();
            match f(&key, &mut probe) {
                Ok(true) => {
                    if key == "payload" {
                        env.payload = Some(Field {
                            raw: probe_text(&c, &probe),
                            offset,
                        });
                    }
                    c = probe;
                    continue;
                }
                Ok(false) => {}
                Err(e) => deferred = Some(e),
            }
        }
        let raw = c.skip_value()?;
        let field = Some(Field { raw, offset });
        match &*key {
            "status" => env.status = field,
            "error" => env.error = field,
            "message" => env.message = field,
            "service" => env.service = field,
            "payload" => env.payload = field,
            _ => {}
        }
    }
    c.finish()?;
    env.check(http_status)?;
    match deferred {
        Some(e) => Err(e),
        None => Ok(env),
    }
}

impl<'a, const N: usize> Envelope<'a, N> {
    /// Fails with a [`ServerError`] when the body reports one: a truthy
    /// `error`, or a `status` of 400 or more (PubNub's JS SDK rule; the
    /// service sends `{"status":503,"error":1,…}` with HTTP 200).
    pub fn check(&self, http_status: u16) -> Result<()> {
        let body_status = self.status.and_then(|f| f.cursor().parse_u32().ok());
        let truthy_error = self.error.is_some_and(|f| {
            let raw = f.raw;
            !(raw == "false" || raw == "0" || raw == "null")
        });
        let failing_status = body_status.is_some_and(|s| s >= 400);
        if truthy_error || failing_status || http_status >= 400 {
            let status = body_status
                .filter(|&s| s >= 400 || http_status < 400)
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(http_status);
            return Err(Error::from_server(self.server_error(status)));
        }
        Ok(())
    }

    fn server_error(&self, status: u16) -> ServerError {
        let text = |f: Option<Field<'a>>| {
            f.and_then(|f| f.cursor().parse_str().ok())
                .map(|s| s.into_owned())
                .unwrap_or_default()
        };
        let mut err = ServerError {
            status,
            message: text(self.message),
            service: text(self.service),
            channels: Vec::new(),
            channel_groups: Vec::new(),
            attempts: 1,
        };
        if let Some(payload) = self.payload {
            // Best effort: a malformed payload leaves the lists empty.
            let _ = read_pam_lists(payload.cursor(), &mut err);
        }
        err
    }
}

fn read_pam_lists(mut c: Cursor<'_>, err: &mut ServerError) -> Result<()> {
    if c.peek_kind()? != Kind::Object {
        return Ok(());
    }
    c.begin_object()?;
    let mut first = true;
    while let Some(key) = c.next_key(&mut first)? {
        let target = match &*key {
            "channels" => Some(&mut err.channels),
            "channel-groups" => Some(&mut err.channel_groups),
            _ => None,
        };
        match target {
            Some(list) if c.peek_kind()? == Kind::Array => read_strings(&mut c, list)?,
            _ => {
                c.skip_value()?;
            }
        }
    }
    Ok(())
}

fn read_strings(c: &mut Cursor<'_>, out: &mut Vec<String>) -> Result<()> {
    c.begin_array()?;
    let mut first = true;
    while c.next_element(&mut first)? {
        out.push(c.parse_str()?.into_owned());
    }
    Ok(())
}

/// The error a response reports by its status: `None` for a 2xx, else
/// [`error_from_response`]. Every response the client takes in is checked
/// through this one rule.
pub(crate) fn status_error(http_status: u16, body: &[u8]) -> Option<Error> {
    if (200..300).contains(&http_status) {
        None
    } else {
        Some(error_from_response(http_status, body))
    }
}

/// The error for a response whose HTTP status is not 2xx: from its JSON
/// body when it has one, else with a short excerpt of the body as message.
pub fn error_from_response(http_status: u16, body: &[u8]) -> Error {
    // With a status of 400 or more forced, a JSON body always yields the
    // server error; only a non-JSON body falls through.
    if let Err(e) = parse_at::<0>(body, [], http_status.max(400)) {
        if e.server().is_some() {
            return e;
        }
    }
    Error::from_server(ServerError {
        status: http_status,
        message: excerpt(body),
        service: String::new(),
        channels: Vec::new(),
        channel_groups: Vec::new(),
        attempts: 1,
    })
}

/// Up to 120 characters of a body, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body.get(..body.len().min(120)).unwrap_or_default());
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Decodes a body that carries no result (heartbeat, leave): `Ok` unless it
/// is malformed or reports an error.
pub fn decode_ack(body: &[u8]) -> Result<()> {
    parse::<0>(body, []).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(e: Error) -> ServerError {
        match e.into_kind() {
            ErrorKind::Server(s) => s,
            other => panic!("not a server error: {other:?}"),
        }
    }

    #[test]
    fn ack_bodies() {
        for body in [
            r#"{"status": 200, "message": "OK", "service": "Presence"}"#,
            r#"{"action":"leave","message":"OK","service":"Presence","status":200}"#,
        ] {
            decode_ack(body.as_bytes()).unwrap();
        }
    }

    #[test]
    fn errors_in_200_bodies() {
        let cases = [
            (
                r#"{"status": 503, "message": "Service Unavailable", "error": 1, "service": "Presence"}"#,
                503,
                "Service Unavailable",
            ),
            (
                r#"{"message": "Not found", "error": 1, "service": "Presence"}"#,
                200,
                "Not found",
            ),
            (r#"{"status": 400, "message": "x"}"#, 400, "x"),
        ];
        for (body, status, message) in cases {
            let e = server(decode_ack(body.as_bytes()).unwrap_err());
            assert_eq!((e.status, e.message.as_str()), (status, message), "{body}");
        }
        decode_ack(br#"{"status":200,"error":false}"#).unwrap();
    }

    #[test]
    fn http_errors() {
        let e = server(error_from_response(
            403,
            b"{\"message\":\"Forbidden\",\"payload\":{\"channel-groups\":[\":g1\"],\"channels\":[\"a\",\"b\"]},\"error\":true,\"service\":\"Access Manager\",\"status\":403}\n",
        ));
        assert_eq!(e.status, 403);
        assert_eq!(e.service, "Access Manager");
        assert_eq!(e.channels, ["a", "b"]);
        assert_eq!(e.channel_groups, [":g1"]);
        let e = server(error_from_response(
            502,
            b"<html>\n<h1>Bad Gateway</h1></html>",
        ));
        assert_eq!(e.status, 502);
        assert_eq!(e.message, "<html> <h1>Bad Gateway</h1></html>");
        // A JSON body without an error marker still fails on an error status.
        let e = server(error_from_response(500, br#"{"foo":1}"#));
        assert_eq!(e.status, 500);
        // A marker without a body status takes the HTTP status.
        let e = server(error_from_response(
            404,
            br#"{"error":1,"message":"Not found"}"#,
        ));
        assert_eq!((e.status, e.message.as_str()), (404, "Not found"));
    }

    #[test]
    fn malformed() {
        assert_eq!(
            decode_ack(b"<html>").unwrap_err(),
            Error::decode(0, "expected an object")
        );
        assert_eq!(
            decode_ack(b"{\"status\":200} x").unwrap_err(),
            Error::decode(15, "trailing bytes after the json value")
        );
    }
}
