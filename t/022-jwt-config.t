# auth_jwt configuration mistakes: nginx refuses to start (as `nginx -t` does), with an [emerg]
# line naming the problem, the file and the line. Key files are loaded and checked when the
# configuration is read, never at the first request.
use Test::Nginx::Socket 'no_plan';
use lib 't/lib';
use ProjectOnly;
use Cwd qw(cwd);

$ENV{TEST_NGINX_KEYS} ||= cwd() . '/t/keys';

log_level('info');
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a missing key file
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/nope.jwks;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: cannot read key file "\S+\/t\/keys\/nope\.jwks": No such file or directory \(os error 2\) in "auth_jwt_key_file" directive in \S+nginx\.conf:\d+/



=== TEST 2: a key file that cannot be read (a directory)
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: cannot read key file "\S+\/t\/keys": Is a directory \(os error 21\) in "auth_jwt_key_file" directive in \S+nginx\.conf:\d+/



=== TEST 3: a key file with bad JSON
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/bad.jwks;
        proxy_pass http://127.0.0.1:1;
    }
--- user_files
>>> bad.jwks
{"keys": [ {"kty": "RSA", "n": "AQAB",
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/html\/bad\.jwks": invalid JSON at line 2 column 0 in "auth_jwt_key_file" directive in \S+nginx\.conf:\d+/



=== TEST 4: a key file that is neither JSON nor PEM
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/notakey.txt;
        proxy_pass http://127.0.0.1:1;
    }
--- user_files
>>> notakey.txt
hello
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/html\/notakey\.txt": .+ in \S+nginx\.conf:\d+/



=== TEST 5: an empty key file
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_SERVER_ROOT/html/empty.jwks;
        proxy_pass http://127.0.0.1:1;
    }
--- user_files
>>> empty.jwks
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/html\/empty\.jwks": .+ in \S+nginx\.conf:\d+/



=== TEST 6: a weak RSA key (1024 bits, JWK)
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa1024.jwk;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/rsa1024\.jwk": RSA key is 1024 bits, at least 2048 required in "auth_jwt_key_file" directive in \S+nginx\.conf:\d+/



=== TEST 7: a weak RSA key (1024 bits, PEM)
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa1024.pub.pem;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/rsa1024\.pub\.pem": PEM block #1 \(PUBLIC KEY\): RSA key is 1024 bits, at least 2048 required in "auth_jwt_key_file" directive in \S+nginx\.conf:\d+/



=== TEST 8: a weak HMAC secret (16 bytes)
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/hs-weak16.jwk;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/hs-weak16\.jwk": HMAC secret is 16 bytes, at least 32 required in "auth_jwt_key_file" directive in \S+nginx\.conf:\d+/



=== TEST 9: a key set whose only key is for encryption (use: enc)
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/enc-only.jwks;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/enc-only\.jwks": .+ in \S+nginx\.conf:\d+/



=== TEST 10: a private key in a key file (a verifier needs only public keys)
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa2048.key.pem;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid key file "\S+\/rsa2048\.key\.pem": .+ in \S+nginx\.conf:\d+/



=== TEST 11: auth_jwt_key_file: a bad kid= parameter
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa2048.pub.pem name=x;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "name=x" in "auth_jwt_key_file" directive, expected "kid=name" in \S+nginx\.conf:\d+/



=== TEST 12: auth_jwt on without any key: the message names the location and points at auth_jwt
--- config
    location /t {
        auth_jwt "api";
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt" is on in location "\/t" but no keys are configured: add "auth_jwt_key_file" or "auth_jwt_key_request" in \S+nginx\.conf:\d+/



=== TEST 13: auth_jwt on at server level without keys, even if every location has them
--- config
    auth_jwt "api";
    location /t {
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt" is on but no keys are configured: add "auth_jwt_key_file" or "auth_jwt_key_request" in \S+nginx\.conf:\d+/



=== TEST 14: auth_jwt: token= must name a variable
--- config
    location /t {
        auth_jwt "api" token=cookie_auth;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_leeway 1s;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "token=cookie_auth" in "auth_jwt" directive, expected "token=\$variable" in \S+nginx\.conf:\d+/



=== TEST 15: auth_jwt: an unknown second parameter
--- config
    location /t {
        auth_jwt "api" cookie=$cookie_auth;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "cookie=\$cookie_auth" in "auth_jwt" directive, expected "token=\$variable" in \S+nginx\.conf:\d+/



=== TEST 16: auth_jwt: three parameters
--- config
    location /t {
        auth_jwt "api" token=$cookie_a token=$cookie_b;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid number of arguments in "auth_jwt" directive in \S+nginx\.conf:\d+/



=== TEST 17: auth_jwt twice in a block
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt off;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 18: auth_jwt_type encrypted (JWE is not supported)
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_type encrypted;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "encrypted" in "auth_jwt_type" directive, only signed tokens \(JWS\) are supported in \S+nginx\.conf:\d+/



=== TEST 19: auth_jwt_type nested
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_type nested;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "nested" in "auth_jwt_type" directive, only signed tokens \(JWS\) are supported in \S+nginx\.conf:\d+/



=== TEST 20: auth_jwt_type: an unknown value
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_type jws;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "jws" in "auth_jwt_type" directive, must be "signed" in \S+nginx\.conf:\d+/



=== TEST 21: auth_jwt_algorithms: an unknown algorithm
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_algorithms RS256 RS257;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "RS257" in "auth_jwt_algorithms" directive, unknown or unsupported algorithm in \S+nginx\.conf:\d+/



=== TEST 22: auth_jwt_algorithms: none is never an algorithm
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_algorithms none;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "none" in "auth_jwt_algorithms" directive, unsigned tokens are never accepted in \S+nginx\.conf:\d+/



=== TEST 23: auth_jwt_algorithms: names are case-sensitive (rs256)
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_algorithms rs256;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "rs256" in "auth_jwt_algorithms" directive, algorithm names are case-sensitive, use "RS256" in \S+nginx\.conf:\d+/



=== TEST 24: auth_jwt_algorithms that no configured key supports (HS256 with RSA/EC keys only)
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_algorithms HS256;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt" is on in location "\/t" but "auth_jwt_algorithms" allows no algorithm that the configured keys support in \S+nginx\.conf:\d+/



=== TEST 25: auth_jwt_algorithms twice
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_algorithms RS256;
        auth_jwt_algorithms ES256;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt_algorithms" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 26: auth_jwt_leeway: not a time
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_leeway 10x;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "10x" in "auth_jwt_leeway" directive, invalid time "10x" in \S+nginx\.conf:\d+/



=== TEST 27: auth_jwt_leeway: too large (200 years)
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_leeway 200y;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "200y" in "auth_jwt_leeway" directive, too large in \S+nginx\.conf:\d+/



=== TEST 28: auth_jwt_leeway twice
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_leeway 1s;
        auth_jwt_leeway 2s;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt_leeway" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 29: auth_jwt_require: error= must be 401 or 403
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_require $jwt_claim_sub error=500;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "error=500" in "auth_jwt_require" directive, must be "error=401" or "error=403" in \S+nginx\.conf:\d+/



=== TEST 30: auth_jwt_require: only error= is not enough
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_require error=403;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt_require" needs at least one value in \S+nginx\.conf:\d+/



=== TEST 31: auth_jwt_require_claim: an unknown operator
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_require_claim sub like alice;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "sub" in "auth_jwt_require_claim" directive, unknown claim operator "like" \(use eq, ne, in, any, all, gt, lt\) in \S+nginx\.conf:\d+/



=== TEST 32: auth_jwt_require_claim: eq takes exactly one value
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_require_claim sub eq alice bob;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "sub" in "auth_jwt_require_claim" directive, operator "eq" takes exactly one value in \S+nginx\.conf:\d+/



=== TEST 33: auth_jwt_require_claim: a path and an operator but no value
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_require_claim roles any;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid number of arguments in "auth_jwt_require_claim" directive in \S+nginx\.conf:\d+/



=== TEST 34: auth_jwt_require_claim: only a path
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_require_claim roles;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid number of arguments in "auth_jwt_require_claim" directive in \S+nginx\.conf:\d+/



=== TEST 35: auth_jwt_require_claim: gt needs a number
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_require_claim level gt high;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "level" in "auth_jwt_require_claim" directive, operator "gt" needs a number, not "high" in \S+nginx\.conf:\d+/



=== TEST 36: auth_jwt_require_claim: an empty path segment
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_require_claim realm_access..roles any admin;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "realm_access\.\.roles" in "auth_jwt_require_claim" directive, claim path "realm_access\.\.roles" has an empty segment in \S+nginx\.conf:\d+/



=== TEST 37: auth_jwt_require_claim: error= must be 401 or 403
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_require_claim sub eq alice error=500;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "error=500" in "auth_jwt_require_claim" directive, must be "error=401" or "error=403" in \S+nginx\.conf:\d+/



=== TEST 38: auth_jwt_require_exp: not on/off
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_require_exp yes;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "yes" in "auth_jwt_require_exp" directive, it must be "on" or "off" in \S+nginx\.conf:\d+/



=== TEST 39: auth_jwt_issuer twice
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_issuer a;
        auth_jwt_issuer b;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt_issuer" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 40: auth_jwt_audience twice
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_audience a;
        auth_jwt_audience b;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt_audience" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 41: auth_jwt_typ twice
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_typ at+jwt;
        auth_jwt_typ jwt;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt_typ" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 42: auth_jwt_max_size: zero
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_max_size 0;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "0" in "auth_jwt_max_size" directive, must be positive in \S+nginx\.conf:\d+/



=== TEST 43: auth_jwt_max_size: not a size
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_max_size lots;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "lots" in "auth_jwt_max_size" directive, invalid size "lots" in \S+nginx\.conf:\d+/



=== TEST 44: auth_jwt_max_size twice
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_max_size 4k;
        auth_jwt_max_size 8k;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt_max_size" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 45: auth_jwt_claim_set is allowed at http level only
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_claim_set $x sub;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt_claim_set" directive is not allowed here in \S+nginx\.conf:\d+/



=== TEST 46: auth_jwt_header_set is allowed at http level only
--- config
    auth_jwt_header_set $x kid;
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt_header_set" directive is not allowed here in \S+nginx\.conf:\d+/



=== TEST 47: auth_jwt_claim_set: the first parameter must be a variable
--- http_config
    auth_jwt_claim_set x sub;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "x" in "auth_jwt_claim_set" directive, a variable name starting with "\$" is expected in \S+nginx\.conf:\d+/



=== TEST 48: auth_jwt_claim_set: a name needs at least one claim
--- http_config
    auth_jwt_claim_set $x;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid number of arguments in "auth_jwt_claim_set" directive in \S+nginx\.conf:\d+/



=== TEST 49: auth_jwt_claim_set: a variable defined twice
--- http_config
    auth_jwt_claim_set $who sub;
    auth_jwt_claim_set $who name;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: the duplicate "who" variable in \S+nginx\.conf:\d+/



=== TEST 50: auth_jwt_cache: size must be a positive number of entries
--- http_config
    auth_jwt_cache size=0;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "size=0" in "auth_jwt_cache" directive, size must be a number of entries, 1 to 10000000 in \S+nginx\.conf:\d+/



=== TEST 51: auth_jwt_cache: a bare number
--- http_config
    auth_jwt_cache 1000;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "1000" in "auth_jwt_cache" directive, expected "size=N" or "off" in \S+nginx\.conf:\d+/



=== TEST 52: auth_jwt_cache: a size with a unit
--- http_config
    auth_jwt_cache size=1m;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: invalid value "size=1m" in "auth_jwt_cache" directive, size must be a number of entries, 1 to 10000000 in \S+nginx\.conf:\d+/



=== TEST 53: auth_jwt_cache twice
--- http_config
    auth_jwt_cache off;
    auth_jwt_cache size=10;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt_cache" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 54: auth_jwt_cache is allowed at http level only
--- config
    location /t {
        auth_jwt "api";
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_cache off;
        proxy_pass http://127.0.0.1:1;
    }
--- must_die
--- error_log eval
qr/\[emerg\] \d+#\d+: "auth_jwt_cache" directive is not allowed here in \S+nginx\.conf:\d+/



=== TEST 55: every directive together is accepted
--- http_config
    auth_jwt_cache size=100;
    auth_jwt_claim_set $roles realm_access roles;
    auth_jwt_header_set $kid kid;
    auth_jwt_max_size 4k;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "upstream reached\n";
        }
    }
--- config
    auth_jwt_leeway 30s;
    location /t {
        auth_jwt "api" token=$cookie_auth;
        auth_jwt_key_file $TEST_NGINX_KEYS/jwks.json;
        auth_jwt_key_file $TEST_NGINX_KEYS/hmac.jwks;
        auth_jwt_key_file $TEST_NGINX_KEYS/rsa2048.pub.pem kid=pem-rsa;
        auth_jwt_type signed;
        auth_jwt_algorithms RS256 ES256 HS256 EdDSA;
        auth_jwt_issuer https://issuer.example;
        auth_jwt_audience api api2;
        auth_jwt_typ at+jwt;
        auth_jwt_require_exp on;
        auth_jwt_require $roles error=403;
        auth_jwt_require_claim realm_access.roles any admin;
        auth_jwt_require_claim scope all read write error=401;
        auth_jwt_require_claim level gt 2.5;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location /t/open {
            auth_jwt off;
            proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        }
    }
--- request
GET /t/open
--- response_body
upstream reached
--- no_error_log
[emerg]
