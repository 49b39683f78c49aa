-- restore_dry_run_plans: a dry run plans instead of writing where the plan
-- gives the same report (dryrun.c): tables whose key index and rows alone
-- decide what the restore's writes do.  Elsewhere it writes in a
-- subtransaction it rolls back.  Both give the real restore's report.
CREATE FUNCTION dry_run_writes(cs bigint, mode text DEFAULT 'skip') RETURNS bool
LANGUAGE plpgsql AS $$
DECLARE
	before bigint;
	after bigint;
BEGIN
	SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) INTO before
	  FROM pg_stat_xact_all_tables;
	PERFORM * FROM guard.restore(cs, dry_run => true, on_conflict => mode);
	SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) INTO after
	  FROM pg_stat_xact_all_tables;
	RETURN after > before;
END
$$;
-- the dry run's report, then the real one: the rows that differ
CREATE FUNCTION dry_run_differs(cs bigint, mode text DEFAULT 'skip')
RETURNS TABLE (run text, change_id bigint, relation text, kind text,
			   rows_restored bigint, rows_skipped bigint, conflicts bigint)
LANGUAGE plpgsql AS $$
BEGIN
	CREATE TEMP TABLE dry AS
		SELECT r.change_id, r.relation, r.kind, r.rows_restored, r.rows_skipped, r.conflicts
		  FROM guard.restore(cs, dry_run => true, on_conflict => mode) r;
	CREATE TEMP TABLE real AS
		SELECT r.change_id, r.relation, r.kind, r.rows_restored, r.rows_skipped, r.conflicts
		  FROM guard.restore(cs, on_conflict => mode) r;
	RETURN QUERY
		(SELECT 'dry', * FROM dry EXCEPT ALL SELECT 'dry', * FROM real)
		UNION ALL
		(SELECT 'real', * FROM real EXCEPT ALL SELECT 'real', * FROM dry);
	DROP TABLE dry, real;
END
$$;

-- a plain table: a migration of several statements, undone with conflicts
CREATE TABLE dp_plain (id int PRIMARY KEY, v int, note text);
INSERT INTO dp_plain SELECT g, g, 'row ' || g FROM generate_series(1, 200) g;
SELECT guard.protect('dp_plain');
SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS plain_before FROM dp_plain t \gset
BEGIN;
UPDATE dp_plain SET v = v * 10 WHERE id <= 100;
DELETE FROM dp_plain WHERE id > 180;
INSERT INTO dp_plain SELECT g, 0, 'new' FROM generate_series(201, 220) g;
UPDATE dp_plain SET id = id + 1000 WHERE id BETWEEN 150 AND 155;
COMMIT;
SELECT max(changeset_id) AS plain_cs FROM guard.changeset \gset
SELECT dry_run_writes(:plain_cs) AS plain_writes;
-- one UPDATE of a single change: counted without the overlay
UPDATE dp_plain SET note = 'again' WHERE id <= 20;
SELECT max(changeset_id) AS again_cs FROM guard.changeset \gset
SELECT dry_run_writes(:again_cs) AS single_update_writes;
SELECT * FROM dry_run_differs(:again_cs);
-- the migration, with 20 of its values written since: skipped by both
UPDATE dp_plain SET v = -1 WHERE id <= 20;
SELECT * FROM dry_run_differs(:plain_cs);
SELECT count(*) AS kept_later_values FROM dp_plain WHERE v = -1;
UPDATE dp_plain SET v = id WHERE id <= 20;
SELECT md5(string_agg(t::text, ',' ORDER BY id)) = :'plain_before' AS plain_exact FROM dp_plain t;

-- a partitioned table whose partitions differ in column order, rows moved
CREATE TABLE dp_part (region text, id int, v int, PRIMARY KEY (region, id))
	PARTITION BY LIST (region);
CREATE TABLE dp_part_eu (v int, id int NOT NULL, region text NOT NULL);
ALTER TABLE dp_part ATTACH PARTITION dp_part_eu FOR VALUES IN ('eu');
CREATE TABLE dp_part_us PARTITION OF dp_part FOR VALUES IN ('us');
INSERT INTO dp_part SELECT CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g, g
  FROM generate_series(1, 40) g;
SELECT guard.protect('dp_part');
UPDATE dp_part SET region = 'us' WHERE region = 'eu' AND id <= 10;
UPDATE dp_part SET v = -v;
SELECT max(changeset_id) AS part_cs FROM guard.changeset \gset
SELECT dry_run_writes(:part_cs) AS part_writes;
SELECT * FROM dry_run_differs(:part_cs, 'abort');

