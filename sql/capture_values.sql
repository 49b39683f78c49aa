-- capture_values: captured values are kept bit for bit: NULLs, TOASTed
-- values, arrays, jsonb, numeric scale, bytea, domains, floats, and tables
-- with dropped and generated columns.
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE vals (
	id		int PRIMARY KEY,
	gone	text,
	t		text,
	big		text,
	n		numeric,
	f		float8,
	r		real,
	b		bytea,
	a		int[],
	ta		text[],
	j		jsonb,
	js		json,
	d		posint,
	m		mood,
	ts		timestamptz,
	iv		interval,
	u		uuid,
	c		char(4),
	bo		bool,
	g		int GENERATED ALWAYS AS (id * 2) STORED
);
ALTER TABLE vals DROP COLUMN gone;
INSERT INTO vals (id, t, big, n, f, r, b, a, ta, j, js, d, m, ts, iv, u, c, bo) VALUES
	(1, 'plain', NULL, 1.0, 0.1, 1.5, '\x00ff00', '{1,NULL,3}', '{"a b",NULL,""}',
	 '{"k": [1, 2.50, null], "s": "x"}', '{"k" :  [1,2.50]}', 7, 'ok',
	 '2026-11-25 10:00:00.123456+00', '1 day 2 hours', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'ab', true),
	(2, '', repeat('x', 200000), 1.00, '-0', 'NaN', '', '{}', '{}', '[]', 'null', 1, 'sad',
	 'infinity', '-1 mons', '00000000-0000-0000-0000-000000000000', '', false),
	(3, NULL, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 4000) g),
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
	(4, E'multi\nline\ttab \\ back', 'small', 123456789012345678901234567890.000000001,
	 1e308, -1e-30, decode(repeat('deadbeef', 40000), 'hex'), '{{1,2},{3,4}}', '{"{}"}',
	 '{"deep": {"deeper": [{"x": 1}]}}', '"str"', 2147483647, 'happy',
	 '1999-12-31 23:59:59+00', '0', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'abcd', NULL);
SELECT id, pg_column_size(big) AS big_stored, length(big) AS big_len,
	   pg_column_size(b) AS b_stored FROM vals ORDER BY id;

-- every column's text form before the changes
CREATE TABLE orig AS SELECT * FROM vals;
-- show(x): x as its type's output function prints it (a cast to text may not)
CREATE FUNCTION show(anyelement) RETURNS text LANGUAGE sql AS
$$ SELECT CASE WHEN $1 IS NULL THEN NULL ELSE format('%s', $1) END $$;
CREATE FUNCTION col_texts(v orig) RETURNS TABLE (col text, val text)
LANGUAGE sql AS $$
	VALUES ('id', show(v.id)), ('t', show(v.t)), ('big', show(v.big)), ('n', show(v.n)),
		   ('f', show(v.f)), ('r', show(v.r)), ('b', show(v.b)), ('a', show(v.a)),
		   ('ta', show(v.ta)), ('j', show(v.j)), ('js', show(v.js)), ('d', show(v.d)),
		   ('m', show(v.m)), ('ts', show(v.ts)), ('iv', show(v.iv)), ('u', show(v.u)),
		   ('c', show(v.c)), ('bo', show(v.bo))
$$;
-- check(change): how many captured before-values equal the original, per
-- column, and how many differ
CREATE FUNCTION check_change(change bigint)
RETURNS TABLE (col text, same bigint, differ bigint)
LANGUAGE sql AS $$
	SELECT d.column,
		   count(*) FILTER (WHERE d.before IS NOT DISTINCT FROM o.val),
		   count(*) FILTER (WHERE d.before IS DISTINCT FROM o.val)
	  FROM guard.diff(change) d
	  JOIN orig ON d.key = '(id)=(' || orig.id || ')'
	  CROSS JOIN LATERAL col_texts(orig) o
	 WHERE o.col = d.column
	 GROUP BY 1 ORDER BY 1
$$;
SELECT guard.protect('vals');

-- numeric scale and the sign of zero are changes; an identical value is not
UPDATE vals SET n = 1.00, f = 0 WHERE id IN (1, 2);
SELECT * FROM guard.diff((SELECT max(change_id) FROM guard.changes)) ORDER BY 1, 2;

-- an UPDATE of every column: each before-value captured exactly
UPDATE vals SET t = 'changed', big = 'changed', n = 2, f = 2, r = 2, b = '\x01',
	a = '{9}', ta = '{z}', j = '{}', js = '{}', d = 99, m = 'happy',
	ts = now(), iv = '1 sec', u = gen_random_uuid(), c = 'zz', bo = NOT coalesce(bo, false);
SELECT * FROM check_change((SELECT max(change_id) FROM guard.changes));

-- put the originals back (captured too), then DELETE every row: each value
-- of every row captured, NULLs as NULLs
UPDATE vals SET t = o.t, big = o.big, n = o.n, f = o.f, r = o.r, b = o.b, a = o.a,
	ta = o.ta, j = o.j, js = o.js, d = o.d, m = o.m, ts = o.ts, iv = o.iv, u = o.u,
	c = o.c, bo = o.bo
  FROM orig o WHERE o.id = vals.id;
SELECT count(*) AS identical_rows FROM vals JOIN orig USING (id)
 WHERE (vals.*)::text = (orig.*)::text;
DELETE FROM vals;
SELECT * FROM check_change((SELECT max(change_id) FROM guard.changes));
SELECT count(*) FILTER (WHERE before IS NULL) AS null_befores
  FROM guard.diff((SELECT max(change_id) FROM guard.changes));

-- the generated and the dropped column are never captured
SELECT count(*) FROM guard.diff((SELECT max(change_id) FROM guard.changes))
 WHERE "column" IN ('g', 'gone') OR "column" LIKE '%pg.dropped%';

-- an UPDATE of a small column next to a TOASTed one stores no copy of it
INSERT INTO vals SELECT id, t, big, n, f, r, b, a, ta, j, js, d, m, ts, iv, u, c, bo FROM orig;
UPDATE vals SET t = 'touched' WHERE id = 2;
SELECT c.snapshot_bytes < 100 AS small, d.column, quote_nullable(d.before) AS before
  FROM guard.changes c, guard.diff(c.change_id) d
 WHERE c.change_id = (SELECT max(change_id) FROM guard.changes);
-- and an UPDATE of the TOASTed value keeps the whole old value
UPDATE vals SET big = big || '!' WHERE id IN (2, 3);
SELECT d.key, length(d.before) AS len,
	   md5(d.before) = (SELECT md5(big) FROM orig WHERE orig.id = 2) AS same_as_2,
	   md5(d.before) = (SELECT md5(big) FROM orig WHERE orig.id = 3) AS same_as_3
  FROM guard.diff((SELECT max(change_id) FROM guard.changes)) d ORDER BY 1;

DROP FUNCTION check_change(bigint);
DROP TABLE vals, orig CASCADE;
DROP FUNCTION show(anyelement);
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
DROP DOMAIN posint;
DROP TYPE mood;
