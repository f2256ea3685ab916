# The cases of SECURITY-CASES.md 1-12 (and 14: the token never reaches the error log) against
# auth_jwt in real nginx. Unless a block says otherwise, a refused token gets 401 with
# `WWW-Authenticate: Bearer realm="api", error="invalid_token"` and `X-Jwt-Error: <code>` (the
# test configuration adds `$jwt_error` as a header, so each request's reason is checked), the
# request never reaches the upstream (the body is nginx's own 401 page from its first byte,
# not the upstream's "upstream reached ..."), error.log says why at info level
# ("gateway: jwt refused: <reason> (<code>)"), and no distinctive part of the token (the end of
# its signature) appears in error.log. The log is checked after each request against the lines
# that request logged (Test::Nginx's semantics), so the requests of a block share one reason;
# accepted tokens ("control" blocks) are in blocks of their own.
#
# Tokens are pasted literally, each preceded by how it was made; t/gen/jwt-tokens.sh
# regenerates them all. Case 13 (remote key sets) is not implemented by the module yet.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;
use Cwd qw(cwd);

$ENV{TEST_NGINX_KEYS} ||= cwd() . '/t/keys';

log_level('info');
no_shuffle();
run_tests();

__DATA__

=== TEST 1: 1. alg none, None, NONE, nOnE with an empty signature; none with a signature segment; NONE with a kid and a real RS256 signature: refused where HMAC and RSA/EC keys are configured
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
    "GET /t",
    "GET /t",
    "GET /t",
    "GET /t",
    "GET /t",
]
--- more_headers eval
[
    # unsigned, header alg none, sub admin, exp 2100, empty signature
    "Authorization: Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.",
    # unsigned, header alg None, sub admin, exp 2100, empty signature
    "Authorization: Bearer eyJhbGciOiJOb25lIiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.",
    # unsigned, header alg NONE, sub admin, exp 2100, empty signature
    "Authorization: Bearer eyJhbGciOiJOT05FIiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.",
    # unsigned, header alg nOnE, sub admin, exp 2100, empty signature
    "Authorization: Bearer eyJhbGciOiJuT25FIiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.",
    # unsigned, header alg none, sub admin, exp 2100, signature segment c2lnbmF0dXJl
    "Authorization: Bearer eyJhbGciOiJub25lIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.c2lnbmF0dXJl",
    # unsigned, header alg NONE kid rsa2048, sub admin, exp 2100, signature = an RS256 signature
    "Authorization: Bearer eyJhbGciOiJOT05FIiwia2lkIjoicnNhMjA0OCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ",
]
--- error_code eval
[401, 401, 401, 401, 401, 401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
[
    "gateway: jwt refused: algorithm not allowed: unsigned token (alg none) (alg_not_allowed)",
]
--- no_error_log eval
["[error]", "1YiI6ImFkbWluIn0", "eMpRMCVdrK1KQZfQ"]



=== TEST 2: 1. alg none is refused whatever else the location relaxes (algorithms list, leeway, no exp required, a require rule that holds for anyone)
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        auth_jwt_algorithms HS256 RS256;
        auth_jwt_leeway 100y;
        auth_jwt_require_exp off;
        auth_jwt_require "1";
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
    "GET /t",
]
--- more_headers eval
[
    # unsigned, header alg none, sub admin, exp 2100, empty signature
    "Authorization: Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.",
    # unsigned, header alg NONE kid rsa2048, sub admin, exp 2100, signature = an RS256 signature
    "Authorization: Bearer eyJhbGciOiJOT05FIiwia2lkIjoicnNhMjA0OCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ",
]
--- error_code eval
[401, 401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
[
    "gateway: jwt refused: algorithm not allowed: unsigned token (alg none) (alg_not_allowed)",
]
--- no_error_log eval
["[error]", "1YiI6ImFkbWluIn0", "eMpRMCVdrK1KQZfQ"]



=== TEST 3: 2. key confusion: HS256 with the RSA/EC public key (PEM text, DER, JWK JSON) as HMAC secret, sent to a location with only asymmetric keys (JWKS)
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
    "GET /t",
    "GET /t",
    "GET /t",
    "GET /t",
]
--- more_headers eval
[
    # HS256, kid rsa2048, sub admin, exp 2100, secret = text of rsa2048.pub.pem
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.A0ZBf8NWyMitEPv2TRRHaFZ1ZXXzV-G83H8VE_VW4LU",
    # HS256, no kid, sub admin, exp 2100, secret = text of rsa2048.pub.pem
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.H5sUZWD_G3IBpb0nA9KIJJs-akVInYwtPCKhpGzt0rg",
    # HS256, no kid, sub admin, exp 2100, secret = DER (SPKI) of rsa2048.pub.pem
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.wQmrBZX-fQgoWuP82N6den92wP_M8nJ0J9vymBG0Zkw",
    # HS256, kid rsa2048, sub admin, exp 2100, secret = bytes of rsa2048.jwk
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.C_G75t5KNyZ3zxqcEF7f73N6IIgYpKdx2m92Y750HB8",
    # HS256, kid ec256, sub admin, exp 2100, secret = text of ec256.pub.pem
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImVjMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.CTy6usRQeQNaKlDF7_10MljHIfYMhHBQt-T2cjJl65Y",
]
--- error_code eval
[401, 401, 401, 401, 401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
[
    "gateway: jwt refused: algorithm not allowed: HS256 is not in the allowed list (alg_not_allowed)",
]
--- no_error_log eval
["[error]", "zV-G83H8VE_VW4LU", "InYwtPCKhpGzt0rg", "M8nJ0J9vymBG0Zkw", "YpKdx2m92Y750HB8", "MhHBQt-T2cjJl65Y"]



=== TEST 4: 2. key confusion against a PEM public key file (rsa2048.pub.pem, no kid)
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa2048.pub.pem;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
    "GET /t",
    "GET /t",
]
--- more_headers eval
[
    # HS256, no kid, sub admin, exp 2100, secret = text of rsa2048.pub.pem
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.H5sUZWD_G3IBpb0nA9KIJJs-akVInYwtPCKhpGzt0rg",
    # HS256, no kid, sub admin, exp 2100, secret = DER (SPKI) of rsa2048.pub.pem
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.wQmrBZX-fQgoWuP82N6den92wP_M8nJ0J9vymBG0Zkw",
    # HS256, kid rsa2048, sub admin, exp 2100, secret = text of rsa2048.pub.pem
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.A0ZBf8NWyMitEPv2TRRHaFZ1ZXXzV-G83H8VE_VW4LU",
]
--- error_code eval
[401, 401, 401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
[
    "gateway: jwt refused: algorithm not allowed: HS256 is not in the allowed list (alg_not_allowed)",
]
--- no_error_log eval
["[error]", "InYwtPCKhpGzt0rg", "M8nJ0J9vymBG0Zkw", "zV-G83H8VE_VW4LU"]



=== TEST 5: 2. key confusion where HMAC keys are configured too: HS256 tokens with kid rsa2048 (MAC keyed with the RSA public key as PEM text or JWK bytes): the RSA key named by kid does not do HS256
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
    "GET /t",
]
--- more_headers eval
[
    # HS256, kid rsa2048, sub admin, exp 2100, secret = text of rsa2048.pub.pem
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.A0ZBf8NWyMitEPv2TRRHaFZ1ZXXzV-G83H8VE_VW4LU",
    # HS256, kid rsa2048, sub admin, exp 2100, secret = bytes of rsa2048.jwk
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.C_G75t5KNyZ3zxqcEF7f73N6IIgYpKdx2m92Y750HB8",
]
--- error_code eval
[401, 401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: algorithm not allowed: the key named by kid does not support the token's alg (alg_not_allowed)"
--- no_error_log eval
["[error]", "zV-G83H8VE_VW4LU", "YpKdx2m92Y750HB8"]



=== TEST 6: 2. key confusion where HMAC keys are configured too: HS256 tokens without kid, MAC keyed with the RSA public key (PEM text, DER): the HMAC keys do not verify them
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
    "GET /t",
]
--- more_headers eval
[
    # HS256, no kid, sub admin, exp 2100, secret = text of rsa2048.pub.pem
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.H5sUZWD_G3IBpb0nA9KIJJs-akVInYwtPCKhpGzt0rg",
    # HS256, no kid, sub admin, exp 2100, secret = DER (SPKI) of rsa2048.pub.pem
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.wQmrBZX-fQgoWuP82N6den92wP_M8nJ0J9vymBG0Zkw",
]
--- error_code eval
[401, 401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_signature",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_signature",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: signature verification failed (bad_signature)"
--- no_error_log eval
["[error]", "InYwtPCKhpGzt0rg", "M8nJ0J9vymBG0Zkw"]



=== TEST 7: 2. key confusion, control: with the same keys, a genuine HS256 token (kid hs256) is accepted
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # HS256, kid hs256, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.D1F21ihkb2gaMKPqZnecJEV5uqPyzUUKQPf1Qk4yS8Y",
]
--- error_code eval
[200]
--- response_headers eval
[
    "!WWW-Authenticate\n!X-Jwt-Error",
]
--- response_body_like eval
[
    qr/\Aupstream reached sub=alice\n\z/,
]
--- no_error_log eval
["[error]", "yzUUKQPf1Qk4yS8Y", "jwt refused"]



