# Two-phase commit: guard's records of a guarded change are part of the
# prepared transaction.  A PREPARE TRANSACTION survives a crash restart
# with them; COMMIT PREPARED then makes the change set appear, whole and
# exactly restorable, and ROLLBACK PREPARED leaves nothing recorded.  A
# restore can be prepared and committed (or rolled back) after a restart in
# the same way.  The commit-time (deferred) invariant checks run at PREPARE
# TRANSACTION, since COMMIT PREPARED cannot fail.
#
# Each transaction here runs in its own session, as a transaction manager
# would run them.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('two_phase');
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
CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL, note text);
INSERT INTO acct SELECT g, g * 10, 'n' || g FROM generate_series(1, 1000) g;
SELECT guard.protect('acct');
});

my $table_sql = q{SELECT count(*) || ' ' || md5(string_agg(id || ':' || balance || ':' || coalesce(note, '-'), ',' ORDER BY id)) FROM acct};
my $records_sql = q{
SELECT (SELECT count(*) FROM guard.changeset) || ' changesets, '
	|| (SELECT count(*) FROM guard.change) || ' changes, '
	|| (SELECT count(*) FROM guard.snapshot) || ' chunks'};
my $prepared_sql = q{SELECT coalesce(string_agg(gid, ',' ORDER BY gid), '') FROM pg_prepared_xacts};

# immediate stop and start: prepared transactions come back from WAL
sub crash_restart
{
	$node->stop('immediate');
	$node->start;
	return;
}

my $state0 = $node->safe_psql('postgres', $table_sql);

# Two guarded transactions, prepared: "a" several statements, "b" one.
$node->safe_psql(
	'postgres', q{
BEGIN;
SELECT guard.label('two-phase a');
UPDATE acct SET balance = balance + 1 WHERE id <= 300;
DELETE FROM acct WHERE id BETWEEN 901 AND 950;
INSERT INTO acct SELECT g, 0, 'new' FROM generate_series(1001, 1020) g;
UPDATE acct SET note = repeat('x', 10000) WHERE id = 7;
PREPARE TRANSACTION 'a';
});
$node->safe_psql(
	'postgres', q{
BEGIN;
UPDATE acct SET balance = 0 WHERE id BETWEEN 501 AND 600;
PREPARE TRANSACTION 'b';
});
my $xid_a = $node->safe_psql('postgres',
	q{SELECT transaction FROM pg_prepared_xacts WHERE gid = 'a'});
is($node->safe_psql('postgres', $prepared_sql), 'a,b', 'two transactions are prepared');
is($node->safe_psql('postgres', $records_sql), '0 changesets, 0 changes, 0 chunks',
	'nothing of a prepared transaction is visible in guard\'s records');

crash_restart();
is($node->safe_psql('postgres', $prepared_sql), 'a,b',
	'after a crash restart, both are still prepared');
is($node->safe_psql('postgres', $table_sql), $state0, 'and the table is unchanged');

# COMMIT PREPARED: the change set appears, whole.
$node->safe_psql('postgres', q{COMMIT PREPARED 'a'});
my $state_a = $node->safe_psql('postgres', $table_sql);
isnt($state_a, $state0, 'COMMIT PREPARED applied the changes');
my $cs_a = $node->safe_psql('postgres',
	q{SELECT changeset_id FROM guard.changesets WHERE label = 'two-phase a'});
like($cs_a, qr/^\d+$/, 'COMMIT PREPARED: the labelled change set is recorded');
is($node->safe_psql('postgres', qq{SELECT xid::xid FROM guard.changeset WHERE changeset_id = $cs_a}),
	$xid_a, 'with the id of the prepared transaction');
is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(kind || ' ' || rows, ', ' ORDER BY change_id)
  FROM guard.changes WHERE changeset_id = $cs_a}),
	'UPDATE 300, DELETE 50, INSERT 20, UPDATE 1',
	'COMMIT PREPARED: one change per statement, with all their rows');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM guard.changes c CROSS JOIN LATERAL guard.diff(c.change_id)
 WHERE c.changeset_id = $cs_a}),
	300 + 50 * 3 + 20 * 3 + 1,
	'COMMIT PREPARED: the snapshots decode to one diff row per captured column');

