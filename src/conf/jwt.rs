//! `auth_jwt*` directives: parsed and checked when the configuration loads, turned into one
//! immutable [`JwtRuntime`] per location when blocks are merged.

use std::rc::Rc;
use std::sync::Arc;

use gateway_core::jwt::{Alg, AlgSet, ClaimRule, KeySet, Policy};
use nginx_sys::{ngx_conf_t, ngx_str_t};

use super::util::{arg_str, args, compile_cv, duplicate, full_path, invalid, kv, ComplexValue};

/// `auth_jwt_require $value ... [error=401|403]`: all values must be non-empty and not "0".
#[derive(Clone, Debug)]
pub struct Requirement {
    pub values: Vec<ComplexValue>,
    pub status: u16,
}

/// Where a directive was written (file name and line), for errors found when blocks are merged:
/// nginx would otherwise point at the end of the `http` block.
#[derive(Clone, Copy, Debug)]
pub struct ConfPos {
    /// The configuration file's name (kept by nginx for the cycle's lifetime).
    pub file: ngx_str_t,
    pub line: usize,
}

impl std::fmt::Display for ConfPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

impl ConfPos {
    pub fn of(cf: &ngx_conf_t) -> Option<ConfPos> {
        // SAFETY: while a directive is parsed, `conf_file` is the file being read.
        let f = unsafe { cf.conf_file.as_ref()? };
        Some(ConfPos {
            file: f.file.name,
            line: f.line,
        })
    }
}

/// A merge-time configuration error: the message, and the directive it is about.
#[derive(Debug)]
pub struct MergeError {
    pub msg: String,
    pub at: Option<ConfPos>,
}

/// `auth_jwt` as written in one block.
#[derive(Clone, Debug)]
pub enum AuthJwt {
    Off,
    On {
        realm: ComplexValue,
        token: Option<ComplexValue>,
        at: Option<ConfPos>,
    },
}

/// The `auth_jwt*` settings of one block, before merging (`None` = not set here).
#[derive(Default, Debug)]
pub struct JwtConf {
    pub auth: Option<AuthJwt>,
    pub keys: Option<Arc<KeySet>>,
    pub leeway: Option<u32>,
    pub requirements: Option<Vec<Requirement>>,
    pub algorithms: Option<AlgSet>,
    pub issuers: Option<Vec<String>>,
    pub audiences: Option<Vec<String>>,
    pub typ: Option<String>,
    pub require_exp: Option<bool>,
    pub claim_rules: Option<Vec<(ClaimRule, u16)>>,
    pub max_size: Option<usize>,
    /// `auth_jwt_key_request uri`.
    pub key_request: Option<String>,
    /// `auth_jwt_oidc_discovery uri [allow_http]`.
    pub discovery: Option<(String, bool)>,
    pub key_cache: Option<u64>,
    pub key_refresh: Option<u64>,
    pub key_max_stale: Option<u64>,
    pub key_unavailable: Option<u16>,
    /// Built by `merge` for a location where `auth_jwt` is on.
    pub runtime: Option<Rc<JwtRuntime>>,
}

/// Everything the request path needs for one location, built once.
#[derive(Debug)]
pub struct JwtRuntime {
    pub realm: ComplexValue,
    pub token: Option<ComplexValue>,
    pub keys: Arc<KeySet>,
    pub policy: Policy,
    pub allowed: AlgSet,
    pub requirements: Vec<Requirement>,
    /// Answer for each claim rule (same order as `policy.claim_rules`).
    pub rule_status: Vec<u16>,
    /// `auth_jwt_key_request`: keys fetched by subrequest, on top of `keys`.
    pub remote: Option<crate::http::jwks::Remote>,
    /// This worker's merge of `keys` and the fetched set.
    pub current: crate::http::jwks::CurrentCache,
}

fn inherit<T: Clone>(v: &mut Option<T>, prev: &Option<T>) {
    if v.is_none() {
        v.clone_from(prev);
    }
}

