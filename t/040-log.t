# gateway_log: the JSON record of each request, field by field, checked as data (the runner's
# json_log_* sections parse every line of the file as a JSON object; see t/README.md).
# Tokens are HS256 with t/keys/hs256.jwk (its secret is written to html/ by user_files):
#   valid:   {"sub":"alice","iss":"https://idp.example","exp":4102444800}
#   expired: the same with exp 1000000000
#   forged:  {"sub":"mallory",...} with a corrupted signature
#   unknown: kid "nope", signed with t/keys/hs384.jwk
#   bad iss: {"sub":"carol","iss":"https://evil.example",...}
use Test::Nginx::Socket 'no_plan';

master_on();
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a valid token: every default field present and correct, nothing secret logged
--- config
    location /api/ {
        gateway_log logs/gw.json;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_HTML_DIR/hs256.jwk;
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
--- config
    location /api/ {
        gateway_log logs/gw.json;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_HTML_DIR/hs256.jwk;
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
--- response_body_like eval
[".*", ".*", ".*", ".*", ".*", ".*"]
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
--- response_body_like eval
[".*", ".*", ".*"]
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
