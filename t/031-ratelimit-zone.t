# Rate-limit zones: capacity and LRU eviction, counters across `nginx -s reload` (runner
# extension --- reload_after_request, see t/README.md), and configurations refused by
# `nginx -t` with [emerg] and the file:line.
# TESTs 1-7 are project runner only (--- project_only: concurrent phase, reload between requests).
# The log checks read the whole error.log each time (check_accum_error_log): the warning of a full
# zone is logged once, in the concurrent phase, and the master's reload lines once, at the reload.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

workers(2);
master_on();
no_shuffle();
timeout(10);
check_accum_error_log();
run_tests();

__DATA__

=== TEST 1: a 1m zone holds 8200 keys: after 8200 distinct keys the first ones are still counted (no eviction below capacity)
--- project_only: concurrent phase
--- http_config
    # reuseport on the test port (the runner's own listen has no options): the kernel spreads
    # the connections over both workers, so X-Pid >= 2 is not left to chance.
    server {
        listen $TEST_NGINX_SERVER_PORT reuseport;
        server_name reuseport.invalid;
    }
    rate_limit_zone $arg_k zone=big:1m;
--- config
    location /t {
        rate_limit zone=big rate=1r/h;
        add_header X-Pid $pid always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- concurrent_request
GET /t?k=key{i}
--- concurrent_requests: 8200
--- concurrency: 50
--- status_counts
200: 8200
--- distinct_header_values
X-Pid >= 2
--- request eval
["GET /t?k=key0", "GET /t?k=key1", "GET /t?k=key4100", "GET /t?k=key8199", "GET /t?k=fresh"]
--- error_code eval
[429, 429, 429, 429, 200]
--- no_error_log
is full
[error]



=== TEST 2: a full 32k zone evicts the least recently used key: requests proceed, one warning per minute across both workers, never a 500
# The first eviction is reported at once (under the zone's lock, by the worker that evicted),
# so the only report line says "1 key" whichever worker serves what; the two workers' cached
# clocks differ by a few milliseconds, which must not count as a clock gone back (a second
# report within the minute).
--- project_only: concurrent phase
--- http_config
    server {
        listen $TEST_NGINX_SERVER_PORT reuseport;
        server_name reuseport.invalid;
    }
    rate_limit_zone $arg_k zone=small:32k;
--- config
    location /t {
        rate_limit zone=small rate=1r/h;
        add_header X-Pid $pid always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- concurrent_request
GET /t?k=key{i}
--- concurrent_requests: 2000
--- concurrency: 20
--- status_counts
200: 2000
--- distinct_header_values
X-Pid >= 2
--- request eval
["GET /t?k=key1999", "GET /t?k=key0"]
--- error_code eval
[429, 200]
--- grep_error_log eval: qr/rate_limit_zone "\w+" is full: \d+ keys? with live counts evicted since the last report \(reported at most once a minute\); make the zone larger/
--- grep_error_log_out
rate_limit_zone "small" is full: 1 key with live counts evicted since the last report (reported at most once a minute); make the zone larger
--- error_log eval
qr/\[warn\] .*rate_limit_zone "small" is full/
--- no_error_log
[error]



=== TEST 3: reload with the same zone name, size and key keeps the counters
--- project_only: reload between requests
--- http_config
    rate_limit_zone $host zone=keep:1m;
--- config
    location /t {
        rate_limit zone=keep rate=3r/h;
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
['RateLimit: "keep";r=2;t=\d+', 'RateLimit: "keep";r=1;t=\d+', 'RateLimit: "keep";r=0;t=\d+', 'RateLimit: "keep";r=0;t=\d+']
--- reload_after_request: 2
--- no_error_log
counters start afresh



=== TEST 4: reload with the same zone name, size and key keeps the counters: the reload is logged, no fresh start (2 requests in a concurrent phase before it)
--- project_only: concurrent phase; reload between requests
--- http_config
    rate_limit_zone $host zone=keep:1m;
--- config
    location /t {
        rate_limit zone=keep rate=3r/h;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- concurrent_request
GET /t
--- concurrent_requests: 2
--- concurrency: 1
--- status_counts
200: 2
--- reload_after_request: 0
--- request eval
["GET /t", "GET /t"]
--- error_code eval
[200, 429]
--- response_headers_like eval
['RateLimit: "keep";r=0;t=\d+', 'RateLimit: "keep";r=0;t=\d+']
--- error_log
reconfiguring
--- no_error_log
counters start afresh



=== TEST 5: reload with a changed location (same zone, key, limit): counters kept, the new location limited at once
--- project_only: reload between requests
--- http_config
    rate_limit_zone $host zone=keep:1m;
--- config
    location /t {
        rate_limit zone=keep rate=2r/h;
        alias html/index.html;
    }
--- reload_config
    location /new {
        rate_limit zone=keep rate=2r/h;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /new"]
--- error_code eval
[200, 200, 429]
--- reload_after_request: 2



=== TEST 6: reload with a changed key: a fresh zone, with a notice in the log (2 requests in a concurrent phase before the reload)
--- project_only: concurrent phase; reload between requests
--- http_config
    rate_limit_zone $host zone=rekey:1m;
--- reload_http_config
    rate_limit_zone $http_host zone=rekey:1m;
--- config
    location /t {
        rate_limit zone=rekey rate=2r/h;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- concurrent_request
GET /t
--- concurrent_requests: 2
--- concurrency: 1
--- status_counts
200: 2
--- reload_after_request: 0
--- request eval
["GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 429]
--- error_log eval
qr/\[notice\] .*rate_limit_zone "rekey": key changed from "\$host" to "\$http_host", counters start afresh/



=== TEST 7: reload with a changed size: a new zone, counters start afresh
--- project_only: reload between requests
--- http_config
    rate_limit_zone $host zone=resize:1m;
--- reload_http_config
    rate_limit_zone $host zone=resize:2m;
--- config
    location /t {
        rate_limit zone=resize rate=2r/h;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 200, 200, 429]
--- reload_after_request: 2



=== TEST 8: nginx -t: unknown zone
--- config
    location /t {
        rate_limit zone=nope rate=1r/s;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*unknown rate_limit_zone "nope" \(declare it with "rate_limit_zone" before use\) in "rate_limit" directive in \S+nginx\.conf:\d+/



=== TEST 9: nginx -t: rate_limit without zone=
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /t {
        rate_limit rate=1r/s dry_run;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"rate_limit" must have "zone" parameter in \S+nginx\.conf:\d+/



=== TEST 10: nginx -t: rate_limit without rate=
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /t {
        rate_limit zone=z dry_run;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"rate_limit" must have "rate" or "plan" parameter in \S+nginx\.conf:\d+/



=== TEST 11: nginx -t: bad rate unit
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /t {
        rate_limit zone=z rate=10r/x;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid rate "10r\/x", the unit must be r\/s, r\/m, r\/h, r\/d, r\/w or r\/M in "rate_limit" directive in \S+nginx\.conf:\d+/



=== TEST 12: nginx -t: bad rate number, zero rate
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /t {
        rate_limit zone=z rate=0r/s;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid rate "0r\/s", it must be at least 1r\/d in "rate_limit" directive in \S+nginx\.conf:\d+/



=== TEST 13: nginx -t: not a rate at all
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /t {
        rate_limit zone=z rate=fast;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid rate "fast", it must look like 10r\/s in "rate_limit" directive in \S+nginx\.conf:\d+/



=== TEST 14: nginx -t: burst with the sliding window
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /t {
        rate_limit zone=z rate=10r/s burst=5;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"burst" applies to algorithm=token_bucket only in "rate_limit" directive in \S+nginx\.conf:\d+/



=== TEST 15: nginx -t: bad algorithm
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /t {
        rate_limit zone=z rate=10r/s algorithm=leaky;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "algorithm=leaky" in "rate_limit" directive, must be "sliding" or "token_bucket" in \S+nginx\.conf:\d+/



=== TEST 16: nginx -t: zone too small
--- http_config
    rate_limit_zone $host zone=z:16k;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*zone "z" is too small, at least 32k in "rate_limit_zone" directive in \S+nginx\.conf:\d+/



=== TEST 17: nginx -t: duplicate zone
--- http_config
    rate_limit_zone $host zone=z:1m;
    rate_limit_zone $remote_addr zone=z:1m;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*duplicate zone "z" in "rate_limit_zone" directive in \S+nginx\.conf:\d+/



=== TEST 18: nginx -t: rate_limit_zone outside http
--- config
    rate_limit_zone $host zone=z:1m;
--- must_die
--- error_log eval
qr/\[emerg\] .*"rate_limit_zone" directive is not allowed here in \S+nginx\.conf:\d+/



=== TEST 19: nginx -t: rate_limit_status out of range
--- config
    rate_limit_status 200;
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "200" in "rate_limit_status" directive, value must be between 400 and 599 in \S+nginx\.conf:\d+/



=== TEST 20: nginx -t: bad rate_limit_headers mode
--- config
    rate_limit_headers yes;
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "yes" in "rate_limit_headers" directive, must be "draft", "legacy", "both" or "off" in \S+nginx\.conf:\d+/



=== TEST 21: nginx -t: one zone used with two algorithms
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /a {
        rate_limit zone=z rate=10r/s;
    }
    location /b {
        rate_limit zone=z rate=10r/s algorithm=token_bucket;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*zone "z" is used with algorithm=sliding elsewhere; one zone keeps one kind of counter, use another zone in "rate_limit" directive in \S+nginx\.conf:\d+/



=== TEST 22: nginx -t: rate_limit_zone without zone=
--- http_config
    rate_limit_zone $host;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid number of arguments in "rate_limit_zone" directive in \S+nginx\.conf:\d+/



=== TEST 23: nginx -t: rate_limit_zone with a zone but no size
--- http_config
    rate_limit_zone $host zone=z;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid zone "z", the zone size is missing, e.g. zone=name:10m in "rate_limit_zone" directive in \S+nginx\.conf:\d+/



=== TEST 24: nginx -t: rate_limit_zone with an empty key
--- http_config
    rate_limit_zone "" zone=z:1m;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "" in "rate_limit_zone" directive, the key must not be empty in \S+nginx\.conf:\d+/



=== TEST 25: nginx -t: bad rate_limit_invalid_rate
--- config
    rate_limit_invalid_rate maybe;
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "maybe" in "rate_limit_invalid_rate" directive, must be "pass" or "error" in \S+nginx\.conf:\d+/



=== TEST 26: nginx -t: duplicate rate_limit_status
--- config
    rate_limit_status 429;
    rate_limit_status 503;
--- must_die
--- error_log eval
qr/\[emerg\] .*"rate_limit_status" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 27: nginx -t: a burst that is not a number names the parameter and the directive
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /t {
        rate_limit zone=z rate=1r/s algorithm=token_bucket burst=lots;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "burst=lots" in "rate_limit" directive, "burst" must be a whole number of requests in \S+nginx\.conf:\d+/



=== TEST 28: nginx -t: unknown rate_limit parameter
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /t {
        rate_limit zone=z rate=1r/s period=5;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "period=5" in "rate_limit" directive, parameters are zone=, rate=, plan, cost=, burst=, algorithm=, dry_run and policy= in \S+nginx\.conf:\d+/
