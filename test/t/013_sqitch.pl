# sqitch (Debian's package): each change's deploy script runs through psql
# in a session of its own and the registry (sqitch.changes) is written from
# another connection; guard links the script's change sets to the registry
# transaction holding sqitch's deploy lock, so each change set carries its
# change's name.  The corrupting change is found by its name in one query,
# dry-run and restored (its row in sqitch.changes deleted); sqitch status
# then lists it as undeployed, and sqitch deploy and revert work.
use strict;
use warnings;

use MigrationTools;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = start_guarded('sqitch');
my $dir = PostgreSQL::Test::Utils::tempdir;
my $target = 'db:pg://' . scalar(getpwuid($>)) . '@/app?host=' . $node->host . '&port=' . $node->port;
my %env = (HOME => $dir, SQITCH_USER_NAME => 'guard test', SQITCH_USER_EMAIL => 'test@example.com');

run_tool($node, $dir, [ 'sqitch', 'init', 'shop', '--engine', 'pg', '--target', $target ],
	'sqitch init', %env);
for my $change ([ 'rename_first', "UPDATE accounts SET email = 'first\@example.com' WHERE id = 1;",
		"UPDATE accounts SET email = 'user1\@example.com' WHERE id = 1;" ],
	[ 'reset_passwords', "UPDATE accounts SET password_hash = 'reset';", "SELECT 1;" ])
{
	my ($name, $deploy, $revert) = @$change;
	run_tool($node, $dir, [ 'sqitch', 'add', $name, '-n', $name ], "sqitch add $name", %env);
	write_file("$dir/deploy/$name.sql", "BEGIN;\n$deploy\nCOMMIT;\n");
	write_file("$dir/revert/$name.sql", "BEGIN;\n$revert\nCOMMIT;\n");
	write_file("$dir/verify/$name.sql", "SELECT 1;\n");
}

my $before = $node->safe_psql('app', 'SELECT string_agg(password_hash, \',\' ORDER BY id) FROM accounts');
run_tool($node, $dir, [ 'sqitch', 'deploy' ], 'sqitch deploy', %env);

is($node->safe_psql('app', 'SELECT string_agg(label || \' \' || label_source, \',\' ORDER BY change_id) FROM guard.changes'),
	'rename_first sqitch,reset_passwords sqitch', 'each change set carries its sqitch change');
my $cs = $node->safe_psql('app',
	q{SELECT string_agg(DISTINCT changeset_id::text, ',') FROM guard.changes WHERE label = 'reset_passwords'});
like($cs, qr/^\d+$/, 'the change is found by its name: one change set');
is($node->safe_psql('app', 'SELECT count(*) FROM guard.label_wait'), '0', 'no link is left waiting');

my $dry = $node->safe_psql('app',
	"SELECT relation, kind, rows_restored FROM guard.restore($cs, dry_run => true) ORDER BY change_id NULLS LAST");
is($dry, "public.accounts|UPDATE|6\nsqitch.changes|BOOKKEEPING DELETE|1",
	'the dry run reports the change and the registry row');
$node->safe_psql('app', "SELECT * FROM guard.restore($cs)");
is($node->safe_psql('app', 'SELECT string_agg(password_hash, \',\' ORDER BY id) FROM accounts'),
	$before, 'the restore brings every password hash back');

my ($status) = run_tool($node, $dir, [ 'sqitch', 'status' ], 'sqitch status works', %env);
like($status, qr/Undeployed change:\s*\n\s*\* reset_passwords/, 'sqitch status lists the restored change as undeployed');
run_tool($node, $dir, [ 'sqitch', 'deploy' ], 'sqitch deploy deploys it again', %env);
is($node->safe_psql('app', 'SELECT count(*) FROM accounts WHERE password_hash = \'reset\''), '6',
	'it ran again');
run_tool($node, $dir, [ 'sqitch', 'revert', '-y' ], 'sqitch revert works', %env);
is($node->safe_psql('app', 'SELECT email FROM accounts WHERE id = 1') . ' '
	  . $node->safe_psql('app', 'SELECT count(*) FROM sqitch.changes'),
	'user1@example.com 0', 'every change is reverted');
is($node->safe_psql('app', q{SELECT count(*) FROM guard.changes WHERE label = 'rename_first (revert)'}),
	'1', 'a revert script is labelled too');

$node->stop;
done_testing();
