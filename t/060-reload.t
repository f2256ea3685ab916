# Reload-heavy runs: everything the module keeps outside a request (buffered log files and
# their flush timers, fetched key sets, rate-limit and metrics zones) must belong to the cycle
# that made it. Each block reloads nginx several times with traffic in between, then idles so
# that the newest workers' timers fire, and checks that nothing crashed, nothing was lost and
# the shared state carried over. The runner fails a block on any "exited on signal" line; it
# starts nginx with MALLOC_PERTURB_ (t/README.md), so a timer or event that still points into a
# freed cycle crashes here instead of passing by luck. scripts/test --memcheck runs the same
# blocks under valgrind.
#
# JWKS_A / TOKEN_A: as in t/050-jwks.t (rsa2048, kid rsa2048; RS256, sub alice, exp 2100).
# Project runner only: the block uses the runner's extensions (after_request, json_log_*,
# prometheus) and says so with --- project_only, so prove skips it.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;

$ENV{TEST_NGINX_JWKS_A} = '{"keys":[{"alg":"RS256","e":"AQAB","kid":"rsa2048","kty":"RSA","n":"zXFJrDbxyu_gBm2m24toboY-xoc2C5eMARYDEOFzaoJ5H9m08RVGbdIxU0xgSoTE4HbUdWsgtliTMhzERdLal9uyK5nMSDXuLVZ9OLpXoe8arBFxldYzshS7UVv7_UVdbgNEkW5a4YMYnVNhI4BT-BCy4QGqs3R9soUwt_hRaHoffX31jdDnaBHO5v9HSJJ7VNG-Wh2L9ba70ybGuc7HAeuCN1DhHuaAZkbzJfXaHUkElbwezLj4bqL1AJHVCyM8kcyELfHoxjUz7-Wd7xbpiT0kNf_NdQAyjv9KHZZO4OydDaDr3zy43pA56lpxZGaLex8lxc21x69ZgQmhEg9MNQ","use":"sig"}]}';
# RS256, kid rsa2048, sub alice, exp 2100
$ENV{TEST_NGINX_TOKEN_A} = 'eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTIwNDgiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFsaWNlIn0.lQ9muY4PiSSa-iR_Fg7zua-tqGVmJ9e1Kc3_pp8tAHlbOgzcodworGRcsuXQj2SHiInnxC12vU_9SM9VVm6quf7Vwm3sF9F1Oz9lkszm1FmXC5xIFsXvBRqZ5fh78csahxtATJkmenD3JRbeqsTaPjbmYgUM9xk1jos15JTctRpEtoNRUSWzR7DrjnTLv-cGnBBapPQGG_JqwGTcpgc-DRutGEepu0nTSqgsMczkaj3XicnE-9CepoP5i8qVb2up7rSczGTl98OcWWRPMr6DmcIlh2rPtRg3IVSbh_fNEjefEaNgTTLg8uXkYD9kxCRd1EmcCteMpRMCVdrK1KQZfQ';

workers(2);
master_on();
log_level('info');
no_shuffle();
run_tests();

__DATA__

=== TEST 1: five reloads with buffered logs, key fetches, a rate limit and metrics; traffic after each; idle at the end
--- project_only: the JSON log is checked as data (json_log_*); actions between requests (after_request); the metrics are parsed (prometheus)
--- http_config
    rate_limit_zone $http_x_key zone=rl:1m;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        server_name idp;
        root html;
        default_type application/json;
        access_log logs/idp.log;
        location = /upstream {
            access_log off;
            return 200 "upstream reached sub=$http_x_user\n";
        }
    }
--- config
    location = /_jwks {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/jwks.json;
        subrequest_output_buffer_size 64k;
    }
    location /t {
        auth_jwt "api";
        auth_jwt_key_request /_jwks;
        auth_jwt_key_refresh_interval 1s;
        rate_limit zone=rl rate=12r/d;
        gateway_log logs/gw.json buffer=64k flush=100ms;
        proxy_set_header X-User $jwt_claim_sub;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/upstream;
    }
    location = /metrics {
        gateway_metrics;
    }
--- user_files
>>> jwks.json
$TEST_NGINX_JWKS_A
--- more_headers eval
[("Authorization: Bearer $ENV{TEST_NGINX_TOKEN_A}\nX-Key: k1") x 14, ""]
--- request eval
[("GET /t") x 14, "GET /metrics"]
--- error_code eval
[(200) x 12, 429, 429, 200]
--- response_body_like eval
[("^upstream reached sub=alice$") x 12, qr/"status":\s*429/, qr/"status":\s*429/, qr/gateway_requests_total/]
--- after_request
2 signal HUP
2 sleep 1.2
4 signal HUP
4 sleep 1.2
6 signal HUP
6 sleep 1.2
8 signal HUP
8 sleep 1.2
10 signal HUP
10 sleep 1.2
14 sleep 0.5
14 json_lines logs/gw.json 14
--- json_log_file: logs/gw.json
--- json_log_lines: 14
--- json_log_match
* consumer == "alice"
any status == 429
--- prometheus
sum gateway_rate_limit_total 14
--- no_error_log
exited on signal
[warn]
