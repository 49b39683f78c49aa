-- trash_inheritance: what a dropped protected table inherits from leaves it
-- at the DROP and comes back with the undo.  Inheritance trees (INHERITS)
-- cannot be protected (protect_inheritance_refused), so what is left are
-- typed tables (OF type): a dropped typed table no longer holds its type,
-- which can then be dropped as without guard, and the undo makes the table
-- typed again.
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

-- an inheritance child cannot be made of a protected table
CREATE TABLE base (id int PRIMARY KEY, v text);
SELECT expect_error($$CREATE TABLE people_child () INHERITS (people)$$);
SELECT expect_error($$ALTER TABLE people INHERIT base$$);

DROP TABLE people, base;
DROP TYPE person;
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
