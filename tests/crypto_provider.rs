//! A program that installs its own rustls `CryptoProvider` (for example
//! aws-lc-rs, for post-quantum key exchange) gets it: the client uses the
//! process-wide provider when one is installed, and ring only otherwise.
//! Its own test binary, because the installed provider is process-wide.
#![cfg(feature = "tls")]

use pubnub_presence::{ErrorKind, PubNub, TransportErrorKind};

#[test]
fn an_installed_provider_is_the_one_used() {
    // ring with every cipher suite taken away: no TLS version is usable
    // with it, so a client that used it cannot be built for https, while
    // one that ignored it (and used its own ring) would be.
    #[allow(deprecated)] // since rustls 0.23.48: no post-quantum key exchange
    let mut crippled = rustls::crypto::ring::default_provider();
    crippled.cipher_suites.clear();
    crippled
        .install_default()
        .expect("no provider installed yet in this process");

    let err = PubNub::builder()
        .subscribe_key("demo")
        .user_id("u")
        .origin("https://127.0.0.1:9")
        .build()
        .expect_err("the installed provider has no cipher suite");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Transport {
                kind: TransportErrorKind::Tls,
                ..
            }
        ),
        "{err:?}"
    );

    // Plain http does not touch the provider.
    PubNub::builder()
        .subscribe_key("demo")
        .user_id("u")
        .origin("http://127.0.0.1:9")
        .build()
        .expect("http needs no crypto provider");
}
