# Trust boundary: nothing the module exposes can break a header line (README, "Security").
#
# A validly signed token whose claims or header members hold CR, LF, CRLF, NUL, an obs-fold
# ("\r\n "), DEL or other control bytes must not add a header line upstream, smuggle a
# request on the upstream connection, or split the client's response. Every variable the module
# defines yields only HTAB, SP, visible ASCII and bytes >= 0x80: a value with any other byte is
# withheld (the variable is not found, so proxy_set_header/add_header send no such header).
# Values rendered as JSON (objects, nested arrays) carry JSON escapes instead and pass.
#
# Tokens are HS256 with t/keys/hs256.jwk, pasted literally; t/gen/jwt-tokens.sh prints them
# (section "t/023-jwt-header-safety.t") with the comment above each. Each token holds the same
# string in the header member `x`, the claim `name`, an element of `roles` and `org.name`.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;
use Cwd qw(cwd);

$ENV{TEST_NGINX_KEYS} ||= cwd() . '/t/keys';

log_level('info');
no_shuffle();
run_tests();

__DATA__
=== TEST 1: proxy_set_header: a claim, an array element, a nested claim set, a header member (both forms) never carry a control byte upstream
--- http_config
    auth_jwt_claim_set $org_name org name;
    auth_jwt_header_set $hdr_x x;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "user=[$http_x_user] roles=[$http_x_roles] org=[$http_x_org] orgjson=[$http_x_org_json] hdr=[$http_x_hdr] hx=[$http_x_hx] sub=[$http_x_sub] injected=[$http_x_injected]\n";
        }
    }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        proxy_set_header X-User $jwt_claim_name;
        proxy_set_header X-Roles $jwt_claim_roles;
        proxy_set_header X-Org $org_name;
        proxy_set_header X-Org-Json $jwt_claim_org;
        proxy_set_header X-Hdr $jwt_header_x;
        proxy_set_header X-Hx $hdr_x;
        proxy_set_header X-Sub $jwt_claim_sub;
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
    "GET /t",
]
--- more_headers eval
[
    # HS256, kid hs256, header x = "M\rX-Injected: 1", sub alice, exp 2100, name = "M\rX-Injected: 1", roles ["user", "M\rX-Injected: 1"], org {"name": "M\rX-Injected: 1"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ik1cclgtSW5qZWN0ZWQ6IDEifQ.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJNXHJYLUluamVjdGVkOiAxIiwib3JnIjp7Im5hbWUiOiJNXHJYLUluamVjdGVkOiAxIn0sInJvbGVzIjpbInVzZXIiLCJNXHJYLUluamVjdGVkOiAxIl0sInN1YiI6ImFsaWNlIn0.jsEUAS63KK_0dOWVuFE1ZCl_Dhk9rbPe1yAf7m7zM0k\nX-User: admin",
    # HS256, kid hs256, header x = "M\nX-Injected: 1", sub alice, exp 2100, name = "M\nX-Injected: 1", roles ["user", "M\nX-Injected: 1"], org {"name": "M\nX-Injected: 1"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ik1cblgtSW5qZWN0ZWQ6IDEifQ.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJNXG5YLUluamVjdGVkOiAxIiwib3JnIjp7Im5hbWUiOiJNXG5YLUluamVjdGVkOiAxIn0sInJvbGVzIjpbInVzZXIiLCJNXG5YLUluamVjdGVkOiAxIl0sInN1YiI6ImFsaWNlIn0.x3XjXEUxsgxbnkMCvFmvegWpt_SPBqqWc8OP_vDr6mw\nX-User: admin",
    # HS256, kid hs256, header x = "M\r\nX-Injected: 1", sub alice, exp 2100, name = "M\r\nX-Injected: 1", roles ["user", "M\r\nX-Injected: 1"], org {"name": "M\r\nX-Injected: 1"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ik1cclxuWC1JbmplY3RlZDogMSJ9.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJNXHJcblgtSW5qZWN0ZWQ6IDEiLCJvcmciOnsibmFtZSI6Ik1cclxuWC1JbmplY3RlZDogMSJ9LCJyb2xlcyI6WyJ1c2VyIiwiTVxyXG5YLUluamVjdGVkOiAxIl0sInN1YiI6ImFsaWNlIn0.2kbgtz9mUj9MIuLBNg0knRNbrSuoBF7nimXFTie60Lg\nX-User: admin",
    # HS256, kid hs256, header x = "M\r\n X-Injected: 1", sub alice, exp 2100, name = "M\r\n X-Injected: 1", roles ["user", "M\r\n X-Injected: 1"], org {"name": "M\r\n X-Injected: 1"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ik1cclxuIFgtSW5qZWN0ZWQ6IDEifQ.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJNXHJcbiBYLUluamVjdGVkOiAxIiwib3JnIjp7Im5hbWUiOiJNXHJcbiBYLUluamVjdGVkOiAxIn0sInJvbGVzIjpbInVzZXIiLCJNXHJcbiBYLUluamVjdGVkOiAxIl0sInN1YiI6ImFsaWNlIn0.aBhBAzJ0gpzBwHlYHIKYw7OX_9vkKP_soxW2i_QAAFA\nX-User: admin",
    # HS256, kid hs256, header x = "M\u0000X-Injected: 1", sub alice, exp 2100, name = "M\u0000X-Injected: 1", roles ["user", "M\u0000X-Injected: 1"], org {"name": "M\u0000X-Injected: 1"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ik1cdTAwMDBYLUluamVjdGVkOiAxIn0.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJNXHUwMDAwWC1JbmplY3RlZDogMSIsIm9yZyI6eyJuYW1lIjoiTVx1MDAwMFgtSW5qZWN0ZWQ6IDEifSwicm9sZXMiOlsidXNlciIsIk1cdTAwMDBYLUluamVjdGVkOiAxIl0sInN1YiI6ImFsaWNlIn0.M4UIXJXgENwa11trqegg3qel7LOU-meEsO5UIfIiZRI\nX-User: admin",
    # HS256, kid hs256, header x = "M\u007fX", sub alice, exp 2100, name = "M\u007fX", roles ["user", "M\u007fX"], org {"name": "M\u007fX"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ik1_WCJ9.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJNf1giLCJvcmciOnsibmFtZSI6Ik1_WCJ9LCJyb2xlcyI6WyJ1c2VyIiwiTX9YIl0sInN1YiI6ImFsaWNlIn0.xlPb9zj3LuyGm7HOCIIts8WCL88M2z6k9QByaUMJJ98\nX-User: admin",
    # HS256, kid hs256, header x = "M\u0001\u001b[31m\u000b\u000cX", sub alice, exp 2100, name = "M\u0001\u001b[31m\u000b\u000cX", roles ["user", "M\u0001\u001b[31m\u000b\u000cX"], org {"name": "M\u0001\u001b[31m\u000b\u000cX"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ik1cdTAwMDFcdTAwMWJbMzFtXHUwMDBiXGZYIn0.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJNXHUwMDAxXHUwMDFiWzMxbVx1MDAwYlxmWCIsIm9yZyI6eyJuYW1lIjoiTVx1MDAwMVx1MDAxYlszMW1cdTAwMGJcZlgifSwicm9sZXMiOlsidXNlciIsIk1cdTAwMDFcdTAwMWJbMzFtXHUwMDBiXGZYIl0sInN1YiI6ImFsaWNlIn0.hl-MCAaY4p4VgbxM3D-156TSlDbkbI1pJfrFX12gCwE\nX-User: admin",
]
--- response_body eval
[
    'user=[] roles=[] org=[] orgjson=[{"name":"M\rX-Injected: 1"}] hdr=[] hx=[] sub=[alice] injected=[]' . "\n",
    'user=[] roles=[] org=[] orgjson=[{"name":"M\nX-Injected: 1"}] hdr=[] hx=[] sub=[alice] injected=[]' . "\n",
    'user=[] roles=[] org=[] orgjson=[{"name":"M\r\nX-Injected: 1"}] hdr=[] hx=[] sub=[alice] injected=[]' . "\n",
    'user=[] roles=[] org=[] orgjson=[{"name":"M\r\n X-Injected: 1"}] hdr=[] hx=[] sub=[alice] injected=[]' . "\n",
    'user=[] roles=[] org=[] orgjson=[{"name":"M\u0000X-Injected: 1"}] hdr=[] hx=[] sub=[alice] injected=[]' . "\n",
    'user=[] roles=[] org=[] orgjson=[{"name":"M\u007fX"}] hdr=[] hx=[] sub=[alice] injected=[]' . "\n",
    'user=[] roles=[] org=[] orgjson=[{"name":"M\u0001\u001b[31m\u000b\fX"}] hdr=[] hx=[] sub=[alice] injected=[]' . "\n",
]
--- error_log eval
qr/gateway: variable value withheld: it holds the control byte 0x(?:0d|0a|00|7f|01)/



