//! Helpers for the federation tests: a DNS server on loopback, free ports, child
//! processes that die with the test.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// A DNS responder on loopback: SRV `_xmpp-server._tcp.NAME` (or, for an entry named
/// `xmpps:NAME`, `_xmpps-server._tcp.NAME`) and A `NAME` for the names it is given,
/// NXDOMAIN for everything else.
pub struct FakeDns {
    pub addr: SocketAddr,
    entries: Arc<Mutex<Vec<(String, Ipv4Addr, u16)>>>,
}

impl FakeDns {
    pub fn start(entries: Vec<(String, Ipv4Addr, u16)>) -> FakeDns {
        FakeDns::serve(entries, false)
    }

    /// The same, with SRV targets written as the address itself (`127.0.0.1.`): for a
    /// peer that resolves SRV through this server but targets through getaddrinfo
    /// (ejabberd), which parses an address literal without asking anyone.
    pub fn with_address_targets(entries: Vec<(String, Ipv4Addr, u16)>) -> FakeDns {
        FakeDns::serve(entries, true)
    }

    fn serve(entries: Vec<(String, Ipv4Addr, u16)>, address_targets: bool) -> FakeDns {
        let entries = Arc::new(Mutex::new(entries));
        let shared = entries.clone();
        use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
        use hickory_resolver::proto::rr::rdata::{A, SRV};
        use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
        let sock = UdpSocket::bind("127.0.0.1:0").expect("dns socket");
        let addr = sock.local_addr().expect("addr");
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    return;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut r = Message::response(q.metadata.id, OpCode::Query);
                r.metadata.recursion_desired = q.metadata.recursion_desired;
                r.metadata.recursion_available = true;
                r.metadata.authoritative = true;
                let mut found = false;
                for query in &q.queries {
                    r.add_query(query.clone());
                    let name = query.name().to_ascii().to_lowercase();
                    let entries = shared.lock().map(|e| e.clone()).unwrap_or_default();
                    for (entry, ip, port) in &entries {
                        // "xmpps:NAME": the direct-TLS service (XEP-0368) instead
                        let (service, domain) = match entry.strip_prefix("xmpps:") {
                            Some(d) => ("_xmpps-server", d),
                            None => ("_xmpp-server", entry.as_str()),
                        };
                        let srv_name = format!("{service}._tcp.{domain}.");
                        if query.query_type() == RecordType::SRV && name == srv_name {
                            let target = if address_targets {
                                format!("{ip}.")
                            } else {
                                format!("{domain}.")
                            };
                            let target = Name::from_ascii(target).expect("name");
                            r.add_answer(Record::from_rdata(
                                query.name().clone(),
                                60,
                                RData::SRV(SRV::new(0, 0, *port, target)),
                            ));
                            found = true;
                        }
                        if query.query_type() == RecordType::A && name == format!("{domain}.") {
                            r.add_answer(Record::from_rdata(
                                query.name().clone(),
                                60,
                                RData::A(A(*ip)),
                            ));
                            found = true;
                        }
                        if name == format!("{domain}.") || name == srv_name {
                            // the name exists (AAAA and others: no data)
                            found = true;
                        }
                    }
                }
                if !found {
                    r.metadata.response_code = ResponseCode::NXDomain;
                }
                if let Ok(bytes) = r.to_vec() {
                    let _ = sock.send_to(&bytes, peer);
                }
            }
        });
        FakeDns { addr, entries }
    }

    /// Answer for `domain` from now on (SRV to `port`, A to `ip`).
    pub fn add(&self, domain: &str, ip: Ipv4Addr, port: u16) {
        if let Ok(mut e) = self.entries.lock() {
            e.push((domain.to_string(), ip, port));
        }
    }

    /// `s2s.resolver` for a daemon that asks this server.
    pub fn config(&self) -> String {
        format!("resolver = \"{}\"\n", self.addr)
    }
}

/// A free TCP port on `ip` (bound and released; Prosody takes it right after).
pub fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}
