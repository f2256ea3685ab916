//! Counters and their Prometheus text exposition (format version 0.0.4).
//!
//! The set of counters is fixed when the configuration loads (every label value comes from
//! the configuration or from a closed set such as the JWT reason codes, never from a request),
//! so each counter is a slot index into an array of `u64`s that the glue keeps in shared
//! memory and increments atomically.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// One counter: metric family, labels, and its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// Family name, e.g. `gateway_auth_total`.
    pub family: &'static str,
    /// Label pairs, in order.
    pub labels: Vec<(&'static str, String)>,
}

/// A metric family's help text and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Name.
    pub name: &'static str,
    /// `# HELP` text.
    pub help: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
}

/// The counters of one configuration.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    families: Vec<Family>,
    counters: Vec<Counter>,
    histograms: Vec<HistSeries>,
    /// Blocks of words after the counters (`reserve`): name, first word, words.
    reserved: Vec<(&'static str, usize, usize)>,
}

/// One histogram series: its labels and where its words are.
#[derive(Debug, Clone)]
struct HistSeries {
    family: &'static str,
    labels: Vec<(&'static str, String)>,
    /// `le` label values of the finite bounds.
    les: Vec<String>,
    slots: Histogram,
    /// Units per second of the observed values and the sum.
    scale: f64,
}

/// Where one histogram series counts: `bounds.len() + 1` bucket counters from `base` (the last
/// one for values above every bound; each observation adds 1 to exactly one of them), then the
/// sum of the observed values, then per bucket the last exemplar ([`EXEMPLAR_WORDS`] words: a
/// sequence number, the trace id, the value). Counts are not cumulative in memory (one atomic
/// add per observation); the exposition makes them cumulative and derives `_count` from them,
/// so `_count` always equals the `+Inf` bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// First slot.
    pub base: usize,
    /// Upper bounds in the histogram's units (strictly increasing).
    pub bounds: Box<[u64]>,
}

impl Histogram {
    /// The slot to add 1 to for the value `v` (bucket `le` is inclusive: `v <= bound`).
    pub fn bucket_slot(&self, v: u64) -> usize {
        self.base + self.bounds.partition_point(|&b| b < v)
    }

    /// The slot holding the sum of the observed values.
    pub fn sum_slot(&self) -> usize {
        self.base + self.bounds.len() + 1
    }

    /// Slots the series takes.
    pub fn words(&self) -> usize {
        (self.bounds.len() + 1) * (1 + EXEMPLAR_WORDS) + 1
    }

    /// The first word of the exemplar of the bucket holding `v`.
    pub fn exemplar_slot(&self, v: u64) -> usize {
        let bucket = self.bounds.partition_point(|&b| b < v);
        self.sum_slot() + 1 + bucket * EXEMPLAR_WORDS
    }
}

/// Words of a bucket's exemplar: a sequence number (odd while a worker writes it, so a reader
/// that sees it change or odd skips the exemplar), the trace id (two words), the value.
pub const EXEMPLAR_WORDS: usize = 4;

/// Records an exemplar in its words (from [`Histogram::exemplar_slot`]) unless another worker
/// is writing it at this moment (then this one is skipped: no waiting).
pub fn write_exemplar(words: &[AtomicU64], trace_id: [u8; 16], value: u64) {
    let [seq, hi, lo, val] = words else {
        return;
    };
    let s = seq.load(Ordering::Relaxed);
    if s & 1 == 1
        || seq
            .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let (a, b) = trace_id.split_at(8);
    hi.store(
        u64::from_be_bytes(a.try_into().unwrap_or_default()),
        Ordering::Relaxed,
    );
    lo.store(
        u64::from_be_bytes(b.try_into().unwrap_or_default()),
        Ordering::Relaxed,
    );
    val.store(value, Ordering::Relaxed);
    seq.store(s + 2, Ordering::Release);
}

