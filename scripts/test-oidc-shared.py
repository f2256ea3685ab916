#!/usr/bin/env python3
"""Browser sessions shared by two nginx nodes through Redis (`oidc_provider ...
session_store redis://`), against a real OpenID provider (scripts/oidc) and a real
redis-server on loopback:

  - a browser signs in on node A; node B, which never saw that login, accepts its cookie
    (it reads the session from Redis, over TLS: `session_store rediss://... tls_ca=`, the
    same redis-server's TLS port with a certificate made here) and the upstream sees the user;
  - the session lives in Redis under a hashed key (never the cookie's value);
  - after logout on A, node B refuses the cookie within the revalidation interval (10 s);
  - with Redis down, a node keeps serving the sessions it holds, and logs the failure.

    scripts/test-oidc-shared.py NGINX MODULE.so

Reuses the cookie jar and provider driver of scripts/test-oidc.py. Files under
target/oidc-shared/. Exit status 1 on any failed check.
"""
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("oidc_flows", os.path.join(HERE, "test-oidc.py"))
t = importlib.util.module_from_spec(spec)
spec.loader.exec_module(t)

ROOT = os.path.join(t.REPO, "target", "oidc-shared")


def redis_cmd(port, *args):
    """One command over a raw connection; returns the reply's first line and the rest."""
    out = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), 2) as s:
        s.sendall(out.encode())
        time.sleep(0.1)
        return s.recv(65536).decode(errors="replace")


def make_ca_and_cert(d):
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
    os.makedirs(d, exist_ok=True)
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
    ext = os.path.join(d, "san.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    ca, srv = os.path.join(d, "ca"), os.path.join(d, "server")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test ca",
        "-keyout", ca + ".key", "-out", ca + ".pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=redis", "-keyout", srv + ".key",
        "-out", srv + ".csr")
    run("x509", "-req", "-in", srv + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
        "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", srv + ".pem")
    return ca + ".pem", srv + ".pem", srv + ".key"


def node_conf(name, port, backend, provider, store):
    return f"""
worker_processes 2;
error_log logs/error.log info;
pid logs/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log logs/access.log;
    oidc_provider idp {{
        issuer            {provider.issuer};
        client_id         gateway;
        client_secret     gateway-secret;
        discovery_request /_oidc/discovery;
        keys_request      /_oidc/keys;
        token_request     /_oidc/token;
        redirect_uri      /oidc/callback;
        logout_uri        /oidc/logout;
        post_logout_uri   http://127.0.0.1:{port}/;
        scope             "openid profile email";
        session_zone      oidc_{name}:1m;
        session_store     {store};
        allow_http;
    }}
    server {{
        listen 127.0.0.1:{backend};
        location / {{ return 200 "node={name} user=[$http_x_user]\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        location = /_oidc/discovery {{ internal; proxy_pass {provider.issuer}/.well-known/openid-configuration; }}
        location = /_oidc/keys {{ internal; proxy_pass $oidc_jwks_uri; }}
        location = /_oidc/token {{ internal; proxy_pass $oidc_token_endpoint; subrequest_output_buffer_size 64k; }}
        location / {{
            auth_oidc idp;
            proxy_set_header X-User $jwt_claim_sub;
            proxy_pass http://127.0.0.1:{backend};
        }}
    }}
}}
"""


