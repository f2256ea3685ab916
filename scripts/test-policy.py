#!/usr/bin/env python3
"""Consumers and the central policy, end to end: a policy server (control plane) on a free
loopback port, two nginx nodes (2 workers each) pulling the document from it by URL, and one
node reading it from a file, all changed while client threads send traffic to every node.

    scripts/test-policy.py NGINX MODULE.so [GW-JWT]

GW-JWT (default target/release/gw-jwt) signs the test token with t/keys/hs256.jwk.

Changes applied in turn (each: time until every node shows the new behaviour, at most
interval + margin; no reload; every response of the traffic in the expected set):
  admit      a new consumer's key: 401 key_unknown -> 200
  revoke     a key on the denylist: 200 -> 401 key_revoked
  plan       the plan raised: 429 at the low plan -> passes, counters kept
  group      a group removed from a consumer: 200 -> 403 group_forbidden
  jti        a token's jti on the denylist: 200 -> 401 token_revoked
  bad_json, duplicate_id   refused: the last good version stays in force (behaviour, status,
                           error log, gateway_policy_loads_total{result="refused"})
  recover    a good document again: every node takes it
"""
import hashlib
import http.client
import http.server
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

from testports import free_port  # scripts/testports.py: never the same port twice

NGINX, MODULE = sys.argv[1], os.path.abspath(sys.argv[2])
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
GWJWT = sys.argv[3] if len(sys.argv) > 3 else os.path.join(REPO, "target", "release", "gw-jwt")
ROOT = os.path.join(REPO, "target", "policy-test")
INTERVAL = 1.0  # gateway_policy interval=1s
MARGIN = 2.0  # allowed propagation: INTERVAL + MARGIN
LOW, HIGH = 3, 6  # the planner's plan limits per hour before and after "plan"
FAILED = []


def check(cond, what):
    print(("  ok    " if cond else "  FAIL  ") + what, flush=True)
    if not cond:
        FAILED.append(what)


def digest(key):
    return hashlib.sha256(key.encode()).hexdigest()


# --- the policy document -----------------------------------------------------------------

KEYS = {c: f"key-{c}-{hashlib.sha256(c.encode()).hexdigest()[:12]}"
        for c in ("steady", "newbie", "victim", "planner", "grouper")}
JTI = "tok-alice-1"


def document(version, st):
    """The document for state `st` (which changes are applied)."""
    def consumer(cid, groups=("partners",), plan=None):
        c = {"id": cid, "username": f"{cid.title()} Ltd", "groups": list(groups),
             "credentials": {"api_keys": [{"sha256": digest(KEYS[cid]), "name": f"{cid}-key"}]}}
        if plan:
            c["plan"] = plan
        return c
    consumers = [consumer("steady"), consumer("victim"),
                 consumer("planner", plan="high" if st.get("plan") else "low"),
                 consumer("grouper", groups=("others",) if st.get("group") else ("partners",)),
                 {"id": "alice", "groups": ["partners"],
                  "credentials": {"jwt": [{"iss": "https://idp.test", "sub": "alice"}]}}]
    if st.get("admit"):
        consumers.append(consumer("newbie"))
    deny = {}
    if st.get("revoke"):
        deny["api_keys"] = [digest(KEYS["victim"])]
    if st.get("jti"):
        deny["jti"] = [JTI]
    doc = {"version": version,
           "plans": {"low": {"limits": {"hour": LOW}}, "high": {"limits": {"hour": HIGH}}},
           "consumers": consumers,
           "access": [{"route": "api", "groups": ["partners"]}],
           "deny": deny}
    return json.dumps(doc, indent=1).encode()


class PolicyServer:
    """The control plane: serves the current document with a strong ETag, 304 on a match."""

    def __init__(self):
        self.doc = b"{}"
        self.lock = threading.Lock()
        self.counts = {200: 0, 304: 0, "other": 0}
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with outer.lock:
                    doc = outer.doc
                tag = '"' + hashlib.sha256(doc).hexdigest()[:32] + '"'
                if self.path != "/policy.json":
                    code, body = 404, b""
                elif tag in [t.strip() for t in self.headers.get("If-None-Match", "").split(",")]:
                    code, body = 304, b""
                else:
                    code, body = 200, doc
                with outer.lock:
                    outer.counts[code if code in (200, 304) else "other"] += 1
                self.send_response(code)
                self.send_header("ETag", tag)
                if code == 200:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def set(self, doc):
        with self.lock:
            self.doc = doc

    def stop(self):
        self.httpd.shutdown()


