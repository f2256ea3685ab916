# auth_jwt_key_request: the key set fetched by an nginx subrequest from a mock identity provider
# (a server in the same nginx, on $TEST_NGINX_RAND_PORT_1, serving the html dir as
# application/json, its requests logged to logs/idp.log), kept in the gateway_jwks shared zone
# for both workers; rotation, an unknown-kid flood, every failure mode of the provider, cold
# start, reloads, key_request with key_file.
#
# Fetches are counted from error.log ("jwt: fetched ... keys", one line per good fetch; refused
# responses: "jwt: response from ... refused", logged once per refresh interval) and from
# gateway_jwks_fetch_total. Rotation and failures: after_request renames a file of the mock's
# html dir over jwks.json, or a reload changes the mock (the fetched set is in shared memory
# and survives reloads), with short auth_jwt_key_cache / auth_jwt_key_refresh_interval values
# and sleeps.
#
# The key sets (t/keys, compact JSON; t/gen/jwt-tokens.sh prints how they are made):
#   JWKS_A    rsa2048.pub.pem, kid rsa2048, alg RS256, use sig
#   JWKS_B    rsa3072.pub.pem, kid rsa3072, alg RS256, use sig
#   JWKS_AB   both
#   JWKS_AE   rsa2048 (RS256) and ec256.pub.pem, kid ec256, alg ES256, use sig
#   JWKS_ENC  enc-only.jwks (kid rsa2048-enc, use enc: no usable signing key)
# Tokens (pasted, never clock-dependent: exp 2100):
#   TOKEN_A   RS256, kid rsa2048, sub alice, exp 2100 (= RS256_OK of t/020-jwt.t)
#   TOKEN_B   RS256, kid rsa3072, sub bob, exp 2100
#   TOKEN_A_BAD  TOKEN_A with one signature bit flipped
#   TOKEN_NOPE  RS256 (rsa2048), kid nope, sub alice, exp 2100
#   TOKEN_EC  ES256, kid ec256, sub carol, exp 2100 (its key is in no fetched set)
#   TOKEN_HS  HS256, kid hs256, sub dave, exp 2100 (t/keys/hs256.jwk, for auth_jwt_key_file)
# Mostly project runner only: every block but TEST 16 uses the runner's extensions (concurrent
# phase, reload, after_request, prometheus) and says so with --- project_only, so prove skips
# it. The log checks read the whole error.log each time (check_accum_error_log): a fetch is
# logged by one request of several, so after each request the fetch lines must be a prefix of
# the block's sequence (grep_error_log_out; the lines of a cold fetch from request 1 on), their
# final number is checked by gateway_jwks_fetch_total (prometheus), and lines a later request
# logs by shutdown_error_log (which reads the whole error.log at the end with
# check_accum_error_log). Each refusal's reason is checked per request through an X-Jwt-Error
# header ($jwt_error).
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;
use Cwd qw(cwd);

