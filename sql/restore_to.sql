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
