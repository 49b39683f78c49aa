-- verify_restore_agrees: the drill says OK exactly when the restore is
-- exact, for change sets that move keys: a key changed twice, a swap over
-- three statements, a shift followed by an update of the shifted rows,
-- generated keys; and NOT OK when a later write keeps the restore from
-- being exact.
SELECT fresh_ids();

-- rows_md5(rel): md5 of the rows as text and of their binary send forms
CREATE FUNCTION rows_md5(rel regclass) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r text;
BEGIN
	EXECUTE format('SELECT md5(string_agg(t::text, %L ORDER BY t::text)) || %L ||'
				   ' md5(string_agg(record_send(t), %L::bytea ORDER BY record_send(t))) FROM %s t',
				   '|', ' ', '\x00', rel) INTO r;
	RETURN r;
END
$$;
-- drill_then_restore(cs, rel): the drill's verdict, then whether the
-- restore (skip) gave back the rows as they were in rel_expected
CREATE FUNCTION drill_then_restore(cs bigint, rel regclass) RETURNS TABLE (drill_ok bool, restore_exact bool)
LANGUAGE plpgsql AS $$
BEGIN
	drill_ok := (SELECT bool_and(ok) FROM guard.verify_restore(cs));
	PERFORM * FROM guard.restore(cs, on_conflict => 'skip');
	restore_exact := rows_md5(rel) = rows_md5((rel::text || '_expected')::regclass);
	RETURN NEXT;
END
$$;

CREATE TABLE t (id int PRIMARY KEY, v text, w text);
INSERT INTO t SELECT g, 'v' || g, 'w' || g FROM generate_series(1, 20) g;
SELECT guard.protect('t');
CREATE TABLE t_expected AS SELECT * FROM t;

-- a key changed twice, with an update in between
BEGIN;
SELECT guard.label('twice') AS cs \gset
UPDATE t SET id = 100 WHERE id = 1;
UPDATE t SET v = 'between' WHERE id = 100;
UPDATE t SET id = 101 WHERE id = 100;
COMMIT;
SELECT relation, rows_checked, rows_matching, ok FROM guard.verify_restore(:cs) ORDER BY change_id;
SELECT * FROM drill_then_restore(:cs, 't');

-- a swap of two keys over three statements
BEGIN;
SELECT guard.label('swap') AS cs \gset
UPDATE t SET id = 0 WHERE id = 2;
UPDATE t SET id = 2 WHERE id = 3;
UPDATE t SET id = 3 WHERE id = 0;
COMMIT;
SELECT relation, rows_checked, rows_matching, ok FROM guard.verify_restore(:cs) ORDER BY change_id;
SELECT * FROM drill_then_restore(:cs, 't');

-- a shift, then an update of the shifted rows, and an insert in a freed key
BEGIN;
SELECT guard.label('shift') AS cs \gset
DELETE FROM t WHERE id = 10;
UPDATE t SET id = id - 1 WHERE id BETWEEN 11 AND 15;
UPDATE t SET w = 'after shift' WHERE id BETWEEN 10 AND 12;
INSERT INTO t VALUES (15, 'new', 'new');
COMMIT;
SELECT relation, rows_checked, rows_matching, ok FROM guard.verify_restore(:cs) ORDER BY change_id;
SELECT * FROM drill_then_restore(:cs, 't');

-- the same, with a later write to a column the change set wrote: the
-- drill and the restore both say it is not exact
BEGIN;
SELECT guard.label('shift, then a later write') AS cs \gset
UPDATE t SET id = id + 100 WHERE id BETWEEN 16 AND 18;
UPDATE t SET w = 'moved' WHERE id > 100;
COMMIT;
UPDATE t SET w = 'later' WHERE id = 117;
SELECT relation, rows_checked, rows_matching, ok FROM guard.verify_restore(:cs) ORDER BY change_id;
SELECT * FROM drill_then_restore(:cs, 't');

-- generated keys
CREATE TABLE g (a int, b int, k int GENERATED ALWAYS AS (a * 100 + b) STORED PRIMARY KEY, v text);
INSERT INTO g (a, b, v) SELECT x, 1, 'v' || x FROM generate_series(1, 6) x;
SELECT guard.protect('g');
CREATE TABLE g_expected AS SELECT * FROM g;
BEGIN;
SELECT guard.label('generated') AS cs \gset
UPDATE g SET b = 2 WHERE a <= 3;
UPDATE g SET b = 3, v = 'moved twice' WHERE a = 1;
DELETE FROM g WHERE a = 4;
INSERT INTO g (a, b, v) VALUES (4, 1, 'again');
COMMIT;
SELECT relation, rows_checked, rows_matching, ok FROM guard.verify_restore(:cs) ORDER BY change_id;
SELECT * FROM drill_then_restore(:cs, 'g');

DROP TABLE t, t_expected, g, g_expected;
DROP FUNCTION rows_md5(regclass), drill_then_restore(bigint, regclass);