$ENV{TEST_NGINX_KEYS} ||= cwd() . '/t/keys';
$ENV{TEST_NGINX_JWKS_A} = '{"keys":[{"alg":"RS256","e":"AQAB","kid":"rsa2048","kty":"RSA","n":"zXFJrDbxyu_gBm2m24toboY-xoc2C5eMARYDEOFzaoJ5H9m08RVGbdIxU0xgSoTE4HbUdWsgtliTMhzERdLal9uyK5nMSDXuLVZ9OLpXoe8arBFxldYzshS7UVv7_UVdbgNEkW5a4YMYnVNhI4BT-BCy4QGqs3R9soUwt_hRaHoffX31jdDnaBHO5v9HSJJ7VNG-Wh2L9ba70ybGuc7HAeuCN1DhHuaAZkbzJfXaHUkElbwezLj4bqL1AJHVCyM8kcyELfHoxjUz7-Wd7xbpiT0kNf_NdQAyjv9KHZZO4OydDaDr3zy43pA56lpxZGaLex8lxc21x69ZgQmhEg9MNQ","use":"sig"}]}';
$ENV{TEST_NGINX_JWKS_B} = '{"keys":[{"alg":"RS256","e":"AQAB","kid":"rsa3072","kty":"RSA","n":"nsKZKSHEYIGVEQxf2KCFQjKa3NnRnTxf-U2gDeTWk_G311BkF9rtw28oJIVXIr-KkhbFWhceSxwZy2-CcrAYzFGq_tODr5fZ4wezvJgmTOM-IDN6Sx_jWbaTJb83aiWysk9GN66n5CeYJqnV07JTFUmx1k5B2U309yy9Amj_5y0UcxR9VZ_cifx0_OvaeD35xapbJg1XRnIfZYZDrnNowOO2Iup35j_G_UFRc8q0PkyrUkDGGxj2hZbwBGzvNVBjJCJP1HAIeLrjN1XVF0dleo60AX6wh2dPEUjKitEGf688ih0y7gIS-IPAjYmP-g9Sq-HeUYbBqOKfmmENaz4XAQMutsGqFgW4gFbvjwaayIPLbXCvnP9OFcRj1VcnBhAMIO1iqENSKUQ_i5vGBaocpjO0AfLL9Jrme8d5j7cy-HFLcEGR4x9qmCIk4KZzX8fBqMfWaJMejiWVby7LFAMzOlDSGBmiDuKnsLVG8XKA4xemCePo0CkCrDpw0x9RlCd_","use":"sig"}]}';
$ENV{TEST_NGINX_JWKS_AB} = '{"keys":[{"alg":"RS256","e":"AQAB","kid":"rsa2048","kty":"RSA","n":"zXFJrDbxyu_gBm2m24toboY-xoc2C5eMARYDEOFzaoJ5H9m08RVGbdIxU0xgSoTE4HbUdWsgtliTMhzERdLal9uyK5nMSDXuLVZ9OLpXoe8arBFxldYzshS7UVv7_UVdbgNEkW5a4YMYnVNhI4BT-BCy4QGqs3R9soUwt_hRaHoffX31jdDnaBHO5v9HSJJ7VNG-Wh2L9ba70ybGuc7HAeuCN1DhHuaAZkbzJfXaHUkElbwezLj4bqL1AJHVCyM8kcyELfHoxjUz7-Wd7xbpiT0kNf_NdQAyjv9KHZZO4OydDaDr3zy43pA56lpxZGaLex8lxc21x69ZgQmhEg9MNQ","use":"sig"},{"alg":"RS256","e":"AQAB","kid":"rsa3072","kty":"RSA","n":"nsKZKSHEYIGVEQxf2KCFQjKa3NnRnTxf-U2gDeTWk_G311BkF9rtw28oJIVXIr-KkhbFWhceSxwZy2-CcrAYzFGq_tODr5fZ4wezvJgmTOM-IDN6Sx_jWbaTJb83aiWysk9GN66n5CeYJqnV07JTFUmx1k5B2U309yy9Amj_5y0UcxR9VZ_cifx0_OvaeD35xapbJg1XRnIfZYZDrnNowOO2Iup35j_G_UFRc8q0PkyrUkDGGxj2hZbwBGzvNVBjJCJP1HAIeLrjN1XVF0dleo60AX6wh2dPEUjKitEGf688ih0y7gIS-IPAjYmP-g9Sq-HeUYbBqOKfmmENaz4XAQMutsGqFgW4gFbvjwaayIPLbXCvnP9OFcRj1VcnBhAMIO1iqENSKUQ_i5vGBaocpjO0AfLL9Jrme8d5j7cy-HFLcEGR4x9qmCIk4KZzX8fBqMfWaJMejiWVby7LFAMzOlDSGBmiDuKnsLVG8XKA4xemCePo0CkCrDpw0x9RlCd_","use":"sig"}]}';
$ENV{TEST_NGINX_JWKS_AE} = '{"keys":[{"alg":"RS256","e":"AQAB","kid":"rsa2048","kty":"RSA","n":"zXFJrDbxyu_gBm2m24toboY-xoc2C5eMARYDEOFzaoJ5H9m08RVGbdIxU0xgSoTE4HbUdWsgtliTMhzERdLal9uyK5nMSDXuLVZ9OLpXoe8arBFxldYzshS7UVv7_UVdbgNEkW5a4YMYnVNhI4BT-BCy4QGqs3R9soUwt_hRaHoffX31jdDnaBHO5v9HSJJ7VNG-Wh2L9ba70ybGuc7HAeuCN1DhHuaAZkbzJfXaHUkElbwezLj4bqL1AJHVCyM8kcyELfHoxjUz7-Wd7xbpiT0kNf_NdQAyjv9KHZZO4OydDaDr3zy43pA56lpxZGaLex8lxc21x69ZgQmhEg9MNQ","use":"sig"},{"alg":"ES256","crv":"P-256","kid":"ec256","kty":"EC","use":"sig","x":"VIZuMnznh88uFhfgGryQVASuO-uLBkLXdKSqlORRcUQ","y":"-OytFH5TpbWEYtNsmZRwaKpsatGANu8nyl3i3ON6kiA"}]}';
$ENV{TEST_NGINX_JWKS_ENC} = '{"keys":[{"e":"AQAB","kid":"rsa2048-enc","kty":"RSA","n":"zXFJrDbxyu_gBm2m24toboY-xoc2C5eMARYDEOFzaoJ5H9m08RVGbdIxU0xgSoTE4HbUdWsgtliTMhzERdLal9uyK5nMSDXuLVZ9OLpXoe8arBFxldYzshS7UVv7_UVdbgNEkW5a4YMYnVNhI4BT-BCy4QGqs3R9soUwt_hRaHoffX31jdDnaBHO5v9HSJJ7VNG-Wh2L9ba70ybGuc7HAeuCN1DhHuaAZkbzJfXaHUkElbwezLj4bqL1AJHVCyM8kcyELfHoxjUz7-Wd7xbpiT0kNf_NdQAyjv9KHZZO4OydDaDr3zy43pA56lpxZGaLex8lxc21x69ZgQmhEg9MNQ","use":"enc"}]}';
# JWKS_A's key alone, for sets padded to a given size
$ENV{TEST_NGINX_KEY_A} = '{"alg":"RS256","e":"AQAB","kid":"rsa2048","kty":"RSA","n":"zXFJrDbxyu_gBm2m24toboY-xoc2C5eMARYDEOFzaoJ5H9m08RVGbdIxU0xgSoTE4HbUdWsgtliTMhzERdLal9uyK5nMSDXuLVZ9OLpXoe8arBFxldYzshS7UVv7_UVdbgNEkW5a4YMYnVNhI4BT-BCy4QGqs3R9soUwt_hRaHoffX31jdDnaBHO5v9HSJJ7VNG-Wh2L9ba70ybGuc7HAeuCN1DhHuaAZkbzJfXaHUkElbwezLj4bqL1AJHVCyM8kcyELfHoxjUz7-Wd7xbpiT0kNf_NdQAyjv9KHZZO4OydDaDr3zy43pA56lpxZGaLex8lxc21x69ZgQmhEg9MNQ","use":"sig"}';
# RS256, kid rsa2048, sub alice, exp 2100
$ENV{TEST_NGINX_TOKEN_A} = 'eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ';
# RS256, kid rsa3072, sub bob, exp 2100
$ENV{TEST_NGINX_TOKEN_B} = 'eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTMwNzIiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImJvYiJ9.PiOwa7-s-8VfqzD2I29kU6yN8jNtxWHzp62h4MzmSq_jqI11Ovy40DluB4YYzMaRjv49HzrPTb4LuJyNT4FqZeb9NtAQyXhjKs6o1_IQcZdAknAErx2ML70SmtW3ztq26v6CPAqAQi4DWaOe61uZEV1Zb5HorpnIhoG4y99Jx5Xl2rwkRNNMuUyFRYlX8Eb27Eh5L41IwWLL_4UjaTGiEwoL0zWCjzXsjDFmZV5orVjtvRgBSj7-9LbrHZJP1O6zDmrOorON_XUP8iDwHuKQdkj60FiBU1xhhXJH7myvJeZ864IkhgGMYhmazWhrrpk3duLKcgs8v8S311lLiTInZ-nMyo1x5OVmAlyMRPEhdG8wUeJHR3loS_f0KFRtStyjYuyw7NEQvGSpWnrisO67OfNmhT8eY_yo_Z437ViMzJceIvZlP2COx6fMeDBSz3QcHvJt03d13XuE-OFL2YyF3GdEJYSTPLcEwFcyPlsrKzxAqI3OBR5WVnZQcLmSSDFi';
# RS256, kid rsa2048, sub alice, exp 2100, --corrupt-signature
$ENV{TEST_NGINX_TOKEN_A_BAD} = 'eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lA9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ';
# RS256 (rsa2048), kid nope, sub alice, exp 2100
$ENV{TEST_NGINX_TOKEN_NOPE} = 'eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vcGUiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.d5MMuBFM-ROf9LiFXNTbBi-YlY3w2wLAmNEs2qbds4ip-T029Pv1KBwjD13NNu-a_pVI_ukT8kVzzSjgCie_LS1Vlw2xR6uyhqKwyJ1tV7j9VyiSCGYzBaHO2qKVWvyoR_sggilOnsBzqJVomRSCJEs4Q9a5apRKtGHzmebyIkTkH1-aOGZj13XiMi252sLQ20KyEji19Du7DpJFrdnVhKpEO6HgmPgBxH4Bui3jfqTvERqnFNV32uE59Y4O3m559KxrUXwlDF4KWY9uYWFUJq9vLcyusjTBzBUXiOD1oDm5aRcUZH-ejfcppmYNEl5qzyuwzgxF76qgC29rXm2oaA';
# ES256, kid ec256, sub carol, exp 2100
$ENV{TEST_NGINX_TOKEN_EC} = 'eyJhbGciOiJFUzI1NiIsImtpZCI6ImVjMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImNhcm9sIn0.JukAXpBJz8jOcC9lTQqgMbSiQlW3u3iTqBD1M4Q57xJmdxYjyPl_GeseG11p-1lntRLk3ovScDnNj9EQ31gcEA';
# HS256, kid hs256, sub dave, exp 2100
$ENV{TEST_NGINX_TOKEN_HS} = 'eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImRhdmUifQ.6g4qcU0sP__rbngq_zHtOHYaFZQ1XHYtKTiX-DpB8FE';

