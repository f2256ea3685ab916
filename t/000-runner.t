# Checks of the t/ runner itself against plain nginx (no module loaded): every block here must
# pass with the runner (cargo test --test t) and with prove (scripts/test-prove), which is how
# the runner is shown to mean what Test::Nginx::Socket means. Blocks that must FAIL live in
# tests/selftest/.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

workers(1);
master_on();
log_level('info');
repeat_each(1);
no_shuffle();
no_long_string();

$ENV{TEST_NGINX_RUNNER_GREETING} ||= 'hi there';

run_tests();

__DATA__

=== TEST 1: return with a body; a multi-line section keeps its final newline
--- config
    location /t {
        return 200 "hello\n";
    }
--- request
GET /t
--- error_code: 200
--- response_body
hello



=== TEST 2: error_code defaults to 200; chomp and inline values have no final newline
--- config
    location /t {
        return 200 "hello";
    }
--- request
    GET /t
--- response_body chomp
hello



=== TEST 3: static files from user_files, in subdirectories too
--- config
--- user_files
>>> index.html
<h1>index</h1>
>>> sub/dir/a.txt
a file
--- request eval
["GET /", "GET /sub/dir/a.txt", "GET /nope.txt"]
--- error_code eval
[200, 200, 404]
--- response_body eval
["<h1>index</h1>\n", "a file\n", qr/404 Not Found/]
--- response_headers eval
["Content-Type: text/html", "Content-Type: text/plain\nContent-Length: 7", "!Last-Modified"]



=== TEST 4: several requests: access_log is checked after each one, against the whole access.log
--- config
    location /t {
        return 200 "$request_uri\n";
    }
--- request eval
["GET /t?a=1", "GET /t?a=2", "GET /t?a=" . "x" x 3]
--- response_body eval
["/t?a=1\n", "/t?a=2\n", "/t?a=xxx\n"]
--- access_log
"GET /t?a=1 HTTP/1.1" 200
--- no_access_log
"GET /t?a=4 HTTP/1.1"



=== TEST 5: raw_request with a bad byte in a header name gets 400
--- config
    location /t {
        return 200 "ok\n";
    }
--- raw_request eval
"GET /t HTTP/1.1\r\nHost: localhost\r\nBad\x01Header: x\r\nConnection: close\r\n\r\n"
--- error_code: 400
--- response_body_like: 400 Bad Request
--- error_log
client sent invalid header line



=== TEST 6: raw_request in HTTP/1.0: nginx closes the connection, which ends the response
--- config
    location /t {
        return 200 "ok\n";
    }
--- raw_request eval
"GET /t HTTP/1.0\r\nHost: localhost\r\n\r\n"
--- raw_response_headers_like: ^HTTP/1\.1 200 OK\r\n.*Connection: close\r\n
--- response_body
ok



=== TEST 7: response_headers: exact values (repeated headers joined with ", "), absence with !Name
--- config
    location /t {
        add_header X-Present yes;
        add_header X-Twice 1;
        add_header X-Twice 2;
        return 200 "ok\n";
    }
--- request
GET /t
--- response_headers
X-Present: yes
X-Twice: 1, 2
!X-Absent
!Location



=== TEST 8: must_die with an unknown directive
--- config
    location /t {
        no_such_directive_here on;
    }
--- must_die
--- error_log
unknown directive "no_such_directive_here"



=== TEST 9: must_die with the exit code and an eval regex
--- http_config
    server_tokens maybe;
--- config
--- must_die: 1
--- error_log eval
qr/invalid value "maybe" in .*nginx\.conf:\d+/



=== TEST 10: access phase: deny works on locations without return (return runs first)
--- config
    location /deny {
        deny all;
    }
--- request
GET /deny
--- error_code: 403
--- error_log eval
[qr/access forbidden by rule, client: 127\.0\.0\.1/, "request: \"GET /deny HTTP/1.1\""]
--- no_error_log
[warn]
[crit]



=== TEST 11: proxy_pass to this block's own port via $TEST_NGINX_SERVER_PORT
--- config
    location /proxy {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
    }
    location /backend {
        return 200 "backend on $server_port\n";
    }
--- request
GET /proxy
--- response_body
backend on $TEST_NGINX_SERVER_PORT



=== TEST 12: a backend server block on $TEST_NGINX_RAND_PORT_1 in http_config
--- http_config
    upstream backend {
        server 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "from backend: $uri\n";
        }
    }
--- config
    location /api/ {
        allow 127.0.0.1;
        deny all;
        proxy_pass http://backend;
    }
--- request
GET /api/x
--- response_body
from backend: /api/x



=== TEST 13: request body gets a Content-Length; more_headers are sent
--- config
    location /t {
        return 200 "len=$http_content_length foo=$http_x_foo host=$host\n";
    }
