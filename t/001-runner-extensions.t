# The project's runner extensions (see t/README.md, "Project extensions"), against plain nginx:
# a concurrent phase with exact counts per status, and a reload between requests. These
# sections are not Test::Nginx's: run this file with the project runner (cargo test), not prove.
use Test::Nginx::Socket 'no_plan';

workers(2);
master_on();
no_shuffle();
run_tests();

__DATA__

=== TEST 1: concurrent phase: {i} numbers the requests, statuses are counted exactly, both workers answer
--- http_config
    # reuseport on the test port (the runner's own listen has no options): the kernel spreads
    # the connections over both workers, so X-Pid >= 2 is not left to chance.
    server {
        listen 127.0.0.1:$TEST_NGINX_SERVER_PORT reuseport;
        server_name reuseport.invalid;
    }
--- config
    location /t {
        add_header X-Pid $pid always;
        if ($arg_n ~ [05]$) {
            return 404;
        }
        return 200 "ok\n";
    }
--- concurrent_request
GET /t?n={i}
--- concurrent_requests: 200
--- concurrency: 20
--- status_counts
200: 160
404: 40
--- distinct_header_values
X-Pid >= 2
X-Nothing == 0



=== TEST 2: a concurrent phase, then ordinary requests
--- config
    location /t {
        return 200 "ok\n";
    }
--- more_headers
X-N: {i}
--- concurrent_request
GET /t
--- concurrent_requests: 10
--- status_counts
200: 10
--- request
GET /t
--- response_body
ok



=== TEST 3: reload between requests: new workers with the new configuration, pid unchanged
--- config
    location /t {
        return 200 "one $pid\n";
    }
--- reload_config
    location /t {
        return 200 "two\n";
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- response_body eval
[qr/^one \d+\n$/, "two\n", "two\n"]
--- reload_after_request: 1
--- error_log
signal 1 (SIGHUP) received
reconfiguring



=== TEST 4: reload before the first request, same configuration
--- config
    location /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- response_body
ok
--- reload_after_request: 0
--- error_log
reconfiguring
