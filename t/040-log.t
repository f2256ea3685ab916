# gateway_log: the JSON record of each request, field by field, checked as data (the runner's
# json_log_* sections parse every line of the file as a JSON object; see t/README.md).
# Tokens are HS256 with t/keys/hs256.jwk (its secret is written to html/ by user_files):
#   valid:   {"sub":"alice","iss":"https://idp.example","exp":4102444800}
#   expired: the same with exp 1000000000
#   forged:  {"sub":"mallory",...} with a corrupted signature
#   unknown: kid "nope", signed with t/keys/hs384.jwk
#   bad iss: {"sub":"carol","iss":"https://evil.example",...}
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

master_on();
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a valid token: every default field present and correct, nothing secret logged
--- project_only: the JSON log is checked as data (json_log_*)
--- config
    location /api/ {
        gateway_log logs/gw.json;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/hs256.jwk;
        auth_jwt_issuer https://idp.example;
        alias html/;
    }
--- user_files
>>> hs256.jwk
{"alg":"HS256","k":"-XA2YL0lgSDxnAg3NMc2-c-CR14FHQq5WDtzPn4FEEU","kid":"hs256","kty":"oct"}
>>> x
hello
--- request
GET /api/x?secret_query=1
--- more_headers
Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJhbGljZSJ9.kRd6xgi3LF8y5ZwS11_wdk14ug_mpRuzjvnY0_tDv28
User-Agent: test-agent/1.0 (x)
--- response_body
hello
--- json_log_file: logs/gw.json
--- json_log_lines: 1
--- json_log_match
1 ts =~ ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$
1 request_id =~ ^[0-9a-f]{32}$
1 client_ip == "127.0.0.1"
1 method == "GET"
1 host == "localhost"
1 path == "/api/x"
1 query absent
1 status == 200
1 bytes_sent is number
1 bytes_sent != 0
1 request_time is number
1 user_agent == "test-agent/1.0 (x)"
1 consumer == "alice"
1 auth == {"result": "valid", "kid": "hs256", "alg": "HS256", "iss": "https://idp.example"}
1 trace_id absent
1 span_id absent
1 upstream_addr absent
1 upstream_status absent
1 upstream_response_time absent
1 rate_limit absent
--- no_json_log
eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0
kRd6xgi3LF8y5ZwS11_wdk14ug_mpRuzjvnY0_tDv28
-XA2YL0lgSDxnAg3NMc2
secret_query



=== TEST 2: auth failures: result and reason; consumer only from a verified signature
--- project_only: the JSON log is checked as data (json_log_*)
--- config
    location /api/ {
        gateway_log logs/gw.json;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/hs256.jwk;
        auth_jwt_issuer https://idp.example;
        alias html/;
    }
--- user_files
>>> hs256.jwk
{"alg":"HS256","k":"-XA2YL0lgSDxnAg3NMc2-c-CR14FHQq5WDtzPn4FEEU","kid":"hs256","kty":"oct"}
>>> x
hello
--- request eval
["GET /api/x", "GET /api/x", "GET /api/x", "GET /api/x", "GET /api/x", "GET /api/x"]
--- more_headers eval
["X-Case: missing",
 "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjEwMDAwMDAwMDAsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJhbGljZSJ9.kdlrpXn1XNOxVBVzOOYW3v1edUV1OQV-eWEA4jrG5VE",
 "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJtYWxsb3J5In0.o1I6A2R4sMWQg4ZWHuWpFn12O8E_HcRRk4z69SL2lOc",
 "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6Im5vcGUiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6Im1hbGxvcnkifQ.OZDsmDkQFG419fpudT3KZDM0LxtYPN8lRqJHaZ1Lkf8",
 "Authorization: Bearer not-a-token",
 "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vZXZpbC5leGFtcGxlIiwic3ViIjoiY2Fyb2wifQ.0cUXwesM6qZvGNHdaSKGQL_yjGVSQSr9LuEad706GIg"]
