-- trash_inheritance: what a dropped protected table inherits from leaves it
-- at the DROP and comes back with the undo: a typed table (OF type) no
-- longer holds its type, which can then be dropped as without guard; a
-- child (linked to its parent after guard.protect(), which refuses
-- inheritance trees) leaves its parent.
SELECT fresh_ids();
CREATE TYPE person AS (id int, name text);
CREATE TABLE people OF person (PRIMARY KEY (id));
INSERT INTO people VALUES (1, 'ada'), (2, 'alan');
SELECT guard.protect('people');
SELECT md5(string_agg(people::text, ',' ORDER BY id)) AS p0 FROM people \gset

DROP TABLE people;
SELECT count(*) AS typed_tables FROM pg_class WHERE reloftype = 'person'::regtype;
SELECT kind FROM guard.undrop('people');
SELECT reloftype::regtype FROM pg_class WHERE oid = 'people'::regclass;
SELECT md5(string_agg(people::text, ',' ORDER BY id)) = :'p0' AS same FROM people;

-- a protected child leaves its parent at its DROP, and comes back its child
CREATE TABLE base (id int PRIMARY KEY, v text);
CREATE TABLE kid (id int PRIMARY KEY, v text);
SELECT guard.protect('kid');
ALTER TABLE kid INHERIT base;
INSERT INTO kid VALUES (1, 'k');
DROP TABLE kid;
SELECT count(*) AS rows_through_base FROM base;
SELECT kind FROM guard.undrop('kid');
SELECT inhparent::regclass FROM pg_inherits WHERE inhrelid = 'kid'::regclass;
SELECT count(*) AS rows_through_base FROM base;

DROP TABLE people, kid, base;
DROP TYPE person;
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
