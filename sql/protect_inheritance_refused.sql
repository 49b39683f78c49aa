-- protect_inheritance_refused: guard does not support table inheritance
-- (partitioning aside): it refuses to protect a parent or a child, and to
-- restore a protected table that was linked into a tree since (the DDL
-- itself is accepted, as without guard: guard does not change what
-- PostgreSQL accepts).
SELECT fresh_ids();
CREATE TABLE vehicle (id int PRIMARY KEY, name text);
CREATE TABLE car (doors int) INHERITS (vehicle);
ALTER TABLE car ADD PRIMARY KEY (id);
SELECT expect_error($$SELECT guard.protect('vehicle')$$);
SELECT expect_error($$SELECT guard.protect('car')$$);
SELECT expect_error($$SELECT guard.protect('car', capture => 'ddl')$$);
SELECT count(*) AS policies FROM guard.policy WHERE relid IN ('vehicle'::regclass, 'car'::regclass);
SELECT guard_triggers('vehicle') AS vehicle_triggers, guard_triggers('car') AS car_triggers;

-- a protected table may become a parent or a child, as without guard
CREATE TABLE boat (id int PRIMARY KEY, name text);
SELECT guard.protect('boat');
CREATE TABLE hull (id int PRIMARY KEY, name text);
ALTER TABLE hull INHERIT boat;
SELECT count(*) AS links FROM pg_inherits WHERE inhparent = 'boat'::regclass OR inhrelid = 'boat'::regclass;
ALTER TABLE hull NO INHERIT boat;

-- partitions are fine
CREATE TABLE fleet (id int, region int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE fleet_1 PARTITION OF fleet FOR VALUES IN (1);
SELECT guard.protect('fleet');
CREATE TABLE fleet_2 PARTITION OF fleet FOR VALUES IN (2);
INSERT INTO fleet VALUES (1, 1), (2, 2);

-- a tree made since the change: restore refuses, and changes nothing;
-- out of the tree again, it restores
INSERT INTO boat VALUES (1, 'first');
BEGIN;
SELECT guard.label('rename boat') AS cs \gset
UPDATE boat SET name = 'renamed';
COMMIT;
CREATE TABLE dinghy (oars int) INHERITS (boat);
SELECT expect_error('SELECT * FROM guard.restore(' || :cs || ')');
SELECT name FROM boat;
ALTER TABLE dinghy NO INHERIT boat;
SELECT rows_restored FROM guard.restore(:cs);
SELECT name FROM boat;

SELECT guard.unprotect('boat');
SELECT guard.unprotect('fleet');
DROP TABLE vehicle, car, boat, hull, dinghy, fleet;
