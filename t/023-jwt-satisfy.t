# auth_jwt beside nginx's own access modules (allow/deny, auth_basic, auth_request) under
# `satisfy all` and `satisfy any`, as NGINX Plus documents it: auth_jwt answers like an access
# module (granted, refused 401/403, or not configured), runs after allow/deny, auth_basic and
# auth_request, and nginx combines the answers. Rate limits run after every access check
# (precontent phase), whichever module granted the request, and only on the main request.
#
# The protected locations proxy_pass to a backend (never `return`, which answers before the
# access phase); the backend echoes "upstream reached". Tokens as in t/020-jwt.t (HS256, kid
# hs256, keys in t/keys/hmac.jwks), in $TEST_NGINX_ALICE (valid until 2100) and
# $TEST_NGINX_ALICE_BAD (one signature bit off). Basic credentials alice:secret.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;
use Cwd qw(cwd);

$ENV{TEST_NGINX_KEYS} ||= cwd() . '/t/keys';
# HS256, kid hs256, sub alice, exp 2100
$ENV{TEST_NGINX_ALICE} = 'eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.D1F21ihkb2gaMKPqZnecJEV5uqPyzUUKQPf1Qk4yS8Y';
# HS256, kid hs256, sub alice, exp 2100, --corrupt-signature
$ENV{TEST_NGINX_ALICE_BAD} = 'eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.DlF21ihkb2gaMKPqZnecJEV5uqPyzUUKQPf1Qk4yS8Y';

log_level('info');
no_shuffle();
run_tests();

__DATA__

=== TEST 1: satisfy any, allow another address, deny all: a valid token is granted (upstream reached); a bad or missing token gets auth_jwt's 401 (401 wins over deny's 403)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location /t {
        satisfy any;
        allow 10.255.255.1;
        deny all;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
[
    "Authorization: Bearer $ENV{TEST_NGINX_ALICE}",
    "Authorization: Bearer $ENV{TEST_NGINX_ALICE_BAD}",
    "",
]
--- error_code eval
[200, 401, 401]
--- response_headers eval
[
    "!WWW-Authenticate",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"",
    "WWW-Authenticate: Bearer realm=\"api\"",
]
--- response_body_like eval
[qr/\Aupstream reached sub=alice\n\z/, qr/401 Authorization Required/, qr/401 Authorization Required/]
--- no_error_log
[error]



=== TEST 2: satisfy any, allow 127.0.0.1, deny all: the address grants, auth_jwt is not consulted, and the rate limit still counts every request, with or without a token
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached\n";
        }
    }
    rate_limit_zone $binary_remote_addr zone=ip:1m;
