//! Differential test: `fast_parser::FastParser` against `stream_parser::StreamParser`
//! (rxml + xso), the reference. Both parsers get the same bytes in the same pieces, and
//! must produce the same events after every piece (stanzas compared by `Element`
//! equality and by their `Debug` form, which also shows how text is split into nodes),
//! the same parking state, and the same stream error condition.
//!
//! Inputs: a corpus of realistic stanzas; streams generated from a grammar of XMPP-like
//! XML (namespaces and prefixes, entities and character references, CDATA, non-ASCII,
//! CR/LF, odd whitespace in tags); mutations of both (as `fuzz_props.rs` mutates);
//! random bytes; and inputs aimed at the bounds (token, stanza, depth, attributes,
//! pending bytes, header), each under the default bounds and small ones.
//!
//! Every input is fed whole, byte by byte and in random pieces; corpus entries also
//! split at every position. Fed in random pieces, both parsers are parked and resumed
//! whenever a piece ends between stanzas, as `io.rs` does with an idle stream. Set
//! FUZZ_ITERATIONS for longer runs.
//!
//! Known differences: none. Where rxml has quirks the fast parser copies them (see the
//! comments in `fast_parser/`).

mod common;

use common::{Mutator, iterations};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xmppd_actors::fuzzing;
use xmppd_proto::xml::fast_parser::FastParser;
use xmppd_proto::xml::fast_parser::differential::{compare, limit_sets, run};
use xmppd_proto::xml::stream_parser::Limits;

const HDR: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' xml:lang='en'>";

/// Stanzas as clients send them.
const CORPUS: &[&str] = &[
    "<message to='bob@example.com/phone' from='alice@example.com/pc' type='chat' id='m1'><body>hi</body></message>",
    "<message type='chat' id='a1b2' to='bob@example.com'><body>1 &lt; 2 &amp;&amp; 3 &gt; 2</body><active xmlns='http://jabber.org/protocol/chatstates'/><request xmlns='urn:xmpp:receipts'/><origin-id xmlns='urn:xmpp:sid:0' id='f8c5'/></message>",
    "<message to='room@conference.example.com' type='groupchat' id='g1'><body>Grüße, 世界! 😀 &#x1F600;&#233;</body></message>",
    "<message to='b@example.com'><body><![CDATA[<script>alert('x')</script> & more]]></body></message>",
    "<message to='b@example.com'><body>line one\r\nline two\rline three\n\tindented</body></message>",
    "<message to='b@example.com'><body>a]b]]c]]]d ]&gt; x</body><subject>&apos;quoted&quot;</subject><thread parent='e0ffe42b28561960c6b12b944a092794b9683a38'>0e3141cd80894871a68e6fe6b1ec56fa</thread></message>",
    "<message to='b@example.com'><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><p style='font-weight:bold'>Hi <em>there</em>!</p></body></html></message>",
    "<presence/>",
    "<presence><show>away</show><status>Out  to lunch</status><priority>-1</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://gajim.org' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/><x xmlns='vcard-temp:x:update'><photo>01b87fcd030b72895ff8e88db57ec525450f000d</photo></x></presence>",
    "<presence type='subscribe' to='juliet@example.com'/>",
    "<presence from='a@b/c' to='room@muc/nick'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='20'/><password>p&amp;ss</password></x></presence>",
    "<iq type='get' id='roster_1'><query xmlns='jabber:iq:roster' ver='ver7'/></iq>",
    "<iq type='set' id='r2'><query xmlns='jabber:iq:roster'><item jid='nurse@example.com' name='Nurse' subscription='both'><group>Servants</group><group>Friends &amp; Family</group></item></query></iq>",
    "<iq type='get' id='d1' to='example.com'><query xmlns='http://jabber.org/protocol/disco#info' node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='/></iq>",
    "<iq type='result' id='d2'><query xmlns='http://jabber.org/protocol/disco#items'><item jid='conference.example.com' name='Chatrooms'/><item jid='pubsub.example.com'/></query></iq>",
    "<iq type='set' id='v1'><vCard xmlns='vcard-temp'><FN>Peter Saint-Andre</FN><N><FAMILY>Saint-Andre</FAMILY><GIVEN>Peter</GIVEN></N><PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==</BINVAL></PHOTO></vCard></iq>",
    "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>balcony</resource></bind></iq>",
    "<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>",
    "<iq type='set' id='ps1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:avatar:metadata'><item id='111f4b3c50d7b0df729d299bc6f8e9ef9066971f'><metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='12345' height='64' id='111f4b3c50d7b0df729d299bc6f8e9ef9066971f' type='image/png' width='64'/></metadata></item></publish></pubsub></iq>",
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>biwsbj1qdWxpZXQscj1vTXNUQUF3QUFBQU1BQUFBTlAwVEFBQUFBQUJQVTBBQQ==</auth>",
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    "<enable xmlns='urn:xmpp:sm:3' resume='true'/><r xmlns='urn:xmpp:sm:3'/><a xmlns='urn:xmpp:sm:3' h='3'/>",
    "<c:message xmlns:c='jabber:client' c:to='x'><c:body xml:lang='de'>Hallo</c:body></c:message>",
    "<message xmlns:a='urn:a' xmlns:b='urn:b' a:x='1' b:x='2' x='3'><a:e b:y=\"'&quot;\"/><b:e xmlns:a='urn:other'><a:f/></b:e></message>",
    "<message xmlns=''><body>no namespace</body></message>",
    "<message><body xmlns='urn:x' xmlns:y='urn:y'><y:i   a = 'spaced'\n\ttab='\tt\n' >x</y:i\n></body ></message>",
    "<message to='x'\r\n  id='crlf'\r\n><body>\r\n</body></message>",
    "<message id='&#x9;&#xA;&#xD;&#32;'/>",
    "<message id='a&#13;&#10;b'><body>&#13;&#10;</body></message>",
    "<r xmlns='urn:xmpp:sm:3'/> \n <r xmlns='urn:xmpp:sm:3'/>\t",
    "</stream:stream>",
    "<message/></stream:stream> \r\n ",
];

