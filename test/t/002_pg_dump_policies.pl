# Policies and guard's capture triggers survive pg_dump -Fc / pg_restore
# into a fresh database: guard.policies is identical (every policy field,
# a quoted mixed-case name in another schema, a partitioned tree), each
# protected table and partition has its guard_capture_* triggers, tables
# without DML capture have none, pg_restore reports no error, and capture
# works in the restored database.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'guard'");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql(
	'src', q{
CREATE EXTENSION guard;

CREATE TABLE t_plain (id int PRIMARY KEY, v text);
INSERT INTO t_plain SELECT i, 'v' || i FROM generate_series(1, 10) i;
SELECT guard.protect('t_plain');

CREATE TABLE t_limits (id int PRIMARY KEY, v text);
INSERT INTO t_limits SELECT i, 'v' || i FROM generate_series(1, 10) i;
SELECT guard.protect('t_limits', capture => 'dml', mode => 'warn',
                     min_rows => 3, max_rows => 1000, max_fraction => 0.5,
                     require_where => true);

CREATE SCHEMA "Sales Schema";
CREATE TABLE "Sales Schema"."Mixed Case" ("Id" int PRIMARY KEY, "Amount" numeric);
INSERT INTO "Sales Schema"."Mixed Case" VALUES (1, 1.50), (2, 2.50);
SELECT guard.protect('"Sales Schema"."Mixed Case"', capture => 'all',
                     mode => 'enforce', max_rows => 10);

CREATE TABLE t_ddl_only (v text);
SELECT guard.protect('t_ddl_only', capture => 'ddl');

CREATE TABLE t_none (id int PRIMARY KEY);
SELECT guard.protect('t_none', capture => 'none', min_rows => 0);

CREATE TABLE parted (id int, region text, v text, PRIMARY KEY (id, region))
  PARTITION BY LIST (region);
CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us');
CREATE TABLE parted_asia PARTITION OF parted FOR VALUES IN ('asia')
  PARTITION BY RANGE (id);
CREATE TABLE parted_asia_low PARTITION OF parted_asia FOR VALUES FROM (0) TO (100);
INSERT INTO parted VALUES (1, 'eu', 'a'), (2, 'us', 'b'), (3, 'asia', 'c');
SELECT guard.protect('parted', max_fraction => 1);
SELECT guard.add_invariant('t_plain', 'v_not_empty', row_check => 'length(v) > 0');
SELECT guard.add_invariant('parted', 'few_rows',
                           query => 'SELECT count(*) < 1000 FROM public.parted',
                           deferred => false);
SELECT guard.add_invariant('parted', 'v_short', row_check => 'length(v) < 5',
                           accept_existing => true);
});

# What must survive: every policy field, and guard's triggers with their
# full definitions, per table.
my $policies_sql = q{
SELECT relation::text, capture, mode, mode_from_setting, min_rows, max_rows,
       max_fraction, require_where, created_at, created_by
  FROM guard.policies ORDER BY relation::text};
my $invariants_sql = q{
SELECT relation::text, name, kind, row_check, query, deferred, created_at, created_by,
       validated
  FROM guard.invariants ORDER BY 1, 2};
my $triggers_sql = q{
SELECT c.oid::regclass::text, t.tgname, t.tgenabled,
       pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE t.tgname LIKE 'guard%'
 ORDER BY 1, 2};
my $tables_with_triggers_sql = q{
SELECT string_agg(rel || ':' || n, ' ' ORDER BY rel)
  FROM (SELECT c.oid::regclass::text AS rel, count(t.oid) AS n
          FROM pg_class c
          LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname LIKE 'guard_capture_%'
         WHERE c.relkind IN ('r', 'p')
           AND c.relnamespace NOT IN ('pg_catalog'::regnamespace,
                                      'information_schema'::regnamespace,
                                      'guard'::regnamespace)
         GROUP BY 1) s};
my $expected_triggers =
    '"Sales Schema"."Mixed Case":4 parted:4 parted_asia:4 parted_asia_low:4 '
  . 'parted_eu:4 parted_us:4 t_limits:4 t_none:0 t_plain:4 t_ddl_only:0';

my $src_policies = $node->safe_psql('src', $policies_sql);
my $src_triggers = $node->safe_psql('src', $triggers_sql);
is(scalar(split /\n/, $src_policies), 6, 'six policies in the source database');

