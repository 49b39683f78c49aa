# GuardFuzz::Fixture: the database test/t/010_fuzz_functions.pl fuzzes.
#
# setup_sql() makes relations of every kind (protected tables among them,
# one with an odd quoted name), changes of every kind for guard to have
# recorded, a canary table nobody may write, an unprivileged role
# "mallory" with a protected table of her own, and fuzz.digest(): one line
# per table (md5 of its rows) and per set of relations, triggers and event
# triggers, which a failing call must leave unchanged.
#
# refill_sql() puts the fixture back after calls that unprotected, purged
# or restored things, and makes fresh changes to restore.
package GuardFuzz::Fixture;

use strict;
use warnings;

# a protected table with a name that needs quoting, and its SQL literal
our $odd_schema = '"odd ""schema"""';
our $odd_table = qq{$odd_schema."We'ird ; ""table"""};
our $odd_lit = q{'"odd ""schema"""."We''ird ; ""table"""'};

# The SQL that makes the fixture, for a server listening on $host, $port
# (postgres_fdw's loopback server needs them).
sub setup_sql
{
	my ($host, $port) = @_;
	return <<"EOF";
CREATE EXTENSION guard;
CREATE EXTENSION postgres_fdw;
CREATE EXTENSION file_fdw;
CREATE ROLE mallory LOGIN;
GRANT CREATE ON SCHEMA public TO mallory;

CREATE TABLE canary (v text);
INSERT INTO canary VALUES ('intact');
REVOKE ALL ON canary FROM PUBLIC;

CREATE TABLE prot (id int PRIMARY KEY, v int NOT NULL, t text);
INSERT INTO prot SELECT g, g, md5(g::text) FROM generate_series(1, 200) g;
UPDATE prot SET t = (SELECT string_agg(md5(i::text || 'x'), '') FROM generate_series(1, 300) i)
 WHERE id <= 3;
SELECT guard.protect('prot');
SELECT guard.add_invariant('prot', 'fx_positive', row_check => 'v >= 0');
SELECT guard.add_invariant('prot', 'fx_some', query => 'SELECT count(*) >= 0 FROM prot');

CREATE TABLE parted (id int, k int, v int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (10) TO (20);
INSERT INTO parted SELECT g, g % 20, g FROM generate_series(1, 100) g;
SELECT guard.protect('parted', mode => 'warn');
SELECT guard.add_invariant('parted', 'fx_small', row_check => 'v < 1000', deferred => false);

CREATE SCHEMA $odd_schema;
CREATE TABLE $odd_table ("k ""1""" int PRIMARY KEY, "select" text);
INSERT INTO $odd_table SELECT g, 'x' FROM generate_series(1, 20) g;
SELECT guard.protect(${odd_lit}::regclass);

CREATE TABLE prot2 (id int PRIMARY KEY, gone int, g int GENERATED ALWAYS AS (id * 2) STORED, w text);
INSERT INTO prot2 (id, gone, w) SELECT g, g, 'w' FROM generate_series(1, 30) g;
ALTER TABLE prot2 DROP COLUMN gone;
SELECT guard.protect('prot2');
SELECT guard.add_invariant('prot2', 'fx_w', row_check => 'length(w) < 100');

CREATE TABLE plain (id int PRIMARY KEY, v int);
INSERT INTO plain SELECT g, g FROM generate_series(1, 10) g;
CREATE TABLE nokey (v int);
CREATE TABLE nocols ();
CREATE TABLE child () INHERITS (plain);
CREATE VIEW v AS SELECT * FROM prot;
CREATE MATERIALIZED VIEW mv AS SELECT id, v FROM prot;
CREATE SEQUENCE seq;
CREATE TYPE comp AS (a int, b text);
CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw
	OPTIONS (host '$host', port '$port', dbname 'postgres');
CREATE USER MAPPING FOR CURRENT_USER SERVER loopback;
CREATE FOREIGN TABLE ft (id int, v int, t text) SERVER loopback
	OPTIONS (schema_name 'public', table_name 'prot');
CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
CREATE FOREIGN TABLE ff (line text) SERVER files OPTIONS (filename '/dev/null');
CREATE FOREIGN DATA WRAPPER nohandler;
CREATE SERVER nohandler_srv FOREIGN DATA WRAPPER nohandler;
CREATE FOREIGN TABLE fnh (id int) SERVER nohandler_srv;

SET ROLE mallory;
CREATE TABLE mallory_t (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO mallory_t SELECT g, g FROM generate_series(1, 50) g;
SELECT guard.protect('mallory_t');
SELECT guard.add_invariant('mallory_t', 'fx_m', row_check => 'v > -100');
UPDATE mallory_t SET v = v + 1 WHERE id <= 10;
RESET ROLE;

-- changes of several kinds, a restore, a warn-mode violation
SELECT guard.label('fixture');
UPDATE prot SET v = v + 1 WHERE id <= 50;
DELETE FROM prot WHERE id > 190;
INSERT INTO prot SELECT g, g, 'new' FROM generate_series(191, 195) g;
UPDATE parted SET v = 5000 WHERE id = 1;
UPDATE $odd_table SET "select" = 'y' WHERE "k ""1""" < 5;
UPDATE prot2 SET w = 'v' WHERE id < 5;
ALTER TABLE prot ADD COLUMN extra int;
CREATE TABLE truncated (id int PRIMARY KEY);
INSERT INTO truncated SELECT generate_series(1, 10);
SELECT guard.protect('truncated');
TRUNCATE truncated;
CREATE TABLE doomed (id int PRIMARY KEY, v text);
INSERT INTO doomed SELECT g, 'd' FROM generate_series(1, 10) g;
SELECT guard.protect('doomed');
DROP TABLE doomed;
CREATE TABLE restored (id int PRIMARY KEY);
INSERT INTO restored SELECT generate_series(1, 10);
SELECT guard.protect('restored');
DELETE FROM restored WHERE id < 5;
SELECT count(*) FROM guard.restore((SELECT max(changeset_id) FROM guard.changes
                                     WHERE relation = 'public.restored'));

-- digest of everything a failing call must leave alone: the rows of every
-- table outside the system schemas (guard's, the trash's, the test's) and
-- the names and kinds of relations and triggers.  Not sequences: nextval
-- is not transactional.
CREATE SCHEMA fuzz;
CREATE FUNCTION fuzz.digest() RETURNS SETOF text LANGUAGE plpgsql AS \$\$
DECLARE
	r record;
	h text;
BEGIN
	FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c
			   JOIN pg_namespace n ON n.oid = c.relnamespace
			  WHERE c.relkind IN ('r', 'm') AND c.relpersistence <> 't'
				AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
			  ORDER BY 1::text
	LOOP
		EXECUTE format('SELECT md5(coalesce(string_agg(t::text, %L ORDER BY t::text), %L)) FROM %s t',
					   E'\\n', '', r.rel) INTO h;
		RETURN NEXT r.rel::text || ' ' || h;
	END LOOP;
	RETURN NEXT 'relations ' || md5(string_agg(format('%s %s %s %s', c.oid, c.relname, c.relkind, n.nspname), ','
											 ORDER BY c.oid))
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
	   AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%';
	RETURN NEXT 'triggers ' || md5(string_agg(format('%s %s %s', tgrelid, tgname, tgenabled), ',' ORDER BY tgrelid, tgname))
	  FROM pg_trigger;
	RETURN NEXT 'event triggers ' || md5(string_agg(format('%s %s %s', evtname, evtevent, evtenabled), ',' ORDER BY evtname))
	  FROM pg_event_trigger;
END
\$\$;
EOF
}

# The SQL of refill number $k (0 to 9: which rows it changes), with schema
# change $ddl of prot2.  VACUUM keeps fuzz.digest() quick: failing calls
# leave dead rows in guard's tables.
sub refill_sql
{
	my ($k, $ddl) = @_;
	return qq{SELECT guard.protect(r::regclass) FROM unnest(ARRAY['public.prot', 'public.prot2',
	'public.truncated', 'public.restored', $odd_lit]) r
 WHERE to_regclass(r) IS NOT NULL
   AND NOT EXISTS (SELECT FROM guard.policy WHERE relid = to_regclass(r));
SELECT guard.protect('public.parted', mode => 'warn')
 WHERE NOT EXISTS (SELECT FROM guard.policy WHERE relid = 'public.parted'::regclass);
SELECT guard.protect('public.mallory_t')
 WHERE NOT EXISTS (SELECT FROM guard.policy WHERE relid = 'public.mallory_t'::regclass);
SELECT guard.drop_invariant(relid, name) FROM guard.invariant WHERE name NOT LIKE 'fx\\_%';
UPDATE public.prot SET v = v + 1 WHERE id % 10 = $k;
INSERT INTO public.prot (id, v, t) SELECT g, g, 'r' FROM generate_series(1, 200) g ON CONFLICT DO NOTHING;
DELETE FROM public.prot WHERE id = 100 + $k;
UPDATE public.parted SET v = v + 1 WHERE id % 10 = $k;
UPDATE $odd_table SET "select" = "select" || 'z' WHERE "k ""1""" = $k;
INSERT INTO public.truncated SELECT generate_series(1, 5) ON CONFLICT DO NOTHING;
TRUNCATE public.truncated;
ALTER TABLE public.prot2 $ddl;
UPDATE public.prot2 SET id = id WHERE id = $k;
CREATE TABLE IF NOT EXISTS public.doomed (id int PRIMARY KEY, v text);
INSERT INTO public.doomed SELECT g, 'd' FROM generate_series(1, 10) g ON CONFLICT DO NOTHING;
SELECT guard.protect('public.doomed')
 WHERE NOT EXISTS (SELECT FROM guard.policy WHERE relid = 'public.doomed'::regclass);
DROP TABLE public.doomed;
SET ROLE mallory;
UPDATE public.mallory_t SET v = v + 1 WHERE id % 10 = $k;
RESET ROLE;
VACUUM guard.changeset, guard.change, guard.snapshot, guard.layout, guard.policy, guard.invariant;
};
}

1;
