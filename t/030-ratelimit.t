# Rate limits in real nginx with two workers sharing the zones: exact counts under concurrency
# (runner extension --- concurrent_requests, see t/README.md), the rate-limit headers, the
# rejection (status, Retry-After, problem+json, error_page), several limits with refunds, keys
# and rates from variables, dry runs, the variables, inheritance, and the order with auth_jwt.
#
# Sliding windows are aligned to the wall clock, so the wait of an exhausted sliding limit
# (`Retry-After`, and `t=`/`X-RateLimit-Reset` once `r=0`) depends on when the block runs: those
# are matched by range (at most one period). With quota left, `t=` is exactly one period (the
# last admission is then a period from expiring). Token-bucket (GCRA) values only depend on the
# time between the block's own requests (well under a second), so they are checked exactly.
# Rates are per hour or per minute so that no counter refills while a block runs, except where a
# block waits for a refill on purpose (1r/s, one-second sleeps).
#
# The log checks run after each request against the lines that request logged. A line logged by
# a rejection only (not by the requests that used up the quota) is checked in a block of its own
# (--- project_only) that uses up the quota in a concurrent phase of one connection first, so that
# every ordinary request of that block is one that logs the line.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

workers(2);
master_on();
no_shuffle();
run_tests();

__DATA__

=== TEST 1: exactness: 400 requests over 50 connections against 100r/h (sliding) let exactly 100 through, both workers serving
--- project_only: concurrent phase
--- http_config
    # reuseport on the test port (the runner's own listen has no options): the kernel spreads
    # the connections over both workers, so X-Pid >= 2 is not left to chance.
    server {
        listen $TEST_NGINX_SERVER_PORT reuseport;
        server_name reuseport.invalid;
    }
    rate_limit_zone $host zone=exact:1m;
