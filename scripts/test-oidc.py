#!/usr/bin/env python3
"""Browser sign-in (issue 14), end to end against a real OpenID provider: panva's
oidc-provider (scripts/oidc/provider.js, `npm ci` in scripts/oidc first) and one nginx
(2 workers) with the gateway module as the relying party, driven by a cookie jar that
behaves like a browser's (cookies per host, paths, expiry; Sec-Fetch-* and Accept headers of
a navigation).

    scripts/test-oidc.py NGINX MODULE.so

Standard library only. Everything listens on free loopback ports; files go to
target/oidc-test/ (nginx prefix, logs, provider output). Three providers:
  main     the provider of the main flows and attacks (long token lifetimes)
  short    access tokens of 4 s, refresh tokens of 8 s (absolute): refresh and its end
  foreign  same client, same signing keys, another issuer: its codes must be refused
and gateway servers (one oidc_provider each): `idp` (client_secret_basic), `post`
(client_secret_post, absolute_redirect off), `cjwt` (client_secret_jwt), `pkjwt`
(private_key_jwt with t/keys/rsa2048.key.pem), `public` (no secret), `short`, and `mixup`
(issuer of main, discovery answered by foreign: must never send a browser there).
Each check prints one line; any failure ends with a non-zero exit and the failed checks.
"""
import base64
import html.parser
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse

from testports import free_port  # scripts/testports.py: never the same port twice

NGINX, MODULE = sys.argv[1], os.path.abspath(sys.argv[2])
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ROOT = os.path.join(REPO, "target", "oidc-test")
OIDC_DIR = os.path.join(REPO, "scripts", "oidc")
NODE = os.environ.get("NODE", "node")
SHORT_AT, SHORT_RT, SHORT_BEFORE = 4, 8, 2  # short provider: token lifetimes, refresh_before
FAILED = []
NOTES = []
SECRETS = {}  # value -> what it is: must never appear in a log
CALLBACK_ARGS = {}  # code and state values sent to the callback: redacted in logs (README)


def check(cond, what):
    print(("  ok    " if cond else "  FAIL  ") + what, flush=True)
    if not cond:
        FAILED.append(what)
    return cond


def note(what):
    print("  note  " + what, flush=True)
    NOTES.append(what)


def section(title):
    print(f"\n{title}", flush=True)


def eventually(cond, timeout=2.0):
    """cond() once it holds, or its last value after timeout (provider events are read from
    its output by a thread: they may arrive just after the HTTP answer)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(0.05)


class Stop(Exception):
    """A scenario cannot go on (its failure is already recorded)."""


def need(cond, what):
    if not check(cond, what):
        raise Stop(what)


# --- the provider ----------------------------------------------------------------------------

class Provider:
    def __init__(self, name, gw_ports, *opts):
        self.name = name
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.events = []
        self.lock = threading.Lock()
        self.err = open(os.path.join(ROOT, f"provider-{name}.err"), "w")
        self.out = open(os.path.join(ROOT, f"provider-{name}.out"), "w")
        cmd = [NODE, os.path.join(OIDC_DIR, "provider.js"), str(self.port),
               "--gateway-ports", ",".join(map(str, gw_ports)), *opts]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.err, text=True)
        ready = threading.Event()

        def read():
            for line in self.proc.stdout:
                self.out.write(line)
                self.out.flush()
                if line.startswith("oidc-provider ready"):
                    ready.set()
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                for k in ("access_token", "refresh_token", "id_token"):
                    if ev.get(k):
                        SECRETS[ev[k]] = f"{k} issued by provider {name}"
                with self.lock:
                    self.events.append(ev)
        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(20):
            self.stop()
            with open(self.err.name) as f:
                raise SystemExit(f"provider {name} did not start: {f.read()}")

    def grants(self, grant_type=None, event="grant.success"):
        with self.lock:
            return [e for e in self.events if e.get("event") == event
                    and (grant_type is None or e.get("grant_type") == grant_type)]

    def introspect(self, token):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        auth = base64.b64encode(b"gateway:gateway-secret").decode()
        c.request("POST", "/token/introspection", urllib.parse.urlencode({"token": token}),
                  {"Authorization": f"Basic {auth}",
                   "Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        body = r.read()
        c.close()
        return json.loads(body) if r.status == 200 else {}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# --- nginx with the gateway ------------------------------------------------------------------

class Gateway:
    """One nginx, several server blocks (one per oidc_provider), one echo backend."""

    def __init__(self, providers, ports):
        self.ports = ports
        self.backend = free_port()
        self.prefix = os.path.join(ROOT, "nginx")
        os.makedirs(os.path.join(self.prefix, "logs"))
        os.makedirs(os.path.join(self.prefix, "conf"))
        blocks, servers = [], []
        for name, (prov, client, auth, before, disco) in providers.items():
            port = ports[name]
            secret = {"none": "", "client_secret_jwt": "client_secret gateway-secret-for-client-secret-jwt-0123456789;"}.get(
                auth.split()[0], "client_secret gateway-secret;")
            auth = "" if auth == "none" else f"client_auth {auth};"
            blocks.append(f"""
    oidc_provider {name} {{
        issuer            {prov.issuer};
        client_id         {client};
        {secret}
        {auth}
        discovery_request /_oidc/{name}/discovery;
        keys_request      /_oidc/{name}/keys;
        token_request     /_oidc/{name}/token;
        redirect_uri      /oidc/callback;
        logout_uri        /oidc/logout;
        post_logout_uri   http://127.0.0.1:{port}/signed-out;
        scope             "openid profile email offline_access";
        session_zone      oidc_{name}:1m;
        session_timeout   1h;
        session_idle_timeout 30m;
        cookie_name       gw_session;
        refresh_before    {before};
        pass_access_token on;
        allow_http;
    }}""")
            servers.append(f"""
    server {{
        listen 127.0.0.1:{port} reuseport;
        {"absolute_redirect off;" if name == "post" else ""}
        location = /_oidc/{name}/discovery {{ internal; proxy_pass {disco.issuer}/.well-known/openid-configuration; }}
        location = /_oidc/{name}/keys      {{ internal; proxy_pass $oidc_jwks_uri; }}
        location = /_oidc/{name}/token     {{ internal; proxy_pass $oidc_token_endpoint; subrequest_output_buffer_size 64k; }}
        location = /signed-out      {{ return 200 "signed out\\n"; }}
        location / {{
            auth_oidc {name};
            proxy_set_header X-User $jwt_claim_sub;
            proxy_set_header X-Email $jwt_claim_email;
            add_header X-Worker $pid always;
            proxy_pass http://127.0.0.1:{self.backend};
        }}
    }}""")
        conf = f"""
