# Project runner only: every block uses the runner's extensions (t/README.md, "Project
# extensions") and says so with --- project_only, so prove skips them all.
# Against plain nginx: a concurrent phase with exact counts per status, and a reload between
# requests.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

workers(2);
master_on();
no_shuffle();
run_tests();

__DATA__

=== TEST 1: concurrent phase: {i} numbers the requests, statuses are counted exactly, both workers answer
--- project_only: concurrent phase
--- http_config
    # reuseport on the test port (the runner's own listen has no options): the kernel spreads
    # the connections over both workers, so X-Pid >= 2 is not left to chance.
    server {
        listen $TEST_NGINX_SERVER_PORT reuseport;
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



=== TEST 2: a concurrent phase ({i} in more_headers too), then an ordinary request (more_headers as written)
--- project_only: concurrent phase
--- config
    location /t {
        add_header X-N $http_x_n;
        return 200 "n=$http_x_n\n";
    }
--- more_headers
X-N: {i}
--- concurrent_request
GET /t
--- concurrent_requests: 10
--- status_counts
200: 10
--- distinct_header_values
X-N == 10
--- request
GET /t
--- response_body
n={i}



=== TEST 3: reload between requests: the requests after it get the new configuration
--- project_only: reload between requests
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



=== TEST 4: reload before the first request, same configuration
--- project_only: reload before the request
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
