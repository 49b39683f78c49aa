-- restore_partial_undo: a restore undone only in part makes active again
-- only the changes whose undo is undone, by table: after restore_change of
-- one of the restore's changes, restore_to of one table and restore_to of
-- a group, the changes of the other tables stay restored, and the change
-- set can be restored again (its changes still restored are left out)
-- without a false conflict.  pa is partitioned, with rows in both
-- partitions, and changed through the parent and through a partition: a
-- restore writes each change back through the table it was recorded on,
-- and the two are told apart.  A DROP TABLE, undone from the trash with
-- no change recorded, stays restored when the restore is restored.  Every
-- dry run changes nothing.
CREATE TABLE pa (id int PRIMARY KEY, v text, w text) PARTITION BY RANGE (id);
CREATE TABLE pa_1 PARTITION OF pa FOR VALUES FROM (0) TO (100);
CREATE TABLE pa_2 PARTITION OF pa FOR VALUES FROM (100) TO (200);
CREATE TABLE pb (id int PRIMARY KEY, v text);
SELECT guard.protect('pa');
SELECT guard.protect('pb');

-- the tables as before change set 1, and nothing recorded
CREATE FUNCTION reset_tables() RETURNS void LANGUAGE sql AS $$
	DELETE FROM pa;
	DELETE FROM pb;
	INSERT INTO pa SELECT g, 'v' || g, 'w' || g FROM generate_series(1, 190, 10) g;
	INSERT INTO pb SELECT g, 'b' || g FROM generate_series(1, 5) g;
	SELECT fresh_ids();
$$;

-- change set 1: pa through its parent (rows of both partitions), then one
-- partition of pa directly, then pb
CREATE FUNCTION changeset_1() RETURNS void LANGUAGE sql AS $$
	UPDATE pa SET v = v || '+';
	UPDATE pa_2 SET w = w || '*';
	UPDATE pb SET v = v || '+';
$$;

-- is pa as change set 1 leaves it in column v, in column w (pa_2's rows)?
CREATE FUNCTION pa_is(v_changed bool, w_changed bool) RETURNS bool LANGUAGE sql AS $$
	SELECT (SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM pa t) =
		   (SELECT md5(string_agg(format('(%s,%s,%s)', g,
										 'v' || g || CASE WHEN v_changed THEN '+' ELSE '' END,
										 'w' || g || CASE WHEN w_changed AND g >= 100 THEN '*' ELSE '' END),
								  '|' ORDER BY g))
			  FROM generate_series(1, 190, 10) g)
$$;
CREATE FUNCTION pb_is(changed bool) RETURNS bool LANGUAGE sql AS $$
	SELECT (SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM pb t) =
		   (SELECT md5(string_agg(format('(%s,%s)', g, 'b' || g || CASE WHEN changed THEN '+' ELSE '' END),
								  '|' ORDER BY g))
			  FROM generate_series(1, 5) g)
$$;

-- which parts of change set 1 are in the tables, exactly
CREATE FUNCTION tables() RETURNS text LANGUAGE sql AS $$
	SELECT 'pa: ' || coalesce((SELECT format('v %s, w %s',
											 CASE WHEN v THEN 'changed' ELSE 'as before' END,
											 CASE WHEN w THEN 'changed' ELSE 'as before' END)
								 FROM (VALUES (false, false), (true, false), (false, true), (true, true)) x(v, w)
								WHERE pa_is(v, w)), 'unexpected')
		|| '; pb: ' || CASE WHEN pb_is(false) THEN 'as before' WHEN pb_is(true) THEN 'changed'
							ELSE 'unexpected' END
$$;

CREATE VIEW states AS
SELECT change_id, changeset_id, relation, kind, state, restored_by
  FROM guard.changes ORDER BY change_id;

-- everything a dry run must leave as it is: the tables, the records
CREATE FUNCTION everything() RETURNS text LANGUAGE sql AS $$
	SELECT (SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM pa t) ||
		   (SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM pb t) ||
		   (SELECT string_agg(s::text, '|') FROM states s) ||
		   (SELECT string_agg(c::text, '|' ORDER BY changeset_id) FROM guard.changesets c)
$$;

-- steps 1 and 2: change set 1, then restore(1), whose change set 2 undoes
-- pb (change 4), pa_2 (change 5) and pa (change 6)
SELECT reset_tables();
SELECT changeset_1();
SELECT clock_timestamp() AS mark \gset
SELECT tables();
SELECT everything() AS s \gset
SELECT relation, kind, rows_restored, conflicts FROM guard.restore(1, dry_run => true) ORDER BY change_id DESC;
SELECT everything() = :'s' AS dry_run_changed_nothing;
SELECT relation, kind, rows_restored, conflicts FROM guard.restore(1) ORDER BY change_id DESC;
SELECT tables();
SELECT * FROM states;

-- restore_change of the restore's change to pa (through the parent): pa's
-- change 1 is active again; pa_2's change 2 stays restored (the restore's
-- change 5 to pa_2 is still in effect), and so does pb's change 3
SELECT everything() AS s \gset
SELECT relation, kind, rows_restored, conflicts FROM guard.restore_change(6, dry_run => true);
SELECT everything() = :'s' AS dry_run_changed_nothing;
SELECT relation, kind, rows_restored, conflicts FROM guard.restore_change(6);
SELECT tables();
SELECT * FROM states;

