//! The compiled image and the [`View`] that reads it in place.
//!
//! Layout (all integers little-endian, all offsets from the start of the image):
//!
//! ```text
//! 0   magic "GWPOLICY"
//! 8   u32 format version (1)
//! 12  u32 total length of the image
//! 16  version: string ref (u32 offset into the string section, u32 length)
//! 24  13 sections, each (u32 offset, u32 row count); row sizes are fixed per section:
//!     STRINGS        1   the bytes every string ref points into
//!     PLANS          40  name ref, 4 x u64 limit (second, minute, hour, day; 0 = none)
//!     CONSUMERS      32  id ref, username ref, u32 first group, u32 group count,
//!                        u32 plan row (u32::MAX = none), u32 flags (1 = disabled)
//!     LISTS          8   string refs: consumers' groups (document order), rules' groups
//!                        (sorted) and methods
//!     KEYS           44  32-byte digest, u32 consumer row, name ref
//!     SUBS           24  sub ref, iss ref, u32 has iss, u32 consumer row
//!     CLAIMS         20  claim name ref, value ref, u32 consumer row
//!     CLAIM_NAMES    8   distinct claim names of CLAIMS (sorted)
//!     RULES          24  route ref, u32 first group, u32 group count, u32 first method,
//!                        u32 method count (0 = every method)
//!     DENY_CONSUMERS 8   string refs
//!     DENY_KEYS      32  digests
//!     DENY_JTI       8   string refs
//!     DENY_SUB       8   string refs
//! ```
//!
//! Every table is sorted by its lookup key (CONSUMERS by id, KEYS by digest, SUBS by (sub,
//! has iss, iss), CLAIMS by (name, value), RULES by route with the document's order kept among
//! one route's rules, deny sets by value), so each lookup is a binary search.
//!
//! [`View::new`] checks the header and that every section lies inside the image: O(1), so the
//! glue may call it on every request. Rows and string refs are checked when read; a corrupted
//! image gives wrong answers, never a panic or a read outside it.

use super::doc::Model;
use super::{ct_eq, PolicyError, Summary};
use std::cmp::Ordering;
use std::collections::HashMap;

const MAGIC: &[u8; 8] = b"GWPOLICY";
const FORMAT: u32 = 1;
const SECTIONS: usize = 13;
pub(super) const HEADER: usize = 24 + 8 * SECTIONS;
const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
enum S {
    Strings,
    Plans,
    Consumers,
    Lists,
    Keys,
    Subs,
    Claims,
    ClaimNames,
    Rules,
    DenyConsumers,
    DenyKeys,
    DenyJti,
    DenySub,
}

const ROW: [usize; SECTIONS] = [1, 40, 32, 8, 44, 24, 20, 8, 24, 8, 32, 8, 8];

// ---------------------------------------------------------------------------------------------
// building

/// Appends strings to the string section; the ones that repeat (groups, issuers, names)
/// through [`Strings::shared`], each distinct string once.
#[derive(Default)]
struct Strings<'m> {
    bytes: Vec<u8>,
    seen: HashMap<&'m str, [u8; 8]>,
}

impl<'m> Strings<'m> {
    /// The 8-byte ref of a new copy of `s`.
    fn add(&mut self, s: &str) -> [u8; 8] {
        let mut r = [0u8; 8];
        // Lengths past u32 are caught by the total length check in `build`.
        r[..4].copy_from_slice(&u32le(self.bytes.len()));
        r[4..].copy_from_slice(&u32le(s.len()));
        self.bytes.extend_from_slice(s.as_bytes());
        r
    }

    /// The 8-byte ref of `s`, stored once however often it is added.
    fn shared(&mut self, s: &'m str) -> [u8; 8] {
        if let Some(r) = self.seen.get(s) {
            return *r;
        }
        let r = self.add(s);
        self.seen.insert(s, r);
        r
    }
}

fn u32le(v: usize) -> [u8; 4] {
    (v as u32).to_le_bytes()
}

/// Rows of one section.
#[derive(Default)]
struct Rows(Vec<u8>);

