//! SASL client side: SCRAM-SHA-1 / SCRAM-SHA-256 (RFC 5802, RFC 7677) and PLAIN.
//!
//! The salted password (PBKDF2, thousands of HMACs) is cached per
//! (hash, password, salt, iterations), so a driver that logs the same accounts in
//! again and again spends its CPU on the protocol, not on key stretching.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
pub enum Mechanism {
    #[value(name = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-1", alias = "scram-sha-1")]
    ScramSha1,
    #[value(name = "PLAIN", alias = "plain")]
    Plain,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }
}

/// ClientKey, StoredKey and ServerKey derived from one salted password.
#[derive(Clone)]
struct Keys {
    client_key: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

type CacheKey = (Mechanism, String, Vec<u8>, u32);

fn cache() -> &'static Mutex<HashMap<CacheKey, Arc<Keys>>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Arc<Keys>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn hmac_sha1(key: &[u8], data: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for d in data {
        m.update(d);
    }
    m.finalize().into_bytes().to_vec()
}

fn hmac_sha256(key: &[u8], data: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for d in data {
        m.update(d);
    }
    m.finalize().into_bytes().to_vec()
}

fn hmac(mech: Mechanism, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
    match mech {
        Mechanism::ScramSha1 => hmac_sha1(key, data),
        _ => hmac_sha256(key, data),
    }
}

fn derive(mech: Mechanism, password: &str, salt: &[u8], iterations: u32) -> Keys {
    let salted = match mech {
        Mechanism::ScramSha1 => {
            let mut out = [0u8; 20];
            pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut out);
            out.to_vec()
        }
        _ => {
            let mut out = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
            out.to_vec()
        }
    };
    let client_key = hmac(mech, &salted, &[b"Client Key"]);
    let stored_key = match mech {
        Mechanism::ScramSha1 => Sha1::digest(&client_key).to_vec(),
        _ => Sha256::digest(&client_key).to_vec(),
    };
    let server_key = hmac(mech, &salted, &[b"Server Key"]);
    Keys {
        client_key,
        stored_key,
        server_key,
    }
}

fn keys(mech: Mechanism, password: &str, salt: &[u8], iterations: u32) -> Arc<Keys> {
    let k = (mech, password.to_string(), salt.to_vec(), iterations);
    if let Some(v) = cache().lock().ok().and_then(|c| c.get(&k).cloned()) {
        return v;
    }
    let v = Arc::new(derive(mech, password, salt, iterations));
    if let Ok(mut c) = cache().lock() {
        c.insert(k, v.clone());
    }
    v
}

/// RFC 5802 saslname escaping.
fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// One client-side exchange.
pub struct Client {
    mech: Mechanism,
    user: String,
    password: String,
    nonce: String,
    client_first_bare: String,
    /// AuthMessage, and the ServerSignature we expect, once the proof is sent.
    expected_signature: Option<Vec<u8>>,
    /// Highest iteration count accepted from a server (protects the driver's CPU).
    max_iterations: u32,
}

impl Client {
    pub fn new(mech: Mechanism, user: &str, password: &str) -> Self {
        let nonce: [u8; 18] = rand::random();
        let nonce = B64.encode(nonce);
        let client_first_bare = format!("n={},r={}", saslname(user), nonce);
        Client {
            mech,
            user: user.to_string(),
            password: password.to_string(),
            nonce,
            client_first_bare,
            expected_signature: None,
            max_iterations: 1_000_000,
        }
    }

    /// The initial response (raw, not base64).
    pub fn initial(&self) -> Vec<u8> {
        match self.mech {
            Mechanism::Plain => format!("\0{}\0{}", self.user, self.password).into_bytes(),
            _ => format!("n,,{}", self.client_first_bare).into_bytes(),
        }
    }

