-- ddl_undo_constraints: ADD CONSTRAINT (CHECK, UNIQUE, PRIMARY KEY,
-- FOREIGN KEY, EXCLUDE, NOT VALID, USING INDEX), DROP CONSTRAINT and
-- VALIDATE CONSTRAINT are recorded with their own kind and undone, and
-- their undo is undone too.
SELECT fresh_ids();
CREATE TABLE customers (id int PRIMARY KEY, name text);
INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 5) g;
CREATE TABLE orders (id int, customer_id int, amount numeric, code text, note text);
INSERT INTO orders SELECT g, 1 + g % 5, g * 2, 'o' || g, NULL FROM generate_series(1, 20) g;
ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id);
SELECT guard.protect('orders');

-- each type of constraint, named or not, several in one statement
CALL check_undo('orders', $$ALTER TABLE orders ADD CONSTRAINT amount_positive CHECK (amount > 0)$$);
CALL check_undo('orders', $$ALTER TABLE orders ADD UNIQUE (code), ADD CHECK (amount < 1000),
	ADD FOREIGN KEY (customer_id) REFERENCES customers ON DELETE CASCADE$$);
SELECT kind, detail FROM guard.changes WHERE kind = 'ADD CONSTRAINT' ORDER BY change_id DESC LIMIT 3;
CALL check_undo('orders', $$ALTER TABLE orders ADD CONSTRAINT small CHECK (amount < 30) NOT VALID$$);
CALL check_undo('orders', $$ALTER TABLE orders ADD CONSTRAINT code_key UNIQUE (code) DEFERRABLE INITIALLY DEFERRED$$);
-- a PRIMARY KEY makes its columns NOT NULL; the undo gives them their NULLs back
CALL check_undo('orders', $$ALTER TABLE orders DROP CONSTRAINT orders_pkey,
	ADD PRIMARY KEY (id, customer_id)$$);
-- USING INDEX takes over an index: the undo gives it back, with its comment
CREATE UNIQUE INDEX orders_code_idx ON orders (code);
COMMENT ON INDEX orders_code_idx IS 'codes are unique';
CALL check_undo('orders', $$ALTER TABLE orders ADD CONSTRAINT orders_code_unique UNIQUE USING INDEX orders_code_idx$$);
-- DROP CONSTRAINT: back with its definition and comment
COMMENT ON CONSTRAINT amount_positive ON orders IS 'no free orders';
CALL check_undo('orders', $$ALTER TABLE orders DROP CONSTRAINT amount_positive$$);
-- DROP CONSTRAINT ... CASCADE: the foreign keys of other tables come back
-- (the primary key is (id, customer_id) now)
CREATE TABLE shipments (order_id int, customer_id int,
	FOREIGN KEY (order_id, customer_id) REFERENCES orders (id, customer_id));
INSERT INTO shipments SELECT id, customer_id FROM orders WHERE id <= 3;
CALL check_undo('orders', $$ALTER TABLE orders DROP CONSTRAINT orders_pkey CASCADE$$);
SELECT conname FROM pg_constraint WHERE conrelid = 'shipments'::regclass;
-- undoing ADD CONSTRAINT drops what was built on it since, and says so
ALTER TABLE orders ADD CONSTRAINT orders_note_key UNIQUE (note);
SELECT max(changeset_id) AS add_cs FROM guard.changesets \gset
CREATE TABLE returns (note text REFERENCES orders (note));
SELECT kind, objects FROM guard.restore(:add_cs, dry_run => true);
SELECT kind, objects FROM guard.restore(:add_cs);
SELECT count(*) FROM pg_constraint WHERE conrelid = 'returns'::regclass;

-- VALIDATE: undone by putting the constraint back NOT VALID; a change set
-- holding only a VALIDATE of a valid constraint restores as a no-op
ALTER TABLE orders ADD CONSTRAINT under_100 CHECK (amount < 100) NOT VALID;
CALL check_undo('orders', $$ALTER TABLE orders VALIDATE CONSTRAINT under_100$$);
CALL check_undo('orders', $$ALTER TABLE orders VALIDATE CONSTRAINT under_100$$);
SELECT convalidated FROM pg_constraint WHERE conname = 'under_100';

SELECT guard.unprotect('orders');
DROP TABLE returns, shipments;
DROP TABLE orders, customers;