--- error_code eval
[401, 401, 401, 401, 401, 401]
--- json_log_file: logs/gw.json
--- json_log_lines: 6
--- json_log_match
* status == 401
1 auth == {"result": "missing", "reason": "missing"}
1 consumer absent
2 auth.result == "invalid"
2 auth.reason == "expired"
2 auth.kid == "hs256"
2 consumer == "alice"
3 auth == {"result": "invalid", "reason": "bad_signature"}
3 consumer absent
4 auth == {"result": "invalid", "reason": "unknown_key"}
4 consumer absent
5 auth == {"result": "invalid", "reason": "malformed"}
5 consumer absent
6 auth.result == "invalid"
6 auth.reason == "bad_issuer"
6 auth.iss == "https://evil.example"
--- no_json_log
mallory
eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0
not-a-token
-XA2YL0lgSDxnAg3NMc2



=== TEST 3: a rate-limited request: rate_limit {result, policy, remaining} and status 429
--- project_only: the JSON log is checked as data (json_log_*)
--- http_config
    rate_limit_zone $remote_addr zone=perip:1m;
--- config
    location /api/ {
        gateway_log logs/gw.json;
        rate_limit zone=perip rate=2r/m policy=gold;
        alias html/;
    }
--- user_files
>>> x
hello
--- request eval
["GET /api/x", "GET /api/x", "GET /api/x"]
--- error_code eval
[200, 200, 429]
--- json_log_file: logs/gw.json
--- json_log_lines: 3
--- json_log_match
1 rate_limit == {"result": "PASSED", "policy": "gold", "remaining": 1}
2 rate_limit == {"result": "PASSED", "policy": "gold", "remaining": 0}
3 rate_limit == {"result": "REJECTED", "policy": "gold", "remaining": 0}
3 status == 429
* auth absent
* consumer absent



=== TEST 4: a proxied request: upstream_addr (a string), upstream_status and upstream_response_time (numbers)
--- project_only: the JSON log is checked as data (json_log_*)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / { return 201 "upstream\n"; }
    }
