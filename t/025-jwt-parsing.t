# How the token path reads JSON: member names and string values written with escapes mean what
# their decoded text means (the path reads the claims it needs in place, without building the
# claim set; the full set is built for $jwt_claim_* and claim rules), and a name written twice
# is refused at any position, in the header and in the payload, also when one spelling uses
# escapes or when the object has more members than the reader keeps inline (16). A value read in
# place that decodes to control bytes (CR, LF) still never reaches a header line, and the JSON
# log writes it escaped (SECURITY-CASES item 15).
#
# Tokens are pasted literally, each preceded by how it was made (HS256 with t/keys/hs256.jwk,
# gw-jwt sign --raw-header-json H --raw-payload-json P); t/gen/jwt-tokens.sh regenerates them.
# exp 4102444800 is 2100, 1000000000 is 2001.
use Test::Nginx::Socket 'no_plan';
use Cwd qw(cwd);
use lib 't/lib';
use ProjectOnly;

$ENV{TEST_NGINX_KEYS} ||= cwd() . '/t/keys';

log_level('info');
no_shuffle();
run_tests();

__DATA__

=== TEST 1: escaped member names and values: alg, kid, sub, iss, aud and exp are read as their decoded text
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user iss=$http_x_iss aud=$http_x_aud kid=$http_x_kid alg=$http_x_alg\n";
        }
    }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        auth_jwt_issuer https://idp.example/1;
        auth_jwt_audience api;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_set_header X-Iss $jwt_claim_iss;
        proxy_set_header X-Aud $jwt_claim_aud;
        proxy_set_header X-Kid $jwt_header_kid;
        proxy_set_header X-Alg $jwt_header_alg;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # H {"\\u0061lg":"HS256","k\\u0069d":"hs256","typ":"JWT"}, P {"s\\u0075b":"al\\u0069ce","iss":"https://idp.example/\\u0031","aud":["x","\\u0061pi"],"\\u0065xp":4102444800}
    "Authorization: Bearer eyJcdTAwNjFsZyI6IkhTMjU2Iiwia1x1MDA2OWQiOiJoczI1NiIsInR5cCI6IkpXVCJ9.eyJzXHUwMDc1YiI6ImFsXHUwMDY5Y2UiLCJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlL1x1MDAzMSIsImF1ZCI6WyJ4IiwiXHUwMDYxcGkiXSwiXHUwMDY1eHAiOjQxMDI0NDQ4MDB9.TFlml3BhTBu7QDUkMYdNX0YXAECFAJtJHgBGlNfktGE",
]
--- error_code eval
[200]
--- response_body_like eval
[
    qr/\Aupstream reached sub=alice iss=https:\/\/idp.example\/1 aud=x,api kid=hs256 alg=HS256\n\z/,
]
--- no_error_log eval
["[error]", "jwt refused"]



=== TEST 2: an exp whose name is escaped still expires the token (401 expired)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user iss=$http_x_iss aud=$http_x_aud kid=$http_x_kid alg=$http_x_alg\n";
        }
    }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        auth_jwt_issuer https://idp.example/1;
        auth_jwt_audience api;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_set_header X-Iss $jwt_claim_iss;
        proxy_set_header X-Aud $jwt_claim_aud;
        proxy_set_header X-Kid $jwt_header_kid;
        proxy_set_header X-Alg $jwt_header_alg;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # H {"alg":"HS256","kid":"hs256"}, P {"sub":"alice","\\u0065xp":1000000000}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2In0.eyJzdWIiOiJhbGljZSIsIlx1MDA2NXhwIjoxMDAwMDAwMDAwfQ.bGKzySC_LHH5eATZPiCUoU_bytYIJwn4mzkrR91fs1w",
]
--- error_code eval
[401]
--- error_log eval
[
    "gateway: jwt refused: token expired",
]
--- no_error_log eval
["[error]"]



