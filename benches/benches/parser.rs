//! The two stream parsers side by side: `StreamParser` (rxml + xso into minidom) and
//! `FastParser` (hand-written), on the chat traffic a session reads.
//!
//! `cargo bench -p xmppd-bench --bench parser` (not part of the test command). Each group
//! reports elements (stanzas) per second; the time per iteration divided by the stanza
//! count is the cost per stanza.

use criterion::{Bencher, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use xmppd_proto::xml::fast_parser::FastParser;
use xmppd_proto::xml::fast_parser::differential::Parser;
use xmppd_proto::xml::log_mask::StreamMasker;
use xmppd_proto::xml::stream_parser::{Limits, StreamEvent, StreamParser};

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='bench.test' version='1.0' xml:lang='en'>";

/// The same message as `engine.rs`'s stream_parser group.
fn message(i: usize) -> String {
    format!(
        "<message to='user1@bench.test/load1' type='chat' id='m{i}'>\
         <body>123456789012 {i}</body></message>"
    )
}

/// What a modern client sends with a chat message (chat state, receipt request,
/// origin id), and around it.
fn rich_message(i: usize) -> String {
    format!(
        "<message to='juliet@bench.test' type='chat' id='a{i:08x}' xml:lang='en'>\
         <body>Wherefore art thou, Romeo? &lt;3 #{i}</body>\
         <active xmlns='http://jabber.org/protocol/chatstates'/>\
         <request xmlns='urn:xmpp:receipts'/>\
         <origin-id xmlns='urn:xmpp:sid:0' id='o{i:08x}'/></message>"
    )
}

fn mixed(i: usize) -> String {
    match i % 4 {
        0 => "<presence><show>away</show><status>at lunch</status><priority>5</priority>\
             <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://gajim.org' \
             ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>"
            .to_string(),
        1 => format!("<iq type='get' id='r{i}'><query xmlns='jabber:iq:roster'/></iq>"),
        _ => rich_message(i),
    }
}

/// N stanzas in one read, the parser reused (as a connection does).
fn one_chunk(c: &mut Criterion, group: &str, stanza: fn(usize) -> String) {
    fn run<P: Parser>(b: &mut Bencher, chunk: &str, n: usize) {
        let mut p = P::new(Limits::default());
        let mut out = Vec::with_capacity(n + 1);
        p.feed(HEADER, &mut out).expect("header");
        b.iter(|| {
            out.clear();
            p.feed(black_box(chunk.as_bytes()), &mut out)
                .expect("parses");
            assert_eq!(out.len(), n);
        })
    }
    const N: usize = 100;
    let chunk: String = (0..N).map(stanza).collect();
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("rxml", |b| run::<StreamParser>(b, &chunk, N));
    g.bench_function("fast", |b| run::<FastParser>(b, &chunk, N));
    g.finish();
}

/// One message arriving in 16-byte pieces (a slow link, or TLS records split).
fn small_pieces(c: &mut Criterion) {
    fn run<P: Parser>(b: &mut Bencher, one: &str) {
        let mut p = P::new(Limits::default());
        let mut out = Vec::with_capacity(4);
        p.feed(HEADER, &mut out).expect("header");
        b.iter(|| {
            out.clear();
            for piece in one.as_bytes().chunks(16) {
                p.feed(black_box(piece), &mut out).expect("parses");
            }
            assert!(matches!(out.first(), Some(StreamEvent::Stanza(_))));
        })
    }
    let one = message(7);
    let mut g = c.benchmark_group("parser: 1 message in 16-byte chunks");
    g.throughput(Throughput::Elements(1));
    g.bench_function("rxml", |b| run::<StreamParser>(b, &one));
    g.bench_function("fast", |b| run::<FastParser>(b, &one));
    g.finish();
}

/// A new stream: header and first stanza (a parser per stream, as after STARTTLS).
fn fresh_stream(c: &mut Criterion) {
    fn run<P: Parser>(b: &mut Bencher, doc: &[u8]) {
        b.iter(|| {
            let mut p = P::new(Limits::default());
            let mut out = Vec::with_capacity(2);
            p.feed(black_box(doc), &mut out).expect("parses");
            assert_eq!(out.len(), 2);
        })
    }
    let mut doc = HEADER.to_vec();
    doc.extend_from_slice(message(1).as_bytes());
    let mut g = c.benchmark_group("parser: new stream, header + 1 message");
    g.throughput(Throughput::Elements(1));
    g.bench_function("rxml", |b| run::<StreamParser>(b, &doc));
    g.bench_function("fast", |b| run::<FastParser>(b, &doc));
    g.finish();
}

/// The log masker every read also goes through (`xml::log_mask::StreamMasker`, run
/// whether or not the record is written), next to the parser it accompanies.
fn log_mask(c: &mut Criterion) {
    const N: usize = 100;
    let chunk: String = (0..N).map(mixed).collect();
    let mut g = c.benchmark_group("log mask: 100 mixed stanzas in one chunk");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("scan", |b| {
        let mut m = StreamMasker::new();
        let _ = m.mask(HEADER);
        b.iter(|| {
            let _ = m.mask(black_box(chunk.as_bytes()));
        })
    });
    g.finish();
}

fn parsers(c: &mut Criterion) {
    one_chunk(c, "parser: 100 chat messages in one chunk", message);
    one_chunk(
        c,
        "parser: 100 rich chat messages in one chunk",
        rich_message,
    );
    one_chunk(c, "parser: 100 mixed stanzas in one chunk", mixed);
    small_pieces(c);
    fresh_stream(c);
    log_mask(c);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = parsers
}
criterion_main!(benches);