/// What `gen_stream` draws from.
const NAMES: &[&str] = &[
    "message", "body", "presence", "iq", "query", "item", "group", "c", "x", "show", "status",
    "vCard", "PHOTO", "BINVAL", "thread", "error", "text", "ñame", "名前", "a.b-c_d", "_u", "h1",
    "ÿ",
];
const NSS: &[&str] = &[
    "jabber:iq:roster",
    "http://jabber.org/protocol/caps",
    "vcard-temp",
    "urn:xmpp:delay",
    "urn:ietf:params:xml:ns:xmpp-stanzas",
    "urn:x:é&amp;",
    "",
];
const PREFIXES: &[&str] = &["p", "q", "ns0", "é", "xml"];
const TEXT: &[&str] = &[
    "hi",
    " ",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "&amp;",
    "&lt;",
    "&gt;",
    "&apos;",
    "&quot;",
    "&#65;",
    "&#x1F600;",
    "&#xe9;",
    "&#0000065;",
    "é",
    "😀",
    "日本語",
    "]",
    "]]",
    "]>",
    "> ",
    "'",
    "\"",
    "<![CDATA[<x>&amp;]]>",
    "<![CDATA[]]>",
    "<![CDATA[a]]]]>",
    "<![CDATA[\r\n\r]]>",
    "<![CDATA[]]]>",
    "word",
    "\u{fffd}",
    "\u{10ffff}",
];
const VALUE: &[&str] = &[
    "v", " ", "\t", "\n", "\r\n", "\r\r\n", "&amp;", "&lt;", "&gt;", "&#x27;", "&#34;", "é", "😀",
    "a@b/c", "x>y", "]]>", "&#9;", "&#xD;",
];

fn pick<'a>(rng: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

fn blank(rng: &mut StdRng, min: usize) -> String {
    let n = rng.random_range(min..=min + 2);
    (0..n)
        .map(|_| [" ", " ", "\n", "\t", "\r\n"][rng.random_range(0..5)])
        .collect()
}

