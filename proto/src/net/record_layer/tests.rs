use super::*;
use rustls::crypto::cipher::{AeadKey, Iv};

fn secrets(k: u8, i: u8) -> ConnectionTrafficSecrets {
    ConnectionTrafficSecrets::Aes256Gcm {
        key: AeadKey::from([k; 32]),
        iv: Iv::new([i; 12]),
    }
}

fn secret(b: u8) -> TrafficSecret {
    TrafficSecret::new(&[b; 48]).expect("secret")
}

/// Two ends whose directions mirror each other.
fn pair() -> (RecordLayer, RecordLayer) {
    let a = RecordLayer::new(
        ExtractedSecrets {
            tx: (0, secrets(1, 2)),
            rx: (0, secrets(3, 4)),
        },
        Some((secret(5), secret(6))),
    )
    .expect("a");
    let b = RecordLayer::new(
        ExtractedSecrets {
            tx: (0, secrets(3, 4)),
            rx: (0, secrets(1, 2)),
        },
        Some((secret(6), secret(5))),
    )
    .expect("b");
    (a, b)
}

/// Open everything in `wire`, returning the data and the error, if any.
fn open_all(b: &mut RecordLayer, wire: &[u8]) -> (Vec<u8>, Result<Option<Event>, RecordError>) {
    let mut got = Vec::new();
    let mut w = wire.to_vec();
    let r = b.open(&mut w, |d| got.extend_from_slice(d));
    (got, r)
}

/// The alert the layer queued for the peer, opened by the peer's end.
fn alert_sent(b: &mut RecordLayer, a: &mut RecordLayer) -> Result<Option<Event>, RecordError> {
    let out = b.take_outgoing().expect("an alert is queued");
    open_all(a, &out).1
}

#[test]
fn round_trip_in_any_chunking() {
    for step in [1, 7, 100, 100_000] {
        let (mut a, mut b) = pair();
        let mut w = Vec::new();
        a.seal(b"<message>hi</message>", &mut w).expect("seal");
        a.seal(&vec![b'x'; 40_000], &mut w).expect("seal");
        a.close_notify(&mut w);
        let mut got = Vec::new();
        let mut closed = false;
        for c in w.chunks(step) {
            let mut c = c.to_vec();
            if b.open(&mut c, |d| got.extend_from_slice(d)).expect("open") == Some(Event::Closed) {
                closed = true;
            }
        }
        assert!(closed, "step {step}");
        assert_eq!(got.len(), 21 + 40_000, "step {step}");
        assert!(got.starts_with(b"<message>hi</message>"));
        assert_eq!(b.pending(), 0);
    }
}

#[test]
fn tampering_and_replay_fail_with_bad_record_mac() {
    let (mut a, mut b) = pair();
    let mut wire = Vec::new();
    a.seal(b"secret", &mut wire).expect("seal");
    let mut bad = wire.clone();
    bad[8] ^= 1;
    assert_eq!(open_all(&mut b, &bad).1, Err(RecordError::BadRecordMac));
    assert_eq!(
        alert_sent(&mut b, &mut a),
        Err(RecordError::Alert(alert::BAD_RECORD_MAC))
    );
    // a replayed record no longer matches the sequence number
    let (mut a, mut b) = pair();
    let mut wire = Vec::new();
    a.seal(b"once", &mut wire).expect("seal");
    assert!(open_all(&mut b, &wire).1.is_ok());
    assert_eq!(open_all(&mut b, &wire).1, Err(RecordError::BadRecordMac));
}

#[test]
fn malformed_records_get_the_right_alert() {
    let cases: [(Vec<u8>, RecordError, u8); 3] = [
        (
            vec![23, 3, 3, 0xff, 0xff],
            RecordError::Overflow(0xffff),
            alert::RECORD_OVERFLOW,
        ),
        // a 5-byte record is too short, not too large
        (
            vec![23, 3, 3, 0, 0],
            RecordError::TooShort(0),
            alert::DECODE_ERROR,
        ),
        (
            [&[22, 3, 3, 0, 20][..], &[0; 20]].concat(),
            RecordError::UnexpectedType(22),
            alert::UNEXPECTED_MESSAGE,
        ),
    ];
    for (wire, err, desc) in cases {
        let (mut a, mut b) = pair();
        assert_eq!(open_all(&mut b, &wire).1, Err(err.clone()));
        assert_eq!(err.alert(), Some(desc));
        assert_eq!(alert_sent(&mut b, &mut a), Err(RecordError::Alert(desc)));
    }
}

