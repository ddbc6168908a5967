//! Microbenchmarks of the hot pieces of the engine crate (xmppd-actors): serialising a
//! stanza, a SCRAM exchange as the server verifies it, and a signal's trip through the
//! registry. Parsing stream chunks into stanzas is in `parser.rs`.
//!
//! `cargo bench -p xmppd-bench` (not part of the test command).

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use minidom::Element;
use std::hint::black_box;
use std::time::{Duration, Instant};
use xmppd_actors::registry::Registry;
use xmppd_actors::signals::Signal;
use xmppd_bench::scram::{Client, Mechanism};
use xmppd_proto::auth::sasl::{Claim, DecoyKey, Exchange, Mech, Step};
use xmppd_proto::auth::scram::Credentials;
use xmppd_proto::net::tls::ChannelBinding;
use xmppd_proto::stanza::ErrorCondition;

fn xml_writer(c: &mut Criterion) {
    let el: Element = "<message xmlns='jabber:client' from='user0@bench.test/load0' \
        to='user1@bench.test/load1' type='chat' id='m42'><body>123456789012 42 &amp; more</body></message>"
        .parse()
        .expect("xml");
    c.bench_function("xml_writer::to_bytes message", |b| {
        b.iter(|| xmppd_proto::xml::writer::to_bytes(black_box(&el)))
    });
}

/// One SCRAM-SHA-256 exchange as the server runs it (rsasl with stored keys), the
/// client side answered by the driver's own SCRAM client (its salted password is
/// cached after the first round, so the figure is dominated by the server's work).
fn scram_exchange(c: &mut Criterion) {
    let creds = Credentials::derive("pw", 4096, false);
    let decoy = DecoyKey([7; 32]);
    let run = |mech: Mech, cmech: Mechanism| {
        let mut client = Client::new(cmech, "user0", "pw");
        let first = client.initial();
        let claim = xmppd_proto::auth::sasl::claim(mech, &first).expect("claim");
        assert_eq!(claim, Claim::User("user0".into()));
        let mut ex = Exchange::start(
            mech,
            &claim,
            "bench.test",
            Some(creds.clone()),
            ChannelBinding::default(),
            &decoy,
            4096,
        )
        .expect("start");
        let mut input = first;
        loop {
            match ex.step(&input) {
                Step::Challenge(ch) => input = client.respond(&ch).expect("client"),
                Step::Success(who, extra) => {
                    client
                        .verify_final(extra.as_deref().unwrap_or_default())
                        .expect("server signature");
                    return who;
                }
                Step::Failure(f) => panic!("SCRAM failed: {f:?}"),
            }
        }
    };
    c.bench_function("sasl SCRAM-SHA-256 exchange (stored keys)", |b| {
        b.iter(|| run(Mech::ScramSha256, Mechanism::ScramSha256))
    });
    c.bench_function("sasl SCRAM-SHA-1 exchange (stored keys)", |b| {
        b.iter(|| run(Mech::ScramSha1, Mechanism::ScramSha1))
    });
    let mut g = c.benchmark_group("scram credentials");
    g.sample_size(20);
    g.bench_function("Credentials::derive 4096 iterations", |b| {
        b.iter(|| Credentials::derive(black_box("pw"), 4096, false))
    });
    g.finish();
}

/// A signal through the registry actor. Wiring real sessions needs a whole server
/// context and a socket per session, so no session is bound here: the message
/// travels to the registry's mailbox, is routed (domain check, full-JID lookup,
/// bare-JID fallback) and ends in the undeliverable path, which bounces an error
/// back towards the (equally absent) sender. The round trip is measured with
/// `send().await`, so it includes the mailbox hand-off and the reply.
/// `Signal::from_stanza` and `Signal::bounce` are measured on their own as well.
fn registry(c: &mut Criterion) {
    let el: Element = "<message xmlns='jabber:client' from='user0@bench.test/load0' \
        to='user1@bench.test/load1' type='chat' id='m1'><body>123456789012 1</body></message>"
        .parse()
        .expect("xml");
    c.bench_function("Signal::from_stanza", |b| {
        b.iter_batched(
            || el.clone(),
            |e| Signal::from_stanza(e).expect("signal"),
            BatchSize::SmallInput,
        )
    });
    let sig = Signal::from_stanza(el.clone()).expect("signal");
    c.bench_function("Signal::bounce", |b| {
        b.iter(|| {
            sig.bounce(ErrorCondition::ServiceUnavailable, None)
                .expect("bounce")
        })
    });
    let sys = actix_rt::System::new();
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let addr = sys.block_on(async move {
        use actix::Actor;
        Registry::new(vec!["bench.test".to_string()], log).start()
    });
    c.bench_function("registry: route a message to an unbound JID", |b| {
        b.iter_custom(|iters| {
            let addr = addr.clone();
            let sig = sig.clone();
            sys.block_on(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let _ = addr.send(sig.clone()).await;
                }
                start.elapsed()
            })
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = xml_writer, scram_exchange, registry
}
criterion_main!(benches);