=== TEST 2: add_header: the client's response is never split, whatever the token holds
--- http_config
    auth_jwt_claim_set $org_name org name;
    auth_jwt_header_set $hdr_x x;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "ok\n";
        }
    }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        add_header X-User $jwt_claim_name always;
        add_header X-Roles $jwt_claim_roles always;
        add_header X-Org $org_name always;
        add_header X-Hdr $jwt_header_x always;
        add_header X-Hx $hdr_x always;
        add_header X-Sub $jwt_claim_sub always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
[
    # HS256, kid hs256, header x = "M\rX-Injected: 1", sub alice, exp 2100, name = "M\rX-Injected: 1", roles ["user", "M\rX-Injected: 1"], org {"name": "M\rX-Injected: 1"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ik1cclgtSW5qZWN0ZWQ6IDEifQ.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJNXHJYLUluamVjdGVkOiAxIiwib3JnIjp7Im5hbWUiOiJNXHJYLUluamVjdGVkOiAxIn0sInJvbGVzIjpbInVzZXIiLCJNXHJYLUluamVjdGVkOiAxIl0sInN1YiI6ImFsaWNlIn0.jsEUAS63KK_0dOWVuFE1ZCl_Dhk9rbPe1yAf7m7zM0k",
    # HS256, kid hs256, header x = "M\nX-Injected: 1", sub alice, exp 2100, name = "M\nX-Injected: 1", roles ["user", "M\nX-Injected: 1"], org {"name": "M\nX-Injected: 1"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ik1cblgtSW5qZWN0ZWQ6IDEifQ.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJNXG5YLUluamVjdGVkOiAxIiwib3JnIjp7Im5hbWUiOiJNXG5YLUluamVjdGVkOiAxIn0sInJvbGVzIjpbInVzZXIiLCJNXG5YLUluamVjdGVkOiAxIl0sInN1YiI6ImFsaWNlIn0.x3XjXEUxsgxbnkMCvFmvegWpt_SPBqqWc8OP_vDr6mw",
    # HS256, kid hs256, header x = "M\r\nX-Injected: 1", sub alice, exp 2100, name = "M\r\nX-Injected: 1", roles ["user", "M\r\nX-Injected: 1"], org {"name": "M\r\nX-Injected: 1"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ik1cclxuWC1JbmplY3RlZDogMSJ9.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJNXHJcblgtSW5qZWN0ZWQ6IDEiLCJvcmciOnsibmFtZSI6Ik1cclxuWC1JbmplY3RlZDogMSJ9LCJyb2xlcyI6WyJ1c2VyIiwiTVxyXG5YLUluamVjdGVkOiAxIl0sInN1YiI6ImFsaWNlIn0.2kbgtz9mUj9MIuLBNg0knRNbrSuoBF7nimXFTie60Lg",
    # HS256, kid hs256, header x = "M\r\n X-Injected: 1", sub alice, exp 2100, name = "M\r\n X-Injected: 1", roles ["user", "M\r\n X-Injected: 1"], org {"name": "M\r\n X-Injected: 1"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ik1cclxuIFgtSW5qZWN0ZWQ6IDEifQ.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJNXHJcbiBYLUluamVjdGVkOiAxIiwib3JnIjp7Im5hbWUiOiJNXHJcbiBYLUluamVjdGVkOiAxIn0sInJvbGVzIjpbInVzZXIiLCJNXHJcbiBYLUluamVjdGVkOiAxIl0sInN1YiI6ImFsaWNlIn0.aBhBAzJ0gpzBwHlYHIKYw7OX_9vkKP_soxW2i_QAAFA",
    # HS256, kid hs256, header x = "M\u0000X-Injected: 1", sub alice, exp 2100, name = "M\u0000X-Injected: 1", roles ["user", "M\u0000X-Injected: 1"], org {"name": "M\u0000X-Injected: 1"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ik1cdTAwMDBYLUluamVjdGVkOiAxIn0.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJNXHUwMDAwWC1JbmplY3RlZDogMSIsIm9yZyI6eyJuYW1lIjoiTVx1MDAwMFgtSW5qZWN0ZWQ6IDEifSwicm9sZXMiOlsidXNlciIsIk1cdTAwMDBYLUluamVjdGVkOiAxIl0sInN1YiI6ImFsaWNlIn0.M4UIXJXgENwa11trqegg3qel7LOU-meEsO5UIfIiZRI",
    # HS256, kid hs256, header x = "M\u007fX", sub alice, exp 2100, name = "M\u007fX", roles ["user", "M\u007fX"], org {"name": "M\u007fX"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ik1_WCJ9.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJNf1giLCJvcmciOnsibmFtZSI6Ik1_WCJ9LCJyb2xlcyI6WyJ1c2VyIiwiTX9YIl0sInN1YiI6ImFsaWNlIn0.xlPb9zj3LuyGm7HOCIIts8WCL88M2z6k9QByaUMJJ98",
    # HS256, kid hs256, header x = "M\u0001\u001b[31m\u000b\u000cX", sub alice, exp 2100, name = "M\u0001\u001b[31m\u000b\u000cX", roles ["user", "M\u0001\u001b[31m\u000b\u000cX"], org {"name": "M\u0001\u001b[31m\u000b\u000cX"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ik1cdTAwMDFcdTAwMWJbMzFtXHUwMDBiXGZYIn0.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJNXHUwMDAxXHUwMDFiWzMxbVx1MDAwYlxmWCIsIm9yZyI6eyJuYW1lIjoiTVx1MDAwMVx1MDAxYlszMW1cdTAwMGJcZlgifSwicm9sZXMiOlsidXNlciIsIk1cdTAwMDFcdTAwMWJbMzFtXHUwMDBiXGZYIl0sInN1YiI6ImFsaWNlIn0.hl-MCAaY4p4VgbxM3D-156TSlDbkbI1pJfrFX12gCwE",
    # HS256, kid hs256, header x = "Zo\u00eb\t\u6f22\u5b57 \ud83d\ude00", sub alice, exp 2100, name = "Zo\u00eb\t\u6f22\u5b57 \ud83d\ude00", roles ["user", "Zo\u00eb\t\u6f22\u5b57 \ud83d\ude00"], org {"name": "Zo\u00eb\t\u6f22\u5b57 \ud83d\ude00"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ilpvw6tcdOa8ouWtlyDwn5iAIn0.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJab8OrXHTmvKLlrZcg8J-YgCIsIm9yZyI6eyJuYW1lIjoiWm_Dq1x05ryi5a2XIPCfmIAifSwicm9sZXMiOlsidXNlciIsIlpvw6tcdOa8ouWtlyDwn5iAIl0sInN1YiI6ImFsaWNlIn0.crIq-v_L9vvoK3_HipnY52i8sWfqvKC-b49bjPkwICk",
]
--- response_headers eval
[
    "!X-User\n!X-Roles\n!X-Org\n!X-Hdr\n!X-Hx\n!X-Injected\nX-Sub: alice\n",
    "!X-User\n!X-Roles\n!X-Org\n!X-Hdr\n!X-Hx\n!X-Injected\nX-Sub: alice\n",
    "!X-User\n!X-Roles\n!X-Org\n!X-Hdr\n!X-Hx\n!X-Injected\nX-Sub: alice\n",
    "!X-User\n!X-Roles\n!X-Org\n!X-Hdr\n!X-Hx\n!X-Injected\nX-Sub: alice\n",
    "!X-User\n!X-Roles\n!X-Org\n!X-Hdr\n!X-Hx\n!X-Injected\nX-Sub: alice\n",
    "!X-User\n!X-Roles\n!X-Org\n!X-Hdr\n!X-Hx\n!X-Injected\nX-Sub: alice\n",
    "!X-User\n!X-Roles\n!X-Org\n!X-Hdr\n!X-Hx\n!X-Injected\nX-Sub: alice\n",
    "X-User: Zoë\t漢字 😀\nX-Roles: user,Zoë\t漢字 😀\nX-Org: Zoë\t漢字 😀\nX-Hdr: Zoë\t漢字 😀\nX-Hx: Zoë\t漢字 😀\n!X-Injected\nX-Sub: alice\n",
]
--- raw_response_headers_unlike eval
[
    qr/X-Injected|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r[^\n]|[^\r]\n|\n[ \t]/,
    qr/X-Injected|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r[^\n]|[^\r]\n|\n[ \t]/,
    qr/X-Injected|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r[^\n]|[^\r]\n|\n[ \t]/,
    qr/X-Injected|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r[^\n]|[^\r]\n|\n[ \t]/,
    qr/X-Injected|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r[^\n]|[^\r]\n|\n[ \t]/,
    qr/X-Injected|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r[^\n]|[^\r]\n|\n[ \t]/,
    qr/X-Injected|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r[^\n]|[^\r]\n|\n[ \t]/,
    qr/X-Injected|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r[^\n]|[^\r]\n|\n[ \t]/,
]
--- response_body eval
["ok\n", "ok\n", "ok\n", "ok\n", "ok\n", "ok\n", "ok\n", "ok\n"]



