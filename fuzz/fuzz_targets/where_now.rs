#![no_main]
use libfuzzer_sys::fuzz_target;
use pubnub_presence::decode;

fuzz_target!(|data: &[u8]| {
    let _ = decode::where_now(data);
});