load_module {MODULE};
worker_processes 2;
daemon off;
master_process on;
error_log logs/error.log info;
pid logs/nginx.pid;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 1024; accept_mutex off; }}
http {{
    access_log logs/access.log combined;
    gateway_log logs/gateway.json;
    gateway_log_fields default query;
{"".join(blocks)}
    server {{
        listen 127.0.0.1:{self.backend};
        access_log off;
        gateway_log off;
        location = /welcome {{
            default_type text/html;
            return 200 "<!DOCTYPE html><html><head><title>Welcome</title></head><body style='font-family:sans-serif;margin:40px'><h1>Signed in</h1><p id=user>user: $http_x_user</p><p id=email>email: $http_x_email</p><p>This page is the upstream behind the gateway; it saw the claims of the ID token.</p><form method=post action=/oidc/logout><button id=signout type=submit>Sign out</button></form></body></html>";
        }}
        location / {{
            return 200 "backend user=[$http_x_user] email=[$http_x_email] authorization=[$http_authorization] uri=[$request_uri]\\n";
        }}
    }}
{"".join(servers)}
}}
"""
        with open(os.path.join(self.prefix, "conf", "nginx.conf"), "w") as f:
            f.write(conf)

    def start(self):
        self.proc = subprocess.Popen([NGINX, "-p", self.prefix + "/", "-c", "conf/nginx.conf"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port = next(iter(self.ports.values()))
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        if self.proc.poll() is not None:
            raise SystemExit(f"nginx did not start: {self.proc.stderr.read().decode(errors='replace')}"
                             f"{self.read('error.log')}")

    def stop(self):
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            FAILED.append("nginx did not stop within 10 s")

    def read(self, name):
        try:
            with open(os.path.join(self.prefix, "logs", name), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def mark(self):
        """Position in error.log, for error_since()."""
        return len(self.read("error.log"))

    def error_since(self, mark):
        return self.read("error.log")[mark:]


# --- a browser: cookie jar, navigation headers -------------------------------------------------

NAV = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
       "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1",
       "User-Agent": "gateway-oidc-test"}


class Response:
    def __init__(self, url, status, headers, body):
        self.url, self.status, self.body = url, status, body
        self.headers = headers  # list of (name, value)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def set_cookies(self):
        return [v for k, v in self.headers if k.lower() == "set-cookie"]

    @property
    def location(self):
        loc = self.header("Location")
        return urllib.parse.urljoin(self.url, loc) if loc is not None else None

    def __repr__(self):
        if self.status in (301, 302, 303, 307, 308):
            return f"{self.status} {self.header('Location')}"
        return f"{self.status} {self.body[:200]!r}"


def parse_set_cookie(sc):
    parts = [p.strip() for p in sc.split(";")]
    name, _, value = parts[0].partition("=")
    attrs = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        attrs[k.strip().lower()] = v.strip()
    return name.strip(), value.strip(), attrs


class Browser:
    def __init__(self, name):
        self.name = name
        self.jar = {}  # (host, path, name) -> value; like a browser's: ports share cookies

    def cookies_for(self, host, path):
        out = []
        for (h, p, n), v in sorted(self.jar.items(), key=lambda kv: -len(kv[0][1])):
            if h == host and (path == p or path.startswith(p.rstrip("/") + "/") or p == "/"):
                out.append(f"{n}={v}")
        return "; ".join(out)

    def cookie(self, name, host="127.0.0.1"):
        for (h, _, n), v in self.jar.items():
            if h == host and n == name:
                return v
        return None

    def set_cookie(self, name, value, path="/", host="127.0.0.1"):
        self.jar[(host, path, name)] = value

    def drop_cookie(self, name, host="127.0.0.1"):
        for key in [k for k in self.jar if k[0] == host and k[2] == name]:
            del self.jar[key]

    def store(self, host, path, resp):
        for sc in resp.set_cookies():
            name, value, attrs = parse_set_cookie(sc)
            if "secure" in attrs:  # a browser drops a Secure cookie set over http
                note(f"{self.name}: Secure cookie {name} set over http ignored, as a browser does")
                continue
            cpath = attrs.get("path") or (path.rsplit("/", 1)[0] or "/")
            expired = False
            if "max-age" in attrs:
                try:
                    expired = int(attrs["max-age"]) <= 0
                except ValueError:
                    pass
            elif "expires" in attrs:
                try:
                    from email.utils import parsedate_to_datetime
                    expired = parsedate_to_datetime(attrs["expires"]).timestamp() < time.time()
                except (TypeError, ValueError):
                    pass
            key = (host, cpath, name)
            if expired:
                self.jar.pop(key, None)
            else:
                self.jar[key] = value

    def request(self, method, url, headers=None, body=None, nav=True, site="none",
                target=None):
        """One request, no redirect followed. target: the raw request target (path) to send
        instead of the URL's, byte for byte."""
        u = urllib.parse.urlsplit(url)
        path = target or ((u.path or "/") + (f"?{u.query}" if u.query else ""))
        h = dict(NAV) if nav else {"Accept": "application/json", "User-Agent": "gateway-oidc-test"}
        if nav:
            h["Sec-Fetch-Site"] = site
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        cookies = self.cookies_for(u.hostname, urllib.parse.urlsplit(path).path or "/")
        if cookies and "Cookie" not in h:
            h["Cookie"] = cookies
        if isinstance(body, dict):
            body = urllib.parse.urlencode(body)
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
        try:
            c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            c.putheader("Host", h.pop("Host", u.netloc))
            for k, v in h.items():
                c.putheader(k, v)
            data = body.encode() if isinstance(body, str) else body
            if data is not None:
                c.putheader("Content-Length", str(len(data)))
            c.endheaders(data)
            r = c.getresponse()
            resp = Response(f"{u.scheme}://{u.netloc}{path}", r.status, r.getheaders(),
                            r.read().decode(errors="replace"))
        finally:
            c.close()
        self.store(u.hostname, urllib.parse.urlsplit(path).path or "/", resp)
        return resp


class FormParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "method": (a.get("method") or "get").lower(),
                               "id": a.get("id"), "fields": {}})
        elif tag in ("input", "button") and self.forms and a.get("name"):
            if tag == "button" and a.get("value") is None:
                return
            self.forms[-1]["fields"].setdefault(a["name"], a.get("value") or "")


def forms_of(body):
    p = FormParser()
    p.feed(body)
    return p.forms


def origin(url):
    u = urllib.parse.urlsplit(url)
    return f"{u.scheme}://{u.netloc}"


