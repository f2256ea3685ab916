//! W3C Trace Context (`traceparent`): strict parsing of an incoming header, and the gateway's
//! own span (continuing the caller's trace, or starting one).
//!
//! Ids come from the operating system's CSPRNG (`getrandom`), drawn in blocks by a per-worker
//! [`RandomPool`] so that a request costs no system call.

/// A valid incoming `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: [u8; 32],
    /// The caller's span: 16 lowercase hex digits, not all zero.
    pub span_id: [u8; 16],
    /// The `sampled` flag (bit 0 of the flags).
    pub sampled: bool,
}

fn lower_hex(s: &[u8]) -> bool {
    s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parses a `traceparent` header value (optional whitespace around it is ignored) as the W3C
/// Trace Context recommendation says: `version-trace_id-parent_id-flags`, lowercase hex only;
/// version `ff` is invalid; version `00` is exactly 55 characters; a higher version may carry
/// more after the flags, but only behind a `-` (its first four fields are read as version 00's);
/// an all-zero trace id or parent id is invalid. `None` for anything else.
pub fn parse(v: &[u8]) -> Option<Parent> {
    let v = v.trim_ascii();
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let (ver, trace, span, flags) = (&v[..2], &v[3..35], &v[36..52], &v[53..55]);
    if !lower_hex(ver) || ver == b"ff" || !lower_hex(trace) || !lower_hex(span) {
        return None;
    }
    if !lower_hex(flags) {
        return None;
    }
    if ver == b"00" && v.len() != 55 {
        return None;
    }
    if v.len() > 55 && v[55] != b'-' {
        return None;
    }
    if trace.iter().all(|&c| c == b'0') || span.iter().all(|&c| c == b'0') {
        return None;
    }
    let f = u8::from_str_radix(std::str::from_utf8(flags).ok()?, 16).ok()?;
    Some(Parent {
        trace_id: trace.try_into().ok()?,
        span_id: span.try_into().ok()?,
        sampled: f & 1 == 1,
    })
}

/// The gateway's span of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub trace_id: [u8; 32],
    pub span_id: [u8; 16],
    /// The caller's span when the trace was continued.
    pub parent_id: Option<[u8; 16]>,
    pub sampled: bool,
}

impl Span {
    /// `00-<trace id>-<span id>-<01|00>`: the header for the upstream (always version 00, the
    /// version this gateway knows, as the recommendation asks of a participant).
    pub fn traceparent(&self) -> [u8; 55] {
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        out[3..35].copy_from_slice(&self.trace_id);
        out[35] = b'-';
        out[36..52].copy_from_slice(&self.span_id);
        out[52..].copy_from_slice(if self.sampled { b"-01" } else { b"-00" });
        out
    }

    /// The span for a request: the incoming trace continued (same trace id and sampled flag,
    /// the caller's span as parent, a new span id), or a new trace whose sampled flag is set
    /// with probability `sample` (0 to 1).
    pub fn new(incoming: Option<Parent>, sample: f64, rng: &mut RandomPool) -> Span {
        let span_id = hex(&rng.nonzero::<8>());
        match incoming {
            Some(p) => Span {
                trace_id: p.trace_id,
                span_id,
                parent_id: Some(p.span_id),
                sampled: p.sampled,
            },
            None => {
                let t = rng.nonzero::<16>();
                // The last 7 bytes of a random trace id decide, as W3C Trace Context level 2
                // and OpenTelemetry's ratio sampler do, so every participant that samples by
                // ratio on this trace id agrees.
                let mut low = [0u8; 8];
                low[1..].copy_from_slice(&t[9..]);
                let r = u64::from_be_bytes(low);
                Span {
                    trace_id: hex(&t),
                    span_id,
                    parent_id: None,
                    sampled: r < sample_threshold(sample),
                }
            }
        }
    }
}

