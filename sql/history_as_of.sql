-- history_as_of: guard.as_of(NULL::tbl, at) gives the rows of a table as
-- they were, bit for bit (the same md5 as the table had then), computed
-- from the rows now and the captures since; it refuses what it cannot
-- know.
SELECT fresh_ids();
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN percent AS numeric CHECK (VALUE BETWEEN 0 AND 100);
CREATE TABLE things (
	id			int PRIMARY KEY,
	n			numeric,
	s			text,
	big			text,
	j			jsonb,
	a			int[],
	f			float8,
	b			bytea,
	ts			timestamptz,
	iv			interval,
	m			mood,
	p			percent,
	pt			point,
	twice		int GENERATED ALWAYS AS (id * 2) STORED
);
INSERT INTO things (id, n, s, big, j, a, f, b, ts, iv, m, p, pt)
SELECT g, g / 3.0, 's' || g, repeat(md5(g::text), 300),
	   jsonb_build_object('k', g, 'l', ARRAY[g, NULL]), ARRAY[g, g + 1, NULL],
	   CASE g % 4 WHEN 0 THEN 'NaN' WHEN 1 THEN '-0' ELSE g * 1.5 END,
	   decode(md5(g::text), 'hex'), timestamptz '2020-01-01 00:00+00' + g * interval '1 day',
	   g * interval '1 minute', (ARRAY['sad', 'ok', 'happy'])[g % 3 + 1]::mood, g % 100,
	   point(g, -g)
  FROM generate_series(1, 60) g;
SELECT guard.protect('things');

-- the rows as they are at three moments, and the moments
SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS m0, clock_timestamp() AS t0
  FROM things t \gset
UPDATE things SET n = 1.00, s = NULL, big = 'short' WHERE id <= 10;
UPDATE things SET n = 1.0 WHERE id <= 5;			-- same value, another scale
DELETE FROM things WHERE id BETWEEN 20 AND 25;
INSERT INTO things (id, n, s) VALUES (100, 1, 'new'), (101, 2, NULL);
UPDATE things SET id = id + 1000 WHERE id IN (30, 31);	-- a key changes
UPDATE things SET id = 30 WHERE id = 1031;			-- and another row takes it
SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS m1, clock_timestamp() AS t1
  FROM things t \gset
UPDATE things SET j = j || '{"x": true}', big = repeat('y', 10000) WHERE id BETWEEN 40 AND 50;
TRUNCATE things;
INSERT INTO things (id, s) VALUES (7, 'after truncate');
SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS m2, clock_timestamp() AS t2
  FROM things t \gset
UPDATE things SET s = 'now' WHERE id = 7;

SELECT md5(string_agg(t::text, ',' ORDER BY id)) = :'m0' AS exact_t0,
	   count(*) AS rows_t0
  FROM guard.as_of(NULL::things, :'t0') t;
SELECT md5(string_agg(t::text, ',' ORDER BY id)) = :'m1' AS exact_t1,
	   count(*) AS rows_t1
  FROM guard.as_of(NULL::things, :'t1') t;
SELECT md5(string_agg(t::text, ',' ORDER BY id)) = :'m2' AS exact_t2,
	   count(*) AS rows_t2
  FROM guard.as_of(NULL::things, :'t2') t;
-- bit for bit: numeric scale, -0, NaN, NULL array elements
SELECT id, n, f, a FROM guard.as_of(NULL::things, :'t0') WHERE id IN (1, 4, 5) ORDER BY id;
-- nothing was written
SELECT count(*) AS rows_now, max(s) AS s FROM things;

-- schema changes: a column added since is NULL (it did not exist); one
-- dropped since is back in the rows as they were once restore re-adds it
CREATE TABLE accounts (id int PRIMARY KEY, email text, balance int);
INSERT INTO accounts SELECT g, 'u' || g || '@example.com', g * 10 FROM generate_series(1, 5) g;
SELECT guard.protect('accounts');
SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS a0, clock_timestamp() AS ta
  FROM accounts t \gset