=== TEST 8: 3. auth_jwt_algorithms RS256 with RSA/EC keys only, control: an RS256 token is accepted
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_algorithms RS256;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ",
]
--- error_code eval
[200]
--- response_headers eval
[
    "!WWW-Authenticate\n!X-Jwt-Error",
]
--- response_body_like eval
[
    qr/\Aupstream reached sub=alice\n\z/,
]
--- no_error_log eval
["[error]", "eMpRMCVdrK1KQZfQ", "jwt refused"]



=== TEST 9: 3. an algorithm outside auth_jwt_algorithms: RS512 where only RS256 is allowed
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_algorithms RS256;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS512, kid rsa2048, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzUxMiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.hAzBCHSPasphF2hlOAMd-J-IKgjBRzaoKjShaGMuuk5AJd8tZ6sQGHmautA51CuS0JvVzH9_ui7ISF5ovIXq9zxkb_WSVOqdiDBbuQZ2IC9evlcdf9w-Igj9AUF-VKtHJs7CugTvkm15Gtv3kWrw-M_ZXptPQklo_0A1b5KY6hYzsNB-9t4uBezB0Bou1Rkk1qJMqQJvSUm0MZ2a6BBEhs5UuI3qEH05P5RyTmEhf5RqhbYql3u9FForfgV6pdUc7iP1DTuoOmgvqn4IaKbBfQQgAbtkgarTSO8YgyK9UWWIioUdJZ0YlmK6pfnweUdTaJO7hfLdN6QXkzy1lQ5hrw",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: algorithm not allowed: RS512 is not in the allowed list (alg_not_allowed)"
--- no_error_log eval
["[error]", "LdN6QXkzy1lQ5hrw"]



=== TEST 10: 3. an algorithm outside auth_jwt_algorithms: PS256 (same RSA key) where only RS256 is allowed
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_algorithms RS256;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # PS256, kid rsa2048, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJQUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.GkRJgVcfLHIGEsErQ1HXxo_6rCP6TsaE3TxHBSkJuTFhM6I5upK2IeR-XUlRL-MpZsDQB0Oju0OlxZzI4j9r2coSr3PeYvWirvreGIcTiqWTpJ4juDr21c0ZgAGALS751vdmG1Ni-s4JD30_KIw0WQRiYULr9YGAz7Q3-BiG4KT4Vtx2PXB-15gnu9rsrHEn-_wf8rIUucw9rkYbrwoG0dNBoVriS2xFWmQJiaVHbLTQim8NiUsouUIVeqTdX9VjSFBoV0S8eKQV622aCogRzrHnLNsJ7SNCAYGpja_Fka_PJ8J1q_L8zUQaBqkjMY2iUweoIpw0J6cPJVimos7RmQ",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: algorithm not allowed: PS256 is not in the allowed list (alg_not_allowed)"
--- no_error_log eval
["[error]", "w0J6cPJVimos7RmQ"]



=== TEST 11: 3. an algorithm outside auth_jwt_algorithms: HS256 where only RS256 is allowed and only asymmetric keys are configured
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_algorithms RS256;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # HS256, kid hs256, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.D1F21ihkb2gaMKPqZnecJEV5uqPyzUUKQPf1Qk4yS8Y",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: algorithm not allowed: HS256 is not in the allowed list (alg_not_allowed)"
--- no_error_log eval
["[error]", "yzUUKQPf1Qk4yS8Y"]



=== TEST 12: 4. kid: unknown, path-like, quotes and SQL, 4 KB long: only ever a lookup key
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
    "GET /t",
    "GET /t",
    "GET /t",
]
--- more_headers eval
[
    # RS256 (rsa2048), kid nope, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vcGUiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.d5MMuBFM-ROf9LiFXNTbBi-YlY3w2wLAmNEs2qbds4ip-T029Pv1KBwjD13NNu-a_pVI_ukT8kVzzSjgCie_LS1Vlw2xR6uyhqKwyJ1tV7j9VyiSCGYzBaHO2qKVWvyoR_sggilOnsBzqJVomRSCJEs4Q9a5apRKtGHzmebyIkTkH1-aOGZj13XiMi252sLQ20KyEji19Du7DpJFrdnVhKpEO6HgmPgBxH4Bui3jfqTvERqnFNV32uE59Y4O3m559KxrUXwlDF4KWY9uYWFUJq9vLcyusjTBzBUXiOD1oDm5aRcUZH-ejfcppmYNEl5qzyuwzgxF76qgC29rXm2oaA",
    # RS256 (rsa2048), kid ../../dev/null, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6Ii4uLy4uL2Rldi9udWxsIiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.b1cVh53xwS2ZRM49Hu7VODuZeLZ-YeOPwC29_kk-rAg0ojUf4Ai81hD1pn6bT1CN15tyIYg2xm0DpLLdz1zq0Ea7sccsd97DBRvrY-981BXZY6lhbqvgbKNrsbncPMQYFv4CIi-MbPEJnxmey-9sNaH2vM8-ybFLYRWIvHRo3TpOMdtCFZdZGGa57AGMJZJwp6Xqb95RIQUanUmRsvkrW2zkC_cdUrX78zv6S_6ptjsYa--SD51NFn7qrkIWkIpcIELrt4eJE67aQ0OJH8Z-ie4BrSqRr2tdYfohgBWBOhC_0f0N09P8OxmcFgfto22Ww13t__Bc91g3dnX9Rg7uXw",
    # RS256 (rsa2048), kid "' OR 1=1 --, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IlwiJyBPUiAxPTEgLS0iLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.BhL4aMDmPfrrxhMISLnHWqQATtGNfGQfMEChQcbWEWEaWGh8BybB1XkkYeabfgMcDjKdmebNCUDcqRqxlyRSquulEMEeetzDqQiqUvyHzD9B5S_35m3-hIrUYj-tBDcpNuIIy_k0NxT3gHpqLyjAi9DdiPMf3drgK1DDuXnr4g4adb4mCO1VP2zOwotCSrFM1aJkcNyFWmbsKqhZSTpZaIJhzJT6meRDOTS_XO7mtO-b8ofCKaxsHNVkgAWUz5weAmsiJsOZuF6i4ViHWcNd_py8c4xkWVoCHLMMpsErBGZnfncgigGhB_BXW4rOGEAiw_GFf_id24z1F-NspyJGHA",
    # RS256 (rsa2048), kid = 4096 x 'k', sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6Imtra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2siLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.wNVmDi43XJ3JJlg7ttFxGIhR_uQSBXWI4ieDDOGuret4PSvvVSQW7xXtpgpCaLEauxwVyc0FrcaOe_MMIlsa4somfcdWEy0L0Ukp_d8ejD4IbqST8I-a9YDNmSZrTqdjCKzMdgsWtpuxIEKigjxqyOrO5ygvcB75pQnZm8oLPdNPS1ubU7kwrrp1XrYcK6vlI_QBeHAwstSptZRYTbnBb_pG1nXmVBH5W5KAGUh60tt3vCo7aJmHU7B8nFtFKM7afs7Z0uBkwqVkOwmRVooUP3-Ja6jeC-VCV2EdZXBAJDKKdnf5c6CFj2DxzouOu2WglvXtZWKxMzhUsYjF89NJ9Q",
]
--- error_code eval
[401, 401, 401, 401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: unknown_key",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: unknown_key",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: unknown_key",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: unknown_key",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
[
    "gateway: jwt refused: no matching key: no key with the token's kid (unknown_key)",
]
--- no_error_log eval
["[error]", "xF76qgC29rXm2oaA", "Bc91g3dnX9Rg7uXw", "id24z1F-NspyJGHA", "KxMzhUsYjF89NJ9Q"]



=== TEST 13: 4. kid: not a string (the number 2048) is malformed
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256 (rsa2048), kid 2048 (a number), sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6MjA0OCwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.kouffp5IdGtF--YFTs0kSxhzRnTDXcr1efO-ytfl5LLAeEzG-dGcaEtnbLBHRRY1GXGv8d7WyKis42j_qN5dQI5SyHW8ozPB6y2rKzIuL1ucWf_f8b9Hr9dn7hAs2bkai1W1vEqXfYYyIRcd4nMmxXbKBXxQUExFHpzUmA81skV52yPVfrm-e6xJa7tC2s7Q6Y0_mQ4Y3mPTZHWjbANy0SL37xoSwblQG_Xyp30nkBtTQfzgki7QSy74T1sP2HEgxMIehT9MXK0Ym_CGZ_QZNElZAoP_7cXdioKHk9Em8vDXKUQ-jSUfUfso-dRmCtzctsM52UrkPF8rS6FzyDiAjg",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: malformed token: header kid is not a string (malformed)"
--- no_error_log eval
["[error]", "rkPF8rS6FzyDiAjg"]



=== TEST 14: 4. kid: naming a key of another type (the EC key ec256 for an RS256 token)
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256 (rsa2048), kid ec256 (an EC key), sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImVjMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.AOyoRMiirpxVMAdLB7bF70hgOWOzcTpf6PyFP2FhJsSn53fabC7H0dT3nGoefIKtJ0QPMVi-wyEAIpHhk2qM8nPwTFs0Qc--WNZnLcWd7ywfUYBNH1z97i4T9xc7_BLkp7V2r7OlVIiPjsNNpXmhIjFDbug9XjHfMMeOLTxZ-Bp0URXjiQwUiUmdHi5V5jLsTrMNv4aaAAc9ieWmtM3Nbgb2lMGa-VpZ6BH-0q6sNyeig_sIjJh3mzgc_4eVqq8Dv8n1i2vF7P4hT4scI1vpImrNTrnmQkmVvwf7YsILxbEYj3uceLUGV1PQI2sX29RTN1p5eQF--TpL0_54_XHMGw",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: algorithm not allowed: the key named by kid does not support the token's alg (alg_not_allowed)"
--- no_error_log eval
["[error]", "F--TpL0_54_XHMGw"]



=== TEST 15: 4. kid: without a kid, the keys that fit the alg are tried (RS256 and ES256 accepted)
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
    "GET /t",
]
--- more_headers eval
[
    # RS256, no kid, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.IaakYNBKEp7elgJ1X7ACIS02ct1ofM9IM5DzYlqcmJkFnKaBhvTiNZ8aHg-VhzShlXpPk0tczZ7lNrWFhMzYJs2kSZpmDoLX4YpJhHQOzj247r9H3ECLfRMgdrKzfJyzPIOyS4cV-4OvsZTTHkaj4nQ19vzRuSiVOhov5gVKBnlz1aTmerKTXwCJFE1q_HndtLTMJai3_GPbqgnQY2y7OwPsV8IkqM68D70QNG8xjzSI6m_opLrgeWX7f32at44PlGvYghm2Diq8TeXFZT-HeQwZzBr9t07K3Ni7BngrBh3abE5IGn-ozPlD54mi5_wrEG7K-E_coOE9-9SzhL5IqA",
    # ES256 (ec256), no kid, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.usWzyzRnOGvDIXQGimwF2p3ZIfp238kD45C801wo-_dgMU6Teg-MgFcXSbu4dtuNY2A44TeZAPuEfz61Vkfdxw",
]
--- error_code eval
[200, 200]
--- response_headers eval
[
    "!WWW-Authenticate\n!X-Jwt-Error",
    "!WWW-Authenticate\n!X-Jwt-Error",
]
--- response_body_like eval
[
    qr/\Aupstream reached sub=alice\n\z/,
    qr/\Aupstream reached sub=alice\n\z/,
]
--- no_error_log eval
["[error]", "_coOE9-9SzhL5IqA", "eZAPuEfz61Vkfdxw", "jwt refused"]