workers(2);
master_on();
log_level('info');
check_accum_error_log();
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a valid token is accepted through the fetched set; one fetch for every request, both workers
--- project_only: the metrics are parsed (prometheus)
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
$TEST_NGINX_JWKS_A
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
[
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    # a kid in no fetched set: unknown kid, the refresh it asks for is not due yet
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_NOPE}",
    # the right kid with a bad signature
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A_BAD}",
    "X-None: 1",
    "X-None: 1",
]
--- error_code eval
[200, 200, 401, 401, 401, 200]
--- response_headers eval
[
    "!X-Jwt-Error",
    "!X-Jwt-Error",
    "X-Jwt-Error: unknown_key",
    "X-Jwt-Error: bad_signature",
    "X-Jwt-Error: missing",
    "!X-Jwt-Error",
]
--- response_body_like eval
[qr/^upstream reached sub=alice\n\z/, qr/^upstream reached sub=alice\n\z/, qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/gateway_jwks_fetch_total/]
--- prometheus
type gateway_jwks_fetch_total counter
gateway_jwks_fetch_total{result="ok"} 1
gateway_jwks_fetch_total{result="failed"} 0
--- grep_error_log eval
qr/jwt: fetch(?:ing|ed) [^"]+"[^"]+"/
--- grep_error_log_out eval
qr/\Ajwt: fetching keys from "\/_jwks"\n(?:jwt: fetched 1 keys from "\/_jwks"\n)?\z/
--- no_error_log
[error]
--- error_log eval
[
    'jwt: fetching keys from "/_jwks"',
    'jwt: fetched 1 keys from "/_jwks"',
]
--- shutdown_error_log eval
[
    qr/jwt refused: .*\(unknown_key\)/,
    qr/jwt refused: .*\(bad_signature\)/,
    "jwt refused: no token (missing)",
]



=== TEST 2: cold start: 60 concurrent first requests over 2 workers share one fetch
--- project_only: a concurrent phase (concurrent_*, status_counts, distinct_header_values); the metrics are parsed (prometheus)
--- http_config
    server {
        listen $TEST_NGINX_SERVER_PORT reuseport;
        server_name reuseport.invalid;
    }
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
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/jwks.json;
        subrequest_output_buffer_size 64k;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        add_header X-Pid $pid always;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}"
--- concurrent_request
GET /t?n={i}
--- concurrent_requests: 60
--- concurrency: 30
--- status_counts
200: 60
--- distinct_header_values
X-Pid >= 2
--- request eval
["GET /t", "GET /metrics"]
--- response_body_like eval
[qr/\Aupstream reached sub=alice\n\z/, qr/gateway_jwks_fetch_total/]
--- prometheus
gateway_jwks_fetch_total{result="ok"} 1
gateway_jwks_fetch_total{result="failed"} 0
gateway_auth_total{result="valid",reason=""} 61
--- grep_error_log eval
qr/jwt: fetched [^"]+"[^"]+"/
--- grep_error_log_out eval
qr/\Ajwt: fetched 1 keys from "\/_jwks"\n\z/
--- no_error_log
[error]
--- error_log eval
[
    'jwt: fetched 1 keys from "/_jwks"',
]



=== TEST 3: a flood of 200 tokens with random kids over 2 workers: one fetch for the whole flood, then one per refresh interval
# kids "f4lo4d-4" + the request number: the map puts its three digits at base64 positions that
# each decode to one byte of the kid ('4'..'='), so every request names another unknown kid.
# The signature is rsa3072's over the original header (never checked: no key has the kid).
--- project_only: a concurrent phase (concurrent_*, status_counts, distinct_header_values); actions between requests (after_request); the metrics are parsed (prometheus)
--- http_config
    server {
        listen $TEST_NGINX_SERVER_PORT reuseport;
        server_name reuseport.invalid;
    }
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
    # RS256 signed by rsa3072, header {"alg":"RS256","kid":"f4lo4d-4"}, sub mallory, exp 2100;
    # the kid's 2nd, 5th and 8th bytes follow the digits of ?k=
    map $arg_k $flood_token {
        ~^(\d)$         "eyJhbGciOiJSUzI1NiIsImtpZCI6ImY0bG80ZC0$1In0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6Im1hbGxvcnkifQ.PRw30BJyAKM4MvACIYDsH8dt73JoH50yb4fVUqcr9Xmg8g3mHsg8Aa0FX4wg8lde1KD82NPbugEkrxUbmqtnzJoQwMHBWYajad6t7JXswJfAWDyOMmTLWXPFGl0-MVg2O8qY_PvepWLF9t0rZDySpkcQaH1X8UoMmg2KW6khA8y1V8k5bJNWta6wNFBd8mSg6xYfdHHvN2VXn5ONfNDwiClXLn_bD5iEWAMAOO0kGvaJLHModMOgH4A30_E7bGzliAhwr--6TRF7IjwKFulqg9trlGviNzAb2Z7Q9eAoqH3Nzk4b7VuUIfVUnAjC432y5oldmmL9RQVPcD_jUfxZpVyGD5apKudZD5X_e-47NUxR2lTndzqAgWBwSWdOquSqydO22jSdNjy8chGxRA7NDGE8nEZ_sZoJTZMoSNVsY1wRpgK05UxT3q65evS5_917cLnRV9dBa4M45zvcvvG64_TiN17PYhXjr2mL76at0SJfkwlc9QWX_KqHCRUEMxVt";
        ~^(\d)(\d)$     "eyJhbGciOiJSUzI1NiIsImtpZCI6ImY0bG8$1ZC0$2In0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6Im1hbGxvcnkifQ.PRw30BJyAKM4MvACIYDsH8dt73JoH50yb4fVUqcr9Xmg8g3mHsg8Aa0FX4wg8lde1KD82NPbugEkrxUbmqtnzJoQwMHBWYajad6t7JXswJfAWDyOMmTLWXPFGl0-MVg2O8qY_PvepWLF9t0rZDySpkcQaH1X8UoMmg2KW6khA8y1V8k5bJNWta6wNFBd8mSg6xYfdHHvN2VXn5ONfNDwiClXLn_bD5iEWAMAOO0kGvaJLHModMOgH4A30_E7bGzliAhwr--6TRF7IjwKFulqg9trlGviNzAb2Z7Q9eAoqH3Nzk4b7VuUIfVUnAjC432y5oldmmL9RQVPcD_jUfxZpVyGD5apKudZD5X_e-47NUxR2lTndzqAgWBwSWdOquSqydO22jSdNjy8chGxRA7NDGE8nEZ_sZoJTZMoSNVsY1wRpgK05UxT3q65evS5_917cLnRV9dBa4M45zvcvvG64_TiN17PYhXjr2mL76at0SJfkwlc9QWX_KqHCRUEMxVt";
        ~^(\d)(\d)(\d)$ "eyJhbGciOiJSUzI1NiIsImtpZCI6ImY$1bG8$2ZC0$3In0.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6Im1hbGxvcnkifQ.PRw30BJyAKM4MvACIYDsH8dt73JoH50yb4fVUqcr9Xmg8g3mHsg8Aa0FX4wg8lde1KD82NPbugEkrxUbmqtnzJoQwMHBWYajad6t7JXswJfAWDyOMmTLWXPFGl0-MVg2O8qY_PvepWLF9t0rZDySpkcQaH1X8UoMmg2KW6khA8y1V8k5bJNWta6wNFBd8mSg6xYfdHHvN2VXn5ONfNDwiClXLn_bD5iEWAMAOO0kGvaJLHModMOgH4A30_E7bGzliAhwr--6TRF7IjwKFulqg9trlGviNzAb2Z7Q9eAoqH3Nzk4b7VuUIfVUnAjC432y5oldmmL9RQVPcD_jUfxZpVyGD5apKudZD5X_e-47NUxR2lTndzqAgWBwSWdOquSqydO22jSdNjy8chGxRA7NDGE8nEZ_sZoJTZMoSNVsY1wRpgK05UxT3q65evS5_917cLnRV9dBa4M45zvcvvG64_TiN17PYhXjr2mL76at0SJfkwlc9QWX_KqHCRUEMxVt";
    }
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/jwks.json;
        subrequest_output_buffer_size 64k;
    }
    location /flood {
        auth_jwt "api" token=$flood_token;
        auth_jwt_key_request /_jwks;
        auth_jwt_key_refresh_interval 2s;
        add_header X-Pid $pid always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        auth_jwt_key_refresh_interval 2s;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
--- concurrent_request
GET /flood?k={i}
--- concurrent_requests: 200
--- concurrency: 20
--- status_counts
401: 200
--- distinct_header_values
X-Pid >= 2
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
[
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_NOPE}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_NOPE}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_NOPE}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    'X-None: 1',
]
--- error_code eval
[401, 401, 401, 200, 200]
--- response_body_like eval
[qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/upstream reached/, qr/gateway_jwks_fetch_total/]
--- after_request
# the flood and request 1 fall within one interval; request 2 comes after it: one more fetch
1 sleep 2.1
--- prometheus
# 1: the flood (a cold start, shared by all), 1: request 2, after the interval
gateway_jwks_fetch_total{result="ok"} 2
gateway_jwks_fetch_total{result="failed"} 0
gateway_auth_total{result="invalid",reason="unknown_key"} 203
--- grep_error_log eval
qr/jwt: fetched [^"]+"[^"]+"/
--- grep_error_log_out eval
qr/\Ajwt: fetched 1 keys from "\/_jwks"\n(?:jwt: fetched 1 keys from "\/_jwks"\n)?\z/
--- no_error_log
[error]
--- error_log eval
[
    'jwt: fetched 1 keys from "/_jwks"',
]



=== TEST 4: rotation: a new kid triggers a refresh (the refresh interval permitting), the removed kid is refused at once
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
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/jwks.json;
        subrequest_output_buffer_size 64k;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_refresh_interval 1s;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
>>> jwks-b.json
$TEST_NGINX_JWKS_B
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
[
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    # the provider has not rotated yet; the refresh is not due anyway (fetched < 1s ago)
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_B}",
    # rotated, and more than an interval later: the cached set (fresh for 10m) still has rsa2048
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    # kid rsa3072 is unknown: refresh, the new set has it
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_B}",
    # rsa2048 is gone from the set now in force
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_B}",
    'X-None: 1',
]
--- error_code eval
[200, 401, 200, 200, 401, 200, 200]
--- response_headers eval
[
    "!X-Jwt-Error",
    "X-Jwt-Error: unknown_key",
    "!X-Jwt-Error",
    "!X-Jwt-Error",
    "X-Jwt-Error: unknown_key",
    "!X-Jwt-Error",
    "!X-Jwt-Error",
]
--- response_body_like eval
[qr/\Aupstream reached sub=alice\n\z/, qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=bob\n\z/, qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/\Aupstream reached sub=bob\n\z/, qr/gateway_jwks_fetch_total/]
--- after_request
2 rename html/jwks-b.json html/jwks.json
2 sleep 1.1
--- prometheus
gateway_jwks_fetch_total{result="ok"} 2
gateway_jwks_fetch_total{result="failed"} 0
--- grep_error_log eval
qr/jwt: fetched [^"]+"[^"]+"/
--- grep_error_log_out eval
qr/\Ajwt: fetched 1 keys from "\/_jwks"\n(?:jwt: fetched 1 keys from "\/_jwks"\n)?\z/
--- no_error_log
[error]
--- error_log eval
[
    'jwt: fetched 1 keys from "/_jwks"',
]
--- shutdown_error_log eval
[
    qr/jwt refused: no matching key: no key with the token's kid \(unknown_key\)/,
]



=== TEST 5: rotation by expiry: the provider's Cache-Control max-age=1 is honoured, then the old kid is refused
--- project_only: actions between requests (after_request); the metrics are parsed (prometheus)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type application/json;
        access_log logs/idp.log;
        add_header Cache-Control max-age=1;
        location = /upstream {
            access_log off;
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
        # max-age is kept within [refresh interval, auth_jwt_key_cache]
        auth_jwt_key_refresh_interval 1s;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_AB
>>> jwks-b.json
$TEST_NGINX_JWKS_B
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
[
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_B}",
    # rsa2048 removed by the provider; the cached set is still fresh (max-age=1)
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    # more than max-age later: refetched, rsa2048 is refused
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_B}",
    'X-None: 1',
]
--- error_code eval
[200, 200, 200, 401, 200, 200]
--- response_headers eval
[
    "!X-Jwt-Error",
    "!X-Jwt-Error",
    "!X-Jwt-Error",
    "X-Jwt-Error: unknown_key",
    "!X-Jwt-Error",
    "!X-Jwt-Error",
]
--- response_body_like eval
[qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=bob\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/\Aupstream reached sub=bob\n\z/, qr/gateway_jwks_fetch_total/]
--- after_request
2 rename html/jwks-b.json html/jwks.json
3 sleep 1.2
--- prometheus
gateway_jwks_fetch_total{result="ok"} 2
--- grep_error_log eval
qr/jwt: fetched .*fresh for \d+s/
--- grep_error_log_out eval
qr/\Ajwt: fetched 2 keys from "\/_jwks", fresh for 1s\n(?:jwt: fetched 1 keys from "\/_jwks", fresh for 1s\n)?\z/
--- no_error_log
[error]
--- error_log eval
[
    'jwt: fetched 2 keys from "/_jwks", fresh for 1s',
]
--- shutdown_error_log eval
[
    'jwt: fetched 1 keys from "/_jwks", fresh for 1s',
]



=== TEST 6: rotation to a key of another type (RSA set, then an EC key added): the ES256 token triggers the refresh
# Without auth_jwt_algorithms the algorithms allowed are those of the keys held; the ES256
# token is first refused as alg_not_allowed, which must ask for a refresh as an unknown kid does.
--- project_only: actions between requests (after_request)
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
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/jwks.json;
        subrequest_output_buffer_size 64k;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        add_header X-Jwt-Error $jwt_error always;
        auth_jwt_key_refresh_interval 1s;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
>>> jwks-ae.json
$TEST_NGINX_JWKS_AE
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
[
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_EC}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_EC}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
]
--- error_code eval
[200, 401, 200, 200]
--- response_headers eval
[
    "!X-Jwt-Error",
    "X-Jwt-Error: alg_not_allowed",
    "!X-Jwt-Error",
    "!X-Jwt-Error",
]
--- response_body_like eval
[qr/\Aupstream reached sub=alice\n\z/, qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/\Aupstream reached sub=carol\n\z/, qr/\Aupstream reached sub=alice\n\z/]
--- after_request
2 rename html/jwks-ae.json html/jwks.json
2 sleep 1.1
--- grep_error_log eval
qr/jwt: fetched [^"]+"[^"]+"/
--- grep_error_log_out eval
qr/\Ajwt: fetched 1 keys from "\/_jwks"\n(?:jwt: fetched 2 keys from "\/_jwks"\n)?\z/
--- no_error_log
[error]
--- error_log eval
[
    'jwt: fetched 1 keys from "/_jwks"',
]
--- shutdown_error_log eval
[
    'jwt: fetched 2 keys from "/_jwks"',
    qr/jwt refused: algorithm not allowed: ES256 .*\(alg_not_allowed\)/,
]



=== TEST 7: failure: the provider answers 404: the last good set stays in force, logged and counted once per interval
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
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
[("Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}") x 6, 'X-None: 1']
--- error_code eval
[200, 200, 200, 200, 200, 200, 200]
--- response_body_like eval
[(qr/\Aupstream reached sub=alice\n\z/) x 6, qr/gateway_jwks_fetch_total/]
--- after_request
1 rename html/jwks.json html/gone.json
1 sleep 1.1
# requests 2-4 fall in one interval: one fetch, one log line; request 5 in the next one
4 sleep 1.1
--- prometheus
gateway_jwks_fetch_total{result="ok"} 1
gateway_jwks_fetch_total{result="failed"} 2
--- grep_error_log eval
qr/jwt: response from "[^"]+" refused: [^;]+;[^(]+/
--- grep_error_log_out eval
qr/\A(?:jwt: response from "\/_jwks" refused: status 404; the last good one stays in force \n(?:jwt: response from "\/_jwks" refused: status 404; the last good one stays in force \n)?)?\z/
--- shutdown_error_log eval
[
    'jwt: response from "/_jwks" refused: status 404; the last good one stays in force ',
]



=== TEST 8: failure: a timeout (the provider delays its answer past proxy_read_timeout): last good set in force
--- project_only: actions between requests (after_request); the metrics are parsed (prometheus)
--- http_config
    # the first fetch passes; the next one is delayed by limit_req for a minute
    limit_req_zone $server_name zone=idp_slow:1m rate=1r/m;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type application/json;
        access_log logs/idp.log;
        limit_req zone=idp_slow burst=5;
        location = /upstream {
            access_log off;
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/jwks.json;
        subrequest_output_buffer_size 64k;
        proxy_read_timeout 300ms;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        auth_jwt_key_cache 1s;
        auth_jwt_key_refresh_interval 1s;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
["Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", 'X-None: 1']
--- error_code eval
[200, 200, 200, 200, 200]
--- response_body_like eval
[qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/gateway_jwks_fetch_total/]
--- after_request
1 sleep 1.1
--- prometheus
gateway_jwks_fetch_total{result="ok"} 1
gateway_jwks_fetch_total{result="failed"} 1
--- grep_error_log eval
qr/jwt: response from "[^"]+" refused: [^;]+/
--- grep_error_log_out eval
qr/\A(?:jwt: response from "\/_jwks" refused: status 504\n)?\z/
--- shutdown_error_log eval
[
    qr/jwt: response from "\/_jwks" refused: status 504/,
    'upstream timed out',
]
=== TEST 9: failure: a content type that is not JSON (the provider reloaded with text/html): last good set in force
--- project_only: reloads between requests (reload_*); actions between requests (after_request); the metrics are parsed (prometheus)
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
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
["Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", 'X-None: 1']
--- error_code eval
[200, 200, 200, 200, 200]
--- response_body_like eval
[qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/gateway_jwks_fetch_total/]
--- reload_after_request: 1
--- reload_http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type text/html;
        access_log logs/idp.log;
        location = /upstream {
            access_log off;
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- after_request
1 sleep 1.1
--- prometheus
gateway_jwks_fetch_total{result="ok"} 1
gateway_jwks_fetch_total{result="failed"} 1
--- grep_error_log eval
qr/jwt: response from "[^"]+" refused: [^;]+/
--- grep_error_log_out eval
qr/\A(?:jwt: response from "\/_jwks" refused: content type "text\/html" is not JSON\n)?\z/
--- shutdown_error_log eval
[
    qr/jwt: response from "\/_jwks" refused: content type "text\/html" is not JSON/,
]



=== TEST 10: failure: a gzip body (the key location asks the provider for gzip): last good set in force
# The provider compresses bodies of 800 bytes or more: the first set (rsa2048) is sent as it
# is; the rotated one (both keys) is gzipped, and refused.
--- project_only: actions between requests (after_request); the metrics are parsed (prometheus)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type application/json;
        access_log logs/idp.log;
        location = /jwks.json {
            gzip on;
            gzip_types application/json;
            gzip_min_length 800;
            gzip_http_version 1.0;
        }
        location = /upstream {
            access_log off;
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/jwks.json;
        proxy_set_header Accept-Encoding gzip;
        subrequest_output_buffer_size 64k;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        auth_jwt_key_cache 1s;
        auth_jwt_key_refresh_interval 1s;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
>>> jwks-ab.json
$TEST_NGINX_JWKS_AB
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
[("Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}") x 4, 'X-None: 1']
--- error_code eval
[200, 200, 200, 200, 200]
--- response_body_like eval
[qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/gateway_jwks_fetch_total/]
--- after_request
1 rename html/jwks-ab.json html/jwks.json
1 sleep 1.1
--- prometheus
gateway_jwks_fetch_total{result="ok"} 1
gateway_jwks_fetch_total{result="failed"} 1
--- grep_error_log eval
qr/jwt: response from "[^"]+" refused: [^;]+/
--- grep_error_log_out eval
qr/\A(?:jwt: response from "\/_jwks" refused: content encoding "gzip" \(a key set must be sent uncompressed\)\n)?\z/
--- shutdown_error_log eval
[
    qr/jwt: response from "\/_jwks" refused: content encoding "gzip" \(a key set must be sent uncompressed\)/,
]



=== TEST 11: failure: a body over 1 MiB: last good set in force
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
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/jwks.json;
        subrequest_output_buffer_size 2m;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        auth_jwt_key_cache 1s;
        auth_jwt_key_refresh_interval 1s;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files eval
[
    ["jwks.json", '$TEST_NGINX_JWKS_A'],
    ["big.json", '{"keys":[],"pad":"' . ("x" x 1100000) . '"}'],
]
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
["Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", 'X-None: 1']
--- error_code eval
[200, 200, 200, 200, 200]
--- response_body_like eval
[qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/gateway_jwks_fetch_total/]
--- after_request
1 rename html/big.json html/jwks.json
1 sleep 1.1
--- prometheus
gateway_jwks_fetch_total{result="ok"} 1
gateway_jwks_fetch_total{result="failed"} 1
--- grep_error_log eval
qr/jwt: response from "[^"]+" refused: [^;]+/
--- grep_error_log_out eval
qr/\A(?:jwt: response from "\/_jwks" refused: body of 1100020 bytes, the limit is 1048576\n)?\z/
--- shutdown_error_log eval
[
    qr/jwt: response from "\/_jwks" refused: body of 1100020 bytes, the limit is 1048576/,
]



