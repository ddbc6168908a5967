#![no_main]
//! `cargo +nightly fuzz run sasl`: see fuzz/README.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    xmppd_actors::fuzzing::sasl(data);
});
