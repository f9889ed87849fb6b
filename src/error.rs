//! The crate's one error type.

use std::borrow::Cow;
use std::fmt;

/// Everything that can go wrong in a presence call: what went wrong is
/// its [`ErrorKind`], reached with [`Error::kind`].
///
/// Messages are lowercase, say what failed, and never contain keys, tokens
/// or signatures.
///
/// ```
/// use pubnub_presence::{ErrorKind, PubNub};
/// let err = PubNub::builder().user_id("me").build().unwrap_err();
/// match err.kind() {
///     ErrorKind::Input { argument, .. } => assert_eq!(*argument, "subscribe_key"),
///     other => panic!("{other:?}"),
/// }
/// ```
///
/// NOTE(size): one pointer wide (the kind is boxed), so every
/// `Result<T, Error>` is small, `Result<(), Error>` fits in a register and
/// each `?` moves 8 bytes instead of 40. In the size-profile footprint
/// build this took 9.8 KB (no TLS) and 10.2 KB (TLS) of code away, more than any other
/// change; errors are rare, so the one allocation per error costs nothing
/// on the happy path.
#[derive(Clone, PartialEq, Eq)]
pub struct Error(Box<ErrorKind>);

/// What went wrong, from [`Error::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A bad argument, found before any byte was sent.
    Input {
        /// The builder method or configuration field at fault, e.g. `"channels"`.
        argument: &'static str,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// The server answered with an error: an HTTP status of 400 or more, or a
    /// 200 whose body carries `"error"` with a `status` of 400 or more.
    Server(ServerError),
    /// The request did not complete: connection, TLS, timeout, size cap.
    Transport {
        /// Which part of the exchange failed.
        kind: TransportErrorKind,
        /// A short description (never contains the URL's query).
        detail: Cow<'static, str>,
    },
    /// The response body is not what the protocol describes.
    Decode {
        /// Byte offset into the body where decoding stopped.
        offset: usize,
        /// What was expected or what was wrong there.
        reason: &'static str,
    },
}

/// An error reported by the PubNub service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ServerError {
    /// HTTP status, or the body's `status` when a 200 carried an error.
    pub status: u16,
    /// The body's `message`, or a short excerpt of a non-JSON body.
    pub message: String,
    /// The body's `service`, e.g. `"Presence"` or `"Access Manager"`.
    pub service: String,
    /// `payload.channels` of an Access Manager refusal.
    pub channels: Vec<String>,
    /// `payload.channel-groups` of an Access Manager refusal (names as sent
    /// by the server, which prefixes them with `:`).
    pub channel_groups: Vec<String>,
    /// How many attempts were made (more than 1 when retried).
    pub attempts: u32,
}

/// The kind of an [`ErrorKind::Transport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The host name could not be resolved for now: the name servers did
    /// not answer in time, failed, or could not be reached (an outage;
    /// retryable).
    Dns,
    /// The host name does not exist or has no address (the name servers
    /// answered NXDOMAIN, or no record); not retryable.
    NameNotFound,
    /// The server refused or could not be reached.
    Connect,
    /// A connect, read or whole-call deadline passed.
    Timeout,
    /// TLS handshake or certificate verification failed.
    Tls,
    /// The response body was larger than the configured cap; the connection
    /// was dropped.
    BodyTooLarge,
    /// The server broke the HTTP protocol (bad status line, bad chunking).
    Protocol,
    /// Any other I/O error (e.g. connection reset).
    Io,
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error(Box::new(kind))
    }
}

/// A socket error of a program's own IO (sans-IO use: see
/// [`crate::engine`]), as a transport error: refused →
/// [`Connect`](TransportErrorKind::Connect), timed out or would block →
/// [`Timeout`](TransportErrorKind::Timeout), anything else →
/// [`Io`](TransportErrorKind::Io). All three are retryable.
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match e.kind() {
            Io::ConnectionRefused => TransportErrorKind::Connect,
            Io::TimedOut | Io::WouldBlock => TransportErrorKind::Timeout,
            _ => TransportErrorKind::Io,
        };
        Error::transport(kind, e.to_string())
    }
}

