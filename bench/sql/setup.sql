-- bench/sql/setup.sql: once per run, after `pgbench -i`.
-- Extensions, pristine templates of the workload tables (schema bench), and
-- bench.reset(), which rebuilds a workload table from its template and
-- attaches one capture variant, so that every repetition of every variant
-- starts from the same state.

CREATE EXTENSION IF NOT EXISTS guard;
CREATE EXTENSION IF NOT EXISTS table_log;
CREATE SCHEMA IF NOT EXISTS bench;

-- Templates.  W1/W3/W5: pgbench_accounts at scale 10 (1,000,000 rows).
DROP TABLE IF EXISTS bench.accounts10;
CREATE TABLE bench.accounts10 AS SELECT * FROM public.pgbench_accounts ORDER BY aid;

-- W2: 200,000 rows, 10 columns of mixed types.
DROP TABLE IF EXISTS bench.w2tpl;
CREATE TABLE bench.w2tpl AS
SELECT g AS id,
	   'customer ' || g AS name,
	   repeat(md5(g::text), 2) AS descr,
	   (g * 1.37)::numeric(12, 2) AS amount,
	   timestamptz '2024-01-01' + g * interval '1 minute' AS created,
	   jsonb_build_object('k', g, 'tags', jsonb_build_array('a', 'b', g % 7)) AS attrs,
	   g % 2 = 0 AS active,
	   g % 1000 AS qty,
	   g / 7.0::float8 AS ratio,
	   ('C' || g)::varchar(16) AS code
  FROM generate_series(1, 200000) g;

/*
 * bench.attach(variant, tbl, keycol): put one capture variant on public.tbl.
 *   none         nothing
 *   guard        guard.protect(tbl) (capture 'all')
 *   row_trigger  PL/pgSQL AFTER ROW trigger copying OLD.* (NEW's key for an
 *                INSERT) into tbl_log, E-Maj's design
 *   transition   PL/pgSQL AFTER STATEMENT triggers copying the transition
 *                table old_rows (new_rows' keys for INSERT) into tbl_log
 *   tablelog     table_log_init(4, ...): table_log's C row trigger writing
 *                into tbl_log (old and new row of an UPDATE)
 *   guard_inv_deferred   guard.protect(tbl) and one row-check invariant
 *                        (keycol's table must have abalance: pgbench_accounts),
 *                        checked at commit (the default)
 *   guard_inv_immediate  the same invariant, deferred => false
 */
CREATE OR REPLACE PROCEDURE bench.attach(variant text, tbl text, keycol text)
LANGUAGE plpgsql AS $proc$
DECLARE
	t text := format('public.%I', tbl);
	l text := format('public.%I', tbl || '_log');
