-- trash_inheritance: a dropped inheritance child leaves its parent (its rows
-- no longer show through it, the parent can be dropped), and comes back
-- as a child with the undo; a parent and its children drop as PostgreSQL
-- drops them.
SELECT fresh_ids();
CREATE TABLE p (id int PRIMARY KEY, v text);
CREATE TABLE c (extra int) INHERITS (p);
ALTER TABLE c ADD PRIMARY KEY (id);
INSERT INTO p VALUES (1, 'parent');
INSERT INTO c VALUES (2, 'child', 1);
SELECT guard.protect('c');

DROP TABLE c;
SELECT count(*) AS rows_through_p FROM p;
SELECT kind FROM guard.undrop('c');
SELECT count(*) AS rows_through_p FROM p;
SELECT inhparent::regclass FROM pg_inherits WHERE inhrelid = 'c'::regclass;

-- without CASCADE the parent cannot go while it has a child, as without guard
SELECT guard.protect('p');
SELECT expect_error($$DROP TABLE p$$);
-- with CASCADE, or naming both, parent and child go (and come back) together
DROP TABLE p CASCADE;
SELECT to_regclass('p') IS NULL AS p_gone, to_regclass('c') IS NULL AS c_gone;
SELECT kind FROM guard.undrop('p');
SELECT count(*) AS rows_through_p FROM p;
DROP TABLE c, p;
SELECT relation, kind FROM guard.changes ORDER BY change_id DESC LIMIT 1;
SELECT relation, kind FROM guard.restore((SELECT max(changeset_id) FROM guard.changes WHERE kind = 'DROP TABLE'))
 ORDER BY change_id DESC;
SELECT count(*) AS rows_through_p FROM p;
SELECT inhparent::regclass FROM pg_inherits WHERE inhrelid = 'c'::regclass;

-- the child dropped, then the parent: the child comes back alone
DROP TABLE c;
DROP TABLE p;
SELECT kind FROM guard.undrop('c');
SELECT count(*) FROM pg_inherits WHERE inhrelid = 'c'::regclass;
SELECT kind FROM guard.undrop('p');
SELECT count(*) AS rows_through_p FROM p;

-- a child of two parents leaves the one that is not dropped
CREATE TABLE q (v text);
ALTER TABLE c INHERIT q;
SELECT guard.unprotect('c');
DROP TABLE p CASCADE;
SELECT count(*) AS rows_through_q FROM q;
SELECT kind FROM guard.undrop('p');
SELECT inhparent::regclass FROM pg_inherits WHERE inhrelid = 'c'::regclass ORDER BY 1;
SELECT count(*) AS rows_through_q FROM q;

DROP TABLE c, p, q;
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
