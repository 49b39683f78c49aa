-- bench/sql/report.sql: Markdown tables from bench.results (medians).
-- psql -At prints each SELECT's single text value as-is.
\pset footer off

CREATE TEMP TABLE med AS
SELECT workload, variant, count(*) AS n,
	   percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms,
	   percentile_cont(0.5) WITHIN GROUP (ORDER BY tps) AS tps,
	   min(ms) AS ms_min, max(ms) AS ms_max,
	   percentile_cont(0.5) WITHIN GROUP (ORDER BY wal_bytes) AS wal,
	   percentile_cont(0.5) WITHIN GROUP (ORDER BY snap_bytes) AS snap,
	   percentile_cont(0.5) WITHIN GROUP (ORDER BY snap_rows) AS snap_rows,
	   percentile_cont(0.5) WITHIN GROUP (ORDER BY overwritten_bytes) AS overwritten,
	   percentile_cont(0.5) WITHIN GROUP (ORDER BY storage_bytes) AS storage,
	   max(peak_anon_kb) AS peak_kb, min(base_anon_kb) AS base_kb
  FROM bench.results WHERE rep > 0 GROUP BY 1, 2;

CREATE FUNCTION pg_temp.ratio(w text, v text) RETURNS float8 LANGUAGE sql AS
$$ SELECT m.ms / nullif(b.ms, 0) FROM med m, med b
	WHERE m.workload = w AND m.variant = v AND b.workload = w AND b.variant = 'none' $$;
CREATE FUNCTION pg_temp.cell(w text, v text) RETURNS text LANGUAGE sql AS
$$ SELECT COALESCE((SELECT format('%sx (%s ms)', round(pg_temp.ratio(w, v)::numeric, 2), round(ms::numeric, 1))
					  FROM med WHERE workload = w AND variant = v), '-') $$;

CREATE TEMP TABLE target(workload text, what text, target float8);
INSERT INTO target VALUES ('W1', 'UPDATE 1M rows (pgbench_accounts, scale 10)', 1.3),
	('W2', 'UPDATE one text column of 200k rows x 10 cols', 1.3),
	('W3', 'DELETE 10% of pgbench_accounts (100k rows)', 1.3),
	('W5', '10,000 one-row UPDATEs in one transaction', 1.1),
	('W6', 'UPDATE every row of pgbench_accounts, large scale', NULL);

-- Timed statements: median ms and ratio to `none`.
SELECT E'### Timed statements (median ms of n runs; ratio to `none`)\n\n'
	|| E'| workload | none | guard | row_trigger | transition | tablelog | guard target | guard meets target | guard faster than every peer |\n'
	|| E'|---|---:|---:|---:|---:|---:|---:|:---:|:---:|\n'
	|| string_agg(format('| %s: %s | %s | %s | %s | %s | %s | %s | %s | %s |',
		 t.workload, t.what,
		 (SELECT format('%s ms (n=%s)', round(ms::numeric, 1), n) FROM med WHERE workload = t.workload AND variant = 'none'),
		 pg_temp.cell(t.workload, 'guard'), pg_temp.cell(t.workload, 'row_trigger'),
		 pg_temp.cell(t.workload, 'transition'), pg_temp.cell(t.workload, 'tablelog'),
		 COALESCE('<= ' || t.target || 'x', '-'),
		 CASE WHEN t.target IS NULL OR pg_temp.ratio(t.workload, 'guard') IS NULL THEN '-'
			  WHEN pg_temp.ratio(t.workload, 'guard') <= t.target THEN 'yes' ELSE '**no**' END,
		 CASE WHEN pg_temp.ratio(t.workload, 'guard') IS NULL
				   OR NOT EXISTS (SELECT FROM med WHERE workload = t.workload AND variant NOT IN ('none', 'guard')) THEN '-'
			  WHEN (SELECT bool_and(m.ms > g.ms) FROM med m, med g
					 WHERE m.workload = t.workload AND g.workload = t.workload
					   AND g.variant = 'guard' AND m.variant NOT IN ('none', 'guard')) THEN 'yes'
			  ELSE '**no**' END),
		 E'\n' ORDER BY t.workload) || E'\n'
  FROM target t
 WHERE EXISTS (SELECT FROM med WHERE workload = t.workload);