=== TEST 3: $jwt_payload is the payload as signed: JSON whitespace CR/LF or a raw DEL withholds it, JSON escapes and HTAB pass
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "payload=[$http_x_payload] sub=[$http_x_sub] injected=[$http_x_injected]\n";
        }
    }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        proxy_set_header X-Payload $jwt_payload;
        proxy_set_header X-Sub $jwt_claim_sub;
        add_header X-Payload $jwt_payload always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
[
    # HS256, kid hs256, raw payload {"sub":"alice",<CR><LF><CR><LF>"exp":4102444800}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsDQoNCiJleHAiOjQxMDI0NDQ4MDB9.Q_FXCFhfX9rkdXOj3oqJscHg4LFUYlwFLZsxsh9-0T8",
    # HS256, kid hs256, raw payload {"sub":"alice","exp":4102444800,"n":"a<DEL>b"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMCwibiI6ImF_YiJ9.nVR4tebK3P4XQzrdVyEPMqcFd3LykuHQZEcAM52j1cg",
    # HS256, kid hs256, raw payload {"sub":"alice",<TAB>"exp":4102444800}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsCSJleHAiOjQxMDI0NDQ4MDB9.AZ0UZrLcyAO7y6CKNf6eDsjI8cxg7PoPiYkliLDFTAk",
    # HS256, kid hs256, header x = "M\r\nX-Injected: 1", sub alice, exp 2100, name = "M\r\nX-Injected: 1", roles ["user", "M\r\nX-Injected: 1"], org {"name": "M\r\nX-Injected: 1"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ik1cclxuWC1JbmplY3RlZDogMSJ9.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJNXHJcblgtSW5qZWN0ZWQ6IDEiLCJvcmciOnsibmFtZSI6Ik1cclxuWC1JbmplY3RlZDogMSJ9LCJyb2xlcyI6WyJ1c2VyIiwiTVxyXG5YLUluamVjdGVkOiAxIl0sInN1YiI6ImFsaWNlIn0.2kbgtz9mUj9MIuLBNg0knRNbrSuoBF7nimXFTie60Lg",
]
--- response_body eval
[
    "payload=[] sub=[alice] injected=[]\n",
    "payload=[] sub=[alice] injected=[]\n",
    "payload=[{\"sub\":\"alice\",\t\"exp\":4102444800}] sub=[alice] injected=[]\n",
    'payload=[{"exp":4102444800,"name":"M\r\nX-Injected: 1","org":{"name":"M\r\nX-Injected: 1"},"roles":["user","M\r\nX-Injected: 1"],"sub":"alice"}] sub=[alice] injected=[]' . "\n",
]
--- response_headers eval
[
    "!X-Payload",
    "!X-Payload",
    "X-Payload: {\"sub\":\"alice\",\t\"exp\":4102444800}",
    'X-Payload: {"exp":4102444800,"name":"M\r\nX-Injected: 1","org":{"name":"M\r\nX-Injected: 1"},"roles":["user","M\r\nX-Injected: 1"],"sub":"alice"}',
]



