# gateway_trace: W3C trace context (issue 16). The backend (a server block on
# $TEST_NGINX_RAND_PORT_1) answers with the traceparent it received, in its body and in an
# X-Saw header; the front sends it `proxy_set_header traceparent $gateway_traceparent`.
# X-Same is "yes" when the trace id and span id of the JSON record ($gateway_log_json, the
# record gateway_log writes) are those of the traceparent the upstream saw (a backreference
# in a map), so the upstream and the log name the same trace and span.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

master_on();
no_shuffle();

run_tests();

__DATA__

=== TEST 1: no traceparent: the gateway starts a trace; the upstream sees the trace and span of the log record, sampled by default
--- project_only: the JSON log is checked as data (json_log_*)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            add_header X-Saw $http_traceparent;
            return 200 "saw $http_traceparent\n";
        }
    }
    map "$gateway_log_json $upstream_http_x_saw" $same_trace {
        "~\"trace_id\":\"([0-9a-f]{32})\",\"span_id\":\"([0-9a-f]{16})\".* 00-\\1-\\2-01$"  yes;
        default  no;
    }
--- config
    location /t {
        gateway_trace on;
        gateway_log logs/gw.json;
        gateway_log_field upstream_saw $upstream_http_x_saw;
        proxy_set_header traceparent $gateway_traceparent;
        add_header X-Same $same_trace;
        add_header X-Trace-Id $gateway_trace_id;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t"]
--- response_headers_like eval
["X-Same: yes\nX-Trace-Id: [0-9a-f]{32}", "X-Same: yes\nX-Trace-Id: [0-9a-f]{32}"]
--- response_body_like eval
[qr/^saw 00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, qr/^saw 00-[0-9a-f]{32}-[0-9a-f]{16}-01$/]
--- json_log_file: logs/gw.json
--- json_log_lines: 2
--- json_log_match
* trace_id =~ ^[0-9a-f]{32}$
* span_id =~ ^[0-9a-f]{16}$
* parent_span_id absent
* upstream_saw =~ ^00-[0-9a-f]{32}-[0-9a-f]{16}-01$
* trace_id != "00000000000000000000000000000000"



=== TEST 2: a valid traceparent is continued: same trace id and sampled flag, the caller's span as parent, a new span id
--- project_only: the JSON log is checked as data (json_log_*)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            add_header X-Saw $http_traceparent;
            return 200 "saw $http_traceparent\n";
        }
    }
    map "$gateway_log_json $upstream_http_x_saw" $same_trace {
        "~\"trace_id\":\"([0-9a-f]{32})\",\"span_id\":\"([0-9a-f]{16})\".* 00-\\1-\\2-0[01]$"  yes;
        default  no;
    }
--- config
    location /t {
        gateway_trace on sample=1;
        gateway_log logs/gw.json;
        gateway_log_field upstream_saw $upstream_http_x_saw;
        proxy_set_header traceparent $gateway_traceparent;
        add_header X-Same $same_trace;
        add_header X-Parent $gateway_parent_span_id;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
["traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
 "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
 "traceparent: cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-and-the-future"]
--- response_headers_like eval
["X-Same: yes\nX-Parent: 00f067aa0ba902b7", "X-Same: yes\nX-Parent: b7ad6b7169203331", "X-Same: yes\nX-Parent: 00f067aa0ba902b7"]
--- response_body_like eval
[qr/^saw 00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/,
 qr/^saw 00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-00$/,
 qr/^saw 00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/]
--- json_log_file: logs/gw.json
--- json_log_lines: 3
--- json_log_match
1 trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
1 parent_span_id == "00f067aa0ba902b7"
1 span_id != "00f067aa0ba902b7"
1 upstream_saw =~ ^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$
# not sampled upstream stays not sampled, whatever the ratio
2 trace_id == "0af7651916cd43dd8448eb211c80319c"
2 parent_span_id == "b7ad6b7169203331"
2 upstream_saw =~ -00$
# a future version: read as version 00, sent on as version 00
3 trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
3 parent_span_id == "00f067aa0ba902b7"
3 upstream_saw =~ ^00-4bf92f3577b34da6a3ce929d0e0e4736-



=== TEST 3: an invalid traceparent is not continued: a new trace
--- project_only: the JSON log is checked as data (json_log_*)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            add_header X-Saw $http_traceparent;
            return 200 "saw $http_traceparent\n";
        }
    }
