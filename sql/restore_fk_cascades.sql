-- restore_fk_cascades: a change set made by ON DELETE CASCADE, ON DELETE SET
-- NULL and ON UPDATE CASCADE between protected tables restores exactly
-- (the children's changes come later in the change set, so they are undone
-- first), later unrelated writes are kept, and the foreign keys are checked
-- at the end of the restore: one it would break is refused with 23503.
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
CREATE TABLE region (id int PRIMARY KEY, name text);
CREATE TABLE customer (id int PRIMARY KEY, region_id int REFERENCES region ON DELETE SET NULL,
	name text);
CREATE TABLE orders (id int PRIMARY KEY,
	customer_id int NOT NULL REFERENCES customer ON DELETE CASCADE ON UPDATE CASCADE,
	amount numeric, note text);
CREATE TABLE line (order_id int, n int, sku text,
	PRIMARY KEY (order_id, n), FOREIGN KEY (order_id) REFERENCES orders ON DELETE CASCADE ON UPDATE CASCADE);
INSERT INTO region SELECT g, 'region ' || g FROM generate_series(1, 4) g;
INSERT INTO customer SELECT g, 1 + g % 4, 'customer ' || g FROM generate_series(1, 20) g;
INSERT INTO orders SELECT g, 1 + g % 20, g * 1.25, NULL FROM generate_series(1, 100) g;
INSERT INTO line SELECT o, n, 'sku-' || o || '-' || n FROM generate_series(1, 100) o, generate_series(1, 3) n;
SELECT guard.protect('region');
SELECT guard.protect('customer');
SELECT guard.protect('orders');
SELECT guard.protect('line');

-- the state to come back to, with the later unrelated write applied
CREATE TABLE expected_orders AS SELECT * FROM orders;
UPDATE expected_orders SET note = 'later' WHERE id = 99;
SELECT rows_md5('region') AS region0, rows_md5('customer') AS customer0,
	   rows_md5('expected_orders') AS orders0, rows_md5('line') AS line0 \gset

-- one change set: cascades three levels deep, SET NULL, a key update cascaded
BEGIN;
SELECT guard.label('cascades') AS cs \gset
DELETE FROM customer WHERE id IN (1, 2);
DELETE FROM region WHERE id = 3;
UPDATE customer SET id = id + 1000 WHERE id IN (5, 6);
UPDATE orders SET id = id + 1000 WHERE id = 7;
COMMIT;
SELECT relation, rows FROM guard.changes WHERE changeset_id = :cs ORDER BY change_id;
SELECT count(*) AS orphans FROM orders o WHERE NOT EXISTS (SELECT FROM customer c WHERE c.id = o.customer_id);

-- a later write to a row the change set did not touch
UPDATE orders SET note = 'later' WHERE id = 99;

-- the drill, the dry run and the restore succeed, child changes first
SELECT ok, count(*) FROM guard.verify_restore(:cs) GROUP BY ok;
SELECT relation, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs, dry_run => true) ORDER BY change_id DESC;
SELECT relation, rows_restored, rows_skipped, conflicts
  FROM guard.restore(:cs) ORDER BY change_id DESC;
SELECT rows_md5('region') = :'region0' AS region_back,
	   rows_md5('customer') = :'customer0' AS customer_back,
	   rows_md5('orders') = :'orders0' AS orders_back,
	   rows_md5('line') = :'line0' AS line_back;

-- the restore was recorded (its writes too, though user and foreign key
-- triggers did not fire): restoring it redoes the cascades
SELECT changeset_id AS rcs FROM guard.changesets WHERE restore_of = :cs \gset
SELECT count(*) > 0 AS recorded FROM guard.changes WHERE changeset_id = :rcs;
SELECT count(*) AS customers_1_2 FROM customer WHERE id IN (1, 2);
SELECT sum(rows_restored) > 0 AS redone FROM guard.restore(:rcs);
SELECT count(*) AS customers_1_2, (SELECT count(*) FROM orders WHERE customer_id IN (1, 2)) AS their_orders
  FROM customer WHERE id IN (1, 2);
SELECT count(*) AS moved FROM customer WHERE id > 1000;
SELECT sum(rows_restored) > 0 AS undone_again
  FROM guard.restore((SELECT changeset_id FROM guard.changesets WHERE restore_of = :rcs));
SELECT rows_md5('region') = :'region0' AS region_back,
	   rows_md5('customer') = :'customer0' AS customer_back,
	   rows_md5('orders') = :'orders0' AS orders_back,
	   rows_md5('line') = :'line0' AS line_back;

-- a restore that would leave a dangling reference is refused, and changes
-- nothing: the new customer is referenced by an order made since
BEGIN;
SELECT guard.label('new customer') AS newcs \gset
INSERT INTO customer VALUES (50, 1, 'new');
COMMIT;
INSERT INTO orders VALUES (500, 50, 1, 'for the new customer');
SELECT expect_error('SELECT * FROM guard.restore(' || :newcs || ', dry_run => true)');
SELECT expect_error('SELECT * FROM guard.restore(' || :newcs || ')');
SELECT count(*) AS still_there FROM customer WHERE id = 50;
-- ... and the other way: an order whose customer was deleted since
BEGIN;
SELECT guard.label('drop order') AS ordcs \gset
DELETE FROM orders WHERE id = 500;
COMMIT;
DELETE FROM customer WHERE id = 50;
SELECT expect_error('SELECT * FROM guard.restore(' || :ordcs || ')');
SELECT count(*) AS not_back FROM orders WHERE id = 500;

-- with the customer back first, the order can be restored
SELECT relation, kind, rows_restored
  FROM guard.restore_to('customer', (SELECT at FROM guard.changesets WHERE changeset_id = :ordcs));
SELECT relation, kind, rows_restored FROM guard.restore(:ordcs);
SELECT id, customer_id FROM orders WHERE id = 500;

DROP TABLE line, orders, customer, region, expected_orders;
DROP FUNCTION rows_md5(regclass);