impl Rows {
    fn put(&mut self, parts: &[&[u8]]) {
        for p in parts {
            self.0.extend_from_slice(p);
        }
    }
}

/// Builds the image of a validated document.
pub(super) fn build(m: &Model<'_>) -> Result<Vec<u8>, PolicyError> {
    let mut st = Strings::default();
    let mut sec: [Rows; SECTIONS] = Default::default();

    let mut plan_order: Vec<usize> = (0..m.plans.len()).collect();
    plan_order.sort_unstable_by_key(|&i| m.plans[i].name);
    let mut plan_row = vec![0usize; m.plans.len()];
    for (row, &i) in plan_order.iter().enumerate() {
        plan_row[i] = row;
        let p = &m.plans[i];
        let l = p.limits.map(u64::to_le_bytes);
        sec[S::Plans as usize].put(&[&st.shared(p.name), &l[0], &l[1], &l[2], &l[3]]);
    }

    let mut order: Vec<usize> = (0..m.consumers.len()).collect();
    order.sort_unstable_by_key(|&i| m.consumers[i].id);
    let mut row_of = vec![0usize; m.consumers.len()];
    for (row, &i) in order.iter().enumerate() {
        row_of[i] = row;
    }
    let lists = S::Lists as usize;
    for &i in &order {
        let c = &m.consumers[i];
        let first = sec[lists].0.len() / 8;
        for g in &c.groups {
            let r = st.shared(g);
            sec[lists].put(&[&r]);
        }
        let plan = c.plan.map_or(NONE, |p| plan_row[p] as u32);
        let id = st.add(c.id);
        let username = if c.username == c.id {
            id
        } else {
            st.add(c.username)
        };
        sec[S::Consumers as usize].put(&[
            &id,
            &username,
            &u32le(first),
            &u32le(c.groups.len()),
            &plan.to_le_bytes(),
            &u32::from(c.disabled).to_le_bytes(),
        ]);
    }

    let mut keys: Vec<_> = m.keys.iter().collect();
    keys.sort_unstable_by_key(|k| k.digest);
    for k in keys {
        let r = u32le(row_of[k.consumer]);
        sec[S::Keys as usize].put(&[&k.digest, &r, &st.shared(k.name)]);
    }

    let mut subs: Vec<_> = m.subs.iter().collect();
    subs.sort_unstable_by_key(|b| (b.sub, b.iss.is_some(), b.iss.unwrap_or("")));
    for b in subs {
        sec[S::Subs as usize].put(&[
            &st.add(b.sub),
            &st.shared(b.iss.unwrap_or("")),
            &u32::from(b.iss.is_some()).to_le_bytes(),
            &u32le(row_of[b.consumer]),
        ]);
    }

    let mut claims: Vec<_> = m.claims.iter().collect();
    claims.sort_unstable_by_key(|b| (b.claim, b.value));
    let mut names: Vec<&str> = claims.iter().map(|b| b.claim).collect();
    names.dedup();
    for b in claims {
        sec[S::Claims as usize].put(&[
            &st.shared(b.claim),
            &st.add(b.value),
            &u32le(row_of[b.consumer]),
        ]);
    }
    for n in names {
        sec[S::ClaimNames as usize].put(&[&st.shared(n)]);
    }

    let mut rules: Vec<_> = m.rules.iter().collect();
    rules.sort_by_key(|r| r.route); // stable: one route's rules keep their order
    for r in rules {
        let mut groups = r.groups.clone();
        groups.sort_unstable();
        groups.dedup();
        let g0 = sec[lists].0.len() / 8;
        for g in &groups {
            let s = st.shared(g);
            sec[lists].put(&[&s]);
        }
        let m0 = sec[lists].0.len() / 8;
        for meth in &r.methods {
            let s = st.shared(meth);
            sec[lists].put(&[&s]);
        }
        sec[S::Rules as usize].put(&[
            &st.shared(r.route),
            &u32le(g0),
            &u32le(groups.len()),
            &u32le(m0),
            &u32le(r.methods.len()),
        ]);
    }

    for (s, list) in [
        (S::DenyConsumers, &m.deny.consumers),
        (S::DenyJti, &m.deny.jti),
        (S::DenySub, &m.deny.sub),
    ] {
        let mut v = list.clone();
        v.sort_unstable();
        v.dedup();
        for x in v {
            let r = st.add(x);
            sec[s as usize].put(&[&r]);
        }
    }
    let mut dk = m.deny.api_keys.clone();
    dk.sort_unstable();
    dk.dedup();
    for d in dk {
        sec[S::DenyKeys as usize].put(&[&d]);
    }

    let version = st.add(m.version);
    sec[S::Strings as usize].0 = st.bytes;

    let total: usize = HEADER + sec.iter().map(|r| r.0.len()).sum::<usize>();
    if u32::try_from(total).is_err() {
        return Err(PolicyError {
            code: "too_large",
            message: format!("document: the compiled image would be {total} bytes (4 GiB at most)"),
        });
    }
    let mut img = Vec::with_capacity(total);
    img.extend_from_slice(MAGIC);
    img.extend_from_slice(&FORMAT.to_le_bytes());
    img.extend_from_slice(&u32le(total));
    img.extend_from_slice(&version);
    let mut off = HEADER;
    for (i, r) in sec.iter().enumerate() {
        img.extend_from_slice(&u32le(off));
        img.extend_from_slice(&u32le(r.0.len() / ROW[i]));
        off += r.0.len();
    }
    for r in &sec {
        img.extend_from_slice(&r.0);
    }
    Ok(img)
}

