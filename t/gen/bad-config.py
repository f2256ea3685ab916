#!/usr/bin/env python3
"""Writes t/080-bad-config.t from the table below: configurations nginx must refuse.

    python3 t/gen/bad-config.py > t/080-bad-config.t

Each row is one block: (directive, what is wrong, where the snippet goes, snippet, the message).
`where` is main (before http), http, server, location (inside `location /t`) or if (inside an
`if` of `location /t`). Every block expects nginx to refuse to start (`--- must_die`) with
`[emerg] PID#TID: <message> in .../nginx.conf:<line>` in error.log (what Test::Nginx reads), and
has a `--- config` section (empty when the snippet goes elsewhere): without one, Test::Nginx
would not start nginx for the block. The cases here are the ones the other files do
not have; the COVERAGE text (written at the top of the .t file) says where the rest are.
"""
import re
import sys

ARITY = 'invalid number of arguments in "{d}" directive'
CONTEXT = '"{d}" directive is not allowed here'
K = "$TEST_NGINX_KEYS"

# (directive, case, where, snippet, message); message None = the ARITY or CONTEXT text.
ROWS = [
    ("gateway", "two arguments", "location", "gateway on off;", ARITY),
    ("gateway", "main context", "main", "gateway on;", CONTEXT),
    ("gateway", "inside if", "if", "gateway off;", CONTEXT),

    ("auth_jwt", "no argument", "location", "auth_jwt;", ARITY),
    ("auth_jwt", "main context", "main", 'auth_jwt "api";', CONTEXT),
    ("auth_jwt", "inside if", "if", 'auth_jwt "api";', CONTEXT),

    ("auth_jwt_key_file", "no argument", "location", "auth_jwt_key_file;", ARITY),
    ("auth_jwt_key_file", "three arguments", "location", f"auth_jwt_key_file {K}/jwks.json kid=a kid=b;", ARITY),
    ("auth_jwt_key_file", "main context", "main", f"auth_jwt_key_file {K}/jwks.json;", CONTEXT),
    ("auth_jwt_key_file", "inside if", "if", f"auth_jwt_key_file {K}/jwks.json;", CONTEXT),
    ("auth_jwt_key_file", "an empty kid=", "location", f"auth_jwt_key_file {K}/jwks.json kid=;",
     'invalid value "kid=" in "auth_jwt_key_file" directive, expected "kid=name"'),

    ("auth_jwt_leeway", "no argument", "location", "auth_jwt_leeway;", ARITY),
    ("auth_jwt_leeway", "two arguments", "location", "auth_jwt_leeway 1s 2s;", ARITY),
    ("auth_jwt_leeway", "main context", "main", "auth_jwt_leeway 1s;", CONTEXT),
    ("auth_jwt_leeway", "inside if", "if", "auth_jwt_leeway 1s;", CONTEXT),
    ("auth_jwt_leeway", "a negative time", "location", "auth_jwt_leeway -1s;",
     'invalid value "-1s" in "auth_jwt_leeway" directive, invalid time "-1s"'),

    ("auth_jwt_type", "no argument", "location", "auth_jwt_type;", ARITY),
    ("auth_jwt_type", "two arguments", "location", "auth_jwt_type signed signed;", ARITY),
    ("auth_jwt_type", "main context", "main", "auth_jwt_type signed;", CONTEXT),
    ("auth_jwt_type", "inside if", "if", "auth_jwt_type signed;", CONTEXT),

    ("auth_jwt_require", "no argument", "location", "auth_jwt_require;", ARITY),
    ("auth_jwt_require", "main context", "main", "auth_jwt_require $arg_x;", CONTEXT),
    ("auth_jwt_require", "inside if", "if", "auth_jwt_require $arg_x;", CONTEXT),

    ("auth_jwt_claim_set", "no argument", "http", "auth_jwt_claim_set;", ARITY),
    ("auth_jwt_claim_set", "main context", "main", "auth_jwt_claim_set $x sub;", CONTEXT),
    ("auth_jwt_claim_set", "server context", "server", "auth_jwt_claim_set $x sub;", CONTEXT),
    ("auth_jwt_claim_set", "a bare $", "http", "auth_jwt_claim_set $ sub;",
     'invalid value "$" in "auth_jwt_claim_set" directive, a variable name starting with "$" is expected'),
    ("auth_jwt_claim_set", "a variable nginx already has ($host)", "http", "auth_jwt_claim_set $host sub;",
     'the duplicate "host" variable'),

    ("auth_jwt_header_set", "one argument", "http", "auth_jwt_header_set $x;", ARITY),
    ("auth_jwt_header_set", "main context", "main", "auth_jwt_header_set $x kid;", CONTEXT),
    ("auth_jwt_header_set", "location context", "location", "auth_jwt_header_set $x kid;", CONTEXT),
    ("auth_jwt_header_set", "not a variable", "http", "auth_jwt_header_set x kid;",
     'invalid value "x" in "auth_jwt_header_set" directive, a variable name starting with "$" is expected'),

    ("auth_jwt_algorithms", "no argument", "location", "auth_jwt_algorithms;", ARITY),
    ("auth_jwt_algorithms", "main context", "main", "auth_jwt_algorithms RS256;", CONTEXT),
    ("auth_jwt_algorithms", "inside if", "if", "auth_jwt_algorithms RS256;", CONTEXT),

    ("auth_jwt_issuer", "no argument", "location", "auth_jwt_issuer;", ARITY),
    ("auth_jwt_issuer", "main context", "main", "auth_jwt_issuer https://idp.example/;", CONTEXT),
    ("auth_jwt_issuer", "inside if", "if", "auth_jwt_issuer https://idp.example/;", CONTEXT),

    ("auth_jwt_audience", "no argument", "location", "auth_jwt_audience;", ARITY),
    ("auth_jwt_audience", "main context", "main", "auth_jwt_audience api;", CONTEXT),
    ("auth_jwt_audience", "inside if", "if", "auth_jwt_audience api;", CONTEXT),

    ("auth_jwt_typ", "no argument", "location", "auth_jwt_typ;", ARITY),
    ("auth_jwt_typ", "two arguments", "location", "auth_jwt_typ at+jwt JWT;", ARITY),
    ("auth_jwt_typ", "main context", "main", "auth_jwt_typ at+jwt;", CONTEXT),
    ("auth_jwt_typ", "inside if", "if", "auth_jwt_typ at+jwt;", CONTEXT),

    ("auth_jwt_require_exp", "no argument", "location", "auth_jwt_require_exp;", ARITY),
    ("auth_jwt_require_exp", "two arguments", "location", "auth_jwt_require_exp on off;", ARITY),
    ("auth_jwt_require_exp", "main context", "main", "auth_jwt_require_exp on;", CONTEXT),
    ("auth_jwt_require_exp", "inside if", "if", "auth_jwt_require_exp on;", CONTEXT),
    ("auth_jwt_require_exp", "twice", "location", "auth_jwt_require_exp on; auth_jwt_require_exp on;",
     '"auth_jwt_require_exp" directive is duplicate'),

    ("auth_jwt_require_claim", "no argument", "location", "auth_jwt_require_claim;", ARITY),
    ("auth_jwt_require_claim", "main context", "main", "auth_jwt_require_claim scope any a;", CONTEXT),
    ("auth_jwt_require_claim", "inside if", "if", "auth_jwt_require_claim scope any a;", CONTEXT),

    ("auth_jwt_cache", "no argument", "http", "auth_jwt_cache;", ARITY),
    ("auth_jwt_cache", "two arguments", "http", "auth_jwt_cache size=10 off;", ARITY),
    ("auth_jwt_cache", "main context", "main", "auth_jwt_cache off;", CONTEXT),
    ("auth_jwt_cache", "server context", "server", "auth_jwt_cache off;", CONTEXT),

    ("auth_jwt_max_size", "no argument", "location", "auth_jwt_max_size;", ARITY),
    ("auth_jwt_max_size", "two arguments", "location", "auth_jwt_max_size 4k 8k;", ARITY),
    ("auth_jwt_max_size", "main context", "main", "auth_jwt_max_size 4k;", CONTEXT),
    ("auth_jwt_max_size", "inside if", "if", "auth_jwt_max_size 4k;", CONTEXT),

    ("rate_limit_zone", "no argument", "http", "rate_limit_zone;", ARITY),
    ("rate_limit_zone", "one argument", "http", "rate_limit_zone $host;", ARITY),
    ("rate_limit_zone", "main context", "main", "rate_limit_zone $host zone=z:1m;", CONTEXT),
    ("rate_limit_zone", "location context", "location", "rate_limit_zone $host zone=z:1m;", CONTEXT),
    ("rate_limit_zone", "a size that is not a size", "http", "rate_limit_zone $host zone=z:lots;",
     'invalid zone "z:lots", bad zone size in "rate_limit_zone" directive'),
    ("rate_limit_zone", "an empty zone name", "http", "rate_limit_zone $host zone=:1m;",
     'invalid zone ":1m", bad zone name in "rate_limit_zone" directive'),
    ("rate_limit_zone", "an unknown parameter", "http", "rate_limit_zone $host zone=z:1m rate=1r/s;",
     'invalid value "rate=1r/s" in "rate_limit_zone" directive'),
    ("rate_limit_zone", "the name of a limit_req_zone declared before", "http",
     "limit_req_zone $host zone=z:1m rate=1r/s; rate_limit_zone $host zone=z:1m;",
     'the shared memory zone "z" is already declared for a different use'),
    ("rate_limit_zone", "the name of a limit_req_zone declared after", "http",
     "rate_limit_zone $host zone=z:1m; limit_req_zone $host zone=z:1m rate=1r/s;",
     'the shared memory zone "z" is already declared for a different use'),
    ("rate_limit_zone", "the metrics zone's name, with the metrics zone's size (was silently shared)", "http",
     "rate_limit_zone $host zone=gateway_metrics:256k;",
     'zone name "gateway_metrics" is reserved for the module\'s metrics, use another name in "rate_limit_zone" directive'),
    ("rate_limit_zone", "the metrics zone's name, another size", "http",
     "rate_limit_zone $host zone=gateway_metrics:1m;",
     'zone name "gateway_metrics" is reserved for the module\'s metrics, use another name in "rate_limit_zone" directive'),
    ("rate_limit_zone", "the key-set zone's name", "http",
     "rate_limit_zone $host zone=gateway_jwks:1m;",
     'zone name "gateway_jwks" is reserved for the module\'s fetched key sets, use another name in "rate_limit_zone" directive'),

    ("rate_limit", "no argument", "location", "rate_limit;", ARITY),
    ("rate_limit", "one argument", "location", "rate_limit zone=z;", ARITY),
    ("rate_limit", "main context", "main", "rate_limit zone=z rate=1r/s;", CONTEXT),
    ("rate_limit", "inside if", "if", "rate_limit zone=z rate=1r/s;", CONTEXT),
    ("rate_limit", "an empty policy label", "location", "rate_limit zone=z rate=1r/s policy=;",
     'invalid value "policy=" in "rate_limit" directive, the value is empty'),
    ("rate_limit", "a policy label with a quote", "location", 'rate_limit zone=z rate=1r/s policy=a"b;',
     'invalid value "policy=a"b" in "rate_limit" directive, the label must be printable ASCII without spaces, quotes or backslashes'),
    ("rate_limit", "a negative burst", "location", "rate_limit zone=z rate=1r/s algorithm=token_bucket burst=-1;",
     'invalid value "burst=-1" in "rate_limit" directive, "burst" must be a whole number of requests'),

    ("rate_limit_status", "no argument", "location", "rate_limit_status;", ARITY),
    ("rate_limit_status", "two arguments", "location", "rate_limit_status 429 503;", ARITY),
    ("rate_limit_status", "main context", "main", "rate_limit_status 503;", CONTEXT),
    ("rate_limit_status", "inside if", "if", "rate_limit_status 503;", CONTEXT),
    ("rate_limit_status", "not a number", "location", "rate_limit_status busy;",
     'invalid value "busy" in "rate_limit_status" directive, value must be between 400 and 599'),

    ("rate_limit_headers", "no argument", "location", "rate_limit_headers;", ARITY),
    ("rate_limit_headers", "two arguments", "location", "rate_limit_headers draft legacy;", ARITY),
    ("rate_limit_headers", "main context", "main", "rate_limit_headers off;", CONTEXT),
    ("rate_limit_headers", "inside if", "if", "rate_limit_headers off;", CONTEXT),
    ("rate_limit_headers", "twice", "location", "rate_limit_headers off; rate_limit_headers draft;",
     '"rate_limit_headers" directive is duplicate'),

    ("rate_limit_dry_run", "no argument", "location", "rate_limit_dry_run;", ARITY),
    ("rate_limit_dry_run", "two arguments", "location", "rate_limit_dry_run on off;", ARITY),
    ("rate_limit_dry_run", "main context", "main", "rate_limit_dry_run on;", CONTEXT),
    ("rate_limit_dry_run", "inside if", "if", "rate_limit_dry_run on;", CONTEXT),
    ("rate_limit_dry_run", "not on/off", "location", "rate_limit_dry_run yes;",
     'invalid value "yes" in "rate_limit_dry_run" directive, it must be "on" or "off"'),
    ("rate_limit_dry_run", "twice", "location", "rate_limit_dry_run on; rate_limit_dry_run off;",
     '"rate_limit_dry_run" directive is duplicate'),

    ("rate_limit_invalid_rate", "no argument", "location", "rate_limit_invalid_rate;", ARITY),
    ("rate_limit_invalid_rate", "two arguments", "location", "rate_limit_invalid_rate pass error;", ARITY),
    ("rate_limit_invalid_rate", "main context", "main", "rate_limit_invalid_rate error;", CONTEXT),
    ("rate_limit_invalid_rate", "inside if", "if", "rate_limit_invalid_rate error;", CONTEXT),
    ("rate_limit_invalid_rate", "twice", "location", "rate_limit_invalid_rate pass; rate_limit_invalid_rate error;",
     '"rate_limit_invalid_rate" directive is duplicate'),

    ("gateway_log", "no argument", "location", "gateway_log;", ARITY),
    ("gateway_log", "main context", "main", "gateway_log logs/gw.json;", CONTEXT),
    ("gateway_log", "inside if", "if", "gateway_log logs/gw.json;", CONTEXT),
    ("gateway_log", "a directory that does not exist", "location", "gateway_log /nonexistent-gw-dir/gw.json;",
     'cannot log to "/nonexistent-gw-dir/gw.json": the directory "/nonexistent-gw-dir" does not exist in "gateway_log" directive'),
    ("gateway_log", "a bad syslog destination", "location", "gateway_log syslog:nope;",
     'invalid syslog destination "syslog:nope" in "gateway_log" directive'),
    ("gateway_log", "off with a parameter", "location", "gateway_log off buffer=4k;",
     'invalid value "buffer=4k" in "gateway_log" directive, "off" takes no parameters'),

    ("gateway_log_field", "one argument", "location", "gateway_log_field app;", ARITY),
    ("gateway_log_field", "three arguments", "location", "gateway_log_field app $host x;", ARITY),
    ("gateway_log_field", "main context", "main", "gateway_log_field app $host;", CONTEXT),
    ("gateway_log_field", "inside if", "if", "gateway_log_field app $host;", CONTEXT),

    ("gateway_log_fields", "no argument", "location", "gateway_log_fields;", ARITY),
    ("gateway_log_fields", "main context", "main", "gateway_log_fields none;", CONTEXT),
    ("gateway_log_fields", "inside if", "if", "gateway_log_fields none;", CONTEXT),
    ("gateway_log_fields", "an unknown field to drop", "location", "gateway_log_fields default -nope;",
     'invalid value "-nope" in "gateway_log_fields" directive, unknown field'),

    ("gateway_metrics", "http context", "http", "gateway_metrics;", CONTEXT),
    ("gateway_metrics", "server context", "server", "gateway_metrics;", CONTEXT),
    ("gateway_metrics", "main context", "main", "gateway_metrics;", CONTEXT),
    ("gateway_metrics", "inside if", "if", "gateway_metrics;", CONTEXT),
]