-- where the plan could not see what the writes would run into, the dry
-- run writes: one table per reason
CREATE TABLE dp_parent (id int PRIMARY KEY);
CREATE TABLE dp_child (id int PRIMARY KEY, parent int REFERENCES dp_parent ON DELETE CASCADE);
INSERT INTO dp_parent SELECT generate_series(1, 5);
INSERT INTO dp_child SELECT g, g FROM generate_series(1, 5) g;
SELECT guard.protect('dp_parent'), guard.protect('dp_child');
DELETE FROM dp_parent WHERE id = 1;
SELECT max(changeset_id) AS fk_cs FROM guard.changeset \gset
SELECT dry_run_writes(:fk_cs) AS foreign_key_writes;

CREATE TABLE dp_trig (id int PRIMARY KEY, v int, touched timestamptz);
CREATE FUNCTION dp_touch() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN NEW.touched := '2000-01-01'; RETURN NEW; END $$;
CREATE TRIGGER dp_touch BEFORE UPDATE ON dp_trig FOR EACH ROW EXECUTE FUNCTION dp_touch();
INSERT INTO dp_trig SELECT g, g FROM generate_series(1, 5) g;
SELECT guard.protect('dp_trig');
UPDATE dp_trig SET v = 0;
SELECT max(changeset_id) AS trig_cs FROM guard.changeset \gset
-- a trigger that fires on origin does not fire in a restore: the plan holds
SELECT dry_run_writes(:trig_cs) AS origin_trigger_writes;
ALTER TABLE dp_trig ENABLE ALWAYS TRIGGER dp_touch;
SELECT dry_run_writes(:trig_cs) AS always_trigger_writes;

CREATE TABLE dp_uniq (id int PRIMARY KEY, code text UNIQUE, v int);
INSERT INTO dp_uniq SELECT g, 'c' || g, g FROM generate_series(1, 5) g;
SELECT guard.protect('dp_uniq');
UPDATE dp_uniq SET v = 0;
SELECT max(changeset_id) AS uniq_cs FROM guard.changeset \gset
SELECT dry_run_writes(:uniq_cs) AS other_unique_index_writes;

CREATE TABLE dp_inv (id int PRIMARY KEY, v int);
INSERT INTO dp_inv SELECT g, g FROM generate_series(1, 5) g;
SELECT guard.protect('dp_inv');
UPDATE dp_inv SET v = 0;
SELECT max(changeset_id) AS inv_cs FROM guard.changeset \gset
SELECT dry_run_writes(:inv_cs) AS before_invariant_writes;
SELECT guard.add_invariant('dp_inv', 'v small', row_check => 'v < 100');
SELECT dry_run_writes(:inv_cs) AS invariant_writes;

CREATE TABLE dp_ddl (id int PRIMARY KEY, v int);
INSERT INTO dp_ddl SELECT g, g FROM generate_series(1, 5) g;
SELECT guard.protect('dp_ddl');
UPDATE dp_ddl SET v = 0;
SELECT max(changeset_id) AS ddl_cs FROM guard.changeset \gset
ALTER TABLE dp_ddl ADD COLUMN w int NOT NULL DEFAULT 0;
SELECT dry_run_writes(:ddl_cs) AS schema_change_since_writes;

CREATE TABLE dp_lim (id int PRIMARY KEY, v int);
INSERT INTO dp_lim SELECT g, g FROM generate_series(1, 5) g;
SELECT guard.protect('dp_lim');
UPDATE dp_lim SET v = 0;
SELECT max(changeset_id) AS lim_cs FROM guard.changeset \gset
SELECT dry_run_writes(:lim_cs) AS unlimited_writes;
SET guard.max_snapshot_size = '1GB';
SELECT dry_run_writes(:lim_cs) AS snapshot_limit_writes;
RESET guard.max_snapshot_size;

-- leave nothing behind for the tests that follow
SELECT guard.drop_invariant('dp_inv', 'v small');
SELECT count(guard.unprotect(t)) AS unprotected
  FROM unnest(ARRAY['dp_plain', 'dp_part', 'dp_parent', 'dp_child', 'dp_trig', 'dp_uniq',
					'dp_inv', 'dp_ddl', 'dp_lim']::regclass[]) t;
DROP TABLE dp_plain, dp_part, dp_child, dp_parent, dp_trig, dp_uniq, dp_inv, dp_ddl, dp_lim;
DROP FUNCTION dp_touch(), dry_run_writes(bigint, text), dry_run_differs(bigint, text);
