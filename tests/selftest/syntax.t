# Runner self-test: blocks the runner must refuse (see response.t for how).
use Test::Nginx::Socket 'no_plan';
run_tests();

__DATA__

=== TEST 1: a misspelled section is an error, not a silently skipped check
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- response_bdy
ok
--- selftest_failure
unsupported section '--- response_bdy'



=== TEST 2: Perl the runner does not understand
--- config
    location /t { return 200 "ok\n"; }
--- request eval
join("", "GET ", "/t")
--- selftest_failure
unsupported Perl in eval section



=== TEST 3: Perl variable interpolation in a double-quoted string
--- config
    location /t { return 200 "ok\n"; }
--- request eval
"GET /t?port=$port"
--- selftest_failure
Perl variable interpolation



=== TEST 4: an undefined TEST_NGINX_ variable
--- config
    location /t { return 200 "$TEST_NGINX_RUNNER_SURELY_UNDEFINED\n"; }
--- request
GET /t
--- selftest_failure
No environment TEST_NGINX_RUNNER_SURELY_UNDEFINED defined



=== TEST 5: extra lines after an inline section
--- config
    location /t { return 200 "ok\n"; }
--- request: GET /t
GET /other
--- selftest_failure
extra lines are not allowed



=== TEST 6: an unsupported filter
--- config
    location /t { return 200 "ok\n"; }
--- request base64_decode
R0VUIC90
--- selftest_failure
filter 'base64_decode' is not supported



=== TEST 7: a regex feature the regex crate lacks
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body_like: (?=ok)
--- selftest_failure
is not supported by the runner's regex engine



=== TEST 8: no request at all
--- config
    location /t { return 200 "ok\n"; }
--- selftest_failure
the block has no --- request or --- raw_request section



=== TEST 9: a repeated section
--- config
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- error_code: 200
--- error_code: 404
--- selftest_failure
section '--- error_code' appears twice in the block