fn value(rng: &mut StdRng) -> (char, String) {
    let q = if rng.random_bool(0.7) { '\'' } else { '"' };
    let mut v = String::new();
    for _ in 0..rng.random_range(0..5) {
        let piece = pick(rng, VALUE);
        v.push_str(piece);
    }
    if rng.random_bool(0.2) {
        v.push(if q == '\'' { '"' } else { '\'' });
    }
    (q, v)
}

/// One element, with the prefixes in scope.
fn element(rng: &mut StdRng, depth: usize, scope: &mut Vec<String>, out: &mut String) {
    let mark = scope.len();
    let mut attrs = Vec::new();
    if rng.random_bool(0.3) {
        attrs.push(format!("xmlns='{}'", pick(rng, NSS)));
    }
    if rng.random_bool(0.25) {
        let p = pick(rng, &PREFIXES[..4]);
        let ns = pick(rng, &NSS[..6]);
        attrs.push(format!("xmlns:{p}='{ns}'"));
        scope.push(p.to_owned());
    }
    let name = pick(rng, NAMES);
    let qname = match scope.len() {
        0 => name.to_owned(),
        n if rng.random_bool(0.3) => format!("{}:{name}", scope[rng.random_range(0..n)]),
        _ => name.to_owned(),
    };
    let mut used = Vec::new();
    for _ in 0..rng.random_range(0..4) {
        let local = pick(rng, &["to", "id", "type", "from", "x", "lang", "é"]);
        let an = match scope.len() {
            n if n > 0 && rng.random_bool(0.3) => {
                format!("{}:{local}", scope[rng.random_range(0..n)])
            }
            _ if local == "lang" => "xml:lang".to_owned(),
            _ => local.to_owned(),
        };
        if used.contains(&an) {
            continue;
        }
        used.push(an.clone());
        let (q, v) = value(rng);
        let v = v.replace(q, if q == '\'' { "&apos;" } else { "&quot;" });
        let eq = if rng.random_bool(0.1) { " = " } else { "=" };
        attrs.push(format!("{an}{eq}{q}{v}{q}"));
    }
    out.push('<');
    out.push_str(&qname);
    for a in &attrs {
        out.push_str(&blank(rng, 1));
        out.push_str(a);
    }
    if rng.random_bool(0.2) {
        out.push_str(&blank(rng, 1));
    }
    let children = if depth < 5 { rng.random_range(0..4) } else { 0 };
    if children == 0 && rng.random_bool(0.5) {
        out.push_str("/>");
    } else {
        out.push('>');
        for _ in 0..children {
            if rng.random_bool(0.5) {
                for _ in 0..rng.random_range(1..4) {
                    out.push_str(pick(rng, TEXT));
                }
            } else {
                element(rng, depth + 1, scope, out);
            }
        }
        out.push_str("</");
        out.push_str(&qname);
        if rng.random_bool(0.1) {
            out.push_str(&blank(rng, 1));
        }
        out.push('>');
    }
    scope.truncate(mark);
}

fn header(rng: &mut StdRng) -> String {
    let mut h = String::new();
    match rng.random_range(0..4) {
        0 => {}
        1 => h.push_str("<?xml version='1.0'?>"),
        2 => h.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
        _ => h.push_str("<?xml version='1.0' encoding='utf-8' standalone='yes' ?> "),
    }
    let mut attrs = vec![
        format!(
            "xmlns='{}'",
            ["jabber:client", "jabber:server"][rng.random_range(0..2)]
        ),
        "xmlns:stream='http://etherx.jabber.org/streams'".to_owned(),
        "to='localhost'".to_owned(),
        "version='1.0'".to_owned(),
    ];
    if rng.random_bool(0.5) {
        attrs.push("xml:lang='en'".to_owned());
    }
    if rng.random_bool(0.3) {
        attrs.push("xmlns:db='jabber:server:dialback'".to_owned());
    }
    if rng.random_bool(0.3) {
        attrs.push("from='a@b&amp;c'".to_owned());
    }
    // shuffle
    for i in (1..attrs.len()).rev() {
        attrs.swap(i, rng.random_range(0..=i));
    }
    h.push_str("<stream:stream");
    for a in attrs {
        h.push_str(&blank(rng, 1));
        h.push_str(&a);
    }
    h.push('>');
    h
}

