//! Helpers for the tests of xmppd federating with xmppd or with fake peers: a daemon
//! that resolves peers through a fake DNS, a server stream header, the stream id of a
//! header, the XEP-0185 key computed independently of the server.
#![allow(dead_code)]

use crate::common::{Daemon, Options};
use crate::federation_common::FakeDns;
use std::net::Ipv4Addr;

/// A daemon for `domain` that resolves peers through `dns`, with extra `[s2s]` keys and
/// top-level tables.
pub fn server(domain: &str, dns: &FakeDns, s2s: &str, tables: &str) -> Daemon {
    let d = Daemon::with(Options {
        domain: domain.into(),
        extra: format!("[s2s]\n{}retry_initial = 1\n{s2s}\n{tables}", dns.config()),
        ..Options::default()
    });
    dns.add(domain, Ipv4Addr::LOCALHOST, d.starttls.port());
    d
}

pub fn s2s_header(from: &str, to: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
         xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
         from='{from}' to='{to}' version='1.0'>"
    )
}

/// The id of the stream header in `text`.
pub fn stream_id(text: &str) -> String {
    let i = text.find(" id='").expect("stream id") + 5;
    text[i..].split('\'').next().expect("id").to_string()
}

/// XEP-0185 key, computed here independently of the server's code.
pub fn key(secret: &str, receiving: &str, originating: &str, id: &str) -> String {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let hashed: String = Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(hashed.as_bytes()).expect("key");
    mac.update(format!("{receiving} {originating} {id}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
