-- restore_random_ddl: as restore_random, with schema changes among the
-- writes.  A reproducible random sequence (setseed) of committed steps, each
-- one to three statements: rows inserted, updated on whatever columns the
-- table has then, deleted, truncated; columns added (with and without a
-- default), dropped, renamed, retyped; an index made or dropped; a default
-- set; a CHECK constraint added or dropped; a column commented.  Then
-- the table restored to halfway with restore_to(rel, at) and that undone;
-- every change set undone, newest first, and the table (catalog fingerprint
-- and rows by column name: catalog_fingerprint and table_data from setup)
-- compared with what it was before that change set; then every undo
-- undone, back to the end.  Five seeds on a plain table, five on a
-- partitioned one whose partitions have their own column orders (its
-- partitions' fingerprints compared too).
SELECT fresh_ids();
CREATE TABLE rd (id int PRIMARY KEY, a int, b text, c numeric);
INSERT INTO rd SELECT g, g, 'b' || g, g / 4.0 FROM generate_series(1, 30) g;
SELECT guard.protect('rd');
-- a partitioned table whose partitions have their own column orders, one
-- attached from a table made apart
CREATE TABLE rp (id int PRIMARY KEY, a int, b text, c numeric) PARTITION BY RANGE (id);
CREATE TABLE rp_1 PARTITION OF rp FOR VALUES FROM (0) TO (100);
CREATE TABLE rp_2 (c numeric, gone int, b text, id int NOT NULL, a int);
ALTER TABLE rp_2 DROP COLUMN gone;
ALTER TABLE rp ATTACH PARTITION rp_2 FOR VALUES FROM (100) TO (10000);
INSERT INTO rp SELECT g, g, 'b' || g, g / 4.0 FROM generate_series(1, 30) g;
INSERT INTO rp SELECT g, g, 'b' || g, g / 4.0 FROM generate_series(100, 130) g;
SELECT guard.protect('rp');
-- the table and its partitions: catalog fingerprints, and rows by column name
CREATE FUNCTION rd_state(rel regclass) RETURNS text LANGUAGE sql AS $$
	SELECT md5(string_agg(array_to_string(catalog_fingerprint(t.relid), E'\n'), E'\n--\n'
						  ORDER BY t.relid::text)) || coalesce(table_data(rel), 'no rows')
	  FROM (SELECT rel AS relid UNION SELECT relid FROM pg_partition_tree(rel)) t
$$;
CREATE TABLE rd_history (step int PRIMARY KEY, changeset_id bigint, state text, done timestamptz);
CREATE TABLE rd_undo (step int PRIMARY KEY, restore_changeset bigint);
CREATE TABLE rd_rounds (rel regclass, seed float8, steps_with_changes int, steps_changing_the_state int,
	schema_changes bigint, restore_to_half bool, its_undo bool,
	undone_wrong int, back_to_start bool, redone_wrong int, back_to_end bool);

-- a column of rd other than the key, picked at random (NULL if none)
CREATE FUNCTION rd_column(rel regclass, want text DEFAULT NULL, pick float8 DEFAULT random())
RETURNS name LANGUAGE sql AS $$
	SELECT attname FROM
		(SELECT attname, row_number() OVER (ORDER BY attnum) AS n, count(*) OVER () AS total
		   FROM pg_attribute
		  WHERE attrelid = rel AND attnum > 1 AND NOT attisdropped
			AND (want IS NULL OR format_type(atttypid, atttypmod) = want)) c
	 WHERE n = 1 + floor(pick * total)::int
$$;

CREATE FUNCTION rd_statement(step int, rel regclass) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	r float8 := random();
	col name := rd_column(rel);
	typ text;
BEGIN
	IF col IS NOT NULL THEN
		typ := (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
				 WHERE attrelid = rel AND attname = col);
	END IF;
	-- now and then a kind of its own: TRUNCATE, a CHECK constraint added or
	-- dropped, a comment
	IF random() < 0.12 THEN
		r := random();
		IF r < 0.3 THEN
			EXECUTE format('TRUNCATE %s', rel);
		ELSIF r < 0.6 AND EXISTS (SELECT FROM pg_constraint WHERE conrelid = rel AND contype = 'c') THEN
			EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', rel,
						   (SELECT conname FROM pg_constraint WHERE conrelid = rel AND contype = 'c'
							 ORDER BY conname LIMIT 1));
		ELSIF r < 0.8 THEN
			EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (id > -%s)', rel,
						   'positive_' || step || '_' || floor(random() * 1000)::int, step);
		ELSIF col IS NOT NULL THEN
			EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', rel, col, 'note ' || step);
		END IF;
		RETURN;
	END IF;
	IF r < 0.25 AND col IS NOT NULL THEN
		-- an update of whatever the column holds now
		EXECUTE format('UPDATE %s SET %I = CASE WHEN id %% 3 = 0 THEN NULL ELSE %s END WHERE id %% %s = %s',
					   rel, col,
					   CASE WHEN typ IN ('integer', 'bigint') THEN format('coalesce(%I, 0) + %s', col, step)
							WHEN typ = 'numeric' THEN format('coalesce(%I, 0) * 1.5', col)
							ELSE format('coalesce(%I::text, %L) || %L', col, 'x', '.' || step) END,
					   2 + step % 4, step % 3);
	ELSIF r < 0.35 THEN
		EXECUTE format('INSERT INTO %s (id) SELECT 200 + %s * 3 + g FROM generate_series(1, 2) g'
					   ' ON CONFLICT (id) DO NOTHING', rel, step);
	ELSIF r < 0.42 THEN
		EXECUTE format('DELETE FROM %s WHERE id %% 7 = %s AND id < 200', rel, step % 7);
	ELSIF r < 0.52 THEN
		EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', rel, 'n' || step || '_' || floor(random() * 1000)::int,
					   (ARRAY['int DEFAULT 7', 'text', 'numeric DEFAULT 1.50', 'int'])[1 + step % 4]);
	ELSIF r < 0.60 AND col IS NOT NULL THEN
		EXECUTE format('ALTER TABLE %s DROP COLUMN %I', rel, col);
	ELSIF r < 0.67 AND col IS NOT NULL THEN
		EXECUTE format('ALTER TABLE %s RENAME COLUMN %I TO %I', rel, col, col || '_r' || step);
	ELSIF r < 0.75 AND rd_column(rel, 'integer') IS NOT NULL THEN
		EXECUTE format('ALTER TABLE %s ALTER COLUMN %I TYPE bigint', rel, rd_column(rel, 'integer'));
	ELSIF r < 0.80 AND rd_column(rel, 'numeric') IS NOT NULL THEN
		EXECUTE format('ALTER TABLE %s ALTER COLUMN %I TYPE text', rel, rd_column(rel, 'numeric'));
	ELSIF r < 0.87 AND col IS NOT NULL THEN
		IF EXISTS (SELECT FROM pg_index WHERE indrelid = rel AND NOT indisprimary) THEN
			EXECUTE format('DROP INDEX %s', (SELECT indexrelid::regclass FROM pg_index
											  WHERE indrelid = rel AND NOT indisprimary
											  ORDER BY indexrelid LIMIT 1));
		ELSE
			EXECUTE format('CREATE INDEX %I ON %s (%I)', rel::text || '_i' || step, rel, col);
		END IF;
	ELSIF col IS NOT NULL AND typ IN ('integer', 'bigint', 'text') THEN
		EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT %s', rel, col,
					   CASE WHEN typ = 'text' THEN quote_literal('d' || step) ELSE step::text END);
	END IF;
