# Consumers from the central policy (README, "Consumers and central policy"): API keys, tokens
# bound to consumers, the anonymous consumer, the denylist, access rules per route, plan
# quotas, the identity the upstream receives, variables, the log record and the metrics.
#
# The document is t/policy/basic.json (see t/policy/README.md for its keys and consumers); the
# backend, t/policy/echo-identity.conf, answers with the identity headers and key it received;
# tokens are HS256 with t/keys/hs256.jwk from t/gen/jwt-tokens.sh, section "t/070-policy.t".
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;
use Cwd qw(cwd);

$ENV{TEST_NGINX_KEYS} ||= cwd() . '/t/keys';
$ENV{TEST_NGINX_POLICY} ||= cwd() . '/t/policy';
$ENV{TEST_NGINX_EXAMPLES} ||= cwd() . '/nginx-conf';

log_level('info');
no_shuffle();

run_tests();

__DATA__
=== TEST 1: an API key in a header identifies its consumer; the upstream gets the identity, never the client's copies
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_api_key header=X-API-Key;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- more_headers
X-API-Key: key-acme
X-Consumer-ID: admin
x-consumer-groups: admins
X-Anonymous-Consumer: true
--- response_body
id=[acme] user=[Acme Corp] groups=[partners, orders-read] cred=[acme-ci] anon=[] key=[key-acme] cookie=[] args=[]
--- no_error_log
[error]
key-acme



=== TEST 2: hide_credentials: the key leaves the request before the upstream (header, query argument, cookie)
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_api_key header=X-API-Key query=apikey cookie=gwkey hide_credentials;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t?a=1&apikey=key-acme&b=2", "GET /t"]
--- more_headers eval
["X-API-Key: key-acme", "", "Cookie: a=1; gwkey=key-acme; b=2"]
--- response_body eval
[
"id=[acme] user=[Acme Corp] groups=[partners, orders-read] cred=[acme-ci] anon=[] key=[] cookie=[] args=[]\n",
"id=[acme] user=[Acme Corp] groups=[partners, orders-read] cred=[acme-ci] anon=[] key=[] cookie=[] args=[a=1&b=2]\n",
"id=[acme] user=[Acme Corp] groups=[partners, orders-read] cred=[acme-ci] anon=[] key=[] cookie=[a=1; b=2] args=[]\n",
]
--- no_error_log
[error]
key-acme



=== TEST 3: the first source present wins, in the order written
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_api_key query=apikey header=X-API-Key;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t?apikey=key-beta
--- more_headers
X-API-Key: key-acme
--- response_body_like: ^id=\[beta\]



=== TEST 4: refusals: unknown key, revoked key, no credential (401 with a challenge); disabled or denied consumer (403); each a problem+json with its reason
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_api_key header=X-API-Key;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
["X-API-Key: no-such-key", "X-API-Key: key-old", "", "X-API-Key: key-off", "X-API-Key: key-free"]
--- error_code eval
[401, 401, 401, 403, 403]
--- response_headers eval
[
"Content-Type: application/problem+json\nWWW-Authenticate: ApiKey",
"Content-Type: application/problem+json\nWWW-Authenticate: ApiKey",
"Content-Type: application/problem+json\nWWW-Authenticate: ApiKey",
"Content-Type: application/problem+json\nWWW-Authenticate:",
"Content-Type: application/problem+json\nWWW-Authenticate:",
]
--- response_body_like eval
[
qr/^\{"type":"about:blank","title":"Unauthorized","status":401,"detail":"the API key is unknown","reason":"key_unknown"\}$/,
qr/"reason":"key_revoked"/,
qr/"reason":"credential_missing"/,
qr/^\{"type":"about:blank","title":"Forbidden","status":403,"detail":"the consumer is disabled","reason":"consumer_disabled"\}$/,
qr/"reason":"consumer_denied"/,
]
--- error_log eval
qr/\[info\] .*consumer refused: .+ \((key_unknown|key_revoked|credential_missing|consumer_disabled|consumer_denied)\), status 40[13]/
--- no_error_log eval
[
"no-such-key",
"key-old",
"[error]",
"key-off",
"key-free",
]



