-- capture_limits: min_rows, guard.max_snapshot_size in enforce and warn
-- mode, and guard.enabled.
CREATE TABLE big (id int PRIMARY KEY, v text);
INSERT INTO big SELECT g, repeat('v', 100) FROM generate_series(1, 1000) g;

-- min_rows: smaller statements are not snapshotted
SELECT guard.protect('big', min_rows => 10);
UPDATE big SET v = 'few' WHERE id <= 9;
UPDATE big SET v = 'enough' WHERE id <= 10;
SELECT kind, rows FROM guard.changes WHERE relation = 'public.big' ORDER BY change_id;

-- max_snapshot_size, enforce: the statement is refused and nothing is kept
SELECT guard.protect('big', mode => 'enforce');
SET guard.max_snapshot_size = '10kB';
SELECT count(*) AS changes_before FROM guard.changes \gset
SELECT expect_error($$UPDATE big SET v = 'too much'$$);
SELECT count(*) - :changes_before AS new_changes FROM guard.changes;
SELECT count(*) FROM big WHERE v = 'too much';
-- a statement under the limit passes
UPDATE big SET v = 'fits' WHERE id <= 20;
SELECT kind, rows FROM guard.changes ORDER BY change_id DESC LIMIT 1;

-- max_snapshot_size, warn: the change commits, captured whole, with a warning
SELECT guard.protect('big', mode => 'warn');
UPDATE big SET v = 'too much, warned';
SELECT kind, rows, snapshot_bytes > 10240 AS over_limit FROM guard.changes
 ORDER BY change_id DESC LIMIT 1;
RESET guard.max_snapshot_size;

-- guard.enabled = off (superuser only): nothing captured
SET guard.enabled = off;
UPDATE big SET v = 'unguarded' WHERE id = 1;
RESET guard.enabled;
SELECT count(*) FROM guard.changes WHERE statement LIKE '%unguarded%';

DROP TABLE big;
