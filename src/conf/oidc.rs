//! Browser sign-in: the `oidc_provider name { ... }` block and `auth_oidc`.

use core::ffi::{c_char, c_void};
use core::ptr;

use gateway_core::parse::{parse_duration_ms, parse_zone};
use nginx_sys::{ngx_command_t, ngx_conf_t, ngx_shm_zone_t};
use ngx::core::{Pool, NGX_CONF_ERROR, NGX_CONF_OK};

use super::util::{arg_str, args, duplicate, full_path, invalid, name};
use super::MainConf;
use crate::http::jwks::{CurrentCache, Remote};

/// How the gateway authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the id and secret.
    Basic,
    /// `client_secret_post`: the id and secret in the form body.
    Post,
    /// `client_secret_jwt`: an assertion signed with the secret (HS256).
    SecretJwt,
    /// `private_key_jwt`: an assertion signed with a private key of the client.
    PrivateKeyJwt,
    /// A public client (no secret): PKCE alone.
    None,
}

/// One `oidc_provider` block.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub client_auth: ClientAuth,
    /// The signer of client assertions (`client_secret_jwt`, `private_key_jwt`) and its kid.
    pub assertion_signer: Option<std::sync::Arc<gateway_core::jwt::sign::Signer>>,
    pub assertion_kid: Option<String>,
    /// The discovery document (`discovery_request`) and the key set (`keys_request`),
    /// through the module's remote-key machinery.
    pub remote: Remote,
    pub current: CurrentCache,
    pub token_request: String,
    pub redirect_uri: String,
    pub logout_uri: Option<String>,
    pub post_logout_uri: Option<String>,
    pub scope: String,
    /// Seconds.
    pub session_timeout: u64,
    pub session_idle_timeout: u64,
    pub refresh_before: u64,
    pub cookie_name: String,
    /// `__Host-` + cookie_name: the session cookie's name on https (made once here).
    pub host_cookie_name: String,
    pub pass_access_token: bool,
    pub zone: *mut ngx_shm_zone_t,
    /// `session_store redis://...`: sessions shared by the nodes through Redis.
    pub store: Option<crate::http::redis::Target>,
}

impl Provider {
    /// The name of the cookie that binds a login's `state` to the browser.
    pub fn state_cookie(&self) -> String {
        format!("{}_state", self.cookie_name)
    }
}

fn new_provider(name: &str) -> Provider {
    Provider {
        name: name.to_string(),
        issuer: String::new(),
        client_id: String::new(),
        client_secret: None,
        client_auth: ClientAuth::Basic,
        assertion_signer: None,
        assertion_kid: None,
        remote: Remote {
            uri: String::new(),
            discovery: None,
            allow_http: false,
            timing: gateway_core::jwks::Timing::default(),
            unavailable: 500,
        },
        current: CurrentCache(Default::default()),
        token_request: String::new(),
        redirect_uri: String::new(),
        logout_uri: None,
        post_logout_uri: None,
        scope: "openid".into(),
        session_timeout: 8 * 3600,
        session_idle_timeout: 3600,
        refresh_before: 30,
        cookie_name: "gw_session".into(),
        host_cookie_name: String::new(),
        pass_access_token: false,
        zone: ptr::null_mut(),
        store: None,
    }
}

