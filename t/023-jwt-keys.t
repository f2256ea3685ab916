# Key material in key files (SECURITY-CASES.md 19, 20): degenerate public keys refuse the
# configuration (as `nginx -t` does) with the file and the reason; a token without kid is
# checked against at most 8 keys that fit its alg, so a large set costs a bounded amount of CPU
# per request. Key sets published by a provider (auth_jwt_key_request) are in t/053-jwks-keys.t.
#
# t/keys/hs256-many.jwks holds 12 HS256 secrets without kid (scripts/gen-test-keys derives them
# from fixed text). Tokens (t/gen/jwt-tokens.sh prints how they are made, exp 2100):
#   MANY_N   HS256, no kid, signed by key N of hs256-many.jwks, sub keyN
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;
use Cwd qw(cwd);

$ENV{TEST_NGINX_KEYS} ||= cwd() . '/t/keys';
# HS256, no kid, key 1 of hs256-many.jwks, sub key1, exp 2100
$ENV{TEST_NGINX_MANY_1} = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImtleTEifQ.dsLZEN2sV8Fd5xBrOzX-pL6niIL16qW4DW7u8EzUEng';
# HS256, no kid, key 8 of hs256-many.jwks, sub key8, exp 2100
$ENV{TEST_NGINX_MANY_8} = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImtleTgifQ.P-vDaX-uQMilctlKuYe8hbORk3Pw6RgfSAh8v_cCsCw';
# HS256, no kid, key 9 of hs256-many.jwks, sub key9, exp 2100
$ENV{TEST_NGINX_MANY_9} = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImtleTkifQ.pAwzy-3SEVL7-Bvyx3FUBTBm-Op4nNHDAILF42W0l8Q';
# HS256, no kid, key 12 of hs256-many.jwks, sub key12, exp 2100
$ENV{TEST_NGINX_MANY_12} = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImtleTEyIn0.2UvIS6yX8NG2idyKOl7NysEXJ-UWcJte4WmIfLqx7Fw';

log_level('info');
no_shuffle();
run_tests();

__DATA__

=== TEST 1: 20. a token without kid against 12 keys of its alg: signed by key 1 or 8 (within the bound of 8 signature checks), accepted
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
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256-many.jwks;
        add_header X-Jwt-Error $jwt_error always;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
[
    "Authorization: Bearer $ENV{TEST_NGINX_MANY_1}",
    "Authorization: Bearer $ENV{TEST_NGINX_MANY_8}",
]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/\Aupstream reached sub=key1\n\z/, qr/\Aupstream reached sub=key8\n\z/]
--- response_headers eval
[
    "!WWW-Authenticate\nX-Jwt-Error: ",
    "!WWW-Authenticate\nX-Jwt-Error: ",
]
--- no_error_log
[error]
jwt refused
bad_signature



=== TEST 2: 20. a token without kid against 12 keys of its alg: signed by key 9 or 12 (past the bound of 8 signature checks), refused as unknown_key
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
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256-many.jwks;
        add_header X-Jwt-Error $jwt_error always;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
[
    "Authorization: Bearer $ENV{TEST_NGINX_MANY_9}",
    "Authorization: Bearer $ENV{TEST_NGINX_MANY_12}",
]
--- error_code eval
[401, 401]
--- response_body_like eval
[qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/]
--- response_headers eval
[
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: unknown_key",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nX-Jwt-Error: unknown_key",
]
--- grep_error_log eval
qr/jwt refused: .*?\(\w+\)/
--- grep_error_log_out
jwt refused: no matching key: more keys fit the token's alg and kid than are tried, and none of those tried verified it (unknown_key)
--- no_error_log
[error]
bad_signature



=== TEST 3: 19. an Ed25519 key file holding the identity point (x = 01 00..00, which verifies forged signatures)
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/ed-zero.jwk;
        proxy_pass http://127.0.0.1:1;
    }
--- user_files
>>> ed-zero.jwk
{"kty": "OKP", "crv": "Ed25519", "kid": "ed-zero", "x": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/html\/ed-zero\.jwk": Ed25519 public key is a point of small order \(it would verify forged signatures\) in "auth_jwt_key_file" directive in \S+nginx\.conf:\d+/



=== TEST 4: 19. an Ed25519 PEM public key of order 4 (y = 0)
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/ed-order4.pub.pem;
        proxy_pass http://127.0.0.1:1;
    }