--- config
    location /api/ {
        gateway_log logs/gw.json;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /api/x
--- error_code: 201
--- response_body
upstream
--- json_log_file: logs/gw.json
--- json_log_lines: 1
--- json_log_match
1 path == "/api/x"
1 status == 201
1 upstream_addr == "127.0.0.1:$TEST_NGINX_RAND_PORT_1"
1 upstream_status == 201
1 upstream_response_time is number
1 upstream_response_time =~ ^\d+(\.\d+)?$



=== TEST 5: traceparent: trace_id and span_id from a valid header, nothing from invalid ones
--- project_only: the JSON log is checked as data (json_log_*)
--- config
    location /api/ {
        gateway_log logs/gw.json;
        alias html/;
    }
--- user_files
>>> x
hello
--- request eval
["GET /api/x", "GET /api/x", "GET /api/x", "GET /api/x"]
--- more_headers eval
["traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
 "traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
 "traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01",
 "traceparent: garbage\\\"}"]
--- response_body eval
["hello\n", "hello\n", "hello\n", "hello\n"]
--- json_log_file: logs/gw.json
--- json_log_lines: 4
--- json_log_match
1 trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
1 span_id == "00f067aa0ba902b7"
2 trace_id absent
2 span_id absent
3 trace_id absent
4 trace_id absent
4 span_id absent



=== TEST 6: query only when asked; gateway_log_fields none/name/-name
--- project_only: the JSON log is checked as data (json_log_*)
--- config
    location /default/ {
        gateway_log logs/gw.json;
        alias html/;
    }
    location /query/ {
        gateway_log logs/gw.json;
        gateway_log_fields default query;
        alias html/;
    }
    location /few/ {
        gateway_log logs/gw.json;
        gateway_log_fields none status path;
        alias html/;
    }
    location /minus/ {
        gateway_log logs/gw.json;
        gateway_log_fields default -user_agent -ts -request_id;
        alias html/;
    }
--- user_files
>>> x
hello
--- request eval
["GET /default/x?a=1&b=%22two%22", "GET /query/x?a=1&b=%22two%22", "GET /few/x?a=1", "GET /minus/x?a=1"]
--- more_headers
User-Agent: ua
--- response_body eval
["hello\n", "hello\n", "hello\n", "hello\n"]
--- json_log_file: logs/gw.json
--- json_log_lines: 4
--- json_log_match
1 path == "/default/x"
1 query absent
2 path == "/query/x"
2 query == "a=1&b=%22two%22"
3 . == {"path": "/few/x", "status": 200}
4 user_agent absent
4 ts absent
4 request_id absent
4 method == "GET"
4 query absent



=== TEST 7: gateway_log_field: dotted names nest, number-like values become numbers
--- project_only: the JSON log is checked as data (json_log_*)
--- config
    location /api/ {
        gateway_log logs/gw.json;
        gateway_log_field app.tenant $arg_tenant;
        gateway_log_field app.n $arg_n;
        gateway_log_field app.zip $arg_zip;
        gateway_log_field app.neg $arg_neg;
        gateway_log_field app.deep.region eu-west;
        gateway_log_field version 2;
        gateway_log_field empty $arg_nothing;
        alias html/;
    }
--- user_files
>>> x
hello
--- request
GET /api/x?tenant=acme&n=42&zip=007&neg=-1.5e3
--- response_body
hello
--- json_log_file: logs/gw.json
--- json_log_lines: 1
--- json_log_match
1 app == {"tenant": "acme", "n": 42, "zip": "007", "neg": -1.5e3, "deep": {"region": "eu-west"}}
1 version == 2
1 empty absent
1 status == 200



=== TEST 8: if=: a destination written only when its condition is non-empty and not "0"
--- project_only: the JSON log is checked as data (json_log_*); actions between requests (after_request)
--- config
    location /api/ {
        gateway_log logs/all.json;
        gateway_log logs/gw.json if=$arg_log;
        alias html/;
    }
--- user_files
>>> x
hello
--- request eval
["GET /api/x?log=1", "GET /api/x?log=0", "GET /api/x", "GET /api/x?log=yes"]
--- response_body eval
["hello\n", "hello\n", "hello\n", "hello\n"]
--- after_request
4 json_lines logs/all.json 4
--- json_log_file: logs/gw.json
--- json_log_lines: 2
--- json_log_match
1 query absent
1 path == "/api/x"



=== TEST 9: gateway_log off in a location; inherited elsewhere; gateway off writes nothing
--- project_only: the JSON log is checked as data (json_log_*)
--- config
    gateway_log logs/gw.json;
    location /logged/ {
        alias html/;
    }
    location /quiet/ {
        gateway_log off;
        alias html/;
    }
    location /off/ {
        gateway off;
        alias html/;
    }
--- user_files
>>> x
hello
--- request eval
["GET /logged/x", "GET /quiet/x", "GET /off/x", "GET /logged/x"]
--- response_body eval
["hello\n", "hello\n", "hello\n", "hello\n"]
--- json_log_file: logs/gw.json
--- json_log_lines: 2
--- json_log_match
* path == "/logged/x"



=== TEST 10: $gateway_log_json in access_log: the same record, valid JSON
--- project_only: the JSON log is checked as data (json_log_*)
--- http_config
    log_format gwjson escape=none '$gateway_log_json';
--- config
    location /api/ {
        access_log logs/access.json gwjson;
        gateway_log_field app.k $arg_k;
        add_header X-Id $gateway_request_id;
        alias html/;
    }
--- user_files
>>> x
hello
--- request
GET /api/x?k=%22v%5C
--- more_headers
User-Agent: a"b\c
--- response_body
hello
--- json_log_file: logs/access.json
--- json_log_lines: 1
--- json_log_match
1 path == "/api/x"
1 status == 200
1 user_agent == "a\"b\\c"
1 app.k == "%22v%5C"
1 request_id =~ ^[0-9a-f]{32}$
1 bytes_sent is number



=== TEST 11: hostile bytes in path, user agent and a logged header: valid JSON, U+FFFD for invalid UTF-8
--- project_only: the JSON log is checked as data (json_log_*)
--- config
    location ~ ^/ {
        gateway_log logs/gw.json;
        gateway_log_field evil $http_x_evil;
        return 200 "ok\n";
    }
--- raw_request eval
"GET /p\xff\xfe/%22q%5C%5Cu0000/%01%7f/\xc3\xa9\xe2\x82 HTTP/1.1\r
Host: localhost\r
User-Agent: ua\x01\x1f\x7f\"}\\\\{\xc3\x28\xf0\x9f\x98\x80\r
X-Evil: \"},\"status\":999,\"x\":{\"\xed\xa0\x80\r
Connection: close\r
\r
"
--- response_body
ok
--- json_log_file: logs/gw.json
--- json_log_lines: 1
--- json_log_match
1 path == "/p\ufffd\ufffd/%22q%5C%5Cu0000/%01%7f/\u00e9\ufffd"
1 user_agent == "ua\u0001\u001f\u007f\"}\\\\{\ufffd(\ud83d\ude00"
1 evil == "\"},\"status\":999,\"x\":{\"\ufffd\ufffd\ufffd"
1 status == 200
1 x absent



=== TEST 12: control bytes in the request line: nginx answers 400, the record is still valid JSON
--- project_only: the JSON log is checked as data (json_log_*)
--- config
    gateway_log logs/gw.json;
    location ~ ^/ {
        return 200 "ok\n";
    }
--- raw_request eval
"GET /a\x01b\x7f\x00c\"\\ HTTP/1.1\r
Host: localhost\r
Connection: close\r
\r
"
--- error_code: 400
--- response_body_like: 400 Bad Request
--- json_log_file: logs/gw.json
--- json_log_lines: 1
--- json_log_match
1 status == 400



=== TEST 13: many hostile paths and headers, one request each: every line parses
--- project_only: the JSON log is checked as data (json_log_*)
--- config
    gateway_log logs/gw.json;
    gateway_log_field h $http_x_h;
    location ~ ^/ {
        return 200 "ok\n";
    }
--- request eval
["GET /%ff%fe%01%0a%0d", "GET /\"\\'\\\\", "GET /\xff\xff\xff", "GET /a?b=\xc3\x28&c=\"", "GET /\xe2\x80\xa8\xe2\x80\xa9", "GET /\xf4\x8f\xbf\xbf"]
--- more_headers eval
["X-H: \\\\\\\\\\\\", "X-H: \"\"\"", "X-H: \xef\xbf\xbf", "X-H: \xc0\xaf", "X-H: \xf5\x80\x80\x80", "X-H: a\tb"]
--- response_body eval
["ok\n", "ok\n", "ok\n", "ok\n", "ok\n", "ok\n"]
--- json_log_file: logs/gw.json
--- json_log_lines: 6
--- json_log_match
* status == 200
* path is string
* h is string
1 path == "/%ff%fe%01%0a%0d"
3 path == "/\ufffd\ufffd\ufffd"



=== TEST 14: gateway_log_field refuses credentials: $http_authorization
--- config
    location /t {
        gateway_log logs/gw.json;
        gateway_log_field auth.header $http_authorization;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*refuses to log "\$http_authorization": credentials never go to the log \(it is a credential header\) in \S+nginx\.conf:\d+/



=== TEST 15: gateway_log_field refuses credentials: cookies, inside a larger value too
--- config
    location /t {
        gateway_log_field session "s=$cookie_session";
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*refuses to log "\$cookie_session": credentials never go to the log \(cookies carry sessions\)/



=== TEST 16: gateway_log_field refuses credentials: $http_cookie
--- http_config
    gateway_log_field c $http_cookie;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*refuses to log "\$http_cookie"/



=== TEST 17: gateway_log: a bad buffer size is refused
--- config
    gateway_log logs/gw.json buffer=lots;
--- must_die
--- error_log eval
qr/\[emerg\] .*"buffer=lots".*invalid buffer size|invalid buffer size.*"buffer=lots"/



=== TEST 18: gateway_log: buffer=0 is refused
--- config
    gateway_log logs/gw.json buffer=0;
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid buffer size/



=== TEST 19: gateway_log: flush= without buffer= is refused
--- config
    gateway_log logs/gw.json flush=1s;
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "flush" requires "buffer" in "gateway_log" directive in \S+nginx\.conf:\d+/



=== TEST 20: gateway_log: buffer= and flush= apply to files only
--- config
    gateway_log stderr buffer=4k;
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "buffer" and "flush" apply to files only/



=== TEST 21: gateway_log: an unknown parameter and a bad flush time are refused
--- config
    gateway_log logs/gw.json buffer=4k flush=soon;
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid flush time/



=== TEST 22: gateway_log_fields: an unknown field is refused
--- config
    location /t {
        gateway_log_fields default -usr_agent;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"-usr_agent".*unknown field|unknown field.*"-usr_agent"/



=== TEST 23: gateway_log off cannot be combined with destinations in the same block
--- config
    gateway_log logs/gw.json;
    gateway_log off;
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "gateway_log off" cannot be combined with other destinations/



=== TEST 24: gateway_log_field: a bad field name is refused
--- config
    gateway_log_field "a..b" x;
--- must_die
--- error_log eval
qr/\[emerg\] .*field names are letters, digits/
