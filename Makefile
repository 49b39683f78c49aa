# Makefile for guard (PGXS)

MODULE_big = guard
OBJS = \
	src/guard.o \
	src/guc.o \
	src/catalog.o \
	src/relcache.o \
	src/spi.o \
	src/hooks.o \
	src/policy.o \
	src/capture.o \
	src/rails.o \
	src/invariants.o \
	src/invariants_stmt.o \
	src/invariants_commit.o \
	src/invariants_eval.o \
	src/ddl.o \
	src/refuse.o \
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
	src/later.o \
	src/undo.o \
	src/schema_undo.o \
	src/restore.o \
	src/drill.o \
	src/diff.o

EXTENSION = guard
DATA = sql/guard--0.1.sql sql/guard--0.1--0.2.sql
PGFILEDESC = "guard - capture, check and undo changes to protected tables"

# Regression tests: each runs in a server that test/run-tests.sh starts with
# shared_preload_libraries = 'guard' (test/guard.conf).
REGRESS = setup policy_validation policy_permissions policy_view \
	capture_kinds capture_values capture_partitions capture_atomicity \
	capture_limits capture_privacy changes_records \
	restore_basic restore_conflicts restore_to restore_permissions restore_verify \
	invariants_validation invariants_enforce invariants_warn rails \
	cache_invalidation \
	ddl_columns ddl_drop_table ddl_truncate ddl_migration status \
	labels_sources labels_restore labels_statement_privacy \
	extension_upgrade
REGRESS_OPTS = --temp-config=$(srcdir)/test/guard.conf --load-extension=guard

ISOLATION = capture_epq restore_concurrency invariant_notify cache_across_sessions
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

.PHONY: demo test bench check-postgres
demo:
	bash test/run-demo.sh
test:
	bash test/run-tests.sh
bench:
	bash bench/run.sh
check-postgres:
	bash test/check-postgres.sh
