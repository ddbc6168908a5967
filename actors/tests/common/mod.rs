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

/// Interesting bytes for any XML stream: markup, entity and UTF-8 edges.
pub const XML_TOKENS: &[&[u8]] = &[
    b"<",
    b">",
    b"/>",
    b"</",
    b"&",
    b";",
    b"'",
    b"\"",
    b"=",
    b" ",
    b"<?",
    b"?>",
    b"<!--",
    b"-->",
    b"<![CDATA[",
    b"]]>",
    b"<!DOCTYPE",
    b"&amp;",
    b"&lt;",
    b"&#0;",
    b"&#x10FFFF;",
    b"&lol;",
    b"xmlns=",
    b"xmlns:stream=",
    b"stream:",
    b"jabber:client",
    b"jabber:server",
    b"http://etherx.jabber.org/streams",
    b"</stream:stream>",
    b"<message>",
    b"<iq type='get' id='1'>",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xe2\x82",
    b"\xf4\x90\x80\x80",
    b"\x00",
    b"\xff",
    b"\xef\xbb\xbf",
    b"\n",
];

/// How a test mutates its seeds.
pub struct Mutator {
    /// Interesting byte strings spliced in: [`XML_TOKENS`] and the test's own.
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
                    let n = rng.random_range(0..XML_TOKENS.len() + self.tokens.len());
                    let t = XML_TOKENS
                        .get(n)
                        .unwrap_or_else(|| &self.tokens[n - XML_TOKENS.len()]);
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
