# Guarantee 2 (atomicity) across crashes: a backend killed with SIGKILL
# while it updates a protected table (in the middle of capture, or once
# capture is written but before commit) makes the postmaster run crash
# recovery, after which the table is unchanged and guard holds no row of
# that transaction (guard.changesets, guard.changes, guard.change,
# guard.changeset, guard.snapshot).  A committed change followed by an
# immediate shutdown keeps its whole capture: guard.diff gives the same
# rows after recovery as before.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# The psql of a killed backend exits; telling it to quit then writes to a
# closed pipe.  Without this, SIGPIPE would end the whole test file.
$SIG{PIPE} = 'IGNORE';

my $nrows = 500_000;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'guard'
restart_after_crash = on
});
$node->start;

# zz_pause fires after guard_capture_upd (AFTER statement triggers fire in
# name order) and, when the session asks for it, sleeps: the transaction
# then holds its complete capture, uncommitted.
$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION guard;
CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL, pad text);
INSERT INTO big SELECT i, i, md5(i::text) FROM generate_series(1, $nrows) i;
SELECT guard.protect('big');
CREATE FUNCTION pause_if_asked() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	IF current_setting('test.pause', true) = 'on' THEN
		RAISE LOG 'test pause: % changes, % snapshot rows captured by this transaction',
			(SELECT count(*) FROM guard.change c JOIN guard.changeset s USING (changeset_id)
			  WHERE s.xid = pg_current_xact_id()),
			(SELECT coalesce(sum(c.rows), 0) FROM guard.changes c
			   JOIN guard.changeset s USING (changeset_id)
			  WHERE s.xid = pg_current_xact_id());
		PERFORM pg_sleep(600);
	END IF;
	RETURN NULL;
END
\$\$;
CREATE TRIGGER zz_pause AFTER UPDATE ON big
	FOR EACH STATEMENT EXECUTE FUNCTION pause_if_asked();
VACUUM ANALYZE big;
});

my $table_sql = q{SELECT count(*) || ' ' || md5(string_agg(id || ':' || v || ':' || coalesce(pad, '-'), ',' ORDER BY id)) FROM big};
my $guard_sql = q{
SELECT (SELECT count(*) FROM guard.changeset) || ' '
    || (SELECT count(*) FROM guard.change) || ' '
    || (SELECT count(*) FROM guard.snapshot) || ' '
    || (SELECT count(*) FROM guard.changes) || ' '
    || (SELECT count(*) FROM guard.changesets)};
my $doomed_sql = q{
SELECT (SELECT count(*) FROM guard.changeset WHERE label = 'doomed') + (SELECT count(*) FROM guard.changesets WHERE label = 'doomed')
     + (SELECT count(*) FROM guard.change c WHERE NOT EXISTS (SELECT FROM guard.changeset s WHERE s.changeset_id = c.changeset_id))
     + (SELECT count(*) FROM guard.snapshot n WHERE NOT EXISTS (SELECT FROM guard.change c WHERE c.change_id = n.change_id))};

# Start "UPDATE big" in a background session that will be killed; run
# $wait (a sub) to decide when; SIGKILL the backend; wait for recovery.
# Returns the log offset after the crash messages.
sub crash_during_update
{
	my ($name, $wait) = @_;

	my $table_before = $node->safe_psql('postgres', $table_sql);
	my $guard_before = $node->safe_psql('postgres', $guard_sql);
	my $log_offset = -s $node->logfile;

	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $bg->query_safe('SELECT pg_backend_pid()');
	like($pid, qr/^\d+$/, "$name: background backend pid");
	$bg->query_until(
		qr/update starts/, q{
SET test.pause = on;
BEGIN;
SELECT guard.label('doomed') > 0;
\echo update starts
UPDATE big SET v = -v, pad = md5(pad);
COMMIT;
});

	$wait->($pid, $log_offset);

	my $where = $node->safe_psql('postgres',
		"SELECT coalesce(wait_event, state) FROM pg_stat_activity WHERE pid = $pid");
	note "$name: killing backend $pid (it is at: $where)";
	is(kill('KILL', $pid), 1, "$name: SIGKILL sent to the backend");

	# the postmaster notices, kills every backend and recovers
	$node->wait_for_log(qr/server process \(PID $pid\) was terminated by signal 9/,
		$log_offset);
	$node->poll_query_until('postgres', 'SELECT true')
	  or die "$name: server did not come back after the crash";
	my $log = slurp_file($node->logfile, $log_offset);
	like($log, qr/all server processes terminated; reinitializing/,
		"$name: the postmaster reinitialized");
	like($log, qr/database system was not properly shut down; automatic recovery in progress/,
		"$name: crash recovery ran");
	eval { $bg->quit; };

	is($node->safe_psql('postgres', $table_sql),
		$table_before, "$name: the table is unchanged after recovery");
	is($node->safe_psql('postgres', $guard_sql),
		$guard_before,
		"$name: guard's tables and views hold the same rows as before the transaction");
	is($node->safe_psql('postgres', $doomed_sql),
		'0', "$name: no change set, change or snapshot of the killed transaction remains");
	return;
}