// ---------------------------------------------------------------------------------------------
// reading

fn rd32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

fn rd64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

fn rdix(b: &[u8], at: usize) -> Option<usize> {
    rd32(b, at).and_then(|v| usize::try_from(v).ok())
}

/// The first index in `0..n` for which `less` is false (`less` must be true on a prefix).
fn lower_bound(n: usize, mut less: impl FnMut(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if less(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// One section's rows.
#[derive(Clone, Copy)]
struct Table<'a> {
    data: &'a [u8],
    size: usize,
}

impl<'a> Table<'a> {
    fn len(&self) -> usize {
        self.data.len() / self.size
    }
    fn row(&self, i: usize) -> Option<&'a [u8]> {
        let at = i.checked_mul(self.size)?;
        self.data.get(at..at.checked_add(self.size)?)
    }
}

/// A compiled policy image, read in place. Cheap to copy (one slice).
#[derive(Clone, Copy)]
pub struct View<'a> {
    image: &'a [u8],
}

impl<'a> View<'a> {
    /// Checks the magic, the format version, the total length and that every section lies
    /// inside `image` (O(1)); `None` for anything that is not an image of this format.
    #[must_use]
    pub fn new(image: &'a [u8]) -> Option<View<'a>> {
        if image.len() < HEADER || image.get(..8)? != MAGIC || rd32(image, 8)? != FORMAT {
            return None;
        }
        if rdix(image, 12)? != image.len() {
            return None;
        }
        for (i, &size) in ROW.iter().enumerate() {
            let off = rdix(image, 24 + 8 * i)?;
            let len = rdix(image, 28 + 8 * i)?.checked_mul(size)?;
            if off < HEADER || off.checked_add(len)? > image.len() {
                return None;
            }
        }
        let v = View { image };
        v.str_at(image, 16)?;
        Some(v)
    }

    fn table(&self, s: S) -> Table<'a> {
        let i = s as usize;
        let size = ROW[i];
        let data = (|| {
            let off = rdix(self.image, 24 + 8 * i)?;
            let len = rdix(self.image, 28 + 8 * i)?.checked_mul(size)?;
            self.image.get(off..off.checked_add(len)?)
        })();
        Table {
            data: data.unwrap_or_default(),
            size,
        }
    }