=== TEST 12: failure: invalid JSON: last good set in force
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
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
>>> bad.json
{"keys": [{"kty": "RSA", "kid": "rsa2048",]}
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
["Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", 'X-None: 1']
--- error_code eval
[200, 200, 200, 200, 200]
--- response_body_like eval
[qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/gateway_jwks_fetch_total/]
--- after_request
1 rename html/bad.json html/jwks.json
1 sleep 1.1
--- prometheus
gateway_jwks_fetch_total{result="ok"} 1
gateway_jwks_fetch_total{result="failed"} 1
--- grep_error_log eval
qr/jwt: response from "[^"]+" refused: [^;]+/
--- grep_error_log_out eval
qr/\A(?:jwt: response from "\/_jwks" refused: .*JSON.*\n)?\z/
--- shutdown_error_log eval
[
    qr/jwt: response from "\/_jwks" refused: .*JSON.*/,
]



=== TEST 13: failure: a set with no usable signing key (use enc only): last good set in force
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
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
>>> enc.json
$TEST_NGINX_JWKS_ENC
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
["Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}", 'X-None: 1']
--- error_code eval
[200, 200, 200, 200, 200]
--- response_body_like eval
[qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/gateway_jwks_fetch_total/]
--- after_request
1 rename html/enc.json html/jwks.json
1 sleep 1.1
--- prometheus
gateway_jwks_fetch_total{result="ok"} 1
gateway_jwks_fetch_total{result="failed"} 1
--- grep_error_log eval
qr/jwt: response from "[^"]+" refused: [^;]+/
--- grep_error_log_out eval
qr/\A(?:jwt: response from "\/_jwks" refused: .*usable.*\n)?\z/
--- shutdown_error_log eval
[
    qr/jwt: response from "\/_jwks" refused: .*usable.*/,
]



