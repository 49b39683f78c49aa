-- drop_what_trash_uses: what a dropped protected table used (types,
-- domains, functions, sequences, schemas, roles) can be dropped as without
-- guard (tablespaces: trash_drop_tablespace).  A table in the trash that
-- uses what goes is dropped from the trash for real, with a NOTICE, and
-- its DROP TABLE change says it can no longer be undone; a role's trashed
-- tables only change owner.
SELECT fresh_ids();
CREATE FUNCTION trashed() RETURNS TABLE (relation text, state text, purged text) LANGUAGE sql AS $$
	SELECT relation, state, detail->>'purged' FROM guard.changes WHERE kind = 'DROP TABLE' ORDER BY change_id
$$;

-- a type, a domain, a function of a default, a trigger's function, a sequence
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE FUNCTION seven() RETURNS int LANGUAGE sql AS 'SELECT 7';
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE SEQUENCE ticket;
CREATE TABLE t_type (id int PRIMARY KEY, m mood);
CREATE TABLE t_domain (id posint PRIMARY KEY);
CREATE TABLE t_default (id int PRIMARY KEY, v int DEFAULT seven());
CREATE TABLE t_trigger (id int PRIMARY KEY);
CREATE TRIGGER t_touch BEFORE INSERT ON t_trigger FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TABLE t_seq (id int PRIMARY KEY DEFAULT nextval('ticket'));
SELECT guard.protect(t) FROM unnest(ARRAY['t_type', 't_domain', 't_default', 't_trigger', 't_seq']) t;
DROP TABLE t_type, t_domain, t_default, t_trigger, t_seq;

-- a statement that fails anyway leaves the trash as it was
CREATE TABLE live (m mood);
SELECT expect_error($$DROP TYPE mood$$);
SELECT relation, state FROM trashed();
DROP TABLE live;

DROP TYPE mood;
DROP DOMAIN posint;
DROP FUNCTION seven();
DROP FUNCTION touch();
DROP SEQUENCE ticket;
SELECT * FROM trashed();
SELECT count(*) AS left_in_trash FROM pg_class WHERE relnamespace = 'guard_trash'::regnamespace;
SELECT expect_error($$SELECT * FROM guard.undrop('t_type')$$);

-- DROP TYPE ... CASCADE of the type of a protected typed table: the table
-- goes to the trash, cut from its type, and can come back
CREATE TYPE person AS (name text, age int);
CREATE TABLE people OF person (PRIMARY KEY (name));
INSERT INTO people VALUES ('ann', 40);
SELECT guard.protect('people');
DROP TYPE person CASCADE;
SELECT kind FROM guard.undrop('people');
SELECT * FROM people;
DROP TABLE people;

-- DROP SCHEMA ... CASCADE of a schema whose type a trashed table uses
CREATE SCHEMA kinds;
CREATE TYPE kinds.color AS ENUM ('red');
CREATE TABLE t_schema (id int PRIMARY KEY, c kinds.color);
SELECT guard.protect('t_schema');
DROP TABLE t_schema;
DROP SCHEMA kinds CASCADE;
SELECT * FROM trashed() WHERE relation = 'public.t_schema';

-- a role that owns trashed tables, or was granted rights on them
CREATE ROLE regress_guard_gone;
CREATE TABLE t_owned (id int PRIMARY KEY);
ALTER TABLE t_owned OWNER TO regress_guard_gone;
CREATE TABLE t_granted (id int PRIMARY KEY, secret text);
GRANT SELECT ON t_granted TO regress_guard_gone;
GRANT UPDATE (secret) ON t_granted TO regress_guard_gone;
CREATE TABLE t_policy (id int PRIMARY KEY);
CREATE POLICY only_gone ON t_policy TO regress_guard_gone USING (id > 0);
SELECT guard.protect('t_owned');
SELECT guard.protect('t_granted');
SELECT guard.protect('t_policy');
DROP TABLE t_owned, t_granted, t_policy;
-- (a policy naming the role cannot be kept: that table goes for good)
DROP ROLE regress_guard_gone;
SELECT kind FROM guard.undrop('t_owned');
SELECT kind FROM guard.undrop('t_granted');
SELECT relname, relowner::regrole, relacl FROM pg_class WHERE relname IN ('t_owned', 't_granted') ORDER BY 1;

-- DROP OWNED BY: a trashed table of the role's is kept, and goes back to it
CREATE ROLE regress_guard_owner;
ALTER TABLE t_owned OWNER TO regress_guard_owner;
DROP TABLE t_owned;
DROP OWNED BY regress_guard_owner;
SELECT kind FROM guard.undrop('t_owned');
SELECT relowner::regrole FROM pg_class WHERE oid = 't_owned'::regclass;
ALTER TABLE t_owned OWNER TO CURRENT_USER;
DROP ROLE regress_guard_owner;

-- a DROP TABLE of the trashed table drops it for good
DROP TABLE t_owned;
DO $$BEGIN
	EXECUTE (SELECT format('DROP TABLE guard_trash.%I', relname) FROM pg_class
			  WHERE relnamespace = 'guard_trash'::regnamespace AND relname LIKE '%\_t\_owned');
END$$;
SELECT * FROM trashed() WHERE relation = 'public.t_owned' AND state = 'expired';

DROP TABLE t_granted;
DROP FUNCTION trashed();
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
