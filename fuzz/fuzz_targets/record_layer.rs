#![no_main]
//! `cargo +nightly fuzz run record_layer`: see fuzz/README.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    xmppd_actors::fuzzing::record_layer(data);
});
