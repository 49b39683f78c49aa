-- ddl_undo_table: SET SCHEMA, ENABLE/DISABLE of user triggers and of row
-- level security, CLUSTER ON, REPLICA IDENTITY, storage parameters and
-- COMMENT ON are recorded with their own kind and undone, and their undo
-- is undone too; several subcommands of one ALTER TABLE are undone
-- together; what guard cannot undo is refused, naming it.
SELECT fresh_ids();
CREATE TABLE profiles (id int PRIMARY KEY, handle text NOT NULL UNIQUE, bio text);
INSERT INTO profiles SELECT g, 'h' || g, NULL FROM generate_series(1, 10) g;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER profiles_touch BEFORE UPDATE ON profiles FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TRIGGER profiles_audit AFTER INSERT ON profiles FOR EACH ROW EXECUTE FUNCTION touch();
SELECT guard.protect('profiles');
CREATE SCHEMA archive;

CALL check_undo('profiles', $$ALTER TABLE profiles SET SCHEMA archive$$);
SELECT kind, relation, detail FROM guard.changes WHERE kind = 'SET SCHEMA' ORDER BY change_id LIMIT 1;
ALTER TABLE archive.profiles SET SCHEMA public;
-- triggers: one by name, each state; guard's own triggers are not touched
CALL check_undo('profiles', $$ALTER TABLE profiles DISABLE TRIGGER profiles_touch$$);
CALL check_undo('profiles', $$ALTER TABLE profiles ENABLE ALWAYS TRIGGER profiles_audit,
	ENABLE REPLICA TRIGGER profiles_touch$$);
SELECT detail FROM guard.changes WHERE kind = 'ENABLE TRIGGER' ORDER BY change_id LIMIT 1;
-- row level security
CALL check_undo('profiles', $$ALTER TABLE profiles ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY$$);
CALL check_undo('profiles', $$ALTER TABLE profiles DISABLE ROW LEVEL SECURITY$$);
-- clustering, replica identity, storage parameters
CALL check_undo('profiles', $$ALTER TABLE profiles CLUSTER ON profiles_handle_key$$);
CALL check_undo('profiles', $$ALTER TABLE profiles SET WITHOUT CLUSTER, REPLICA IDENTITY FULL$$);
CALL check_undo('profiles', $$ALTER TABLE profiles REPLICA IDENTITY USING INDEX profiles_handle_key$$);
CALL check_undo('profiles', $$ALTER TABLE profiles SET (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01)$$);
CALL check_undo('profiles', $$ALTER TABLE profiles RESET (fillfactor), SET (autovacuum_enabled = false)$$);
-- comments on the table, a column, a constraint, an index
CALL check_undo('profiles', $$COMMENT ON TABLE profiles IS 'who is who'$$);
CALL check_undo('profiles', $$COMMENT ON COLUMN profiles.bio IS 'free text';
	COMMENT ON CONSTRAINT profiles_handle_key ON profiles IS 'handles are unique';
	COMMENT ON INDEX profiles_pkey IS 'the key'$$);
CALL check_undo('profiles', $$COMMENT ON TABLE profiles IS NULL$$);

-- one statement of many kinds, undone together, newest first
ALTER TABLE profiles REPLICA IDENTITY DEFAULT;
CALL check_undo('profiles', $$ALTER TABLE profiles ADD COLUMN verified bool NOT NULL DEFAULT false,
	ALTER COLUMN bio SET DEFAULT '', ALTER COLUMN handle DROP NOT NULL,
	ADD CONSTRAINT bio_short CHECK (length(bio) < 200), DROP CONSTRAINT profiles_handle_key,
	ALTER COLUMN handle TYPE varchar(40), ALTER COLUMN handle SET STATISTICS 200,
	DISABLE TRIGGER profiles_audit$$);

-- what guard cannot undo is recorded, and restore refuses it by name;
-- the rest of its change set can still be restored change by change
BEGIN;
ALTER TABLE profiles ALTER COLUMN bio DROP DEFAULT;
ALTER TABLE profiles SET UNLOGGED;
COMMIT;
SELECT max(changeset_id) AS cs FROM guard.changesets \gset
SELECT kind, detail FROM guard.changes WHERE changeset_id = :cs ORDER BY change_id;
SELECT expect_error('SELECT * FROM guard.restore(' || :cs || ')');
SELECT kind FROM guard.restore_change((SELECT min(change_id) FROM guard.changes WHERE changeset_id = :cs));
SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'profiles'::regclass;

SELECT guard.unprotect('profiles');
DROP TABLE profiles;
DROP SCHEMA archive;
DROP FUNCTION touch();