-- W4: pgbench TPS.
SELECT E'### W4: pgbench TPC-B, scale 10, 2 clients, -M prepared (median TPS)\n\n'
	|| E'| variant | TPS | ratio to not loaded | ratio to loaded, unprotected | target |\n'
	|| E'|---|---:|---:|---:|---|\n'
	|| string_agg(format('| %s | %s (n=%s) | %s | %s | %s |', m.variant, round(m.tps::numeric, 1), m.n,
		 round((m.tps / nl.tps)::numeric, 3), round((m.tps / lo.tps)::numeric, 3),
		 CASE m.variant
			 WHEN 'loaded_unprotected' THEN format('>= 0.99 of not loaded: %s',
				  CASE WHEN m.tps / nl.tps >= 0.99 THEN 'yes' ELSE '**no**' END)
			 WHEN 'protected' THEN format('>= 0.97 of unprotected: %s; better than every peer: %s',
				  CASE WHEN m.tps / lo.tps >= 0.97 THEN 'yes' ELSE '**no**' END,
				  CASE WHEN m.tps > (SELECT max(p.tps) FROM med p WHERE p.workload = 'W4'
									 AND p.variant NOT IN ('not_loaded', 'loaded_unprotected', 'protected'))
					   OR NOT EXISTS (SELECT FROM med p WHERE p.workload = 'W4'
									  AND p.variant NOT IN ('not_loaded', 'loaded_unprotected', 'protected'))
					   THEN 'yes' ELSE '**no**' END)
			 WHEN 'not_loaded' THEN 'baseline'
			 ELSE 'peer (guard loaded, nothing protected)' END),
		 E'\n' ORDER BY CASE m.variant WHEN 'not_loaded' THEN 1 WHEN 'loaded_unprotected' THEN 2
								WHEN 'protected' THEN 3 ELSE 4 END, m.variant)
	|| E'\n'
  FROM med m
  JOIN med nl ON nl.workload = 'W4' AND nl.variant = 'not_loaded'
  JOIN med lo ON lo.workload = 'W4' AND lo.variant = 'loaded_unprotected'
 WHERE m.workload = 'W4';

-- W4L: the backend's own time per TPC-B transaction (procedure loop).
SELECT E'### W4L: TPC-B\'s transaction 20,000 times in a procedure, synchronous_commit off (median µs per transaction)\n\n'
	|| E'No client round trips and no wait for the WAL flush: the backend\'s own work per transaction. '
	|| E'Throughput ratios (baseline time / variant time), comparable to W4\'s TPS ratios.\n\n'
	|| E'| variant | µs per transaction | added to loaded, unprotected | ratio to not loaded | ratio to loaded, unprotected | target |\n'
	|| E'|---|---:|---:|---:|---:|---|\n'
	|| string_agg(format('| %s | %s (n=%s, %s-%s) | %s | %s | %s | %s |', m.variant, round(m.ms::numeric, 1), m.n,
		 round(m.ms_min::numeric, 1), round(m.ms_max::numeric, 1),
		 round((m.ms - lo.ms)::numeric, 1),
		 round((nl.ms / m.ms)::numeric, 3), round((lo.ms / m.ms)::numeric, 3),
		 CASE m.variant
			 WHEN 'loaded_unprotected' THEN format('>= 0.99 of not loaded: %s',
				  CASE WHEN nl.ms / m.ms >= 0.99 THEN 'yes' ELSE '**no**' END)
			 WHEN 'protected' THEN format('>= 0.97 of unprotected: %s; cheaper than every peer: %s',
				  CASE WHEN lo.ms / m.ms >= 0.97 THEN 'yes' ELSE '**no**' END,
				  CASE WHEN m.ms < (SELECT min(p.ms) FROM med p WHERE p.workload = 'W4L'
									 AND p.variant NOT IN ('not_loaded', 'loaded_unprotected', 'protected'))
					   OR NOT EXISTS (SELECT FROM med p WHERE p.workload = 'W4L'
									  AND p.variant NOT IN ('not_loaded', 'loaded_unprotected', 'protected'))
					   THEN 'yes' ELSE '**no**' END)
			 WHEN 'not_loaded' THEN 'baseline'
			 ELSE 'peer (guard loaded, nothing protected)' END),
		 E'\n' ORDER BY CASE m.variant WHEN 'not_loaded' THEN 1 WHEN 'loaded_unprotected' THEN 2
								WHEN 'protected' THEN 3 ELSE 4 END, m.variant)
	|| E'\n'
  FROM med m
  JOIN med nl ON nl.workload = 'W4L' AND nl.variant = 'not_loaded'
  JOIN med lo ON lo.workload = 'W4L' AND lo.variant = 'loaded_unprotected'
 WHERE m.workload = 'W4L';

