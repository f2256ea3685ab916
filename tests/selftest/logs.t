# Runner self-test: blocks that must fail on error-log checks (see response.t for how).
use Test::Nginx::Socket 'no_plan';
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
