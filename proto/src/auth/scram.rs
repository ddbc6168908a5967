//! SCRAM credentials (RFC 5802 / RFC 7677): what is stored instead of a password.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Stored keys for one hash function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// Everything needed to verify SCRAM-SHA-1 and SCRAM-SHA-256 (and PLAIN) for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub sha1: ScramKeys,
    pub sha256: ScramKeys,
    /// The password itself, kept only when `password_format = "plain"`.
    pub plain: Option<String>,
}

/// Hash functions SCRAM is offered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
}

impl Credentials {
    /// Derive credentials from a password with a fresh random salt.
    pub fn derive(password: &str, iterations: u32, keep_plain: bool) -> Self {
        let salt: [u8; 16] = rand::random();
        Self::derive_with_salt(password, &salt, iterations, keep_plain)
    }

    pub fn derive_with_salt(
        password: &str,
        salt: &[u8],
        iterations: u32,
        keep_plain: bool,
    ) -> Self {
        Credentials {
            salt: salt.to_vec(),
            iterations,
            sha1: keys(Hash::Sha1, password.as_bytes(), salt, iterations),
            sha256: keys(Hash::Sha256, password.as_bytes(), salt, iterations),
            plain: keep_plain.then(|| password.to_string()),
        }
    }

    pub fn keys(&self, hash: Hash) -> &ScramKeys {
        match hash {
            Hash::Sha1 => &self.sha1,
            Hash::Sha256 => &self.sha256,
        }
    }

    /// Check a cleartext password (PLAIN, legacy auth) against what is stored. Always
    /// one key derivation, whether the cleartext is kept or not and whether the
    /// credentials are an account's or a decoy's: a failure costs the same work as a
    /// success, so timing does not tell which accounts exist.
    pub fn verify_password(&self, password: &str) -> bool {
        let k = keys(
            Hash::Sha256,
            password.as_bytes(),
            &self.salt,
            self.iterations,
        );
        constant_time_eq(&k.stored_key, &self.sha256.stored_key)
    }
}

/// SaltedPassword -> (StoredKey, ServerKey) for one hash.
pub fn keys(hash: Hash, password: &[u8], salt: &[u8], iterations: u32) -> ScramKeys {
    match hash {
        Hash::Sha1 => {
            let mut salted = [0u8; 20];
            pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut salted);
            let client_key = hmac::<Hmac<Sha1>>(&salted, b"Client Key");
            ScramKeys {
                stored_key: Sha1::digest(&client_key).to_vec(),
                server_key: hmac::<Hmac<Sha1>>(&salted, b"Server Key"),
            }
        }
        Hash::Sha256 => {
            let mut salted = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted);
            let client_key = hmac::<Hmac<Sha256>>(&salted, b"Client Key");
            ScramKeys {
                stored_key: Sha256::digest(&client_key).to_vec(),
                server_key: hmac::<Hmac<Sha256>>(&salted, b"Server Key"),
            }
        }
    }
}

fn hmac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <M as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Compare without an early exit, so timing does not tell how many bytes matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677 §3: user "user", password "pencil", salt "W22ZaJ0SNY7soEsUEjb6gQ==", i=4096.
        use base64::Engine;
        let salt = base64::engine::general_purpose::STANDARD
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .expect("b64");
        let c = Credentials::derive_with_salt("pencil", &salt, 4096, false);
        // ServerSignature = HMAC(ServerKey, AuthMessage); the RFC gives v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = hmac::<Hmac<Sha256>>(&c.sha256.server_key, auth.as_bytes());
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn verify_password_both_forms() {
        let s = Credentials::derive("secret", 64, false);
        assert!(s.verify_password("secret"));
        assert!(!s.verify_password("Secret"));
        let p = Credentials::derive("secret", 64, true);
        assert!(p.verify_password("secret"));
        assert!(!p.verify_password("secre"));
    }
}
