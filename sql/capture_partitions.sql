-- capture_partitions: protecting a partitioned table covers every
-- partition, present and future; a cross-partition UPDATE is one change.
CREATE TABLE events (id int, region text, payload text, PRIMARY KEY (id, region))
	PARTITION BY LIST (region);
CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us')
	PARTITION BY RANGE (id);
CREATE TABLE events_us_low PARTITION OF events_us FOR VALUES FROM (0) TO (100);
INSERT INTO events VALUES (1, 'eu', 'a'), (2, 'us', 'b'), (3, 'eu', 'c');
SELECT guard.protect('events');
SELECT c.relname, guard_triggers(c.oid) FROM pg_class c
 WHERE c.relname LIKE 'events%' AND c.relkind IN ('r', 'p') ORDER BY 1;

-- a partition of a protected table takes the parent's policy
SELECT expect_error($$SELECT guard.protect('events_eu')$$);

-- a new partition, an attached one, a detached one
CREATE TABLE events_us_high PARTITION OF events_us FOR VALUES FROM (100) TO (1000);
CREATE TABLE events_asia (id int NOT NULL, region text NOT NULL, payload text);
ALTER TABLE events ATTACH PARTITION events_asia FOR VALUES IN ('asia');
CREATE TABLE events_old (LIKE events);
SELECT guard_triggers('events_us_high') AS new_partition,
	   guard_triggers('events_asia') AS attached,
	   guard_triggers('events_old') AS unrelated;
-- a detached partition stays protected, under a copy of the policy it had
-- (so that a DROP of it is kept); attached again, the parent's governs it
ALTER TABLE events DETACH PARTITION events_asia;
SELECT guard_triggers('events_asia') AS detached,
	   (SELECT capture FROM guard.policies WHERE relation = 'events_asia'::regclass) AS own_policy;
ALTER TABLE events ATTACH PARTITION events_asia FOR VALUES IN ('asia');
SELECT count(*) AS own_policy FROM guard.policies WHERE relation = 'events_asia'::regclass;

-- DML through the parent is captured once, as a change of the parent
UPDATE events SET payload = payload || '!';
INSERT INTO events VALUES (500, 'us', 'high'), (7, 'asia', 'x');
SELECT relation, kind, rows FROM guard.changes ORDER BY change_id DESC LIMIT 2;

-- DML aimed at a partition is captured as a change of the partition
UPDATE events_eu SET payload = 'direct' WHERE id = 1;
DELETE FROM events_us_high;
SELECT relation, kind, rows FROM guard.changes ORDER BY change_id DESC LIMIT 2;
SELECT * FROM guard.diff((SELECT max(change_id) FROM guard.changes)) ORDER BY 1, 2;

-- a cross-partition UPDATE is one logical change of the row
UPDATE events SET region = 'us' WHERE id = 3;
SELECT relation, kind, rows FROM guard.changes ORDER BY change_id DESC LIMIT 1;
SELECT * FROM guard.diff((SELECT max(change_id) FROM guard.changes)) ORDER BY 1, 2;

-- unprotect removes the triggers of every partition
SELECT guard.unprotect('events');
SELECT c.relname, guard_triggers(c.oid) FROM pg_class c
 WHERE c.relname LIKE 'events%' AND c.relkind IN ('r', 'p') ORDER BY 1;

DROP TABLE events, events_old;
