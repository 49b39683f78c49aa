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
 * The files form layers: a file calls only files below it, never one
 * above it, so that the file-to-file call graph has no cycle.
 *
 *	guard.c			_PG_init: the init functions of guc, changes, invariants,
 *					hooks and rails; nothing calls it
 *	hooks.c			executor and utility hooks -> ddl, policy, changes
 *	restore.c		guard.restore() -> ddl, shadow, changes, policy, rows
 *	ddl.c			schema changes of protected tables -> invariants,
 *					shadow, changes, policy, rows
 *	capture.c		the capture trigger -> invariants, rails, shadow, policy
 *	diff.c			guard.diff() -> shadow, changes, policy, rows
 *	invariants.c	invariants -> policy, changes, rows
 *	rails.c			require_where, max_rows, max_fraction -> policy
 *	shadow.c		before-images in chunks -> changes, rows
 *	changes.c		change sets, change records, layouts, and the statement
 *					finishing now (which hooks.c sets) -> rows
 *	policy.c		the policy cache, protect/unprotect and guard's
 *					triggers, who may manage or read a table -> rows
 *	spi.c			SQL as another role with a pinned search_path; guard's
 *					own DDL, marked by guard_internal_ddl
 *	catalog.c		guard's own relations (OIDs, opening with a layout check)
 *	rows.c			a table's key columns, live rows by key
 *	guc.c			settings and the preload check
 *
 * Any file above them may call spi.c, catalog.c, rows.c and guc.c; spi.c
 * calls only catalog.c, and catalog.c, rows.c and guc.c call no other file.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUARD_H
#define GUARD_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "nodes/nodes.h"
#include "nodes/pg_list.h"
#include "nodes/plannodes.h"
#include "storage/lockdefs.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

/*
 * guard's own error codes, class ZG: the SQL standard leaves classes whose
 * first character is 5-9 or I-Z to implementations (README.md lists them).
 */
#define ERRCODE_GUARD_NOT_PRELOADED		ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
#define ERRCODE_GUARD_SNAPSHOT_TOO_LARGE	MAKE_SQLSTATE('Z','G','0','0','1')
#define ERRCODE_GUARD_RESTORE_CONFLICT	MAKE_SQLSTATE('Z','G','0','0','2')
#define ERRCODE_GUARD_RAIL				MAKE_SQLSTATE('Z','G','0','0','3')

/* guc.c: settings and the preload check */
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

extern void guard_guc_init(void);
extern void guard_require_preload(void);

/* catalog.c: guard's own relations */
extern Oid	guard_namespace(void);
extern Oid	guard_relid(const char *relname);

/* hooks.c: executor and utility hooks */
extern void guard_install_hooks(void);

/* policy.c: who is protected and how */
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

/* what guard_open_table_to_manage() opens a table for, for its messages */
typedef enum GuardManage
{
	GUARD_MANAGE_PROTECT,
	GUARD_MANAGE_UNPROTECT,
	GUARD_MANAGE_ADD_INVARIANT,
	GUARD_MANAGE_DROP_INVARIANT
} GuardManage;

extern const GuardPolicy *guard_policy_lookup(Relation rel);
extern int	guard_policy_mode(const GuardPolicy *policy);
extern bool guard_may_read_relation(Oid relid);
extern Relation guard_open_table_to_manage(Oid relid, GuardManage action);
extern bool guard_policy_wants_triggers(const GuardPolicy *policy);
extern bool guard_may_manage(Oid relid);
extern void guard_sync_relation(Oid relid);

/* spi.c: guard's own SQL as another role, search_path pinned, SPI open */
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
extern bool guard_internal_ddl;
extern void guard_run_internal_ddl(Oid role, const char *search_path,
								   List *statements);

/*
 * catalog.c: column numbers of guard's own tables (sql/guard--0.1.sql);
 * guard_open() checks the count, so that a library and a script of
 * different versions fail cleanly instead of misreading rows.
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
#define Natts_guard_invariant		8

extern Relation guard_open(const char *relname, LOCKMODE lockmode, int natts);

/* changes.c: change sets and change records */

/* the statement being finished, for change records (set by hooks.c) */
typedef struct GuardStatement
{
	const char *text;			/* source text, not NUL-terminated at len */
	int			len;
	CmdType		cmd;			/* CMD_UNKNOWN for utility (COPY) */
	bool		is_copy;
} GuardStatement;

extern const GuardStatement *guard_set_statement(const GuardStatement *stmt);

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

/* rows.c: a table's key, and its live rows by key */
extern int	guard_key_attnums(Relation rel, AttrNumber *keys);

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
extern GuardInvariantSet *guard_invariants_begin(Relation rel,
												 const GuardPolicy *policy);
