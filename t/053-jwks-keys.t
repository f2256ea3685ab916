# What a published key set may hold (SECURITY-CASES.md 19) and how strictly published documents
# are parsed (2): a key set fetched by auth_jwt_key_request, or found through
# auth_jwt_oidc_discovery, contributes public keys only. An HMAC secret in it (anyone who can
# read the set could sign tokens with it) and degenerate public keys (an Ed25519 point of small
# order, an EC point off the curve, RSA 1024 bits, RSA e = 1) are skipped, each with a [warn]
# line and counted in gateway_jwks_keys_refused_total{reason}; the set's other keys work, and the
# fetch counts as ok. A set left with no usable key, and a key set or discovery document with
# duplicate member names, is refused like any bad response: the last good one stays in force.
#
# The mock provider (a server on $TEST_NGINX_RAND_PORT_1) serves the html dir as JSON. Key sets
# and tokens (compact JSON, exp 2100; t/gen/jwt-tokens.sh prints how they are made):
#   JWKS_A          rsa2048.pub.pem, kid rsa2048, alg RS256, use sig
#   JWKS_HS_A       t/keys/hs256.jwk (kid hs256, an HMAC secret) and JWKS_A's key
#   JWKS_HS_ONLY    t/keys/hmac.jwks (HMAC secrets only)
#   JWKS_DEGENERATE ed-zero (Ed25519 identity point), rsa1024, rsa-e1 (e = 1), ec-off-curve,
#                   then JWKS_A's key
#   TOKEN_A         RS256, kid rsa2048, sub alice
#   TOKEN_HS        HS256, kid hs256, sub dave (MACed with the published secret)
#   TOKEN_ED_FORGED EdDSA, kid ed-zero, sub mallory, signature R = identity, S = 0: verifies
#                   under the identity point without any private key
#   TOKEN_ISS       RS256, kid rsa2048, sub alice, iss http://idp.test/realms/demo
#   TOKEN_EVIL      RS256, kid rsa2048, sub alice, iss https://evil.example
# The log checks read the whole error.log each time (check_accum_error_log): a fetch and its
# warnings are logged by the request that made it, once per block, and checked after every
# request. Where a later request logs a line (a refetch refused), the grep_error_log_out regex
# makes that tail optional (it is not there yet after the first requests); the metrics count
# it, and the refusal reason of each request is in its X-Jwt-Error response header.
# Project runner only: every block uses the runner's extensions (after_request, prometheus) and
# says so with --- project_only, so prove skips it.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;
use Cwd qw(cwd);