/// Checks histogram bounds given in seconds: 1 to [`MAX_BUCKETS`] finite values, strictly
/// increasing, each a whole number of `1/scale` s and at least one; returns them in units.
pub fn bounds_in_units(secs: &[f64], scale: u64) -> Result<Vec<u64>, String> {
    let scale = scale as f64;
    if secs.is_empty() || secs.len() > MAX_BUCKETS {
        return Err(format!("1 to {MAX_BUCKETS} bucket bounds are expected"));
    }
    let mut out: Vec<u64> = Vec::with_capacity(secs.len());
    for &s in secs {
        let u = (s * scale).round();
        if !s.is_finite() || s <= 0.0 || !(1.0..=1e15).contains(&u) {
            return Err(format!(
                "the bound {s} is out of range (from {} to 1000000000 seconds)",
                1.0 / scale
            ));
        }
        if (u - s * scale).abs() > 1e-6 * u.max(1.0) {
            return Err(format!(
                "the bound {s} is finer than the resolution ({} s)",
                1.0 / scale
            ));
        }
        let u = u as u64;
        if out.last().is_some_and(|&l| l >= u) {
            return Err("bucket bounds must increase strictly".into());
        }
        out.push(u);
    }
    Ok(out)
}

/// Most finite bounds a histogram may have.
pub const MAX_BUCKETS: usize = 30;