/// `oidc_provider name { ... }`
pub fn set_provider(cf: &mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), String> {
    let pname = arg_str(&args(cf)[1])?.to_string();
    if mcf.oidc.iter().any(|p| unsafe { (**p).name == pname }) {
        return Err(format!("duplicate oidc_provider \"{pname}\""));
    }
    // SAFETY: `cf.pool` is the configuration pool; the provider is dropped with it.
    let pool = unsafe { Pool::from_ngx_pool(cf.pool) };
    let p = pool.allocate(new_provider(&pname));
    if p.is_null() {
        return Err("out of memory".into());
    }
    let mut zone_arg: Option<String> = None;
    let mut block = Block {
        provider: p,
        zone: &mut zone_arg,
        error: None,
    };
    // SAFETY: the block is parsed with our handler, then the configuration is restored.
    let rv = unsafe {
        let saved = *cf;
        cf.handler = Some(block_directive);
        cf.handler_conf = (&mut block as *mut Block).cast();
        let rv = nginx_sys::ngx_conf_parse(cf, ptr::null_mut());
        *cf = saved;
        rv
    };
    if rv != NGX_CONF_OK {
        return Err(block
            .error
            .unwrap_or_else(|| "invalid oidc_provider block".into()));
    }
    // SAFETY: allocated above, in the configuration pool.
    let pr = unsafe { &mut *p };
    for (what, missing) in [
        ("issuer", pr.issuer.is_empty()),
        ("client_id", pr.client_id.is_empty()),
        ("discovery_request", pr.remote.discovery.is_none()),
        ("keys_request", pr.remote.uri.is_empty()),
        ("token_request", pr.token_request.is_empty()),
        ("redirect_uri", pr.redirect_uri.is_empty()),
    ] {
        if missing {
            return Err(format!("oidc_provider \"{pname}\" needs \"{what}\""));
        }
    }
    // The fetched documents are kept per URI: two providers behind one location would read
    // each other's discovery document and keys.
    let mcf0 = <crate::http::GatewayModule as ngx::http::HttpModuleMainConf>::main_conf(cf)
        .ok_or("no http main conf")?;
    for other in &mcf0.oidc {
        // SAFETY: providers live in the configuration pool.
        let o = unsafe { &**other };
        for (what, mine, theirs) in [
            (
                "discovery_request",
                pr.remote.discovery.clone(),
                o.remote.discovery.clone(),
            ),
            (
                "keys_request",
                Some(pr.remote.uri.clone()),
                Some(o.remote.uri.clone()),
            ),
        ] {
            if mine.is_some() && mine == theirs {
                return Err(format!(
                    "oidc_provider \"{pname}\": {what} \"{}\" is used by oidc_provider \"{}\" too; give each provider its own locations",
                    mine.unwrap_or_default(),
                    o.name
                ));
            }
        }
    }
    match (pr.client_auth, pr.client_secret.as_deref()) {
        (ClientAuth::PrivateKeyJwt, _) => {}
        (ClientAuth::SecretJwt, Some(secret)) => {
            let signer = gateway_core::jwt::sign::Signer::hmac(
                gateway_core::jwt::Alg::HS256,
                secret.as_bytes(),
            )
            .map_err(|e| e.to_string())?;
            pr.assertion_signer = Some(std::sync::Arc::new(signer));
        }
        (_, None) => pr.client_auth = ClientAuth::None,
        _ => {}
    }
    pr.host_cookie_name = format!("__Host-{}", pr.cookie_name);
    if !pr.scope.split(' ').any(|s| s == "openid") {
        return Err(format!(
            "oidc_provider \"{pname}\": \"scope\" must include \"openid\""
        ));
    }
    let zone = zone_arg.unwrap_or_else(|| format!("oidc_{pname}:4m"));
    let (zname, size) = parse_zone(zone.as_bytes(), true).map_err(|e| format!("{e}"))?;
    let size = size.unwrap_or(0).max(64 * 1024);
    pr.zone = crate::http::oidc::add_zone(cf, &String::from_utf8_lossy(zname), size, p)?;
    super::uses_jwks_zone(cf, pr.remote.uri.clone())?;
    if let Some(d) = pr.remote.discovery.clone() {
        super::uses_jwks_zone(cf, d)?;
    }
    let mcf = <crate::http::GatewayModule as ngx::http::HttpModuleMainConf>::main_conf_mut(cf)
        .ok_or("no http main conf")?;
    // The callback's code and state are credentials of a login under way: redacted from the
    // logged request line and the record's `query`, as access tokens are.
    for arg in ["code", "state"] {
        if !mcf
            .credentials
            .redact_args
            .iter()
            .any(|a| a == arg.as_bytes())
        {
            mcf.credentials.redact_args.push(arg.as_bytes().to_vec());
        }
    }
    mcf.oidc.push(p);
    Ok(())
}

