-- restore_user_triggers: restore writes back the captured values, which the
-- table's ordinary user triggers (that set updated_at and version, or
-- normalise a value) do not rewrite, and do not see; ENABLE ALWAYS triggers
-- and CHECK functions do run, with the caller's search_path; the restore's
-- own writes are still recorded.
SELECT fresh_ids();
CREATE FUNCTION rows_md5(rel regclass) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r text;
BEGIN
	EXECUTE format('SELECT md5(coalesce(string_agg(t::text, %L ORDER BY t::text), %L))'
				   ' || %L || md5(coalesce(string_agg(encode(record_send(t), %L), %L'
				   ' ORDER BY encode(record_send(t), %L)), %L)) FROM %s t',
				   '|', '', '/', 'hex', '|', 'hex', '', rel) INTO r;
	RETURN r;
END
$$;
CREATE SCHEMA app;
CREATE TABLE app.settings (k text PRIMARY KEY, v int);
INSERT INTO app.settings VALUES ('max_qty', 1000);
-- a CHECK function that names a table without its schema
CREATE FUNCTION app.qty_ok(q int) RETURNS bool LANGUAGE plpgsql AS
$$BEGIN RETURN q <= (SELECT v FROM settings WHERE k = 'max_qty'); END$$;
CREATE TABLE app.items (id int PRIMARY KEY, code text, qty int CHECK (app.qty_ok(qty)),
	note text, updated_at timestamptz, version int);
-- ordinary triggers that rewrite what is written
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN
	NEW.updated_at := clock_timestamp();
	NEW.version := coalesce(OLD.version, 0) + 1;
	NEW.note := upper(NEW.note);
	RETURN NEW;
END$$;
CREATE TRIGGER touch BEFORE UPDATE ON app.items FOR EACH ROW EXECUTE FUNCTION app.touch();
CREATE FUNCTION app.normalise() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN NEW.code := lower(NEW.code); NEW.updated_at := clock_timestamp(); RETURN NEW; END$$;
CREATE TRIGGER normalise BEFORE INSERT ON app.items FOR EACH ROW EXECUTE FUNCTION app.normalise();
-- an ordinary audit trigger, and an ENABLE ALWAYS one naming its table
-- without its schema
CREATE TABLE app.audit (op text, id int);
CREATE TABLE app.audit_always (n serial, op text, id int);
CREATE FUNCTION app.audit() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN
	INSERT INTO audit VALUES (TG_OP, coalesce(NEW.id, OLD.id));
	RETURN NULL;
END$$;
CREATE FUNCTION app.audit_always() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN
	INSERT INTO audit_always (op, id) VALUES (TG_OP, coalesce(NEW.id, OLD.id));
	RETURN NULL;
END$$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON app.items
	FOR EACH ROW EXECUTE FUNCTION app.audit();
CREATE TRIGGER audit_always AFTER INSERT OR UPDATE OR DELETE ON app.items
	FOR EACH ROW EXECUTE FUNCTION app.audit_always();
ALTER TABLE app.items ENABLE ALWAYS TRIGGER audit_always;
ALTER TABLE app.items DISABLE TRIGGER normalise;
-- the application's path: its schema first
SET search_path = app, public;
INSERT INTO app.items SELECT g, 'Code-' || g, g, 'note ' || g, '2020-01-01', 1
  FROM generate_series(1, 20) g;
ALTER TABLE app.items ENABLE TRIGGER normalise;
SELECT guard.protect('app.items');
SELECT rows_md5('app.items') AS items0 \gset

BEGIN;
SELECT guard.label('bad edit') AS cs \gset
UPDATE items SET qty = qty + 100, note = 'edited' WHERE id <= 10;
DELETE FROM items WHERE id > 15;
INSERT INTO items VALUES (21, 'NEW', 1, 'new', NULL, NULL);
COMMIT;
SELECT count(*) AS audited FROM audit \gset
SELECT max(n) AS audited_always FROM audit_always \gset

SELECT ok, count(*) FROM guard.verify_restore(:cs) GROUP BY ok;
SELECT relation, kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs) ORDER BY change_id DESC;
-- every value is back as captured: no updated_at, version, note or code rewritten
SELECT rows_md5('app.items') = :'items0' AS items_back;
SELECT count(*) FILTER (WHERE version <> 1 OR updated_at <> '2020-01-01' OR note <> lower(note)
						   OR code <> 'Code-' || id) AS rewritten
  FROM items;
-- the ordinary trigger did not fire, the ALWAYS one did, once per row written
SELECT count(*) - :audited AS audit_rows_added FROM audit;
SELECT op, count(*) FROM audit_always WHERE n > :audited_always GROUP BY op ORDER BY op;

-- the restore is recorded, and restoring it redoes the edit (now through
-- the same rules: the values the edit left, not rewritten again)
SELECT changeset_id AS rcs FROM guard.changesets WHERE restore_of = :cs \gset
SELECT relation, kind, rows FROM guard.changes WHERE changeset_id = :rcs ORDER BY change_id;
SELECT sum(rows_restored) AS redone FROM guard.restore(:rcs);
SELECT count(*) FILTER (WHERE note = 'EDITED') AS edited, count(*) AS total FROM items;
SELECT sum(rows_restored) AS undone_again
  FROM guard.restore((SELECT changeset_id FROM guard.changesets WHERE restore_of = :rcs));
SELECT rows_md5('app.items') = :'items0' AS items_back;

-- a CHECK that fails on a restored value still refuses the restore
BEGIN;
SELECT guard.label('lower qty') AS qcs \gset
UPDATE items SET qty = 1 WHERE id = 10;
COMMIT;
UPDATE settings SET v = 5;
SELECT split_part(expect_error('SELECT * FROM guard.restore(' || :qcs || ')'), E'\n', 1);
SELECT qty FROM items WHERE id = 10;

RESET search_path;
SELECT guard.unprotect('app.items');
DROP SCHEMA app CASCADE;
DROP FUNCTION rows_md5(regclass);