BEGIN
	CASE variant
	WHEN 'none' THEN
		NULL;
	WHEN 'guard' THEN
		PERFORM guard.protect(t::regclass);
	WHEN 'guard_inv_deferred', 'guard_inv_immediate' THEN
		PERFORM guard.protect(t::regclass);
		PERFORM guard.add_invariant(t::regclass, 'abalance_sane', row_check => 'abalance > -1000000000',
									deferred => variant = 'guard_inv_deferred');
	WHEN 'row_trigger', 'transition' THEN
		EXECUTE format('CREATE TABLE %s (log_op "char" NOT NULL, log_at timestamptz NOT NULL, LIKE %s)', l, t);
		IF variant = 'row_trigger' THEN
			EXECUTE format($f$
				CREATE FUNCTION public.%I() RETURNS trigger LANGUAGE plpgsql AS $b$
				BEGIN
					IF TG_OP = 'INSERT' THEN
						INSERT INTO %s (log_op, log_at, %I) VALUES ('I', clock_timestamp(), NEW.%I);
						RETURN NEW;
					END IF;
					INSERT INTO %s SELECT substr(TG_OP, 1, 1)::"char", clock_timestamp(), OLD.*;
					RETURN OLD;
				END $b$$f$, tbl || '_log_fn', l, keycol, keycol, l);
			EXECUTE format('CREATE TRIGGER bench_log AFTER INSERT OR UPDATE OR DELETE ON %s
							FOR EACH ROW EXECUTE FUNCTION public.%I()', t, tbl || '_log_fn');
		ELSE
			EXECUTE format($f$
				CREATE FUNCTION public.%I() RETURNS trigger LANGUAGE plpgsql AS $b$
				BEGIN
					IF TG_OP = 'INSERT' THEN
						INSERT INTO %s (log_op, log_at, %I) SELECT 'I', clock_timestamp(), %I FROM new_rows;
					ELSE
						INSERT INTO %s SELECT substr(TG_OP, 1, 1)::"char", clock_timestamp(), * FROM old_rows;
					END IF;
					RETURN NULL;
				END $b$$f$, tbl || '_log_fn', l, keycol, keycol, l);
			EXECUTE format('CREATE TRIGGER bench_log_ins AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows
							FOR EACH STATEMENT EXECUTE FUNCTION public.%I()', t, tbl || '_log_fn');
			EXECUTE format('CREATE TRIGGER bench_log_upd AFTER UPDATE ON %s REFERENCING OLD TABLE AS old_rows
							FOR EACH STATEMENT EXECUTE FUNCTION public.%I()', t, tbl || '_log_fn');
			EXECUTE format('CREATE TRIGGER bench_log_del AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows
							FOR EACH STATEMENT EXECUTE FUNCTION public.%I()', t, tbl || '_log_fn');
		END IF;
	WHEN 'tablelog' THEN
		PERFORM public.table_log_init(4, 'public', tbl, 'public', tbl || '_log');
	ELSE
		RAISE EXCEPTION 'unknown variant %', variant;
	END CASE;
END
$proc$;

/*
 * bench.reset(tbl, tpl, keycol, variant): drop public.tbl and whatever a
 * variant attached to it, empty guard's records, rebuild the table from
 * bench.tpl with its primary key, attach the variant.  The caller then runs
 * VACUUM ANALYZE and CHECKPOINT (not allowed in a procedure).  A protected
 * table is unprotected first: DROP TABLE would otherwise move it into
 * guard_trash instead of dropping it.
 */
CREATE OR REPLACE PROCEDURE bench.reset(tbl text, tpl text, keycol text, variant text)
LANGUAGE plpgsql AS $proc$
BEGIN
	PERFORM guard.unprotect(p.relation) FROM guard.policies p
	  WHERE p.relation = to_regclass(format('public.%I', tbl));
	EXECUTE format('DROP TABLE IF EXISTS public.%I CASCADE', tbl);
	EXECUTE format('DROP TABLE IF EXISTS public.%I CASCADE', tbl || '_log');
	EXECUTE format('DROP SEQUENCE IF EXISTS public.%I CASCADE', tbl || '_log_seq');
	EXECUTE format('DROP FUNCTION IF EXISTS public.%I() CASCADE', tbl || '_log_fn');
	TRUNCATE guard.snapshot, guard.change, guard.changeset;
	EXECUTE format('CREATE TABLE public.%I (LIKE bench.%I INCLUDING ALL)', tbl, tpl);
	EXECUTE format('INSERT INTO public.%I SELECT * FROM bench.%I', tbl, tpl);
	EXECUTE format('ALTER TABLE public.%I ADD PRIMARY KEY (%I)', tbl, keycol);
	CALL bench.attach(variant, tbl, keycol);
END
$proc$;

-- TPC-B's transaction (pgbench's built-in script) n times with a COMMIT
-- each, in one procedure: profile.sh W4 profiles what a transaction costs
-- the backend itself, without the client's round trips.
CREATE OR REPLACE PROCEDURE bench.tpcb_loop(n int)
LANGUAGE plpgsql AS $$
DECLARE
	a int;
	t int;
	b int;
	d int;
	bal int;
BEGIN
	FOR i IN 1..n LOOP
		a := (i * 7919) % 1000000 + 1;
		t := i % 100 + 1;
		b := i % 10 + 1;
		d := i % 5000 - 2500;
		UPDATE public.pgbench_accounts SET abalance = abalance + d WHERE aid = a;
		SELECT abalance INTO bal FROM public.pgbench_accounts WHERE aid = a;
		UPDATE public.pgbench_tellers SET tbalance = tbalance + d WHERE tid = t;
		UPDATE public.pgbench_branches SET bbalance = bbalance + d WHERE bid = b;
		INSERT INTO public.pgbench_history (tid, bid, aid, delta, mtime)
			VALUES (t, b, a, d, pg_catalog.now());
		COMMIT;
	END LOOP;
END $$;
