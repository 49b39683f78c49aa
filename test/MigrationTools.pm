# test/MigrationTools.pm: what the TAP tests of real migration tools share
# (test/t/009_sqitch.pl, 010_django.pl, 011_node_pg_migrate.pl,
# 012_knex.pl).  A cluster that preloads guard, a database with guard and a
# protected table of accounts, and a way to run a tool against it.
#
# The tools are installed by test/setup.sh: sqitch, Django and psycopg2
# from Debian's packages, node-pg-migrate and knex with npm into
# test/tools/node_modules (versions pinned by test/tools/package-lock.json).
# A tool that is missing makes its test fail, not skip.
package MigrationTools;

use strict;
use warnings;

use Exporter 'import';
use File::Path qw(make_path);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(start_guarded tool_env run_tool write_file tools_bin);

# Start a cluster that preloads guard, with database "app": guard installed,
# table accounts (6 rows with a password hash each) protected.
sub start_guarded
{
	my ($name) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'guard'");
	$node->start;
	$node->safe_psql('postgres', 'CREATE DATABASE app');
	$node->safe_psql(
		'app', q{
CREATE EXTENSION guard;
CREATE TABLE accounts (id int PRIMARY KEY, email text NOT NULL, password_hash text NOT NULL);
INSERT INTO accounts SELECT g, 'user' || g || '@example.com', 'pbkdf2$' || md5(g::text)
  FROM generate_series(1, 6) g;
SELECT guard.protect('accounts');
});
	return $node;
}

# The environment that points libpq (and so every tool) at the node.
sub tool_env
{
	my ($node) = @_;
	return (
		PGHOST => $node->host,
		PGPORT => $node->port,
		PGUSER => scalar(getpwuid($>)),
		PGDATABASE => 'app',
		NODE_PATH => "$ENV{TESTDIR}/test/tools/node_modules",
		DATABASE_URL => 'postgres://' . scalar(getpwuid($>)) . '@localhost/app?host='
		  . $node->host . '&port=' . $node->port);
}

# The directory of the npm-installed tools' executables.
sub tools_bin
{
	return "$ENV{TESTDIR}/test/tools/node_modules/.bin";
}

# Run a tool (array ref) in directory $dir with the node's environment plus
# %extra; one test that it succeeded.  Returns its stdout and stderr.
sub run_tool
{
	my ($node, $dir, $cmd, $name, %extra) = @_;
	my ($out, $err) = ('', '');
	my %env = (tool_env($node), %extra);
	my $ok = eval {
		IPC::Run::run(
			$cmd, '<', \undef, '>', \$out, '2>', \$err,
			init => sub {
				chdir $dir or die "chdir $dir: $!";
				$ENV{$_} = $env{$_} for keys %env;
			});
	};
	ok($ok, $name) or diag("command: @$cmd\nstdout: $out\nstderr: $err\n" . ($@ // ''));
	note("$name:\n$out$err");
	return ($out, $err);
}

# Write $content to $path, creating its directory.
sub write_file
{
	my ($path, $content) = @_;
	my ($dir) = $path =~ m{^(.*)/[^/]+$};
	make_path($dir) unless -d $dir;
	open my $fh, '>', $path or die "open $path: $!";
	print $fh $content;
	close $fh;
	return;
}

1;