/// A stream of well-formed (or nearly: prefixes may collide) XMPP-like XML.
fn gen_stream(rng: &mut StdRng) -> Vec<u8> {
    let mut s = header(rng);
    for _ in 0..rng.random_range(0..5) {
        if rng.random_bool(0.3) {
            s.push_str(&blank(rng, 1));
        }
        if rng.random_bool(0.3) {
            s.push_str(pick(rng, CORPUS));
        } else {
            let mut scope = Vec::new();
            element(rng, 1, &mut scope, &mut s);
        }
    }
    if rng.random_bool(0.3) {
        s.push_str("</stream:stream>");
        s.push_str(&blank(rng, 0));
    }
    s.into_bytes()
}

/// Interesting bytes beyond `common::XML_TOKENS`: references, prefixes and the
/// reserved namespaces, line ends, the XML declaration.
const TOKENS: &[&[u8]] = &[
    b"&#xD800;",
    b"&#65",
    b"&#x;",
    b"&;",
    b"xmlns:p='u'",
    b"xmlns:xml=",
    b"xmlns:xmlns=",
    b"p:",
    b"xml:",
    b"http://www.w3.org/XML/1998/namespace",
    b"</message>",
    b"\x01",
    b"\xef\xbf\xbe",
    b"\r",
    b"\r\n",
    b"\t",
    b"]",
    b"]]",
    b"<?xml ",
    b"version='1.0'",
    b"encoding='latin1'",
    b"standalone='no'",
    b"<a/>",
    b"<a:b/>",
    b":",
];

const MUTATOR: Mutator = Mutator {
    tokens: TOKENS,
    steps: 6,
    repeat_len: 48,
    repeats: 40,
    random_run: 1,
};

/// Piece sizes to feed `len` bytes with.
fn chunkings(rng: &mut StdRng, len: usize) -> Vec<Vec<usize>> {
    let small: Vec<usize> = (0..len).map(|_| rng.random_range(1..=16)).collect();
    let large: Vec<usize> = (0..len / 8 + 1)
        .map(|_| rng.random_range(1..=300))
        .collect();
    vec![Vec::new(), vec![1; len], small, large]
}

fn check(data: &[u8], limits: Limits, sizes: &[usize]) {
    // park and resume between stanzas when fed in random pieces (as an idle connection
    // does; not byte by byte: rebuilding rxml's parser at every byte is slow)
    let park = sizes.len() > 1 && sizes.iter().any(|&n| n > 1);
    if let Err(diff) = compare(data, limits, sizes, park) {
        panic!(
            "{diff}\nlimits: {limits:?}\npieces: {sizes:?}\ninput: {:?}",
            String::from_utf8_lossy(data)
        );
    }
}

fn check_all_ways(rng: &mut StdRng, data: &[u8]) {
    for limits in limit_sets() {
        for sizes in chunkings(rng, data.len()) {
            check(data, limits, &sizes);
        }
    }
}

#[test]
fn corpus_matches_in_every_split() {
    let mut rng = StdRng::seed_from_u64(1);
    for stanza in CORPUS {
        let doc = format!("{HDR}{stanza}");
        check_all_ways(&mut rng, doc.as_bytes());
        // every place a read can end, for the default and the small bounds
        for limits in &limit_sets()[..2] {
            for cut in 1..doc.len() {
                check(doc.as_bytes(), *limits, &[cut]);
            }
        }
    }
    // the whole corpus as one stream
    let all: String = std::iter::once(HDR).chain(CORPUS.iter().copied()).collect();
    check_all_ways(&mut rng, all.as_bytes());
}

#[test]
fn generated_streams_match() {
    let mut rng = StdRng::seed_from_u64(2);
    let n = iterations(2000);
    let mut valid = 0;
    for _ in 0..n {
        let doc = gen_stream(&mut rng);
        check_all_ways(&mut rng, &doc);
        if run::<FastParser>(&doc, Limits::default(), &[], false)
            .error
            .is_none()
        {
            valid += 1;
        }
    }
    // the generator is there to reach deep into valid documents
    assert!(
        valid * 10 >= n * 9,
        "only {valid} of {n} generated streams are valid"
    );
}

