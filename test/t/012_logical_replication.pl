# Guarantee 9 with logical replication (issue 16, item 5): a publication
# FOR ALL TABLES on a server running guard publishes the protected tables
# but none of guard's own (guard.change, guard.snapshot, ...: the
# before-images of every protected table, the policies, ...); a subscriber
# that runs guard too keeps its own records, and one without guard can
# subscribe at all.  On the subscriber, a restore of its own change reports
# a row that replication wrote since as a conflict.
#
# guard turns the publication into one FOR TABLES IN SCHEMA every schema
# but its own, and adds the schemas created later (src/publication.c); a
# subscriber running guard drops the rows a subscription applies to
# guard's tables, so that even a publisher that publishes them by name
# cannot overwrite its records.  A publication FOR ALL TABLES made before
# guard was installed is reported by CREATE EXTENSION guard.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# bound the waits below: a table that cannot sync would wait the default
# three minutes
$PostgreSQL::Test::Utils::timeout_default = 30;

my $pub = PostgreSQL::Test::Cluster->new('publisher');
$pub->init(allows_streaming => 'logical');
$pub->append_conf('postgresql.conf', "shared_preload_libraries = 'guard'");
$pub->start;

my $sub = PostgreSQL::Test::Cluster->new('subscriber');
$sub->init;
$sub->append_conf('postgresql.conf', "shared_preload_libraries = 'guard'");
$sub->start;

my $plain = PostgreSQL::Test::Cluster->new('plain_subscriber');
$plain->init;
$plain->start;

my $table = q{CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL, note text);};
$pub->safe_psql(
	'postgres', qq{
CREATE EXTENSION guard;
$table
INSERT INTO acct SELECT g, g * 10, 'n' || g FROM generate_series(1, 100) g;
SELECT guard.protect('acct');
UPDATE acct SET balance = 0 WHERE id <= 10;
CREATE PUBLICATION p FOR ALL TABLES;
});

# The subscriber has guard, the same table, protected, and records of its
# own: a change to a table only it has.
$sub->safe_psql(
	'postgres', qq{
CREATE EXTENSION guard;
$table
SELECT guard.protect('acct');
CREATE TABLE local_notes (id int PRIMARY KEY, body text);
INSERT INTO local_notes SELECT g, 'note ' || g FROM generate_series(1, 5) g;
SELECT guard.protect('local_notes');
UPDATE local_notes SET body = 'edited' WHERE id = 1;
});
$plain->safe_psql('postgres', $table);

# What the publication holds.
my $published = $pub->safe_psql('postgres',
	q{SELECT string_agg(schemaname || '.' || tablename, ' ' ORDER BY 1) FROM pg_publication_tables WHERE pubname = 'p'});
like($published, qr/\bpublic\.acct\b/, 'the protected table is published');
unlike($published, qr/\bguard(_trash)?\./, 'none of guard\'s tables is published')
  or diag("published: $published");

my $records_sql = q{
SELECT md5(concat(
	(SELECT string_agg(c::text, E'\n' ORDER BY changeset_id) FROM guard.changeset c),
	(SELECT string_agg(c::text, E'\n' ORDER BY change_id) FROM guard.change c),
	(SELECT string_agg(s::text, E'\n' ORDER BY change_id, chunk) FROM guard.snapshot s),
	(SELECT string_agg(l::text, E'\n' ORDER BY layout_id) FROM guard.layout l),
	(SELECT string_agg(p::text, E'\n' ORDER BY relid::oid) FROM guard.policy p)))};
my $sub_records = $sub->safe_psql('postgres', $records_sql);
my $table_later;

# Subscribe; wait until acct is copied and the subscription caught up.
my $connstr = $pub->connstr . ' dbname=postgres';
my $log_offset = -s $sub->logfile;
$sub->safe_psql('postgres', "CREATE SUBSCRIPTION s CONNECTION '$connstr' PUBLICATION p");
ok( $sub->poll_query_until(
		'postgres', q{
SELECT srsubstate IN ('r', 's') FROM pg_subscription_rel WHERE srrelid = 'acct'::regclass}),
	'the subscriber copies the protected table');