# 1. killed while capture writes the snapshot: as soon as guard.snapshot
# grows, the statement is capturing (the pause keeps it from committing
# if capture happens to finish first)
my $snapshot_size = $node->safe_psql('postgres',
	q{SELECT pg_total_relation_size('guard.snapshot')});
crash_during_update(
	'killed during capture',
	sub {
		$node->poll_query_until('postgres',
			"SELECT pg_total_relation_size('guard.snapshot') > $snapshot_size")
		  or die 'capture never started writing';
	});

# 2. killed once the whole capture is written, before commit
crash_during_update(
	'killed after capture, before commit',
	sub {
		my ($pid, $offset) = @_;
		$node->wait_for_log(
			qr/\[$pid\].*test pause: 1 changes, $nrows snapshot rows captured by this transaction/,
			$offset);
		pass('killed after capture, before commit: the transaction had captured every row');
	});

# After recovery, capture works again.
$node->safe_psql('postgres',
	q{UPDATE big SET v = 0 WHERE id = 7});
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(c.kind || ' ' || c.rows || ' ' || d.key || ' ' || d."column"
                  || ' ' || d.before || '->' || d.after, '; ')
  FROM guard.changes c CROSS JOIN LATERAL guard.diff(c.change_id) d}),
	'UPDATE 1 (id)=(7) v 7->0',
	'after recovery, a new UPDATE is captured');

# 3. a committed change set of several statements, then an immediate
# shutdown without checkpoint: its capture is replayed from WAL whole
$node->safe_psql(
	'postgres', q{
BEGIN;
SELECT guard.label('kept');
UPDATE big SET v = v * 10, pad = NULL WHERE id % 1000 = 0;
DELETE FROM big WHERE id BETWEEN 100 AND 149;
INSERT INTO big SELECT i, i, 'new' FROM generate_series(1000001, 1000020) i;
UPDATE big SET pad = repeat('x', 10000) WHERE id = 3;
COMMIT;
});
my $changes_sql = q{
SELECT cs.changeset_id, cs.xid, cs.label, cs.changes, cs.rows, cs.snapshot_bytes,
       c.change_id, c.kind, c.rows, c.snapshot_bytes, c.statement, c.state
  FROM guard.changesets cs JOIN guard.changes c USING (changeset_id)
 WHERE cs.label = 'kept' ORDER BY c.change_id};
my $diff_sql = q{
SELECT count(*) || ' ' || md5(string_agg(c.change_id || '|' || d.key || '|' || coalesce(d."column", '-') || '|'
                                         || coalesce(d.before, '<null>') || '|' || coalesce(d.after, '<null>'),
                                         E'\n' ORDER BY c.change_id, d.key, d."column"))
  FROM guard.changesets cs JOIN guard.changes c USING (changeset_id)
 CROSS JOIN LATERAL guard.diff(c.change_id) d
 WHERE cs.label = 'kept'};
my $changes_before = $node->safe_psql('postgres', $changes_sql);
my $diff_before = $node->safe_psql('postgres', $diff_sql);
my $table_before = $node->safe_psql('postgres', $table_sql);
is(scalar(split /\n/, $changes_before), 4, 'the committed change set has four changes');
like($diff_before, qr/^(\d+) /, 'the committed change set has a diff');
my ($ndiff) = $diff_before =~ /^(\d+) /;
# 500 updated rows x 2 columns, 50 deleted x 3, 20 inserted x 3, 1 x 1
is($ndiff, 500 * 2 + 50 * 3 + 20 * 3 + 1, 'the diff has one row per captured column');

my $log_offset = -s $node->logfile;
$node->stop('immediate');
$node->start;
like(slurp_file($node->logfile, $log_offset),
	qr/database system was interrupted|not properly shut down; automatic recovery in progress/,
	'the restart after the immediate shutdown ran crash recovery');

is($node->safe_psql('postgres', $changes_sql),
	$changes_before, 'the change set and its changes are intact after recovery');
is($node->safe_psql('postgres', $diff_sql),
	$diff_before, 'guard.diff gives the same rows after recovery');
is($node->safe_psql('postgres', $table_sql),
	$table_before, 'the table is as committed after recovery');

$node->stop;
done_testing();
