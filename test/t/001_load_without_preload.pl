# Without shared_preload_libraries = 'guard', CREATE EXTENSION guard fails
# cleanly (SQLSTATE 55000, a HINT naming shared_preload_libraries) and
# leaves nothing behind; LOAD 'guard' warns and the session carries on,
# twice over; nothing crashes.  With the preload and a restart, the same
# CREATE EXTENSION works and captures.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('no_preload');
$node->init;
$node->start;

# The log must show no backend dying: every check below reads it.
sub log_has_no_crash
{
	my ($what) = @_;
	my $log = slurp_file($node->logfile);
	unlike($log, qr/terminated by signal/, "$what: no backend terminated by a signal");
	unlike($log, qr/server process .* was terminated/,
		"$what: no server process was terminated");
	unlike($log, qr/all server processes terminated; reinitializing/,
		"$what: no crash recovery");
	return;
}

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'the cluster does not preload guard');

# CREATE EXTENSION fails with 55000 and the hint
my ($stdout, $stderr);
my $rc = $node->psql(
	'postgres',
	"\\set VERBOSITY verbose\nCREATE EXTENSION guard;",
	stdout => \$stdout,
	stderr => \$stderr);
isnt($rc, 0, 'CREATE EXTENSION guard fails without the preload');
like($stderr, qr/ERROR:  55000: guard must be loaded via shared_preload_libraries/,
	'the error has SQLSTATE 55000 and says what is missing');
like($stderr, qr/HINT:  .*shared_preload_libraries/,
	'the hint names shared_preload_libraries');
unlike($stderr, qr/server closed the connection/,
	'the backend survived the failed CREATE EXTENSION');

is($node->safe_psql('postgres', 'SELECT 1'), '1',
	'the server still answers after the failed CREATE EXTENSION');
is( $node->safe_psql(
		'postgres',
		"SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'guard')
		      + (SELECT count(*) FROM pg_namespace WHERE nspname = 'guard')
		      + (SELECT count(*) FROM pg_roles WHERE rolname = 'guard_admin')"),
	'0',
	'the failed CREATE EXTENSION left no extension, schema or role behind');
log_has_no_crash('CREATE EXTENSION');

# LOAD warns, once, and the session goes on, DDL and DML included (the
# hooks LOAD installed run for them)
$rc = $node->psql(
	'postgres', q{
\set VERBOSITY verbose
LOAD 'guard';
SELECT 'after first load';
LOAD 'guard';
SELECT 'after second load';
CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t VALUES (1, 'a'), (2, 'b');
UPDATE t SET v = 'c' WHERE id = 1;
CREATE FUNCTION trig() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER guard_lookalike AFTER UPDATE ON t FOR EACH STATEMENT EXECUTE FUNCTION trig();
ALTER TABLE t DISABLE TRIGGER guard_lookalike;
DROP TRIGGER guard_lookalike ON t;
COPY t FROM STDIN;
3	d
\.
DELETE FROM t WHERE id = 2;
SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM t;
SHOW guard.enabled;
},
	stdout => \$stdout,
	stderr => \$stderr);
is($rc, 0, 'a session that LOADs guard twice runs to the end');
like($stderr,
	qr/WARNING:  55000: guard was loaded without shared_preload_libraries/,
	'LOAD warns that guard is not preloaded');
like($stderr, qr/HINT:  .*shared_preload_libraries/,
	'the LOAD warning hints at shared_preload_libraries');
my @warnings = ($stderr =~ /WARNING:/g);
is(scalar(@warnings), 1, 'the second LOAD in the same session is silent');
unlike($stderr, qr/ERROR:/, 'no statement of the session failed');
is( $stdout,
	"after first load\nafter second load\n1=c,3=d\non",
	'the session after LOAD runs DDL, DML and COPY normally');
is($node->safe_psql('postgres', 'SELECT 1'), '1',
	'the server still answers after LOAD');
log_has_no_crash('LOAD');

# With the preload and a restart, CREATE EXTENSION works and captures
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'guard'");
$node->restart;
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'guard', 'the cluster now preloads guard');
$rc = $node->psql(
	'postgres', q{
\set VERBOSITY verbose
CREATE EXTENSION guard;
LOAD 'guard';
SELECT guard.protect('t');
UPDATE t SET v = 'e' WHERE id = 3;
},
	stdout => \$stdout,
	stderr => \$stderr);
is($rc, 0, 'CREATE EXTENSION guard works with the preload');
unlike($stderr, qr/WARNING|ERROR/,
	'neither CREATE EXTENSION nor LOAD warns once preloaded');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(c.kind || ' ' || c.rows || ' ' || d.key || ' ' || d."column"
                  || ' ' || d.before || '->' || d.after, '; ')
  FROM guard.changes c CROSS JOIN LATERAL guard.diff(c.change_id) d}),
	'UPDATE 1 (id)=(3) v d->e',
	'the preloaded extension captures an UPDATE');
log_has_no_crash('after the restart with the preload');

$node->stop;
done_testing();
