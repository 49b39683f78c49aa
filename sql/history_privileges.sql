-- history_privileges: guard.as_of() and guard.history() show only what the
-- table would show the caller: SELECT on the table (as_of) or on columns
-- (history), and row level security applied to each version of a row.
SELECT fresh_ids();
CREATE ROLE regress_guard_alice;
CREATE ROLE regress_guard_bob;
CREATE ROLE regress_guard_carol;
CREATE ROLE regress_guard_nobody;
CREATE ROLE regress_guard_auditor;
GRANT guard_admin TO regress_guard_auditor;
CREATE TABLE docs (id int PRIMARY KEY, owner name NOT NULL, body text, secret text);
INSERT INTO docs VALUES (1, 'regress_guard_alice', 'a1', 's1'),
	(2, 'regress_guard_bob', 'b2', 's2'), (3, 'regress_guard_alice', 'a3', 's3');
ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON docs USING (owner = current_user);
GRANT SELECT ON docs TO regress_guard_alice, regress_guard_bob;
GRANT SELECT (id, owner, body) ON docs TO regress_guard_carol;
SELECT guard.protect('docs');
SELECT clock_timestamp() AS t0 \gset
UPDATE docs SET body = body || '!', secret = secret || '?';
UPDATE docs SET owner = 'regress_guard_bob' WHERE id = 3;	-- alice gives doc 3 to bob
UPDATE docs SET body = body || '!';

-- alice: her rows as they were, and the versions she could see (doc 3 up
-- to, not including, the change that gave it away)
SET ROLE regress_guard_alice;
SELECT * FROM guard.as_of(NULL::docs, :'t0') ORDER BY id;
SELECT change_id, row_key, "column", before, after FROM guard.history('docs')
 ORDER BY change_id, row_key::text, "column";
-- bob: doc 3 only from when it is his
SET ROLE regress_guard_bob;
SELECT * FROM guard.as_of(NULL::docs, :'t0') ORDER BY id;
SELECT change_id, row_key, "column", before, after FROM guard.history('docs')
 ORDER BY change_id, row_key::text, "column";
RESET ROLE;

-- carol may read some columns and no row (no policy lets her): as_of needs
-- SELECT on the table, history shows her nothing
SET ROLE regress_guard_carol;
SELECT expect_error(format('SELECT * FROM guard.as_of(NULL::docs, %L)', :'t0'));
SELECT count(*) FROM guard.history('docs');
RESET ROLE;
-- without row level security, carol sees her columns only, not "secret"
ALTER TABLE docs DISABLE ROW LEVEL SECURITY;
SET ROLE regress_guard_carol;
SELECT change_id, row_key, "column", before, after FROM guard.history('docs', '{"id": 1}');
RESET ROLE;
-- a role without SELECT gets an error from both
SET ROLE regress_guard_nobody;
SELECT expect_error(format('SELECT * FROM guard.as_of(NULL::docs, %L)', :'t0'));
SELECT expect_error($$SELECT * FROM guard.history('docs')$$);
RESET ROLE;
-- a key column carol cannot read: refused
REVOKE SELECT (id) ON docs FROM regress_guard_carol;
SET ROLE regress_guard_carol;
SELECT expect_error($$SELECT * FROM guard.history('docs')$$);
RESET ROLE;
ALTER TABLE docs ENABLE ROW LEVEL SECURITY;

-- guard_admin reads every snapshot, as with guard.diff()
SET ROLE regress_guard_auditor;
SELECT count(*) AS rows_then FROM guard.as_of(NULL::docs, :'t0');
SELECT count(*) AS versions FROM guard.history('docs');
RESET ROLE;

DROP POLICY own ON docs;
DROP TABLE docs;
SELECT dropped_tables > 0 AS purged FROM guard.purge('0 seconds');
DROP ROLE regress_guard_alice, regress_guard_bob, regress_guard_carol,
	regress_guard_nobody, regress_guard_auditor;
