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
 *	ddl.c			schema changes of protected tables -> drop,
 *					invariants, shadow, changes, policy, rows
 *	drop.c			DROPs that reach protected tables -> inuse, trash,
 *					trial, depend, policy
 *	inuse.c			trashed tables in the way of a DROP -> trash, link
 *	trash.c			DROP TABLE as a move into the trash, undrop, purge
 *					-> relink, link, depend, changes
 *	relink.c		a trashed table's links made again by the undo -> link
 *	link.c			a trashed table's links (foreign keys, parents, type,
 *					publications, owner), saved and cut
 *	depend.c		views and statistics on a table, saved as SQL
 *	trial.c			a drop run in a subtransaction rolled back
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
#include "catalog/dependency.h"
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

/* ddl.c: schema changes recorded (calls drop.c) */
extern List *guard_ddl_before(PlannedStmt *pstmt, Node **replaced,
							  bool *hold_cascade);
extern void guard_ddl_after(List *after);

/* drop.c: DROP statements that reach protected or trashed tables */
extern Node *guard_drop_before(Node *parsetree, bool *hold_cascade);

/* inuse.c: trashed tables in the way of a DROP of what they use */
extern void guard_inuse_before_drop(Node *parsetree);
extern void guard_inuse_roles(List *roleids, bool dropping_owned);
extern void guard_inuse_dropped(List *dropped, List *units);

/* trial.c: a drop run and rolled back, to learn what it would do */
typedef struct GuardTrialMessage
{
	int			elevel;
	int			sqlerrcode;
	char	   *message;
	char	   *detail;
	char	   *detail_log;
	char	   *hint;
	bool		cascade;		/* PostgreSQL's "drop cascades to" notice */
} GuardTrialMessage;

typedef struct GuardTrial
{
	List	   *dropped;		/* ObjectAddress *, in deletion order */
	List	   *messages;		/* GuardTrialMessage * */
} GuardTrial;

extern void guard_trial_install(void);
extern void guard_trial(void (*fn) (void *arg), void *arg, GuardTrial *trial);
extern void guard_trial_emit(const GuardTrial *trial, bool cascade_only);
extern int	guard_trial_hold_begin(int *saved);
extern void guard_trial_hold_end(int nestlevel, int saved, bool ok);

/* trash.c: DROP TABLE as a move into the trash, undrop, purge */
#define GUARD_TRASH_SCHEMA	"guard_trash"

extern void guard_json_field(StringInfo buf, const char *name,
							 const char *value);
extern Oid	guard_trash_namespace(bool create);
extern bool guard_trash_is_empty(void);
extern void guard_trash_unit(Oid root, List *tree, List *not_kept);
extern void guard_trash_purge(List *roots, const char *why, bool drop);
extern void guard_undrop_table(Oid relid,
							   const char *(*schema_of) (Oid relid, void *arg),
							   const char *(*name_of) (Oid relid, void *arg),
							   void *arg);
extern void guard_recreate_dependents(List *statements);

/* relink.c: a trashed table's links made again by the undo */
extern void guard_link_restore(const char *directive);

/* link.c: a trashed table's links to live tables, saved and cut */
extern List *guard_links_save(List *tree, ObjectAddresses *deletions);
extern void guard_links_unlink_parents(List *tree);
extern void guard_links_drop_crossing(List *tree);
extern bool guard_in_trash(Oid relid);
extern Oid	guard_trash_root(Oid relid);
extern void guard_link_append(Oid root, const char *directive);

/* depend.c: a protected table's outside dependents, saved as SQL */
extern List *guard_dependents_save(List *tree, ObjectAddresses *deletions);
extern Oid	guard_object_relation(const ObjectAddress *object);

/* rails.c: guard rails */
extern void guard_check_row_limits(Relation rel, const GuardPolicy *policy,
								   int event, int64 nrows);
extern void guard_rails_install(void);

/* shadow.c: packed before-images */
typedef enum GuardRowOp
{
	GUARD_OP_INSERT = 1,
	GUARD_OP_UPDATE = 2,
	GUARD_OP_DELETE = 3
} GuardRowOp;

typedef struct ShadowWriter ShadowWriter;

extern ShadowWriter *shadow_begin(Relation rel, const char *kind,
								  int64 limit, bool enforce);
extern void shadow_add_update(ShadowWriter *w, TupleTableSlot *oldslot,
							  TupleTableSlot *newslot);
extern void shadow_add_delete(ShadowWriter *w, TupleTableSlot *oldslot);
extern void shadow_add_insert(ShadowWriter *w, TupleTableSlot *newslot);
extern void shadow_add_column(ShadowWriter *w, TupleTableSlot *slot,
							  AttrNumber attnum);
extern int64 shadow_end(ShadowWriter *w);

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
