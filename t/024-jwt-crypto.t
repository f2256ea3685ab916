# Algorithms verified by OpenSSL only: ES512 (P-521 keys) and EdDSA with Ed448 keys (RFC 8037),
# through a real nginx; a location that does not accept an algorithm refuses its tokens before
# any signature check; keys that would verify forged signatures fail the configuration.
# (RS*/PS* tokens, also verified by OpenSSL, are in t/020-jwt.t.)
#
# Tokens are pasted literally (exp 4102444800 is 2100), each preceded by how it was made;
# t/gen/jwt-tokens.sh regenerates them. Protected locations proxy_pass to a backend that echoes
# the sub it received.
use Test::Nginx::Socket 'no_plan';
use Cwd qw(cwd);

$ENV{TEST_NGINX_KEYS} ||= cwd() . '/t/keys';

log_level('info');
no_shuffle();
run_tests();

__DATA__

=== TEST 1: ES512: a valid token reaches the upstream with its sub (ec521.jwk)
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
        auth_jwt_key_file $TEST_NGINX_KEYS/ec521.jwk;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # ES512, kid ec521, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJFUzUxMiIsImtpZCI6ImVjNTIxIiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.AAlQPv2rivlCZTFhu3607gYvufy0tdf-SM4AImnZXOK5dHFCQH-l69lFLY5c4df_EkCmT4AizvhqWdg5lTm2wo60APLiTHAQMSXAKKUVKH3vJA72notmWdE6DP3d-Zw3xzjJGUH9T67rmMUAT9VEpsowlCZVim4BD5TTIH512lz1iKlU",
]
--- error_code eval
[200]
--- response_headers eval
[
    "!WWW-Authenticate",
]
--- response_body_like eval
[
    qr/\Aupstream reached sub=alice\n\z/,
]
--- no_error_log eval
["[error]", "jwt refused"]



=== TEST 2: ES512: a token with one signature bit off is refused (401), logged as bad_signature (ec521.jwk)
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
        auth_jwt_key_file $TEST_NGINX_KEYS/ec521.jwk;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # ES512, kid ec521, sub alice, exp 2100, --corrupt-signature
    "Authorization: Bearer eyJhbGciOiJFUzUxMiIsImtpZCI6ImVjNTIxIiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.AGpYQ4XE8kMkrO8hA9gu-lOC8Njal_voVz_E4vd3RtzV_2j2FwpKmXJPCKuK_MrnPgoa-5wwdoxnh3pHxb4SJ1QkAVjxX0nwNnOaooPqZ9dVEfNrvJ7EoBj_71ZX3MFAFF_cv_fY0q-dtH6h1dKlED25eT73bEc0rUTV1OBzCvG8rq2u",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title><\/head>\r\n<body>\r\n<center><h1>401 Authorization Required<\/h1><\/center>\r\n<hr><center>nginx[^<]*<\/center>\r\n<\/body>\r\n<\/html>\r\n\z/,
]
--- error_log eval
[
    "gateway: jwt refused: signature verification failed (bad_signature)",
]
--- no_error_log eval
["[error]"]



=== TEST 3: ES512 without kid, among every other key type: found by its alg (ec521.jwk, jwks.json, ed448.pub.pem)
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
        auth_jwt_key_file $TEST_NGINX_KEYS/ec521.jwk;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_key_file $TEST_NGINX_KEYS/ed448.pub.pem kid=ed448;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # ES512 (ec521), no kid, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJFUzUxMiIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.AZpn8-n5q0JM1bS2G0mJa_HgbQcP153d3SVnOweeRacOOR26hJrg23q-by3M7yewkcWNhxfvks-ceVWxLGhTd4lHAZdy6BI1rL-KKuQZizY_b3HX5-mEAWQ2GSSOG8-lFNR-bu0F_fUxq12_uXtTNMtp_mbvlVAHyALh-vA9eNjmEtfQ",
]
--- error_code eval
[200]
--- response_headers eval
[
    "!WWW-Authenticate",
]
--- response_body_like eval
[
    qr/\Aupstream reached sub=alice\n\z/,
]
--- no_error_log eval
["[error]", "jwt refused"]



