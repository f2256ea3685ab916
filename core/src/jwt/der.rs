//! A minimal, bounds-checked DER reader for SubjectPublicKeyInfo (RFC 5280) and PKCS#1
//! RSAPublicKey (RFC 8017). Only definite, minimal lengths; no trailing bytes.

/// A public key as found in an SPKI or PKCS#1 document.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PublicKeyDer<'a> {
    /// RSA modulus and exponent, big-endian, leading zero octets removed.
    Rsa { n: &'a [u8], e: &'a [u8] },
    /// Uncompressed EC point on P-256.
    P256(&'a [u8]),
    /// Uncompressed EC point on P-384.
    P384(&'a [u8]),
    /// Uncompressed EC point on P-521.
    P521(&'a [u8]),
    /// Ed25519 public key (32 bytes).
    Ed25519(&'a [u8]),
    /// Ed448 public key (57 bytes).
    Ed448(&'a [u8]),
}

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    /// Reads one element with the expected tag and returns its contents.
    fn expect(&mut self, tag: u8) -> Result<&'a [u8], &'static str> {
        let (&t, rest) = self.data.split_first().ok_or("truncated DER")?;
        if t != tag {
            return Err("unexpected DER structure");
        }
        let (&l0, mut rest) = rest.split_first().ok_or("truncated DER")?;
        let len = if l0 < 0x80 {
            usize::from(l0)
        } else {
            let n = usize::from(l0 & 0x7f);
            if n == 0 || n > 4 {
                return Err("unsupported DER length");
            }
            if rest.len() < n {
                return Err("truncated DER");
            }
            let (lb, r) = rest.split_at(n);
            rest = r;
            if lb[0] == 0 {
                return Err("non-minimal DER length");
            }
            let len = lb
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len < 0x80 {
                return Err("non-minimal DER length");
            }
            len
        };
        if rest.len() < len {
            return Err("truncated DER");
        }
        let (content, after) = rest.split_at(len);
        self.data = after;
        Ok(content)
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn finish(&self) -> Result<(), &'static str> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err("trailing bytes after DER structure")
        }
    }
}

/// A positive DER INTEGER's magnitude, without the sign octet.
fn positive_integer(content: &[u8]) -> Result<&[u8], &'static str> {
    match content {
        [] => Err("empty DER integer"),
        [b, ..] if b & 0x80 != 0 => Err("negative RSA integer"),
        [0, b, ..] if b & 0x80 == 0 => Err("non-minimal DER integer"),
        [0, rest @ ..] => Ok(rest),
        _ => Ok(content),
    }
}

/// Parses a PKCS#1 `RSAPublicKey` (`BEGIN RSA PUBLIC KEY`).
pub(crate) fn parse_pkcs1(der: &[u8]) -> Result<PublicKeyDer<'_>, &'static str> {
    let mut outer = Reader::new(der);
    let seq = outer.expect(TAG_SEQUENCE)?;
    outer.finish()?;
    let mut r = Reader::new(seq);
    let n = positive_integer(r.expect(TAG_INTEGER)?)?;
    let e = positive_integer(r.expect(TAG_INTEGER)?)?;
    r.finish()?;
    Ok(PublicKeyDer::Rsa { n, e })
}

/// Parses a `SubjectPublicKeyInfo` (`BEGIN PUBLIC KEY`).
pub(crate) fn parse_spki(der: &[u8]) -> Result<PublicKeyDer<'_>, &'static str> {
    let mut outer = Reader::new(der);
    let spki = outer.expect(TAG_SEQUENCE)?;
    outer.finish()?;
    let mut r = Reader::new(spki);
    let alg_id = r.expect(TAG_SEQUENCE)?;
    let bits = r.expect(TAG_BIT_STRING)?;
    r.finish()?;
    let key = match bits.split_first() {
        Some((0, key)) => key,
        _ => return Err("public key BIT STRING has unused bits"),
    };
    let mut a = Reader::new(alg_id);
    let oid = a.expect(TAG_OID)?;
    match oid {
        OID_RSA => {
            // Parameters must be NULL (RFC 3279); tolerate their absence.
            if !a.is_empty() {
                let null = a.expect(TAG_NULL)?;
                if !null.is_empty() {
                    return Err("bad RSA algorithm parameters");
                }
            }
            a.finish()?;
            parse_pkcs1(key)
        }
        OID_EC => {
            let curve = a.expect(TAG_OID)?;
            a.finish()?;
            let expected_len = match curve {
                OID_P256 => 65,
                OID_P384 => 97,
                OID_P521 => 133,
                _ => return Err("unsupported EC curve"),
            };
            match key.first() {
                Some(0x04) if key.len() == expected_len => Ok(match expected_len {
                    65 => PublicKeyDer::P256(key),
                    97 => PublicKeyDer::P384(key),
                    _ => PublicKeyDer::P521(key),
                }),
                Some(0x02 | 0x03) => Err("compressed EC points are not supported"),
                _ => Err("bad EC public key encoding"),
            }
        }
        OID_ED25519 => {
            a.finish()?;
            if key.len() == 32 {
                Ok(PublicKeyDer::Ed25519(key))
            } else {
                Err("bad Ed25519 public key length")
            }
        }
        OID_ED448 => {
            a.finish()?;
            if key.len() == 57 {
                Ok(PublicKeyDer::Ed448(key))
            } else {
                Err("bad Ed448 public key length")
            }
        }
        OID_RSA_PSS => Err("RSASSA-PSS-restricted keys (OID 1.2.840.113549.1.1.10) are not supported; use a plain rsaEncryption key"),
        _ => Err("unsupported public key algorithm"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_bounds_checked() {
        assert_eq!(Reader::new(&[]).expect(0x30), Err("truncated DER"));
        assert_eq!(Reader::new(&[0x30]).expect(0x30), Err("truncated DER"));
        assert_eq!(
            Reader::new(&[0x30, 0x05, 0]).expect(0x30),
            Err("truncated DER")
        );
        assert_eq!(
            Reader::new(&[0x30, 0x80]).expect(0x30),
            Err("unsupported DER length")
        );
        assert_eq!(
            Reader::new(&[0x30, 0x85, 1, 1, 1, 1, 1]).expect(0x30),
            Err("unsupported DER length")
        );
        assert_eq!(
            Reader::new(&[0x30, 0x81, 0x05]).expect(0x30),
            Err("non-minimal DER length")
        );
        assert_eq!(
            Reader::new(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).expect(0x30),
            Err("truncated DER")
        );
        assert_eq!(
            Reader::new(&[0x31, 0x00]).expect(0x30),
            Err("unexpected DER structure")
        );
        assert_eq!(Reader::new(&[0x30, 0x00]).expect(0x30), Ok(&[][..]));
    }

    #[test]
    fn integers() {
        assert_eq!(positive_integer(&[0x00, 0x80]), Ok(&[0x80][..]));
        assert_eq!(positive_integer(&[0x01]), Ok(&[0x01][..]));
        assert!(positive_integer(&[0x80]).is_err());
        assert!(positive_integer(&[0x00, 0x01]).is_err());
        assert!(positive_integer(&[]).is_err());
    }

    #[test]
    fn pkcs1_and_garbage() {
        // SEQUENCE { INTEGER 0x00c1, INTEGER 3 }
        let der = [0x30, 0x07, 0x02, 0x02, 0x00, 0xc1, 0x02, 0x01, 0x03];
        assert_eq!(
            parse_pkcs1(&der),
            Ok(PublicKeyDer::Rsa {
                n: &[0xc1],
                e: &[3]
            })
        );
        let mut trailing = der.to_vec();
        trailing.push(0);
        assert!(parse_pkcs1(&trailing).is_err());
        for cut in 0..der.len() {
            assert!(parse_pkcs1(&der[..cut]).is_err());
            assert!(parse_spki(&der[..cut]).is_err());
        }
    }
}
