# Makefile for guard (PGXS)

MODULE_big = guard
OBJS = \
	src/guard.o \
	src/guc.o \
	src/catalog.o \
	src/relcache.o \
	src/spi.o \
	src/hooks.o \
	src/fail_closed.o \
	src/publication.o \
	src/policy.o \
	src/capture.o \
	src/rails.o \
	src/invariants.o \
	src/invariants_stmt.o \
	src/invariants_commit.o \
	src/invariants_eval.o \
	src/invariants_ddl.o \
	src/ddl.o \
	src/drop.o \
	src/inuse.o \
	src/trial.o \
	src/relink.o \
	src/link.o \
	src/ddl_alter.o \
	src/ddl_constraint.o \
	src/ddl_index.o \
	src/ddl_table.o \
	src/ddl_column.o \
	src/ddl_objects.o \
	src/ddl_util.o \
	src/trash.o \
	src/depend.o \
	src/shadow.o \
	src/shadow_read.o \
	src/writer.o \
	src/layout.o \
	src/labels.o \
	src/changes.o \
	src/label_state.o \
	src/bookkeeping.o \
	src/rows.o \
	src/progress.o \
	src/later.o \
	src/fkcheck.o \
	src/undo_target.o \
	src/undo.o \
	src/undo_judge.o \
	src/undo_moves.o \
	src/undo_sql.o \
	src/plan_store.o \
	src/undo_plan.o \
	src/schema_undo.o \
	src/restore_rate.o \
	src/restore.o \
	src/restore_to.o \
	src/dryrun.o \
	src/changeset_restore.o \
	src/drill.o \
	src/drill_judge.o \
	src/diff.o \
	src/script.o \
	src/locks.o \
	src/nontxn.o \
	src/rehearse.o \
	src/rowfilter.o \
	src/past.o \
	src/past_walk.o \
	src/asof.o \
	src/history.o

EXTENSION = guard
DATA = sql/guard--0.1.sql sql/guard--0.1--0.2.sql
PGFILEDESC = "guard - capture, check and undo changes to protected tables"

# Regression tests: each runs in a server that test/run-tests.sh starts with
# shared_preload_libraries = 'guard' (test/guard.conf).
REGRESS = setup policy_validation policy_permissions policy_view policy_refuses_temporary \
	protect_inheritance_refused \
	capture_kinds capture_values capture_partitions capture_cross_partition_trigger \
	capture_without_key \
	capture_atomicity \
	capture_limits capture_privacy changes_records changes_names layout_reuse \
	restore_basic restore_conflicts restore_to restore_permissions restore_verify \
	restore_fk_cascades restore_user_triggers restore_rls \
	restore_dropped_table_blocked restore_truncate_restart_identity \
	restore_migration_fk \
	restore_toasted_values restore_partition_column_order restore_key_types restore_key_order \
	restore_key_shifts restore_wide_table restore_change_in_changeset \
	restore_estimate capture_in_loops restore_to_group restore_random restore_random_ddl \
	verify_restore_agrees restore_read_only restore_dry_run_ids \
	invariants_validation invariants_enforce invariants_warn invariants_migrations \
	rails \
	cache_invalidation \
	ddl_columns ddl_drop_table ddl_truncate ddl_migration ddl_partition_drop \
	trash_unlinks_foreign_keys trash_inheritance trash_keeps_what_belongs \
	trash_hook_hygiene drop_what_trash_uses trash_event_triggers trash_drop_tablespace status \
	ddl_undo_column_attrs ddl_undo_constraints ddl_undo_indexes ddl_undo_table \
	ddl_undo_columns ddl_undo_migrations \
	rehearse history_as_of history_versions history_privileges \
	labels_sources labels_discard labels_restore labels_statement_privacy \
	publication_all_tables restore_partial_undo restore_dry_run_plans restore_by_tid \
	extension_upgrade
REGRESS_OPTS = --temp-config=$(srcdir)/test/guard.conf --load-extension=guard

ISOLATION = capture_epq restore_concurrency invariant_notify cache_across_sessions \
	restore_same_changeset restore_progress
ISOLATION_OPTS = --temp-config=$(srcdir)/test/guard.conf --load-extension=guard \
	--inputdir=$(srcdir)/test --outputdir=output_iso

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Werror -Wmissing-prototypes

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object depends on the private header
$(OBJS): src/guard.h
src/shadow.o src/shadow_read.o: src/shadow.h
src/undo.o src/undo_judge.o src/undo_moves.o src/undo_sql.o src/undo_plan.o \
	src/plan_store.o: src/undo.h
src/past.o src/past_walk.o: src/past.h
src/drill.o src/drill_judge.o: src/drill.h

.PHONY: demo test bench check-postgres sqlsmith check-ha
demo:
	bash test/run-demo.sh
test:
	bash test/run-tests.sh
bench:
	bash bench/run.sh
check-postgres:
	bash test/check-postgres.sh
# a bounded sqlsmith run against a server with guard (not part of `make test`)
sqlsmith:
	bash test/sqlsmith.sh

check-ha:
	bash test/check-ha.sh
