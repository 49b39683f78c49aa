-- changes_records: one change set per top-level transaction, one change per
-- statement and table, with label, role, application name and statement.
CREATE TABLE users (id int PRIMARY KEY, email text, plan text);
CREATE TABLE orders (id int PRIMARY KEY, user_id int, total int);
INSERT INTO users SELECT g, 'u' || g || '@example.com', 'free' FROM generate_series(1, 5) g;
INSERT INTO orders SELECT g, g, g * 10 FROM generate_series(1, 5) g;
SELECT guard.protect('users');
SELECT guard.protect('orders');
SELECT coalesce(max(changeset_id), 0) AS cs0 FROM guard.changeset \gset

-- a migration: label first, then several statements over two tables
SET application_name = 'migrate-42';
BEGIN;
SELECT guard.label('2026_11_25_upgrade_plans') = guard.label('2026_11_25_upgrade_plans') AS same_id;
UPDATE users SET plan = 'pro' WHERE id <= 2;
UPDATE orders SET total = total * 2 WHERE user_id <= 2;
DELETE FROM orders WHERE id = 5;
COMMIT;
RESET application_name;
SELECT label, role, application_name, changes, rows, relations
  FROM guard.changesets WHERE changeset_id > :cs0;
SELECT kind, relation, rows, statement, state, role, application_name
  FROM guard.changes WHERE changeset_id > :cs0 ORDER BY change_id;

-- the label may be set after the writes, and changed
BEGIN;
UPDATE users SET plan = 'team' WHERE id = 3;
SELECT guard.label('first name') > 0 AS labelled;
SELECT guard.label('second name') > 0 AS relabelled;
COMMIT;
SELECT label, changes FROM guard.changesets ORDER BY changeset_id DESC LIMIT 1;

-- autocommit statements are change sets of their own
UPDATE users SET plan = 'a' WHERE id = 4;
UPDATE users SET plan = 'b' WHERE id = 4;
SELECT label, changes, rows FROM guard.changesets ORDER BY changeset_id DESC LIMIT 2;

-- a multi-statement query string: each statement records its own text
UPDATE users SET email = 'x' WHERE id = 5\; UPDATE orders SET total = 0 WHERE id = 4;
SELECT statement FROM guard.changes ORDER BY change_id DESC LIMIT 2;

-- a statement run by a function records the inner statement and the role
CREATE FUNCTION bump(int) RETURNS void LANGUAGE plpgsql AS
$$BEGIN UPDATE orders SET total = total + 1 WHERE id = $1; END$$;
SELECT bump(1);
SELECT kind, statement FROM guard.changes ORDER BY change_id DESC LIMIT 1;

-- writes by a cascade are captured on the table they reach
ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users ON DELETE CASCADE;
DELETE FROM users WHERE id = 1;
SELECT relation, kind, rows FROM guard.changes ORDER BY change_id DESC LIMIT 2;

-- change set ids and xids: one per transaction
SELECT count(*) = count(DISTINCT xid) AS one_xid_each FROM guard.changesets;

-- guard.label() with nothing to label still creates the change set
BEGIN;
SELECT guard.label('empty') > 0;
COMMIT;
SELECT label, changes FROM guard.changeset cs
  LEFT JOIN LATERAL (SELECT count(*) AS changes FROM guard.change c
					  WHERE c.changeset_id = cs.changeset_id) c ON true
 ORDER BY changeset_id DESC LIMIT 1;

DROP FUNCTION bump(int);
DROP TABLE orders, users;