extern void guard_invariants_row(GuardInvariantSet *set, TupleTableSlot *slot,
								 int64 rowno);
extern void guard_invariants_deleted(GuardInvariantSet *set,
									 TupleTableSlot *slot, int64 rowno);
extern void guard_invariants_end(GuardInvariantSet *set, int64 change_id);
extern void guard_invariants_after_ddl(Relation rel);

/* ddl.c: schema changes recorded (calls trash.c and refuse.c) */
extern List *guard_ddl_before(PlannedStmt *pstmt, Node **replaced);
extern void guard_ddl_after(List *after);

/* refuse.c: DROP SCHEMA ... CASCADE and DROP OWNED BY of protected tables */
extern void guard_refuse_drop_schema(DropStmt *drop);
extern void guard_refuse_drop_owned(DropOwnedStmt *drop);

/* trash.c: DROP TABLE as a move into the trash, undrop, purge */
#define GUARD_TRASH_SCHEMA	"guard_trash"

extern void guard_json_field(StringInfo buf, const char *name,
							 const char *value);
extern void guard_trash_table(Oid relid, DropBehavior behavior, List *dropping);
extern void guard_undrop_table(Oid relid,
							   const char *(*schema_of) (Oid relid, void *arg),
							   const char *(*name_of) (Oid relid, void *arg),
							   void *arg);
extern void guard_recreate_dependents(List *statements);

/* depend.c: a protected table's outside dependents, saved as SQL */
extern bool guard_dependents_exist(Oid relid, List *dropping);
extern List *guard_dependents_save(Oid relid, List *dropping, List **drops);

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

/*
 * Restore, from the top down: drill.c (verify_restore) -> restore.c (the
 * SQL functions and the driver) -> schema_undo.c (schema change recipes)
 * -> undo.c (row undo) -> later.c (the later-writes index).
 */
typedef enum GuardOnConflict
{
	GUARD_ON_CONFLICT_ABORT,
	GUARD_ON_CONFLICT_SKIP,
	GUARD_ON_CONFLICT_OVERWRITE
} GuardOnConflict;

/* one row of a restore's report */
typedef struct GuardRestoreReport
{
	int64		change_id;
	int64		changeset_id;
	char	   *relation;
	char	   *kind;
	int64		restored;
	int64		skipped;
	int64		conflicts;
} GuardRestoreReport;

/* restore.c: the driver, for the drill */
typedef void (*GuardRestoreInspect) (List *reports, void *arg);

extern List *guard_restore_changeset_ids(int64 changeset_id);
extern List *guard_restore_changes(List *ids, GuardOnConflict mode,
								   bool dry_run, int64 restore_of,
								   MemoryContext reportcxt,
								   GuardRestoreInspect inspect, void *arg);

/* schema_undo.c: the undo recipes of schema changes */
extern void guard_undo_schema_change(const GuardChange *change, Datum exclude,
									 GuardRestoreReport *report);

/* undo.c: row undo */
extern void guard_undo_rows(const GuardChange *change, GuardOnConflict mode,
							Datum exclude, bool force,
							GuardRestoreReport *report);
extern void guard_undo_blocked_error(const GuardChange *change,
									 const char *column) pg_attribute_noreturn();
extern const char *guard_undo_relname(const GuardChange *change);

/* later.c: what changes recorded after the one being undone wrote, by key */
#define GUARD_LATER_KEYLEN	(NAMEDATALEN * 4)	/* longer key texts are cut */

typedef struct GuardLaterWrites GuardLaterWrites;
typedef struct GuardLaterEntry GuardLaterEntry;

extern Datum guard_related_relids(Oid relid);
extern GuardLaterWrites *guard_later_writes_build(const GuardChange *change,
												  Datum exclude);
extern const GuardLaterEntry *guard_later_find(GuardLaterWrites *later,
											   const char *key);
extern bool guard_later_wrote(const GuardLaterEntry *entry, const char *column);
extern List *guard_later_changesets(const GuardLaterEntry *entry);

/*
 * Rehearse and read the past (guard.rehearse, guard.as_of, guard.history),
 * from the top down:
 *
 *	rehearse.c	guard.rehearse() -> script, nontxn, locks, changes, policy
 *	script.c	a migration script split into statements; calls no other file
 *	nontxn.c	what PostgreSQL keeps of a rolled-back rehearsal (sequences,
 *				pg_class statistics), put back -> catalog, locks
 *	locks.c		this backend's locks, from pg_locks; calls no other file
 *	history.c	guard.history() -> past, rowfilter, policy
 *	asof.c		guard.as_of() -> past, rowfilter, policy
 *	past_walk.c	a table's changes since a time, newest first -> past,
 *				changes
 *	past.c		rows as they were before those changes -> shadow_read,
 *				changes, rows
 *	rowfilter.c	a row's visibility under row level security; calls no other
 *				file but spi.c
 */