    /// The string whose ref is at `at` in `row`.
    fn str_at(&self, row: &[u8], at: usize) -> Option<&'a [u8]> {
        let off = rdix(row, at)?;
        let len = rdix(row, at + 4)?;
        self.table(S::Strings).data.get(off..off.checked_add(len)?)
    }

    /// The index of the row of `t` whose string at 0 equals `key`.
    fn find_str(&self, t: Table<'a>, key: &[u8]) -> Option<usize> {
        let at = lower_bound(t.len(), |i| {
            t.row(i)
                .and_then(|r| self.str_at(r, 0))
                .is_some_and(|s| s < key)
        });
        let s = t.row(at).and_then(|r| self.str_at(r, 0))?;
        (s == key).then_some(at)
    }

    /// The document's `version`.
    #[must_use]
    pub fn version(&self) -> &'a [u8] {
        self.str_at(self.image, 16).unwrap_or_default()
    }

    /// Counts of the image (cheap: read from the section headers).
    #[must_use]
    pub fn summary(&self) -> Summary {
        let n = |s| self.table(s).len();
        Summary {
            version: String::from_utf8_lossy(self.version()).into_owned(),
            consumers: n(S::Consumers),
            api_keys: n(S::Keys),
            plans: n(S::Plans),
            rules: n(S::Rules),
            denied: n(S::DenyConsumers) + n(S::DenyKeys) + n(S::DenyJti) + n(S::DenySub),
        }
    }

    fn consumer_row(&self, i: Option<usize>) -> Option<Consumer<'a>> {
        let row = self.table(S::Consumers).row(i?)?;
        Some(Consumer { view: *self, row })
    }

    /// The key row of digest `d`: binary search, then a constant-time comparison.
    fn key_row(&self, d: &[u8; 32]) -> Option<&'a [u8]> {
        let t = self.table(S::Keys);
        let at = lower_bound(t.len(), |i| {
            t.row(i)
                .and_then(|r| r.get(..32))
                .is_some_and(|k| k < &d[..])
        });
        let row = t.row(at)?;
        ct_eq(row.get(..32)?, d).then_some(row)
    }

    /// The consumer that owns the API key with SHA-256 digest `d` (see
    /// [`key_digest`](super::key_digest)); disabled consumers too ([`Consumer::disabled`]).
    #[must_use]
    pub fn by_key_digest(&self, d: &[u8; 32]) -> Option<Consumer<'a>> {
        let row = self.key_row(d)?;
        self.consumer_row(rdix(row, 32))
    }

    /// The `name` label of the API key with digest `d` (empty when it has none).
    #[must_use]
    pub fn key_name(&self, d: &[u8; 32]) -> Option<&'a [u8]> {
        let row = self.key_row(d)?;
        self.str_at(row, 36)
    }

    /// The consumer a verified JWT is bound to. `claim(name)` returns a top-level string
    /// claim of the token. (iss, sub) bindings come first (an exact `iss` match beats an
    /// iss-less binding), then claim bindings, tried in the order of their claim names' bytes.
    pub fn by_jwt<'c>(&self, claim: &dyn Fn(&[u8]) -> Option<&'c [u8]>) -> Option<Consumer<'a>> {
        if let Some(sub) = claim(b"sub") {
            let t = self.table(S::Subs);
            let find = |iss: Option<&[u8]>| {
                let key = (sub, iss.is_some(), iss.unwrap_or_default());
                let at = lower_bound(t.len(), |i| {
                    self.sub_key(t, i)
                        .is_some_and(|k| k.cmp(&key) == Ordering::Less)
                });
                (self.sub_key(t, at)? == key).then(|| t.row(at).and_then(|r| rdix(r, 20)))?
            };
            let found = claim(b"iss")
                .and_then(|iss| find(Some(iss)))
                .or_else(|| find(None));
            if let Some(c) = self.consumer_row(found) {
                return Some(c);
            }
        }
        let names = self.table(S::ClaimNames);
        let t = self.table(S::Claims);
        for name in (0..names.len()).filter_map(|i| names.row(i).and_then(|r| self.str_at(r, 0))) {
            let Some(value) = claim(name) else { continue };
            let key = (name, value);
            let at = lower_bound(t.len(), |i| self.claim_key(t, i).is_some_and(|k| k < key));
            if self.claim_key(t, at) == Some(key) {
                if let Some(c) = self.consumer_row(t.row(at).and_then(|r| rdix(r, 16))) {
                    return Some(c);
                }
            }
        }
        None
    }

    fn sub_key(&self, t: Table<'a>, i: usize) -> Option<(&'a [u8], bool, &'a [u8])> {
        let r = t.row(i)?;
        Some((self.str_at(r, 0)?, rd32(r, 16)? != 0, self.str_at(r, 8)?))
    }

    fn claim_key(&self, t: Table<'a>, i: usize) -> Option<(&'a [u8], &'a [u8])> {
        let r = t.row(i)?;
        Some((self.str_at(r, 0)?, self.str_at(r, 8)?))
    }

    /// The consumer with this id (for the anonymous consumer and for status pages).
    #[must_use]
    pub fn consumer(&self, id: &[u8]) -> Option<Consumer<'a>> {
        let t = self.table(S::Consumers);
        self.consumer_row(self.find_str(t, id))
    }

    /// Whether the API key digest `d` is on the denylist.
    #[must_use]
    pub fn key_denied(&self, d: &[u8; 32]) -> bool {
        let t = self.table(S::DenyKeys);
        let at = lower_bound(t.len(), |i| t.row(i).is_some_and(|k| k < &d[..]));
        t.row(at).is_some_and(|k| ct_eq(k, d))
    }

    /// Whether the consumer id is on the denylist.
    #[must_use]
    pub fn consumer_denied(&self, id: &[u8]) -> bool {
        self.find_str(self.table(S::DenyConsumers), id).is_some()
    }

    /// Whether a token's `jti` is on the denylist.
    #[must_use]
    pub fn jti_denied(&self, v: &[u8]) -> bool {
        self.find_str(self.table(S::DenyJti), v).is_some()
    }

    /// Whether a token's `sub` is on the denylist.
    #[must_use]
    pub fn sub_denied(&self, v: &[u8]) -> bool {
        self.find_str(self.table(S::DenySub), v).is_some()
    }

    /// The plan with this name.
    #[must_use]
    pub fn plan(&self, name: &[u8]) -> Option<Plan<'a>> {
        let t = self.table(S::Plans);
        let row = t.row(self.find_str(t, name)?)?;
        Some(Plan { view: *self, row })
    }

    /// Entries `first..first + count` of the list section.
    fn list(&self, row: &[u8], at: usize) -> Strs<'a> {
        let first = rdix(row, at).unwrap_or(0);
        let count = rdix(row, at + 4).unwrap_or(0);
        Strs {
            view: *self,
            next: first,
            end: first.saturating_add(count),
        }
    }

    /// The access rules of `route` applied to a request: `Allowed` when a rule of the route
    /// allows `method` (a rule without methods allows every method) and names one of `groups`
    /// or `"*"` with `identified` true (some consumer, registered or not, is known; a group
    /// named `*` in `groups` counts for nothing);
    /// `Forbidden` when the route has rules and none allows; `UnknownRoute` when no rule names
    /// the route.
    #[must_use]
    pub fn access(
        &self,
        route: &[u8],
        method: &[u8],
        groups: &[&[u8]],
        identified: bool,
    ) -> Access {
        let t = self.table(S::Rules);
        let mut at = lower_bound(t.len(), |i| {
            t.row(i)
                .and_then(|r| self.str_at(r, 0))
                .is_some_and(|s| s < route)
        });
        let mut any = false;
        while let Some(row) = t.row(at) {
            if self.str_at(row, 0) != Some(route) {
                break;
            }
            any = true;
            at += 1;
            let methods = self.list(row, 16);
            if !methods.is_empty() && !methods.clone().any(|m| m == method) {
                continue;
            }
            let rule_groups = self.list(row, 8);
            if (identified && rule_groups.contains_sorted(b"*"))
                || groups
                    .iter()
                    .any(|g| *g != b"*" && rule_groups.contains_sorted(g))
            {
                return Access::Allowed;
            }
        }
        if any {
            Access::Forbidden
        } else {
            Access::UnknownRoute
        }
    }
}

