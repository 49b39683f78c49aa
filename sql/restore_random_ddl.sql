-- restore_random_ddl: as restore_random, with schema changes among the
-- writes.  A reproducible random sequence (setseed) of committed steps, each
-- one to three statements: rows inserted, updated on whatever columns the
-- table has then, deleted; columns added (with and without a default),
-- dropped, renamed, retyped; an index made or dropped; a default set.  Then
-- every change set undone, newest first, and the table (catalog fingerprint
-- and rows by column name: catalog_fingerprint and table_data from setup)
-- compared with what it was before that change set; then every undo
-- undone, back to the end.  Five seeds.
SELECT fresh_ids();
CREATE TABLE rd (id int PRIMARY KEY, a int, b text, c numeric);
INSERT INTO rd SELECT g, g, 'b' || g, g / 4.0 FROM generate_series(1, 30) g;
SELECT guard.protect('rd');
CREATE FUNCTION rd_state() RETURNS text LANGUAGE sql AS $$
	SELECT md5(array_to_string(catalog_fingerprint('rd'), E'\n')) || table_data('rd')
$$;
CREATE TABLE rd_history (step int PRIMARY KEY, changeset_id bigint, state text);
CREATE TABLE rd_undo (step int PRIMARY KEY, restore_changeset bigint);
CREATE TABLE rd_rounds (seed float8, steps_with_changes int, steps_changing_the_state int,
	schema_changes bigint,
	undone_wrong int, back_to_start bool, redone_wrong int, back_to_end bool);

-- a column of rd other than the key, picked at random (NULL if none)
CREATE FUNCTION rd_column(want text DEFAULT NULL) RETURNS name LANGUAGE sql AS $$
	SELECT attname FROM pg_attribute
	 WHERE attrelid = 'rd'::regclass AND attnum > 1 AND NOT attisdropped
	   AND (want IS NULL OR format_type(atttypid, atttypmod) = want)
	 ORDER BY random() LIMIT 1
$$;