def provider_login(b, auth_url, user="alice", stop_before_consent=False):
    """Drives the provider from its authorization URL: login form (any password), consent.
    Returns the URL the provider sends the browser to (not followed), or with
    stop_before_consent the Response of the consent page."""
    prov = origin(auth_url)
    url, method, body = auth_url, "GET", None
    for _ in range(12):
        r = b.request(method, url, body=body, site="cross-site" if method == "GET" else "same-origin")
        if r.status in (302, 303) and r.location:
            if origin(r.location) != prov:
                for k, v in query(r.location).items():
                    if k in ("code", "state") and len(v) >= 16:
                        CALLBACK_ARGS[v] = k
                return r.location
            url, method, body = r.location, "GET", None
            continue
        if r.status != 200:
            raise Stop(f"provider answered {r.status} at {url}: {r.body[:300]}")
        forms = [f for f in forms_of(r.body) if f["method"] == "post"]
        if not forms:
            raise Stop(f"provider page without a form at {url}: {r.body[:300]}")
        f = forms[0]
        fields = dict(f["fields"])
        if fields.get("prompt") == "login":
            fields.update(login=user, password="any")
        elif fields.get("prompt") == "consent" and stop_before_consent:
            return r
        url, method, body = urllib.parse.urljoin(url, f["action"]), "POST", fields
    raise Stop(f"provider login did not end: last {url}")


def query(url):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))


def with_query(url_, **changes):
    u = urllib.parse.urlsplit(url_)
    q = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
    q = [(k, changes.pop(k) if k in changes else v) for k, v in q]
    q = [(k, v) for k, v in q if v is not None]
    q += [(k, v) for k, v in changes.items() if v is not None]
    return urllib.parse.urlunsplit((u.scheme, u.netloc, u.path, urllib.parse.urlencode(q), ""))


def browser_resolve(base, location):
    """Where a browser goes with this Location: tabs and newlines removed, backslashes read
    as slashes (WHATWG URL parsing of http URLs)."""
    loc = re.sub(r"[\t\n\r]", "", location).strip(" \x00-\x1f")
    loc = loc.replace("\\", "/")
    return urllib.parse.urljoin(base, loc)


# --- the scenarios ----------------------------------------------------------------------------

class Env:
    pass


E = Env()


def gw(name, path="/"):
    return f"http://127.0.0.1:{E.ports[name]}{path}"


def begin(b, name="idp", path="/", target=None, headers=None):
    """First visit: the gateway's redirect to the provider. Returns the authorization URL."""
    r = b.request("GET", gw(name, path), target=target, headers=headers)
    if r.status != 302 or not r.location:
        raise Stop(f"first visit of {target or path} on {name}: expected 302 to the provider, got {r!r}")
    return r.location


def login(b, name="idp", path="/", user="alice"):
    """A whole login; returns (callback URL, callback Response)."""
    auth = begin(b, name, path)
    cb = provider_login(b, auth, user)
    r = b.request("GET", cb, site="same-site")
    return cb, r


def session_cookie(b):
    v = b.cookie("gw_session")
    if v:
        SECRETS[v] = "session cookie"
    return v


def is_refusal(r):
    return r.status in (400, 401, 403)


def no_session_created(r):
    return not any(parse_set_cookie(c)[0] in ("gw_session", "__Host-gw_session") and parse_set_cookie(c)[1]
                   and not parse_set_cookie(c)[2].get("max-age", "1").startswith(("0", "-"))
                   for c in r.set_cookies())


def reason_logged(mark, reasons):
    log = E.gw.error_since(mark)
    return any(x in log for x in reasons), log.strip().splitlines()[-3:]


