#![no_main]
use libfuzzer_sys::fuzz_target;

// The DNS response parser (compression pointers, CNAME chains, records)
// and the resolv.conf / hosts readers, over arbitrary bytes.
fuzz_target!(|data: &[u8]| {
    pubnub_presence::__internal::fuzz_dns(data);
});
