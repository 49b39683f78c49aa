-- status: guard.status sums up what guard holds; purge empties it.
SELECT fresh_ids();
CREATE TABLE s (id int PRIMARY KEY, v int);
INSERT INTO s SELECT g, g FROM generate_series(1, 100) g;
SELECT guard.protect('s');
UPDATE s SET v = v + 1;
SELECT protected_tables >= 1 AS protected, active_changes >= 1 AS changes,
	   bytes_held > 0 AS holds_bytes, oldest_snapshot <= now() AS oldest
  FROM guard.status;
DROP TABLE s;
SELECT tables_in_trash >= 1 AS trashed FROM guard.status;
SELECT dropped_tables >= 1 AS purged_tables, expired_changes >= 1 AS expired FROM guard.purge('0 seconds');
SELECT active_changes, tables_in_trash, oldest_snapshot FROM guard.status;
SELECT count(*) AS snapshot_rows FROM guard.snapshot;
SELECT count(*) AS inline_chunks FROM guard.change WHERE data IS NOT NULL;
-- an expired change cannot be restored
SELECT max(changeset_id) AS cs FROM guard.changesets WHERE relations = 'public.s' \gset
SELECT expect_error('SELECT * FROM guard.restore(' || :cs || ')');
