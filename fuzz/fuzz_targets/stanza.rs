#![no_main]
//! `cargo +nightly fuzz run stanza`: see fuzz/README.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    xmppd_actors::fuzzing::stanza(data);
});
