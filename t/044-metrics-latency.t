# Latency histograms and per-route and per-upstream series of gateway_metrics (issue 16):
# gateway_request_duration_seconds, gateway_processing_duration_seconds (by route),
# gateway_upstream_response_duration_seconds and gateway_upstream_responses_total (by upstream
# block), and the route label on gateway_requests_total and gateway_auth_total.
# A delayed upstream: the backend's limit_req (rate=1r/s, burst, no nodelay) answers the first
# request at once and delays the next one by about a second, so each lands in a known bucket.
# The backend is a server block of the same nginx: its own requests count too, with no route.
# Tokens: as in t/042-metrics.t (HS256, t/keys/hs256.jwk, sub alice, exp 2100).
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

workers(2);
master_on();
no_shuffle();

run_tests();

__DATA__

=== TEST 1: a fast and a delayed request: exact bucket counts by route and by upstream
--- project_only: the metrics are parsed (prometheus)
--- no_valgrind: the fast request must take less than 0.1 s
--- http_config
    limit_req_zone $server_port zone=slow:1m rate=1r/s;
    upstream backend {
        server 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            limit_req zone=slow burst=5;
            root html;
            try_files /x =404;
        }
    }
--- config
    gateway_route front;
    location /api/ {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/hs256.jwk;
        proxy_pass http://backend;
    }
    location /other/ {
        gateway_route other-route;
        alias html/;
    }
    location = /metrics {
        gateway_route metrics;
        gateway_metrics;
    }
--- user_files
>>> hs256.jwk
{"alg":"HS256","k":"-XA2YL0lgSDxnAg3NMc2-c-CR14FHQq5WDtzPn4FEEU","kid":"hs256","kty":"oct"}
>>> x
hello
--- request eval
["GET /api/1", "GET /api/2", "GET /api/3", "GET /other/x", "GET /metrics"]
--- more_headers eval
[("Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJhbGljZSJ9.kRd6xgi3LF8y5ZwS11_wdk14ug_mpRuzjvnY0_tDv28") x 2, "X-None: 1", "X-None: 1", "X-None: 1"]
--- error_code eval
[200, 200, 401, 200, 200]
--- prometheus
type gateway_request_duration_seconds histogram
type gateway_upstream_response_duration_seconds histogram
type gateway_processing_duration_seconds histogram
type gateway_upstream_responses_total counter
# route "front" (inherited from the server block): a fast request, a delayed one (about 1 s),
# and a refused one (401, fast)
gateway_request_duration_seconds_bucket{route="front",le="0.005"} 0..2
gateway_request_duration_seconds_bucket{route="front",le="0.1"} 2
gateway_request_duration_seconds_bucket{route="front",le="0.5"} 2
gateway_request_duration_seconds_bucket{route="front",le="2.5"} 3
gateway_request_duration_seconds_bucket{route="front",le="+Inf"} 3
gateway_request_duration_seconds_count{route="front"} 3
gateway_request_duration_seconds_sum{route="front"} 0.5..2.5
gateway_requests_total{route="front",status="2xx"} 2
gateway_requests_total{route="front",status="4xx"} 1
gateway_auth_total{route="front",result="valid",reason=""} 2
gateway_auth_total{route="front",result="missing",reason="missing"} 1
# the gateway's own time: one observation per request that auth_jwt checked, far below 0.1 s
gateway_processing_duration_seconds_count{route="front"} 3
gateway_processing_duration_seconds_bucket{route="front",le="0.01"} 3
gateway_processing_duration_seconds_sum{route="front"} 0.000000001..0.03
# no gateway feature in /other/: no processing time, but request time and status
gateway_processing_duration_seconds_count{route="other-route"} 0
gateway_request_duration_seconds_count{route="other-route"} 1
gateway_requests_total{route="other-route",status="2xx"} 1
# the route of the metrics location: nothing counted yet (this request logs after it answered)
gateway_request_duration_seconds_count{route="metrics"} 0
# the backend's own two requests: no route, no label
gateway_requests_total{status="2xx"} 2
gateway_request_duration_seconds_count 2
gateway_request_duration_seconds_bucket{le="0.1"} 1
gateway_auth_total{result="valid",reason=""} 0
# the upstream block: one try per proxied request, response time as $upstream_response_time
gateway_upstream_responses_total{upstream="backend",status="2xx"} 2
gateway_upstream_responses_total{upstream="backend",status="5xx"} 0
gateway_upstream_response_duration_seconds_bucket{upstream="backend",le="0.1"} 1
gateway_upstream_response_duration_seconds_bucket{upstream="backend",le="0.5"} 1
gateway_upstream_response_duration_seconds_bucket{upstream="backend",le="2.5"} 2
gateway_upstream_response_duration_seconds_count{upstream="backend"} 2
gateway_upstream_response_duration_seconds_sum{upstream="backend"} 0.5..2.5
gateway_upstream_response_duration_seconds_count{upstream="other"} 0
label_values !~ alice|/api|127\.0\.0\.1|eyJ