$ENV{TEST_NGINX_KEYS} ||= cwd() . '/t/keys';
# key set: rsa2048.pub.pem, kid rsa2048, alg RS256, use sig
$ENV{TEST_NGINX_JWKS_A} = '{"keys":[{"alg":"RS256","e":"AQAB","kid":"rsa2048","kty":"RSA","n":"zXFJrDbxyu_gBm2m24toboY-xoc2C5eMARYDEOFzaoJ5H9m08RVGbdIxU0xgSoTE4HbUdWsgtliTMhzERdLal9uyK5nMSDXuLVZ9OLpXoe8arBFxldYzshS7UVv7_UVdbgNEkW5a4YMYnVNhI4BT-BCy4QGqs3R9soUwt_hRaHoffX31jdDnaBHO5v9HSJJ7VNG-Wh2L9ba70ybGuc7HAeuCN1DhHuaAZkbzJfXaHUkElbwezLj4bqL1AJHVCyM8kcyELfHoxjUz7-Wd7xbpiT0kNf_NdQAyjv9KHZZO4OydDaDr3zy43pA56lpxZGaLex8lxc21x69ZgQmhEg9MNQ","use":"sig"}]}';
# key set: hs256.jwk (a published HMAC secret) and JWKS_A's key
$ENV{TEST_NGINX_JWKS_HS_A} = '{"keys":[{"alg":"HS256","k":"-XA2YL0lgSDxnAg3NMc2-c-CR14FHQq5WDtzPn4FEEU","kid":"hs256","kty":"oct"},{"alg":"RS256","e":"AQAB","kid":"rsa2048","kty":"RSA","n":"zXFJrDbxyu_gBm2m24toboY-xoc2C5eMARYDEOFzaoJ5H9m08RVGbdIxU0xgSoTE4HbUdWsgtliTMhzERdLal9uyK5nMSDXuLVZ9OLpXoe8arBFxldYzshS7UVv7_UVdbgNEkW5a4YMYnVNhI4BT-BCy4QGqs3R9soUwt_hRaHoffX31jdDnaBHO5v9HSJJ7VNG-Wh2L9ba70ybGuc7HAeuCN1DhHuaAZkbzJfXaHUkElbwezLj4bqL1AJHVCyM8kcyELfHoxjUz7-Wd7xbpiT0kNf_NdQAyjv9KHZZO4OydDaDr3zy43pA56lpxZGaLex8lxc21x69ZgQmhEg9MNQ","use":"sig"}]}';
# key set: hmac.jwks, compact (HMAC secrets only)
$ENV{TEST_NGINX_JWKS_HS_ONLY} = '{"keys":[{"alg":"HS256","k":"-XA2YL0lgSDxnAg3NMc2-c-CR14FHQq5WDtzPn4FEEU","kid":"hs256","kty":"oct"},{"alg":"HS384","k":"BmDwSx93K1j04vriuzNSchYj_IWYC1E5n8By8gMbKDy52N3irkaOgghaGKA88Ybf","kid":"hs384","kty":"oct"},{"alg":"HS512","k":"jcedk5bvkEqUymA6jKcq2Ahm5ImbkFP1pedACj3D_mcfVdNvT1E-ky_ULNVl1cEnn3L7Ck3Sbsdk8xeMQAICvw","kid":"hs512","kty":"oct"}]}';
# key set: ed-zero (x = the identity point), rsa1024.jwk, rsa-e1 (rsa2048's n, e = 1), ec-off-curve (ec256, y's last character E), then JWKS_A's key
$ENV{TEST_NGINX_JWKS_DEGENERATE} = '{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"ed-zero","x":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},{"kty":"RSA","kid":"rsa1024","n":"2a40Wp5cGvMEMl7pyA8QAaOvlQ93fnCB5uHCCLEK3yESv3GrpR1EH7KsQYRcs0yHl20-jraKRPlGUI93cOQYz4kyj9n7-Dx8s_tCXFzTIPbFc79Of3CZoIAB0TLKK3WTOQVafhwHfCKEkdhaIdfBik3fJWS4fPyqNduBnWPXti8","e":"AQAB"},{"kty":"RSA","kid":"rsa-e1","n":"zXFJrDbxyu_gBm2m24toboY-xoc2C5eMARYDEOFzaoJ5H9m08RVGbdIxU0xgSoTE4HbUdWsgtliTMhzERdLal9uyK5nMSDXuLVZ9OLpXoe8arBFxldYzshS7UVv7_UVdbgNEkW5a4YMYnVNhI4BT-BCy4QGqs3R9soUwt_hRaHoffX31jdDnaBHO5v9HSJJ7VNG-Wh2L9ba70ybGuc7HAeuCN1DhHuaAZkbzJfXaHUkElbwezLj4bqL1AJHVCyM8kcyELfHoxjUz7-Wd7xbpiT0kNf_NdQAyjv9KHZZO4OydDaDr3zy43pA56lpxZGaLex8lxc21x69ZgQmhEg9MNQ","e":"AQ"},{"kty":"EC","crv":"P-256","kid":"ec-off-curve","x":"VIZuMnznh88uFhfgGryQVASuO-uLBkLXdKSqlORRcUQ","y":"-OytFH5TpbWEYtNsmZRwaKpsatGANu8nyl3i3ON6kiE"},{"alg":"RS256","e":"AQAB","kid":"rsa2048","kty":"RSA","n":"zXFJrDbxyu_gBm2m24toboY-xoc2C5eMARYDEOFzaoJ5H9m08RVGbdIxU0xgSoTE4HbUdWsgtliTMhzERdLal9uyK5nMSDXuLVZ9OLpXoe8arBFxldYzshS7UVv7_UVdbgNEkW5a4YMYnVNhI4BT-BCy4QGqs3R9soUwt_hRaHoffX31jdDnaBHO5v9HSJJ7VNG-Wh2L9ba70ybGuc7HAeuCN1DhHuaAZkbzJfXaHUkElbwezLj4bqL1AJHVCyM8kcyELfHoxjUz7-Wd7xbpiT0kNf_NdQAyjv9KHZZO4OydDaDr3zy43pA56lpxZGaLex8lxc21x69ZgQmhEg9MNQ","use":"sig"}]}';
# RS256, kid rsa2048, sub alice, exp 2100
$ENV{TEST_NGINX_TOKEN_A} = 'eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ';
# HS256, kid hs256, sub dave, exp 2100
$ENV{TEST_NGINX_TOKEN_HS} = 'eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImRhdmUifQ.6g4qcU0sP__rbngq_zHtOHYaFZQ1XHYtKTiX-DpB8FE';
# EdDSA, kid ed-zero, sub mallory, exp 2100, signature R = identity, S = 0 (no key)
$ENV{TEST_NGINX_TOKEN_ED_FORGED} = 'eyJhbGciOiJFZERTQSIsImtpZCI6ImVkLXplcm8ifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6Im1hbGxvcnkifQ.AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
# RS256, kid rsa2048, sub alice, iss http://idp.test/realms/demo, exp 2100
$ENV{TEST_NGINX_TOKEN_ISS} = 'eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHA6Ly9pZHAudGVzdC9yZWFsbXMvZGVtbyIsInN1YiI6ImFsaWNlIn0.ZbeeVGmJ1AOWFwXcIag726A7pUcA9rDghbA5lOOqsSkAHvmJsYv8_piacZVblseIjThs7gcNVXPQSNYXkB9NL52GRAAXm3ncDGgSTIBMiupD4HsIEHs47ndpmU8KgZ_RUGcsyFPgBE6EC5EZxlQUVwBOM0i57to-tIEB9mJBiUy-sFxa_SuAgbnxsTwj111ffYB49LyUT6ym6nTzTXXy47v8a0G0cZeFaEKy5fgRwvqkzL5fTI_DAz9G4go4se68jpGdjBrl4eCjr8bowZtZHzOx9Ix21kpMYE4a-EA8x8q3KdOVvWA9O4xHQ5-2IzPsmE4NjAwBXv_njzDZsteqBQ';
# RS256, kid rsa2048, sub alice, iss https://evil.example, exp 2100
$ENV{TEST_NGINX_TOKEN_EVIL} = 'eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vZXZpbC5leGFtcGxlIiwic3ViIjoiYWxpY2UifQ.yI5qf8dJE4tSyKsPrtmOI8VmZLvPjHo8s36XP9fSBMwgZQkoKQ87zCITCGwzTtF_808xbp52JFKar_hbVaw3aJTC4yWBp-V3_8h-kSXnJyjCn5k9FGZ4Mpmf2Q6nQtzFnfzRpn9wY7B37aszCcP7MK1NDCFUYPPJNwYp_fLB31U8Zolp0d-CpjOWLAlZfxMg1FFy-H2yFxamRhbYvIljeG3k7W7ithxsNguC-o8TVgt1jwz8_k5oEevzBLmO110p7CqXM8HnAjCSIr-xKAJlOODygE30Zokr407L8YJrznFkOE6vZ4baUlQ6r3ZQpn7GsV-KzgRYzopyjNVM5ETD0Q';

