#!/usr/bin/env python3
"""Cluster-wide rate limits through Redis, end to end: a real redis-server on a free loopback
port, two nginx nodes (two prefixes, two ports) sharing zones through it.

    scripts/test-cluster.py NGINX MODULE.so

Scenarios (each prints what it measured; any failed check exits non-zero):
  single     one node with sync= behaves as the local zone (exactly L of 2L pass)
  bound      concurrent clients on both nodes: combined admissions <= the documented bound
  outage     Redis stopped mid-run: no 5xx, local limit enforced, a log line, a metric;
             Redis restarted: sync resumes, the Redis total equals what both nodes admitted
  slow       Redis paused (SIGSTOP) for 2 s: request latency unaffected
  closed     sync_fail=closed: 429 while Redis is down
  tls        rediss:// to a redis-server with TLS (certificates made here with openssl) and an
             ACL user whose password comes from password_file= on one node, password_env= on
             the other: exact totals; a certificate from another CA and a wrong sync_tls_name
             are refused (logged, counted, local limits, no 5xx)
  sentinel   redis-sentinel:// to a master, a replica and three sentinels: exact totals, then
             a forced failover (SENTINEL FAILOVER) under load: no 5xx, the nodes follow the new
             master within seconds (measured), never write to the demoted one, and Redis loses
             no more than the admissions of the switch-over (measured)
  cluster    redis-cluster:// to a three-master Redis Cluster and three nginx nodes: the
             over-admission bound with 3 nodes, exact totals on the shard that owns the zone's
             slot, the slot migrated to another master under load (ASK, then MOVED followed),
             the shard stopped (local limits, no 5xx) and back
  resolve    a host name re-resolved through nginx's resolver (a DNS stub here answering A
             records) every sync_resolve: when the answer changes, the counts go to the new
             server
  restart    a monthly quota (r/M, cost=) on a persistent zone: a node restarted in the middle
             of the month continues the count (exactly the rest of the month is admitted), and
             the Redis total equals the units admitted before and after the restart
"""
import hashlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from testports import free_port  # scripts/testports.py: never the same port twice

NGINX, MODULE = sys.argv[1], os.path.abspath(sys.argv[2])
ONLY = sys.argv[3] if len(sys.argv) > 3 else None  # a scenario group to run alone: "tls"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "target", "cluster-test"))
INTERVAL_MS = 100
FAILED = []


def free_cluster_port():
    """A free port P with P + 10000 (the cluster bus) free too."""
    import random
    for _ in range(200):
        p = random.randint(20000, 30000)
        try:
            for q in (p, p + 10000):
                t = socket.socket()
                t.bind(("127.0.0.1", q))
                t.close()
            return p
        except OSError:
            continue
    raise SystemExit("no free port pair for a cluster node")


def check(cond, what):
    print(("  ok    " if cond else "  FAIL  ") + what, flush=True)
    if not cond:
        FAILED.append(what)


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs(d):
    """Two CAs ("ca", "rogue") and a server certificate of each for 127.0.0.1 and localhost."""
    os.makedirs(d, exist_ok=True)
    ext = os.path.join(d, "san.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for ca in ("ca", "rogue"):
        p = os.path.join(d, ca)
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                f"/CN=test {ca}", "-keyout", p + ".key", "-out", p + ".pem")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=redis", "-keyout",
                p + "-server.key", "-out", p + "-server.csr")
        openssl("x509", "-req", "-in", p + "-server.csr", "-CA", p + ".pem", "-CAkey", p + ".key",
                "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", p + "-server.pem")
    return d


class DnsStub:
    """Answers every A query with `self.ip` (TTL 1 s), other types with no answer."""

    def __init__(self, ip):
        self.ip = ip
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                q, peer = self.sock.recvfrom(512)
            except OSError:
                return
            end = 12
            while end < len(q) and q[end]:
                end += q[end] + 1
            question = q[12:end + 5]
            qtype = int.from_bytes(q[end + 1:end + 3], "big")
            self.queries += 1
            answer = b""
            if qtype == 1:
                answer = (b"\xc0\x0c\x00\x01\x00\x01" + (1).to_bytes(4, "big") + b"\x00\x04"
                          + socket.inet_aton(self.ip))
            head = (q[:2] + b"\x81\x80" + b"\x00\x01" + (1 if answer else 0).to_bytes(2, "big")
                    + b"\x00\x00\x00\x00")
            self.sock.sendto(head + question + answer, peer)

    def close(self):
        self.sock.close()


