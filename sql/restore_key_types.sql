-- restore_key_types: rows are found again with the key index's own
-- equality, whatever the key's type (citext, hstore); long keys keep their
-- own later writes; a DEFERRABLE primary key is a key; an identity key set
-- to DEFAULT and a key that includes a generated column come back.
SELECT fresh_ids();
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS hstore;

-- rows_md5(rel): md5 of the rows as text and of their binary send forms
CREATE FUNCTION rows_md5(rel regclass) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r text;
BEGIN
	EXECUTE format('SELECT md5(string_agg(t::text, %L ORDER BY t::text)) || %L ||'
				   ' md5(string_agg(record_send(t), %L::bytea ORDER BY record_send(t))) FROM %s t',
				   '|', ' ', '\x00', rel) INTO r;
	RETURN r;
END
$$;

-- citext: an update of other columns, and one that changes a key's case
CREATE TABLE ci (k citext PRIMARY KEY, v int, w text);
INSERT INTO ci SELECT 'Key' || g, g, 'w' || g FROM generate_series(1, 6) g;
SELECT guard.protect('ci');
CREATE TABLE ci_expected AS SELECT * FROM ci;
BEGIN;
SELECT guard.label('citext') AS cs \gset
UPDATE ci SET v = v + 100 WHERE v <= 4;
UPDATE ci SET k = upper(k) WHERE v = 102;
DELETE FROM ci WHERE v = 5;
COMMIT;
-- later writes the change set did not make: another row, and the case of
-- a key (the same key for citext)
UPDATE ci SET w = 'later' WHERE v = 6;
UPDATE ci_expected SET w = 'later' WHERE v = 6;
UPDATE ci SET k = lower(k) WHERE v = 101;
UPDATE ci_expected SET k = lower(k) WHERE v = 1;
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore(:cs) ORDER BY change_id;
SELECT rows_md5('ci') = rows_md5('ci_expected') AS citext_exact;

-- hstore: its "=" is in the extension's schema
CREATE TABLE hs (k hstore PRIMARY KEY, v int);
INSERT INTO hs SELECT hstore('a', g::text), g FROM generate_series(1, 5) g;
SELECT guard.protect('hs');
CREATE TABLE hs_expected AS SELECT * FROM hs;
UPDATE hs SET v = v * 10;
SELECT kind, rows_restored, rows_skipped, conflicts
  FROM guard.restore((SELECT max(changeset_id) FROM guard.changesets));
SELECT rows_md5('hs') = rows_md5('hs_expected') AS hstore_exact;

-- keys longer than 255 bytes: each keeps its own later writes, so skip
-- keeps only the columns a later change wrote to that very key
CREATE TABLE lk (k text PRIMARY KEY, a text, b text);
INSERT INTO lk SELECT repeat('x', 300) || g, 'a' || g, 'b' || g FROM generate_series(1, 2) g;
SELECT guard.protect('lk');
UPDATE lk SET a = 'bad', b = 'bad';
SELECT max(changeset_id) AS lk_cs FROM guard.changesets \gset
UPDATE lk SET a = 'later a' WHERE k = repeat('x', 300) || 1;
UPDATE lk SET b = 'later b' WHERE k = repeat('x', 300) || 2;
SELECT rows_restored, rows_skipped, conflicts FROM guard.restore(:lk_cs, on_conflict => 'skip');
SELECT right(k, 1) AS k, a, b FROM lk ORDER BY k;

-- a DEFERRABLE primary key identifies rows as well
CREATE TABLE dp (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, v text);
INSERT INTO dp SELECT g, 'v' || g FROM generate_series(1, 5) g;
SELECT guard.protect('dp');
CREATE TABLE dp_expected AS SELECT * FROM dp;
BEGIN;
SELECT guard.label('deferrable') AS dp_cs \gset
UPDATE dp SET id = 6 - id;
UPDATE dp SET v = upper(v) WHERE id <= 2;
DELETE FROM dp WHERE id = 3;
COMMIT;
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore(:dp_cs) ORDER BY change_id;
SELECT rows_md5('dp') = rows_md5('dp_expected') AS deferrable_exact;

-- an identity key GENERATED ALWAYS, set to DEFAULT: written back with
-- OVERRIDING SYSTEM VALUE
CREATE TABLE ia (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text,
				 version int GENERATED ALWAYS AS IDENTITY (START 100));
INSERT INTO ia (v) SELECT 'v' || g FROM generate_series(1, 5) g;
SELECT guard.protect('ia');
CREATE TABLE ia_expected AS SELECT * FROM ia;
BEGIN;
SELECT guard.label('identity') AS ia_cs \gset
UPDATE ia SET id = DEFAULT WHERE id <= 2;
UPDATE ia SET version = DEFAULT, v = 'bumped' WHERE id = 4;
COMMIT;
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore(:ia_cs) ORDER BY change_id;
SELECT rows_md5('ia') = rows_md5('ia_expected') AS identity_exact;

-- a key that includes a generated column: diff shows it, and DELETE and
-- UPDATE undo find the row by it
CREATE TABLE gk (a int, b int, k int GENERATED ALWAYS AS (a * 10 + b) STORED, v text,
				 PRIMARY KEY (k));
INSERT INTO gk (a, b, v) SELECT g, 1, 'v' || g FROM generate_series(1, 5) g;
SELECT guard.protect('gk');
CREATE TABLE gk_expected AS SELECT * FROM gk;
BEGIN;
SELECT guard.label('generated key') AS gk_cs \gset
DELETE FROM gk WHERE a = 2;
UPDATE gk SET b = 2 WHERE a = 3;
COMMIT;
SELECT d.* FROM guard.changes c, guard.diff(c.change_id) d
 WHERE c.changeset_id = :gk_cs ORDER BY c.change_id, 1, 2;
SELECT relation, rows_checked, rows_matching, ok FROM guard.verify_restore(:gk_cs) ORDER BY change_id;
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore(:gk_cs) ORDER BY change_id;
SELECT rows_md5('gk') = rows_md5('gk_expected') AS generated_key_exact;

-- a text key generated from other columns, moved back while a new row
-- holds its old key: a conflict; overwrite replaces that row
CREATE TABLE gt (a text, b text, k text GENERATED ALWAYS AS (a || '-' || b) STORED PRIMARY KEY, v text);
INSERT INTO gt (a, b, v) SELECT 'a' || g, 'b', 'v' || g FROM generate_series(1, 5) g;
SELECT guard.protect('gt');
CREATE TABLE gt_expected AS SELECT * FROM gt;
UPDATE gt SET b = 'c' WHERE a IN ('a1', 'a2');
SELECT max(changeset_id) AS gt_cs FROM guard.changesets \gset
INSERT INTO gt (a, b, v) VALUES ('a1', 'b', 'taken');
SELECT expect_error('SELECT * FROM guard.restore(' || :gt_cs || ')');
SELECT rows_restored, rows_skipped, conflicts FROM guard.restore(:gt_cs, on_conflict => 'overwrite');
SELECT rows_md5('gt') = rows_md5('gt_expected') AS generated_text_key_exact;

DROP TABLE ci, ci_expected, hs, hs_expected, lk, dp, dp_expected, ia, ia_expected, gk, gk_expected,
	gt, gt_expected;
DROP FUNCTION rows_md5(regclass);