impl View<'_> {
    /// Reads every row of the image and looks each one up again through the public accessors;
    /// true when all are found where they are. O(n log n): for tests, fuzzing and a check
    /// after copying an image, not for requests. Never panics, whatever the bytes.
    #[must_use]
    pub fn check(&self) -> bool {
        let mut ok = std::str::from_utf8(self.version()).is_ok_and(|v| !v.is_empty());
        let t = self.table(S::Plans);
        for row in (0..t.len()).filter_map(|i| t.row(i)) {
            let p = Plan { view: *self, row };
            let again = self.plan(p.name());
            ok &= again.is_some_and(|q| std::ptr::eq(q.row, row));
            ok &= Period::ALL.iter().any(|&per| p.limit(per).is_some());
        }
        let t = self.table(S::Consumers);
        for row in (0..t.len()).filter_map(|i| t.row(i)) {
            let c = Consumer { view: *self, row };
            ok &= self
                .consumer(c.id())
                .is_some_and(|d| std::ptr::eq(d.row, row));
            ok &= !c.username().is_empty();
            ok &= c.groups().all(|g| !g.is_empty());
            ok &= c.plan().is_some() == (rd32(row, 24) != Some(NONE));
            let _ = (c.disabled(), self.consumer_denied(c.id()));
        }
        let t = self.table(S::Keys);
        for row in (0..t.len()).filter_map(|i| t.row(i)) {
            let d: Option<[u8; 32]> = row.get(..32).and_then(|d| d.try_into().ok());
            ok &= d.is_some_and(|d| {
                let c = self.by_key_digest(&d);
                let _ = self.key_denied(&d);
                self.key_name(&d).is_some() && c.map(|c| c.row) == self.row_of(row, 32)
            });
        }
        let t = self.table(S::Subs);
        for i in 0..t.len() {
            let (Some((sub, has_iss, iss)), Some(row)) = (self.sub_key(t, i), t.row(i)) else {
                ok = false;
                continue;
            };
            let claim = |n: &[u8]| match n {
                b"sub" => Some(sub),
                b"iss" if has_iss => Some(iss),
                _ => None,
            };
            ok &= self.by_jwt(&claim).map(|c| c.row) == self.row_of(row, 20);
            let _ = self.sub_denied(sub);
        }
        let t = self.table(S::Claims);
        for i in 0..t.len() {
            let (Some((name, value)), Some(row)) = (self.claim_key(t, i), t.row(i)) else {
                ok = false;
                continue;
            };
            let claim = |n: &[u8]| (n == name).then_some(value);
            ok &= self.by_jwt(&claim).map(|c| c.row) == self.row_of(row, 16);
        }
        let t = self.table(S::Rules);
        for row in (0..t.len()).filter_map(|i| t.row(i)) {
            let route = self.str_at(row, 0).unwrap_or_default();
            let method = self.list(row, 16).next().unwrap_or(b"GET");
            let groups: Vec<&[u8]> = self.list(row, 8).collect();
            ok &= self.access(route, method, &groups, true) == Access::Allowed;
        }
        for (s, denied) in [
            (
                S::DenyConsumers,
                View::consumer_denied as fn(&Self, &[u8]) -> bool,
            ),
            (S::DenyJti, View::jti_denied),
            (S::DenySub, View::sub_denied),
        ] {
            let t = self.table(s);
            for row in (0..t.len()).filter_map(|i| t.row(i)) {
                ok &= self.str_at(row, 0).is_some_and(|v| denied(self, v));
            }
        }
        let t = self.table(S::DenyKeys);
        for row in (0..t.len()).filter_map(|i| t.row(i)) {
            ok &= row.try_into().is_ok_and(|d| self.key_denied(d));
        }
        ok
    }

    /// The consumer row that `row` names at `at`.
    fn row_of(&self, row: &[u8], at: usize) -> Option<&[u8]> {
        self.table(S::Consumers).row(rdix(row, at)?)
    }
}