def start_node(name, port, provider, store):
    prefix = os.path.join(ROOT, name)
    os.makedirs(os.path.join(prefix, "conf"), exist_ok=True)
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    with open(os.path.join(prefix, "conf", "nginx.conf"), "w") as f:
        f.write(node_conf(name, port, t.free_port(), provider, store))
    p = subprocess.Popen([t.NGINX, "-p", prefix + "/", "-c", "conf/nginx.conf",
                          "-g", f"load_module {t.MODULE}; daemon off;"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return p
        except OSError:
            if p.poll() is not None:
                raise SystemExit(f"node {name} did not start: {p.stderr.read().decode()}")
            time.sleep(0.05)
    raise SystemExit(f"node {name} did not start")


def main():
    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(ROOT)
    redis_port, tls_port = t.free_port(), t.free_port()
    ca, cert, key = make_ca_and_cert(os.path.join(ROOT, "certs"))
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--tls-port", str(tls_port), "--tls-cert-file", cert,
                              "--tls-key-file", key, "--tls-ca-cert-file", ca,
                              "--tls-auth-clients", "no", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pa, pb = t.free_port(), t.free_port()
    provider = t.Provider("shared", [pa, pb])
    nodes = []
    started = time.monotonic()
    try:
        nodes = [start_node("a", pa, provider, f"redis://127.0.0.1:{redis_port}"),
                 start_node("b", pb, provider, f"rediss://127.0.0.1:{tls_port} tls_ca={ca}")]
        b = t.Browser("shared")
        t.section("a session made on node A, used on node B")
        r = b.request("GET", f"http://127.0.0.1:{pa}/page")
        t.need(r.status == 302 and r.location, f"first visit on A: 302 to the provider ({r!r})")
        cb = t.provider_login(b, r.location)
        r = b.request("GET", cb, site="same-site")
        t.check(r.status == 302, f"callback on A: 302 back to the page ({r.status})")
        cookie = b.cookie("gw_session")
        t.need(bool(cookie), "A set the session cookie")
        r = b.request("GET", f"http://127.0.0.1:{pa}/page")
        t.check(r.status == 200 and "user=[alice]" in r.body, f"A serves the session ({r.status} {r.body.strip()})")
        r = b.request("GET", f"http://127.0.0.1:{pb}/page")
        t.check(r.status == 200 and "node=b user=[alice]" in r.body,
                f"B, which never saw the login, accepts the cookie read over TLS ({r.status} {r.body.strip()})")
        errb = open(os.path.join(ROOT, "b", "logs", "error.log")).read()
        t.check("session_store: redis" not in errb, "B's TLS session store works without errors")
        keys = redis_cmd(redis_port, "KEYS", "gw:oidc:idp:*")
        t.check("gw:oidc:idp:" in keys and cookie not in keys,
                "Redis holds the session under a hashed key, never the cookie's value")
        t.section("logout on A ends the session on B too")
        r = b.request("POST", f"http://127.0.0.1:{pa}/oidc/logout", site="same-origin")
        t.check(r.status == 302, f"logout on A: 302 ({r.status})")
        t.check("gw:oidc:idp:" not in redis_cmd(redis_port, "KEYS", "gw:oidc:idp:*"),
                "the session is gone from Redis")
        api = {"Cookie": f"gw_session={cookie}"}
        refused_after = None
        t0 = time.monotonic()
        while time.monotonic() - t0 < 13:
            r = b.request("GET", f"http://127.0.0.1:{pb}/page", headers=api, nav=False)
            if r.status == 401:
                refused_after = time.monotonic() - t0
                break
            time.sleep(0.5)
        t.check(refused_after is not None and refused_after <= 11,
                f"B refuses the stolen cookie within the revalidation interval of 10 s "
                f"({'%.1f s' % refused_after if refused_after is not None else 'never'})")
        t.section("Redis down: each node keeps the sessions it holds")
        b2 = t.Browser("second")
        r = b2.request("GET", f"http://127.0.0.1:{pa}/page")
        cb = t.provider_login(b2, r.location)
        b2.request("GET", cb, site="same-site")
        redis.send_signal(signal.SIGTERM)
        redis.wait(5)
        r = b2.request("GET", f"http://127.0.0.1:{pa}/page")
        t.check(r.status == 200 and "user=[alice]" in r.body, f"A still serves its session ({r.status})")
        time.sleep(10.5)  # past the revalidation interval: A asks Redis, which is down
        r = b2.request("GET", f"http://127.0.0.1:{pa}/page")
        t.check(r.status == 200, f"after the revalidation interval, with Redis down: still 200 ({r.status})")
        err = open(os.path.join(ROOT, "a", "logs", "error.log")).read()
        t.check('oidc_provider "idp" session_store: redis' in err and "failed" in err,
                "the failure is logged")
        t.check(cookie not in err, "the session cookie never reaches the error log")
    except t.Stop as e:
        t.check(False, str(e))
    finally:
        for n in nodes:
            n.send_signal(signal.SIGQUIT)
        for n in nodes:
            try:
                n.wait(10)
            except subprocess.TimeoutExpired:
                n.kill()
        provider.stop()
        if redis.poll() is None:
            redis.kill()
    if t.FAILED:
        print(f"\n{len(t.FAILED)} check(s) failed; files under {ROOT}")
        sys.exit(1)
    print(f"\nall shared-session checks passed in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
