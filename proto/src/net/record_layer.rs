//! The TLS record layer (RFC 8446 §5; RFC 5246 §6.2 with the AEAD suites of RFC 5288
//! and RFC 7905) for established connections.
//!
//! rustls runs the handshake; then its traffic secrets are extracted and this small
//! layer protects application data with ring's AEADs — the way kernel TLS offload
//! does. It keeps per connection only the two keys, their IVs, sequence numbers and
//! traffic secrets (for key updates), and the bytes of a record that arrived in part
//! (usually none), so an idle TLS session holds no buffers at all.
//!
//! TLS 1.2 records carry their real content type outside, and AES-GCM ones an explicit
//! nonce (we send the same IV XOR sequence number construction as TLS 1.3 and rustls);
//! TLS 1.2 has no key update and renegotiation is not offered (a ClientHello gets a
//! no_renegotiation warning), so a TLS 1.2 AES-GCM connection ends at the limit.
//!
//! After a TLS 1.3 handshake the peer may send application data, alerts and KeyUpdate
//! (RFC 8446 §4.6.3): its receive key is updated, and `update_requested` is answered
//! with our own KeyUpdate. Our sending key is updated before the AEAD's
//! confidentiality limit (§5.5). Any other handshake message, and every malformed
//! record, gets the alert RFC 8446 §6.2 names; the records this layer writes on its
//! own (a KeyUpdate, an alert) wait in [`RecordLayer::take_outgoing`].

use ring::aead::{Aad, Nonce};
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets};

mod keys;
pub use keys::TrafficSecret;
use keys::{Direction, aad12};

/// Bytes of a record header (content type, version, length).
pub const HEADER: usize = 5;
/// Largest plaintext in one record (RFC 8446 §5.1).
pub const MAX_PLAINTEXT: usize = 1 << 14;
/// Largest protected record body (RFC 8446 §5.2).
const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;
/// Largest TLS 1.2 protected record body (RFC 5246 §6.2.3).
const MAX_CIPHERTEXT_12: usize = MAX_PLAINTEXT + 2048;
const TAG: usize = 16;
/// The explicit part of a TLS 1.2 AES-GCM nonce, sent in each record (RFC 5288 §3).
const EXPLICIT_NONCE: usize = 8;

const APPLICATION_DATA: u8 = 23;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const KEY_UPDATE: u8 = 24;

/// Alert descriptions (RFC 8446 §6).
pub mod alert {
    pub const CLOSE_NOTIFY: u8 = 0;
    pub const UNEXPECTED_MESSAGE: u8 = 10;
    pub const BAD_RECORD_MAC: u8 = 20;
    pub const RECORD_OVERFLOW: u8 = 22;
    pub const ILLEGAL_PARAMETER: u8 = 47;
    pub const DECODE_ERROR: u8 = 50;
    pub const INTERNAL_ERROR: u8 = 80;
    pub const USER_CANCELED: u8 = 90;
    pub const NO_RENEGOTIATION: u8 = 100;
}
const FATAL: u8 = 2;
const WARNING: u8 = 1;

/// Records sent under one key before it is replaced. AES-GCM's confidentiality limit
/// is 2^24.5 full-size records (RFC 8446 §5.5); ChaCha20-Poly1305's is far beyond
/// reach, and rotating it as often costs one HKDF per 8 million records.
pub const ROTATE_AFTER: u64 = 1 << 23;
/// Post-handshake messages (KeyUpdate, or a TLS 1.2 ClientHello) the peer may send in a
/// row without application data in between.
const MAX_KEY_UPDATES_IN_ROW: u8 = 32;

/// The protocol version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Tls12,
    Tls13,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("TLS record of {0} bytes is over the limit")]
    Overflow(usize),
    #[error("TLS record of {0} bytes is too short to be protected")]
    TooShort(usize),
    #[error("TLS plaintext of {0} bytes is over the limit")]
    PlaintextOverflow(usize),
    #[error("TLS record failed authentication")]
    BadRecordMac,
    #[error("unexpected TLS record type {0}")]
    UnexpectedType(u8),
    #[error("TLS alert {0} from the peer")]
    Alert(u8),
    #[error("unexpected post-handshake message type {0}")]
    UnexpectedHandshake(u8),
    #[error("a KeyUpdate must end its record")]
    Unaligned,
    #[error("malformed {0}")]
    Decode(&'static str),
    #[error("KeyUpdate with request_update {0}")]
    IllegalKeyUpdate(u8),
    #[error("too many post-handshake messages without application data")]
    KeyUpdateFlood,
    #[error("TLS 1.2 AES-GCM key at its confidentiality limit")]
    KeyExhausted,
    #[error("TLS sequence number exhausted")]
    SequenceExhausted,
    #[error("unsupported cipher suite for record protection")]
    Unsupported,
}

