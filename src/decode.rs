//! Sans-IO decoding: response bytes in, typed results out.
//!
//! For use with your own HTTP stack: build a request with a builder's
//! `request()`, send `GET origin + path + "?" + query`, then
//! - if the HTTP status is not 2xx, call [`error`];
//! - else call the decoder for the call you made.
//!
//! Every decoder borrows from `body` where it can and never panics, on any
//! bytes.

pub use crate::envelope::decode_ack as ack;
pub use crate::envelope::error_from_response as error;
pub use crate::presence::events::decode as events;
pub use crate::presence::here_now::decode as here_now;
pub use crate::presence::user_state::decode_get as get_state;
pub use crate::presence::user_state::decode_set as set_state;
pub use crate::presence::where_now::decode as where_now;
