# Credentials never reach the log, whatever the token source (README, "Security").
#
# The gateway_log_field guard reads variable names as nginx does (case-insensitive, `$name` and
# `${name}`), refuses every credential header, cookie, the request line and query string, and
# the variables an `auth_jwt ... token=` of the configuration reads tokens from, in either order
# in the file. The record's `query` field shows `access_token` and every argument an
# `auth_jwt ... token=$arg_NAME` reads as `NAME=[REDACTED]`.
#
# Tokens are HS256 with t/keys/hs256.jwk, pasted literally; t/gen/jwt-tokens.sh prints them.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;
use Cwd qw(cwd);

$ENV{TEST_NGINX_KEYS} ||= cwd() . '/t/keys';

master_on();
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a token sent as a query argument is redacted from the query field and $gateway_log_json; the other arguments stay
--- project_only: the JSON log is checked as data (json_log_*)
--- http_config
    gateway_log logs/gw.json;
    gateway_log_fields default query;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        gateway off;
        location / {
            return 200 "upstream reached\n";
        }
    }
--- config
    auth_jwt "api" token=$arg_jwt;
    auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
    gateway_log_field tenant $arg_tenant;
    add_header X-Log $gateway_log_json always;
    location /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /open {
        auth_jwt off;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    # HS256, kid hs256, sub alice, exp 2100
    "GET /t?a=1&jwt=eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.D1F21ihkb2gaMKPqZnecJEV5uqPyzUUKQPf1Qk4yS8Y&tenant=acme",
    # HS256, kid hs256, sub alice, exp 2100, --corrupt-signature ($arg_jwt matches JWT= too)
    "GET /t?JWT=eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.DlF21ihkb2gaMKPqZnecJEV5uqPyzUUKQPf1Qk4yS8Y&x=y",
    # HS256, kid hs256, sub dave, exp 2100; auth_jwt is off here, the argument is still redacted
    "GET /open?access_token=opaque-secret-123&jwt=eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImRhdmUifQ.6g4qcU0sP__rbngq_zHtOHYaFZQ1XHYtKTiX-DpB8FE&keep=me",
    # HS256, kid hs256, sub dave, exp 2100, followed by ";x=1" (nginx reads "TOKEN;x=1": invalid)
    "GET /t?jwt=eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImRhdmUifQ.6g4qcU0sP__rbngq_zHtOHYaFZQ1XHYtKTiX-DpB8FE;x=1",
]
--- error_code eval
[200, 401, 200, 401]
--- response_headers_like eval
[
    'X-Log: .*"path":"/t","query":"a=1&jwt=\[REDACTED\]&tenant=acme".*"tenant":"acme".*',
    'X-Log: .*"path":"/t","query":"JWT=\[REDACTED\]&x=y".*',
    'X-Log: .*"path":"/open","query":"access_token=\[REDACTED\]&jwt=\[REDACTED\]&keep=me".*',
    'X-Log: .*"path":"/t","query":"jwt=\[REDACTED\];x=1".*',
]
--- raw_response_headers_unlike eval
[qr/D1F21ihkb2gaMKPq|eyJleHAi/, qr/DlF21ihkb2gaMKPq|eyJleHAi/, qr/opaque-secret|6g4qcU0sP|eyJleHAi/, qr/6g4qcU0sP|eyJleHAi/]
--- json_log_file: logs/gw.json
--- json_log_lines: 4
--- json_log_match
1 path == "/t"
1 query == "a=1&jwt=[REDACTED]&tenant=acme"
1 tenant == "acme"
1 auth.result == "valid"
2 query == "JWT=[REDACTED]&x=y"
2 auth.reason == "bad_signature"
3 path == "/open"
3 query == "access_token=[REDACTED]&jwt=[REDACTED]&keep=me"
4 query == "jwt=[REDACTED];x=1"
--- no_json_log
D1F21ihkb2gaMKPq
DlF21ihkb2gaMKPq
6g4qcU0sP
eyJleHAi
eyJhbGci
opaque-secret



