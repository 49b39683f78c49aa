-- restore_to_group: restore_to(at, rels) undoes, newest first across a group
-- of tables, every change recorded after a point in time, in one restore
-- change set, with the foreign keys between the tables checked at the end:
-- a parent and a child with ON DELETE / ON UPDATE CASCADE, a partitioned
-- table, a migration transaction touching all of them and a table outside
-- the group, interleaved later changes, a user trigger (updated_at).  The
-- dry run reports what the real run does and changes nothing; rels NULL is
-- every protected table; the overloads resolve as they should.
SELECT fresh_ids();
CREATE FUNCTION group_md5(rel regclass) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r text;
BEGIN
	EXECUTE format('SELECT md5(coalesce(string_agg(t::text, %L ORDER BY t::text), %L)) FROM %s t',
				   '|', '', rel) INTO r;
	RETURN r;
END
$$;
CREATE TABLE acct (id int PRIMARY KEY, name text, updated_at timestamptz);
CREATE FUNCTION acct_touch() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END$$;
CREATE TRIGGER touch BEFORE UPDATE ON acct FOR EACH ROW EXECUTE FUNCTION acct_touch();
CREATE TABLE entry (id int PRIMARY KEY,
	acct_id int NOT NULL REFERENCES acct ON DELETE CASCADE ON UPDATE CASCADE,
	amount numeric);