ALTER TABLE accounts ADD COLUMN display_name text DEFAULT 'x';
UPDATE accounts SET email = upper(email) WHERE id <= 2;
ALTER TABLE accounts DROP COLUMN email;
SELECT changeset_id AS dropped FROM guard.changes WHERE kind = 'DROP COLUMN' \gset
SELECT kind, rows_restored FROM guard.restore(:dropped);
SELECT md5(string_agg((id, email, balance)::text, ',' ORDER BY id)) = :'a0' AS exact,
	   bool_and(display_name IS NULL) AS added_column_null
  FROM guard.as_of(NULL::accounts, :'ta') t;
SELECT * FROM guard.as_of(NULL::accounts, :'ta') ORDER BY id;

-- a partitioned table, read whole (a cross-partition UPDATE included)
CREATE TABLE events (id int, region text, payload text, PRIMARY KEY (id, region))
	PARTITION BY LIST (region);
CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');
INSERT INTO events VALUES (1, 'eu', 'a'), (2, 'us', 'b'), (3, 'eu', 'c');
SELECT guard.protect('events');
SELECT md5(string_agg(e::text, ',' ORDER BY id, region)) AS e0, clock_timestamp() AS te
  FROM events e \gset
UPDATE events SET region = 'us' WHERE id = 3;
UPDATE events_eu SET payload = 'direct' WHERE id = 1;
DELETE FROM events_us WHERE id = 2;
SELECT md5(string_agg(e::text, ',' ORDER BY id, region)) = :'e0' AS exact
  FROM guard.as_of(NULL::events, :'te') e;

-- bad input
SELECT expect_error($$SELECT * FROM guard.as_of(NULL::no_such_table, now())$$);
SELECT expect_error($$SELECT * FROM guard.as_of(NULL::int, now())$$);
SELECT expect_error($$SELECT * FROM guard.as_of(NULL::things, NULL)$$);
SELECT expect_error($$SELECT * FROM guard.as_of(NULL::things, now() + interval '1 day')$$);
SELECT expect_error($$SELECT * FROM guard.as_of(NULL::events_eu, now())$$);
CREATE TABLE plain (id int PRIMARY KEY);
SELECT expect_error($$SELECT * FROM guard.as_of(NULL::plain, now())$$);
SELECT guard.protect('plain', capture => 'ddl');
SELECT expect_error($$SELECT * FROM guard.as_of(NULL::plain, now())$$);
SELECT guard.protect('plain', min_rows => 10);
SELECT expect_error($$SELECT * FROM guard.as_of(NULL::plain, now())$$);
-- protected only after that time: guard cannot know the writes before
SELECT guard.unprotect('plain');
SELECT clock_timestamp() AS before_protect \gset
SELECT guard.protect('plain');
SELECT expect_error(format('SELECT * FROM guard.as_of(NULL::plain, %L)', :'before_protect'));

-- a column whose type changed since: the old rows do not fit
ALTER TABLE accounts ALTER COLUMN balance TYPE bigint;
SELECT expect_error(format('SELECT * FROM guard.as_of(NULL::accounts, %L)', :'ta'));
SELECT count(*) FROM guard.as_of(NULL::accounts, clock_timestamp());

-- a superuser bypassed capture: the writes since may be missing
SELECT clock_timestamp() AS tb \gset
DROP TRIGGER guard_capture_upd ON plain;
SELECT expect_error(format('SELECT * FROM guard.as_of(NULL::plain, %L)', :'tb'));

-- captures purged: the rows that far back are not known any more
SELECT expired_changes > 0 AS expired FROM guard.purge('0 seconds');
SELECT expect_error(format('SELECT * FROM guard.as_of(NULL::events, %L)', :'te'));
-- from now on it works again
SELECT count(*) FROM guard.as_of(NULL::events, clock_timestamp());

DROP TABLE things, accounts, events, plain;
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
DROP TYPE mood;
DROP DOMAIN percent;