--- config
    location /t {
        satisfy any;
        allow 127.0.0.1;
        deny all;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        rate_limit zone=ip rate=3r/h;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
[
    "",
    "Authorization: Bearer not.a.token",
    "Authorization: Bearer $ENV{TEST_NGINX_ALICE}",
    "",
    "Authorization: Bearer $ENV{TEST_NGINX_ALICE}",
]
--- error_code eval
[200, 200, 200, 429, 429]
--- response_headers_like eval
[
'RateLimit: "ip";r=2;t=3600
!WWW-Authenticate',
'RateLimit: "ip";r=1;t=3600
!WWW-Authenticate',
'RateLimit: "ip";r=0;t=\d+',
'RateLimit: "ip";r=0;t=\d+
Retry-After: \d+
!WWW-Authenticate',
'Retry-After: \d+',
]
--- response_body_like eval
[qr/upstream reached/, qr/upstream reached/, qr/upstream reached/, qr/"policy":"ip"/, qr/"policy":"ip"/]
--- no_error_log
jwt refused



=== TEST 3: satisfy all (the default), allowed address: a valid token is granted (upstream reached)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location /ok {
        allow 127.0.0.1;
        deny all;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /denied {
        satisfy all;
        allow 10.255.255.1;
        deny all;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /ok
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_ALICE}"
--- error_code: 200
--- response_headers
!WWW-Authenticate
--- response_body_like eval
qr/\Aupstream reached sub=alice\n\z/
--- no_error_log
malformed
access forbidden by rule
jwt refused



=== TEST 4: satisfy all (the default), allowed address, then token: no token gets auth_jwt's 401 (missing)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location /ok {
        allow 127.0.0.1;
        deny all;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /denied {
        satisfy all;
        allow 10.255.255.1;
        deny all;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /ok
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="api"
--- response_body_like eval
qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/
--- error_log
gateway: jwt refused: no token (missing)
--- no_error_log
malformed
access forbidden by rule



=== TEST 5: satisfy all: a denied address gets 403 before any token is read (a valid, missing or malformed token alike), as with auth_basic
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location /ok {
        allow 127.0.0.1;
        deny all;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /denied {
        satisfy all;
        allow 10.255.255.1;
        deny all;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /denied", "GET /denied", "GET /denied"]
--- more_headers eval
[
    "Authorization: Bearer $ENV{TEST_NGINX_ALICE}",
    "",
    "Authorization: Bearer not.a.token",
]
--- error_code eval
[403, 403, 403]
--- response_headers eval
[
    "!WWW-Authenticate",
    "!WWW-Authenticate",
    "!WWW-Authenticate",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>403 Forbidden<\/title>/,
    qr/\A<html>\r\n<head><title>403 Forbidden<\/title>/,
    qr/\A<html>\r\n<head><title>403 Forbidden<\/title>/,
]
--- error_log
access forbidden by rule
--- no_error_log
malformed
jwt refused



=== TEST 6: satisfy any with auth_basic: a password or a token grants; the other module's challenge is dropped from the granted response; refused by both: 401 with both challenges (401 wins over auth_jwt's 403)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached user=$remote_user sub=$http_x_user\n";
        }
    }
--- config
    location /t {
        satisfy any;
        auth_basic "pw";
        auth_basic_user_file $TEST_NGINX_SERVER_ROOT/html/htpasswd;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        auth_jwt_require $jwt_claim_admin error=403;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /open {
        satisfy any;
        auth_basic "pw";
        auth_basic_user_file $TEST_NGINX_SERVER_ROOT/html/htpasswd;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- user_files
>>> htpasswd
alice:{PLAIN}secret
--- request eval
["GET /open", "GET /open", "GET /open", "GET /t", "GET /open"]
--- more_headers eval
[
    "Authorization: Basic YWxpY2U6c2VjcmV0",
    "Authorization: Bearer $ENV{TEST_NGINX_ALICE}",
    "Authorization: Bearer not.a.token",
    # alice has no admin claim: auth_jwt refuses 403, auth_basic 401
    "Authorization: Bearer $ENV{TEST_NGINX_ALICE}",
    "",
]
--- error_code eval
[200, 200, 401, 401, 401]
--- response_headers eval
[
    "!WWW-Authenticate",
    "!WWW-Authenticate",
    "WWW-Authenticate: Basic realm=\"pw\", Bearer realm=\"api\", error=\"invalid_token\"",
    "WWW-Authenticate: Basic realm=\"pw\", Bearer realm=\"api\", error=\"insufficient_scope\"",
    "WWW-Authenticate: Basic realm=\"pw\", Bearer realm=\"api\"",
]
--- response_body_like eval
[
    qr/\Aupstream reached user=alice sub=\n\z/,
    qr/\Aupstream reached user= sub=alice\n\z/,
    qr/401 Authorization Required/,
    qr/401 Authorization Required/,
    qr/401 Authorization Required/,
]



=== TEST 7: satisfy all with auth_basic and a token from a header of its own: both are needed
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached user=$remote_user sub=$http_x_user\n";
        }
    }
--- config
    location /t {
        auth_basic "pw";
        auth_basic_user_file $TEST_NGINX_SERVER_ROOT/html/htpasswd;
        auth_jwt "api" token=$http_x_token;
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- user_files
>>> htpasswd
alice:{PLAIN}secret
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
[
    "Authorization: Basic YWxpY2U6c2VjcmV0\nX-Token: $ENV{TEST_NGINX_ALICE}",
    "Authorization: Basic YWxpY2U6c2VjcmV0",
    "X-Token: $ENV{TEST_NGINX_ALICE}",
]
--- error_code eval
[200, 401, 401]
--- response_headers eval
[
    "!WWW-Authenticate",
    "WWW-Authenticate: Bearer realm=\"api\"",
    "WWW-Authenticate: Basic realm=\"pw\"",
]
--- response_body_like eval
[qr/\Aupstream reached user=alice sub=alice\n\z/, qr/401/, qr/401/]



=== TEST 8: satisfy any with auth_request (a local location): either grants; refused by both, 401 with auth_jwt's challenge
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location /t {
        satisfy any;
        auth_request /_auth;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location = /_auth {
        internal;
        if ($http_x_session = "good") {
            return 204;
        }
        return 403;
    }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
[
    "X-Session: good",
    "X-Session: bad\nAuthorization: Bearer $ENV{TEST_NGINX_ALICE}",
    "X-Session: bad",
    "X-Session: bad\nAuthorization: Bearer not.a.token",
]
--- error_code eval
[200, 200, 401, 401]
--- response_headers eval
[
    "!WWW-Authenticate",
    "!WWW-Authenticate",
    "WWW-Authenticate: Bearer realm=\"api\"",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"",
]
--- response_body_like eval
[qr/\Aupstream reached sub=\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/401/, qr/401/]



=== TEST 9: satisfy all with auth_request: the subrequest's refusal (403) comes first, then the token's
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location /t {
        auth_request /_auth;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location = /_auth {
        internal;
        if ($http_x_session = "good") {
            return 204;
        }
        return 403;
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
[
    "X-Session: good\nAuthorization: Bearer $ENV{TEST_NGINX_ALICE}",
    "X-Session: good",
    "X-Session: bad\nAuthorization: Bearer $ENV{TEST_NGINX_ALICE}",
]
--- error_code eval
[200, 401, 403]
--- response_headers eval
[
    "!WWW-Authenticate",
    "WWW-Authenticate: Bearer realm=\"api\"",
    "!WWW-Authenticate",
]
--- response_body_like eval
[qr/\Aupstream reached sub=alice\n\z/, qr/401/, qr/403/]



=== TEST 10: auth_jwt's challenge never leaks onto a response another module granted (satisfy any: auth_basic refuses, auth_request grants)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached\n";
        }
    }
--- config
    location /t {
        satisfy any;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        auth_basic "pw";
        auth_basic_user_file $TEST_NGINX_SERVER_ROOT/html/htpasswd;
        auth_request /_auth;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location = /_auth {
        internal;
        if ($http_x_session = "good") {
            return 204;
        }
        return 403;
    }
--- user_files
>>> htpasswd
alice:{PLAIN}secret
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
["X-Session: good", "X-Session: good\nAuthorization: Bearer not.a.token", "X-Session: bad"]
--- error_code eval
[200, 200, 401]
--- response_headers eval
[
    "!WWW-Authenticate",
    "!WWW-Authenticate",
    "WWW-Authenticate: Basic realm=\"pw\", Bearer realm=\"api\"",
]
--- response_body_like eval
[qr/upstream reached/, qr/upstream reached/, qr/401/]



=== TEST 11: satisfy any with auth_basic: the limit counts requests whichever module granted them (password or token), and a refused request not at all
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached\n";
        }
    }
    rate_limit_zone $binary_remote_addr zone=ip:1m;
--- config
    location /t {
        satisfy any;
        auth_basic "pw";
        auth_basic_user_file $TEST_NGINX_SERVER_ROOT/html/htpasswd;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        rate_limit zone=ip rate=3r/h;
        add_header X-RL "[$rate_limit_status $rate_limit_remaining]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- user_files
>>> htpasswd
alice:{PLAIN}secret
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
[
    "Authorization: Basic YWxpY2U6c2VjcmV0",
    "",
    "Authorization: Bearer $ENV{TEST_NGINX_ALICE}",
    "Authorization: Basic YWxpY2U6c2VjcmV0",
    "Authorization: Bearer $ENV{TEST_NGINX_ALICE}",
]
--- error_code eval
[200, 401, 200, 200, 429]
--- response_headers eval
['X-RL: [PASSED 2]', 'X-RL: [ ]', 'X-RL: [PASSED 1]', 'X-RL: [PASSED 0]', 'X-RL: [REJECTED 0]']



=== TEST 12: subrequests are not limited: the auth_request location's own limit never applies, the main request's does
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "upstream reached\n";
        }
    }
    rate_limit_zone $binary_remote_addr zone=ip:1m;
    rate_limit_zone $binary_remote_addr zone=sub:1m;
--- config
    location /t {
        auth_request /_auth;
        rate_limit zone=ip rate=3r/h;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location = /_auth {
        internal;
        rate_limit zone=sub rate=1r/h;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- error_code eval
[200, 200, 200, 429]
--- response_headers_like eval
['RateLimit: "ip";r=2;t=\d+', 'RateLimit: "ip";r=1;t=\d+', 'RateLimit: "ip";r=0;t=\d+', 'RateLimit: "ip";r=0;t=\d+']
--- no_error_log
rate_limit "sub"
