# Runner self-test of check_accum_error_log(): each log check reads error.log from its start
# (see response.t for how self-tests work).
use Test::Nginx::Socket 'no_plan';
check_accum_error_log();
run_tests();

__DATA__

=== TEST 1: with check_accum_error_log() a line of request 2 is still missing at the check after request 1
--- config
    location /a { deny all; }
    location /b { }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[403, 404]
--- error_log
access forbidden by rule
failed (2: No such file or directory)
--- selftest_failure
error_log: "failed (2: No such file or directory)" should match a line in error.log (error.log up to request #1)
