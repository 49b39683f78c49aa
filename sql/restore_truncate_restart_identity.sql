-- restore_truncate_restart_identity: undoing TRUNCATE ... RESTART IDENTITY
-- brings back the rows and the owned sequences (identity and serial) where
-- they were, so the next INSERT does not collide; a sequence that went
-- further since is left where it is.
SELECT fresh_ids();
CREATE TABLE ticket (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	seq bigserial, title text);
INSERT INTO ticket (title) SELECT 'ticket ' || g FROM generate_series(1, 25) g;
DELETE FROM ticket WHERE id > 20;
SELECT guard.protect('ticket');
SELECT md5(string_agg(t::text, '|' ORDER BY id)) || md5(string_agg(encode(record_send(t), 'hex'), '|' ORDER BY id))
	AS before_md5 FROM ticket t \gset
SELECT last_value, is_called FROM ticket_id_seq;
SELECT last_value, is_called FROM ticket_seq_seq;

BEGIN;
SELECT guard.label('wipe') AS cs \gset
TRUNCATE ticket RESTART IDENTITY;
COMMIT;
SELECT last_value, is_called FROM ticket_id_seq;

SELECT kind, rows_restored FROM guard.restore(:cs);
SELECT md5(string_agg(t::text, '|' ORDER BY id)) || md5(string_agg(encode(record_send(t), 'hex'), '|' ORDER BY id))
	= :'before_md5' AS restored FROM ticket t;
SELECT last_value, is_called FROM ticket_id_seq;
SELECT last_value, is_called FROM ticket_seq_seq;
-- the next row gets the next number, as before the TRUNCATE
INSERT INTO ticket (title) VALUES ('after') RETURNING id, seq;

-- the restore itself can be undone (rows only: the sequences stay ahead)
SELECT sum(rows_restored) AS redone
  FROM guard.restore((SELECT changeset_id FROM guard.changesets WHERE restore_of = :cs));
SELECT count(*) FROM ticket;

-- a sequence that went further since stays where it is
INSERT INTO ticket (title) VALUES ('a'), ('b');
BEGIN;
SELECT guard.label('wipe again') AS cs2 \gset
TRUNCATE ticket RESTART IDENTITY;
COMMIT;
INSERT INTO ticket (title) SELECT 'refill ' || g FROM generate_series(1, 40) g;
SELECT last_value FROM ticket_id_seq;
SELECT kind, rows_restored, rows_skipped, conflicts FROM guard.restore(:cs2, on_conflict => 'skip');
SELECT last_value FROM ticket_id_seq;

-- without RESTART IDENTITY nothing is recorded for the sequences
BEGIN;
SELECT guard.label('wipe, keep numbers') AS cs3 \gset
TRUNCATE ticket;
COMMIT;
SELECT detail IS NULL AS no_detail FROM guard.changes WHERE changeset_id = :cs3;

SELECT guard.unprotect('ticket');
DROP TABLE ticket;
