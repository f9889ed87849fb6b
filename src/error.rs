//! The crate's one error type.

use std::borrow::Cow;
use std::fmt;

/// Everything that can go wrong in a presence call.
///
/// Messages are lowercase, say what failed, and never contain keys, tokens
/// or signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A bad argument, found before any byte was sent.
    Input {
        /// The builder method or configuration field at fault, e.g. `"channels"`.
        argument: &'static str,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// The server answered with an error: an HTTP status of 400 or more, or a
    /// 200 whose body carries `"error"` with a `status` of 400 or more.
    /// Boxed so that `Result<T, Error>` stays small on the parser's hot path.
    Server(Box<ServerError>),
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

/// The kind of a [`Error::Transport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The host name did not resolve.
    Dns,
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

impl Error {
    pub(crate) fn input(argument: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Error::Input {
            argument,
            reason: reason.into(),
        }
    }

    pub(crate) fn decode(offset: usize, reason: &'static str) -> Self {
        Error::Decode { offset, reason }
    }

    pub(crate) fn transport(
        kind: TransportErrorKind,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error::Transport {
            kind,
            detail: detail.into(),
        }
    }

    /// The HTTP-level status of a server error, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Server(e) => Some(e.status),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input { argument, reason } => write!(f, "invalid {argument}: {reason}"),
            Error::Server(e) => fmt::Display::fmt(e, f),
            Error::Transport { kind, detail } => {
                let what = match kind {
                    TransportErrorKind::Dns => "host name lookup failed",
                    TransportErrorKind::Connect => "connection failed",
                    TransportErrorKind::Timeout => "timed out",
                    TransportErrorKind::Tls => "tls failed",
                    TransportErrorKind::BodyTooLarge => "response body over the size cap",
                    TransportErrorKind::Protocol => "http protocol error",
                    TransportErrorKind::Io => "i/o error",
                };
                if detail.is_empty() {
                    f.write_str(what)
                } else {
                    write!(f, "{what}: {detail}")
                }
            }
            Error::Decode { offset, reason } => {
                write!(f, "malformed response body at byte {offset}: {reason}")
            }
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server error {}", self.status)?;
        if !self.service.is_empty() {
            write!(f, " from {}", self.service)?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
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
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        Ok(())
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
                Error::Server(Box::new(ServerError {
                    status: 403,
                    message: "Forbidden".into(),
                    service: "Access Manager".into(),
                    channels: vec!["a".into(), "b".into()],
                    channel_groups: vec![":g".into()],
                    attempts: 1,
                })),
                "server error 403 from Access Manager: Forbidden (channels: a,b) (channel groups: :g)",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }
}
