# Where the policy comes from (README, "Consumers and central policy"): a file checked on an
# interval, a URL fetched by subrequest, changes applied without a reload, bad documents
# refused with the last good version kept, `nginx -t` checking a file source, and the
# directives' own errors.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;
use Cwd qw(cwd);

$ENV{TEST_NGINX_POLICY} ||= cwd() . '/t/policy';

master_on();
workers(2);
log_level('info');
no_shuffle();
run_tests();

__DATA__
=== TEST 1: a file source that does not exist: nginx -t and start refuse the configuration
--- http_config
    gateway_policy file=$TEST_NGINX_SERVER_ROOT/html/none.json;
--- config
    location /t { return 204; }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: cannot open "\S+\/html\/none\.json": No such file or directory .*in "gateway_policy" directive in \S+nginx\.conf:\d+/



=== TEST 2: an invalid document: the reason code and place are named
--- http_config
    gateway_policy file=$TEST_NGINX_SERVER_ROOT/html/p.json;
--- config
    location /t { return 204; }
--- user_files
>>> p.json
{"version": "x", "consumers": [{"id": "a"}, {"id": "a"}]}
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: policy document "\S+\/html\/p\.json" refused: duplicate_id: .*"a".* in "gateway_policy" directive/



=== TEST 3: a document larger than max_size is refused
--- http_config
    gateway_policy file=$TEST_NGINX_SERVER_ROOT/html/p.json max_size=1k;
--- config
    location /t { return 204; }
--- user_files
>>> p.json
{"version": "x", "consumers": [{"id": "c0"},{"id": "c1"},{"id": "c2"},{"id": "c3"},{"id": "c4"},{"id": "c5"},{"id": "c6"},{"id": "c7"},{"id": "c8"},{"id": "c9"},{"id": "c10"},{"id": "c11"},{"id": "c12"},{"id": "c13"},{"id": "c14"},{"id": "c15"},{"id": "c16"},{"id": "c17"},{"id": "c18"},{"id": "c19"},{"id": "c20"},{"id": "c21"},{"id": "c22"},{"id": "c23"},{"id": "c24"},{"id": "c25"},{"id": "c26"},{"id": "c27"},{"id": "c28"},{"id": "c29"},{"id": "c30"},{"id": "c31"},{"id": "c32"},{"id": "c33"},{"id": "c34"},{"id": "c35"},{"id": "c36"},{"id": "c37"},{"id": "c38"},{"id": "c39"},{"id": "c40"},{"id": "c41"},{"id": "c42"},{"id": "c43"},{"id": "c44"},{"id": "c45"},{"id": "c46"},{"id": "c47"},{"id": "c48"},{"id": "c49"},{"id": "c50"},{"id": "c51"},{"id": "c52"},{"id": "c53"},{"id": "c54"},{"id": "c55"},{"id": "c56"},{"id": "c57"},{"id": "c58"},{"id": "c59"},{"id": "c60"},{"id": "c61"},{"id": "c62"},{"id": "c63"},{"id": "c64"},{"id": "c65"},{"id": "c66"},{"id": "c67"},{"id": "c68"},{"id": "c69"},{"id": "c70"},{"id": "c71"},{"id": "c72"},{"id": "c73"},{"id": "c74"},{"id": "c75"},{"id": "c76"},{"id": "c77"},{"id": "c78"},{"id": "c79"},{"id": "c80"},{"id": "c81"},{"id": "c82"},{"id": "c83"},{"id": "c84"},{"id": "c85"},{"id": "c86"},{"id": "c87"},{"id": "c88"},{"id": "c89"},{"id": "c90"},{"id": "c91"},{"id": "c92"},{"id": "c93"},{"id": "c94"},{"id": "c95"},{"id": "c96"},{"id": "c97"},{"id": "c98"},{"id": "c99"}]}
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: policy document "\S+" refused: too_large: larger than max_size=1024/



