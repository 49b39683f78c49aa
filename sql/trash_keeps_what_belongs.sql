-- trash_keeps_what_belongs: what belongs to a protected table alone (its
-- row level security policies, triggers on some columns, publications with
-- column lists and row filters, statistics) never blocks its DROP; it goes
-- with the table, and what lives apart from it (publication membership,
-- statistics objects, materialized views) comes back with the undo.
SELECT fresh_ids();
SET client_min_messages = error;
CREATE PUBLICATION regress_guard_pub;
RESET client_min_messages;
CREATE TABLE doc (id int PRIMARY KEY, owner_name text, a int, b int);
INSERT INTO doc SELECT g, 'u' || g, g, g * 2 FROM generate_series(1, 20) g;
ALTER TABLE doc ENABLE ROW LEVEL SECURITY;
CREATE POLICY doc_mine ON doc USING (owner_name = current_user);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER doc_touch BEFORE UPDATE OF a ON doc FOR EACH ROW EXECUTE FUNCTION touch();
ALTER PUBLICATION regress_guard_pub ADD TABLE doc (id, a) WHERE (a > 1);
CREATE STATISTICS doc_ab (dependencies) ON a, b FROM doc;
CREATE MATERIALIZED VIEW doc_sum AS SELECT count(*) AS n, sum(a) AS a FROM doc;
CREATE UNIQUE INDEX doc_sum_n ON doc_sum (n);
SELECT guard.protect('doc');
CREATE FUNCTION describe() RETURNS TABLE (what text, def text) LANGUAGE sql AS $$
	SELECT 'policy', polname || ' ' || pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'doc'::regclass
	UNION ALL SELECT 'trigger', pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'doc'::regclass AND tgname NOT LIKE 'guard%'
	UNION ALL SELECT 'publication', pubname || ' ' || array_to_string(attnames, ',') || ' ' || rowfilter
	  FROM pg_publication_tables WHERE tablename = 'doc'
	UNION ALL SELECT 'statistics', stxnamespace::regnamespace || '.' || stxname FROM pg_statistic_ext WHERE stxrelid = 'doc'::regclass
	UNION ALL SELECT 'matview', pg_get_viewdef('doc_sum'::regclass) || (SELECT string_agg(pg_get_indexdef(indexrelid), ',') FROM pg_index WHERE indrelid = 'doc_sum'::regclass)
	ORDER BY 1, 2
$$;
CREATE TABLE before AS SELECT * FROM describe();

-- they do not block the DROP (without CASCADE: nothing else depends on it)
DROP MATERIALIZED VIEW doc_sum;
DROP TABLE doc;
SELECT count(*) AS published FROM pg_publication_tables WHERE pubname = 'regress_guard_pub';
-- the statistics object's name is free again
CREATE TABLE other (a int, b int);
CREATE STATISTICS doc_ab (dependencies) ON a, b FROM other;
DROP TABLE other;
SELECT kind FROM guard.undrop('doc');
CREATE MATERIALIZED VIEW doc_sum AS SELECT count(*) AS n, sum(a) AS a FROM doc;
CREATE UNIQUE INDEX doc_sum_n ON doc_sum (n);
SELECT count(*) AS differences FROM (
	(SELECT * FROM describe() EXCEPT SELECT * FROM before)
	UNION ALL (SELECT * FROM before EXCEPT SELECT * FROM describe())) d;

-- with CASCADE, the materialized view goes too, and comes back populated
DROP TABLE doc CASCADE;
SELECT to_regclass('doc_sum') IS NULL AS matview_gone;
SELECT kind FROM guard.undrop('doc');
SELECT count(*) AS differences FROM (
	(SELECT * FROM describe() EXCEPT SELECT * FROM before)
	UNION ALL (SELECT * FROM before EXCEPT SELECT * FROM describe())) d;
SELECT * FROM doc_sum;

-- what a DROP ... CASCADE takes that guard does not keep is listed
CREATE FUNCTION doc_label(d doc) RETURNS text LANGUAGE sql AS $$ SELECT d.owner_name $$;
DROP TABLE doc CASCADE;
SELECT count(*) AS functions_left FROM pg_proc WHERE proname = 'doc_label';
SELECT detail->>'not_kept' AS not_kept FROM guard.changes ORDER BY change_id DESC LIMIT 1;
SELECT kind FROM guard.undrop('doc');

-- a view on two tables dropped together comes back with the second undo
CREATE TABLE author (id int PRIMARY KEY);
SELECT guard.protect('author');
CREATE VIEW doc_author AS SELECT d.id FROM doc d JOIN author a USING (id);
DROP TABLE doc, author CASCADE;
SELECT kind FROM guard.undrop('doc');
SELECT to_regclass('doc_author') IS NULL AS view_waits;
SELECT kind FROM guard.undrop('author');
SELECT to_regclass('doc_author') IS NOT NULL AS view_back;

DROP TABLE doc, author CASCADE;
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
DROP TABLE before;
DROP FUNCTION describe(), touch();
DROP PUBLICATION regress_guard_pub;
