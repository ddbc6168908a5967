//! Differential checking against [`crate::xml::stream_parser::StreamParser`], shared by
//! `actors/tests/fast_parser_diff.rs`, the cargo-fuzz target `fast_parser_diff` and the
//! parser benchmark: both parsers behind one trait, a run that records everything
//! observable, and the comparison of two runs.

use super::FastParser;
use crate::stream::error::Condition;
use crate::xml::stream_parser::{Limits, StreamEvent, StreamParser};

/// The two parsers behind one face.
pub trait Parser {
    fn new(limits: Limits) -> Self;
    fn feed(&mut self, data: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), Condition>;
    fn parks(&self) -> bool;
    fn at_stanza_boundary(&self) -> bool;
    /// Park and resume (as an idle connection does), when between stanzas.
    fn park_and_resume(&mut self, limits: Limits);
}

/// The trait for each parser type: the same calls, by name.
macro_rules! face {
    ($($t:ident),+) => {$(
        impl Parser for $t {
            fn new(limits: Limits) -> Self {
                $t::new(limits)
            }
            fn feed(&mut self, data: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), Condition> {
                $t::feed(self, data, out).map_err(|e| e.condition)
            }
            fn parks(&self) -> bool {
                self.park().is_some()
            }
            fn at_stanza_boundary(&self) -> bool {
                $t::at_stanza_boundary(self)
            }
            fn park_and_resume(&mut self, limits: Limits) {
                if let Some(parked) = self.park() {
                    *self = $t::resume(limits, &parked);
                }
            }
        }
    )+};
}
face!(StreamParser, FastParser);

/// Everything observable from one run: per piece fed, the events it produced (in
/// their `Debug` form, which shows text nodes one by one), the parser's state after
/// it; then the error, if any.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub steps: Vec<(Vec<String>, bool, bool)>,
    pub error: Option<Condition>,
    /// The stanzas, for a comparison by `Element`'s own equality too.
    pub stanzas: Vec<minidom::Element>,
}

/// Feed `data` in pieces of the given sizes (the last piece takes the rest); with
/// `park`, the parser is parked and resumed after every piece that leaves it between
/// stanzas.
pub fn run<P: Parser>(data: &[u8], limits: Limits, sizes: &[usize], park: bool) -> Outcome {
    let mut p = P::new(limits);
    let mut steps = Vec::new();
    let mut stanzas = Vec::new();
    let mut error = None;
    let mut rest = data;
    let mut sizes = sizes.iter().copied();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut out = Vec::new();
        let r = p.feed(chunk, &mut out);
        let evs = out.iter().map(|e| format!("{e:?}")).collect();
        stanzas.extend(out.into_iter().filter_map(|e| match e {
            StreamEvent::Stanza(el) => Some(el),
            _ => None,
        }));
        steps.push((evs, p.parks(), p.at_stanza_boundary()));
        if park && r.is_ok() {
            p.park_and_resume(limits);
        }
        if let Err(c) = r {
            // an error is final
            assert!(
                p.feed(b"<x/>", &mut Vec::new()).is_err(),
                "parser recovered after {c:?}"
            );
            error = Some(c);
            break;
        }
    }
    Outcome {
        steps,
        error,
        stanzas,
    }
}

/// Both parsers on the same pieces: `Err` describes the first difference.
pub fn compare(data: &[u8], limits: Limits, sizes: &[usize], park: bool) -> Result<(), String> {
    let old = run::<StreamParser>(data, limits, sizes, park);
    let new = run::<FastParser>(data, limits, sizes, park);
    if old.stanzas != new.stanzas {
        return Err(format!(
            "stanzas differ (Element equality)\n  rxml: {:?}\n  fast: {:?}",
            old.stanzas, new.stanzas
        ));
    }
    if old.error != new.error {
        return Err(format!(
            "errors differ: rxml {:?}, fast {:?}",
            old.error, new.error
        ));
    }
    for (i, (a, b)) in old.steps.iter().zip(&new.steps).enumerate() {
        if a != b {
            return Err(format!("piece {i} differs\n  rxml: {a:?}\n  fast: {b:?}"));
        }
    }
    if old.steps.len() != new.steps.len() {
        return Err(format!(
            "pieces fed differ: rxml {}, fast {}",
            old.steps.len(),
            new.steps.len()
        ));
    }
    Ok(())
}

/// Bound sets the fuzzers cycle through: the defaults, and small ones that inputs of
/// a few hundred bytes reach (token 256 is rxml's floor).
pub fn limit_sets() -> [Limits; 3] {
    [
        Limits::default(),
        Limits {
            max_stanza: 300,
            max_depth: 3,
            max_token: 64,
            max_attributes: 3,
        },
        Limits {
            max_stanza: 2000,
            max_depth: 6,
            max_token: 256,
            max_attributes: 8,
        },
    ]
}

/// The cargo-fuzz target: byte 0 picks the bounds and the piece sizes, the rest is
/// the stream. Panics on the first difference.
pub fn fuzz(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let limits = limit_sets()[sel as usize % 3];
    let mut state = (sel as u32) | 1;
    let sizes: Vec<usize> = (0..body.len())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 16) as usize + 1
        })
        .collect();
    let ones = vec![1; body.len()];
    for (sizes, park) in [
        (&sizes[..], sel & 0x80 != 0),
        (&[], false),
        (&ones[..], true),
    ] {
        if let Err(e) = compare(body, limits, sizes, park) {
            panic!("{e}\ninput: {:?}", String::from_utf8_lossy(body));
        }
    }
}