#[test]
fn mutations_match() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut pool: Vec<Vec<u8>> = CORPUS
        .iter()
        .map(|s| format!("{HDR}{s}").into_bytes())
        .collect();
    // the stream fuzzer's seeds (minus their chunking byte)
    pool.extend(fuzzing::stream_seeds().into_iter().map(|s| s[1..].to_vec()));
    for _ in 0..50 {
        pool.push(gen_stream(&mut rng));
    }
    for i in 0..iterations(20_000) {
        let base = &pool[rng.random_range(0..pool.len())];
        let input = MUTATOR.mutate(&mut rng, base);
        let limits = limit_sets()[i % 3];
        let sizes = chunkings(&mut rng, input.len());
        check(&input, limits, &sizes[i % 4]);
        if i % 16 == 0 && pool.len() < 1024 && input.len() < 16 * 1024 {
            pool.push(input);
        }
    }
}

#[test]
fn random_bytes_match() {
    let mut rng = StdRng::seed_from_u64(4);
    for i in 0..iterations(5000) {
        let n = rng.random_range(0..256);
        let mut v: Vec<u8> = (0..n).map(|_| rng.random()).collect();
        if i % 2 == 0 {
            // behind a header, so that stanza parsing is reached
            let mut d = HDR.as_bytes().to_vec();
            d.append(&mut v);
            v = d;
        }
        let sizes = chunkings(&mut rng, v.len());
        check(&v, limit_sets()[i % 3], &sizes[i % 4]);
    }
}

/// Inputs at and around every bound: where text is split into nodes, where a name,
/// value or reference becomes too long, where a stanza, an open tag or the header
/// becomes too large, where nesting becomes too deep.
#[test]
fn bounds_match() {
    let mut rng = StdRng::seed_from_u64(5);
    // (each document, with the bounds it was made for)
    let mut docs: Vec<(Vec<u8>, Limits)> = Vec::new();
    for limits in limit_sets() {
        let t = limits.max_token.max(256);
        for delta in [0usize, 1, 2, 3, 4, 5] {
            for filler in ["x", "é", "😀", "&amp;", "\r\n", "\r", "]", "&#x1F600;", " "] {
                let n = (t + delta) / filler.len().max(1) + 2;
                let text = format!("{}{}", "a".repeat(delta), filler.repeat(n));
                // text in a stanza, in CDATA, between stanzas; a long name and value
                docs.push((
                    format!("{HDR}<message><body>{text}</body></message>").into_bytes(),
                    limits,
                ));
                docs.push((
                    format!("{HDR}<message><body><![CDATA[{text}]]></body></message>").into_bytes(),
                    limits,
                ));
                docs.push((
                    format!("{HDR}{}<presence/>", " ".repeat(t + delta)).into_bytes(),
                    limits,
                ));
                docs.push((format!("{HDR}<message id='{text}'/>").into_bytes(), limits));
                docs.push((
                    format!("{HDR}<{}/>", "n".repeat(t - 2 + delta)).into_bytes(),
                    limits,
                ));
                docs.push((format!("{HDR}<message>{text}").into_bytes(), limits));
                docs.push((format!("{HDR}{text}<message/>").into_bytes(), limits));
            }
            // a stanza right at the size bound
            let s = limits.max_stanza;
            for pad in [s.saturating_sub(40 + delta), s - 30 + delta, s + delta] {
                let body = "b".repeat(pad.min(300_000));
                docs.push((
                    format!("{HDR}<message><body>{body}</body></message><presence/>").into_bytes(),
                    limits,
                ));
            }
            // nesting at the depth bound
            let d = limits.max_depth + delta;
            docs.push((
                format!(
                    "{HDR}<message>{}{}</message>",
                    "<a>".repeat(d.saturating_sub(3)),
                    "</a>".repeat(d.saturating_sub(3))
                )
                .into_bytes(),
                limits,
            ));
            // attributes at the count bound, on a stanza, a child and the header
            let a = limits.max_attributes + delta;
            let attrs: String = (0..a.saturating_sub(2))
                .map(|i| format!(" a{i}='{i}'"))
                .collect();
            docs.push((format!("{HDR}<message{attrs}/>").into_bytes(), limits));
            docs.push((
                format!("{HDR}<message><x{attrs}/></message>").into_bytes(),
                limits,
            ));
            docs.push((
                HDR.replace(" to=", &format!("{attrs} to=")).into_bytes(),
                limits,
            ));
            docs.push((
                HDR.replace(" to=", &format!("{attrs} xmlns:stream='x' to="))
                    .into_bytes(),
                limits,
            ));
        }
        // an open tag, an end tag, the header growing with whitespace or attributes
        let m = limits.max_token * 4;
        for n in [m - 20, m - 5, m, m + 5] {
            docs.push((
                format!("{HDR}<message{}>", " ".repeat(n)).into_bytes(),
                limits,
            ));
            docs.push((
                format!("{HDR}<message></message{}>", " ".repeat(n)).into_bytes(),
                limits,
            ));
            docs.push((
                format!("{HDR}<message>{}", "\r".repeat(n)).into_bytes(),
                limits,
            ));
            docs.push((
                format!("<stream:stream{}", " ".repeat(n.saturating_sub(14))).into_bytes(),
                limits,
            ));
            docs.push((
                format!(
                    "<?xml version='1.0'?>{}<stream:stream",
                    " ".repeat(n.saturating_sub(30))
                )
                .into_bytes(),
                limits,
            ));
        }
    }
    for (doc, limits) in &docs {
        for (i, sizes) in chunkings(&mut rng, doc.len()).into_iter().enumerate() {
            // byte by byte only where it is cheap
            if i != 1 || doc.len() <= 2048 {
                check(doc, *limits, &sizes);
            }
        }
    }
}