=== TEST 14: failure: a body larger than subrequest_output_buffer_size (nginx cannot read it whole): last good set in force
# nginx fails an in-memory subrequest whose response exceeds subrequest_output_buffer_size and
# marks its connection as failed. The fetch runs on a connection of its own (not the
# client's), so only the fetch fails: recorded, logged and counted, and the client is answered
# with the last good set.
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
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/jwks.json;
        subrequest_output_buffer_size 4k;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        auth_jwt_key_cache 1s;
        auth_jwt_key_refresh_interval 1s;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files eval
[
    ["jwks.json", '$TEST_NGINX_JWKS_A'],
    ["big.json", '{"keys":[],"pad":"' . ("x" x 20000) . '"}'],
]
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
[("Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}") x 4, 'X-None: 1']
--- error_code eval
[200, 200, 200, 200, 200]
--- response_body_like eval
[(qr/\Aupstream reached sub=alice\n\z/) x 4, qr/gateway_jwks_fetch_total/]
--- after_request
1 rename html/big.json html/jwks.json
1 sleep 1.1
--- prometheus
gateway_jwks_fetch_total{result="ok"} 1
gateway_jwks_fetch_total{result="failed"} 1
--- grep_error_log eval
qr/jwt: response from "[^"]+" refused: [^;]+/
--- grep_error_log_out eval
qr/\A(?:jwt: response from "\/_jwks" refused: the response could not be read whole \(see the error above\n)?\z/
--- shutdown_error_log eval
[
    'jwt: response from "/_jwks" refused: the response could not be read whole (see the error above',
    'too big subrequest response: 20020',
]
=== TEST 15: cold start with no provider (connection refused): 500 and a clear log line, no fetch storm
--- project_only: the metrics are parsed (prometheus)
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2/jwks.json;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        add_header X-Jwt-Error $jwt_error always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
[("Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}") x 3, 'X-None: 1']
--- error_code eval
[500, 500, 500, 200]
--- response_headers eval
[("!WWW-Authenticate\nX-Jwt-Error: key_unavailable") x 3, "!X-Jwt-Error"]
--- prometheus
gateway_jwks_fetch_total{result="ok"} 0
gateway_jwks_fetch_total{result="failed"} 1
gateway_auth_total{result="error",reason="key_unavailable"} 3
--- grep_error_log eval
qr/jwt: (?:response from "[^"]+" refused: [^;]+|no usable keys, answering \d+ \(key_unavailable\))/
--- grep_error_log_out eval
qr/\Ajwt: response from "\/_jwks" refused: status 502\njwt: no usable keys, answering 500 \(key_unavailable\)\n(?:jwt: no usable keys, answering 500 \(key_unavailable\)\n(?:jwt: no usable keys, answering 500 \(key_unavailable\)\n)?)?\z/
--- error_log
jwt: response from "/_jwks" refused: status 502
jwt: no usable keys, answering 500 (key_unavailable)
connect() failed (111: Connection refused)
=== TEST 16: cold start with no provider, auth_jwt_key_unavailable 401: 401 with WWW-Authenticate
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2/jwks.json;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        auth_jwt_key_unavailable 401;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2/upstream;
    }
--- request
GET /t
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}"
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="api", error="invalid_token"
--- error_log
jwt: response from "/_jwks" refused: status 502
jwt: no usable keys, answering 401 (key_unavailable)
=== TEST 17: key_request with key_file: the file's keys work with the provider down, the fetched ones once it is up
--- project_only: actions between requests (after_request)
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
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/jwks.json;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        auth_jwt_key_request /_jwks;
        auth_jwt_key_refresh_interval 1s;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
--- user_files
>>> jwks-a.json
$TEST_NGINX_JWKS_A
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
[
    # provider down (404): the key file still verifies, the fetched set is not there: 401, not 500
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_HS}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    # provider up, a refresh interval later: both
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_HS}",
]
--- error_code eval
[200, 401, 200, 200]
--- response_body_like eval
[qr/\Aupstream reached sub=dave\n\z/, qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=dave\n\z/]
--- after_request
2 rename html/jwks-a.json html/jwks.json
2 sleep 1.1
--- no_error_log
key_unavailable
--- error_log eval
[
    'jwt: response from "/_jwks" refused: status 404',
]
--- shutdown_error_log eval
[
    'jwt: fetched 1 keys from "/_jwks"',
]



