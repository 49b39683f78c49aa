-- layout_reuse: a table's layout is stored once and found again, by a new
-- session and after its relcache entry is rebuilt, instead of stored again
-- each time (guard.layout grew by a row per connection and table, and
-- each new session's first write scanned them all).  Arrays under 127
-- bytes, which the heap stores with a 1-byte header, are the usual case.
CREATE TABLE lr_small (id int PRIMARY KEY, v int);
INSERT INTO lr_small SELECT g, 0 FROM generate_series(1, 3) g;
SELECT guard.protect('lr_small');
CREATE FUNCTION lr_layouts(rel regclass) RETURNS TABLE (layouts bigint, used bigint)
LANGUAGE sql AS $$
	SELECT (SELECT count(*) FROM guard.layout WHERE relid = rel),
		   (SELECT count(DISTINCT layout_id) FROM guard.change WHERE relid = rel)
$$;
UPDATE lr_small SET v = v + 1 WHERE id = 1;
SELECT * FROM lr_layouts('lr_small');
-- a new session
\c
UPDATE lr_small SET v = v + 1 WHERE id = 2;
SELECT * FROM lr_layouts('lr_small');
-- the relcache entry rebuilt in the same session (ANALYZE invalidates it)
ANALYZE lr_small;
UPDATE lr_small SET v = v + 1 WHERE id = 3;
SELECT * FROM lr_layouts('lr_small');
\c
DELETE FROM lr_small WHERE id = 3;
SELECT * FROM lr_layouts('lr_small');

-- a dropped column (a NULL in the names) and a new layout per real change
ALTER TABLE lr_small ADD COLUMN x text;
ALTER TABLE lr_small DROP COLUMN x;
UPDATE lr_small SET v = v + 1 WHERE id = 1;
SELECT * FROM lr_layouts('lr_small');
\c
UPDATE lr_small SET v = v + 1 WHERE id = 2;
SELECT * FROM lr_layouts('lr_small');

-- duplicates of an older layout, stored last (as an older library left
-- them): the current layout is still found, and not stored again
INSERT INTO guard.layout
SELECT nextval('guard.layout_id_seq'), relid, attnames, atttypes, atttypmods, keyatts
  FROM guard.layout, generate_series(1, 3)
 WHERE layout_id = (SELECT min(layout_id) FROM guard.layout
					 WHERE relid = 'lr_small'::regclass);
\c
UPDATE lr_small SET v = v + 1 WHERE id = 1;
SELECT * FROM lr_layouts('lr_small');
SELECT l.attnames FROM guard.change c JOIN guard.layout l USING (layout_id)
 WHERE c.relid = 'lr_small'::regclass ORDER BY c.change_id DESC LIMIT 1;

-- a wide table: arrays over 127 bytes, stored with a 4-byte header
SELECT format('CREATE TABLE lr_wide (id int PRIMARY KEY, %s)',
			  string_agg(format('column_number_%s int DEFAULT 0', g), ', '))
  FROM generate_series(1, 40) g \gexec
INSERT INTO lr_wide (id) VALUES (1), (2);
SELECT guard.protect('lr_wide');
UPDATE lr_wide SET column_number_7 = 7 WHERE id = 1;
\c
UPDATE lr_wide SET column_number_8 = 8 WHERE id = 2;
SELECT * FROM lr_layouts('lr_wide');
SELECT pg_column_size(attnames) > 127 AS long_names FROM guard.layout
 WHERE relid = 'lr_wide'::regclass;

-- the DELETE made in another session, restored under its layout after
-- two more
SELECT rows_restored FROM guard.restore((SELECT changeset_id FROM guard.changes
										  WHERE relation = 'public.lr_small'
											AND kind = 'DELETE'));
SELECT * FROM lr_small ORDER BY id;

DROP FUNCTION lr_layouts(regclass);
SELECT guard.unprotect('lr_small'), guard.unprotect('lr_wide');
DROP TABLE lr_small, lr_wide;