# --- nginx nodes ---------------------------------------------------------------------------

class Node:
    def __init__(self, name, source, server_port):
        self.name = name
        self.port, self.backend = free_port(), free_port()
        self.prefix = os.path.join(ROOT, name)
        os.makedirs(os.path.join(self.prefix, "logs"))
        os.makedirs(os.path.join(self.prefix, "conf"))
        self.file = os.path.join(self.prefix, "conf", "policy.json")
        if source == "file":
            src = f"gateway_policy file={self.file} interval=1s;"
        else:
            src = "gateway_policy url=/_policy interval=1s;"
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
    access_log off;
    {src}
    rate_limit_zone $gateway_consumer zone=consumers:1m;
    server {{
        listen 127.0.0.1:{self.backend};
        location / {{
            return 200 "id=$http_x_consumer_id username=$http_x_consumer_username groups=$http_x_consumer_groups cred=$http_x_credential_identifier anon=$http_x_anonymous_consumer apikey=$http_x_api_key\\n";
        }}
    }}
    server {{
        listen 127.0.0.1:{self.port} reuseport;
        location /api/ {{
            gateway_route api;
            auth_api_key header=X-API-Key hide_credentials;
            auth_jwt "api";
            auth_jwt_key_file {REPO}/t/keys/hs256.jwk;
            auth_consumer_acl on;
            rate_limit zone=consumers plan;
            add_header X-Policy-Version $gateway_policy_version always;
            add_header X-Worker $pid always;
            proxy_pass http://127.0.0.1:{self.backend};
        }}
        location = /_policy {{
            internal;
            proxy_pass http://127.0.0.1:{server_port}/policy.json;
            subrequest_output_buffer_size 1m;
        }}
        location = /status {{ gateway_status; }}
        location = /metrics {{ gateway_metrics; }}
    }}
}}
"""
        with open(os.path.join(self.prefix, "conf", "nginx.conf"), "w") as f:
            f.write(conf)

    def start(self):
        self.proc = subprocess.Popen([NGINX, "-p", self.prefix + "/", "-c", "conf/nginx.conf"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        else:
            self.proc.kill()
        if self.proc.poll() is not None:
            raise SystemExit(f"nginx {self.name} did not start: "
                             f"{self.proc.stderr.read().decode(errors='replace')}{self.log()}")

    def pids(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return (self.proc.pid, tuple(sorted(int(p) for p in out.stdout.split())))

    def stop(self):
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            FAILED.append(f"{self.name} did not stop within 10 s")

    def log(self):
        try:
            with open(os.path.join(self.prefix, "logs", "error.log")) as f:
                return f.read()
        except OSError:
            return ""

    def get(self, path, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            c.request("GET", path, headers=headers or {})
            r = c.getresponse()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read().decode()
        finally:
            c.close()

    def status(self):
        st, _, body = self.get("/status")
        return json.loads(body) if st == 200 else {}

    def metric(self, name, labels=""):
        _, _, body = self.get("/metrics")
        pat = re.compile(re.escape(name) + r"(\{[^}]*\})? ([0-9.eE+-]+)$")
        for line in body.splitlines():
            m = pat.match(line)
            if m and all(l in (m.group(1) or "") for l in labels.split(",") if l):
                return float(m.group(2))
        return None


def reason(status, headers, body):
    """'200', or '401 key_unknown' (the problem body's reason), or '401' without one."""
    if status == 200:
        return "200"
    if headers.get("content-type", "").startswith("application/problem+json"):
        try:
            return f"{status} {json.loads(body).get('reason')}"
        except ValueError:
            pass
    return str(status)


# --- traffic -------------------------------------------------------------------------------

TOKEN = ""
# credential name -> the set of answers allowed now (replaced whole, never mutated)
EXPECTED = {"steady": {"200"}, "newbie": {"401 key_unknown"}, "victim": {"200"},
            "grouper": {"200"}, "alice": {"200"}}
CONSUMER_OF = {"steady": "steady", "newbie": "newbie", "victim": "victim", "grouper": "grouper",
               "alice": "alice"}


def cred_headers(cred):
    # A client-sent identity header must never reach the upstream.
    h = {"X-Consumer-ID": "forged", "X-Consumer-Groups": "admins"}
    if cred == "alice":
        h["Authorization"] = f"Bearer {TOKEN}"
    else:
        h["X-API-Key"] = KEYS[cred]
    return h


class Traffic:
    def __init__(self, nodes, per_node=2, gap=0.01):
        self.stop_flag = False
        self.lock = threading.Lock()
        self.counts, self.bad, self.lat = {}, [], []
        self.threads = [threading.Thread(target=self.client, args=(n, i), daemon=True)
                        for n in nodes for i in range(per_node)]
        self.gap = gap

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_flag = True
        for t in self.threads:
            t.join()

    def client(self, node, idx):
        creds = list(EXPECTED)
        i = idx
        c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=5)
        while not self.stop_flag:
            cred = creds[i % len(creds)]
            i += 1
            before = EXPECTED[cred]
            t0 = time.time()
            try:
                c.request("GET", f"/api/x?n={i}", headers=cred_headers(cred))
                r = c.getresponse()
                body = r.read().decode()
                hdrs = dict((k.lower(), v) for k, v in r.getheaders())
                got = reason(r.status, hdrs, body)
            except Exception as e:  # a reset connection is a failure too
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=5)
                got, hdrs, body = f"error {type(e).__name__}", {}, ""
            dt = time.time() - t0
            allowed = before | EXPECTED[cred]
            problems = []
            if got not in allowed:
                problems.append(f"{got} not in {sorted(allowed)}")
            if got == "200":
                want = f"id={CONSUMER_OF[cred]} "
                if want not in body or not body.strip().endswith("apikey=") or "forged" in body \
                        or "admins" in body:
                    problems.append(f"upstream saw {body.strip()!r}")
            with self.lock:
                self.counts[(node.name, cred, got)] = self.counts.get((node.name, cred, got), 0) + 1
                self.lat.append(dt)
                if "x-worker" in hdrs:
                    WORKERS.setdefault(node.name, set()).add(hdrs["x-worker"])
                if problems:
                    self.bad.append(f"{node.name} {cred}: " + "; ".join(problems))
            if self.gap:
                time.sleep(max(0.0, self.gap - dt))
        c.close()