=== TEST 3: sub written twice, once with an escape: refused as malformed, the upstream is not reached
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user iss=$http_x_iss aud=$http_x_aud kid=$http_x_kid alg=$http_x_alg\n";
        }
    }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        auth_jwt_issuer https://idp.example/1;
        auth_jwt_audience api;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_set_header X-Iss $jwt_claim_iss;
        proxy_set_header X-Aud $jwt_claim_aud;
        proxy_set_header X-Kid $jwt_header_kid;
        proxy_set_header X-Alg $jwt_header_alg;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # H {"alg":"HS256","kid":"hs256"}, P {"sub":"alice","s\\u0075b":"admin","exp":4102444800}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2In0.eyJzdWIiOiJhbGljZSIsInNcdTAwNzViIjoiYWRtaW4iLCJleHAiOjQxMDI0NDQ4MDB9.FDZm0iHxFq-VYsnDXMgwmzQp-zdoMI8N7bZJIBgy_3M",
]
--- error_code eval
[401]
--- error_log eval
[
    "payload: duplicate member name",
]
--- no_error_log eval
["[error]"]



=== TEST 4: alg written twice in the header, once escaped naming none: refused before any signature check
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user iss=$http_x_iss aud=$http_x_aud kid=$http_x_kid alg=$http_x_alg\n";
        }
    }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        auth_jwt_issuer https://idp.example/1;
        auth_jwt_audience api;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_set_header X-Iss $jwt_claim_iss;
        proxy_set_header X-Aud $jwt_claim_aud;
        proxy_set_header X-Kid $jwt_header_kid;
        proxy_set_header X-Alg $jwt_header_alg;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # H {"alg":"HS256","kid":"hs256","\\u0061lg":"none"}, P {"sub":"alice","exp":4102444800}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwiXHUwMDYxbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.djtld0mhMWAaCbjQeRhOtz-j-iEBHd9IsobtjyorQ2A",
]
--- error_code eval
[401]
--- error_log eval
[
    "header: duplicate member name",
]
--- no_error_log eval
["[error]"]



=== TEST 5: a claim set of 42 members without a repeated name is accepted
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user iss=$http_x_iss aud=$http_x_aud kid=$http_x_kid alg=$http_x_alg\n";
        }
    }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_set_header X-Iss $jwt_claim_iss;
        proxy_set_header X-Aud $jwt_claim_aud;
        proxy_set_header X-Kid $jwt_header_kid;
        proxy_set_header X-Alg $jwt_header_alg;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # H {"alg":"HS256","kid":"hs256"}, P {"sub":"alice","c1":1, ... "c40":40,"exp":4102444800}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2In0.eyJzdWIiOiJhbGljZSIsImMxIjoxLCJjMiI6MiwiYzMiOjMsImM0Ijo0LCJjNSI6NSwiYzYiOjYsImM3Ijo3LCJjOCI6OCwiYzkiOjksImMxMCI6MTAsImMxMSI6MTEsImMxMiI6MTIsImMxMyI6MTMsImMxNCI6MTQsImMxNSI6MTUsImMxNiI6MTYsImMxNyI6MTcsImMxOCI6MTgsImMxOSI6MTksImMyMCI6MjAsImMyMSI6MjEsImMyMiI6MjIsImMyMyI6MjMsImMyNCI6MjQsImMyNSI6MjUsImMyNiI6MjYsImMyNyI6MjcsImMyOCI6MjgsImMyOSI6MjksImMzMCI6MzAsImMzMSI6MzEsImMzMiI6MzIsImMzMyI6MzMsImMzNCI6MzQsImMzNSI6MzUsImMzNiI6MzYsImMzNyI6MzcsImMzOCI6MzgsImMzOSI6MzksImM0MCI6NDAsImV4cCI6NDEwMjQ0NDgwMH0.GpJ1qJ5UxKVmJVOvEA8aXqK1fi360793M7lb9uKuUsE",
]
--- error_code eval
[200]
--- response_body_like eval
[
    qr/\Aupstream reached sub=alice /,
]
--- no_error_log eval
["[error]", "jwt refused"]



