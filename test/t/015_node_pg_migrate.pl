# node-pg-migrate (npm, pinned in test/tools): `up` runs three migrations in
# one transaction (its default); each is a labelled part of the one change
# set; the corrupting one, the last, written with pgm.sql, is found by its
# name in one query, dry-run, restored alone (its row in pgmigrations
# deleted), and node-pg-migrate's own down and up work afterwards.  (Had a
# migration before others been restored, node-pg-migrate would refuse to
# run with the gap unless given --no-check-order: its own rule.)
use strict;
use warnings;

use MigrationTools;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = start_guarded('pgm');
my $dir = PostgreSQL::Test::Utils::tempdir;
my $pgm = tools_bin() . '/node-pg-migrate';

write_file("$dir/migrations/1764374400001_rename-first.js", <<'JS');
exports.up = (pgm) => { pgm.sql("UPDATE accounts SET email = 'first@example.com' WHERE id = 1"); };
exports.down = (pgm) => { pgm.sql("UPDATE accounts SET email = 'user1@example.com' WHERE id = 1"); };
JS
write_file("$dir/migrations/1764374400009_reset-passwords.js", <<'JS');
// the bug: meant to reset one account, resets them all and drops one
exports.up = (pgm) => {
  pgm.sql("UPDATE accounts SET password_hash = 'reset'");
  pgm.sql("DELETE FROM accounts WHERE id = 6");
};
exports.down = () => {};
JS
write_file("$dir/migrations/1764374400002_add-admin.js", <<'JS');
exports.up = (pgm) => { pgm.sql("INSERT INTO accounts VALUES (7, 'admin@example.com', 'x')"); };
exports.down = (pgm) => { pgm.sql("DELETE FROM accounts WHERE id = 7"); };
JS

my $before = $node->safe_psql('app', 'SELECT string_agg(id || password_hash, \',\' ORDER BY id) FROM accounts');
run_tool($node, $dir, [ $pgm, 'up' ], 'node-pg-migrate up runs the three migrations');

my $cs = $node->safe_psql('app',
	q{SELECT string_agg(DISTINCT changeset_id::text, ',') FROM guard.changes WHERE label = '1764374400009_reset-passwords'});
like($cs, qr/^\d+$/, 'the migration is found by its name: one change set');
is( $node->safe_psql('app', "SELECT labels FROM guard.changesets WHERE changeset_id = $cs"),
	'{1764374400001_rename-first,1764374400002_add-admin,1764374400009_reset-passwords}',
	'one change set, one labelled part per migration');

my $dry = $node->safe_psql('app',
	"SELECT relation, kind, rows_restored FROM guard.restore($cs, dry_run => true, label => '1764374400009_reset-passwords') ORDER BY change_id NULLS LAST");
is($dry, "public.accounts|UPDATE|7\npublic.accounts|DELETE|1\npublic.pgmigrations|BOOKKEEPING DELETE|1",
	'the dry run reports the part and the bookkeeping row');
is($node->safe_psql('app', 'SELECT count(*) FROM pgmigrations'), '3', 'the dry run changed nothing');

$node->safe_psql('app', "SELECT * FROM guard.restore($cs, label => '1764374400009_reset-passwords')");
is($node->safe_psql('app', 'SELECT string_agg(id || password_hash, \',\' ORDER BY id) FROM accounts WHERE id <= 6'),
	$before, 'the restore brings every row back');
is($node->safe_psql('app', 'SELECT string_agg(name, \',\' ORDER BY id) FROM pgmigrations'),
	'1764374400001_rename-first,1764374400002_add-admin',
	'node-pg-migrate no longer records the restored migration');

run_tool($node, $dir, [ $pgm, 'down' ], 'node-pg-migrate down works');
is($node->safe_psql('app', 'SELECT count(*) FROM accounts WHERE id = 7'), '0',
	'down undid the last migration still recorded');
run_tool($node, $dir, [ $pgm, 'down' ], 'node-pg-migrate down works again');
is($node->safe_psql('app', 'SELECT email FROM accounts WHERE id = 1'), 'user1@example.com',
	'and the first');
run_tool($node, $dir, [ $pgm, 'up' ], 'node-pg-migrate up runs all three again');
is($node->safe_psql('app', 'SELECT count(*) FROM pgmigrations'), '3', 'all three are recorded again');

$node->stop;
done_testing();