=== TEST 16: 5. keys carried by the token are ignored: jwk (signed by the key it carries, kid of a configured key), jku, x5u (signed by another RSA key), x5c (self-signed cert of the signer)
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa2048.jwk;
        auth_jwt_key_file $TEST_NGINX_KEYS/ec256.jwk;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
    "GET /t",
    "GET /t",
    "GET /t",
]
--- more_headers eval
[
    # ES256 signed by ec256-other, kid ec256, header jwk = ec256-other.jwk, sub admin, exp 2100
    "Authorization: Bearer eyJhbGciOiJFUzI1NiIsImp3ayI6eyJhbGciOiJFUzI1NiIsImNydiI6IlAtMjU2Iiwia2lkIjoiZWMyNTYiLCJrdHkiOiJFQyIsInVzZSI6InNpZyIsIngiOiJ6THd2WENmMWZhYzZ0dTJZd2NLeE1Id055aGlZdkJ2T3lDVFVFXy12c3BRIiwieSI6Impjam9ad1NzYVNGSkloa2NDLXJzY21uQkJRbkNELUtZVzdadXRHUE90TVEifSwia2lkIjoiZWMyNTYiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.Nvickz5Wgcb7DxO39iJTp0Dd1_eUf45tXHjWYb99GREEEJEh-CX9t6f2Ectzude80jmlJmTNddGdDPlkuFQY1w",
    # RS256 signed by rsa3072, kid rsa2048, header jku http://127.0.0.1:9/jwks.json, sub admin, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImprdSI6Imh0dHA6Ly8xMjcuMC4wLjE6OS9qd2tzLmpzb24iLCJraWQiOiJyc2EyMDQ4IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.CcgJHqqzRemSt-5VyQ1z7CtdeidW2Cq_qBuDD1ivA1Ubf3TDVcV47osPrjLehRKr3H1unNCBu5DHFPfO1jgxHD1fA63ZpU9xUw_fBVRjZiHTb5Oc1OyXYmLq-lts-Egxw9QbCdULMoGAtLvGIEidBUO5MYWvvRuNLqsH2TujtfC2xhsfn9ZlhS6-Hok8uUXjQ5jJT52_x7_qaUWp8TiF2EP_Y9bu_uBuay48z1O7sUXdwkwoAhDuyJV5QxwD_67T0mkPWk6s9Xag68RGHHNlD86yVDOBklvTqOKF1_DhpKn2KQNxqzrgwJR50In8CLlaGyl0b-13Hi0_Ow4gziab7MY4xDTXtav3ehND_CwQcHxJv7uLGfcOw090VK9HStZW1HfzzJ6du5qtoF2An_Y7ZdNvk5t33V-jMiUwQsPBG2FE7_wvrRgBj6YXxd0n-wMuYiSdn3N1YzNDpYSP1vfdzaV2wo3avNhUsRI5NQxbNw0ddLvXxQf11Q010Hc8NDwC",
    # RS256 signed by rsa3072, kid rsa2048, header x5u http://127.0.0.1:9/cert.pem, sub admin, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QiLCJ4NXUiOiJodHRwOi8vMTI3LjAuMC4xOjkvY2VydC5wZW0ifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.QQrtN-EjQG_Y0WJERzcTR6PjxBCikLzlBu161JcivJjy53iqKxUzpl7Rngpmtpk4TNZA3eXHINHfgSfAEwIakOkU9jIEG8dKvFp6uijnw_y2nCGUHYmMNH1H4GLbMzI-z6qlq2U4Ow14q93UdNqIGAUe3CZOrUl58FY9LeZPjF1gvIcaU-0Ky_8zavsjFfzQnuVNu8rBiTuUHQH5beqZLMLTDDE-eUR6qlzL5yakV5E5onlv1MjUdp9kP522QPVBmrVKpTI4urm0RFs03kTthyKjXMFWI1B5y1Ko7jP9oiL3HH-Cqq6QIOYj1D_wIHS68I5ohQVZzML5RJJwJwJVcEnHh9FUuz2Ai27CIMpa9TyJglskvpttSIQCpvGl4JXHrmonSbpz0OQihP5HNm6fI6sexRP5ZFp05vNbnYvcU3WygvZ_i6eHYqZ2PTPa5fSf1rO1ULfZarOMkam7bsh60H2hDsEMpqjiZdf6N7O3XY7Q1n3mXyXzmELMqCnXGYNb",
    # RS256 signed by rsa3072, no kid, header x5c = [self-signed cert of rsa3072], sub admin, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsIng1YyI6WyJNSUlFQnpDQ0FtK2dBd0lCQWdJVWE3ZEhYQ0JQUDQvRHZQcHU2Rjk5YTYweFcxZ3dEUVlKS29aSWh2Y05BUUVMQlFBd0V6RVJNQThHQTFVRUF3d0lZWFIwWVdOclpYSXdIaGNOTWpZeE1USTJNRFF4T0RBMldoY05Nall4TVRJM01EUXhPREEyV2pBVE1SRXdEd1lEVlFRRERBaGhkSFJoWTJ0bGNqQ0NBYUl3RFFZSktvWklodmNOQVFFQkJRQURnZ0dQQURDQ0FZb0NnZ0dCQUo3Q21Ta2h4R0NCbFJFTVg5aWdoVUl5bXR6WjBaMDhYL2xOb0EzazFwUHh0OWRRWkJmYTdjTnZLQ1NGVnlLL2lwSVd4Vm9YSGtzY0djdHZnbkt3R014UnF2N1RnNitYMmVNSHM3eVlKa3pqUGlBemVrc2Y0MW0ya3lXL04yb2xzckpQUmpldXArUW5tQ2FwMWRPeVV4VkpzZFpPUWRsTjlQY3N2UUpvLytjdEZITVVmVldmM0luOGRQenIybmc5K2NXcVd5WU5WMFp5SDJXR1E2NXphTURqdGlMcWQrWS94djFCVVhQS3RENU1xMUpBeGhzWTlvV1c4QVJzN3pWUVl5UWlUOVJ3Q0hpNjR6ZFYxUmRIWlhxT3RBRitzSWRuVHhGSXlvclJCbit2UElvZE11NENFdmlEd0kySmovb1BVcXZoM2xHR3dhamluNXBoRFdzK0Z3RURMcmJCcWhZRnVJQlc3NDhHbXNpRHkyMXdyNXovVGhYRVk5VlhKd1lRRENEdFlxaERVaWxFUDR1YnhnV3FIS1l6dEFIeXkvU2E1bnZIZVkrM012aHhTM0JCa2VNZmFwZ2lKT0NtYzEvSHdhakgxbWlUSG80bGxXOHV5eFFETXpwUTBoZ1pvZzdpcDdDMVJ2RnlnT01YcGduajZOQXBBcXc2Y05NZlVaUW5md0lEQVFBQm8xTXdVVEFkQmdOVkhRNEVGZ1FVdUhRWSswRmNQRElqUXVuRk5uMHIwc3JjQnNNd0h3WURWUjBqQkJnd0ZvQVV1SFFZKzBGY1BESWpRdW5GTm4wcjBzcmNCc013RHdZRFZSMFRBUUgvQkFVd0F3RUIvekFOQmdrcWhraUc5dzBCQVFzRkFBT0NBWUVBYjdhdmV4SFByaEtZS0w0d3VORWkvMXZqdnRzb0xTZWFDdDhUSjVMU1dzSWZaVUIxY0JFeE9GOExaNjRrT2QwZWVDOHVqNGxBTEgvYmRzdGp1QXQ3NHVwK0lrMUlXMnFyMkFHSHhWZXdtL3h5OWFaeG9ORnpYZFRoU2tYRU5nR1pxWmpjWDY2em5HMXBWWlV4cEw1M21mVVBlT2pXdklOekx1MWoxUzlZZ0M3b1AzWEJmR1J6V3g4T3NjZ3VUK1cwVXlhTy8wemRLM1lwaWd2TzVmUTc5dVpUNXplU0FEMklnYzFUN0hDdTBEQ2pKbTRGYnZwamxDcTNYNkMydWFNYUtkaEVLYjVVZFBlTWdWNHljTmJicUY2VEEzVmdvSW5PZFNaUkt4RXdwZFR4bUVYb01oMXk2aVNHUEhBS2Y3dmUvYy9Qa2pZWk83eUVhLzZueFl4SDB1N2lCYWxGQjBiUjZHOExCN283cWlROHlySmRIaDVXcG51VjdkVFhUNk1NYkNjc000WE1nb1FqN2hFN3FCOC93NUQxdnFSZkNVZXZNKzZUcnJGZGJpN0wvZHFEa3ErcFNuTXRlQTgzc0tpY1pNdjU5eE0vNGkzSzFiS201N1hPeVVpaFY2Vmpia2ptaS8rQWlJTkVnMEw4dVlPUmxWaUFNYmFBYW9YNC9pN2EiXX0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.jaGo2igCVMKFb39YHJ-xcTBsuPTngxMS9IE0Eofm5BgOqYzlKnRH1fqkolYEKnD8q0OB1RZSMnECQGDXvbr24CXSw-xuEl9aOEKaXUE8a5U5m13Og-VNuPER3x-SQujamfh86UywopOAOEkZhyeyBF78wv_m3IgjqsA9iierashIEnk35hEpM3SCxYhM5H9o-ADn3VFKS_3kWepF6f9v12q1FdZuauQBrUhUpxXUUro37-ogAooYD3SrgNW8qemBOemuYkBfNs4qST7UgawfuAd0ey_aFbfPymDQifk6ETRyZDXmz6scc0bt3jJI8Oyu99l5S7K10leAz0PAZKPjN7W480919xmcEhXOVsWNDmnMO3Yhx-ZpLDd0Os2aa-xEELGVCzVJ4mJe8oVPGDlLfNNFKB7AhGOuwJL-TFIzWx3FhOxUh1czGzfAkDGZ2KZ-we__90UzkjkGNbBa0bZ7Lqx352hDf8R0p5AZ3Ym5YDdUu5HTtHV3YKOu6RLK_DM6",
]
--- error_code eval
[401, 401, 401, 401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_signature",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_signature",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_signature",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_signature",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: signature verification failed (bad_signature)"
--- no_error_log eval
["[error]", "TNddGdDPlkuFQY1w", "xQf11Q010Hc8NDwC", "XyXzmELMqCnXGYNb", "tHV3YKOu6RLK_DM6"]



=== TEST 17: 5. keys carried by the token are ignored, control: a jku header on a token signed by the configured key does not stop it being accepted
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa2048.jwk;
        auth_jwt_key_file $TEST_NGINX_KEYS/ec256.jwk;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256 signed by rsa2048 (the right key), kid rsa2048, header jku http://127.0.0.1:9/jwks.json, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImprdSI6Imh0dHA6Ly8xMjcuMC4wLjE6OS9qd2tzLmpzb24iLCJraWQiOiJyc2EyMDQ4IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lC8WmC31lhGVX_zJfbKDuT15RqhwuiT5mJUqB4loYk6ERmEI7Yiu6qnsf3tT0ha5c_NGZ17xLNkn6D12S073tt6oDrOxn867-Utsjx2eCi05_H14HMPfIFhRyh-T8ixeXXGlxwIYMYG4Bk0wXmV3zx118K2ihJ_TeXuY3L9-UoZXj5ftKSqUyLhnMk5EfT_93S8qf73a1gMiHFivxafaxMZP1A439CWrJbQPKqCfW1gQhNwaRQw__NoiGonS_l3ceJtgbQN_4ayR7dGTKuB9xPXtEx237aFJkkfx3BJw9lPLGHif-rdBmmmp7OR3wvlx9j6EK6mP8LMe_hlKCZgf3A",
]
--- error_code eval
[200]
--- response_headers eval
[
    "!WWW-Authenticate\n!X-Jwt-Error",
]
--- response_body_like eval
[
    qr/\Aupstream reached sub=alice\n\z/,
]
--- no_error_log eval
["[error]", "mP8LMe_hlKCZgf3A", "jwt refused"]



