#!/usr/bin/env python3
"""Side-by-side benchmark of nginx with and without ngx-gateway features.

Every case is an nginx instance (one worker pinned to CPU 0 with taskset, keepalive_requests
high so wrk never reconnects) driven by wrk pinned to CPU 1 over loopback. Cases run
alternately (a, b, c, a, b, c, ...) so drift in the shared machine hits all of them alike.
Two figures per case:
  - requests/s as wrk reports it (swings 15-30% between runs: wrk saturates its own core);
  - nginx worker CPU microseconds per request: utime+stime of the worker from
    /proc/<pid>/stat over the run, divided by the requests served. This is the steady one.
Medians and min-max over the repetitions are printed, plus each case's cost relative to its
baseline case.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Case:
    """One nginx configuration under load.

    location: the body of `location /bench { ... }`; http: extra http-level config;
    module: load ngx-gateway; headers: request headers wrk sends; lua: a wrk script;
    baseline: name of the case this one is compared with.
    """

    def __init__(self, name, location, http="", module=False, headers=(), lua=None,
                 baseline=None, note=""):
        self.name, self.location, self.http = name, location, http
        self.module, self.headers, self.lua = module, list(headers), lua
        self.baseline, self.note = baseline, note
        self.rps, self.us = [], []


def cases(args):
    return [
        Case("plain", "empty_gif;", note="nginx, module not loaded"),
        Case("loaded", "gateway off; empty_gif;", module=True, baseline="plain",
             note="module loaded, gateway off"),
        Case("gateway_on", "gateway on; empty_gif;", module=True, baseline="plain",
             note="module loaded, access handler runs"),
    ]


class Nginx:
    def __init__(self, args, case):
        self.dir = tempfile.mkdtemp(prefix="gw-bench-")
        self.port = free_port()
        os.makedirs(os.path.join(self.dir, "logs"))
        os.makedirs(os.path.join(self.dir, "conf"))
        load = f"load_module {args.module};\n" if case.module else ""
        conf = f"""{load}
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity 01;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
{case.http}
    server {{
        listen 127.0.0.1:{self.port} reuseport backlog=4096;
        location /bench {{ {case.location} }}
    }}
}}
"""
        with open(os.path.join(self.dir, "conf", "nginx.conf"), "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", args.nginx, "-p", self.dir + "/", "-c", "conf/nginx.conf"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"nginx failed for case {case.name}: "
                                     + self.proc.stderr.read().decode(errors="replace")
                                     + open(os.path.join(self.dir, "logs", "error.log")).read())
                time.sleep(0.05)
        self.worker = self.find_worker()

    def find_worker(self):
        for _ in range(100):
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                                 text=True).stdout.split()
            if out:
                return int(out[0])
            time.sleep(0.05)
        raise SystemExit("no nginx worker found")

    def cpu_ticks(self):
        with open(f"/proc/{self.worker}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        errors = open(os.path.join(self.dir, "logs", "error.log")).read()
        shutil.rmtree(self.dir, ignore_errors=True)
        if re.search(r"\[(alert|crit|emerg)\]|exited on signal", errors):
            raise SystemExit("nginx logged a problem during the bench:\n" + errors[-2000:])


def run_wrk(args, case, port):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s",
           "--latency"]
    for h in case.headers:
        cmd += ["-H", h]
    if case.lua:
        cmd += ["-s", case.lua]
    cmd.append(f"http://127.0.0.1:{port}/bench")
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    m = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not m or not rps:
        raise SystemExit("could not parse wrk output:\n" + out)
    return int(m.group(1)), float(rps.group(1)), int(non2xx.group(1)) if non2xx else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nginx", required=True)
    ap.add_argument("--module", required=True)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--cases", default="")
    args = ap.parse_args()
    all_cases = cases(args)
    if args.cases:
        wanted = set(args.cases.split(","))
        all_cases = [c for c in all_cases if c.name in wanted or c.baseline is None]
    if os.cpu_count() < 2:
        print("warning: fewer than 2 CPUs; nginx and wrk will share one", file=sys.stderr)

    for rep in range(args.repeat):
        for case in all_cases:
            ng = Nginx(args, case)
            try:
                run_wrk(args, case, ng.port) if rep == 0 else None  # warm-up on first round
                t0 = ng.cpu_ticks()
                n, rps, bad = run_wrk(args, case, ng.port)
                t1 = ng.cpu_ticks()
            finally:
                ng.stop()
            if bad and not case.note.startswith("expect non-2xx"):
                raise SystemExit(f"case {case.name}: {bad} non-2xx responses")
            case.rps.append(rps)
            case.us.append((t1 - t0) / CLK_TCK * 1e6 / max(n, 1))
            print(f"  round {rep + 1}/{args.repeat} {case.name:<18} {rps:>10.0f} r/s "
                  f"{case.us[-1]:6.2f} us/req", file=sys.stderr)

    by_name = {c.name: c for c in all_cases}
    print()
    print(f"ngx-gateway bench: {args.repeat} rounds x {args.duration}s, wrk -t1 -c{args.connections}, "
          f"nginx 1 worker on CPU 0, wrk on CPU 1")
    hdr = f"{'case':<18} {'req/s median':>12} {'(min-max)':>19} {'us/req median':>13} " \
          f"{'(min-max)':>13} {'vs baseline':>24}"
    print(hdr)
    print("-" * len(hdr))
    for c in all_cases:
        rm, um = statistics.median(c.rps), statistics.median(c.us)
        rel = ""
        if c.baseline and c.baseline in by_name:
            b = by_name[c.baseline]
            rel = (f"{rm / statistics.median(b.rps) * 100:5.1f}% r/s, "
                   f"{um - statistics.median(b.us):+5.2f} us")
        print(f"{c.name:<18} {rm:>12.0f} {min(c.rps):>9.0f}-{max(c.rps):<9.0f} {um:>13.2f} "
              f"{min(c.us):>6.2f}-{max(c.us):<6.2f} {rel:>24}")
    print()
    for c in all_cases:
        print(f"  {c.name}: {c.note}" + (f" (baseline: {c.baseline})" if c.baseline else ""))


if __name__ == "__main__":
    main()
