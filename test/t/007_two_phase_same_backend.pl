# Two-phase commit and guard's per-backend caches: a backend that prepared
# a guarded transaction goes on with other transactions while the prepared
# one waits.  What the prepared transaction wrote to guard's tables (here
# the first layout row of the table) is not committed, and may never be:
# a change the backend commits next must not rely on it.  After ROLLBACK
# PREPARED of the first, the second's change set is still complete and
# restores exactly.
#
# PENDING (test/t-pending): fails on today's code; see the report of
# issue 16.  The layout cache of changes.c keeps, after PREPARE
# TRANSACTION, the id of the layout row the prepared transaction wrote; the
# next change reuses it, and after ROLLBACK PREPARED its diff and restore
# fail with "guard: layout N of change M is missing" (XX000).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('two_phase_same_backend');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'guard'
max_prepared_transactions = 10
});
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION guard;
CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL);
INSERT INTO acct SELECT g, g * 10 FROM generate_series(1, 10) g;
SELECT guard.protect('acct');
});
my $table_sql = q{SELECT string_agg(id || ':' || balance, ',' ORDER BY id) FROM acct};
my $state0 = $node->safe_psql('postgres', $table_sql);

# One backend: prepare the table's first guarded change, then commit another.
my $session = $node->background_psql('postgres');
$session->query_safe(
	q{BEGIN;
UPDATE acct SET balance = 0 WHERE id = 1;
PREPARE TRANSACTION 'first';});
$session->query_safe(q{UPDATE acct SET balance = -2 WHERE id = 2;});
$session->quit;

$node->safe_psql('postgres', q{ROLLBACK PREPARED 'first'});
my $cs = $node->safe_psql('postgres', q{SELECT max(changeset_id) FROM guard.changeset});

is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM guard.change c
 WHERE NOT EXISTS (SELECT FROM guard.layout l WHERE l.layout_id = c.layout_id)}),
	'0',
	'every committed change has its layout');

my ($stdout, $stderr) = ('', '');
$node->psql('postgres', qq{SELECT string_agg(key || ' ' || "column" || ' ' || before || '->' || after, ', ')
  FROM guard.changes c CROSS JOIN LATERAL guard.diff(c.change_id) WHERE c.changeset_id = $cs},
	stdout => \$stdout, stderr => \$stderr);
is($stdout, '(id)=(2) balance 20->-2', 'the committed change has its diff') or diag($stderr);

($stdout, $stderr) = ('', '');
$node->psql('postgres', qq{SELECT count(*) FROM guard.restore($cs)},
	stdout => \$stdout, stderr => \$stderr);
is($stdout, '1', 'and restores') or diag($stderr);
is($node->safe_psql('postgres', $table_sql), $state0, 'exactly');

$node->stop;
done_testing();
