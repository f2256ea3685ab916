# Loaded by the preamble of the t/ files, for the real Test::Nginx::Socket (prove):
#
#     use Test::Nginx::Socket 'no_plan';
#     use lib 't/lib';
#     use ProjectOnly;
#
# A block with `--- project_only: <why>` uses sections that only the project's runner
# (tests/t.rs) knows: prove skips it, with that reason. A block that uses such a section without
# saying so fails here, as it does in the project's runner: Test::Nginx would otherwise ignore
# the section and pass the block with those checks silently dropped. See t/README.md,
# "Project-only blocks". The list below is PROJECT_SECTIONS of tests/t/block.rs.
package ProjectOnly;

use strict;
use warnings;
use Test::More ();
use Test::Nginx::Util ();

our @Sections = qw(
    concurrent_request concurrent_requests concurrency status_counts distinct_header_values
    reload_after_request reload_http_config reload_config
    json_log_file json_log_lines json_log_match no_json_log
    after_request prometheus
);

Test::Nginx::Util::add_block_preprocessor(sub {
    my $block = shift;
    my $why = $block->project_only;
    if (!defined $why) {
        my @used = grep { defined $block->$_ } @Sections;
        return if !@used;
        Test::More::fail($block->name . " - uses the project runner's section(s) @used: "
                         . "add --- project_only: <why>");
        $why = "(undeclared)";
    }
    $why =~ s/\s+/ /g;
    # skip_nginx with an always-true condition is how Test::Nginx skips a block with a reason:
    # nginx is not started and none of the block's checks run.
    $block->set_value(skip_nginx => "1: > 0.0.0: project runner only: $why");
});

1;