--- config
    location /t {
        gateway_trace on;
        gateway_log logs/gw.json;
        gateway_log_field upstream_saw $upstream_http_x_saw;
        proxy_set_header traceparent $gateway_traceparent;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[("GET /t") x 8]
--- more_headers eval
["traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
 "traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01",
 "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
 "traceparent: ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
 "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
 "traceparent: cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
 "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
 "traceparent: 4bf92f3577b34da6a3ce929d0e0e4736"]
--- response_body_like eval
[(qr/^saw 00-[0-9a-f]{32}-[0-9a-f]{16}-01$/) x 8]
--- json_log_file: logs/gw.json
--- json_log_lines: 8
--- json_log_match
* trace_id =~ ^[0-9a-f]{32}$
* trace_id != "4bf92f3577b34da6a3ce929d0e0e4736"
* trace_id != "00000000000000000000000000000000"
* parent_span_id absent



=== TEST 4: sample=0: the traces the gateway starts are not sampled (a continued trace keeps its flag)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "saw $http_traceparent\n";
        }
    }
--- config
    location /t {
        gateway_trace on sample=0;
        proxy_set_header traceparent $gateway_traceparent;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
["X-None: 1", "X-None: 1", "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]
--- response_body_like eval
[qr/^saw 00-[0-9a-f]{32}-[0-9a-f]{16}-00$/, qr/^saw 00-[0-9a-f]{32}-[0-9a-f]{16}-00$/, qr/^saw 00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/]



=== TEST 5: gateway_trace off (the default): the caller's trace context passes through unchanged, nothing is made up
--- project_only: the JSON log is checked as data (json_log_*)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "saw [$http_traceparent]\n";
        }
    }
--- config
    location /t {
        gateway_log logs/gw.json;
        proxy_set_header traceparent $gateway_traceparent;
        add_header X-Span $gateway_span_id;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
["traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "X-None: 1", "traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"]
--- response_headers eval
["X-Span: 00f067aa0ba902b7", "!X-Span", "!X-Span"]
--- response_body eval
["saw [00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01]\n", "saw []\n", "saw []\n"]
--- json_log_file: logs/gw.json
--- json_log_lines: 3
--- json_log_match
1 trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
1 span_id == "00f067aa0ba902b7"
1 parent_span_id absent
2 trace_id absent
2 span_id absent
3 trace_id absent



=== TEST 6: gateway_trace is inherited and can be turned off in a location
--- http_config
    gateway_trace on sample=0.5;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "saw [$http_traceparent]\n";
        }
    }
--- config
    location /on {
        proxy_set_header traceparent $gateway_traceparent;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /off {
        gateway_trace off;
        proxy_set_header traceparent $gateway_traceparent;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /on", "GET /off"]
--- response_body_like eval
[qr/^saw \[00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]\]$/, qr/^saw \[\]$/]



=== TEST 7: gateway_trace: a ratio from 0 to 1
--- config
    gateway_trace on sample=1.5;
    location / {
        return 200;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "sample=1.5" in "gateway_trace" directive, the ratio is a number from 0 to 1/



=== TEST 8: gateway_trace: no sample= after off
--- config
    gateway_trace off sample=0.5;
    location / {
        return 200;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "sample=0.5" in "gateway_trace" directive, only "sample=" may follow "on"/



=== TEST 9: gateway_trace: on or off
--- config
    gateway_trace yes;
    location / {
        return 200;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "yes" in "gateway_trace" directive, it must be "on" or "off"/



=== TEST 10: gateway_trace: duplicate
--- config
    location / {
        gateway_trace on;
        gateway_trace off;
        return 200;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"gateway_trace" directive is duplicate/



=== TEST 11: OpenMetrics exemplars: the latency buckets carry the trace id of a sampled request
--- config
    gateway_trace on;
    location /api/ {
        gateway_route api;
        alias html/;
    }
    location = /metrics {
        gateway_trace off;
        gateway_metrics;
    }
--- user_files
>>> x
hello
--- request eval
["GET /api/x", "GET /metrics"]
--- more_headers eval
["traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
 "Accept: application/openmetrics-text; version=1.0.0"]
--- response_body_like eval
["hello",
 qr/\ngateway_request_duration_seconds_bucket\{route="api",le="[0-9.]+"\} 1 # \{trace_id="4bf92f3577b34da6a3ce929d0e0e4736"\} [0-9.]+\n.*\ngateway_request_duration_seconds_bucket\{route="api",le="\+Inf"\} 1\n/s]



=== TEST 12: no exemplar for an unsampled trace, and none in the text format
--- config
    gateway_trace on sample=0;
    location /api/ {
        gateway_route api;
        alias html/;
    }
    location = /metrics {
        gateway_trace off;
        gateway_metrics;
    }
--- user_files
>>> x
hello
--- request eval
["GET /api/x", "GET /api/x", "GET /metrics", "GET /metrics"]
--- more_headers eval
["traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
 "X-None: 1",
 "Accept: application/openmetrics-text; version=1.0.0",
 "X-None: 1"]
--- response_body_unlike eval
["trace_id", "trace_id", qr/trace_id|0af7651916cd43dd8448eb211c80319c/, qr/trace_id|#\s*\{/]
