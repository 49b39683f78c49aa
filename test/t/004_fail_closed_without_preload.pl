# Fail closed: where guard is not loaded (the server lost its
# shared_preload_libraries setting), nothing would record a schema change of
# a protected table, so guard's event triggers refuse DROP TABLE and ALTER
# TABLE on it, the other schema changes guard records (renames, SET SCHEMA,
# CREATE/DROP INDEX, COMMENT), and drops that reach it by cascade (DROP
# SCHEMA ... CASCADE, DROP OWNED), while other tables stay free; writes still go through guard's
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
CREATE INDEX users_email ON users (email);
CREATE TABLE scratch (id int PRIMARY KEY);
CREATE SCHEMA app;
CREATE TABLE app.orders (id int PRIMARY KEY, total int);
INSERT INTO app.orders SELECT g, g FROM generate_series(1, 5) g;
SELECT guard.protect('app.orders');
CREATE ROLE owner_role;
CREATE TABLE owned (id int PRIMARY KEY);
ALTER TABLE owned OWNER TO owner_role;
SELECT guard.protect('owned');
CREATE TABLE rows_only (id int PRIMARY KEY, note text);
SELECT guard.protect('rows_only', capture => 'dml');
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

# Every other schema change guard records on a protected table is refused
# too: renames, SET SCHEMA, CREATE and DROP INDEX, COMMENT.
for my $ddl (
	'ALTER TABLE users RENAME TO people',
	'ALTER TABLE users RENAME COLUMN email TO mail',
	'ALTER TABLE users SET SCHEMA app',
	'CREATE INDEX users_email2 ON users (email)',
	'DROP INDEX users_email',
	'COMMENT ON TABLE users IS \'accounts\'',
	'COMMENT ON COLUMN users.email IS \'login\'',
	'COMMENT ON INDEX users_email IS \'by email\'')
{
	$rc = $node->psql('postgres', "\\set VERBOSITY verbose\n$ddl;",
		stdout => \$stdout, stderr => \$stderr);
	isnt($rc, 0, "$ddl is refused without the preload");
	like($stderr, qr/55000: cannot change protected table "users": guard is not loaded/,
		"$ddl: SQLSTATE 55000, naming the table");
}
is( $node->safe_psql(
		'postgres', q{
SELECT relname || ' ' || relnamespace::regnamespace || ' '
	|| (SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
		 WHERE attrelid = c.oid AND attnum > 0)
	|| ' ' || (SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text)
		 FROM pg_index WHERE indrelid = c.oid)
	|| ' ' || coalesce(obj_description(c.oid, 'pg_class'), '-')
  FROM pg_class c WHERE oid = 'users'::regclass}),
	'users public id,email users_email,users_pkey -',
	'the table keeps its name, schema, columns, indexes and comment');

# A DROP that reaches a protected table by cascade is refused once
# PostgreSQL knows what it dropped (sql_drop): DROP SCHEMA ... CASCADE,
# DROP OWNED.
$rc = $node->psql('postgres', "\\set VERBOSITY verbose\nDROP SCHEMA app CASCADE;",
	stdout => \$stdout, stderr => \$stderr);
isnt($rc, 0, 'DROP SCHEMA ... CASCADE over a protected table is refused');
like($stderr, qr/55000: cannot drop protected table "orders": guard is not loaded/,
	'with SQLSTATE 55000, naming the table');
is($node->safe_psql('postgres', q{SELECT count(*) FROM app.orders}), '5',
	'the schema\'s protected table and its rows are still there');
$rc = $node->psql('postgres', "\\set VERBOSITY verbose\nDROP OWNED BY owner_role;",
	stdout => \$stdout, stderr => \$stderr);
isnt($rc, 0, 'DROP OWNED over a protected table is refused');
like($stderr, qr/cannot drop protected table "owned"/, 'naming the table');
is($node->safe_psql('postgres', q{SELECT to_regclass('owned') IS NOT NULL}), 't',
	'the table is still there');

# A table whose policy captures rows only has its schema changes go
# through (guard would not record them with the preload either), and so do
# those of unprotected tables.
$rc = $node->psql('postgres', q{
COMMENT ON TABLE rows_only IS 'notes';
CREATE INDEX rows_only_note ON rows_only (note);
ALTER TABLE rows_only RENAME COLUMN note TO remark;
CREATE INDEX scratch_id2 ON scratch (id);
COMMENT ON TABLE scratch IS 'tmp';
DROP INDEX scratch_id2;},
	stdout => \$stdout, stderr => \$stderr);
is($rc, 0, 'schema changes guard does not record go through') or diag($stderr);

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

# Back with the preload, DROP TABLE is recorded and undone, and so is a
# rename.
$node->adjust_conf('postgresql.conf', 'shared_preload_libraries', "'guard'");
$node->restart;
$node->safe_psql('postgres', 'DROP TABLE users');
is($node->safe_psql('postgres', q{SELECT to_regclass('users') IS NULL}), 't',
	'with the preload, DROP TABLE goes through');
$node->safe_psql('postgres', q{SELECT * FROM guard.undrop('users')});
is($node->safe_psql('postgres', q{SELECT count(*) FROM users}), '10',
	'and is undone with all its rows');
$node->safe_psql('postgres', 'ALTER TABLE users RENAME COLUMN email TO mail');
$node->safe_psql('postgres', q{
SELECT * FROM guard.restore((SELECT max(changeset_id) FROM guard.changes WHERE kind = 'RENAME'))});
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'email'}),
	'1',
	'with the preload, a column rename is recorded and undone');
$node->safe_psql('postgres', 'DROP SCHEMA app CASCADE');
is($node->safe_psql('postgres', q{SELECT to_regclass('app.orders') IS NULL}), 't',
	'with the preload, DROP SCHEMA ... CASCADE goes through');

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