impl RecordError {
    /// The alert that tells the peer about this error (none for the peer's own alert).
    pub fn alert(&self) -> Option<u8> {
        use RecordError::*;
        Some(match self {
            Overflow(_) | PlaintextOverflow(_) => alert::RECORD_OVERFLOW,
            TooShort(_) | Decode(_) => alert::DECODE_ERROR,
            BadRecordMac => alert::BAD_RECORD_MAC,
            UnexpectedType(_) | UnexpectedHandshake(_) | Unaligned | KeyUpdateFlood => {
                alert::UNEXPECTED_MESSAGE
            }
            IllegalKeyUpdate(_) => alert::ILLEGAL_PARAMETER,
            SequenceExhausted | Unsupported | KeyExhausted => alert::INTERNAL_ERROR,
            Alert(_) => return None,
        })
    }
}

/// What the peer sent, record by record.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The peer closed its side (close_notify).
    Closed,
}

/// Record protection for one established TLS connection.
pub struct RecordLayer {
    version: Version,
    rx: Direction,
    tx: Direction,
    /// A record received in part, waiting for the rest.
    partial: Vec<u8>,
    /// Records this layer wrote on its own (a KeyUpdate, an alert), to go out before
    /// anything sealed later.
    outgoing: Vec<u8>,
    /// Bytes of a post-handshake message split over records.
    hs: [u8; 5],
    hs_len: u8,
    /// Bytes of a refused TLS 1.2 ClientHello still to be skipped.
    hs_skip: u32,
    /// KeyUpdates since the peer's last application data.
    key_updates: u8,
    /// Records under one key before it is replaced (ours) or we ask the peer to.
    rotate_after: u64,
}