/// The decision of [`View::access`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A rule of the route allows the request.
    Allowed,
    /// The route has rules and none allows the request.
    Forbidden,
    /// No rule names the route.
    UnknownRoute,
}

/// A run of strings in the image (a consumer's groups, in document order).
#[derive(Clone)]
pub struct Strs<'a> {
    view: View<'a>,
    next: usize,
    end: usize,
}

impl<'a> Strs<'a> {
    fn is_empty(&self) -> bool {
        self.next >= self.end
    }

    fn get(&self, i: usize) -> Option<&'a [u8]> {
        let row = self.view.table(S::Lists).row(i)?;
        self.view.str_at(row, 0)
    }

    /// Binary search over a sorted run.
    fn contains_sorted(&self, s: &[u8]) -> bool {
        let n = self.end.saturating_sub(self.next);
        let at = lower_bound(n, |i| self.get(self.next + i).is_some_and(|g| g < s));
        at < n && self.get(self.next + at) == Some(s)
    }
}

impl<'a> Iterator for Strs<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.is_empty() {
            return None;
        }
        let s = self.get(self.next);
        self.next += 1;
        // A corrupted ref ends the run.
        if s.is_none() {
            self.next = self.end;
        }
        s
    }
}

/// A consumer of the image.
#[derive(Clone, Copy)]
pub struct Consumer<'a> {
    view: View<'a>,
    row: &'a [u8],
}

