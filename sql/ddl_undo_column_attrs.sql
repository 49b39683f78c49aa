-- ddl_undo_column_attrs: SET/DROP DEFAULT, SET/DROP NOT NULL, SET
-- STATISTICS, SET STORAGE and SET COMPRESSION are recorded with their own
-- kind and undone; the undo is undone too (check_undo compares the table
-- before the change, after its undo, and after the undo of the undo).
SELECT fresh_ids();
CREATE TABLE accounts (id int PRIMARY KEY, email text NOT NULL, plan text DEFAULT 'free',
	balance numeric(12,2), seq_no bigint);
CREATE SEQUENCE accounts_seq;
ALTER TABLE accounts ALTER COLUMN seq_no SET DEFAULT nextval('accounts_seq');
INSERT INTO accounts (id, email, balance) SELECT g, 'a' || g || '@x', g * 10 FROM generate_series(1, 10) g;
SELECT guard.protect('accounts');

-- defaults: dropped, set, changed; the old expression comes back qualified
CALL check_undo('accounts', $$ALTER TABLE accounts ALTER COLUMN plan DROP DEFAULT$$);
CALL check_undo('accounts', $$ALTER TABLE accounts ALTER COLUMN balance SET DEFAULT 0$$);
CALL check_undo('accounts', $$ALTER TABLE accounts ALTER COLUMN plan SET DEFAULT 'trial'$$);
CALL check_undo('accounts', $$ALTER TABLE accounts ALTER COLUMN seq_no DROP DEFAULT$$);
SELECT kind, detail FROM guard.changes WHERE detail ->> 'column' = 'seq_no' ORDER BY change_id LIMIT 1;
-- NOT NULL
CALL check_undo('accounts', $$ALTER TABLE accounts ALTER COLUMN email DROP NOT NULL$$);
CALL check_undo('accounts', $$ALTER TABLE accounts ALTER COLUMN balance SET NOT NULL$$);
-- (check_undo leaves the change in effect: balance is NOT NULL now)
-- the undo of DROP NOT NULL fails on NULLs written since, as SET NOT NULL would
ALTER TABLE accounts ALTER COLUMN balance DROP NOT NULL;
SELECT max(changeset_id) AS cs FROM guard.changesets \gset
UPDATE accounts SET balance = NULL WHERE id = 1;
SELECT expect_error('SELECT * FROM guard.restore(' || :cs || ')');
UPDATE accounts SET balance = 10 WHERE id = 1;
SELECT kind FROM guard.restore(:cs);
SELECT attnotnull FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'balance';
-- statistics target, storage, compression, several in one statement
CALL check_undo('accounts', $$ALTER TABLE accounts ALTER COLUMN email SET STATISTICS 1000$$);
CALL check_undo('accounts', $$ALTER TABLE accounts ALTER COLUMN email SET STORAGE EXTERNAL,
	ALTER COLUMN plan SET COMPRESSION pglz, ALTER COLUMN balance SET STATISTICS 0$$);

SELECT guard.unprotect('accounts');
DROP TABLE accounts;
DROP SEQUENCE accounts_seq;
