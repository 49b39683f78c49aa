-- ddl_truncate: TRUNCATE of a protected table (CASCADE included: each
-- protected table it reaches) keeps the rows; undo brings them back.
SELECT fresh_ids();
CREATE TABLE parents (id int PRIMARY KEY, name text);
CREATE TABLE children (id int PRIMARY KEY, parent int REFERENCES parents, v jsonb);
CREATE TABLE scratch (id int PRIMARY KEY);
INSERT INTO parents SELECT g, 'p' || g FROM generate_series(1, 10) g;
INSERT INTO children SELECT g, g % 10 + 1, jsonb_build_object('g', g) FROM generate_series(1, 30) g;
INSERT INTO scratch SELECT generate_series(1, 5);
SELECT guard.protect('parents');
SELECT guard.protect('children');
SELECT md5(string_agg(p::text, ',' ORDER BY id)) AS p0 FROM parents p \gset
SELECT md5(string_agg(c::text, ',' ORDER BY id)) AS c0 FROM children c \gset

TRUNCATE parents CASCADE;
SELECT (SELECT count(*) FROM parents) AS parents, (SELECT count(*) FROM children) AS children;
SELECT relation, kind, rows FROM guard.changes ORDER BY change_id;
SELECT relation, kind, rows_restored FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets)) ORDER BY change_id DESC;
SELECT md5(string_agg(p::text, ',' ORDER BY id)) = :'p0' AS parents_back FROM parents p;
SELECT md5(string_agg(c::text, ',' ORDER BY id)) = :'c0' AS children_back FROM children c;

-- rows inserted since with a key that comes back are conflicts; TRUNCATE of
-- an unprotected table records nothing
TRUNCATE scratch;
TRUNCATE children;
SELECT max(changeset_id) AS truncated FROM guard.changesets \gset
INSERT INTO children VALUES (1, 1, '{}');
SELECT expect_error('SELECT * FROM guard.restore(' || :truncated || ')');
SELECT rows_restored, rows_skipped, conflicts FROM guard.restore(:truncated, on_conflict => 'skip');
SELECT count(*), count(*) FILTER (WHERE v = '{}') AS kept FROM children;

SELECT guard.unprotect('parents');
SELECT guard.unprotect('children');
DROP TABLE children, parents, scratch;
