#!/usr/bin/env python3
"""The metrics exposition, live, parsed by the reference parsers of prometheus_client (Debian
package python3-prometheus-client), and the Grafana dashboard checked against it.

    scripts/test-metrics.py NGINX MODULE.so [DASHBOARD.json]

One nginx (2 workers) on free loopback ports with every metric feature in use (routes, an
upstream block, histograms, trace context, per-consumer series, a rate limit, a policy), some
traffic, then:
  - the text format 0.0.4 (no Accept) parses with prometheus_client.parser, with its content
    type; histograms are cumulative, `_count` equals the `+Inf` bucket;
  - OpenMetrics 1.0 (Accept: application/openmetrics-text, as Prometheus sends it) parses with
    prometheus_client.openmetrics.parser (which insists on `# EOF`, counter families without
    `_total`, units matching names), with its content type, and has the same samples;
  - the dashboard (default nginx-conf/grafana-dashboard.json) is a Grafana dashboard JSON
    (title, uid, schemaVersion, panels with unique ids, gridPos, a datasource variable, a
    PromQL expr per target), and every gateway_* series its queries name is in the exposition.
"""
import base64
import hashlib
import hmac
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

from testports import free_port  # scripts/testports.py: never the same port twice

try:
    from prometheus_client.openmetrics.parser import \
        text_string_to_metric_families as om_families
    from prometheus_client.parser import text_string_to_metric_families as text_families
