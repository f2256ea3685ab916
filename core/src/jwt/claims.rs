//! Policy and claim checks (the cheap half, run on every request).

use super::error::JwtError;
use super::keys::KeySet;
use super::token::{decode_and_verify_signature, Verified};
use super::{AlgSet, DEFAULT_MAX_TOKEN_SIZE};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// What a location accepts. Built once at configuration time.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Allowed algorithms; `None` = every algorithm some configured key supports.
    pub algorithms: Option<AlgSet>,
    /// Accepted issuers (any of); empty = `iss` not checked.
    pub issuers: Vec<String>,
    /// Accepted audiences (any of); empty = `aud` not checked.
    pub audiences: Vec<String>,
    /// Required header `typ`; compared case-insensitively, an `application/` prefix on either
    /// side ignored (RFC 7515 section 4.1.9). `None` = not checked.
    pub typ: Option<String>,
    /// Clock skew tolerated for `exp` and `nbf`, in seconds.
    pub leeway: u32,
    /// Refuse tokens without `exp` (code `expired`). Default `false`, as NGINX Plus.
    pub require_exp: bool,
    /// Longest accepted token in bytes; default [`DEFAULT_MAX_TOKEN_SIZE`].
    pub max_token_size: usize,
    /// Rules that must all hold (`auth_jwt_require_claim`).
    pub claim_rules: Vec<ClaimRule>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            algorithms: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            typ: None,
            leeway: 0,
            require_exp: false,
            max_token_size: DEFAULT_MAX_TOKEN_SIZE,
            claim_rules: Vec::new(),
        }
    }
}

impl Policy {
    /// The algorithms accepted with `keys`: the configured list (or all) restricted to those
    /// some key supports.
    pub fn effective_algs(&self, keys: &KeySet) -> AlgSet {
        let key_algs = keys.algs();
        match self.algorithms {
            Some(a) => a.intersect(key_algs),
            None => key_algs,
        }
    }
}

/// Parses the token, verifies its signature and checks the policy, at `now_unix` seconds.
pub fn verify(
    token: &[u8],
    keys: &KeySet,
    policy: &Policy,
    now_unix: i64,
) -> Result<Verified, JwtError> {
    let v = decode_and_verify_signature(
        token,
        keys,
        policy.effective_algs(keys),
        policy.max_token_size,
    )?;
    check_claims(&v, policy, now_unix)?;
    Ok(v)
}

fn strip_application(t: &str) -> &str {
    match t.get(..12) {
        Some(p) if p.eq_ignore_ascii_case("application/") => &t[12..],
        _ => t,
    }
}

/// Checks a verified token against `policy` at `now` (Unix seconds). Also re-checks the
/// algorithm allow-list and size, so a cache shared between policies stays safe.
///
/// `exp`: expired when `now >= exp + leeway`. `nbf`: not yet valid when `now + leeway < nbf`.
/// `iat` is only type-checked (at decode time).
pub fn check_claims(v: &Verified, policy: &Policy, now: i64) -> Result<(), JwtError> {
    if let Some(algs) = policy.algorithms {
        if !algs.contains(v.alg()) {
            return Err(JwtError::AlgNotAllowed(Cow::Owned(format!(
                "{} is not in the allowed list",
                v.alg()
            ))));
        }
    }
    if v.token_len() > policy.max_token_size {
        return Err(JwtError::TooLarge {
            size: v.token_len(),
            limit: policy.max_token_size,
        });
    }
    let leeway = i64::from(policy.leeway);
    match v.exp() {
        Some(exp) if now >= exp.saturating_add(leeway) => {
            return Err(JwtError::Expired(Cow::Owned(format!(
                "exp {exp}, now {now}, leeway {leeway}s"
            ))))
        }
        None if policy.require_exp => {
            return Err(JwtError::Expired("exp claim required but missing".into()))
        }
        _ => {}
    }
    if let Some(nbf) = v.nbf() {
        if now.saturating_add(leeway) < nbf {
            return Err(JwtError::NotYetValid(Cow::Owned(format!(
                "nbf {nbf}, now {now}, leeway {leeway}s"
            ))));
        }
    }
    if !policy.issuers.is_empty() {
        match v.iss() {
            Some(iss) if policy.issuers.iter().any(|i| i == iss) => {}
            _ => return Err(JwtError::BadIssuer),
        }
    }
    if !policy.audiences.is_empty()
        && !v
            .audiences()
            .any(|a| policy.audiences.iter().any(|p| p == a))
    {
        return Err(JwtError::BadAudience);
    }
    if let Some(want) = &policy.typ {
        match v.typ() {
            Some(t) if strip_application(t).eq_ignore_ascii_case(strip_application(want)) => {}
            _ => return Err(JwtError::BadType),
        }
    }
    for (i, rule) in policy.claim_rules.iter().enumerate() {
        if !rule.check(v) {
            return Err(JwtError::ClaimMismatch {
                rule: i,
                detail: rule.to_string(),
            });
        }
    }
    Ok(())
}

