# Guarantee 2 (atomicity) at a handful of crash points: a backend killed
# with SIGKILL, or the server stopped in immediate mode, in the middle of
#   - the capture of a 200k-row UPDATE,
#   - a restore of it (while it writes the table, and while guard captures
#     the restore's own writes),
#   - the capture of a TRUNCATE,
#   - a DROP TABLE (after guard recorded it, while it moves the table to
#     the trash),
#   - guard.purge() (after it expired the changes and deleted their
#     snapshots, while it drops a trashed table),
# and after a committed change with an immediate shutdown.  After each
# restart: guard's records are consistent (every change belongs to a change
# set; every change that is not expired has all its snapshot chunks,
# numbered without gaps, holding as many rows as the statement wrote; no
# snapshot row without its change; every trashed table has its DROP
# record), the table is in the state before or after the transaction (by
# md5; here always "before", except for a committed one), and a restore of
# what committed gives the exact prior state back.
#
# Each point is reached deterministically, by making the killed backend
# wait on something another session holds: a row of guard.snapshot with
# the key of a chunk the capture will write (its unique index check then
# waits for the other transaction), a table name the DROP will rename to, a
# lock on the trashed table purge will drop, or a pg_sleep in a user
# trigger at a chosen row.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $nrows = 200_000;

# a chunk of guard.snapshot holds ~40 rows of this table: chunk 1000 is
# written once ~40k rows are captured, long before the 200k are done
my $block_chunk = 1000;

my $node = PostgreSQL::Test::Cluster->new('crash_points');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'guard'
restart_after_crash = on
});
$node->start;

# pause_if_asked() sleeps on the row the session names with test.pause_at
# (counting rows written since test.pause_at was set): the statement is
# then in the middle of writing the table.  ENABLE ALWAYS: it fires during
# a restore too, whatever restore does about user triggers.
$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION guard;
CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL, pad text);
INSERT INTO big SELECT i, i, md5(i::text) FROM generate_series(1, $nrows) i;
CREATE TABLE small (id int PRIMARY KEY);
INSERT INTO small SELECT generate_series(1, 10);
SELECT guard.protect('small');
CREATE SEQUENCE rows_written;
CREATE FUNCTION pause_if_asked() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	IF coalesce(current_setting('test.pause_at', true), '') <> ''
	   AND nextval('public.rows_written') = current_setting('test.pause_at')::bigint THEN
		RAISE LOG 'test pause at row %', NEW.id;
		PERFORM pg_sleep(600);
	END IF;
	RETURN NEW;
END
\$\$;
CREATE TRIGGER pause BEFORE UPDATE ON big
	FOR EACH ROW EXECUTE FUNCTION pause_if_asked();
ALTER TABLE big ENABLE ALWAYS TRIGGER pause;
-- protected once its triggers are set: guard records ENABLE TRIGGER too
SELECT guard.protect('big');
VACUUM ANALYZE big;
});

# the table's rows (count and md5), or "no table"
sub table_state
{
	return 'no table'
	  if $node->safe_psql('postgres', q{SELECT to_regclass('public.big') IS NULL}) eq 't';
	return $node->safe_psql('postgres',
		q{SELECT count(*) || ' ' || md5(string_agg(id || ':' || v || ':' || coalesce(pad, '-'), ',' ORDER BY id)) FROM big});
}

# guard's rows, to compare before and after a killed transaction
my $counts_sql = q{
SELECT (SELECT count(*) FROM guard.changeset) || ' changesets, '
	|| (SELECT count(*) FROM guard.change) || ' changes, '
	|| (SELECT count(*) FROM guard.change WHERE state = 'active') || ' active, '
	|| (SELECT count(*) FROM guard.snapshot) || ' chunks, '
	|| (SELECT count(*) FROM pg_class WHERE relnamespace = to_regnamespace('guard_trash')) || ' in trash'};