$pub->wait_for_catchup('s');
is( $sub->safe_psql(
		'postgres',
		q{SELECT string_agg(srrelid::regclass::text, ' ' ORDER BY 1) FROM pg_subscription_rel}),
	'acct',
	'the subscription holds the protected table and none of guard\'s');

# Replication goes on: a guarded change on the publisher reaches the
# subscriber, and the subscriber keeps its own records.
$pub->safe_psql('postgres', q{UPDATE acct SET note = 'from the publisher' WHERE id BETWEEN 11 AND 20});
$pub->wait_for_catchup('s');
my $acct_sql = q{SELECT md5(string_agg(id || ':' || balance || ':' || coalesce(note, '-'), ',' ORDER BY id)) FROM acct};
is($sub->safe_psql('postgres', $acct_sql), $pub->safe_psql('postgres', $acct_sql),
	'the subscriber\'s copy of the protected table equals the publisher\'s');
is($sub->safe_psql('postgres', $records_sql), $sub_records,
	'the subscriber\'s guard records are its own, unchanged');
unlike(slurp_file($sub->logfile, $log_offset), qr/ERROR:/,
	'no replication worker failed on the subscriber')
  or diag(join("\n", grep { /ERROR:/ } split /\n/, slurp_file($sub->logfile, $log_offset)));

# Writes applied by the subscription are not captured on the subscriber
# (its apply worker runs with session_replication_role = replica, where
# guard's capture triggers do not fire); a restore of a change the
# subscriber made itself reports a row that replication wrote since as a
# conflict (the publisher sends whole rows: its write replaces the local
# one).
$sub->safe_psql('postgres', q{UPDATE acct SET note = 'local' WHERE id = 50});
my $local_cs = $sub->safe_psql('postgres',
	q{SELECT max(changeset_id) FROM guard.changes WHERE relation = 'public.acct'});
$pub->safe_psql('postgres', q{UPDATE acct SET balance = -50 WHERE id = 50});
$pub->wait_for_catchup('s');
is($sub->safe_psql('postgres', q{SELECT balance || ' ' || note FROM acct WHERE id = 50}),
	'-50 n50', 'the replicated write replaced the whole row, the local write with it');
note 'changes captured on the subscriber for acct: '
  . $sub->safe_psql('postgres',
	q{SELECT count(*) FROM guard.changes WHERE relation = 'public.acct'});
is( $sub->safe_psql(
		'postgres',
		qq{SELECT conflicts FROM guard.restore($local_cs, dry_run => true, on_conflict => 'skip')}),
	'1',
	'on the subscriber, a restore of its own change reports the replicated write as a conflict');

# A schema the publisher creates later joins the publication: after a
# refresh, its table reaches the subscriber.
$table_later = q{CREATE SCHEMA later; CREATE TABLE later.items (id int PRIMARY KEY, v text);};
$pub->safe_psql('postgres', $table_later . q{INSERT INTO later.items VALUES (1, 'later');});
$sub->safe_psql('postgres', $table_later);
$sub->safe_psql('postgres', q{ALTER SUBSCRIPTION s REFRESH PUBLICATION});
ok( $sub->poll_query_until(
		'postgres', q{
SELECT srsubstate IN ('r', 's') FROM pg_subscription_rel WHERE srrelid = 'later.items'::regclass}),
	'a table in a schema created later is published');
$pub->wait_for_catchup('s');
is($sub->safe_psql('postgres', q{SELECT v FROM later.items}), 'later',
	'and reaches the subscriber');

# A publisher that publishes guard's tables by name: the subscriber with
# guard copies none of their rows, applies none of their changes, and keeps
# its own records.
$pub->safe_psql('postgres', q{CREATE PUBLICATION guard_records FOR TABLES IN SCHEMA guard});
$sub_records = $sub->safe_psql('postgres', $records_sql);
$log_offset = -s $sub->logfile;
$sub->safe_psql('postgres',
	"CREATE SUBSCRIPTION sg CONNECTION '$connstr' PUBLICATION guard_records WITH (slot_name = sg)");