=== TEST 2: the guard follows nginx's variable names: upper case is the same variable
--- config
    location /t {
        gateway_log_field h $HTTP_Authorization;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"gateway_log_field" refuses to log "\$http_authorization": credentials never go to the log \(it is a credential header\) in \S+nginx\.conf:\d+/



=== TEST 3: the guard follows nginx's variable names: the ${name} form
--- config
    location /t {
        gateway_log_field c "c=${http_cookie}x";
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*refuses to log "\$http_cookie": credentials never go to the log \(cookies carry sessions\) in \S+nginx\.conf:\d+/



=== TEST 4: the cookie an upstream sets is a credential too
--- config
    location /t {
        gateway_log_field set_cookie $sent_http_set_cookie;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*refuses to log "\$sent_http_set_cookie": credentials never go to the log \(cookies carry sessions\)/



=== TEST 5: the request line and the raw query string are refused: they carry tokens (the query field redacts them)
--- config
    location /t {
        gateway_log_field uri $request_uri;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*refuses to log "\$request_uri": credentials never go to the log \(it holds the query string, where tokens travel; the "query" field logs it with them redacted\)/



=== TEST 6: $args is refused, also in a block that auth_jwt never sees
--- http_config
    gateway_log_field q ${ARGS};
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*refuses to log "\$args": credentials never go to the log/



=== TEST 7: the header an auth_jwt token= reads (in another location, earlier in the file) is refused
--- config
    location /a {
        auth_jwt "api" token=$http_x_token;
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
    }
    location /b {
        gateway_log_field t $HTTP_X_TOKEN;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"gateway_log_field" refuses to log "\$http_x_token": credentials never go to the log \("auth_jwt" in \S+nginx\.conf:\d+ reads tokens from it\) in \S+nginx\.conf:\d+/



=== TEST 8: a gateway_log_field written before the auth_jwt token= that makes it a credential is refused at the auth_jwt
--- http_config
    gateway_log_field a $arg_jwt;
--- config
    location /t {
        auth_jwt "api" token=$ARG_JWT;
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"auth_jwt" reads tokens from "\$arg_jwt", which "gateway_log_field" in \S+nginx\.conf:\d+ logs: credentials never go to the log in \S+nginx\.conf:\d+/



=== TEST 9: the request body is always refused
--- config
    location /t {
        gateway_log_field body "$request_body";
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*refuses to log "\$request_body": credentials never go to the log \(request bodies carry passwords and tokens\)/



=== TEST 10: the request line nginx logs ($request in access_log) has the token argument of an accepted request redacted; the request is served with its arguments as sent
--- log_level: info
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        gateway off;
        location / {
            return 200 "upstream reached args=$args\n";
        }
    }
--- config
    location /t {
        auth_jwt "api" token=$arg_jwt;
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
# HS256, kid hs256, sub alice, exp 2100
"GET /t?a=1&jwt=eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.D1F21ihkb2gaMKPqZnecJEV5uqPyzUUKQPf1Qk4yS8Y&b=2"
--- error_code: 200
--- response_body_like eval
qr/^upstream reached args=a=1&jwt=eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0\.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0\.D1F21ihkb2gaMKPqZnecJEV5uqPyzUUKQPf1Qk4yS8Y&b=2\n\z/
--- access_log
"GET /t?a=1&jwt=[REDACTED]&b=2 HTTP/1.1" 200
--- no_error_log
D1F21ihkb2gaMKPq
DlF21ihkb2gaMKPq
opaque-secret-123
jwt refused
--- no_access_log
D1F21ihkb2gaMKPq
DlF21ihkb2gaMKPq
opaque-secret-123



=== TEST 11: the request line nginx logs ($request in access_log, request: "..." in error-log lines) has the token and access_token arguments of a refused request redacted
--- log_level: info
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        gateway off;
        location / {
            return 200 "upstream reached args=$args\n";
        }
    }
--- config
    location /t {
        auth_jwt "api" token=$arg_jwt;
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
# HS256, kid hs256, sub alice, exp 2100, --corrupt-signature
"GET /t?jwt=eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.DlF21ihkb2gaMKPqZnecJEV5uqPyzUUKQPf1Qk4yS8Y&access_token=opaque-secret-123"
--- error_code: 401
--- response_body_like eval
qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/
--- error_log
gateway: jwt refused: signature verification failed (bad_signature)
request: "GET /t?jwt=[REDACTED]&access_token=[REDACTED] HTTP/1.1"
--- access_log
"GET /t?jwt=[REDACTED]&access_token=[REDACTED] HTTP/1.1" 401
--- no_error_log
D1F21ihkb2gaMKPq
DlF21ihkb2gaMKPq
opaque-secret-123
--- no_access_log
D1F21ihkb2gaMKPq
DlF21ihkb2gaMKPq
opaque-secret-123