    /// Answer a challenge (raw bytes). Returns the response to send.
    pub fn respond(&mut self, challenge: &[u8]) -> Result<Vec<u8>, String> {
        if self.mech == Mechanism::Plain {
            return Err("PLAIN got a challenge".into());
        }
        if self.expected_signature.is_some() {
            // server-final-message sent as a challenge (RFC 6120 §6.3.10 allows it)
            self.verify_final(challenge)?;
            return Ok(Vec::new());
        }
        let s = std::str::from_utf8(challenge).map_err(|_| "server-first is not UTF-8")?;
        let mut r = None;
        let mut salt = None;
        let mut iters = None;
        for part in s.split(',') {
            if let Some(v) = part.strip_prefix("r=") {
                r = Some(v);
            } else if let Some(v) = part.strip_prefix("s=") {
                salt = Some(v);
            } else if let Some(v) = part.strip_prefix("i=") {
                iters = Some(v);
            } else if part.starts_with("m=") {
                return Err("server requires an unknown SCRAM extension".into());
            }
        }
        let r = r.ok_or("server-first without r=")?;
        if !r.starts_with(&self.nonce) || r.len() <= self.nonce.len() {
            return Err("server nonce does not extend ours".into());
        }
        let salt = B64
            .decode(salt.ok_or("server-first without s=")?)
            .map_err(|_| "bad salt base64")?;
        let iters: u32 = iters
            .ok_or("server-first without i=")?
            .parse()
            .map_err(|_| "bad iteration count")?;
        if iters == 0 || iters > self.max_iterations {
            return Err(format!("iteration count {iters} refused"));
        }
        let keys = keys(self.mech, &self.password, &salt, iters);
        let without_proof = format!("c=biws,r={r}");
        let auth_message = [
            self.client_first_bare.as_bytes(),
            b",",
            challenge,
            b",",
            without_proof.as_bytes(),
        ];
        let signature = hmac(self.mech, &keys.stored_key, &auth_message);
        let proof: Vec<u8> = keys
            .client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        self.expected_signature = Some(hmac(self.mech, &keys.server_key, &auth_message));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Check the server-final-message (`v=...`) carried by `<success/>`.
    pub fn verify_final(&self, data: &[u8]) -> Result<(), String> {
        if self.mech == Mechanism::Plain {
            return Ok(());
        }
        let Some(expected) = &self.expected_signature else {
            return Err("success before the proof was sent".into());
        };
        if data.is_empty() {
            // Some servers send the signature in a challenge and an empty success.
            return Ok(());
        }
        let s = std::str::from_utf8(data).map_err(|_| "server-final is not UTF-8")?;
        if let Some(e) = s.strip_prefix("e=") {
            return Err(format!("server error {e}"));
        }
        let v = s
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or("server-final without v=")?;
        let v = B64.decode(v).map_err(|_| "bad v= base64")?;
        if &v != expected {
            return Err("server signature mismatch".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_exchange() {
        // RFC 7677 §3 test vector.
        let mut c = Client::new(Mechanism::ScramSha256, "user", "pencil");
        c.nonce = "rOprNGfwEbeRWgbNEkqO".into();
        c.client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO".into();
        let resp = c
            .respond(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .expect("respond");
        assert_eq!(
            String::from_utf8(resp).expect("utf8"),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.verify_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect("server signature");
        assert!(c.verify_final(b"v=AAAA").is_err());
    }

    #[test]
    fn rfc5802_exchange() {
        let mut c = Client::new(Mechanism::ScramSha1, "user", "pencil");
        c.nonce = "fyko+d2lbbFgONRv9qkxdawL".into();
        c.client_first_bare = "n=user,r=fyko+d2lbbFgONRv9qkxdawL".into();
        let resp = c
            .respond(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
            .expect("respond");
        assert_eq!(
            String::from_utf8(resp).expect("utf8"),
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        c.verify_final(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
            .expect("server signature");
    }

    #[test]
    fn refuses_foreign_nonce() {
        let mut c = Client::new(Mechanism::ScramSha1, "user", "pencil");
        assert!(c.respond(b"r=other,s=QSXCR+Q6sek8bf92,i=4096").is_err());
        assert_eq!(
            Client::new(Mechanism::Plain, "u", "p").initial(),
            b"\0u\0p".to_vec()
        );
    }
}
