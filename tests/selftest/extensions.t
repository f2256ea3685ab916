# Runner self-test for the project extensions (concurrent phase, reloads): every block here is
# WRONG on purpose and must fail for the reason given in --- selftest_failure.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;
master_on();
run_tests();

__DATA__

=== TEST 1: a wrong count per status fails the block
--- project_only: runner self-test of the concurrent phase and reloads
--- config
    location /t {
        return 200 "ok\n";
    }
--- concurrent_request
GET /t
--- concurrent_requests: 20
--- concurrency: 5
--- status_counts
200: 19
429: 1
--- selftest_failure
status_counts: got {200: 20}, want {200: 19, 429: 1}



=== TEST 2: a status that is not listed fails the block; the report shows a request per status
--- project_only: runner self-test of the concurrent phase and reloads
--- config
    location /t {
        return 200 "ok\n";
    }
--- concurrent_request
GET /{i}
--- concurrent_requests: 4
--- status_counts
200: 4
--- selftest_failure
status_counts: got {404: 4}, want {200: 4}
GET /0 HTTP/1.1



=== TEST 3: one worker cannot give two distinct X-Pid values
--- project_only: runner self-test of the concurrent phase and reloads
--- config
    location /t {
        add_header X-Pid $pid always;
        return 200 "ok\n";
    }
--- concurrent_request
GET /t
--- concurrent_requests: 20
--- concurrency: 4
--- status_counts
200: 20
--- distinct_header_values
X-Pid >= 2
--- selftest_failure
distinct_header_values: header 'X-Pid' took 1 distinct value(s)
want >= 2



=== TEST 4: concurrent_requests without status_counts is refused
--- project_only: runner self-test of the concurrent phase and reloads
--- config
    location /t {
        return 200 "ok\n";
    }
--- concurrent_request
GET /t
--- concurrent_requests: 3
--- selftest_failure
concurrent_requests needs --- status_counts



=== TEST 5: status_counts without concurrent_requests is refused (no silent check)
--- project_only: runner self-test of the concurrent phase and reloads
--- config
    location /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- status_counts
200: 1
--- selftest_failure
status_counts needs --- concurrent_requests



=== TEST 6: a reload whose configuration nginx refuses fails the block
--- project_only: runner self-test of the concurrent phase and reloads
--- config
    location /t {
        return 200 "one\n";
    }
--- reload_config
    location /t {
        no_such_directive on;
    }
--- request eval
["GET /t", "GET /t"]
--- response_body eval
["one\n", "one\n"]
--- reload_after_request: 1
--- error_log
no_such_directive
--- selftest_failure
the reload was refused
unknown directive "no_such_directive"



=== TEST 7: after a reload the new configuration answers (wrong expectation here)
--- project_only: runner self-test of the concurrent phase and reloads
--- config
    location /t {
        return 200 "one\n";
    }
--- reload_config
    location /t {
        return 200 "two\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_body eval
["one\n", "one\n"]
--- reload_after_request: 1
--- selftest_failure
response body (request #2) differs
- one\n
+ two\n



=== TEST 8: reload_after_request beyond the requests sent is refused
--- project_only: runner self-test of the concurrent phase and reloads
--- config
    location /t {
        return 200 "one\n";
    }
--- request
GET /t
--- response_body
one
--- reload_after_request: 2
--- selftest_failure
reload_after_request: 2, but the block sends 1 request(s)