workers(1);
master_on();
log_level('info');
no_shuffle();
check_accum_error_log();
run_tests();

__DATA__

=== TEST 1: 19. an HMAC secret in a published set is skipped (logged, counted): a token MACed with it is refused, the set's RSA key works, the fetch counts as ok
--- project_only: actions between requests (after_request); the metrics are parsed (prometheus)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type application/json;
        location = /upstream {
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/jwks.json;
        subrequest_output_buffer_size 64k;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        add_header X-Jwt-Error $jwt_error always;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_HS_A
--- request eval
["GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
["Authorization: Bearer $ENV{TEST_NGINX_TOKEN_HS}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "X-None: 1"]
--- error_code eval
[401, 200, 200]
--- response_headers eval
["X-Jwt-Error: alg_not_allowed", "!X-Jwt-Error", ""]
--- response_body_like eval
[qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/\Aupstream reached sub=alice\n\z/, qr/gateway_jwks_keys_refused_total/]
--- after_request
2 sleep 0.3
--- prometheus
type gateway_jwks_keys_refused_total counter
gateway_jwks_fetch_total{result="ok"} 1
gateway_jwks_fetch_total{result="failed"} 0
gateway_jwks_keys_refused_total{reason="symmetric"} 1
gateway_jwks_keys_refused_total{reason="unusable"} 0
gateway_auth_total{result="valid",reason=""} 1
--- grep_error_log eval
qr/\[warn\] .*?jwt: key set from .*? skipped|jwt: fetched \d+ keys|jwt refused: .*?\(\w+\)/
--- grep_error_log_out eval
qr/\A\[warn\] .*?jwt: key set from "\/_jwks": key #1 \(kid "hs256"\): symmetric key \(kty "oct"\) refused: a published key set may hold public keys only \(anyone who can read it could sign tokens with this one\); that key is skipped
jwt: fetched 1 keys
jwt refused: algorithm not allowed: HS256 is not in the allowed list \(alg_not_allowed\)
\z/
--- no_error_log
-XA2YL0lgSDxnAg3NMc2



=== TEST 2: 19. a published set of HMAC secrets only: no usable key, the fetch is refused (each secret logged and counted); 500 at cold start
--- project_only: actions between requests (after_request); the metrics are parsed (prometheus)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type application/json;
        location = /upstream {
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/jwks.json;
        subrequest_output_buffer_size 64k;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        add_header X-Jwt-Error $jwt_error always;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_HS_ONLY
--- request eval
["GET /t", "GET /metrics"]
--- more_headers eval
["Authorization: Bearer $ENV{TEST_NGINX_TOKEN_HS}", "X-None: 1"]
--- error_code eval
[500, 200]
--- response_headers eval
["X-Jwt-Error: key_unavailable", ""]
--- response_body_like eval
[qr/\A<html>\r\n<head><title>500 Internal Server Error<\/title>/, qr/gateway_jwks_keys_refused_total/]
--- after_request
1 sleep 0.3
--- prometheus
gateway_jwks_fetch_total{result="ok"} 0
gateway_jwks_fetch_total{result="failed"} 1
gateway_jwks_keys_refused_total{reason="symmetric"} 3
gateway_jwks_keys_refused_total{reason="unusable"} 0
--- grep_error_log eval
qr/key #\d \(kid "\w+"\): symmetric key|jwt: response from "[^"]+" refused: [^;]+/
--- grep_error_log_out
key #1 (kid "hs256"): symmetric key
key #2 (kid "hs384"): symmetric key
key #3 (kid "hs512"): symmetric key
jwt: response from "/_jwks" refused: no usable signing key
--- no_error_log
upstream reached



=== TEST 3: 19. degenerate public keys in a published set (Ed25519 identity point, RSA 1024 bits, RSA e = 1, an EC point off the curve) are skipped, each logged and counted; a token forged for the identity point is refused, the good key works
--- project_only: actions between requests (after_request); the metrics are parsed (prometheus)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type application/json;
        location = /upstream {
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/jwks.json;
        subrequest_output_buffer_size 64k;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        add_header X-Jwt-Error $jwt_error always;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_DEGENERATE
--- request eval
["GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
["Authorization: Bearer $ENV{TEST_NGINX_TOKEN_ED_FORGED}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "X-None: 1"]
--- error_code eval
[401, 200, 200]
--- response_headers eval
["X-Jwt-Error: alg_not_allowed", "!X-Jwt-Error", ""]
--- response_body_like eval
[qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/\Aupstream reached sub=alice\n\z/, qr/gateway_jwks_keys_refused_total/]
--- after_request
2 sleep 0.3
--- prometheus
gateway_jwks_fetch_total{result="ok"} 1
gateway_jwks_fetch_total{result="failed"} 0
gateway_jwks_keys_refused_total{reason="symmetric"} 0
gateway_jwks_keys_refused_total{reason="unusable"} 4
--- grep_error_log eval
qr/jwt: key set from "[^"]+": .*?; that key is skipped|jwt: fetched \d+ keys|jwt refused: .*?\(\w+\)/
--- grep_error_log_out
jwt: key set from "/_jwks": key #1 (kid "ed-zero"): Ed25519 public key is a point of small order (it would verify forged signatures); that key is skipped
jwt: key set from "/_jwks": key #2 (kid "rsa1024"): RSA key is 1024 bits, at least 2048 required; that key is skipped
jwt: key set from "/_jwks": key #3 (kid "rsa-e1"): RSA public exponent must be odd and between 3 and 2^33-1; that key is skipped
jwt: key set from "/_jwks": key #4 (kid "ec-off-curve"): EC public key is not a valid point on its curve; that key is skipped
jwt: fetched 1 keys
jwt refused: algorithm not allowed: EdDSA is not in the allowed list (alg_not_allowed)
--- no_error_log
sub=mallory



=== TEST 4: 2. a discovery document with two "jwks_uri" members is refused (not "the last one wins"): 500 at cold start, logged and counted
--- project_only: actions between requests (after_request); the metrics are parsed (prometheus)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type application/json;
        location = /upstream {
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
        subrequest_output_buffer_size 64k;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_oidc_discovery /_oidc allow_http;
        auth_jwt_key_request /_jwks;
        add_header X-Jwt-Error $jwt_error always;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> openid-configuration
{"issuer":"http://idp.test/realms/demo","jwks_uri":"http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/nothing.json","jwks_uri":"http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/certs.json"}
>>> certs.json
$TEST_NGINX_JWKS_A
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
--- after_request
1 sleep 0.3
--- prometheus
gateway_jwks_fetch_total{result="ok"} 0
gateway_jwks_fetch_total{result="failed"} 1
--- grep_error_log eval
qr/jwt: response from "[^"]+" refused: [^;]+/
--- grep_error_log_out eval
qr/\Ajwt: response from "\/_oidc" refused: duplicate member name at line 1 column \d+\n\z/
--- no_error_log
upstream reached



=== TEST 5: 2. the provider's discovery document turns to one with two "issuer" members (the second another issuer): refused, the last good document stays in force, its issuer enforced
--- project_only: actions between requests (after_request); the metrics are parsed (prometheus)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type application/json;
        location = /upstream {
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
        subrequest_output_buffer_size 64k;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_oidc_discovery /_oidc allow_http;
        auth_jwt_key_request /_jwks;
        auth_jwt_key_cache 1s;
        auth_jwt_key_refresh_interval 1s;
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
>>> dup-issuer.json
{"issuer":"http://idp.test/realms/demo","jwks_uri":"http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/certs.json","issuer":"https://evil.example"}
>>> certs.json
$TEST_NGINX_JWKS_A
--- request eval
["GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
["Authorization: Bearer $ENV{TEST_NGINX_TOKEN_ISS}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_ISS}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_EVIL}", "X-None: 1"]
--- error_code eval
[200, 200, 401, 200]
--- response_headers eval
["!X-Jwt-Error", "!X-Jwt-Error", "X-Jwt-Error: bad_issuer", ""]
--- response_body_like eval
[qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/gateway_jwks_fetch_total/]
--- after_request
1 rename html/dup-issuer.json html/openid-configuration
1 sleep 1.1
3 sleep 0.3
--- prometheus
# the discovery document and the key set, then each once more: the document refused
gateway_jwks_fetch_total{result="ok"} 3
gateway_jwks_fetch_total{result="failed"} 1
gateway_auth_total{result="invalid",reason="bad_issuer"} 1
--- grep_error_log eval
qr/jwt: response from "[^"]+" refused: [^;]+|jwt refused: .*?\(\w+\)/
--- grep_error_log_out eval
qr/\A(?:jwt: response from "\/_oidc" refused: duplicate member name at line 1 column \d+
(?:jwt refused: issuer not accepted \(bad_issuer\)
)?)?\z/



=== TEST 6: 2. the provider's key set turns to one with two "keys" members, then to one whose key has two "kid" members: each refused, the last good set stays in force
--- project_only: actions between requests (after_request); the metrics are parsed (prometheus)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type application/json;
        location = /upstream {
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/jwks.json;
        subrequest_output_buffer_size 64k;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        auth_jwt_key_cache 1s;
        auth_jwt_key_refresh_interval 1s;
        add_header X-Jwt-Error $jwt_error always;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
>>> dup-keys.json
{"keys":[],"keys":[{"kty":"OKP","crv":"Ed25519","kid":"other","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}
>>> dup-kid.json
{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"rsa2048","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"other"}]}
--- request eval
["GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
["Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "X-None: 1"]
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
["!X-Jwt-Error", "!X-Jwt-Error", "!X-Jwt-Error", ""]
--- response_body_like eval
[qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/gateway_jwks_fetch_total/]
--- after_request
1 rename html/dup-keys.json html/jwks.json
1 sleep 1.1
2 rename html/dup-kid.json html/jwks.json
2 sleep 1.1
3 sleep 0.3
--- prometheus
gateway_jwks_fetch_total{result="ok"} 1
gateway_jwks_fetch_total{result="failed"} 2
--- grep_error_log eval
qr/jwt: response from "[^"]+" refused: [^;]+/
--- grep_error_log_out eval
qr/\A(?:jwt: response from "\/_jwks" refused: duplicate member name at line 1 column \d+
(?:jwt: response from "\/_jwks" refused: duplicate member name at line 1 column \d+
)?)?\z/
