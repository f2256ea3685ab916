//! The policy document: JSON into a validated [`Model`], with a reason code and the place for
//! every refusal.
//!
//! The JSON goes into a small value type of its own ([`J`]) that keeps an object's members in
//! order, repeats included, so a repeated member (`"disabled": true, "disabled": false`) is
//! refused instead of silently taking the last value.

use super::{parse_digest, PolicyError};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// A JSON value; numbers keep only what the document can use: a non-negative integer.
enum J<'d> {
    Null,
    Bool(bool),
    /// `Some` for an integer literal >= 0, `None` for any other number.
    Num(Option<u64>),
    /// Borrowed from the document unless it had escapes.
    Str(Cow<'d, str>),
    Arr(Vec<J<'d>>),
    Obj(Vec<(Cow<'d, str>, J<'d>)>),
}

impl<'de> Deserialize<'de> for J<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J<'de>, D::Error> {
        d.deserialize_any(JVisitor)
    }
}

struct JVisitor;

impl<'de> Visitor<'de> for JVisitor {
    type Value = J<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<J<'de>, E> {
        Ok(J::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<J<'de>, E> {
        Ok(J::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<J<'de>, E> {
        Ok(J::Num(Some(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<J<'de>, E> {
        Ok(J::Num(u64::try_from(v).ok()))
    }
    fn visit_f64<E>(self, _: f64) -> Result<J<'de>, E> {
        Ok(J::Num(None))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<J<'de>, E> {
        Ok(J::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<J<'de>, E> {
        Ok(J::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<J<'de>, E> {
        Ok(J::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<J<'de>, A::Error> {
        let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1024));
        while let Some(e) = a.next_element()? {
            v.push(e);
        }
        Ok(J::Arr(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<J<'de>, A::Error> {
        let mut v = Vec::new();
        // Keys through J too, so they are borrowed when they can be.
        while let Some((k, e)) = a.next_entry::<J<'de>, J<'de>>()? {
            let J::Str(k) = k else {
                return Err(serde::de::Error::custom(
                    "a member name that is not a string",
                ));
            };
            v.push((k, e));
        }
        Ok(J::Obj(v))
    }
}

/// Where a value is in the document, built on the stack while walking it; only formatted when
/// a refusal needs it.
#[derive(Clone, Copy)]
enum P<'p> {
    Root,
    Key(&'p P<'p>, &'p str),
    Idx(&'p P<'p>, usize),
}

impl P<'_> {
    fn key<'p>(&'p self, k: &'p str) -> P<'p> {
        P::Key(self, k)
    }
    fn idx(&self, i: usize) -> P<'_> {
        P::Idx(self, i)
    }
}

impl fmt::Display for P<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            P::Root => f.write_str("document"),
            P::Key(P::Root, k) => f.write_str(k),
            P::Key(p, k) => write!(f, "{p}.{k}"),
            P::Idx(p, i) => write!(f, "{p}[{i}]"),
        }
    }
}

fn err<T>(code: &'static str, p: &P<'_>, what: impl fmt::Display) -> Result<T, PolicyError> {
    Err(PolicyError {
        code,
        message: format!("{p}: {what}"),
    })
}

type R<T> = Result<T, PolicyError>;

/// The members of an object, checked for repeats and against the members it may have.
struct Obj<'j> {
    members: &'j [(Cow<'j, str>, J<'j>)],
}

impl<'j> Obj<'j> {
    fn get(&self, k: &str) -> Option<&'j J<'j>> {
        self.members.iter().find(|(n, _)| n == k).map(|(_, v)| v)
    }
}

fn obj<'j>(j: &'j J<'j>, p: &P<'_>, allowed: Option<&[&str]>) -> R<Obj<'j>> {
    let J::Obj(members) = j else {
        return err("bad_value", p, "not an object");
    };
    if let Some(allowed) = allowed {
        if let Some((k, _)) = members.iter().find(|(k, _)| !allowed.contains(&&**k)) {
            return err("unknown_member", &p.key(k), "unknown member");
        }
    }
    let twice = if members.len() <= 8 {
        // The usual small object: no hashing.
        let mut it = members.iter().enumerate();
        it.find(|(i, (k, _))| members[..*i].iter().any(|(n, _)| n == k))
            .map(|(_, (k, _))| k)
    } else {
        let mut seen = HashSet::with_capacity(members.len());
        members.iter().map(|(k, _)| k).find(|k| !seen.insert(&***k))
    };
    if let Some(k) = twice {
        return err("bad_json", p, format_args!("member \"{k}\" appears twice"));
    }
    Ok(Obj { members })
}