--- user_files
>>> ed-order4.pub.pem
-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
-----END PUBLIC KEY-----
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/html\/ed-order4\.pub\.pem": PEM block #1 \(PUBLIC KEY\): Ed25519 public key is a point of small order \(it would verify forged signatures\) in "auth_jwt_key_file" directive/



=== TEST 5: 19. a key set with an Ed25519 key of order 8 (after a good key): the whole file is refused, naming the key
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/ed-order8.jwks;
        proxy_pass http://127.0.0.1:1;
    }
--- user_files
>>> ed-order8.jwks
{"keys": [
  {"kty": "OKP", "crv": "Ed25519", "kid": "good", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
  {"kty": "OKP", "crv": "Ed25519", "kid": "order8", "x": "JuiVj8KyJ7BFw_SJ8u-Y8NXfrAXTxjM5sTgCiG1T_IU"}
]}
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/html\/ed-order8\.jwks": key #2 \(kid "order8"\): Ed25519 public key is a point of small order/



=== TEST 6: 19. an Ed25519 key not canonically encoded (y = 2^255 - 17, that is 2 + p)
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/ed-noncanonical.jwk;
        proxy_pass http://127.0.0.1:1;
    }
--- user_files
>>> ed-noncanonical.jwk
{"kty": "OKP", "crv": "Ed25519", "x": "7________________________________________38"}
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/html\/ed-noncanonical\.jwk": Ed25519 public key is not canonically encoded \(y >= 2\^255-19\)/



=== TEST 7: 19. an EC P-256 key whose point is not on the curve (ec256 with y changed)
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/ec-off-curve.jwk;
        proxy_pass http://127.0.0.1:1;
    }
--- user_files
>>> ec-off-curve.jwk
{"kty": "EC", "crv": "P-256", "kid": "ec-off-curve", "x": "VIZuMnznh88uFhfgGryQVASuO-uLBkLXdKSqlORRcUQ", "y": "-OytFH5TpbWEYtNsmZRwaKpsatGANu8nyl3i3ON6kiE"}
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/html\/ec-off-curve\.jwk": EC public key is not a valid point on its curve in "auth_jwt_key_file" directive/



=== TEST 8: 19. an RSA public exponent of 1 (rsa2048's modulus)
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/rsa-e1.jwks;
        proxy_pass http://127.0.0.1:1;
    }
--- user_files eval
[
    ["rsa-e1.jwks", '{"keys":[{"kty":"RSA","kid":"rsa-e1","e":"AQ","n":"zXFJrDbxyu_gBm2m24toboY-xoc2C5eMARYDEOFzaoJ5H9m08RVGbdIxU0xgSoTE4HbUdWsgtliTMhzERdLal9uyK5nMSDXuLVZ9OLpXoe8arBFxldYzshS7UVv7_UVdbgNEkW5a4YMYnVNhI4BT-BCy4QGqs3R9soUwt_hRaHoffX31jdDnaBHO5v9HSJJ7VNG-Wh2L9ba70ybGuc7HAeuCN1DhHuaAZkbzJfXaHUkElbwezLj4bqL1AJHVCyM8kcyELfHoxjUz7-Wd7xbpiT0kNf_NdQAyjv9KHZZO4OydDaDr3zy43pA56lpxZGaLex8lxc21x69ZgQmhEg9MNQ"}]}'],
]
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/html\/rsa-e1\.jwks": key #1 \(kid "rsa-e1"\): RSA public exponent must be odd and between 3 and 2\^33-1 in "auth_jwt_key_file" directive/



=== TEST 9: 2. a key file with duplicate member names (two "kid" in one key) is refused, as a token with them is
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/dup-kid.jwks;
        proxy_pass http://127.0.0.1:1;
    }
--- user_files
>>> dup-kid.jwks
{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "a", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "b"}]}
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/html\/dup-kid\.jwks": duplicate member name at line 1 column \d+ in "auth_jwt_key_file" directive/
