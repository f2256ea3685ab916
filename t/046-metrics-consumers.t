# gateway_metrics_consumers: per-consumer request and rejection counts with a hard cap on the
# number of series (issue 16; a security item: label values come from requests).
# Tokens (HS256, t/keys/hs256.jwk, iss https://idp.example, exp 2100; made with Python's hmac,
# in the order they are sent in TEST 1):
#   sub a"b\c}d<LF>e
#   sub x"} 1<LF>gateway_requests_total{status="2xx"} 999<LF>#<space>
#   sub bob (also in TEST 6)
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

workers(2);
master_on();
no_shuffle();

run_tests();

__DATA__

=== TEST 1: consumers by verified sub; a sub with ", \, } and newlines is escaped and cannot add a line; refusals counted
--- project_only: the metrics are parsed (prometheus)
--- http_config
    gateway_metrics_consumers max=10;
--- config
    location /api/ {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/hs256.jwk;
        auth_jwt_require_claim iss eq https://nowhere.example;
        alias html/;
    }
    location /ok/ {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/hs256.jwk;
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
["GET /ok/x", "GET /ok/x", "GET /ok/x", "GET /ok/x", "GET /api/x", "GET /ok/x", "GET /metrics"]
--- more_headers eval
["Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJhXCJiXFxjfWRcbmUifQ.1MFqibUu4MU7Iz5LqaUkv-6StYIVD_D_UUvbvyAJk_Q", "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJ4XCJ9IDFcbmdhdGV3YXlfcmVxdWVzdHNfdG90YWx7c3RhdHVzPVwiMnh4XCJ9IDk5OVxuIyAifQ.Y3Kv1n4XusNIoeSi37nUrf-g4wb4B_jKoqA897EsV3I", "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJib2IifQ.eXF5wp4rXuoY2bEhzA5RcG5qtHP7Y42kQpAMYMF1EVA", "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJib2IifQ.eXF5wp4rXuoY2bEhzA5RcG5qtHP7Y42kQpAMYMF1EVA",
 "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJib2IifQ.eXF5wp4rXuoY2bEhzA5RcG5qtHP7Y42kQpAMYMF1EVA", "X-None: 1", "X-None: 1"]
--- error_code eval
[200, 200, 200, 200, 403, 401, 200]
--- response_body_like eval
[("hello") x 4, qr/403/, qr/401/, qr/^gateway_consumer_requests_total\{consumer="a\\"b\\\\c\}d\\ne"\} 1$/m]
--- prometheus
gateway_consumer_requests_total{consumer="a\"b\\c}d\ne"} 1
gateway_consumer_requests_total{consumer="x\"} 1\ngateway_requests_total{status=\"2xx\"} 999\n# "} 1
gateway_consumer_requests_total{consumer="bob"} 3
gateway_consumer_rejections_total{consumer="bob"} 1
gateway_consumer_rejections_total{consumer="a\"b\\c}d\ne"} 0
gateway_consumer_requests_total{consumer="other"} 0
sum gateway_consumer_requests_total 5
gateway_metrics_labels_dropped_total 0
# the injected line is only a label value: the real count stands
gateway_requests_total{status="2xx"} 4
type gateway_consumer_requests_total counter



=== TEST 2: 100,000 distinct consumers (value=, from the client) leave at most max + 1 series
--- project_only: concurrent phase; the metrics are parsed (prometheus)
--- no_valgrind: 100,000 requests
--- timeout: 10
--- http_config
    gateway_metrics_consumers max=50 value=$arg_c;
--- config
    location /api/ {
        return 204;
    }
    location = /metrics {
        gateway_metrics;
    }
--- concurrent_request
GET /api/?c=consumer-{i}
--- concurrent_requests: 100000
--- concurrency: 8
--- status_counts
204: 100000
--- request
GET /metrics
--- prometheus
# every request counted once; 50 consumers have a series, each with its single request: the
# other 99,950 share "other" and are counted as dropped labels, so there are at most 51 series
sum gateway_consumer_requests_total 100000
gateway_consumer_requests_total{consumer="other"} 99950
gateway_metrics_labels_dropped_total 99950
sum gateway_consumer_rejections_total 0
gateway_consumer_requests_total{consumer="consumer-100001"} absent



=== TEST 3: a consumer named "other" and values past 128 bytes count as other
--- project_only: the metrics are parsed (prometheus)
--- http_config
    gateway_metrics_consumers max=5 value=$http_x_consumer;
--- config
    location /api/ {
        return 204;
    }
    location = /metrics {
        gateway_metrics;
    }
--- request eval
["GET /api/", "GET /api/", "GET /api/", "GET /api/", "GET /metrics"]
--- more_headers eval
["X-Consumer: other", "X-Consumer: " . ("y" x 129), "X-Consumer: " . ("z" x 128), "X-None: 1", "X-None: 1"]
--- error_code eval
[204, 204, 204, 204, 200]
--- prometheus
gateway_consumer_requests_total{consumer="other"} 2
gateway_metrics_labels_dropped_total 1
sum gateway_consumer_requests_total 3



=== TEST 4: gateway_metrics_consumers: max= is required and bounded
--- http_config
    gateway_metrics_consumers max=50001;
--- config
    location / {
        return 200;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "max=50001" in "gateway_metrics_consumers" directive, max is a number from 1 to 50000/



=== TEST 5: gateway_metrics_consumers: without max=
--- http_config
    gateway_metrics_consumers value=$arg_c;
--- config
    location / {
        return 200;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"max=" is required in "gateway_metrics_consumers" directive/



=== TEST 6: without gateway_metrics_consumers, no consumer series
--- project_only: the metrics are parsed (prometheus)
--- config
    location /ok/ {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/hs256.jwk;
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
["GET /ok/x", "GET /metrics"]
--- more_headers eval
["Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJib2IifQ.eXF5wp4rXuoY2bEhzA5RcG5qtHP7Y42kQpAMYMF1EVA", "X-None: 1"]
--- prometheus
gateway_consumer_requests_total{consumer="bob"} absent
gateway_metrics_labels_dropped_total absent
label_values !~ bob
