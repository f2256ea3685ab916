# auth_jwt_oidc_discovery: the discovery document (mock provider on $TEST_NGINX_RAND_PORT_1,
# /openid-configuration) is fetched by subrequest first; its jwks_uri, as $jwt_jwks_uri, is what
# the key-request location proxy_passes to; its issuer is the required iss unless
# auth_jwt_issuer says otherwise. Key set and tokens as in t/050-jwks.t (t/gen/jwt-tokens.sh):
#   JWKS_A        rsa2048.pub.pem, kid rsa2048, alg RS256, use sig
#   TOKEN_ISS     RS256, kid rsa2048, sub alice, iss http://idp.test/realms/demo, exp 2100
#   TOKEN_EVIL    RS256, kid rsa2048, sub alice, iss https://evil.example, exp 2100
#   TOKEN_A       RS256, kid rsa2048, sub alice, no iss, exp 2100
# The log checks read the whole error.log each time (check_accum_error_log): a fetch is logged
# by the request that made it, once per block, and "one fetch of each" is checked after every
# request. A line logged by a later request is in a grep_error_log_out regex whose tail is
# optional (it is not there yet after the first requests); each request's refusal reason is
# checked in its X-Jwt-Error response header ($jwt_error).
# Blocks that use the runner's extensions (prometheus, after_request) say so with
# --- project_only, so prove skips them.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;
use Cwd qw(cwd);

$ENV{TEST_NGINX_KEYS} ||= cwd() . '/t/keys';
$ENV{TEST_NGINX_JWKS_A} = '{"keys":[{"alg":"RS256","e":"AQAB","kid":"rsa2048","kty":"RSA","n":"zXFJrDbxyu_gBm2m24toboY-xoc2C5eMARYDEOFzaoJ5H9m08RVGbdIxU0xgSoTE4HbUdWsgtliTMhzERdLal9uyK5nMSDXuLVZ9OLpXoe8arBFxldYzshS7UVv7_UVdbgNEkW5a4YMYnVNhI4BT-BCy4QGqs3R9soUwt_hRaHoffX31jdDnaBHO5v9HSJJ7VNG-Wh2L9ba70ybGuc7HAeuCN1DhHuaAZkbzJfXaHUkElbwezLj4bqL1AJHVCyM8kcyELfHoxjUz7-Wd7xbpiT0kNf_NdQAyjv9KHZZO4OydDaDr3zy43pA56lpxZGaLex8lxc21x69ZgQmhEg9MNQ","use":"sig"}]}';
# RS256, kid rsa2048, sub alice, exp 2100
$ENV{TEST_NGINX_TOKEN_A} = 'eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ';
# RS256, kid rsa2048, sub alice, iss http://idp.test/realms/demo, exp 2100
$ENV{TEST_NGINX_TOKEN_ISS} = 'eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHA6Ly9pZHAudGVzdC9yZWFsbXMvZGVtbyIsInN1YiI6ImFsaWNlIn0.ZbeeVGmJ1AOWFwXcIag726A7pUcA9rDghbA5lOOqsSkAHvmJsYv8_piacZVblseIjThs7gcNVXPQSNYXkB9NL52GRAAXm3ncDGgSTIBMiupD4HsIEHs47ndpmU8KgZ_RUGcsyFPgBE6EC5EZxlQUVwBOM0i57to-tIEB9mJBiUy-sFxa_SuAgbnxsTwj111ffYB49LyUT6ym6nTzTXXy47v8a0G0cZeFaEKy5fgRwvqkzL5fTI_DAz9G4go4se68jpGdjBrl4eCjr8bowZtZHzOx9Ix21kpMYE4a-EA8x8q3KdOVvWA9O4xHQ5-2IzPsmE4NjAwBXv_njzDZsteqBQ';
# RS256, kid rsa2048, sub alice, iss https://evil.example, exp 2100
$ENV{TEST_NGINX_TOKEN_EVIL} = 'eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vZXZpbC5leGFtcGxlIiwic3ViIjoiYWxpY2UifQ.yI5qf8dJE4tSyKsPrtmOI8VmZLvPjHo8s36XP9fSBMwgZQkoKQ87zCITCGwzTtF_808xbp52JFKar_hbVaw3aJTC4yWBp-V3_8h-kSXnJyjCn5k9FGZ4Mpmf2Q6nQtzFnfzRpn9wY7B37aszCcP7MK1NDCFUYPPJNwYp_fLB31U8Zolp0d-CpjOWLAlZfxMg1FFy-H2yFxamRhbYvIljeG3k7W7ithxsNguC-o8TVgt1jwz8_k5oEevzBLmO110p7CqXM8HnAjCSIr-xKAJlOODygE30Zokr407L8YJrznFkOE6vZ4baUlQ6r3ZQpn7GsV-KzgRYzopyjNVM5ETD0Q';