=== TEST 6: the same with c37 repeated (its 3 escaped) after 40 members (past the 16 kept inline): refused
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=$http_x_user iss=$http_x_iss aud=$http_x_aud kid=$http_x_kid alg=$http_x_alg\n";
        }
    }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_set_header X-Iss $jwt_claim_iss;
        proxy_set_header X-Aud $jwt_claim_aud;
        proxy_set_header X-Kid $jwt_header_kid;
        proxy_set_header X-Alg $jwt_header_alg;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # H {"alg":"HS256","kid":"hs256"}, P {"sub":"alice","c1":1, ... "c40":40,"c\\u00337":0,"exp":4102444800}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2In0.eyJzdWIiOiJhbGljZSIsImMxIjoxLCJjMiI6MiwiYzMiOjMsImM0Ijo0LCJjNSI6NSwiYzYiOjYsImM3Ijo3LCJjOCI6OCwiYzkiOjksImMxMCI6MTAsImMxMSI6MTEsImMxMiI6MTIsImMxMyI6MTMsImMxNCI6MTQsImMxNSI6MTUsImMxNiI6MTYsImMxNyI6MTcsImMxOCI6MTgsImMxOSI6MTksImMyMCI6MjAsImMyMSI6MjEsImMyMiI6MjIsImMyMyI6MjMsImMyNCI6MjQsImMyNSI6MjUsImMyNiI6MjYsImMyNyI6MjcsImMyOCI6MjgsImMyOSI6MjksImMzMCI6MzAsImMzMSI6MzEsImMzMiI6MzIsImMzMyI6MzMsImMzNCI6MzQsImMzNSI6MzUsImMzNiI6MzYsImMzNyI6MzcsImMzOCI6MzgsImMzOSI6MzksImM0MCI6NDAsImNcdTAwMzM3IjowLCJleHAiOjQxMDI0NDQ4MDB9.J1GTjmgaRfTgFRnY-EqgTMq1xBDpgPF8yYOH_24_mE4",
]
--- error_code eval
[401]
--- error_log eval
[
    "payload: duplicate member name",
]
--- no_error_log eval
["[error]"]



=== TEST 7: sub and iss written with control bytes (read in place, escaped): withheld from every header line, escaped in the JSON log
--- project_only: the JSON log is checked as data (json_log_*)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        auth_jwt off;
        location / {
            return 200 "upstream reached sub=[$http_x_user] iss=[$http_x_iss] injected=[$http_x_injected]\n";
        }
    }
--- config
    location /t {
        gateway_log logs/gw.json;
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_set_header X-Iss $jwt_claim_iss;
        add_header X-Sub $jwt_claim_sub always;
        add_header X-Iss $jwt_claim_iss always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # H {"alg":"HS256","kid":"hs256"}, P {"s\\u0075b":"al\\r\\nX-Injected: 1","iss":"https://idp.example/\\u000d\\u000aX-Injected: 1","exp":4102444800}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2In0.eyJzXHUwMDc1YiI6ImFsXHJcblgtSW5qZWN0ZWQ6IDEiLCJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlL1x1MDAwZFx1MDAwYVgtSW5qZWN0ZWQ6IDEiLCJleHAiOjQxMDI0NDQ4MDB9.1TKjERIgMV-4ItXgEqHn4kp6OhaUg3Ez6eJIUjwY1lE",
]
--- error_code eval
[200]
--- response_body eval
["upstream reached sub=[] iss=[] injected=[]\n"]
--- response_headers eval
["!X-Sub\n!X-Iss\n!X-Injected\n"]
--- raw_response_headers_unlike eval
[qr/X-Injected|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r[^\n]|[^\r]\n|\n[ \t]/]
--- json_log_file: logs/gw.json
--- json_log_lines: 1
--- json_log_match
1 consumer == "al\r\nX-Injected: 1"
1 auth.iss == "https://idp.example/\r\nX-Injected: 1"
1 auth.result == "valid"
