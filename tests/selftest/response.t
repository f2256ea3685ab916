# Runner self-test: every block here is WRONG on purpose. The runner runs them inverted:
# the test passes only if the block fails, and its failure report contains each line of
# --- selftest_failure (a runner-only section).
use Test::Nginx::Socket 'no_plan';
run_tests();

__DATA__

=== TEST 1: wrong status (error_code defaults to 200)
--- config
    location /t {
        return 404;
    }
--- request
GET /t
--- selftest_failure
status code: got "404", want "200"



=== TEST 2: wrong explicit status
--- config
    location /t {
        return 201 "x";
    }
--- request
GET /t
--- error_code: 202
--- selftest_failure
status code: got "201", want "202"



=== TEST 3: wrong body
--- config
    location /t {
        return 200 "hello\n";
    }
--- request
GET /t
--- response_body
goodbye
--- selftest_failure
response body differs
- goodbye\n
+ hello\n



=== TEST 4: body differs only by the final newline (chomp)
--- config
    location /t {
        return 200 "hello\n";
    }
--- request
GET /t
--- response_body chomp
hello
--- selftest_failure
response body differs
want 5 bytes, got 6 bytes



=== TEST 5: missing header
--- config
    location /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- response_headers
X-Wanted: yes
--- selftest_failure
response header 'X-Wanted': got "", want "yes" (header absent)



=== TEST 6: header that must be absent is present
--- config
    location /t {
        add_header X-Secret leaked;
        return 200 "ok\n";
    }
--- request
GET /t
--- response_headers
!X-Secret
--- selftest_failure
response header 'X-Secret' should be absent, but is "leaked"



=== TEST 7: header with a wrong value; header names are case-insensitive
--- config
    location /t {
        add_header X-Value one;
        return 200 "ok\n";
    }
--- request
GET /t
--- response_headers
x-value: two
--- selftest_failure
response header 'x-value': got "one", want "two"



=== TEST 8: response_headers_like is anchored
--- config
    location /t {
        add_header X-Value abc;
        return 200 "ok\n";
    }
--- request
GET /t
--- response_headers_like
X-Value: b
--- selftest_failure
response header 'X-Value': got "abc", want a match for /^b$/



=== TEST 9: response_body_like that does not match
--- config
    location /t {
        return 200 "hello\n";
    }
--- request
GET /t
--- response_body_like: ^bye
--- selftest_failure
response body does not match /^bye/s



=== TEST 10: response_body_like: a multi-line value keeps its newline in the pattern
--- config
    location /t {
        return 200 "hello";
    }
--- request
GET /t
--- response_body_like
hello
--- selftest_failure
response body does not match



=== TEST 11: the second of several requests fails
--- config
    location /a { return 200 "a\n"; }
    location /b { return 403; }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[200, 200]
--- selftest_failure
status code (request #2): got "403", want "200"



=== TEST 12: several requests need array expectations
--- config
    location /a { return 200 "a\n"; }
--- request eval
["GET /a", "GET /a"]
--- response_body
a
--- selftest_failure
the expected values must be an array



=== TEST 13: raw_request with bad bytes is a 400, not a 200
--- config
    location /t { return 200 "ok\n"; }
--- raw_request eval
"GET /t HTTP/1.1\r\nHost: localhost\r\nBad\x01Header: x\r\n\r\n"
--- selftest_failure
status code: got "400", want "200"



=== TEST 14: response slower than the request timeout
--- config
    location /t {
        limit_rate 1;
        return 200 "slow body that takes a long time at one byte per second\n";
    }
--- request
GET /t
--- timeout: 0.5
--- selftest_failure
timed out after 0.5s waiting for the server



=== TEST 15: `return` runs before the access phase: deny is not applied
--- config
    location /t {
        deny all;
        return 200 "ok\n";
    }
--- request
GET /t
--- error_code: 403
--- selftest_failure
status code: got "200", want "403"



=== TEST 16: a raw_request without Connection: close: Test::Nginx reads until the server closes
--- config
    location /t { return 200 "ok\n"; }
--- raw_request eval
"GET /t HTTP/1.1\r\nHost: localhost\r\n\r\n"
--- timeout: 0.5
--- response_body
ok
--- selftest_failure
timed out after 0.5s waiting for the server to send more or close the connection (Test::Nginx reads until the connection closes



=== TEST 17: no $TEST_NGINX_* interpolation in a request (Test::Nginx sends it as it is)
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t?port=$TEST_NGINX_SERVER_PORT
--- selftest_failure
request: Test::Nginx does not interpolate $TEST_NGINX_SERVER_PORT here



=== TEST 18: no $TEST_NGINX_* interpolation in more_headers
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- more_headers
X-Root: $TEST_NGINX_SERVER_ROOT
--- selftest_failure
more_headers: Test::Nginx does not interpolate $TEST_NGINX_SERVER_ROOT here



=== TEST 19: no $TEST_NGINX_* interpolation in response_body_like (only $ServerPort)
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body_like: $TEST_NGINX_SERVER_PORT
--- selftest_failure
response_body_like: Test::Nginx does not interpolate $TEST_NGINX_SERVER_PORT here



=== TEST 20: a wide character in a request (Test::Nginx cannot send a Perl wide-character string)
--- config
    location /t { return 200 "ok\n"; }
--- request eval
"GET /t?\x{10FFFF}"
--- selftest_failure
the code point U+10FFFF makes a Perl wide-character string
\xf4\x8f\xbf\xbf



=== TEST 21: $TEST_NGINX_HTML_DIR is not defined (Test::Nginx has no such variable)
--- config
    location /t { alias $TEST_NGINX_HTML_DIR/; }
--- request
GET /t
--- selftest_failure
No environment TEST_NGINX_HTML_DIR defined



=== TEST 22: $ENV{TEST_NGINX_RAND_PORT_1} is not in Perl's %ENV
--- config
    location /t { return 200 "ok\n"; }
--- request eval
"GET /t?p=$ENV{TEST_NGINX_RAND_PORT_1}"
--- selftest_failure
$ENV{TEST_NGINX_RAND_PORT_1} is not defined



=== TEST 23: no $TEST_NGINX_* interpolation in user_files names (only in their contents)
--- config
    location /t { return 200 "ok\n"; }
--- user_files
>>> $TEST_NGINX_SERVER_PORT.txt
hello
--- request
GET /t
--- selftest_failure
user_files: Test::Nginx does not interpolate $TEST_NGINX_SERVER_PORT here
