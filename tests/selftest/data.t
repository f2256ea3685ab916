# Runner self-test of the project extensions (json_log_*, after_request, prometheus): blocks
# that must fail, each for the reason in --- selftest_failure. Only stock nginx: JSON lines
# come from a log_format with escape=json, so these blocks do not depend on the module.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;
run_tests();

__DATA__

=== TEST 1: a line of the log file that is not JSON fails the block
--- project_only: runner self-test of json_log_*, after_request, prometheus
--- http_config
    log_format plain '$request_uri "not json"';
--- config
    location /t {
        access_log logs/gw.json plain;
        return 200 "ok\n";
    }
--- request
GET /t
--- json_log_file: logs/gw.json
--- selftest_failure
json_log_file: logs/gw.json line 1: not valid JSON



=== TEST 2: a JSON value that is not an object fails the block
--- project_only: runner self-test of json_log_*, after_request, prometheus
--- http_config
    log_format arr '[1, 2]';
--- config
    location /t {
        access_log logs/gw.json arr;
        return 200 "ok\n";
    }
--- request
GET /t
--- json_log_file: logs/gw.json
--- selftest_failure
logs/gw.json line 1: not a JSON object: [1,2]



=== TEST 3: a wrong number of lines
--- project_only: runner self-test of json_log_*, after_request, prometheus
--- http_config
    log_format j escape=json '{"status":$status,"method":"$request_method","path":"$uri","t":"$arg_token"}';
--- config
    location /t {
        access_log logs/gw.json j;
        return 200 "ok\n";
    }
--- request eval
["GET /t", "GET /t"]
--- response_body eval
["ok\n", "ok\n"]
--- json_log_file: logs/gw.json
--- json_log_lines: 3
--- selftest_failure
json_log_lines: logs/gw.json has 2 lines, want 3



=== TEST 4: json_log_match: a wrong value, a wrong type, a present field, a regex, a missing line, no line at all
--- project_only: runner self-test of json_log_*, after_request, prometheus
--- http_config
    log_format j escape=json '{"status":$status,"method":"$request_method","path":"$uri","t":"$arg_token"}';
--- config
    location /t {
        access_log logs/gw.json j;
        return 200 "ok\n";
    }
--- request
GET /t
--- json_log_file: logs/gw.json
--- json_log_match
1 status == 404
1 status == "200"
1 method absent
1 query present
1 path =~ ^/x$
2 status == 200
any status == 500
1 status == 200
--- selftest_failure
json_log_match "1 status == 404" fails on line 1: status is number 200
json_log_match "1 status == \"200\"" fails on line 1: status is number 200
json_log_match "1 method absent" fails on line 1: method is string "GET"
json_log_match "1 query present" fails on line 1: query is absent
json_log_match "1 path =~ ^/x$" fails on line 1: path is string "/t"
json_log_match "2 status == 200": there is no line 2 (the log has 1 lines)
json_log_match "any status == 500": no line matches (of 1)



=== TEST 5: no_json_log: text that must not be logged
--- project_only: runner self-test of json_log_*, after_request, prometheus
--- http_config
    log_format j escape=json '{"status":$status,"method":"$request_method","path":"$uri","t":"$arg_token"}';
--- config
    location /t {
        access_log logs/gw.json j;
        return 200 "ok\n";
    }
--- request
GET /t?token=s3cret
--- json_log_file: logs/gw.json
--- no_json_log
s3cret
--- selftest_failure
no_json_log: "s3cret" should not match any line in logs/gw.json



=== TEST 6: a missing log file fails the block
--- project_only: runner self-test of json_log_*, after_request, prometheus
--- config
    location /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- json_log_file: logs/nothing.json
--- json_log_lines: 0
--- selftest_failure
cannot read logs/nothing.json



=== TEST 7: after_request json_lines: a wrong count at that moment (buffered lines are not there yet)
--- project_only: runner self-test of json_log_*, after_request, prometheus
--- http_config
    log_format j escape=json '{"status":$status,"method":"$request_method","path":"$uri","t":"$arg_token"}';
--- config
    location /t {
        access_log logs/gw.json j buffer=64k flush=1h;
        return 200 "ok\n";
    }
--- request
GET /t
--- after_request
1 json_lines logs/gw.json 1
--- json_log_file: logs/gw.json
--- json_log_lines: 1
--- selftest_failure
after_request 1: json_lines logs/gw.json 1: the file has 0 lines



=== TEST 8: after_request: a bad action is refused
--- project_only: runner self-test of json_log_*, after_request, prometheus
--- config
    location /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- after_request
1 signal KILLALL
--- selftest_failure
after_request: cannot parse "1 signal KILLALL"



=== TEST 9: prometheus: a body that is not Prometheus text
--- project_only: runner self-test of json_log_*, after_request, prometheus
--- config
    location /t {
        return 200 "metric{a=\"b\" 1\n";
    }
--- request
GET /t
--- prometheus
metric 1
--- selftest_failure
prometheus: the body does not parse as Prometheus text format



=== TEST 10: prometheus: wrong values, missing series, a label value that leaks, a wrong type
--- project_only: runner self-test of json_log_*, after_request, prometheus
--- config
    location /t {
        return 200 "# TYPE m_total counter\nm_total{who=\"alice\"} 2\nm_total{who=\"bob\"} 1\n# TYPE g gauge\ng 5\n";
    }
--- request
GET /t
--- prometheus
m_total{who="alice"} 3
m_total{who="carol"} 1
m_total{who="bob"} 2..4
sum m_total 4
g absent
type g counter
label_values !~ alice
g 5
--- selftest_failure
prometheus "m_total{who=\"alice\"} 3": the value is 2
prometheus "m_total{who=\"carol\"} 1": no such series
prometheus "m_total{who=\"bob\"} 2..4": the value is 1
prometheus "sum m_total 4": the sum is 3
prometheus "g absent": the series is present
prometheus "type g counter": the family's type is Some("gauge")
m_total{who="alice"} has a label value that matches



=== TEST 11: prometheus: a series that appears twice
--- project_only: runner self-test of json_log_*, after_request, prometheus
--- config
    location /t {
        return 200 "g{a=\"1\"} 1\ng{a=\"1\"} 2\n";
    }
--- request
GET /t
--- prometheus
label_values !~ x
--- selftest_failure
appears 2 times



=== TEST 12: json_log_* sections need json_log_file
--- project_only: runner self-test of json_log_*, after_request, prometheus
--- config
    location /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- json_log_lines: 1
--- selftest_failure
json_log_lines needs
