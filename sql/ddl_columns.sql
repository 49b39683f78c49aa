-- ddl_columns: ADD COLUMN, DROP COLUMN, ALTER COLUMN TYPE and RENAME on a
-- protected table are changes, and restore undoes each exactly.
SELECT fresh_ids();
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL DEFAULT 'unnamed',
	price numeric(10,2) CHECK (price >= 0), tags text[], note text COLLATE "C");
INSERT INTO items SELECT g, 'item ' || g, g * 1.25, ARRAY['t' || g], CASE WHEN g % 2 = 0 THEN 'n' || g END
  FROM generate_series(1, 8) g;
CREATE INDEX items_price ON items (price);
SELECT guard.protect('items');
-- shape(): the table's columns as the catalogs say; data(): its rows
CREATE FUNCTION shape() RETURNS TABLE (col name, type text, not_null bool, def text, coll name)
LANGUAGE sql AS $$
	SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
		   pg_get_expr(d.adbin, d.adrelid), c.collname
	  FROM pg_attribute a
	  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
	  LEFT JOIN pg_collation c ON c.oid = a.attcollation AND a.attcollation <> 100
	 WHERE a.attrelid = 'items'::regclass AND a.attnum > 0 AND NOT a.attisdropped
	 ORDER BY a.attname
$$;
CREATE FUNCTION data() RETURNS text LANGUAGE sql AS
$$ SELECT md5(string_agg(format('%s|%s|%s|%s|%s', id, name, price, tags, note), ',' ORDER BY id)) FROM items $$;
SELECT data() AS data0 \gset
CREATE TABLE shape0 AS SELECT * FROM shape();
CREATE FUNCTION shape_differences() RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*) FROM ((SELECT * FROM shape() EXCEPT SELECT * FROM shape0)
						  UNION ALL (SELECT * FROM shape0 EXCEPT SELECT * FROM shape())) d
$$;

-- ADD COLUMN with its backfill: undo, newest first, drops it
BEGIN;
SELECT guard.label('add rating') AS cs \gset
ALTER TABLE items ADD COLUMN rating int;
UPDATE items SET rating = 5 WHERE id <= 2;
COMMIT;
SELECT kind, rows, detail FROM guard.changes ORDER BY change_id;
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore(:cs);
SELECT shape_differences(), data() = :'data0' AS same_data;
-- an ADD COLUMN undone alone drops the values written since, and counts them
ALTER TABLE items ADD COLUMN rating int DEFAULT 3;
SELECT max(changeset_id) AS cs FROM guard.changesets \gset
UPDATE items SET rating = 5 WHERE id <= 2;
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore(:cs);
SELECT shape_differences(), data() = :'data0' AS same_data;

-- DROP COLUMN: undo re-adds it with type, collation, default, NOT NULL and every value
ALTER TABLE items DROP COLUMN name, DROP COLUMN note;
SELECT kind, rows, detail FROM guard.changes WHERE kind = 'DROP COLUMN' ORDER BY change_id;
SELECT kind, rows_restored FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets)) ORDER BY change_id;
SELECT shape_differences(), data() = :'data0' AS same_data;
-- a restored DROP COLUMN keeps its NOT NULL and default
SELECT expect_error($$INSERT INTO items (id, name) VALUES (100, NULL)$$);
INSERT INTO items (id) VALUES (100);
SELECT name FROM items WHERE id = 100;
DELETE FROM items WHERE id = 100;

-- ALTER COLUMN TYPE: undo converts back and writes the saved values
ALTER TABLE items ALTER COLUMN price TYPE int USING round(price)::int;
SELECT price FROM items ORDER BY id LIMIT 3;
SELECT kind, rows_restored FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
SELECT price FROM items ORDER BY id LIMIT 3;
SELECT shape_differences(), data() = :'data0' AS same_data;
SELECT indexrelid::regclass FROM pg_index WHERE indrelid = 'items'::regclass ORDER BY 1;

-- RENAME of a column and of the table
BEGIN;
SELECT guard.label('renames') AS cs \gset
ALTER TABLE items RENAME COLUMN tags TO labels;
ALTER TABLE items RENAME TO products;
COMMIT;
SELECT kind, detail FROM guard.changes WHERE kind = 'RENAME' ORDER BY change_id;
SELECT kind, rows_restored FROM guard.restore(:cs);
SELECT shape_differences(), data() = :'data0' AS same_data;

-- a DROP COLUMN undo is a change set too: restoring it drops the column again
ALTER TABLE items DROP COLUMN tags;
SELECT kind FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
SELECT count(*) FROM shape() WHERE col = 'tags';
SELECT kind FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
SELECT count(*) FROM shape() WHERE col = 'tags';

-- DDL guard cannot undo is recorded with its statement; restore refuses it,
-- naming the subcommand
ALTER TABLE items ALTER COLUMN price SET (n_distinct = 10);
SELECT kind, statement FROM guard.changes ORDER BY change_id DESC LIMIT 1;
SELECT expect_error('SELECT * FROM guard.restore(' || (SELECT max(changeset_id) FROM guard.changesets) || ')');

-- a protected table with capture => 'dml' records no schema change
CREATE TABLE dmlonly (id int PRIMARY KEY);
SELECT guard.protect('dmlonly', capture => 'dml');
ALTER TABLE dmlonly ADD COLUMN x int;
SELECT count(*) FROM guard.changes WHERE relation = 'public.dmlonly';

SELECT guard.unprotect('items');
SELECT guard.unprotect('dmlonly');
DROP TABLE items, shape0, dmlonly;
DROP FUNCTION shape_differences(), shape(), data();
