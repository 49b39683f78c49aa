-- restore_random: a reproducible random workload (setseed) over the schemas
-- real applications have, run by a procedure that commits each step (every
-- restore below is run first as a dry run, whose report must be the real
-- one's, refusals included); then
-- guard.as_of() read at the end of every step and compared with the rows
-- recorded then; then the tables restored to halfway with restore_to(at,
-- rels) and that undone;
-- then every change set undone newest first, each restore checked bit for
-- bit against the state recorded before that change set; then every restore
-- undone in turn, back to the final state; then one change set in four
-- restored alone under every later write (skip), the rows it alone wrote
-- checked, and that undone.  Three seeds.  Tables:
-- a citext key with TOASTed text, NULLs, arrays, jsonb, numeric scales,
-- bytea and an updated_at-style trigger; a child with ON DELETE CASCADE and
-- ON UPDATE CASCADE; a partitioned table whose partitions have their own
-- column orders (one attached from a table made apart), rows moved across
-- partitions by key updates; a composite key.  Transactions hold one to four
-- statements, on one table or several, MERGE among them.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS citext;
RESET client_min_messages;
SELECT fresh_ids();
CREATE FUNCTION rr_md5(rel regclass) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r text;
BEGIN
	EXECUTE format('SELECT md5(coalesce(string_agg(encode(record_send(t), %L), %L'
				   ' ORDER BY encode(record_send(t), %L)), %L)) FROM %s t',
				   'hex', '|', 'hex', '', rel) INTO r;
	RETURN r;
END
$$;

CREATE TABLE rr_parent (id citext PRIMARY KEY, n int, note text, tags int[],
	doc jsonb, amount numeric, raw bytea, version int NOT NULL DEFAULT 0);
CREATE FUNCTION rr_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.version := OLD.version + 1;
	RETURN NEW;
END $$;
CREATE TRIGGER rr_bump BEFORE UPDATE ON rr_parent FOR EACH ROW EXECUTE FUNCTION rr_bump();
CREATE TABLE rr_child (id int PRIMARY KEY,
	parent citext NOT NULL REFERENCES rr_parent ON DELETE CASCADE ON UPDATE CASCADE,
	qty int);
CREATE TABLE rr_part (k int PRIMARY KEY, a text, b int) PARTITION BY RANGE (k);
CREATE TABLE rr_part_1 PARTITION OF rr_part FOR VALUES FROM (0) TO (100);
CREATE TABLE rr_part_2 (b int, filler int, a text, k int NOT NULL);
ALTER TABLE rr_part_2 DROP COLUMN filler;
ALTER TABLE rr_part ATTACH PARTITION rr_part_2 FOR VALUES FROM (100) TO (200);
CREATE TABLE rr_pair (x int, y text, v text, PRIMARY KEY (x, y));

-- a value TOASTed out of line (random, so not compressible)
CREATE FUNCTION rr_long(seed int) RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(md5((seed * 1000 + g)::text), '') FROM generate_series(1, 120) g
$$;

INSERT INTO rr_parent (id, n, note, tags, doc, amount, raw)
SELECT 'P' || g, g, CASE WHEN g % 5 = 0 THEN rr_long(g) WHEN g % 7 = 0 THEN NULL ELSE 'note ' || g END,
	   CASE WHEN g % 3 = 0 THEN NULL ELSE ARRAY[g, NULL, g * 2] END,
	   jsonb_build_object('g', g, 'nested', jsonb_build_array(g, 'x')),
	   (g || '.' || repeat('0', g % 4))::numeric, decode(md5(g::text), 'hex')
  FROM generate_series(1, 40) g;
INSERT INTO rr_child SELECT g, 'P' || (1 + g % 40), g FROM generate_series(1, 80) g;
INSERT INTO rr_part SELECT g * 5, 'a' || g, g FROM generate_series(0, 39) g;
INSERT INTO rr_pair SELECT g % 7, 'y' || (g / 7), 'v' || g FROM generate_series(0, 48) g;
SELECT guard.protect('rr_parent'), guard.protect('rr_child'),
	   guard.protect('rr_part'), guard.protect('rr_pair');

CREATE FUNCTION rr_state() RETURNS text LANGUAGE sql AS $$
	SELECT rr_md5('rr_parent') || rr_md5('rr_child') || rr_md5('rr_part') || rr_md5('rr_pair')
$$;
-- every row of the four tables, keyed, as its binary image
CREATE FUNCTION rr_current() RETURNS TABLE (tbl text, key text, img text)
LANGUAGE sql AS $$
	SELECT 'parent', lower(t.id::text), encode(record_send(t), 'hex') FROM rr_parent t
	UNION ALL SELECT 'child', t.id::text, encode(record_send(t), 'hex') FROM rr_child t
	UNION ALL SELECT 'part', t.k::text, encode(record_send(t), 'hex') FROM rr_part t
	UNION ALL SELECT 'pair', t.x || '/' || t.y, encode(record_send(t), 'hex') FROM rr_pair t
$$;
CREATE TABLE rr_rows (step int, tbl text, key text, img text, PRIMARY KEY (step, tbl, key));
-- the same, as guard.as_of() gives the four tables at a time
CREATE FUNCTION rr_as_of(at timestamptz) RETURNS TABLE (tbl text, key text, img text)
LANGUAGE sql AS $$
	SELECT 'parent', lower(t.id::text), encode(record_send(t), 'hex') FROM guard.as_of(NULL::rr_parent, at) t
	UNION ALL SELECT 'child', t.id::text, encode(record_send(t), 'hex') FROM guard.as_of(NULL::rr_child, at) t
	UNION ALL SELECT 'part', t.k::text, encode(record_send(t), 'hex') FROM guard.as_of(NULL::rr_part, at) t
	UNION ALL SELECT 'pair', t.x || '/' || t.y, encode(record_send(t), 'hex') FROM guard.as_of(NULL::rr_pair, at) t
$$;
CREATE TABLE rr_history (step int PRIMARY KEY, changeset_id bigint, state text, done timestamptz);

-- one random statement (random() only once or twice per statement, never
-- per row: the order in which a statement meets rows may vary)
CREATE FUNCTION rr_statement(step int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	r float8 := random();
	kk int := 1 + floor(random() * 60)::int;
BEGIN
	IF r < 0.15 THEN
		UPDATE rr_parent SET n = n + 1, amount = amount * 1.10,
			   note = CASE (n + step) % 10 WHEN 0 THEN rr_long(step) WHEN 1 THEN rr_long(step + n)
						   WHEN 2 THEN NULL ELSE note END
		 WHERE n % 6 = kk % 6;
	ELSIF r < 0.25 THEN
		UPDATE rr_parent SET tags = tags || kk, doc = doc || jsonb_build_object('s', step)
		 WHERE id = ('p' || kk)::citext;		-- citext: another case finds the row
	ELSIF r < 0.32 THEN
		INSERT INTO rr_parent (id, n, note, raw) VALUES ('P' || (100 + step) || 'x', step,
			CASE WHEN random() < 0.5 THEN rr_long(step + 7) END, '\x00ff'::bytea)
		ON CONFLICT (id) DO NOTHING;
	ELSIF r < 0.38 THEN
		DELETE FROM rr_parent WHERE id = ('P' || kk)::citext;	-- cascades to rr_child
	ELSIF r < 0.43 THEN
		UPDATE rr_parent SET id = id || '-r' || step WHERE id = ('P' || kk)::citext;	-- cascades
	ELSIF r < 0.53 THEN
		UPDATE rr_child SET qty = qty + 1 WHERE id % 5 = kk % 5;
	ELSIF r < 0.58 THEN
		INSERT INTO rr_child
		SELECT 1000 + step * 10 + row_number() OVER (ORDER BY id), id, step FROM
			(SELECT id FROM rr_parent ORDER BY id LIMIT 3 OFFSET kk % 10) p
		ON CONFLICT (id) DO NOTHING;
	ELSIF r < 0.70 THEN
		-- key updates move rows between partitions, both ways
		UPDATE rr_part SET k = CASE WHEN k < 100 THEN k + 100 ELSE k - 100 END, b = b + 1
		 WHERE rr_part.k % 20 = (kk % 4) * 5
		   AND NOT EXISTS (SELECT FROM rr_part q WHERE q.k = CASE WHEN rr_part.k < 100
						   THEN rr_part.k + 100 ELSE rr_part.k - 100 END);
	ELSIF r < 0.78 THEN
		UPDATE rr_part SET a = a || '.' || step WHERE k % 7 = k % 2;
	ELSIF r < 0.84 THEN
		DELETE FROM rr_part WHERE k = (k % 40) * 5 AND k % 9 = step % 9;
	ELSIF r < 0.88 THEN
		INSERT INTO rr_part VALUES (1 + step * 3 % 199, 'new ' || step, step) ON CONFLICT (k) DO NOTHING;
	ELSIF r < 0.91 THEN
		-- one statement that updates, deletes and inserts
		MERGE INTO rr_child c
		USING (SELECT g AS id, (SELECT id FROM rr_parent ORDER BY id LIMIT 1 OFFSET g % 5) AS parent
				 FROM generate_series(kk, kk + 12) g) s ON c.id = s.id
		WHEN MATCHED AND c.qty % 3 = 0 THEN DELETE
		WHEN MATCHED THEN UPDATE SET qty = c.qty + 100
		WHEN NOT MATCHED AND s.parent IS NOT NULL THEN INSERT VALUES (s.id, s.parent, step);
	ELSIF r < 0.95 THEN
		UPDATE rr_pair SET v = v || step, y = CASE WHEN (length(v) + step) % 3 = 0 THEN y || 'm' ELSE y END
		 WHERE x = kk % 7;
	ELSE
		DELETE FROM rr_pair WHERE x = kk % 7 AND y LIKE '%' || (step % 3);
	END IF;
END $$;

-- One round: from the current state, "steps" transactions of one to four
-- statements, each state recorded; the group restored to halfway with
-- restore_to(at, rels) and that restore undone; then every change set undone, newest
-- first, one transaction each, each restore checked bit for bit against the
-- state recorded before its change set; then every restore undone, the last
-- one first, each step's state checked again, back to the round's end.
CREATE TABLE rr_rounds (seed float8, steps_with_changes int,
	steps_changing_the_state int, as_of_wrong int, restore_to_half bool, its_undo bool,
	undone_wrong int, back_to_start bool,
	redone_wrong int, back_to_end bool, dry_runs_differing int,
	middle_restored int, middle_rows_checked bigint, middle_rows_back bigint, middle_refused int, middle_wrong int,
	middle_undo_wrong int);
CREATE TABLE rr_expect (tbl text, key text, img text, back bool, PRIMARY KEY (tbl, key));
CREATE TABLE rr_middle_wrong (seed float8, step int);
CREATE PROCEDURE rr_round(seed float8, steps int) LANGUAGE plpgsql AS $$
DECLARE
	cs bigint;
	h record;
	u record;
	before text;
	with_changes int;
	changing int;
	undone_wrong int := 0;
	redone_wrong int := 0;
	at_start bool;
	to_half bool;
	to_half_undone bool;
	at_end bool;
	middle_checked int := 0;
	middle_rows bigint := 0;
	middle_back bigint := 0;
	as_of_wrong int := 0;
	dry_wrong int := 0;
	dry text[];
	real text[];
	middle_refused int := 0;
	middle_wrong int := 0;
	middle_undo_wrong int := 0;
BEGIN
	TRUNCATE rr_history, rr_undo, rr_rows;
	INSERT INTO rr_history VALUES (0, NULL, rr_state());
	INSERT INTO rr_rows SELECT 0, * FROM rr_current();
	PERFORM setseed(seed);
	COMMIT;
	FOR step IN 1..steps LOOP
		FOR s IN 1..1 + floor(random() * 4)::int LOOP
			PERFORM rr_statement(step);
		END LOOP;
		cs := guard.label('rr step ' || step);
		INSERT INTO rr_history VALUES (step, cs, rr_state(), clock_timestamp());
		INSERT INTO rr_rows SELECT step, * FROM rr_current();
		COMMIT;
	END LOOP;

	-- the past as guard.as_of() reads it, at the end of every step
	FOR h IN SELECT * FROM rr_history WHERE step > 0 ORDER BY step LOOP
		IF EXISTS ((SELECT tbl, key, img FROM rr_rows WHERE step = h.step
					EXCEPT SELECT * FROM rr_as_of(h.done))
				   UNION ALL
				   (SELECT * FROM rr_as_of(h.done)
					EXCEPT SELECT tbl, key, img FROM rr_rows WHERE step = h.step)) THEN
			as_of_wrong := as_of_wrong + 1;
		END IF;
	END LOOP;

	-- the group of tables to a point in time halfway, in one call, then
	-- that restore undone
	SELECT array_agg(format('%s %s %s %s %s', r.change_id, r.kind, r.rows_restored,
							r.rows_skipped, r.conflicts) ORDER BY r.change_id)
	  INTO dry FROM guard.restore_to((SELECT done FROM rr_history WHERE step = steps / 2),
									 ARRAY['rr_parent', 'rr_child', 'rr_part', 'rr_pair']::regclass[],
									 dry_run => true) r;
	SELECT array_agg(format('%s %s %s %s %s', r.change_id, r.kind, r.rows_restored,
							r.rows_skipped, r.conflicts) ORDER BY r.change_id)
	  INTO real FROM guard.restore_to((SELECT done FROM rr_history WHERE step = steps / 2),
									  ARRAY['rr_parent', 'rr_child', 'rr_part', 'rr_pair']::regclass[]) r;
	IF dry IS DISTINCT FROM real THEN
		dry_wrong := dry_wrong + 1;
		RAISE NOTICE 'seed %, restore_to: dry run % real %', seed, dry, real;
	END IF;
	to_half := rr_state() = (SELECT state FROM rr_history WHERE step = steps / 2);
	cs := guard.label('rr to half');
	COMMIT;
	PERFORM guard.restore(cs);
	to_half_undone := rr_state() = (SELECT state FROM rr_history WHERE step = steps);
	COMMIT;

	SELECT count(*) FILTER (WHERE EXISTS (SELECT FROM guard.changes c
										  WHERE c.changeset_id = h2.changeset_id)),
		   count(*) FILTER (WHERE h2.state <> p.state)
	  INTO with_changes, changing
	  FROM rr_history h2 JOIN rr_history p ON p.step = h2.step - 1;

	FOR h IN SELECT * FROM rr_history WHERE step > 0 ORDER BY step DESC LOOP
		SELECT state INTO before FROM rr_history WHERE step = h.step - 1;
		IF EXISTS (SELECT FROM guard.changes WHERE changeset_id = h.changeset_id) THEN
			SELECT array_agg(format('%s %s %s %s %s', r.change_id, r.kind, r.rows_restored,
									r.rows_skipped, r.conflicts) ORDER BY r.change_id)
			  INTO dry FROM guard.restore(h.changeset_id, dry_run => true) r;
			SELECT array_agg(format('%s %s %s %s %s', r.change_id, r.kind, r.rows_restored,
									r.rows_skipped, r.conflicts) ORDER BY r.change_id)
			  INTO real FROM guard.restore(h.changeset_id) r;
			IF dry IS DISTINCT FROM real THEN
				dry_wrong := dry_wrong + 1;
				RAISE NOTICE 'seed %, step %: dry run % real %', seed, h.step, dry, real;
			END IF;
			INSERT INTO rr_undo VALUES (h.step, guard.label('rr undo ' || h.step));
		END IF;
		IF rr_state() <> before THEN
			undone_wrong := undone_wrong + 1;
		END IF;
		COMMIT;
	END LOOP;
	at_start := rr_state() = (SELECT state FROM rr_history WHERE step = 0);

	FOR u IN SELECT * FROM rr_undo ORDER BY step LOOP
		PERFORM guard.restore(u.restore_changeset);
		IF rr_state() <> (SELECT state FROM rr_history WHERE step = u.step) THEN
			redone_wrong := redone_wrong + 1;
		END IF;
		COMMIT;
	END LOOP;
	at_end := rr_state() = (SELECT state FROM rr_history WHERE step = steps);

	-- one change set out of four restored alone, with every later write in
	-- place and on_conflict => 'skip', then that restore undone, back to the
	-- end state.  Checked, by key: a row the change set did not touch keeps
	-- its present value; a row it updated in place, or inserted, and that
	-- nothing changed since, is as it was before the change set.  Rows
	-- changed since, and rows it deleted or moved to another key, are left
	-- out: what comes back of those depends on which of their columns were
	-- written since (restore_conflicts and restore_partial_undo test them).
	FOR h IN SELECT * FROM rr_history WHERE step > 0 AND step % 4 = 0
				AND EXISTS (SELECT FROM guard.changes c WHERE c.changeset_id = rr_history.changeset_id)
			 ORDER BY step LOOP
		TRUNCATE rr_expect;
		INSERT INTO rr_expect
		SELECT k.tbl, k.key,
			   CASE WHEN b.img IS NOT DISTINCT FROM a.img THEN f.img ELSE b.img END,
			   b.img IS DISTINCT FROM a.img
		  FROM (SELECT DISTINCT r.tbl, r.key FROM rr_rows r
				 WHERE r.step IN (h.step - 1, h.step, steps)) k
		  LEFT JOIN rr_rows b ON b.step = h.step - 1 AND b.tbl = k.tbl AND b.key = k.key
		  LEFT JOIN rr_rows a ON a.step = h.step AND a.tbl = k.tbl AND a.key = k.key
		  LEFT JOIN rr_rows f ON f.step = steps AND f.tbl = k.tbl AND f.key = k.key
		 WHERE b.img IS NOT DISTINCT FROM a.img
			OR (a.img IS NOT NULL AND f.img IS NOT DISTINCT FROM a.img);
		cs := NULL;
		-- the dry run first: it must report what the restore then does, or
		-- refuse as it does (a later row referring to one the restore would
		-- take away: 23503)
		BEGIN
			SELECT array_agg(format('%s %s %s %s %s', r.change_id, r.kind, r.rows_restored,
									r.rows_skipped, r.conflicts) ORDER BY r.change_id)
			  INTO dry FROM guard.restore(h.changeset_id, dry_run => true, on_conflict => 'skip') r;
		EXCEPTION WHEN OTHERS THEN
			dry := ARRAY['refused ' || SQLSTATE];
		END;
		BEGIN
			SELECT array_agg(format('%s %s %s %s %s', r.change_id, r.kind, r.rows_restored,
									r.rows_skipped, r.conflicts) ORDER BY r.change_id)
			  INTO real FROM guard.restore(h.changeset_id, on_conflict => 'skip') r;
			cs := guard.label('rr middle ' || h.step);
		EXCEPTION WHEN OTHERS THEN
			real := ARRAY['refused ' || SQLSTATE];
		END;
		IF dry IS DISTINCT FROM real THEN
			dry_wrong := dry_wrong + 1;
			RAISE NOTICE 'seed %, step %: dry run % real %', seed, h.step, dry, real;
		END IF;
		IF real = ARRAY['refused 23503'] THEN
			middle_refused := middle_refused + 1;
		END IF;
		IF cs IS NOT NULL THEN
			middle_checked := middle_checked + 1;
			middle_rows := middle_rows + (SELECT count(*) FROM rr_expect);
			middle_back := middle_back + (SELECT count(*) FROM rr_expect WHERE back);
			IF EXISTS (SELECT FROM rr_expect e LEFT JOIN rr_current() c USING (tbl, key)
						WHERE e.img IS DISTINCT FROM c.img) THEN
				middle_wrong := middle_wrong + 1;
				INSERT INTO rr_middle_wrong VALUES (seed, h.step);
			END IF;
		END IF;
		COMMIT;
		IF cs IS NOT NULL AND EXISTS (SELECT FROM guard.changes c WHERE c.changeset_id = cs) THEN
			PERFORM guard.restore(cs);
			IF rr_state() <> (SELECT state FROM rr_history WHERE step = steps) THEN
				middle_undo_wrong := middle_undo_wrong + 1;
			END IF;
			COMMIT;
		END IF;
	END LOOP;

	INSERT INTO rr_rounds VALUES (seed, with_changes, changing, as_of_wrong, to_half, to_half_undone,
		undone_wrong, at_start, redone_wrong, at_end,
		dry_wrong, middle_checked, middle_rows, middle_back, middle_refused, middle_wrong, middle_undo_wrong);
	COMMIT;
END $$;
CREATE TABLE rr_undo (step int PRIMARY KEY, restore_changeset bigint);
CALL rr_round(0.42, 40);
CALL rr_round(0.17, 40);
CALL rr_round(-0.73, 40);
SELECT * FROM rr_rounds;
SELECT * FROM rr_middle_wrong;
-- what the rounds covered
SELECT relation, kind, count(*) FROM guard.changes
 WHERE changeset_id IN (SELECT changeset_id FROM guard.changesets WHERE label LIKE 'rr step %')
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) > 0 AS toasted_notes FROM rr_parent WHERE length(note) > 2000;

DROP PROCEDURE rr_round(float8, int);
SELECT guard.unprotect('rr_child'), guard.unprotect('rr_parent'),
	   guard.unprotect('rr_part'), guard.unprotect('rr_pair');
DROP TABLE rr_child, rr_parent, rr_part, rr_pair, rr_history, rr_undo, rr_rounds,
	rr_rows, rr_middle_wrong, rr_expect;
DROP FUNCTION rr_statement(int), rr_state(), rr_md5(regclass), rr_long(int), rr_bump(),
	rr_current(), rr_as_of(timestamptz);