/// Formats a number of `1/scale` seconds as seconds, exactly and without an exponent
/// (`0.005`, `1`, `2.5`).
pub fn format_seconds(units: u64, scale: u64) -> String {
    let whole = units / scale;
    let frac = units % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = scale.ilog10() as usize;
    let f = format!("{frac:0digits$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a family (idempotent).
    pub fn family(&mut self, f: Family) {
        if !self.families.iter().any(|x| x.name == f.name) {
            self.families.push(f);
        }
    }

    /// The slot of the counter with these labels, adding it if new.
    pub fn slot(&mut self, family: &'static str, labels: &[(&'static str, &str)]) -> usize {
        debug_assert!(self.reserved.is_empty(), "counters after reserved words");
        let labels: Vec<(&'static str, String)> =
            labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
        if let Some(i) = self
            .counters
            .iter()
            .position(|c| c.family == family && c.labels == labels)
        {
            return i;
        }
        self.counters.push(Counter { family, labels });
        self.counters.len() - 1
    }

    /// A histogram series of `family` with these labels and bounds (in units, `scale` units per
    /// second); the same family and labels give the same series.
    pub fn histogram(
        &mut self,
        family: &'static str,
        labels: &[(&'static str, &str)],
        bounds: &[u64],
        scale: u64,
    ) -> Histogram {
        let labels: Vec<(&'static str, String)> =
            labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
        if let Some(h) = self
            .histograms
            .iter()
            .find(|h| h.family == family && h.labels == labels)
        {
            return h.slots.clone();
        }
        let les: Vec<String> = bounds.iter().map(|&b| format_seconds(b, scale)).collect();
        debug_assert!(self.reserved.is_empty(), "counters after reserved words");
        let base = self.counters.len();
        // The words are counters of the layout too (the hash covers the bounds), under names
        // that are no family, so `render` leaves them to the histogram code.
        for le in les.iter().map(String::as_str).chain(["+Inf"]) {
            let mut l = labels.clone();
            l.push(("le", le.to_string()));
            self.counters.push(Counter {
                family: HIST_BUCKET,
                labels: l,
            });
        }
        let mut l = labels.clone();
        l.push(("", family.to_string()));
        self.counters.push(Counter {
            family: HIST_SUM,
            labels: l,
        });
        for le in les.iter().map(String::as_str).chain(["+Inf"]) {
            for w in 0..EXEMPLAR_WORDS {
                let mut l = labels.clone();
                l.push(("le", le.to_string()));
                l.push(("", w.to_string()));
                self.counters.push(Counter {
                    family: HIST_EXEMPLAR,
                    labels: l,
                });
            }
        }
        let slots = Histogram {
            base,
            bounds: bounds.into(),
        };
        self.histograms.push(HistSeries {
            family,
            labels,
            les,
            slots: slots.clone(),
            scale: scale as f64,
        });
        slots
    }

    /// Reserves `words` words after every counter for a table the glue manages (the last
    /// step of a layout: no counter may be added afterwards); returns the first word.
    pub fn reserve(&mut self, name: &'static str, words: usize) -> usize {
        let base = self.len();
        self.reserved.push((name, base, words));
        base
    }

    /// Words of the counters (histograms included), before the reserved ones.
    pub fn counter_words(&self) -> usize {
        self.counters.len()
    }

    /// Number of slots (counters and reserved words).
    pub fn len(&self) -> usize {
        self.counters.len() + self.reserved.iter().map(|r| r.2).sum::<usize>()
    }

    /// Whether there are no counters.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// A hash of the layout (families, counters, order): a reloaded configuration with the
    /// same layout keeps counting in the same shared slots.
    pub fn layout_hash(&self) -> u64 {
        // FNV-1a: stable across builds and processes.
        let mut h: u64 = 0xcbf29ce484222325;
        let mut eat = |b: &[u8]| {
            for &x in b {
                h ^= u64::from(x);
                h = h.wrapping_mul(0x100000001b3);
            }
            h ^= 0xff;
            h = h.wrapping_mul(0x100000001b3);
        };
        for c in &self.counters {
            eat(c.family.as_bytes());
            for (k, v) in &c.labels {
                eat(k.as_bytes());
                eat(v.as_bytes());
            }
        }
        for (name, base, words) in &self.reserved {
            eat(name.as_bytes());
            eat(&base.to_le_bytes());
            eat(&words.to_le_bytes());
        }
        h
    }

    /// Prometheus text exposition of `values` (one per slot; missing ones read as 0).
    /// `extra` appends gauge-like lines computed at scrape time (already formatted families).
    pub fn render(&self, values: &[u64], extra: &str) -> String {
        self.render_exemplars(values, None, extra)
    }

    /// As `render`, with the buckets' exemplars (OpenMetrics syntax) when `again` is a second
    /// reading of the words, taken after `values`: an exemplar is written only if its sequence
    /// number is even and the same in both (no worker wrote it in between).
    pub fn render_exemplars(&self, values: &[u64], again: Option<&[u64]>, extra: &str) -> String {
        let mut out = String::with_capacity(64 * self.counters.len() + extra.len() + 256);
        for f in &self.families {
            let mut header = false;
            for (i, c) in self.counters.iter().enumerate() {
                if c.family != f.name {
                    continue;
                }
                if !header {
                    header_lines(&mut out, f);
                    header = true;
                }
                out.push_str(f.name);
                write_labels(&mut out, &c.labels);
                let _ = writeln!(out, " {}", values.get(i).copied().unwrap_or(0));
            }
            self.render_histograms(&mut out, f, values, again);
        }
        out.push_str(extra);
        out
    }

    fn render_histograms(
        &self,
        out: &mut String,
        f: &Family,
        values: &[u64],
        again: Option<&[u64]>,
    ) {
        let v = |i: usize| values.get(i).copied().unwrap_or(0);
        let mut header = false;
        for h in self.histograms.iter().filter(|h| h.family == f.name) {
            if !header {
                header_lines(out, f);
                header = true;
            }
            let mut cum = 0u64;
            let bucket = format!("{}_bucket", f.name);
            for (i, le) in h.les.iter().map(String::as_str).chain(["+Inf"]).enumerate() {
                cum += v(h.slots.base + i);
                let mut l = h.labels.clone();
                l.push(("le", le.to_string()));
                out.push_str(&bucket);
                write_labels(out, &l);
                let _ = write!(out, " {cum}");
                let e = h.slots.sum_slot() + 1 + i * EXEMPLAR_WORDS;
                let seq = v(e);
                if let Some(again) = again {
                    if seq != 0 && seq & 1 == 0 && again.get(e) == Some(&seq) {
                        let id = (u128::from(v(e + 1)) << 64) | u128::from(v(e + 2));
                        let _ = write!(
                            out,
                            " # {{trace_id=\"{:032x}\"}} {}",
                            id,
                            v(e + 3) as f64 / h.scale
                        );
                    }
                }
                out.push('\n');
            }
            let sum = v(h.slots.sum_slot()) as f64 / h.scale;
            let _ = write!(out, "{}_sum", f.name);
            write_labels(out, &h.labels);
            let _ = writeln!(out, " {sum}");
            let _ = write!(out, "{}_count", f.name);
            write_labels(out, &h.labels);
            let _ = writeln!(out, " {cum}");
        }
    }
}

/// Pseudo-family names of the histogram words in the layout (never rendered as such).
const HIST_BUCKET: &str = " bucket";
const HIST_SUM: &str = " sum";
const HIST_EXEMPLAR: &str = " exemplar";

fn header_lines(out: &mut String, f: &Family) {
    let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
    let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
}

/// The OpenMetrics 1.0 form of a text-format (0.0.4) exposition that this module wrote:
/// counter families are named without their `_total` suffix in `# HELP` and `# TYPE` (their
/// samples keep it), `# UNIT seconds` follows the type of every family named `..._seconds`,
/// `"` in help texts is escaped, and `# EOF` ends it.
pub fn to_openmetrics(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let family = |name: &str| -> String {
        match name.strip_suffix("_total") {
            Some(base) if counters.contains(name) => base.to_string(),
            _ => name.to_string(),
        }
    };
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let _ = writeln!(out, "# HELP {} {}", family(name), help.replace('"', "\\\""));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let f = family(name);
            let _ = writeln!(out, "# TYPE {f} {kind}");
            if f.ends_with("_seconds") {
                let _ = writeln!(out, "# UNIT {f} seconds");
            }
        } else if !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Whether an `Accept` header asks for OpenMetrics (`application/openmetrics-text` with a
/// quality above zero).
pub fn wants_openmetrics(accept: &[u8]) -> bool {
    let Ok(accept) = std::str::from_utf8(accept) else {
        return false;
    };
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        if !media.eq_ignore_ascii_case("application/openmetrics-text") {
            return false;
        }
        parts.all(|p| match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("q") => {
                v.trim().parse::<f64>().is_ok_and(|q| q > 0.0)
            }
            _ => true,
        })
    })
}

/// Writes `{k="v",...}` with label values escaped as the exposition format requires
/// (backslash, double quote, newline).
pub fn write_labels(out: &mut String, labels: &[(&'static str, String)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for ch in v.chars() {
            match ch {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// Longest label value a [`LabelTable`] keeps (bytes); longer ones count as `other`.
pub const LABEL_MAX: usize = 128;
const ENTRY_WORDS: usize = 5 + LABEL_MAX / 8;
const TABLE_HEADER: usize = 6;
/// Slots a lookup probes at most before it gives up (counts as `other`).
const PROBE_MAX: usize = 64;

/// A bounded set of series keyed by a label value that comes from requests (a consumer), in
/// words of shared memory: at most `max` values get series of their own; every other value
/// counts in one `other` series and in the dropped-labels counter. Workers add values without
/// a lock (a value's slot is claimed with a compare-and-swap, then published with a release
/// store), and each lookup probes at most 64 slots of an open-addressing table twice the size
/// of `max`, hashed with a random key kept in the table, so no client can make lookups slow
/// or the set grow.
///
/// Words: key (2), values claimed, `other` requests, `other` rejections, labels dropped, then
/// per slot: hash (0: free), ready, length, requests, rejections, the value's bytes.
pub struct LabelTable<'a> {
    words: &'a [AtomicU64],
    max: usize,
    cap: usize,
}

/// What one label value counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelCounts {
    pub value: Vec<u8>,
    pub requests: u64,
    pub rejections: u64,
}

impl<'a> LabelTable<'a> {
    /// Words a table for `max` values takes.
    pub fn words(max: usize) -> usize {
        TABLE_HEADER + 2 * max.max(1) * ENTRY_WORDS
    }

    /// The table in `words` (at least `words(max)` of them).
    pub fn new(words: &'a [AtomicU64], max: usize) -> Option<Self> {
        let cap = 2 * max.max(1);
        (words.len() >= Self::words(max)).then_some(Self { words, max, cap })
    }

    /// Sets the hash key if the table has none yet (a fresh table is all zeros).
    pub fn seed(&self, key: [u8; 16]) {
        if self.words[0].load(Ordering::Relaxed) == 0 && self.words[1].load(Ordering::Relaxed) == 0
        {
            let (a, b) = key.split_at(8);
            self.words[0].store(
                u64::from_le_bytes(a.try_into().unwrap_or_default()) | 1,
                Ordering::Relaxed,
            );
            self.words[1].store(
                u64::from_le_bytes(b.try_into().unwrap_or_default()),
                Ordering::Relaxed,
            );
        }
    }

    fn entry(&self, i: usize) -> &[AtomicU64] {
        let b = TABLE_HEADER + i * ENTRY_WORDS;
        &self.words[b..b + ENTRY_WORDS]
    }

    fn hash(&self, v: &[u8]) -> u64 {
        use std::hash::Hasher as _;
        let mut h = siphasher::sip::SipHasher13::new_with_keys(
            self.words[0].load(Ordering::Relaxed),
            self.words[1].load(Ordering::Relaxed),
        );
        h.write(v);
        h.finish() | 1
    }

    fn same(e: &[AtomicU64], v: &[u8]) -> bool {
        if e[2].load(Ordering::Relaxed) != v.len() as u64 {
            return false;
        }
        v.chunks(8)
            .enumerate()
            .all(|(i, c)| e[5 + i].load(Ordering::Relaxed) == pack(c))
    }

    /// The slot of `v`, added if there is room; `None`: count as `other`.
    fn find(&self, v: &[u8]) -> Option<&[AtomicU64]> {
        if v.is_empty() || v.len() > LABEL_MAX || v == b"other" {
            return None;
        }
        let h = self.hash(v);
        let start = (h % self.cap as u64) as usize;
        let mut probes = 0;
        let mut i = start;
        while probes < PROBE_MAX.min(self.cap) {
            let e = self.entry(i);
            let hv = e[0].load(Ordering::Acquire);
            if hv == 0 {
                // Claim one of the `max` values, then this slot.
                let claimed = &self.words[2];
                let mut n = claimed.load(Ordering::Relaxed);
                loop {
                    if n >= self.max as u64 {
                        return None;
                    }
                    match claimed.compare_exchange_weak(
                        n,
                        n + 1,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => break,
                        Err(x) => n = x,
                    }
                }
                if e[0]
                    .compare_exchange(0, h, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    // Another worker took the slot first: give the claim back, look again.
                    claimed.fetch_sub(1, Ordering::Relaxed);
                    continue;
                }
                e[2].store(v.len() as u64, Ordering::Relaxed);
                for (j, c) in v.chunks(8).enumerate() {
                    e[5 + j].store(pack(c), Ordering::Relaxed);
                }
                e[1].store(1, Ordering::Release);
                return Some(e);
            }
            if hv == h {
                // Written by another worker a moment ago: wait for it to be published.
                let mut spins = 0;
                while e[1].load(Ordering::Acquire) == 0 {
                    spins += 1;
                    if spins > 1000 {
                        return None;
                    }
                    std::hint::spin_loop();
                }
                if Self::same(e, v) {
                    return Some(e);
                }
            }
            probes += 1;
            i = (i + 1) % self.cap;
        }
        None
    }

    /// Counts a request of the value `v` (and a rejection if `rejected`).
    pub fn count(&self, v: &[u8], rejected: bool) {
        match self.find(v) {
            Some(e) => {
                e[3].fetch_add(1, Ordering::Relaxed);
                if rejected {
                    e[4].fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.words[3].fetch_add(1, Ordering::Relaxed);
                if rejected {
                    self.words[4].fetch_add(1, Ordering::Relaxed);
                }
                if v != b"other" {
                    self.words[5].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The values with series of their own.
    pub fn entries(&self) -> Vec<LabelCounts> {
        (0..self.cap)
            .map(|i| self.entry(i))
            .filter(|e| e[0].load(Ordering::Acquire) != 0 && e[1].load(Ordering::Acquire) == 1)
            .map(|e| {
                let len = (e[2].load(Ordering::Relaxed) as usize).min(LABEL_MAX);
                let mut value: Vec<u8> = (0..len.div_ceil(8))
                    .flat_map(|j| e[5 + j].load(Ordering::Relaxed).to_le_bytes())
                    .collect();
                value.truncate(len);
                LabelCounts {
                    value,
                    requests: e[3].load(Ordering::Relaxed),
                    rejections: e[4].load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// `other`'s requests and rejections, and the number of requests whose value was dropped.
    pub fn other(&self) -> (u64, u64, u64) {
        (
            self.words[3].load(Ordering::Relaxed),
            self.words[4].load(Ordering::Relaxed),
            self.words[5].load(Ordering::Relaxed),
        )
    }
}

fn pack(c: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..c.len()].copy_from_slice(c);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_words(max: usize) -> Vec<AtomicU64> {
        (0..LabelTable::words(max))
            .map(|_| AtomicU64::new(0))
            .collect()
    }

    #[test]
    fn label_table_caps_the_series() {
        let w = table_words(10);
        let t = LabelTable::new(&w, 10).unwrap();
        t.seed([7; 16]);
        for i in 0..100_000u32 {
            t.count(format!("consumer-{i}").as_bytes(), i % 2 == 0);
        }
        t.count(b"consumer-3", false);
        let e = t.entries();
        assert_eq!(e.len(), 10);
        let (or, orej, dropped) = t.other();
        let total: u64 = e.iter().map(|x| x.requests).sum::<u64>() + or;
        assert_eq!(total, 100_001);
        assert_eq!(dropped, or);
        assert_eq!(e.iter().map(|x| x.rejections).sum::<u64>() + orej, 50_000);
        let c3 = e.iter().find(|x| x.value == b"consumer-3").unwrap();
        assert_eq!((c3.requests, c3.rejections), (2, 0));
    }

    #[test]
    fn label_table_values_round_trip() {
        let w = table_words(4);
        let t = LabelTable::new(&w, 4).unwrap();
        t.seed([1; 16]);
        let long = vec![b'x'; LABEL_MAX];
        let too_long = vec![b'x'; LABEL_MAX + 1];
        for v in [
            &b"a\"}\n{b"[..],
            &long,
            b"12345678",
            b"other",
            &too_long,
            b"",
        ] {
            t.count(v, true);
        }
        let mut vals: Vec<Vec<u8>> = t.entries().into_iter().map(|e| e.value).collect();
        vals.sort();
        assert_eq!(vals, vec![b"12345678".to_vec(), b"a\"}\n{b".to_vec(), long]);
        // "other" and the empty value are no drop; the too long one is.
        assert_eq!(t.other(), (3, 3, 2));
    }

    #[test]
    fn renders_families_and_labels() {
        let mut r = Registry::new();
        r.family(Family {
            name: "gateway_auth_total",
            help: "Auth decisions.",
            kind: "counter",
        });
        let a = r.slot("gateway_auth_total", &[("result", "valid"), ("reason", "")]);
        let b = r.slot(
            "gateway_auth_total",
            &[("result", "invalid"), ("reason", "expired")],
        );
        assert_eq!(
            r.slot("gateway_auth_total", &[("result", "valid"), ("reason", "")]),
            a
        );
        let mut v = vec![0; r.len()];
        v[a] = 3;
        v[b] = 1;
        let text = r.render(&v, "");
        assert_eq!(
            text,
            "# HELP gateway_auth_total Auth decisions.\n# TYPE gateway_auth_total counter\n\
             gateway_auth_total{result=\"valid\",reason=\"\"} 3\n\
             gateway_auth_total{result=\"invalid\",reason=\"expired\"} 1\n"
        );
    }

    #[test]
    fn histogram_buckets_sum_count() {
        let mut r = Registry::new();
        r.family(Family {
            name: "lat_seconds",
            help: "Latency.",
            kind: "histogram",
        });
        let b = bounds_in_units(&[0.005, 0.1, 1.0], 1_000_000).unwrap();
        assert_eq!(b, vec![5000, 100_000, 1_000_000]);
        let h = r.histogram("lat_seconds", &[("route", "a")], &b, 1_000_000);
        assert_eq!(
            r.histogram("lat_seconds", &[("route", "a")], &b, 1_000_000),
            h
        );
        assert_eq!(r.len(), h.words());
        assert_eq!(h.words(), 5 + 4 * 4);
        let mut v = vec![0u64; r.len()];
        for x in [5000, 5001, 100_000, 2_000_000] {
            v[h.bucket_slot(x)] += 1;
            v[h.sum_slot()] += x;
        }
        assert_eq!(
            r.render(&v, ""),
            "# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n\
             lat_seconds_bucket{route=\"a\",le=\"0.005\"} 1\n\
             lat_seconds_bucket{route=\"a\",le=\"0.1\"} 3\n\
             lat_seconds_bucket{route=\"a\",le=\"1\"} 3\n\
             lat_seconds_bucket{route=\"a\",le=\"+Inf\"} 4\n\
             lat_seconds_sum{route=\"a\"} 2.110001\n\
             lat_seconds_count{route=\"a\"} 4\n"
        );
        // Other bounds, another layout.
        let mut r2 = Registry::new();
        r2.histogram(
            "lat_seconds",
            &[("route", "a")],
            &[5000, 100_000],
            1_000_000,
        );
        assert_ne!(r.layout_hash(), r2.layout_hash());
    }

    #[test]
    fn exemplars_on_buckets() {
        let mut r = Registry::new();
        r.family(Family {
            name: "lat_seconds",
            help: "Latency.",
            kind: "histogram",
        });
        let h = r.histogram("lat_seconds", &[], &[100_000], 1_000_000);
        let words: Vec<AtomicU64> = (0..r.len()).map(|_| AtomicU64::new(0)).collect();
        let id = *b"\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36";
        let e = h.exemplar_slot(250_000);
        write_exemplar(&words[e..e + EXEMPLAR_WORDS], id, 250_000);
        words[h.bucket_slot(250_000)].fetch_add(1, Ordering::Relaxed);
        let v: Vec<u64> = words.iter().map(|w| w.load(Ordering::Relaxed)).collect();
        let text = r.render_exemplars(&v, Some(&v), "");
        assert!(text.contains(
            "lat_seconds_bucket{le=\"+Inf\"} 1 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 0.25\n"
        ), "{text}");
        assert!(
            text.contains("lat_seconds_bucket{le=\"0.1\"} 0\n"),
            "{text}"
        );
        // Not in the text format; not when the sequence moved or is odd (being written).
        assert!(!r.render(&v, "").contains("trace_id"));
        let mut moved = v.clone();
        moved[e] += 2;
        assert!(!r
            .render_exemplars(&v, Some(&moved), "")
            .contains("trace_id"));
        words[e].store(1, Ordering::Relaxed);
        write_exemplar(&words[e..e + EXEMPLAR_WORDS], id, 1);
        assert_eq!(
            words[e + 3].load(Ordering::Relaxed),
            250_000,
            "skipped while odd"
        );
    }

    #[test]
    fn bounds_are_checked() {
        assert!(bounds_in_units(&[], 1000).is_err());
        assert!(bounds_in_units(&[0.1, 0.1], 1000).is_err());
        assert!(bounds_in_units(&[0.2, 0.1], 1000).is_err());
        assert!(bounds_in_units(&[0.0001], 1000).is_err());
        assert!(bounds_in_units(&[-1.0], 1000).is_err());
        assert!(bounds_in_units(&[f64::INFINITY], 1000).is_err());
        assert!(bounds_in_units(&[0.0015], 1000).is_err());
        assert_eq!(
            bounds_in_units(&[0.00001], 1_000_000_000).unwrap(),
            vec![10_000]
        );
        assert_eq!(format_seconds(10_000, 1_000_000_000), "0.00001");
        assert_eq!(format_seconds(2_500_000, 1_000_000), "2.5");
        assert_eq!(format_seconds(3_000_000, 1_000_000), "3");
    }

    #[test]
    fn openmetrics_form() {
        let text = "# HELP a_total Things \"x\".\n# TYPE a_total counter\na_total{k=\"v\"} 1\n\
                    # HELP d_seconds Time.\n# TYPE d_seconds histogram\nd_seconds_bucket{le=\"+Inf\"} 0\n\
                    d_seconds_sum 0\nd_seconds_count 0\n# HELP g Gauge.\n# TYPE g gauge\ng 2\n";
        assert_eq!(
            to_openmetrics(text),
            "# HELP a Things \\\"x\\\".\n# TYPE a counter\na_total{k=\"v\"} 1\n\
             # HELP d_seconds Time.\n# TYPE d_seconds histogram\n# UNIT d_seconds seconds\n\
             d_seconds_bucket{le=\"+Inf\"} 0\nd_seconds_sum 0\nd_seconds_count 0\n\
             # HELP g Gauge.\n# TYPE g gauge\ng 2\n# EOF\n"
        );
    }

    #[test]
    fn negotiates_openmetrics() {
        assert!(wants_openmetrics(b"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"));
        assert!(wants_openmetrics(b"Application/OpenMetrics-Text"));
        assert!(!wants_openmetrics(b"application/openmetrics-text;q=0"));
        assert!(!wants_openmetrics(b"text/plain, */*"));
        assert!(!wants_openmetrics(b""));
    }

    #[test]
    fn escapes_label_values() {
        let mut s = String::new();
        write_labels(&mut s, &[("policy", "a\"b\\c\nd".to_string())]);
        assert_eq!(s, "{policy=\"a\\\"b\\\\c\\nd\"}");
    }

    #[test]
    fn layout_hash_changes_with_layout() {
        let mut a = Registry::new();
        a.slot("x", &[("zone", "one")]);
        let mut b = Registry::new();
        b.slot("x", &[("zone", "two")]);
        assert_ne!(a.layout_hash(), b.layout_hash());
        let mut c = Registry::new();
        c.slot("x", &[("zone", "one")]);
        assert_eq!(a.layout_hash(), c.layout_hash());
    }
}
