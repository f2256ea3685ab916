//! A minimal RESP2 (Redis serialization protocol) encoder and incremental reply parser, for
//! the rate-limit sync. Pure and allocation-light; the parser never panics, whatever the bytes,
//! and bounds what it accepts (bulk length, array length, nesting).

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

/// Largest bulk string accepted in a reply.
pub const MAX_BULK: usize = 1 << 20;
/// Largest array accepted in a reply.
pub const MAX_ARRAY: usize = 1 << 16;
/// Deepest nesting of arrays accepted.
pub const MAX_DEPTH: usize = 4;

/// Appends a command as an array of bulk strings (no allocation beyond `out`'s growth: the
/// rate-limit sync encodes thousands of commands per exchange).
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(Digits::new(args.len() as u64).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(Digits::new(a.len() as u64).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// The decimal digits of a number, on the stack.
#[derive(Debug, Clone, Copy)]
pub struct Digits {
    buf: [u8; 20],
    at: usize,
}

impl Digits {
    #[must_use]
    pub fn new(mut n: u64) -> Digits {
        let mut buf = [0u8; 20];
        let mut at = buf.len();
        loop {
            at = at.saturating_sub(1);
            if let Some(d) = buf.get_mut(at) {
                *d = b'0'.saturating_add((n % 10) as u8);
            }
            n /= 10;
            if n == 0 || at == 0 {
                break;
            }
        }
        Digits { buf, at }
    }

    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(self.at..).unwrap_or_default()
    }
}

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(Vec<u8>),
    /// `-ERR ...`
    Error(Vec<u8>),
    /// `:42`
    Int(i64),
    /// `$3\r\nabc` or `$-1` (nil).
    Bulk(Option<Vec<u8>>),
    /// `*2 ...` or `*-1` (nil).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as a non-negative count: an integer, a bulk string of digits, or nil (0).
    #[must_use]
    pub fn as_count(&self) -> Option<u64> {
        match self {
            Reply::Int(n) => u64::try_from(*n).ok(),
            Reply::Bulk(None) => Some(0),
            Reply::Bulk(Some(b)) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }
}

/// A reply that is not valid RESP (the connection must be closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid redis reply: {0}")]
pub struct ProtocolError(pub &'static str);

/// Parses one reply from the start of `buf`: `Ok(None)` if more bytes are needed, else the
/// reply and the number of bytes it used.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    parse_at(buf, 0)
}

fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    Some((buf.get(..end)?, end.checked_add(2)?))
}

fn int(b: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProtocolError("bad integer"))
}

fn parse_at(buf: &[u8], depth: usize) -> Result<Option<(Reply, usize)>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError("nested too deep"));
    }
    let Some((&kind, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let Some((l, used)) = line(rest) else {
        if rest.len() > 64 * 1024 {
            return Err(ProtocolError("line too long"));
        }
        return Ok(None);
    };
    let head = used.saturating_add(1);
    match kind {
        b'+' => Ok(Some((Reply::Simple(l.to_vec()), head))),
        b'-' => Ok(Some((Reply::Error(l.to_vec()), head))),
        b':' => Ok(Some((Reply::Int(int(l)?), head))),
        b'$' => {
            let n = int(l)?;
            if n < 0 {
                return Ok(Some((Reply::Bulk(None), head)));
            }
            let n = usize::try_from(n).map_err(|_| ProtocolError("bad length"))?;
            if n > MAX_BULK {
                return Err(ProtocolError("bulk string too long"));
            }
            let body = buf.get(head..).unwrap_or_default();
            if body.len() < n.saturating_add(2) {
                return Ok(None);
            }
            if body.get(n..n.saturating_add(2)) != Some(b"\r\n") {
                return Err(ProtocolError("bulk string not terminated"));
            }
            let data = body.get(..n).unwrap_or_default().to_vec();
            Ok(Some((
                Reply::Bulk(Some(data)),
                head.saturating_add(n).saturating_add(2),
            )))
        }
        b'*' => {
            let n = int(l)?;
            if n < 0 {
                return Ok(Some((Reply::Array(None), head)));
            }
            let n = usize::try_from(n).map_err(|_| ProtocolError("bad length"))?;
            if n > MAX_ARRAY {
                return Err(ProtocolError("array too long"));
            }
            let mut items = Vec::with_capacity(n.min(64));
            let mut at = head;
            for _ in 0..n {
                let Some((r, u)) =
                    parse_at(buf.get(at..).unwrap_or_default(), depth.saturating_add(1))?
                else {
                    return Ok(None);
                };
                items.push(r);
                at = at.saturating_add(u);
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        _ => Err(ProtocolError("unknown type byte")),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn digits() {
        for n in [0u64, 7, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(Digits::new(n).as_bytes(), n.to_string().as_bytes());
        }
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode(&mut out, &[b"INCRBY", b"k", b"3"]);
        assert_eq!(out, b"*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$1\r\n3\r\n");
    }

    #[test]
    fn parses_replies() {
        let all = b"+OK\r\n-ERR no\r\n:42\r\n$3\r\n123\r\n$-1\r\n*2\r\n:1\r\n$0\r\n\r\n*-1\r\n";
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((r, u)) = parse(&all[at..]).unwrap() {
            got.push(r);
            at += u;
        }
        assert_eq!(at, all.len());
        assert_eq!(
            got,
            vec![
                Reply::Simple(b"OK".to_vec()),
                Reply::Error(b"ERR no".to_vec()),
                Reply::Int(42),
                Reply::Bulk(Some(b"123".to_vec())),
                Reply::Bulk(None),
                Reply::Array(Some(vec![Reply::Int(1), Reply::Bulk(Some(vec![]))])),
                Reply::Array(None),
            ]
        );
        assert_eq!(got[2].as_count(), Some(42));
        assert_eq!(got[3].as_count(), Some(123));
        assert_eq!(got[4].as_count(), Some(0));
        assert_eq!(got[0].as_count(), None);
    }

    #[test]
    fn incomplete_and_invalid() {
        let full = b"*2\r\n$5\r\nhello\r\n:7\r\n";
        for i in 0..full.len() {
            assert_eq!(parse(&full[..i]).unwrap(), None, "prefix {i}");
        }
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b":x\r\n").is_err());
        assert!(parse(b"$3\r\nabcd\r\n").is_err());
        assert!(parse(b"$99999999999\r\n").is_err());
        assert!(parse(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n").is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x1234_5678;
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            let n = (x % 40) as usize;
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let alphabet = b"+-:$*\r\n0123-9ab";
                buf.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let _ = parse(&buf);
        }
    }
}
