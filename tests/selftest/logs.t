# Runner self-test: blocks that must fail on error-log checks (see response.t for how).
use Test::Nginx::Socket 'no_plan';
master_on();
log_level('info');
run_tests();

__DATA__

=== TEST 1: an expected error_log line that never comes
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- error_log
this text is never logged
--- selftest_failure
error_log: "this text is never logged" should match a line in error.log



=== TEST 2: an expected error_log regex that never matches
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- error_log eval
[qr/never \d+ logged/, "start worker process"]
--- selftest_failure
error_log: qr/never \d+ logged/ should match a line in error.log



=== TEST 3: a no_error_log line that is logged
--- config
    location /t { deny all; }
--- request
GET /t
--- error_code: 403
--- no_error_log
[error]
--- selftest_failure
no_error_log: "[error]" should not match any line in error.log, but matches:
access forbidden by rule



=== TEST 4: an unexpected [alert] fails the block
--- main_config
    worker_rlimit_nofile 999999999;
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- selftest_failure
unexpected [alert] in the error log
setrlimit(RLIMIT_NOFILE, 999999999) failed



=== TEST 5: an access_log line that is not there
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- access_log
"GET /other HTTP/1.1"
--- selftest_failure
access_log: "\"GET /other HTTP/1.1\"" should match a line in access.log



=== TEST 6: grep_error_log with a wrong count
--- config
    location /t { deny all; }
--- request
GET /t
--- error_code: 403
--- grep_error_log chop
access forbidden
--- grep_error_log_out
access forbidden
access forbidden
--- selftest_failure
grep_error_log_out: the lines matching "access forbidden" differ



=== TEST 7: several requests: error_log is checked against the lines each request logged (the line comes only with request 2)
--- config
    location /a { deny all; }
    location /b { }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[403, 404]
--- error_log
failed (2: No such file or directory)
--- selftest_failure
error_log: "failed (2: No such file or directory)" should match a line in error.log (lines logged for request #1)



=== TEST 8: several requests: grep_error_log_out is compared per request (each logs one line)
--- config
    location /a { deny all; }
--- request eval
["GET /a", "GET /a"]
--- error_code eval
[403, 403]
--- grep_error_log chop
access forbidden by rule
--- grep_error_log_out
access forbidden by rule
access forbidden by rule
--- selftest_failure
grep_error_log_out: the lines matching "access forbidden by rule" (lines logged for request #1) differ



=== TEST 9: several requests: access_log is checked after each request (request 2's line is not there after request 1)
--- config
    location /a { return 200 "a\n"; }
    location /b { return 200 "b\n"; }
--- request eval
["GET /a", "GET /b"]
--- response_body eval
["a\n", "b\n"]
--- access_log
"GET /b HTTP/1.1"
--- selftest_failure
access_log: "\"GET /b HTTP/1.1\"" should match a line in access.log (lines logged for request #1)



=== TEST 10: error_log is checked before nginx stops: a line logged while it exits is not seen
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- error_log eval
qr/\[notice\] \d+#\d+: exiting/
--- selftest_failure
error_log: qr/\[notice\] \d+#\d+: exiting/ should match a line in error.log



=== TEST 11: shutdown_error_log reads only the lines after the last check
--- config
    location /t { deny all; }
--- request
GET /t
--- error_code: 403
--- shutdown_error_log
access forbidden by rule
--- selftest_failure
shutdown_error_log: "access forbidden by rule" should match a line in error.log (lines logged after the last check, through nginx's exit)



=== TEST 12: no $TEST_NGINX_* interpolation in log patterns (Test::Nginx looks for the text as it is)
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- no_error_log
port $TEST_NGINX_SERVER_PORT
--- selftest_failure
no_error_log: Test::Nginx does not interpolate $TEST_NGINX_SERVER_PORT here
