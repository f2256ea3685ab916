# Long quotas: calendar windows (r/w from Monday 00:00, r/M from the 1st 00:00, aligned on the
# zone's tz= offset), request costs (cost=N, cost=$variable), and the configurations refused by
# `nginx -t`. The clock cannot be fixed here: what depends on the date is matched by range
# (a month's RateLimit-Policy w= is 28 to 31 days, its reset at most 31 days away); the calendar
# arithmetic itself (month lengths, leap years, offsets, week start) is unit-tested in
# core/src/ratelimit/calendar.rs and algo.rs. Costs are counted exactly.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

workers(2);
master_on();
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a monthly quota: N per calendar month, the policy window is the month's length (28 to 31 days), the reset within 31 days, no sliding
--- http_config
    rate_limit_zone $host zone=m:1m;
--- config
    location /t {
        rate_limit zone=m rate=2r/M policy=month;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 429]
--- response_headers_like eval
[
'RateLimit-Policy: "month";q=2;w=(2419200|2505600|2592000|2678400)
RateLimit: "month";r=1;t=([1-9][0-9]{0,5}|1[0-9]{6}|2[0-5][0-9]{5}|26[0-6][0-9]{4}|267[0-7][0-9]{3}|2678[0-3][0-9]{2}|2678400)$',
'RateLimit-Policy: "month";q=2;w=(2419200|2505600|2592000|2678400)
RateLimit: "month";r=0;t=([1-9][0-9]{0,5}|1[0-9]{6}|2[0-5][0-9]{5}|26[0-6][0-9]{4}|267[0-7][0-9]{3}|2678[0-3][0-9]{2}|2678400)$',
'RateLimit-Policy: "month";q=2;w=(2419200|2505600|2592000|2678400)
RateLimit: "month";r=0;t=([1-9][0-9]{0,5}|1[0-9]{6}|2[0-5][0-9]{5}|26[0-6][0-9]{4}|267[0-7][0-9]{3}|2678[0-3][0-9]{2}|2678400)$
Retry-After: ([1-9][0-9]{0,5}|1[0-9]{6}|2[0-5][0-9]{5}|26[0-6][0-9]{4}|267[0-7][0-9]{3}|2678[0-3][0-9]{2}|2678400)$',
]



=== TEST 2: a weekly quota: w= is 7 days, the reset within the week; tz= is accepted
--- http_config
    rate_limit_zone $host zone=w:1m tz=+02:00;