CREATE TABLE ledger (id int, acct_id int REFERENCES acct ON DELETE CASCADE ON UPDATE CASCADE,
	note text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
CREATE TABLE ledger_low PARTITION OF ledger FOR VALUES FROM (0) TO (100);
CREATE TABLE ledger_high PARTITION OF ledger FOR VALUES FROM (100) TO (1000);
CREATE TABLE outside (id int PRIMARY KEY, v text);
CREATE TABLE unprotected (id int PRIMARY KEY);
INSERT INTO acct SELECT g, 'acct ' || g, '2000-01-01' FROM generate_series(1, 10) g;
INSERT INTO entry SELECT g, 1 + g % 10, g * 1.5 FROM generate_series(1, 40) g;
INSERT INTO ledger SELECT g, 1 + g % 10, 'l' || g FROM generate_series(1, 150, 5) g;
INSERT INTO outside SELECT g, 'o' || g FROM generate_series(1, 5) g;
SELECT guard.protect('acct');
SELECT guard.protect('entry');
SELECT guard.protect('ledger');
SELECT guard.protect('outside');
SELECT group_md5('acct') AS acct0, group_md5('entry') AS entry0,
	   group_md5('ledger') AS ledger0, group_md5('outside') AS outside0 \gset
SELECT clock_timestamp() AS mark \gset

-- a migration touching the group and a table outside it: key updates and a
-- delete cascaded to both children, a column added, rows moved between
-- partitions
BEGIN;
UPDATE acct SET id = id + 100 WHERE id IN (1, 2);
DELETE FROM acct WHERE id = 5;
ALTER TABLE entry ADD COLUMN note text DEFAULT 'migrated';
UPDATE ledger SET id = id + 200 WHERE id < 20;
UPDATE outside SET v = 'migrated' WHERE id = 1;
COMMIT;
-- later changes, interleaved across the tables
UPDATE entry SET amount = amount * 2 WHERE acct_id = 3;
UPDATE acct SET name = 'renamed' WHERE id = 3;
INSERT INTO acct VALUES (50, 'new', NULL);
INSERT INTO entry VALUES (100, 50, 1, NULL);
INSERT INTO ledger VALUES (500, 50, 'new');
DELETE FROM entry WHERE id = 7;
UPDATE ledger SET note = 'later' WHERE id = 106;
DELETE FROM acct WHERE id = 4;
UPDATE outside SET v = 'later' WHERE id = 2;
SELECT relation, kind, rows FROM guard.changes ORDER BY change_id;

-- the dry run, then the real run: same rows, newest first across the tables
SELECT max(changeset_id) AS before_cs FROM guard.changesets \gset
CREATE TEMP TABLE dry_report AS
SELECT * FROM guard.restore_to(:'mark', '{acct,entry,ledger}', dry_run => true);
SELECT group_md5('acct') <> :'acct0' AS acct_still_changed,
	   (SELECT count(*) FROM information_schema.columns
		 WHERE table_name = 'entry' AND column_name = 'note') AS note_column,
	   (SELECT max(changeset_id) FROM guard.changesets) = :before_cs AS no_changeset;
SELECT change_id, relation, kind, rows_restored, rows_skipped, conflicts, objects FROM dry_report
 ORDER BY change_id DESC;
CREATE TEMP TABLE real_report AS
SELECT * FROM guard.restore_to(:'mark', ARRAY['acct', 'entry', 'ledger']::regclass[]);
(SELECT change_id, changeset_id, relation, kind, rows_restored, rows_skipped, conflicts, objects FROM dry_report
 EXCEPT SELECT change_id, changeset_id, relation, kind, rows_restored, rows_skipped, conflicts, objects FROM real_report)
UNION ALL
(SELECT change_id, changeset_id, relation, kind, rows_restored, rows_skipped, conflicts, objects FROM real_report
 EXCEPT SELECT change_id, changeset_id, relation, kind, rows_restored, rows_skipped, conflicts, objects FROM dry_report);
SELECT (SELECT count(*) FROM dry_report) = (SELECT count(*) FROM real_report) AS same_count;
-- exact: the group as it was at the mark, updated_at included; the table
-- outside the group keeps the migration's change and the later one
SELECT group_md5('acct') = :'acct0' AS acct_back, group_md5('entry') = :'entry0' AS entry_back,
	   group_md5('ledger') = :'ledger0' AS ledger_back, group_md5('outside') = :'outside0' AS outside_same;
SELECT id, v FROM outside WHERE id <= 2 ORDER BY id;
SELECT tableoid::regclass, count(*) FROM ledger GROUP BY 1 ORDER BY 1;
-- one restore change set for the whole group
SELECT changeset_id AS restore_cs FROM guard.changesets WHERE changeset_id > :before_cs \gset
SELECT relations, restore_of FROM guard.changesets WHERE changeset_id = :restore_cs;
SELECT count(DISTINCT changeset_id) AS restore_changesets FROM guard.change
 WHERE changeset_id > :before_cs;

-- the group restore is a change set like any: undoing it gives back the
-- changed tables, and a second restore_to is exact again
SELECT count(*) > 0 AS undone FROM guard.restore(:restore_cs);
SELECT group_md5('acct') <> :'acct0' AS acct_changed_again;
SELECT count(*) > 0 AS restored_again FROM guard.restore_to(:'mark', '{acct,entry,ledger}');
SELECT group_md5('acct') = :'acct0' AS acct_back, group_md5('entry') = :'entry0' AS entry_back,
	   group_md5('ledger') = :'ledger0' AS ledger_back;
-- nothing left to undo in the group after the mark
SELECT count(*) FROM guard.restore_to(:'mark', '{acct,entry,ledger}');

-- rels NULL: every protected table, so the table outside the group too;
-- the group's changes cancel out with their restores already
SELECT relation, kind, rows_restored FROM guard.restore_to(:'mark', dry_run => true);
SELECT relation, kind, rows_restored FROM guard.restore_to(:'mark');
SELECT group_md5('acct') = :'acct0' AS acct_back, group_md5('entry') = :'entry0' AS entry_back,
	   group_md5('ledger') = :'ledger0' AS ledger_back, group_md5('outside') = :'outside0' AS outside_back;
SELECT count(*) FROM guard.restore_to(:'mark', NULL::regclass[]);
SELECT count(*) FROM guard.restore_to(:'mark', rels => NULL);

-- foreign keys are checked once, at the end: a group that leaves out the
-- parent whose delete cascaded cannot bring the children back
SELECT clock_timestamp() AS mark2 \gset
DELETE FROM acct WHERE id = 6;
SELECT expect_error(format('SELECT * FROM guard.restore_to(%L, %L)', :'mark2', '{entry}'));
SELECT count(*) FROM guard.restore_to(:'mark2', '{entry,acct,ledger}');
SELECT group_md5('acct') = :'acct0' AS acct_back, group_md5('entry') = :'entry0' AS entry_back;

-- overloads: the call each form of arguments resolves to
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM guard.restore_to('acct', now());
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM guard.restore_to('acct', '2024-05-01 10:00+00');
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM guard.restore_to('acct', '2024-05-01 10:00+00', true);
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM guard.restore_to('2024-05-01 10:00+00');
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM guard.restore_to('2024-05-01 10:00+00', rels => NULL);
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM guard.restore_to(now(), '{acct,entry}');
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM guard.restore_to(at => now(), rels => '{acct}');
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM guard.restore_to(rel => 'acct', at => now());
-- two literals do what their form says: one table, or a group
SELECT clock_timestamp() AS mark3 \gset
UPDATE acct SET name = 'x' WHERE id = 7;
UPDATE entry SET amount = 0 WHERE id = 8;
SELECT relation FROM guard.restore_to('acct', :'mark3', dry_run => true);
SELECT relation FROM guard.restore_to(:'mark3', ' {acct, entry}', dry_run => true) ORDER BY 1;
SELECT relation FROM guard.restore_to(:'mark3', '{acct,entry}') ORDER BY 1;
SELECT group_md5('acct') = :'acct0' AS acct_back, group_md5('entry') = :'entry0' AS entry_back;

-- bad input
SELECT expect_error($$SELECT * FROM guard.restore_to(now(), '{no_such_table}')$$);
SELECT expect_error($$SELECT * FROM guard.restore_to(now(), ARRAY['4294967295'::regclass])$$);
SELECT expect_error($$SELECT * FROM guard.restore_to(now(), '{acct,unprotected}')$$);
SELECT expect_error($$SELECT * FROM guard.restore_to(now(), '{}')$$);
SELECT expect_error($$SELECT * FROM guard.restore_to(now(), ARRAY['acct', NULL]::regclass[])$$);
SELECT expect_error($$SELECT * FROM guard.restore_to(NULL::timestamptz, '{acct}')$$);
SELECT expect_error($$SELECT * FROM guard.restore_to(now(), '{acct}', on_conflict => 'ignore')$$);
SELECT expect_error($$SELECT * FROM guard.restore_to('acct', 'not a time')$$);
SELECT expect_error($$SELECT * FROM guard.restore_to('no_such_table', '2024-05-01')$$);
SELECT expect_error($$SELECT * FROM guard.restore_to('2024-05-01', '{acct,no_such_table}')$$);
-- two literals, the second NULL: a missing time, or every table?
SELECT expect_error($$SELECT * FROM guard.restore_to('2024-05-01', NULL)$$);
SELECT expect_error($$SELECT * FROM guard.restore_to('acct', NULL)$$);
-- a point in the future: nothing after it, as for one table
SELECT count(*) FROM guard.restore_to(now() + interval '1 day', '{acct}');
SELECT count(*) FROM guard.restore_to('acct', now() + interval '1 day');
-- a partition of a protected table is protected
SELECT count(*) FROM guard.restore_to(now(), '{ledger_low}');

-- privileges: the caller must manage every table named
CREATE ROLE regress_guard_group;
GRANT ALL ON acct, entry TO regress_guard_group;
SET ROLE regress_guard_group;
SELECT expect_error($$SELECT * FROM guard.restore_to(now(), '{acct,entry}', dry_run => true)$$);
RESET ROLE;
ALTER TABLE entry OWNER TO regress_guard_group;
SET ROLE regress_guard_group;
SELECT count(*) FROM guard.restore_to(now(), '{entry}');
SELECT expect_error($$SELECT * FROM guard.restore_to(now(), '{entry,acct}')$$);
RESET ROLE;

DROP TABLE entry, ledger, acct, outside, unprotected;
-- dropped protected tables wait in guard's trash until purged
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
DROP FUNCTION acct_touch();
DROP FUNCTION group_md5(regclass);
DROP ROLE regress_guard_group;
