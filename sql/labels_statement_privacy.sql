-- labels_statement_privacy: the text of a statement may quote the values
-- it wrote (drivers that substitute parameters on the client), so
-- guard.changes.statement is shown only to those who may read every table
-- that statement changed, with no row-level security hiding rows from
-- them, and to guard_admin.  Others see the change, without its text.
SELECT fresh_ids();
CREATE ROLE regress_stmt_reader;
CREATE ROLE regress_stmt_auditor;
GRANT guard_admin TO regress_stmt_auditor;
CREATE TABLE profiles (id int PRIMARY KEY, name text);
CREATE TABLE credentials (id int PRIMARY KEY, pw_hash text);
INSERT INTO profiles VALUES (1, 'ann');
INSERT INTO credentials VALUES (1, 'old');
GRANT SELECT ON profiles TO regress_stmt_reader;
SELECT guard.protect('profiles');
SELECT guard.protect('credentials');

-- one statement writing both tables
WITH c AS (UPDATE credentials SET pw_hash = 'pbkdf2$secret' WHERE id = 1 RETURNING id)
UPDATE profiles SET name = 'ann b' WHERE id IN (SELECT id FROM c);
-- a statement writing only the readable table
UPDATE profiles SET name = 'ann c' WHERE id = 1;
-- one query string of two statements (a driver or a tool sending a whole
-- file): a schema change may be recorded with the whole string
ALTER TABLE profiles ADD COLUMN nick text \; UPDATE credentials SET pw_hash = 'second$secret' WHERE id = 1;

SET ROLE regress_stmt_reader;
SELECT relation, kind, statement FROM guard.changes ORDER BY change_id;
RESET ROLE;
SET ROLE regress_stmt_auditor;
SELECT relation, kind, statement IS NOT NULL AS has_text FROM guard.changes ORDER BY change_id;
RESET ROLE;

-- row-level security: a reader who sees only some rows sees no text
CREATE TABLE notes (id int PRIMARY KEY, owner name, body text);
INSERT INTO notes VALUES (1, 'regress_stmt_reader', 'mine'), (2, 'someone', 'theirs');
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON notes USING (owner = current_user);
GRANT SELECT ON notes TO regress_stmt_reader;
SELECT guard.protect('notes');
UPDATE notes SET body = 'their secret' WHERE id = 2;
SET ROLE regress_stmt_reader;
SELECT relation, kind, statement FROM guard.changes WHERE relation = 'public.notes';
RESET ROLE;
SELECT relation, kind, statement FROM guard.changes WHERE relation = 'public.notes';

DROP POLICY own ON notes;
DROP TABLE profiles, credentials, notes;
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
DROP ROLE regress_stmt_reader, regress_stmt_auditor;
