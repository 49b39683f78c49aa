/*-------------------------------------------------------------------------
 *
 * guard.h
 *	  Private declarations shared by the files of the guard extension.
 *
 * The path of a guarded write: the capture trigger (capture.c) reads the
 * statement's transition tables, encodes before-images into chunks
 * (shadow.c) and records the change and its change set (changes.c).
 * policy.c keeps who is protected and how; hooks.c follows statements.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUARD_H
#define GUARD_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "nodes/nodes.h"
#include "nodes/pg_list.h"
#include "nodes/plannodes.h"
#include "storage/lockdefs.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

/* guard's own error codes, class GU (documented in README.md) */
#define ERRCODE_GUARD_NOT_PRELOADED		ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
#define ERRCODE_GUARD_SNAPSHOT_TOO_LARGE	MAKE_SQLSTATE('G','U','0','0','1')
#define ERRCODE_GUARD_RESTORE_CONFLICT	MAKE_SQLSTATE('G','U','0','0','2')
#define ERRCODE_GUARD_RAIL				MAKE_SQLSTATE('G','U','0','0','3')

/* GUCs (guard.c) */
typedef enum GuardMode
{
	GUARD_MODE_ENFORCE,
	GUARD_MODE_WARN
} GuardMode;

extern bool guard_enabled;
extern int	guard_mode;
extern int	guard_retention;
extern int	guard_max_snapshot_size;
extern char *guard_notify_channel;
extern bool guard_preloaded;

extern void guard_require_preload(void);
extern Oid	guard_namespace(void);
extern Oid	guard_relid(const char *relname);

/* hooks.c: the statement being finished, for change records */
typedef struct GuardStatement
{
	const char *text;			/* source text, not NUL-terminated at len */
	int			len;
	CmdType		cmd;			/* CMD_UNKNOWN for utility (COPY) */
	bool		is_copy;
} GuardStatement;

extern bool guard_internal_ddl;
extern void guard_install_hooks(void);
extern const GuardStatement *guard_current_statement(void);

/* policy.c */
typedef enum GuardCapture
{
	GUARD_CAPTURE_NONE,
	GUARD_CAPTURE_DML,
	GUARD_CAPTURE_DDL,
	GUARD_CAPTURE_ALL
} GuardCapture;

typedef struct GuardPolicy
{
	Oid			relid;			/* the table the policy is on (may be an
								 * ancestor of the relation asked about) */
	bool		found;
	GuardCapture capture;
	int			mode;			/* GuardMode, or -1 for the GUC */
	int64		min_rows;
	int64		max_rows;		/* 0: none */
	double		max_fraction;	/* 0: none */
	bool		require_where;
} GuardPolicy;

extern const GuardPolicy *guard_policy_lookup(Relation rel);
extern int	guard_policy_mode(const GuardPolicy *policy);
extern bool guard_may_read_relation(Oid relid);
extern Relation guard_open_table_to_manage(Oid relid, const char *action);
extern bool guard_policy_wants_triggers(const GuardPolicy *policy);
extern bool guard_may_manage(Oid relid);

/* running guard's own SQL as another role, search_path pinned, SPI open */
typedef struct GuardAsRole
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} GuardAsRole;

extern void guard_as_role_begin(GuardAsRole *s, Oid role);
extern void guard_as_role_path_begin(GuardAsRole *s, Oid role,
									 const char *search_path, bool restricted);
extern void guard_as_role_end(GuardAsRole *s);
extern void guard_run_sql(const char *sql, int nargs, Oid *types,
						  Datum *values, const char *nulls);
extern void guard_sync_relation(Oid relid);
extern int	guard_key_attnums(Relation rel, AttrNumber *keys);

/*
 * Column numbers of guard's own tables (sql/guard--0.1.sql); guard_open()
 * checks the count, so that a library and a script of different versions
 * fail cleanly instead of misreading rows.
 */
#define Natts_guard_policy			9
#define Natts_guard_changeset		7
#define Anum_changeset_label		4
#define Natts_guard_change			15
#define Anum_change_relid			6
#define Anum_change_relation		7
#define Anum_change_kind			8
#define Anum_change_statement		9
#define Anum_change_state			10
#define Anum_change_layout			11
#define Anum_change_restored_by		12
#define Anum_change_detail			13
#define Anum_change_nrows			14
#define Anum_change_data			15
#define Natts_guard_layout			6
#define Natts_guard_snapshot		4

extern Relation guard_open(const char *relname, LOCKMODE lockmode, int natts);

/* changes.c: change sets and change records */
typedef struct GuardChange
{
	int64		change_id;
	int64		changeset_id;
	Oid			relid;
	char	   *relation;
	char	   *kind;
	char	   *state;
	char	   *detail;			/* JSON: what a schema change's undo needs */
	bytea	   *inline_chunk;	/* the snapshot's first chunk, or NULL */
	int			natts;			/* layout at capture time, by attnum */
	char	  **attnames;		/* NULL: dropped */
	Oid		   *atttypes;
	int			nkeys;
	AttrNumber	keys[INDEX_MAX_KEYS];
} GuardChange;

extern bool guard_change_read(int64 change_id, GuardChange *change);
extern void guard_changeset_begin_restore(int64 restore_of, List *changes);
extern char *guard_change_statement(int64 change_id);
extern int64 guard_changeset_current(bool create);
extern int64 guard_change_for_statement(Relation rel, const char *kind,
									   const char **final_kind);
extern int64 guard_change_reserve(Relation rel);
extern int64 guard_change_record(Relation rel, const char *kind,
								 const char *detail);
extern void guard_change_insert(Relation rel, int64 id, const char *kind,
								const char *detail, bytea *first, int32 nrows);