fn arr<'j>(j: &'j J<'j>, p: &P<'_>) -> R<&'j [J<'j>]> {
    match j {
        J::Arr(v) => Ok(v),
        _ => err("bad_value", p, "not an array"),
    }
}

fn string<'j>(j: &'j J<'j>, p: &P<'_>) -> R<&'j str> {
    match j {
        J::Str(s) => Ok(s),
        _ => err("bad_value", p, "not a string"),
    }
}

fn required<'j>(o: &Obj<'j>, k: &str, p: &P<'_>) -> R<&'j J<'j>> {
    match o.get(k) {
        Some(v) => Ok(v),
        None => err("bad_value", &p.key(k), "missing"),
    }
}

/// The character sets of names.
#[derive(Clone, Copy)]
pub(super) enum Charset {
    /// Plan names and routes: `[A-Za-z0-9._-]`.
    Name,
    /// Consumer ids and key labels: `[A-Za-z0-9._:@-]`.
    Id,
    /// Group names: `[A-Za-z0-9._:@/-]`.
    Group,
    /// Claim names: `[A-Za-z0-9_.:-]`.
    Claim,
    /// Method names: `[A-Z_-]`.
    Method,
    /// The version: printable ASCII without space.
    Version,
    /// Usernames: printable ASCII with space.
    Text,
    /// Any UTF-8 (claim values, `jti`, `sub`, `iss`).
    Any,
}

impl Charset {
    pub(super) fn allows(self, c: u8) -> bool {
        let base = c.is_ascii_alphanumeric() || c == b'.' || c == b'-';
        match self {
            Charset::Name => base || c == b'_',
            Charset::Id => base || matches!(c, b'_' | b':' | b'@'),
            Charset::Group => base || matches!(c, b'_' | b':' | b'@' | b'/'),
            Charset::Claim => base || matches!(c, b'_' | b':'),
            Charset::Method => c.is_ascii_uppercase() || matches!(c, b'_' | b'-'),
            Charset::Version => (0x21..=0x7e).contains(&c),
            Charset::Text => (0x20..=0x7e).contains(&c),
            Charset::Any => true,
        }
    }
    fn describe(self) -> &'static str {
        match self {
            Charset::Name => "characters of [A-Za-z0-9._-]",
            Charset::Id => "characters of [A-Za-z0-9._:@-]",
            Charset::Group => "characters of [A-Za-z0-9._:@/-]",
            Charset::Claim => "characters of [A-Za-z0-9_.:-]",
            Charset::Method => "characters of [A-Z_-]",
            Charset::Version => "printable ASCII characters without space",
            Charset::Text => "printable ASCII characters",
            Charset::Any => "bytes",
        }
    }
}

/// Checks a name's length (in bytes) and characters; `code` is the reason on failure.
fn check_name(s: &str, p: &P<'_>, cs: Charset, max: usize, code: &'static str) -> R<()> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|c| cs.allows(c)) {
        return err(code, p, format_args!("must be 1..={max} {}", cs.describe()));
    }
    Ok(())
}

fn name<'j>(j: &'j J<'j>, p: &P<'_>, cs: Charset, max: usize) -> R<&'j str> {
    let s = string(j, p)?;
    check_name(s, p, cs, max, "bad_value")?;
    Ok(s)
}

/// An array of names; `max_items` bounds its length.
fn names<'j>(
    j: &'j J<'j>,
    p: &P<'_>,
    cs: Charset,
    max: usize,
    max_items: usize,
) -> R<Vec<&'j str>> {
    let a = arr(j, p)?;
    if a.len() > max_items {
        return err("bad_value", p, format_args!("more than {max_items} items"));
    }
    a.iter()
        .enumerate()
        .map(|(i, e)| name(e, &p.idx(i), cs, max))
        .collect()
}

fn digest(j: &J, p: &P<'_>) -> R<[u8; 32]> {
    match parse_digest(string(j, p)?.as_bytes()) {
        Some(d) => Ok(d),
        None => err("bad_value", p, "not 64 hex digits"),
    }
}

