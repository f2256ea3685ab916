# Runner self-test: blocks that Test::Nginx::Socket (prove) would run differently from what they
# seem to say, so the runner refuses them (see response.t for how self-tests work). This file
# does not load the ProjectOnly hook on purpose.
use Test::Nginx::Socket 'no_plan';
run_tests();

__DATA__

=== TEST 1: a block without --- config (Test::Nginx would reuse the previous block's nginx)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /
--- selftest_failure
the block has no --- config section



=== TEST 2: response_body_like and response_body_unlike together (Test::Nginx checks only the first)
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body_like: ok
--- response_body_unlike: upstream
--- selftest_failure
response_body_like and --- response_body_unlike in one block



=== TEST 3: response_body and response_body_like together
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok
--- response_body_like: ok
--- selftest_failure
response_body and --- response_body_like in one block



=== TEST 4: response_headers and response_headers_like together (Test::Nginx checks only the first)
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- response_headers
Content-Type: text/plain
--- response_headers_like
Content-Length: \d+
--- selftest_failure
response_headers and --- response_headers_like in one block



=== TEST 5: a project section without --- project_only (prove would drop the check silently)
--- config
    location /t { return 200 "ok\n"; }
--- concurrent_request
GET /t
--- concurrent_requests: 2
--- status_counts
200: 2
--- selftest_failure
the block uses the project runner's section(s) concurrent_request, concurrent_requests, status_counts, which prove ignores



=== TEST 6: --- project_only in a file that does not load the hook (prove would run the block)
--- project_only: uses the concurrent phase
--- config
    location /t { return 200 "ok\n"; }
--- concurrent_request
GET /t
--- concurrent_requests: 2
--- status_counts
200: 2
--- selftest_failure
the file's preamble must load the hook



=== TEST 7: --- project_only without a reason
--- project_only
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- selftest_failure
project_only needs a reason



=== TEST 8: must_die with shutdown_error_log (never checked by Test::Nginx)
--- config
    location /t { no_such_directive on; }
--- must_die
--- shutdown_error_log
unknown directive
--- selftest_failure
shutdown_error_log with --- must_die
