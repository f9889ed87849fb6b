//! TLS against a loopback server whose certificate authority the test
//! generates: success with the custom root, and refusals (with the reason in
//! the error) for an unknown issuer, a name mismatch and an expired
//! certificate.
#![cfg(feature = "tls")]

mod common;

use common::{ok_json, Server};

use pubnub_presence::{Error, ErrorKind, PubNub, RetryPolicy, TransportErrorKind};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca() -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pubnub-presence test CA");
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A server configuration with a certificate for `names` issued by `ca`,
/// its validity ending at `not_after` (when given).
fn server_config(
    ca: &Ca,
    names: &[&str],
    not_after: Option<(i32, u8, u8)>,
) -> Arc<rustls::ServerConfig> {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    if let Some((y, m, d)) = not_after {
        params.not_before = rcgen::date_time_ymd(y - 1, m, d);
        params.not_after = rcgen::date_time_ymd(y, m, d);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // The ring provider, as the client uses (src/conn.rs); deprecated
    // since rustls 0.23.48 for lack of post-quantum key exchange.
    #[allow(deprecated)]
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .unwrap();
    Arc::new(config)
}

/// Reads a request head; `false` when the connection ended first.
fn read_request<R: BufRead>(reader: &mut R) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line == "\r\n" => return true,
            Ok(_) => {}
        }
    }
}

/// Starts a TLS server for `names` (the shared loopback server), with the
/// certificate's validity ending at `not_after` (when given). Returns the port.
fn tls_server(ca: &Ca, names: &[&str], not_after: Option<(i32, u8, u8)>) -> u16 {
    let config = server_config(ca, names, not_after);
    // The shared loopback server over TLS (it keeps the connection; the
    // calls here make one request each).
    let server = Server::start_with(Some(config), |_| {
        ok_json(
            r#"{"status":200,"message":"OK","payload":{"channels":["secure"]},"service":"Presence"}"#,
        )
    });
    server.origin.rsplit(':').next().unwrap().parse().unwrap()
}

fn client(port: u16, root: Option<&Ca>) -> PubNub {
    let mut b = PubNub::builder()
        .subscribe_key("k")
        .user_id("u")
        .origin(format!("https://localhost:{port}"))
        .retry_policy(RetryPolicy::none());
    if let Some(ca) = root {
        b = b.root_certificate_pem(ca.cert.pem());
    }
    b.build().unwrap()
}

fn tls_error(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r.map_err(Error::into_kind) {
        Err(ErrorKind::Transport {
            kind: TransportErrorKind::Tls,
            detail,
        }) => detail.into_owned(),
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[test]
fn custom_root_succeeds() {
    let ca = ca();
    let port = tls_server(&ca, &["localhost"], None);
    let r = client(port, Some(&ca)).where_now().execute().unwrap();
    assert_eq!(r.channels, ["secure"]);
}

#[test]
fn default_roots_refuse_an_unknown_issuer() {
    let ca = ca();
    let port = tls_server(&ca, &["localhost"], None);
    let detail = tls_error(client(port, None).where_now().execute());
    assert!(detail.contains("UnknownIssuer"), "{detail}");
}

#[test]
fn hostname_mismatch_is_refused() {
    let ca = ca();
    let port = tls_server(&ca, &["presence.example.com"], None);
    let detail = tls_error(client(port, Some(&ca)).where_now().execute());
    assert!(detail.contains("not valid for name"), "{detail}");
}

#[test]
fn expired_certificate_is_refused() {
    let ca = ca();
    let port = tls_server(&ca, &["localhost"], Some((2001, 1, 1)));
    let detail = tls_error(client(port, Some(&ca)).where_now().execute());
    assert!(detail.contains("certificate expired"), "{detail}");
}

#[test]
fn bad_pem_is_an_input_error() {
    let r = PubNub::builder()
        .subscribe_key("k")
        .user_id("u")
        .root_certificate_pem("not a certificate")
        .build();
    assert!(
        matches!(
            r.as_ref().map_err(Error::kind),
            Err(ErrorKind::Input {
                argument: "root_certificate_pem",
                ..
            })
        ),
        "{r:?}"
    );
}

/// A kept-alive TLS server that answers each request with a response of
/// exactly 4,096 bytes followed, in the same TLS record, by an unsolicited
/// extra response (naming the channel `stale`). Returns the port and the
/// count of connections.
fn stale_bytes_server(ca: &Ca) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let config = server_config(ca, &["localhost"], None);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    let answer = |channel: &str, pad: usize| {
        let body = format!(
            r#"{{"status":200,"message":"OK","payload":{{"channels":["{channel}"]}},"service":"Presence","pad":"{}"}}"#,
            "p".repeat(pad)
        );
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    // The pad that makes the answer 4,096 bytes (a 4-digit length).
    let pad = 4096 - answer("secure", 0).len() - 2;
    let mut bytes = answer("secure", pad);
    assert_eq!(bytes.len(), 4096);
    bytes.push_str(&answer("stale", 0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            count.fetch_add(1, Ordering::SeqCst);
            let (config, bytes) = (config.clone(), bytes.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, stream);
                loop {
                    if !read_request(&mut BufReader::new(&mut tls)) {
                        return;
                    }
                    // One write of under 16 KiB: one TLS record.
                    if tls.write_all(bytes.as_bytes()).is_err() || tls.flush().is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, connections)
}

/// Bytes left after a complete response in the TLS session's decrypted
/// buffer (the socket and our own buffer being empty) mean the
/// connection is not reused: every call reads its own answer, never the
/// stale one (3 of 6 did before).
#[test]
fn a_connection_with_unread_tls_bytes_is_not_reused() {
    let ca = ca();
    let (port, connections) = stale_bytes_server(&ca);
    let p = client(port, Some(&ca));
    for call in 0..6 {
        let r = p.where_now().execute().unwrap();
        assert_eq!(r.channels, ["secure"], "call {call}");
    }
    // Each answer left bytes: a new connection for every call.
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 6);
}
