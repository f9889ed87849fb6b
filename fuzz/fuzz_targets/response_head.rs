#![no_main]
use libfuzzer_sys::fuzz_target;

// The response handling after the HTTP parser: Retry-After and
// Content-Length from arbitrary header bytes (repeated, huge, not numbers),
// the size cap, the error from a non-2xx body, and the retry decision.
fuzz_target!(|data: &[u8]| {
    pubnub_presence::__internal::fuzz_response(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pubnub_presence::__internal::parse_retry_after(text);
    }
    if let [a, b, body @ ..] = data {
        let _ = pubnub_presence::decode::error(u16::from_be_bytes([*a, *b]), body);
    }
});