/// Seal a record of any inner content and type with `a`'s sending key.
fn raw_record(a: &mut RecordLayer, content: &[u8], ty: u8) -> Vec<u8> {
    let mut w = Vec::new();
    a.seal_record(content, ty, &mut w).expect("seal");
    w
}

#[test]
fn inner_plaintext_over_the_limit_is_record_overflow() {
    let (mut a, mut b) = pair();
    // 2^14 + 1 bytes of content plus the type: one byte over (RFC 8446 §5.4)
    let w = raw_record(&mut a, &vec![b'x'; MAX_PLAINTEXT + 1], APPLICATION_DATA);
    assert_eq!(
        open_all(&mut b, &w).1,
        Err(RecordError::PlaintextOverflow(MAX_PLAINTEXT + 2))
    );
    // exactly the limit is fine
    let (mut a, mut b) = pair();
    let w = raw_record(&mut a, &vec![b'x'; MAX_PLAINTEXT], APPLICATION_DATA);
    assert_eq!(open_all(&mut b, &w).0.len(), MAX_PLAINTEXT);
}

#[test]
fn key_updates_both_ways() {
    let (mut a, mut b) = pair();
    // a rotates its key every 3 records: b follows each KeyUpdate
    a.rotate_after(3);
    let mut w = Vec::new();
    for i in 0..10 {
        a.seal(format!("<m{i}/>").as_bytes(), &mut w).expect("seal");
    }
    let (got, r) = open_all(&mut b, &w);
    assert_eq!(r, Ok(None));
    assert_eq!(
        got,
        (0..10)
            .map(|i| format!("<m{i}/>"))
            .collect::<String>()
            .as_bytes()
    );
    assert!(
        b.take_outgoing().is_none(),
        "update_not_requested needs no answer"
    );

    // update_requested: b answers with its own KeyUpdate, then seals with the new key
    let w = raw_record(&mut a, &[KEY_UPDATE, 0, 0, 1, 1], HANDSHAKE);
    a.tx.update().expect("update");
    assert_eq!(open_all(&mut b, &w).1, Ok(None));
    let mut back = b.take_outgoing().expect("b's KeyUpdate");
    b.seal(b"<after/>", &mut back).expect("seal");
    let (got, r) = open_all(&mut a, &back);
    assert_eq!((got.as_slice(), r), (&b"<after/>"[..], Ok(None)));
    assert!(a.take_outgoing().is_none());
}

#[test]
fn a_key_update_split_over_records_is_honoured() {
    let (mut a, mut b) = pair();
    let mut w = raw_record(&mut a, &[KEY_UPDATE, 0], HANDSHAKE);
    w.extend(raw_record(&mut a, &[0, 1, 0], HANDSHAKE));
    a.tx.update().expect("update");
    a.seal(b"<x/>", &mut w).expect("seal");
    assert_eq!(open_all(&mut b, &w).0, b"<x/>");
}

#[test]
fn other_post_handshake_messages_are_refused() {
    let cases: [(&[u8], RecordError); 5] = [
        // a ClientHello, a Finished, a NewSessionTicket
        (&[1, 0, 0, 1, 0], RecordError::UnexpectedHandshake(1)),
        (&[20, 0, 0, 0], RecordError::UnexpectedHandshake(20)),
        (&[4, 0, 0, 0], RecordError::UnexpectedHandshake(4)),
        (&[KEY_UPDATE, 0, 0, 1, 7], RecordError::IllegalKeyUpdate(7)),
        // data after a KeyUpdate in the same record
        (&[KEY_UPDATE, 0, 0, 1, 0, 24], RecordError::Unaligned),
    ];
    for (msg, err) in cases {
        let (mut a, mut b) = pair();
        let w = raw_record(&mut a, msg, HANDSHAKE);
        assert_eq!(open_all(&mut b, &w).1, Err(err.clone()), "{msg:?}");
        let desc = err.alert().expect("an alert");
        assert_eq!(alert_sent(&mut b, &mut a), Err(RecordError::Alert(desc)));
    }
}

#[test]
fn key_update_floods_end_the_connection() {
    let (mut a, mut b) = pair();
    let mut w = Vec::new();
    for _ in 0..=MAX_KEY_UPDATES_IN_ROW {
        w.extend(raw_record(&mut a, &[KEY_UPDATE, 0, 0, 1, 0], HANDSHAKE));
        a.tx.update().expect("update");
    }
    assert_eq!(open_all(&mut b, &w).1, Err(RecordError::KeyUpdateFlood));
}

