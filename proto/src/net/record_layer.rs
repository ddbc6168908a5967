//! The TLS 1.3 record layer (RFC 8446 §5) for established connections.
//!
//! rustls runs the handshake; then its traffic secrets are extracted and this small
//! layer protects application data with ring's AEADs — the way kernel TLS offload
//! does. It keeps per connection only the two keys, their IVs and sequence numbers,
//! and the bytes of a record that arrived in part (usually none), so an idle TLS
//! session holds no buffers at all.
//!
//! Post-handshake messages are not supported: a KeyUpdate (or anything else on the
//! handshake content type) ends the connection with an error.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets};

/// Bytes of a record header (content type, version, length).
pub const HEADER: usize = 5;
/// Largest plaintext in one record (RFC 8446 §5.1).
pub const MAX_PLAINTEXT: usize = 1 << 14;
/// Largest protected record body (RFC 8446 §5.2).
const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;
const TAG: usize = 16;

const APPLICATION_DATA: u8 = 23;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const CLOSE_NOTIFY: u8 = 0;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("TLS record too large")]
    Overflow,
    #[error("TLS record failed authentication")]
    BadRecordMac,
    #[error("unexpected TLS record type {0}")]
    UnexpectedType(u8),
    #[error("TLS alert {0} from the peer")]
    Alert(u8),
    #[error("post-handshake TLS messages are not supported")]
    PostHandshake,
    #[error("unsupported cipher suite for record protection")]
    Unsupported,
}

/// One direction's key state.
struct Direction {
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

impl Direction {
    fn new(seq: u64, secrets: ConnectionTrafficSecrets) -> Result<Direction, RecordError> {
        let (alg, key, iv) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv)
            }
            _ => return Err(RecordError::Unsupported),
        };
        let key = UnboundKey::new(alg, key.as_ref()).map_err(|_| RecordError::Unsupported)?;
        let iv: [u8; 12] = iv
            .as_ref()
            .try_into()
            .map_err(|_| RecordError::Unsupported)?;
        Ok(Direction {
            key: LessSafeKey::new(key),
            iv,
            seq,
        })
    }

    /// RFC 8446 §5.3: the IV XOR the 64-bit sequence number, which then advances.
    fn nonce(&mut self) -> Nonce {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        self.seq += 1;
        Nonce::assume_unique_for_key(n)
    }
}

/// What the peer sent, record by record.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The peer closed its side (close_notify).
    Closed,
}

/// Record protection for one established TLS 1.3 connection.
pub struct RecordLayer {
    rx: Direction,
    tx: Direction,
    /// A record received in part, waiting for the rest.
    partial: Vec<u8>,
}

impl RecordLayer {
    pub fn new(secrets: ExtractedSecrets) -> Result<RecordLayer, RecordError> {
        Ok(RecordLayer {
            rx: Direction::new(secrets.rx.0, secrets.rx.1)?,
            tx: Direction::new(secrets.tx.0, secrets.tx.1)?,
            partial: Vec::new(),
        })
    }

    /// Decrypt the records in `input` (bytes as read from the socket), handing each
    /// application-data payload to `on_data`. A record cut off at the end is kept
    /// for the next call.
    pub fn open(
        &mut self,
        input: &mut [u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<Option<Event>, RecordError> {
        if self.partial.is_empty() {
            let used = open_records(&mut self.rx, input, &mut on_data)?;
            if let (_, Some(e)) = used {
                return Ok(Some(e));
            }
            self.partial.extend_from_slice(&input[used.0..]);
            return Ok(None);
        }
        self.partial.extend_from_slice(input);
        let mut buf = std::mem::take(&mut self.partial);
        let (used, ev) = open_records(&mut self.rx, &mut buf, &mut on_data)?;
        if ev.is_none() {
            buf.drain(..used);
            if !buf.is_empty() {
                buf.shrink_to_fit();
                self.partial = buf;
            }
        }
        Ok(ev)
    }

    /// Protect `plaintext` as application-data records appended to `out`.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) {
        let records = plaintext.len().div_ceil(MAX_PLAINTEXT);
        // each record: header, the inner content type, the tag
        out.reserve(plaintext.len() + records * (HEADER + 1 + TAG));
        for chunk in plaintext.chunks(MAX_PLAINTEXT) {
            self.seal_record(chunk, APPLICATION_DATA, out);
        }
    }

    /// A close_notify alert, appended to `out`.
    pub fn close_notify(&mut self, out: &mut Vec<u8>) {
        self.seal_record(&[1, CLOSE_NOTIFY], ALERT, out);
    }

    fn seal_record(&mut self, chunk: &[u8], content_type: u8, out: &mut Vec<u8>) {
        let len = chunk.len() + 1 + TAG;
        let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
        out.extend_from_slice(&header);
        let start = out.len();
        out.extend_from_slice(chunk);
        out.push(content_type);
        let nonce = self.tx.nonce();
        // sealing cannot fail for in-bounds lengths; if it ever did, a record that is
        // not sent is better than one sent in the clear
        match self
            .tx
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), &mut out[start..])
        {
            Ok(tag) => out.extend_from_slice(tag.as_ref()),
            Err(_) => out.truncate(start - HEADER),
        }
    }

    /// Bytes held for a record received in part.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

