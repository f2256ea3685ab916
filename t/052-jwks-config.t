# Configuration mistakes with remote key sets and discovery: nginx refuses to start (as
# `nginx -t` does), with an [emerg] line naming the directive. must_die blocks read error.log,
# whose lines say `[emerg] PID#TID: message` (nginx's stderr says `nginx: [emerg] message`).
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

log_level('info');
no_shuffle();
run_tests();

__DATA__

=== TEST 1: auth_jwt_key_request without a leading /
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:1/jwks.json;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request _jwks;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: (?:invalid value "_jwks" in "auth_jwt_key_request" directive)/



=== TEST 2: auth_jwt_key_request with a variable
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:1/jwks.json;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks$arg_x;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "\/_jwks\$arg_x" in "auth_jwt_key_request" directive, a local URI such as \/_jwks is expected \(no variables\)/



=== TEST 3: auth_jwt_oidc_discovery without a leading /
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:1/jwks.json;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_oidc_discovery http://idp/.well-known/openid-configuration;
        auth_jwt_key_request /_jwks;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: (?:invalid value "http:\/\/idp\/.well-known\/openid-configuration" in "auth_jwt_oidc_discovery" directive)/



=== TEST 4: auth_jwt_oidc_discovery without auth_jwt_key_request
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:1/jwks.json;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_oidc_discovery /_oidc;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt" is on in location "\/t" but "auth_jwt_oidc_discovery" needs "auth_jwt_key_request"/



=== TEST 5: auth_jwt_key_cache: a bad time
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:1/jwks.json;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        auth_jwt_key_cache 10 minutes;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid number of arguments in "auth_jwt_key_cache" directive/



=== TEST 6: auth_jwt_key_cache: not a time
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:1/jwks.json;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        auth_jwt_key_cache soon;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: (?:invalid value "soon" in "auth_jwt_key_cache" directive)/



=== TEST 7: auth_jwt_key_refresh_interval: not a time
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:1/jwks.json;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        auth_jwt_key_refresh_interval -5s;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: (?:invalid value "-5s" in "auth_jwt_key_refresh_interval" directive)/



=== TEST 8: auth_jwt_key_max_stale: not a time
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:1/jwks.json;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        auth_jwt_key_max_stale 1x;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: (?:invalid value "1x" in "auth_jwt_key_max_stale" directive)/



=== TEST 9: auth_jwt_key_unavailable: neither 500 nor 401
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:1/jwks.json;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        auth_jwt_key_unavailable 503;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: (?:invalid value "503" in "auth_jwt_key_unavailable" directive)/



=== TEST 10: auth_jwt_key_request twice
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:1/jwks.json;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        auth_jwt_key_request /_jwks2;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: (?:"auth_jwt_key_request" directive is duplicate)/



=== TEST 11: a valid remote-key configuration is accepted (nginx -t would say ok)
--- config
    location = /_oidc {
        internal;
        proxy_pass http://127.0.0.1:1/openid-configuration;
    }
    location = /_jwks {
        internal;
        proxy_pass $jwt_jwks_uri;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_oidc_discovery /_oidc;
        auth_jwt_key_request /_jwks;
        auth_jwt_key_cache 5m;
        auth_jwt_key_refresh_interval 10s;
        auth_jwt_key_max_stale 1h;
        auth_jwt_key_unavailable 401;
        proxy_pass http://127.0.0.1:1;
    }
--- request
GET /_oidc
--- error_code: 404



=== TEST 12: auth_jwt_oidc_discovery: an unknown parameter
--- config
    location = /_jwks {
        internal;
        proxy_pass $jwt_jwks_uri;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_oidc_discovery /_oidc allow_https;
        auth_jwt_key_request /_jwks;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "allow_https" in "auth_jwt_oidc_discovery" directive, the only parameter is "allow_http"/



=== TEST 13: auth_jwt_key_zone: smaller than 32k
--- http_config
    auth_jwt_key_zone 16k;
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:1/jwks.json;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "16k" in "auth_jwt_key_zone" directive, the zone must be at least 32k/



=== TEST 14: auth_jwt_key_zone: not a size
--- http_config
    auth_jwt_key_zone big;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "big" in "auth_jwt_key_zone" directive/



=== TEST 15: auth_jwt_key_zone twice
--- http_config
    auth_jwt_key_zone 1m;
    auth_jwt_key_zone 2m;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt_key_zone" directive is duplicate/



=== TEST 16: auth_jwt_key_zone is for the http block only
--- config
    location /t {
        auth_jwt_key_zone 1m;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt_key_zone" directive is not allowed here/



=== TEST 17: auth_jwt_key_zone and allow_http in a valid configuration (nginx -t would say ok)
--- http_config
    auth_jwt_key_zone 64k;
--- config
    location = /_oidc {
        internal;
        proxy_pass http://127.0.0.1:1/openid-configuration;
    }
    location = /_jwks {
        internal;
        proxy_pass $jwt_jwks_uri;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_oidc_discovery /_oidc allow_http;
        auth_jwt_key_request /_jwks;
        proxy_pass http://127.0.0.1:1;
    }
--- request
GET /_oidc
--- error_code: 404