/// Formats a claim or header value as an nginx variable, as NGINX Plus does: strings raw,
/// numbers and booleans as JSON text, `null` as the empty string, arrays of scalars joined
/// with `,`, objects and arrays holding arrays/objects as compact JSON.
///
/// The JSON form escapes every control character inside strings (serde_json writes U+0000 to
/// U+001F as escapes, and DEL is escaped here too), so it is always safe in a header line
/// ([`crate::header`]); a raw string may still hold any character, and the caller decides.
pub fn var_string(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        Value::Bool(true) => Cow::Borrowed("true"),
        Value::Bool(false) => Cow::Borrowed("false"),
        Value::Number(n) => Cow::Owned(n.to_string()),
        Value::Array(a) if a.iter().all(|e| !e.is_array() && !e.is_object()) => {
            let mut out = String::new();
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&var_string(e));
            }
            Cow::Owned(out)
        }
        Value::Array(_) | Value::Object(_) => {
            let json = v.to_string();
            // DEL can only be inside a string here; `\u007f` is the same string in JSON.
            if json.contains('\u{7f}') {
                Cow::Owned(json.replace('\u{7f}', "\\u007f"))
            } else {
                Cow::Owned(json)
            }
        }
    }
}

/// Operator of a [`ClaimRule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOp {
    /// The claim (a scalar) equals the value.
    Eq,
    /// The claim is present, a scalar, and differs from the value.
    Ne,
    /// The claim (a scalar) equals one of the values.
    In,
    /// The claim (an array, or a space-separated string such as `scope`) contains at least
    /// one of the values.
    Any,
    /// The claim contains every value.
    All,
    /// The claim (a number) is greater than the value.
    Gt,
    /// The claim (a number) is less than the value.
    Lt,
}

impl ClaimOp {
    fn name(self) -> &'static str {
        match self {
            ClaimOp::Eq => "eq",
            ClaimOp::Ne => "ne",
            ClaimOp::In => "in",
            ClaimOp::Any => "any",
            ClaimOp::All => "all",
            ClaimOp::Gt => "gt",
            ClaimOp::Lt => "lt",
        }
    }
}

/// A parsed literal number: integers compare exactly, others as `f64`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn parse(s: &str) -> Option<Num> {
        if let Ok(i) = s.parse::<i128>() {
            return Some(Num::Int(i));
        }
        // Only JSON-style numbers; Rust would also accept "inf", "NaN", "+1".
        let json_like = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'e' | b'E' | b'+'))
            && s.bytes().any(|b| b.is_ascii_digit());
        let f: f64 = if json_like {
            s.parse().ok()?
        } else {
            return None;
        };
        f.is_finite().then_some(Num::Float(f))
    }

    fn of(n: &serde_json::Number) -> Option<Num> {
        if let Some(i) = n.as_i64() {
            Some(Num::Int(i128::from(i)))
        } else if let Some(u) = n.as_u64() {
            Some(Num::Int(i128::from(u)))
        } else {
            n.as_f64().map(Num::Float)
        }
    }

    fn cmp(self, other: Num) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

#[derive(Debug, Clone)]
struct Literal {
    text: String,
    num: Option<Num>,
}

impl Literal {
    /// Whether a scalar claim value equals this literal: strings by exact text, booleans by
    /// `true`/`false`, numbers numerically. `null`, arrays and objects never match.
    fn matches(&self, v: &Value) -> bool {
        match v {
            Value::String(s) => *s == self.text,
            Value::Bool(b) => self.text == if *b { "true" } else { "false" },
            Value::Number(n) => match (Num::of(n), self.num) {
                (Some(a), Some(b)) => a.cmp(b) == Some(std::cmp::Ordering::Equal),
                _ => false,
            },
            _ => false,
        }
    }
}

/// One `auth_jwt_require_claim <path> <op> <value...>` rule.
///
/// Paths are dotted: `realm_access.roles` descends into objects. Write a literal `.` in a
/// name as `\.` and a literal `\` as `\\` (`https://example\.com/roles`). A missing claim
/// fails every operator, `ne` included.
#[derive(Debug, Clone)]
pub struct ClaimRule {
    path: Vec<String>,
    op: ClaimOp,
    values: Vec<Literal>,
    source_path: String,
}