struct Block<'a> {
    provider: *mut Provider,
    zone: &'a mut Option<String>,
    error: Option<String>,
}

/// Handler of the directives inside an `oidc_provider` block.
unsafe extern "C" fn block_directive(
    cf: *mut ngx_conf_t,
    _dummy: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    crate::http::guard_conf(NGX_CONF_ERROR, || {
        // SAFETY: `conf` is the Block set by `set_provider` for this parse.
        let (cf, block) = unsafe { (&mut *cf, &mut *conf.cast::<Block>()) };
        // SAFETY: the provider lives in the configuration pool.
        let p = unsafe { &mut *block.provider };
        match inner(cf, p, block.zone) {
            Ok(()) => NGX_CONF_OK,
            Err(e) => {
                gw_conf_err!(cf, "{}", e);
                block.error = Some(e);
                NGX_CONF_ERROR
            }
        }
    })
}

fn one(cf: &ngx_conf_t) -> Result<String, String> {
    let a = args(cf);
    if a.len() != 2 {
        return Err(format!(
            "invalid number of arguments in \"{}\" of oidc_provider",
            name(cf)
        ));
    }
    Ok(arg_str(&a[1])?.to_string())
}

fn local_uri(cf: &ngx_conf_t) -> Result<String, String> {
    let v = one(cf)?;
    if !v.starts_with('/') || v.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'?') {
        return Err(invalid(
            cf,
            &v,
            "a local path starting with \"/\" is expected",
        ));
    }
    Ok(v)
}

fn seconds(cf: &ngx_conf_t) -> Result<u64, String> {
    let v = one(cf)?;
    let ms = parse_duration_ms(&v).map_err(|e| invalid(cf, &v, &e.to_string()))?;
    Ok(ms / 1000)
}