=== TEST 2: gateway_metrics_buckets: the bounds as written, in the exposition; rate-limit outcomes by route
--- project_only: the metrics are parsed (prometheus)
--- http_config
    gateway_metrics_buckets request 0.05 1.5 30;
    gateway_metrics_buckets gateway 0.000001 0.5;
    rate_limit_zone $remote_addr zone=rl:1m;
--- config
    location /api/ {
        gateway_route api;
        rate_limit zone=rl rate=1r/m;
        alias html/;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> x
hello
--- request eval
["GET /api/x", "GET /api/x", "GET /api/x", "GET /metrics"]
--- error_code eval
[200, 429, 429, 200]
--- prometheus
gateway_request_duration_seconds_bucket{route="api",le="0.05"} 0..3
gateway_request_duration_seconds_bucket{route="api",le="1.5"} 3
gateway_request_duration_seconds_bucket{route="api",le="30"} 3
gateway_request_duration_seconds_bucket{route="api",le="+Inf"} 3
gateway_request_duration_seconds_bucket{route="api",le="0.005"} absent
gateway_processing_duration_seconds_bucket{route="api",le="0.000001"} 0..3
gateway_processing_duration_seconds_bucket{route="api",le="0.5"} 3
gateway_processing_duration_seconds_count{route="api"} 3
# the rate limit's outcome by route, one per request
gateway_route_rate_limit_total{route="api",result="passed"} 1
gateway_route_rate_limit_total{route="api",result="rejected"} 2
gateway_route_rate_limit_total{route="api",result="rejected_dry_run"} 0
gateway_rate_limit_total{zone="rl",policy="rl",result="rejected"} 2
gateway_processing_duration_seconds_bucket{route="api",le="0.01"} absent
gateway_upstream_response_duration_seconds_bucket{upstream="other",le="1.5"} 0



=== TEST 3: gateway_metrics_buckets: bounds must increase
--- http_config
    gateway_metrics_buckets request 0.5 0.1;
--- config
    location / {
        return 200;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid bounds in "gateway_metrics_buckets" directive: bucket bounds must increase strictly/



=== TEST 4: gateway_metrics_buckets: only request or gateway
--- http_config
    gateway_metrics_buckets upstream 0.5;
--- config
    location / {
        return 200;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "upstream" in "gateway_metrics_buckets" directive, it must be "request" or "gateway"/



=== TEST 5: gateway_metrics_buckets: numbers of seconds, not negative, not finer than the resolution
--- http_config
    gateway_metrics_buckets gateway 0.0000000001;
--- config
    location / {
        return 200;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid bounds in "gateway_metrics_buckets" directive: the bound 0.0000000001 is out of range/



=== TEST 6: gateway_metrics_buckets: not a number
--- http_config
    gateway_metrics_buckets request 1s;
--- config
    location / {
        return 200;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "1s" in "gateway_metrics_buckets" directive, a number of seconds is expected/



=== TEST 7: gateway_metrics_buckets: duplicate, and only at http level
--- http_config
    gateway_metrics_buckets request 1;
    gateway_metrics_buckets request 2;
--- config
    location / {
        return 200;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"gateway_metrics_buckets" directive is duplicate/



=== TEST 8: gateway_metrics_buckets in a location is refused
--- config
    location / {
        gateway_metrics_buckets request 1;
        return 200;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"gateway_metrics_buckets" directive is not allowed here/



=== TEST 9: a reload with other buckets: a new layout, counters from zero, no garbage
--- project_only: reload between requests; the metrics are parsed (prometheus)
--- http_config
    gateway_metrics_buckets request 0.1 1;
--- reload_http_config
    gateway_metrics_buckets request 0.2 2 20;
--- config
    location /api/ {
        gateway_route api;
        alias html/;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> x
hello
--- request eval
["GET /api/x", "GET /api/x", "GET /api/x", "GET /metrics"]
--- reload_after_request: 2
--- error_code eval
[200, 200, 200, 200]
--- prometheus
gateway_request_duration_seconds_bucket{route="api",le="0.1"} absent
gateway_request_duration_seconds_bucket{route="api",le="20"} 1
gateway_request_duration_seconds_count{route="api"} 1
gateway_requests_total{route="api",status="2xx"} 1



=== TEST 10: proxy_pass with a variable: only configured upstream blocks become label values, any other target counts as "other"
--- project_only: the metrics are parsed (prometheus)
--- http_config
    upstream backend {
        server 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "backend\n";
        }
    }
--- config
    location /p/ {
        proxy_pass http://$arg_to;
    }
    location = /metrics {
        gateway_metrics;
    }
--- request eval
["GET /p/x?to=backend", "GET /p/x?to=127.0.0.1:1", "GET /p/x?to=attacker.example", "GET /p/x?to=%22%7D%0Aevil", "GET /metrics"]
--- error_code eval
[200, 502, 502, 502, 200]
--- prometheus
gateway_upstream_responses_total{upstream="backend",status="2xx"} 1
gateway_upstream_responses_total{upstream="other",status="5xx"} 1
gateway_upstream_response_duration_seconds_count{upstream="backend"} 1
gateway_upstream_response_duration_seconds_count{upstream="other"} 1
sum gateway_upstream_responses_total 2
label_values !~ attacker|evil|127\.0\.0\.1|example



=== TEST 11: OpenMetrics 1.0 when Accept asks for it (as Prometheus does); the text format otherwise
--- config
    location /api/ {
        gateway_route api;
        return 200 "ok\n";
    }
    location = /metrics {
        gateway_metrics;
    }
--- request eval
["GET /api/x", "GET /metrics", "GET /metrics", "GET /metrics"]
--- more_headers eval
["X-None: 1",
 "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
 "Accept: application/openmetrics-text;q=0, text/plain",
 "X-None: 1"]
--- response_headers eval
["", "Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8", "Content-Type: text/plain; version=0.0.4; charset=utf-8", "Content-Type: text/plain; version=0.0.4; charset=utf-8"]
--- response_body_like eval
["ok",
 qr/\A# HELP gateway_requests Requests.*\n# TYPE gateway_requests counter\ngateway_requests_total\{status="1xx"\} 0\n.*gateway_requests_total\{route="api",status="2xx"\} 1\n.*# TYPE gateway_request_duration_seconds histogram\n# UNIT gateway_request_duration_seconds seconds\n.*\n# EOF\n\z/s,
 qr/\A# HELP gateway_requests_total .*# TYPE gateway_requests_total counter\n.*[^F]\n\z/s,
 qr/\A# HELP gateway_requests_total .*# TYPE gateway_requests_total counter\n.*[^F]\n\z/s]



=== TEST 12: gateway_metrics_histograms off: no histogram series, the counters by route stay
--- project_only: the metrics are parsed (prometheus)
--- http_config
    gateway_metrics_histograms off;
--- config
    location /api/ {
        gateway_route api;
        alias html/;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> x
hello
--- request eval
["GET /api/x", "GET /metrics"]
--- prometheus
gateway_requests_total{route="api",status="2xx"} 1
gateway_request_duration_seconds_count{route="api"} absent
gateway_request_duration_seconds_bucket{le="+Inf"} absent
gateway_processing_duration_seconds_count absent
gateway_upstream_response_duration_seconds_count{upstream="other"} absent
gateway_upstream_responses_total{upstream="other",status="2xx"} 0
