#![no_main]
//! `cargo +nightly fuzz run fast_parser_diff`: the hand-written stream parser against
//! rxml's (`xmppd_proto::xml::fast_parser::differential`); see fuzz/README.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    xmppd_proto::xml::fast_parser::differential::fuzz(data);
});