=== TEST 5: the anonymous consumer: requests with no credential get it (its groups and plan from the document); a bad key is still refused
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_api_key header=X-API-Key;
        auth_consumer on anonymous=guest;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["", "X-API-Key: nope"]
--- error_code eval
[200, 401]
--- response_body_like eval
[
qr/^id=\[guest\] user=\[guest\] groups=\[public\] cred=\[\] anon=\[true\]/,
qr/"reason":"key_unknown"/,
]



=== TEST 6: an anonymous id the document does not know is still the consumer, with no groups or plan
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_consumer on anonymous=visitor;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body_like: ^id=\[visitor\] user=\[visitor\] groups=\[\] cred=\[\] anon=\[true\]



=== TEST 7: tokens: bound by issuer and subject, bound by a claim, unregistered (allowed by default: the consumer is the subject)
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        auth_consumer on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
[
# HS256, kid hs256, iss https://idp.test, sub svc-123, jti t-svc-1, exp 2100
"Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLnRlc3QiLCJqdGkiOiJ0LXN2Yy0xIiwic3ViIjoic3ZjLTEyMyJ9.VTBt3pn8ZM3zYr3Cfm1uU95PawIuT7vweruCw3jRi4U",
# HS256, kid hs256, iss https://idp.test, sub someone, client_id acme-app, exp 2100
"Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJjbGllbnRfaWQiOiJhY21lLWFwcCIsImV4cCI6NDEwMjQ0NDgwMCwiaXNzIjoiaHR0cHM6Ly9pZHAudGVzdCIsInN1YiI6InNvbWVvbmUifQ.1vBR6vTEqP35QogjRm4z2ztZmFUMTMcXlEyyhc-S3eY",
# HS256, kid hs256, iss https://idp.test, sub bob, jti t-bob-1, realm_access.roles [orders-read, x], scope "orders.write admin", exp 2100
"Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLnRlc3QiLCJqdGkiOiJ0LWJvYi0xIiwicmVhbG1fYWNjZXNzIjp7InJvbGVzIjpbIm9yZGVycy1yZWFkIiwieCJdfSwic2NvcGUiOiJvcmRlcnMud3JpdGUgYWRtaW4iLCJzdWIiOiJib2IifQ.Tz2h3O-YDS7CvHm79L6AUwcezmnuvXXzeFHNtoBAd18",
]
--- response_body eval
[
"id=[beta] user=[beta] groups=[readers] cred=[] anon=[] key=[] cookie=[] args=[]\n",
"id=[appco] user=[appco] groups=[partners] cred=[] anon=[] key=[] cookie=[] args=[]\n",
"id=[bob] user=[bob] groups=[] cred=[] anon=[] key=[] cookie=[] args=[]\n",
]



=== TEST 8: unregistered=refuse: a valid token no consumer claims is 403; a bound one passes
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        auth_consumer on unregistered=refuse;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
[
# HS256, kid hs256, iss https://idp.test, sub bob, jti t-bob-1, realm_access.roles [orders-read, x], scope "orders.write admin", exp 2100
"Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLnRlc3QiLCJqdGkiOiJ0LWJvYi0xIiwicmVhbG1fYWNjZXNzIjp7InJvbGVzIjpbIm9yZGVycy1yZWFkIiwieCJdfSwic2NvcGUiOiJvcmRlcnMud3JpdGUgYWRtaW4iLCJzdWIiOiJib2IifQ.Tz2h3O-YDS7CvHm79L6AUwcezmnuvXXzeFHNtoBAd18",
# HS256, kid hs256, iss https://idp.test, sub svc-123, jti t-svc-1, exp 2100
"Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLnRlc3QiLCJqdGkiOiJ0LXN2Yy0xIiwic3ViIjoic3ZjLTEyMyJ9.VTBt3pn8ZM3zYr3Cfm1uU95PawIuT7vweruCw3jRi4U",
]
--- error_code eval
[403, 200]
--- response_body_like eval
[qr/"reason":"unregistered"/, qr/^id=\[beta\]/]