=== TEST 18: 6. crit: [] and ["exp"] are refused (no extension is understood)
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, header crit [], sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImNyaXQiOltdLCJraWQiOiJyc2EyMDQ4IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.ZrLMwZbSRK_Q8RytdfHhiKOFBMkCb6e1qv-PReqaTAtkO4lmws-z7QhHE54P8ScBUI-zT2vh0zbnRhZUHd1oosjEggcK5RUK2gkHxWRiL4dlgIxuRJCnU6P6vvGyljzF4VQlMVgrsM3wVfBlQBa_Z8rkyrAGuO_cvHfmdQ57yi3Pm_wDw1YUtaci5iUdaOjfQKopsiVxExwlTxEtcrYWKlcIMeIDcJPv1dpilsWJWKVDipKMpD3M9VSs4GoDe7SHLfRbUqS7gdfeGykqLkMyoO3_Atuaj78wkxsGZbtF_H1gHRQSM32GmRxzoKGPh6Up-1TgoVreEcASicE853ZcFQ",
    # RS256, kid rsa2048, header crit [exp] and exp, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImNyaXQiOlsiZXhwIl0sImV4cCI6NDEwMjQ0NDgwMCwia2lkIjoicnNhMjA0OCIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.tSqA0wPrMj2iRRIq_ec2qrJceOnYeogt9R51BF5yAbCU_BgRsN5X-SJW8LWqTKE8ZFIVQRiG90lt4gp4vhGhYdUG0-QHnIgX83R9HDR1wXkK-F_Vu_hJOgSUfe4cIDGxaid1Y8texR-I0YXXACdlELoDih2mq3WgAhIRRrqgxj3z5UmhrK3uL3xTO2gPZ2-rsfRJonEMpYl_9sCM0n4kr-6rJTlvm3ts8KLAthkaN23QmtDd6HSGDnKOAxOBD0oSNCoaUErExv0nG6vy5bbLJNRO9elVPR3CYJQJhFLi6fcu115n3ySJamurHLbH0LXvMO_BTy0rbfDMYRTrvVBm5A",
]
--- error_code eval
[401, 401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
[
    "gateway: jwt refused: malformed token: crit header parameter not supported (malformed)",
]
--- no_error_log eval
["[error]", "reEcASicE853ZcFQ", "0rbfDMYRTrvVBm5A"]



=== TEST 19: 7. time: exp in the past (2001) is expired
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_require_exp on;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, sub alice, exp 1000000000 (2001)
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjEwMDAwMDAwMDAsInN1YiI6ImFsaWNlIn0.C6iM8ghqtr275ePW_jURQExxcRMS334akc6Urz6JYMFw5uS0T1db73AlPqSGi3n2e9_AgyMoiH4VN7O9d9QXjOzQxBAH1IoTr6rBiVA6HXjigLhTAK1dZ1EDCeVzyrkxZU_P36Yh5VubeSe0GwDGdWoFxD34bO1JVmq4MKk6zxdbhEwZpthui_PAovGJuQJ9YQHx5KV3LDVQu_z7UXtmV88Ls9SZE7YrQ5lYTq36Vv70QVApFCnG4XhLK0FHFTjd5zeZCQoX4ybskVklN_OP2AX2ZxT2gOd73xy04u2efI2uXCyLqDj0seG7Iuoh3z4vTFnyNEgmmwCJrF8B8JqYgQ",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: expired",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
qr/gateway: jwt refused: token expired: exp 1000000000, now \d+, leeway 0s \(expired\)/
--- no_error_log eval
["[error]", "gmmwCJrF8B8JqYgQ"]



=== TEST 20: 7. time: nbf in the future (2096) is not yet valid
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_require_exp on;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, sub alice, nbf 4000000000 (2096), exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsIm5iZiI6NDAwMDAwMDAwMCwic3ViIjoiYWxpY2UifQ.I2aiR5QDpi6y6L2HTTFETedGy-JOk_k11l8eEUW1p7sbm8ZSV_ZwpD1YxSVgyUXV-jhQTq4ZUt5HIZ34Tw19lfqLs0IwlBWYqHvNF-F7hMKmIW7I8DaIQHsdnfUkoSHjSWBnUIxb-v7MyUSGzNpafdd1pw1Cy7qcOvn0sqkjOBerMJBxvdjqUIMqa7D2kE2bA3nKB4OHnOcM1QqKPetHru6mtn2BEirk0VgTNDlHjLJDIzXftbYx3jy1KOy726QijkOK4m35JZMSFRUXFUf0qktfByzQEEYBxotRnxZZ4NHmNVD17QXYTqDkZ4vu8JrRUfw6qA2Ql5_VabCo538X7g",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: not_yet_valid",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
qr/gateway: jwt refused: token not yet valid: nbf 4000000000, now \d+, leeway 0s \(not_yet_valid\)/
--- no_error_log eval
["[error]", "2Ql5_VabCo538X7g"]



=== TEST 21: 7. time: exp missing where required (auth_jwt_require_exp on) is expired
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_require_exp on;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, sub alice, no exp
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSJ9.nlXSlVLYr0I--pVd19tGFQZxEFaj2eg5VDG9Yd_OixtQPPwR0OXkJ1C6DnMphCvMIgR9ANwi3IJgb33ukQnAlQsM3W1RJSXIzo2ajwn18QJsBqGQCEbY1bjvclPnYzsuWLJTa92RpOhGXCavCmQpNUttWgD0ZPZAOfNf4acaAi7Phn4hz4eXBBrLXX6xVl210MXWEO5BDmaRHtkIELx8g5_TlT6PcnsOmVda-HsQ4NtV7sSzOc4fV2aW_VngpDdqAwcSLgQNO-g0P6JPR2f8mLJLg_9J2VmBL3KEIXv8RapXASCCi1omWxdxlrad2tl-NnJalnTmxS8tmOm01wmK9g",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: expired",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: token expired: exp claim required but missing (expired)"
--- no_error_log eval
["[error]", "TmxS8tmOm01wmK9g"]



=== TEST 22: 7. time, control: a token with exp 2100 is accepted
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_require_exp on;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ",
]
--- error_code eval
[200]
--- response_headers eval
[
    "!WWW-Authenticate\n!X-Jwt-Error",
]
--- response_body_like eval
[
    qr/\Aupstream reached sub=alice\n\z/,
]
--- no_error_log eval
["[error]", "eMpRMCVdrK1KQZfQ", "jwt refused"]



