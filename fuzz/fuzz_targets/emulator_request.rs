#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pubnub_presence::emulator::fuzz_request(data);
});