def scenario_main_flow():
    section("main flow: first visit, login, callback, back to the page, session")
    b = Browser("main")
    idp = E.main
    r = b.request("GET", gw("idp", "/app/page?x=1&y=2"))
    need(r.status == 302 and r.location, f"first visit (navigation, no session): 302 to the provider ({r!r})")
    auth = r.location
    q = query(auth)
    check(auth.startswith(idp.issuer + "/auth?"), f"Location is the provider's authorization_endpoint ({auth[:60]})")
    check(q.get("response_type") == "code", "response_type=code")
    check(q.get("client_id") == "gateway", "client_id=gateway")
    check(q.get("redirect_uri") == gw("idp", "/oidc/callback"), f"redirect_uri absolute on the gateway ({q.get('redirect_uri')})")
    check(set(q.get("scope", "").split()) >= {"openid", "profile", "email", "offline_access"}, f"scope ({q.get('scope')})")
    check(len(q.get("state", "")) >= 16, "state present, at least 16 characters")
    check(len(q.get("nonce", "")) >= 16, "nonce present, at least 16 characters")
    check(q.get("code_challenge_method") == "S256", "code_challenge_method=S256")
    check(re.fullmatch(r"[A-Za-z0-9_-]{43}", q.get("code_challenge", "")) is not None,
          "code_challenge: base64url SHA-256 (43 characters)")
    sc = [parse_set_cookie(c) for c in r.set_cookies()]
    st = [c for c in sc if c[0] == "gw_session_state"]
    check(len(st) == 1 and st[0][1], f"state cookie gw_session_state set ({[c[0] for c in sc]})")
    if st:
        SECRETS[st[0][1]] = "state cookie"
        a = st[0][2]
        check("httponly" in a and a.get("samesite", "").lower() == "lax" and a.get("path") == "/"
              and "domain" not in a, f"state cookie: HttpOnly; SameSite=Lax; Path=/; no Domain ({a})")
    r2 = b.request("GET", gw("idp", "/app/page"))
    q2 = query(r2.location or "")
    check(q2.get("state") != q.get("state") and q2.get("nonce") != q.get("nonce")
          and q2.get("code_challenge") != q.get("code_challenge"),
          "a second first visit: new state, nonce and code_challenge")
    # the first login attempt's state cookie was replaced: start again cleanly
    b = Browser("main")
    auth = begin(b, "idp", "/app/page?x=1&y=2")
    cb = provider_login(b, auth, "alice")
    need(cb.startswith(gw("idp", "/oidc/callback?")), f"provider sends the browser to the callback ({cb[:80]})")
    cq = query(cb)
    check(cq.get("state") == query(auth).get("state"), "callback carries the state")
    before = len(idp.grants("authorization_code"))
    mark = E.gw.mark()
    r = b.request("GET", cb, site="same-site")
    need(r.status == 302, f"callback: 302 ({r!r}" + ("" if r.status == 302 else f"; error.log: {E.gw.error_since(mark)[-400:]}") + ")")
    check(r.header("Location") in ("/app/page?x=1&y=2", gw("idp", "/app/page?x=1&y=2")),
          f"callback: back to the page first asked for ({r.header('Location')})")
    check(eventually(lambda: len(idp.grants("authorization_code")) == before + 1),
          "the code was exchanged at the token endpoint (once)")
    ex = idp.grants("authorization_code")[-1:]
    check(ex and ex[0].get("client_id") == "gateway", "token request authenticated as client gateway")
    sc = {c[0]: c for c in map(parse_set_cookie, r.set_cookies())}
    s = sc.get("gw_session")
    need(s is not None and s[1], f"callback sets the session cookie gw_session ({list(sc)})")
    SECRETS[s[1]] = "session cookie"
    check(re.fullmatch(r"[A-Za-z0-9_-]{43,}", s[1]) is not None,
          f"session id: base64url of 32 bytes or more ({len(s[1])} characters)")
    a = s[2]
    check("httponly" in a and a.get("samesite", "").lower() == "lax" and a.get("path") == "/"
          and "domain" not in a, f"session cookie: HttpOnly; SameSite=Lax; Path=/; no Domain ({a})")
    st = sc.get("gw_session_state")
    check(st is None or not st[1] or st[2].get("max-age", "").startswith(("0", "-")) or "expires" in st[2],
          "state cookie cleared or left to expire at the callback")
    check(b.cookie("gw_session_state") is None, "state cookie gone from the browser after the callback")
    r = b.request("GET", r.location, site="same-site")
    check(r.status == 200 and "backend user=[alice]" in r.body,
          f"back on the page: 200, the upstream sees X-User alice ({r!r})")
    check("email=[alice@example.test]" in r.body, "claims of the ID token feed $jwt_claim_email")
    m = re.search(r"authorization=\[Bearer ([^\]]+)\]", r.body)
    check(m is not None, "pass_access_token on: the upstream gets Authorization: Bearer")
    if m:
        at = m.group(1)
        issued = [g.get("access_token") for g in idp.grants("authorization_code")]
        check(at in issued, "the bearer passed upstream is the access token the provider issued")
        check(idp.introspect(at).get("active") is True, "and the provider says it is active")
    grants = len(idp.events)
    workers = set()
    ok = 0
    for i in range(8):
        r = b.request("GET", gw("idp", f"/again/{i}"))
        ok += r.status == 200 and "user=[alice]" in r.body
        workers.add(r.header("X-Worker"))
    check(ok == 8, f"8 more requests with the session cookie: 200, user alice ({ok}/8)")
    time.sleep(0.2)
    check(len(idp.events) == grants, "no provider round trip for them")
    if len(workers) < 2:
        note(f"only worker(s) {workers} answered the session requests")
    else:
        check(True, f"the session is valid on both workers ({sorted(workers)})")
    r = b.request("GET", gw("idp", "/api/data"), nav=False)
    check(r.status == 200 and "user=[alice]" in r.body, f"an API-style request with the session cookie: 200 ({r!r})")
    E.main_browser = b

    section("session fixation and session ids")
    b2 = Browser("fixation")
    b2.set_cookie("gw_session", "attacker-chosen-session-id-AAAAAAAAAAAAAAAAAAAAAAAAAAA")
    r = b2.request("GET", gw("idp", "/"))
    check(r.status == 302 and (r.location or "").startswith(idp.issuer),
          f"an unknown session cookie: treated as no session (302 to the provider) ({r!r})")
    _, r = login(b2, "idp", "/")
    new = session_cookie(b2)
    check(r.status == 302 and new and new != "attacker-chosen-session-id-AAAAAAAAAAAAAAAAAAAAAAAAAAA",
          "after login: a new session id, not the one the browser brought")
    check(new != session_cookie(b), "two logins: two different session ids")


def scenario_reload():
    section("sessions survive a reload and a killed worker (they live in the shared zone)")
    b = Browser("reload")
    login(b, "idp", "/app/page")
    r = b.request("GET", gw("idp", "/app/page"))
    need(r.status == 200, f"signed in ({r.status})")
    master = E.gw.proc.pid

    def workers():
        out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
        return sorted(int(p) for p in out.split())

    before = workers()
    os.kill(master, signal.SIGHUP)
    check(eventually(lambda: not set(workers()) & set(before), 10),
          "after nginx -s reload the old workers are gone")
    r = b.request("GET", gw("idp", "/app/page"))
    check(r.status == 200, f"the session works after the reload ({r.status})")
    ws = workers()
    if ws:
        os.kill(ws[0], signal.SIGKILL)
        check(eventually(lambda: len(workers()) == len(ws) and ws[0] not in workers(), 10),
              "a killed worker is replaced")
    r = b.request("GET", gw("idp", "/app/page"))
    check(r.status == 200, f"the session works after a worker was killed ({r.status})")


def scenario_two_tabs():
    section("two tabs send one browser to the provider before either comes back: both logins work")
    b = Browser("tabs")
    first = begin(b, "idp", "/app/one")
    second = begin(b, "idp", "/app/two")
    check(query(first)["state"] != query(second)["state"], "two different states")
    cb1 = provider_login(b, first)
    r1 = b.request("GET", cb1, site="same-site")
    check(r1.status == 302 and r1.location and r1.location.endswith("/app/one"),
          f"the first tab's callback signs in and goes back to its page ({r1!r})")
    cb2 = provider_login(b, second)
    r2 = b.request("GET", cb2, site="same-site")
    check(r2.status == 302 and r2.location and r2.location.endswith("/app/two"),
          f"the second tab's callback too ({r2!r})")
    r = b.request("GET", cb1, site="same-site")
    check(is_refusal(r), f"the first callback again: refused ({r.status})")