--- config
    location /t {
        rate_limit zone=exact rate=100r/h;
        add_header X-Pid $pid always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- concurrent_request
GET /t
--- concurrent_requests: 400
--- concurrency: 50
--- status_counts
200: 100
429: 300
--- distinct_header_values
X-Pid >= 2
--- no_error_log
[error]



=== TEST 2: exactness: token bucket 10r/h burst=39 (capacity 40) under 400 concurrent requests
--- project_only: concurrent phase
--- http_config
    # reuseport on the test port (the runner's own listen has no options): the kernel spreads
    # the connections over both workers, so X-Pid >= 2 is not left to chance.
    server {
        listen $TEST_NGINX_SERVER_PORT reuseport;
        server_name reuseport.invalid;
    }
    rate_limit_zone $host zone=bucket:1m;
--- config
    location /t {
        rate_limit zone=bucket rate=10r/h burst=39 algorithm=token_bucket;
        add_header X-Pid $pid always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- concurrent_request
GET /t
--- concurrent_requests: 400
--- concurrency: 50
--- status_counts
200: 40
429: 360
--- distinct_header_values
X-Pid >= 2
--- no_error_log
[error]



=== TEST 3: exactness per key: 10 keys x 20 requests each against 3r/h, concurrently
--- project_only: concurrent phase
--- http_config
    # reuseport on the test port (the runner's own listen has no options): the kernel spreads
    # the connections over both workers, so X-Pid >= 2 is not left to chance.
    server {
        listen $TEST_NGINX_SERVER_PORT reuseport;
        server_name reuseport.invalid;
    }
    map $arg_n $last_digit {
        "~(?<d>[0-9])$"  key$d;
    }
    rate_limit_zone $last_digit zone=perkey:1m;
--- config
    location /t {
        rate_limit zone=perkey rate=3r/h;
        add_header X-Pid $pid always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- concurrent_request
GET /t?n={i}
--- concurrent_requests: 200
--- concurrency: 40
--- status_counts
200: 30
429: 170
--- distinct_header_values
X-Pid >= 2



=== TEST 4: draft headers (the default): exact q, w, r; t is a period after the last admission, and once exhausted the same wait as Retry-After (at most one period)
--- http_config
    rate_limit_zone $host zone=api:1m;
--- config
    location /t {
        rate_limit zone=api rate=3r/m;
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
[
'RateLimit-Policy: "api";q=3;w=60
RateLimit: "api";r=2;t=60
!Retry-After
!X-RateLimit-Limit
!RateLimit-Limit',
'RateLimit-Policy: "api";q=3;w=60
RateLimit: "api";r=1;t=60',
'RateLimit-Policy: "api";q=3;w=60
RateLimit: "api";r=0;t=([1-9]|[1-5][0-9]|60)',
'RateLimit-Policy: "api";q=3;w=60
RateLimit: "api";r=0;t=([1-9]|[1-5][0-9]|60)
Retry-After: ([1-9]|[1-5][0-9]|60)
!X-RateLimit-Limit',
]



=== TEST 5: draft headers of a token bucket: every value exact; once exhausted, t is when the next request fits (= Retry-After)
--- http_config
    rate_limit_zone $host zone=tb:1m;
--- config
    location /t {
        rate_limit zone=tb rate=3r/h burst=2 algorithm=token_bucket;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 200, 429]
--- response_headers eval
[
'RateLimit-Policy: "tb";q=3;w=3600
RateLimit: "tb";r=2;t=1200
!Retry-After',
'RateLimit-Policy: "tb";q=3;w=3600
RateLimit: "tb";r=1;t=2400
!Retry-After',
'RateLimit-Policy: "tb";q=3;w=3600
RateLimit: "tb";r=0;t=1200
!Retry-After',
'RateLimit-Policy: "tb";q=3;w=3600
RateLimit: "tb";r=0;t=1200
Retry-After: 1200',
]



=== TEST 6: legacy headers: X-RateLimit-* and RateLimit-Limit/Remaining/Reset, no draft headers
--- http_config
    rate_limit_zone $host zone=tb:1m;
--- config
    location /t {
        rate_limit zone=tb rate=3r/h burst=2 algorithm=token_bucket;
        rate_limit_headers legacy;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 200, 429]
--- response_headers eval
[
'X-RateLimit-Limit: 3
X-RateLimit-Remaining: 2
X-RateLimit-Reset: 1200
RateLimit-Limit: 3
RateLimit-Remaining: 2
RateLimit-Reset: 1200
!RateLimit-Policy
!RateLimit
!Retry-After',
'X-RateLimit-Limit: 3
X-RateLimit-Remaining: 1
X-RateLimit-Reset: 2400
RateLimit-Limit: 3
RateLimit-Remaining: 1
RateLimit-Reset: 2400',
'X-RateLimit-Remaining: 0
X-RateLimit-Reset: 1200
RateLimit-Remaining: 0
RateLimit-Reset: 1200',
'X-RateLimit-Limit: 3
X-RateLimit-Remaining: 0
X-RateLimit-Reset: 1200
RateLimit-Limit: 3
RateLimit-Remaining: 0
RateLimit-Reset: 1200
!RateLimit-Policy
Retry-After: 1200',
]



=== TEST 7: headers both, and off (Retry-After stays on a rejection)
--- http_config
    rate_limit_zone $host zone=tb:1m;
--- config
    location /both {
        rate_limit zone=tb rate=1r/h algorithm=token_bucket;
        rate_limit_headers both;
        alias html/index.html;
    }
    location /off {
        rate_limit zone=tb rate=1r/h algorithm=token_bucket;
        rate_limit_headers off;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /both", "GET /off"]
--- error_code eval
[200, 429]
--- response_headers eval
[
'RateLimit-Policy: "tb";q=1;w=3600
RateLimit: "tb";r=0;t=3600
X-RateLimit-Limit: 1
X-RateLimit-Remaining: 0
X-RateLimit-Reset: 3600
RateLimit-Limit: 1
RateLimit-Remaining: 0
RateLimit-Reset: 3600
!Retry-After',
'!RateLimit-Policy
!RateLimit
!X-RateLimit-Limit
!X-RateLimit-Remaining
!X-RateLimit-Reset
!RateLimit-Limit
!RateLimit-Remaining
!RateLimit-Reset
Retry-After: 3600',
]



=== TEST 8: the default rejection: 429, Retry-After, RFC 9457 problem+json naming the policy; a 2r/h bucket without burst advertises q=1;w=1800
--- http_config
    rate_limit_zone $host zone=tb:1m;
--- config
    location /t {
        rate_limit zone=tb rate=2r/h algorithm=token_bucket policy=free-tier;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t"]
--- error_code eval
[200, 429]
--- response_headers eval
[
'Content-Type: text/plain
RateLimit: "free-tier";r=0;t=1800',
'Content-Type: application/problem+json
Retry-After: 1800
RateLimit-Policy: "free-tier";q=1;w=1800
RateLimit: "free-tier";r=0;t=1800',
]
--- response_body eval
[
"ok\n",
qq{{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"rate limit \\"free-tier\\" exceeded, retry in 1800 s","policy":"free-tier"}\n},
]
--- no_error_log
[error]



=== TEST 9: the default rejection is logged with the policy and the wait (the quota used up by a first request in a concurrent phase)
--- project_only: concurrent phase (uses up the quota, so that the checked request is the rejected one)
--- http_config
    rate_limit_zone $host zone=tb:1m;
--- config
    location /t {
        rate_limit zone=tb rate=2r/h algorithm=token_bucket policy=free-tier;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- concurrent_request
GET /t
--- concurrent_requests: 1
--- concurrency: 1
--- status_counts
200: 1
--- request
GET /t
--- error_code: 429
--- response_headers
Retry-After: 1800
--- error_log
rate_limit "free-tier" rejected the request, retry after 1800s
--- no_error_log
[error]



=== TEST 10: error_page 429 replaces the body; the status, Retry-After and rate-limit headers stay
--- http_config
    rate_limit_zone $host zone=tb:1m;
--- config
    location /t {
        rate_limit zone=tb rate=1r/h algorithm=token_bucket;
        error_page 429 /busy.html;
        alias html/index.html;
    }
    location = /busy.html {
        internal;
        root html;
    }
--- user_files
>>> index.html
ok
>>> busy.html
slow down
--- request eval
["GET /t", "GET /t"]
--- error_code eval
[200, 429]
--- response_headers eval
[
'!Retry-After',
'Content-Type: text/html
Retry-After: 3600
RateLimit: "tb";r=0;t=3600',
]
--- response_body eval
["ok\n", "slow down\n"]



=== TEST 11: rate_limit_status 503: the status and title change, Retry-After and headers stay
--- http_config
    rate_limit_zone $host zone=tb:1m;
--- config
    location /t {
        rate_limit zone=tb rate=1r/h algorithm=token_bucket;
        rate_limit_status 503;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t"]
--- error_code eval
[200, 503]
--- response_headers eval
['', 'Retry-After: 3600
Content-Type: application/problem+json
RateLimit: "tb";r=0;t=3600']
--- response_body eval
[
"ok\n",
qq{{"type":"about:blank","title":"Request Rejected","status":503,"detail":"rate limit \\"tb\\" exceeded, retry in 3600 s","policy":"tb"}\n},
]



=== TEST 12: two limits, the second rejects: the first is refunded (a rejected request consumes nothing)
--- http_config
    rate_limit_zone $host zone=a:1m;
    rate_limit_zone $host zone=b:1m;
--- config
    location /two {
        rate_limit zone=a rate=10r/h;
        rate_limit zone=b rate=2r/h;
        alias html/index.html;
    }
    location /a {
        rate_limit zone=a rate=10r/h;
        add_header X-RL "$rate_limit_policy $rate_limit_remaining" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /two", "GET /two", "GET /two", "GET /two", "GET /two", "GET /a"]
--- error_code eval
[200, 200, 429, 429, 429, 200]
--- response_headers_like eval
[
'RateLimit: "b";r=1;t=\d+',
'RateLimit: "b";r=0;t=\d+',
'RateLimit: "b";r=0;t=\d+
Retry-After: \d+',
'RateLimit: "b";r=0;t=\d+',
'RateLimit: "b";r=0;t=\d+',
'X-RL: a 7
RateLimit-Policy: "a";q=10;w=3600
RateLimit: "a";r=7;t=\d+',
]



=== TEST 13: two limits, both pass: the headers report the most restrictive one
--- http_config
    rate_limit_zone $host zone=a:1m;
    rate_limit_zone $arg_u zone=b:1m;
--- config
    location /t {
        rate_limit zone=a rate=6r/h policy=global;
        rate_limit zone=b rate=3r/h policy=user;
        add_header X-RL "$rate_limit_status $rate_limit_policy $rate_limit_remaining" always;
        root html;
        try_files /index.html =404;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t?u=x", "GET /t?u=x", "GET /t?u=y", "GET /t?u=y", "GET /t?u=z", "GET /t?u=z", "GET /t?u=z"]
--- error_code eval
[200, 200, 200, 200, 200, 200, 429]
--- response_headers eval
[
'X-RL: PASSED user 2',
'X-RL: PASSED user 1',
'X-RL: PASSED user 2',
'X-RL: PASSED user 1',
'X-RL: PASSED global 1',
'X-RL: PASSED global 0',
'X-RL: REJECTED global 0',
]



=== TEST 14: an empty key is not limited (map on a header): no headers, empty variables
--- http_config
    map $http_x_internal $rl_key {
        1        "";
        default  $host;
    }
    rate_limit_zone $rl_key zone=ext:1m;
--- config
    location /t {
        rate_limit zone=ext rate=1r/h;
        add_header X-RL "[$rate_limit_status][$rate_limit_remaining][$rate_limit_policy]" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
["", "", "X-Internal: 1", "X-Internal: 1", "X-Internal: 1"]
--- error_code eval
[200, 429, 200, 200, 200]
--- response_headers eval
[
'X-RL: [PASSED][0][ext]',
'X-RL: [REJECTED][0][ext]',
'X-RL: [][][]
!RateLimit
!RateLimit-Policy',
'X-RL: [][][]',
'X-RL: [][][]',
]



=== TEST 15: per-plan rates from a map on a header: gold 5r/m, default 2r/m, per user
--- http_config
    map $http_x_plan $quota {
        gold     5r/m;
        default  2r/m;
    }
    rate_limit_zone $http_x_user zone=plans:1m;
--- config
    location /t {
        rate_limit zone=plans rate=$quota;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
[
"X-User: ann\nX-Plan: gold", "X-User: ann\nX-Plan: gold", "X-User: ann\nX-Plan: gold",
"X-User: ann\nX-Plan: gold", "X-User: ann\nX-Plan: gold", "X-User: ann\nX-Plan: gold",
"X-User: bob", "X-User: bob", "X-User: bob",
]
--- error_code eval
[200, 200, 200, 200, 200, 429, 200, 200, 429]
--- response_headers_like eval
[
'RateLimit-Policy: "plans";q=5;w=60', '', '', '',
'RateLimit: "plans";r=0;t=\d+', 'Retry-After: \d+',
'RateLimit-Policy: "plans";q=2;w=60
RateLimit: "plans";r=1;t=\d+', '', 'Retry-After: \d+',
]



=== TEST 16: a bad rate from a variable with rate_limit_invalid_rate pass (the default): the limit is skipped, a good rate after it still counts (the log line: next block)
--- http_config
    map $http_x_plan $quota {
        gold     5r/m;
        broken   lots;
        default  1r/h;
    }
    rate_limit_zone $host zone=plans:1m;
--- config
    location /t {
        rate_limit zone=plans rate=$quota;
        add_header X-RL "[$rate_limit_status]" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
["X-Plan: broken", "X-Plan: broken", "X-Plan: broken", "X-Plan: x"]
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
['X-RL: []
!RateLimit', 'X-RL: []', 'X-RL: []', 'X-RL: [PASSED]']



=== TEST 17: a bad rate from a variable with rate_limit_invalid_rate pass: the request logs the bad rate (at most once a minute per worker, so one request)
--- http_config
    map $http_x_plan $quota {
        gold     5r/m;
        broken   lots;
        default  1r/h;
    }
    rate_limit_zone $host zone=plans:1m;
--- config
    location /t {
        rate_limit zone=plans rate=$quota;
        add_header X-RL "[$rate_limit_status]" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request
GET /t
--- more_headers
X-Plan: broken
--- response_headers
X-RL: []
!RateLimit
--- error_log eval
qr/\[error\] .*rate_limit "plans": invalid rate "lots", it must look like 10r\/s from variable/



=== TEST 18: a good rate from the same variable logs no invalid rate
--- http_config
    map $http_x_plan $quota {
        gold     5r/m;
        broken   lots;
        default  1r/h;
    }
    rate_limit_zone $host zone=plans:1m;
--- config
    location /t {
        rate_limit zone=plans rate=$quota;
        add_header X-RL "[$rate_limit_status]" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["X-Plan: gold", "X-Plan: x"]
--- error_code eval
[200, 200]
--- response_headers eval
['X-RL: [PASSED]', 'X-RL: [PASSED]']
--- no_error_log
invalid rate
[error]



=== TEST 19: a bad rate from a variable with rate_limit_invalid_rate error: 500, and the bad rate consumed nothing (the log line: next block)
--- http_config
    map $http_x_plan $quota {
        broken   10r/x;
        default  1r/h;
    }
    rate_limit_zone $host zone=plans:1m;
--- config
    location /t {
        rate_limit zone=plans rate=$quota;
        rate_limit_invalid_rate error;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
["X-Plan: broken", "", ""]
--- error_code eval
[500, 200, 429]



=== TEST 20: a bad rate from a variable with rate_limit_invalid_rate error: the 500 logs the bad rate
--- http_config
    map $http_x_plan $quota {
        broken   10r/x;
        default  1r/h;
    }
    rate_limit_zone $host zone=plans:1m;
--- config
    location /t {
        rate_limit zone=plans rate=$quota;
        rate_limit_invalid_rate error;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request
GET /t
--- more_headers
X-Plan: broken
--- error_code: 500
--- error_log eval
qr/\[error\] .*rate_limit "plans": invalid rate "10r\/x", the unit must be r\/s, r\/m, r\/h, r\/d, r\/w or r\/M/



=== TEST 21: dry_run parameter: counted, never rejected, nothing logged as rejected; $rate_limit_status says REJECTED_DRY_RUN
--- http_config
    rate_limit_zone $host zone=dry:1m;
--- config
    location /t {
        rate_limit zone=dry rate=2r/h dry_run;
        add_header X-RL "$rate_limit_status $rate_limit_remaining" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 200, 200]
--- response_headers_like eval
[
'X-RL: PASSED 1',
'X-RL: PASSED 0',
'X-RL: REJECTED_DRY_RUN 0
RateLimit: "dry";r=0;t=\d+
!Retry-After',
'X-RL: REJECTED_DRY_RUN 0',
]
--- response_body eval
["ok\n", "ok\n", "ok\n", "ok\n"]
--- no_error_log
rejected the request



=== TEST 22: dry_run parameter: each request over the quota logs "would reject", none "rejected" (the quota used up in a concurrent phase)
--- project_only: concurrent phase (uses up the quota, so that every checked request is over it)
--- http_config
    rate_limit_zone $host zone=dry:1m;
--- config
    location /t {
        rate_limit zone=dry rate=2r/h dry_run;
        add_header X-RL "$rate_limit_status $rate_limit_remaining" always;
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
--- request eval
["GET /t", "GET /t"]
--- response_headers_like eval
['X-RL: REJECTED_DRY_RUN 0
!Retry-After', 'X-RL: REJECTED_DRY_RUN 0
!Retry-After']
--- response_body eval
["ok\n", "ok\n"]
--- error_log
rate_limit "dry" would reject (dry run)
--- no_error_log
rejected the request



=== TEST 23: rate_limit_dry_run on (directive, inherited from server) makes every limit a dry run: $rate_limit_status and $rate_limit_policy per request
--- http_config
    rate_limit_zone $host zone=dry:1m;
    rate_limit_zone $host zone=other:1m;
--- config
    rate_limit_dry_run on;
    location /t {
        rate_limit zone=dry rate=1r/h;
        rate_limit zone=other rate=5r/h;
        add_header X-RL "$rate_limit_status $rate_limit_policy" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 200]
--- response_headers eval
['X-RL: PASSED dry', 'X-RL: REJECTED_DRY_RUN dry', 'X-RL: REJECTED_DRY_RUN dry']



=== TEST 24: rate_limit_dry_run on: each request over the 1r/h limit logs one "would reject" for it, none for the 5r/h one (the quota used up in a concurrent phase)
--- project_only: concurrent phase (uses up the quota, so that every checked request is over it)
--- http_config
    rate_limit_zone $host zone=dry:1m;
    rate_limit_zone $host zone=other:1m;
--- config
    rate_limit_dry_run on;
    location /t {
        rate_limit zone=dry rate=1r/h;
        rate_limit zone=other rate=5r/h;
        add_header X-RL "$rate_limit_status $rate_limit_policy" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- concurrent_request
GET /t
--- concurrent_requests: 1
--- concurrency: 1
--- status_counts
200: 1
--- request eval
["GET /t", "GET /t"]
--- error_code eval
[200, 200]
--- response_headers eval
['X-RL: REJECTED_DRY_RUN dry', 'X-RL: REJECTED_DRY_RUN dry']
--- grep_error_log eval: qr/rate_limit "\w+" would reject \(dry run\)/
--- grep_error_log_out
rate_limit "dry" would reject (dry run)



=== TEST 25: variables in a response header (and the first request's in the access log); not found without a limit: empty in a header
--- http_config
    rate_limit_zone $host zone=v:1m;
    log_format rl "$uri [$rate_limit_status] [$rate_limit_remaining] [$rate_limit_policy]";
    access_log logs/access.log rl;
--- config
    location /t {
        rate_limit zone=v rate=2r/h policy=gold-tier;
        add_header X-RL "$rate_limit_status $rate_limit_remaining $rate_limit_policy" always;
        alias html/index.html;
    }
    location /free {
        add_header X-RL "[$rate_limit_status]" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t", "GET /free"]
--- error_code eval
[200, 200, 429, 200]
--- response_headers eval
['X-RL: PASSED 1 gold-tier', 'X-RL: PASSED 0 gold-tier', 'X-RL: REJECTED 0 gold-tier', 'X-RL: []']
--- access_log
/t [PASSED] [1] [gold-tier]



=== TEST 26: variables in the access log: passed, passed, rejected, and "-" without a limit (the first three requests in a concurrent phase of one connection)
--- project_only: concurrent phase (the access log is checked after each request, so the lines of the earlier requests must be there before the first check)
--- http_config
    rate_limit_zone $host zone=v:1m;
    log_format rl "$uri [$rate_limit_status] [$rate_limit_remaining] [$rate_limit_policy]";
    access_log logs/access.log rl;
--- config
    location /t {
        rate_limit zone=v rate=2r/h policy=gold-tier;
        add_header X-RL "$rate_limit_status $rate_limit_remaining $rate_limit_policy" always;
        alias html/index.html;
    }
    location /free {
        add_header X-RL "[$rate_limit_status]" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- concurrent_request
GET /t
--- concurrent_requests: 3
--- concurrency: 1
--- status_counts
200: 2
429: 1
--- request
GET /free
--- response_headers
X-RL: []
--- access_log
/t [PASSED] [1] [gold-tier]
/t [PASSED] [0] [gold-tier]
/t [REJECTED] [0] [gold-tier]
/free [-] [-] [-]



=== TEST 27: a variable without a limit is "-" in the access log
--- http_config
    log_format rl "$uri [$rate_limit_status] [$rate_limit_remaining] [$rate_limit_policy]";
    access_log logs/access.log rl;
--- config
    location /free {
        add_header X-RL "[$rate_limit_status]" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request
GET /free
--- response_headers
X-RL: []
--- access_log
/free [-] [-] [-]



=== TEST 28: inheritance: a server-level rate_limit applies to locations without their own; a location's rate_limit replaces the whole set
--- http_config
    rate_limit_zone $host zone=srv:1m;
    rate_limit_zone $host zone=loc:1m;
--- config
    rate_limit zone=srv rate=1r/h;
    location /inherit {
        alias html/index.html;
    }
    location /own {
        rate_limit zone=loc rate=2r/h;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /inherit", "GET /inherit", "GET /own", "GET /own", "GET /own"]
--- error_code eval
[200, 429, 200, 200, 429]
--- response_headers_like eval
['RateLimit: "srv";r=0;t=\d+', 'RateLimit: "srv";r=0;t=\d+', 'RateLimit: "loc";r=1;t=\d+', 'RateLimit: "loc";r=0;t=\d+', 'RateLimit: "loc";r=0;t=\d+']



=== TEST 29: auth_jwt answers 401 before the limits: invalid tokens consume nothing, a valid token then has its full quota
--- http_config
    rate_limit_zone $binary_remote_addr zone=ip:1m;
    rate_limit_zone $jwt_claim_sub zone=users:1m;
--- config
    location /api {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/hs256.jwk;
        rate_limit zone=ip rate=3r/h;
        rate_limit zone=users rate=2r/h;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
>>> hs256.jwk
{
  "alg": "HS256",
  "k": "-XA2YL0lgSDxnAg3NMc2-c-CR14FHQq5WDtzPn4FEEU",
  "kid": "hs256",
  "kty": "oct"
}
--- request eval
["GET /api", "GET /api", "GET /api", "GET /api", "GET /api", "GET /api", "GET /api"]
--- more_headers eval
[
# a bad signature (sub alice), an expired token (sub alice), no token at all, garbage
"Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.DlF21ihkb2gaMKPqZnecJEV5uqPyzUUKQPf1Qk4yS8Y",
"Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjEwMDAwMDAwMDAsInN1YiI6ImFsaWNlIn0.VKQ2TJ1YJjmL6zdvmdqhq1wIwDL9ESnxKRZKk8j57Zs",
"",
"Authorization: Bearer not.a.token",
# alice, valid until 2100
"Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.D1F21ihkb2gaMKPqZnecJEV5uqPyzUUKQPf1Qk4yS8Y",
"Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.D1F21ihkb2gaMKPqZnecJEV5uqPyzUUKQPf1Qk4yS8Y",
"Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.D1F21ihkb2gaMKPqZnecJEV5uqPyzUUKQPf1Qk4yS8Y",
]
--- error_code eval
[401, 401, 401, 401, 200, 200, 429]
--- response_headers_like eval
['!RateLimit
!Retry-After', '!RateLimit', '!RateLimit', '!RateLimit',
'RateLimit: "users";r=1;t=\d+', 'RateLimit: "users";r=0;t=\d+', 'RateLimit: "users";r=0;t=\d+
Retry-After: \d+']
--- no_error_log
[error]



=== TEST 30: an internal redirect (index) does not count the request twice
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /d/ {
        rate_limit zone=z rate=5r/h;
        add_header X-RL "$rate_limit_status $rate_limit_remaining" always;
        root html;
    }
--- user_files
>>> d/index.html
ok
--- request eval
["GET /d/", "GET /d/index.html", "GET /d/"]
--- response_headers_like eval
['X-RL: PASSED 4
RateLimit: "z";r=4;t=\d+', 'X-RL: PASSED 3
RateLimit: "z";r=3;t=\d+', 'X-RL: PASSED 2
RateLimit: "z";r=2;t=\d+']



=== TEST 31: error_page 429 to a location that inherits the server's limit: the error page is served once, headers not doubled, variables kept
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    rate_limit zone=z rate=1r/h;
    error_page 429 /busy.html;
    location /t {
        alias html/index.html;
    }
    location = /busy.html {
        add_header X-RL "$rate_limit_status $rate_limit_policy" always;
        root html;
    }
--- user_files
>>> index.html
ok
>>> busy.html
busy
--- request eval
["GET /t", "GET /t"]
--- error_code eval
[200, 429]
--- response_body eval
["ok\n", "busy\n"]
--- response_headers_like eval
['!Retry-After', 'Retry-After: \d+
RateLimit: "z";r=0;t=\d+
RateLimit-Policy: "z";q=1;w=3600
X-RL: REJECTED z']



=== TEST 32: try_files to a named location with its own limit: the first location's decision stands (as limit_req)
--- http_config
    rate_limit_zone $host zone=a:1m;
    rate_limit_zone $host zone=b:1m;
--- config
    location /t {
        rate_limit zone=a rate=5r/h;
        try_files /nonexistent @back;
    }
    location @back {
        rate_limit zone=b rate=1r/h;
        add_header X-RL "$rate_limit_status $rate_limit_policy $rate_limit_remaining" always;
        root html;
        try_files /index.html =404;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 200]
--- response_headers eval
['X-RL: PASSED a 4', 'X-RL: PASSED a 3', 'X-RL: PASSED a 2']



=== TEST 33: two limits of different periods on one zone and key both hold exactly: 3r/h and 100r/m, 3 pass, the 4th is rejected by the hourly policy, none logged as rejected by the minute one
--- http_config
    rate_limit_zone $http_x_key zone=keys:1m;
--- config
    location /t {
        rate_limit zone=keys rate=100r/m policy=minute;
        rate_limit zone=keys rate=3r/h policy=hourly;
        add_header X-RL "$rate_limit_status $rate_limit_policy $rate_limit_remaining" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
["X-Key: k1", "X-Key: k1", "X-Key: k1", "X-Key: k1", "X-Key: k2"]
--- error_code eval
[200, 200, 200, 429, 200]
--- response_headers_like eval
[
'X-RL: PASSED hourly 2
RateLimit-Policy: "hourly";q=3;w=3600',
'X-RL: PASSED hourly 1',
'X-RL: PASSED hourly 0',
'X-RL: REJECTED hourly 0
Retry-After: \d+',
'X-RL: PASSED hourly 2',
]
--- response_body_like eval
["ok", "ok", "ok", qr/"detail":"rate limit \\"hourly\\" exceeded, retry in \d+ s","policy":"hourly"/, "ok"]
--- no_error_log
rate_limit "minute" rejected



=== TEST 34: two limits of different periods on one zone and key: the 4th request is logged as rejected by the hourly policy, not the minute one (3 used up in a concurrent phase)
--- project_only: concurrent phase (uses up the quota, so that the checked request is the rejected one)
--- http_config
    rate_limit_zone $http_x_key zone=keys:1m;
--- config
    location /t {
        rate_limit zone=keys rate=100r/m policy=minute;
        rate_limit zone=keys rate=3r/h policy=hourly;
        add_header X-RL "$rate_limit_status $rate_limit_policy $rate_limit_remaining" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- concurrent_request
GET /t
--- concurrent_requests: 3
--- concurrency: 1
--- status_counts
200: 3
--- more_headers
X-Key: k1
--- request
GET /t
--- error_code: 429
--- response_headers_like
X-RL: REJECTED hourly 0
Retry-After: \d+
--- error_log
rate_limit "hourly" rejected the request
--- no_error_log
rate_limit "minute" rejected



=== TEST 35: one zone in several locations: a counter per period, shared by limits of that period wherever they are
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /minute {
        rate_limit zone=z rate=100r/m;
        alias html/index.html;
    }
    location /hour {
        rate_limit zone=z rate=2r/h;
        alias html/index.html;
    }
    location /minute-strict {
        rate_limit zone=z rate=4r/m;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /minute", "GET /minute", "GET /minute", "GET /hour", "GET /hour", "GET /hour", "GET /minute-strict", "GET /minute-strict"]
--- error_code eval
[200, 200, 200, 200, 200, 429, 200, 429]
--- response_headers_like eval
[
'RateLimit: "z";r=99;t=60', 'RateLimit: "z";r=98;t=60', 'RateLimit: "z";r=97;t=60',
'RateLimit: "z";r=1;t=3600', 'RateLimit: "z";r=0;t=\d+', 'RateLimit: "z";r=0;t=\d+',
'RateLimit: "z";r=0;t=\d+', 'RateLimit: "z";r=0;t=\d+',
]



=== TEST 36: two limits of one period on one zone share the counter and count a request once: an enforced 5r/h with a dry-run 3r/h preview
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /t {
        rate_limit zone=z rate=5r/h;
        rate_limit zone=z rate=3r/h dry_run policy=preview;
        add_header X-RL "$rate_limit_status $rate_limit_policy $rate_limit_remaining" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 200, 200, 200, 429]
--- response_headers eval
[
'X-RL: PASSED preview 2',
'X-RL: PASSED preview 1',
'X-RL: PASSED preview 0',
'X-RL: REJECTED_DRY_RUN preview 0',
'X-RL: REJECTED_DRY_RUN preview 0',
'X-RL: REJECTED z 0',
]



=== TEST 37: an enforced 5r/h with a dry-run 3r/h preview on one zone: the 4th and 5th requests each log one "would reject" of the preview and nothing else (3 used up in a concurrent phase)
--- project_only: concurrent phase (uses up the quota, so that every checked request is over the preview)
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /t {
        rate_limit zone=z rate=5r/h;
        rate_limit zone=z rate=3r/h dry_run policy=preview;
        add_header X-RL "$rate_limit_status $rate_limit_policy $rate_limit_remaining" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- concurrent_request
GET /t
--- concurrent_requests: 3
--- concurrency: 1
--- status_counts
200: 3
--- request eval
["GET /t", "GET /t"]
--- error_code eval
[200, 200]
--- response_headers eval
['X-RL: REJECTED_DRY_RUN preview 0', 'X-RL: REJECTED_DRY_RUN preview 0']
--- grep_error_log eval: qr/rate_limit "\w+" (would reject \(dry run\)|rejected the request)/
--- grep_error_log_out
rate_limit "preview" would reject (dry run)



=== TEST 38: an enforced 5r/h with a dry-run 3r/h preview on one zone: the 6th request logs only its rejection by the enforced limit, no "would reject" (5 used up in a concurrent phase, logged to another file)
--- project_only: concurrent phase (uses up the quota, so that the checked request is the rejected one)
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /t {
        rate_limit zone=z rate=5r/h;
        rate_limit zone=z rate=3r/h dry_run policy=preview;
        add_header X-RL "$rate_limit_status $rate_limit_policy $rate_limit_remaining" always;
        alias html/index.html;
    }
    # the same limits (one counter per zone, key and period), logging elsewhere: the "would
    # reject" lines of the 4th and 5th requests stay out of error.log
    location /pre {
        error_log logs/pre.log info;
        rate_limit zone=z rate=5r/h;
        rate_limit zone=z rate=3r/h dry_run policy=preview;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- concurrent_request
GET /pre
--- concurrent_requests: 5
--- concurrency: 1
--- status_counts
200: 5
--- request
GET /t
--- error_code: 429
--- response_headers
X-RL: REJECTED z 0
--- grep_error_log eval: qr/rate_limit "\w+" (would reject \(dry run\)|rejected the request)/
--- grep_error_log_out
rate_limit "z" rejected the request



=== TEST 39: a rate from a variable and a fixed cap of the same period on one zone: each is checked against the count before the request, which is counted once
--- http_config
    map $http_x_plan $quota {
        gold     5r/h;
        default  1r/h;
    }
    rate_limit_zone $host zone=z:1m;
--- config
    location /t {
        rate_limit zone=z rate=$quota policy=plan;
        rate_limit zone=z rate=2r/h policy=cap;
        add_header X-RL "$rate_limit_status $rate_limit_policy $rate_limit_remaining" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
["X-Plan: gold", "X-Plan: gold", "X-Plan: gold"]
--- error_code eval
[200, 200, 429]
--- response_headers eval
['X-RL: PASSED cap 1', 'X-RL: PASSED cap 0', 'X-RL: REJECTED cap 0']



=== TEST 40: Retry-After, RateLimit t= and both Reset headers say the same wait on every rejection (nginx compares them in a map), and a wait of at most one window
--- http_config
    rate_limit_zone $host zone=slide:1m;
    rate_limit_zone $host zone=bucket:1m;
    map "$sent_http_retry_after|$sent_http_ratelimit|$sent_http_x_ratelimit_reset|$sent_http_ratelimit_reset" $rl_agree {
        '~^(\d+)\|"[^"]*";r=0;t=\1\|\1\|\1$'  yes;
        default                               no;
    }
    log_format rl "$uri $status $rl_agree";
--- config
    access_log logs/rl.log rl;
    rate_limit_headers both;
    location /slide {
        rate_limit zone=slide rate=3r/m;
        alias html/index.html;
    }
    location /bucket {
        rate_limit zone=bucket rate=2r/h burst=1 algorithm=token_bucket;
        alias html/index.html;
    }
    location /both {
        rate_limit zone=slide rate=3r/m;
        rate_limit zone=bucket rate=2r/h burst=1 algorithm=token_bucket;
        alias html/index.html;
    }
    location /log {
        alias logs/rl.log;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /slide", "GET /slide", "GET /slide", "GET /slide", "GET /bucket", "GET /bucket", "GET /bucket", "GET /both", "GET /log"]
--- error_code eval
[200, 200, 200, 429, 200, 200, 429, 429, 200]
--- response_headers_like eval
[
'RateLimit: "slide";r=2;t=60', '', 'RateLimit: "slide";r=0;t=([1-9]|[1-5][0-9]|60)',
'Retry-After: ([1-9]|[1-5][0-9]|60)',
'RateLimit: "bucket";r=1;t=1800', 'RateLimit: "bucket";r=0;t=1800
X-RateLimit-Reset: 1800', 'Retry-After: 1800
RateLimit: "bucket";r=0;t=1800',
'Retry-After: 1800
RateLimit: "bucket";r=0;t=1800',
'',
]
--- response_body_like eval
["ok", "ok", "ok", "", "ok", "ok", "", qr/"policy":"bucket"/, qr{/slide 429 yes\n(.*\n)?/bucket 429 yes\n/both 429 yes\n}s]



=== TEST 41: waiting Retry-After seconds is enough: 1r/s sliding and token bucket admit again after the announced wait
--- project_only: sleeps between requests (after_request)
--- http_config
    rate_limit_zone $host zone=slide:1m;
    rate_limit_zone $host zone=bucket:1m;
--- config
    location /slide {
        rate_limit zone=slide rate=1r/s;
        alias html/index.html;
    }
    location /bucket {
        rate_limit zone=bucket rate=1r/s algorithm=token_bucket;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /slide", "GET /slide", "GET /slide", "GET /bucket", "GET /bucket", "GET /bucket"]
--- error_code eval
[200, 429, 200, 200, 429, 200]
--- response_headers eval
['', 'Retry-After: 1', '', '', 'Retry-After: 1', '']
--- after_request
2 sleep 1
5 sleep 1
--- no_valgrind: a rejection needs the two requests before it within one second
