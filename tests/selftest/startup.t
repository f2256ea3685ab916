# Runner self-test: blocks that must fail around nginx startup (see response.t for how).
use Test::Nginx::Socket 'no_plan';
run_tests();

__DATA__

=== TEST 1: must_die, but the config is fine and nginx starts
--- config
    location /t { return 200 "ok\n"; }
--- must_die
--- selftest_failure
must_die: nginx started



=== TEST 2: must_die with the wrong exit code
--- config
    location /t { no_such_directive on; }
--- must_die: 2
--- selftest_failure
must_die: nginx should exit with code 2, got exit code 1



=== TEST 3: must_die, but the error message is not the expected one
--- config
    location /t { no_such_directive on; }
--- must_die
--- error_log
invalid number of arguments
--- selftest_failure
should match a line in error.log



=== TEST 4: a config error without must_die
--- config
    location /t { no_such_directive on; }
--- request
GET /t
--- selftest_failure
nginx failed to start (exit code 1)
unknown directive "no_such_directive"



=== TEST 5: a duplicate listen in http_config is a startup failure
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- config
--- request
GET /t
--- selftest_failure
nginx failed to start
a duplicate listen 127.0.0.1:



=== TEST 6: must_die: the log sections read error.log, not nginx's stderr ("nginx: [emerg] ...")
--- config
    location /t { no_such_directive on; }
--- must_die
--- error_log
nginx: [emerg] unknown directive "no_such_directive"
--- selftest_failure
error_log: "nginx: [emerg] unknown directive \"no_such_directive\"" should match a line in error.log



=== TEST 7: master_process is off unless the preamble says master_on() (as in Test::Nginx)
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- error_log
start worker process
--- selftest_failure
error_log: "start worker process" should match a line in error.log



=== TEST 8: the server listens on *:port, so a listen on 127.0.0.1:port with its own socket cannot bind
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_SERVER_PORT reuseport;
        server_name reuseport.invalid;
    }
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- selftest_failure
Address already in use