def scenario_api():
    section("API-style requests and what is a navigation")
    b = Browser("api")
    for what, headers, nav in [
        ("no Accept: text/html", {}, False),
        ("Accept: application/json", {"Accept": "application/json"}, False),
        ("Accept: text/html but Sec-Fetch-Mode: cors", {"Sec-Fetch-Mode": "cors"}, True),
    ]:
        r = b.request("GET", gw("idp", "/api/x"), headers=headers, nav=nav)
        check(r.status == 401, f"{what}, no session: 401, not a redirect ({r.status} {r.header('Location')})")
    r = b.request("POST", gw("idp", "/form"), body="a=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    check(r.status == 401, f"POST navigation without a session: 401 ({r.status} {r.header('Location')})")
    r = b.request("GET", gw("idp", "/x"), headers={"Sec-Fetch-Mode": None})
    check(r.status == 302, f"no Sec-Fetch-Mode, Accept text/html: a navigation, 302 ({r.status})")
    r = b.request("GET", gw("idp", "/x"), nav=False, headers={"Authorization": "Bearer not-a-session"})
    check(r.status == 401, f"a bearer header on an auth_oidc-only location does not log in: 401 ({r.status})")
    r = b.request("GET", gw("idp", "/x"), nav=False)
    check((r.header("WWW-Authenticate") or "").startswith("Bearer"),
          f"the 401 has WWW-Authenticate: Bearer ({r.header('WWW-Authenticate')})")


CLIENTS = {  # server: (client id, client_auth of the gateway)
    "post": ("gateway-post", "post"),
    "cjwt": ("gateway-jwt", "client_secret_jwt"),
    "pkjwt": ("gateway-pkjwt", f"private_key_jwt key={REPO}/t/keys/rsa2048.key.pem kid=rsa2048"),
    "public": ("gateway-public", "none"),
}


def scenario_clients():
    section("the other ways to authenticate at the token endpoint")
    for name, (client, auth) in CLIENTS.items():
        b = Browser(name)
        _, r = login(b, name, "/p", user="bob")
        check(r.status == 302, f"{auth.split()[0]} (client {client}): login, callback 302 ({r!r})")
        r = b.request("GET", gw(name, "/p"))
        check(r.status == 200 and "user=[bob]" in r.body, f"{auth.split()[0]}: the page, 200, user bob ({r.status})")
        ex = eventually(lambda: [g for g in E.main.grants("authorization_code") if g.get("client_id") == client])
        check(ex, f"{auth.split()[0]}: the provider authenticated the token request as {client}")
        session_cookie(b)


def scenario_edges():
    section("edges")
    b = Browser("head")
    r = b.request("HEAD", gw("idp", "/page"))
    check(r.status == 302 and (r.location or "").startswith(E.main.issuer + "/auth"),
          f"HEAD navigation without a session: 302 to the provider ({r.status})")
    # a session of one provider is nothing to another (same host, same cookie name)
    b = Browser("two-providers")
    login(b, "idp", "/")
    sid = session_cookie(b)
    r = b.request("GET", gw("post", "/"))
    check(r.status == 302 and (r.location or "").startswith(E.main.issuer + "/auth") and "backend" not in r.body,
          f"a session of provider idp on a location of provider post: not signed in there ({r.status})")
    r = b.request("GET", gw("post", "/api"), nav=False)
    check(r.status == 401, f"and for an API request: 401 ({r.status})")
    r = b.request("GET", gw("idp", "/"), headers={"Cookie": f"gw_session={sid}"})
    check(r.status == 200, f"the session still works where it was made ({r.status})")
    # cookies a browser may send: garbage, several, duplicates
    for what, cookie in [
        ("an empty session cookie", "gw_session="),
        ("a session cookie of 4000 bytes", "gw_session=" + "A" * 4000),
        ("a session cookie with bytes outside base64url", "gw_session=%00%ff../\\x\\y"),
        ("a state cookie without a login", "gw_session_state=" + "B" * 43),
    ]:
        r = Browser("garbage").request("GET", gw("idp", "/x"), headers={"Cookie": cookie})
        check(r.status == 302 and "backend" not in r.body, f"{what}: no session, a new login ({r.status})")
    r = Browser("dup").request("GET", gw("idp", "/x"), headers={"Cookie": f"gw_session=zzz; gw_session={sid}"})
    check(r.status in (200, 302), f"two session cookies, one valid: 200 or a new login, nothing else ({r.status})")
    big = "C" * 3000
    r = Browser("big").request("GET", gw("idp", f"/oidc/callback?code={big}&state={big}"))
    check(r.status == 400 and "backend" not in r.body, f"a callback with 3000-byte code and state: 400 ({r.status})")
    r = Browser("nologin").request("POST", gw("idp", "/oidc/logout"), site="same-origin", body="")
    check(r.status in (302, 303, 200) and "backend" not in r.body,
          f"logout without a session: harmless ({r.status} {r.header('Location')})")


def scenario_logout():
    section("logout")
    p = E.main
    b = Browser("logout")
    login(b, "idp", "/")
    sid = session_cookie(b)
    need(sid is not None, "logged in")
    r = b.request("GET", gw("idp", "/oidc/logout"), site="cross-site")
    check(r.status == 200 and any(f["method"] == "post" for f in forms_of(r.body)),
          f"cross-site GET of the logout URI: a page with a POST button, no logout ({r.status})")
    r = b.request("GET", gw("idp", "/"))
    check(r.status == 200 and "user=[alice]" in r.body, f"the session survives the cross-site GET ({r.status})")
    r = b.request("POST", gw("idp", "/oidc/logout"), site="same-origin", body="",
                  headers={"Origin": gw("idp", "").rstrip("/"), "Content-Type": "application/x-www-form-urlencoded"})
    need(r.status in (302, 303) and r.location, f"POST logout: redirect ({r!r})")
    q = query(r.location)
    check(r.location.startswith(p.issuer + "/session/end"), f"to the provider's end_session_endpoint ({r.location[:60]})")
    check(q.get("post_logout_redirect_uri") == gw("idp", "/signed-out"), f"post_logout_redirect_uri ({q.get('post_logout_redirect_uri')})")
    check(q.get("client_id") == "gateway", "client_id")
    check(bool(q.get("id_token_hint")), "id_token_hint")
    if q.get("id_token_hint"):
        SECRETS[q["id_token_hint"]] = "id token (id_token_hint)"
        issued = [g.get("id_token") for g in p.grants()]
        check(q["id_token_hint"] in issued, "id_token_hint is the ID token the provider issued")
    cleared = [parse_set_cookie(c) for c in r.set_cookies() if parse_set_cookie(c)[0] == "gw_session"]
    check(cleared and (not cleared[0][1] or cleared[0][2].get("max-age", "").startswith(("0", "-"))
                       or "expires" in cleared[0][2]), f"the session cookie is cleared ({cleared})")
    check(b.cookie("gw_session") is None, "the browser has no session cookie left")
    # the provider's side of RP-initiated logout
    lr = b.request("GET", r.location, site="cross-site")
    forms = [f for f in forms_of(lr.body) if f["method"] == "post"]
    if check(lr.status == 200 and forms, f"provider: logout confirmation page ({lr.status})"):
        fields = dict(forms[0]["fields"], logout="yes")
        lr = b.request("POST", urllib.parse.urljoin(r.location, forms[0]["action"]), body=fields, site="same-origin")
        check(lr.status in (302, 303) and lr.location == gw("idp", "/signed-out"),
              f"provider: ends its session, back to post_logout_redirect_uri ({lr!r})")
        check(eventually(lambda: p.grants(event="end_session.success")), "provider: end_session.success")
        if lr.location:
            lr = b.request("GET", lr.location, site="same-site")
            check(lr.status == 200, f"post logout page reached ({lr.status})")
    # the stolen cookie
    thief = Browser("thief")
    thief.set_cookie("gw_session", sid)
    r = thief.request("GET", gw("idp", "/"))
    check(r.status == 302 and (r.location or "").startswith(p.issuer) and "backend" not in r.body,
          f"stolen cookie after logout, navigation: back to the provider ({r.status})")
    r = thief.request("GET", gw("idp", "/api"), nav=False)
    check(r.status == 401 and "backend" not in r.body, f"stolen cookie after logout, API: 401 ({r.status})")
    # and the provider session is over: logging in again asks for the login form
    r = b.request("GET", gw("idp", "/"))
    if r.status == 302:
        r2 = b.request("GET", r.location, site="cross-site")
        r3 = b.request("GET", r2.location, site="cross-site") if r2.location else r2
        check('name="login"' in r3.body, "after logout the provider asks for a login again (no SSO session)")
    # logout by a same-origin GET
    b = Browser("logout-get")
    login(b, "idp", "/")
    sid = session_cookie(b)
    r = b.request("GET", gw("idp", "/oidc/logout"), site="same-origin")
    check(r.status in (302, 303) and (r.location or "").startswith(p.issuer + "/session/end"),
          f"GET logout with Sec-Fetch-Site: same-origin: logged out, to the provider ({r.status})")
    t = Browser("thief2")
    t.set_cookie("gw_session", sid)
    r = t.request("GET", gw("idp", "/api"), nav=False)
    check(r.status == 401, f"its cookie afterwards: 401 ({r.status})")


def callback_attack(title, b, url, reasons, site="same-site"):
    mark = E.gw.mark()
    r = b.request("GET", url, site=site)
    ok = check(is_refusal(r) and no_session_created(r) and "backend" not in r.body,
               f"{title}: refused, no session ({r.status} {r.header('Location') or ''})")
    if ok and reasons:
        found, tail = reason_logged(mark, reasons)
        check(found, f"{title}: error.log names the reason ({'/'.join(reasons)}) {'' if found else tail}")
    return r


def scenario_attacks():
    section("attacks on the callback")
    p = E.main
    # wrong state
    b = Browser("wrong-state")
    cb = provider_login(b, begin(b), "alice")
    callback_attack("wrong state", b, with_query(cb, state="A" * 43), ["state_mismatch", "state_unknown"])
    # missing state cookie
    b = Browser("no-state-cookie")
    cb = provider_login(b, begin(b), "alice")
    b.drop_cookie("gw_session_state")
    callback_attack("missing state cookie", b, cb, ["state_mismatch", "state_unknown"])
    # login CSRF: the attacker's callback URL in the victim's browser (which has its own pending login)
    attacker = Browser("attacker")
    cb_attacker = provider_login(attacker, begin(attacker), "bob")
    victim = Browser("victim")
    begin(victim)
    callback_attack("the attacker's callback in the victim's browser (login CSRF)", victim, cb_attacker,
                    ["state_mismatch", "state_unknown"])
    # the missing state parameter
    b = Browser("no-state")
    cb = provider_login(b, begin(b), "alice")
    callback_attack("callback without state", b, with_query(cb, state=None),
                    ["state_mismatch", "state_unknown", "state"])
    # replay: the same callback twice
    b = Browser("replay")
    cb = provider_login(b, begin(b), "alice")
    state_cookie = b.cookie("gw_session_state")
    r = b.request("GET", cb, site="same-site")
    check(r.status == 302 and session_cookie(b), f"replay: the first callback logs in ({r.status})")
    if state_cookie:
        b.set_cookie("gw_session_state", state_cookie)
    callback_attack("replayed callback (same code and state, state cookie put back)", b, cb,
                    ["state_unknown", "state_mismatch"])
    other = Browser("replay-elsewhere")
    if state_cookie:
        other.set_cookie("gw_session_state", state_cookie)
    callback_attack("replayed callback from another browser with the copied state cookie", other, cb,
                    ["state_unknown", "state_mismatch"])
    # code swap: login 1's code with login 2's state (PKCE binds the code to login 1)
    b1, b2 = Browser("swap1"), Browser("swap2")
    cb1 = provider_login(b1, begin(b1), "alice")
    cb2 = provider_login(b2, begin(b2), "bob")
    callback_attack("code of another login with this login's state (swapped callbacks)", b2,
                    with_query(cb2, code=query(cb1)["code"]), ["code_exchange_failed"])
    r = b1.request("GET", cb1, site="same-site")
    check(r.status == 302 and session_cookie(b1), f"the untouched login still completes ({r.status})")
    # wrong nonce: the authorization request altered on its way to the provider
    b = Browser("nonce")
    auth = begin(b)
    cb = provider_login(b, with_query(auth, nonce="N" * 43), "alice")
    callback_attack("ID token with another nonce", b, cb, ["nonce_mismatch", "nonce", "id_token_invalid"])
    b = Browser("no-nonce")
    auth = begin(b)
    cb = provider_login(b, with_query(auth, nonce=None), "alice")
    callback_attack("ID token without nonce", b, cb, ["nonce_mismatch", "nonce", "id_token_invalid"])
    # PKCE stripped: the provider requires it
    b = Browser("no-pkce")
    auth = begin(b)
    r = b.request("GET", with_query(auth, code_challenge=None, code_challenge_method=None), site="cross-site")
    loc = r.location or ""
    check(not loc.startswith(gw("idp", "/oidc/callback")) or "error=" in loc,
          f"authorization request without code_challenge: the provider refuses it ({r.status})")
    # provider error (the user cancels at the login page)
    b = Browser("denied")
    auth = begin(b)
    r = b.request("GET", auth, site="cross-site")
    r = b.request("GET", r.location, site="same-origin")
    uid = urllib.parse.urlsplit(r.url).path.rstrip("/").split("/")[-1]
    r = b.request("GET", f"{p.issuer}/interaction/{uid}/abort", site="same-origin")
    while r.status in (302, 303) and origin(r.location) == p.issuer:
        r = b.request("GET", r.location, site="same-origin")
    need(r.location and "error=access_denied" in r.location, f"provider: access_denied back to the callback ({r!r})")
    callback_attack("error=access_denied from the provider", b, r.location, None)
    # foreign issuer: same client id, same keys, another issuer
    f = E.foreign
    b = Browser("foreign")
    auth = begin(b)
    fauth = auth.replace(p.issuer, f.issuer, 1)
    cb = provider_login(b, fauth, "alice")
    need(cb.startswith(gw("idp", "/oidc/callback")), f"the foreign provider sends the browser to the callback ({cb[:60]})")
    check(query(cb).get("iss") == f.issuer, "with its own iss (RFC 9207)")
    n = len(f.grants("authorization_code"))
    callback_attack("code from a foreign issuer", b, cb,
                    ["code_exchange_failed", "issuer_mismatch", "iss"])
    time.sleep(0.2)
    check(len(f.grants("authorization_code")) == n, "the foreign provider's token endpoint was never called")
    # a code from a foreign issuer, presented as from the right one
    b = Browser("foreign-iss")
    auth = begin(b)
    cb = provider_login(b, auth.replace(p.issuer, f.issuer, 1), "alice")
    callback_attack("code from a foreign issuer with iss rewritten", b, with_query(cb, iss=p.issuer),
                    ["code_exchange_failed", "issuer_mismatch"])
    # the callback on its own: nothing pending
    b = Browser("bare")
    callback_attack("callback with no login pending", b, gw("idp", "/oidc/callback?code=abc&state=def"),
                    ["state_mismatch", "state_unknown"])


def scenario_mixup():
    section("discovery answered by another issuer (mix-up)")
    b = Browser("mixup")
    mark = E.gw.mark()
    r = b.request("GET", gw("mixup", "/"))
    check(not (r.location or "").startswith(E.foreign.issuer),
          f"never a redirect to the provider whose discovery names another issuer ({r.status} {r.header('Location')})")
    check(r.status >= 400, f"the request is refused ({r.status})")
    found, tail = reason_logged(mark, ["issuer_mismatch", "issuer"])
    check(found, f"error.log says why (issuer) {'' if found else tail}")


EVIL = [
    "//evil.example/x",
    "///evil.example/x",
    "/\\evil.example/x",
    "/\\/evil.example/x",
    "/%5Cevil.example/x",
    "/%2F%2Fevil.example/x",
    "/%2f/evil.example/x",
    "/%5C%5Cevil.example/x",
    "/%09/evil.example/x",
    "/%0d%0aLocation:%20https://evil.example/",
    "/.//evil.example/x",
    "/x/..//evil.example",
    "https://evil.example/x",
    "http://evil.example/x",
]


def scenario_open_redirect():
    section("open redirects: the page first asked for (server idp; server post has absolute_redirect off)")
    for name in ("idp", "post"):
        open_redirects(name)


def open_redirects(name):
    home = gw(name, "")
    for target in EVIL:
        b = Browser("redirect")
        r = b.request("GET", home, target=target)
        if r.status != 302 or not (r.location or "").startswith(E.main.issuer):
            check(r.status in (400, 401, 404) or origin(browser_resolve(home, r.header("Location") or "/")) == origin(home),
                  f"{name} {target!r}: refused before login or same-origin ({r.status} {r.header('Location')})")
            continue
        ru = query(r.location).get("redirect_uri", "")
        if not ru.startswith(gw(name, "/oidc/callback")):
            # an absolute request target names the host (RFC 9112 3.2.2): the provider must
            # refuse a redirect_uri it does not know
            rr = b.request("GET", r.location, site="cross-site")
            check(rr.status >= 400 or not (rr.location or "").startswith(ru),
                  f"{name} {target!r}: redirect_uri {ru}: the provider refuses it ({rr.status})")
            continue
        try:
            cb = provider_login(b, r.location, "alice")
        except Stop as e:
            check(False, f"{name} {target!r}: login failed: {e}")
            continue
        c = b.request("GET", cb, site="same-site")
        loc = c.header("Location")
        where = browser_resolve(home, loc) if loc is not None else None
        check(c.status in (302, 303) and where and origin(where) == origin(home),
              f"{name} {target!r}: after login, Location stays on the gateway ({c.status} {loc!r})")
        session_cookie(b)
    if name != "idp":
        return
    # extra parameters on the callback naming a target
    b = Browser("redirect-param")
    cb = provider_login(b, begin(b, "idp", "/home"), "alice")
    c = b.request("GET", with_query(cb, redirect_uri="https://evil.example/", next="https://evil.example/",
                                    return_to="//evil.example", url="https://evil.example"), site="same-site")
    loc = c.header("Location")
    check(c.status == 302 and loc and origin(browser_resolve(home, loc)) == origin(home),
          f"target parameters added to the callback are ignored ({c.status} {loc!r})")
    # a Host header naming another site
    b = Browser("host")
    r = b.request("GET", home + "/", headers={"Host": "evil.example"})
    ru = query(r.location or "").get("redirect_uri", "")
    if r.status == 302 and not ru.startswith(home):
        rr = b.request("GET", r.location, site="cross-site")
        check(rr.status >= 400 or not (rr.location or "").startswith("http://evil.example"),
              f"Host: evil.example makes redirect_uri {ru}: the provider refuses it ({rr.status})")
    else:
        check(True, f"Host: evil.example: no redirect_uri on that host ({r.status})")


def scenario_refresh():
    section(f"refresh (access token {SHORT_AT} s, refresh_before {SHORT_BEFORE} s, refresh token {SHORT_RT} s absolute)")
    p = E.short
    b = Browser("refresh")
    _, r = login(b, "short", "/r")
    t0 = time.monotonic()
    need(r.status == 302, f"login on the short-lived provider ({r!r})")
    session_cookie(b)

    def bearer():
        r = b.request("GET", gw("short", "/r"))
        m = re.search(r"authorization=\[Bearer ([^\]]+)\]", r.body)
        return r, (m.group(1) if m else None)

    r, b0 = bearer()
    check(r.status == 200 and b0, f"the page with a fresh session: 200 ({r.status})")
    check(len(p.grants("refresh_token")) == 0, "no refresh yet")
    time.sleep(max(0.0, t0 + SHORT_AT - SHORT_BEFORE + 0.5 - time.monotonic()))
    # The request that finds the token inside refresh_before may pass with the old (still
    # valid) token while the refresh runs in the background; the next ones get the new one.
    r, b1 = bearer()
    check(r.status == 200 and b1, f"inside refresh_before of the expiry: 200 ({r.status})")
    deadline = time.monotonic() + 2.0
    while b1 == b0 and time.monotonic() < deadline:
        time.sleep(0.1)
        r, b1 = bearer()
    check(r.status == 200 and b1 and b1 != b0,
          f"then the upstream gets a new access token (after {time.monotonic() - t0:.1f} s)")
    eventually(lambda: len(p.grants("refresh_token")) >= 1)
    check(len(p.grants("refresh_token")) == 1, f"one refresh at the provider ({len(p.grants('refresh_token'))})")
    if b1:
        check(p.introspect(b1).get("active") is True, "the new access token is active at the provider")
    # a burst on both workers when the next refresh is due: single-flight
    t1 = time.monotonic()
    time.sleep(max(0.0, t1 + SHORT_AT - SHORT_BEFORE + 0.3 - time.monotonic()))
    n = len(p.grants("refresh_token"))
    results = []

    def one():
        rr = b.request("GET", gw("short", "/r"))
        m = re.search(r"authorization=\[Bearer ([^\]]+)\]", rr.body)
        results.append((rr.status, m.group(1) if m else None, rr.header("X-Worker")))
    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(0.5)  # a refresh started by the burst ends
    check(all(s == 200 for s, _, _ in results), f"10 concurrent requests when the refresh is due: all 200 ({[s for s, _, _ in results]})")
    check(len(p.grants("refresh_token")) - n == 1,
          f"single-flight: one refresh for them ({len(p.grants('refresh_token')) - n})")
    check(not p.grants(event="grant.error"), f"no refresh refused by the provider ({p.grants(event='grant.error')[:2]})")
    used = {t for _, t, _ in results if t}
    for t in used:
        check(p.introspect(t).get("active") is True, "the bearer the upstream got is active")
    r, _ = bearer()
    check(r.status == 200, f"the session goes on ({r.status})")
    # the refresh token's absolute end
    time.sleep(max(0.0, t0 + SHORT_RT + SHORT_AT + 0.5 - time.monotonic()))
    mark = E.gw.mark()
    r = b.request("GET", gw("short", "/r"))
    check(r.status == 302 and (r.location or "").startswith(p.issuer + "/auth"),
          f"refresh token expired: the next navigation goes back to the provider ({r!r})")
    r = b.request("GET", gw("short", "/r"), nav=False)
    check(r.status == 401, f"and an API request gets 401 ({r.status})")
    errs = eventually(lambda: p.grants(event="grant.error"))
    check(any(e.get("grant_type") == "refresh_token" for e in errs) or "refresh" in E.gw.error_since(mark),
          "the provider refused the refresh (or the gateway logged the end)")


def scenario_logs():
    section("credentials in logs")
    logs = {n: E.gw.read(n) for n in ("error.log", "access.log", "gateway.json")}
    for name, text in logs.items():
        leaks = sorted({what for v, what in list(SECRETS.items()) if v and len(v) >= 16 and v in text})
        check(not leaks, f"{name}: no token or cookie value ({len(SECRETS)} looked for) {leaks}")
    for name, text in logs.items():
        seen = sorted({what for v, what in list(CALLBACK_ARGS.items()) if v in text})
        check(not seen, f"{name}: the callback's code and state redacted ({len(CALLBACK_ARGS)} looked for) {seen}")
    bad = [l for l in logs["error.log"].splitlines()
           if ("[alert]" in l or "[emerg]" in l or "[crit]" in l or "exited on signal" in l)
           and "exited on signal 9" not in l]  # the SIGKILL of scenario_reload
    check(not bad, f"error.log: no alert/crit/emerg/crash {bad[:3]}")
    recs = []
    for line in logs["gateway.json"].splitlines():
        try:
            recs.append(json.loads(line))
        except ValueError:
            check(False, f"gateway.json: a line is not JSON: {line[:100]}")
    alice = [x for x in recs if x.get("path", "").startswith("/again/")]
    check(alice and all(x.get("consumer") == "alice" for x in alice),
          f"gateway.json: consumer = sub for session requests ({[x.get('consumer') for x in alice][:3]})")


def main():
    started = time.monotonic()
    if not os.path.isdir(os.path.join(OIDC_DIR, "node_modules", "oidc-provider")):
        raise SystemExit(f"{OIDC_DIR}/node_modules missing: run (cd scripts/oidc && npm ci)")
    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(ROOT)
    E.ports = {n: free_port() for n in ("idp", *CLIENTS, "short", "mixup")}
    keys = os.path.join(ROOT, "provider-keys.json")
    providers = []
    gateway = None
    try:
        E.main = Provider("main", [p for n, p in E.ports.items() if n != "short"], "--jwks", keys,
                          "--client-jwks", os.path.join(REPO, "t", "keys", "rsa2048.jwk"))
        providers.append(E.main)
        E.foreign = Provider("foreign", list(E.ports.values()), "--jwks", keys)
        providers.append(E.foreign)
        E.short = Provider("short", [E.ports["short"]], "--at-ttl", str(SHORT_AT), "--id-ttl", str(SHORT_AT),
                           "--rt-ttl", str(SHORT_RT))
        providers.append(E.short)
        gateway = E.gw = Gateway({
            "idp": (E.main, "gateway", "basic", "30s", E.main),
            **{n: (E.main, c, a, "30s", E.main) for n, (c, a) in CLIENTS.items()},
            "short": (E.short, "gateway", "basic", f"{SHORT_BEFORE}s", E.short),
            "mixup": (E.main, "gateway", "basic", "30s", E.foreign),
        }, E.ports)
        gateway.start()
        print(f"providers: main {E.main.issuer}, foreign {E.foreign.issuer}, short {E.short.issuer}; "
              f"gateway ports {E.ports}")
        scenarios = [scenario_main_flow, scenario_reload, scenario_two_tabs, scenario_api, scenario_clients, scenario_edges, scenario_logout,
                     scenario_attacks, scenario_open_redirect, scenario_mixup, scenario_refresh]
        for s in scenarios:
            try:
                s()
            except Stop as e:
                if str(e) not in FAILED:
                    check(False, str(e))
                print(f"  ...   {s.__name__} stopped there", flush=True)
            except Exception as e:  # a scenario crashing is a failure, the others still run
                traceback.print_exc()
                check(False, f"{s.__name__} crashed: {e!r}")
    finally:
        if gateway and hasattr(gateway, "proc"):
            gateway.stop()
        for p in providers:
            p.stop()
    scenario_logs()
    elapsed = time.monotonic() - started
    if FAILED:
        print(f"\n{len(FAILED)} check(s) failed ({elapsed:.0f} s; files under {ROOT}):")
        for f in FAILED:
            print(f"  - {f}")
        sys.exit(1)
    print(f"\nall OIDC checks passed in {elapsed:.0f} s" + (f" ({len(NOTES)} note(s))" if NOTES else ""))


if __name__ == "__main__":
    main()