impl JwtConf {
    /// Inherits unset values and builds the runtime. `Err` is an `[emerg]` message, with the
    /// position of the `auth_jwt` directive it is about. `location` names the block being merged
    /// (empty for `http` and `server`).
    pub fn merge(&mut self, prev: &JwtConf, location: &str) -> Result<(), MergeError> {
        // Nothing set in this block (e.g. an `if` block or a nested location): share the
        // enclosing block's runtime, so a request moving into it keeps its verified outcome.
        let untouched = self.auth.is_none()
            && self.keys.is_none()
            && self.leeway.is_none()
            && self.requirements.is_none()
            && self.algorithms.is_none()
            && self.issuers.is_none()
            && self.audiences.is_none()
            && self.typ.is_none()
            && self.require_exp.is_none()
            && self.claim_rules.is_none()
            && self.max_size.is_none()
            && self.key_request.is_none()
            && self.discovery.is_none()
            && self.key_cache.is_none()
            && self.key_refresh.is_none()
            && self.key_max_stale.is_none()
            && self.key_unavailable.is_none();
        inherit(&mut self.auth, &prev.auth);
        inherit(&mut self.keys, &prev.keys);
        inherit(&mut self.leeway, &prev.leeway);
        inherit(&mut self.requirements, &prev.requirements);
        inherit(&mut self.algorithms, &prev.algorithms);
        inherit(&mut self.issuers, &prev.issuers);
        inherit(&mut self.audiences, &prev.audiences);
        inherit(&mut self.typ, &prev.typ);
        inherit(&mut self.require_exp, &prev.require_exp);
        inherit(&mut self.claim_rules, &prev.claim_rules);
        inherit(&mut self.max_size, &prev.max_size);
        inherit(&mut self.key_request, &prev.key_request);
        inherit(&mut self.discovery, &prev.discovery);
        inherit(&mut self.key_cache, &prev.key_cache);
        inherit(&mut self.key_refresh, &prev.key_refresh);
        inherit(&mut self.key_max_stale, &prev.key_max_stale);
        inherit(&mut self.key_unavailable, &prev.key_unavailable);

        self.runtime = None;
        if untouched && prev.runtime.is_some() {
            self.runtime.clone_from(&prev.runtime);
            return Ok(());
        }
        let Some(AuthJwt::On { realm, token, at }) = self.auth.clone() else {
            return Ok(());
        };
        let err = |what: &str| {
            let place = if location.is_empty() {
                String::new()
            } else {
                format!(" in location \"{location}\"")
            };
            Err(MergeError {
                msg: format!("\"auth_jwt\" is on{place} but {what}"),
                at,
            })
        };
        if self.discovery.is_some() && self.key_request.is_none() {
            return err("\"auth_jwt_oidc_discovery\" needs \"auth_jwt_key_request\" (a location that proxy_passes to $jwt_jwks_uri)");
        }
        let remote = self.key_request.clone().map(|uri| {
            let d = gateway_core::jwks::Timing::default();
            crate::http::jwks::Remote {
                uri,
                discovery: self.discovery.as_ref().map(|(d, _)| d.clone()),
                allow_http: self.discovery.as_ref().is_some_and(|(_, allow)| *allow),
                timing: gateway_core::jwks::Timing {
                    cache_ms: self.key_cache.unwrap_or(d.cache_ms),
                    refresh_ms: self.key_refresh.unwrap_or(d.refresh_ms),
                    max_stale_ms: self.key_max_stale.unwrap_or(d.max_stale_ms),
                },
                unavailable: self.key_unavailable.unwrap_or(500),
            }
        });
        let keys =
            match (self.keys.clone(), &remote) {
                (Some(k), _) => k,
                (None, Some(_)) => Arc::new(KeySet::new()),
                (None, None) => return err(
                    "no keys are configured: add \"auth_jwt_key_file\" or \"auth_jwt_key_request\"",
                ),
            };
        let rules = self.claim_rules.clone().unwrap_or_default();
        let policy = Policy {
            algorithms: self.algorithms,
            issuers: self.issuers.clone().unwrap_or_default(),
            audiences: self.audiences.clone().unwrap_or_default(),
            typ: self.typ.clone(),
            leeway: self.leeway.unwrap_or(0),
            require_exp: self.require_exp.unwrap_or(false),
            max_token_size: self
                .max_size
                .unwrap_or(gateway_core::jwt::DEFAULT_MAX_TOKEN_SIZE),
            claim_rules: rules.iter().map(|(r, _)| r.clone()).collect(),
        };
        let allowed = policy.effective_algs(&keys);
        if allowed.is_empty() && remote.is_none() {
            return err(
                "\"auth_jwt_algorithms\" allows no algorithm that the configured keys support",
            );
        }
        self.runtime = Some(Rc::new(JwtRuntime {
            realm,
            token,
            keys,
            policy,
            allowed,
            requirements: self.requirements.clone().unwrap_or_default(),
            rule_status: rules.iter().map(|(_, s)| *s).collect(),
            remote,
            current: Default::default(),
        }));
        Ok(())
    }
}

fn strs(cf: &ngx_conf_t) -> Result<Vec<&str>, String> {
    args(cf).iter().skip(1).map(arg_str).collect()
}

fn error_status(cf: &ngx_conf_t, a: &str) -> Result<u16, String> {
    match a {
        "error=401" => Ok(401),
        "error=403" => Ok(403),
        _ => Err(invalid(cf, a, "must be \"error=401\" or \"error=403\"")),
    }
}

