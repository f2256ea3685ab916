//! Counters and their Prometheus text exposition (format version 0.0.4).
//!
//! The set of counters is fixed when the configuration loads (every label value comes from
//! the configuration or from a closed set such as the JWT reason codes, never from a request),
//! so each counter is a slot index into an array of `u64`s that the glue keeps in shared
//! memory and increments atomically.

use std::fmt::Write as _;

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

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.counters.len()
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
        h
    }

    /// Prometheus text exposition of `values` (one per slot; missing ones read as 0).
    /// `extra` appends gauge-like lines computed at scrape time (already formatted families).
    pub fn render(&self, values: &[u64], extra: &str) -> String {
        let mut out = String::with_capacity(64 * self.counters.len() + extra.len() + 256);
        for f in &self.families {
            let mut header = false;
            for (i, c) in self.counters.iter().enumerate() {
                if c.family != f.name {
                    continue;
                }
                if !header {
                    let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
                    let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
                    header = true;
                }
                out.push_str(f.name);
                write_labels(&mut out, &c.labels);
                let _ = writeln!(out, " {}", values.get(i).copied().unwrap_or(0));
            }
        }
        out.push_str(extra);
        out
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