/// Documents whose outcome is decided by which of two errors comes first.
#[test]
fn error_precedence_matches() {
    let mut rng = StdRng::seed_from_u64(6);
    let dup_then_many: String = (0..80).map(|i| format!(" a{i}='x'")).collect();
    let docs = [
        // a byte refused at once beats bad UTF-8 earlier in the same text run
        format!("{HDR}<message><body>\u{e9}\x01</body></message>"),
        format!("{HDR}<message><body>\u{e9}\x01</body></message>").replace('\u{e9}', "\u{fffe}"),
        format!("{HDR}<m><b>a\u{ffff}b&amp;</b></m>"),
        // the byte after a name is looked at before the name
        format!("{HDR}<1a\x01/>"),
        format!("{HDR}<a\u{e9}\x01/>"),
        // a duplicate prefix on the header, then too many attributes in the same read
        format!(
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns:a='1' xmlns:a='2'{dup_then_many}>"
        ),
        // duplicate and undeclared, in both orders
        "<stream:stream x='1' x='2' p:y='3'>".to_string(),
        "<stream:stream p:y='3' x='1' x='2'>".to_string(),
        format!("{HDR}<message p:y='3' x='1' x='2'/>"),
        // text between stanzas: bad UTF-8 is found before the text is refused
        format!("{HDR}hello\u{e9}<presence/>"),
        format!("{HDR}hello\x01"),
        "<?xml-stylesheet href='a'?><stream:stream/>".to_owned(),
        "<?xml version='1.0'?><?xml version='1.0'?><stream:stream/>".to_owned(),
        " <stream:stream/>".to_owned(),
        "\u{feff}<stream:stream/>".to_owned(),
        format!("{HDR}</stream:stream><?xml version='1.0'?>"),
        format!("{HDR}</stream:stream><!-- x -->"),
        format!("{HDR}</stream:stream>&amp;<"),
        format!("{HDR}</stream:stream><![CDATA[ ]]> <![CDATA[x]]>"),
    ];
    for doc in &docs {
        let mut bytes = doc.as_bytes().to_vec();
        // and with a raw invalid byte where the text has é
        check_all_ways(&mut rng, &bytes);
        if let Some(p) = doc.find('\u{e9}') {
            bytes.splice(p..p + 2, [0xff, b'x']);
            check_all_ways(&mut rng, &bytes);
        }
    }
}