class Redis:
    def __init__(self, name="redis", tls=None, host="127.0.0.1", port=None):
        """tls: (certificate directory, "ca" or "rogue"): the server speaks TLS only."""
        self.host = host
        self.port = port or free_port()
        self.dir = os.path.join(ROOT, name)
        self.tls = tls
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None

    def start(self):
        if self.tls:
            d, ca = self.tls
            listen = ["--port", "0", "--tls-port", str(self.port),
                      "--tls-cert-file", os.path.join(d, ca + "-server.pem"),
                      "--tls-key-file", os.path.join(d, ca + "-server.key"),
                      "--tls-ca-cert-file", os.path.join(d, ca + ".pem"),
                      "--tls-auth-clients", "no"]
        else:
            listen = ["--port", str(self.port)]
        self.proc = subprocess.Popen(
            ["redis-server", *listen, "--bind", self.host, "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--requirepass", "s3cret"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if self.cli("PING").strip() == "PONG":
                return
            time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None

    def cli(self, *args):
        tls = []
        if self.tls:
            d, ca = self.tls
            tls = ["--tls", "--cacert", os.path.join(d, ca + ".pem")]
        r = subprocess.run(["redis-cli", *tls, "-h", self.host, "-p", str(self.port), "-a", "s3cret",
                            "--no-auth-warning", "-n", "3", *args], capture_output=True, text=True)
        return r.stdout


class Node:
    def __init__(self, name, redis_port, extra="", http_extra="", env=None):
        self.name = name
        self.env = env
        self.port = free_port()
        self.prefix = os.path.join(ROOT, name)
        shutil.rmtree(self.prefix, ignore_errors=True)
        os.makedirs(os.path.join(self.prefix, "logs"))
        os.makedirs(os.path.join(self.prefix, "conf"))
        os.makedirs(os.path.join(self.prefix, "html"))
        with open(os.path.join(self.prefix, "html", "ok.txt"), "w") as f:
            f.write("ok\n")
        sync = f"sync=redis://:s3cret@127.0.0.1:{redis_port}/3 sync_interval={INTERVAL_MS}ms sync_timeout=300ms"
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
    rate_limit_zone $arg_k zone=c:1m {sync};
    rate_limit_zone $arg_k zone=closed:1m {sync} sync_fail=closed;
    rate_limit_zone $arg_k zone=local:1m;
    rate_limit_zone $arg_k zone=q:1m {sync} persistent=1;
    {http_extra}
    server {{
        listen 127.0.0.1:{self.port} reuseport;
        # (not "return": it answers in the rewrite phase, before the limits run)
        root html;
        location /c {{ rate_limit zone=c rate=$arg_rate; try_files /ok.txt =404; }}
        location /closed {{ rate_limit zone=closed rate=100r/m; try_files /ok.txt =404; }}
        location /q {{ rate_limit zone=q rate=$arg_rate cost=$arg_cost; try_files /ok.txt =404; }}
        location /local {{ rate_limit zone=local rate=$arg_rate; try_files /ok.txt =404; }}
        location /metrics {{ gateway_metrics; }}
        {extra}
    }}
}}
"""
        with open(os.path.join(self.prefix, "conf", "nginx.conf"), "w") as f:
            f.write(conf)
        self.start()

    def start(self):
        name = self.name
        self.proc = subprocess.Popen([NGINX, "-p", self.prefix + "/", "-c", "conf/nginx.conf"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, **(self.env or {})})
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"nginx {name} did not start: {self.proc.stderr.read()}")

    def restart(self):
        """A full restart (not a reload): the shared memory, and every count in it, is lost."""
        self.stop()
        self.start()

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            FAILED.append(f"{self.name} did not stop within 10 s")

    def log(self):
        with open(os.path.join(self.prefix, "logs", "error.log")) as f:
            return f.read()

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        return r.status, body


def hammer(node, path, seconds, gap, counts, lat, lock):
    """One client: a keepalive connection, a request every `gap` seconds."""
    c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=5)
    end = time.time() + seconds
    while time.time() < end:
        t0 = time.time()
        try:
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            st = r.status
        except Exception:
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=5)
            st = "error"
        dt = time.time() - t0
        with lock:
            counts[(node.name, st)] = counts.get((node.name, st), 0) + 1
            lat.append(dt)
        if gap:
            time.sleep(max(0.0, gap - dt))
    c.close()


def run_clients(nodes, path, seconds, clients_per_node, gap):
    counts, lat, lock = {}, [], threading.Lock()
    ts = [threading.Thread(target=hammer, args=(n, path, seconds, gap, counts, lat, lock))
          for n in nodes for _ in range(clients_per_node)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return counts, lat


def key_total(redis, zone, key, period_ms=60_000):
    """Sum of the Redis counters of one key's counter of one period (all its windows): the
    key id hashes the key followed by the period (8 bytes, big-endian), see counter_key."""
    kid = hashlib.sha256(key.encode() + period_ms.to_bytes(8, "big")).hexdigest()[:32]
    keys = redis.cli("KEYS", f"gw:{{{zone}}}:{kid}:*").split()
    return sum(int(redis.cli("GET", k).strip() or 0) for k in keys), keys


def passed(counts, node=None):
    return sum(v for (n, st), v in counts.items() if st == 200 and (node is None or n == node))


def metric(node, name):
    _, body = node.get("/metrics")
    for line in body.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return None


def tls_scenarios():
    """rediss:// with an ACL user (password_file= on node-c, password_env= on node-d); a server
    certificate from another CA; a name the certificate does not have."""
    print("tls: rediss:// with an ACL user, password_file= and password_env=")
    certs = make_certs(os.path.join(ROOT, "certs"))
    good = Redis("redis-tls", (certs, "ca"))
    rogue = Redis("redis-rogue", (certs, "rogue"))
    good.start()
    rogue.start()
    check(good.cli("ACL", "SETUSER", "gw", "on", ">gw-pw", "~*", "+@all").strip() == "OK",
          "ACL user created")
    pwfile = os.path.join(ROOT, "redis-password")
    with open(pwfile, "w") as f:
        f.write("gw-pw\n")
    ca = os.path.join(certs, "ca.pem")
    common = f"sync_interval={INTERVAL_MS}ms sync_timeout=300ms sync_tls_ca={ca}"
    zones = f"""
    rate_limit_zone $arg_k zone=rogue:1m sync=rediss://127.0.0.1:{rogue.port} {common};
    rate_limit_zone $arg_k zone=badname:1m sync=rediss://127.0.0.1:{good.port}/3 {common}
        password_file={pwfile} sync_tls_name=redis.example;"""
    locs = """
        location /t { rate_limit zone=t rate=$arg_rate; try_files /ok.txt =404; }
        location /rogue { rate_limit zone=rogue rate=3r/m; try_files /ok.txt =404; }
        location /badname { rate_limit zone=badname rate=3r/m; try_files /ok.txt =404; }"""
    c = Node("node-c", good.port, locs, zones + f"""
    rate_limit_zone $arg_k zone=t:1m sync=rediss://gw@127.0.0.1:{good.port}/3 {common}
        password_file={pwfile};""")
    d = Node("node-d", good.port, locs, zones + f"""
    rate_limit_zone $arg_k zone=t:1m sync=rediss://gw@localhost:{good.port}/3 {common}
        password_env=GW_REDIS_PASSWORD;""", env={"GW_REDIS_PASSWORD": "gw-pw"})
    try:
        L, gap = 100, 0.02
        counts, _ = run_clients([c, d], f"/t?k=tls&rate={L}r/m", 3.0, 2, gap)
        total = passed(counts)
        bound = L + int(2 / gap * 2 * (INTERVAL_MS + 10) / 1000.0 + 0.999)
        print(f"  admitted: {passed(counts, 'node-c')} + {passed(counts, 'node-d')} = {total}")
        check(L <= total <= bound, f"combined admitted {total} within [{L}, {bound}]")
        time.sleep(0.5)
        got, _ = key_total(good, "t", "tls")
        check(got == total, f"redis (TLS, ACL user) counted what both nodes admitted: {got} == {total}")
        for n in (c, d):
            check('rate_limit_zone "t": redis sync' not in n.log(), f"{n.name}: no sync error on zone t")

        print("tls: a server certificate from another CA, a wrong sync_tls_name")
        for path, why in (("rogue", "certificate verify error"), ("badname", "does not match")):
            res = [c.get(f"/{path}?k=x")[0] for _ in range(5)]
            check(res == [200, 200, 200, 429, 429], f"{path}: local limit, no 5xx: {res}")
        time.sleep(0.5)
        for path, why in (("rogue", "certificate verify error"), ("badname", "does not match")):
            lines = [l for l in c.log().splitlines() if f'rate_limit_zone "{path}": redis sync' in l]
            check(bool(lines) and why in lines[0] and "[error]" in lines[0],
                  f"{path}: refused and logged: {lines[:1]}")
            errs = metric(c, f'gateway_rate_limit_sync_errors_total{{zone="{path}"}}') or 0
            check(errs > 0, f"{path}: sync errors counted: {errs}")
        check("gw-pw" not in c.log() + d.log(), "the password is never logged")
    finally:
        c.stop()
        d.stop()
        good.stop()
        rogue.stop()
    return (c, d)


class Server:
    """A redis-server (or sentinel) on a free port with its own directory; password s3cret."""

    def __init__(self, name, *args, sentinel_conf=None):
        self.port = free_cluster_port() if "--cluster-enabled" in args else free_port()
        self.dir = os.path.join(ROOT, name)
        os.makedirs(self.dir, exist_ok=True)
        self.args = list(args)
        self.sentinel_conf = sentinel_conf
        self.proc = None
        self.start()

    def start(self):
        if self.sentinel_conf is not None:
            path = os.path.join(self.dir, "sentinel.conf")
            with open(path, "w") as f:
                f.write(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n{self.sentinel_conf}")
            argv = ["redis-server", path, "--sentinel"]
        else:
            argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", self.dir, "--requirepass", "s3cret",
                    "--masterauth", "s3cret", *self.args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if self.cli("PING").strip() == "PONG":
                return
            time.sleep(0.05)
        raise SystemExit(f"{argv[0]} in {self.dir} did not start")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None

    def cli(self, *args):
        pw = "sentinel-pw" if self.sentinel_conf is not None else "s3cret"
        auth = ["-a", pw, "--no-auth-warning"]
        r = subprocess.run(["redis-cli", "-p", str(self.port), *auth, *args],
                           capture_output=True, text=True)
        return r.stdout


def wait_for(cond, seconds, what):
    end = time.time() + seconds
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.1)
    check(False, f"{what} (waited {seconds} s)")
    return False


def zone_total(servers, zone, key, period_ms=60_000, db=None):
    """key_total summed over several servers (the cluster's shards)."""
    kid = hashlib.sha256(key.encode() + period_ms.to_bytes(8, "big")).hexdigest()[:32]
    total = 0
    for srv in servers:
        if srv.proc is None:
            continue
        sel = ["-n", str(db)] if db is not None else []
        for k in srv.cli(*sel, "KEYS", f"gw:{{{zone}}}:{kid}:*").split():
            total += int(srv.cli(*sel, "GET", k).strip() or 0)
    return total


def sentinel_scenarios():
    print("sentinel: a master, a replica, three sentinels")
    master = Server("sentinel-master")
    replica = Server("sentinel-replica", "--replicaof", "127.0.0.1", str(master.port))
    # The sentinels have a password of their own (requirepass + sentinel-pass between them),
    # given to the nodes by sentinel_password_env=.
    conf = (f"sentinel monitor gwm 127.0.0.1 {master.port} 2\n"
            "sentinel auth-pass gwm s3cret\n"
            "requirepass sentinel-pw\nsentinel sentinel-pass sentinel-pw\n"
            "sentinel down-after-milliseconds gwm 1000\n"
            "sentinel failover-timeout gwm 4000\n")
    sentinels = [Server(f"sentinel-{i}", sentinel_conf=conf) for i in range(3)]
    servers = [master, replica, *sentinels]
    nodes = []
    try:
        wait_for(lambda: all("gwm" in s.cli("SENTINEL", "masters") and
                             s.cli("SENTINEL", "replicas", "gwm").count(str(replica.port)) > 0
                             for s in sentinels), 20, "the sentinels know the master and the replica")
        wait_for(lambda: all(s.cli("SENTINEL", "sentinels", "gwm").count("127.0.0.1") >= 2
                             for s in sentinels), 20, "the sentinels know each other")
        url = ("redis-sentinel://:s3cret@"
               + ",".join(f"127.0.0.1:{s.port}" for s in sentinels) + "/gwm/3")
        zone = (f"rate_limit_zone $arg_k zone=s:1m sync={url} sync_interval={INTERVAL_MS}ms"
                " sync_timeout=300ms sentinel_password_env=GW_SENTINEL_PW;")
        loc = "location /s { rate_limit zone=s rate=$arg_rate; try_files /ok.txt =404; }"
        nodes = [Node(f"node-s{i}", master.port, loc, zone, env={"GW_SENTINEL_PW": "sentinel-pw"})
                 for i in range(2)]
        L, gap = 100, 0.02
        counts, _ = run_clients(nodes, f"/s?k=sen&rate={L}r/m", 3.0, 2, gap)
        total = passed(counts)
        bound = L + int(2 / gap * 2 * (INTERVAL_MS + 10) / 1000.0 + 0.999)
        check(L <= total <= bound, f"combined admitted {total} within [{L}, {bound}]")
        time.sleep(0.5)
        got = zone_total([master], "s", "sen", db=3)
        check(got == total, f"the master counted what both nodes admitted: {got} == {total}")
        check(zone_total([replica], "s", "sen", db=3) == total, "the replica has the same count")
        check(all(f"names 127.0.0.1:{master.port} as the master" in n.log() for n in nodes),
              "each node logged the master the sentinels named")

        print("sentinel: SENTINEL FAILOVER under load")
        result = {}

        def failover():
            time.sleep(1.0)
            result["t0"] = time.time()
            result["reply"] = sentinels[0].cli("SENTINEL", "FAILOVER", "gwm").strip()

        t = threading.Thread(target=failover)
        t.start()
        counts, _ = run_clients(nodes, "/s?k=fo&rate=1000000r/m", 8.0, 1, 0.01)
        t.join()
        check(result.get("reply") == "OK", f"failover started: {result.get('reply')}")
        bad = {k: v for k, v in counts.items() if k[1] != 200}
        check(not bad, f"no 5xx or refusal during the failover ({passed(counts)} admitted): {bad}")
        check(wait_for(lambda: "role:master" in replica.cli("INFO", "replication"), 10,
                       "the replica is promoted"), "the replica is the master now")
        for n in nodes:
            lines = [l for l in n.log().splitlines() if f"names 127.0.0.1:{replica.port} as the master" in l]
            if not lines:
                check(False, f"{n.name} follows the new master")
                continue
            ts = time.mktime(time.strptime(lines[0][:19], "%Y/%m/%d %H:%M:%S"))
            follow = ts - int(result["t0"])
            print(f"  {n.name}: writing to the new master {follow:.0f} s after SENTINEL FAILOVER (log time, 1 s resolution)")
            check(follow <= 5, f"{n.name} followed the failover within 5 s")
        # The demoted master must not take our writes: it is a replica now (READONLY).
        time.sleep(1.0)
        admitted = passed(counts)
        got = zone_total([replica], "s", "fo", db=3)
        lost = admitted - got
        rate = admitted / 8.0
        print(f"  admitted {admitted} during the failover run; the new master holds {got}; lost in the"
              f" switch {lost} ({lost / rate:.2f} s of traffic at {rate:.0f} r/s)")
        # Documented (README, "Sentinel"): what the nodes pushed to the old master between the
        # promotion and their next question to the sentinels after the sentinels switched
        # (they switch about a second after the promotion; the nodes ask each second) is lost.
        check(0 <= lost <= rate * 4.0,
              f"redis never counts more than admitted, and loses at most ~4 s of traffic: {lost}")
        check(all("sentinel-pw" not in n.log() and "s3cret" not in n.log() for n in nodes),
              "neither password is ever logged")
        res = [nodes[0].get(f"/s?k=after-fo&rate=5r/m")[0] for _ in range(8)]
        time.sleep(0.5)
        check(res.count(200) == 5 and zone_total([replica], "s", "after-fo", db=3) == 5,
              f"after the failover limits are enforced and counted on the new master: {res}")
    finally:
        for n in nodes:
            n.stop()
        for s in servers:
            s.stop()
    return nodes


def cluster_scenarios():
    print("cluster: three masters (redis-cli --cluster create), three nginx nodes")
    masters = [Server(f"cluster-{i}", "--cluster-enabled", "yes", "--cluster-config-file",
                      "nodes.conf", "--cluster-node-timeout", "2000") for i in range(3)]
    nodes = []
    try:
        out = subprocess.run(["redis-cli", "-a", "s3cret", "--no-auth-warning", "--cluster",
                              "create", *[f"127.0.0.1:{m.port}" for m in masters],
                              "--cluster-yes"], capture_output=True, text=True)
        check(out.returncode == 0, "cluster created")
        wait_for(lambda: all("cluster_state:ok" in m.cli("CLUSTER", "INFO") for m in masters), 20,
                 "the cluster is up")
        slot = int(masters[0].cli("CLUSTER", "KEYSLOT", "{k1}").strip())

        def owner():
            for m in masters:
                if m.proc is None:
                    continue
                for line in m.cli("CLUSTER", "NODES").splitlines():
                    f = line.split()
                    if "myself" in f[2] and "master" in f[2]:
                        for r in f[8:]:
                            lo, _, hi = r.partition("-")
                            if r[0].isdigit() and int(lo) <= slot <= int(hi or lo):
                                return m, f[0]
            return None, None

        url = ("redis-cluster://:s3cret@" + ",".join(f"127.0.0.1:{m.port}" for m in masters))
        zone = (f"rate_limit_zone $arg_k zone=k1:1m sync={url} sync_interval={INTERVAL_MS}ms"
                " sync_timeout=300ms;")
        loc = "location /k1 { rate_limit zone=k1 rate=$arg_rate; try_files /ok.txt =404; }"
        nodes = [Node(f"node-k{i}", masters[0].port, loc, zone) for i in range(3)]
        L, gap, clients = 150, 0.02, 2
        counts, _ = run_clients(nodes, f"/k1?k=cl&rate={L}r/m", 3.0, clients, gap)
        total = passed(counts)
        # Each node learns the other two nodes' admissions at most 2 * (I + d) late.
        bound = L + 2 * int(clients / gap * 2 * (INTERVAL_MS + 10) / 1000.0 + 0.999)
        print(f"  admitted {[passed(counts, n.name) for n in nodes]} = {total} (limit {L}, bound {bound}, 3 nodes)")
        check(L <= total <= bound, f"3 nginx nodes: combined admitted {total} within [{L}, {bound}]")
        time.sleep(0.5)
        src, src_id = owner()
        got = zone_total([src], "k1", "cl")
        check(got == total, f"the shard serving slot {slot} counted what the nodes admitted: {got} == {total}")
        check(zone_total([m for m in masters if m is not src], "k1", "cl") == 0,
              "the other shards hold none of the zone's keys")

        print(f"cluster: slot {slot} migrated to another master under load")
        dst = next(m for m in masters if m is not src)
        dst_id = dst.cli("CLUSTER", "MYID").strip()
        mig = {}

        def migrate():
            time.sleep(1.0)
            dst.cli("CLUSTER", "SETSLOT", str(slot), "IMPORTING", src_id)
            src.cli("CLUSTER", "SETSLOT", str(slot), "MIGRATING", dst_id)
            time.sleep(0.5)  # keys on both sides: ASK for the moved ones
            while True:
                keys = src.cli("CLUSTER", "GETKEYSINSLOT", str(slot), "100").split()
                if not keys:
                    break
                src.cli("MIGRATE", "127.0.0.1", str(dst.port), "", "0", "5000", "AUTH", "s3cret",
                        "KEYS", *keys)
            for m in masters:
                m.cli("CLUSTER", "SETSLOT", str(slot), "NODE", dst_id)
            mig["done"] = True

        t = threading.Thread(target=migrate)
        t.start()
        counts, _ = run_clients(nodes, "/k1?k=mig&rate=1000000r/m", 4.0, 1, 0.01)
        t.join()
        bad = {k: v for k, v in counts.items() if k[1] != 200}
        check(not bad, f"no 5xx during the migration ({passed(counts)} admitted): {bad}")
        check(any("the zone's hash slot moved to" in n.log() for n in nodes), "MOVED followed (logged)")
        time.sleep(1.0)
        admitted = passed(counts)
        got = zone_total(masters, "k1", "mig")
        on_dst = zone_total([dst], "k1", "mig")
        print(f"  admitted {admitted}; redis holds {got} ({on_dst} on the new owner)")
        # A migration that lands inside one exchange can count that exchange twice (never
        # fewer): see README, "Redis Cluster".
        check(admitted <= got <= admitted + 3 * 2, f"redis total {got} vs admitted {admitted}")
        check(on_dst == got, "every count is on the slot's new owner")

        print("cluster: the shard that owns the zone stopped, then back")
        dst.stop()
        counts, _ = run_clients(nodes, "/k1?k=down&rate=30r/m", 2.0, 1, 0.02)
        five = sum(v for (n, st), v in counts.items() if st not in (200, 429))
        check(five == 0, f"no 5xx while the shard is down: {counts}")
        check(all(passed(counts, n.name) <= 30 for n in nodes), "local limits enforced on each node")
        dst.start()
        wait_for(lambda: all("cluster_state:ok" in m.cli("CLUSTER", "INFO") for m in masters), 20,
                 "the cluster is up again")
        time.sleep(2.0)
        for n in nodes:
            n.get("/k1?k=wake&rate=1000r/m")
        time.sleep(1.0)
        counts, _ = run_clients(nodes, "/k1?k=back&rate=1000r/m", 1.0, 1, 0.02)
        time.sleep(1.0)
        check(zone_total([dst], "k1", "back") == passed(counts),
              f"sync resumed on the restarted shard: {zone_total([dst], 'k1', 'back')} == {passed(counts)}")
    finally:
        for n in nodes:
            n.stop()
        for m in masters:
            m.stop()
    return nodes


def resolve_scenarios():
    """sync=redis://localhost:P with `resolver` (a DNS stub) and sync_resolve=1s: the stub's
    answer moves from 127.0.0.1 to 127.0.0.3, where a second redis-server listens on the same
    port; the next exchanges go there. Then the first server stops and the answer moves back
    to it while it is down: the failure makes the node resolve again."""
    print("resolve: a host name re-resolved through nginx's resolver")
    first = Redis("redis-first")
    second = Redis("redis-second", host="127.0.0.3", port=first.port)
    first.start()
    second.start()
    dns = DnsStub("127.0.0.1")
    e = Node("node-e", first.port, """
        location /r { rate_limit zone=r rate=$arg_rate; try_files /ok.txt =404; }""", f"""
    resolver 127.0.0.1:{dns.port} ipv6=off valid=1s;
    rate_limit_zone $arg_k zone=r:1m sync=redis://:s3cret@localhost:{first.port}/3
        sync_interval={INTERVAL_MS}ms sync_resolve=1s;""")
    try:
        for _ in range(10):
            e.get("/r?k=before&rate=1000r/m")
        time.sleep(0.5)
        got, _ = key_total(first, "r", "before", 60_000)
        check(got == 10, f"before: the first server counted 10: {got}")
        dns.ip = "127.0.0.3"
        time.sleep(2.5)
        for _ in range(10):
            e.get("/r?k=after&rate=1000r/m")
        time.sleep(0.5)
        got2, _ = key_total(second, "r", "after", 60_000)
        got1, _ = key_total(first, "r", "after", 60_000)
        check(got2 == 10 and got1 == 0, f"after the answer changed: second {got2} == 10, first {got1} == 0")
        check("resolved to a new address" in e.log(), "the move is logged")
        check(dns.queries > 0, f"queries went through the resolver: {dns.queries}")
        print("resolve: a reload keeps re-resolving (the resolver is the new cycle's)")
        e.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        dns.ip = "127.0.0.1"
        time.sleep(2.5)
        for _ in range(10):
            e.get("/r?k=reloaded&rate=1000r/m")
        time.sleep(0.5)
        got1, _ = key_total(first, "r", "reloaded", 60_000)
        check(got1 == 10, f"after a reload and a new answer, the first server counted 10: {got1}")
    finally:
        e.stop()
        first.stop()
        second.stop()
        dns.close()
    return (e,)


def main():
    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(ROOT)
    if ONLY:
        finish({"tls": tls_scenarios, "sentinel": sentinel_scenarios,
                "cluster": cluster_scenarios, "resolve": resolve_scenarios}[ONLY]())
        return
    redis = Redis()
    redis.start()
    a = Node("node-a", redis.port)
    b = Node("node-b", redis.port)
    try:
        print("single: one node with sync= behaves as the local zone")
        res = [a.get(f"/c?k=single&rate=10r/m")[0] for _ in range(20)]
        check(res.count(200) == 10 and res.count(429) == 10, f"10 of 20 pass: {res.count(200)}")

        print("bound: 2 nodes x 2 clients, each client ~50 r/s, limit 100r/m, 3 s")
        L, clients, gap, secs = 100, 2, 0.02, 3.0
        counts, _ = run_clients([a, b], "/c?k=bound&rate=100r/m", secs, clients, gap)
        total = passed(counts)
        per_node_rate = clients / gap  # offered requests/s per node
        lag = 2 * (INTERVAL_MS + 10) / 1000.0
        bound = L + int(per_node_rate * lag + 0.999)
        print(f"  admitted: {passed(counts, 'node-a')} + {passed(counts, 'node-b')} = {total}"
              f" (limit {L}, bound {bound}, without sync it would be {2 * L}); {counts}")
        check(L <= total <= bound, f"combined admitted {total} within [{L}, {bound}]")
        time.sleep(0.5)
        redis_sum, keys = key_total(redis, "c", "bound")
        check(redis_sum == total, f"redis counted what both nodes admitted: {redis_sum} == {total}")
        ttl = int(redis.cli("PTTL", keys[0]).strip()) if keys else -1
        check(0 < ttl <= 120_000, f"keys expire (pttl {ttl} ms)")

        print("outage: redis stopped mid-run")
        errors_before = metric(a, "gateway_rate_limit_sync_errors_total") or 0
        redis.stop()
        counts, _ = run_clients([a, b], "/c?k=outage&rate=50r/m", 2.0, 1, 0.02)
        outage_counts = counts
        five = sum(v for (n, st), v in counts.items() if st != 200 and st != 429)
        check(five == 0, f"no 5xx or errors while redis is down: {counts}")
        pa, pb = passed(counts, "node-a"), passed(counts, "node-b")
        check(pa <= 50 and pb <= 50, f"local limit still enforced on each node: {pa}, {pb} <= 50")
        check("redis sync with" in a.log() and "failed" in a.log(), "error log line")
        errs = metric(a, "gateway_rate_limit_sync_errors_total") or 0
        check(errs > errors_before, f"sync errors counted: {errs}")
        check(metric(a, 'gateway_rate_limit_sync_up{zone="c"}') == 0, "sync_up gauge is 0")
        print("outage: redis restarted")
        redis.start()
        time.sleep(6.0)  # the backoff is at most 5 s
        for n in (a, b):
            n.get("/c?k=resync&rate=1000r/m")
        time.sleep(0.5)
        check(metric(a, 'gateway_rate_limit_sync_up{zone="c"}') == 1, "sync_up gauge back to 1")
        check("redis sync resumed" in a.log(), "resume logged")
        counts, _ = run_clients([a, b], "/c?k=after&rate=1000r/m", 1.0, 1, 0.02)
        time.sleep(0.5)
        after = passed(counts)
        got, _ = key_total(redis, "c", "after")
        pushed_late, _ = key_total(redis, "c", "outage")
        check(pushed_late == passed(outage_counts), f"admissions made during the outage pushed after it: {pushed_late}")
        check(got == after, f"cluster total converges: redis {got} == admitted {after}")

        print("slow: redis paused (SIGSTOP) for 2 s")
        redis.proc.send_signal(signal.SIGSTOP)
        counts, lat = run_clients([a, b], "/c?k=slow&rate=100000r/m", 2.0, 2, 0.01)
        redis.proc.send_signal(signal.SIGCONT)
        lat.sort()
        p99 = lat[int(len(lat) * 0.99)] * 1000
        five = sum(v for (n, st), v in counts.items() if st != 200)
        check(five == 0 and p99 < 50, f"{len(lat)} requests, none failed, p99 {p99:.1f} ms < 50 ms")
        check("timed out" in a.log(), "the timeout was logged")

        print("restart: a node restarted in the middle of a monthly quota continues the count")
        month_ms = 31 * 86_400_000  # the period that stands for r/M in counter keys
        L, key = 100, f"month-{os.getpid()}"
        q = f"/q?k={key}&rate={L}r/M"
        # A key a node has not pulled yet gets the allowance (1) until its first exchange:
        # one request, a pause, then the rest.
        res = [a.get(q + "&cost=1")[0], b.get(q + "&cost=1")[0]]
        time.sleep(0.5)
        res += [a.get(q + "&cost=1")[0] for _ in range(18)] + [b.get(q + "&cost=2")[0] for _ in range(20)]
        check(res == [200] * 40, f"60 units of {L} used through both nodes: {res.count(200)} of 40 passed")
        time.sleep(0.5)
        before, _ = key_total(redis, "q", key, month_ms)
        check(before == 60, f"redis holds the month's 60 units: {before}")
        b.restart()
        res = [b.get(q + "&cost=1")[0] for _ in range(100)]
        # A quiet moment, then more: the count is the cluster's, not a fresh month.
        time.sleep(0.5)
        res += [b.get(q + "&cost=1")[0] for _ in range(60)]
        admitted = res.count(200)
        print(f"  after the restart node-b admitted {admitted} (the month had {L - 60} left,"
              f" the allowance is 1); first statuses {res[:8]}")
        check(admitted == L - 60, f"the restarted node admitted exactly the rest of the month: {admitted} == {L - 60}")
        check(all(st in (200, 429) for st in res), "only 200 and 429")
        time.sleep(0.5)
        total, keys = key_total(redis, "q", key, month_ms)
        check(total == 60 + admitted, f"redis total == units admitted before and after: {total} == {60 + admitted}")
        ttl = int(redis.cli("PTTL", keys[0]).strip()) if keys else -1
        check(31 * 86_400_000 < ttl <= 62 * 86_400_000, f"a month's key lives two periods (pttl {ttl} ms)")
        print("restart: the month used up, a restarted node over-admits at most the allowance")
        b.restart()
        res = [b.get(q + "&cost=1")[0] for _ in range(50)]
        time.sleep(0.5)
        res += [b.get(q + "&cost=1")[0] for _ in range(10)]
        over = res.count(200)
        time.sleep(0.5)
        total, _ = key_total(redis, "q", key, month_ms)
        check(over <= 1 and total == L + over,
              f"after the restart {over} admitted (bound 1), redis total {total} == {L} + {over}")
        cost = [a.get(q + "&cost=101")[0], a.get(q + "&cost=1")[0]]
        check(cost == [429, 429], f"a cost above the limit, and the used-up month, are refused: {cost}")

        print("closed: sync_fail=closed rejects while redis is down")
        redis.stop()
        for n in (a, b):
            n.get("/closed?k=x")  # makes the syncer notice
        time.sleep(0.5)
        res = [a.get("/closed?k=x")[0] for _ in range(5)]
        check(res == [429] * 5, f"429 while down: {res}")
        redis.start()
    finally:
        a.stop()
        b.stop()
        redis.stop()
    finish([a, b, *tls_scenarios(), *resolve_scenarios(), *sentinel_scenarios(),
            *cluster_scenarios()])


def finish(nodes):
    for n in nodes:
        bad = [l for l in n.log().splitlines() if "[alert]" in l or "[emerg]" in l or "[crit]" in l
               or "exited on signal" in l]
        check(not bad, f"{n.name}: no alert/crit/emerg/crash in error.log {bad[:3]}")
    if FAILED:
        print(f"\n{len(FAILED)} check(s) failed")
        sys.exit(1)
    print("\nall cluster checks passed")


if __name__ == "__main__":
    main()