/* script.c: a script split into the statements a tool would send */
typedef enum GuardStmtAction
{
	GUARD_STMT_RUN,				/* run it */
	GUARD_STMT_COMMIT,			/* COMMIT: the would-be commit */
	GUARD_STMT_SKIP				/* report it, do not run it (see why) */
} GuardStmtAction;

typedef struct GuardScriptStmt
{
	int			number;			/* 1-based */
	char	   *text;			/* as sent to the server */
	char	   *shown;			/* without the comments leading it */
	const char *kind;			/* its command tag */
	RangeVar   *rv;				/* the relation it names, or NULL */
	GuardStmtAction action;
	const char *why;			/* why it is not run */
} GuardScriptStmt;

extern List *guard_script_split(const char *sql);
extern char *guard_script_relation(RangeVar *rv);

/* past.c, past_walk.c: a table's rows as they were */
typedef struct GuardPast GuardPast;

/* one version of a row, by attnum of the table now (dropped ones too) */
typedef struct GuardPastVersion
{
	Datum	   *values;
	bool	   *nulls;
	Oid		   *types;			/* the type of each value: a column had
								 * another before an ALTER COLUMN TYPE */
} GuardPastVersion;

/* a column of the table as it was, by attnum of the table now */
typedef struct GuardPastColumn
{
	bool		exists;
	Oid			type;
	const char *name;
	int64		retyped_by;		/* the change set that gave it the type it
								 * has now, or 0 */
} GuardPastColumn;

/* one change being undone */
typedef struct GuardPastChange
{
	int64		change_id;
	int64		changeset_id;
	TimestampTz at;
	char	   *role;
	char	   *label;			/* its change set's */
	char	   *kind;
	char	   *statement;		/* ALTER TABLE only */
	GuardChange *record;		/* its record and layout */
	int		   *map;			/* record attnum - 1 -> table attnum - 1,
								 * or -1 */
	int64		nrows;			/* rows undone so far */
} GuardPastChange;

/* one captured row, undone: the row's versions around the change */
typedef struct GuardPastRow
{
	GuardRowOp	op;
	const ShadowRow *row;		/* as captured, in the record's layout */
	const GuardPastVersion *before; /* NULL: no row before the change */
	const GuardPastVersion *after;	/* NULL: no row after it */
	const Datum *key_before;	/* in the order of the table's key; NULL */
	const Datum *key_after;		/* ... when there is no such row */
} GuardPastRow;

typedef void (*GuardPastOnChange) (void *arg, const GuardPastChange *change);
typedef void (*GuardPastOnRow) (void *arg, const GuardPastChange *change,
								const GuardPastRow *row);
typedef void (*GuardPastOnVersion) (void *arg, const GuardPastVersion *version);

extern GuardPast *guard_past_begin(Relation rel, bool strict);
extern bool guard_past_walk(GuardPast *past, TimestampTz since,
							bool stop_at_expired, GuardPastOnChange on_change,
							GuardPastOnRow on_row, void *arg);
extern const GuardPastColumn *guard_past_columns(GuardPast *past);
extern int	guard_past_key(GuardPast *past, const AttrNumber **keys);
extern void guard_past_rows(GuardPast *past, GuardPastOnVersion emit, void *arg);
extern void guard_past_end(GuardPast *past);

/* rowfilter.c: would row level security show this row to the caller? */
typedef struct GuardRowFilter GuardRowFilter;

extern GuardRowFilter *guard_rowfilter_begin(Relation rel);
extern bool guard_rowfilter_visible(GuardRowFilter *filter,
									const GuardPastVersion *version);
extern void guard_rowfilter_end(GuardRowFilter *filter);

/* locks.c: this backend's locks */
extern List *guard_locks_held(void);
extern List *guard_locks_relids(void);
extern List *guard_locks_on_sequences(MemoryContext cxt);
extern List *guard_locks_taken(List *before, List *after);

/* nontxn.c: state a rollback does not undo, saved before and put back */
typedef struct GuardNonTxn GuardNonTxn;

extern GuardNonTxn *guard_nontxn_save(void);
extern char *guard_nontxn_restore(GuardNonTxn *saved, List *touched);

#endif							/* GUARD_H */
