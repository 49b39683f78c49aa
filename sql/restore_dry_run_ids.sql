-- restore_dry_run_ids: a dry run records its changes under provisional ids
-- and rolls them back, so it uses up no change or change set id: guard's
-- sequences are where they were, and the next real change takes the next
-- id.  guard.restore, restore_change and restore_to dry runs and the
-- verify_restore drill, including one whose table has a warn-mode invariant
-- that the restore violates.
SELECT fresh_ids();
CREATE TABLE stock (sku int PRIMARY KEY, qty int NOT NULL);
INSERT INTO stock SELECT g, 10 FROM generate_series(1, 10) g;
SELECT guard.protect('stock', mode => 'warn');
SELECT now() AS before_update \gset
UPDATE stock SET qty = qty + 1 WHERE sku <= 4;
SELECT max(changeset_id) AS cs, max(change_id) AS ch FROM guard.changes \gset
-- the restore puts back rows that this later invariant rejects
SELECT guard.add_invariant('stock', 'qty_above_10', row_check => 'qty > 10',
						   deferred => false, accept_existing => true);

CREATE FUNCTION seqs() RETURNS text LANGUAGE sql AS $$
	SELECT format('change %s %s, changeset %s %s, violation %s %s',
				  c.last_value, c.is_called, s.last_value, s.is_called,
				  v.last_value, v.is_called)
	  FROM guard.change_id_seq c, guard.changeset_id_seq s, guard.violation_id_seq v
$$;
SELECT seqs() AS seqs_before \gset

SELECT kind, rows_restored FROM guard.restore(:cs, dry_run => true);
SELECT seqs() = :'seqs_before' AS unchanged;
SELECT kind, rows_restored FROM guard.restore_change(:ch, dry_run => true);
SELECT seqs() = :'seqs_before' AS unchanged;
SELECT kind, rows_restored FROM guard.restore_to('stock', :'before_update', dry_run => true);
SELECT seqs() = :'seqs_before' AS unchanged;
SELECT relation, rows_checked, rows_matching, ok FROM guard.verify_restore(:cs);
SELECT seqs() = :'seqs_before' AS unchanged;
-- nothing of the dry runs was kept, not even a violation
SELECT count(*) FROM guard.changes WHERE change_id > :ch;
SELECT count(*) FROM guard.violations;

-- the real restore takes the next ids: none was lost
SELECT kind, rows_restored FROM guard.restore(:cs);
SELECT change_id - :ch AS after_last, changeset_id - :cs AS after_last_set, kind
  FROM guard.changes WHERE change_id > :ch ORDER BY change_id;
SELECT invariant, change_id - :ch AS change, changeset_id - :cs AS changeset, rows
  FROM guard.violations;

-- in a transaction that recorded a change set already, too (a dry run of
-- undoing the restore)
SELECT max(changeset_id) AS restore_cs FROM guard.changesets \gset
BEGIN;
UPDATE stock SET qty = qty + 1 WHERE sku = 9;
SELECT seqs() AS seqs_in_xact \gset
SELECT kind, rows_restored FROM guard.restore(:restore_cs, dry_run => true);
SELECT seqs() = :'seqs_in_xact' AS unchanged;
ROLLBACK;

DROP TABLE stock;
DROP FUNCTION seqs();
DELETE FROM guard.violation WHERE relation = 'public.stock';