=== TEST 4: consumer directives need gateway_policy
--- config
    location /t {
        auth_api_key header=X-API-Key;
        return 204;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_api_key", "auth_consumer" and "auth_consumer_acl" need a "gateway_policy" in the http block/



=== TEST 5: bad parameters
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json url=/p;
--- config
    location /t { return 204; }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "url=\/p" in "gateway_policy" directive, give one source: "file=" or "url="/



=== TEST 6: an interval under one second
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json interval=100ms;
--- config
    location /t { return 204; }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "interval=100ms" in "gateway_policy" directive, must be between 1s and 1d/



=== TEST 7: auth_api_key without a source
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
--- config
    location /t {
        auth_api_key hide_credentials;
        return 204;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_api_key" needs where to read the key: header=, query= or cookie=/



=== TEST 8: rate_limit with both rate= and plan
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
    rate_limit_zone $gateway_consumer zone=c:1m;
--- config
    location /t {
        rate_limit zone=c rate=1r/s plan;
        return 204;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "rate_limit": "rate" and "plan" exclude each other/



=== TEST 9: the file changes: the new version is in force within the interval, without a reload; a broken one is refused and the last good one stays
--- http_config
    gateway_policy file=$TEST_NGINX_SERVER_ROOT/html/policy.json interval=1s;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location /t {
        auth_api_key header=X-API-Key;
        add_header X-Version $gateway_policy_version always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location = /metrics {
        gateway_metrics;
    }
    location = /status {
        gateway_status;
    }
--- project_only: files changed between requests
--- user_files
>>> policy.json
{"version": "v1", "consumers": [{"id": "old", "credentials": {"api_keys": [{"sha256": "6371cb7a907cc8f10740229732c4b6164b285169494b85304468313513427878"}]}}]}
>>> v2.json
{"version": "v2", "consumers": [{"id": "new", "credentials": {"api_keys": [{"sha256": "6371cb7a907cc8f10740229732c4b6164b285169494b85304468313513427878"}]}}]}
>>> broken.json
{"version": "v3", "consumers": [
--- request eval
["GET /t", "GET /t", "GET /t", "GET /status", "GET /metrics"]
--- more_headers eval
["X-API-Key: key-acme", "X-API-Key: key-acme", "X-API-Key: key-acme", "", ""]
--- after_request
1 rename html/v2.json html/policy.json
1 sleep 2
2 rename html/broken.json html/policy.json
2 sleep 2
--- response_body_like eval
["^id=\\[old\\]", "^id=\\[new\\]", "^id=\\[new\\]", qr/"last_error": "document refused: bad_json: .+".*"version": "v2"/s, ".*"]
--- response_headers eval
["X-Version: v1", "X-Version: v2", "X-Version: v2", "", ""]
--- prometheus
gateway_policy_info{version="v2"} 1
gateway_policy_info{version="v1"} absent
gateway_policy_loads_total{result="refused"} 1
gateway_policy_loads_total{result="installed"} 2



=== TEST 10: a URL source: the first request waits for the first fetch; the control plane can be an nginx location
--- http_config
    gateway_policy url=/_policy interval=1s;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location = /_policy {
        internal;
        alias $TEST_NGINX_POLICY/basic.json;
    }
    location /t {
        auth_api_key header=X-API-Key;
        add_header X-Version $gateway_policy_version always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- more_headers
X-API-Key: key-acme
--- response_body_like: ^id=\[acme\]
--- response_headers
X-Version: t-1
--- error_log eval
[qr/\[info\] .*policy: fetching "\/_policy"/, qr/\[notice\] .*policy version "t-1" from url "\/_policy" in force: 6 consumers, 4 api keys, 2 plans, 5 rules/]



=== TEST 11: a URL source that fails: after the wait, 503 policy_unavailable, logged
--- http_config
    gateway_policy url=/_policy interval=1s;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location = /_policy {
        internal;
        return 404;
    }
    location /t {
        auth_api_key header=X-API-Key;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- more_headers
X-API-Key: key-acme
--- error_code: 503
--- response_body_like: "reason":"policy_unavailable"
--- error_log eval
qr/\[error\] .*policy from url "\/_policy": "\/_policy" answered 404; no policy is in force yet/



=== TEST 12: a URL source that changes: a request after the interval starts a conditional fetch (304 keeps the document); the new version is in force for the requests after it
--- http_config
    gateway_policy url=/_policy interval=1s;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location = /_policy {
        internal;
        root html;
        try_files /policy.json =404;
    }
    location /t {
        auth_api_key header=X-API-Key;
        add_header X-Version $gateway_policy_version always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- project_only: files changed between requests
--- user_files
>>> policy.json
{"version": "u1", "consumers": [{"id": "old", "credentials": {"api_keys": [{"sha256": "6371cb7a907cc8f10740229732c4b6164b285169494b85304468313513427878"}]}}]}
>>> v2.json
{"version": "u2", "consumers": [{"id": "new", "credentials": {"api_keys": [{"sha256": "6371cb7a907cc8f10740229732c4b6164b285169494b85304468313513427878"}]}}]}
--- request eval
["GET /t", "GET /t", "GET /t", "GET /t"]
--- more_headers eval
["X-API-Key: key-acme", "X-API-Key: key-acme", "X-API-Key: key-acme", "X-API-Key: key-acme"]
--- after_request
1 sleep 1.5
2 sleep 0.5
2 rename html/v2.json html/policy.json
2 sleep 1.5
3 sleep 1.5
--- response_body_like eval
["^id=\\[old\\]", "^id=\\[old\\]", "^id=\\[old\\]", "^id=\\[new\\]"]
--- response_headers eval
["X-Version: u1", "X-Version: u1", "X-Version: u1", "X-Version: u2"]



=== TEST 13: a reload naming another file puts it in force at once
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
--- config
    location /t {
        add_header X-Version $gateway_policy_version always;
        return 204;
    }
--- project_only: reload between requests
--- user_files
>>> other.json
{"version": "other-1"}
--- request eval
["GET /t", "GET /t"]
--- reload_after_request: 1
--- reload_http_config
    gateway_policy file=$TEST_NGINX_SERVER_ROOT/html/other.json;
--- error_code eval
[204, 204]
--- response_headers eval
["X-Version: t-1", "X-Version: other-1"]



=== TEST 14: SECURITY-CASES 17: the client whose request triggers the policy fetch does not shape it (its Range, If-None-Match, Accept-Encoding, Authorization, Cookie never reach the control plane)
--- http_config
    gateway_policy url=/_policy interval=1s;
    server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; include $TEST_NGINX_POLICY/echo-identity.conf; }
--- config
    location = /_policy {
        internal;
        if ($http_range) { return 416; }
        if ($http_authorization) { return 403; }
        if ($http_cookie) { return 403; }
        if ($http_accept_encoding) { return 406; }
        if ($http_if_none_match) { return 304; }
        alias $TEST_NGINX_POLICY/basic.json;
    }
    location /t {
        auth_api_key header=X-API-Key;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- more_headers
X-API-Key: key-acme
Range: bytes=0-10
If-None-Match: "x"
Accept-Encoding: gzip
Authorization: Bearer forged
Cookie: session=1
--- response_body_like: ^id=\[acme\]
--- error_log eval
qr/\[notice\] .*policy version "t-1" from url "\/_policy" in force/



=== TEST 15: SECURITY-CASES 21: the API key's variable is a credential: gateway_log_field may not log it
--- http_config
    gateway_policy file=$TEST_NGINX_POLICY/basic.json;
--- config
    location /t {
        gateway_log_field key $http_x_api_key;
        auth_api_key header=X-API-Key;
        return 204;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*x_api_key/