=== TEST 9: the denylist revokes tokens before they expire: by jti and by sub (401 with the token challenge kept apart: ApiKey scheme of the consumer layer)
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        auth_consumer on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
[
# HS256, kid hs256, iss https://idp.test, sub carol, jti t-revoked, exp 2100
"Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLnRlc3QiLCJqdGkiOiJ0LXJldm9rZWQiLCJzdWIiOiJjYXJvbCJ9.5XQzDO1-_cM389DmAOmaRbeP0uL487GY_FUY73rEy4Y",
# HS256, kid hs256, iss https://idp.test, sub mallory, exp 2100
"Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLnRlc3QiLCJzdWIiOiJtYWxsb3J5In0.-p6qXJKTz183P1tJv6lo4a8haT0gJpeGdUcKm2wHMH8",
]
--- error_code eval
[401, 401]
--- response_body_like eval
[qr/"detail":"the token is revoked \(jti\)","reason":"token_revoked"/, qr/"detail":"the token's subject is revoked \(sub\)","reason":"token_revoked"/]



=== TEST 10: a token refused by auth_jwt is answered by auth_jwt (Bearer challenge); no token and no anonymous consumer: auth_jwt's 401
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        auth_consumer on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["Authorization: Bearer not.a.token", ""]
--- error_code eval
[401, 401]
--- response_headers eval
['WWW-Authenticate: Bearer realm="api", error="invalid_token"', 'WWW-Authenticate: Bearer realm="api"']



=== TEST 11: an API key and auth_jwt on one location: the key is enough (the token is not needed), a request with only a token is checked by auth_jwt
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        auth_api_key header=X-API-Key;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
[
"X-API-Key: key-acme",
# HS256, kid hs256, iss https://idp.test, sub svc-123, jti t-svc-1, exp 2100
"Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLnRlc3QiLCJqdGkiOiJ0LXN2Yy0xIiwic3ViIjoic3ZjLTEyMyJ9.VTBt3pn8ZM3zYr3Cfm1uU95PawIuT7vweruCw3jRi4U",
"",
]
--- error_code eval
[200, 200, 401]
--- response_body_like eval
[qr/^id=\[acme\]/, qr/^id=\[beta\]/, qr/401 Authorization Required/]



