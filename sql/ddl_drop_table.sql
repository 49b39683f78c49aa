-- ddl_drop_table: DROP TABLE of a protected table moves it into schema
-- guard_trash in O(1); undo brings it back whole, with its indexes,
-- constraints, triggers, grants, comments and owned sequence.
SELECT fresh_ids();
CREATE ROLE regress_guard_reader2;
CREATE TABLE accounts (id serial PRIMARY KEY, email text UNIQUE, balance int CHECK (balance >= 0));
INSERT INTO accounts (email, balance) SELECT 'a' || g, g FROM generate_series(1, 50) g;
CREATE INDEX accounts_balance ON accounts (balance);
COMMENT ON TABLE accounts IS 'customer accounts';
COMMENT ON COLUMN accounts.email IS 'login';
GRANT SELECT ON accounts TO regress_guard_reader2;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER accounts_touch BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TABLE other (id int PRIMARY KEY);
SELECT guard.protect('accounts');
SELECT guard.protect('other');
-- everything about the table, to compare after the undo
CREATE FUNCTION describe(rel text) RETURNS TABLE (what text, def text) LANGUAGE sql AS $$
	SELECT 'index', pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = rel::regclass
	UNION ALL SELECT 'constraint', conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = rel::regclass
	UNION ALL SELECT 'trigger', tgname FROM pg_trigger WHERE tgrelid = rel::regclass
	UNION ALL SELECT 'grant', array_to_string(relacl, ',') FROM pg_class WHERE oid = rel::regclass
	UNION ALL SELECT 'comment', obj_description(rel::regclass, 'pg_class')
	UNION ALL SELECT 'column comment', col_description(rel::regclass, 2)
	UNION ALL SELECT 'sequence', pg_get_serial_sequence(rel, 'id')
	UNION ALL SELECT 'data', md5(string_agg(a::text, ',' ORDER BY id)) FROM accounts a
	ORDER BY 1, 2
$$;
CREATE TABLE before AS SELECT * FROM describe('accounts');
SELECT 'accounts'::regclass::oid AS accounts_oid \gset

-- DROP TABLE of two names: each protected one goes to the trash
DROP TABLE accounts, other;
SELECT to_regclass('accounts') IS NULL AS gone, to_regclass('other') IS NULL AS other_gone;
SELECT relname ~ '^[0-9]+_accounts$' AS trashed FROM pg_class WHERE oid = :accounts_oid;
SELECT kind, relation, detail ? 'trash' AS has_trash FROM guard.changes ORDER BY change_id;
SELECT relation FROM guard.policies ORDER BY 1;
-- the same name can be used again meanwhile
CREATE TABLE accounts (x int);
SELECT expect_error($$SELECT * FROM guard.undrop('accounts')$$);
DROP TABLE accounts;

-- undo: by change set, or by name
SELECT kind, rows_restored FROM guard.undrop('accounts');
SELECT 'accounts'::regclass::oid = :accounts_oid AS same_table;
SELECT count(*) AS differences FROM (
	(SELECT * FROM describe('accounts') EXCEPT SELECT * FROM before)
	UNION ALL (SELECT * FROM before EXCEPT SELECT * FROM describe('accounts'))) d;
INSERT INTO accounts (email, balance) VALUES ('new', 1) RETURNING id;
SELECT kind, rows_restored FROM guard.undrop('other');
SELECT to_regclass('other') IS NOT NULL AS other_back;
SELECT expect_error($$SELECT * FROM guard.undrop('accounts')$$);