--- request
POST /t
hello world
--- more_headers
X-Foo: bar
# a comment line
--- response_body
len=11 foo=bar host=localhost



=== TEST 14: more_headers eval, one set per request
--- config
    location /t {
        return 200 "$http_x_n\n";
    }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["X-N: 1", "X-N: 2"]
--- response_body eval
["1\n", "2\n"]



=== TEST 15: chunked response (ssi) is decoded
--- config
    ssi on;
--- user_files
>>> page.html
port <!--# echo var="server_port" -->!
--- request
GET /page.html
--- response_headers
Transfer-Encoding: chunked
!Content-Length
--- response_body
port $TEST_NGINX_SERVER_PORT!



=== TEST 16: HEAD request has no body; HTTP/1.0 request line
--- config
    location /t {
        return 200 "hello\n";
    }
--- request eval
["HEAD /t", "GET /t HTTP/1.0"]
--- response_body eval
["", "hello\n"]
--- response_headers eval
["Content-Length: 6", "Content-Length: 6"]



=== TEST 17: response_body_like is unanchored with /s (. matches a newline); $ServerPort in it is the port
--- config
    location /t {
        return 200 "line one\nline two on $server_port\n";
    }
--- request
GET /t
--- response_body_like chomp
one.line two on $ServerPort



=== TEST 18: response_body eval qr// with flags
--- config
    location /t {
        return 200 "Hello\nWorld {\"a\": 1}\n";
    }
--- request
GET /t
--- response_body eval
qr/^world \{"a": 1\}$/mi



=== TEST 19: per-block log_level (warn: no [notice] or [info] line); a --- wait before the checks
--- log_level: warn
--- config
    location /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- wait: 0.1
--- response_body
ok
--- no_error_log
[notice]
[info]



=== TEST 20: interpolation of TEST_NGINX_* variables from the environment (preamble $ENV)
--- config
    location /t {
        return 200 "$TEST_NGINX_RUNNER_GREETING from $TEST_NGINX_SERVER_ROOT\n";
    }
--- request
GET /t
--- response_body
hi there from $TEST_NGINX_SERVER_ROOT



=== TEST 21: an [alert] that the block expects does not fail it
--- main_config
    worker_rlimit_nofile 999999999;
--- config
    location /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- error_log
[alert]
setrlimit(RLIMIT_NOFILE, 999999999) failed



=== TEST 22: error_code_like, raw_response_headers_like, timeout, skip_nginx (not skipped)
--- skip_nginx: 3: < 1.0.0
--- timeout: 5
--- config
    location /t {
        return 204;
    }
--- request
GET /t
--- error_code_like: ^20[0-9]$
--- raw_response_headers_like: ^HTTP/1\.1 204 No Content\r\n
--- response_body



=== TEST 23: main_config and post_main_config go to the main context
--- main_config
    env RUNNER_UNUSED_VAR;
--- post_main_config
    timer_resolution 100ms;
--- config
    location /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- response_body
ok



=== TEST 24: grep_error_log: the matching parts of the lines each request logged (one line each)
--- config
    location /t {
        deny all;
    }
--- request eval
["GET /t?1", "GET /t?2"]
--- error_code eval
[403, 403]
--- grep_error_log eval: qr/access forbidden by \w+/
--- grep_error_log_out
access forbidden by rule



=== TEST 25: response_headers_like: values are anchored regexes; !Name: absent (or empty)
--- config
    location /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- response_headers_like
Content-Length: \d+
Server: nginx(/[\d.]+)?
!X-Absent



=== TEST 26: response_body_unlike alone
--- config
    location /t {
        return 200 "line one\nline two\n";
    }
--- request
GET /t
--- response_body_unlike: three



=== TEST 27: several requests: error_log is checked against the lines each request logged (both log it)
--- config
--- request eval
["GET /nope.txt", "GET /sub/nope.txt"]
--- error_code eval
[404, 404]
--- error_log
failed (2: No such file or directory)
--- no_error_log
[alert]



=== TEST 28: the lines nginx logs while it stops are for shutdown_error_log, not error_log
--- config
    location /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- shutdown_error_log
gracefully shutting down
--- no_error_log
gracefully shutting down



=== TEST 29: $ENV{NAME} in eval sections (a request, more_headers); a one-element request array takes plain expected values
--- config
    location /t {
        return 200 "$arg_port $http_x_greeting\n";
    }
--- request eval
["GET /t?port=$ENV{TEST_NGINX_SERVER_PORT}"]
--- more_headers eval
"X-Greeting: $ENV{TEST_NGINX_RUNNER_GREETING}"
--- response_body
$TEST_NGINX_SERVER_PORT hi there
