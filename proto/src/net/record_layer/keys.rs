//! Key state of one direction: the AEAD key, IV, sequence number and (TLS 1.3) the
//! traffic secret it came from, with the key schedule of a KeyUpdate (RFC 8446 §7).

use super::RecordError;
use ring::aead::{self, Aad, LessSafeKey, UnboundKey};
use ring::hkdf;
use rustls::ConnectionTrafficSecrets;

/// A TLS 1.3 traffic secret (SHA-256 or SHA-384 long), kept for key updates.
#[derive(Clone)]
pub struct TrafficSecret {
    pub(super) bytes: [u8; 48],
    pub(super) len: u8,
}

impl TrafficSecret {
    /// No secret (TLS 1.2: there are no key updates).
    pub(super) fn none() -> TrafficSecret {
        TrafficSecret {
            bytes: [0; 48],
            len: 0,
        }
    }

    pub fn new(secret: &[u8]) -> Option<TrafficSecret> {
        let mut bytes = [0u8; 48];
        bytes.get_mut(..secret.len())?.copy_from_slice(secret);
        matches!(secret.len(), 32 | 48).then_some(TrafficSecret {
            bytes,
            len: secret.len() as u8,
        })
    }

    fn get(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// HKDF-Expand-Label(secret, label, "", out.len()) (RFC 8446 §7.1).
    fn expand_label(&self, label: &[u8], out: &mut [u8]) -> Result<(), RecordError> {
        struct Len(usize);
        impl hkdf::KeyType for Len {
            fn len(&self) -> usize {
                self.0
            }
        }
        let alg = if self.len == 48 {
            hkdf::HKDF_SHA384
        } else {
            hkdf::HKDF_SHA256
        };
        let prk = hkdf::Prk::new_less_safe(alg, self.get());
        let out_len = (out.len() as u16).to_be_bytes();
        let label_len = [(6 + label.len()) as u8];
        let info: [&[u8]; 5] = [&out_len, &label_len, b"tls13 ", label, &[0]];
        prk.expand(&info, Len(out.len()))
            .and_then(|okm| okm.fill(out))
            .map_err(|_| RecordError::Unsupported)
    }

    /// The next generation's secret (RFC 8446 §7.2).
    fn next(&self) -> Result<TrafficSecret, RecordError> {
        if self.len == 0 {
            return Err(RecordError::Unsupported);
        }
        let mut next = TrafficSecret {
            bytes: [0; 48],
            len: self.len,
        };
        self.expand_label(b"traffic upd", &mut next.bytes[..self.len as usize])?;
        Ok(next)
    }
}

impl Drop for TrafficSecret {
    fn drop(&mut self) {
        self.bytes = [0; 48];
    }
}

/// One direction's key state.
pub(super) struct Direction {
    pub(super) key: LessSafeKey,
    pub(super) iv: [u8; 12],
    pub(super) seq: u64,
    pub(super) secret: TrafficSecret,
}

impl Direction {
    pub(super) fn new(
        seq: u64,
        secrets: ConnectionTrafficSecrets,
        secret: TrafficSecret,
    ) -> Result<Direction, RecordError> {
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
            secret,
        })
    }

    /// RFC 8446 §5.3: the IV XOR the 64-bit sequence number, which then advances; the
    /// sequence number used is returned too. A sequence number is never reused: at the
    /// end of its range the connection ends.
    pub(super) fn nonce(&mut self) -> Result<([u8; 12], u64), RecordError> {
        let seq = self.seq;
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        self.seq = seq.checked_add(1).ok_or(RecordError::SequenceExhausted)?;
        Ok((n, seq))
    }

    /// AES-GCM (an explicit nonce in TLS 1.2 records) rather than ChaCha20-Poly1305.
    pub(super) fn gcm(&self) -> bool {
        self.key.algorithm() != &aead::CHACHA20_POLY1305
    }

    /// Move to the next traffic secret and its key (RFC 8446 §7.2, §7.3).
    pub(super) fn update(&mut self) -> Result<(), RecordError> {
        let alg = self.key.algorithm();
        let secret = self.secret.next()?;
        let mut key = [0u8; 32];
        let key = &mut key[..alg.key_len()];
        secret.expand_label(b"key", key)?;
        secret.expand_label(b"iv", &mut self.iv)?;
        self.key =
            LessSafeKey::new(UnboundKey::new(alg, key).map_err(|_| RecordError::Unsupported)?);
        key.fill(0);
        self.secret = secret;
        self.seq = 0;
        Ok(())
    }
}

/// The additional data of a TLS 1.2 AEAD record (RFC 5246 §6.2.3.3).
pub(super) fn aad12(seq: u64, ty: u8, version: [u8; 2], len: usize) -> Aad<[u8; 13]> {
    let mut a = [0u8; 13];
    a[..8].copy_from_slice(&seq.to_be_bytes());
    a[8] = ty;
    a[9..11].copy_from_slice(&version);
    a[11..].copy_from_slice(&(len as u16).to_be_bytes());
    Aad::from(a)
}
