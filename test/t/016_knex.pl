# knex (npm, pinned in test/tools): a batch of three migrations runs in one
# transaction; each is a labelled part of the one change set; the corrupting
# one is found by its name in one query, dry-run, restored alone (its row
# in knex_migrations deleted, the report says so), and knex's own
# migrate:list, migrate:rollback and migrate:latest work afterwards.  Last,
# a script run with PGOPTIONS=-c guard.label=... by a role that is not a
# superuser labels its change.
use strict;
use warnings;

use MigrationTools;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = start_guarded('knex');
my $dir = PostgreSQL::Test::Utils::tempdir;
my $knex = tools_bin() . '/knex';

write_file("$dir/knexfile.js", <<'JS');
module.exports = {
  client: 'pg',
  connection: { host: process.env.PGHOST, port: process.env.PGPORT,
                user: process.env.PGUSER, database: process.env.PGDATABASE },
  migrations: { directory: './migrations' },
};
JS
write_file("$dir/migrations/20261129000001_rename_first.js", <<'JS');
exports.up = (knex) => knex('accounts').where('id', 1).update({ email: 'first@example.com' });
exports.down = (knex) => knex('accounts').where('id', 1).update({ email: 'user1@example.com' });
JS
write_file("$dir/migrations/20261129000002_reset_passwords.js", <<'JS');
// the bug: meant to reset one account, resets them all
exports.up = (knex) => knex('accounts').update({ password_hash: 'reset' });
exports.down = () => Promise.resolve();
JS
write_file("$dir/migrations/20261129000003_add_admin.js", <<'JS');
exports.up = (knex) => knex('accounts').insert({ id: 7, email: 'admin@example.com', password_hash: 'x' });
exports.down = (knex) => knex('accounts').where('id', 7).del();
JS

my $before = $node->safe_psql('app', 'SELECT string_agg(password_hash, \',\' ORDER BY id) FROM accounts WHERE id <= 6');
run_tool($node, $dir, [ $knex, 'migrate:latest' ], 'knex migrate:latest runs the batch');

my $cs = $node->safe_psql('app',
	q{SELECT string_agg(DISTINCT changeset_id::text, ',') FROM guard.changes WHERE label = '20261129000002_reset_passwords.js'});
like($cs, qr/^\d+$/, 'the migration is found by its name: one change set');
is( $node->safe_psql('app', "SELECT labels FROM guard.changesets WHERE changeset_id = $cs"),
	'{20261129000001_rename_first.js,20261129000002_reset_passwords.js,20261129000003_add_admin.js}',
	'the batch is one change set with one labelled part per migration');
is($node->safe_psql('app', "SELECT DISTINCT label_source FROM guard.changes WHERE changeset_id = $cs"),
	'knex', 'the labels come from knex_migrations');

my $dry = $node->safe_psql('app',
	"SELECT relation, kind, rows_restored FROM guard.restore($cs, dry_run => true, label => '20261129000002_reset_passwords.js') ORDER BY kind");
is($dry, "public.knex_migrations|BOOKKEEPING DELETE|1\npublic.accounts|UPDATE|6",
	'the dry run reports the part and the bookkeeping row');
is($node->safe_psql('app', 'SELECT count(*) FROM accounts WHERE password_hash = \'reset\''), '6',
	'the dry run changed nothing');

$node->safe_psql('app', "SELECT * FROM guard.restore($cs, label => '20261129000002_reset_passwords.js')");
is($node->safe_psql('app', 'SELECT string_agg(password_hash, \',\' ORDER BY id) FROM accounts WHERE id <= 6'),
	$before, 'the restore brings every password hash back');
is($node->safe_psql('app', 'SELECT email FROM accounts WHERE id = 1') . ' '
	  . $node->safe_psql('app', 'SELECT count(*) FROM accounts WHERE id = 7'),
	'first@example.com 1', 'the other migrations of the batch stay');
is($node->safe_psql('app', 'SELECT string_agg(name, \',\' ORDER BY id) FROM knex_migrations'),
	'20261129000001_rename_first.js,20261129000003_add_admin.js',
	'knex no longer records the restored migration');

my ($list) = run_tool($node, $dir, [ $knex, 'migrate:list' ], 'knex migrate:list works');
like($list, qr/1 Pending Migration.*20261129000002_reset_passwords\.js/s,
	'knex lists the restored migration as pending');
run_tool($node, $dir, [ $knex, 'migrate:rollback' ], 'knex migrate:rollback works');
is($node->safe_psql('app', 'SELECT email FROM accounts WHERE id = 1') . ' '
	  . $node->safe_psql('app', 'SELECT count(*) FROM accounts WHERE id = 7') . ' '
	  . $node->safe_psql('app', 'SELECT count(*) FROM knex_migrations'),
	'user1@example.com 0 0', 'the rollback undid the two migrations still recorded');
run_tool($node, $dir, [ $knex, 'migrate:latest' ], 'knex migrate:latest runs all three again');
is($node->safe_psql('app', 'SELECT count(*) FROM knex_migrations'), '3', 'all three are recorded again');

# any other tool, or a plain script: the setting guard.label, passed with
# PGOPTIONS by a role that is not a superuser
$node->safe_psql('app', 'CREATE ROLE deployer LOGIN; GRANT UPDATE, SELECT ON accounts TO deployer');
run_tool($node, $dir, [ 'psql', '-X', '-c', "UPDATE accounts SET email = 'x\@example.com' WHERE id = 2" ],
	'a script run with PGOPTIONS', PGUSER => 'deployer', PGOPTIONS => '-c guard.label=release-42');
is($node->safe_psql('app', q{SELECT role || ' ' || label || ' ' || label_source FROM guard.changes ORDER BY change_id DESC LIMIT 1}),
	'deployer release-42 setting', 'its change carries the label from PGOPTIONS');

$node->stop;
done_testing();
