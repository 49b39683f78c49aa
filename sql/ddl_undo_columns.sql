-- ddl_undo_columns: DROP COLUMN's undo brings back what went with the
-- column (indexes, constraints, foreign keys both ways, views, statistics,
-- comment, statistics target); ALTER COLUMN TYPE of a key column is
-- undone; an undone ADD COLUMN takes along what was built on the column
-- since and says so; and every undo is undone in turn.
SELECT fresh_ids();
CREATE TABLE teams (id int PRIMARY KEY, name text);
INSERT INTO teams SELECT g, 't' || g FROM generate_series(1, 3) g;
CREATE TABLE members (id int PRIMARY KEY, team_id int NOT NULL DEFAULT 1, email text, score numeric(6,2),
	since date DEFAULT '2026-01-01', city text,
	city_upper text GENERATED ALWAYS AS (upper(city)) STORED);
INSERT INTO members (id, team_id, email, score, city) SELECT g, 1 + g % 3, 'm' || g || '@x', g * 1.5, 'c' || g % 4
  FROM generate_series(1, 12) g;
SELECT guard.protect('members');

-- ALTER COLUMN TYPE with NOT NULL and DEFAULT, undone and redone
CALL check_undo('members', $$ALTER TABLE members ALTER COLUMN since TYPE timestamptz$$);
CALL check_undo('members', $$ALTER TABLE members ALTER COLUMN team_id TYPE bigint,
	ALTER COLUMN score TYPE int USING round(score)$$);
-- a key column: cast back when its new values convert back exactly
CALL check_undo('members', $$ALTER TABLE members ALTER COLUMN id TYPE bigint$$);
CALL check_undo('members', $$ALTER TABLE members ALTER COLUMN id TYPE text$$);
-- ... and refused, by name, when they do not
ALTER TABLE members ALTER COLUMN id TYPE numeric USING id::numeric + 0.5;
SELECT max(changeset_id) AS cs FROM guard.changesets \gset
SELECT kind, detail ->> 'key' AS key, detail ->> 'converts_back' AS converts_back
  FROM guard.changes WHERE changeset_id = :cs;
SELECT expect_error('SELECT * FROM guard.restore(' || :cs || ')');
ALTER TABLE members ALTER COLUMN id TYPE int USING floor(id);

-- DROP COLUMN takes its indexes, constraints, comment, statistics target,
-- statistics objects, views, and (CASCADE) other tables' foreign keys
ALTER TABLE members ADD CONSTRAINT members_team_fkey FOREIGN KEY (team_id) REFERENCES teams,
	ADD CONSTRAINT members_email_key UNIQUE (email), ADD CONSTRAINT score_range CHECK (score BETWEEN 0 AND 100),
	ALTER COLUMN email SET STATISTICS 500;
CREATE INDEX members_email_lower ON members (lower(email)) WHERE score > 1;
COMMENT ON COLUMN members.email IS 'login';
CREATE STATISTICS members_email_score ON email, score FROM members;
CREATE VIEW member_emails AS SELECT id, email FROM members;
CREATE VIEW member_emails_upper AS SELECT upper(email) FROM member_emails;
CREATE TABLE invites (email text REFERENCES members (email));
INSERT INTO invites VALUES ('m1@x');
CALL check_undo('members', $$ALTER TABLE members DROP COLUMN email CASCADE$$);
-- (undone once more: the views and the other table's foreign key are back)
SELECT kind FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
SELECT * FROM member_emails_upper ORDER BY 1 LIMIT 2;
SELECT conname FROM pg_constraint WHERE conrelid = 'invites'::regclass;
-- the other side of a foreign key, and a column with NOT NULL and a default
CALL check_undo('members', $$ALTER TABLE members DROP COLUMN team_id$$);
-- a generated column comes back generated
CALL check_undo('members', $$ALTER TABLE members DROP COLUMN city_upper$$);

-- an ADD COLUMN undone drops what was built on the column since, such as
-- an index made by a later migration CONCURRENTLY; the dry run names it
ALTER TABLE members ADD COLUMN nickname text;
SELECT max(changeset_id) AS add_cs FROM guard.changesets \gset
CREATE INDEX CONCURRENTLY members_nickname_idx ON members (nickname);
CREATE VIEW nicknames AS SELECT nickname FROM members;
SELECT kind, rows_restored, objects FROM guard.restore(:add_cs, dry_run => true);
SELECT count(*) FROM pg_class WHERE relname IN ('members_nickname_idx', 'nicknames');
SELECT kind, rows_restored, objects FROM guard.restore(:add_cs);
SELECT count(*) FROM pg_class WHERE relname IN ('members_nickname_idx', 'nicknames');
-- and its undo brings them back
SELECT kind, objects FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
SELECT relname FROM pg_class WHERE relname IN ('members_nickname_idx', 'nicknames') ORDER BY 1;

-- ADD COLUMN IF NOT EXISTS of a column there adds nothing: nothing to undo
SELECT count(*) AS changes_before FROM guard.changes \gset
ALTER TABLE members ADD COLUMN IF NOT EXISTS city text;
SELECT count(*) - :changes_before AS recorded FROM guard.changes;

DROP VIEW nicknames, member_emails_upper, member_emails;
DROP TABLE invites;
SELECT guard.unprotect('members');
DROP TABLE members, teams;
