#!/usr/bin/env python3
"""Soak test: nginx with the module under full wrk load for a while, with reloads, log
reopens and a killed worker, then checks that nothing went wrong. Driven by scripts/soak.

Load (wrk with a Lua script, loopback): a mix of valid tokens (200, some 429), tokens with a
bad signature and no token (401), valid tokens without a required scope (403), ten hot keys
limited to 5r/s (429), 100,000 distinct limit keys (200), and API keys of consumers from a
policy file (200, or 401 for an unknown or revoked key), and a browser session cookie (200). Meanwhile: a new version of the policy
file every 3 s (a key revoked, then back), SIGHUP (reload)
every --reload-every seconds, every 4th reload a log rotation (rename, then SIGUSR1), one
SIGKILL to a worker halfway, the key provider (keys come by auth_jwt_key_request from a
server block of the same nginx) answering 503 from 55% to 70% of the run, and a check of an
exact counter under all that.

Checks (each failure is printed and makes the exit status 1):
  statuses   every response wrk got (its Lua `response` callback) is 200, 401, 403 or 429,
             and so is every status in nginx's access_log;
  crashes    error.log has exactly one "exited on signal", the SIGKILL we sent, and no
             [alert]/[crit]/[emerg];
  exact      a dedicated key limited to K per day (a zone synced through a Redis started
             here), hit K+500 times over parallel fresh connections during the reloads:
             exactly K are admitted, the rest are 429; after the load, a fresh key: exactly
             K admitted and Redis holds exactly K for it (during the load Redis's count is
             printed: a killed worker 0 can take an exchange in flight with it);
  log        every gateway_log line (all rotated files) is a JSON object, every file ends
             with a newline, and per worker pid the JSON lines equal nginx's own access_log
             lines (both are written in the log phase of the same request by the same
             worker), except for the killed worker, whose unwritten buffer (at most
             buffer=64k) is lost with it: there only JSON <= access is required, and the
             deficit is printed. access_log lines - wrk's completed responses must be within
             0..connections (requests in flight when wrk stopped), or -connections..connections
             with a killed worker (it may send a response and die before logging it);
  workers    after the load, exactly worker_processes workers run (old ones all exited);
  policy     the last version written is the one in force (gateway_status), and no check of
             the policy file failed;
  oidc       a browser session made before the load (a real sign-in against scripts/oidc)
             serves requests throughout and is still valid at the end;
  metrics    the exposition parses (prometheus_client), at most 101 consumer series
             (gateway_metrics_consumers max=100), the route's request histogram counts every
             request of the route; every JSON record carries a trace id and span id
             (gateway_trace on; half the /api requests continue a caller's traceparent);
  rss        master and worker RssAnon (private memory, without the shared zones) after
             warm-up and at the end; "flat" = end <= start * 1.25 + 4 MB.
The key-provider failure part needs auth_jwt_key_request, which this build does not have:
it is reported as skipped.
"""
import argparse
import collections
import glob
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from testports import free_port  # scripts/testports.py: never the same port twice

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKERS = 2
EXACT_K = 1000
EXACT_EXTRA = 500
CONNECTIONS = 64


