//! Sans-IO decoding: response bytes in, typed results out.
//!
//! For use with your own HTTP stack: build a request with a builder's
//! `request()`, send `GET origin + path + "?" + query`, then
//! - if the HTTP status is not 2xx, call [`error`];
//! - else call the decoder for the call you made.
//!
//! Every decoder borrows from `body` where it can and never panics, on any
//! bytes.
//!
//! ```
//! use pubnub_presence::{decode, PubNub};
//! # fn main() -> Result<(), pubnub_presence::Error> {
//! let pubnub = PubNub::builder()
//!     .subscribe_key("demo")
//!     .user_id("device-42")
//!     .origin("http://127.0.0.1:8090")
//!     .build()?;
//! // 1. Build the request; nothing is sent.
//! let req = pubnub.here_now().channels(vec!["lobby".into()]).request()?;
//! assert_eq!(req.path(), "/v2/presence/sub-key/demo/channel/lobby");
//! assert!(req.url().starts_with("http://127.0.0.1:8090/v2/presence/"));
//!
//! // 2. Send it with any HTTP client; here is a body the service returns.
//! let (status, body) = (200, br#"{"message":"OK","occupancy":2,"service":"Presence","status":200,"uuids":["kim","glen"]}"#);
//!
//! // 3. Decode: borrowed from `body`, no allocation per occupant.
//! assert_eq!(status, 200); // otherwise: return Err(decode::error(status, body))
//! let here = decode::here_now(body, Some("lobby"))?;
//! assert_eq!(here.total_occupancy, 2);
//! assert_eq!(here.channels[0].occupants[1].user_id, "glen");
//!
//! // A server error carried in a body, as the service sometimes sends with 200:
//! let e = decode::ack(br#"{"status":503,"error":1,"message":"Service Unavailable","service":"Presence"}"#);
//! assert_eq!(e.unwrap_err().status(), Some(503));
//! # Ok(()) }
//! ```

pub use crate::envelope::decode_ack as ack;
pub use crate::envelope::error_from_response as error;
pub use crate::presence::events::decode as events;
pub use crate::presence::here_now::decode as here_now;
pub use crate::presence::user_state::decode_get as get_state;
pub use crate::presence::user_state::decode_set as set_state;
pub use crate::presence::where_now::decode as where_now;
