# gateway_log buffer=/flush=: records wait in the worker's buffer, go out by size, by timer,
# before a reopen (USR1), and when a worker exits (reload, stop); none is lost or torn.
# Mostly project runner only (--- project_only): the json_log_* checks run after nginx has
# stopped (the runner's SIGQUIT); `after_request` checks the file and signals nginx between
# requests. The log checks read the whole error.log each time (check_accum_error_log), so a
# line logged once per worker counts over all of a block's requests.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

workers(2);
master_on();
no_shuffle();
check_accum_error_log();
run_tests();

__DATA__

=== TEST 1: buffer=64k flush=1s: nothing in the file right after the requests, all lines after 1.5 s
--- project_only: the JSON log is checked as data (json_log_*); actions between requests (after_request)
--- config
    location /api/ {
        gateway_log logs/gw.json buffer=64k flush=1s;
        return 200 "ok\n";
    }
--- request eval
["GET /api/1", "GET /api/2", "GET /api/3"]
--- response_body eval
["ok\n", "ok\n", "ok\n"]
--- after_request
3 sleep 0.2
3 json_lines logs/gw.json 0
3 sleep 1.3
3 json_lines logs/gw.json 3
--- json_log_file: logs/gw.json
--- json_log_lines: 3
--- json_log_match
any path == "/api/1"
any path == "/api/2"
any path == "/api/3"



=== TEST 2: buffer= alone flushes after 1 s by default
--- project_only: the JSON log is checked as data (json_log_*); actions between requests (after_request)
--- config
    location /api/ {
        gateway_log logs/gw.json buffer=64k;
        return 200 "ok\n";
    }
--- request
GET /api/1
--- after_request
1 sleep 0.2
1 json_lines logs/gw.json 0
1 sleep 1.4
1 json_lines logs/gw.json 1
--- json_log_file: logs/gw.json
--- json_log_lines: 1



=== TEST 3: nothing lost on graceful stop: buffered lines are written when the worker exits
--- project_only: the JSON log is checked as data (json_log_*); actions between requests (after_request)
--- config
    location /api/ {
        gateway_log logs/gw.json buffer=64k flush=1h;
        return 200 "ok\n";
    }
--- request eval
["GET /api/1", "GET /api/2", "GET /api/3", "GET /api/4"]
--- response_body eval
["ok\n", "ok\n", "ok\n", "ok\n"]
--- after_request
4 sleep 0.3
4 json_lines logs/gw.json 0
--- json_log_file: logs/gw.json
--- json_log_lines: 4
--- json_log_match
any path == "/api/4"



=== TEST 4: a line that fills the buffer is written at once, whole; a small one waits
--- project_only: the JSON log is checked as data (json_log_*); actions between requests (after_request)
--- config
    location /api/ {
        gateway_log logs/gw.json buffer=1k flush=1h;
        gateway_log_field pad $arg_pad;
        return 200 "ok\n";
    }
--- request eval
["GET /api/1?pad=" . "x" x 1100, "GET /api/2?pad=" . "x" x 1100, "GET /api/3"]
--- response_body eval
["ok\n", "ok\n", "ok\n"]
--- after_request
1 json_lines logs/gw.json 1
2 json_lines logs/gw.json 2
3 sleep 0.2
3 json_lines logs/gw.json 2
--- json_log_file: logs/gw.json
--- json_log_lines: 3
--- json_log_match
1 pad =~ ^x{1100}$
2 pad =~ ^x{1100}$
3 path == "/api/3"



=== TEST 5: reopen (USR1): buffered lines go to the old file, later ones to the new file, none lost
--- project_only: the JSON log is checked as data (json_log_*); actions between requests (after_request)
--- config
    location /api/ {
        gateway_log logs/gw.json buffer=64k flush=1h;
        return 200 "ok\n";
    }