# Which file has the arity, context and value cases of each directive (this file included).
COVERAGE = """\
directive                 arity         context       bad values
gateway                   010, 080      080           010 (value, duplicate)
auth_jwt                  022, 080      080           022 (token=, duplicate, no keys), 043 (token= vs logged variables)
auth_jwt_key_file         080           080           022 (missing/unreadable/bad files, weak keys, kid=), 080
auth_jwt_leeway           080           080           022, 080
auth_jwt_type             080           080           022
auth_jwt_require          022, 080      080           022
auth_jwt_claim_set        022, 080      022, 080      022, 080
auth_jwt_header_set       080           022, 080      080
auth_jwt_algorithms       080           080           022
auth_jwt_issuer           080           080           022 (duplicate)
auth_jwt_audience         080           080           022 (duplicate)
auth_jwt_typ              080           080           022 (duplicate)
auth_jwt_require_exp      080           080           022, 080
auth_jwt_require_claim    022, 080      080           022
auth_jwt_cache            080           022, 080      022
auth_jwt_max_size         080           080           022
rate_limit_zone           031, 080      031, 080      031 (size, duplicate, key), 080 (conflicting zones)
rate_limit                031 (params), 080  080      031, 080
rate_limit_status         080           080           031, 080
rate_limit_headers        080           080           031, 080
rate_limit_dry_run        080           080           080
rate_limit_invalid_rate   080           080           031, 080
gateway_log               080           080           040 (buffer, flush, off), 080
gateway_log_field         080           080           040 (credentials, names), 043 (credentials: names, token=)
gateway_log_fields        080           080           040, 080
gateway_metrics           042           080           -"""

