# No input to any guard function crashes a backend (issue 16, item 1).
#
# A seeded, bounded fuzz test: it lists every function of schema guard from
# pg_proc (so a new function is covered without editing this file) and
# calls each with hostile arguments, as a superuser and as an unprivileged
# role:
#   - relations of every kind: protected tables (plain, partitioned, with an
#     odd quoted name, with a dropped and a generated column), a partition,
#     unprotected tables, an inheritance child, views, a materialized view,
#     foreign tables (postgres_fdw, file_fdw and a wrapper without handler),
#     partitioned and plain indexes, sequences, a composite type, system
#     catalogs (a shared one too), a toast table and its index, guard's own
#     tables and views, information_schema.tables, the session's own temp
#     table and another session's, a table in guard's trash, the OID of a
#     dropped table, OID 0 and the largest OID;
#   - NULL in every position, ids of the wrong kind (a change id as a change
#     set id, ...), 0, negative and extreme numbers, infinite timestamps,
#     NaN;
#   - bad text: empty, 100k characters, deep parentheses, odd quoting,
#     format directives, and SQL that tries to break out of its quotes and
#     write to a canary table.
# First every argument of every function takes every value of its type's
# pool in turn (the others kept at a valid value), then random combinations
# fill the rest of the budget, some of them in a read-only or serializable
# transaction, around a rolled-back savepoint or in a prepared transaction
# rolled back.  guard's trigger functions are also attached as triggers to
# tables they were not made for, and its event trigger functions to other
# events.  Every 40 calls the fixture is put back (protections, fresh
# changes, a table in the trash: test/perl/GuardFuzz/Fixture.pm).
#
# Each call is its own transaction (psql autocommit), under a short
# statement_timeout.  The test fails on a backend crash (the server log's
# "terminated by signal", or a lost connection), on any XX000 error, if a
# failing call changed the content of guard's tables or the test tables
# (md5 of each, before and after), if the canary table was touched, or if
# a read-only transaction wrote.  The md5s are recomputed only after a
# call during which some transaction committed (pg_xact_status of the xids
# since the last call), and compared in full every 40 calls.
#
# Knobs: GUARD_FUZZ_SEED (default 16), GUARD_FUZZ_CALLS (most calls,
# default 5000), GUARD_FUZZ_SECONDS (time budget for the calls, default 20).
# Every call and its outcome goes to tmp_check/log/010_fuzz_calls.log.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../perl";
use GuardFuzz::Fixture;
use GuardFuzz::Session;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $seed = $ENV{GUARD_FUZZ_SEED} // 16;
my $max_calls = $ENV{GUARD_FUZZ_CALLS} // 5000;
my $budget = $ENV{GUARD_FUZZ_SECONDS} // 20;
my $max_crashes = 10;    # restarts to sit through before giving up
srand($seed);
diag("fuzz seed $seed (GUARD_FUZZ_SEED), at most $max_calls calls "
	  . "in ${budget}s");

my $node = PostgreSQL::Test::Cluster->new('fuzz');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'guard'
restart_after_crash = on
max_prepared_transactions = 10
# only the test's sessions write (see committed_since_mark); refill vacuums
autovacuum = off
});
$node->start;

# --- fixture ---------------------------------------------------------------

my $odd_table = $GuardFuzz::Fixture::odd_table;
my $odd_lit = $GuardFuzz::Fixture::odd_lit;
$node->safe_psql('postgres', GuardFuzz::Fixture::setup_sql($node->host, $node->port));

# the OID of a table that no longer exists
my $gone_oid = $node->safe_psql('postgres',
	q{CREATE TABLE gone (); SELECT 'gone'::regclass::oid; DROP TABLE gone;});

# --- argument pools --------------------------------------------------------

# quote a string as an SQL literal
sub lit
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

