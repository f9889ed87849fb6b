//! The local presence server on its own, for clients in any language.
//!
//! ```text
//! cargo run --example presence-server --features emulator -- --port 8090
//! cargo run --example presence-server --features emulator -- --help
//! ```
//!
//! Binds 127.0.0.1 only and prints its origin. Ctrl-C (SIGINT) ends the
//! process; the server keeps nothing on disk, so there is nothing to flush.

use pubnub_presence::emulator::{Options, Server};

/// What `--help` prints: the options, the endpoints and what they need.
const USAGE: &str = "\
presence-server: PubNub's presence REST API on 127.0.0.1, in memory.

usage: presence-server [--port N] [--announce-max N] [--auth-key KEY]...

options:
  --port N            port to listen on, 127.0.0.1 only (default 8090)
  --announce-max N    above N users a channel sends interval events
                      instead of per-user events (default 20)
  --auth-key KEY      require `auth=KEY` on every request (repeat for
                      more keys; default: no Access Manager check)
  -h, --help          print this and exit

endpoints (HTTP GET; any subscribe key works, `sub_key` too):
  /v2/presence/sub-key/{sub}/channel/{chs}              here_now
  /v2/presence/sub-key/{sub}                            global here_now
  /v2/presence/sub-key/{sub}/uuid/{user}                where_now
  /v2/presence/sub-key/{sub}/channel/{chs}/heartbeat    heartbeat (`heartbeat=` presence timeout, s)
  /v2/presence/sub-key/{sub}/channel/{chs}/leave        leave
  /v2/presence/sub-key/{sub}/channel/{chs}/uuid/{user}/data  set state (`state=` JSON object)
  /v2/presence/sub-key/{sub}/channel/{chs}/uuid/{user}       get state
  /v2/subscribe/{sub}/{chs}/0                           presence events on `{ch}-pnpres` (`tt=`, `tr=`)
  /v1/channel-registration/sub-key/{sub}/channel-group/{group}  channel groups (`add=`, `remove=`)
  /time/0                                               the server's timetoken

every endpoint but /time/0 requires `?uuid=` (the acting user id; without
it: 400 \"uuid is required\"). {chs} is a comma-separated channel list, or
`,` with `channel-group=` for groups only. here_now takes `state=1`,
`disable_uuids=1`, `limit=`, `offset=`.

example:
  curl 'http://127.0.0.1:8090/v2/presence/sub-key/demo/channel/lobby/heartbeat?uuid=alice'
  curl 'http://127.0.0.1:8090/v2/presence/sub-key/demo/channel/lobby?uuid=alice'
";

fn main() {
    let mut port = 8090u16;
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            print!("{USAGE}");
            return;
        }
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
            eprintln!("presence-server: cannot use {arg:?}");
            eprintln!("usage: presence-server [--port N] [--announce-max N] [--auth-key KEY]...");
            eprintln!("       presence-server --help");
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
    println!("every request needs ?uuid=<user id>; --help lists the endpoints");
    println!("press Ctrl-C to stop");
    loop {
        std::thread::park();
    }
}