=== TEST 4: $gateway_log_json and $gateway_request_id: client bytes echoed in the record stay escaped
--- config
    location /t {
        gateway_log_field evil $http_x_evil;
        add_header X-Log $gateway_log_json always;
        add_header X-Id $gateway_request_id always;
        return 200 "ok\n";
    }
--- request
GET /t?a=%0d%0aX-Injected:%201
--- more_headers eval
"X-Evil: a\x01b\x7fc\x1bd\tz"
--- response_headers_like
X-Log: \{.*"path":"/t".*"evil":"a\\u0001b\\u007fc\\u001bd\\tz"\}
X-Id: [0-9a-f]{32}
!X-Injected
--- raw_response_headers_unlike eval
qr/X-Injected|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r[^\n]|[^\r]\n|\n[ \t]/
--- response_body
ok



=== TEST 5: a withheld claim counts as absent everywhere: auth_jwt_require on it refuses the token
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "upstream reached\n";
        }
    }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        auth_jwt_require $jwt_claim_name;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # HS256, kid hs256, header x = "M\r\nX-Injected: 1", sub alice, exp 2100, name = "M\r\nX-Injected: 1", roles ["user", "M\r\nX-Injected: 1"], org {"name": "M\r\nX-Injected: 1"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ik1cclxuWC1JbmplY3RlZDogMSJ9.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJNXHJcblgtSW5qZWN0ZWQ6IDEiLCJvcmciOnsibmFtZSI6Ik1cclxuWC1JbmplY3RlZDogMSJ9LCJyb2xlcyI6WyJ1c2VyIiwiTVxyXG5YLUluamVjdGVkOiAxIl0sInN1YiI6ImFsaWNlIn0.2kbgtz9mUj9MIuLBNg0knRNbrSuoBF7nimXFTie60Lg",
]
--- error_code eval
[401]
--- response_body_like eval
[
    qr/\A<html>\r\n<head><title>401 Authorization Required<\/title>/,
]
--- error_log
gateway: jwt refused: auth_jwt_require failed (require_failed), status 401



