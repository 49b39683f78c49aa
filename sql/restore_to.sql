-- restore_to: undo, newest first, every change to one table recorded after
-- a point in time, keeping other tables' changes.
CREATE TABLE prices (sku int PRIMARY KEY, price numeric);
CREATE TABLE stock (sku int PRIMARY KEY, qty int);
INSERT INTO prices SELECT g, g FROM generate_series(1, 10) g;
INSERT INTO stock SELECT g, 100 FROM generate_series(1, 10) g;
SELECT guard.protect('prices');
SELECT guard.protect('stock');
SELECT md5(string_agg(p::text, ',' ORDER BY sku)) AS prices_md5 FROM prices p \gset
SELECT clock_timestamp() AS mark \gset
UPDATE prices SET price = price * 2;
UPDATE stock SET qty = 0 WHERE sku = 1;
DELETE FROM prices WHERE sku = 10;
INSERT INTO prices VALUES (11, 11);
UPDATE prices SET price = 0 WHERE sku = 1;
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore_to('prices', :'mark', dry_run => true);
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore_to('prices', :'mark');
SELECT md5(string_agg(p::text, ',' ORDER BY sku)) = :'prices_md5' AS prices_back FROM prices p;
SELECT qty FROM stock WHERE sku = 1;
-- nothing left to undo after that point
SELECT count(*) FROM guard.restore_to('prices', :'mark');
DROP TABLE prices, stock;

-- a procedure that commits as it goes (a batch job): its statements share
-- the CALL's statement time, so a change is dated by its transaction's
-- start when that is later, and a point between two of its transactions
-- splits them
CREATE TABLE batch (id int PRIMARY KEY, n int);
INSERT INTO batch SELECT g, 0 FROM generate_series(1, 4) g;
SELECT guard.protect('batch');
CREATE TABLE batch_marks (step int, at timestamptz);
CREATE PROCEDURE batch_job() LANGUAGE plpgsql AS $$
BEGIN
	FOR step IN 1..4 LOOP
		UPDATE batch SET n = step WHERE id <= step;
		COMMIT;
		INSERT INTO batch_marks VALUES (step, clock_timestamp());
		COMMIT;
	END LOOP;
END $$;
CALL batch_job();
SELECT count(DISTINCT at) AS distinct_change_times FROM guard.changes
 WHERE relation = 'public.batch';
SELECT kind, rows_restored FROM guard.restore_to('batch', (SELECT at FROM batch_marks WHERE step = 2));
SELECT * FROM batch ORDER BY id;
DROP PROCEDURE batch_job();
SELECT guard.unprotect('batch');
DROP TABLE batch, batch_marks;
