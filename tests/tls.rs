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

/// Starts a TLS server for `names`, with the
/// certificate's validity ending at `not_after` (when given). Returns the port.
fn tls_server(ca: &Ca, names: &[&str], not_after: Option<(i32, u8, u8)>) -> u16 {
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
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .unwrap();
    // The shared loopback server over TLS (it keeps the connection; the
    // calls here make one request each).
    let server = Server::start_with(Some(Arc::new(config)), |_| {
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
