# Makefile for guard (PGXS)

MODULE_big = guard
OBJS = \
	src/guard.o \
	src/guc.o \
	src/catalog.o \
	src/spi.o \
	src/hooks.o \
	src/policy.o \
	src/capture.o \
	src/rails.o \
	src/invariants.o \
	src/ddl.o \
	src/drop.o \
	src/inuse.o \
	src/trial.o \
	src/relink.o \
	src/link.o \
	src/trash.o \
	src/depend.o \
	src/shadow.o \
	src/changes.o \
	src/rows.o \
	src/restore.o \
	src/diff.o

EXTENSION = guard
DATA = sql/guard--0.1.sql
PGFILEDESC = "guard - capture, check and undo changes to protected tables"

# Regression tests: each runs in a server that test/run-tests.sh starts with
# shared_preload_libraries = 'guard' (test/guard.conf).
REGRESS = setup policy_validation policy_permissions policy_view policy_refuses_temporary \
	capture_kinds capture_values capture_partitions capture_atomicity \
	capture_limits capture_privacy changes_records \
	restore_basic restore_conflicts restore_to restore_permissions restore_verify \
	invariants_validation invariants_enforce invariants_warn rails \
	ddl_columns ddl_drop_table ddl_truncate ddl_migration ddl_partition_drop \
	trash_unlinks_foreign_keys trash_inheritance trash_keeps_what_belongs \
	trash_hook_hygiene drop_what_trash_uses status
REGRESS_OPTS = --temp-config=$(srcdir)/test/guard.conf --load-extension=guard

ISOLATION = capture_epq restore_concurrency invariant_notify
ISOLATION_OPTS = --temp-config=$(srcdir)/test/guard.conf --load-extension=guard \
	--inputdir=$(srcdir)/test --outputdir=output_iso

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Werror -Wmissing-prototypes

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object depends on the private header
$(OBJS): src/guard.h

.PHONY: demo test bench
demo:
	bash test/run-demo.sh
test:
	bash test/run-tests.sh
bench:
	bash bench/run.sh
