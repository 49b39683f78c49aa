-- trash_event_triggers: a DROP that moves protected tables into guard's
-- trash fires the event triggers PostgreSQL would, in its order, and
-- pg_event_trigger_dropped_objects() reports every object the statement
-- drops, the trashed tables and their parts included, exactly as without
-- guard.  The trashed tables keep their policy, and come back protected.
SELECT fresh_ids();
CREATE TABLE dropped_log (n serial, tag text, orig bool, normal bool,
						  istemp bool, type text, identity text);
CREATE FUNCTION log_dropped() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT * FROM pg_event_trigger_dropped_objects() LOOP
		INSERT INTO dropped_log (tag, orig, normal, istemp, type, identity)
		VALUES (tg_tag, r.original, r.normal, r.is_temporary, r.object_type,
				r.object_identity);
	END LOOP;
END
$$;
CREATE FUNCTION show_event() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE '% %', tg_event, tg_tag;
END
$$;
CREATE EVENT TRIGGER regress_guard_start ON ddl_command_start
	WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED') EXECUTE FUNCTION show_event();
CREATE EVENT TRIGGER regress_guard_drop ON sql_drop EXECUTE FUNCTION show_event();
CREATE EVENT TRIGGER regress_guard_log ON sql_drop EXECUTE FUNCTION log_dropped();
CREATE EVENT TRIGGER regress_guard_end ON ddl_command_end
	WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED') EXECUTE FUNCTION show_event();

-- a protected table and an unprotected twin: the same report, the same events
CREATE FUNCTION twin(name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('CREATE TABLE %I (id int PRIMARY KEY, v int DEFAULT 42 CHECK (v > 0), s serial)', name);
	EXECUTE format('CREATE INDEX ON %I (v)', name);
	EXECUTE format('CREATE POLICY p ON %I USING (v > 0)', name);
	EXECUTE format('CREATE VIEW %I AS SELECT * FROM %I', name || '_v', name);
END
$$;
SELECT twin('kept'), twin('plain');
SELECT guard.protect('kept');
INSERT INTO kept VALUES (1, 1);
DROP TABLE plain CASCADE;
DROP TABLE kept CASCADE;
SELECT type, identity, orig, normal, istemp FROM dropped_log
 WHERE identity LIKE '%kept%' ORDER BY n;
-- the two reports agree, object by object, in order (but for guard's
-- capture triggers, which the protected table has and PostgreSQL drops too)
WITH a AS (SELECT row_number() OVER (ORDER BY n), type, replace(identity, 'plain', 'x'),
				  orig, normal, istemp FROM dropped_log WHERE identity LIKE '%plain%'),
	 b AS (SELECT row_number() OVER (ORDER BY n), type, replace(identity, 'kept', 'x'),
				  orig, normal, istemp FROM dropped_log
			WHERE identity LIKE '%kept%' AND identity NOT LIKE 'guard\_capture\_%')
SELECT (SELECT count(*) FROM a) AS objects, (SELECT count(*) FROM b) AS kept_objects,
	   (SELECT count(*) FROM ((TABLE a EXCEPT TABLE b) UNION ALL (TABLE b EXCEPT TABLE a)) d) AS differences;
-- the trashed table keeps its policy, and comes back protected
SELECT relid::text LIKE 'guard\_trash.%' AS in_trash, capture FROM guard.policy
 WHERE relid::text LIKE '%kept%';
SELECT kind FROM guard.undrop('kept');
DROP VIEW kept_v;
SELECT relid, capture FROM guard.policy WHERE relid = 'kept'::regclass;
UPDATE kept SET v = 2;
SELECT kind, relation FROM guard.changes ORDER BY change_id DESC LIMIT 1;
TRUNCATE dropped_log;

-- a DROP of a protected and an unprotected table: each object once
CREATE TABLE other (id int PRIMARY KEY);
DROP TABLE kept, other;
SELECT type, identity, orig FROM dropped_log ORDER BY n;
SELECT type, identity, count(*) FROM dropped_log GROUP BY 1, 2 HAVING count(*) > 1;
SELECT kind FROM guard.undrop('kept');
TRUNCATE dropped_log;

-- DROP SCHEMA ... CASCADE reaching a protected table
CREATE SCHEMA zone;
CREATE TABLE zone.t (id int PRIMARY KEY);
CREATE TABLE zone.u (id int);
SELECT guard.protect('zone.t');
DROP SCHEMA zone CASCADE;
SELECT type, identity, orig, normal FROM dropped_log ORDER BY n;
TRUNCATE dropped_log;

-- from a function (a complete query of its own): the same
DO $$BEGIN EXECUTE 'DROP TABLE kept'; END$$;
SELECT type, identity FROM dropped_log WHERE type = 'table';
SELECT kind FROM guard.undrop('kept');
TRUNCATE dropped_log;

-- a DROP that fails: ddl_command_start only, as without guard
CREATE VIEW kept_v AS SELECT * FROM kept;
DROP TABLE kept;
SELECT count(*) FROM dropped_log;
-- in a read-only transaction: refused before any event trigger fires
BEGIN READ ONLY;
DROP TABLE kept CASCADE;
ROLLBACK;

DROP EVENT TRIGGER regress_guard_start;
DROP EVENT TRIGGER regress_guard_drop;
DROP EVENT TRIGGER regress_guard_log;
DROP EVENT TRIGGER regress_guard_end;
DROP TABLE kept CASCADE;
DROP TABLE dropped_log;
DROP FUNCTION log_dropped(), show_event(), twin(text);
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
