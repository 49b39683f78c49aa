# Guarantee 9 on a physical standby (issue 16, item 4): guard's records
# reach a streaming hot standby through WAL, identical to the primary's; on
# the standby, the functions that only read work and give the primary's
# answers (diff, dry runs of restore and restore_to, verify_restore, and
# the history functions where they exist), and a real restore is refused
# with a message saying it must run on the primary.  After promotion, the
# change set restores exactly on the new primary, and capture goes on
# there.
#
# PENDING (test/t-pending): fails on today's code; see the report of
# issue 16.  The dry runs and verify_restore fail on the standby with
# "cannot execute nextval() in a read-only transaction".
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', "shared_preload_libraries = 'guard'");
$primary->start;
$primary->safe_psql(
	'postgres', q{
CREATE EXTENSION guard;
CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL, note text);
INSERT INTO acct SELECT g, g * 10, 'n' || g FROM generate_series(1, 1000) g;
SELECT guard.protect('acct');
});

# the standby gets shared_preload_libraries with the primary's configuration
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

my $table_sql = q{SELECT count(*) || ' ' || md5(string_agg(id || ':' || balance || ':' || coalesce(note, '-'), ',' ORDER BY id)) FROM acct};
my $state0 = $primary->safe_psql('postgres', $table_sql);
my $before = $primary->safe_psql('postgres', 'SELECT now()');

# The incident, on the primary.
$primary->safe_psql(
	'postgres', q{
BEGIN;
SELECT guard.label('incident');
UPDATE acct SET balance = 0 WHERE id <= 100;
DELETE FROM acct WHERE id > 950;
UPDATE acct SET note = repeat('x', 10000) WHERE id = 7;
COMMIT;
});
my $state1 = $primary->safe_psql('postgres', $table_sql);
my $cs = $primary->safe_psql('postgres',
	q{SELECT changeset_id FROM guard.changesets WHERE label = 'incident'});
$primary->wait_for_catchup($standby);

my %q = (
	records => q{
SELECT string_agg(concat_ws(' ', c.change_id, c.changeset_id, c.at, c.relation, c.kind, c.rows,
							c.snapshot_bytes, c.state, md5(c.statement)), E'\n' ORDER BY c.change_id)
  FROM guard.changes c},
	diff => q{
SELECT count(*) || ' ' || md5(string_agg(c.change_id || '|' || d.key || '|' || coalesce(d."column", '-')
									 || '|' || coalesce(d.before, '<null>') || '|' || coalesce(d.after, '<null>'),
									 E'\n' ORDER BY c.change_id, d.key, d."column"))
  FROM guard.changes c CROSS JOIN LATERAL guard.diff(c.change_id) d},
	dry_run => qq{
SELECT string_agg(concat_ws(' ', change_id, changeset_id, relation, kind, rows_restored, rows_skipped, conflicts),
				  E'\n' ORDER BY change_id)
  FROM guard.restore($cs, dry_run => true)},
	restore_to_dry_run => qq{
SELECT string_agg(concat_ws(' ', change_id, changeset_id, relation, kind, rows_restored, rows_skipped, conflicts),
				  E'\n' ORDER BY change_id)
  FROM guard.restore_to('acct', '$before', dry_run => true)},
	verify_restore => qq{
SELECT string_agg(concat_ws(' ', change_id, relation, rows_checked, rows_matching, ok), E'\n' ORDER BY change_id)
  FROM guard.verify_restore($cs)});

# What the primary answers (its dry runs write nothing that lasts).
my %on_primary;
$on_primary{$_} = $primary->safe_psql('postgres', $q{$_}) for sort keys %q;
like($on_primary{dry_run}, qr/UPDATE 100 0 0/, 'on the primary, the dry run reports the restore');
like($on_primary{verify_restore}, qr/ t$/, 'on the primary, the restore drill passes');

# The standby gives the same answers.
is($standby->safe_psql('postgres', q{SELECT pg_is_in_recovery()}), 't', 'the standby is in recovery');
is($standby->safe_psql('postgres', $table_sql), $state1, 'the standby has the incident');
for my $what (sort keys %q)
{
	my ($stdout, $stderr) = ('', '');
	$standby->psql('postgres', $q{$what}, stdout => \$stdout, stderr => \$stderr);
	is($stdout, $on_primary{$what}, "on the standby, $what gives the primary's answer")
	  or diag("stderr: $stderr");
}

# History functions, where they exist.
SKIP:
{
	skip 'guard.as_of() does not exist yet', 1
	  unless $primary->safe_psql('postgres',
		q{SELECT to_regproc('guard.as_of') IS NOT NULL}) eq 't';
	my $as_of = qq{
SELECT count(*) || ' ' || md5(string_agg(id || ':' || balance || ':' || coalesce(note, '-'), ',' ORDER BY id))
  FROM guard.as_of(NULL::acct, '$before')};
	my ($stdout, $stderr) = ('', '');
	$standby->psql('postgres', $as_of, stdout => \$stdout, stderr => \$stderr);
	is($stdout, $state0, 'on the standby, as_of gives the table before the incident')
	  or diag("stderr: $stderr");
}
SKIP:
{
	skip 'guard.history() does not exist yet', 1
	  unless $primary->safe_psql('postgres',
		q{SELECT to_regproc('guard.history') IS NOT NULL}) eq 't';
	my $history = q{SELECT count(*) FROM guard.history('acct', '{"id": 7}')};
	my ($stdout, $stderr) = ('', '');
	$standby->psql('postgres', $history, stdout => \$stdout, stderr => \$stderr);
	is($stdout, $primary->safe_psql('postgres', $history),
		"on the standby, history gives the primary's answer")
	  or diag("stderr: $stderr");
}

# A real restore on the standby is refused, saying where to run it.
{
	my ($stdout, $stderr) = ('', '');
	my $rc = $standby->psql(
		'postgres', "\\set VERBOSITY verbose\nSELECT * FROM guard.restore($cs)",
		stdout => \$stdout,
		stderr => \$stderr);
	isnt($rc, 0, 'on the standby, a real restore fails');
	like($stderr, qr/primary/, 'with a message saying it must run on the primary');
	unlike($stderr, qr/nextval/, 'not with a nextval() error');
}
is($standby->safe_psql('postgres', $table_sql), $state1, 'the standby is unchanged');

# Failover: promote the standby, restore there, exactly.
$primary->stop;
$standby->promote;
$standby->poll_query_until('postgres', q{SELECT NOT pg_is_in_recovery()})
  or die 'the standby was not promoted';
is($standby->safe_psql('postgres', $q{records}), $on_primary{records},
	'after promotion, the records are those of the old primary');
$standby->safe_psql('postgres', qq{SELECT * FROM guard.restore($cs)});
is($standby->safe_psql('postgres', $table_sql), $state0,
	'after promotion, the restore gives the state before the incident exactly');

# Capture goes on on the new primary, with new ids.
my $last_change = $standby->safe_psql('postgres', q{SELECT max(change_id) FROM guard.change});
$standby->safe_psql('postgres', q{UPDATE acct SET balance = -1 WHERE id = 1});
is( $standby->safe_psql(
		'postgres',
		qq{SELECT count(*) FROM guard.changes WHERE change_id > $last_change AND kind = 'UPDATE' AND rows = 1}),
	'1',
	'after promotion, a new change is captured under a new id');

unlike(slurp_file($standby->logfile), qr/terminated by signal/, 'no backend crashed on the standby');

$standby->stop;
done_testing();