=== TEST 12: access rules per route and method: groups of the consumer, 403 group_forbidden, 403 route_unknown for a route the document does not name
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /orders {
        gateway_route orders;
        auth_api_key header=X-API-Key;
        auth_consumer_acl on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /nope {
        gateway_route nope;
        auth_api_key header=X-API-Key;
        auth_consumer_acl on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /orders", "POST /orders", "DELETE /orders", "GET /orders", "GET /nope"]
--- more_headers eval
["X-API-Key: key-acme", "X-API-Key: key-acme", "X-API-Key: key-acme", "X-API-Key: key-beta", "X-API-Key: key-acme"]
--- error_code eval
[200, 200, 403, 403, 403]
--- response_body_like eval
[qr/^id=\[acme\]/, qr/^id=\[acme\]/, qr/"reason":"group_forbidden"/, qr/"reason":"group_forbidden"/, qr/"reason":"route_unknown"/]



=== TEST 13: groups from token claims (auth_consumer_groups_claim: an array at a path, a space-separated scope)
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /orders {
        gateway_route orders;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        auth_consumer on;
        auth_consumer_groups_claim realm_access.roles scope;
        auth_consumer_acl on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /admin {
        gateway_route admin;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        auth_consumer on;
        auth_consumer_groups_claim realm_access.roles;
        auth_consumer_acl on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /orders", "POST /orders", "GET /admin"]
--- more_headers eval
[
# HS256, kid hs256, iss https://idp.test, sub bob, jti t-bob-1, realm_access.roles [orders-read, x], scope "orders.write admin", exp 2100
"Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLnRlc3QiLCJqdGkiOiJ0LWJvYi0xIiwicmVhbG1fYWNjZXNzIjp7InJvbGVzIjpbIm9yZGVycy1yZWFkIiwieCJdfSwic2NvcGUiOiJvcmRlcnMud3JpdGUgYWRtaW4iLCJzdWIiOiJib2IifQ.Tz2h3O-YDS7CvHm79L6AUwcezmnuvXXzeFHNtoBAd18",
# the same token
"Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLnRlc3QiLCJqdGkiOiJ0LWJvYi0xIiwicmVhbG1fYWNjZXNzIjp7InJvbGVzIjpbIm9yZGVycy1yZWFkIiwieCJdfSwic2NvcGUiOiJvcmRlcnMud3JpdGUgYWRtaW4iLCJzdWIiOiJib2IifQ.Tz2h3O-YDS7CvHm79L6AUwcezmnuvXXzeFHNtoBAd18",
# the same token (its scope names admin, but this location reads roles only)
"Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaWRwLnRlc3QiLCJqdGkiOiJ0LWJvYi0xIiwicmVhbG1fYWNjZXNzIjp7InJvbGVzIjpbIm9yZGVycy1yZWFkIiwieCJdfSwic2NvcGUiOiJvcmRlcnMud3JpdGUgYWRtaW4iLCJzdWIiOiJib2IifQ.Tz2h3O-YDS7CvHm79L6AUwcezmnuvXXzeFHNtoBAd18",
]
--- error_code eval
[200, 403, 403]
--- response_body_like eval
[qr/^id=\[bob\] user=\[bob\] groups=\[orders-read, x, orders.write, admin\]/, qr/"reason":"group_forbidden"/, qr/"reason":"group_forbidden"/]



=== TEST 14: "*" admits any identified consumer but not the anonymous one
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /open {
        gateway_route open;
        auth_api_key header=X-API-Key;
        auth_consumer on anonymous=guest;
        auth_consumer_acl on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /open", "GET /open"]
--- more_headers eval
["X-API-Key: key-beta", ""]
--- error_code eval
[200, 403]



=== TEST 15: plan quotas: rate_limit ... plan applies the consumer's plan (tiny: 2 r/m), and a consumer of another plan is limited by that one
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
    rate_limit_zone $gateway_consumer zone=consumers:1m;
--- config
    location /t {
        auth_api_key header=X-API-Key;
        rate_limit zone=consumers plan;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
["X-API-Key: key-acme", "X-API-Key: key-acme", "X-API-Key: key-acme", "X-API-Key: key-beta", "X-API-Key: key-beta", "X-API-Key: key-beta"]
--- error_code eval
[200, 200, 429, 200, 200, 200]
--- response_headers_like eval
[
'RateLimit-Policy: "consumers.minute";q=2;w=60',
'RateLimit: "consumers.minute";r=0;t=\d+',
'Retry-After: \d+',
'RateLimit-Policy: "consumers.second";q=100;w=1',
'',
'',
]



=== TEST 16: variables: $gateway_consumer, _username, _groups, $gateway_plan, $gateway_credential, $gateway_policy_version
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_api_key header=X-API-Key;
        add_header X-Who "$gateway_consumer|$gateway_consumer_username|$gateway_consumer_groups|$gateway_plan|$gateway_credential|$gateway_policy_version" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /v {
        return 200 "version=[$gateway_policy_version] consumer=[$gateway_consumer]\n";
    }
--- request eval
["GET /t", "GET /v"]
--- more_headers eval
["X-API-Key: key-acme", ""]
--- response_headers eval
["X-Who: acme|Acme Corp|partners, orders-read|tiny|api_key|t-1", ""]
--- response_body_like eval
[qr/^id=\[acme\]/, qr/^version=\[t-1\] consumer=\[\]$/]



=== TEST 17: the JSON record names the consumer, credential, plan and policy version, and the refusal reason; the key is never written
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_api_key header=X-API-Key query=apikey;
        gateway_log $TEST_NGINX_SERVER_ROOT/logs/gw.json;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- project_only: JSON log checks
--- request eval
["GET /t", "GET /t?apikey=no-such-key"]
--- more_headers eval
["X-API-Key: key-acme", ""]
--- error_code eval
[200, 401]
--- json_log_file: logs/gw.json
--- json_log_lines: 2
--- json_log_match
1 consumer == "acme"
1 policy == {"version": "t-1", "credential": "api_key", "plan": "tiny", "groups": "partners, orders-read"}
2 consumer absent
2 policy == {"version": "t-1", "refused": "key_unknown"}
--- no_json_log
key-acme
no-such-key
--- no_error_log
no-such-key



=== TEST 18: metrics: identifications and refusals by result, the version in force, consumers in it
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_api_key header=X-API-Key;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location = /metrics {
        gateway_metrics;
    }
--- project_only: metrics as data
--- request eval
["GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
["X-API-Key: key-acme", "X-API-Key: nope", "", ""]
--- error_code eval
[200, 401, 401, 200]
--- prometheus
gateway_consumer_total{result="api_key"} 1
gateway_consumer_total{result="key_unknown"} 1
gateway_consumer_total{result="credential_missing"} 1
gateway_consumer_total{result="group_forbidden"} 0
gateway_policy_info{version="t-1"} 1
gateway_policy_consumers 6
gateway_policy_loads_total{result="installed"} 1..100
gateway_policy_loads_total{result="refused"} 0
type gateway_consumer_total counter
label_values !~ key-acme



=== TEST 19: gateway_status: the policy version, its source and counts, read-only JSON
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location = /status {
        gateway_status;
    }
--- request
GET /status
--- response_headers
Content-Type: application/json
--- response_body_like eval
qr/"policy": \{.*"consumers": 6,.*"rules": 5,.*"source": "file .+\/t\/policy\/basic\.json.*"version": "t-1"/s



=== TEST 20: a rewrite to another location: that location's route and rules decide
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_api_key header=X-API-Key;
        rewrite ^ /orders last;
    }
    location /orders {
        gateway_route orders;
        auth_api_key header=X-API-Key;
        auth_consumer_acl on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "DELETE /t"]
--- more_headers eval
["X-API-Key: key-acme", "X-API-Key: key-acme"]
--- error_code eval
[200, 403]



=== TEST 21: satisfy any: when an address grants the request, the consumer layer is skipped but the client's identity headers still never reach the upstream
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        satisfy any;
        allow 127.0.0.1;
        deny all;
        auth_api_key header=X-API-Key;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- more_headers
X-Consumer-ID: admin
X-Consumer-Groups: admins
X-Anonymous-Consumer: true
X-Credential-Identifier: forged
--- response_body
id=[] user=[] groups=[] cred=[] anon=[] key=[] cookie=[] args=[]



=== TEST 22: the example document (nginx-conf/policy.json) loads: its demo key identifies acme, its disabled-by-denylist partner is refused
--- http_config
    gateway_policy file=$TEST_NGINX_EXAMPLES/policy.json;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "id=[$http_x_consumer_id] groups=[$http_x_consumer_groups]\n";
        }
    }
--- config
    location /orders {
        gateway_route orders;
        auth_api_key header=X-API-Key;
        auth_consumer_acl on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /orders", "DELETE /orders"]
--- more_headers eval
["X-API-Key: demo-key-acme", "X-API-Key: demo-key-acme"]
--- error_code eval
[200, 403]
--- response_body_like eval
[qr/^id=\[acme\] groups=\[partners, orders-read\]$/, qr/"reason":"group_forbidden"/]



=== TEST 23: SECURITY-CASES 15: a valid, unregistered token whose sub and group claim hold CR/LF never puts them on a header line: no X-Consumer-ID, the bad group dropped, $gateway_consumer withheld
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        auth_consumer on;
        auth_consumer_groups_claim groups;
        proxy_set_header X-Who $gateway_consumer;
        add_header X-Who-Out "[$gateway_consumer]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- more_headers
Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJzdWIiOiJNXHJYLUluamVjdGVkOiAxIiwiZ3JvdXBzIjpbIm9rIiwiYmFkXHJcblgtRXZpbDogMSJdLCJleHAiOjQxMDI0NDQ4MDB9.J-45v1lzt6MxvriNRnCBpIlIodj4ieJxUX1o-XeOkHs
--- response_body
id=[] user=[] groups=[ok] cred=[] anon=[] key=[] cookie=[] args=[]
--- response_headers
X-Who-Out: []
X-Injected:
X-Evil:
--- error_log
variable value withheld: it holds the control byte 0x0d