except ImportError:
    # The Debian package is for Debian's python3; another python3 may come first in PATH.
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != \
            os.path.realpath("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise SystemExit("prometheus_client is missing: apt-get install python3-prometheus-client")

NGINX, MODULE = sys.argv[1], os.path.abspath(sys.argv[2])
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DASHBOARD = sys.argv[3] if len(sys.argv) > 3 else os.path.join(
    REPO, "nginx-conf", "grafana-dashboard.json")
ROOT = os.path.join(REPO, "target", "metrics-test")
FAILED = []
OM_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
             "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def check(cond, what):
    print(("  ok    " if cond else "  FAIL  ") + what, flush=True)
    if not cond:
        FAILED.append(what)


def token(sub):
    """An HS256 token for t/keys/hs256.jwk (iss https://idp.example, exp 2100)."""
    with open(os.path.join(REPO, "t", "keys", "hs256.jwk")) as f:
        k = json.load(f)["k"]
    key = base64.urlsafe_b64decode(k + "=" * (-len(k) % 4))

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    h = b64(json.dumps({"alg": "HS256", "kid": "hs256", "typ": "JWT"}).encode())
    p = b64(json.dumps({"exp": 4102444800, "iss": "https://idp.example", "sub": sub}).encode())
    sig = b64(hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"{h}.{p}.{sig}"


def start_nginx():
    port, backend = free_port(), free_port()
    shutil.rmtree(ROOT, ignore_errors=True)
    for d in ("conf", "logs"):
        os.makedirs(os.path.join(ROOT, d))
    shutil.copy(os.path.join(REPO, "nginx-conf", "policy.json"), os.path.join(ROOT, "conf"))
    conf = f"""
load_module {MODULE};
worker_processes 2;
daemon off;
master_process on;
error_log logs/error.log info;
pid logs/nginx.pid;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    gateway_policy file={ROOT}/conf/policy.json interval=10s;
    gateway_metrics_consumers max=3;
    gateway_trace on sample=0.5;
    rate_limit_zone $remote_addr zone=per_ip:1m;
    upstream app {{
        server 127.0.0.1:{backend};
    }}
    server {{
        listen 127.0.0.1:{backend};
        location / {{ return 200 "app $http_traceparent\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        gateway_route api;
        location /api/ {{
            auth_jwt "api";
            auth_jwt_key_file {REPO}/t/keys/hs256.jwk;
            rate_limit zone=per_ip rate=20r/m policy=per_ip;
            proxy_set_header traceparent $gateway_traceparent;
            proxy_pass http://app;
        }}
        location /public/ {{
            gateway_route public;
            proxy_pass http://app;
        }}
        location = /metrics {{
            gateway_route metrics;
            gateway_metrics;
        }}
    }}
}}
"""
    with open(os.path.join(ROOT, "conf", "nginx.conf"), "w") as f:
        f.write(conf)
    proc = subprocess.Popen([NGINX, "-p", ROOT + "/", "-c", "conf/nginx.conf"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("nginx did not start: " + proc.stderr.read().decode(errors="replace"))


def get(port, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.getheader("Content-Type", ""), r.read().decode()
    finally:
        c.close()


def samples(families):
    out = {}
    for f in families:
        for s in f.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            out[key] = s.value
    return out


def check_histograms(fams, what):
    ok = True
    for f in fams:
        if f.type != "histogram":
            continue
        series = {}
        for s in f.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            series.setdefault(labels, []).append(s)
        for labels, ss in series.items():
            buckets = [(float(s.labels["le"]), s.value) for s in ss if s.name.endswith("_bucket")]
            count = [s.value for s in ss if s.name.endswith("_count")]
            values = [v for _, v in buckets]
            ok &= bool(buckets) and buckets[-1][0] == math.inf
            ok &= values == sorted(values)
            ok &= count == [buckets[-1][1]]
    check(ok, f"{what}: every histogram is cumulative, ends with +Inf, _count = +Inf bucket")


def check_dashboard(names):
    try:
        with open(DASHBOARD) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        check(False, f"dashboard {DASHBOARD} loads as JSON: {e}")
        return
    check(isinstance(d.get("title"), str) and d["title"], "dashboard has a title")
    check(isinstance(d.get("uid"), str) and d["uid"], "dashboard has a uid")
    check(isinstance(d.get("schemaVersion"), int), "dashboard has an integer schemaVersion")
    templ = d.get("templating", {}).get("list", [])
    check(any(t.get("type") == "datasource" and t.get("query") == "prometheus" for t in templ),
          "dashboard has a Prometheus datasource variable")
    panels = d.get("panels", [])
    flat = []
    for p in panels:
        flat.append(p)
        flat.extend(p.get("panels", []))
    ids = [p.get("id") for p in flat]
    check(bool(flat) and len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids),
          f"dashboard has panels with unique integer ids ({len(flat)})")
    check(all(isinstance(p.get("gridPos"), dict) and
              all(isinstance(p["gridPos"].get(k), int) for k in ("h", "w", "x", "y"))
              for p in flat), "every panel has a gridPos")
    exprs = [t.get("expr") for p in flat if p.get("type") != "row"
             for t in p.get("targets", [])]
    check(bool(exprs) and all(isinstance(e, str) and e for e in exprs),
          f"every panel target has a PromQL expr ({len(exprs)})")
    check(all(p.get("type") == "row" or p.get("targets") for p in flat),
          "every panel but rows has targets")
    used = sorted({m for e in exprs if isinstance(e, str)
                   for m in re.findall(r"\bgateway_[a-z0-9_]+", e)})
    missing = [m for m in used if m not in names]
    check(not missing, f"every series the dashboard queries ({len(used)}) is exposed"
          + (f"; missing: {missing}" if missing else ""))


def main():
    proc, port = start_nginx()
    try:
        good = token("alice")
        for i in range(6):
            get(port, "/api/x", {"Authorization": f"Bearer {good}"})
        get(port, "/api/x", {"Authorization": "Bearer nope"})
        get(port, "/api/x")
        for i in range(5):
            get(port, "/api/x", {"Authorization": f"Bearer {token(f'user-{i}')}"})
        get(port, "/public/x", {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
        st, ctype, text = get(port, "/metrics")
        check(st == 200 and ctype == "text/plain; version=0.0.4; charset=utf-8",
              f"text format: 200 and its content type ({st}, {ctype})")
        try:
            tf = list(text_families(text))
            check(True, f"text format parses ({len(tf)} families)")
        except Exception as e:  # noqa: BLE001 - any parser error is the failure
            tf = []
            check(False, f"text format parses: {e}")
        st, ctype, om = get(port, "/metrics", {"Accept": OM_ACCEPT})
        check(st == 200 and ctype == "application/openmetrics-text; version=1.0.0; charset=utf-8",
              f"OpenMetrics: 200 and its content type ({st}, {ctype})")
        try:
            of = list(om_families(om))
            check(True, f"OpenMetrics parses ({len(of)} families)")
        except Exception as e:  # noqa: BLE001
            of = []
            check(False, f"OpenMetrics parses: {e}")
        check(om.endswith("# EOF\n"), "OpenMetrics ends with # EOF")
        exemplars = [s.exemplar for f in of for s in f.samples if s.exemplar]
        check(bool(exemplars) and all(re.fullmatch(r"[0-9a-f]{32}", e.labels.get("trace_id", ""))
                                      for e in exemplars),
              f"OpenMetrics: latency buckets carry exemplars with a trace_id ({len(exemplars)})")
        check("# {" not in text, "text format: no exemplars")
        check_histograms(tf, "text format")
        check_histograms(of, "OpenMetrics")
        ts, os_ = samples(tf), samples(of)
        # The scrapes are two requests apart (the first scrape counted in between).
        same = {k for k in ts if not k[0].startswith("gateway_request")} - set(os_)
        check(not same, "OpenMetrics has every sample of the text format"
              + (f"; missing {sorted(same)[:5]}" if same else ""))
        names = {k[0] for k in ts}
        for fam in ("gateway_request_duration_seconds_bucket",
                    "gateway_upstream_response_duration_seconds_bucket",
                    "gateway_processing_duration_seconds_bucket",
                    "gateway_upstream_responses_total", "gateway_consumer_requests_total",
                    "gateway_metrics_labels_dropped_total", "gateway_route_rate_limit_total"):
            check(fam in names, f"{fam} is exposed")
        n_consumers = len([k for k in ts if k[0] == "gateway_consumer_requests_total"])
        check(n_consumers == 4, f"max=3 consumers + other ({n_consumers} series)")
        check_dashboard(names)
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    with open(os.path.join(ROOT, "logs", "error.log")) as f:
        bad = [l for l in f if re.search(r"\[(alert|crit|emerg)\]", l)]
    check(not bad, "no [alert], [crit] or [emerg] in the error log" + "".join(bad[:3]))
    if FAILED:
        print(f"{len(FAILED)} check(s) failed")
        sys.exit(1)
    print("metrics exposition: all checks passed")


main()