# Inconsistencies of guard's records, one line per kind found; empty if
# none.  Chunks of a change with an inline first chunk (data) are numbered
# from 1, those of one without from 0.  Every DML or TRUNCATE statement of
# this test writes all the rows of its table.
my $problems_sql = qq{
WITH chunks AS (
	SELECT change_id, count(*) AS n, min(chunk) AS lo, max(chunk) AS hi, sum(nrows) AS nrows
	  FROM guard.snapshot GROUP BY change_id),
problems(what, n) AS (
	SELECT 'change without its change set',
		   (SELECT count(*) FROM guard.change c
			 WHERE NOT EXISTS (SELECT FROM guard.changeset s WHERE s.changeset_id = c.changeset_id))
	UNION ALL
	SELECT 'change without its layout',
		   (SELECT count(*) FROM guard.change c
			 WHERE NOT EXISTS (SELECT FROM guard.layout l WHERE l.layout_id = c.layout_id))
	UNION ALL
	SELECT 'orphan snapshot chunks',
		   (SELECT count(*) FROM guard.snapshot n
			 WHERE NOT EXISTS (SELECT FROM guard.change c WHERE c.change_id = n.change_id))
	UNION ALL
	SELECT 'expired change still holding a snapshot',
		   (SELECT count(*) FROM guard.change c LEFT JOIN chunks k USING (change_id)
			 WHERE c.state = 'expired' AND (c.data IS NOT NULL OR k.n IS NOT NULL))
	UNION ALL
	SELECT 'snapshot chunks numbered with a gap',
		   (SELECT count(*) FROM guard.change c JOIN chunks k USING (change_id)
			 WHERE k.lo <> CASE WHEN c.data IS NULL THEN 0 ELSE 1 END
				OR k.hi - k.lo + 1 <> k.n)
	UNION ALL
	SELECT 'inline chunk and its row count disagree',
		   (SELECT count(*) FROM guard.change c
			 WHERE (c.data IS NULL) <> (coalesce(c.nrows, 0) = 0))
	UNION ALL
	SELECT 'row change whose snapshot does not hold all the rows',
		   (SELECT count(*) FROM guard.change c LEFT JOIN chunks k USING (change_id)
			 WHERE c.state <> 'expired'
			   AND c.kind IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
			   AND coalesce(c.nrows, 0) + coalesce(k.nrows, 0)
				   <> CASE WHEN c.relation = 'public.small' THEN 10 ELSE $nrows END)
	UNION ALL
	SELECT 'DROP TABLE change with a snapshot',
		   (SELECT count(*) FROM guard.change c LEFT JOIN chunks k USING (change_id)
			 WHERE c.kind = 'DROP TABLE' AND (c.data IS NOT NULL OR k.n IS NOT NULL))
	UNION ALL
	SELECT 'active DROP TABLE change without its trashed table',
		   (SELECT count(*) FROM guard.change c
			 WHERE c.kind = 'DROP TABLE' AND c.state = 'active'
			   AND to_regclass(format('guard_trash.%I', c.detail->>'trash')) IS NULL)
	UNION ALL
	SELECT 'trashed table without an active DROP TABLE change',
		   (SELECT count(*) FROM pg_class t
			 WHERE t.relnamespace = to_regnamespace('guard_trash') AND t.relkind = 'r'
			   AND NOT EXISTS (SELECT FROM guard.change c
								WHERE c.kind = 'DROP TABLE' AND c.state = 'active'
								  AND c.detail->>'trash' = t.relname)))
SELECT coalesce(string_agg(what || ': ' || n, E'\\n'), '') FROM problems WHERE n <> 0};

# the change id the next change will get
sub next_change_id
{
	return $node->safe_psql('postgres',
		q{SELECT last_value + CASE WHEN is_called THEN 1 ELSE 0 END FROM guard.change_id_seq});
}

# A session holding, uncommitted, snapshot rows with the keys of chunk
# $block_chunk of the next few changes: the capture that writes that chunk
# waits for it.
sub block_snapshot_chunk
{
	my $first = next_change_id();
	my $blocker = $node->background_psql('postgres', on_error_stop => 0);
	$blocker->query_safe(
		qq{BEGIN;
INSERT INTO guard.snapshot
SELECT id, $block_chunk, 0, '\\x' FROM generate_series($first, $first + 2) id;});
	return $blocker;
}

# Start $sql in a background session after printing "started"; returns
# the session and its backend pid.
sub start_background
{
	my ($sql) = @_;
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $bg->query_safe('SELECT pg_backend_pid()');
	$bg->query_until(qr/started/, "\\echo started\n$sql\n");
	return ($bg, $pid);
}

