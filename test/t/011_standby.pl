# Guarantee 9 on a physical standby (issue 16, item 4): guard's records
# reach a streaming hot standby through WAL, identical to the primary's; on
# the standby, the functions that only read work and give the primary's
# answers (diff, the dry runs of restore, restore_change and restore_to,
# verify_restore, as_of and history), and a real restore is refused
# (25006) with a message saying it must run on the primary.  After
# promotion, the change set restores exactly on the new primary, and
# capture goes on there.
#
# On the standby the dry runs only plan (src/undo_plan.c): they write
# nothing, and their report (estimated_seconds included), their progress
# in guard.restore_progress() and the drill's verdict must be the
# primary's, where the dry run restores for real in a subtransaction it
# rolls back.  The incident has updates, deletes, an insert, a toasted
# value and moved keys, and rows changed twice, so that the plan of an
# older change is judged against the plan of a newer one; a later change
# set writes some of its rows (conflicts).
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
-- a real restore first, so that the estimates have rates to go by
CREATE TABLE warmup (id int PRIMARY KEY, v int);
INSERT INTO warmup SELECT g, g FROM generate_series(1, 200) g;
SELECT guard.protect('warmup');
BEGIN;
SELECT guard.label('warm-up');
UPDATE warmup SET v = -v WHERE id <= 100;
DELETE FROM warmup WHERE id > 150;
INSERT INTO warmup VALUES (1000, 0);
COMMIT;
SELECT count(*) FROM guard.restore((SELECT changeset_id FROM guard.changesets WHERE label = 'warm-up'));
});

# the standby gets shared_preload_libraries with the primary's configuration
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

my $table_sql = q{SELECT count(*) || ' ' || md5(string_agg(id || ':' || balance || ':' || coalesce(note, '-'), ',' ORDER BY id)) FROM acct};
my $state0 = $primary->safe_psql('postgres', $table_sql);
my $before = $primary->safe_psql('postgres', 'SELECT now()');

# The incident, on the primary; then a later change set writes some rows.
$primary->safe_psql(
	'postgres', q{
BEGIN;
SELECT guard.label('incident');
UPDATE acct SET balance = 0 WHERE id <= 100;
DELETE FROM acct WHERE id > 950 OR id = 300;
UPDATE acct SET note = repeat('x', 10000) WHERE id = 7;
UPDATE acct SET id = id + 10000 WHERE id BETWEEN 200 AND 209;
UPDATE acct SET balance = balance + 1 WHERE id BETWEEN 10200 AND 10204;
UPDATE acct SET id = id - 1 WHERE id BETWEEN 301 AND 310;
INSERT INTO acct VALUES (5000, 1, 'new');
COMMIT;
UPDATE acct SET balance = -5 WHERE id IN (2, 3);
});
my $state1 = $primary->safe_psql('postgres', $table_sql);
my $cs = $primary->safe_psql('postgres',
	q{SELECT changeset_id FROM guard.changesets WHERE label = 'incident'});
my $one = $primary->safe_psql('postgres',
	qq{SELECT max(change_id) FROM guard.change WHERE changeset_id = $cs AND kind = 'UPDATE'});
$primary->wait_for_catchup($standby);

# a report as text, every column of every row
my $report = q{SELECT string_agg(r::text, E'\n' ORDER BY r.change_id, r.kind) FROM };
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
	dry_run_skip => $report . qq{guard.restore($cs, dry_run => true, on_conflict => 'skip') r},
	dry_run_overwrite => $report
	  . qq{guard.restore($cs, dry_run => true, on_conflict => 'overwrite') r},
	dry_run_change => $report
	  . qq{guard.restore_change($one, dry_run => true, on_conflict => 'skip') r},
	restore_to_dry_run => $report
	  . qq{guard.restore_to('acct', '$before', dry_run => true, on_conflict => 'overwrite') r},
	verify_restore => qq{
SELECT string_agg(r::text, E'\n' ORDER BY change_id) FROM guard.verify_restore($cs) r},
	as_of => qq{
SELECT count(*) || ' ' || md5(string_agg(id || ':' || balance || ':' || coalesce(note, '-'), ',' ORDER BY id))
  FROM guard.as_of(NULL::acct, '$before')},
	history => q{
SELECT count(*) || ' ' || md5(string_agg(h::text, E'\n' ORDER BY h.change_id, h."column"))
  FROM guard.history('acct', '{"id": 7}') h});

