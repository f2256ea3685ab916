# rate_limit_zone ... sync=redis://: the parts that need no Redis server (configuration errors,
# an unreachable server). The cluster scenarios (two nodes, one Redis, outages, a paused
# server) are in scripts/test-cluster.py, which scripts/test runs with a real redis-server.
# The log checks read the whole error.log each time (check_accum_error_log): the failed sync is
# logged once, not by every request.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

workers(2);
master_on();
no_shuffle();
check_accum_error_log();
run_tests();

__DATA__

=== TEST 1: an unreachable Redis: limits stay local and enforced, the failure is logged once
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis://127.0.0.1:$TEST_NGINX_RAND_PORT_1 sync_interval=50ms sync_timeout=100ms;
--- config
    location /t {
        rate_limit zone=s rate=3r/m;
        alias html/index.html;
    }
    location /metrics {
        gateway_metrics;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 200, 429, 429]
--- wait: 1.5
--- error_log eval
qr/\[error\] .*rate_limit_zone "s": redis sync with 127\.0\.0\.1:\d+ failed: .*limits are local to this node until it recovers/
--- grep_error_log eval: qr/rate_limit_zone "s": redis sync with 127\.0\.0\.1:\d+ failed/
--- grep_error_log_out
rate_limit_zone "s": redis sync with 127.0.0.1:$TEST_NGINX_RAND_PORT_1 failed
--- no_error_log
[alert]
[crit]