#[test]
fn sequence_numbers_never_wrap() {
    let (mut a, _) = pair();
    a.tx.seq = u64::MAX;
    a.rotate_after(u64::MAX);
    let mut w = Vec::new();
    assert_eq!(a.seal(b"x", &mut w), Err(RecordError::SequenceExhausted));
    assert!(w.is_empty(), "nothing sealed with a reused nonce");
}

/// Two TLS 1.2 ends (AES-256-GCM or ChaCha20-Poly1305).
fn pair12(chacha: bool) -> (RecordLayer, RecordLayer) {
    let sec = |k: u8, i: u8| {
        if chacha {
            ConnectionTrafficSecrets::Chacha20Poly1305 {
                key: AeadKey::from([k; 32]),
                iv: Iv::new([i; 12]),
            }
        } else {
            ConnectionTrafficSecrets::Aes256Gcm {
                key: AeadKey::from([k; 32]),
                iv: Iv::new([i; 12]),
            }
        }
    };
    let a = RecordLayer::new(
        ExtractedSecrets {
            tx: (1, sec(1, 2)),
            rx: (0, sec(3, 4)),
        },
        None,
    )
    .expect("a");
    let b = RecordLayer::new(
        ExtractedSecrets {
            tx: (0, sec(3, 4)),
            rx: (1, sec(1, 2)),
        },
        None,
    )
    .expect("b");
    (a, b)
}

#[test]
fn tls12_records_errors_and_renegotiation() {
    for chacha in [false, true] {
        let (mut a, mut b) = pair12(chacha);
        let mut w = Vec::new();
        a.seal(&vec![b'y'; 20_000], &mut w).expect("seal");
        // the outer type is the real one; AES-GCM carries an explicit nonce
        assert_eq!(w[0], APPLICATION_DATA);
        let first = u16::from_be_bytes([w[3], w[4]]) as usize;
        assert_eq!(first, MAX_PLAINTEXT + TAG + if chacha { 0 } else { 8 });
        let (got, r) = open_all(&mut b, &w);
        assert_eq!((got.len(), r), (20_000, Ok(None)));
        // a ClientHello (renegotiation) gets a no_renegotiation warning and is skipped,
        // split over two records or not
        let mut w = raw_record(&mut a, &[CLIENT_HELLO, 0, 0, 6, 1, 2], HANDSHAKE);
        w.extend(raw_record(&mut a, &[3, 4, 5, 6], HANDSHAKE));
        a.seal(b"<x/>", &mut w).expect("seal");
        assert_eq!(open_all(&mut b, &w), (b"<x/>".to_vec(), Ok(None)));
        let warn = b.take_outgoing().expect("warning");
        assert_eq!(warn[0], ALERT);
        // a warning alert does not end a TLS 1.2 connection
        assert_eq!(open_all(&mut a, &warn), (vec![], Ok(None)));
        // a KeyUpdate does not exist in TLS 1.2, a change_cipher_spec is out of place
        let w = raw_record(&mut a, &[KEY_UPDATE, 0, 0, 1, 0], HANDSHAKE);
        assert_eq!(
            open_all(&mut b, &w).1,
            Err(RecordError::UnexpectedHandshake(KEY_UPDATE))
        );
        let (mut a, mut b) = pair12(chacha);
        let w = raw_record(&mut a, &[1], 20);
        assert_eq!(open_all(&mut b, &w).1, Err(RecordError::UnexpectedType(20)));
        assert_eq!(
            alert_sent(&mut b, &mut a),
            Err(RecordError::Alert(alert::UNEXPECTED_MESSAGE))
        );
        // plaintext over 2^14 is record_overflow
        let (mut a, mut b) = pair12(chacha);
        let w = raw_record(&mut a, &vec![0; MAX_PLAINTEXT + 1], APPLICATION_DATA);
        assert_eq!(
            open_all(&mut b, &w).1,
            Err(RecordError::PlaintextOverflow(MAX_PLAINTEXT + 1))
        );
    }
}

#[test]
fn tls12_aes_gcm_ends_at_its_limit() {
    let (mut a, _) = pair12(false);
    a.rotate_after(3);
    let mut w = Vec::new();
    assert!(a.seal(b"1", &mut w).is_ok());
    assert!(a.seal(b"2", &mut w).is_ok());
    assert_eq!(a.seal(b"3", &mut w), Err(RecordError::KeyExhausted));
    let (mut a, _) = pair12(true);
    a.rotate_after(3);
    for _ in 0..5 {
        assert!(a.seal(b"chacha has no such limit", &mut w).is_ok());
    }
}