workers(2);
master_on();
log_level('info');
no_shuffle();
check_accum_error_log();
run_tests();

__DATA__

=== TEST 1: discovery: keys found through jwks_uri, the provider's issuer enforced, one fetch of each
--- project_only: actions between requests (after_request); the metrics are parsed (prometheus)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type application/json;
        access_log logs/idp.log;
        location = /upstream {
            access_log off;
            return 200 "upstream reached sub=$http_x_user jwks_uri=$http_x_jwks_uri\n";
        }
    }
--- config
    location = /_oidc {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/openid-configuration;
    }
    location = /_jwks {
        internal;
        proxy_pass $jwt_jwks_uri;
        subrequest_output_buffer_size 64k;
    }
    location /t {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_oidc_discovery /_oidc allow_http;
        auth_jwt_key_request /_jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_set_header X-Jwks-Uri $jwt_jwks_uri;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> openid-configuration
{"issuer":"http://idp.test/realms/demo","jwks_uri":"http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/certs.json","id_token_signing_alg_values_supported":["RS256"]}
>>> certs.json
$TEST_NGINX_JWKS_A
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
[
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_ISS}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_EVIL}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_ISS}",
    "X-None: 1",
]
--- error_code eval
[200, 401, 401, 200, 200]
--- response_headers eval
["!X-Jwt-Error", "X-Jwt-Error: bad_issuer", "X-Jwt-Error: bad_issuer", "!X-Jwt-Error", ""]
--- response_body_like eval
[
    qr{\Aupstream reached sub=alice jwks_uri=http://127\.0\.0\.1:\d+/certs\.json\n\z},
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr{\Aupstream reached sub=alice jwks_uri=http://127\.0\.0\.1:\d+/certs\.json\n\z},
    qr/gateway_jwks_fetch_total/,
]
--- after_request
4 sleep 0.3
--- prometheus
# the discovery document and the key set
gateway_jwks_fetch_total{result="ok"} 2
gateway_jwks_fetch_total{result="failed"} 0
gateway_auth_total{result="invalid",reason="bad_issuer"} 2
--- grep_error_log eval
qr/jwt: fetched [^"]+"[^"]+" from "[^"]+"|jwt: fetched \d+ keys from "[^"]+"|jwt refused: [^,]+/
--- grep_error_log_out eval
qr{\Ajwt: fetched jwks_uri "http://127\.0\.0\.1:\d+/certs\.json" from "/_oidc"\njwt: fetched 1 keys from "/_jwks"\n(?:jwt refused: issuer not accepted \(bad_issuer\)\n){0,2}\z}
--- no_error_log
[error]



=== TEST 2: discovery with auth_jwt_issuer: the configured issuer wins over the document's
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type application/json;
        access_log logs/idp.log;
        location = /upstream {
            access_log off;
            return 200 "upstream reached sub=$http_x_user jwks_uri=$http_x_jwks_uri\n";
        }
    }
--- config
    location = /_oidc {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/openid-configuration;
    }
    location = /_jwks {
        internal;
        proxy_pass $jwt_jwks_uri;
        subrequest_output_buffer_size 64k;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_oidc_discovery /_oidc allow_http;
        auth_jwt_key_request /_jwks;
        auth_jwt_issuer https://evil.example;
        add_header X-Jwt-Error $jwt_error always;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_set_header X-Jwks-Uri $jwt_jwks_uri;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> openid-configuration
{"issuer":"http://idp.test/realms/demo","jwks_uri":"http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/certs.json","id_token_signing_alg_values_supported":["RS256"]}
>>> certs.json
$TEST_NGINX_JWKS_A
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
[
    # the document's issuer, refused first (so its line is logged from the first check on)
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_ISS}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_EVIL}",
]
--- error_code eval
[401, 200]
--- response_headers eval
["X-Jwt-Error: bad_issuer", "!X-Jwt-Error"]
--- response_body_like eval
[qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr{\Aupstream reached sub=alice jwks_uri=http://127\.0\.0\.1:\d+/certs\.json\n\z}]
--- error_log
jwt refused: issuer not accepted (bad_issuer)



=== TEST 3: discovery document unavailable at cold start: 500, no key fetch; $jwt_jwks_uri empty
--- config
    location = /_oidc {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2/openid-configuration;
    }
    location = /_jwks {
        internal;
        proxy_pass $jwt_jwks_uri;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_oidc_discovery /_oidc allow_http;
        auth_jwt_key_request /_jwks;
        add_header X-Jwt-Error $jwt_error always;
        add_header X-Jwks-Uri "[$jwt_jwks_uri]" always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2/upstream;
    }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
[("Authorization: Bearer $ENV{TEST_NGINX_TOKEN_ISS}") x 2]
--- error_code eval
[500, 500]
--- response_headers eval
["X-Jwt-Error: key_unavailable\nX-Jwks-Uri: []", "X-Jwt-Error: key_unavailable\nX-Jwks-Uri: []"]
--- response_body_like eval
[qr/\A<html>\r\n<head><title>500 Internal Server Error<\/title>/, qr/\A<html>\r\n<head><title>500 Internal Server Error<\/title>/]
--- grep_error_log eval
qr/jwt: (?:fetching \S+|response from "[^"]+" refused: [^;]+|no usable keys, answering \d+)/
--- grep_error_log_out eval
qr{\Ajwt: fetching the
jwt: response from "/_oidc" refused: status 502
jwt: no usable keys, answering 500
(?:jwt: no usable keys, answering 500
)?\z}



=== TEST 4: a discovery document without jwks_uri is refused (counted, logged); 500 with no good one
--- project_only: the metrics are parsed (prometheus)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        default_type application/json;
        location / {
            return 200 '{"issuer":"http://idp.test/realms/demo"}';
        }
    }
--- config
    location = /_oidc {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/openid-configuration;
    }
    location = /_jwks {
        internal;
        proxy_pass $jwt_jwks_uri;
    }
    location /t {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_oidc_discovery /_oidc allow_http;
        auth_jwt_key_request /_jwks;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- request eval
["GET /t", "GET /metrics"]
--- more_headers eval
["Authorization: Bearer $ENV{TEST_NGINX_TOKEN_ISS}", "X-None: 1"]
--- error_code eval
[500, 200]
--- response_headers eval
["X-Jwt-Error: key_unavailable", ""]
--- response_body_like eval
[qr/\A<html>\r\n<head><title>500 Internal Server Error<\/title>/, qr/gateway_jwks_fetch_total/]
--- prometheus
gateway_jwks_fetch_total{result="ok"} 0
gateway_jwks_fetch_total{result="failed"} 1
--- error_log
jwt: response from "/_oidc" refused: no "jwks_uri" string



=== TEST 5: a jwks_uri that is not https is refused without allow_http: logged with the reason, counted as a failed fetch, no key fetch; auth_jwt_key_unavailable applies
# The discovery document itself comes from the configured location; its jwks_uri comes from
# the network, and an http one would let anyone on the path replace the keys.
--- project_only: actions between requests (after_request); the metrics are parsed (prometheus)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type application/json;
        access_log logs/idp.log;
        location = /upstream {
            access_log off;
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location = /_oidc {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/openid-configuration;
    }
    location = /_jwks {
        internal;
        proxy_pass $jwt_jwks_uri;
    }
    location /t {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_oidc_discovery /_oidc;
        auth_jwt_key_request /_jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location /u {
        auth_jwt "api";
        auth_jwt_oidc_discovery /_oidc;
        auth_jwt_key_request /_jwks;
        auth_jwt_key_unavailable 401;
        add_header X-Jwt-Error $jwt_error always;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> openid-configuration
{"issuer":"http://idp.test/realms/demo","jwks_uri":"http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/certs.json"}
>>> certs.json
$TEST_NGINX_JWKS_A
--- request eval
["GET /t", "GET /u", "GET /metrics"]
--- more_headers eval
["Authorization: Bearer $ENV{TEST_NGINX_TOKEN_ISS}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_ISS}", "X-None: 1"]
--- error_code eval
[500, 401, 200]
--- response_headers eval
[
    "!WWW-Authenticate\nX-Jwt-Error: key_unavailable",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: key_unavailable",
    "",
]
--- response_body_like eval
[qr/\A<html>\r\n<head><title>500 Internal Server Error<\/title>/, qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/gateway_jwks_fetch_total/]
--- after_request
2 sleep 0.3
--- prometheus
gateway_jwks_fetch_total{result="ok"} 0
gateway_jwks_fetch_total{result="failed"} 1
gateway_auth_total{result="error",reason="key_unavailable"} 2
--- grep_error_log eval
qr/jwt: (?:fetching [^"]+"[^"]+"|response from "[^"]+" refused: [^;]+|no usable keys, answering \d+)/
--- grep_error_log_out eval
qr{\Ajwt: fetching the discovery document from "/_oidc"
jwt: response from "/_oidc" refused: "jwks_uri" "http://127\.0\.0\.1:\d+/certs\.json" is not https \("allow_http" of auth_jwt_oidc_discovery accepts http\)
jwt: no usable keys, answering 500
(?:jwt: no usable keys, answering 401
)?\z}
--- no_error_log
fetching keys



=== TEST 6: with auth_jwt_key_file and discovery, the provider's issuer is required even while the discovery document is unavailable: any issuer gets 500 key_unavailable, the failed fetch logged
# The key file verifies the token's signature with the provider down; without the document the
# required issuer is not known, so no token passes (auth_jwt_issuer set explicitly does not
# need the document: TEST 8). TESTs 6 to 8 were one block; split so that each block's lines
# are logged by its first request.
--- config
    location = /_oidc {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2/openid-configuration;
    }
    location = /_jwks {
        internal;
        proxy_pass $jwt_jwks_uri;
    }
    location = /upstream {
        return 200 "upstream reached sub=$http_x_user\n";
    }
    location /t {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa2048.jwk;
        auth_jwt_oidc_discovery /_oidc;
        auth_jwt_key_request /_jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream;
    }
    location /u {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa2048.jwk;
        auth_jwt_oidc_discovery /_oidc;
        auth_jwt_key_request /_jwks;
        auth_jwt_key_unavailable 401;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream;
    }
    location /v {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa2048.jwk;
        auth_jwt_oidc_discovery /_oidc;
        auth_jwt_key_request /_jwks;
        auth_jwt_issuer http://idp.test/realms/demo;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream;
    }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
[
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_EVIL}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_ISS}",
]
--- error_code eval
[500, 500]
--- response_headers eval
["X-Jwt-Error: key_unavailable", "X-Jwt-Error: key_unavailable"]
--- response_body_like eval
[qr/\A<html>\r\n<head><title>500 Internal Server Error<\/title>/, qr/\A<html>\r\n<head><title>500 Internal Server Error<\/title>/]
--- error_log
jwt: response from "/_oidc" refused: status 502
jwt: no usable keys, answering 500 (key_unavailable)



=== TEST 7: with auth_jwt_key_file and discovery, the discovery document unavailable and auth_jwt_key_unavailable 401: any issuer gets 401 key_unavailable
--- config
    location = /_oidc {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2/openid-configuration;
    }
    location = /_jwks {
        internal;
        proxy_pass $jwt_jwks_uri;
    }
    location = /upstream {
        return 200 "upstream reached sub=$http_x_user\n";
    }
    location /t {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa2048.jwk;
        auth_jwt_oidc_discovery /_oidc;
        auth_jwt_key_request /_jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream;
    }
    location /u {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa2048.jwk;
        auth_jwt_oidc_discovery /_oidc;
        auth_jwt_key_request /_jwks;
        auth_jwt_key_unavailable 401;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream;
    }
    location /v {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa2048.jwk;
        auth_jwt_oidc_discovery /_oidc;
        auth_jwt_key_request /_jwks;
        auth_jwt_issuer http://idp.test/realms/demo;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream;
    }
--- request eval
["GET /u", "GET /u"]
--- more_headers eval
[
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_EVIL}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_ISS}",
]
--- error_code eval
[401, 401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: key_unavailable",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: key_unavailable",
]
--- response_body_like eval
[qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/]
--- error_log
jwt: response from "/_oidc" refused: status 502
jwt: no usable keys, answering 401 (key_unavailable)



=== TEST 8: with auth_jwt_key_file, discovery unavailable and auth_jwt_issuer set: the configured issuer passes without the document, another one is refused (bad_issuer)
--- config
    location = /_oidc {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2/openid-configuration;
    }
    location = /_jwks {
        internal;
        proxy_pass $jwt_jwks_uri;
    }
    location = /upstream {
        return 200 "upstream reached sub=$http_x_user\n";
    }
    location /t {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa2048.jwk;
        auth_jwt_oidc_discovery /_oidc;
        auth_jwt_key_request /_jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream;
    }
    location /u {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa2048.jwk;
        auth_jwt_oidc_discovery /_oidc;
        auth_jwt_key_request /_jwks;
        auth_jwt_key_unavailable 401;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream;
    }
    location /v {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa2048.jwk;
        auth_jwt_oidc_discovery /_oidc;
        auth_jwt_key_request /_jwks;
        auth_jwt_issuer http://idp.test/realms/demo;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream;
    }
--- request eval
["GET /v", "GET /v"]
--- more_headers eval
[
    # refused first, so its line is logged from the first check on
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_EVIL}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_ISS}",
]
--- error_code eval
[401, 200]
--- response_headers eval
["X-Jwt-Error: bad_issuer", "!X-Jwt-Error"]
--- response_body_like eval
[qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/\Aupstream reached sub=alice\n\z/]
--- error_log
jwt refused: issuer not accepted (bad_issuer)



=== TEST 9: the discovery document stale beyond auth_jwt_key_max_stale while the key set is still fresh: the issuer is not known, nothing passes
# The document says max-age=0 (fresh for a refresh interval, 1s, then usable 1s more); the key
# set is fresh for an hour. The document then disappears (404): after 2.5s its issuer is no
# longer known, while the keys still verify signatures.
--- project_only: actions between requests (after_request)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type application/json;
        access_log logs/idp.log;
        location = /openid-configuration {
            add_header Cache-Control "max-age=0";
        }
        location = /upstream {
            access_log off;
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location = /_oidc {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/openid-configuration;
    }
    location = /_jwks {
        internal;
        proxy_pass $jwt_jwks_uri;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_oidc_discovery /_oidc allow_http;
        auth_jwt_key_request /_jwks;
        auth_jwt_key_cache 1h;
        auth_jwt_key_refresh_interval 1s;
        auth_jwt_key_max_stale 1s;
        add_header X-Jwt-Error $jwt_error always;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
--- user_files
>>> openid-configuration
{"issuer":"http://idp.test/realms/demo","jwks_uri":"http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/certs.json"}
>>> certs.json
$TEST_NGINX_JWKS_A
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
[
    # another issuer first (so its line is logged from the first check on), then the document's
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_EVIL}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_ISS}",
    # the document is gone and stale beyond max_stale
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_EVIL}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_ISS}",
]
--- error_code eval
[401, 200, 500, 500]
--- response_headers eval
["X-Jwt-Error: bad_issuer", "!X-Jwt-Error", "X-Jwt-Error: key_unavailable", "X-Jwt-Error: key_unavailable"]
--- response_body_like eval
[qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/\Aupstream reached sub=alice\n\z/, qr/\A<html>\r\n<head><title>500 Internal Server Error<\/title>/, qr/\A<html>\r\n<head><title>500 Internal Server Error<\/title>/]
--- after_request
2 rename html/openid-configuration html/gone
2 sleep 2.5
--- grep_error_log eval
qr/jwt refused: [^,]+|jwt: response from "[^"]+" refused: [^;]+|jwt: no usable keys, answering \d+ \(\w+\)/
--- grep_error_log_out eval
qr{\Ajwt refused: issuer not accepted \(bad_issuer\)
(?:jwt: response from "/_oidc" refused: status 404
jwt: no usable keys, answering 500 \(key_unavailable\)
(?:jwt: no usable keys, answering 500 \(key_unavailable\)
)?)?\z}