# ROLLBACK PREPARED: nothing recorded.
$node->safe_psql('postgres', q{ROLLBACK PREPARED 'b'});
is($node->safe_psql('postgres', $table_sql), $state_a, 'ROLLBACK PREPARED changed nothing');
is($node->safe_psql('postgres', q{SELECT count(*) FROM guard.changeset}), '1',
	'ROLLBACK PREPARED: no change set of it is recorded');
is( $node->safe_psql(
		'postgres', q{
SELECT count(DISTINCT k) FILTER (WHERE k BETWEEN 1 AND 300) || ' '
	|| count(DISTINCT k) FILTER (WHERE k BETWEEN 501 AND 600)
  FROM guard.changes c CROSS JOIN LATERAL guard.diff(c.change_id) d
 CROSS JOIN LATERAL CAST(substring(d.key FROM '^\(id\)=\((\d+)\)$') AS int) k}),
	'300 0',
	'ROLLBACK PREPARED: no captured row of it is left, those of COMMIT PREPARED are');

# The committed prepared change set restores exactly.
$node->safe_psql('postgres', qq{SELECT * FROM guard.restore($cs_a)});
is($node->safe_psql('postgres', $table_sql), $state0,
	'the change set of COMMIT PREPARED restores exactly');
my $cs_r = $node->safe_psql('postgres',
	qq{SELECT changeset_id FROM guard.changeset WHERE restore_of = $cs_a});
like($cs_r, qr/^\d+$/, 'the restore is recorded');

# A restore prepared, restarted, committed: undo the restore.
$node->safe_psql(
	'postgres', qq{
BEGIN;
SELECT count(*) FROM guard.restore($cs_r);
PREPARE TRANSACTION 'r';
});
is($node->safe_psql('postgres', $table_sql), $state0,
	'a prepared restore is not visible before it commits');
crash_restart();
is($node->safe_psql('postgres', $prepared_sql), 'r',
	'after a crash restart, the restore is still prepared');
$node->safe_psql('postgres', q{COMMIT PREPARED 'r'});
is($node->safe_psql('postgres', $table_sql), $state_a,
	'COMMIT PREPARED of the restore gives the state it restored to exactly');
is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(DISTINCT state, ',') FROM guard.change WHERE changeset_id = $cs_r}),
	'restored',
	'the restored change set is marked restored');
my $cs_rr = $node->safe_psql('postgres',
	qq{SELECT changeset_id FROM guard.changeset WHERE restore_of = $cs_r});
like($cs_rr, qr/^\d+$/, 'the prepared restore is a change set of its own');

# A restore prepared, restarted, rolled back: nothing happened.
my $records = $node->safe_psql('postgres', $records_sql);
$node->safe_psql(
	'postgres', qq{
BEGIN;
SELECT count(*) FROM guard.restore($cs_rr);
PREPARE TRANSACTION 'r2';
});
crash_restart();
$node->safe_psql('postgres', q{ROLLBACK PREPARED 'r2'});
is($node->safe_psql('postgres', $table_sql), $state_a,
	'ROLLBACK PREPARED of a restore leaves the table as it was');
is($node->safe_psql('postgres', $records_sql), $records,
	'ROLLBACK PREPARED of a restore leaves guard\'s records as they were');
is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(DISTINCT state, ',') FROM guard.change WHERE changeset_id = $cs_rr}),
	'active',
	'and the change set it would have restored still active');
is($node->safe_psql('postgres', qq{SELECT bool_and(ok) FROM guard.verify_restore($cs_rr)}),
	't', 'and restorable');

# Deferred invariant checks run at PREPARE TRANSACTION.
$node->safe_psql('postgres',
	q{SELECT guard.add_invariant('acct', 'balance_nonnegative', row_check => 'balance >= 0')});
my ($stdout, $stderr);
my $rc = $node->psql(
	'postgres', q{
BEGIN;
UPDATE acct SET balance = -1 WHERE id = 2;
PREPARE TRANSACTION 'bad';
},
	stdout => \$stdout,
	stderr => \$stderr);
like($stderr, qr/balance_nonnegative/,
	'PREPARE TRANSACTION of a change that breaks a deferred invariant fails, naming it');
is($node->safe_psql('postgres', $prepared_sql), '', 'nothing is left prepared');
is($node->safe_psql('postgres', $table_sql), $state_a, 'and the table is unchanged');
is($node->safe_psql('postgres', $records_sql), $records, 'and nothing recorded');

unlike(slurp_file($node->logfile), qr/terminated by signal/, 'no backend crashed');

$node->stop;
done_testing();