def write_policy(work, n):
    """Version soak-N of the policy: soak-key-0 and soak-key-1 belong to consumers (plan big),
    soak-key-2 to nobody (401); on odd N soak-key-1 is revoked (401). Written atomically."""
    import hashlib
    digest = lambda k: hashlib.sha256(k.encode()).hexdigest()
    doc = {
        "version": f"soak-{n}",
        "plans": {"big": {"limits": {"second": 1000000}}},
        "consumers": [{"id": f"c{i}", "plan": "big",
                       "credentials": {"api_keys": [{"sha256": digest(f"soak-key-{i}")}]}}
                      for i in range(2)],
        "deny": {"api_keys": [digest("soak-key-1")] if n % 2 else []},
    }
    tmp = os.path.join(work, "policy.json.tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.rename(tmp, os.path.join(work, "policy.json"))


def mint(gwjwt, sub, scope):
    claims = json.dumps({"sub": sub, "iss": "https://idp.example/", "exp": 4102444800,
                         "scope": scope})
    # EdDSA: a published key set holds public keys only (an HMAC secret in it is refused).
    return subprocess.run([gwjwt, "sign", "--key", os.path.join(ROOT, "t/keys/ed25519.key.pem"),
                           "--alg", "EdDSA", "--kid", "ed25519", "--claims", claims],
                          capture_output=True, text=True, check=True).stdout.strip()


CONF = """load_module {module};
daemon off;
master_process on;
worker_processes {workers};
error_log logs/error.log notice;
pid logs/nginx.pid;
{user}
events {{ worker_connections 4096; accept_mutex off; }}
http {{
    log_format soak '$pid $status $uri';
    access_log logs/access.log soak;
    keepalive_requests 1000000;
    rate_limit_zone $jwt_claim_sub zone=subs:1m;
    rate_limit_zone $http_x_key zone=keys:16m;
    # Synced through a Redis of the soak's own: one node, so still exact; Redis must end up
    # with exactly what was admitted (pushed once, across reloads).
    rate_limit_zone $http_x_exact zone=exact:1m sync=redis://127.0.0.1:{rport}/0 sync_interval=100ms;
    gateway_log logs/gw.json buffer=64k flush=1s;
    gateway_log_field pid $pid;
    # Observability: routes, trace context, per-consumer series (capped), histograms.
    gateway_trace on sample=0.5;
    gateway_metrics_consumers max=100;
    # Browser sessions: one sign-in before the load; its cookie is used throughout.
    oidc_provider idp {{
        issuer http://127.0.0.1:{oport};
        client_id gateway;
        client_secret gateway-secret;
        discovery_request /_oidc/discovery;
        keys_request /_oidc/keys;
        token_request /_oidc/token;
        redirect_uri /web/cb;
        session_zone oidc_soak:4m;
        allow_http;
    }}
    # Consumers: the soak rewrites the policy file every few seconds (a key revoked and back).
    gateway_policy file={work}/policy.json interval=1s;
    rate_limit_zone $gateway_consumer zone=consumers:1m;
    # Keys come from a key provider (below) by subrequest; the soak takes it down for a while.
    auth_jwt_key_request /_jwks;
    auth_jwt_key_cache 2s;
    auth_jwt_key_refresh_interval 1s;
    server {{
        listen 127.0.0.1:{pport};
        access_log off;
        gateway_log off;
        location = /jwks.json {{
            if (-f {work}/provider-down) {{ return 503; }}
            default_type application/json;
            alias {root}/t/keys/jwks.json;
        }}
    }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location = /_jwks {{ internal; proxy_pass http://127.0.0.1:{pport}/jwks.json; }}
        location /api {{ gateway_route api; auth_jwt "api"; rate_limit zone=subs rate=100r/s; empty_gif; }}
        location /admin {{ auth_jwt "api"; auth_jwt_require_claim scope any admin; empty_gif; }}
        location /keys {{ rate_limit zone=keys rate=10r/m; empty_gif; }}
        location /hot {{ rate_limit zone=keys rate=5r/s; empty_gif; }}
        location /exact {{ rate_limit zone=exact rate={k}r/d; empty_gif; }}
        location /consumer {{ gateway_route consumer; auth_api_key header=X-API-Key; rate_limit zone=consumers plan; empty_gif; }}
        location = /status {{ gateway_status; }}
        location = /metrics {{ gateway_metrics; }}
        location = /_oidc/discovery {{ internal; proxy_pass http://127.0.0.1:{oport}/.well-known/openid-configuration; }}
        location = /_oidc/keys {{ internal; proxy_pass $oidc_jwks_uri; }}
        location = /_oidc/token {{ internal; proxy_pass $oidc_token_endpoint; subrequest_output_buffer_size 64k; }}
        location /web/ {{ auth_oidc idp; empty_gif; }}
    }}
}}
"""

LUA = r"""
local tokens = { %(tokens)s }
local bad = "%(bad)s"
local noscope = "%(noscope)s"
local session = "%(session)s"
local threads = {}
tid = 0
local i = 0
counts = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  i = tid * 1000003
end

request = function()
  i = i + 1
  local m = i %% 10
  if m < 3 then
    return wrk.format("GET", "/api", { ["Authorization"] = "Bearer " .. tokens[i %% #tokens + 1],
                                       ["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0" .. (i %% 2) })
  elseif m == 3 then
    return wrk.format("GET", "/api", { ["Authorization"] = "Bearer " .. bad })
  elseif m == 4 then
    return wrk.format("GET", "/api", {})
  elseif m == 5 then
    return wrk.format("GET", "/admin", { ["Authorization"] = "Bearer " .. noscope })
  elseif m == 6 then
    return wrk.format("GET", "/hot", { ["X-Key"] = "hot-" .. (i %% 10) })
  elseif m == 9 and i %% 2 == 0 then
    return wrk.format("GET", "/consumer", { ["X-API-Key"] = "soak-key-" .. (i %% 3) })
  elseif m == 9 then
    return wrk.format("GET", "/web/page", { ["Cookie"] = "gw_session=" .. session })
  else
    return wrk.format("GET", "/keys", { ["X-Key"] = "k-" .. (i %% 100000) })
  end
end

response = function(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

done = function(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for s, n in pairs(c) do total[s] = (total[s] or 0) + n end
  end
  local f = io.open(os.getenv("SOAK_COUNTS"), "w")
  for s, n in pairs(total) do f:write(s .. " " .. n .. "\n") end
  f:write("requests " .. summary.requests .. "\n")
  f:write("connect_errors " .. summary.errors.connect .. "\n")
  f:write("read_errors " .. summary.errors.read .. "\n")
  f:write("write_errors " .. summary.errors.write .. "\n")
  f:write("timeouts " .. summary.errors.timeout .. "\n")
  f:close()
end
"""


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[1]) == pid and rest[0] != "Z":
            out.append(int(d))
    return sorted(out)


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def is_shutting_down(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"shutting down" in f.read()
    except OSError:
        return True


def rss(master):
    workers = [p for p in children(master) if not is_shutting_down(p)]
    return {
        "master_anon_kb": status_kb(master, "RssAnon"),
        "workers_anon_kb": [status_kb(p, "RssAnon") for p in workers],
        "workers_rss_kb": [status_kb(p, "VmRSS") for p in workers],
    }


def redis_total(rport, key, period_ms):
    """The Redis total of a synced zone's key (all its windows; see counter_key)."""
    import hashlib
    kid = hashlib.sha256(key.encode() + period_ms.to_bytes(8, "big")).hexdigest()[:32]
    cli = ["redis-cli", "-p", str(rport)]
    keys = subprocess.run(cli + ["KEYS", f"gw:{{exact}}:{kid}:*"], capture_output=True,
                          text=True).stdout.split()
    return sum(int(subprocess.run(cli + ["GET", k], capture_output=True, text=True).stdout.strip()
                   or 0) for k in keys)


def exact_check(port, key, n, threads=8):
    """n GETs of /exact with one key over `threads` parallel fresh connections."""
    results = collections.Counter()
    lock = threading.Lock()
    todo = list(range(n))

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            status = None
            for _attempt in range(20):
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    c.request("GET", "/exact", headers={"X-Exact": key, "Connection": "close"})
                    status = c.getresponse().status
                    c.close()
                    break
                except (OSError, http.client.HTTPException):
                    # Refused or reset before a request was read (a reload closing the
                    # listening socket of an old worker): retry.
                    time.sleep(0.05)
            with lock:
                results[status] += 1

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results


def metrics_problems(text):
    """The exposition after the load: it parses (prometheus_client), the consumer series stay
    within the cap (max=100 + other), the route histograms are consistent."""
    # Parsed by Debian's python3 (python3-prometheus-client), which may not be this one.
    script = ("import json,sys\nfrom prometheus_client.parser import text_string_to_metric_families as t\n"
              "print(json.dumps([[s.name, s.labels, s.value] for f in t(sys.stdin.read()) "
              "for s in f.samples]))")
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    out = subprocess.run([py, "-c", script], input=text, capture_output=True, text=True)
    if "No module named 'prometheus_client'" in out.stderr:
        print("\nmetrics: prometheus_client missing, exposition not parsed")
        return []
    if out.returncode != 0:
        return ["metrics: the exposition does not parse: "
                + (out.stderr.strip().splitlines() or ["?"])[-1]]
    Sample = collections.namedtuple("Sample", "name labels value")
    samples = [Sample(*x) for x in json.loads(out.stdout)]
    consumers = [s for s in samples if s.name == "gateway_consumer_requests_total"]
    api = [s for s in samples if s.name.startswith("gateway_request_duration_seconds")
           and s.labels.get("route") == "api"]
    inf = [s.value for s in api if s.labels.get("le") == "+Inf"]
    count = [s.value for s in api if s.name.endswith("_count")]
    routed = sum(s.value for s in samples if s.name == "gateway_requests_total"
                 and s.labels.get("route") == "api")
    print(f"\nmetrics: {len(consumers)} consumer series (cap 100 + other), route api "
          f"{routed:.0f} requests, request histogram count {count}")
    out = []
    if not 1 <= len(consumers) <= 101:
        out.append(f"metrics: {len(consumers)} consumer series, want 1..101")
    # Counted one after the other in the same log phase: a worker killed in between may
    # leave one apart.
    if not routed or inf != count or not count or abs(count[0] - routed) > 1:
        out.append(f"metrics: route api: {routed} requests, histogram +Inf {inf}, count {count}")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nginx", required=True)
    ap.add_argument("--module", required=True)
    ap.add_argument("--gwjwt", required=True)
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--reload-every", type=float, default=5.0)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    secs = max(args.seconds, 40)
    warmup = 10.0

    work = tempfile.mkdtemp(prefix="gw-soak-")
    for d in ("conf", "logs", "redis"):
        os.makedirs(os.path.join(work, d))
    rport = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir",
                              os.path.join(work, "redis")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import atexit
    atexit.register(redis.terminate)
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    oport = free_port()
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from bench import oidc_login  # noqa: E402  (the sign-in driver of scripts/bench)
    provider = subprocess.Popen(["node", os.path.join(ROOT, "scripts/oidc/provider.js"),
                                 str(oport), "--gateway-ports", str(port),
                                 "--redirect-path", "/web/cb"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if "ready" not in provider.stdout.readline():
        sys.exit("the OpenID provider did not start")
    with open(os.path.join(work, "conf/nginx.conf"), "w") as f:
        f.write(CONF.format(module=args.module, workers=WORKERS, user=user, root=ROOT,
                            port=port, pport=free_port(), work=work, k=EXACT_K, oport=oport,
                            rport=rport))
    policy_n = 0
    write_policy(work, policy_n)
    tokens = [mint(args.gwjwt, f"user-{i}", "read") for i in range(20)]
    bad = tokens[0][:-4] + ("AAAA" if not tokens[0].endswith("AAAA") else "BBBB")
    noscope = mint(args.gwjwt, "nobody", "read")
    lua = os.path.join(work, "soak.lua")
    counts_file = os.path.join(work, "wrk-counts.txt")

    nginx = subprocess.Popen([args.nginx, "-p", work + "/", "-c", "conf/nginx.conf",
                              "-e", os.path.join(work, "logs/error.log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            if nginx.poll() is not None:
                sys.exit("nginx did not start: " + nginx.stderr.read().decode(errors="replace"))
            time.sleep(0.05)
    master = nginx.pid
    # One browser sign-in against the provider; its session cookie joins the load (200s
    # through the reloads and the killed worker: sessions live in the shared zone).
    session = oidc_login(port, oport, path="/web/page")
    with open(lua, "w") as f:
        f.write(LUA % {"tokens": ", ".join(f'"{t}"' for t in tokens), "bad": bad,
                       "noscope": noscope, "session": session})
    problems = []
    events = collections.Counter()
    t0 = time.time()
    env = dict(os.environ, SOAK_COUNTS=counts_file)
    wrk = subprocess.Popen(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{secs}s", "--timeout", "10s",
                            "-s", lua, f"http://127.0.0.1:{port}/"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    print(f"soak: {secs}s of wrk -t2 -c{CONNECTIONS} against nginx ({WORKERS} workers) "
          f"on 127.0.0.1:{port}, work dir {work}", flush=True)

    time.sleep(warmup)
    rss_start = rss(master)
    killed = None
    kill_at = t0 + secs / 2
    exact_at = t0 + secs / 3
    exact_result = {}
    exact_thread = None
    rotation = 0
    down_file = os.path.join(work, "provider-down")
    down_at, up_at = t0 + secs * 0.55, t0 + secs * 0.7
    next_reload = time.time()
    next_policy = time.time() + 3
    stop_reloads = t0 + secs - 12
    while time.time() < stop_reloads:
        now = time.time()
        if now >= next_policy:
            policy_n += 1
            write_policy(work, policy_n)
            events["policy"] += 1
            next_policy = now + 3
        if exact_thread is None and now >= exact_at:
            def run_exact():
                exact_result["counts"] = exact_check(port, "exact-during-load",
                                                     EXACT_K + EXACT_EXTRA)
            exact_thread = threading.Thread(target=run_exact)
            exact_thread.start()
        if killed is None and now >= kill_at:
            ws = [p for p in children(master) if not is_shutting_down(p)]
            if ws:
                killed = ws[0]
                os.kill(killed, signal.SIGKILL)
                events["sigkill"] += 1
                print(f"  t={now - t0:5.1f}s SIGKILL worker {killed}", flush=True)
        if now >= down_at and not events["provider_down"]:
            open(down_file, "w").close()
            events["provider_down"] += 1
            print(f"  t={now - t0:5.1f}s key provider down (503)", flush=True)
        if now >= up_at and events["provider_down"] and not events["provider_up"]:
            os.unlink(down_file)
            events["provider_up"] += 1
            print(f"  t={now - t0:5.1f}s key provider back", flush=True)
        if now >= next_reload:
            events["reload"] += 1
            if events["reload"] % 4 == 0:
                rotation += 1
                for name in ("gw.json", "access.log"):
                    os.rename(os.path.join(work, "logs", name),
                              os.path.join(work, "logs", f"{name}.{rotation}"))
                os.kill(master, signal.SIGUSR1)
                events["reopen"] += 1
                time.sleep(0.2)
            os.kill(master, signal.SIGHUP)
            next_reload = now + args.reload_every
        time.sleep(0.1)
    if exact_thread is not None:
        exact_thread.join()
    # The last workers serve undisturbed until the end; sample them just before wrk stops.
    time.sleep(max(0.0, t0 + secs - 3 - time.time()))
    rss_end = rss(master)
    wrk_out = wrk.communicate()[0]
    time.sleep(1.5)  # flush=1s: let the workers write their buffers

    # After the load: the exact counter of a fresh key, all workers, no reload.
    after = exact_check(port, "exact-after-load", EXACT_K + EXACT_EXTRA)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/web/page", headers={"Cookie": f"gw_session={session}",
                                              "Accept": "application/json"})
    session_status = conn.getresponse().status
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/status")
    status_doc = json.loads(conn.getresponse().read())
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    metrics_text = conn.getresponse().read().decode()
    conn.close()
    time.sleep(2)
    live = [p for p in children(master) if not is_shutting_down(p)]
    lingering = [p for p in children(master) if is_shutting_down(p)]
    nginx.send_signal(signal.SIGQUIT)
    try:
        nginx.wait(30)
    except subprocess.TimeoutExpired:
        nginx.kill()
        problems.append("nginx did not exit within 30 s of SIGQUIT")
    if nginx.returncode not in (0, None):
        problems.append(f"nginx exited with status {nginx.returncode}")

    # ---- checks ----
    print(f"\nevents: {events['reload']} reloads (SIGHUP), {events['reopen']} log reopens "
          f"(rename + SIGUSR1), {events['sigkill']} worker SIGKILL"
          + (f" (pid {killed})" if killed else ""))
    err_text = open(os.path.join(work, "logs", "error.log"), errors="replace").read()
    in_force = (status_doc.get("policy") or {}).get("version")
    installed = len(re.findall(r'policy version "soak-\d+" from file', err_text))
    print(f"policy: {events['policy']} versions written (every 3 s), {installed} installs logged, "
          f"version in force at the end: {in_force} (last written: soak-{policy_n})")
    print(f"browser session: the cookie made before the load gets {session_status} after it "
          f"(reloads, reopens and a killed worker in between)")
    if session_status != 200:
        problems.append(f"oidc: the session made before the load got {session_status} after it")
    provider.terminate()
    if in_force != f"soak-{policy_n}":
        problems.append(f"policy: soak-{policy_n} was written last but {in_force} is in force")
    if "policy from file" in err_text:
        problems.append("policy: a check of the policy file failed (see error.log)")
    refused = len(re.findall(r'response from "/_jwks" refused: status 503', err_text))
    print(f"key provider: down {up_at - down_at:.0f}s (503); {refused} refusal line(s) logged "
          f"(at most one per refresh interval); valid tokens kept being accepted with the last "
          f"good set (the 200s and the no-5xx check below)")
    if events["provider_down"] and refused == 0:
        problems.append("key provider: the outage was never logged")

    wrk_counts = collections.Counter()
    extra = {}
    try:
        for line in open(counts_file):
            k, v = line.split()
            if k.isdigit():
                wrk_counts[int(k)] = int(v)
            else:
                extra[k] = int(v)
    except OSError:
        problems.append("wrk wrote no counts (its Lua done() did not run):\n" + wrk_out)
    m = re.search(r"Requests/sec:\s+([\d.]+)", wrk_out)
    responses = sum(wrk_counts.values())
    print(f"\nwrk: {responses} responses, {extra.get('requests', '?')} requests completed, "
          f"{m.group(1) if m else '?'} req/s; errors: connect {extra.get('connect_errors', '?')}, "
          f"read {extra.get('read_errors', '?')}, write {extra.get('write_errors', '?')}, "
          f"timeout {extra.get('timeouts', '?')}")
    print("  by status: " + ", ".join(f"{s}: {n}" for s, n in sorted(wrk_counts.items())))
    allowed = {200, 401, 403, 429}
    unexpected = {s: n for s, n in wrk_counts.items() if s not in allowed}
    for want in sorted(allowed):
        if wrk_counts[want] == 0:
            problems.append(f"statuses: no {want} at all; the mix should produce it")
    if unexpected:
        problems.append(f"statuses: unexpected responses {unexpected}")

    logs = os.path.join(work, "logs")
    access_files = sorted(glob.glob(os.path.join(logs, "access.log*")))
    access_by_pid = collections.Counter()
    access_status = collections.Counter()
    access_total_load = 0
    login_lines = 0
    for fn in access_files:
        for line in open(fn, errors="replace"):
            parts = line.split()
            if len(parts) != 3:
                problems.append(f"access_log: malformed line in {fn}: {line!r}")
                continue
            pid, status, uri = int(parts[0]), int(parts[1]), parts[2]
            access_by_pid[pid] += 1
            if status == 302 and uri.startswith("/web/"):
                login_lines += 1  # the sign-in before the load (redirect, callback)
                continue
            access_status[status] += 1
            if uri != "/exact":
                access_total_load += 1
    bad_access = {s: n for s, n in access_status.items() if s not in allowed}
    if bad_access:
        problems.append(f"statuses: nginx's access_log has statuses outside the set: {bad_access}")

    problems += metrics_problems(metrics_text)

    json_files = sorted(glob.glob(os.path.join(logs, "gw.json*")))
    json_by_pid = collections.Counter()
    json_lines = 0
    invalid = 0
    untraced = 0
    for fn in json_files:
        data = open(fn, "rb").read()
        if data and not data.endswith(b"\n"):
            problems.append(f"log: {os.path.basename(fn)} does not end with a newline")
        for raw in data.splitlines():
            json_lines += 1
            try:
                rec = json.loads(raw)
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
                json_by_pid[int(rec["pid"])] += 1
                if not (re.fullmatch(r"[0-9a-f]{32}", rec.get("trace_id", ""))
                        and re.fullmatch(r"[0-9a-f]{16}", rec.get("span_id", ""))):
                    untraced += 1
            except (ValueError, KeyError):
                invalid += 1
                if invalid <= 3:
                    problems.append(f"log: invalid JSON line in {os.path.basename(fn)}: {raw[:200]!r}")
    if untraced:
        problems.append(f"trace: {untraced} JSON lines without a well-formed trace_id and span_id")
    access_lines = sum(access_by_pid.values())
    print(f"\nlogs: {len(json_files)} gateway_log files, {json_lines} JSON lines ({invalid} invalid); "
          f"{len(access_files)} access_log files, {access_lines} lines; {len(access_by_pid)} worker pids")
    lost_killed = 0
    for pid in sorted(set(access_by_pid) | set(json_by_pid)):
        a, j = access_by_pid[pid], json_by_pid[pid]
        if pid == killed:
            lost_killed = a - j
            if j > a:
                problems.append(f"log: killed worker {pid}: {j} JSON lines > {a} access_log lines")
        elif a != j:
            problems.append(f"log: worker {pid}: {j} JSON lines, {a} access_log lines")
    print(f"  JSON lines == access_log lines for every worker but the killed one; the killed "
          f"worker's buffer lost {lost_killed} records (buffer=64k)")
    served_after_wrk = 2 * (EXACT_K + EXACT_EXTRA)
    diff = access_total_load - responses
    # Above 0: requests nginx logged whose responses wrk never read (in flight when it stopped).
    # Below 0, only with a killed worker: it can send a response and die before its log phase
    # writes the access_log line, at most once per connection it was serving.
    low = -CONNECTIONS if killed else 0
    print(f"  access_log lines of the load {access_total_load} - wrk responses {responses} = {diff} "
          f"(allowed {low}..{CONNECTIONS}: requests in flight when wrk stopped"
          + (", responses of the killed worker sent before their log line)" if killed else ")"))
    if not low <= diff <= CONNECTIONS:
        problems.append(f"log: access_log has {access_total_load} load requests, wrk got "
                        f"{responses} responses (difference {diff}, allowed {low}..{CONNECTIONS})")
    exact_lines = access_lines - access_total_load - login_lines
    if exact_lines != served_after_wrk:
        problems.append(f"log: {exact_lines} /exact lines in access_log, {served_after_wrk} sent")

    print("\nerror.log:")
    errlog = open(os.path.join(logs, "error.log"), errors="replace").read().splitlines()
    signals = [l for l in errlog if "exited on signal" in l]
    for l in signals:
        print("  " + l)
    if killed and not (len(signals) == 1 and f" {killed} exited on signal 9" in signals[0]):
        problems.append(f"crashes: expected exactly one 'exited on signal 9' for pid {killed}, "
                        f"got {len(signals)}")
    serious = [l for l in errlog if re.search(r"\[(alert|crit|emerg)\]", l)
               and "exited on signal 9" not in l]
    for l in serious[:10]:
        problems.append("error.log: " + l)
    print(f"  {len(serious)} [alert]/[crit]/[emerg] lines besides the SIGKILL")

    print(f"\nexact counter ({EXACT_K}r/d, {EXACT_K + EXACT_EXTRA} requests over 8 connections):")
    for label, res in (("during the load and the reloads", exact_result.get("counts")),
                       ("after the load", after)):
        print(f"  {label}: {dict(res) if res else 'not run'}")
        if res != collections.Counter({200: EXACT_K, 429: EXACT_EXTRA}):
            problems.append(f"exact: {label}: {dict(res) if res else None}, want "
                            f"{{200: {EXACT_K}, 429: {EXACT_EXTRA}}}")
    time.sleep(0.5)  # one sync interval and more
    for label, key in (("during the load and the reloads", "exact-during-load"),
                       ("after the load", "exact-after-load")):
        got = redis_total(rport, key, 86_400_000)
        print(f"  redis holds for the key {label}: {got}")
        if label == "after the load" and got != EXACT_K:
            problems.append(f"exact: redis holds {got} for the key {label}, want {EXACT_K}")
    redis.terminate()

    print(f"\nworkers after the load: {len(live)} running {live}, {len(lingering)} still shutting down")
    if len(live) != WORKERS or lingering:
        problems.append(f"workers: {len(live)} live and {len(lingering)} shutting down after the load")

    def kb(v):
        return f"{v / 1024:.1f} MB" if v is not None else "?"

    print("\nRSS (RssAnon = private memory, without the shared zones; VmRSS in brackets):")
    print(f"  master : after warm-up {kb(rss_start['master_anon_kb'])}, end {kb(rss_end['master_anon_kb'])}")
    for label, r in (("after warm-up", rss_start), ("end", rss_end)):
        print(f"  workers {label}: " + ", ".join(
            f"{kb(a)} [{kb(v)}]" for a, v in zip(r["workers_anon_kb"], r["workers_rss_kb"])))

    def flat(a, b):
        return a is not None and b is not None and b <= a * 1.25 + 4096

    if not flat(rss_start["master_anon_kb"], rss_end["master_anon_kb"]):
        problems.append("rss: the master's private memory grew beyond the tolerance")
    ws, we = max(rss_start["workers_anon_kb"] or [0]), max(rss_end["workers_anon_kb"] or [0])
    print(f"  flat (end <= start * 1.25 + 4 MB): master "
          f"{'yes' if flat(rss_start['master_anon_kb'], rss_end['master_anon_kb']) else 'NO'}, "
          f"workers (max) {'yes' if flat(ws, we) else 'NO'}")
    if not flat(ws, we):
        problems.append(f"rss: worker private memory grew from {kb(ws)} to {kb(we)}")

    print()
    if problems:
        print(f"SOAK FAILED: {len(problems)} problem(s)")
        for p in problems:
            print("  - " + p)
        print(f"work dir kept: {work}")
        sys.exit(1)
    print("SOAK OK: every check passed")
    if args.keep:
        print(f"work dir kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
