-- setup: the extension is installed, its settings exist, and helpers for
-- the other tests.
SELECT extname, extversion FROM pg_extension WHERE extname = 'guard';
SELECT name, setting, unit, context FROM pg_settings
 WHERE name LIKE 'guard.%' ORDER BY name;
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = 'guard_admin';

-- the guard.* prefix is reserved: a misspelt setting is refused
SET guard.enabeld = off;

-- expect_error(sql): run a statement that must fail and show its SQLSTATE,
-- message, detail and hint, so that the expected output pins them down.
CREATE FUNCTION public.expect_error(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
	detail text;
	hint text;
BEGIN
	EXECUTE sql;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
	RETURN st || ': ' || msg
		|| CASE WHEN detail <> '' THEN E'\nDETAIL: ' || detail ELSE '' END
		|| CASE WHEN hint <> '' THEN E'\nHINT: ' || hint ELSE '' END;
END
$$;

-- guard_triggers(rel): the guard triggers a table carries
CREATE FUNCTION public.guard_triggers(rel regclass) RETURNS text
LANGUAGE sql AS $$
	SELECT coalesce(string_agg(tgname, ',' ORDER BY tgname), '(none)')
	  FROM pg_trigger WHERE tgrelid = rel AND tgname LIKE 'guard\_%'
$$;

-- fresh_ids(): forget guard's records so that change and change set ids in
-- a test's expected output do not depend on the tests run before it.
CREATE FUNCTION public.fresh_ids() RETURNS void
LANGUAGE sql AS $$
	DELETE FROM guard.snapshot;
	DELETE FROM guard.change;
	DELETE FROM guard.changeset;
	SELECT setval('guard.change_id_seq', 1, false);
	SELECT setval('guard.changeset_id_seq', 1, false);
$$;