-- change set 1 restored again: only its change 1, no conflict
SELECT everything() AS s \gset
SELECT relation, kind, rows_restored, conflicts FROM guard.restore(1, dry_run => true) ORDER BY change_id DESC;
SELECT everything() = :'s' AS dry_run_changed_nothing;
SELECT relation, kind, rows_restored, conflicts FROM guard.restore(1) ORDER BY change_id DESC;
SELECT tables();
SELECT * FROM states;

-- the rest of the restore undone: changes 2 and 3 are active again, and
-- restored once more
SELECT relation, kind, rows_restored, conflicts FROM guard.restore(2) ORDER BY change_id DESC;
SELECT tables();
SELECT change_id, state, restored_by FROM states WHERE changeset_id = 1;
SELECT relation, kind, rows_restored, conflicts FROM guard.restore(1) ORDER BY change_id DESC;
SELECT tables();
SELECT change_id, state, restored_by FROM states WHERE changeset_id = 1;

-- the same with restore_to('pa', at): both of the restore's changes to pa
-- and its partitions are undone, pa's changes 1 and 2 are active again,
-- pb's change 3 stays restored
SELECT reset_tables();
SELECT changeset_1();
SELECT clock_timestamp() AS mark \gset
SELECT count(*) FROM guard.restore(1);
SELECT everything() AS s \gset
SELECT relation, kind, rows_restored, conflicts FROM guard.restore_to('pa', :'mark'::timestamptz, dry_run => true)
 ORDER BY change_id DESC;
SELECT everything() = :'s' AS dry_run_changed_nothing;
SELECT relation, kind, rows_restored, conflicts FROM guard.restore_to('pa', :'mark'::timestamptz)
 ORDER BY change_id DESC;
SELECT tables();
SELECT * FROM states;
SELECT everything() AS s \gset
SELECT relation, kind, rows_restored, conflicts FROM guard.restore(1, dry_run => true) ORDER BY change_id DESC;
SELECT everything() = :'s' AS dry_run_changed_nothing;
SELECT relation, kind, rows_restored, conflicts FROM guard.restore(1) ORDER BY change_id DESC;
SELECT tables();
SELECT change_id, state, restored_by FROM states WHERE changeset_id = 1;

-- the same with the group form, restore_to(at, '{pa}')
SELECT reset_tables();
SELECT changeset_1();
SELECT clock_timestamp() AS mark \gset
SELECT count(*) FROM guard.restore(1);
SELECT everything() AS s \gset
SELECT relation, kind, rows_restored, conflicts FROM guard.restore_to(:'mark'::timestamptz, '{pa}', dry_run => true)
 ORDER BY change_id DESC;
SELECT everything() = :'s' AS dry_run_changed_nothing;
SELECT relation, kind, rows_restored, conflicts FROM guard.restore_to(:'mark'::timestamptz, '{pa}')
 ORDER BY change_id DESC;
SELECT tables();
SELECT * FROM states;
SELECT everything() AS s \gset
SELECT relation, kind, rows_restored, conflicts FROM guard.restore(1, dry_run => true) ORDER BY change_id DESC;
SELECT everything() = :'s' AS dry_run_changed_nothing;
SELECT relation, kind, rows_restored, conflicts FROM guard.restore(1) ORDER BY change_id DESC;
SELECT tables();
SELECT change_id, state, restored_by FROM states WHERE changeset_id = 1;

-- a DROP TABLE in the change set: its undo brings the table back from
-- the trash and records no change, so restoring the restore does not
-- drop it again; the DROP stays restored, the other changes are active
-- again, and the change set is restored again without the DROP
CREATE TABLE pc (id int PRIMARY KEY);
SELECT guard.protect('pc');
SELECT reset_tables();
BEGIN;
DROP TABLE pc;
SELECT changeset_1();
COMMIT;
SELECT count(*) FROM guard.restore(1);
SELECT to_regclass('pc') IS NOT NULL AS pc_back, tables();
SELECT relation, kind, rows_restored, conflicts FROM guard.restore(2) ORDER BY change_id DESC;
SELECT to_regclass('pc') IS NOT NULL AS pc_back, tables();
SELECT change_id, relation, kind, state, restored_by FROM states WHERE changeset_id = 1;
SELECT relation, kind, rows_restored, conflicts FROM guard.restore(1) ORDER BY change_id DESC;
SELECT to_regclass('pc') IS NOT NULL AS pc_back, tables();

DROP VIEW states;
DROP TABLE pa, pb, pc;
DROP FUNCTION reset_tables(), changeset_1(), pa_is(bool, bool), pb_is(bool), tables(), everything();