impl RecordLayer {
    /// The layer for the secrets rustls extracted, with the TLS 1.3 traffic secrets
    /// they were derived from (the client's, ours); `None` for TLS 1.2.
    pub fn new(
        secrets: ExtractedSecrets,
        traffic: Option<(TrafficSecret, TrafficSecret)>,
    ) -> Result<RecordLayer, RecordError> {
        let (version, rx, tx) = match traffic {
            Some((rx, tx)) => (Version::Tls13, rx, tx),
            None => (Version::Tls12, TrafficSecret::none(), TrafficSecret::none()),
        };
        Ok(RecordLayer {
            version,
            rx: Direction::new(secrets.rx.0, secrets.rx.1, rx)?,
            tx: Direction::new(secrets.tx.0, secrets.tx.1, tx)?,
            partial: Vec::new(),
            outgoing: Vec::new(),
            hs: [0; 5],
            hs_len: 0,
            hs_skip: 0,
            key_updates: 0,
            rotate_after: ROTATE_AFTER,
        })
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Replace keys after `records` instead of [`ROTATE_AFTER`] (for tests).
    pub fn rotate_after(&mut self, records: u64) {
        self.rotate_after = records.max(1);
    }

    /// Decrypt the records in `input` (bytes as read from the socket), handing each
    /// application-data payload to `on_data`. A record cut off at the end is kept
    /// for the next call. On an error, the alert for the peer is in
    /// [`RecordLayer::take_outgoing`]; the connection must end.
    pub fn open(
        &mut self,
        input: &mut [u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<Option<Event>, RecordError> {
        let r = self.open_inner(input, &mut on_data);
        if let Err(e) = &r
            && let Some(desc) = e.alert()
        {
            self.send_alert(FATAL, desc);
        }
        r
    }

    fn open_inner(
        &mut self,
        input: &mut [u8],
        on_data: &mut impl FnMut(&[u8]),
    ) -> Result<Option<Event>, RecordError> {
        if self.partial.is_empty() {
            let (used, ev) = self.open_records(input, on_data)?;
            if ev.is_none() {
                self.partial.extend_from_slice(&input[used..]);
            }
            return Ok(ev);
        }
        self.partial.extend_from_slice(input);
        let mut buf = std::mem::take(&mut self.partial);
        let (used, ev) = self.open_records(&mut buf, on_data)?;
        if ev.is_none() {
            buf.drain(..used);
            if !buf.is_empty() {
                buf.shrink_to_fit();
                self.partial = buf;
            }
        }
        Ok(ev)
    }

    /// Records for the peer that this layer produced while reading (our KeyUpdate, an
    /// alert): write them before anything sealed after this call.
    pub fn take_outgoing(&mut self) -> Option<Vec<u8>> {
        (!self.outgoing.is_empty()).then(|| std::mem::take(&mut self.outgoing))
    }

    /// Protect `plaintext` as application-data records appended to `out`. Our key is
    /// updated (with a KeyUpdate ahead of the next record) before its limit.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
        let records = plaintext.len().div_ceil(MAX_PLAINTEXT);
        // each record: header, the inner content type, the tag
        out.reserve(plaintext.len() + records * (HEADER + 1 + TAG));
        for chunk in plaintext.chunks(MAX_PLAINTEXT) {
            if self.tx.seq >= self.rotate_after {
                match self.version {
                    Version::Tls13 => self.key_update(false, out)?,
                    Version::Tls12 if self.tx.gcm() => return Err(RecordError::KeyExhausted),
                    Version::Tls12 => {}
                }
            }
            self.seal_record(chunk, APPLICATION_DATA, out)?;
        }
        Ok(())
    }

    /// A record of any content type and content (for tests and fuzzing: peers that
    /// misbehave).
    pub fn seal_with_type(
        &mut self,
        content: &[u8],
        content_type: u8,
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        self.seal_record(content, content_type, out)
    }

    /// Two ends with fixed keys that mirror each other (for tests and fuzzing):
    /// `selector` picks TLS 1.3 or 1.2 (bit 0) and AES-256-GCM or ChaCha20-Poly1305
    /// (bit 1).
    pub fn mirrored_pair(selector: u8) -> (RecordLayer, RecordLayer) {
        use rustls::crypto::cipher::{AeadKey, Iv};
        let sec = |k: u8, i: u8| {
            let (key, iv) = (AeadKey::from([k; 32]), Iv::new([i; 12]));
            if selector & 2 == 0 {
                ConnectionTrafficSecrets::Aes256Gcm { key, iv }
            } else {
                ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv }
            }
        };
        let traffic = |a: u8, b: u8| {
            let s = |b: u8| TrafficSecret {
                bytes: [b; 48],
                len: 32,
            };
            (selector & 1 == 1).then(|| (s(a), s(b)))
        };
        let end = |tx: (u8, u8), rx: (u8, u8), t| {
            let secrets = ExtractedSecrets {
                tx: (0, sec(tx.0, tx.1)),
                rx: (0, sec(rx.0, rx.1)),
            };
            RecordLayer::new(secrets, t).expect("supported suites")
        };
        (
            end((1, 2), (3, 4), traffic(5, 6)),
            end((3, 4), (1, 2), traffic(6, 5)),
        )
    }

    /// A close_notify alert, appended to `out`.
    pub fn close_notify(&mut self, out: &mut Vec<u8>) {
        let _ = self.seal_record(&[WARNING, alert::CLOSE_NOTIFY], ALERT, out);
    }

    fn send_alert(&mut self, level: u8, desc: u8) {
        let mut out = std::mem::take(&mut self.outgoing);
        let _ = self.seal_record(&[level, desc], ALERT, &mut out);
        self.outgoing = out;
    }

    /// Send a KeyUpdate (under the old key), then switch to the next key.
    fn key_update(&mut self, request: bool, out: &mut Vec<u8>) -> Result<(), RecordError> {
        self.seal_record(&[KEY_UPDATE, 0, 0, 1, request as u8], HANDSHAKE, out)?;
        self.tx.update()
    }

    fn seal_record(
        &mut self,
        chunk: &[u8],
        content_type: u8,
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        let (nonce, seq) = self.tx.nonce()?;
        let begin = out.len();
        let sealed = match self.version {
            Version::Tls13 => {
                let len = chunk.len() + 1 + TAG;
                let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
                out.extend_from_slice(&header);
                let start = out.len();
                out.extend_from_slice(chunk);
                out.push(content_type);
                let nonce = Nonce::assume_unique_for_key(nonce);
                let aad = Aad::from(header);
                self.tx
                    .key
                    .seal_in_place_separate_tag(nonce, aad, &mut out[start..])
            }
            Version::Tls12 => {
                let explicit = if self.tx.gcm() { EXPLICIT_NONCE } else { 0 };
                let len = explicit + chunk.len() + TAG;
                out.extend_from_slice(&[content_type, 3, 3, (len >> 8) as u8, len as u8]);
                out.extend_from_slice(&nonce[12 - explicit..]);
                let start = out.len();
                out.extend_from_slice(chunk);
                let aad = aad12(seq, content_type, [3, 3], chunk.len());
                let nonce = Nonce::assume_unique_for_key(nonce);
                self.tx
                    .key
                    .seal_in_place_separate_tag(nonce, aad, &mut out[start..])
            }
        };
        // sealing cannot fail for in-bounds lengths; if it ever did, a record that is
        // not sent is better than one sent in the clear
        match sealed {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                Ok(())
            }
            Err(_) => {
                out.truncate(begin);
                Err(RecordError::Unsupported)
            }
        }
    }