/// `ratio * 2^56`: trace ids whose last 7 bytes are below this are sampled.
pub fn sample_threshold(ratio: f64) -> u64 {
    if ratio.is_nan() || ratio <= 0.0 {
        0
    } else if ratio >= 1.0 {
        1 << 56
    } else {
        (ratio * (1u64 << 56) as f64) as u64
    }
}

fn hex<const N: usize, const M: usize>(b: &[u8; N]) -> [u8; M] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; M];
    for (i, x) in b.iter().enumerate().take(M / 2) {
        out[2 * i] = HEX[(x >> 4) as usize];
        out[2 * i + 1] = HEX[(x & 15) as usize];
    }
    out
}

/// Random bytes from the operating system's CSPRNG, fetched 4 KiB at a time.
pub struct RandomPool {
    buf: Box<[u8; 4096]>,
    pos: usize,
}

impl Default for RandomPool {
    fn default() -> Self {
        Self {
            buf: Box::new([0; 4096]),
            pos: 4096,
        }
    }
}

impl RandomPool {
    /// `N` random bytes, not all zero (an all-zero id is invalid).
    pub fn nonzero<const N: usize>(&mut self) -> [u8; N] {
        loop {
            let mut out = [0u8; N];
            self.fill(&mut out);
            if out.iter().any(|&b| b != 0) {
                return out;
            }
        }
    }

    fn fill(&mut self, out: &mut [u8]) {
        if self.pos + out.len() > self.buf.len() {
            if getrandom::fill(&mut self.buf[..]).is_err() {
                // No OS randomness at all: ids from the seed fallback (unique, predictable).
                for chunk in self.buf.chunks_mut(16) {
                    let s = crate::reqid::os_seed();
                    chunk.copy_from_slice(&s[..chunk.len()]);
                }
            }
            self.pos = 0;
        }
        out.copy_from_slice(&self.buf[self.pos..self.pos + out.len()]);
        // Used bytes are wiped: a later leak of the buffer shows no past id.
        self.buf[self.pos..self.pos + out.len()].fill(0);
        self.pos += out.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_valid_and_refuses_the_rest() {
        let p = parse(TP).expect("valid");
        assert_eq!(&p.trace_id, b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(&p.span_id, b"00f067aa0ba902b7");
        assert!(p.sampled);
        assert!(
            !parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .unwrap()
                .sampled
        );
        assert!(parse(b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ").is_some());
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"garbage",
            b"",
        ] {
            assert!(parse(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
        // A future version: the first fields as version 00's, more behind a dash.
        let f =
            parse(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds")
                .expect("future version");
        assert_eq!(&f.span_id, b"00f067aa0ba902b7");
        assert!(parse(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some());
    }

    #[test]
    fn continues_or_starts() {
        let mut rng = RandomPool::default();
        let p = parse(TP).unwrap();
        let s = Span::new(Some(p), 0.0, &mut rng);
        assert_eq!(s.trace_id, p.trace_id);
        assert_eq!(s.parent_id, Some(p.span_id));
        assert_ne!(s.span_id, p.span_id);
        assert!(s.sampled, "the caller's flag is kept whatever the ratio");
        let tp = s.traceparent();
        let back = parse(&tp).expect("our header parses");
        assert_eq!(back.trace_id, p.trace_id);
        assert_eq!(back.span_id, s.span_id);
        let n = Span::new(None, 1.0, &mut rng);
        assert!(n.sampled && n.parent_id.is_none());
        assert!(parse(&n.traceparent()).is_some());
        assert!(!Span::new(None, 0.0, &mut rng).sampled);
        let sampled = (0..4000)
            .filter(|_| Span::new(None, 0.25, &mut rng).sampled)
            .count();
        assert!((800..1200).contains(&sampled), "{sampled}");
        let a = Span::new(None, 1.0, &mut rng);
        let b = Span::new(None, 1.0, &mut rng);
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.span_id, b.span_id);
    }
}