impl fmt::Display for ClaimRule {
    /// `path op` (values are omitted: they may be sensitive and are in the config anyway).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.source_path, self.op.name())
    }
}

/// Splits a dotted claim path with `\.` and `\\` escapes.
pub(crate) fn parse_path(path: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('.' | '\\')) => cur.push(e),
                _ => {
                    return Err(format!(
                        "claim path \"{path}\": \"\\\" must be followed by \".\" or \"\\\""
                    ))
                }
            },
            '.' => {
                if cur.is_empty() {
                    return Err(format!("claim path \"{path}\" has an empty segment"));
                }
                out.push(std::mem::take(&mut cur));
            }
            c => cur.push(c),
        }
    }
    if cur.is_empty() {
        return Err(format!("claim path \"{path}\" has an empty segment"));
    }
    out.push(cur);
    Ok(out)
}

impl ClaimRule {
    /// Parses a rule. `eq`, `ne`, `gt`, `lt` take exactly one value (`gt`/`lt` a number);
    /// `in`, `any`, `all` one or more.
    pub fn parse(path: &str, op: &str, values: &[&str]) -> Result<ClaimRule, String> {
        let segments = parse_path(path)?;
        let op = match op {
            "eq" => ClaimOp::Eq,
            "ne" => ClaimOp::Ne,
            "in" => ClaimOp::In,
            "any" => ClaimOp::Any,
            "all" => ClaimOp::All,
            "gt" => ClaimOp::Gt,
            "lt" => ClaimOp::Lt,
            other => {
                return Err(format!(
                    "unknown claim operator \"{other}\" (use eq, ne, in, any, all, gt, lt)"
                ))
            }
        };
        match op {
            ClaimOp::Eq | ClaimOp::Ne | ClaimOp::Gt | ClaimOp::Lt if values.len() != 1 => {
                return Err(format!(
                    "operator \"{}\" takes exactly one value",
                    op.name()
                ))
            }
            _ if values.is_empty() => {
                return Err(format!(
                    "operator \"{}\" needs at least one value",
                    op.name()
                ))
            }
            _ => {}
        }
        let values: Vec<Literal> = values
            .iter()
            .map(|s| Literal {
                text: (*s).to_owned(),
                num: Num::parse(s),
            })
            .collect();
        if matches!(op, ClaimOp::Gt | ClaimOp::Lt) && values.iter().any(|l| l.num.is_none()) {
            return Err(format!(
                "operator \"{}\" needs a number, not \"{}\"",
                op.name(),
                values.first().map(|l| l.text.as_str()).unwrap_or("")
            ));
        }
        Ok(ClaimRule {
            path: segments,
            op,
            values,
            source_path: path.to_owned(),
        })
    }

    /// The path segments.
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// The operator.
    pub fn op(&self) -> ClaimOp {
        self.op
    }

    /// Whether the rule holds for `v`.
    pub fn check(&self, v: &Verified) -> bool {
        let Some(claim) = v.claim_path(&self.path) else {
            return false;
        };
        let scalar = !matches!(claim, Value::Array(_) | Value::Object(_) | Value::Null);
        match self.op {
            ClaimOp::Eq => scalar && self.values.iter().all(|l| l.matches(claim)),
            ClaimOp::Ne => scalar && !self.values.iter().any(|l| l.matches(claim)),
            ClaimOp::In => scalar && self.values.iter().any(|l| l.matches(claim)),
            ClaimOp::Any => self.values.iter().any(|l| contains(claim, l)),
            ClaimOp::All => self.values.iter().all(|l| contains(claim, l)),
            ClaimOp::Gt | ClaimOp::Lt => {
                let (Value::Number(n), Some(Literal { num: Some(b), .. })) =
                    (claim, self.values.first())
                else {
                    return false;
                };
                let want = if self.op == ClaimOp::Gt {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Less
                };
                Num::of(n).and_then(|a| a.cmp(*b)) == Some(want)
            }
        }
    }
}

/// Whether a claim taken as a set contains `lit`: arrays by element, strings split on
/// spaces (OAuth `scope`), other scalars as a one-element set.
fn contains(claim: &Value, lit: &Literal) -> bool {
    match claim {
        Value::Array(a) => a.iter().any(|e| lit.matches(e)),
        Value::String(s) => s.split(' ').any(|w| !w.is_empty() && w == lit.text),
        Value::Object(_) | Value::Null => false,
        other => lit.matches(other),
    }
}