--- config
    location /t {
        rate_limit zone=w rate=1r/w policy=week;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t"]
--- error_code eval
[200, 429]
--- response_headers_like eval
[
'RateLimit-Policy: "week";q=1;w=604800
RateLimit: "week";r=0;t=([1-9][0-9]{0,4}|[1-5][0-9]{5}|60[0-3][0-9]{3}|604[0-7][0-9]{2}|604800)$',
'RateLimit: "week";r=0;t=([1-9][0-9]{0,4}|[1-5][0-9]{5}|60[0-3][0-9]{3}|604[0-7][0-9]{2}|604800)$
Retry-After: ([1-9][0-9]{0,4}|[1-5][0-9]{5}|60[0-3][0-9]{3}|604[0-7][0-9]{2}|604800)$',
]



=== TEST 3: a monthly quota from a variable, in the draft and legacy headers
--- http_config
    map $http_x_plan $quota {
        monthly  1r/M;
        default  100r/s;
    }
    rate_limit_zone $host zone=v:1m tz=-05:30;
--- config
    location /t {
        rate_limit zone=v rate=$quota policy=plan;
        rate_limit_headers both;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["X-Plan: monthly", "X-Plan: monthly"]
--- error_code eval
[200, 429]
--- response_headers_like eval
[
'RateLimit-Policy: "plan";q=1;w=(2419200|2505600|2592000|2678400)
X-RateLimit-Limit: 1
X-RateLimit-Remaining: 0',
'X-RateLimit-Remaining: 0
Retry-After: [1-9][0-9]{0,6}$',
]



=== TEST 4: cost=N consumes N units: 10 per hour at cost 3 admits 3 requests, r= counts units
--- http_config
    rate_limit_zone $host zone=c:1m;
--- config
    location /t {
        rate_limit zone=c rate=10r/h cost=3 policy=units;
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
'RateLimit-Policy: "units";q=10;w=3600
RateLimit: "units";r=7;t=3600',
'RateLimit: "units";r=4;t=3600',
'RateLimit: "units";r=1;t=3600',
'RateLimit: "units";r=1;t=\d+
Retry-After: \d+',
]



=== TEST 5: cost=$variable: the cost of each request from the variable; an empty value costs 1, 0 is free (not limited), a cost that no longer fits is refused and consumes nothing, a smaller one still fits
--- http_config
    rate_limit_zone $host zone=c:1m;
--- config
    location /t {
        rate_limit zone=c rate=10r/h cost=$arg_c policy=units;
        add_header X-RL "[$rate_limit_status]" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t?c=5", "GET /t?c=0", "GET /t", "GET /t?c=5", "GET /t?c=4", "GET /t?c=1"]
--- error_code eval
[200, 200, 200, 429, 200, 429]
--- response_headers_like eval
[
'RateLimit: "units";r=5;t=3600',
'X-RL: \[\]
!RateLimit',
'RateLimit: "units";r=4;t=3600',
'RateLimit: "units";r=4;t=\d+
X-RL: \[REJECTED\]',
'RateLimit: "units";r=0;t=\d+',
'RateLimit: "units";r=0;t=\d+',
]



=== TEST 6: a cost above the limit is refused, even on a fresh key, and consumes nothing
--- http_config
    rate_limit_zone $host zone=c:1m;
--- config
    location /t {
        rate_limit zone=c rate=10r/M cost=$arg_c;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t?c=11", "GET /t?c=10", "GET /t?c=1"]
--- error_code eval
[429, 200, 429]



=== TEST 7: cost on a token bucket: a cost takes that many tokens (capacity 5)
--- http_config
    rate_limit_zone $host zone=tb:1m;
--- config
    location /t {
        rate_limit zone=tb rate=1r/h algorithm=token_bucket burst=4 cost=$arg_c;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t?c=3", "GET /t?c=3", "GET /t?c=2", "GET /t?c=1"]
--- error_code eval
[200, 429, 200, 429]



=== TEST 8: a bad cost from a variable: logged, and the limit is skipped (rate_limit_invalid_rate pass)
--- http_config
    rate_limit_zone $host zone=c:1m;
--- config
    location /t {
        rate_limit zone=c rate=1r/h cost=$arg_c policy=units;
        add_header X-RL "[$rate_limit_status]" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request
GET /t?c=lots
--- response_headers
X-RL: []
!RateLimit
--- error_log eval
qr/\[error\] .*rate_limit "units": invalid cost from variable/



=== TEST 9: a bad cost from a variable with rate_limit_invalid_rate error: 500, nothing consumed
--- http_config
    rate_limit_zone $host zone=c:1m;
--- config
    location /t {
        rate_limit zone=c rate=1r/h cost=$arg_c;
        rate_limit_invalid_rate error;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request eval
["GET /t?c=-1", "GET /t", "GET /t"]
--- error_code eval
[500, 200, 429]



=== TEST 10: a monthly rate from a variable on a token bucket is a bad rate: logged, the limit skipped
--- http_config
    rate_limit_zone $host zone=tb:1m;
--- config
    location /t {
        rate_limit zone=tb rate=$arg_r algorithm=token_bucket;
        add_header X-RL "[$rate_limit_status]" always;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request
GET /t?r=5r/M
--- response_headers
X-RL: []
--- error_log eval
qr/\[error\] .*rate_limit "tb": rate "5r\/M" is a calendar window, which algorithm=token_bucket does not support, from variable/



=== TEST 11: nginx -t: r/M on a token bucket
--- http_config
    rate_limit_zone $host zone=tb:1m;
--- config
    location /t {
        rate_limit zone=tb rate=100r/M algorithm=token_bucket burst=10;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"rate_limit": rate=100r\/M is a calendar window, which algorithm=token_bucket does not support in \S+nginx\.conf:\d+/



=== TEST 12: nginx -t: r/w on a token bucket
--- http_config
    rate_limit_zone $host zone=tb:1m;
--- config
    location /t {
        rate_limit zone=tb rate=7r/w algorithm=token_bucket;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"rate_limit": rate=7r\/w is a calendar window, which algorithm=token_bucket does not support in \S+nginx\.conf:\d+/



=== TEST 13: nginx -t: a time zone that is not a fixed offset
--- http_config
    rate_limit_zone $host zone=z:1m tz=Europe/Paris;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "tz=Europe\/Paris" in "rate_limit_zone" directive, the time zone must be a fixed UTC offset such as "\+02:00" or "UTC" in \S+nginx\.conf:\d+/



=== TEST 14: nginx -t: an offset beyond 18 hours
--- http_config
    rate_limit_zone $host zone=z:1m tz=+19:00;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "tz=\+19:00" in "rate_limit_zone" directive, the time zone must be a fixed UTC offset/



=== TEST 15: nginx -t: cost=0
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /t {
        rate_limit zone=z rate=1r/s cost=0;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "cost=0" in "rate_limit" directive, "cost" must be a whole number from 1 to 4294967295 in \S+nginx\.conf:\d+/



=== TEST 16: nginx -t: cost that is not a number
--- http_config
    rate_limit_zone $host zone=z:1m;
--- config
    location /t {
        rate_limit zone=z rate=1r/s cost=two;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "cost=two" in "rate_limit" directive, "cost" must be a whole number/



=== TEST 17: nginx -t: persistent needs sync
--- http_config
    rate_limit_zone $host zone=z:1m persistent;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"rate_limit_zone": "persistent" needs "sync" \(the counts persist in Redis\) in \S+nginx\.conf:\d+/



=== TEST 18: nginx -t: persistent=N must be a number
--- http_config
    rate_limit_zone $host zone=z:1m sync=redis://127.0.0.1:6379 persistent=some;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "persistent=some" in "rate_limit_zone" directive, the allowance must be a whole number of requests/



=== TEST 19: calendar windows, cost and persistent are accepted together on a synced zone
--- http_config
    rate_limit_zone $http_x_key zone=q:1m sync=redis://127.0.0.1:$TEST_NGINX_RAND_PORT_1 persistent=5 tz=UTC;
--- config
    location /t {
        rate_limit zone=q rate=1000r/M cost=$arg_c;
        rate_limit zone=q rate=100r/w;
        alias html/index.html;
    }
--- user_files
>>> index.html
ok
--- request
GET /t
--- error_code: 200