/// `auth_jwt "realm" [token=$variable] | off`
pub fn set_auth_jwt(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    if c.auth.is_some() {
        return Err(duplicate(cf));
    }
    let a = args(cf).to_vec();
    let first = arg_str(&a[1])?;
    if first == "off" && a.len() == 2 {
        c.auth = Some(AuthJwt::Off);
        return Ok(());
    }
    let realm = compile_cv(cf, &a[1])?;
    let mut token = None;
    if let Some(t) = a.get(2) {
        let s = arg_str(t)?;
        match kv(s) {
            Some(("token", v)) if v.starts_with('$') => {
                super::log::guard_token_source(cf, v)?;
                let mut value = *t;
                // SAFETY: `token=` is a 6-byte ASCII prefix of this argument.
                value.data = unsafe { value.data.add(6) };
                value.len -= 6;
                token = Some(compile_cv(cf, &value)?);
            }
            _ => return Err(invalid(cf, s, "expected \"token=$variable\"")),
        }
    }
    c.auth = Some(AuthJwt::On {
        realm,
        token,
        at: ConfPos::of(cf),
    });
    Ok(())
}

/// `auth_jwt_key_file file [kid=name]` (may repeat; the keys of all files are used). `kid=`
/// names the keys of the file that have no `kid` of their own (PEM keys never do).
pub fn set_key_file(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    let a = args(cf).to_vec();
    let kid = match a.get(2) {
        None => None,
        Some(k) => match kv(arg_str(k)?) {
            Some(("kid", v)) if !v.is_empty() => Some(v.to_string()),
            _ => return Err(invalid(cf, arg_str(k)?, "expected \"kid=name\"")),
        },
    };
    let path = full_path(cf, &a[1])?;
    let bytes =
        std::fs::read(&path).map_err(|e| format!("cannot read key file \"{path}\": {e}"))?;
    let mut set =
        KeySet::load(&bytes).map_err(|e| format!("invalid key file \"{path}\": {}", e.reason()))?;
    if let Some(kid) = kid {
        set.set_default_kid(&kid);
    }
    let mut keys = c.keys.as_deref().cloned().unwrap_or_else(KeySet::new);
    keys.extend(set);
    c.keys = Some(Arc::new(keys));
    Ok(())
}

/// `auth_jwt_leeway time`
pub fn set_leeway(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    if c.leeway.is_some() {
        return Err(duplicate(cf));
    }
    let v = arg_str(&args(cf)[1])?;
    let ms =
        gateway_core::parse::parse_duration_ms(v).map_err(|e| invalid(cf, v, &e.to_string()))?;
    c.leeway = Some(u32::try_from(ms / 1000).map_err(|_| invalid(cf, v, "too large"))?);
    Ok(())
}

/// `auth_jwt_type signed` (JWE is not supported; `encrypted`/`nested` are refused)
pub fn set_type(cf: &mut ngx_conf_t, _c: &mut JwtConf) -> Result<(), String> {
    match arg_str(&args(cf)[1])? {
        "signed" => Ok(()),
        v @ ("encrypted" | "nested") => {
            Err(invalid(cf, v, "only signed tokens (JWS) are supported"))
        }
        v => Err(invalid(cf, v, "must be \"signed\"")),
    }
}

/// `auth_jwt_require $value ... [error=401|403]`
pub fn set_require(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    let a = args(cf).to_vec();
    let mut values = Vec::new();
    let mut status = 401;
    for (i, v) in a.iter().enumerate().skip(1) {
        let s = arg_str(v)?;
        if s.starts_with("error=") && i == a.len() - 1 {
            status = error_status(cf, s)?;
        } else {
            values.push(compile_cv(cf, v)?);
        }
    }
    if values.is_empty() {
        return Err(format!(
            "\"{}\" needs at least one value",
            super::util::name(cf)
        ));
    }
    c.requirements
        .get_or_insert_with(Vec::new)
        .push(Requirement { values, status });
    Ok(())
}

/// `auth_jwt_algorithms alg ...`
pub fn set_algorithms(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    if c.algorithms.is_some() {
        return Err(duplicate(cf));
    }
    let mut set = AlgSet::EMPTY;
    for s in strs(cf)? {
        let alg = Alg::from_name(s).ok_or_else(|| {
            if s.eq_ignore_ascii_case("none") {
                invalid(cf, s, "unsigned tokens are never accepted")
            } else if let Some(a) = Alg::ALL.iter().find(|a| a.name().eq_ignore_ascii_case(s)) {
                let hint = format!("algorithm names are case-sensitive, use \"{a}\"");
                invalid(cf, s, &hint)
            } else {
                invalid(cf, s, "unknown or unsupported algorithm")
            }
        })?;
        set.insert(alg);
    }
    c.algorithms = Some(set);
    Ok(())
}

/// `auth_jwt_issuer iss ...`
pub fn set_issuer(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    if c.issuers.is_some() {
        return Err(duplicate(cf));
    }
    c.issuers = Some(strs(cf)?.into_iter().map(String::from).collect());
    Ok(())
}