=== TEST 23: 7. time claims of the wrong type or range are malformed, even with a 100-year leeway: exp as a string, negative, beyond 64 bits, 1e300
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_leeway 100y;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
    "GET /t",
    "GET /t",
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, raw payload {"sub":"alice","exp":"4102444800"}
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSIsImV4cCI6IjQxMDI0NDQ4MDAifQ.osvYd8vVPzGUS5AuYU7qwPc2vmbvnnYWE1wYGwHA0dPgVVB6-REGCLz9XYB_ihHD_BSvdgI1GglGTQgOve2bvtPefzq2G9UmlHQwVm0wCo02VlxUuY9BzBYCemedb0MnDgEEIV0lGU0Y7FnBViGzkD9UitfTr4em1fxLYD4i2t72TFXcoI0SO-7yAPWppBkdMHxSa6D6sx4sRugHOByKA4fsMsyU36Tf-UCO9rjZTd1qYg5z6yTjDdK4W1uRtMCgvFWKaGOJsBgqiopmucWoOFeSJbIlLRSCSTJKQzjQMuoOSSXXkQ__YGIhranj5N-bIYzNn7v_H7HqbF3-fxbWNw",
    # RS256, kid rsa2048, raw payload {"sub":"alice","exp":-1}
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSIsImV4cCI6LTF9.IP1dRk0E3xPqfLO2lmK1HJoFVXPRYu5A_5tM8OBMTNm7LTJ1kHqLhIAJTF820tbCI6aKsF2ynJ2gc2ljeOzCndP6pH4xAd-1dVuJrBxj0mtdJq9OlhCt3gzWk2KCbGa1UVV4jnpKGIAHGeaRfYYBhR5ebY5nKCMU77k4xFOpGhLK20VrmhmMvKVcQPZk56o8MI3Lauz5Xtsl39RImRv3eZ3v_tTR3O5ArDiAMcFKTxKjt98tEKGDm822SUr48iuq7igzrORWuROREliXuF_4ZqzPBhBqGty7AM4LSsEdx2sllvmhK15b2mdY9noLmsaV6Xja76Z_19Q9Hf8QNMJNMA",
    # RS256, kid rsa2048, raw payload {"sub":"alice","exp":100000000000000000000}
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSIsImV4cCI6MTAwMDAwMDAwMDAwMDAwMDAwMDAwfQ.HQaVTHEye4El2XSaX9ofyEONAiGVtFDCDTxO2q1LnO1otsifsI1GqUBcBv2FJN1Z7epm0DZ2Nr-mtD5CUulsvrDxRNe_v-OcnAYY5rErNDOkPJKnxsdfJuaZbJsFY7sTuDfxLQ7NL10cV5ZN4I9vgbl1WftKEdehQbPY0kJhVeuXrSy77Dt_SJo6wjtBs_HDBawtcDAAos-3-DRXebikBIbkGinMTOJw84iE-MEIyDLMSngxcWwsKOY-E5hGWJJIbE537XWgXBN_HF0zPyrtdEv76UiOwIFW215yPtt_0wHTTkmiV4tB9LKoEtJKKVu4J7-BiyjFwZv_SZc-KM2Yrg",
    # RS256, kid rsa2048, raw payload {"sub":"alice","exp":1e300}
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSIsImV4cCI6MWUzMDB9.uxucRitRmecvo5UmEfl2EcXep8ja34rifnb-MfLVXtmz_AQkJPbS1k2GDZCyLCKZRX4Oo0TOy2ap0shPmAg_HSA6lce2EvPxARTH2iSx885Bg9HCutEB0L-CmyfCMAAQ2aGUYZwcmFpsVIaXZxzFm_hC6Fyi9yhZTBSVJBckvZLNIFCbjHZUVq8RKWRsGI_Lor3SxEl6Yuh4dmrFfol5FT147tkUp5_gi8De-F4gTp_t-BhOJROZ37VhTtIznh6rXJBbrbfAtSpAs1qppnGvegf-c19yr3O2UbQ7CVGuiwR1rpK5_Jnq3xauKcIc9Uvo2hQ1_1d6nboLsD6HMxSLaQ",
]
--- error_code eval
[401, 401, 401, 401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: malformed token: exp is not a valid NumericDate (malformed)"
--- no_error_log eval
["[error]", "v_H7HqbF3-fxbWNw", "Z_19Q9Hf8QNMJNMA", "jFwZv_SZc-KM2Yrg", "d6nboLsD6HMxSLaQ"]



=== TEST 24: 7. time claims of the wrong type are malformed, even with a 100-year leeway: nbf as a string
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_leeway 100y;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, raw payload {"sub":"alice","exp":4102444800,"nbf":"0"}
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMCwibmJmIjoiMCJ9.LQKBs6PvTurqWOgudWxKOs71u_TaPD-rMixQUo55lYuNqtl5S4-O7-UeMkCs74KxrjHf4IWOAMjFIof9sqXB2Cqg8FYNH0Dj_wT3dX2cGv3FiGh3TS_Ng7XvJFZaOagItCUxv3rjwLIhzsOh0ss8f-8I_CHVO8pIXABtggEoAvq2yIun0lAW-8ja0ODLKa7D8hf6Que7EaaGnRrz7HbPvmJ1_GwcxWp9sncyM2ZjJe2hZ6tjZ046KGg2n_fS7eTEPkZOJUtMZprSl1MheVuOVqyBGQXwABL9AOPEYC9BsvXsre44OPicU0fFGrItPAtIVummPMlMhgZ6TXzKhrNbeA",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: malformed token: nbf is not a valid NumericDate (malformed)"
--- no_error_log eval
["[error]", "lMhgZ6TXzKhrNbeA"]



=== TEST 25: 7. time claims of the wrong type are malformed, even with a 100-year leeway: iat as a string
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_leeway 100y;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, raw payload {"sub":"alice","exp":4102444800,"iat":"yesterday"}
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMCwiaWF0IjoieWVzdGVyZGF5In0.WL1MsHDdr-EJg2rtNu5YxFGI4ImbZXPeavJy_gNAOqPdTa1T7SDgbzmxnd9fUCAISxP9B-4_uQsLBvebI2cRGhhOnVvL04I85Xn5blXrUpYAy0rpwRJYY-k8yl4AELQ6CSW7U5ZBz-Mloe4W6yye-7WSchM_x1Mbx6RMy66JP4MonV4yNbWRBv75-yyFz-wBcly-I9U7tZgTfLRi_0oYueJYuVdGoaFmDQ1m-IN7v8u8MrpKYFPEKXOMx7tslSlXN2JWCgVLkec1qXU4V-VIZl-0RBO101S20ljRND8hbjOMdmEMdhi-VUMAqHmwFtPIjAkZmB8u_b37PwKn4pVLXQ",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: malformed token: iat is not a valid NumericDate (malformed)"
--- no_error_log eval
["[error]", "8u_b37PwKn4pVLXQ"]



=== TEST 26: 7. time: a fractional exp is truncated and accepted
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_leeway 100y;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, raw payload {"sub":"alice","exp":4102444800.5}
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMC41fQ.t-YJZ7EqUE1oa79PxOECIJKyyHHqYk60_-37qta44P42u0X_7s8EErRl-YCH2i9ucOrzp6vtFFdTRUN0-jG3y3hBKeGRf_LFhj4uS8bvhW8G5RaOC_MH4A33U8odhycORZiA26YLkewpdELWVKmkGsPCIU5cmE4EumZeQf6kTedtmNEGeDVklJz0Z14YUOS5QkUgX1OZW2oa5hEnAcZgnjUTaUnK4lJdCMuFIg07uASjfsyXFKCxrPugAWn_tgjk5cfeLKUBtsuRVogDiV7HLoLJEz5tF6-sW_GmQOVTmoaOYTZA-FSD-VAIZNdZJVP-7BrLV5m65NI1uTwy1vsQ2g",
]
--- error_code eval
[200]
--- response_headers eval
[
    "!WWW-Authenticate\n!X-Jwt-Error",
]
--- response_body_like eval
[
    qr/\Aupstream reached sub=alice\n\z/,
]
--- no_error_log eval
["[error]", "m65NI1uTwy1vsQ2g", "jwt refused"]



