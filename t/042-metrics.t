# gateway_metrics: the Prometheus text exposition, parsed by the reference client library's
# parser (the runner's --- prometheus section, see t/README.md), with exact counter values for
# the requests sent. Counters live in shared memory, so they are exact across two workers;
# the per-worker token cache's hit/miss split depends on which worker took which request.
# A request is counted in its log phase, which nginx runs before it closes the connection; the
# runner reads each response until the close, so the metrics request sees every request before
# it counted, with no sleep.
# Tokens: as in t/040-log.t (HS256, t/keys/hs256.jwk).
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

workers(2);
master_on();
no_shuffle();

our $V = 'eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJhbGljZSJ9.kRd6xgi3LF8y5ZwS11_wdk14ug_mpRuzjvnY0_tDv28';
our $E = 'eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjEwMDAwMDAwMDAsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJhbGljZSJ9.kdlrpXn1XNOxVBVzOOYW3v1edUV1OQV-eWEA4jrG5VE';
our $F = 'eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJtYWxsb3J5In0.o1I6A2R4sMWQg4ZWHuWpFn12O8E_HcRRk4z69SL2lOc';

run_tests();

__DATA__

=== TEST 1: 10 valid tokens, 3 rejected by auth, 3 passed and 2 rejected by a rate limit: exact counters
--- project_only: actions between requests (after_request); the metrics are parsed (prometheus)
--- http_config
    rate_limit_zone $remote_addr zone=rl:1m;
--- config
    location /api/ {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/hs256.jwk;
        auth_jwt_issuer https://idp.example;
        alias html/;
    }
    location /rl/ {
        rate_limit zone=rl rate=3r/m policy=std;
        alias html/;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> hs256.jwk
{"alg":"HS256","k":"-XA2YL0lgSDxnAg3NMc2-c-CR14FHQq5WDtzPn4FEEU","kid":"hs256","kty":"oct"}
>>> x
hello
--- request eval
[("GET /api/x?sub=alice") x 10, "GET /api/x", "GET /api/x", "GET /api/x",
 ("GET /rl/x") x 5, "GET /metrics"]
--- more_headers eval
[("Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJhbGljZSJ9.kRd6xgi3LF8y5ZwS11_wdk14ug_mpRuzjvnY0_tDv28") x 10, "X-None: 1", "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjEwMDAwMDAwMDAsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJhbGljZSJ9.kdlrpXn1XNOxVBVzOOYW3v1edUV1OQV-eWEA4jrG5VE",
 "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJtYWxsb3J5In0.o1I6A2R4sMWQg4ZWHuWpFn12O8E_HcRRk4z69SL2lOc", ("X-None: 1") x 6]
--- error_code eval
[(200) x 10, 401, 401, 401, 200, 200, 200, 429, 429, 200]
--- response_headers_like eval
[("") x 18, "Content-Type: text/plain; version=0.0.4; charset=utf-8"]
--- prometheus
type gateway_requests_total counter
type gateway_auth_total counter
type gateway_rate_limit_zone_keys gauge
type gateway_rate_limit_zone_capacity gauge
gateway_requests_total{status="1xx"} 0
gateway_requests_total{status="2xx"} 13
gateway_requests_total{status="3xx"} 0
gateway_requests_total{status="4xx"} 5
gateway_requests_total{status="5xx"} 0
gateway_auth_total{result="valid",reason=""} 10
gateway_auth_total{result="missing",reason="missing"} 1
gateway_auth_total{result="invalid",reason="expired"} 1
gateway_auth_total{result="invalid",reason="bad_signature"} 1
gateway_auth_total{result="invalid",reason="malformed"} 0
sum gateway_auth_total 13
gateway_rate_limit_total{zone="rl",policy="std",result="passed"} 3
gateway_rate_limit_total{zone="rl",policy="std",result="rejected"} 2
gateway_rate_limit_total{zone="rl",policy="std",result="rejected_dry_run"} 0
# the same valid token: one miss per worker that saw it; the expired and forged tokens miss
gateway_jwt_cache_total{result="hit"} 8..9
gateway_jwt_cache_total{result="miss"} 3..4
sum gateway_jwt_cache_total 12
gateway_log_write_errors_total 0
gateway_rate_limit_zone_keys{zone="rl"} 1
gateway_rate_limit_zone_capacity{zone="rl"} 1..100000000
gateway_rate_limit_zone_evictions_total{zone="rl"} 0
# label values come from the configuration and closed sets, never from requests
label_values !~ alice|mallory|/api|/rl|127\.0\.0\.1|eyJ|sub



=== TEST 2: failed log writes are counted, one per record
--- project_only: the metrics are parsed (prometheus)
--- config
    location /api/ {
        gateway_log /dev/full;
        return 200 "ok\n";
    }
    location = /metrics {
        gateway_metrics;
    }
--- request eval
["GET /api/1", "GET /api/2", "GET /api/3", "GET /metrics"]
--- response_body eval
["ok\n", "ok\n", "ok\n", qr/^gateway_log_write_errors_total 3$/m]
--- prometheus
gateway_log_write_errors_total 3
gateway_requests_total{status="2xx"} 3
gateway_rate_limit_zone_keys{zone="rl"} absent



=== TEST 3: a reload keeps the counters (same layout)
--- project_only: actions between requests (after_request); the metrics are parsed (prometheus)
--- config
    location /api/ {
        return 200 "ok\n";
    }
    location = /metrics {
        gateway_metrics;
    }
--- request eval
["GET /api/1", "GET /api/2", "GET /api/3", "GET /nothing", "GET /metrics"]
--- error_code eval
[200, 200, 200, 404, 200]
--- after_request
2 signal HUP
2 sleep 1
--- prometheus
gateway_requests_total{status="2xx"} 3
gateway_requests_total{status="4xx"} 1



=== TEST 4: gateway_metrics takes no arguments
--- config
    location = /metrics {
        gateway_metrics on;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid number of arguments in "gateway_metrics" directive/
