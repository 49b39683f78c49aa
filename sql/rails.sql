-- rails: require_where, max_rows and max_fraction refuse a statement before
-- anything of it is kept, naming the limit, the table and the count.
CREATE TABLE orders (id int PRIMARY KEY, status text);
INSERT INTO orders SELECT g, 'open' FROM generate_series(1, 100) g;
SELECT guard.protect('orders', require_where => true);

SELECT expect_error($$UPDATE orders SET status = 'closed'$$);
SELECT expect_error($$UPDATE orders SET status = 'closed' WHERE true$$);
SELECT expect_error($$UPDATE orders SET status = 'closed' WHERE 1 = 1$$);
SELECT expect_error($$UPDATE orders SET status = 'closed' WHERE 1 = 1 AND 2 > 1$$);
SELECT expect_error($$DELETE FROM orders$$);
SELECT expect_error($$DELETE FROM orders WHERE 'a' = 'a'$$);
-- a WHERE that names rows passes, even one matching them all
UPDATE orders SET status = 'closed' WHERE id = 1;
UPDATE orders SET status = 'closed' WHERE id > 0 AND id <= 1;
UPDATE orders SET status = 'open' WHERE status IS NOT NULL AND id = 1;
-- a prepared statement and a function are checked too
SELECT expect_error($$PREPARE p AS DELETE FROM orders$$);
CREATE FUNCTION wipe() RETURNS void LANGUAGE plpgsql AS $$BEGIN DELETE FROM orders; END$$;
SELECT expect_error($$SELECT wipe()$$);
SELECT count(*) FROM orders;

-- max_rows
SELECT guard.protect('orders', max_rows => 10);
SELECT expect_error($$UPDATE orders SET status = 'x' WHERE id <= 11$$);
SELECT expect_error($$DELETE FROM orders WHERE id <= 11$$);
SELECT expect_error($$INSERT INTO orders SELECT g, 'new' FROM generate_series(101, 111) g$$);
UPDATE orders SET status = 'x' WHERE id <= 10;
SELECT count(*) FILTER (WHERE status = 'x') AS updated, count(*) AS total FROM orders;

-- max_fraction: of the rows in the table (estimated after ANALYZE, counted before)
SELECT guard.protect('orders', max_fraction => 0.1);
SELECT expect_error($$DELETE FROM orders WHERE id <= 11$$);
DELETE FROM orders WHERE id <= 10;
ANALYZE orders;
SELECT expect_error($$UPDATE orders SET status = 'y' WHERE id <= 20$$);
UPDATE orders SET status = 'y' WHERE id <= 19;
SELECT count(*) FROM orders;

-- rails hold without DML capture too
CREATE TABLE events (a int, b int);
INSERT INTO events SELECT g, g FROM generate_series(1, 10) g;
SELECT guard.protect('events', capture => 'ddl', max_rows => 2, require_where => true);
SELECT expect_error($$DELETE FROM events$$);
SELECT expect_error($$DELETE FROM events WHERE a < 5$$);
DELETE FROM events WHERE a < 3;
SELECT count(*) FROM events;

-- a superuser with guard.enabled off is not stopped
SET guard.enabled = off;
DELETE FROM events;
RESET guard.enabled;

DROP FUNCTION wipe();
DROP TABLE orders, events;