--- request eval
["GET /api/1", "GET /api/2", "GET /api/3", "GET /api/4", "GET /api/5"]
--- response_body eval
["ok\n", "ok\n", "ok\n", "ok\n", "ok\n"]
--- after_request
2 sleep 0.2
2 json_lines logs/gw.json 0
2 rename logs/gw.json logs/gw.json.1
2 signal USR1
2 sleep 0.5
2 json_lines logs/gw.json.1 2
2 json_lines logs/gw.json 0
5 json_lines logs/gw.json 0
--- json_log_file: logs/gw.json.1 logs/gw.json
--- json_log_lines: 5
--- json_log_match
# the old file first (lines 1-2), then the new one (lines 3-5); with two workers the order
# within a file may vary
1 path =~ ^/api/[12]$
2 path =~ ^/api/[12]$
3 path =~ ^/api/[345]$
4 path =~ ^/api/[345]$
5 path =~ ^/api/[345]$



=== TEST 6: reopen of an unbuffered file: later lines go to the new file
--- project_only: the JSON log is checked as data (json_log_*); actions between requests (after_request)
--- config
    location /api/ {
        gateway_log logs/gw.json;
        return 200 "ok\n";
    }
--- request eval
["GET /api/1", "GET /api/2", "GET /api/3"]
--- response_body eval
["ok\n", "ok\n", "ok\n"]
--- after_request
1 rename logs/gw.json logs/gw.json.1
1 signal USR1
1 sleep 0.5
3 json_lines logs/gw.json.1 1
3 json_lines logs/gw.json 2
--- json_log_file: logs/gw.json.1 logs/gw.json
--- json_log_lines: 3



=== TEST 7: reload (HUP) keeps the lines the old workers had buffered
--- project_only: the JSON log is checked as data (json_log_*); actions between requests (after_request)
--- config
    location /api/ {
        gateway_log logs/gw.json buffer=64k flush=1h;
        return 200 "ok\n";
    }
--- request eval
["GET /api/1", "GET /api/2", "GET /api/3", "GET /api/4"]
--- response_body eval
["ok\n", "ok\n", "ok\n", "ok\n"]
--- after_request
2 sleep 0.2
2 json_lines logs/gw.json 0
2 signal HUP
2 sleep 1
2 json_lines logs/gw.json 2
--- json_log_file: logs/gw.json
--- json_log_lines: 4
--- json_log_match
any path == "/api/1"
any path == "/api/4"



=== TEST 8: two workers, many requests, buffered: every line whole, none lost at stop
--- project_only: the JSON log is checked as data (json_log_*)
--- config
    location /api/ {
        gateway_log logs/gw.json buffer=4k flush=200ms;
        gateway_log_field pad $arg_pad;
        return 200 "ok\n";
    }
--- request eval
[("GET /api/x?pad=" . "y" x 300) x 40]
--- response_body eval
[("ok\n") x 40]
--- json_log_file: logs/gw.json
--- json_log_lines: 40
--- json_log_match
* pad =~ ^y{300}$



=== TEST 9: a file that cannot be written: the error is logged once per worker and nothing crashes
--- config
    location /api/ {
        gateway_log /dev/full;
        return 200 "ok\n";
    }
--- request eval
["GET /api/1", "GET /api/2", "GET /api/3"]
--- response_body eval
["ok\n", "ok\n", "ok\n"]
--- grep_error_log eval
qr/gateway_log: write to "\/dev\/full" failed/
--- grep_error_log_out eval
qr/^(gateway_log: write to "\/dev\/full" failed\n){1,2}$/



=== TEST 10: reloads, then traffic on the newest workers, then idle: their flush timers fire safely
Workers started by a reload arm flush timers of that reload's configuration; the event's log must
be the worker's own cycle log, not the configuring cycle's (freed in the master after a reload).
The runner starts nginx with MALLOC_PERTURB_, so a read of freed memory crashes the worker here.
--- project_only: the JSON log is checked as data (json_log_*); actions between requests (after_request)
--- config
    location /api/ {
        gateway_log logs/gw.json buffer=64k flush=100ms;
        return 200 "ok\n";
    }
--- request eval
["GET /api/1", "GET /api/2", "GET /api/3", "GET /api/4", "GET /api/5", "GET /api/6", "GET /api/7"]
--- response_body eval
[("ok\n") x 7]
--- after_request
1 signal HUP
1 sleep 1
2 signal HUP
2 sleep 1
3 signal HUP
3 sleep 1
4 sleep 0.5
5 sleep 0.5
6 sleep 0.5
7 sleep 0.5
7 json_lines logs/gw.json 7
--- json_log_file: logs/gw.json
--- json_log_lines: 7
--- no_error_log
exited on signal