# sort both sides the same way, independently of collation
sub sorted_words { return join ' ', sort split / /, $_[0]; }
is( sorted_words($node->safe_psql('src', $tables_with_triggers_sql)),
	sorted_words($expected_triggers),
	'source: guard_capture_* on each DML-protected table and partition only');

my $dump = $node->basedir . '/src.dump';
my ($out, $err);
my $ok = IPC::Run::run(
	[ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src') ],
	'>', \$out, '2>', \$err);
ok($ok, 'pg_dump -Fc succeeds');
is($err, '', 'pg_dump prints nothing on stderr');

$node->safe_psql('postgres', 'CREATE DATABASE dst');
$ok = IPC::Run::run(
	[ 'pg_restore', '-d', $node->connstr('dst'), $dump ],
	'>', \$out, '2>', \$err);
ok($ok, 'pg_restore exits with status 0');
is($err, '', 'pg_restore reports no error');

# The same dump restored in one transaction, stopping at the first error,
# as careful DBAs do: it must go through as well.
$node->safe_psql('postgres', 'CREATE DATABASE dst_single');
$ok = IPC::Run::run(
	[
		'pg_restore', '--single-transaction', '--exit-on-error',
		'-d', $node->connstr('dst_single'), $dump
	],
	'>', \$out, '2>', \$err);
ok($ok, 'pg_restore --single-transaction --exit-on-error succeeds');
my $single_policies = '';
$node->psql('dst_single', $policies_sql, stdout => \$single_policies);
is($single_policies, $src_policies,
	'guard.policies is identical after a single-transaction restore');

is($node->safe_psql('dst', $policies_sql),
	$src_policies, 'guard.policies is identical after pg_restore');
is($node->safe_psql('dst', $invariants_sql),
	$node->safe_psql('src', $invariants_sql),
	'guard.invariants is identical after pg_restore');
like($node->safe_psql('dst', $invariants_sql), qr/v_not_empty/,
	'the invariants were in the dump');
is($node->safe_psql('dst', $triggers_sql),
	$src_triggers, 'guard triggers are identical after pg_restore');
is( sorted_words($node->safe_psql('dst', $tables_with_triggers_sql)),
	sorted_words($expected_triggers),
	'restored: guard_capture_* on each DML-protected table and partition only');

# Capture works in the restored database, through the root of the
# partitioned table and on a partition directly; min_rows still applies.
$node->safe_psql(
	'dst', q{
UPDATE t_plain SET v = 'changed' WHERE id = 1;
UPDATE "Sales Schema"."Mixed Case" SET "Amount" = 9.99 WHERE "Id" = 2;
UPDATE parted SET v = 'root' WHERE id = 1;
UPDATE parted_us SET v = 'leaf' WHERE id = 2;
UPDATE parted SET v = 'deep' WHERE id = 3;
UPDATE t_limits SET v = 'below min_rows' WHERE id <= 2;
UPDATE t_limits SET v = 'at min_rows' WHERE id BETWEEN 5 AND 7;
UPDATE t_none SET id = id;
});
is( $node->safe_psql(
		'dst', q{
SELECT string_agg(c.relation || ' ' || c.kind || ' ' || c.rows, E'\n' ORDER BY c.change_id)
  FROM guard.changes c WHERE c.kind = 'UPDATE'}),
	join("\n",
		'public.t_plain UPDATE 1',
		'"Sales Schema"."Mixed Case" UPDATE 1',
		'public.parted UPDATE 1',
		'public.parted_us UPDATE 1',
		'public.parted UPDATE 1',
		'public.t_limits UPDATE 3'),
	'the restored database records each guarded UPDATE, and min_rows still applies');
is( $node->safe_psql(
		'dst', q{
SELECT string_agg(d.key || ' ' || d."column" || ' ' || d.before || '->' || d.after,
                  E'\n' ORDER BY c.change_id, d.key)
  FROM guard.changes c CROSS JOIN LATERAL guard.diff(c.change_id) d
 WHERE c.relation IN ('public.t_plain', '"Sales Schema"."Mixed Case"', 'public.parted_us')}),
	join("\n",
		'(id)=(1) v v1->changed',
		'("Id")=(2) Amount 2.50->9.99',
		'(id, region)=(2, us) v b->leaf'),
	'guard.diff shows the before-images captured in the restored database');

$node->stop;
done_testing();
