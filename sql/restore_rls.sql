-- restore_rls: row-level security.  guard.diff() shows a role only the rows
-- its SELECT policies let it see (before and after the change), and the
-- owner of a table with FORCE ROW LEVEL SECURITY can restore all of it.
SELECT fresh_ids();
CREATE ROLE regress_guard_rls_owner;
CREATE ROLE regress_guard_alice;
CREATE ROLE regress_guard_bob;
GRANT CREATE ON SCHEMA public TO regress_guard_rls_owner;
SET ROLE regress_guard_rls_owner;
CREATE TABLE docs (id int PRIMARY KEY, owner_name name, body text, n int);
INSERT INTO docs SELECT g, CASE WHEN g % 2 = 0 THEN 'regress_guard_alice' ELSE 'regress_guard_bob' END,
	'secret ' || g, g FROM generate_series(1, 10) g;
ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
-- each role sees its own documents; a restrictive policy hides n > 8
CREATE POLICY own ON docs USING (owner_name = current_user);
CREATE POLICY small ON docs AS RESTRICTIVE USING (n <= 8);
GRANT SELECT, UPDATE, DELETE ON docs TO regress_guard_alice, regress_guard_bob;
SELECT guard.protect('docs');
CREATE FUNCTION docs_md5() RETURNS text LANGUAGE sql AS
$$ SELECT md5(string_agg(d::text, '|' ORDER BY id)) || md5(string_agg(encode(record_send(d), 'hex'), '|' ORDER BY id)) FROM docs d $$;
RESET ROLE;

-- one update of every row (as the owner, who is not subject to the policies),
-- one that moves a document from bob to alice
SET ROLE regress_guard_rls_owner;
UPDATE docs SET body = body || '!';
SELECT max(change_id) AS upd FROM guard.changes \gset
UPDATE docs SET owner_name = 'regress_guard_alice', body = 'was bob''s' WHERE id = 3;
SELECT max(change_id) AS moved FROM guard.changes \gset
DELETE FROM docs WHERE id IN (4, 5);
SELECT max(change_id) AS del FROM guard.changes \gset
RESET ROLE;

-- each role sees only the rows its policies let it see
SET ROLE regress_guard_alice;
SELECT key, "column", before, after FROM guard.diff(:upd) ORDER BY key COLLATE "C", 2;
-- document 3 was bob's before: its before-image is not alice's to see
SELECT key, "column", before, after FROM guard.diff(:moved) ORDER BY key COLLATE "C", 2;
-- a deleted row: judged by its before-image
SELECT key, "column", before FROM guard.diff(:del) ORDER BY key COLLATE "C", 2;
RESET ROLE;
SET ROLE regress_guard_bob;
SELECT key, "column", before, after FROM guard.diff(:upd) ORDER BY key COLLATE "C", 2;
SELECT key, "column", before, after FROM guard.diff(:moved) ORDER BY key COLLATE "C", 2;
SELECT key, "column", before FROM guard.diff(:del) ORDER BY key COLLATE "C", 2;
RESET ROLE;
-- the owner (not subject to the policies) sees all of them
SET ROLE regress_guard_rls_owner;
SELECT count(*) AS owner_sees FROM guard.diff(:upd);
RESET ROLE;

-- FORCE ROW LEVEL SECURITY: the owner sees and writes only what the
-- policies allow, yet restores every row of the table
SELECT docs_md5() AS before_md5 \gset
SET ROLE regress_guard_rls_owner;
ALTER TABLE docs FORCE ROW LEVEL SECURITY;
SELECT count(*) AS owner_sees_forced FROM docs;
RESET ROLE;
BEGIN;
SELECT guard.label('bulk') AS cs \gset
UPDATE docs SET n = n + 100, body = 'overwritten';
DELETE FROM docs WHERE id = 9;
INSERT INTO docs VALUES (11, 'regress_guard_bob', 'new', 1);
COMMIT;
SET ROLE regress_guard_rls_owner;
SELECT relation, kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs) ORDER BY change_id DESC;
RESET ROLE;
SELECT docs_md5() = :'before_md5' AS restored;

RESET ROLE;
SELECT guard.unprotect('docs');
DROP TABLE docs;
DROP FUNCTION docs_md5();
REVOKE CREATE ON SCHEMA public FROM regress_guard_rls_owner;
DROP ROLE regress_guard_rls_owner, regress_guard_alice, regress_guard_bob;
