# The foundation: the module loads, the `gateway` switch is parsed and checked, the access
# handler runs (debug line; both test nginx builds have --with-debug), $gateway_request_id.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

workers(2);
master_on();
no_shuffle();
run_tests();

__DATA__

=== TEST 1: gateway on: the access handler runs for a static file
--- config
    location /t {
        gateway on;
        alias html/index.html;
    }
--- user_files
>>> index.html
static
--- request
GET /t
--- response_body
static
--- error_log
gateway: access phase: enabled



=== TEST 2: gateway off: the access handler does nothing
--- config
    location /t {
        gateway off;
        alias html/index.html;
    }
--- user_files
>>> index.html
static
--- request
GET /t
--- response_body
static
--- error_log
gateway: access phase: disabled
--- no_error_log
gateway: access phase: enabled



=== TEST 3: gateway is inherited from server level and overridable in a location
--- config
    gateway off;
    # /t inherits "off", then try_files hands the request to /on, which says "on": one
    # request goes through the access phase of both locations.
    location /t {
        try_files /nonexistent /on;
    }
    location /on {
        gateway on;
        alias html/index.html;
    }
--- user_files
>>> index.html
static
--- request
GET /t
--- response_body
static
--- error_log
gateway: access phase: disabled
gateway: access phase: enabled



=== TEST 4: a bad value is refused by nginx -t with the file and line
--- config
    location /t {
        gateway maybe;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "maybe" in "gateway" directive, it must be "on" or "off" in \S+nginx\.conf:\d+/



=== TEST 5: gateway with no argument is refused
--- config
    location /t {
        gateway;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid number of arguments in "gateway" directive in \S+nginx\.conf:\d+/



=== TEST 6: gateway twice in one block is refused
--- config
    location /t {
        gateway on;
        gateway off;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "gateway" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 7: $gateway_request_id: 32 hex digits, the same within a request: the header sent upstream equals the one in the response
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            add_header X-Upstream-Saw $http_x_request_id;
            return 200 "upstream saw $http_x_request_id\n";
        }
    }
    # "yes" when the id in the response equals the one the upstream got (a backreference).
    map "$gateway_request_id $upstream_http_x_upstream_saw" $same_id {
        "~^([0-9a-f]{32}) \\1$"  yes;
        default                  no;
    }
--- config
    location /t {
        proxy_set_header X-Request-Id $gateway_request_id;
        add_header X-Request-Id $gateway_request_id;
        add_header X-Same-Id $same_id;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_headers_like
X-Request-Id: [0-9a-f]{32}
X-Same-Id: yes
--- response_body_like chomp
^upstream saw [0-9a-f]{32}$



=== TEST 8: $gateway_request_id differs between requests (2 workers): the client's request and the one it proxies
--- http_config
    # "yes" when the two ids are well-formed and differ, "same" when they are equal.
    map "$gateway_request_id $upstream_http_x_id" $ids_differ {
        "~^([0-9a-f]{32}) \\1$"                 same;
        "~^[0-9a-f]{32} [0-9a-f]{32}$"          yes;
        default                                 bad;
    }
--- config
    location /t {
        add_header X-Ids-Differ $ids_differ;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/id;
    }
    location /id {
        add_header X-Id $gateway_request_id;
        return 200 "$gateway_request_id\n";
    }
--- request
GET /t
--- response_headers
X-Ids-Differ: yes
--- response_body_like: ^[0-9a-f]{32}\n$