    /// Bytes held for a record received in part.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Open every complete record at the start of `buf`; returns how many bytes were
    /// used and whether the peer closed.
    fn open_records(
        &mut self,
        buf: &mut [u8],
        on_data: &mut impl FnMut(&[u8]),
    ) -> Result<(usize, Option<Event>), RecordError> {
        let mut pos = 0;
        while buf.len() - pos >= HEADER {
            let h = &buf[pos..pos + HEADER];
            let header: [u8; HEADER] = [h[0], h[1], h[2], h[3], h[4]];
            let len = u16::from_be_bytes([h[3], h[4]]) as usize;
            let (max, min) = match self.version {
                Version::Tls13 if h[0] != APPLICATION_DATA => {
                    return Err(RecordError::UnexpectedType(h[0]));
                }
                Version::Tls12 if ![APPLICATION_DATA, ALERT, HANDSHAKE].contains(&h[0]) => {
                    return Err(RecordError::UnexpectedType(h[0]));
                }
                Version::Tls13 => (MAX_CIPHERTEXT, TAG + 1),
                Version::Tls12 if self.rx.gcm() => (MAX_CIPHERTEXT_12, EXPLICIT_NONCE + TAG),
                Version::Tls12 => (MAX_CIPHERTEXT_12, TAG),
            };
            if len > max {
                return Err(RecordError::Overflow(len));
            }
            if len < min {
                return Err(RecordError::TooShort(len));
            }
            if buf.len() - pos < HEADER + len {
                break;
            }
            let body = &mut buf[pos + HEADER..pos + HEADER + len];
            pos += HEADER + len;
            let (content, ty) = match self.version {
                Version::Tls13 => {
                    let (nonce, _) = self.rx.nonce()?;
                    let nonce = Nonce::assume_unique_for_key(nonce);
                    let plain = self
                        .rx
                        .key
                        .open_in_place(nonce, Aad::from(header), body)
                        .map_err(|_| RecordError::BadRecordMac)?;
                    // TLSInnerPlaintext: content, type, zero padding (RFC 8446 §5.2, §5.4)
                    if plain.len() > MAX_PLAINTEXT + 1 {
                        return Err(RecordError::PlaintextOverflow(plain.len()));
                    }
                    let Some(end) = plain.iter().rposition(|b| *b != 0) else {
                        return Err(RecordError::UnexpectedType(0));
                    };
                    (&plain[..end], plain[end])
                }
                Version::Tls12 => {
                    let (mut nonce, seq) = self.rx.nonce()?;
                    let explicit = if self.rx.gcm() {
                        // the salt, then the nonce the record carries
                        nonce[4..].copy_from_slice(&body[..EXPLICIT_NONCE]);
                        EXPLICIT_NONCE
                    } else {
                        0
                    };
                    let aad = aad12(seq, header[0], [header[1], header[2]], len - explicit - TAG);
                    let nonce = Nonce::assume_unique_for_key(nonce);
                    let plain = self
                        .rx
                        .key
                        .open_within(nonce, aad, body, explicit..)
                        .map_err(|_| RecordError::BadRecordMac)?;
                    if plain.len() > MAX_PLAINTEXT {
                        return Err(RecordError::PlaintextOverflow(plain.len()));
                    }
                    (&plain[..], header[0])
                }
            };
            if (self.hs_len > 0 || self.hs_skip > 0) && ty != HANDSHAKE {
                // handshake messages may not be interleaved with other records (§5.1)
                return Err(RecordError::UnexpectedType(ty));
            }
            match ty {
                APPLICATION_DATA => {
                    self.key_updates = 0;
                    if !content.is_empty() {
                        on_data(content);
                    }
                }
                ALERT => match (self.version, content) {
                    (_, [_, alert::CLOSE_NOTIFY]) => return Ok((pos, Some(Event::Closed))),
                    // the peer cancels; its close_notify follows (RFC 8446 §6.1)
                    (_, [_, alert::USER_CANCELED]) => {}
                    // TLS 1.2 warnings do not end the connection
                    (Version::Tls12, [WARNING, _]) => {}
                    (_, [_, d]) => return Err(RecordError::Alert(*d)),
                    _ => return Err(RecordError::Decode("alert")),
                },
                HANDSHAKE => self.on_handshake(content)?,
                other => return Err(RecordError::UnexpectedType(other)),
            }
            if self.rx.seq == self.rotate_after && self.version == Version::Tls13 {
                // the peer's key nears its limit: ask it to update (once per key)
                let mut out = std::mem::take(&mut self.outgoing);
                let r = self.key_update(true, &mut out);
                self.outgoing = out;
                r?;
            }
        }
        Ok((pos, None))
    }