extern void guard_changes_init(void);
extern int32 *guard_change_chunk_counter(void);

/* rows.c: live rows by key */
typedef struct GuardKeyLeaf
{
	Relation	rel;
	Relation	index;
	Oid			eqproc[INDEX_MAX_KEYS];
	Oid			collation[INDEX_MAX_KEYS];
	TupleTableSlot *slot;
} GuardKeyLeaf;

typedef struct GuardKeyScan
{
	int			nkeys;
	int			nleaves;
	GuardKeyLeaf *leaves;
	bool		owns_leaves;
	Relation	found;			/* after a fetch: the table the row is in */
	TupleTableSlot *slot;		/* ... and the row */
} GuardKeyScan;

extern bool guard_keyscan_begin(GuardKeyScan *ks, Relation rel,
								const GuardChange *change);
extern bool guard_keyscan_fetch(GuardKeyScan *ks, Datum *keyvalues,
								Snapshot snapshot);
extern char *guard_key_text(const GuardChange *change, Datum *keyvalues);
extern char *guard_value_text(Datum value, Oid type);
extern void guard_change_from_relation(Relation rel, GuardChange *layout);
extern void guard_keyscan_end(GuardKeyScan *ks);

/* invariants.c */
typedef struct GuardInvariantSet GuardInvariantSet;

extern void guard_invariants_init(void);
extern bool guard_has_invariants(Oid relid);
extern GuardInvariantSet *guard_invariants_begin(Relation rel,
												 const GuardPolicy *policy);
extern void guard_invariants_row(GuardInvariantSet *set, TupleTableSlot *slot,
								 int64 rowno);
extern void guard_invariants_deleted(GuardInvariantSet *set,
									 TupleTableSlot *slot, int64 rowno);
extern void guard_invariants_end(GuardInvariantSet *set, int64 change_id);
extern void guard_invariants_after_ddl(Relation rel);

/* ddl.c */
extern List *guard_ddl_before(PlannedStmt *pstmt, Node **replaced);
extern void guard_ddl_after(List *after);
extern void guard_recreate_dependents(List *statements);
extern void guard_undrop_table(Oid relid,
							   const char *(*schema_of) (Oid relid, void *arg),
							   const char *(*name_of) (Oid relid, void *arg),
							   void *arg);

/* rails.c: guard rails */
extern void guard_check_row_limits(Relation rel, const GuardPolicy *policy,
								   int event, int64 nrows);
extern void guard_rails_install(void);

/* writer.c: rows into guard's own tables, constraints and indexes included */
typedef struct GuardWriter GuardWriter;

extern GuardWriter *guard_writer_begin(const char *relname, int natts);
extern void guard_writer_add(GuardWriter *w, Datum *values, bool *nulls);
extern void guard_writer_end(GuardWriter *w);
extern void guard_writer_insert(const char *relname, int natts,
								Datum *values, bool *nulls);

/* shadow.c: packed before-images */
typedef enum GuardRowOp
{
	GUARD_OP_INSERT = 1,
	GUARD_OP_UPDATE = 2,
	GUARD_OP_DELETE = 3
} GuardRowOp;

typedef struct ShadowWriter ShadowWriter;

/*
 * Asked by a ShadowWriter when its first chunk is full: the change the
 * chunks belong to and that change's chunk counter.  Returns true if it
 * keeps the chunk itself (a copy, inline in the change record), false to
 * have it written to guard.snapshot like the others.
 */
typedef bool (*ShadowOpenChange) (void *arg, bytea *first, int32 nrows,
								  int64 *change_id, int32 **chunkno);

extern ShadowWriter *shadow_writer_begin(Relation rel, int64 limit,
										 bool enforce,
										 ShadowOpenChange open_change,
										 void *arg);
extern void shadow_add_update(ShadowWriter *w, TupleTableSlot *oldslot,
							  TupleTableSlot *newslot);
extern void shadow_add_delete(ShadowWriter *w, TupleTableSlot *oldslot);
extern void shadow_add_insert(ShadowWriter *w, TupleTableSlot *newslot);
extern void shadow_add_column(ShadowWriter *w, TupleTableSlot *slot,
							  AttrNumber attnum);
extern int64 shadow_writer_end(ShadowWriter *w);
extern void *shadow_writer_arg(ShadowWriter *w);

/* capture.c: a snapshot of rows of one change, its record opened on need */
extern ShadowWriter *guard_capture_begin(Relation rel, const char *kind,
										 int64 limit, bool enforce);
extern int64 guard_capture_end(ShadowWriter *w);

/* ddl.c's names for the two above, until it calls them by theirs */
#define shadow_begin(rel, kind, limit, enforce) \
	guard_capture_begin(rel, kind, limit, enforce)
#define shadow_end(w) guard_capture_end(w)

/* one decoded row of a snapshot */
typedef struct ShadowRow
{
	GuardRowOp	op;
	int			natts;			/* length of the arrays below */
	bool	   *captured;		/* [attnum - 1]: a before-value is present */
	Datum	   *values;			/* before-values (UPDATE, DELETE) */
	bool	   *nulls;
	Datum	   *keyvalues;		/* key of the row after the change */
	uint32		hash;			/* hash of the after-values (UPDATE, INSERT) */
} ShadowRow;

typedef struct ShadowReader ShadowReader;

extern ShadowReader *shadow_open(int64 change_id, int natts,
								 const Oid *types, const AttrNumber *keys,
								 int nkeys, bytea *inline_chunk);
extern bool shadow_next(ShadowReader *r, ShadowRow *row);
extern void shadow_close(ShadowReader *r);
extern uint32 shadow_hash_value(Datum value, bool isnull, int16 typlen,
								bool typbyval, uint32 hash);

#endif							/* GUARD_H */