/// `session_store redis[s]://... [password_file=path | password_env=NAME] [tls_ca=path]
/// [tls_name=name] [tls_verify=on|off] [tls_cert=path tls_key=path]`.
fn session_store(
    cf: &mut ngx_conf_t,
    provider: &str,
) -> Result<crate::http::redis::Target, String> {
    use super::ratelimit::{password_from_env, password_from_file, tls_context, SYSTEM_CA_FILE};
    let a: Vec<String> = args(cf)
        .iter()
        .map(|v| arg_str(v).map(str::to_string))
        .collect::<Result<_, _>>()?;
    let Some(v) = a.get(1) else {
        return Err(format!(
            "invalid number of arguments in \"session_store\" of oidc_provider \"{provider}\""
        ));
    };
    let mut url = gateway_core::ratelimit::sync::parse_redis_url(v).map_err(|e| {
        // Not the value itself: it may hold a password.
        format!("invalid \"session_store\" in oidc_provider \"{provider}\": {e}")
    })?;
    if url.topology != gateway_core::ratelimit::sync::Topology::Direct {
        return Err(format!(
            "oidc_provider \"{provider}\": \"session_store\" speaks to one server only (Sentinel and Cluster are for rate_limit_zone sync= so far)"
        ));
    }
    let (mut ca, mut tname, mut verify, mut cert, mut key) = (None, None, true, None, None);
    let mut tls_params = false;
    for s in &a[2..] {
        let (k, val) = s.split_once('=').unwrap_or((s.as_str(), ""));
        match (k, val) {
            ("password_file", p) if !p.is_empty() => {
                let pw = password_from_file(cf, p.as_bytes(), "password_file")?;
                url = url.with_password(pw).map_err(|e| {
                    format!("oidc_provider \"{provider}\": \"password_file\" given and {e}")
                })?;
            }
            ("password_env", p) if !p.is_empty() => {
                let pw = password_from_env(p, "password_env")?;
                url = url.with_password(pw).map_err(|e| {
                    format!("oidc_provider \"{provider}\": \"password_env\" given and {e}")
                })?;
            }
            ("tls_ca", p) if !p.is_empty() => (ca, tls_params) = (Some(p.to_string()), true),
            ("tls_name", p) if !p.is_empty() => (tname, tls_params) = (Some(p.to_string()), true),
            ("tls_cert", p) if !p.is_empty() => (cert, tls_params) = (Some(p.to_string()), true),
            ("tls_key", p) if !p.is_empty() => (key, tls_params) = (Some(p.to_string()), true),
            ("tls_verify", "on") => verify = true,
            ("tls_verify", "off") => (verify, tls_params) = (false, true),
            _ => {
                return Err(format!(
                    "invalid parameter \"{k}\" of \"session_store\" in oidc_provider \"{provider}\""
                ))
            }
        }
    }
    if tls_params && !url.tls {
        return Err(format!(
            "oidc_provider \"{provider}\": the \"tls_*\" parameters of \"session_store\" need \"rediss://\""
        ));
    }
    if cert.is_some() != key.is_some() {
        return Err(format!(
            "oidc_provider \"{provider}\": \"tls_cert\" and \"tls_key\" go together"
        ));
    }
    let tls = if url.tls {
        Some(tls_context(
            cf,
            &format!("oidc_provider \"{provider}\" session_store"),
            "",
            tname.unwrap_or_else(|| url.host.clone()),
            verify,
            ca.as_deref().unwrap_or(SYSTEM_CA_FILE),
            cert.zip(key),
        )?)
    } else {
        None
    };
    let (sockaddr, socklen, name) = super::ratelimit::resolve(cf, &url.addr)?;
    Ok(crate::http::redis::Target {
        url,
        sockaddr,
        socklen,
        name,
        timeout_ms: 1000,
        tls,
    })
}