    /// Post-handshake messages: KeyUpdate is honoured (TLS 1.3), a ClientHello is
    /// refused with a no_renegotiation warning (TLS 1.2), anything else is an error.
    fn on_handshake(&mut self, mut c: &[u8]) -> Result<(), RecordError> {
        if c.is_empty() {
            return Err(RecordError::Decode("empty handshake record"));
        }
        while !c.is_empty() {
            if self.hs_skip > 0 {
                let n = c.len().min(self.hs_skip as usize);
                c = &c[n..];
                self.hs_skip -= n as u32;
                continue;
            }
            let have = self.hs_len as usize;
            let ty = if have > 0 { self.hs[0] } else { c[0] };
            let want = match (self.version, ty) {
                (Version::Tls13, KEY_UPDATE) => 5,
                (Version::Tls12, CLIENT_HELLO) => 4,
                _ => return Err(RecordError::UnexpectedHandshake(ty)),
            };
            let n = (want - have).min(c.len());
            self.hs[have..have + n].copy_from_slice(&c[..n]);
            self.hs_len += n as u8;
            c = &c[n..];
            if (self.hs_len as usize) < want {
                // the rest comes in the next record
                return Ok(());
            }
            self.hs_len = 0;
            if ty == CLIENT_HELLO {
                // renegotiation is not offered (RFC 5246 §7.2.2): skip the hello
                self.count_post_handshake()?;
                self.hs_skip = u32::from_be_bytes([0, self.hs[1], self.hs[2], self.hs[3]]);
                self.send_alert(WARNING, alert::NO_RENEGOTIATION);
                continue;
            }
            let [_, a, b, l, request] = self.hs;
            if [a, b, l] != [0, 0, 1] {
                return Err(RecordError::Decode("KeyUpdate"));
            }
            if !c.is_empty() {
                // a key change must end its record (§5.1)
                return Err(RecordError::Unaligned);
            }
            self.on_key_update(request)?;
        }
        Ok(())
    }

    /// The peer updated its key (RFC 8446 §4.6.3).
    fn on_key_update(&mut self, request: u8) -> Result<(), RecordError> {
        self.count_post_handshake()?;
        match request {
            0 => {}
            1 => {
                let mut out = std::mem::take(&mut self.outgoing);
                let r = self.key_update(false, &mut out);
                self.outgoing = out;
                r?;
            }
            other => return Err(RecordError::IllegalKeyUpdate(other)),
        }
        self.rx.update()
    }

    fn count_post_handshake(&mut self) -> Result<(), RecordError> {
        self.key_updates += 1;
        if self.key_updates > MAX_KEY_UPDATES_IN_ROW {
            return Err(RecordError::KeyUpdateFlood);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
