-- policy_permissions: only the table's owner or a member of guard_admin may
-- protect or unprotect it; nobody but a superuser can switch capture off.
CREATE ROLE regress_guard_owner;
CREATE ROLE regress_guard_other;
CREATE ROLE regress_guard_adm;
GRANT guard_admin TO regress_guard_adm;
GRANT CREATE ON SCHEMA public TO regress_guard_owner;

SET ROLE regress_guard_owner;
CREATE TABLE owned (id int PRIMARY KEY, v text);
SELECT guard.protect('owned');
SELECT guard_triggers('owned');
RESET ROLE;

-- a stranger, even with every privilege on the table, may not
GRANT ALL ON owned TO regress_guard_other;
SET ROLE regress_guard_other;
SELECT expect_error($$SELECT guard.protect('owned', capture => 'none')$$);
SELECT expect_error($$SELECT guard.unprotect('owned')$$);
RESET ROLE;
SELECT capture FROM guard.policies WHERE relation = 'owned'::regclass;

-- guard_admin may
SET ROLE regress_guard_adm;
SELECT guard.protect('owned', mode => 'warn');
SELECT guard.unprotect('owned');
SELECT guard.protect('owned');
RESET ROLE;

-- the owner cannot bypass capture
SET ROLE regress_guard_owner;
SELECT expect_error($$DROP TRIGGER guard_capture_upd ON owned$$);
SELECT expect_error($$ALTER TABLE owned DISABLE TRIGGER guard_capture_upd$$);
SELECT expect_error($$ALTER TABLE owned DISABLE TRIGGER ALL$$);
SELECT expect_error($$ALTER TABLE owned DISABLE TRIGGER USER$$);
SELECT expect_error($$ALTER TABLE owned ENABLE REPLICA TRIGGER guard_capture_ins$$);
SELECT expect_error($$ALTER TRIGGER guard_capture_del ON owned RENAME TO hidden$$);
SELECT expect_error($$SET guard.enabled = off$$);
SELECT expect_error($$SET guard.mode = 'warn'$$);
SELECT expect_error($$SET session_replication_role = replica$$);
SELECT guard_triggers('owned');
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid = 'owned'::regclass ORDER BY tgname;

-- the table's other triggers are the owner's business
CREATE FUNCTION owned_noop() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN RETURN NULL; END$$;
CREATE TRIGGER my_trigger AFTER INSERT ON owned
	FOR EACH STATEMENT EXECUTE FUNCTION owned_noop();
ALTER TABLE owned DISABLE TRIGGER my_trigger;
DROP TRIGGER my_trigger ON owned;
DROP FUNCTION owned_noop();
RESET ROLE;

-- a superuser may (and is logged)
ALTER TABLE owned DISABLE TRIGGER guard_capture_upd;
ALTER TABLE owned ENABLE TRIGGER guard_capture_upd;
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid = 'owned'::regclass ORDER BY tgname;

-- guard's records are not readable directly
SET ROLE regress_guard_other;
SELECT expect_error($$SELECT * FROM guard.policy$$);
SELECT expect_error($$SELECT * FROM guard.snapshot$$);
SELECT expect_error($$SELECT * FROM guard.change$$);
SELECT expect_error($$INSERT INTO guard.policy VALUES ('owned', 'none', NULL, 1, NULL, NULL, false, now(), 'x')$$);
RESET ROLE;

DROP TABLE owned;
REVOKE CREATE ON SCHEMA public FROM regress_guard_owner;
-- dropped protected tables wait in guard's trash until purged
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
DROP ROLE regress_guard_owner, regress_guard_other, regress_guard_adm;