=== TEST 6: proxy_set_header: a token whose values hold HTAB, non-ASCII UTF-8 and an emoji but no control byte: every variable goes upstream as it is
--- http_config
    auth_jwt_claim_set $org_name org name;
    auth_jwt_header_set $hdr_x x;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "user=[$http_x_user] roles=[$http_x_roles] org=[$http_x_org] orgjson=[$http_x_org_json] hdr=[$http_x_hdr] hx=[$http_x_hx] sub=[$http_x_sub] injected=[$http_x_injected]\n";
        }
    }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        proxy_set_header X-User $jwt_claim_name;
        proxy_set_header X-Roles $jwt_claim_roles;
        proxy_set_header X-Org $org_name;
        proxy_set_header X-Org-Json $jwt_claim_org;
        proxy_set_header X-Hdr $jwt_header_x;
        proxy_set_header X-Hx $hdr_x;
        proxy_set_header X-Sub $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # HS256, kid hs256, header x = "Zo\u00eb\t\u6f22\u5b57 \ud83d\ude00", sub alice, exp 2100, name = "Zo\u00eb\t\u6f22\u5b57 \ud83d\ude00", roles ["user", "Zo\u00eb\t\u6f22\u5b57 \ud83d\ude00"], org {"name": "Zo\u00eb\t\u6f22\u5b57 \ud83d\ude00"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ilpvw6tcdOa8ouWtlyDwn5iAIn0.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJab8OrXHTmvKLlrZcg8J-YgCIsIm9yZyI6eyJuYW1lIjoiWm_Dq1x05ryi5a2XIPCfmIAifSwicm9sZXMiOlsidXNlciIsIlpvw6tcdOa8ouWtlyDwn5iAIl0sInN1YiI6ImFsaWNlIn0.crIq-v_L9vvoK3_HipnY52i8sWfqvKC-b49bjPkwICk\nX-User: admin",
]
--- response_body eval
[
    "user=[Zoë\t漢字 😀] roles=[user,Zoë\t漢字 😀] org=[Zoë\t漢字 😀] orgjson=[{\"name\":\"Zoë\\t漢字 😀\"}] hdr=[Zoë\t漢字 😀] hx=[Zoë\t漢字 😀] sub=[alice] injected=[]\n",
]
--- no_error_log
value withheld