/// Open every complete record at the start of `buf`; returns how many bytes were used
/// and whether the peer closed.
fn open_records(
    rx: &mut Direction,
    buf: &mut [u8],
    on_data: &mut impl FnMut(&[u8]),
) -> Result<(usize, Option<Event>), RecordError> {
    let mut pos = 0;
    while buf.len() - pos >= HEADER {
        let h = &buf[pos..pos + HEADER];
        let len = u16::from_be_bytes([h[3], h[4]]) as usize;
        if !(TAG + 1..=MAX_CIPHERTEXT).contains(&len) {
            return Err(RecordError::Overflow);
        }
        if h[0] != APPLICATION_DATA {
            return Err(RecordError::UnexpectedType(h[0]));
        }
        if buf.len() - pos < HEADER + len {
            break;
        }
        let header: [u8; HEADER] = [h[0], h[1], h[2], h[3], h[4]];
        let nonce = rx.nonce();
        let body = &mut buf[pos + HEADER..pos + HEADER + len];
        let plain = rx
            .key
            .open_in_place(nonce, Aad::from(header), body)
            .map_err(|_| RecordError::BadRecordMac)?;
        pos += HEADER + len;
        // the real content type is the last non-zero byte (RFC 8446 §5.4)
        let Some(end) = plain.iter().rposition(|b| *b != 0) else {
            return Err(RecordError::UnexpectedType(0));
        };
        let (content, ty) = (&plain[..end], plain[end]);
        match ty {
            APPLICATION_DATA => {
                if !content.is_empty() {
                    on_data(content);
                }
            }
            ALERT => {
                return match content.get(1) {
                    Some(&CLOSE_NOTIFY) => Ok((pos, Some(Event::Closed))),
                    Some(&d) => Err(RecordError::Alert(d)),
                    None => Err(RecordError::UnexpectedType(ALERT)),
                };
            }
            HANDSHAKE => return Err(RecordError::PostHandshake),
            other => return Err(RecordError::UnexpectedType(other)),
        }
    }
    Ok((pos, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::cipher::{AeadKey, Iv};

    fn secrets(k: u8, i: u8) -> ConnectionTrafficSecrets {
        ConnectionTrafficSecrets::Aes256Gcm {
            key: AeadKey::from([k; 32]),
            iv: Iv::new([i; 12]),
        }
    }

    /// Two ends whose directions mirror each other.
    fn pair() -> (RecordLayer, RecordLayer) {
        let a = RecordLayer::new(ExtractedSecrets {
            tx: (0, secrets(1, 2)),
            rx: (0, secrets(3, 4)),
        })
        .expect("a");
        let b = RecordLayer::new(ExtractedSecrets {
            tx: (0, secrets(3, 4)),
            rx: (0, secrets(1, 2)),
        })
        .expect("b");
        (a, b)
    }

    #[test]
    fn round_trip_in_any_chunking() {
        let (mut a, mut b) = pair();
        let mut wire = Vec::new();
        a.seal(b"<message>hi</message>", &mut wire);
        a.seal(&vec![b'x'; 40_000], &mut wire);
        a.close_notify(&mut wire);
        for step in [1, 7, 100, wire.len()] {
            let (mut a2, mut b2) = pair();
            let mut w = Vec::new();
            a2.seal(b"<message>hi</message>", &mut w);
            a2.seal(&vec![b'x'; 40_000], &mut w);
            a2.close_notify(&mut w);
            let mut got = Vec::new();
            let mut closed = false;
            for c in w.chunks(step) {
                let mut c = c.to_vec();
                if b2.open(&mut c, |d| got.extend_from_slice(d)).expect("open")
                    == Some(Event::Closed)
                {
                    closed = true;
                }
            }
            assert!(closed, "step {step}");
            assert_eq!(got.len(), 21 + 40_000, "step {step}");
            assert!(got.starts_with(b"<message>hi</message>"));
        }
        let mut got = Vec::new();
        assert_eq!(
            b.open(&mut wire, |d| got.extend_from_slice(d)),
            Ok(Some(Event::Closed))
        );
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn tampering_and_replay_fail() {
        let (mut a, mut b) = pair();
        let mut wire = Vec::new();
        a.seal(b"secret", &mut wire);
        let mut bad = wire.clone();
        bad[8] ^= 1;
        assert_eq!(b.open(&mut bad, |_| {}), Err(RecordError::BadRecordMac));
        // a replayed record no longer matches the sequence number
        let (mut a, mut b) = pair();
        let mut wire = Vec::new();
        a.seal(b"once", &mut wire);
        let mut again = wire.clone();
        assert!(b.open(&mut wire, |_| {}).is_ok());
        assert_eq!(b.open(&mut again, |_| {}), Err(RecordError::BadRecordMac));
    }

    #[test]
    fn oversized_and_plaintext_records_are_refused() {
        let (_, mut b) = pair();
        let mut huge = vec![23, 3, 3, 0xff, 0xff];
        assert_eq!(b.open(&mut huge, |_| {}), Err(RecordError::Overflow));
        let mut plain = vec![22, 3, 3, 0, 20];
        plain.extend_from_slice(&[0; 20]);
        assert_eq!(
            b.open(&mut plain, |_| {}),
            Err(RecordError::UnexpectedType(22))
        );
    }
}