# relations of every kind, as SQL expressions of type regclass
my @relations = (
	q{'public.prot'::regclass},
	q{'public.parted'::regclass},
	q{'public.parted_1'::regclass},
	lit($odd_table) . '::regclass',
	q{'public.prot2'::regclass},
	q{'public.mallory_t'::regclass},
	q{'public.truncated'::regclass},
	q{'public.plain'::regclass},
	q{'public.nokey'::regclass},
	q{'public.nocols'::regclass},
	q{'public.child'::regclass},
	q{'public.canary'::regclass},
	q{'public.v'::regclass},
	q{'public.mv'::regclass},
	q{'public.ft'::regclass},
	q{'public.ff'::regclass},
	q{'public.fnh'::regclass},
	q{'public.seq'::regclass},
	q{'guard.change_id_seq'::regclass},
	q{'public.prot_pkey'::regclass},
	q{'public.parted_pkey'::regclass},
	q{'public.comp'::regclass},
	q{'pg_catalog.pg_class'::regclass},
	q{'pg_catalog.pg_authid'::regclass},
	q{'pg_catalog.pg_statistic'::regclass},
	q{'information_schema.tables'::regclass},
	q{(SELECT reltoastrelid FROM pg_class WHERE oid = 'public.prot'::regclass)::regclass},
	q{(SELECT i.indexrelid FROM pg_index i JOIN pg_class c ON c.reltoastrelid = i.indrelid WHERE c.oid = 'public.prot'::regclass)::regclass},
	q{'guard.change'::regclass},
	q{'guard.changeset'::regclass},
	q{'guard.policy'::regclass},
	q{'guard.snapshot'::regclass},
	q{'guard.pending'::regclass},
	q{'guard.changes'::regclass},
	q{'guard.policies'::regclass},
	q{'pg_temp.my_tmp'::regclass},
	q{(SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname LIKE 'pg_temp%' AND c.relname = 'other_tmp')::regclass},
	q{(SELECT min(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'guard_trash' AND c.relkind = 'r')::regclass},
	"${gone_oid}::oid::regclass",
	q{0::oid::regclass},
	q{4294967295::oid::regclass},
	q{'pg_catalog.now()'::regprocedure::oid::regclass},
	'NULL');

# bad text: odd quoting, format directives, attempts to break out of a
# quoted context and write to the canary, size, nesting, and a few valid
# words so that calls get past the first check
my @texts = (
	'NULL', "''", "' '", q{repeat('x', 100000)},
	q{repeat('(', 50000) || '1' || repeat(')', 50000)},
	lit(q{x'); DELETE FROM public.canary; --}),
	lit(q{x"); DELETE FROM public.canary; --}),
	lit(q{x$$; DELETE FROM public.canary; --}),
	lit(q{true) OR (SELECT count(*) FROM public.canary) > 0 OR (true}),
	lit(q{x) ; DELETE FROM public.canary; --}),
	lit(q{true; DELETE FROM public.canary}),
	lit(q{WITH d AS (DELETE FROM public.canary RETURNING 1) SELECT true}),
	lit(q{%s%s%s%n%x%d}), lit(q{"}), lit(q{'}), lit('\\'), lit('--'),
	lit('/*'), lit("a\tb\nc"), lit("\xc3\xbcnic\xc3\xb6de \xf0\x9f\x9b\xa1"),
	lit('public.prot'), lit($odd_table), lit('doomed'), lit('prot'),
	lit('all'), lit('dml'), lit('ddl'), lit('none'), lit('enforce'),
	lit('warn'), lit('abort'), lit('skip'), lit('overwrite'),
	lit('v >= 0'), lit('v < 0'), lit('nosuchcol > 0'), lit('1/0 = 0'),
	lit('pg_sleep(10) IS NULL'), lit('SELECT true'),
	lit('SELECT false'), lit('SELECT 1'),
	lit('SELECT true FROM generate_series(1, 2)'),
	lit('SELECT NULL::bool'), lit('fx_positive'), lit('fx_m'),
	lit('x' x 64));

# ids: refreshed from guard's records (ids of every kind), plus extremes
my @fixed_ids = ('NULL', '0', '-1', '1', '2', '9223372036854775807',
	'(-9223372036854775807 - 1)', '4294967296');
my @ids;

sub refresh_ids
{
	my ($dig) = @_;
	my $r = $dig->run(
		q{SELECT DISTINCT x FROM (
			SELECT max(changeset_id) FROM guard.changeset
			UNION ALL SELECT min(changeset_id) FROM guard.changeset
			UNION ALL SELECT max(changeset_id) FROM guard.changeset WHERE restore_of IS NOT NULL
			UNION ALL SELECT max(change_id) FROM guard.change
			UNION ALL SELECT min(change_id) FROM guard.change
			UNION ALL SELECT max(change_id) FROM guard.change GROUP BY kind
			UNION ALL SELECT max(change_id) FROM guard.change WHERE relid = 'public.mallory_t'::regclass
			UNION ALL SELECT max(changeset_id) FROM guard.change WHERE relid = 'public.mallory_t'::regclass
			UNION ALL SELECT max(violation_id) FROM guard.violation
			UNION ALL SELECT max(layout_id) FROM guard.layout
			UNION ALL SELECT max(change_id) + 1 FROM guard.change) s(x)
		  WHERE x IS NOT NULL ORDER BY 1});
	die "cannot read ids: @{ $r->{errors} }" if $r->{lost} || @{ $r->{errors} };
	@ids = (@fixed_ids, split /\n/, $r->{out});
	return;
}

# the pools, by argument type
my %pools = (
	'regclass' => \@relations,
	'text' => \@texts,
	'name' => \@texts,
	'bigint' => \@ids,
	'integer' => [ 'NULL', '0', '-1', '1', '2147483647', '(-2147483647 - 1)' ],
	'boolean' => [ 'NULL', 'true', 'false' ],
	'double precision' => [
		'NULL', '0', '-0.0', '0.5', '1', '1.5', '-1', q{'NaN'},
		q{'Infinity'}, q{'-Infinity'}, '1e-308'
	],
	'interval' => [
		'NULL', q{'0'}, q{'1 microsecond'}, q{'-1 day'}, q{'1 hour'},
		q{'1000 years'}, q{'-178000000 years'}, q{'178000000 years'}
	],
	'timestamp with time zone' => [
		'NULL', 'now()', q{now() - interval '1 minute'},
		q{now() + interval '1 day'}, q{'infinity'}, q{'-infinity'},
		q{'4714-11-24 00:00:00+00 BC'}, q{'294276-12-31 23:59:59+00'},
		q{'epoch'}, q{(SELECT min(at) FROM guard.changes)}
	],
	'oid' => [
		(map { "($_)::oid" } grep { $_ ne 'NULL' } @relations),
		'NULL', q{(SELECT oid FROM pg_type WHERE typname = 'int4')}
	],
	'jsonb' => [ 'NULL', q{'{}'}, q{'[]'}, q{'null'} ]);

# a valid value for an argument of function $f, for role $role (mallory
# works on her own table), kept while another argument takes its hostile
# values: its default if it has one, else by its name or type
my $names = 0;

sub base_value
{
	my ($f, $arg, $role) = @_;
	my $type = $arg->{type};
	my $mine = $role eq 'mallory' ? q{ AND relation = 'public.mallory_t'} : '';
	return lit('v >= 0') if $arg->{name} eq 'row_check';    # prot and mallory_t have v
	return $arg->{default} if defined $arg->{default};
	return lit('doomed') if $f->{name} eq 'undrop';
	my %by_name = (
		name => lit('fz_' . ++$names),    # new invariants get new names
		change_id => qq{(SELECT max(change_id) FROM guard.changes WHERE state = 'active'$mine)},
		changeset_id => qq{(SELECT max(changeset_id) FROM guard.changes WHERE state = 'active'$mine)});
	return $by_name{ $arg->{name} } if exists $by_name{ $arg->{name} };
	my %by_type = (
		'regclass' => $role eq 'mallory'
		? q{'public.mallory_t'::regclass}
		: q{'public.prot'::regclass},
		'text' => lit('fz_base'),
		'name' => lit('fz_base'),
		'bigint' => qq{(SELECT max(changeset_id) FROM guard.changes WHERE true$mine)},
		'boolean' => 'false',
		'double precision' => '0.5',
		'interval' => q{'1 hour'},
		'timestamp with time zone' => q{now() - interval '1 minute'},
		'oid' => q{'public.prot'::regclass::oid});
	return $by_type{$type} // 'NULL';
}

# the values to try for an argument of type $type (an unknown type: NULL)
sub pool
{
	my ($type) = @_;
	return $pools{$type} // ['NULL'];
}

# --- sessions --------------------------------------------------------------

my $session_setup = q{SET statement_timeout = '3s';
SET lock_timeout = '1s';
SET client_min_messages = warning;
CREATE TEMP TABLE my_tmp (id int PRIMARY KEY, v int);
INSERT INTO my_tmp VALUES (1, 1);};

my %s;    # su, mallory: fuzzing; dig: digests, refills; other: a temp table

sub start_sessions
{
	$s{su} = GuardFuzz::Session->new($node, 'postgres', $session_setup);
	$s{mallory} = GuardFuzz::Session->new($node, 'mallory', $session_setup);
	$s{dig} = GuardFuzz::Session->new($node, 'postgres',
		q{SET client_min_messages = warning; SET statement_timeout = '60s';});
	$s{other} = GuardFuzz::Session->new($node, 'mallory',
		q{CREATE TEMP TABLE other_tmp (id int PRIMARY KEY); INSERT INTO other_tmp VALUES (1);});
	return;
}

sub stop_sessions
{
	$_->quit for values %s;
	%s = ();
	return;
}

# --- the functions ---------------------------------------------------------

start_sessions();
refresh_ids($s{dig});

# every function of schema guard: oid, name, kind, return type, and for each
# input argument its type, name and default (\N when none)
my @functions;
{
	my $r = $s{dig}->run(
		q{SELECT p.oid, p.proname, p.prokind, p.prorettype::regtype,
				 (SELECT string_agg(format_type(a.t, NULL) || '|' || coalesce(names.n[a.i], '')
									|| '|' || coalesce(pg_get_function_arg_default(p.oid, a.i::int), '\N'),
									'~' ORDER BY a.i)
				    FROM unnest(p.proargtypes) WITH ORDINALITY a(t, i))
		    FROM pg_proc p,
				 LATERAL (SELECT array_agg(u.n ORDER BY u.j) AS n
							FROM unnest(coalesce(p.proargnames, '{}'),
										coalesce(p.proargmodes::text[],
												 array_fill('i'::text, ARRAY[coalesce(cardinality(p.proargnames), 0)])))
								 WITH ORDINALITY u(n, m, j)
						   WHERE u.m IN ('i', 'b', 'v')) names
		   WHERE p.pronamespace = 'guard'::regnamespace
		   ORDER BY p.proname, p.oid});
	die "cannot list guard's functions: @{ $r->{errors} }" if @{ $r->{errors} } || $r->{lost};
	for my $line (split /\n/, $r->{out})
	{
		my ($oid, $name, $kind, $rettype, $args) = split /\|/, $line, 5;
		my @args;
		for my $a (split /~/, $args // '')
		{
			my ($type, $argname, $default) = split /\|/, $a, 3;
			push @args, { type => $type, name => $argname, default => $default eq '\N' ? undef : $default };
		}
		push @functions,
		  { oid => $oid, name => $name, kind => $kind, rettype => $rettype, args => \@args };
	}
}
cmp_ok(scalar(@functions), '>=', 15, 'functions of schema guard listed from pg_proc');
note('functions: ' . join(', ', map { "$_->{name}(" . join(', ', map { $_->{type} } @{ $_->{args} }) . ')' } @functions));

# the SQL of one call of function $f with argument expressions @vals
sub call_sql
{
	my ($f, @vals) = @_;
	my @a = map { "($vals[$_])::$f->{args}[$_]{type}" } 0 .. $#vals;
	my $call = "guard.$f->{name}(" . join(', ', @a) . ')';
	return $f->{kind} eq 'p' ? "CALL $call" : "SELECT count(*) FROM $call";
}

# --- the run ---------------------------------------------------------------

my $log_file = "$PostgreSQL::Test::Utils::log_path/010_fuzz_calls.log";
open(my $log, '>', $log_file) or die "cannot write $log_file: $!";
my $log_start = -s $node->logfile;
my $t0 = time;
my ($ncalls, $nfailed, $ncrashes) = (0, 0, 0);
my (%by_state, %called, @crashes, @internal, @changed, @readonly_writes);
my ($t_digest, $t_refill) = (0, 0);

# What a failing call must leave alone (fuzz.digest(): one line per table,
# and a few more).
sub digest
{
	my $t = time;
	my $r = $s{dig}->run('SELECT * FROM fuzz.digest()');
	$t_digest += time - $t;
	die "fuzz.digest() failed: @{ $r->{errors} }" if $r->{lost} || @{ $r->{errors} };
	return $r->{out};
}
my $baseline = digest();

# The transactions that committed since the last call of this function
# (comma-separated xids, empty if none).  Only the fuzzing sessions write
# between two calls, so a call after which none committed changed nothing
# the digest could see: the digest is recomputed only after the others.
my $xid_mark;

sub committed_since_mark
{
	my $r = $s{dig}->run(
		defined $xid_mark
		? qq{SELECT h::text, coalesce((SELECT string_agg(g::text, ',') FROM generate_series($xid_mark, h::text::bigint - 1) g
				WHERE pg_xact_status(g::text::xid8) = 'committed'), '')
			   FROM pg_snapshot_xmax(pg_current_snapshot()) h}
		: q{SELECT pg_snapshot_xmax(pg_current_snapshot())::text, ''});
	die "cannot read transaction status: @{ $r->{errors} }" if $r->{lost} || @{ $r->{errors} };
	($xid_mark, my $committed) = split /\|/, $r->{out}, 2;
	return $committed;
}
committed_since_mark();

# After a lost connection: wait for the server to be back, reconnect.
sub recover
{
	my $deadline = time + 60;
	stop_sessions();
	until ($node->psql('postgres', 'SELECT 1') == 0)
	{
		die 'server did not come back after a crash' if time > $deadline;
		sleep 1;
	}
	start_sessions();
	$baseline = digest();
	committed_since_mark();
	return;
}

# Run one unit (a call, or a few statements that attach a trigger and fire
# it) in session $role; record its outcome.
sub fuzz
{
	my ($role, $label, $sql) = @_;
	my $start = time;
	my $log_pos = -s $node->logfile;
	my $r = $s{$role}->run($sql);
	$ncalls++;
	$called{$label}++;
	printf $log "-- %s (%.3fs): %s\n%s%s", $role, time - $start, $sql,
	  join('', map { '   ' . substr($_, 0, 300) . "\n" } @{ $r->{errors} }),
	  $r->{lost} ? "   CONNECTION LOST\n" : '';
	for my $e (@{ $r->{errors} })
	{
		my ($state) = $e =~ /^\w+:\s+(\w{5})/;
		$by_state{ $state // '?' }++;
		push @internal, "$role: $sql\n    " . substr($e, 0, 300) if defined $state && $state eq 'XX000';
	}
	if ($r->{lost})
	{
		$ncrashes++;
		recover();    # after it, the log says why the backend died
		my ($why) = slurp_file($node->logfile, $log_pos) =~ /(server process .* terminated by signal.*)/;
		push @crashes, "$role: $sql\n    " . ($why // join(' ', @{ $r->{errors} }, 'connection lost'));
		return;
	}
	$nfailed++ if @{ $r->{errors} };
	# nothing committed, nothing changed: the digest still holds
	my $committed = committed_since_mark();
	return if $committed eq '';
	push @readonly_writes, "$role: $sql" if $sql =~ /^BEGIN READ ONLY/;
	my $now = digest();
	if (@{ $r->{errors} } && $now ne $baseline)
	{
		my %before = map { $_ => 1 } split /\n/, $baseline;
		push @changed, "$role: $sql\n    changed: "
		  . join('; ', grep { !$before{$_} } split /\n/, $now);
	}
	$baseline = $now;
	return;
}

# Put the fixture back after calls that unprotected, purged or restored
# (GuardFuzz::Fixture::refill_sql), check now and then that the digest did
# not change without a committed transaction, and read the ids again.
my $refills = 0;

sub refill
{
	my $k = ++$refills % 10;
	my $t = time;
	# a schema change of prot2 in turn, so that there are some to restore
	my $ddl = (
		'ADD COLUMN IF NOT EXISTS extra int DEFAULT 1',
		'DROP COLUMN IF EXISTS extra',
		'RENAME COLUMN w TO w2',
		'RENAME COLUMN w2 TO w',
		'ALTER COLUMN w TYPE varchar(50)',
		'ALTER COLUMN w TYPE text')[ $refills % 6 ];
	# the digest held since the last commit seen: check it now and then
	my $now = digest();
	push @changed, "without a committed transaction, the digest changed:\n    "
	  . join('; ', grep { my $l = $_; !grep { $_ eq $l } split /\n/, $baseline } split /\n/, $now)
	  if $now ne $baseline;
	my $sql = GuardFuzz::Fixture::refill_sql($k, $ddl);
	my $r = $s{dig}->run($sql);
	print $log "-- refill $refills\n", map { '   ' . substr($_, 0, 300) . "\n" } @{ $r->{errors} };
	for my $e (@{ $r->{errors} })
	{
		push @internal, "refill: $e" if $e =~ /^\w+:\s+XX000/;
	}
	recover() if $r->{lost};
	refresh_ids($s{dig});
	$t_refill += time - $t;
	$baseline = digest();
	committed_since_mark();
	return;
}

# DML for the trigger units: table => insert, update, delete
my %trigger_dml = (
	'public.plain' => [ '(id, v) VALUES (100000, 1)', 'v = v + 1 WHERE v < 3', 'id = 100000' ],
	'public.prot' => [ '(id, v) VALUES (100000, 1)', 'v = v + 1 WHERE v < 3', 'id = 100000' ],
	'public.parted' => [ '(id, k, v) VALUES (100000, 1, 1)', 'k = 19 - k WHERE id < 4', 'id = 100000' ],
	'public.nokey' => [ '(v) VALUES (100000)', 'v = v + 1 WHERE v < 3', 'v >= 100000' ],
	'public.v' => [ '(id, v) VALUES (100000, 1)', 'v = v + 1 WHERE v < 3', 'id = 100000' ],
	'public.mallory_t' => [ '(id, v) VALUES (100000, 1)', 'v = v + 1 WHERE v < 3', 'id = 100000' ]);

# how a trigger of guard's is attached: when, transition tables, level
my @trigger_shapes = (
	[ 'AFTER INSERT OR UPDATE OR DELETE', '', 'ROW' ],
	[ 'AFTER INSERT OR UPDATE OR DELETE', '', 'STATEMENT' ],
	[ 'BEFORE INSERT OR UPDATE OR DELETE', '', 'ROW' ],
	[ 'BEFORE INSERT OR UPDATE OR DELETE', '', 'STATEMENT' ],
	[ 'AFTER INSERT', 'REFERENCING NEW TABLE AS fz_new', 'STATEMENT' ],
	[ 'AFTER UPDATE', 'REFERENCING OLD TABLE AS fz_old NEW TABLE AS fz_new', 'STATEMENT' ],
	[ 'AFTER UPDATE', 'REFERENCING NEW TABLE AS fz_new', 'STATEMENT' ],
	[ 'AFTER DELETE', 'REFERENCING OLD TABLE AS fz_old', 'STATEMENT' ]);

# Units that attach a trigger function of guard to a table it was not made
# for, fire it and drop it; event trigger functions go on every event.
sub trigger_units
{
	my ($f, $role) = @_;
	my @units;
	if ($f->{rettype} eq 'trigger')
	{
		my @tables = $role eq 'mallory'
		  ? ('public.mallory_t')
		  : sort grep { $_ ne 'public.mallory_t' } keys %trigger_dml;
		for my $t (@tables)
		{
			my ($insert, $update, $delete) = @{ $trigger_dml{$t} };
			for my $shape (@trigger_shapes)
			{
				my ($when, $referencing, $level) = @$shape;
				if ($t eq 'public.v')
				{
					next if $level eq 'STATEMENT' || $referencing;
					$when = 'INSTEAD OF INSERT OR UPDATE OR DELETE';
				}
				my $args = ('()', q{('x')}, q{('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j')},
					q{('''); DELETE FROM public.canary; --')})[ int(rand(4)) ];
				push @units, qq{BEGIN;
CREATE TRIGGER fz_trg $when ON $t $referencing FOR EACH $level EXECUTE FUNCTION guard.$f->{name}$args;
INSERT INTO $t $insert;
UPDATE $t SET $update;
DELETE FROM $t WHERE $delete;
COMMIT;
DROP TRIGGER IF EXISTS fz_trg ON $t};
			}
			push @units, qq{BEGIN;
CREATE TRIGGER fz_trg AFTER TRUNCATE ON $t FOR EACH STATEMENT EXECUTE FUNCTION guard.$f->{name}();
TRUNCATE $t;
ROLLBACK} unless $t eq 'public.v';
		}
	}
	elsif ($f->{rettype} eq 'event_trigger' && $role eq 'su')
	{
		for my $event (qw(ddl_command_start ddl_command_end sql_drop table_rewrite))
		{
			push @units, qq{CREATE EVENT TRIGGER fz_evt ON $event EXECUTE FUNCTION guard.$f->{name}();
BEGIN;
CREATE TABLE fz_evt_t (a int PRIMARY KEY);
ALTER TABLE fz_evt_t ALTER a TYPE bigint;
ALTER TABLE public.plain ALTER v TYPE bigint;
ALTER TABLE public.plain ALTER v TYPE int;
DROP TABLE fz_evt_t;
COMMIT;
DROP EVENT TRIGGER IF EXISTS fz_evt};
		}
	}
	return @units;
}

# Systematic part: every argument of every function takes every value of
# its pool, the other arguments keeping a valid value; all NULLs; and the
# trigger functions as triggers.
my @plan;
for my $role ('su', 'mallory')
{
	for my $f (@functions)
	{
		my @base = map { base_value($f, $_, $role) } @{ $f->{args} };
		push @plan, [ $role, $f->{name}, call_sql($f, @base) ];
		push @plan, [ $role, $f->{name}, call_sql($f, ('NULL') x @base) ] if @base;
		for my $i (0 .. $#base)
		{
			for my $v (@{ pool($f->{args}[$i]{type}) })
			{
				my @vals = @base;
				$vals[$i] = $v;
				push @plan, [ $role, $f->{name}, call_sql($f, @vals) ];
			}
		}
		push @plan, [ $role, "$f->{name} as trigger", $_ ] for trigger_units($f, $role);
	}
}
note(scalar(@plan) . ' calls planned in the systematic part');

# The transaction a random call runs in: mostly its own, else a read-only
# or serializable one, a savepoint rolled back before it runs again (all
# rolled back: a unit with an error must change nothing), or a prepared
# transaction rolled back.
my @contexts = (
	(sub { $_[0] }) x 4,
	sub { "BEGIN READ ONLY;\n$_[0];\nCOMMIT" },
	sub { "BEGIN ISOLATION LEVEL SERIALIZABLE;\n$_[0];\nCOMMIT" },
	sub { "BEGIN;\nSAVEPOINT fz;\n$_[0];\nROLLBACK TO SAVEPOINT fz;\n$_[0];\nROLLBACK" },
	sub { "BEGIN;\n$_[0];\nPREPARE TRANSACTION 'fz';\nROLLBACK PREPARED 'fz'" });

# The budget ends the random part; on a slow machine the systematic part
# may take up to twice the budget.
my $deadline = $t0 + $budget;
my $next = 0;
while ($ncalls < $max_calls
	&& $ncrashes < $max_crashes
	&& (time < $deadline || ($next < @plan && time < $deadline + $budget)))
{
	refill() if $ncalls % 40 == 39;
	if ($next < @plan)
	{
		fuzz(@{ $plan[ $next++ ] });
		next;
	}
	# random part: any role, any function, each argument hostile or valid
	my $role = rand() < 0.5 ? 'su' : 'mallory';
	my $f = $functions[ int(rand(@functions)) ];
	if ($f->{rettype} =~ /trigger/ && rand() < 0.5)
	{
		my @units = trigger_units($f, $role);
		fuzz($role, "$f->{name} as trigger", $units[ int(rand(@units)) ]) if @units;
		next;
	}
	my @vals = map {
		my $p = pool($_->{type});
		rand() < 0.25 ? base_value($f, $_, $role) : $p->[ int(rand(@$p)) ]
	} @{ $f->{args} };
	my $call = call_sql($f, @vals);
	fuzz($role, $f->{name}, $contexts[ int(rand(@contexts)) ]->($call));
}
my $elapsed = time - $t0;
close($log);

# --- verdict ---------------------------------------------------------------

my $canary = $node->safe_psql('postgres', 'SELECT string_agg(v, \',\') FROM canary');
stop_sessions();
my $server_log = slurp_file($node->logfile, $log_start);

diag(sprintf(
	"%d calls in %.1fs (%d systematic of %d planned), %d failed with an error, %d crashes, %d XX000; seed %d",
	$ncalls, $elapsed, $next, scalar(@plan), $nfailed, $ncrashes, scalar(@internal), $seed));
note(sprintf('%.1fs in digests, %.1fs in refills', $t_digest, $t_refill));
note('errors by SQLSTATE: ' . join(', ', map { "$_ $by_state{$_}" } sort keys %by_state));

is(join("\n", @crashes), '', 'no call crashed a backend or lost its connection');
is(join("\n", $server_log =~ /^.*(?:terminated by signal|PANIC:).*$/mg), '',
	'the server log shows no crash');
is(join("\n", @internal), '', 'no call failed with an internal error (XX000)');
is(join("\n", @changed), '', 'no failing call changed guard\'s tables or the test tables');
is($canary, 'intact', 'the canary table is untouched');
is(join("\n", @readonly_writes), '', 'no read-only transaction wrote anything');
my @uncalled = grep { !$called{ $_->{name} } } @functions;
is(join(', ', map { $_->{name} } @uncalled), '', 'every function of schema guard was called');
cmp_ok($ncalls, '>=', 1000, 'at least 1000 calls made') if $ncrashes < $max_crashes;

$node->stop;
done_testing();