=== TEST 7: a claim without control bytes (HTAB, non-ASCII UTF-8) satisfies auth_jwt_require
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "upstream reached\n";
        }
    }
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs256.jwk;
        auth_jwt_require $jwt_claim_name;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
[
    "GET /t",
]
--- more_headers eval
[
    # HS256, kid hs256, header x = "Zo\u00eb\t\u6f22\u5b57 \ud83d\ude00", sub alice, exp 2100, name = "Zo\u00eb\t\u6f22\u5b57 \ud83d\ude00", roles ["user", "Zo\u00eb\t\u6f22\u5b57 \ud83d\ude00"], org {"name": "Zo\u00eb\t\u6f22\u5b57 \ud83d\ude00"}
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMjU2IiwidHlwIjoiSldUIiwieCI6Ilpvw6tcdOa8ouWtlyDwn5iAIn0.eyJleHAiOjQxMDI0NDQ4MDAsIm5hbWUiOiJab8OrXHTmvKLlrZcg8J-YgCIsIm9yZyI6eyJuYW1lIjoiWm_Dq1x05ryi5a2XIPCfmIAifSwicm9sZXMiOlsidXNlciIsIlpvw6tcdOa8ouWtlyDwn5iAIl0sInN1YiI6ImFsaWNlIn0.crIq-v_L9vvoK3_HipnY52i8sWfqvKC-b49bjPkwICk",
]
--- error_code eval
[200]
--- response_body_like eval
[
    qr/^upstream reached$/,
]
--- no_error_log
jwt refused