-- Snapshot bytes of guard vs overwritten columns + keys.
SELECT E'### Snapshot bytes (guard): sum(snapshot_bytes) of guard.changes vs bytes of overwritten columns + keys before the change\n\n'
	|| E'| workload | rows captured | snapshot_bytes | overwritten cols + keys | ratio | bytes/row | target | meets |\n'
	|| E'|---|---:|---:|---:|---:|---:|---|:---:|\n'
	|| string_agg(format('| %s | %s | %s | %s | %s | %s | <= 1.2x | %s |', workload, snap_rows::bigint,
		 snap::bigint, overwritten::bigint, round((snap / nullif(overwritten, 0))::numeric, 2),
		 round((snap / nullif(snap_rows, 0))::numeric, 1),
		 CASE WHEN snap / nullif(overwritten, 0) <= 1.2 THEN 'yes' ELSE '**no**' END),
		 E'\n' ORDER BY workload) || E'\n'
  FROM med WHERE variant = 'guard' AND workload LIKE 'W%' AND workload NOT LIKE 'W4%';

-- Peak private memory of the backend.
SELECT E'### Backend memory (peak RssAnon sampled every 50 ms during the timed session; max over runs)\n\n'
	|| E'| workload | variant | RssAnon at start | peak RssAnon | growth |\n|---|---|---:|---:|---:|\n'
	|| string_agg(format('| %s | %s | %s MB | %s MB | %s MB |', workload, variant,
		 round(base_kb / 1024.0, 1), round(peak_kb / 1024.0, 1), round((peak_kb - base_kb) / 1024.0, 1)),
		 E'\n' ORDER BY workload, variant) || E'\n'
  FROM med WHERE peak_kb IS NOT NULL AND workload LIKE 'W%';

-- WAL written by the statement and capture storage left behind.
SELECT E'### WAL written by the timed statement, and capture storage (guard: guard.snapshot + guard.change; peers: their log table), median MB\n\n'
	|| E'| workload | variant | WAL MB | WAL ratio | capture storage MB |\n|---|---|---:|---:|---:|\n'
	|| string_agg(format('| %s | %s | %s | %s | %s |', m.workload, m.variant,
		 round((m.wal / 1048576.0)::numeric, 1), round((m.wal / nullif(b.wal, 0))::numeric, 2),
		 round((m.storage / 1048576.0)::numeric, 1)),
		 E'\n' ORDER BY m.workload, CASE m.variant WHEN 'none' THEN 0 WHEN 'guard' THEN 1 ELSE 2 END, m.variant) || E'\n'
  FROM med m LEFT JOIN med b ON b.workload = m.workload AND b.variant = 'none'
 WHERE m.workload LIKE 'W%' AND m.workload NOT LIKE 'W4%';

-- R1/R2: restore vs the UPDATE it undoes.
SELECT E'### R1/R2: guard.restore() of the UPDATE of 1M rows of pgbench_accounts (median ms of n runs)\n\n'
	|| E'R1: restore right after the UPDATE (on_conflict abort). R2: 100,000 of the rows updated again since (another change set), restore with on_conflict => ''skip''.\n\n'
	|| E'| workload | UPDATE (the change set) | restore | restore / UPDATE | restore min-max | target | meets | dry run | dry run / restore | target | meets | restore WAL MB | restore peak RssAnon growth | dry run peak RssAnon growth |\n'
	|| E'|---|---:|---:|---:|---:|---|:---:|---:|---:|---|:---:|---:|---:|---:|\n'
	|| string_agg(format('| %s | %s ms (n=%s) | %s ms (n=%s) | %sx | %s-%s ms | %s | %s | %s ms (n=%s) | %sx | <= 0.75x | %s | %s | %s MB | %s MB |',
		 u.workload, round(u.ms::numeric, 1), u.n, round(r.ms::numeric, 1), r.n,
		 round((r.ms / u.ms)::numeric, 2), round(r.ms_min::numeric), round(r.ms_max::numeric),
		 CASE u.workload WHEN 'R1' THEN '<= 1.5x' ELSE '-' END,
		 CASE WHEN u.workload <> 'R1' THEN '-' WHEN r.ms / u.ms <= 1.5 THEN 'yes' ELSE '**no**' END,
		 round(d.ms::numeric, 1), d.n, round((d.ms / r.ms)::numeric, 2),
		 CASE WHEN d.ms / r.ms <= 0.75 THEN 'yes' ELSE '**no**' END,
		 round((r.wal / 1048576.0)::numeric, 1), round((r.peak_kb - r.base_kb) / 1024.0, 1),
		 round((d.peak_kb - d.base_kb) / 1024.0, 1)),
		 E'\n' ORDER BY u.workload) || E'\n'
  FROM med u JOIN med r ON r.workload = u.workload AND r.variant = 'restore'
  LEFT JOIN med d ON d.workload = u.workload AND d.variant = 'dry_run'
 WHERE u.workload IN ('R1', 'R2') AND u.variant = 'update';

