//! The local presence server on its own, for clients in any language.
//!
//! ```text
//! cargo run --example presence-server --features emulator -- --port 8090
//! ```
//!
//! Binds 127.0.0.1 only and prints its origin. Ctrl-C (SIGINT) ends the
//! process; the server keeps nothing on disk, so there is nothing to flush.

use pubnub_presence::emulator::{Options, Server};

fn main() {
    let mut port = 8090u16;
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let parsed = match (arg.as_str(), value.as_deref()) {
            ("--port", Some(v)) => v.parse().map(|p| port = p).is_ok(),
            ("--announce-max", Some(v)) => v.parse().map(|n| options.announce_max = n).is_ok(),
            ("--auth-key", Some(v)) => {
                options.auth_keys.push(v.to_string());
                true
            }
            _ => false,
        };
        if !parsed {
            eprintln!("usage: presence-server [--port N] [--announce-max N] [--auth-key KEY]...");
            std::process::exit(2);
        }
    }
    let server = match Server::start_with(("127.0.0.1", port), options) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("presence server listening at {}", server.origin());
    println!("press Ctrl-C to stop");
    loop {
        std::thread::park();
    }
}
