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

-- catalog_fingerprint(rel): what a schema change and its undo may touch,
-- one line per item, in an order that does not depend on attnums or OIDs:
-- the table (schema, row security, replica identity, storage parameters,
-- comment), its columns (type, NOT NULL, default, collation, generation,
-- statistics target, storage, compression, comment), constraints,
-- indexes, user triggers and the foreign keys of other tables that
-- reference it.  Tests compare it before a change, after its undo, and
-- after the undo of the undo.
CREATE FUNCTION public.catalog_fingerprint(rel regclass) RETURNS text[]
LANGUAGE sql AS $$
SELECT array_agg(line ORDER BY line) FROM (
	SELECT format('table %s.%s rls=%s force=%s replident=%s options=%s comment=%s',
				  n.nspname, c.relname, c.relrowsecurity, c.relforcerowsecurity,
				  c.relreplident, c.reloptions, obj_description(c.oid, 'pg_class'))
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel
	UNION ALL
	SELECT format('column %s %s%s default=%s collation=%s generated=%s stats=%s storage=%s compression=%s comment=%s',
				  a.attname, format_type(a.atttypid, a.atttypmod),
				  CASE WHEN a.attnotnull THEN ' not null' END,
				  pg_get_expr(d.adbin, d.adrelid),
				  CASE WHEN a.attcollation <> 0 THEN a.attcollation::regcollation END,
				  a.attgenerated, a.attstattarget, a.attstorage, a.attcompression,
				  col_description(a.attrelid, a.attnum))
	  FROM pg_attribute a
	  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
	 WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT format('constraint %s on %s: %s comment=%s', co.conname, co.conrelid::regclass,
				  pg_get_constraintdef(co.oid), obj_description(co.oid, 'pg_constraint'))
	  FROM pg_constraint co WHERE co.conrelid = rel OR co.confrelid = rel
	UNION ALL
	SELECT format('index %s clustered=%s replident=%s comment=%s',
				  regexp_replace(pg_get_indexdef(i.indexrelid), ' ON \S+', ''),
				  i.indisclustered, i.indisreplident, obj_description(i.indexrelid, 'pg_class'))
	  FROM pg_index i WHERE i.indrelid = rel
	UNION ALL
	SELECT format('trigger %s enabled=%s', t.tgname, t.tgenabled)
	  FROM pg_trigger t WHERE t.tgrelid = rel AND NOT t.tgisinternal AND t.tgname !~ '^guard_'
) lines(line)
$$;

-- fingerprint_diff(a, b): the lines of two fingerprints that differ
CREATE FUNCTION public.fingerprint_diff(a text[], b text[]) RETURNS SETOF text
LANGUAGE sql AS $$
	(SELECT '- ' || x FROM unnest(a) x EXCEPT SELECT '- ' || y FROM unnest(b) y)
	UNION ALL
	(SELECT '+ ' || y FROM unnest(b) y EXCEPT SELECT '+ ' || x FROM unnest(a) x)
	ORDER BY 1
$$;

-- table_data(rel): the rows of a table, whatever its column order
CREATE FUNCTION public.table_data(rel regclass) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	result text;
BEGIN
	EXECUTE format('SELECT md5(string_agg(to_jsonb(x)::text, %L ORDER BY to_jsonb(x)::text)) FROM %s x',
				   ',', rel) INTO result;
	RETURN result;
END
$$;

-- check_undo(rel, change): run "change" in a transaction of its own (one
-- change set), restore it, then restore that restore; say which kinds were
-- recorded, what each restore reported, and whether the table (catalog
-- fingerprint and rows) is back as before the change after the undo, and
-- as after the change after the undo of the undo (the change stays in
-- effect).
CREATE PROCEDURE public.check_undo(rel regclass, change text)
LANGUAGE plpgsql AS $$
DECLARE
	fp text[];
	data text;
	fp_before text[] := catalog_fingerprint(rel);
	data_before text := table_data(rel);
	fp_after text[];
	data_after text;
	cs bigint;
	r record;
	step text;
BEGIN
	EXECUTE change;
	COMMIT;
	fp_after := catalog_fingerprint(rel);
	data_after := table_data(rel);
	SELECT max(changeset_id) INTO cs FROM guard.changesets;
	RAISE NOTICE 'recorded: %', (SELECT string_agg(kind, ', ' ORDER BY change_id)
								   FROM guard.changes WHERE changeset_id = cs);
	FOREACH step IN ARRAY ARRAY['undo', 'redo'] LOOP
		IF NOT EXISTS (SELECT FROM guard.change WHERE changeset_id = cs) THEN
			RAISE NOTICE '%: nothing to undo: the undo changed nothing', step;
			CONTINUE;
		END IF;
		FOR r IN SELECT * FROM guard.restore(cs) ORDER BY change_id DESC LOOP
			RAISE NOTICE '%: % (% rows)%', step, r.kind, r.rows_restored,
				COALESCE(': ' || array_to_string(r.objects, ', '), '');
		END LOOP;
		COMMIT;
		fp := CASE step WHEN 'undo' THEN fp_before ELSE fp_after END;
		data := CASE step WHEN 'undo' THEN data_before ELSE data_after END;
		IF catalog_fingerprint(rel) = fp AND table_data(rel) IS NOT DISTINCT FROM data THEN
			RAISE NOTICE '%: the table is as %', step,
				CASE step WHEN 'undo' THEN 'before the change' ELSE 'after the change' END;
		ELSE
			RAISE NOTICE '%: the table differs (rows %): %', step,
				CASE WHEN table_data(rel) IS NOT DISTINCT FROM data THEN 'same' ELSE 'differ' END,
				(SELECT string_agg(d, E'\n') FROM fingerprint_diff(fp, catalog_fingerprint(rel)) d);
		END IF;
		SELECT max(changeset_id) INTO cs FROM guard.changeset;
	END LOOP;
END
$$;