=== TEST 4: EdDSA with an Ed448 key: a valid token reaches the upstream (ed448.pub.pem kid=ed448, among every other key type)
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
        auth_jwt_key_file $TEST_NGINX_KEYS/ec521.jwk;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_key_file $TEST_NGINX_KEYS/ed448.pub.pem kid=ed448;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # EdDSA, kid ed448, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJFZERTQSIsImtpZCI6ImVkNDQ4IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.JCGfVnB6sGaNB-ORt2ztMdBPF7caNUjjrv0GMjEFTvX1rHjlCy5O6Eci4yihC4d7epaXfuBZQQaAfbVN5idzCXz5pd1zsn1bL8xgn5C8fdzGvEys2feH5zjGBoT8hvq21sEV5vI5V9TR3OqzpePe-xwA",
]
--- error_code eval
[200]
--- response_headers eval
[
    "!WWW-Authenticate",
]
--- response_body_like eval
[
    qr/\Aupstream reached sub=alice\n\z/,
]
--- no_error_log eval
["[error]", "jwt refused"]



=== TEST 5: EdDSA with an Ed448 key: a token with one signature bit off is refused (401), logged as bad_signature
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
        auth_jwt_key_file $TEST_NGINX_KEYS/ec521.jwk;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_key_file $TEST_NGINX_KEYS/ed448.pub.pem kid=ed448;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # EdDSA, kid ed448, sub alice, exp 2100, --corrupt-signature
    "Authorization: Bearer eyJhbGciOiJFZERTQSIsImtpZCI6ImVkNDQ4IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.JSGfVnB6sGaNB-ORt2ztMdBPF7caNUjjrv0GMjEFTvX1rHjlCy5O6Eci4yihC4d7epaXfuBZQQaAfbVN5idzCXz5pd1zsn1bL8xgn5C8fdzGvEys2feH5zjGBoT8hvq21sEV5vI5V9TR3OqzpePe-xwA",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title><\/head>\r\n<body>\r\n<center><h1>401 Authorization Required<\/h1><\/center>\r\n<hr><center>nginx[^<]*<\/center>\r\n<\/body>\r\n<\/html>\r\n\z/,
]
--- error_log eval
[
    "gateway: jwt refused: signature verification failed (bad_signature)",
]
--- no_error_log eval
["[error]"]



=== TEST 6: ES512 in a location whose auth_jwt_algorithms does not list it: refused as alg_not_allowed, before any signature check
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
        auth_jwt_key_file $TEST_NGINX_KEYS/ec521.jwk;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_key_file $TEST_NGINX_KEYS/ed448.pub.pem kid=ed448;
        auth_jwt_algorithms RS256 ES256;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # ES512, kid ec521, sub alice, exp 2100
    "Authorization: Bearer eyJhbGciOiJFUzUxMiIsImtpZCI6ImVjNTIxIiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.AAlQPv2rivlCZTFhu3607gYvufy0tdf-SM4AImnZXOK5dHFCQH-l69lFLY5c4df_EkCmT4AizvhqWdg5lTm2wo60APLiTHAQMSXAKKUVKH3vJA72notmWdE6DP3d-Zw3xzjJGUH9T67rmMUAT9VEpsowlCZVim4BD5TTIH512lz1iKlU",
]
--- error_code eval
[401]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"",
]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title><\/head>\r\n<body>\r\n<center><h1>401 Authorization Required<\/h1><\/center>\r\n<hr><center>nginx[^<]*<\/center>\r\n<\/body>\r\n<\/html>\r\n\z/,
]
--- error_log eval
[
    "gateway: jwt refused: algorithm not allowed: ES512 is not in the allowed list (alg_not_allowed)",
]
--- no_error_log eval
["[error]"]



=== TEST 7: an Ed448 key of small order (it would verify forged signatures) fails the configuration
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/ed448-small.jwk;
        proxy_pass http://127.0.0.1:1;
    }
--- user_files
>>> ed448-small.jwk
{"kty": "OKP", "crv": "Ed448", "x": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/html\/ed448-small\.jwk": Ed448 public key is a point of small order \(it would verify forged signatures\) in "auth_jwt_key_file" directive in \S+nginx\.conf:\d+/



=== TEST 8: a P-521 key whose point is not on the curve fails the configuration
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/p521-off.jwk;
        proxy_pass http://127.0.0.1:1;
    }
--- user_files
>>> p521-off.jwk
{"kty": "EC", "crv": "P-521", "x": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB", "y": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB"}
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/html\/p521-off\.jwk": EC public key is not a valid point on its curve in "auth_jwt_key_file" directive in \S+nginx\.conf:\d+/