=== TEST 18: a reload keeps the fetched set (shared memory): no fetch after it, until a refresh is due
--- project_only: reloads between requests (reload_*); actions between requests (after_request); the metrics are parsed (prometheus)
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
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/jwks.json;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        auth_jwt_key_refresh_interval 1s;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
>>> jwks-b.json
$TEST_NGINX_JWKS_B
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
[
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    # after the reload (the provider rotated meanwhile): the cached set, no fetch
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    # a refresh interval later, the new kid: one fetch, the rotated set
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_B}",
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    'X-None: 1',
]
--- error_code eval
[200, 200, 200, 401, 200]
--- response_body_like eval
[qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=alice\n\z/, qr/\Aupstream reached sub=bob\n\z/, qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/, qr/gateway_jwks_fetch_total/]
--- after_request
1 rename html/jwks-b.json html/jwks.json
2 sleep 1.1
--- reload_after_request: 1
--- prometheus
# the cold fetch and the refresh of request 3; none after the reload
gateway_jwks_fetch_total{result="ok"} 2
gateway_jwks_fetch_total{result="failed"} 0
--- grep_error_log eval
qr/jwt: fetched [^"]+"[^"]+"/
--- grep_error_log_out eval
qr/\Ajwt: fetched 1 keys from "\/_jwks"\n(?:jwt: fetched 1 keys from "\/_jwks"\n)?\z/
--- no_error_log
[error]
--- error_log eval
[
    'jwt: fetched 1 keys from "/_jwks"',
]



=== TEST 19: the client's headers never reach the provider (Range, If-None-Match, If-Modified-Since, Accept-Encoding, Authorization, Cookie): fixed headers, a 200 answer, the same result as without them
# The provider is a static file server, which would answer Range with 206, If-None-Match: *
# and a future If-Modified-Since with 304, and honours Accept-Encoding (gzip on): every fetch
# would fail if the client's headers were passed on. It logs what each fetch carried.
--- project_only: actions between requests (after_request); the metrics are parsed (prometheus)
--- http_config
    log_format idp 'idp $request range=$http_range inm=$http_if_none_match ims=$http_if_modified_since ae=$http_accept_encoding auth=$http_authorization cookie=$http_cookie accept="$http_accept" ua=$http_user_agent status=$status';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type application/json;
        location = /jwks.json {
            access_log logs/access.log idp;
            gzip on;
            gzip_types application/json;
            gzip_min_length 1;
            gzip_http_version 1.0;
        }
        location = /upstream {
            access_log off;
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
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
--- request eval
["GET /t", "GET /t", "GET /t", "GET /metrics"]
--- more_headers eval
[
    # the cold fetch, triggered by a client sending everything that would spoil it
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}\r\nRange: bytes=0-10\r\nIf-None-Match: *\r\nIf-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\nAccept-Encoding: gzip\r\nCookie: session=secret",
    # a refresh (the set is stale after 1s), triggered by such a client again
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}\r\nRange: bytes=0-10\r\nIf-None-Match: *\r\nIf-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\nAccept-Encoding: gzip\r\nCookie: session=secret",
    # a plain client: the same answer
    "Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}",
    'X-None: 1',
]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/^upstream reached sub=alice\n\z/, qr/^upstream reached sub=alice\n\z/, qr/^upstream reached sub=alice\n\z/, qr/gateway_jwks_fetch_total/]
--- after_request
1 sleep 1.1
--- prometheus
gateway_jwks_fetch_total{result="ok"} 2
gateway_jwks_fetch_total{result="failed"} 0
--- access_log
idp GET /jwks.json HTTP/1.0 range=- inm=- ims=- ae=- auth=- cookie=- accept="application/json, application/jwk-set+json" ua=ngx-gateway status=200
--- no_access_log eval
[qr/idp .*status=[^2]/, "range=bytes", "inm=*", "ims=Fri", "ae=gzip", "auth=Bearer", "cookie=session"]
--- no_error_log
[error]