# Wait until backend $pid waits for $event (a wait_event_type or
# wait_event of pg_stat_activity).
sub wait_until_waiting
{
	my ($name, $pid, $event) = @_;
	ok( $node->poll_query_until(
			'postgres', qq{
SELECT wait_event_type = '$event' OR wait_event = '$event'
  FROM pg_stat_activity WHERE pid = $pid}),
		"$name: the backend reached the crash point");
	return;
}

# Crash: SIGKILL to backend $pid (the postmaster then reinitializes and
# recovers), or an immediate stop and a start; close the sessions.
sub crash
{
	my ($name, $how, $pid, @sessions) = @_;
	my $log_offset = -s $node->logfile;

	if ($how eq 'kill')
	{
		is(kill('KILL', $pid), 1, "$name: SIGKILL sent to backend $pid");
		$node->wait_for_log(qr/server process \(PID $pid\) was terminated by signal 9/,
			$log_offset);
		# (not poll_query_until: psql may die before reading its input)
		$node->wait_for_log(qr/database system is ready to accept connections/,
			$log_offset);
	}
	else
	{
		$node->stop('immediate');
		$node->start;
	}
	like(slurp_file($node->logfile, $log_offset),
		qr/database system was (interrupted|not properly shut down)/,
		"$name: crash recovery ran");
	eval { $_->quit } for @sessions;
	return;
}

# After a restart: guard's records are consistent, and the table and
# guard's row counts are as expected.
sub check_after
{
	my ($name, $table, $counts) = @_;
	is($node->safe_psql('postgres', $problems_sql), '',
		"$name: guard's records are consistent");
	is(table_state(), $table, "$name: the table is as expected");
	is($node->safe_psql('postgres', $counts_sql), $counts,
		"$name: guard holds the expected rows");
	return;
}

my $update_sql = 'UPDATE big SET v = v + 1, pad = md5(pad);';
my $state0 = table_state();
my $counts0 = $node->safe_psql('postgres', $counts_sql);
is($counts0, '0 changesets, 0 changes, 0 active, 0 chunks, 0 in trash', 'guard starts empty');

# 1. UPDATE killed while capture writes its snapshot.
{
	my $name = 'UPDATE killed during capture';
	my $blocker = block_snapshot_chunk();
	my ($bg, $pid) = start_background($update_sql);
	wait_until_waiting($name, $pid, 'Lock');
	crash($name, 'kill', $pid, $bg, $blocker);
	check_after($name, $state0, $counts0);
}

# 2. UPDATE committed, then an immediate shutdown: the change set and all
# its chunks survive.
$node->safe_psql('postgres', $update_sql);
my $state1 = table_state();
isnt($state1, $state0, 'the UPDATE changed the table');
my $cs1 = $node->safe_psql('postgres', q{SELECT max(changeset_id) FROM guard.changeset});
my $counts1 = $node->safe_psql('postgres', $counts_sql);
like($counts1, qr/^1 changesets, 1 changes, 1 active, \d+ chunks/, 'the UPDATE was captured');
crash('committed UPDATE, immediate stop', 'stop', undef);
check_after('committed UPDATE, immediate stop', $state1, $counts1);
is( $node->safe_psql(
		'postgres', qq{SELECT bool_and(ok) FROM guard.verify_restore($cs1)}),
	't',
	'committed UPDATE, immediate stop: a restore drill of it is exact');

# 3. restore killed while it writes the table back (paused at row 100000).
{
	my $name = 'restore killed while writing the table';
	my ($bg, $pid) = start_background(
		qq{SELECT setval('rows_written', 1, false);
SET test.pause_at = 100000;
SELECT * FROM guard.restore($cs1);});
	wait_until_waiting($name, $pid, 'PgSleep');
	crash($name, 'kill', $pid, $bg);
	check_after($name, $state1, $counts1);
}

# 4. restore stopped while guard captures the restore's own writes.
{
	my $name = 'restore stopped during its capture';
	my $blocker = block_snapshot_chunk();
	my ($bg, $pid) = start_background(qq{SELECT * FROM guard.restore($cs1);});
	wait_until_waiting($name, $pid, 'Lock');
	crash($name, 'stop', $pid, $bg, $blocker);
	check_after($name, $state1, $counts1);
}

