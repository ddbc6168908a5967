//! The shape of SCRAM client messages (RFC 5802 §7), checked before rsasl parses them:
//! rsasl 2.3 slices fields as if they had at least two bytes and panics on some
//! malformed messages (found by fuzzing).

/// The shape of a SCRAM client-first-message (RFC 5802 §7), checked before rsasl parses
/// it: rsasl 2.3 slices every field as if it had at least two bytes and panics on
/// `y,>,n=a,r=x` or `n,,n=a,r`.
pub fn scram_client_first_ok(m: &[u8]) -> bool {
    let mut parts = m.split(|b| *b == b',');
    let (Some(cb), Some(authz), Some(user), Some(nonce)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let attr = |f: &[u8], name: u8| f.len() > 2 && f[0] == name && f[1] == b'=';
    let cb_ok = cb == b"n" || cb == b"y" || attr(cb, b'p');
    let authz_ok = authz.is_empty() || attr(authz, b'a');
    let ext_ok = parts.all(|e| e.len() >= 2 && e[0].is_ascii_alphabetic() && e[1] == b'=');
    cb_ok && authz_ok && attr(user, b'n') && attr(nonce, b'r') && ext_ok
}

/// The shape of a SCRAM client-final-message (RFC 5802 §7: `c=`, `r=`, extensions, `p=`),
/// checked before rsasl parses it (it panics on fields shorter than two bytes and on a
/// trailing comma).
pub fn scram_client_final_ok(m: &[u8]) -> bool {
    let fields: Vec<&[u8]> = m.split(|b| *b == b',').collect();
    let attr = |f: &[u8], name: u8| f.len() >= 2 && f[0] == name && f[1] == b'=';
    fields.len() >= 3
        && attr(fields[0], b'c')
        && attr(fields[1], b'r')
        && fields.last().is_some_and(|f| attr(f, b'p'))
        && fields.iter().all(|f| f.len() >= 2 && f[1] == b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_client_first_shape() {
        for ok in [
            &b"n,,n=alice,r=abc"[..],
            b"y,,n=alice,r=abc",
            b"p=tls-exporter,,n=alice,r=abc",
            b"n,a=admin,n=alice,r=abc",
            b"n,,n=al=2Cice,r=abc,x=ext",
        ] {
            assert!(scram_client_first_ok(ok), "{}", String::from_utf8_lossy(ok));
        }
        // the inputs that made rsasl 2.3 panic (found by fuzzing), and relatives
        for bad in [
            &b"y,>,n=al=2Cice,rxxx=x"[..],
            b"y,>,n=alice,r=x",
            b"n,,n=alice,r",
            b"n,,n=alice,",
            b"n,,,r=abc",
            b"n,a,n=alice,r=abc",
            b"p,,n=alice,r=abc",
            b"p=,,n=alice,r=abc",
            b"n,,n=,r=abc",
            b"n,,n=alice,r=",
            b"n,,n=alice,r=abc,",
            b"n,,n=alice,r=abc,x",
            b"",
            b"n",
        ] {
            assert!(
                !scram_client_first_ok(bad),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn scram_client_final_shape() {
        for ok in [
            &b"c=biws,r=abc,p=xyz"[..],
            b"c=biws,r=abc,x=ext,p=xyz",
            b"c=,r=,p=",
        ] {
            assert!(scram_client_final_ok(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"c=biws,r=abc,p=xyz,"[..],
            b"c=biws,r=abc,p=xyz,p",
            b"c=biws,r=abc,,p=xyz",
            b"c=biws,r,p=xyz",
            b"c,r=abc,p=xyz",
            b"c=biws,r=abc",
            b"",
            b",",
        ] {
            assert!(
                !scram_client_final_ok(bad),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
