//! Bad input gets the stream error RFC 6120 names, and everyone else is served on.

mod common;
use common::*;

const D: &str = "localhost";
const HDR: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// Send `input` on a fresh connection (after STARTTLS and login when `login`), expect
/// stream error `cond`, then check that an already logged-in user is unaffected.
async fn expect_stream_error(
    d: &Daemon,
    bystander: &mut Raw,
    input: &[u8],
    cond: &str,
    login: bool,
) {
    let mut r = if login {
        Raw::login(d.starttls, D, "alice", "alice-pw", "bad")
            .await
            .0
    } else {
        Raw::connect(d.starttls, D).await
    };
    r.try_send(input).await;
    let out = r.read_to_close().await;
    assert!(
        out.contains(&format!(
            "<stream:error><{cond} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        )),
        "expected {cond}, got: {out}"
    );
    assert!(
        out.contains("<stream:stream") || login,
        "a stream header precedes the error: {out}"
    );
    assert!(
        out.trim_end().ends_with("</stream:stream>"),
        "stream closed properly: {out}"
    );
    bystander
        .send("<iq to='localhost' type='get' id='still-there'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let pong = bystander.next_stanza().await;
    assert!(
        pong.contains("id='still-there'") && pong.contains("type='result'"),
        "{pong}"
    );
}

async fn setup() -> (Daemon, Raw) {
    let d = Daemon::start();
    let (b, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "bystander").await;
    (d, b)
}

#[tokio::test]
async fn not_well_formed() {
    let (d, mut b) = setup().await;
    expect_stream_error(
        &d,
        &mut b,
        format!("{HDR}<message><body></message>").as_bytes(),
        "not-well-formed",
        false,
    )
    .await;
    expect_stream_error(
        &d,
        &mut b,
        b"<message><body>hi</body></message></message>",
        "not-well-formed",
        true,
    )
    .await;
}

#[tokio::test]
async fn dtd_and_entities_are_restricted_xml() {
    let (d, mut b) = setup().await;
    let billion = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;'>]><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
    expect_stream_error(&d, &mut b, billion.as_bytes(), "restricted-xml", false).await;
    expect_stream_error(
        &d,
        &mut b,
        format!("{HDR}<message><body>&lol;</body></message>").as_bytes(),
        "restricted-xml",
        false,
    )
    .await;
    expect_stream_error(
        &d,
        &mut b,
        b"<!-- comment --><presence/>",
        "restricted-xml",
        true,
    )
    .await;
    expect_stream_error(&d, &mut b, b"<?target data?>", "restricted-xml", true).await;
}

#[tokio::test]
async fn oversized_stanza_is_policy_violation() {
    let (d, mut b) = setup().await;
    let big = format!(
        "<message to='bob@localhost'><body>{}</body></message>",
        "a".repeat(300 * 1024)
    );
    expect_stream_error(&d, &mut b, big.as_bytes(), "policy-violation", true).await;
    b.expect_silence(std::time::Duration::from_millis(200))
        .await;
}

#[tokio::test]
async fn unknown_host() {
    let (d, mut b) = setup().await;
    let hdr = HDR.replace("to='localhost'", "to='nowhere.example'");
    expect_stream_error(&d, &mut b, hdr.as_bytes(), "host-unknown", false).await;
}

#[tokio::test]
async fn wrong_namespaces() {
    let (d, mut b) = setup().await;
    let s2s = HDR.replace("xmlns='jabber:client'", "xmlns='jabber:server'");
    expect_stream_error(&d, &mut b, s2s.as_bytes(), "invalid-namespace", false).await;
    // a component stream to a hosted domain: no such component
    let comp = HDR.replace("xmlns='jabber:client'", "xmlns='jabber:component:accept'");
    expect_stream_error(&d, &mut b, comp.as_bytes(), "host-unknown", false).await;
    let bad_stream_ns = HDR.replace("http://etherx.jabber.org/streams", "urn:wrong");
    expect_stream_error(
        &d,
        &mut b,
        bad_stream_ns.as_bytes(),
        "invalid-namespace",
        false,
    )
    .await;
    expect_stream_error(
        &d,
        &mut b,
        b"<message xmlns='jabber:server' to='bob@localhost'/>",
        "invalid-namespace",
        true,
    )
    .await;
}

#[tokio::test]
async fn stanzas_before_auth_are_not_authorized() {
    let (d, mut b) = setup().await;
    let mut r = Raw::connect(d.starttls, D).await;
    r.starttls().await;
    r.send("<message to='bob@localhost'><body>sneaky</body></message>")
        .await;
    let out = r.read_to_close().await;
    assert!(
        out.contains("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{out}"
    );
    b.expect_silence(std::time::Duration::from_millis(200))
        .await;
    expect_stream_error(
        &d,
        &mut b,
        format!("{HDR}<iq type='get' id='1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
            .as_bytes(),
        "not-authorized",
        false,
    )
    .await;
}

#[tokio::test]
async fn unsupported_version_and_stanza_type() {
    let (d, mut b) = setup().await;
    expect_stream_error(
        &d,
        &mut b,
        HDR.replace("version='1.0'>", "version='2.0'>").as_bytes(),
        "unsupported-version",
        false,
    )
    .await;
    expect_stream_error(&d, &mut b, b"<foo/>", "unsupported-stanza-type", true).await;
}

#[tokio::test]
async fn invalid_utf8() {
    let (d, mut b) = setup().await;
    expect_stream_error(
        &d,
        &mut b,
        b"<message to='bob@localhost'><body>\xc3\x28</body></message>",
        "unsupported-encoding",
        true,
    )
    .await;
}

#[tokio::test]
async fn second_stream_header_mid_stream() {
    let (d, mut b) = setup().await;
    let header = HDR.trim_start_matches("<?xml version='1.0'?>");
    expect_stream_error(&d, &mut b, header.as_bytes(), "not-well-formed", true).await;
    // with an XML declaration in front it is a processing instruction mid-stream
    expect_stream_error(&d, &mut b, HDR.as_bytes(), "restricted-xml", true).await;
}