KEYS_LOC = f"auth_jwt_key_file {K}/jwks.json;"


def regex(msg):
    out = []
    for ch in msg:
        if ch.isalnum() or ch in " _-,:;=\"'<>":
            out.append(ch)
        else:
            out.append("\\" + ch)
    return "".join(out)


def block(n, d, case, where, snippet, msg):
    msg = msg.format(d=d)
    # Zones some snippets use.
    http_extra = ""
    if d == "rate_limit" and where in ("location", "if"):
        http_extra = "    rate_limit_zone $host zone=z:1m;\n"
    sections = []
    if where == "main":
        sections.append(("main_config", f"    {snippet}\n"))
    if where == "http":
        sections.append(("http_config", f"    {snippet}\n"))
    elif http_extra:
        sections.append(("http_config", http_extra))
    if where == "server":
        sections.append(("config", f"    {snippet}\n"))
    elif where == "location":
        sections.append(("config", f"    location /t {{\n        {snippet}\n    }}\n"))
    elif where == "if":
        sections.append(("config", f"    location /t {{\n        if ($arg_x) {{\n            {snippet}\n        }}\n    }}\n"))
    else:
        sections.append(("config", ""))
    out = [f"=== TEST {n}: {d}: {case}\n"]
    for name, text in sections:
        out.append(f"--- {name}\n{text}")
    out.append("--- must_die\n--- error_log eval\n")
    out.append(f"qr/\\[emerg\\] \\d+#\\d+: {regex(msg)} in \\S+nginx\\.conf:\\d+/\n")
    return "".join(out)


