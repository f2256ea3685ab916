# The foundation: the module loads, the `gateway` switch is parsed and checked, the access
# handler runs (debug line; both test nginx builds have --with-debug), $gateway_request_id.
use Test::Nginx::Socket 'no_plan';

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
    location /t {
        alias html/index.html;
    }
    location /on {
        gateway on;
        alias html/index.html;
    }
--- user_files
>>> index.html
static
--- request eval
["GET /t", "GET /on"]
--- response_body eval
["static\n", "static\n"]
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
qr/\[emerg\] invalid number of arguments in "gateway" directive in \S+nginx\.conf:\d+/



=== TEST 6: gateway twice in one block is refused
--- config
    location /t {
        gateway on;
        gateway off;
    }
--- must_die
--- error_log eval
qr/\[emerg\] "gateway" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 7: $gateway_request_id: 32 hex digits, the same within a request, sent upstream
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "upstream saw $http_x_request_id\n";
        }
    }
--- config
    location /t {
        proxy_set_header X-Request-Id $gateway_request_id;
        add_header X-Request-Id $gateway_request_id;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_headers_like
X-Request-Id: [0-9a-f]{32}
--- response_body_like chomp
^upstream saw [0-9a-f]{32}$



=== TEST 8: $gateway_request_id differs between requests (2 workers)
--- config
    location /t {
        return 200 "$gateway_request_id\n";
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- response_body_like eval
[qr/^[0-9a-f]{32}\n$/, qr/^[0-9a-f]{32}\n$/, qr/^[0-9a-f]{32}\n$/]