impl<'a> Consumer<'a> {
    /// The consumer's `id`.
    #[must_use]
    pub fn id(&self) -> &'a [u8] {
        self.view.str_at(self.row, 0).unwrap_or_default()
    }
    /// The consumer's `username` (its id when the document gives none).
    #[must_use]
    pub fn username(&self) -> &'a [u8] {
        self.view.str_at(self.row, 8).unwrap_or_default()
    }
    /// The consumer's groups, in document order (repeats removed).
    #[must_use]
    pub fn groups(&self) -> Strs<'a> {
        self.view.list(self.row, 16)
    }
    /// The consumer's plan.
    #[must_use]
    pub fn plan(&self) -> Option<Plan<'a>> {
        let i = rdix(self.row, 24)?;
        let row = self.view.table(S::Plans).row(i)?;
        Some(Plan {
            view: self.view,
            row,
        })
    }
    /// Whether the consumer is `disabled`.
    #[must_use]
    pub fn disabled(&self) -> bool {
        rd32(self.row, 28).is_some_and(|f| f & 1 != 0)
    }
}

impl std::fmt::Debug for Consumer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("id", &String::from_utf8_lossy(self.id()))
            .finish_non_exhaustive()
    }
}

/// A plan of the image.
#[derive(Clone, Copy)]
pub struct Plan<'a> {
    view: View<'a>,
    row: &'a [u8],
}

impl<'a> Plan<'a> {
    /// The plan's name.
    #[must_use]
    pub fn name(&self) -> &'a [u8] {
        self.view.str_at(self.row, 0).unwrap_or_default()
    }
    /// The plan's limit (requests per period) for `period`, if it sets one.
    #[must_use]
    pub fn limit(&self, period: Period) -> Option<u64> {
        rd64(self.row, 8 + 8 * period as usize).filter(|&n| n != 0)
    }
}

impl std::fmt::Debug for Plan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("name", &String::from_utf8_lossy(self.name()))
            .finish_non_exhaustive()
    }
}

/// The periods a plan's limits count over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day.
    Day,
}

impl Period {
    /// Every period, shortest first.
    pub const ALL: [Period; 4] = [Period::Second, Period::Minute, Period::Hour, Period::Day];
    /// The member names of `limits` in the document, in the order of [`Period::ALL`].
    pub const NAMES: [&'static str; 4] = ["second", "minute", "hour", "day"];

    /// The period's length in milliseconds.
    #[must_use]
    pub fn period_ms(self) -> u64 {
        match self {
            Period::Second => 1_000,
            Period::Minute => 60_000,
            Period::Hour => 3_600_000,
            Period::Day => 86_400_000,
        }
    }

    /// The period's member name in `limits` (`second`, `minute`, `hour`, `day`).
    #[must_use]
    pub fn name(self) -> &'static str {
        Period::NAMES[self as usize]
    }
}