impl Error {
    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.0
    }

    /// What went wrong, by value.
    pub fn into_kind(self) -> ErrorKind {
        *self.0
    }

    /// The server's error, if this is one.
    pub fn server(&self) -> Option<&ServerError> {
        match self.kind() {
            ErrorKind::Server(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP-level status of a server error, if this is one.
    pub fn status(&self) -> Option<u16> {
        self.server().map(|e| e.status)
    }

    /// Whether the failure may clear by itself, so that trying again
    /// later makes sense: connection failures, timeouts, resets, a name
    /// lookup that got no answer ([`TransportErrorKind::Dns`]), HTTP 5xx
    /// and 429. Not: input errors, TLS verification, a name that does not
    /// exist ([`TransportErrorKind::NameNotFound`]), an oversized or
    /// malformed body, other 4xx.
    pub fn is_retryable(&self) -> bool {
        is_retryable(self)
    }

    pub(crate) fn kind_mut(&mut self) -> &mut ErrorKind {
        &mut self.0
    }

    pub(crate) fn input(argument: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::input_cow(argument, reason.into())
    }

    // NOTE(size): one out-of-line copy each, not one per call site.
    #[inline(never)]
    fn input_cow(argument: &'static str, reason: Cow<'static, str>) -> Self {
        ErrorKind::Input { argument, reason }.into()
    }

    pub(crate) fn decode(offset: usize, reason: &'static str) -> Self {
        ErrorKind::Decode { offset, reason }.into()
    }

    pub(crate) fn transport(
        kind: TransportErrorKind,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::transport_cow(kind, detail.into())
    }

    #[inline(never)]
    fn transport_cow(kind: TransportErrorKind, detail: Cow<'static, str>) -> Self {
        ErrorKind::Transport { kind, detail }.into()
    }

    pub(crate) fn from_server(e: ServerError) -> Self {
        ErrorKind::Server(e).into()
    }
}

impl fmt::Debug for Error {
    // Shows the kind alone: `Input { argument: .., reason: .. }`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Input { argument, reason } => {
                f.write_str("invalid ")?;
                f.write_str(argument)?;
                f.write_str(": ")?;
                f.write_str(reason)
            }
            ErrorKind::Server(e) => fmt::Display::fmt(e, f),
            ErrorKind::Transport { kind, detail } => {
                let what = match kind {
                    TransportErrorKind::Dns => "host name lookup failed",
                    TransportErrorKind::NameNotFound => "host name not found",
                    TransportErrorKind::Connect => "connection failed",
                    TransportErrorKind::Timeout => "timed out",
                    TransportErrorKind::Tls => "tls failed",
                    TransportErrorKind::BodyTooLarge => "response body over the size cap",
                    TransportErrorKind::Protocol => "http protocol error",
                    TransportErrorKind::Io => "i/o error",
                };
                f.write_str(what)?;
                if detail.is_empty() {
                    return Ok(());
                }
                f.write_str(": ")?;
                f.write_str(detail)
            }
            ErrorKind::Decode { offset, reason } => {
                f.write_str("malformed response body at byte ")?;
                f.write_str(crate::num::itoa64(*offset as u64).as_str())?;
                f.write_str(": ")?;
                f.write_str(reason)
            }
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("server error ")?;
        f.write_str(crate::num::itoa(u32::from(self.status)).as_str())?;
        for (label, text) in [(" from ", &self.service), (": ", &self.message)] {
            if !text.is_empty() {
                f.write_str(label)?;
                f.write_str(text)?;
            }
        }
        for (label, names) in [
            (" (channels: ", &self.channels),
            (" (channel groups: ", &self.channel_groups),
        ] {
            if names.is_empty() {
                continue;
            }
            f.write_str(label)?;
            for (i, name) in names.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
            }
            f.write_str(")")?;
        }
        if self.attempts > 1 {
            f.write_str(" (after ")?;
            f.write_str(crate::num::itoa(self.attempts).as_str())?;
            f.write_str(" attempts)")?;
        }
        Ok(())
    }
}

/// Whether an error is worth another attempt.
pub(crate) fn is_retryable(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::Transport { kind, .. } => matches!(
            kind,
            TransportErrorKind::Connect
                | TransportErrorKind::Timeout
                | TransportErrorKind::Io
                | TransportErrorKind::Dns
        ),
        ErrorKind::Server(s) => s.status >= 500 || s.status == 429,
        _ => false,
    }
}

impl std::error::Error for Error {}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_messages() {
        let cases: Vec<(Error, &str)> = vec![
            (
                Error::input("channels", "must not be empty"),
                "invalid channels: must not be empty",
            ),
            (
                Error::decode(7, "expected ':'"),
                "malformed response body at byte 7: expected ':'",
            ),
            (
                Error::transport(TransportErrorKind::Timeout, ""),
                "timed out",
            ),
            (
                Error::from_server(ServerError {
                    status: 403,
                    message: "Forbidden".into(),
                    service: "Access Manager".into(),
                    channels: vec!["a".into(), "b".into()],
                    channel_groups: vec![":g".into()],
                    attempts: 1,
                }),
                "server error 403 from Access Manager: Forbidden (channels: a,b) (channel groups: :g)",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn error_is_one_pointer_wide() {
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
        assert_eq!(
            std::mem::size_of::<Result<(), Error>>(),
            std::mem::size_of::<usize>()
        );
        let e = Error::decode(3, "x");
        assert_eq!(format!("{e:?}"), r#"Decode { offset: 3, reason: "x" }"#);
        assert_eq!(e.clone().into_kind(), *e.kind());
        assert_eq!(e.status(), None);
    }
}