def main():
    w = sys.stdout.write
    w("# GENERATED by t/gen/bad-config.py from its table: edit the table, then\n")
    w("#     python3 t/gen/bad-config.py > t/080-bad-config.t\n#\n")
    w("# Bad configurations, one block each: wrong number of arguments, wrong context, bad values,\n")
    w("# missing files and conflicting zones. nginx must refuse each (as `nginx -t` does) with an\n")
    w("# [emerg] line naming the directive and nginx.conf:<line>; the runner also fails a block on\n")
    w("# a crash. Cases already in t/010-gateway.t, t/022-jwt-config.t, t/031-ratelimit-zone.t,\n")
    w("# t/040-log.t and t/042-metrics.t are not repeated here. Where each directive's cases are:\n#\n")
    for line in COVERAGE.splitlines():
        w(f"#   {line}\n".rstrip() + "\n")
    w("#\n# (010 = t/010-gateway.t, 022 = t/022-jwt-config.t, 031 = t/031-ratelimit-zone.t,\n")
    w("# 040 = t/040-log.t, 042 = t/042-metrics.t, 080 = this file.)\n")
    w("use Test::Nginx::Socket 'no_plan';\nuse lib 't/lib';\nuse ProjectOnly;\nuse Cwd qw(cwd);\n\n")
    w("$ENV{TEST_NGINX_KEYS} ||= cwd() . '/t/keys';\n\nno_shuffle();\nrun_tests();\n\n__DATA__\n\n")
    blocks = [block(i + 1, *r) for i, r in enumerate(ROWS)]
    w("\n\n\n".join(blocks))


if __name__ == "__main__":
    main()
