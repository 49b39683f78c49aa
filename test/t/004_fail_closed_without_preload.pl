# Fail closed: where guard is not loaded (the server lost its
# shared_preload_libraries setting), nothing would record a schema change of
# a protected table, so guard's event trigger refuses DROP TABLE and ALTER
# TABLE on it, while other tables stay free; writes still go through guard's
# capture triggers, which load the library on demand.  Back with the
# preload, everything works again.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('fail_closed');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'guard'");
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION guard;
CREATE TABLE users (id int PRIMARY KEY, email text);
INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 10) g;
SELECT guard.protect('users');
CREATE TABLE scratch (id int PRIMARY KEY);
});

# Restart without the preload.
$node->adjust_conf('postgresql.conf', 'shared_preload_libraries', "''");
$node->restart;
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), '',
	'the server no longer preloads guard');

my ($stdout, $stderr);
my $rc = $node->psql('postgres', "\\set VERBOSITY verbose\nDROP TABLE users;",
	stdout => \$stdout, stderr => \$stderr);
isnt($rc, 0, 'DROP TABLE of a protected table is refused without the preload');
like($stderr, qr/55000/, 'with SQLSTATE 55000');
like($stderr, qr/cannot change protected table "users": guard is not loaded/,
	'naming the table and the reason');
like($stderr, qr/HINT:.*shared_preload_libraries/, 'and a hint naming the setting');

$rc = $node->psql('postgres', 'ALTER TABLE users DROP COLUMN email;',
	stdout => \$stdout, stderr => \$stderr);
isnt($rc, 0, 'ALTER TABLE of a protected table is refused too');
is($node->safe_psql('postgres', q{SELECT count(*) FROM users}), '10',
	'the table and its rows are still there');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'email'}),
	'1',
	'and its column');

# TRUNCATE fires no event trigger; guard's BEFORE TRUNCATE trigger refuses it.
$rc = $node->psql('postgres', "\\set VERBOSITY verbose\nTRUNCATE users;",
	stdout => \$stdout, stderr => \$stderr);
isnt($rc, 0, 'TRUNCATE of a protected table is refused without the preload');
like($stderr, qr/55000/, 'with SQLSTATE 55000');
like($stderr, qr/cannot truncate protected table "users": guard is not loaded/,
	'naming the table and the reason');
is($node->safe_psql('postgres', q{SELECT count(*) FROM users}), '10',
	'the rows are still there');

# Unprotected tables are not affected.
$rc = $node->psql('postgres', 'TRUNCATE scratch; ALTER TABLE scratch ADD COLUMN x int; DROP TABLE scratch;',
	stdout => \$stdout, stderr => \$stderr);
is($rc, 0, 'DDL on an unprotected table goes through') or diag($stderr);

# Writes are still captured: the trigger loads the library.
$node->safe_psql('postgres', q{UPDATE users SET email = 'changed' WHERE id = 1});
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM guard.changes WHERE relation = 'public.users' AND kind = 'UPDATE'}),
	'1',
	'an UPDATE without the preload is still captured');

# Back with the preload, DROP TABLE is recorded and undone.
$node->adjust_conf('postgresql.conf', 'shared_preload_libraries', "'guard'");
$node->restart;
$node->safe_psql('postgres', 'DROP TABLE users');
is($node->safe_psql('postgres', q{SELECT to_regclass('users') IS NULL}), 't',
	'with the preload, DROP TABLE goes through');
$node->safe_psql('postgres', q{SELECT * FROM guard.undrop('users')});
is($node->safe_psql('postgres', q{SELECT count(*) FROM users}), '10',
	'and is undone with all its rows');

# With the preload, the TRUNCATE trigger lets the hook's capture do its work.
$node->safe_psql('postgres', 'TRUNCATE users');
is($node->safe_psql('postgres', q{SELECT count(*) FROM users}), '0',
	'with the preload, TRUNCATE goes through');
$node->safe_psql('postgres', q{
SELECT * FROM guard.restore((SELECT max(changeset_id) FROM guard.changes WHERE kind = 'TRUNCATE'))});
is($node->safe_psql('postgres', q{SELECT count(*) FROM users}), '10',
	'and is undone with all its rows');

my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'no backend crashed');

$node->stop;
done_testing();
