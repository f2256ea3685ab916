# Panic containment: every entry point from nginx into Rust catches panics. The module built
# by scripts/test has a test-only trigger (cargo feature test-hooks): a request header
# `X-Gateway-Test-Panic: <entry point>` makes that entry point panic. The request gets 500,
# the error log has an [error] line with the panic message (and no [alert]), and the worker
# lives on to serve the next request. Each log check reads the whole error.log
# (check_accum_error_log), so the panic line of the first request is still seen after the
# second one.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

workers(1);
master_on();
log_level('info');
no_shuffle();
check_accum_error_log();
run_tests();

__DATA__

=== TEST 1: a panic in the access handler answers 500 and the worker serves the next request
--- config
    location /t {
        gateway on;
        alias html/index.html;
    }
--- user_files
>>> index.html
static
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["X-Gateway-Test-Panic: access", ""]
--- error_code eval
[500, 200]
--- response_body_like eval
[qr/500 Internal Server Error/, qr/^static$/]
--- error_log eval
qr/\[error\] \d+#\d+: \*\d+ gateway: panic: .*gateway test panic in access/
--- no_error_log
[alert]
exited on signal



=== TEST 2: a panic in a variable handler makes the variable empty (not found), not the worker fail
--- config
    location /t {
        return 200 "id $gateway_request_id\n";
    }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["X-Gateway-Test-Panic: variable", ""]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/^id $/, qr/^id [0-9a-f]{32}$/]
--- error_log eval
qr/\[error\] .*gateway: panic: .*gateway test panic in variable/
--- no_error_log
[alert]
exited on signal



=== TEST 3: a panic in the log handler loses only that request's log work
--- config
    location /t {
        gateway_log logs/gw.json;
        alias html/index.html;
    }
--- user_files
>>> index.html
static
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["X-Gateway-Test-Panic: log", ""]
--- error_code eval
[200, 200]
--- error_log eval
qr/\[error\] .*gateway: panic: .*gateway test panic in log/
--- no_error_log
[alert]
exited on signal
