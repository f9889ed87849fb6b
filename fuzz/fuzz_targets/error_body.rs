#![no_main]
use libfuzzer_sys::fuzz_target;
use pubnub_presence::decode;

fuzz_target!(|data: &[u8]| {
    let _ = decode::error(403, data);
    let _ = decode::ack(data);
    let _ = pubnub_presence::__internal::json::validate(data);
});