# What committed restores exactly.
$node->safe_psql('postgres', qq{SELECT * FROM guard.restore($cs1)});
my $counts2 = $node->safe_psql('postgres', $counts_sql);
check_after('after the crashes, the restore', $state0, $counts2);
like($counts2, qr/^2 changesets, 2 changes, 1 active, /,
	'the restore is a change set of its own');

# 5. TRUNCATE killed while capture writes its snapshot.
{
	my $name = 'TRUNCATE killed during capture';
	my $blocker = block_snapshot_chunk();
	my ($bg, $pid) = start_background('TRUNCATE big;');
	wait_until_waiting($name, $pid, 'Lock');
	crash($name, 'kill', $pid, $bg, $blocker);
	check_after($name, $state0, $counts2);
}

# 6. DROP TABLE killed once guard recorded it and renamed the indexes,
# while it renames the table for the trash: another session holds that
# name, uncommitted.
my $big_oid = $node->safe_psql('postgres', q{SELECT 'big'::regclass::oid});
{
	my $name = 'DROP TABLE killed while moving the table to the trash';
	my $blocker = $node->background_psql('postgres', on_error_stop => 0);
	$blocker->query_safe(qq{BEGIN; CREATE TABLE public."${big_oid}_big" ();});
	my ($bg, $pid) = start_background('DROP TABLE big;');
	wait_until_waiting($name, $pid, 'Lock');
	crash($name, 'kill', $pid, $bg, $blocker);
	check_after($name, $state0, $counts2);
	is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_class WHERE relname LIKE '%big%'}),
		'2', "$name: big and its index have their names");
}

# 7. DROP TABLE committed, then an immediate shutdown; undrop is exact.
$node->safe_psql('postgres', 'DROP TABLE big');
my $counts3 = $node->safe_psql('postgres', $counts_sql);
like($counts3, qr/^3 changesets, 3 changes, 2 active, .* 2 in trash$/,
	'DROP TABLE moved the table and its index to the trash');
crash('committed DROP TABLE, immediate stop', 'stop', undef);
check_after('committed DROP TABLE, immediate stop', 'no table', $counts3);
$node->safe_psql('postgres', q{SELECT * FROM guard.undrop('big')});
is(table_state(), $state0,
	'committed DROP TABLE, immediate stop: undrop brings the table back exactly');

# 8. purge killed while it drops a trashed table (another session holds a
# lock on it): it has expired every change and deleted their snapshots.
$node->safe_psql('postgres', 'DROP TABLE small');
my $small_trash = $node->safe_psql('postgres',
	q{SELECT relname FROM pg_class WHERE relnamespace = 'guard_trash'::regnamespace AND relkind = 'r'});
my $counts4 = $node->safe_psql('postgres', $counts_sql);
{
	my $name = 'purge killed while dropping a trashed table';
	my $blocker = $node->background_psql('postgres', on_error_stop => 0);
	$blocker->query_safe(
		qq{BEGIN; LOCK TABLE guard_trash."$small_trash" IN ACCESS SHARE MODE;});
	my ($bg, $pid) = start_background(q{SELECT * FROM guard.purge(interval '0');});
	wait_until_waiting($name, $pid, 'Lock');
	crash($name, 'kill', $pid, $bg, $blocker);
	check_after($name, $state0, $counts4);
}

# The killed purge left everything restorable: undo the restore (back to
# the state after the UPDATE), exactly.
my $cs_restore = $node->safe_psql('postgres',
	qq{SELECT changeset_id FROM guard.changeset WHERE restore_of = $cs1});
$node->safe_psql('postgres', qq{SELECT * FROM guard.restore($cs_restore)});
is(table_state(), $state1,
	'after the killed purge, a restore of the restore is exact');

# And purge runs through after the crash.
is( $node->safe_psql(
		'postgres',
		q{SELECT expired_changes || ' ' || dropped_tables FROM guard.purge(interval '0')}),
	'5 1', 'purge expires every change and drops the trashed table');
is($node->safe_psql('postgres', $problems_sql), '', "after purge: guard's records are consistent");
like($node->safe_psql('postgres', $counts_sql), qr/ 0 active, 0 chunks, 0 in trash$/,
	'after purge: no snapshot and no trashed table is left');

unlike(slurp_file($node->logfile), qr/terminated by signal (?!9)/,
	'no backend crashed other than the ones the test killed');

$node->stop;
done_testing();