=== TEST 27: 8. audience: no match (aud other; aud [web, api2]) and missing while required
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location /aud {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_audience api;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /iss {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_issuer https://issuer.example;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /typ {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_typ at+jwt;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /aud",
    "GET /aud",
    "GET /aud",
]
--- more_headers eval
[
    # RS256, kid rsa2048, sub alice, iss https://issuer2.example, aud other, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJhdWQiOiJvdGhlciIsImV4cCI6NDEwMjQ0NDgwMCwiaXNzIjoiaHR0cHM6Ly9pc3N1ZXIyLmV4YW1wbGUiLCJzdWIiOiJhbGljZSJ9.GBjly1hdh6AHKgnk4twBvSe7q5zG_JtC_Vg0OXixk94yKODVv13POk6a6m2wqbwKbeu_k0EZkJrow0qUqMrRfdnNaVazdethgI_TE3Cw-Ppzv0KDdtlME4WhkD9jqAexFDgnaJcmFq8kRVC8G4TZ4JAgaLRpK6s8lhOOMI4j5epBTHq6EP9aMiFLHtXkRi7BkvgHvjmOsQKUEvzdw3OQ0nr5_tw4op_UvPnRh3Z6VxvHnFUsz5ERcDJM7DtUxVImTNAUNL4F7JwEoSyqPKWsH9gEIbjH1ogwAr6wWKWRwcG8hOYTRc4SzZ2rXFe2RLs87tuxYDvS3-x1Cjj6Qu6nsw",
    # RS256, kid rsa2048, sub alice, iss https://other.example, aud [web, api2], exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJhdWQiOlsid2ViIiwiYXBpMiJdLCJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vb3RoZXIuZXhhbXBsZSIsInN1YiI6ImFsaWNlIn0.muDcqKk50xqCDeAXQ0u3XmINI1jZM3YW8LoOE6j6kQ1jzn4yFjFQN_JMM5LicVlRi0xWn09nuZXVtCu_J7cZsgXDoSenVF4T0UQmT3_dK9IBWtCC0rn4gop3_Pg8zkQUc8B-BxEQWRI4JZeGJIU2Xviyyd-kXQ3HFO4snUfcHbenR432G3l3bcOlKkCEpqJBR0UPS2gJAhAnqW_zDKDWEqMLV0JUQ0aQ8vC6JDI3wMcV5FfsDsiAqXgqJUsg_MfRjFcoM2bLNj9K8t3uazWkUFGwx9YWbeT5kGmrVCnHf3autkXtxVEy3nKV57sekHQMSyoll9Xl_cpiOsY-6mBkPg",
    # RS256, kid rsa2048, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ",
]
--- error_code eval
[401, 401, 401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_audience",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_audience",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_audience",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: audience not accepted (bad_audience)"
--- no_error_log eval
["[error]", "vS3-x1Cjj6Qu6nsw", "Xl_cpiOsY-6mBkPg", "eMpRMCVdrK1KQZfQ"]



=== TEST 28: 8. issuer: mismatch and missing
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location /aud {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_audience api;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /iss {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_issuer https://issuer.example;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /typ {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_typ at+jwt;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /iss",
    "GET /iss",
]
--- more_headers eval
[
    # RS256, kid rsa2048, sub alice, iss https://other.example, aud [web, api2], exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJhdWQiOlsid2ViIiwiYXBpMiJdLCJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vb3RoZXIuZXhhbXBsZSIsInN1YiI6ImFsaWNlIn0.muDcqKk50xqCDeAXQ0u3XmINI1jZM3YW8LoOE6j6kQ1jzn4yFjFQN_JMM5LicVlRi0xWn09nuZXVtCu_J7cZsgXDoSenVF4T0UQmT3_dK9IBWtCC0rn4gop3_Pg8zkQUc8B-BxEQWRI4JZeGJIU2Xviyyd-kXQ3HFO4snUfcHbenR432G3l3bcOlKkCEpqJBR0UPS2gJAhAnqW_zDKDWEqMLV0JUQ0aQ8vC6JDI3wMcV5FfsDsiAqXgqJUsg_MfRjFcoM2bLNj9K8t3uazWkUFGwx9YWbeT5kGmrVCnHf3autkXtxVEy3nKV57sekHQMSyoll9Xl_cpiOsY-6mBkPg",
    # RS256, kid rsa2048, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ",
]
--- error_code eval
[401, 401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_issuer",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_issuer",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: issuer not accepted (bad_issuer)"
--- no_error_log eval
["[error]", "Xl_cpiOsY-6mBkPg", "eMpRMCVdrK1KQZfQ"]



=== TEST 29: 8. typ: a JWT (ID token) where an at+jwt access token is required
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location /aud {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_audience api;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /iss {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_issuer https://issuer.example;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /typ {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_typ at+jwt;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /typ",
]
--- more_headers eval
[
    # RS256, kid rsa2048, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_type",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: token type not accepted (bad_type)"
--- no_error_log eval
["[error]", "eMpRMCVdrK1KQZfQ"]



=== TEST 30: 8. audience, issuer, typ, control: a token with aud api and the right issuer is accepted
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location /aud {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_audience api;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /iss {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_issuer https://issuer.example;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /typ {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_typ at+jwt;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /aud",
]
--- more_headers eval
[
    # RS256, kid rsa2048, claims {"sub":"alice","exp":4102444800,"iss":"https://issuer.example","aud":"api","roles":["admin","dev"],"org":{"id":7,"name":"acme"},"realm_access":{"roles":["reader","writer"]},"scope":"read write","level":5}
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJhdWQiOiJhcGkiLCJleHAiOjQxMDI0NDQ4MDAsImlzcyI6Imh0dHBzOi8vaXNzdWVyLmV4YW1wbGUiLCJsZXZlbCI6NSwib3JnIjp7ImlkIjo3LCJuYW1lIjoiYWNtZSJ9LCJyZWFsbV9hY2Nlc3MiOnsicm9sZXMiOlsicmVhZGVyIiwid3JpdGVyIl19LCJyb2xlcyI6WyJhZG1pbiIsImRldiJdLCJzY29wZSI6InJlYWQgd3JpdGUiLCJzdWIiOiJhbGljZSJ9.Wla-AXv75wP1RFa-8XQ3WlyiQ4VuhIA3PEIHCRXtWBYAhwknojeBwusENfYUeqt6sffhaASk4TC3rD0tvtk5I4EFhRwMOlpoKckwVN_A-i13nNLGuyrF8K79fc22KWfdx9BXY1XwZD3Bo1wHfrT1iEtSq_jWYki4BJs_aLZvgx0E_Jpxrt9YbacCEbb0KckHfVUXC0SjOCvZBIO4FLSR8Qtu6YMshu8-sYoXHdGnWNYwTlTIEDEZ6xME93orbxwLPS6PrjdP2u1cs_ag7gsPM6-Pd2LoDJjwfxwPi_wFARHCJqpnoAFAKlIHxFA_z68_MuUoJn7DwfEekgbk-B7L0Q",
]
--- error_code eval
[200]
--- response_headers eval
[
    "!WWW-Authenticate\n!X-Jwt-Error",
]
--- response_body_like eval
[
    qr/\Aupstream reached sub=alice\n\z/,
]
--- no_error_log eval
["[error]", "7DwfEekgbk-B7L0Q", "jwt refused"]



=== TEST 31: 9. shape: 1 segment
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: malformed token: 1 segment, expected 3 (malformed)"
--- no_error_log eval
["[error]"]



=== TEST 32: 9. shape: 2 segments (no signature segment)
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # the first two segments of RS256_OK (no signature segment)
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: malformed token: 2 segments, expected 3 (malformed)"
--- no_error_log eval
["[error]", "1YiI6ImFsaWNlIn0"]



=== TEST 33: 9. shape: 4 segments
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256_OK with a fourth segment .AAAA
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ.AAAA",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: malformed token: 4 segments, expected 3 (malformed)"
--- no_error_log eval
["[error]", "1YiI6ImFsaWNlIn0", "AAAA"]



=== TEST 34: 9. shape: a 5-segment JWE is not supported
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # a JWE-like 5-segment token (header alg RSA-OAEP enc A256GCM)
    "Authorization: Bearer eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.AAAA.AAAA.AAAA.AAAA",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: malformed token: JWE (5 segments) not supported (malformed)"
--- no_error_log eval
["[error]", "AAAA"]



=== TEST 35: 9. bad base64url: padding, standard-alphabet + and /, a space, non-ASCII
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
    "GET /t",
    "GET /t",
    "GET /t",
]
--- more_headers eval
[
    # RS256_OK with '=' padding appended to the signature
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ=",
    # RS256_OK with its signature in standard base64 (- and _ turned into + and /)
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa+iR/Fg7zua+tqGVmJ9e1Kc3/pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU/9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv+cGnBBapPQGG/JqwGTcpgc+DRutGEepu0nTSqgsMczkaj3XicnE+9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh/fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ",
    # RS256_OK with a space inserted in its signature
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiS Sa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ",
    # RS256_OK with a UTF-8 e-acute inserted in its signature
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSéSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ",
]
--- error_code eval
[401, 401, 401, 401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
[
    "gateway: jwt refused: malformed token: signature is not valid base64url (malformed)",
]
--- no_error_log eval
["[error]", "MpRMCVdrK1KQZfQ=", "eMpRMCVdrK1KQZfQ"]



=== TEST 36: 9. JSON: a header that is not an object (signed with the right key)
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256 signed, raw header ["RS256"]
    "Authorization: Bearer WyJSUzI1NiJd.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.XHlRzk2S1yqSZ4drMvGvRMhGoTvMbElXjTOaqgNb_1oauwvwpLLCEqrcphlQCUYOpilnde7zH5i0ag8L0ScgGleHLULYpyebGN6T2o7RNgkhwEK9Zf7qqJIvCbe04Nqy-y9Ug3QjZfLYVD1vGRJ-Kz3BJnWVslUPJsGcWpiPamjr1mUPCb4-4fSziHSRgqFfkpaV0OanK2SrHtsA2OPSwVajWGGpnB_3Q6qFYLD0-vs2cRSdboMdo26h4iD3MA5ThnwtCVMG8-fA4rn5ErT6XJoEa0kpVyK8kIe09oe3_T1v0ChTX5Tg8JAQDSYbk8rMbkN9VDUFlzfBW6795Ve0aA",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: malformed token: header: not a JSON object (malformed)"
--- no_error_log eval
["[error]", "UFlzfBW6795Ve0aA"]



=== TEST 37: 9. JSON: a payload that is not an object (signed with the right key)
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, raw payload ["alice"] (signature valid)
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.WyJhbGljZSJd.kGHVsZxISSO9-qZQB5CDC219ee36p4C--NdM8l-FQ33Y7UeZfnGCsWKNSVxPMb9AerB0f3F-i9oceZE4QeP23NP9ZRAlgnT1QRKr_yT0bCRP3LMFp3zS9ZHP70aBA7mUggo4k_aE5cieWENJhkLPVS68wIryplg6Ye7G7mfiCHRYS3YCdMN0LE3zAQbcc5RYc_YVGOSQNfuvK_Gf1TRMRgf2IumUHKs2lQ26LMU1UHEZkQvsIIUH6YVKP5P7pjfq4YCVxJGT6gf_mmf9Z865IgoiTwhmK5reTrVYvXB5XMTp3AtsFDVhFK4D-aTeP-Uov0URnGyKou_zv-C2aO4uYQ",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: malformed token: payload: not a JSON object (malformed)"
--- no_error_log eval
["[error]", "yKou_zv-C2aO4uYQ"]



=== TEST 38: 9. JSON: duplicate member names in the header (alg twice)
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256 signed, raw header {"alg":"RS256","kid":"rsa2048","alg":"HS256"}
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.QhjV29PvsKxyXbogIrQbAe2haOcVE_OnIOLSjK_KVfRrTzWh81vHzPCLh3QHDzD4xpUoZflVp61aGpoQR6eBVcaXqJjuiQd37HJevmUBDIqasSRULA3nSCIj_x1fzWlRXaeulN9iyHQy6cHBe6x6VBrlQSq7jgCLpJ56Bwuy1qt6gjfxIdG_7v5wgXmr-yN9H2L5CulmNm74skeqdinoUK0KEyDH4TklPkxeZc57F1O6ckBxoqNDmrdMunst49_6OoPrquoNfMyx5zg3_IzLAqp2BGM6uIgYvicd9iSVm4dON-QAc7TkMHIojH_0StJsXnzEAXD64cAkCXJoY81i4Q",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: malformed token: header: duplicate member name (malformed)"
--- no_error_log eval
["[error]", "D64cAkCXJoY81i4Q"]



=== TEST 39: 9. JSON: duplicate member names in the payload (sub twice)
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, raw payload {"sub":"alice","sub":"admin","exp":4102444800}
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSIsInN1YiI6ImFkbWluIiwiZXhwIjo0MTAyNDQ0ODAwfQ.ZJho3jBkycirwSfgJ1Un2axWEP6pXOqibHfOcBVVBUvmjgcEYu2jPo-GPyDP6AUFvnrkwxD2RzeF6nBDbFiLVeo_aeZqgdP-z0LuEPLQ4MSBt-rw12bkpXb4DtJKNfkj6-lT7hw-gCDQ8xyxiPTn1WYldCdpJwuyTBVGBCJ39fAbx5xfNIu3Hh1twI3Jh_0aw9dLABMV1DPoJDiyS-bvBuh77rxcpCgBKehqZMoROa6qNkpMFUnzfyOCcMp2-dZ_Zq-Ct09ABpf1TYbH44GcR6_fvWXTXW87OpGx8700TVDNUmScDzaIWz1etQYdV1F3ldoos9YoXW0ORLEfeDkVqg",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: malformed token: payload: duplicate member name (malformed)"
--- no_error_log eval
["[error]", "YoXW0ORLEfeDkVqg"]



=== TEST 40: 9. JSON: invalid UTF-8 in the payload (signed with the right key)
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256 (openssl dgst -sha256 -sign rsa2048.key.pem), kid rsa2048, payload bytes {"sub":"al<0xff>ice","exp":4102444800}
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgifQ.eyJzdWIiOiJhbP9pY2UiLCJleHAiOjQxMDI0NDQ4MDB9.kFJLWr13w6WxTwC6RTDVjLSnJ4LNKqOyVCd6mMmunPgMtqCh0tGKlBVrbfN7ioz1YvxGDa_aOuYAnD31pgb3tep0VJ71j5ZaCxIXBXLqyqgeaE0qoReczVtmpNhLkmTIsEX2gtaBT5HDugrxantu5bqfusT8__DUVmxKGmymPq9lYBPTp8IH4Q_LmNyEFsi_y3GPFW7qM4p0Fx3jUJpu-D3dzhjv_PLrIpwkx637teCRIOZ0JwcYpjktEGuwxe0WXh3e9S2LftkyYBF1OP_JYfZOzUAzwxF2qvkepyZWLvwCQhId5ZMBkqcuZ2v0xPpeObzWHYePF1hbtepWabNjjw",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: malformed token: payload: invalid UTF-8 (malformed)"
--- no_error_log eval
["[error]", "ePF1hbtepWabNjjw"]



=== TEST 41: 9. JSON: a lone surrogate in the payload is invalid JSON
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, raw payload {"sub":"\ud800","exp":4102444800}
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJcdWQ4MDAiLCJleHAiOjQxMDI0NDQ4MDB9.x5dKRKq3c0OXd7FoQ7XfMu33Jds-xYJwlUTYaMrbebcR24ERjepS4Q4yyylozaZdf5kry7qLJ3MYItu_6k7K7lgSmPdxUH8LzW96uqZubIo__fTPaGUBGKwlQSO9iGbl8FRt6M2krlNoSKZunvQGyRWcR0Q4w4IfmMR8qILXCbBmDa4rwSr8axJEjR696zri0QfA1tQRfGqdhGwggWUJrjMmPipXxpVjjtUPHTcpXyIQc8mlSyTL9k1sgwY4ojkUH7H7NfJUXuIbsv9y14KGfx7DRQY13kACzFv0Zt7lGJGW2Q_1cf4K-8PV6YQr2xx-GvgUojXIwpyJ_oN8rTd43A",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: malformed token: payload: invalid JSON (malformed)"
--- no_error_log eval
["[error]", "XIwpyJ_oN8rTd43A"]



=== TEST 42: 9. JSON: nesting deeper than the limit (40 arrays)
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, raw payload {"sub":"alice","exp":4102444800,"deep":<40 nested arrays>}
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMCwiZGVlcCI6W1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW11dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV19.uZJrBpvzFtq0qh8BlTRxv2McRKqYls84CyACHEHzf8I-VSxgpZIXwK8p4fPf3snsZtbRqw9qpRkh7DvbH1BpeQ8j7VXQXRKqd2CMguup3MQVxwGE78NP9kpAh4XNL-nZRIywiPMQtEbK1kiCTMAaMY-3LSJHc1uU6yrbrJ-62sQwvOLdUiaPKqV1KyDyVBvAs1J9Onmwcgny9SKFvszZFfm45SCgX8HQYKHjKsV-zT6vRVkZdeih0npuvrp1gq9Me1PKymz94qaUK9mSJ97jPfVM2xKSP7vJFowa308l5VDDuXKiwubr27o30EoS605xDQbp6QAB1MVLdKhhlXQCGA",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: malformed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: malformed token: payload: JSON nested too deeply (malformed)"
--- no_error_log eval
["[error]", "AB1MVLdKhhlXQCGA"]



=== TEST 43: 9. size: auth_jwt_max_size 1k refuses a 2.3 KB token before decoding
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_max_size 1k;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, sub alice, exp 2100, pad = 1500 x 'p' (a 2.3 KB token)
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInBhZCI6InBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcCIsInN1YiI6ImFsaWNlIn0.Hjwu8pnAlU_9KqFlBl9SdVbZ18DsTWiyDEsc69BoNBFrjZQTY-nNKjeZN-6UaKWFnP4pAQ0UlEkLtqc7y4KaOsr2vCC348e7lF2lnlwF_C8VgzajS8QzDRSmQ-mSQsr0X3RdrWlhu-JThOQ31hWUlezDAkU3F7K6Ax6voE_L75xFM-RdWd-P5kBjU_1tZxf4VdjX2MKSSt1zvGRMz1YxLPpIX5reVPOkwTQnqaUTARyVnuxZsEJfa-uE9CrpZh0AT-55UqvUXEQ0AY8WvJVegY4N3zyRskyJvwL2F3qGRDj93Trp72UrMZGptyOv38B5_xpixfR2kJwEbyKtx6f-bw",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: too_large",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: token is 2457 bytes, the limit is 1024 (too_large)"
--- no_error_log eval
["[error]", "R2kJwEbyKtx6f-bw"]



=== TEST 44: 9. size: auth_jwt_max_size 1k, control: a small token passes
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_max_size 1k;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ",
]
--- error_code eval
[200]
--- response_headers eval
[
    "!WWW-Authenticate\n!X-Jwt-Error",
]
--- response_body_like eval
[
    qr/\Aupstream reached sub=alice\n\z/,
]
--- no_error_log eval
["[error]", "eMpRMCVdrK1KQZfQ", "jwt refused"]



=== TEST 45: 9. size: the default limit (8192 bytes) refuses a 9 KB token (the server allows 32k headers)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    large_client_header_buffers 4 32k;
    location /t {
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- more_headers eval
# a fake 9 KB token: refused on its size, before any decoding
"Authorization: Bearer eyJhbGciOiJSUzI1NiJ9." . ("A" x 9000) . ".c2ln"
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="api", error="invalid_token"
X-Jwt-Error: too_large
--- response_body_like eval
qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/
--- error_log eval
qr/gateway: jwt refused: token is 9026 bytes, the limit is 8192 \(too_large\)/
--- no_error_log eval
["[error]", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]



=== TEST 46: 10. ECDSA: r = 0 and s = 0, r = 0, s = 0 ("psychic signatures"), a DER-encoded signature, a signature one byte short; RSA: a signature one byte short
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
    "GET /t",
    "GET /t",
    "GET /t",
    "GET /t",
    "GET /t",
]
--- more_headers eval
[
    # ES256 header+payload of ES256_OK (kid ec256, sub alice), signature r = 0, s = 0 (64 zero bytes)
    "Authorization: Bearer eyJhbGciOiJFUzI1NiIsImtpZCI6ImVjMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    # ES256, kid ec256, sub alice: a real signature with r replaced by 0
    "Authorization: Bearer eyJhbGciOiJFUzI1NiIsImtpZCI6ImVjMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACnMtXUG8U02s1UZ1G6mUoI92dSDY13iidwJ9VgrA50oQ",
    # ES256, kid ec256, sub alice: a real signature with s replaced by 0
    "Authorization: Bearer eyJhbGciOiJFUzI1NiIsImtpZCI6ImVjMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.aGV86c-9y32TyUziwFWW7Tnw8aB7JWWVZjjyRwfYgq0AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    # ES256, kid ec256, sub alice: a valid signature DER-encoded (openssl dgst -sha256 -sign ec256.key.pem)
    "Authorization: Bearer eyJhbGciOiJFUzI1NiIsImtpZCI6ImVjMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.MEQCIEv9v1c8y3wnIybP7Pk_DsDT3drXKUpeTBbGMmnJfNkjAiAklROaOIH5TqwmElFCu_TH2PAFU2sq_T_rI_A9jfoxxA",
    # ES256, kid ec256, sub alice: a valid signature without its last byte (63 bytes)
    "Authorization: Bearer eyJhbGciOiJFUzI1NiIsImtpZCI6ImVjMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.aGV86c-9y32TyUziwFWW7Tnw8aB7JWWVZjjyRwfYgq2nMtXUG8U02s1UZ1G6mUoI92dSDY13iidwJ9VgrA50",
    # RS256_OK with its signature's last byte dropped (255 bytes)
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZ",
]
--- error_code eval
[401, 401, 401, 401, 401, 401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_signature",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_signature",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_signature",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_signature",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_signature",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_signature",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
[
    "gateway: jwt refused: signature verification failed (bad_signature)",
]
--- no_error_log eval
["[error]", "AAAAAAAAAAAAAAAA", "13iidwJ9VgrA50oQ", "sq_T_rI_A9jfoxxA", "DY13iidwJ9VgrA50", "CteMpRMCVdrK1KQZ"]



=== TEST 47: 11. two Authorization headers: nginx itself answers 400 before any module runs
# (No no_error_log on the tokens: nginx's own "client sent duplicate header line" message, at
# info level, quotes both header lines.)
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
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- more_headers eval
# RS256, kid rsa2048, sub alice, exp 2100 (twice)
"Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ\nAuthorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ"
--- error_code: 400
--- response_headers
!WWW-Authenticate
--- response_body_like eval
qr/\A<html>\r\n<head><title>400 Bad Request<\/title>/
--- error_log
client sent duplicate header line: "Authorization
--- no_error_log
gateway: jwt



=== TEST 48: 11. token=$cookie_auth: only the cookie counts: a valid cookie token is accepted although the Authorization header holds a corrupted one
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
        auth_jwt "api" token=$cookie_auth;
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lA9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ\nCookie: auth=eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ",
]
--- error_code eval
[200]
--- response_headers eval
[
    "!WWW-Authenticate\n!X-Jwt-Error",
]
--- response_body_like eval
[
    qr/\Aupstream reached sub=alice\n\z/,
]
--- no_error_log eval
["[error]", "eMpRMCVdrK1KQZfQ", "jwt refused"]



=== TEST 49: 11. token=$cookie_auth: only the cookie counts: a bad cookie token is refused although the Authorization header holds a valid one
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
        auth_jwt "api" token=$cookie_auth;
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, sub alice, exp 2100, --corrupt-signature
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ\nCookie: auth=eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lA9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: bad_signature",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: signature verification failed (bad_signature)"
--- no_error_log eval
["[error]", "eMpRMCVdrK1KQZfQ"]



=== TEST 50: 11. token=$cookie_auth: no cookie means no token, even with a valid Authorization header (never a fallback to the header)
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
        auth_jwt "api" token=$cookie_auth;
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\"\nX-Jwt-Error: missing",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: no token (missing)"
--- no_error_log eval
["[error]", "eMpRMCVdrK1KQZfQ"]



=== TEST 51: 11. without token=, a cookie is never used; Basic is not a bearer token; "Bearer" alone, "Bearertoken" and "Bearer" with only spaces carry no token
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
    "GET /t",
    "GET /t",
    "GET /t",
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, sub alice, exp 2100
    "Cookie: auth=eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ",
    "Authorization: Basic YWxpY2U6c2VjcmV0",
    "Authorization: Bearer",
    # RS256, kid rsa2048, sub alice, exp 2100
    "Authorization: BearereyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ",
    "Authorization: Bearer    ",
]
--- error_code eval
[401, 401, 401, 401, 401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\"\nX-Jwt-Error: missing",
    "WWW-Authenticate: Bearer realm=\"api\"\nX-Jwt-Error: missing",
    "WWW-Authenticate: Bearer realm=\"api\"\nX-Jwt-Error: missing",
    "WWW-Authenticate: Bearer realm=\"api\"\nX-Jwt-Error: missing",
    "WWW-Authenticate: Bearer realm=\"api\"\nX-Jwt-Error: missing",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
[
    "gateway: jwt refused: no token (missing)",
]
--- no_error_log eval
["[error]", "eMpRMCVdrK1KQZfQ"]



=== TEST 52: 12. a client-sent X-User never reaches the upstream: overwritten by the claim, dropped when the claim is absent
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
    "GET /t",
]
--- more_headers eval
[
    # RS256, kid rsa2048, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ\nX-User: admin",
    # RS256, kid rsa2048, no sub, exp 2100
    "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDB9.nhrhQRGeBrNFpzUYZTkLoOl0mz28Y25h79ZZQePhRnfRoucY1j4-3J5FP-Pk1LatwEs-g1l-fQ_800Uc24lVXNmLiLtMl6-thbK5J43bwJU-pFu2u0d7Yze0btWEiJ548nOZBNeWrdjl4ERthW7r6U5D5ZKpfNCv-I_a0c-XnNMfCIENrqcpNr8yYdN0RX-o6HJWmAt3yWPdqpHUimtYBKwLlA7Hk9u_L007MZLgHUqV3Kf__0rxnOpg_36xMFi-4ESAdTld8Iv7ufEolTebZxYaqYnjahjrEiI6whvFd_WtWu4il9Yzx3OmRh3TU4RY3HzJpmFP-WecGAJOhFJMTg\nX-User: admin",
]
--- error_code eval
[200, 200]
--- response_headers eval
[
    "!WWW-Authenticate\n!X-Jwt-Error",
    "!WWW-Authenticate\n!X-Jwt-Error",
]
--- response_body_like eval
[
    qr/\Aupstream reached sub=alice\n\z/,
    qr/\Aupstream reached sub=\n\z/,
]
--- no_error_log eval
["[error]", "eMpRMCVdrK1KQZfQ", "FP-WecGAJOhFJMTg", "jwt refused"]



=== TEST 53: 12. a client-sent X-User never reaches the upstream: a request without a token is refused
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    "X-User: admin",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\"\nX-Jwt-Error: missing",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: no token (missing)"
--- no_error_log eval
["[error]"]



=== TEST 54: 12. a client-sent X-User never reaches the upstream: a request with an unsigned token is refused
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
        auth_jwt "api";
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # unsigned, header alg none, sub admin, exp 2100, empty signature
    "Authorization: Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0.\nX-User: admin",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: alg_not_allowed",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log eval
"gateway: jwt refused: algorithm not allowed: unsigned token (alg none) (alg_not_allowed)"
--- no_error_log eval
["[error]", "1YiI6ImFkbWluIn0"]
