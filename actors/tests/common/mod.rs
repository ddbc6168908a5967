//! What the fuzz-style tests share: the iteration count and the byte mutator.

use rand::Rng;
use rand::rngs::StdRng;

/// `FUZZ_ITERATIONS` from the environment, or `default`.
pub fn iterations(default: usize) -> usize {
    std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How a test mutates its seeds.
pub struct Mutator {
    /// Interesting byte strings spliced in.
    pub tokens: &'static [&'static [u8]],
    /// Mutations per input: 1 to `steps - 1`.
    pub steps: usize,
    /// Longest slice repeated, and most repetitions (nesting, long values).
    pub repeat_len: usize,
    pub repeats: usize,
    /// Most random bytes inserted at once.
    pub random_run: usize,
}

impl Mutator {
    pub fn mutate(&self, rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..rng.random_range(1..self.steps) {
            let at = if v.is_empty() {
                0
            } else {
                rng.random_range(0..=v.len())
            };
            match rng.random_range(0..7) {
                0 if !v.is_empty() => {
                    let i = rng.random_range(0..v.len());
                    v[i] ^= 1 << rng.random_range(0..8);
                }
                1 if !v.is_empty() => {
                    let end = (at + rng.random_range(1..16)).min(v.len());
                    v.drain(at.min(end)..end);
                }
                2 | 3 => {
                    let t = self.tokens[rng.random_range(0..self.tokens.len())];
                    v.splice(at..at, t.iter().copied());
                }
                4 if !v.is_empty() => {
                    let start = rng.random_range(0..v.len());
                    let end = (start + rng.random_range(1..self.repeat_len)).min(v.len());
                    let piece = v[start..end].to_vec();
                    for _ in 0..rng.random_range(1..self.repeats) {
                        v.splice(at..at, piece.iter().copied());
                    }
                }
                5 if !v.is_empty() => v.truncate(at),
                _ => {
                    for _ in 0..rng.random_range(1..=self.random_run) {
                        let b: u8 = rng.random();
                        v.insert(at, b);
                    }
                }
            }
        }
        v
    }
}