=== TEST 20: a client that disconnects while its request waits for the fetch does not end the fetch: the set arrives and later requests are served
# The provider sends the set slowly (limit_rate: about 2 s); the first client gives up after
# 0.5 s (the runner's per-request timeout; it counts as "none" in the concurrent phase). The
# fetch goes on without it, and the next request, a little later, is verified with its set.
--- project_only: a concurrent phase (concurrent_*, status_counts); actions between requests (after_request); the metrics are parsed (prometheus); not under valgrind (no_valgrind)
--- http_config
    log_format idp 'idp $request status=$status bytes=$body_bytes_sent';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type application/json;
        location = /jwks.json {
            access_log logs/access.log idp;
            limit_rate 200;
        }
        location = /upstream {
            access_log off;
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
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
--- timeout: 0.5
--- no_valgrind: the client must give up before the slow provider answers (valgrind multiplies the timeout by 10)
--- concurrent_request
GET /t
--- concurrent_requests: 1
--- concurrency: 1
--- status_counts
none: 1
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}"
--- request eval
["GET /metrics", "GET /t", "GET /t", "GET /metrics"]
--- response_body_like eval
[qr/gateway_jwks_fetch_total\{result="ok"\} 0/, qr/^upstream reached sub=alice\n\z/, qr/^upstream reached sub=alice\n\z/, qr/gateway_jwks_fetch_total/]
--- after_request
1 sleep 3
--- prometheus
gateway_jwks_fetch_total{result="ok"} 1
gateway_jwks_fetch_total{result="failed"} 0
--- access_log
idp GET /jwks.json HTTP/1.0 status=200 bytes=
--- grep_error_log eval
qr/jwt: (?:fetch(?:ing|ed) [^"]+"[^"]+"|response from "[^"]+" refused: [^;]+)/
--- grep_error_log_out eval
qr/\Ajwt: fetching keys from "\/_jwks"\n(?:jwt: fetched 1 keys from "\/_jwks"\n)?\z/
--- no_error_log
[error]
--- error_log eval
[
    'jwt: fetching keys from "/_jwks"',
    'jwt: fetched 1 keys from "/_jwks"',
]



=== TEST 21: 70 distinct key URIs (more than the 64 entries the zone once had) all work, and 70 others after a reload
# One location per URI /k/0 ... /k/69, all served by the same mock file; each URI is a set of
# its own in the zone. The reloaded configuration names /k/x0 ... /k/x69 instead: the first 70
# entries are freed.
--- project_only: a concurrent phase (concurrent_*, status_counts); reloads between requests (reload_*); the metrics are parsed (prometheus)
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
    proxy_set_header X-User $jwt_claim_sub;
    location /k/ {
        internal;
        rewrite ^ /jwks.json break;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location = /metrics {
        gateway_metrics;
    }
    location = /t0 { auth_jwt "api"; auth_jwt_key_request /k/0; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t1 { auth_jwt "api"; auth_jwt_key_request /k/1; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t2 { auth_jwt "api"; auth_jwt_key_request /k/2; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t3 { auth_jwt "api"; auth_jwt_key_request /k/3; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t4 { auth_jwt "api"; auth_jwt_key_request /k/4; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t5 { auth_jwt "api"; auth_jwt_key_request /k/5; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t6 { auth_jwt "api"; auth_jwt_key_request /k/6; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t7 { auth_jwt "api"; auth_jwt_key_request /k/7; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t8 { auth_jwt "api"; auth_jwt_key_request /k/8; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t9 { auth_jwt "api"; auth_jwt_key_request /k/9; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t10 { auth_jwt "api"; auth_jwt_key_request /k/10; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t11 { auth_jwt "api"; auth_jwt_key_request /k/11; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t12 { auth_jwt "api"; auth_jwt_key_request /k/12; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t13 { auth_jwt "api"; auth_jwt_key_request /k/13; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t14 { auth_jwt "api"; auth_jwt_key_request /k/14; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t15 { auth_jwt "api"; auth_jwt_key_request /k/15; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t16 { auth_jwt "api"; auth_jwt_key_request /k/16; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t17 { auth_jwt "api"; auth_jwt_key_request /k/17; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t18 { auth_jwt "api"; auth_jwt_key_request /k/18; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t19 { auth_jwt "api"; auth_jwt_key_request /k/19; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t20 { auth_jwt "api"; auth_jwt_key_request /k/20; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t21 { auth_jwt "api"; auth_jwt_key_request /k/21; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t22 { auth_jwt "api"; auth_jwt_key_request /k/22; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t23 { auth_jwt "api"; auth_jwt_key_request /k/23; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t24 { auth_jwt "api"; auth_jwt_key_request /k/24; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t25 { auth_jwt "api"; auth_jwt_key_request /k/25; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t26 { auth_jwt "api"; auth_jwt_key_request /k/26; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t27 { auth_jwt "api"; auth_jwt_key_request /k/27; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t28 { auth_jwt "api"; auth_jwt_key_request /k/28; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t29 { auth_jwt "api"; auth_jwt_key_request /k/29; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t30 { auth_jwt "api"; auth_jwt_key_request /k/30; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t31 { auth_jwt "api"; auth_jwt_key_request /k/31; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t32 { auth_jwt "api"; auth_jwt_key_request /k/32; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t33 { auth_jwt "api"; auth_jwt_key_request /k/33; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t34 { auth_jwt "api"; auth_jwt_key_request /k/34; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t35 { auth_jwt "api"; auth_jwt_key_request /k/35; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t36 { auth_jwt "api"; auth_jwt_key_request /k/36; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t37 { auth_jwt "api"; auth_jwt_key_request /k/37; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t38 { auth_jwt "api"; auth_jwt_key_request /k/38; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t39 { auth_jwt "api"; auth_jwt_key_request /k/39; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t40 { auth_jwt "api"; auth_jwt_key_request /k/40; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t41 { auth_jwt "api"; auth_jwt_key_request /k/41; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t42 { auth_jwt "api"; auth_jwt_key_request /k/42; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t43 { auth_jwt "api"; auth_jwt_key_request /k/43; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t44 { auth_jwt "api"; auth_jwt_key_request /k/44; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t45 { auth_jwt "api"; auth_jwt_key_request /k/45; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t46 { auth_jwt "api"; auth_jwt_key_request /k/46; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t47 { auth_jwt "api"; auth_jwt_key_request /k/47; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t48 { auth_jwt "api"; auth_jwt_key_request /k/48; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t49 { auth_jwt "api"; auth_jwt_key_request /k/49; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t50 { auth_jwt "api"; auth_jwt_key_request /k/50; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t51 { auth_jwt "api"; auth_jwt_key_request /k/51; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t52 { auth_jwt "api"; auth_jwt_key_request /k/52; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t53 { auth_jwt "api"; auth_jwt_key_request /k/53; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t54 { auth_jwt "api"; auth_jwt_key_request /k/54; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t55 { auth_jwt "api"; auth_jwt_key_request /k/55; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t56 { auth_jwt "api"; auth_jwt_key_request /k/56; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t57 { auth_jwt "api"; auth_jwt_key_request /k/57; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t58 { auth_jwt "api"; auth_jwt_key_request /k/58; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t59 { auth_jwt "api"; auth_jwt_key_request /k/59; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t60 { auth_jwt "api"; auth_jwt_key_request /k/60; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t61 { auth_jwt "api"; auth_jwt_key_request /k/61; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t62 { auth_jwt "api"; auth_jwt_key_request /k/62; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t63 { auth_jwt "api"; auth_jwt_key_request /k/63; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t64 { auth_jwt "api"; auth_jwt_key_request /k/64; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t65 { auth_jwt "api"; auth_jwt_key_request /k/65; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t66 { auth_jwt "api"; auth_jwt_key_request /k/66; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t67 { auth_jwt "api"; auth_jwt_key_request /k/67; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t68 { auth_jwt "api"; auth_jwt_key_request /k/68; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t69 { auth_jwt "api"; auth_jwt_key_request /k/69; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
--- reload_config
    proxy_set_header X-User $jwt_claim_sub;
    location /k/ {
        internal;
        rewrite ^ /jwks.json break;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location = /metrics {
        gateway_metrics;
    }
    location = /x0 { auth_jwt "api"; auth_jwt_key_request /k/x0; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x1 { auth_jwt "api"; auth_jwt_key_request /k/x1; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x2 { auth_jwt "api"; auth_jwt_key_request /k/x2; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x3 { auth_jwt "api"; auth_jwt_key_request /k/x3; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x4 { auth_jwt "api"; auth_jwt_key_request /k/x4; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x5 { auth_jwt "api"; auth_jwt_key_request /k/x5; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x6 { auth_jwt "api"; auth_jwt_key_request /k/x6; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x7 { auth_jwt "api"; auth_jwt_key_request /k/x7; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x8 { auth_jwt "api"; auth_jwt_key_request /k/x8; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x9 { auth_jwt "api"; auth_jwt_key_request /k/x9; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x10 { auth_jwt "api"; auth_jwt_key_request /k/x10; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x11 { auth_jwt "api"; auth_jwt_key_request /k/x11; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x12 { auth_jwt "api"; auth_jwt_key_request /k/x12; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x13 { auth_jwt "api"; auth_jwt_key_request /k/x13; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x14 { auth_jwt "api"; auth_jwt_key_request /k/x14; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x15 { auth_jwt "api"; auth_jwt_key_request /k/x15; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x16 { auth_jwt "api"; auth_jwt_key_request /k/x16; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x17 { auth_jwt "api"; auth_jwt_key_request /k/x17; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x18 { auth_jwt "api"; auth_jwt_key_request /k/x18; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x19 { auth_jwt "api"; auth_jwt_key_request /k/x19; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x20 { auth_jwt "api"; auth_jwt_key_request /k/x20; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x21 { auth_jwt "api"; auth_jwt_key_request /k/x21; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x22 { auth_jwt "api"; auth_jwt_key_request /k/x22; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x23 { auth_jwt "api"; auth_jwt_key_request /k/x23; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x24 { auth_jwt "api"; auth_jwt_key_request /k/x24; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x25 { auth_jwt "api"; auth_jwt_key_request /k/x25; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x26 { auth_jwt "api"; auth_jwt_key_request /k/x26; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x27 { auth_jwt "api"; auth_jwt_key_request /k/x27; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x28 { auth_jwt "api"; auth_jwt_key_request /k/x28; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x29 { auth_jwt "api"; auth_jwt_key_request /k/x29; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x30 { auth_jwt "api"; auth_jwt_key_request /k/x30; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x31 { auth_jwt "api"; auth_jwt_key_request /k/x31; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x32 { auth_jwt "api"; auth_jwt_key_request /k/x32; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x33 { auth_jwt "api"; auth_jwt_key_request /k/x33; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x34 { auth_jwt "api"; auth_jwt_key_request /k/x34; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x35 { auth_jwt "api"; auth_jwt_key_request /k/x35; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x36 { auth_jwt "api"; auth_jwt_key_request /k/x36; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x37 { auth_jwt "api"; auth_jwt_key_request /k/x37; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x38 { auth_jwt "api"; auth_jwt_key_request /k/x38; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x39 { auth_jwt "api"; auth_jwt_key_request /k/x39; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x40 { auth_jwt "api"; auth_jwt_key_request /k/x40; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x41 { auth_jwt "api"; auth_jwt_key_request /k/x41; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x42 { auth_jwt "api"; auth_jwt_key_request /k/x42; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x43 { auth_jwt "api"; auth_jwt_key_request /k/x43; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x44 { auth_jwt "api"; auth_jwt_key_request /k/x44; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x45 { auth_jwt "api"; auth_jwt_key_request /k/x45; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x46 { auth_jwt "api"; auth_jwt_key_request /k/x46; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x47 { auth_jwt "api"; auth_jwt_key_request /k/x47; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x48 { auth_jwt "api"; auth_jwt_key_request /k/x48; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x49 { auth_jwt "api"; auth_jwt_key_request /k/x49; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x50 { auth_jwt "api"; auth_jwt_key_request /k/x50; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x51 { auth_jwt "api"; auth_jwt_key_request /k/x51; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x52 { auth_jwt "api"; auth_jwt_key_request /k/x52; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x53 { auth_jwt "api"; auth_jwt_key_request /k/x53; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x54 { auth_jwt "api"; auth_jwt_key_request /k/x54; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x55 { auth_jwt "api"; auth_jwt_key_request /k/x55; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x56 { auth_jwt "api"; auth_jwt_key_request /k/x56; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x57 { auth_jwt "api"; auth_jwt_key_request /k/x57; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x58 { auth_jwt "api"; auth_jwt_key_request /k/x58; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x59 { auth_jwt "api"; auth_jwt_key_request /k/x59; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x60 { auth_jwt "api"; auth_jwt_key_request /k/x60; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x61 { auth_jwt "api"; auth_jwt_key_request /k/x61; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x62 { auth_jwt "api"; auth_jwt_key_request /k/x62; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x63 { auth_jwt "api"; auth_jwt_key_request /k/x63; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x64 { auth_jwt "api"; auth_jwt_key_request /k/x64; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x65 { auth_jwt "api"; auth_jwt_key_request /k/x65; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x66 { auth_jwt "api"; auth_jwt_key_request /k/x66; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x67 { auth_jwt "api"; auth_jwt_key_request /k/x67; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x68 { auth_jwt "api"; auth_jwt_key_request /k/x68; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /x69 { auth_jwt "api"; auth_jwt_key_request /k/x69; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
--- reload_after_request: 0
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}"
--- concurrent_request
GET /t{i}
--- concurrent_requests: 70
--- concurrency: 10
--- status_counts
200: 70
--- request eval
["GET /x0", "GET /x69", "GET /metrics"]
--- response_body_like eval
[qr/^upstream reached sub=alice\n\z/, qr/^upstream reached sub=alice\n\z/, qr/gateway_jwks_fetch_total/]
--- prometheus
gateway_jwks_fetch_total{result="ok"} 72
gateway_jwks_fetch_total{result="failed"} 0
--- no_error_log
[error]
--- error_log eval
[
    'jwt: freed the entries of 70 URIs no longer configured in the "gateway_jwks" zone',
]



=== TEST 22: a reload frees the zone's entries of URIs the new configuration does not name; a full zone is an [error] naming it, the fetch counts as failed
# auth_jwt_key_zone 1m holds three 300 KB sets (74 pages each of about 250), not four. The
# first configuration fills it with /k/a1../k/a3; the reloaded one names /k/b1../k/b4 instead:
# the a-sets are freed when the zone is taken over, the b-sets fit again but the fourth one.
--- project_only: reloads between requests (reload_*); the metrics are parsed (prometheus)
--- http_config
    auth_jwt_key_zone 1m;
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
    proxy_set_header X-User $jwt_claim_sub;
    location /k/ {
        internal;
        rewrite ^ /big.json break;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        subrequest_output_buffer_size 1m;
    }
    location = /metrics {
        gateway_metrics;
    }
    location = /a1 { auth_jwt "api"; auth_jwt_key_request /k/a1; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /a2 { auth_jwt "api"; auth_jwt_key_request /k/a2; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /a3 { auth_jwt "api"; auth_jwt_key_request /k/a3; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
--- reload_config
    proxy_set_header X-User $jwt_claim_sub;
    location /k/ {
        internal;
        rewrite ^ /big.json break;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        subrequest_output_buffer_size 1m;
    }
    location = /metrics {
        gateway_metrics;
    }
    location = /b1 { auth_jwt "api"; auth_jwt_key_request /k/b1; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /b2 { auth_jwt "api"; auth_jwt_key_request /k/b2; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /b3 { auth_jwt "api"; auth_jwt_key_request /k/b3; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /b4 { auth_jwt "api"; auth_jwt_key_request /k/b4; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
--- user_files eval
[["big.json", '{"keys":[$TEST_NGINX_KEY_A],"pad":"' . ("x" x 300000) . '"}']]
--- request eval
["GET /a1", "GET /a2", "GET /a3", "GET /b1", "GET /b2", "GET /b3", "GET /b4", "GET /metrics"]
--- more_headers eval
[("Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}") x 7, 'X-None: 1']
--- error_code eval
[200, 200, 200, 200, 200, 200, 500, 200]
--- reload_after_request: 3
--- prometheus
gateway_jwks_fetch_total{result="ok"} 6
gateway_jwks_fetch_total{result="failed"} 1
--- grep_error_log eval
qr/jwt: (?:freed the entries of \d+ URIs[^,]+|no room in the "gateway_jwks" zone[^;]+)/
--- grep_error_log_out eval
qr/\A(?:jwt: freed the entries of 3 URIs no longer configured in the "gateway_jwks" zone\n(?:jwt: no room in the "gateway_jwks" zone for the response from "\/k\/b4" \(300435 bytes\)\n)?)?\z/
--- shutdown_error_log eval
[
    'jwt: freed the entries of 3 URIs no longer configured in the "gateway_jwks" zone',
    'jwt: no room in the "gateway_jwks" zone for the response from "/k/b4" (300435 bytes)',
    'raise auth_jwt_key_zone (logged once per refresh interval)',
]
=== TEST 23: a fetched set that does not fit in the zone: logged, counted as failed, the previous set stays in force
# The default 8 MB zone (about 2035 pages) holds nine 900 KB sets (220 pages each) and a small
# one, not a tenth large one: /t10's set grows from 430 bytes to 900 KB.
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
    proxy_set_header X-User $jwt_claim_sub;
    location /k/ {
        internal;
        rewrite ^ /big.json break;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        subrequest_output_buffer_size 1m;
    }
    location = /metrics {
        gateway_metrics;
    }
    location = /k/t10 {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/small.json;
        subrequest_output_buffer_size 1m;
    }
    location = /t1 { auth_jwt "api"; auth_jwt_key_request /k/t1; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t2 { auth_jwt "api"; auth_jwt_key_request /k/t2; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t3 { auth_jwt "api"; auth_jwt_key_request /k/t3; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t4 { auth_jwt "api"; auth_jwt_key_request /k/t4; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t5 { auth_jwt "api"; auth_jwt_key_request /k/t5; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t6 { auth_jwt "api"; auth_jwt_key_request /k/t6; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t7 { auth_jwt "api"; auth_jwt_key_request /k/t7; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t8 { auth_jwt "api"; auth_jwt_key_request /k/t8; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t9 { auth_jwt "api"; auth_jwt_key_request /k/t9; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
    location = /t10 { auth_jwt "api"; auth_jwt_key_request /k/t10; auth_jwt_key_cache 1s; auth_jwt_key_refresh_interval 1s; proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream; }
--- user_files eval
[
    ["big.json", '{"keys":[$TEST_NGINX_KEY_A],"pad":"' . ("x" x 900000) . '"}'],
    ["small.json", '$TEST_NGINX_JWKS_A'],
    ["small-grown.json", '{"keys":[$TEST_NGINX_KEY_A],"pad":"' . ("x" x 900000) . '"}'],
]
--- request eval
["GET /t1", "GET /t2", "GET /t3", "GET /t4", "GET /t5", "GET /t6", "GET /t7", "GET /t8", "GET /t9", "GET /t10", "GET /t10", "GET /t10", "GET /metrics"]
--- more_headers eval
[("Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}") x 12, 'X-None: 1']
--- error_code eval
[(200) x 13]
--- response_body_like eval
[(qr/^upstream reached sub=alice\n\z/) x 12, qr/gateway_jwks_fetch_total/]
--- after_request
10 rename html/small-grown.json html/small.json
10 sleep 1.1
--- prometheus
gateway_jwks_fetch_total{result="ok"} 10
gateway_jwks_fetch_total{result="failed"} 1
--- grep_error_log eval
qr/jwt: (?:fetched \d+ keys from "\/k\/t10"|no room in the "gateway_jwks" zone[^;]+)/
--- grep_error_log_out eval
qr/\A(?:jwt: fetched 1 keys from "\/k\/t10"\n(?:jwt: no room in the "gateway_jwks" zone for the response from "\/k\/t10" \(900435 bytes\)\n)?)?\z/
--- shutdown_error_log eval
[
    'jwt: fetched 1 keys from "/k/t10"',
    'jwt: no room in the "gateway_jwks" zone for the response from "/k/t10" (900435 bytes)',
]



=== TEST 24: a fetched set is parsed once per worker, whatever the number of locations using its URI
# Three locations (one with a key file of its own besides) share /_jwks; 60 requests over both
# workers. Each worker parses the set once (the one that fetched it, when checking the
# answer): at most two parses, not one per location and worker.
--- project_only: a concurrent phase (concurrent_*, status_counts, distinct_header_values)
--- log_level: debug
--- http_config
    server {
        listen $TEST_NGINX_SERVER_PORT reuseport;
        server_name reuseport.invalid;
    }
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
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/jwks.json;
    }
    location ~ [0-3]$ {
        auth_jwt "a";
        auth_jwt_key_request /_jwks;
        add_header X-Pid $pid always;
        proxy_set_header X-User $jwt_claim_sub;
        rewrite ^ /upstream break;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location ~ [4-6]$ {
        auth_jwt "b";
        auth_jwt_key_request /_jwks;
        add_header X-Pid $pid always;
        proxy_set_header X-User $jwt_claim_sub;
        rewrite ^ /upstream break;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location ~ [7-9]$ {
        auth_jwt "c";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        auth_jwt_key_request /_jwks;
        add_header X-Pid $pid always;
        proxy_set_header X-User $jwt_claim_sub;
        rewrite ^ /upstream break;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}"
--- concurrent_request
GET /t{i}
--- concurrent_requests: 60
--- concurrency: 20
--- status_counts
200: 60
--- distinct_header_values
X-Pid >= 2
--- grep_error_log eval
qr/jwt: parsed the key set of "[^"]+", generation \d+/
--- grep_error_log_out eval
qr/\A(?:jwt: parsed the key set of "\/_jwks", generation 1\n){1,2}\z/
--- no_error_log
[error]