=== TEST 2: a single node with sync= counts as the local zone does
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    rate_limit_zone $host zone=l:1m;
--- config
    location /s {
        rate_limit zone=s rate=2r/m;
        alias html/index.html;
    }
    location /l {
        rate_limit zone=l rate=2r/m;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /s", "GET /l", "GET /s", "GET /l", "GET /s", "GET /l"]
--- error_code eval
[200, 200, 200, 200, 429, 429]
--- response_headers_like eval
["RateLimit: \"s\";r=1;t=\\d+", "RateLimit: \"l\";r=1;t=\\d+", "RateLimit: \"s\";r=0;t=\\d+", "RateLimit: \"l\";r=0;t=\\d+", "RateLimit: \"s\";r=0;t=\\d+", "RateLimit: \"l\";r=0;t=\\d+"]



=== TEST 3: nginx -t: token_bucket on a synced zone
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis://127.0.0.1:6379;
--- config
    location /t {
        rate_limit zone=s rate=1r/s algorithm=token_bucket burst=5;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*zone "s" is synced through Redis, which supports algorithm=sliding only in "rate_limit" directive in \S+nginx\.conf:\d+/



=== TEST 4: rediss:// is accepted; sync_tls_verify=off says so in the log at start
--- http_config
    rate_limit_zone $host zone=s:1m sync=rediss://127.0.0.1:$TEST_NGINX_RAND_PORT_1 sync_tls_verify=off;
--- config
    location /t {
        rate_limit zone=s rate=3r/m;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request
GET /t
--- error_code: 200
--- error_log eval
qr/\[warn\] .*gateway: rate_limit_zone "s": sync_tls_verify=off, the Redis server's certificate is not verified/



=== TEST 5: nginx -t: a bad URL does not echo its password
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis://:hunter2@127.0.0.1:notaport;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid "sync" parameter in "rate_limit_zone" directive, bad port "notaport"/
--- no_error_log
hunter2



=== TEST 6: nginx -t: sync_interval without sync
--- http_config
    rate_limit_zone $host zone=s:1m sync_interval=100ms;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"sync_interval", "sync_timeout" and "password" need "sync"/



=== TEST 7: nginx -t: sync_interval out of range, bad sync_fail
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis://127.0.0.1 sync_interval=5ms;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "sync_interval=5ms" in "rate_limit_zone" directive, must be between 10ms and 60s/



=== TEST 8: nginx -t: bad sync_fail
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis://127.0.0.1 sync_fail=maybe;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "sync_fail=maybe" in "rate_limit_zone" directive, must be "open" or "closed"/



=== TEST 9: metrics: the sync error counter and the sync state gauge
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis://127.0.0.1:$TEST_NGINX_RAND_PORT_1 sync_interval=50ms;
--- config
    location /t {
        rate_limit zone=s rate=3r/m;
        alias html/index.html;
    }
    location /metrics {
        gateway_metrics;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /metrics"]
--- response_body_like eval
["ok", qr/gateway_rate_limit_sync_errors_total\{zone="s"\} \d+\n.*gateway_rate_limit_sync_up\{zone="s"\} [01]\n/s]



=== TEST 10: a synced zone keeps a counter per period too: 100r/m and 3r/h on one key both hold exactly (Redis unreachable, local counts)
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
--- config
    location /t {
        rate_limit zone=s rate=100r/m policy=minute;
        rate_limit zone=s rate=3r/h policy=hourly;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 200, 429]
--- response_headers_like eval
['RateLimit: "hourly";r=2;t=3600', 'RateLimit: "hourly";r=1;t=3600', 'RateLimit: "hourly";r=0;t=\d+', 'RateLimit: "hourly";r=0;t=\d+']



=== TEST 11: rediss:// without sync_tls_ca verifies against the system store; an unreachable server: local limits, logged
--- http_config
    rate_limit_zone $host zone=s:1m sync=rediss://127.0.0.1:$TEST_NGINX_RAND_PORT_1 sync_interval=50ms sync_timeout=100ms;
--- config
    location /t {
        rate_limit zone=s rate=2r/m;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 429]
--- wait: 1
--- error_log eval
qr/\[error\] .*rate_limit_zone "s": redis sync with 127\.0\.0\.1:\d+ failed: .*limits are local to this node/
--- no_error_log
[warn]
[crit]



=== TEST 12: nginx -t: sync_tls_* parameters need rediss://
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis://127.0.0.1 sync_tls_name=redis.example;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"rate_limit_zone": the "sync_tls_\*" parameters need "sync=rediss:\/\/\.\.\."/



=== TEST 13: nginx -t: sync_tls_cert without sync_tls_key
--- http_config
    rate_limit_zone $host zone=s:1m sync=rediss://127.0.0.1 sync_tls_cert=/etc/ssl/certs/ca-certificates.crt;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"sync_tls_cert" and "sync_tls_key" go together/



=== TEST 14: nginx -t: sync_tls_ca that cannot be read
--- http_config
    rate_limit_zone $host zone=s:1m sync=rediss://127.0.0.1 sync_tls_ca=/nonexistent/ca.pem;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*zone "s": cannot load the trusted CAs "\/nonexistent\/ca\.pem" \(sync_tls_ca\)/



=== TEST 15: nginx -t: bad sync_tls_verify
--- http_config
    rate_limit_zone $host zone=s:1m sync=rediss://127.0.0.1 sync_tls_verify=maybe;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "sync_tls_verify=maybe" in "rate_limit_zone" directive, must be "on" or "off"/



=== TEST 16: nginx -t: a missing password_file
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis://127.0.0.1 password_file=/nonexistent/redis-password;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"rate_limit_zone": cannot read "password_file" "\/nonexistent\/redis-password"/



=== TEST 17: nginx -t: a missing password_env variable
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis://127.0.0.1 password_env=GW_TEST_NO_SUCH_VARIABLE;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"password_env": environment variable "GW_TEST_NO_SUCH_VARIABLE" is not set or empty/



=== TEST 18: nginx -t: password_file and a password in the URL too (the password is not echoed)
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis://gw:hunter2@127.0.0.1 password_file=$TEST_NGINX_SERVER_ROOT/html/pw;
--- config
--- user_files
>>> pw
from-the-file
--- must_die
--- error_log eval
qr/\[emerg\] .*"password_file" or "password_env" given and the URL has a password too/
--- no_error_log
hunter2
from-the-file



=== TEST 19: password_file (relative to the configuration directory) with an ACL user in the URL: nginx starts
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis://gw@127.0.0.1:$TEST_NGINX_RAND_PORT_1 password_file=../html/pw;
    rate_limit_zone $host zone=e:1m sync=redis://127.0.0.1:$TEST_NGINX_RAND_PORT_1 password_env=PATH;
--- config
    location /t {
        rate_limit zone=s rate=3r/m;
        rate_limit zone=e rate=3r/m;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
>>> pw
from-the-file
--- request
GET /t
--- error_code: 200
--- no_error_log
from-the-file
[emerg]



=== TEST 20: unreachable sentinels: limits stay local and enforced, the sentinel is named in the log
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis-sentinel://127.0.0.1:$TEST_NGINX_RAND_PORT_1,127.0.0.1:$TEST_NGINX_RAND_PORT_2/mymaster sync_interval=50ms sync_timeout=100ms;
--- config
    location /t {
        rate_limit zone=s rate=3r/m;
        alias html/index.html;
    }
--- user_files
>>> index.html
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 200, 429]
--- wait: 0.3
--- error_log eval
qr/\[error\] .*rate_limit_zone "s": redis sync with sentinel 127\.0\.0\.1:\d+ failed: .*limits are local to this node/
--- no_error_log
[crit]



=== TEST 21: unreachable cluster nodes: limits stay local and enforced, the node is named in the log
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis-cluster://127.0.0.1:$TEST_NGINX_RAND_PORT_1 sync_interval=50ms sync_timeout=100ms;
--- config
    location /t {
        rate_limit zone=s rate=3r/m;
        alias html/index.html;
    }
--- user_files
>>> index.html
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 200, 429]
--- wait: 0.3
--- error_log eval
qr/\[error\] .*rate_limit_zone "s": redis sync with cluster node 127\.0\.0\.1:\d+ failed: .*limits are local to this node/
--- no_error_log
[crit]



=== TEST 22: nginx -t: a sentinel URL must name the master
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis-sentinel://127.0.0.1:26379,127.0.0.1:26380;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid "sync" parameter in "rate_limit_zone" directive, the sentinel URL must name the master: \.\.\.\/name/



=== TEST 23: nginx -t: a Redis Cluster has database 0 only; one server only for redis://
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis-cluster://127.0.0.1:7000/2;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid "sync" parameter in "rate_limit_zone" directive, a Redis Cluster has database 0 only/



=== TEST 24: nginx -t: several servers need a sentinel or cluster URL
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis://127.0.0.1:7000,127.0.0.1:7001;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid "sync" parameter in "rate_limit_zone" directive, one server only/



=== TEST 25: nginx -t: sync_resolve is for redis:// and rediss://, and at least a second
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis-cluster://127.0.0.1:7000 sync_resolve=10s;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"sync_resolve" is for "sync=redis:\/\/" and "sync=rediss:\/\/"/



=== TEST 26: nginx -t: sync_resolve below a second
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis://localhost sync_resolve=100ms;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "sync_resolve=100ms" in "rate_limit_zone" directive, must be "off" or between 1s and 1d/



=== TEST 27: a host name with sync_resolve and a resolver: nginx starts and limits work
--- http_config
    resolver 127.0.0.1:$TEST_NGINX_RAND_PORT_2 ipv6=off;
    resolver_timeout 1s;
    rate_limit_zone $host zone=s:1m sync=redis://localhost:$TEST_NGINX_RAND_PORT_1 sync_resolve=1s sync_interval=50ms sync_timeout=100ms;
--- config
    location /t {
        rate_limit zone=s rate=3r/m;
        alias html/index.html;
    }
--- user_files
>>> index.html
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 200, 429]
--- no_error_log
[crit]
[alert]



=== TEST 28: nginx -t: sentinel_password_env is for redis-sentinel://, and must be set
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis://127.0.0.1 sentinel_password_env=PATH;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"sentinel_password_file" and "sentinel_password_env" are for "sync=redis-sentinel:\/\/"/



=== TEST 29: nginx -t: an unset sentinel_password_env variable
--- http_config
    rate_limit_zone $host zone=s:1m sync=redis-sentinel://127.0.0.1/m sentinel_password_env=GW_NO_SUCH_VARIABLE_X;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"sentinel_password_env": environment variable "GW_NO_SUCH_VARIABLE_X" is not set or empty/