-- DROP TABLE ... CASCADE: the views (and views on views) and the foreign
-- keys of other tables that depend on it go, and come back with the undo
CREATE VIEW rich AS SELECT * FROM accounts WHERE balance > 40;
CREATE VIEW richest AS SELECT email FROM rich WHERE balance > 45;
GRANT SELECT ON rich TO regress_guard_reader2;
COMMENT ON VIEW rich IS 'rich accounts';
CREATE TABLE orders (id int PRIMARY KEY, account int REFERENCES accounts (id));
INSERT INTO orders VALUES (1, 50);
CREATE FUNCTION deps() RETURNS TABLE (what text, def text) LANGUAGE sql AS $$
	SELECT 'view ' || c.relname, pg_get_viewdef(c.oid) || ' ' || coalesce(array_to_string(c.relacl, ','), '')
		   || ' ' || coalesce(obj_description(c.oid, 'pg_class'), '')
	  FROM pg_class c WHERE c.relname IN ('rich', 'richest')
	UNION ALL
	SELECT 'fk ' || conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'f'
	ORDER BY 1
$$;
CREATE TABLE deps_before AS SELECT * FROM deps();
SELECT expect_error($$DROP TABLE accounts$$);
DROP TABLE accounts CASCADE;
SELECT count(*) AS dependents_left FROM deps();
SELECT count(*) FROM orders;
SELECT kind, rows_restored FROM guard.undrop('accounts');
SELECT count(*) AS differences FROM (
	(SELECT * FROM deps() EXCEPT SELECT * FROM deps_before)
	UNION ALL (SELECT * FROM deps_before EXCEPT SELECT * FROM deps())) d;
SELECT count(*) FROM richest;
SELECT expect_error($$INSERT INTO orders VALUES (2, 99999)$$);
DROP VIEW richest, rich;
DROP TABLE orders, deps_before;
DROP FUNCTION deps();

-- an unprotected table is dropped as usual
CREATE TABLE plain (id int);
DROP TABLE plain, other;
SELECT to_regclass('plain') IS NULL AS plain_gone,
	   (SELECT count(*) FROM guard.changes WHERE relation = 'public.plain') AS recorded;

-- only the owner may drop (as without guard)
SET ROLE regress_guard_reader2;
SELECT expect_error($$DROP TABLE accounts$$);
RESET ROLE;

-- DROP SCHEMA ... CASCADE of a schema holding a protected table works; the
-- table goes to the trash, and comes back once the schema is there again
CREATE SCHEMA app;
CREATE TABLE app.t (id int PRIMARY KEY);
INSERT INTO app.t VALUES (1);
SELECT guard.protect('app.t');
DROP SCHEMA app CASCADE;
SELECT to_regnamespace('app') IS NULL AS schema_gone;
SELECT expect_error($$SELECT * FROM guard.undrop('t')$$);
CREATE SCHEMA app;
SELECT kind FROM guard.undrop('t');
SELECT * FROM app.t;
DROP TABLE app.t;
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
DROP SCHEMA app;

-- DROP OWNED BY a role owning a protected table works too: the table goes
-- to the trash (owned by guard's owner meanwhile), and comes back to the role
CREATE ROLE regress_guard_leaver;
CREATE TABLE leaver_t (id int PRIMARY KEY);
CREATE TABLE leaver_scratch (id int);
ALTER TABLE leaver_t OWNER TO regress_guard_leaver;
ALTER TABLE leaver_scratch OWNER TO regress_guard_leaver;
SELECT guard.protect('leaver_t');
DROP OWNED BY regress_guard_leaver;
SELECT to_regclass('leaver_t') IS NULL AS dropped, to_regclass('leaver_scratch') IS NULL AS scratch_dropped;
SELECT kind FROM guard.undrop('leaver_t');
SELECT relowner::regrole FROM pg_class WHERE oid = 'leaver_t'::regclass;
DROP TABLE leaver_t;
SELECT dropped_tables FROM guard.purge('0 seconds');
DROP ROLE regress_guard_leaver;

-- purge drops the trash for real
DROP TABLE accounts;
SELECT dropped_tables > 0 AS dropped FROM guard.purge('0 seconds');
SELECT count(*) FROM pg_class WHERE oid = :accounts_oid;
SELECT expect_error($$SELECT * FROM guard.undrop('accounts')$$);

DROP TABLE before;
DROP FUNCTION describe(text), touch();
DROP ROLE regress_guard_reader2;