fn inner(cf: &mut ngx_conf_t, p: &mut Provider, zone: &mut Option<String>) -> Result<(), String> {
    let dname = name(cf);
    match dname.as_str() {
        "issuer" => {
            let v = one(cf)?;
            if !(v.starts_with("https://") || v.starts_with("http://")) {
                return Err(invalid(cf, &v, "the issuer is an http(s) URL"));
            }
            p.issuer = v;
        }
        "client_id" => p.client_id = one(cf)?,
        "client_secret" => p.client_secret = Some(one(cf)?),
        "client_secret_file" => {
            let a = args(cf).to_vec();
            if a.len() != 2 {
                return Err("invalid number of arguments in \"client_secret_file\"".into());
            }
            let path = full_path(cf, &a[1])?;
            let s = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read \"{path}\": {e}"))?;
            let s = s.trim().to_string();
            if s.is_empty() {
                return Err(format!("\"{path}\" is empty"));
            }
            p.client_secret = Some(s);
        }
        "client_auth" => {
            let a = args(cf).to_vec();
            let kind = arg_str(&a[1])?.to_string();
            p.client_auth = match kind.as_str() {
                "basic" | "client_secret_basic" => ClientAuth::Basic,
                "post" | "client_secret_post" => ClientAuth::Post,
                "client_secret_jwt" => ClientAuth::SecretJwt,
                "private_key_jwt" => ClientAuth::PrivateKeyJwt,
                v => return Err(invalid(
                    cf,
                    v,
                    "it must be \"basic\", \"post\", \"client_secret_jwt\" or \"private_key_jwt\"",
                )),
            };
            let (mut key, mut alg, mut kid) = (None, None, None);
            for v in &a[2..] {
                let s = arg_str(v)?;
                match s.split_once('=') {
                    Some(("key", _)) if p.client_auth == ClientAuth::PrivateKeyJwt => {
                        let mut path = *v;
                        // SAFETY: skips the 4-byte ASCII prefix "key=" of this argument.
                        path.data = unsafe { path.data.add(4) };
                        path.len -= 4;
                        key = Some(full_path(cf, &path)?);
                    }
                    Some(("alg", n)) => {
                        alg = Some(gateway_core::jwt::Alg::from_name(n).ok_or_else(|| {
                            invalid(cf, s, "an algorithm name such as RS256 or ES256")
                        })?)
                    }
                    Some(("kid", k)) if !k.is_empty() => kid = Some(k.to_string()),
                    _ => return Err(invalid(cf, s, "parameters are key=, alg= and kid=")),
                }
            }
            if p.client_auth == ClientAuth::PrivateKeyJwt {
                let path = key.ok_or("\"client_auth private_key_jwt\" needs key=PATH")?;
                let bytes =
                    std::fs::read(&path).map_err(|e| format!("cannot read \"{path}\": {e}"))?;
                let alg = alg.unwrap_or(gateway_core::jwt::Alg::RS256);
                let signer = gateway_core::jwt::sign::Signer::from_file_bytes(alg, &bytes)
                    .map_err(|e| format!("invalid private key \"{path}\": {e}"))?;
                p.assertion_signer = Some(std::sync::Arc::new(signer));
            }
            p.assertion_kid = kid;
        }
        "discovery_request" => p.remote.discovery = Some(local_uri(cf)?),
        "keys_request" => p.remote.uri = local_uri(cf)?,
        "token_request" => p.token_request = local_uri(cf)?,
        "redirect_uri" => p.redirect_uri = local_uri(cf)?,
        "logout_uri" => p.logout_uri = Some(local_uri(cf)?),
        "post_logout_uri" => {
            let v = one(cf)?;
            if !(v.starts_with("https://") || v.starts_with("http://") || v.starts_with('/')) {
                return Err(invalid(cf, &v, "an http(s) URL or a path is expected"));
            }
            p.post_logout_uri = Some(v);
        }
        "scope" => p.scope = one(cf)?,
        "session_zone" => *zone = Some(one(cf)?),
        "session_store" => p.store = Some(session_store(cf, &p.name)?),
        "session_timeout" => p.session_timeout = seconds(cf)?.max(60),
        "session_idle_timeout" => p.session_idle_timeout = seconds(cf)?.max(60),
        "refresh_before" => p.refresh_before = seconds(cf)?,
        "cookie_name" => {
            let v = one(cf)?;
            if v.is_empty()
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(invalid(cf, &v, "letters, digits, \"_\" and \"-\" only"));
            }
            p.cookie_name = v;
        }
        "pass_access_token" => p.pass_access_token = super::on_off(cf)?,
        "allow_http" => p.remote.allow_http = true,
        other => {
            return Err(format!(
                "unknown directive \"{other}\" in oidc_provider \"{}\"",
                p.name
            ))
        }
    }
    Ok(())
}

/// `auth_oidc name | off`
pub fn set_auth_oidc(
    cf: &mut ngx_conf_t,
    slot: &mut Option<Option<*const Provider>>,
) -> Result<(), String> {
    if slot.is_some() {
        return Err(duplicate(cf));
    }
    let v = arg_str(&args(cf)[1])?.to_string();
    if v == "off" {
        *slot = Some(None);
        return Ok(());
    }
    let mcf = <crate::http::GatewayModule as ngx::http::HttpModuleMainConf>::main_conf(cf)
        .ok_or("no http main conf")?;
    // SAFETY: providers live in the configuration pool.
    let p = mcf
        .oidc
        .iter()
        .copied()
        .find(|p| unsafe { (**p).name == v })
        .ok_or_else(|| {
            format!("unknown oidc_provider \"{v}\" (declare it with \"oidc_provider\" before use)")
        })?;
    *slot = Some(Some(p.cast_const()));
    Ok(())
}