ok( $sub->poll_query_until(
		'postgres', q{
SELECT count(*) > 0 AND bool_and(srsubstate IN ('r', 's'))
  FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
 WHERE s.subname = 'sg'}),
	'a subscription of guard\'s tables by name syncs');
$pub->safe_psql('postgres', q{UPDATE acct SET note = 'guarded again' WHERE id = 99});
$pub->wait_for_catchup('sg');
$pub->wait_for_catchup('s');
is($sub->safe_psql('postgres', q{SELECT note FROM acct WHERE id = 99}), 'guarded again',
	'the protected table still replicates');
is($sub->safe_psql('postgres', $records_sql), $sub_records,
	'the subscriber\'s guard records stay its own');
unlike(slurp_file($sub->logfile, $log_offset), qr/ERROR:/,
	'no replication worker failed')
  or diag(join("\n", grep { /ERROR:/ } split /\n/, slurp_file($sub->logfile, $log_offset)));
$sub->safe_psql('postgres', q{DROP SUBSCRIPTION sg});

# A subscriber without guard can subscribe to the publication.
$plain->safe_psql('postgres', $table_later);
my ($rc, $out, $err) = (0, '', '');
$rc = $plain->psql('postgres',
	"CREATE SUBSCRIPTION plain CONNECTION '$connstr' PUBLICATION p WITH (slot_name = plain)",
	stdout => \$out, stderr => \$err);
is($rc, 0, 'a subscriber without guard can subscribe') or diag($err);
SKIP:
{
	skip 'no subscription on the subscriber without guard', 1 if $rc != 0;
	ok( $plain->poll_query_until(
			'postgres', q{
SELECT srsubstate IN ('r', 's') FROM pg_subscription_rel WHERE srrelid = 'acct'::regclass}),
		'and gets the protected table');
}

# A subscriber that has just installed guard, with no records yet: the
# publisher's must not become its own, and its own writes must still be
# captured.
my $fresh = PostgreSQL::Test::Cluster->new('fresh_subscriber');
$fresh->init;
$fresh->append_conf('postgresql.conf', "shared_preload_libraries = 'guard'");
$fresh->start;
$fresh->safe_psql(
	'postgres', qq{
CREATE EXTENSION guard;
$table
$table_later
CREATE TABLE local_notes (id int PRIMARY KEY, body text);
INSERT INTO local_notes SELECT g, 'note ' || g FROM generate_series(1, 5) g;
SELECT guard.protect('local_notes');
CREATE SUBSCRIPTION fresh CONNECTION '$connstr' PUBLICATION p WITH (slot_name = fresh);
});
ok( $fresh->poll_query_until(
		'postgres', q{
SELECT srsubstate IN ('r', 's') FROM pg_subscription_rel WHERE srrelid = 'acct'::regclass}),
	'a fresh subscriber with guard copies the protected table');
$pub->wait_for_catchup('fresh');
is($fresh->safe_psql('postgres', q{SELECT count(*) FROM guard.change}), '0',
	'and holds no change record of the publisher');
($rc, $out, $err) = (0, '', '');
$rc = $fresh->psql('postgres', q{UPDATE local_notes SET body = 'edited' WHERE id = 1},
	stdout => \$out, stderr => \$err);
is($rc, 0, 'a guarded write of its own succeeds') or diag($err);
is( $fresh->safe_psql(
		'postgres', q{SELECT string_agg(relation || ' ' || kind, ', ') FROM guard.changes}),
	'public.local_notes UPDATE',
	'and is its only change record');

# A publication FOR ALL TABLES made before guard was installed publishes
# guard's tables: CREATE EXTENSION guard says so.
$fresh->safe_psql('postgres', q{CREATE DATABASE late; });
$fresh->safe_psql('late', q{CREATE PUBLICATION early FOR ALL TABLES});
($rc, $out, $err) = (0, '', '');
$fresh->psql('late', q{CREATE EXTENSION guard}, stdout => \$out, stderr => \$err);
like($err, qr/WARNING:  publication "early" publishes guard's own tables/,
	'CREATE EXTENSION warns of a publication FOR ALL TABLES made before');

$fresh->stop;
$plain->stop;
$sub->stop;
$pub->stop;
done_testing();