# What the primary answers (its dry runs write nothing that lasts).
my %on_primary;
$on_primary{$_} = $primary->safe_psql('postgres', $q{$_}) for sort keys %q;
like($on_primary{dry_run_skip}, qr/,public\.acct,UPDATE,98,2,2,,[0-9.e+-]+\)/,
	'on the primary, the dry run reports the restore, with its estimate');
like($on_primary{verify_restore}, qr/,t\)$/, 'on the primary, the restore drill passes');
is($on_primary{as_of}, $state0, 'on the primary, as_of gives the table before the incident');
my ($abort_rc, $abort_out, $abort_err) = (0, '', '');
$abort_rc = $primary->psql(
	'postgres', "SELECT * FROM guard.restore($cs, dry_run => true)",
	stdout => \$abort_out,
	stderr => \$abort_err);
like($abort_err, qr/2 rows were changed since/, 'on the primary, the dry run stops at the conflicts');

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
{
	my ($stdout, $stderr) = ('', '');
	$standby->psql(
		'postgres', "SELECT * FROM guard.restore($cs, dry_run => true)",
		stdout => \$stdout,
		stderr => \$stderr);
	is($stderr, $abort_err, "on the standby, the dry run stops at the conflicts as on the primary");
}

# Progress: a dry run waiting for a lock shows where it stands, in shared
# memory, the same on both.  A transaction on the primary holds ACCESS
# EXCLUSIVE on the table; the standby replays the lock.
my $locker = $primary->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE acct IN ACCESS EXCLUSIVE MODE;');
# a commit flushes the WAL that holds the lock, and the standby gets it
$primary->safe_psql('postgres', 'SELECT pg_current_xact_id()');
$standby->poll_query_until(
	'postgres', q{
SELECT count(*) = 1 FROM pg_locks
 WHERE locktype = 'relation' AND relation = 'acct'::regclass
   AND mode = 'AccessExclusiveLock' AND granted})
  or die 'the standby did not replay the lock';

my $progress_sql = q{
SELECT concat_ws(' ', changeset_id, change_id, phase, rows_done, rows_total, dry_run)
  FROM guard.restore_progress() WHERE pid = };
my %progress;
my %waiting;
for my $node ($standby, $primary)
{
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $bg->query_safe('SELECT pg_backend_pid()');
	$bg->query_until(qr/started/,
		"\\echo started\n$q{dry_run_skip};\n");
	ok( $node->poll_query_until(
			'postgres',
			qq{SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $pid}),
		$node->name . ': the dry run waits for the lock');
	$progress{ $node->name } = $node->safe_psql('postgres', $progress_sql . $pid);
	$waiting{ $node->name } = $bg;
}
like($progress{primary}, qr/^$cs \d+ \S.* t$/, 'on the primary, the waiting dry run shows its progress');
note("progress of the waiting dry run: $progress{primary}");
is($progress{standby}, $progress{primary},
	"on the standby, the waiting dry run shows the primary's progress");
$locker->query_safe('COMMIT');
$locker->quit;
for my $name ('standby', 'primary')
{
	my $out = $waiting{$name}->query('');
	is($out, $on_primary{dry_run_skip}, "$name: the dry run that waited gives the same report");
	$waiting{$name}->quit;
}

# A real restore on the standby is refused, saying where to run it.
for my $call ("guard.restore($cs)", "guard.restore_change($one)",
	"guard.restore_to('acct', '$before')")
{
	my ($stdout, $stderr) = ('', '');
	my $rc = $standby->psql(
		'postgres', "\\set VERBOSITY verbose\nSELECT * FROM $call",
		stdout => \$stdout,
		stderr => \$stderr);
	isnt($rc, 0, "on the standby, a real $call fails");
	like($stderr, qr/ERROR:  25006: cannot restore during recovery/, '... as a read-only transaction error');
	like($stderr, qr/HINT:  Run the restore on the primary/, '... saying it must run on the primary');
}
is($standby->safe_psql('postgres', $table_sql), $state1, 'the standby is unchanged');
is($standby->safe_psql('postgres', $q{records}), $on_primary{records}, 'the standby recorded nothing');

# Failover: promote the standby, restore there, exactly.
$primary->stop;
$standby->promote;
$standby->poll_query_until('postgres', q{SELECT NOT pg_is_in_recovery()})
  or die 'the standby was not promoted';
is($standby->safe_psql('postgres', $q{records}), $on_primary{records},
	'after promotion, the records are those of the old primary');
is( $standby->safe_psql(
		'postgres',
		$report . qq{guard.restore($cs, on_conflict => 'overwrite') r}),
	$on_primary{dry_run_overwrite},
	'after promotion, the restore does what the dry runs said');
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