-- I1: invariant cost.
SELECT E'### I1: UPDATE 1M rows of protected pgbench_accounts with a row-check invariant (abalance > -1000000000) vs capture alone (median ms of n runs)\n\n'
	|| E'| variant | median | min-max | ratio to capture alone | target | meets |\n|---|---:|---:|---:|---|:---:|\n'
	|| string_agg(format('| %s | %s ms (n=%s) | %s-%s ms | %sx | %s | %s |',
		 CASE m.variant WHEN 'guard' THEN 'capture alone (guard.protect)'
			  WHEN 'guard_inv_deferred' THEN 'capture + invariant, deferred (default)'
			  ELSE 'capture + invariant, immediate (deferred => false)' END,
		 round(m.ms::numeric, 1), m.n, round(m.ms_min::numeric), round(m.ms_max::numeric),
		 round((m.ms / g.ms)::numeric, 2),
		 CASE m.variant WHEN 'guard_inv_deferred' THEN '<= 1.2x' ELSE '-' END,
		 CASE WHEN m.variant <> 'guard_inv_deferred' THEN '-' WHEN m.ms / g.ms <= 1.2 THEN 'yes' ELSE '**no**' END),
		 E'\n' ORDER BY m.variant) || E'\n'
  FROM med m JOIN med g ON g.workload = 'I1' AND g.variant = 'guard'
 WHERE m.workload = 'I1';

-- D1: DROP TABLE and undrop vs table size.
SELECT E'### D1: DROP TABLE and guard.undrop() of a protected table, by size (median ms of n runs)\n\n'
	|| E'| table | rows | size (heap + index) | DROP TABLE | DROP min-max | undrop | undrop min-max |\n|---|---:|---:|---:|---:|---:|---:|\n'
	|| string_agg(format('| %s | %s | %s MB | %s ms (n=%s) | %s-%s ms | %s ms (n=%s) | %s-%s ms |',
		 CASE sz WHEN 'small' THEN 'd1_small' ELSE 'd1_big' END, d.snap_rows::bigint,
		 round((d.storage / 1048576.0)::numeric), round(d.ms::numeric, 1), d.n,
		 round(d.ms_min::numeric, 1), round(d.ms_max::numeric, 1),
		 round(u.ms::numeric, 1), u.n, round(u.ms_min::numeric, 1), round(u.ms_max::numeric, 1)),
		 E'\n' ORDER BY sz DESC) || E'\n'
	|| (SELECT format(E'| big / small | %sx | %sx | %sx | | %sx | |\n\n',
			round((b.snap_rows / s.snap_rows)::numeric, 1), round((b.storage / s.storage)::numeric, 1),
			round((b.ms / s.ms)::numeric, 2), round((bu.ms / su.ms)::numeric, 2))
		  FROM med b, med s, med bu, med su
		 WHERE b.workload = 'D1' AND b.variant = 'drop_big' AND s.workload = 'D1' AND s.variant = 'drop_small'
		   AND bu.workload = 'D1' AND bu.variant = 'undrop_big' AND su.workload = 'D1' AND su.variant = 'undrop_small')
	|| (SELECT format(E'Target: time does not grow with size (read here as: the big table within 2x of the small one, and under 1 s): DROP TABLE %s, undrop %s.\n',
			CASE WHEN b.ms <= 2 * s.ms AND b.ms < 1000 THEN 'yes' ELSE '**no**' END,
			CASE WHEN bu.ms <= 2 * su.ms AND bu.ms < 1000 THEN 'yes' ELSE '**no**' END)
		  FROM med b, med s, med bu, med su
		 WHERE b.workload = 'D1' AND b.variant = 'drop_big' AND s.workload = 'D1' AND s.variant = 'drop_small'
		   AND bu.workload = 'D1' AND bu.variant = 'undrop_big' AND su.workload = 'D1' AND su.variant = 'undrop_small')
  FROM (SELECT substr(variant, 6) AS sz, * FROM med WHERE workload = 'D1' AND variant LIKE 'drop_%') d
  JOIN med u ON u.workload = 'D1' AND u.variant = 'undrop_' || d.sz;

-- Correctness checks (R1, R2, D1).
SELECT E'### Correctness checks\n\n| workload | rep | check | result | detail |\n|---|---:|---|:---:|---|\n'
	|| string_agg(format('| %s | %s | %s | %s | %s |', workload, rep, name,
		 CASE WHEN ok THEN 'ok' ELSE '**FAILED**' END, detail), E'\n' ORDER BY workload, rep, name) || E'\n'
  FROM bench.checks;