CREATE FUNCTION rd_statement(step int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	r float8 := random();
	col name := rd_column();
	typ text;
BEGIN
	IF col IS NOT NULL THEN
		typ := (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
				 WHERE attrelid = 'rd'::regclass AND attname = col);
	END IF;
	IF r < 0.25 AND col IS NOT NULL THEN
		-- an update of whatever the column holds now
		EXECUTE format('UPDATE rd SET %I = CASE WHEN id %% 3 = 0 THEN NULL ELSE %s END WHERE id %% %s = %s',
					   col,
					   CASE WHEN typ IN ('integer', 'bigint') THEN format('coalesce(%I, 0) + %s', col, step)
							WHEN typ = 'numeric' THEN format('coalesce(%I, 0) * 1.5', col)
							ELSE format('coalesce(%I::text, %L) || %L', col, 'x', '.' || step) END,
					   2 + step % 4, step % 3);
	ELSIF r < 0.35 THEN
		INSERT INTO rd (id) SELECT 100 + step * 3 + g FROM generate_series(1, 2) g
		ON CONFLICT (id) DO NOTHING;
	ELSIF r < 0.42 THEN
		DELETE FROM rd WHERE id % 7 = step % 7 AND id < 200;
	ELSIF r < 0.52 THEN
		EXECUTE format('ALTER TABLE rd ADD COLUMN %I %s', 'n' || step || '_' || floor(random() * 1000)::int,
					   (ARRAY['int DEFAULT 7', 'text', 'numeric DEFAULT 1.50', 'int'])[1 + step % 4]);
	ELSIF r < 0.60 AND col IS NOT NULL THEN
		EXECUTE format('ALTER TABLE rd DROP COLUMN %I', col);
	ELSIF r < 0.67 AND col IS NOT NULL THEN
		EXECUTE format('ALTER TABLE rd RENAME COLUMN %I TO %I', col, col || '_r' || step);
	ELSIF r < 0.75 AND rd_column('integer') IS NOT NULL THEN
		EXECUTE format('ALTER TABLE rd ALTER COLUMN %I TYPE bigint', rd_column('integer'));
	ELSIF r < 0.80 AND rd_column('numeric') IS NOT NULL THEN
		EXECUTE format('ALTER TABLE rd ALTER COLUMN %I TYPE text', rd_column('numeric'));
	ELSIF r < 0.87 AND col IS NOT NULL THEN
		IF EXISTS (SELECT FROM pg_index WHERE indrelid = 'rd'::regclass AND NOT indisprimary) THEN
			EXECUTE format('DROP INDEX %s', (SELECT indexrelid::regclass FROM pg_index
											  WHERE indrelid = 'rd'::regclass AND NOT indisprimary
											  ORDER BY indexrelid LIMIT 1));
		ELSE
			EXECUTE format('CREATE INDEX %I ON rd (%I)', 'rd_i' || step, col);
		END IF;
	ELSIF col IS NOT NULL AND typ IN ('integer', 'bigint', 'text') THEN
		EXECUTE format('ALTER TABLE rd ALTER COLUMN %I SET DEFAULT %s', col,
					   CASE WHEN typ = 'text' THEN quote_literal('d' || step) ELSE step::text END);
	ELSE
		UPDATE rd SET id = id WHERE false;
	END IF;
END $$;

CREATE PROCEDURE rd_round(seed float8, steps int) LANGUAGE plpgsql AS $$
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
BEGIN
	TRUNCATE rd_history, rd_undo;
	INSERT INTO rd_history VALUES (0, NULL, rd_state());
	PERFORM setseed(seed);
	COMMIT;
	FOR step IN 1..steps LOOP
		FOR s IN 1..1 + floor(random() * 3)::int LOOP
			PERFORM rd_statement(step);
		END LOOP;
		cs := guard.label('rd step ' || step);
		INSERT INTO rd_history VALUES (step, cs, rd_state());
		COMMIT;
	END LOOP;
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
		IF rd_state() <> (SELECT state FROM rd_history WHERE step = h.step - 1) THEN
			undone_wrong := undone_wrong + 1;
			RAISE NOTICE 'seed %, step %: the undo differs: %', seed, h.step,
				(SELECT string_agg(kind, ', ' ORDER BY change_id) FROM guard.changes
				  WHERE changeset_id = h.changeset_id);
		END IF;
		COMMIT;
	END LOOP;
	at_start := rd_state() = (SELECT state FROM rd_history WHERE step = 0);

	FOR u IN SELECT * FROM rd_undo ORDER BY step LOOP
		IF EXISTS (SELECT FROM guard.changes WHERE changeset_id = u.restore_changeset) THEN
			PERFORM guard.restore(u.restore_changeset);
		END IF;
		IF rd_state() <> (SELECT state FROM rd_history WHERE step = u.step) THEN
			redone_wrong := redone_wrong + 1;
			RAISE NOTICE 'seed %, step %: the redo differs', seed, u.step;
		END IF;
		COMMIT;
	END LOOP;
	INSERT INTO rd_rounds VALUES (seed, with_changes, changing, ddl, undone_wrong, at_start,
		redone_wrong, rd_state() = (SELECT state FROM rd_history WHERE step = steps));
	COMMIT;
END $$;
CALL rd_round(0.31, 40);
CALL rd_round(-0.58, 40);
CALL rd_round(0.77, 40);
CALL rd_round(-0.12, 40);
CALL rd_round(0.5, 40);
SELECT * FROM rd_rounds;
-- what the rounds covered
SELECT kind, count(*) FROM guard.changes
 WHERE changeset_id IN (SELECT changeset_id FROM guard.changesets WHERE label LIKE 'rd step %')
 GROUP BY 1 ORDER BY 1;

DROP PROCEDURE rd_round(float8, int);
SELECT guard.unprotect('rd');
DROP TABLE rd, rd_history, rd_undo, rd_rounds;
DROP FUNCTION rd_statement(int), rd_column(text), rd_state();