END $$;

CREATE PROCEDURE rd_round(rel regclass, seed float8, steps int) LANGUAGE plpgsql AS $$
DECLARE
	cs bigint;
	h record;
	u record;
	with_changes int;
	undone_wrong int := 0;
	redone_wrong int := 0;
	at_start bool;
	ddl bigint;
	changing int;
	to_half bool;
	to_half_undone bool;
BEGIN
	TRUNCATE rd_history, rd_undo;
	INSERT INTO rd_history VALUES (0, NULL, rd_state(rel));
	PERFORM setseed(seed);
	COMMIT;
	FOR step IN 1..steps LOOP
		FOR s IN 1..1 + floor(random() * 3)::int LOOP
			PERFORM rd_statement(step, rel);
		END LOOP;
		cs := guard.label('rd step ' || step);
		INSERT INTO rd_history VALUES (step, cs, rd_state(rel), clock_timestamp());
		COMMIT;
	END LOOP;
	-- the table to a point in time halfway, schema and rows, then that undone
	PERFORM guard.restore_to(rel, (SELECT done FROM rd_history WHERE step = steps / 2));
	to_half := rd_state(rel) = (SELECT state FROM rd_history WHERE step = steps / 2);
	cs := guard.label('rd to half');
	COMMIT;
	PERFORM guard.restore(cs);
	to_half_undone := rd_state(rel) = (SELECT state FROM rd_history WHERE step = steps);
	COMMIT;

	SELECT count(*) INTO with_changes FROM rd_history h2
	 WHERE EXISTS (SELECT FROM guard.changes c WHERE c.changeset_id = h2.changeset_id);
	SELECT count(*) FILTER (WHERE h2.state <> p.state) INTO changing
	  FROM rd_history h2 JOIN rd_history p ON p.step = h2.step - 1;
	SELECT count(*) INTO ddl FROM guard.changes c JOIN rd_history h2 USING (changeset_id)
	 WHERE c.kind NOT IN ('INSERT', 'UPDATE', 'DELETE');

	FOR h IN SELECT * FROM rd_history WHERE step > 0 ORDER BY step DESC LOOP
		IF EXISTS (SELECT FROM guard.changes WHERE changeset_id = h.changeset_id) THEN
			PERFORM guard.restore(h.changeset_id);
			INSERT INTO rd_undo VALUES (h.step, guard.label('rd undo ' || h.step));
		END IF;
		IF rd_state(rel) IS DISTINCT FROM (SELECT state FROM rd_history WHERE step = h.step - 1) THEN
			undone_wrong := undone_wrong + 1;
			RAISE NOTICE 'seed %, step %: the undo differs: %', seed, h.step,
				(SELECT string_agg(kind, ', ' ORDER BY change_id) FROM guard.changes
				  WHERE changeset_id = h.changeset_id);
		END IF;
		COMMIT;
	END LOOP;
	at_start := rd_state(rel) = (SELECT state FROM rd_history WHERE step = 0);

	FOR u IN SELECT * FROM rd_undo ORDER BY step LOOP
		IF EXISTS (SELECT FROM guard.changes WHERE changeset_id = u.restore_changeset) THEN
			PERFORM guard.restore(u.restore_changeset);
		END IF;
		IF rd_state(rel) IS DISTINCT FROM (SELECT state FROM rd_history WHERE step = u.step) THEN
			redone_wrong := redone_wrong + 1;
			RAISE NOTICE 'seed %, step %: the redo differs', seed, u.step;
		END IF;
		COMMIT;
	END LOOP;
	INSERT INTO rd_rounds VALUES (rel, seed, with_changes, changing, ddl, to_half, to_half_undone,
		undone_wrong, at_start,
		redone_wrong, rd_state(rel) = (SELECT state FROM rd_history WHERE step = steps));
	COMMIT;
END $$;
CALL rd_round('rd', 0.31, 40);
CALL rd_round('rd', -0.58, 40);
CALL rd_round('rd', 0.77, 40);
CALL rd_round('rd', -0.12, 40);
CALL rd_round('rd', 0.5, 40);
CALL rd_round('rp', 0.31, 40);
CALL rd_round('rp', -0.58, 40);
CALL rd_round('rp', 0.77, 40);
CALL rd_round('rp', -0.12, 40);
CALL rd_round('rp', 0.5, 40);
SELECT * FROM rd_rounds;
-- what the rounds covered
SELECT kind, count(*) FROM guard.changes
 WHERE changeset_id IN (SELECT changeset_id FROM guard.changesets WHERE label LIKE 'rd step %')
 GROUP BY 1 ORDER BY 1;

DROP PROCEDURE rd_round(regclass, float8, int);
SELECT guard.unprotect('rd'), guard.unprotect('rp');
DROP TABLE rd, rp, rd_history, rd_undo, rd_rounds;
DROP FUNCTION rd_statement(int, regclass), rd_column(regclass, text, float8), rd_state(regclass);