WORKERS = {}  # node -> worker pids seen answering (traffic and probes)


def probe(node, cred):
    st, h, body = node.get("/api/probe", cred_headers(cred))
    if "x-worker" in h:
        WORKERS.setdefault(node.name, set()).add(h["x-worker"])
    return reason(st, h, body)


def converge(nodes, what, test, timeout=INTERVAL + MARGIN + 3.0):
    """Polls every node until `test(node)` holds; returns {node: seconds} (None: never)."""
    t0 = time.monotonic()
    done = {}
    while len(done) < len(nodes) and time.monotonic() - t0 < timeout:
        for n in nodes:
            if n.name not in done and test(n):
                done[n.name] = time.monotonic() - t0
        time.sleep(0.01)
    times = {n.name: done.get(n.name) for n in nodes}
    shown = ", ".join(f"{k} {v:.2f}s" if v is not None else f"{k} never" for k, v in times.items())
    print(f"  {what}: {shown}", flush=True)
    return times


# --- the run --------------------------------------------------------------------------------

def main():
    global TOKEN
    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(ROOT)
    TOKEN = subprocess.run(
        [GWJWT, "sign", "--key", os.path.join(REPO, "t/keys/hs256.jwk"), "--alg", "HS256",
         "--kid", "hs256", "--claims",
         json.dumps({"iss": "https://idp.test", "sub": "alice", "jti": JTI, "exp": 4102444800})],
        capture_output=True, text=True, check=True).stdout.strip()
    server = PolicyServer()
    state, version = {}, 1
    doc = document("v1", state)
    server.set(doc)
    a = Node("node-a", "url", server.port)
    b = Node("node-b", "url", server.port)
    f = Node("node-file", "file", server.port)
    nodes = [a, b, f]
    with open(f.file, "wb") as fh:
        fh.write(doc)
    propagation = {}
    traffic = None
    started = time.monotonic()

    def publish(doc):
        server.set(doc)
        tmp = f.file + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(doc)
        os.replace(tmp, f.file)  # the file changes whole, as a deploy would

    def version_of(n):
        return n.status().get("policy", {}).get("version")

    try:
        for n in nodes:
            n.start()
        t = converge(nodes, "first document (v1)", lambda n: version_of(n) == "v1", timeout=10)
        if any(v is None for v in t.values()):
            raise SystemExit(f"the first document was not loaded: {[n.status() for n in nodes]}")
        pids = {n.name: n.pids() for n in nodes}
        for n in nodes:
            check(len(pids[n.name][1]) == 2, f"{n.name}: master {pids[n.name][0]}, 2 workers {pids[n.name][1]}")
        traffic = Traffic(nodes)
        traffic.start()
        time.sleep(0.5)

        def change(name, cred, old, new):
            """Applies change `name`; `cred` goes from answer `old` to `new` on every node."""
            nonlocal version
            version += 1
            state[name] = True
            print(f"{name}: v{version}, {cred}: {old} -> {new}", flush=True)
            if cred in EXPECTED:
                EXPECTED[cred] = {old, new}
            publish(document(f"v{version}", state))
            t = converge(nodes, "took effect", lambda n: probe(n, cred) == new)
            if cred in EXPECTED:
                EXPECTED[cred] = {new}
            record(name, t)

        def record(name, t):
            propagation[name] = t
            for node, secs in t.items():
                check(secs is not None and secs <= INTERVAL + MARGIN,
                      f"{name} on {node} within {INTERVAL + MARGIN:.0f} s"
                      + (f" ({secs:.2f} s)" if secs is not None else " (never)"))

        change("admit", "newbie", "401 key_unknown", "200")
        change("revoke", "victim", "200", "401 key_revoked")

        # plan: at the low plan the planner passes LOW times an hour on each node, then 429
        print(f"plan: v{version + 1}, planner: {LOW}/h -> {HIGH}/h", flush=True)
        for n in nodes:
            res = [probe(n, "planner").split()[0] for _ in range(LOW + 2)]
            check(res == ["200"] * LOW + ["429"] * 2, f"{n.name}: low plan enforced: {res}")
        version += 1
        state["plan"] = True
        publish(document(f"v{version}", state))
        t = converge(nodes, "took effect", lambda n: probe(n, "planner") == "200")
        record("plan", t)
        for n in nodes:
            more = 1  # the probe that saw the change passed
            while more <= HIGH and probe(n, "planner") == "200":
                more += 1
            check(1 <= more <= HIGH - LOW,
                  f"{n.name}: counters kept: {more} more passed at {HIGH}/h after {LOW} (not {HIGH})")

        change("group", "grouper", "200", "403 group_forbidden")
        change("jti", "alice", "200", "401 token_revoked")
        good = f"v{version}"

        for bad_name, bad_doc, code in (
                ("bad_json", b'{"version": "v-broken", "consumers": [', "bad_json"),
                ("duplicate_id", document("v-dup", state).replace(b'"id": "victim"', b'"id": "steady"'),
                 "duplicate_id")):
            print(f"{bad_name}: an invalid document is refused, {good} stays", flush=True)
            before = {n.name: n.metric("gateway_policy_loads_total", 'result="refused"') or 0
                      for n in nodes}
            publish(bad_doc)
            t = converge(nodes, "refused", lambda n: (n.metric(
                "gateway_policy_loads_total", 'result="refused"') or 0) > before[n.name])
            for n in nodes:
                check(t[n.name] is not None, f"{n.name}: gateway_policy_loads_total{{result=\"refused\"}} grew")
                st = n.status().get("policy", {})
                check(st.get("version") == good, f"{n.name}: status shows {st.get('version')} == {good}")
                check(code in (st.get("last_error") or ""), f"{n.name}: status last_error {st.get('last_error')!r}")
                s, h, _ = n.get("/api/x", cred_headers("steady"))
                check(s == 200 and h.get("x-policy-version") == good,
                      f"{n.name}: served with {h.get('x-policy-version')} ({s})")
                check(probe(n, "victim") == "401 key_revoked" and probe(n, "newbie") == "200"
                      and probe(n, "alice") == "401 token_revoked",
                      f"{n.name}: behaviour unchanged")
                log = n.log()
                check(re.search(r"document refused: " + code + r".*version \"" + good + r"\" stays in force", log)
                      is not None, f"{n.name}: error log has the refusal ({code})")

        print("recover: a good document again", flush=True)
        version += 1
        publish(document(f"v{version}", state))
        t = converge(nodes, "took effect", lambda n: n.get("/api/x", cred_headers("steady"))[1]
                     .get("x-policy-version") == f"v{version}")
        record("recover", t)

        # unchanged at the source: the URL nodes' checks are answered 304
        unchanged = server.counts[304]
        time.sleep(2.5)
        check(server.counts[304] >= unchanged + 2,
              f"unchanged document: conditional checks answered 304 ({server.counts[304] - unchanged})")
        traffic.stop()
        for n in nodes:
            now = n.pids()
            check(now == pids[n.name], f"{n.name}: no reload, no respawn: pids {now}")
        elapsed = time.monotonic() - started
        total = sum(traffic.counts.values())
        summary = {}
        for (node, cred, got), k in sorted(traffic.counts.items()):
            summary.setdefault(f"{node} {cred}", []).append(f"{got} x{k}")
        print(f"traffic: {total} requests")
        for k, v in summary.items():
            print(f"  {k}: {', '.join(v)}")
        check(not traffic.bad, f"every response in its phase's expected set, upstream saw the "
                               f"consumer only: {len(traffic.bad)} bad {traffic.bad[:5]}")
        five = sum(k for (_, _, got), k in traffic.counts.items() if got[0] in "5e")
        check(five == 0, f"no 5xx, no connection error ({five})")
        for n in nodes:
            w = WORKERS.get(n.name, set())
            check(len(w) == 2, f"{n.name}: both workers answered ({sorted(w)})")
        traffic.lat.sort()
        p99 = traffic.lat[int(len(traffic.lat) * 0.99)] * 1000 if traffic.lat else 0
        print(f"  latency p99 {p99:.1f} ms")
        fetches = server.counts[200] + server.counts[304]
        bound = 2 * (elapsed / INTERVAL) * 1.5 + 4
        check(server.counts[304] > 0 and fetches <= bound,
              f"policy server: {server.counts[200]} x 200, {server.counts[304]} x 304 "
              f"(conditional, at most ~1 check/s per node: {fetches} <= {bound:.0f} in {elapsed:.0f} s)")
    finally:
        if traffic and not traffic.stop_flag:
            traffic.stop()
        for n in nodes:
            if hasattr(n, "proc"):
                n.stop()
        server.stop()
    for n in nodes:
        bad = [l for l in n.log().splitlines() if "[alert]" in l or "[emerg]" in l or "[crit]" in l
               or "exited on signal" in l]
        check(not bad, f"{n.name}: no alert/crit/emerg/crash in error.log {bad[:3]}")

    print("\npropagation (seconds from the change at the source until the node shows it):")
    names = [n.name for n in nodes]
    print(f"  {'change':<10}" + "".join(f"{x:>12}" for x in names))
    for ch, t in propagation.items():
        print(f"  {ch:<10}" + "".join(f"{t[x]:>12.2f}" if t[x] is not None else f"{'never':>12}"
                                      for x in names))
    if FAILED:
        print(f"\n{len(FAILED)} check(s) failed")
        sys.exit(1)
    print(f"\nall policy checks passed in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