/// Values longer than this (claim values, `jti`, `sub`, `iss`) are refused.
const MAX_VALUE: usize = 1024;

/// A validated document; every string has passed its rules.
pub(super) struct Model<'j> {
    pub version: &'j str,
    pub plans: Vec<PlanM<'j>>,
    pub consumers: Vec<ConsumerM<'j>>,
    pub keys: Vec<KeyM<'j>>,
    pub subs: Vec<SubM<'j>>,
    pub claims: Vec<ClaimM<'j>>,
    pub rules: Vec<RuleM<'j>>,
    pub deny: DenyM<'j>,
}

pub(super) struct PlanM<'j> {
    pub name: &'j str,
    /// Per [`super::Period`] in order; 0 = no limit for that period.
    pub limits: [u64; 4],
}

pub(super) struct ConsumerM<'j> {
    pub id: &'j str,
    pub username: &'j str,
    pub groups: Vec<&'j str>,
    /// Index into [`Model::plans`].
    pub plan: Option<usize>,
    pub disabled: bool,
}

/// An API key; `consumer` indexes [`Model::consumers`] (as for bindings).
pub(super) struct KeyM<'j> {
    pub digest: [u8; 32],
    pub name: &'j str,
    pub consumer: usize,
}

pub(super) struct SubM<'j> {
    pub iss: Option<&'j str>,
    pub sub: &'j str,
    pub consumer: usize,
}

pub(super) struct ClaimM<'j> {
    pub claim: &'j str,
    pub value: &'j str,
    pub consumer: usize,
}

pub(super) struct RuleM<'j> {
    pub route: &'j str,
    pub groups: Vec<&'j str>,
    /// Empty: every method.
    pub methods: Vec<&'j str>,
}

#[derive(Default)]
pub(super) struct DenyM<'j> {
    pub consumers: Vec<&'j str>,
    pub api_keys: Vec<[u8; 32]>,
    pub jti: Vec<&'j str>,
    pub sub: Vec<&'j str>,
}

/// The JSON of a document, parsed but not yet validated; [`Parsed::model`] validates.
pub(super) struct Parsed<'d>(J<'d>);

/// Parses JSON; refuses invalid JSON (`bad_json`).
pub(super) fn parse_json(doc: &[u8]) -> R<Parsed<'_>> {
    serde_json::from_slice(doc)
        .map(Parsed)
        .map_err(|e| PolicyError {
            code: "bad_json",
            message: format!("document: invalid JSON: {e}"),
        })
}

/// The members a document may have at the top level.
pub(super) const TOP_LEVEL: [&str; 5] = ["version", "plans", "consumers", "access", "deny"];

impl Parsed<'_> {
    /// Validates the whole document.
    pub(super) fn model(&self) -> R<Model<'_>> {
        let root = P::Root;
        let top = obj(&self.0, &root, Some(&TOP_LEVEL))?;
        let vp = root.key("version");
        let version = string(required(&top, "version", &root)?, &vp)?;
        check_name(version, &vp, Charset::Version, 128, "bad_version")?;
        let plans = match top.get("plans") {
            Some(j) => plans(j, &root.key("plans"))?,
            None => Vec::new(),
        };
        let mut m = Model {
            version,
            plans,
            consumers: Vec::new(),
            keys: Vec::new(),
            subs: Vec::new(),
            claims: Vec::new(),
            rules: Vec::new(),
            deny: DenyM::default(),
        };
        if let Some(j) = top.get("consumers") {
            consumers(j, &root.key("consumers"), &mut m)?;
        }
        if let Some(j) = top.get("access") {
            let p = root.key("access");
            for (i, r) in arr(j, &p)?.iter().enumerate() {
                m.rules.push(rule(r, &p.idx(i))?);
            }
        }
        if let Some(j) = top.get("deny") {
            m.deny = deny(j, &root.key("deny"))?;
        }
        Ok(m)
    }
}

