//! The fuzz targets of `xmppd_actors::fuzzing`, run by `cargo test` over their seeds and
//! a few thousand deterministic pseudo-random mutations each (cargo-fuzz runs them for
//! longer, coverage-guided: see fuzz/README.md). Set FUZZ_ITERATIONS for longer runs.

mod common;

use common::{Mutator, iterations};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xmppd_actors::fuzzing;

/// Interesting bytes beyond `common::XML_TOKENS`: addresses and SASL messages.
const TOKENS: &[&[u8]] = &[
    b"@",
    b"/",
    b"to='",
    b"from='",
    b"n=",
    b",r=",
    b"=2C",
    b"=3D",
    b"p=tls-exporter,",
    b"c=biws,",
];

const MUTATOR: Mutator = Mutator {
    tokens: TOKENS,
    steps: 8,
    repeat_len: 32,
    repeats: 20,
    random_run: 32,
};

fn run(name: &str, seeds: Vec<Vec<u8>>, n: usize, target: fn(&[u8])) {
    let mut rng = StdRng::seed_from_u64(0x786d_7070 ^ name.len() as u64);
    for s in &seeds {
        target(s);
    }
    let mut pool = seeds;
    for i in 0..n {
        let base = &pool[rng.random_range(0..pool.len())];
        let input = MUTATOR.mutate(&mut rng, base);
        let r = std::panic::catch_unwind(|| target(&input));
        if r.is_err() {
            panic!(
                "{name}: input {i} failed; add it as a regression test:\n{:?}",
                String::from_utf8_lossy(&input)
            );
        }
        // keep some mutants as new starting points (bounded pool)
        if i % 16 == 0 && pool.len() < 512 && input.len() < 8192 {
            pool.push(input);
        }
    }
}

#[test]
fn stream_parser_survives_mutations() {
    run(
        "stream",
        fuzzing::stream_seeds(),
        iterations(100_000),
        fuzzing::stream_parser,
    );
}

#[test]
fn stanza_handlers_survive_mutations() {
    run(
        "stanza",
        fuzzing::stanza_seeds(),
        iterations(50_000),
        fuzzing::stanza,
    );
}

#[test]
fn sasl_exchanges_survive_mutations() {
    run(
        "sasl",
        fuzzing::sasl_seeds(),
        iterations(50_000),
        fuzzing::sasl,
    );
}

#[test]
fn record_layer_survives_mutations() {
    run(
        "record_layer",
        fuzzing::record_layer_seeds(),
        iterations(50_000),
        fuzzing::record_layer,
    );
}

#[test]
fn random_bytes() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..iterations(10_000) {
        let n = rng.random_range(0..512);
        let v: Vec<u8> = (0..n).map(|_| rng.random()).collect();
        fuzzing::stream_parser(&v);
        fuzzing::stanza(&v);
        fuzzing::sasl(&v);
        fuzzing::record_layer(&v);
    }
}
