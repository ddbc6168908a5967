#![no_main]
//! `cargo +nightly fuzz run stream_parser`: see fuzz/README.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    xmppd_actors::fuzzing::stream_parser(data);
});