/// `auth_jwt_audience aud ...`
pub fn set_audience(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    if c.audiences.is_some() {
        return Err(duplicate(cf));
    }
    c.audiences = Some(strs(cf)?.into_iter().map(String::from).collect());
    Ok(())
}

/// `auth_jwt_typ type`
pub fn set_typ(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    if c.typ.is_some() {
        return Err(duplicate(cf));
    }
    c.typ = Some(arg_str(&args(cf)[1])?.to_string());
    Ok(())
}

/// `auth_jwt_require_exp on|off`
pub fn set_require_exp(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    if c.require_exp.is_some() {
        return Err(duplicate(cf));
    }
    c.require_exp = Some(match arg_str(&args(cf)[1])? {
        "on" => true,
        "off" => false,
        v => return Err(invalid(cf, v, "it must be \"on\" or \"off\"")),
    });
    Ok(())
}

/// `auth_jwt_require_claim path op value... [error=401|403]`
pub fn set_require_claim(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    let mut s = strs(cf)?;
    let mut status = 403;
    if s.len() > 3 && s[s.len() - 1].starts_with("error=") {
        status = error_status(cf, s[s.len() - 1])?;
        s.pop();
    }
    if s.len() < 3 {
        return Err(format!(
            "invalid number of arguments in \"{}\" directive",
            super::util::name(cf)
        ));
    }
    let rule = ClaimRule::parse(s[0], s[1], &s[2..]).map_err(|e| invalid(cf, s[0], &e))?;
    c.claim_rules
        .get_or_insert_with(Vec::new)
        .push((rule, status));
    Ok(())
}

/// `auth_jwt_max_size size`
pub fn set_max_size(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    if c.max_size.is_some() {
        return Err(duplicate(cf));
    }
    let v = arg_str(&args(cf)[1])?;
    let n = gateway_core::parse::parse_size(v).map_err(|e| invalid(cf, v, &e.to_string()))?;
    if n == 0 {
        return Err(invalid(cf, v, "must be positive"));
    }
    c.max_size = Some(n);
    Ok(())
}

/// `auth_jwt_key_request uri`
pub fn set_key_request(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    if c.key_request.is_some() {
        return Err(duplicate(cf));
    }
    let v = arg_str(&args(cf)[1])?;
    if !v.starts_with('/') || v.contains('$') {
        return Err(invalid(
            cf,
            v,
            "a local URI such as /_jwks is expected (no variables)",
        ));
    }
    c.key_request = Some(v.to_string());
    Ok(())
}

fn time_ms(cf: &ngx_conf_t) -> Result<u64, String> {
    let v = arg_str(&args(cf)[1])?;
    gateway_core::parse::parse_duration_ms(v).map_err(|e| invalid(cf, v, e.hint.unwrap_or("")))
}

/// `auth_jwt_key_cache time`
pub fn set_key_cache(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    if c.key_cache.is_some() {
        return Err(duplicate(cf));
    }
    c.key_cache = Some(time_ms(cf)?);
    Ok(())
}

/// `auth_jwt_key_refresh_interval time`
pub fn set_key_refresh(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    if c.key_refresh.is_some() {
        return Err(duplicate(cf));
    }
    c.key_refresh = Some(time_ms(cf)?);
    Ok(())
}

/// `auth_jwt_key_max_stale time`
pub fn set_key_max_stale(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    if c.key_max_stale.is_some() {
        return Err(duplicate(cf));
    }
    c.key_max_stale = Some(time_ms(cf)?);
    Ok(())
}

/// `auth_jwt_key_unavailable 500|401`
pub fn set_key_unavailable(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    if c.key_unavailable.is_some() {
        return Err(duplicate(cf));
    }
    c.key_unavailable = Some(match arg_str(&args(cf)[1])? {
        "500" => 500,
        "401" => 401,
        v => return Err(invalid(cf, v, "must be 500 or 401")),
    });
    Ok(())
}

/// `auth_jwt_oidc_discovery uri [allow_http]`
pub fn set_discovery(cf: &mut ngx_conf_t, c: &mut JwtConf) -> Result<(), String> {
    if c.discovery.is_some() {
        return Err(duplicate(cf));
    }
    let v = arg_str(&args(cf)[1])?;
    if !v.starts_with('/') || v.contains('$') {
        return Err(invalid(
            cf,
            v,
            "a local URI such as /_oidc is expected (no variables)",
        ));
    }
    let allow_http = match args(cf).get(2).map(arg_str).transpose()? {
        None => false,
        Some("allow_http") => true,
        Some(p) => return Err(invalid(cf, p, "the only parameter is \"allow_http\"")),
    };
    c.discovery = Some((v.to_string(), allow_http));
    Ok(())
}
