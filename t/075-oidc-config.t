# Browser sign-in configuration (README, "auth_oidc"): what nginx -t refuses, and what a
# request gets before any provider is involved. The flows against a real OpenID provider are
# in scripts/test-oidc.py (run by scripts/test).
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

log_level('info');
no_shuffle();
run_tests();

__DATA__
=== TEST 1: an oidc_provider without an issuer
--- http_config
    oidc_provider idp {
        client_id gateway;
        discovery_request /_d;
        keys_request /_k;
        token_request /_t;
        redirect_uri /cb;
    }
--- config
    location /t { return 204; }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: oidc_provider "idp" needs "issuer"/



=== TEST 2: an unknown directive inside the block names itself
--- http_config
    oidc_provider idp {
        issuer https://idp.example;
        client_idd gateway;
    }
--- config
    location /t { return 204; }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: unknown directive "client_idd" in oidc_provider "idp"/



=== TEST 3: auth_oidc names a provider that does not exist
--- config
    location /t {
        auth_oidc nope;
        return 204;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: unknown oidc_provider "nope" \(declare it with "oidc_provider" before use\)/



=== TEST 4: a scope without openid
--- http_config
    oidc_provider idp {
        issuer https://idp.example;
        client_id gateway;
        discovery_request /_d;
        keys_request /_k;
        token_request /_t;
        redirect_uri /cb;
        scope "profile email";
    }
--- config
    location /t { return 204; }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: oidc_provider "idp": "scope" must include "openid"/



=== TEST 5: private_key_jwt needs its key
--- http_config
    oidc_provider idp {
        issuer https://idp.example;
        client_id gateway;
        client_auth private_key_jwt alg=RS256;
    }
--- config
    location /t { return 204; }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "client_auth private_key_jwt" needs key=PATH/



=== TEST 6: no session and no provider reachable: an API request is 401 with a Bearer challenge, never a redirect; the provider is not asked
--- http_config
    oidc_provider idp {
        issuer http://127.0.0.1:1;
        client_id gateway;
        client_secret s;
        discovery_request /_oidc/discovery;
        keys_request /_oidc/keys;
        token_request /_oidc/token;
        redirect_uri /oidc/callback;
        allow_http;
    }
--- config
    location = /_oidc/discovery { internal; return 404; }
    location = /_oidc/keys { internal; return 404; }
    location = /_oidc/token { internal; return 404; }
    location /api {
        auth_oidc idp;
        proxy_pass http://127.0.0.1:1;
    }
    location /oidc {
        auth_oidc idp;
        proxy_pass http://127.0.0.1:1;
    }
--- request
GET /api/x
--- more_headers
Accept: application/json
Cookie: gw_session=forged-or-expired
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="oidc"
Location:
--- no_error_log
fetching



=== TEST 7: a callback without the browser's state cookie is refused before anything is exchanged; its code and state never reach the log
--- http_config
    oidc_provider idp {
        issuer http://127.0.0.1:1;
        client_id gateway;
        client_secret s;
        discovery_request /_oidc/discovery;
        keys_request /_oidc/keys;
        token_request /_oidc/token;
        redirect_uri /oidc/callback;
        allow_http;
    }
--- config
    location = /_oidc/token { internal; return 500; }
    location /api {
        auth_oidc idp;
        proxy_pass http://127.0.0.1:1;
    }
    location /oidc {
        auth_oidc idp;
        proxy_pass http://127.0.0.1:1;
    }
--- request
GET /oidc/callback?code=secret-code-123&state=secret-state-456
--- error_code: 400
--- response_body_like: "reason":"state_mismatch"
--- error_log eval
qr/oidc refused: the state is not the one this browser was given \(state_mismatch\), status 400.*request: "GET \/oidc\/callback\?code=\[REDACTED\]&state=\[REDACTED\] HTTP\/1\.1"/
--- no_error_log
secret-code-123
secret-state-456



=== TEST 8: a state cookie that matches no login under way (forged, expired or already used): 400 state_unknown
--- http_config
    oidc_provider idp {
        issuer http://127.0.0.1:1;
        client_id gateway;
        client_secret s;
        discovery_request /_oidc/discovery;
        keys_request /_oidc/keys;
        token_request /_oidc/token;
        redirect_uri /oidc/callback;
        allow_http;
    }
--- config
    location /api {
        auth_oidc idp;
        proxy_pass http://127.0.0.1:1;
    }
    location /oidc {
        auth_oidc idp;
        proxy_pass http://127.0.0.1:1;
    }
--- request
GET /oidc/callback?code=c&state=forged
--- more_headers
Cookie: gw_session_state=forged
--- error_code: 400
--- response_body_like: "reason":"state_unknown"



=== TEST 9: a provider's error answer on the callback is a 401 naming it, never passed on as HTML
--- http_config
    oidc_provider idp {
        issuer http://127.0.0.1:1;
        client_id gateway;
        discovery_request /_oidc/discovery;
        keys_request /_oidc/keys;
        token_request /_oidc/token;
        redirect_uri /oidc/callback;
        allow_http;
    }
--- config
    location /api {
        auth_oidc idp;
        proxy_pass http://127.0.0.1:1;
    }
    location /oidc {
        auth_oidc idp;
        proxy_pass http://127.0.0.1:1;
    }
--- request
GET /oidc/callback?error=access_denied%3Cscript%3E&state=s
--- error_code: 401
--- response_body_like: "detail":"the provider answered error \\"access_deniedscript\\"","reason":"provider_error"



=== TEST 10: two providers behind one discovery location would read each other's documents: refused
--- http_config
    oidc_provider a {
        issuer https://a.example;
        client_id gateway;
        discovery_request /_oidc/discovery;
        keys_request /_oidc/a/keys;
        token_request /_oidc/a/token;
        redirect_uri /cb;
    }
    oidc_provider b {
        issuer https://b.example;
        client_id gateway;
        discovery_request /_oidc/discovery;
        keys_request /_oidc/b/keys;
        token_request /_oidc/b/token;
        redirect_uri /cb;
    }
--- config
    location /t { return 204; }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: oidc_provider "b": discovery_request "\/_oidc\/discovery" is used by oidc_provider "a" too; give each provider its own locations/



=== TEST 11: a callback naming another issuer (RFC 9207 iss) is refused before anything is exchanged
--- http_config
    oidc_provider idp {
        issuer http://127.0.0.1:1;
        client_id gateway;
        discovery_request /_oidc/discovery;
        keys_request /_oidc/keys;
        token_request /_oidc/token;
        redirect_uri /oidc/callback;
        allow_http;
    }
--- config
    location /oidc {
        auth_oidc idp;
        proxy_pass http://127.0.0.1:1;
    }
--- request
GET /oidc/callback?code=c&state=s&iss=https%3A%2F%2Fevil.example
--- more_headers
Cookie: gw_session_state=s
--- error_code: 400
--- response_body_like: "reason":"issuer_mismatch"



=== TEST 12: session_store: Sentinel and Cluster URLs are refused; tls_* parameters need rediss://
--- http_config
    oidc_provider idp {
        issuer https://idp.example;
        client_id gateway;
        discovery_request /_d;
        keys_request /_k;
        token_request /_t;
        redirect_uri /cb;
        session_store redis-sentinel://127.0.0.1:26379/m;
    }
--- config
    location /t { return 204; }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: oidc_provider "idp": "session_store" speaks to one server only/



=== TEST 12b: session_store: tls_* parameters need rediss://, the CA file must load
--- http_config
    oidc_provider idp {
        issuer https://idp.example;
        client_id gateway;
        discovery_request /_d;
        keys_request /_k;
        token_request /_t;
        redirect_uri /cb;
        session_store redis://127.0.0.1:6380 tls_ca=/etc/ssl/certs/ca-certificates.crt;
    }
--- config
    location /t { return 204; }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: oidc_provider "idp": the "tls_\*" parameters of "session_store" need "rediss:\/\/"/



=== TEST 12c: session_store rediss:// with a CA that cannot be read
--- http_config
    oidc_provider idp {
        issuer https://idp.example;
        client_id gateway;
        discovery_request /_d;
        keys_request /_k;
        token_request /_t;
        redirect_uri /cb;
        session_store rediss://127.0.0.1:6380 tls_ca=/nonexistent/ca.pem;
    }
--- config
    location /t { return 204; }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: oidc_provider "idp" session_store: cannot load the trusted CAs "\/nonexistent\/ca\.pem" \(tls_ca\)/



=== TEST 13: SECURITY-CASES 16: the discovery document cannot be had: a browser gets 500, never a redirect built without it
--- http_config
    oidc_provider idp {
        issuer http://127.0.0.1:1;
        client_id gateway;
        discovery_request /_oidc/discovery;
        keys_request /_oidc/keys;
        token_request /_oidc/token;
        redirect_uri /oidc/callback;
        allow_http;
    }
--- config
    location = /_oidc/discovery { internal; return 404; }
    location = /_oidc/keys { internal; return 404; }
    location /api {
        auth_oidc idp;
        proxy_pass http://127.0.0.1:1;
    }
--- request
GET /api/page
--- more_headers
Accept: text/html
--- error_code: 500
--- response_headers
Location:
Set-Cookie:
--- error_log eval
qr/oidc: no usable discovery document/



=== TEST 14: SECURITY-CASES 20: logins under way are bounded by the session zone; when it is full, the entry closest to its end goes and the log says so, never a silent 5xx
--- http_config
    oidc_provider idp {
        issuer http://127.0.0.1:1;
        client_id gateway;
        discovery_request /_oidc/discovery;
        keys_request /_oidc/keys;
        token_request /_oidc/token;
        redirect_uri /oidc/callback;
        session_zone tiny:64k;
        allow_http;
    }
--- config
    location = /_oidc/discovery { internal; default_type application/json; alias $TEST_NGINX_SERVER_ROOT/html/discovery.json; }
    location = /_oidc/keys { internal; default_type application/json; alias $TEST_NGINX_SERVER_ROOT/html/jwks.json; }
    location /api {
        auth_oidc idp;
        proxy_pass http://127.0.0.1:1;
    }
--- user_files
>>> discovery.json
{"issuer":"http://127.0.0.1:1","jwks_uri":"http://127.0.0.1:1/jwks","authorization_endpoint":"http://127.0.0.1:1/auth","token_endpoint":"http://127.0.0.1:1/token"}
>>> jwks.json
{"keys":[]}
--- project_only: concurrent phase
--- concurrent_request
GET /api/page{i}
--- more_headers
Accept: text/html
--- concurrent_requests: 300
--- concurrency: 10
--- status_counts
302: 300
--- request
GET /api/last
--- error_code: 302
--- error_log eval
qr/\[error\] .*oidc_provider "idp": the session zone is full, the login or session closest to its end was evicted; raise session_zone/