fn plans<'j>(j: &'j J<'j>, p: &P<'_>) -> R<Vec<PlanM<'j>>> {
    let o = obj(j, p, None)?;
    let mut out = Vec::with_capacity(o.members.len());
    for (n, v) in o.members {
        let pp = p.key(n);
        check_name(n, &pp, Charset::Name, 64, "bad_value")?;
        let plan = obj(v, &pp, Some(&["limits"]))?;
        let lp = pp.key("limits");
        let limits = obj(
            required(&plan, "limits", &pp)?,
            &lp,
            Some(&super::Period::NAMES),
        )?;
        if limits.members.is_empty() {
            return err("bad_value", &lp, "no limit");
        }
        let mut out_limits = [0u64; 4];
        for (slot, period) in out_limits.iter_mut().zip(super::Period::NAMES) {
            if let Some(v) = limits.get(period) {
                *slot = match v {
                    J::Num(Some(n @ 1..=1_000_000_000)) => *n,
                    _ => {
                        return err(
                            "bad_value",
                            &lp.key(period),
                            "not an integer in 1..=1000000000",
                        )
                    }
                };
            }
        }
        out.push(PlanM {
            name: n,
            limits: out_limits,
        });
    }
    Ok(out)
}

const CONSUMER: [&str; 6] = [
    "id",
    "username",
    "groups",
    "plan",
    "disabled",
    "credentials",
];

fn consumers<'j>(j: &'j J<'j>, p: &P<'_>, m: &mut Model<'j>) -> R<()> {
    let list = arr(j, p)?;
    let plan_index: HashMap<&str, usize> = m
        .plans
        .iter()
        .enumerate()
        .map(|(i, pl)| (pl.name, i))
        .collect();
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(list.len());
    // Where each key and binding was first seen, for the message of a repeat.
    let mut keys: HashMap<[u8; 32], (usize, usize)> = HashMap::new();
    let mut subs: HashMap<(Option<&str>, &str), (usize, usize)> = HashMap::new();
    let mut claims: HashMap<(&str, &str), (usize, usize)> = HashMap::new();
    m.consumers.reserve(list.len());
    for (ci, c) in list.iter().enumerate() {
        let cp = p.idx(ci);
        let o = obj(c, &cp, Some(&CONSUMER))?;
        let ip = cp.key("id");
        let id = name(required(&o, "id", &cp)?, &ip, Charset::Id, 128)?;
        if let Some(first) = ids.insert(id, ci) {
            return err(
                "duplicate_id",
                &ip,
                format_args!("duplicate id \"{id}\" (also {})", p.idx(first)),
            );
        }
        let username = match o.get("username") {
            Some(u) => name(u, &cp.key("username"), Charset::Text, 256)?,
            None => id,
        };
        let mut groups = match o.get("groups") {
            Some(g) => names(g, &cp.key("groups"), Charset::Group, 64, 64)?,
            None => Vec::new(),
        };
        let mut seen = HashSet::new();
        groups.retain(|g| seen.insert(*g));
        let plan = match o.get("plan") {
            Some(pl) => {
                let pp = cp.key("plan");
                let n = string(pl, &pp)?;
                match plan_index.get(n) {
                    Some(&i) => Some(i),
                    None => return err("unknown_plan", &pp, format_args!("unknown plan \"{n}\"")),
                }
            }
            None => None,
        };
        let disabled = match o.get("disabled") {
            Some(J::Bool(b)) => *b,
            Some(_) => return err("bad_value", &cp.key("disabled"), "not a boolean"),
            None => false,
        };
        if let Some(cr) = o.get("credentials") {
            let crp = cp.key("credentials");
            let cro = obj(cr, &crp, Some(&["api_keys", "jwt"]))?;
            if let Some(ks) = cro.get("api_keys") {
                let kp = crp.key("api_keys");
                for (ki, k) in arr(ks, &kp)?.iter().enumerate() {
                    let kpi = kp.idx(ki);
                    let ko = obj(k, &kpi, Some(&["sha256", "name"]))?;
                    let dp = kpi.key("sha256");
                    let digest = digest(required(&ko, "sha256", &kpi)?, &dp)?;
                    let name = match ko.get("name") {
                        Some(n) => name(n, &kpi.key("name"), Charset::Id, 64)?,
                        None => "",
                    };
                    if let Some((c0, k0)) = keys.insert(digest, (ci, ki)) {
                        let first = p.idx(c0);
                        return err(
                            "duplicate_key",
                            &dp,
                            format_args!("duplicate key (also {first}.credentials.api_keys[{k0}])"),
                        );
                    }
                    m.keys.push(KeyM {
                        digest,
                        name,
                        consumer: ci,
                    });
                }
            }
            if let Some(bs) = cro.get("jwt") {
                let bp = crp.key("jwt");
                for (bi, b) in arr(bs, &bp)?.iter().enumerate() {
                    let bpi = bp.idx(bi);
                    let bo = obj(b, &bpi, Some(&["iss", "sub", "claim", "value"]))?;
                    let value = |k: &'static str| -> R<Option<&'j str>> {
                        match bo.get(k) {
                            Some(v) => name(v, &bpi.key(k), Charset::Any, MAX_VALUE).map(Some),
                            None => Ok(None),
                        }
                    };
                    let (iss, sub, claim, val) = (
                        value("iss")?,
                        value("sub")?,
                        bo.get("claim"),
                        value("value")?,
                    );
                    let first = match (sub, claim, val) {
                        (Some(sub), None, None) => {
                            m.subs.push(SubM {
                                iss,
                                sub,
                                consumer: ci,
                            });
                            subs.insert((iss, sub), (ci, bi))
                        }
                        (None, Some(cl), Some(value)) if iss.is_none() => {
                            let claim = name(cl, &bpi.key("claim"), Charset::Claim, 64)?;
                            if claim == "sub" {
                                // The same as {"sub": value}; kept as one so repeats are seen.
                                m.subs.push(SubM {
                                    iss: None,
                                    sub: value,
                                    consumer: ci,
                                });
                                subs.insert((None, value), (ci, bi))
                            } else {
                                m.claims.push(ClaimM {
                                claim,
                                value,
                                    consumer: ci,
                                });
                                claims.insert((claim, value), (ci, bi))
                            }
                        }
                        _ => {
                            return err(
                                "bad_value",
                                &bpi,
                                "needs either \"sub\" (with optional \"iss\") or \"claim\" and \"value\"",
                            )
                        }
                    };
                    if let Some((c0, b0)) = first {
                        let first = p.idx(c0);
                        return err(
                            "duplicate_binding",
                            &bpi,
                            format_args!("duplicate binding (also {first}.credentials.jwt[{b0}])"),
                        );
                    }
                }
            }
        }
        m.consumers.push(ConsumerM {
            id,
            username,
            groups,
            plan,
            disabled,
        });
    }
    Ok(())
}

fn rule<'j>(j: &'j J<'j>, p: &P<'_>) -> R<RuleM<'j>> {
    let o = obj(j, p, Some(&["route", "groups", "methods"]))?;
    let route = name(
        required(&o, "route", p)?,
        &p.key("route"),
        Charset::Name,
        64,
    )?;
    let gp = p.key("groups");
    let list = arr(required(&o, "groups", p)?, &gp)?;
    if list.is_empty() {
        return err("bad_value", &gp, "empty");
    }
    let mut groups = Vec::with_capacity(list.len());
    for (i, g) in list.iter().enumerate() {
        let gpi = gp.idx(i);
        match string(g, &gpi)? {
            "*" => groups.push("*"),
            _ => groups.push(name(g, &gpi, Charset::Group, 64)?),
        }
    }
    let methods = match o.get("methods") {
        Some(ms) => {
            let mp = p.key("methods");
            let v = names(ms, &mp, Charset::Method, 32, 64)?;
            if v.is_empty() {
                return err(
                    "bad_value",
                    &mp,
                    "empty (leave it out to allow every method)",
                );
            }
            v
        }
        None => Vec::new(),
    };
    Ok(RuleM {
        route,
        groups,
        methods,
    })
}

fn deny<'j>(j: &'j J<'j>, p: &P<'_>) -> R<DenyM<'j>> {
    let o = obj(j, p, Some(&["consumers", "api_keys", "jti", "sub"]))?;
    let mut d = DenyM::default();
    if let Some(c) = o.get("consumers") {
        d.consumers = names(c, &p.key("consumers"), Charset::Id, 128, usize::MAX)?;
    }
    if let Some(k) = o.get("api_keys") {
        let kp = p.key("api_keys");
        for (i, e) in arr(k, &kp)?.iter().enumerate() {
            d.api_keys.push(digest(e, &kp.idx(i))?);
        }
    }
    for (k, out) in [("jti", &mut d.jti), ("sub", &mut d.sub)] {
        if let Some(v) = o.get(k) {
            *out = names(v, &p.key(k), Charset::Any, MAX_VALUE, usize::MAX)?;
        }
    }
    Ok(d)
}
